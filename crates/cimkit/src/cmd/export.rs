//! `cimkit export`: write a CIM's tree as a layer tar (wclayer::export::export_layer).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{open_cim, Outcome};
use crate::output;

#[derive(clap::Args)]
#[command(
    after_help = "The tar uses go-winio's backuptar dialect: PAX records MSWINDOWS.fileattr, \
MSWINDOWS.rawsd, MSWINDOWS.xattr.<name>, LIBARCHIVE.creationtime, mtime/atime/ctime; symlinks and \
mount points (MSWINDOWS.mountpoint) from reparse data; hard links for repeated file ids; alternate \
data streams as <file>:<stream> entries. It holds the image's whole merged view, so it imports as a \
base layer: `cimkit import layer.tar --layer SNAPSHOTS/<id>` gives back the same contents. The \
Hives\\ folder and layout file that base-layer import generates are left out unless \
--include-generated."
)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// Output tar (`-` for stdout).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write Hives\ and layout, which base-layer import generates itself.
    #[arg(long)]
    pub include_generated: bool,
    /// Print the summary (on stderr) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = open_cim(&args.cim)?;
    let opts = wclayer::export::ExportOptions {
        include_generated: args.include_generated,
    };
    let to_stdout = args.output.as_os_str() == "-";
    let summary = if to_stdout {
        let out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        wclayer::export::export_layer(&cim, out, &opts)
    } else {
        let file = File::create(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let result = wclayer::export::export_layer(&cim, &mut out, &opts);
        if result.is_ok() {
            out.flush()
                .with_context(|| format!("cannot write {}", args.output.display()))?;
        }
        result
    };
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            if !to_stdout {
                let _ = std::fs::remove_file(&args.output);
            }
            return Err(anyhow::Error::new(e).context(format!(
                "cannot export {} to {}",
                args.cim.display(),
                args.output.display()
            )));
        }
    };
    let msg = if args.json {
        json!({
            "tar": args.output.display().to_string(),
            "entries": summary.entries,
            "files": summary.files,
            "directories": summary.directories,
            "symlinks": summary.symlinks,
            "hard_links": summary.hard_links,
            "alternate_streams": summary.alternate_streams,
            "data_bytes": summary.data_bytes,
            "skipped": summary.skipped,
        })
        .to_string()
    } else {
        format!(
            "{}: {} entries ({} files, {} directories, {} symlinks, {} hard links, {} streams), {} of data{}",
            args.output.display(),
            summary.entries,
            summary.files,
            summary.directories,
            summary.symlinks,
            summary.hard_links,
            summary.alternate_streams,
            output::human_size(summary.data_bytes),
            if summary.skipped.is_empty() {
                String::new()
            } else {
                format!("; left out (generated on import): {}", summary.skipped.join(", "))
            }
        )
    };
    // The tar may be on stdout: the summary always goes to stderr.
    eprintln!("{msg}");
    Ok(Outcome::Ok)
}
