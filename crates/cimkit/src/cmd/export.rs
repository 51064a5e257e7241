//! `cimkit export`: write a CIM as a layer tar: a fork's changes against its nearest parent
//! image (wclayer::export::export_layer_changes), or a whole tree (export_layer).

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{open_cim, Outcome};
use crate::output;
use crate::progress::{Progress, ProgressWriter};

#[derive(clap::Args)]
#[command(
    after_help = "The tar uses go-winio's backuptar dialect: PAX records MSWINDOWS.fileattr, \
MSWINDOWS.rawsd, MSWINDOWS.xattr.<name>, LIBARCHIVE.creationtime, mtime/atime/ctime; symlinks and \
mount points (MSWINDOWS.mountpoint) from reparse data; hard links for repeated file ids; alternate \
data streams as <file>:<stream> entries.\n\n\
A fork (a child layer's CIM) is exported as a child layer tar: only what differs from its nearest \
parent image, which is the .cim in the same folder whose region sets the fork lists (or --parent): \
added and changed entries in full, hard links, and an OCI whiteout (.wh.<name>) for each removed \
path. `cimkit import layer.tar --layer SNAPSHOTS/<new> --parent SNAPSHOTS/<parent id>...` (the \
fork's parent layers, nearest first) gives back \
the same contents. Hives\\<X>_BASE that import rebuilt from Hives\\<X>_DELTA is left out (the \
DELTA is written; import rebuilds the BASE).\n\n\
An image that is not a fork, or any image with --flatten, is exported whole (its merged view) and \
imports as a base layer: `cimkit import layer.tar --layer SNAPSHOTS/<id>`. The Hives\\ folder and \
layout file that base-layer import generates are then left out.\n\n\
--include-generated keeps what import generates.\n\n\
Examples:\n  cimkit export /var/snapshots/cim-layers/2.cim -o child.tar      # changes against 1.cim\n  \
cimkit export --flatten /var/snapshots/cim-layers/2.cim -o - | zstd > whole.tar.zst"
)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// Output tar (`-` for stdout).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write what import generates itself (Hives\ and layout for a whole tree, rebuilt
    /// Hives\<X>_BASE for a fork).
    #[arg(long)]
    pub include_generated: bool,
    /// Write the whole merged tree (a base-layer tar), even for a fork.
    #[arg(long, conflicts_with = "parent")]
    pub flatten: bool,
    /// The fork's nearest parent image (default: found in the fork's folder by region sets).
    #[arg(long, value_name = "PARENT.cim")]
    pub parent: Option<PathBuf>,
    /// Print the summary (on stderr) as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (one is drawn on stderr when it is a terminal).
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = open_cim(&args.cim)?;
    let opts = wclayer::export::ExportOptions {
        include_generated: args.include_generated,
    };
    let parent = if args.flatten || (cim.parents().is_empty() && args.parent.is_none()) {
        None
    } else {
        let path = match &args.parent {
            Some(p) => p.clone(),
            None => wclayer::export::find_parent_image(&cim)
                .with_context(|| format!("cannot export {} as a child layer (--flatten exports the whole tree, --parent names the parent image)", args.cim.display()))?,
        };
        let parent = open_cim(&path)?;
        wclayer::export::check_parent_image(&cim, &parent)?;
        Some((path, parent))
    };
    let export = |out: &mut dyn Write| match &parent {
        None => wclayer::export::export_layer(&cim, out, &opts),
        Some((_, p)) => wclayer::export::export_layer_changes(&cim, p, out, &opts),
    };
    let to_stdout = args.output.as_os_str() == "-";
    crate::progress::catch_interrupt();
    let progress = Progress::new(None, args.quiet, "export");
    // A file is written beside its name and renamed over it once complete: a failed export
    // never clobbers (nor removes) a tar already there.
    let target = output::output_file(&args.output);
    let partial = &target.write_to;
    let summary = if to_stdout {
        let mut out = BufWriter::with_capacity(
            1 << 20,
            ProgressWriter::new(std::io::stdout().lock(), &progress),
        );
        export(&mut out)
    } else {
        let file = target
            .create()
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, ProgressWriter::new(file, &progress));
        let result = export(&mut out);
        let flushed = out.flush();
        drop(out); // closed before the rename (Windows renames no open file)
        if result.is_ok() {
            flushed
                .and_then(|()| match &target.rename_to {
                    Some(dest) => std::fs::rename(partial, dest),
                    None => Ok(()),
                })
                .with_context(|| format!("cannot write {}", args.output.display()))
                .inspect_err(|_| {
                    if target.rename_to.is_some() {
                        let _ = std::fs::remove_file(partial);
                    }
                })?;
        }
        result
    };
    progress.finish();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            if !to_stdout && target.rename_to.is_some() {
                let _ = std::fs::remove_file(partial);
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
            // As in du and extract: the regular files' data; the streams' apart.
            "data_bytes": summary.file_bytes,
            "stream_bytes": summary.data_bytes.saturating_sub(summary.file_bytes),
            "whiteouts": summary.whiteouts,
            "skipped": summary.skipped,
            "parent": parent.as_ref().map(|(p, _)| p.display().to_string()),
        })
        .to_string()
    } else {
        // Counted as du and extract count (`tree_counts`), over what the tar holds: the data
        // figure is the files' data, the streams' bytes are added after it.
        let stream_bytes = summary.data_bytes.saturating_sub(summary.file_bytes);
        format!(
            "{}: {}, {}: {}, {}{}, {}{}",
            args.output.display(),
            match &parent {
                Some((p, _)) => format!("changes against {}", p.display()),
                None => "whole tree".to_string(),
            },
            output::count_as(summary.entries, "tar entry", "tar entries"),
            output::tree_counts(
                summary.files,
                summary.file_bytes,
                summary.directories,
                summary.symlinks,
                summary.hard_links
            ),
            output::count(summary.alternate_streams, "alternate stream"),
            if summary.alternate_streams > 0 {
                format!(" ({} of data)", output::human_size(stream_bytes))
            } else {
                String::new()
            },
            output::count(summary.whiteouts, "whiteout"),
            if summary.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; left out (generated on import, --include-generated writes them): {}",
                    summary.skipped.join(", ")
                )
            }
        )
    };
    // The tar may be on stdout: the summary always goes to stderr.
    eprintln!("{msg}");
    Ok(Outcome::Ok)
}
