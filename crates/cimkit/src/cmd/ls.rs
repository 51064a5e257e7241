//! `cimkit ls`: list a directory of a CIM (one level or recursively), as text or JSON lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::{open_cim, Outcome};
use crate::output;
use crate::walk::{self, Entry};

#[derive(clap::Args)]
#[command(
    after_help = "With --json every entry is one JSON object per line: path (backslashes, \
from the root), type (file|dir|symlink|reparse), attributes, size, the four FILETIMEs, file_id, \
sd/ea/reparse (base64 or null), link_target, sha256 of the data and streams [{name, size, sha256}]."
)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// Directory or file inside the image (`\` or `/`); the root when left out.
    #[arg(default_value = "", hide_default_value = true)]
    pub path: String,
    /// Long listing: mode letters (darhsl), size, last write time (UTC), name -> link target.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Recurse into subdirectories (prints full paths).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// One JSON object per entry and line (hashes every file's data and streams).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = open_cim(&args.cim)?;
    let (start, id) = walk::resolve(&cim, &args.cim, &args.path)?;
    let info = cim
        .file(id)
        .with_context(|| format!("{}: {}", args.cim.display(), walk::display(&start)))?;
    let mut out = output::stdout();
    let mut print = |e: &Entry, name: &str| -> Result<()> {
        if args.json {
            let v = output::entry_json(&cim, &e.path, &e.info, true)?;
            output::json_line(&mut out, &v)?;
        } else if args.long {
            let target = output::link_target(&e.info)
                .map(|t| format!(" -> {}", output::shown(&t)))
                .unwrap_or_default();
            writeln!(
                out,
                "{} {:>14} {} {}{}",
                output::mode_letters(e.info.attributes),
                if e.info.is_directory {
                    String::new()
                } else {
                    e.info.size.to_string()
                },
                output::filetime(e.info.last_write_time, false),
                output::shown(name),
                target
            )?;
        } else {
            writeln!(out, "{}", output::shown(name))?;
        }
        Ok(())
    };
    // A junction or directory symlink is listed as itself, as `ls` lists a symlink it is given:
    // links are not followed inside an image.
    if !info.is_directory || output::link_target(&info).is_some() {
        let e = Entry {
            path: start.clone(),
            info,
        };
        print(&e, &start)?;
    } else {
        walk::walk(&cim, &start, id, args.recursive, &mut |e| {
            let name = if args.recursive {
                &e.path
            } else {
                e.path.rsplit('\\').next().unwrap_or(&e.path)
            };
            print(e, name)
        })?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
