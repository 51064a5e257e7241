//! One import per layer at a time, and recovery after an import that was killed: the file
//! `cim-layers/<id>.cimkit-import` is held locked (an OS file lock, released when the process
//! ends however it ends) while a layer is imported, and lists the files the CIM writer creates
//! until its commit publishes the `.cim`. A lock file that can be locked again but still lists
//! files was left by a killed import: those files, and what that import put in the layer
//! folder, are removed before the next import of the layer starts.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Suffix of the lock file beside the layer's `.cim`.
const LOCK_SUFFIX: &str = ".cimkit-import";

/// The held lock on one layer's import. Dropping it removes the lock file and releases it.
#[derive(Debug)]
pub(crate) struct ImportLock {
    file: File,
    path: PathBuf,
}

/// The lock file of layer `id` in `cim_dir`.
fn lock_path(cim_dir: &Path, id: &str) -> PathBuf {
    cim_dir.join(format!("{id}{LOCK_SUFFIX}"))
}

impl ImportLock {
    /// Takes the import lock of layer `id` (its CIM folder `cim_dir` must exist), refusing when
    /// another import holds it. What a killed import of the layer left is returned as the names
    /// of the files in `cim_dir` it listed, for the caller to remove once it knows the `.cim`
    /// was never published.
    pub(crate) fn acquire(
        layer: &Path,
        cim_dir: &Path,
        id: &str,
    ) -> Result<(ImportLock, Vec<String>)> {
        let path = lock_path(cim_dir, id);
        let (mut file, locked) = lock_file(layer, &path)?;
        let mut listed = String::new();
        // Unlocked (the file system cannot lock), a list may be a running import's: keep it.
        if locked {
            file.read_to_string(&mut listed)
                .map_err(|e| Error::io(&path, e))?;
        }
        // Only plain names of this folder's CIM files are taken from the file: it is ours, but a
        // name with a separator could reach elsewhere.
        let stale = listed
            .lines()
            .filter(|n| {
                !n.is_empty()
                    && !n.contains(['/', '\\'])
                    && (n.starts_with("region_")
                        || n.starts_with("objectid_")
                        || n.ends_with(".cim.tmp"))
            })
            .map(str::to_string)
            .collect();
        Ok((ImportLock { file, path }, stale))
    }

    /// Records the files the CIM writer creates (names in the lock file's folder), so a killed
    /// import can be cleaned up by the next one.
    pub(crate) fn record(&mut self, files: &[PathBuf]) -> Result<()> {
        let names: String = files
            .iter()
            .filter_map(|f| f.file_name()?.to_str())
            .map(|n| format!("{n}\n"))
            .collect();
        let io = |e| Error::io(&self.path, e);
        self.file.set_len(0).map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.file.write_all(names.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

impl Drop for ImportLock {
    fn drop(&mut self) {
        // Emptied and removed while still locked: an import that opened it just before (and
        // then finds it unlinked, see `lock_file`) never reads this import's list as stale.
        let _ = self.file.set_len(0);
        let _ = fs::remove_file(&self.path);
    }
}

/// Opens and locks the lock file at `path`. A file that was unlinked between the open and the
/// lock (its import ended) is let go and the path opened again. Where the file system cannot
/// lock, the import goes on unlocked (false).
fn lock_file(layer: &Path, path: &Path) -> Result<(File, bool)> {
    for _ in 0..100 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Layer {
                    layer: layer.to_path_buf(),
                    reason: format!(
                        "another import of this layer is running ({} is locked)",
                        path.display()
                    ),
                })
            }
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                return Ok((file, false))
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        if still_named(&file, path) {
            return Ok((file, true));
        }
    }
    Err(Error::Layer {
        layer: layer.to_path_buf(),
        reason: format!("{} keeps being replaced; cannot lock it", path.display()),
    })
}

/// Whether `path` still names the open `file` (not a new file made after it was unlinked).
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be unlinked by another import, so it is still named.
#[cfg(not(unix))]
fn still_named(_: &File, path: &Path) -> bool {
    path.exists()
}

/// Whether layer folder `layer` holds what an import that was killed left behind (its lock file
/// lists files and no process holds it): the next import of the layer cleans it up.
pub fn interrupted_import(layer: &Path) -> bool {
    let cim = crate::cim_path_for_layer(layer);
    let (Some(cim_dir), Some(id)) = (cim.parent(), cim.file_stem().and_then(|s| s.to_str())) else {
        return false;
    };
    let Ok(file) = File::open(lock_path(cim_dir, id)) else {
        return false;
    };
    let free = file.try_lock().is_ok();
    free && file.metadata().is_ok_and(|m| m.len() > 0)
}
