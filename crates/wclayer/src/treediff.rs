//! Path-by-path comparison of two CIM trees: data byte by byte, metadata field by field, and
//! hard-link groups. `cimkit diff` reports what it finds; layer export of a fork writes it.
//! Paths match case-insensitively, upcased with each image's own table, as cimfs looks them up.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use cimfs::{Cim, FileId, FileInfo};

use crate::backuptar::IO_REPARSE_TAG_SYMLINK;

/// Why a tree could not be read or compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Reading the image failed (the cimfs error names the image, object and offset).
    #[error("{image}: {path}: {source}")]
    Cim {
        /// The `.cim` file.
        image: String,
        /// The path inside the image being read.
        path: String,
        /// The CIM library's error.
        #[source]
        source: Box<cimfs::Error>,
    },
    /// Reading a stream of the image failed.
    #[error("{image}: {path}: {source}")]
    Io {
        /// The `.cim` file.
        image: String,
        /// The path inside the image whose stream was read.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A directory is reached twice (only in a damaged image).
    #[error("{image}: {path}: directory (file id {file_id}) appears twice in the tree")]
    DirectoryTwice {
        /// The `.cim` file.
        image: String,
        /// The path at which the directory was reached the second time.
        path: String,
        /// The directory's file id.
        file_id: FileId,
    },
}

/// One path of a tree.
#[derive(Clone, Debug)]
pub struct TreeEntry {
    /// Backslash path from the root as stored, without a leading backslash (`Files\a.txt`).
    pub path: String,
    /// The path as compared: upcased with the image's table.
    pub key: String,
    /// Its metadata (file id, attributes, times, SD, EAs, reparse data, size).
    pub info: FileInfo,
    /// Keys of every path naming the same file (sorted, this one included) when a file has more
    /// than one name; empty otherwise and for directories.
    pub link_group: Vec<String>,
}

/// Every path of an image below the root, parents before children, each directory's entries
/// in stored order.
#[derive(Debug, Default)]
pub struct Tree {
    entries: Vec<TreeEntry>,
    index: HashMap<String, usize>,
}

/// What differs between two entries of the same path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// File, directory, symlink or other reparse point.
    Type,
    /// The default stream's size.
    Size,
    /// The default stream's bytes.
    Data,
    /// The Win32 attributes.
    Attributes,
    /// Any of the four timestamps.
    Times,
    /// The security descriptor.
    Sd,
    /// The extended attributes.
    Ea,
    /// The reparse data.
    Reparse,
    /// Alternate data streams: names, sizes or bytes.
    Streams,
    /// The set of paths naming the same file (hard links).
    Links,
}

impl Change {
    /// The word `cimkit diff` prints for it.
    pub fn name(self) -> &'static str {
        match self {
            Change::Type => "type",
            Change::Size => "size",
            Change::Data => "data",
            Change::Attributes => "attributes",
            Change::Times => "times",
            Change::Sd => "sd",
            Change::Ea => "ea",
            Change::Reparse => "reparse",
            Change::Streams => "streams",
            Change::Links => "links",
        }
    }
}

/// What to leave out of a comparison.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompareOptions {
    /// Do not compare the four timestamps.
    pub ignore_times: bool,
    /// Do not compare hard-link groups.
    pub ignore_links: bool,
}

/// One difference between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// In the new tree only (its path there).
    Added(String),
    /// In the old tree only (its path there).
    Removed(String),
    /// In both (the new tree's path), with what differs.
    Changed(String, Vec<Change>),
}

fn cim_err(cim: &Cim, path: &str) -> impl FnOnce(cimfs::Error) -> CompareError {
    let (image, path) = (cim.path().display().to_string(), path.to_string());
    move |source| CompareError::Cim {
        image,
        path,
        source: Box::new(source),
    }
}

fn io_err(cim: &Cim, path: &str) -> impl FnOnce(io::Error) -> CompareError {
    let (image, path) = (cim.path().display().to_string(), path.to_string());
    move |source| CompareError::Io {
        image,
        path,
        source,
    }
}

/// A path as `cim` compares it: each UTF-16 unit through the image's upcase table.
pub fn path_key(cim: &Cim, path: &str) -> String {
    let table = cim.upcase_table();
    let units: Vec<u16> = path
        .encode_utf16()
        .map(|c| table.get(usize::from(c)).copied().unwrap_or(c))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The key of the directory holding `key` ("" for the root's children).
pub fn parent_key(key: &str) -> &str {
    key.rsplit_once('\\').map_or("", |(d, _)| d)
}

impl Tree {
    /// Reads every path of `cim` (its merged view, parents included).
    pub fn read(cim: &Cim) -> Result<Tree, CompareError> {
        let mut tree = Tree::default();
        let mut groups: HashMap<FileId, Vec<usize>> = HashMap::new();
        let mut seen_dirs: HashSet<FileId> = HashSet::new();
        seen_dirs.insert(cim.root());
        let read_dir = |id: FileId| {
            cim.read_dir_id(id).map(|mut v| {
                v.reverse();
                v
            })
        };
        let root = read_dir(cim.root()).map_err(cim_err(cim, "\\"))?;
        // Stack of (directory path, its remaining children in reverse order).
        let mut stack: Vec<(String, Vec<cimfs::DirEntry>)> = vec![(String::new(), root)];
        while let Some((dir, children)) = stack.last_mut() {
            let Some(child) = children.pop() else {
                stack.pop();
                continue;
            };
            let path = if dir.is_empty() {
                child.name.clone()
            } else {
                format!("{dir}\\{}", child.name)
            };
            let info = cim.file(child.file_id).map_err(cim_err(cim, &path))?;
            let key = path_key(cim, &path);
            let i = tree.entries.len();
            if info.is_directory {
                if !seen_dirs.insert(info.file_id) {
                    return Err(CompareError::DirectoryTwice {
                        image: cim.path().display().to_string(),
                        path,
                        file_id: info.file_id,
                    });
                }
                let sub = read_dir(info.file_id).map_err(cim_err(cim, &path))?;
                stack.push((path.clone(), sub));
            } else {
                groups.entry(info.file_id).or_default().push(i);
            }
            tree.index.insert(key.clone(), i);
            tree.entries.push(TreeEntry {
                path,
                key,
                info,
                link_group: Vec::new(),
            });
        }
        for members in groups.into_values() {
            if members.len() < 2 {
                continue;
            }
            let mut keys: Vec<String> = members
                .iter()
                .filter_map(|&i| tree.entries.get(i).map(|e| e.key.clone()))
                .collect();
            keys.sort();
            for &i in &members {
                if let Some(e) = tree.entries.get_mut(i) {
                    e.link_group = keys.clone();
                }
            }
        }
        Ok(tree)
    }

    /// Every entry, parents before children.
    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// The entry whose key is `key`.
    pub fn get(&self, key: &str) -> Option<&TreeEntry> {
        self.index.get(key).and_then(|&i| self.entries.get(i))
    }

    /// The index in [`Tree::entries`] of the entry whose key is `key`.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The keys of the paths naming the same file as `e` (at least `e`'s own).
    pub fn names_of<'t>(&self, e: &'t TreeEntry) -> Vec<&'t str> {
        if e.link_group.is_empty() {
            vec![e.key.as_str()]
        } else {
            e.link_group.iter().map(String::as_str).collect()
        }
    }
}

/// File, directory, symlink or other reparse point (what `cimkit ls` shows as the type).
fn kind(info: &FileInfo) -> (u8, bool) {
    let k = if !info.reparse_data.is_empty() || info.reparse_tag != 0 {
        if info.reparse_tag == IO_REPARSE_TAG_SYMLINK {
            1
        } else {
            2
        }
    } else if info.is_directory {
        3
    } else {
        4
    };
    (k, info.is_directory)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// True when a stream of file `ia` in `a` holds the same bytes as the same stream of `ib` in
/// `b`; streams stored at the same place (a fork and its parent) are not read.
fn same_stream(
    a: &Cim,
    ia: FileId,
    b: &Cim,
    ib: FileId,
    stream: Option<&str>,
    path: &str,
) -> Result<bool, CompareError> {
    let mut ra = a.open_id(ia, stream).map_err(cim_err(a, path))?;
    let mut rb = b.open_id(ib, stream).map_err(cim_err(b, path))?;
    if ra.len() != rb.len() {
        return Ok(false);
    }
    if ra.same_stored_bytes(&rb) {
        return Ok(true);
    }
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut ra, &mut ba).map_err(io_err(a, path))?;
        let m = read_full(&mut rb, &mut bb).map_err(io_err(b, path))?;
        if n != m || ba.get(..n) != bb.get(..m) {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// What differs between entry `ea` of image `a` and entry `eb` of image `b` (the same path);
/// empty when nothing does. A type change is reported alone.
pub fn compare_entries(
    a: &Cim,
    ea: &TreeEntry,
    b: &Cim,
    eb: &TreeEntry,
    opts: &CompareOptions,
) -> Result<Vec<Change>, CompareError> {
    let (x, y) = (&ea.info, &eb.info);
    let mut what = Vec::new();
    if kind(x) != kind(y) {
        what.push(Change::Type);
        return Ok(what);
    }
    if !x.is_directory {
        if x.size != y.size {
            what.push(Change::Size);
        }
        if x.size != y.size || !same_stream(a, x.file_id, b, y.file_id, None, &ea.path)? {
            what.push(Change::Data);
        }
    }
    if x.attributes != y.attributes {
        what.push(Change::Attributes);
    }
    let times = |i: &FileInfo| {
        (
            i.creation_time,
            i.last_write_time,
            i.change_time,
            i.last_access_time,
        )
    };
    if !opts.ignore_times && times(x) != times(y) {
        what.push(Change::Times);
    }
    if x.security_descriptor != y.security_descriptor {
        what.push(Change::Sd);
    }
    if x.extended_attributes != y.extended_attributes {
        what.push(Change::Ea);
    }
    if x.reparse_data != y.reparse_data {
        what.push(Change::Reparse);
    }
    // Directories and reparse points can have alternate streams too.
    let mut streams_a = a.streams_id(x.file_id).map_err(cim_err(a, &ea.path))?;
    let mut streams_b = b.streams_id(y.file_id).map_err(cim_err(b, &eb.path))?;
    streams_a.sort_by_key(|s| path_key(a, &s.name));
    streams_b.sort_by_key(|s| path_key(b, &s.name));
    let mut same = streams_a.len() == streams_b.len();
    if same {
        for (p, q) in streams_a.iter().zip(&streams_b) {
            if path_key(a, &p.name) != path_key(b, &q.name)
                || p.size != q.size
                || !same_stream(a, x.file_id, b, y.file_id, Some(&p.name), &ea.path)?
            {
                same = false;
                break;
            }
        }
    }
    if !same {
        what.push(Change::Streams);
    }
    if !x.is_directory && !opts.ignore_links && ea.link_group != eb.link_group {
        what.push(Change::Links);
    }
    Ok(what)
}

/// Every difference from tree `ta` of image `a` (old) to tree `tb` of image `b` (new): removed
/// and changed paths in `a`'s order, then added paths in `b`'s order. The root is not compared.
pub fn diff_trees(
    a: &Cim,
    ta: &Tree,
    b: &Cim,
    tb: &Tree,
    opts: &CompareOptions,
) -> Result<Vec<Difference>, CompareError> {
    let mut out = Vec::new();
    for ea in ta.entries() {
        match tb.get(&ea.key) {
            None => out.push(Difference::Removed(ea.path.clone())),
            Some(eb) => {
                let what = compare_entries(a, ea, b, eb, opts)?;
                if !what.is_empty() {
                    out.push(Difference::Changed(eb.path.clone(), what));
                }
            }
        }
    }
    for eb in tb.entries() {
        if ta.get(&eb.key).is_none() {
            out.push(Difference::Added(eb.path.clone()));
        }
    }
    Ok(out)
}
