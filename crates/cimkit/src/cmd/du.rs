//! `cimkit du`: disk use of an image: its own region/objectid files vs its parents' regions,
//! and the logical size of what it holds.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{open_cim, Outcome};
use crate::output;
use crate::walk;

#[derive(clap::Args)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn size_of(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len())
}

fn total(paths: &[PathBuf]) -> Result<u64> {
    paths.iter().map(|p| size_of(p)).sum()
}

pub fn run(args: Args) -> Result<Outcome> {
    super::check_cim_path(&args.cim)?;
    let files = cimfs::image_files(&args.cim)
        .with_context(|| format!("cannot list the files of {}", args.cim.display()))?;
    let cim_bytes = size_of(&files.cim)?;
    let own_regions = total(&files.regions)?;
    let own_objectids = total(&files.objectids)?;
    let parent_regions = total(&files.parent_regions)?;

    let cim = open_cim(&args.cim)?;
    // Counted as extract and export count: symlinks and mount points (link reparse points) on
    // their own, then directories; files are the regular files, each once, with the data they
    // hold; hard links are their further names.
    let (mut n_files, mut n_dirs, mut n_links, mut n_symlinks, mut data) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut seen = HashSet::new();
    walk::walk(&cim, "", cim.root(), true, &mut |e| {
        if output::link_target(&e.info).is_some() {
            n_symlinks += 1;
        } else if e.info.is_directory {
            n_dirs += 1;
        } else if seen.insert(e.info.file_id) {
            n_files += 1;
            data += e.info.size;
        } else {
            n_links += 1;
        }
        Ok(())
    })?;

    let mut out = output::stdout();
    if args.json {
        let v = json!({
            "cim": files.cim.display().to_string(),
            "cim_bytes": cim_bytes,
            "own_region_bytes": own_regions,
            "own_objectid_bytes": own_objectids,
            "own_bytes": cim_bytes + own_regions + own_objectids,
            "parent_region_bytes": parent_regions,
            "regions": files.regions.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "objectids": files.objectids.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "parent_regions": files.parent_regions.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "files": n_files,
            "directories": n_dirs,
            "symlinks": n_symlinks,
            "hard_links": n_links,
            "data_bytes": data,
        });
        output::json_line(&mut out, &v)?;
    } else {
        let row = |out: &mut dyn Write, label: &str, n: u64| {
            writeln!(out, "{label:<28} {n:>16}  {}", output::human_size(n))
        };
        row(&mut out, "own .cim", cim_bytes)?;
        row(
            &mut out,
            &format!("own regions ({})", files.regions.len()),
            own_regions,
        )?;
        row(
            &mut out,
            &format!("own objectids ({})", files.objectids.len()),
            own_objectids,
        )?;
        row(
            &mut out,
            "own total",
            cim_bytes + own_regions + own_objectids,
        )?;
        row(
            &mut out,
            &format!("parents' regions ({})", files.parent_regions.len()),
            parent_regions,
        )?;
        writeln!(
            out,
            "contents: {}",
            output::tree_counts(n_files, data, n_dirs, n_symlinks, n_links)
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
