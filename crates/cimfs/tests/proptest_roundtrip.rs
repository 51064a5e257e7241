//! Property test: random operation sequences (dirs, deep directory chains, files of 0 bytes to
//! 20 MiB written fully, partly or not at all, Unicode and case-colliding names, ADS of up to
//! 100 KiB on files, directories and the root, hard links, removes of files, links and streams,
//! replacement of files that have streams or other names, empty mount-point directories,
//! SD/EA/reparse blobs), in a chain of up to four images (a base and forks), are applied to the
//! writer and to an in-memory model; every image must read back exactly as the model was when it
//! was committed.
//!
//! 24 cases by default (a few seconds in release); set PROPTEST_CASES for more.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use cimfs::{format, Cim, CimWriter, FileId, FileMetadata};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Meta {
    attributes: u32,
    times: [u64; 4],
    sd: Vec<u8>,
    ea: Vec<u8>,
    reparse: Vec<u8>,
}

#[derive(Clone, Debug)]
enum Name {
    Fresh(String),
    /// The name of an existing child of the same parent with its case flipped.
    CaseOf(usize),
}

/// How much of a declared stream size is given through `write`; the rest must read as zeros.
#[derive(Clone, Copy, Debug)]
enum Fill {
    All,
    /// No bytes at all: the writer stores a sparse stream with no backing data.
    Nothing,
    /// `size * k / 65536` bytes (0 for small sizes, which is `Nothing` again).
    Part(u16),
}

impl Fill {
    fn written(self, size: usize) -> usize {
        match self {
            Fill::All => size,
            Fill::Nothing => 0,
            Fill::Part(k) => (size as u64 * u64::from(k) / 65536) as usize,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Dir {
        parent: usize,
        name: Name,
        meta: Meta,
    },
    File {
        parent: usize,
        name: Name,
        size: usize,
        fill: Fill,
        seed: u8,
        meta: Meta,
    },
    /// An alternate stream on a file, or (`on_dir`) on a directory or the root.
    Ads {
        target: usize,
        on_dir: bool,
        name: String,
        size: usize,
        fill: Fill,
        seed: u8,
    },
    Link {
        parent: usize,
        name: Name,
        file: usize,
    },
    Remove {
        target: usize,
    },
    /// A chain of `names.len()` nested directories under an existing one, with a file at the bottom.
    Nest {
        parent: usize,
        names: Vec<String>,
        size: usize,
        seed: u8,
    },
    /// Adds a new file over one name of an existing file, one with streams if there is one: the
    /// name gets a file without streams, other names of the old file keep it and its streams.
    Replace {
        file: usize,
        size: usize,
        fill: Fill,
        seed: u8,
        meta: Meta,
    },
    /// Removes one name of a file that has several (linking one first, `parent`/`name`/`file` as
    /// in `Link`, when none has): the other names keep the file and its data.
    RemoveLinked {
        which: usize,
        parent: usize,
        name: Name,
        file: usize,
    },
    /// Removes one alternate stream (of a file or directory that has one), named with its case
    /// flipped when that names the same stream, with or without the ":$DATA" suffix.
    RemoveStream {
        target: usize,
        which: usize,
        flip: bool,
        suffix: bool,
    },
    /// An empty directory that is a mount point: attributes DIRECTORY|REPARSE_POINT (plus
    /// `attributes`) and an IO_REPARSE_TAG_MOUNT_POINT buffer aimed at `C:\target`. Whatever
    /// held the name is removed first, and no operation adds entries under it.
    MountPoint {
        parent: usize,
        name: String,
        target: String,
        attributes: u32,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    Dir(BTreeMap<Vec<u16>, (String, usize)>),
    /// `size` bytes declared, the first `written` of them given (pattern `seed`), the rest zeros.
    File {
        size: usize,
        seed: u8,
        written: usize,
    },
}

/// An alternate stream in the model: its name as given and its content, as for `Kind::File`.
#[derive(Clone, Debug)]
struct Stream {
    name: String,
    size: usize,
    seed: u8,
    written: usize,
}

#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    meta: Meta,
    ads: BTreeMap<Vec<u16>, Stream>,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: Vec<Node>,
}

const IO_REPARSE_TAG_MOUNT_POINT: u32 = 0xA000_0003;

/// Reparse tag bit of name surrogates (symlinks, mount points).
const NAME_SURROGATE: u32 = 0x2000_0000;

/// The tag (first 4 bytes) of a reparse buffer, 0 for none.
fn reparse_tag(buf: &[u8]) -> u32 {
    buf.get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A REPARSE_DATA_BUFFER for a mount point (junction) to `C:\<target>`: tag, data length,
/// reserved, then MountPointReparseBuffer (substitute name `\??\C:\<target>` and print name
/// `C:\<target>`, each NUL-terminated, offsets and lengths in bytes without the NUL).
fn mount_point_buffer(target: &str) -> Vec<u8> {
    let utf16 = |s: String| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let substitute = utf16(format!("\\??\\C:\\{target}"));
    let print = utf16(format!("C:\\{target}"));
    let print_offset = substitute.len() + 2;
    let path_buffer_len = print_offset + print.len() + 2;
    let mut b = Vec::new();
    b.extend_from_slice(&IO_REPARSE_TAG_MOUNT_POINT.to_le_bytes());
    b.extend_from_slice(&((8 + path_buffer_len) as u16).to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    for v in [0, substitute.len(), print_offset, print.len()] {
        b.extend_from_slice(&(v as u16).to_le_bytes());
    }
    b.extend_from_slice(&substitute);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&print);
    b.extend_from_slice(&[0, 0]);
    b
}

fn key(s: &str) -> Vec<u16> {
    upcase::upcase_units(s)
}

fn byte_at(seed: u8, i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ seed
}

fn fill(seed: u8, offset: usize, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(seed, offset + k);
    }
}

fn flip_case(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_lowercase() {
                c.to_uppercase().collect::<Vec<_>>()
            } else {
                c.to_lowercase().collect::<Vec<_>>()
            }
        })
        .collect()
}

impl Model {
    fn new() -> Model {
        let meta = Meta {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY,
            times: [0; 4],
            sd: vec![],
            ea: vec![],
            reparse: vec![],
        };
        Model {
            nodes: vec![Node {
                kind: Kind::Dir(BTreeMap::new()),
                meta,
                ads: BTreeMap::new(),
            }],
        }
    }

    /// (path, node, parent node) of every reachable entry, depth first in link-table order.
    fn entries(&self) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, String::new())];
        while let Some((n, path)) = stack.pop() {
            if let Kind::Dir(children) = &self.nodes[n].kind {
                for (name, child) in children.values().rev() {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}\\{name}")
                    };
                    out.push((p.clone(), *child, n));
                    stack.push((*child, p));
                }
            }
        }
        out
    }

    fn dirs(&self) -> Vec<(String, usize)> {
        let mut v = vec![(String::new(), 0)];
        v.extend(
            self.entries()
                .into_iter()
                .filter(|e| matches!(self.nodes[e.1].kind, Kind::Dir(_)))
                .map(|e| (e.0, e.1)),
        );
        v
    }

    /// Directories new entries may go into: all but name-surrogate reparse points (mount points,
    /// symlinks), which NTFS keeps empty and `verify` reports when they are not.
    fn parent_dirs(&self) -> Vec<(String, usize)> {
        self.dirs()
            .into_iter()
            .filter(|d| reparse_tag(&self.nodes[d.1].meta.reparse) & NAME_SURROGATE == 0)
            .collect()
    }

    /// (path, node, parent node) of every name of a file that has more than one name.
    fn multi_linked(&self) -> Vec<(String, usize, usize)> {
        let entries = self.entries();
        let mut names: HashMap<usize, usize> = HashMap::new();
        for e in &entries {
            *names.entry(e.1).or_default() += 1;
        }
        entries
            .into_iter()
            .filter(|e| matches!(self.nodes[e.1].kind, Kind::File { .. }) && names[&e.1] > 1)
            .collect()
    }

    fn files(&self) -> Vec<(String, usize)> {
        self.entries()
            .into_iter()
            .filter(|e| matches!(self.nodes[e.1].kind, Kind::File { .. }))
            .map(|e| (e.0, e.1))
            .collect()
    }

    fn children(&mut self, n: usize) -> &mut BTreeMap<Vec<u16>, (String, usize)> {
        match &mut self.nodes[n].kind {
            Kind::Dir(c) => c,
            Kind::File { .. } => unreachable!("model parents are directories"),
        }
    }

    fn resolve_name(&self, parent: usize, name: &Name) -> String {
        match name {
            Name::Fresh(s) => s.clone(),
            Name::CaseOf(i) => match &self.nodes[parent].kind {
                Kind::Dir(c) if !c.is_empty() => flip_case(
                    &c.values()
                        .nth(i % c.len())
                        .map(|v| v.0.clone())
                        .unwrap_or_default(),
                ),
                _ => "x".into(),
            },
        }
    }
}

fn to_meta(m: &Meta, size: u64) -> FileMetadata {
    FileMetadata {
        attributes: m.attributes,
        size,
        creation_time: m.times[0],
        last_write_time: m.times[1],
        change_time: m.times[2],
        last_access_time: m.times[3],
        security_descriptor: m.sd.clone(),
        extended_attributes: m.ea.clone(),
        reparse_data: m.reparse.clone(),
    }
}

fn write_stream(w: &mut CimWriter, size: usize, seed: u8) {
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() - (off % 7));
        fill(seed, off, &mut buf[..n]);
        w.write(&buf[..n]).unwrap();
        off += n;
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}\\{name}")
    }
}

/// Adds a file at `dir\name` with `size` declared and `written` bytes given, in writer and model.
#[allow(clippy::too_many_arguments)]
fn add_file(
    w: &mut CimWriter,
    m: &mut Model,
    dpath: &str,
    dnode: usize,
    name: String,
    meta: &Meta,
    size: usize,
    written: usize,
    seed: u8,
) {
    let mut meta = meta.clone();
    meta.attributes &= !format::FILE_ATTRIBUTE_DIRECTORY;
    w.add(&join(dpath, &name), &to_meta(&meta, size as u64))
        .unwrap();
    write_stream(w, written, seed);
    m.nodes.push(Node {
        kind: Kind::File {
            size,
            seed,
            written,
        },
        meta,
        ads: BTreeMap::new(),
    });
    let n = m.nodes.len() - 1;
    m.children(dnode).insert(key(&name), (name, n));
}

/// Adds (or, over an existing directory, updates) directory `dir\name` in writer and model.
fn add_dir(w: &mut CimWriter, m: &mut Model, dpath: &str, dnode: usize, name: String, meta: &Meta) {
    let mut meta = meta.clone();
    meta.attributes |= format::FILE_ATTRIBUTE_DIRECTORY;
    let k = key(&name);
    let existing = m.children(dnode).get(&k).map(|e| e.1);
    let has_entries =
        existing.is_some_and(|o| matches!(&m.nodes[o].kind, Kind::Dir(c) if !c.is_empty()));
    if has_entries && reparse_tag(&meta.reparse) & NAME_SURROGATE != 0 {
        // NTFS sets no symlink or mount point on a directory with entries.
        meta.reparse.clear();
    }
    w.add(&join(dpath, &name), &to_meta(&meta, 0)).unwrap();
    match existing {
        // Re-adding an existing directory keeps its entries and streams, updates its metadata.
        Some(old) if matches!(m.nodes[old].kind, Kind::Dir(_)) => {
            m.nodes[old].meta = meta;
            m.children(dnode).insert(k, (name, old));
        }
        _ => {
            m.nodes.push(Node {
                kind: Kind::Dir(BTreeMap::new()),
                meta,
                ads: BTreeMap::new(),
            });
            let n = m.nodes.len() - 1;
            m.children(dnode).insert(k, (name, n));
        }
    }
}

fn apply(w: &mut CimWriter, m: &mut Model, op: &Op) {
    match op {
        Op::Dir { parent, name, meta } => {
            let dirs = m.parent_dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let name = m.resolve_name(dnode, name);
            add_dir(w, m, &dpath, dnode, name, meta);
        }
        Op::MountPoint {
            parent,
            name,
            target,
            attributes,
        } => {
            let dirs = m.parent_dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let meta = Meta {
                attributes: attributes
                    | format::FILE_ATTRIBUTE_DIRECTORY
                    | format::FILE_ATTRIBUTE_REPARSE_POINT,
                times: [3; 4],
                sd: vec![],
                ea: vec![],
                reparse: mount_point_buffer(target),
            };
            // Adding a directory over an existing one keeps its entries; a mount point is to be
            // empty, so whatever holds the name goes first.
            if m.children(dnode).remove(&key(name)).is_some() {
                w.remove(&join(&dpath, name)).unwrap();
            }
            add_dir(w, m, &dpath, dnode, name.clone(), &meta);
        }
        Op::File {
            parent,
            name,
            size,
            fill,
            seed,
            meta,
        } => {
            let dirs = m.parent_dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let name = m.resolve_name(dnode, name);
            let written = fill.written(*size);
            add_file(w, m, &dpath, dnode, name, meta, *size, written, *seed);
        }
        Op::Replace {
            file,
            size,
            fill,
            seed,
            meta,
        } => {
            let files: Vec<(String, usize, usize)> = m
                .entries()
                .into_iter()
                .filter(|e| matches!(m.nodes[e.1].kind, Kind::File { .. }))
                .collect();
            let with_streams: Vec<_> = files
                .iter()
                .filter(|e| !m.nodes[e.1].ads.is_empty())
                .cloned()
                .collect();
            let pool = if with_streams.is_empty() {
                files
            } else {
                with_streams
            };
            if pool.is_empty() {
                return;
            }
            let (path, _, dnode) = pool[file % pool.len()].clone();
            let (dpath, name) = match path.rsplit_once('\\') {
                Some((d, n)) => (d.to_string(), n.to_string()),
                None => (String::new(), path.clone()),
            };
            let written = fill.written(*size);
            add_file(w, m, &dpath, dnode, name, meta, *size, written, *seed);
        }
        Op::Ads {
            target,
            on_dir,
            name,
            size,
            fill,
            seed,
        } => {
            let targets = if *on_dir { m.dirs() } else { m.files() };
            if targets.is_empty() {
                return;
            }
            let (path, node) = targets[target % targets.len()].clone();
            // The writer accepts streams on directories (NTFS has them); the root is path "".
            w.add_alternate_stream(&format!("{path}:{name}:$DATA"), *size as u64)
                .unwrap();
            let written = fill.written(*size);
            write_stream(w, written, *seed);
            m.nodes[node].ads.insert(
                key(name),
                Stream {
                    name: name.clone(),
                    size: *size,
                    seed: *seed,
                    written,
                },
            );
        }
        Op::RemoveStream {
            target,
            which,
            flip,
            suffix,
        } => {
            let with: Vec<(String, usize)> = m
                .dirs()
                .into_iter()
                .chain(m.files())
                .filter(|t| !m.nodes[t.1].ads.is_empty())
                .collect();
            if with.is_empty() {
                return;
            }
            let (path, node) = with[target % with.len()].clone();
            let ads = &m.nodes[node].ads;
            let k = ads.keys().nth(which % ads.len()).unwrap().clone();
            let mut sname = ads[&k].name.clone();
            if *flip && key(&flip_case(&sname)) == k {
                sname = flip_case(&sname);
            }
            let spec = if *suffix {
                format!("{path}:{sname}:$DATA")
            } else {
                format!("{path}:{sname}")
            };
            w.remove(&spec).unwrap();
            m.nodes[node].ads.remove(&k);
        }
        Op::Link { parent, name, file } => {
            let files = m.files();
            if files.is_empty() {
                return;
            }
            let (fpath, fnode) = files[file % files.len()].clone();
            let dirs = m.parent_dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let name = m.resolve_name(dnode, name);
            w.add_link(&join(&dpath, &name), &fpath).unwrap();
            let k = key(&name);
            if m.children(dnode).get(&k).map(|e| e.1) != Some(fnode) {
                m.children(dnode).insert(k, (name, fnode));
            }
        }
        Op::Nest {
            parent,
            names,
            size,
            seed,
        } => {
            let dirs = m.parent_dirs();
            let (mut dpath, mut dnode) = dirs[parent % dirs.len()].clone();
            let dir_meta = Meta {
                attributes: format::FILE_ATTRIBUTE_DIRECTORY,
                times: [7; 4],
                sd: vec![],
                ea: vec![],
                reparse: vec![],
            };
            for name in names {
                let path = join(&dpath, name);
                // Stop where the path would pass the 32,767-unit limit the writer enforces.
                if path.encode_utf16().count() + 300 > format::MAX_PATH_UNITS {
                    break;
                }
                add_dir(w, m, &dpath, dnode, name.clone(), &dir_meta);
                dpath = path;
                dnode = m.children(dnode)[&key(name)].1;
            }
            let file_meta = Meta {
                attributes: 0,
                ..dir_meta
            };
            add_file(
                w,
                m,
                &dpath,
                dnode,
                "leaf".into(),
                &file_meta,
                *size,
                *size,
                *seed,
            );
        }
        Op::Remove { target } => {
            let entries = m.entries();
            if entries.is_empty() {
                return;
            }
            let (path, _, parent) = entries[target % entries.len()].clone();
            w.remove(&path).unwrap();
            let last = path.rsplit('\\').next().unwrap_or(&path).to_string();
            m.children(parent).remove(&key(&last));
        }
        Op::RemoveLinked {
            which,
            parent,
            name,
            file,
        } => {
            if m.multi_linked().is_empty() {
                let link = Op::Link {
                    parent: *parent,
                    name: name.clone(),
                    file: *file,
                };
                apply(w, m, &link);
            }
            let linked = m.multi_linked();
            if linked.is_empty() {
                return;
            }
            let (path, _, dnode) = linked[which % linked.len()].clone();
            w.remove(&path).unwrap();
            let last = path.rsplit('\\').next().unwrap_or(&path).to_string();
            m.children(dnode).remove(&key(&last));
        }
    }
}

fn read_all(cim: &Cim, id: FileId, stream: Option<&str>) -> Vec<u8> {
    let mut v = Vec::new();
    cim.open_id(id, stream)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

/// Where `got` differs from `size` bytes whose first `written` follow pattern `seed` and the rest
/// are zeros, if anywhere.
fn content_mismatch(got: &[u8], size: usize, written: usize, seed: u8) -> Option<String> {
    if got.len() != size {
        return Some(format!("{} bytes read, {size} expected", got.len()));
    }
    let at = got.iter().enumerate().position(|(i, &b)| {
        let want = if i < written { byte_at(seed, i) } else { 0 };
        b != want
    })?;
    Some(format!(
        "byte {at} of {size} ({written} written) is {:#x}",
        got[at]
    ))
}

/// Checks one file or directory (metadata, default stream, alternate streams) against node `n`.
fn check_node(cim: &Cim, m: &Model, n: usize, id: FileId, name: &str) -> Result<(), TestCaseError> {
    let node = &m.nodes[n];
    let info = cim.file(id).unwrap();
    let mm = &node.meta;
    let mut attrs =
        mm.attributes & (format::REPRESENTABLE_ATTRIBUTES & !format::FILE_ATTRIBUTE_REPARSE_POINT);
    if !mm.reparse.is_empty() {
        attrs |= format::FILE_ATTRIBUTE_REPARSE_POINT;
    }
    prop_assert_eq!(info.attributes, attrs, "{}", name);
    prop_assert_eq!(
        [
            info.creation_time,
            info.last_write_time,
            info.change_time,
            info.last_access_time
        ],
        mm.times
    );
    let sd = if mm.sd.is_empty() {
        format::NULL_DACL_SD.to_vec()
    } else {
        mm.sd.clone()
    };
    prop_assert_eq!(&info.security_descriptor, &sd);
    prop_assert_eq!(&info.extended_attributes, &mm.ea);
    prop_assert_eq!(&info.reparse_data, &mm.reparse);
    prop_assert_eq!(info.reparse_tag, reparse_tag(&mm.reparse));
    match &node.kind {
        Kind::Dir(children) => {
            prop_assert!(info.is_directory);
            prop_assert!(!info.sparse);
            if info.reparse_tag == IO_REPARSE_TAG_MOUNT_POINT {
                // No operation puts entries under a mount point.
                prop_assert!(children.is_empty(), "{}", name);
                prop_assert!(cim.read_dir_id(id).unwrap().is_empty(), "{}", name);
            }
        }
        Kind::File {
            size,
            seed,
            written,
        } => {
            prop_assert!(!info.is_directory);
            prop_assert_eq!(info.size, *size as u64);
            // FORMAT-CHOICES.md: declared size > 0 with no bytes written is stored sparse.
            prop_assert_eq!(info.sparse, *size > 0 && *written == 0, "{}", name);
            let got = read_all(cim, id, None);
            if let Some(why) = content_mismatch(&got, *size, *written, *seed) {
                prop_assert!(false, "content of {}: {}", name, why);
            }
        }
    }
    let streams = cim.streams_id(id).unwrap();
    let want: Vec<(&String, u64)> = node
        .ads
        .values()
        .map(|a| (&a.name, a.size as u64))
        .collect();
    let got: Vec<(&String, u64)> = streams.iter().map(|s| (&s.name, s.size)).collect();
    prop_assert_eq!(got, want, "streams of {}", name);
    for a in node.ads.values() {
        let got = read_all(cim, id, Some(&a.name));
        if let Some(why) = content_mismatch(&got, a.size, a.written, a.seed) {
            prop_assert!(false, "stream {}:{}: {}", name, a.name, why);
        }
    }
    Ok(())
}

fn check(cim_path: &Path, m: &Model) -> Result<(), TestCaseError> {
    let cim = Cim::open(cim_path).unwrap();
    let mut ids: HashMap<usize, FileId> = HashMap::new();
    let mut by_id: HashMap<FileId, usize> = HashMap::new();
    check_node(&cim, m, 0, cim.root(), "\\")?;
    let mut stack = vec![(0usize, cim.root())];
    while let Some((n, id)) = stack.pop() {
        let Kind::Dir(children) = &m.nodes[n].kind else {
            unreachable!()
        };
        let listed = cim.read_dir_id(id).unwrap();
        let want: Vec<&String> = children.values().map(|v| &v.0).collect();
        let got: Vec<&String> = listed.iter().map(|e| &e.name).collect();
        prop_assert_eq!(got, want);
        for ((_, (name, child)), e) in children.iter().zip(listed.iter()) {
            // Hard links: one model node <-> one file id.
            prop_assert_eq!(
                *ids.entry(*child).or_insert(e.file_id),
                e.file_id,
                "{}",
                name
            );
            prop_assert_eq!(
                *by_id.entry(e.file_id).or_insert(*child),
                *child,
                "{}",
                name
            );
            check_node(&cim, m, *child, e.file_id, name)?;
            if matches!(m.nodes[*child].kind, Kind::Dir(_)) && !stack.iter().any(|s| s.0 == *child)
            {
                stack.push((*child, e.file_id));
            }
        }
    }
    // Every path (deep chains included) resolves, by binary search per level, to the id the walk saw.
    for (path, node, _) in m.entries() {
        prop_assert_eq!(
            Some(&cim.lookup(&path).unwrap()),
            ids.get(&node),
            "{}",
            path
        );
    }
    let problems = cimfs::verify::verify(cim_path);
    prop_assert!(problems.is_empty(), "{:?}", problems);
    Ok(())
}

fn name_strategy() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        8 => "[a-z]",
        4 => "[A-Z]",
        2 => "[0-9 ._-]",
        1 => Just("ä".to_string()),
        1 => Just("Ä".to_string()),
        1 => Just("ß".to_string()),
        1 => Just("σ".to_string()),
        1 => Just("Σ".to_string()),
        1 => Just("ς".to_string()),
        1 => Just("ǅ".to_string()),
        1 => Just("😀".to_string()),
        1 => Just("𐐀".to_string()),
        1 => Just("𐐨".to_string()),
    ];
    prop_oneof![
        20 => proptest::collection::vec(ch, 1..10).prop_map(|v| v.concat()),
        1 => "[a-zA-Z]{250,255}",
    ]
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

/// Empty, or a self-relative SD with an owner SID of random sub-authorities and a DACL of random bytes.
fn sd_strategy() -> impl Strategy<Value = Vec<u8>> {
    let sd = (
        proptest::collection::vec(any::<u32>(), 0..5),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(subs, acl_body)| {
            let mut sd = vec![1u8, 0, 0x04, 0x80];
            let owner = 20u32;
            let dacl = owner + 8 + 4 * subs.len() as u32;
            sd.extend_from_slice(&owner.to_le_bytes());
            sd.extend_from_slice(&[0; 8]);
            sd.extend_from_slice(&dacl.to_le_bytes());
            sd.extend_from_slice(&[1, subs.len() as u8, 0, 0, 0, 0, 0, 5]);
            for s in &subs {
                sd.extend_from_slice(&s.to_le_bytes());
            }
            sd.extend_from_slice(&[2, 0]);
            sd.extend_from_slice(&((8 + acl_body.len()) as u16).to_le_bytes());
            sd.extend_from_slice(&[0, 0, 0, 0]);
            sd.extend_from_slice(&acl_body);
            sd
        });
    prop_oneof![2 => Just(Vec::new()), 1 => sd]
}

/// Empty, or a FILE_FULL_EA_INFORMATION chain of 1-3 entries with random names and values.
fn ea_strategy() -> impl Strategy<Value = Vec<u8>> {
    let entry = ("[A-Z]{1,8}", proptest::collection::vec(any::<u8>(), 0..20));
    let chain = proptest::collection::vec(entry, 1..4).prop_map(|entries| {
        let mut out = Vec::new();
        let n = entries.len();
        for (i, (name, value)) in entries.into_iter().enumerate() {
            let mut e = vec![0u8, 0, 0, 0, 0, name.len() as u8];
            e.extend_from_slice(&(value.len() as u16).to_le_bytes());
            e.extend_from_slice(name.as_bytes());
            e.push(0);
            e.extend_from_slice(&value);
            if i + 1 < n {
                while e.len() & 3 != 0 {
                    e.push(0);
                }
                let next = e.len() as u32;
                e[..4].copy_from_slice(&next.to_le_bytes());
            }
            out.extend_from_slice(&e);
        }
        out
    });
    prop_oneof![2 => Just(Vec::new()), 1 => chain]
}

fn meta_strategy() -> impl Strategy<Value = Meta> {
    let attrs = proptest::sample::subsequence(
        vec![
            format::FILE_ATTRIBUTE_READONLY,
            format::FILE_ATTRIBUTE_HIDDEN,
            format::FILE_ATTRIBUTE_SYSTEM,
            format::FILE_ATTRIBUTE_ARCHIVE,
            format::FILE_ATTRIBUTE_SPARSE_FILE,
            0x80,   // NORMAL: not representable, must be dropped
            0x2000, // NOT_CONTENT_INDEXED: likewise
            // REPARSE_POINT: read back only when there is a reparse buffer.
            format::FILE_ATTRIBUTE_REPARSE_POINT,
        ],
        0..4,
    )
    .prop_map(|v| v.into_iter().fold(0, |a, b| a | b));
    let reparse =
        prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(any::<u8>(), 8..64)];
    (
        attrs,
        any::<[u64; 4]>(),
        sd_strategy(),
        ea_strategy(),
        reparse,
    )
        .prop_map(|(attributes, times, sd, ea, reparse)| Meta {
            attributes,
            times,
            sd,
            ea,
            reparse,
        })
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        10 => 0usize..64,
        6 => 64usize..5000,
        1 => Just(4095usize),
        1 => Just(4096usize),
        1 => Just(4097usize),
        2 => 5000usize..300_000,
        1 => prop_oneof![1_000_000usize..3_000_000, Just(20 << 20)],
    ]
}

fn name_or_case() -> impl Strategy<Value = Name> {
    prop_oneof![4 => name_strategy().prop_map(Name::Fresh), 1 => any::<usize>().prop_map(Name::CaseOf)]
}

/// Alternate stream sizes: mostly small-region streams, some of a page or more (data region).
fn ads_size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..64,
        4 => 64usize..4096,
        1 => Just(4095usize),
        1 => Just(4096usize),
        1 => Just(4097usize),
        3 => 4097usize..=100 << 10,
    ]
}

fn fill_strategy() -> impl Strategy<Value = Fill> {
    prop_oneof![
        6 => Just(Fill::All),
        1 => Just(Fill::Nothing),
        2 => (1u16..).prop_map(Fill::Part),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), name_or_case(), meta_strategy()).prop_map(|(parent, name, meta)| Op::Dir { parent, name, meta }),
        8 => (any::<usize>(), name_or_case(), size_strategy(), fill_strategy(), 0u8..4, meta_strategy())
            .prop_map(|(parent, name, size, fill, seed, meta)| Op::File { parent, name, size, fill, seed, meta }),
        3 => (any::<usize>(), proptest::bool::weighted(0.3), name_strategy(), ads_size_strategy(), fill_strategy(), 0u8..4)
            .prop_map(|(target, on_dir, name, size, fill, seed)| Op::Ads { target, on_dir, name, size, fill, seed }),
        2 => (any::<usize>(), name_or_case(), any::<usize>()).prop_map(|(parent, name, file)| Op::Link { parent, name, file }),
        2 => any::<usize>().prop_map(|target| Op::Remove { target }),
        1 => (any::<usize>(), proptest::collection::vec(name_strategy(), 10..70), 0usize..5000, 0u8..4)
            .prop_map(|(parent, names, size, seed)| Op::Nest { parent, names, size, seed }),
        2 => (any::<usize>(), size_strategy(), fill_strategy(), 0u8..4, meta_strategy())
            .prop_map(|(file, size, fill, seed, meta)| Op::Replace { file, size, fill, seed, meta }),
        1 => (any::<usize>(), any::<usize>(), name_or_case(), any::<usize>())
            .prop_map(|(which, parent, name, file)| Op::RemoveLinked { which, parent, name, file }),
        1 => (any::<usize>(), any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(target, which, flip, suffix)| Op::RemoveStream { target, which, flip, suffix }),
        1 => (any::<usize>(), name_strategy(), name_strategy(), proptest::sample::subsequence(
                vec![format::FILE_ATTRIBUTE_READONLY, format::FILE_ATTRIBUTE_HIDDEN, format::FILE_ATTRIBUTE_SYSTEM, format::FILE_ATTRIBUTE_ARCHIVE],
                0..3,
            ))
            .prop_map(|(parent, name, target, attrs)| Op::MountPoint { parent, name, target, attributes: attrs.into_iter().fold(0, |a, b| a | b) }),
    ]
}

/// 24 cases and 64 shrink steps unless PROPTEST_CASES / PROPTEST_MAX_SHRINK_ITERS say otherwise
/// (`ProptestConfig::default()` reads them).
fn config() -> ProptestConfig {
    let d = ProptestConfig::default();
    let set = |v: &str| std::env::var_os(v).is_some();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") { d.cases } else { 24 },
        max_shrink_iters: if set("PROPTEST_MAX_SHRINK_ITERS") {
            d.max_shrink_iters
        } else {
            64
        },
        ..d
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn roundtrip_with_forks(stages in proptest::collection::vec(proptest::collection::vec(op_strategy(), 0..30), 1..5)) {
        let t = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut snapshots = Vec::new();
        for (i, ops) in stages.iter().enumerate() {
            let name = format!("img{i}.cim");
            let mut w = if i == 0 {
                CimWriter::create(t.path(), &name).unwrap()
            } else {
                CimWriter::fork(t.path(), &format!("img{}.cim", i - 1), &name).unwrap()
            };
            for op in ops {
                apply(&mut w, &mut model, op);
            }
            w.commit().unwrap();
            snapshots.push((name, model.clone()));
        }
        for (name, m) in &snapshots {
            check(&t.path().join(name), m)?;
        }
    }
}

/// The generator's mount-point buffer is what Windows expects: ReparseDataLength counts what
/// follows the 8-byte header, and both names are where their offsets and lengths say.
#[test]
fn mount_point_buffer_layout() {
    let b = mount_point_buffer("Target Σ😀");
    let u16_at = |i: usize| usize::from(u16::from_le_bytes([b[i], b[i + 1]]));
    assert_eq!(reparse_tag(&b), 0xA000_0003);
    assert_eq!(u16_at(4) + 8, b.len());
    assert_eq!(u16_at(6), 0);
    let name = |off: usize, len: usize| {
        let bytes = &b[16 + off..16 + off + len];
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(&b[16 + off + len..16 + off + len + 2], &[0, 0]);
        String::from_utf16(&units).unwrap()
    };
    assert_eq!(name(u16_at(8), u16_at(10)), "\\??\\C:\\Target Σ😀");
    assert_eq!(name(u16_at(12), u16_at(14)), "C:\\Target Σ😀");
    assert_eq!(16 + u16_at(12) + u16_at(14) + 2, b.len());
}
