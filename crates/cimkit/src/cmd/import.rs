//! `cimkit import`: turn one layer tar into a CIM layer (wclayer::import_layer) with a progress bar.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Outcome;
use crate::output;
use crate::progress::{CountingReader, Progress};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cimkit import base.tar.gz --layer /var/snapshots/1\n  \
cimkit import update.tar.zst --layer /var/snapshots/3 --parent /var/snapshots/2 --parent \
/var/snapshots/1\n  curl -sL URL | cimkit import - --layer /var/snapshots/4 --parent \
/var/snapshots/3 --parent /var/snapshots/2 --parent /var/snapshots/1"
)]
pub struct Args {
    /// Layer tar: uncompressed, gzip or zstd (detected from the bytes); `-` reads stdin.
    pub tar: PathBuf,
    /// The new layer's folder, SNAPSHOTS/<id>; the CIM goes to SNAPSHOTS/cim-layers/<id>.cim.
    #[arg(long, value_name = "SNAPSHOTS/ID")]
    pub layer: PathBuf,
    /// Parent layer folders, nearest first (repeat the option).
    #[arg(long = "parent", value_name = "SNAPSHOTS/ID")]
    pub parents: Vec<PathBuf>,
    /// The layer folder as the Windows host will see it, an absolute Windows path (e.g.
    /// `C:\ProgramData\containerd\root\io.containerd.snapshotter.v1.cimfs\snapshots\12`). Used
    /// by utility-VM layers: SystemTemplate.vhdx records its parent disk's absolute path from it,
    /// and its last component names the CIM the utility VM boots from.
    #[arg(long, value_name = "WINPATH")]
    pub host_layer_path: Option<String>,
    /// Store a UtilityVM tree as the tar has it, as hcsshim has done since 2024 (its utility-VM
    /// processing was removed): no uvmbuildversion, no VHDX disks, no BCD or SYSTEM edits. By
    /// default a UtilityVM is prepared to boot from the CIM, as the earlier hcsshim did.
    #[arg(long)]
    pub no_utility_vm_processing: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An import stopped by Ctrl-C: a deliberate stop, not a failure of the input; the importer has
/// removed what it wrote.
#[derive(Debug)]
pub struct Interrupted {
    /// The layer folder that was being imported.
    pub layer: PathBuf,
    /// Tar entries imported before the stop.
    pub entries: u64,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "import into {} {} after {}; the layer was removed",
            self.layer.display(),
            crate::progress::INTERRUPTED_TEXT,
            output::count_as(self.entries, "tar entry", "tar entries")
        )
    }
}

impl std::error::Error for Interrupted {}

/// Imports `input` (of `total` bytes when known) as a layer, with a progress bar. Ctrl-C stops
/// it with an [`Interrupted`] error.
pub fn import_stream(
    input: impl Read,
    total: Option<u64>,
    opts: &wclayer::ImportOptions,
    quiet: bool,
    label: &str,
) -> Result<wclayer::ImportSummary> {
    crate::progress::catch_interrupt();
    let progress = Progress::new(total, quiet, label);
    let (mut counting, count) = CountingReader::new(BufReader::with_capacity(1 << 20, input));
    let mut entries = 0;
    let result = wclayer::import_layer(&mut counting, opts, &mut |p: wclayer::Progress| {
        entries = p.entries;
        progress.update(count.get(), p.entries)
    });
    progress.finish();
    result.map_err(|e| match e {
        // The stop Ctrl-C asked for, whatever the reader in its way made of it.
        _ if crate::progress::interrupted() => anyhow::Error::new(Interrupted {
            layer: opts.layer.clone(),
            entries: match e {
                wclayer::Error::Input { entries, .. } | wclayer::Error::TarRead { entries, .. } => {
                    entries
                }
                _ => entries,
            },
        }),
        wclayer::Error::UtilityVm { .. } => anyhow::anyhow!(
            "{e} (--no-utility-vm-processing imports the UtilityVM tree unchanged, as hcsshim \
             does since 2024)"
        ),
        e => e.into(),
    })
}

pub fn print_summary(summary: &wclayer::ImportSummary, layer: &Path, json: bool) -> Result<()> {
    if json {
        let mut out = output::stdout();
        output::json_line(
            &mut out,
            &json!({
                "layer": layer.display().to_string(),
                "cim": summary.cim_path.display().to_string(),
                "size": summary.size,
                "entries": summary.entries,
                "notes": summary.notes,
            }),
        )?;
        std::io::Write::flush(&mut out)?;
    } else {
        println!(
            "{}: {}, total size {} bytes ({}) -> {}",
            layer.display(),
            output::count_as(summary.entries, "entry", "entries"),
            summary.size,
            output::human_size(summary.size),
            summary.cim_path.display()
        );
    }
    tell_notes(summary, layer);
    Ok(())
}

/// Says the import's notes on stderr, each naming the layer folder.
pub fn tell_notes(summary: &wclayer::ImportSummary, layer: &Path) {
    for note in &summary.notes {
        output::note(format_args!("{}: {note}", layer.display()));
    }
}

/// Refuses a `.cim` file where a layer folder is wanted, naming the folder it belongs to.
fn check_layer_folder(option: &str, path: &Path) -> Result<()> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("cim"))
        || path.is_file()
    {
        let folder = match (path.parent(), path.file_stem()) {
            (Some(dir), Some(id)) if dir.file_name().is_some_and(|n| n == "cim-layers") => dir
                .parent()
                .map(|snapshots| format!(" (here {})", snapshots.join(id).display())),
            _ => None,
        };
        anyhow::bail!(
            "{option} {}: give the layer folder SNAPSHOTS/<id>, not a file{}",
            path.display(),
            folder.unwrap_or_default()
        );
    }
    Ok(())
}

pub fn run(args: Args) -> Result<Outcome> {
    check_layer_folder("--layer", &args.layer)?;
    for p in &args.parents {
        check_layer_folder("--parent", p)?;
    }
    let opts = wclayer::ImportOptions {
        layer: args.layer.clone(),
        parents: args.parents.clone(),
        host_layer_path: args.host_layer_path.clone(),
        skip_utility_vm_processing: args.no_utility_vm_processing,
        uncompressed_digest: None,
    };
    let ctx = || {
        format!(
            "cannot import {} as layer {}",
            args.tar.display(),
            args.layer.display()
        )
    };
    let result = if args.tar.as_os_str() == "-" {
        import_stream(std::io::stdin().lock(), None, &opts, args.quiet, "import")
    } else {
        let file =
            File::open(&args.tar).with_context(|| format!("cannot open {}", args.tar.display()))?;
        let total = file.metadata().ok().map(|m| m.len());
        import_stream(file, total, &opts, args.quiet, "import")
    };
    // A Ctrl-C stop says what it stopped itself; a failure says what could not be imported.
    let summary = result.map_err(|e| {
        if e.is::<Interrupted>() {
            e
        } else {
            e.context(ctx())
        }
    })?;
    print_summary(&summary, &args.layer, args.json)?;
    Ok(Outcome::Ok)
}
