//! `cimkit import-image`: import every layer of an OCI layout / docker-save image, bottom-up, as a
//! chain of CIM layers `DIR/1`, `DIR/2`, … (CIMs in `DIR/cim-layers/`). Each imported layer folder
//! records its blob digest in `DIR/<n>/.cimkit-digest`; a later run skips the leading layers whose
//! recorded digest (and CIM) match, and re-imports from the first one that differs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::image_layers::Select;
use super::import::import_stream;
use super::Outcome;
use crate::output;

/// File in each layer folder holding the digest of the blob it was imported from.
pub const DIGEST_FILE: &str = ".cimkit-digest";

#[derive(clap::Args)]
#[command(
    after_help = "Layer n (1 = base) is imported into DIR/n with parents DIR/n-1 … DIR/1; \
its CIM is DIR/cim-layers/n.cim. DIR/n/.cimkit-digest records the layer blob's digest so that a \
second run skips layers already imported; from the first layer that differs on, existing layer \
folders written by cimkit are destroyed and imported again. Every blob is checked against its \
digest; a mismatch removes the layer just imported and fails.\n\n\
Examples:\n  cimkit import-image servercore.tar --snapshots /var/snapshots\n  \
cimkit import-image ./oci-layout --snapshots /var/snapshots \\\n    \
--host-snapshots-path 'C:\\ProgramData\\containerd\\root\\io.containerd.snapshotter.v1.cimfs\\snapshots'"
)]
pub struct Args {
    /// OCI image layout (folder or tar) or `docker save` archive (tar or extracted folder); a tar
    /// may be gzip or zstd compressed.
    pub source: PathBuf,
    /// Snapshot folder receiving the layers (created when missing).
    #[arg(long, value_name = "DIR")]
    pub snapshots: PathBuf,
    /// DIR as the Windows host will see it (e.g.
    /// `C:\ProgramData\containerd\root\io.containerd.snapshotter.v1.cimfs\snapshots`): layer n
    /// gets `WINPATH\n` as its host layer path (see `cimkit import --host-layer-path`).
    #[arg(long, value_name = "WINPATH")]
    pub host_snapshots_path: Option<String>,
    /// Store a UtilityVM tree as the tar has it, as hcsshim has done since 2024 (its utility-VM
    /// processing was removed): no uvmbuildversion, no VHDX disks, no BCD or SYSTEM edits. By
    /// default a UtilityVM is prepared to boot from the CIM, as the earlier hcsshim did.
    #[arg(long)]
    pub no_utility_vm_processing: bool,
    #[command(flatten)]
    pub select: Select,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// One JSON object per layer and line.
    #[arg(long)]
    pub json: bool,
}

fn recorded_digest(layer_dir: &Path) -> Option<String> {
    std::fs::read_to_string(layer_dir.join(DIGEST_FILE))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Removes a layer folder this command wrote earlier (its CIM files too).
fn remove_layer(layer_dir: &Path) -> Result<()> {
    if wclayer::is_cim_layer(layer_dir) {
        let _ = wclayer::destroy_layer(layer_dir)
            .with_context(|| format!("cannot destroy stale layer {}", layer_dir.display()))?;
    }
    if layer_dir.exists() {
        std::fs::remove_dir_all(layer_dir)
            .with_context(|| format!("cannot remove stale layer folder {}", layer_dir.display()))?;
    }
    Ok(())
}

/// Removes the layer folders numbered `from` and up that carry a digest file, highest first;
/// returns their numbers, lowest first.
fn remove_stale_layers(snapshots: &Path, from: usize) -> Result<Vec<usize>> {
    let mut numbered: Vec<(usize, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(snapshots)
        .with_context(|| format!("cannot list {}", snapshots.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", snapshots.display()))?;
        let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        let path = entry.path();
        if n >= from && path.join(DIGEST_FILE).is_file() {
            numbered.push((n, path));
        }
    }
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    for (_, path) in &numbered {
        remove_layer(path)?;
    }
    Ok(numbered.iter().rev().map(|(n, _)| *n).collect())
}

/// What to do about a folder (or CIM) in the way that import-image did not write: destroy its
/// CIM with cimkit, then remove the folder, or pick another snapshot folder.
fn clear_hint(dir: &Path) -> String {
    let mut steps = Vec::new();
    if wclayer::cim_path_for_layer(dir).exists() {
        steps.push(format!(
            "destroy its CIM with `cimkit destroy --layer {}`",
            shell_word(&dir.display().to_string())
        ));
    }
    if dir.exists() {
        steps.push(format!(
            "remove the folder (`rm -r {}`)",
            shell_word(&dir.display().to_string())
        ));
    }
    format!(
        "{}, or use another --snapshots folder",
        steps.join(" and then ")
    )
}

/// `s` as one POSIX shell word, so a command line shown for pasting does what it says: as it is
/// when it holds only characters no shell treats specially, else in single quotes (`'` as
/// `'\''`).
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether `dir` already holds the layer with this digest, imported by this command.
fn holds(dir: &Path, digest: &str) -> bool {
    recorded_digest(dir).as_deref() == Some(digest) && wclayer::is_cim_layer(dir)
}

pub fn run(args: Args) -> Result<Outcome> {
    let image = args.select.open(&args.source)?;
    let count = image.layers().len();
    if count == 0 {
        bail!("{}: the image has no layers", args.source.display());
    }
    // A layer that is to be imported but whose blob the source lacks is found before anything
    // is written, not after the layers below it were imported.
    let first = image
        .layers()
        .iter()
        .position(|l| {
            !holds(
                &args.snapshots.join((l.index + 1).to_string()),
                &l.digest.to_string(),
            )
        })
        .unwrap_or(count);
    for layer in image.layers()[first..].iter().filter(|l| !l.present) {
        if let Err(e) = image.open_layer(layer.index) {
            return Err(anyhow::Error::new(e).context(format!(
                "layer {}/{count} cannot be imported, so nothing was",
                layer.index + 1
            )));
        }
    }
    let created = !args.snapshots.exists();
    std::fs::create_dir_all(&args.snapshots)
        .with_context(|| format!("cannot create {}", args.snapshots.display()))?;
    let result = import_layers(&args, &image);
    if result.is_err() && created {
        // Best effort: only folders left empty go (each failed layer removed its own files).
        let _ = std::fs::remove_dir(args.snapshots.join(wclayer::layout::CIM_LAYERS_DIR));
        let _ = std::fs::remove_dir(&args.snapshots);
    }
    result
}

/// Imports the image's layers as `DIR/1`, `DIR/2`, … (skipping those already there).
fn import_layers(args: &Args, image: &ociimage::Image) -> Result<Outcome> {
    let count = image.layers().len();
    let mut chain_intact = true;
    let (mut imported, mut skipped) = (0usize, 0usize);
    // Layers this run imported again over an earlier import of its own (folder removed first),
    // and layer folders removed above the image's top layer (left from a taller image).
    let (mut replaced, mut removed_above): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let mut out = output::stdout();
    for layer in image.layers() {
        let n = layer.index + 1;
        let dir = args.snapshots.join(n.to_string());
        let digest = layer.digest.to_string();
        let recorded = recorded_digest(&dir);
        if chain_intact && holds(&dir, &digest) {
            skipped += 1;
            report(&mut out, image, n, &dir, &digest, None, args.json)?;
            continue;
        }
        if chain_intact {
            // Every layer folder from here up was forked from what is about to change: remove
            // the ones this command wrote, top first, so no image is left reading freed regions.
            for k in remove_stale_layers(&args.snapshots, n)? {
                if k <= count {
                    replaced.push(k);
                } else {
                    removed_above.push(k);
                }
            }
        }
        chain_intact = false;
        if dir.exists() {
            let empty = std::fs::read_dir(&dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            // What a killed import left is ours to redo: the import cleans it up first.
            if recorded.is_none() && !empty && !wclayer::interrupted_import(&dir) {
                bail!(
                    "{} exists and was not written by cimkit import-image (no {DIGEST_FILE}): {}",
                    dir.display(),
                    clear_hint(&dir)
                );
            }
            if recorded.is_some() {
                remove_layer(&dir)?;
                if !replaced.contains(&n) {
                    replaced.push(n);
                }
            }
        }
        // An image for this layer id that no digest says is ours (another tool's, or one whose
        // folder was removed) is never destroyed here.
        let cim = wclayer::cim_path_for_layer(&dir);
        if cim.exists() && recorded.is_none() {
            bail!(
                "{} exists but {} has no {DIGEST_FILE}, so it was not written by cimkit \
                 import-image: {}",
                cim.display(),
                dir.display(),
                clear_hint(&dir)
            );
        }
        let parents: Vec<PathBuf> = (1..n)
            .rev()
            .map(|k| args.snapshots.join(k.to_string()))
            .collect();
        let opts = wclayer::ImportOptions {
            layer: dir.clone(),
            parents,
            host_layer_path: args
                .host_snapshots_path
                .as_deref()
                .map(|p| format!(r"{}\{n}", p.trim_end_matches(['\\', '/']))),
            skip_utility_vm_processing: args.no_utility_vm_processing,
            // The config's diff_id, checked over the uncompressed tar.
            uncompressed_digest: layer.diff_id.as_ref().map(|d| d.to_string()),
        };
        let mut blob = image
            .open_layer(layer.index)
            .with_context(|| format!("layer {n}/{count}"))?;
        let label = format!("layer {n}/{count}");
        // A failed import removes what it wrote itself; only a layer it finished, whose blob
        // then fails its digest check, is removed here.
        let result =
            import_stream(&mut blob, layer.size, &opts, args.quiet, &label).and_then(|s| {
                // The tar reader may stop before the end of the blob; read the rest so the digest
                // check runs over every byte.
                let rest = std::io::copy(&mut blob, &mut std::io::sink());
                if rest.is_err() {
                    let _ = remove_layer(&dir);
                }
                rest.with_context(|| {
                    format!("{}: reading the rest of the blob", args.source.display())
                })?;
                Ok(s)
            });
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                return Err(e.context(format!(
                    "cannot import layer {n}/{count} ({digest}) of {} into {}",
                    args.source.display(),
                    dir.display()
                )));
            }
        };
        std::fs::write(dir.join(DIGEST_FILE), format!("{digest}\n"))
            .with_context(|| format!("cannot record the digest in {}", dir.display()))?;
        imported += 1;
        let done = Imported {
            summary: &summary,
            replaced: replaced.contains(&n),
        };
        report(&mut out, image, n, &dir, &digest, Some(done), args.json)?;
    }
    if !args.json {
        use std::io::Write as _;
        let numbers = |list: &[usize]| {
            list.iter()
                .map(|k| args.snapshots.join(k.to_string()).display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut changes = String::new();
        if !replaced.is_empty() {
            changes.push_str(&format!(
                " ({} replaced an earlier import, its folder removed first: {})",
                output::count(replaced.len(), "layer"),
                numbers(&replaced)
            ));
        }
        if !removed_above.is_empty() {
            changes.push_str(&format!(
                "; removed {} above the top layer, left by an earlier import: {}",
                output::count(removed_above.len(), "layer folder"),
                numbers(&removed_above)
            ));
        }
        writeln!(
            out,
            "{}{}: {}, {imported} imported, {skipped} already there; top layer {}{changes}",
            args.source.display(),
            image
                .platform()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            output::count(count, "layer"),
            args.snapshots.join(count.to_string()).display()
        )?;
    }
    std::io::Write::flush(&mut out)?;
    Ok(Outcome::Ok)
}

/// A layer this run imported, and whether it replaced an earlier import of this command.
#[derive(Clone, Copy)]
struct Imported<'a> {
    summary: &'a wclayer::ImportSummary,
    replaced: bool,
}

fn report(
    out: &mut dyn std::io::Write,
    image: &ociimage::Image,
    n: usize,
    dir: &Path,
    digest: &str,
    done: Option<Imported<'_>>,
    json: bool,
) -> Result<()> {
    let count = image.layers().len();
    let summary = done.map(|d| d.summary);
    if json {
        output::json_line(
            out,
            &json!({
                "layer": n,
                "folder": dir.display().to_string(),
                "digest": digest,
                "imported": summary.is_some(),
                "cim": summary.map(|s| s.cim_path.display().to_string())
                    .unwrap_or_else(|| wclayer::cim_path_for_layer(dir).display().to_string()),
                "size": summary.map(|s| s.size),
                "entries": summary.map(|s| s.entries),
                "replaced": done.is_some_and(|d| d.replaced),
                "notes": summary.map(|s| s.notes.clone()).unwrap_or_default(),
                "os_version": image.os_version(),
            }),
        )?;
    } else {
        match done {
            Some(Imported {
                summary: s,
                replaced,
            }) => {
                writeln!(
                    out,
                    "layer {n}/{count} {digest}: {}imported {}, {} -> {}",
                    if replaced {
                        "earlier import replaced (folder removed first), "
                    } else {
                        ""
                    },
                    output::count_as(s.entries, "entry", "entries"),
                    output::human_size(s.size),
                    s.cim_path.display()
                )?;
                out.flush()?;
                super::import::tell_notes(s, dir);
            }
            None => writeln!(
                out,
                "layer {n}/{count} {digest}: already imported in {}",
                dir.display()
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_when_a_shell_would_split_or_expand_them() {
        assert_eq!(shell_word("snaps/2"), "snaps/2");
        assert_eq!(shell_word("my snaps/2"), "'my snaps/2'");
        assert_eq!(shell_word("q$(id)/2"), "'q$(id)/2'");
        assert_eq!(shell_word("it's/2"), r"'it'\''s/2'");
        assert_eq!(shell_word(""), "''");
    }
}
