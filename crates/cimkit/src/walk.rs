//! Depth-first walk over a CIM's tree in stored order, with full backslash paths from the root.

use std::collections::HashSet;

use anyhow::{bail, Context as _, Result};
use cimfs::{Cim, FileId, FileInfo};

/// One visited entry.
pub struct Entry {
    /// Backslash path from the root without a leading backslash (`Files\a.txt`); "" for the root.
    pub path: String,
    pub info: FileInfo,
}

/// Joins a directory path and a child name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}\\{name}")
    }
}

/// Normalises a user-given path to the walk's spelling: backslashes, no leading/trailing ones.
pub fn normalize(path: &str) -> String {
    path.split(['\\', '/'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\\")
}

/// Resolves a user-given path inside the image at `cim_path`: its stored spelling (names as the
/// image has them, `\` separators, "" for the root) and its file id.
pub fn resolve(cim: &Cim, cim_path: &std::path::Path, user_path: &str) -> Result<(String, FileId)> {
    let normal = normalize(user_path);
    let ctx = || format!("{}: {}", cim_path.display(), display(&normal));
    let stored = cim.stored_path(&normal).with_context(ctx)?;
    let id = cim.lookup(&stored).with_context(ctx)?;
    Ok((stored, id))
}

/// Visits every entry below `start` (not `start` itself), parents before children, each
/// directory's entries in stored order; `recursive = false` visits only the direct children.
/// A directory reached twice (only possible in a damaged image) is an error, not a loop.
pub fn walk(
    cim: &Cim,
    start: &str,
    start_id: FileId,
    recursive: bool,
    visit: &mut dyn FnMut(&Entry) -> Result<()>,
) -> Result<()> {
    let mut seen_dirs: HashSet<FileId> = HashSet::new();
    seen_dirs.insert(start_id);
    // Stack of (directory path, remaining children in reverse order).
    let mut stack: Vec<(String, Vec<cimfs::DirEntry>)> = Vec::new();
    let mut children = read_dir(cim, start, start_id)?;
    children.reverse();
    stack.push((start.to_string(), children));
    while let Some((dir, entries)) = stack.last_mut() {
        let Some(child) = entries.pop() else {
            stack.pop();
            continue;
        };
        let path = join(dir, &child.name);
        let info = cim
            .file(child.file_id)
            .with_context(|| format!("{}: {path}", cim.path().display()))?;
        let entry = Entry { path, info };
        visit(&entry)?;
        if recursive && entry.info.is_directory {
            if !seen_dirs.insert(entry.info.file_id) {
                bail!(
                    "{}: {}: directory (file id {}) appears twice in the tree",
                    cim.path().display(),
                    entry.path,
                    entry.info.file_id
                );
            }
            let mut sub = read_dir(cim, &entry.path, entry.info.file_id)?;
            sub.reverse();
            stack.push((entry.path, sub));
        }
    }
    Ok(())
}

fn read_dir(cim: &Cim, path: &str, id: FileId) -> Result<Vec<cimfs::DirEntry>> {
    cim.read_dir_id(id).with_context(|| {
        format!(
            "{}: {}: reading directory",
            cim.path().display(),
            display(path)
        )
    })
}

/// A path inside an image as text output shows it: the root as `\`, control and other
/// invisible characters as `?` (see [`output::shown`]).
pub fn display(path: &str) -> std::borrow::Cow<'_, str> {
    if path.is_empty() {
        "\\".into()
    } else {
        crate::output::shown(path)
    }
}
