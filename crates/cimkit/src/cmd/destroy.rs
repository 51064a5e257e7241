//! `cimkit destroy`: remove a CIM layer's .cim and its own region/objectid files (and the
//! `.cimkit-digest` record import-image left for it), refusing (unless --force) while another
//! image in the same folder still reads those regions, and keeping any file another `.cim` there
//! lists as its own. The layer folder itself is left.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::Outcome;

#[derive(clap::Args)]
pub struct Args {
    /// The layer folder (SNAPSHOTS/<id>); its CIM is SNAPSHOTS/cim-layers/<id>.cim.
    #[arg(long)]
    pub layer: PathBuf,
    /// Remove it even when child images depend on its regions (they become unreadable).
    #[arg(long)]
    pub force: bool,
}

/// Other images in the same folder whose parents include one of `cim`'s own region files.
fn dependents(cim: &Path) -> Result<Vec<PathBuf>> {
    let own = cimfs::image_files(cim).with_context(|| format!("cannot read {}", cim.display()))?;
    let dir = cimfs::folder_of(cim);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path == cim || path.extension().and_then(|e| e.to_str()) != Some("cim") {
            continue;
        }
        // An unreadable neighbour cannot be checked; it does not block the removal.
        if let Ok(files) = cimfs::image_files(&path) {
            if files.parent_regions.iter().any(|p| own.regions.contains(p)) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = wclayer::cim_path_for_layer(&args.layer);
    if !wclayer::is_cim_layer(&args.layer) {
        bail!(
            "{}: not a CIM layer ({} does not exist); nothing removed",
            args.layer.display(),
            cim.display()
        );
    }
    let children = dependents(&cim)?;
    if !children.is_empty() && !args.force {
        let list: Vec<String> = children.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{}: still used by {} (destroy those first, or --force)",
            cim.display(),
            list.join(", ")
        );
    }
    let report = wclayer::destroy_layer(&args.layer)
        .with_context(|| format!("cannot destroy layer {}", args.layer.display()))?;
    // import-image's record of which blob made this CIM describes nothing any more.
    let digest = args.layer.join(super::import_image::DIGEST_FILE);
    match std::fs::remove_file(&digest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", digest.display()))
        }
        _ => {}
    }
    println!(
        "removed {} and {}",
        cim.display(),
        crate::output::count(
            report.removed.len().saturating_sub(1),
            "region/objectid file"
        )
    );
    if !report.kept.is_empty() {
        println!(
            "kept {} that another image in {} also lists as its own",
            crate::output::count(report.kept.len(), "file"),
            cimfs::folder_of(&cim).display()
        );
    }
    Ok(Outcome::Ok)
}
