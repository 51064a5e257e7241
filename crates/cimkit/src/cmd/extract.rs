//! `cimkit extract`: copy a CIM's tree into a folder: directories, file data, hard links and
//! symlinks on disk; Windows metadata (attributes, times, SDs, EAs, reparse data, alternate data
//! streams) in a JSON-lines sidecar. Nothing is written outside the target folder.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{open_cim, Outcome};
use crate::output;
use crate::walk;

/// Default sidecar name, inside DIR.
const SIDECAR: &str = ".cimkit-metadata.jsonl";
/// FILETIME ticks between 1601-01-01 and 1970-01-01.
const UNIX_EPOCH_FILETIME: u64 = 116_444_736_000_000_000;

#[derive(clap::Args)]
#[command(
    after_help = "On disk: directories, regular files (data), hard links (repeated file ids) \
and symlinks (symlink and mount-point reparse data; the target with / separators). File and \
directory modification and access times are set from the image. Everything else goes to the \
sidecar DIR/.cimkit-metadata.jsonl (or --metadata FILE): one JSON object per entry, as `ls --json` \
prints it (path, type, attributes, the four FILETIMEs, file_id, sd/ea/reparse base64, sha256, \
streams) where each stream also carries its bytes in `data` (base64). No xattrs are written. \
DIR must be empty or absent; names that cannot be a single Linux path component (containing / \
or NUL, `.`, `..`) stop the extraction. A failed extraction removes what it had written, so DIR \
is left empty (or absent, when it did not exist)."
)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// Target folder (created; must be empty when it exists).
    pub dir: PathBuf,
    /// Only this directory (or file) of the image.
    #[arg(long, default_value = "")]
    pub path: String,
    /// Where to write the metadata sidecar (default DIR/.cimkit-metadata.jsonl); `-` is stdout
    /// (the summary then goes to stderr).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Print a summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (one is drawn on stderr when it is a terminal).
    #[arg(short, long)]
    pub quiet: bool,
}

fn filetime_to_system(ft: u64) -> Option<SystemTime> {
    if ft == 0 {
        return None;
    }
    let ticks = i128::from(ft) - i128::from(UNIX_EPOCH_FILETIME);
    let nanos = ticks.checked_mul(100)?;
    if nanos >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_nanos(u64::try_from(-nanos).ok()?))
    }
}

fn set_times(path: &Path, info: &cimfs::FileInfo) -> Result<()> {
    let mut times = fs::FileTimes::new();
    if let Some(t) = filetime_to_system(info.last_write_time) {
        times = times.set_modified(t);
    }
    if let Some(t) = filetime_to_system(info.last_access_time) {
        times = times.set_accessed(t);
    }
    let f = File::open(path).with_context(|| format!("{}", path.display()))?;
    f.set_times(times)
        .with_context(|| format!("{}: setting times", path.display()))
}

/// Turns an image path into a path under `root`, refusing components that are not plain names.
fn host_path(root: &Path, image_path: &str, cim: &Path) -> Result<PathBuf> {
    let mut p = root.to_path_buf();
    for part in image_path.split('\\') {
        if part.is_empty() || part == "." || part == ".." || part.contains(['/', '\0']) {
            bail!(
                "{}: {image_path}: name {} cannot be extracted safely",
                cim.display(),
                output::quote(part)
            );
        }
        p.push(part);
    }
    Ok(p)
}

#[cfg(unix)]
fn make_symlink(target: &str, host: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, host)
        .with_context(|| format!("cannot create symlink {} -> {target}", host.display()))
}

#[cfg(not(unix))]
fn make_symlink(target: &str, host: &Path) -> Result<()> {
    bail!(
        "cannot create symlink {} -> {target} on this OS (it is in the sidecar)",
        host.display()
    )
}

/// Copies a stream to `w`, returning its sha256.
fn copy_hashing(mut r: impl Read, w: &mut dyn Write) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        w.write_all(chunk)?;
        total += n as u64;
    }
    Ok((total, output::hex(&hasher.finalize())))
}

pub fn run(args: Args) -> Result<Outcome> {
    let cim = open_cim(&args.cim)?;
    let created = !args.dir.exists();
    // Only an extraction into an absent or empty DIR is undone: then all in it is ours.
    let pristine = created
        || fs::read_dir(&args.dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
    let result = extract(&args, &cim);
    if result.is_err() && pristine && args.dir.is_dir() {
        // DIR was absent or empty: everything in it is a half-done extraction; leave none of it.
        let cleaned = if created {
            fs::remove_dir_all(&args.dir)
        } else {
            fs::read_dir(&args.dir).and_then(|entries| {
                for e in entries {
                    let p = e?.path();
                    if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)?;
                    } else {
                        fs::remove_file(&p)?;
                    }
                }
                Ok(())
            })
        };
        if let Err(e) = cleaned {
            eprintln!(
                "cimkit: could not remove the partial extraction in {}: {e}",
                args.dir.display()
            );
        } else if crate::progress::interrupted() {
            anyhow::bail!(
                "extraction into {} {}; what it wrote was removed",
                args.dir.display(),
                crate::progress::INTERRUPTED_TEXT
            );
        }
    }
    result
}

/// Whether two metadata describe one file (device and inode; on other systems, never).
#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    false
}

/// Removes the file it names when dropped, unless disarmed (set to None) first.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn extract(args: &Args, cim: &cimfs::Cim) -> Result<Outcome> {
    let (start, start_id) = walk::resolve(cim, &args.cim, &args.path)?;
    if args.dir.exists() {
        let mut entries = fs::read_dir(&args.dir)
            .with_context(|| format!("{} is not a folder", args.dir.display()))?;
        if entries.next().is_some() {
            bail!("{} is not empty", args.dir.display());
        }
    } else {
        fs::create_dir_all(&args.dir)
            .with_context(|| format!("cannot create {}", args.dir.display()))?;
    }
    let sidecar_path = args
        .metadata
        .clone()
        .unwrap_or_else(|| args.dir.join(SIDECAR));
    let sidecar_to_stdout = sidecar_path.as_os_str() == "-";
    if args.metadata.is_none() && cim.lookup(&walk::join(&start, SIDECAR)).is_ok() {
        bail!(
            "{}: the image has its own {SIDECAR}; pass --metadata FILE",
            args.cim.display()
        );
    }
    let sidecar_file = output::output_file(&sidecar_path);
    let sidecar_partial = &sidecar_file.write_to;
    // The sidecar is written beside its final name and renamed only on success, so a file
    // already at --metadata FILE is never clobbered by a failed run; the partial one goes.
    let mut partial_guard = RemoveOnDrop(None);
    let mut sidecar: Box<dyn Write> = if sidecar_to_stdout {
        Box::new(output::stdout())
    } else {
        let file = sidecar_file
            .create()
            .with_context(|| format!("cannot create {}", sidecar_partial.display()))?;
        if sidecar_file.rename_to.is_some() {
            partial_guard.0 = Some(sidecar_partial.clone());
        }
        Box::new(std::io::BufWriter::new(file))
    };

    let start_info = cim
        .file(start_id)
        .with_context(|| format!("{}: {}", args.cim.display(), walk::display(&start)))?;
    // Host paths are the image paths below `start`; a single file (or a link, even to a
    // directory) lands in DIR under its name; a directory is DIR itself.
    let start_is_folder = start_info.is_directory && output::link_target(&start_info).is_none();
    let base_len = if !start_is_folder {
        start.rfind('\\').map_or(0, |i| i + 1)
    } else if start.is_empty() {
        0
    } else {
        start.len() + 1
    };
    // The first name of each file id extracted, and its data's hash (for its other names).
    let mut first_path: HashMap<cimfs::FileId, (PathBuf, String)> = HashMap::new();
    let mut dirs: Vec<(PathBuf, cimfs::FileInfo)> = Vec::new();
    let mut symlinks: Vec<(PathBuf, String)> = Vec::new();
    let (mut n_files, mut n_dirs, mut n_links, mut n_symlinks, mut bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);

    crate::progress::catch_interrupt();
    let progress = crate::progress::Progress::new(None, args.quiet, "extract");
    let mut extract_one = |path: &str, info: &cimfs::FileInfo| -> Result<()> {
        // Ctrl-C stops here, between entries; `run` then removes the partial extraction.
        crate::progress::check_interrupt()?;
        progress.update(bytes, n_files + n_dirs + n_links + n_symlinks);
        let is_root = start_is_folder && path == start;
        let host = if is_root {
            args.dir.clone()
        } else {
            host_path(&args.dir, path.get(base_len..).unwrap_or(path), &args.cim)?
        };
        let ctx = || format!("{}: {path} -> {}", args.cim.display(), host.display());
        let mut record = output::entry_json(cim, path, info, false)?;
        let is_link_reparse = output::link_target(info).is_some();
        if is_root {
            // DIR stands for it: its metadata goes to the sidecar, and its times to DIR (not
            // the image root's: those are the writer's, often zero).
            if !start.is_empty() {
                dirs.push((host, info.clone()));
            }
        } else if is_link_reparse {
            let target = output::link_target(info)
                .unwrap_or_default()
                .replace('\\', "/");
            symlinks.push((host, target));
            n_symlinks += 1;
        } else if info.is_directory {
            fs::create_dir(&host).with_context(ctx)?;
            dirs.push((host, info.clone()));
            n_dirs += 1;
        } else if let Some((existing, sha)) = first_path.get(&info.file_id) {
            fs::hard_link(existing, &host).with_context(ctx)?;
            record["sha256"] = Value::String(sha.clone());
            n_links += 1;
        } else {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&host)
                .with_context(ctx)?;
            let r = cim.open_id(info.file_id, None).with_context(ctx)?;
            let (n, sha) = copy_hashing(r, &mut f).with_context(ctx)?;
            drop(f);
            set_times(&host, info)?;
            record["sha256"] = Value::String(sha.clone());
            first_path.insert(info.file_id, (host, sha));
            n_files += 1;
            bytes += n;
        }
        // Streams last (files, directories and reparse points all can have them), each one's bytes base64-encoded straight into the sidecar (never held
        // whole in memory), its hash after them.
        let streams = cim
            .streams_id(info.file_id)
            .with_context(|| format!("{}: {path}", args.cim.display()))?;
        if let Some(fields) = record.as_object_mut() {
            fields.remove("streams");
        }
        let mut head = serde_json::to_vec(&record)?;
        head.pop(); // the closing brace
        sidecar.write_all(&head)?;
        sidecar.write_all(br#","streams":["#)?;
        for (i, s) in streams.iter().enumerate() {
            let sctx = || format!("{}: {path}:{}", args.cim.display(), s.name);
            let r = cim
                .open_id(info.file_id, Some(&s.name))
                .with_context(sctx)?;
            let name = serde_json::to_string(&s.name)?;
            let sep = if i == 0 { "" } else { "," };
            write!(
                sidecar,
                r#"{sep}{{"name":{name},"size":{},"data":""#,
                s.size
            )?;
            let mut encoder = base64::write::EncoderWriter::new(
                &mut sidecar,
                &base64::engine::general_purpose::STANDARD,
            );
            let (_, sha) = copy_hashing(r, &mut encoder).with_context(sctx)?;
            encoder.finish().with_context(sctx)?;
            drop(encoder);
            write!(sidecar, r#"","sha256":"{sha}"}}"#)?;
        }
        sidecar.write_all(b"]}\n")?;
        Ok(())
    };

    extract_one(&start, &start_info)?;
    if start_is_folder {
        walk::walk(cim, &start, start_id, true, &mut |e| {
            extract_one(&e.path, &e.info)
        })?;
    }
    progress.finish();
    // Symlinks last, so no file is ever written through one; directory times after their contents.
    for (host, target) in &symlinks {
        make_symlink(target, host)?;
    }
    for (host, info) in dirs.iter().rev() {
        set_times(host, info)?;
    }
    sidecar.flush()?;
    let summary = json!({"dir": args.dir.display().to_string(), "metadata": sidecar_path.display().to_string(),
        "files": n_files, "directories": n_dirs, "hard_links": n_links, "symlinks": n_symlinks, "data_bytes": bytes});
    drop(sidecar);
    if let (false, Some(dest)) = (sidecar_to_stdout, &sidecar_file.rename_to) {
        fs::rename(sidecar_partial, dest).with_context(|| {
            format!(
                "cannot rename {} to {}",
                sidecar_partial.display(),
                dest.display()
            )
        })?;
        partial_guard.0 = None;
        // The rename changed the times of the folder it landed in, when that is one extracted
        // (however --metadata spells it: the folders are compared by identity).
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
        if let Ok(landed) = fs::metadata(parent.unwrap_or(Path::new("."))) {
            let same = |h: &PathBuf| fs::metadata(h).is_ok_and(|m| same_file(&m, &landed));
            if let Some((host, info)) = dirs.iter().find(|(h, _)| same(h)) {
                set_times(host, info)?;
            }
        }
    }
    // With the sidecar on stdout, the summary goes to stderr.
    let mut out: Box<dyn Write> = if sidecar_to_stdout {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(output::stdout())
    };
    if args.json {
        output::json_line(&mut out, &summary)?;
    } else {
        writeln!(
            out,
            "{}: {}; metadata in {}",
            args.dir.display(),
            output::tree_counts(n_files, bytes, n_dirs, n_symlinks, n_links),
            if sidecar_to_stdout {
                "stdout".into()
            } else {
                sidecar_path.display().to_string()
            }
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
