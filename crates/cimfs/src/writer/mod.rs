//! Image writer with the operations of cimfs.dll (CimCreateImage, CimCreateFile, CimWriteStream,
//! CimCreateAlternateStream, CimCreateHardLink, CimDeletePath, CimCommitImage): file data streams
//! to region files as it is written and is de-duplicated by content; the namespace is kept in
//! memory and laid out as metadata at commit, after which the `.cim` appears by rename.

mod commit;
mod region;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::{self, Guid, RegionOffset, RegionSet};
use crate::names;
use crate::reader::{self, Cim};
use region::RegionWriter;
use tree::{Ads, Entry, Kind, Node, NodeIx, Tree, ROOT};

/// Streams shorter than this go to the small-data region (8-byte aligned) instead of the
/// page-aligned data region. cimfs.dll's threshold is unknown (cim-format.md A3.3); one page is
/// the size below which page alignment would waste more than the data itself.
pub const SMALL_DATA_LIMIT: u64 = format::PAGE_SIZE;

/// Own region set layout: index 0 metadata, 1 page-aligned data, 2 small data.
const REGION_METADATA: usize = 0;
const REGION_DATA: usize = 1;
const REGION_SMALL: usize = 2;
/// Bytes of a region file's header: its first object starts here.
const REGION_HEADER_LEN: u64 = std::mem::size_of::<format::RegionHeader>() as u64;
const OWN_REGION_COUNT: u16 = 3;

/// Metadata of a file or directory added to an image (mirrors CIMFS_FILE_METADATA).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileMetadata {
    /// Win32 FILE_ATTRIBUTE_*; FILE_ATTRIBUTE_DIRECTORY (0x10) makes a directory.
    pub attributes: u32,
    /// Default-stream size (ignored for directories).
    pub size: u64,
    /// Creation time, FILETIME (100 ns units since 1601-01-01 UTC).
    pub creation_time: u64,
    /// Last write time, FILETIME.
    pub last_write_time: u64,
    /// Change time, FILETIME.
    pub change_time: u64,
    /// Last access time, FILETIME.
    pub last_access_time: u64,
    /// Self-relative security descriptor; empty stores the null-DACL SD hcsshim passes.
    pub security_descriptor: Vec<u8>,
    /// Packed FILE_FULL_EA_INFORMATION chain; empty means none.
    pub extended_attributes: Vec<u8>,
    /// Complete REPARSE_DATA_BUFFER; empty means none.
    pub reparse_data: Vec<u8>,
}

/// Figures about a committed image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// The `.cim` written.
    pub cim_path: PathBuf,
    /// File ids in the image (files and directories, hard links counted once).
    pub files: u64,
    /// Bytes of the own page-aligned data region (including header and padding).
    pub data_region_bytes: u64,
    /// Bytes of the own small-data region.
    pub small_region_bytes: u64,
    /// Bytes of the own metadata region.
    pub metadata_region_bytes: u64,
    /// Streams whose content was already stored (in this image or a parent) and was not written again.
    pub dedup_hits: u64,
    /// Bytes not written thanks to de-duplication.
    pub dedup_bytes: u64,
}

/// Content identity used for de-duplication: length and the first 24 bytes of SHA-256.
/// (cimfs.dll's digest is unknown; SHA-256/192 keeps the ObjectId at 32 bytes as the format suggests.)
type ObjectKey = (u64, [u8; format::DIGEST_LEN]);

enum Target {
    Default(NodeIx),
    Alternate(NodeIx, usize),
}

struct OpenStream {
    target: Target,
    path: String,
    declared: u64,
    written: u64,
    hasher: Sha256,
    /// Small streams are buffered (at most SMALL_DATA_LIMIT bytes) and written only if new.
    small: Option<Vec<u8>>,
    /// For large streams: region length before alignment padding, and where the data starts.
    rollback: u64,
    start: RegionOffset,
}

/// Writes a new image or a fork of an existing one.
pub struct CimWriter {
    dir: PathBuf,
    cim_path: PathBuf,
    set: RegionSet,
    parents: Vec<RegionSet>,
    regions: Vec<RegionWriter>,
    objectid_paths: Vec<PathBuf>,
    tree: Tree,
    objects: HashMap<ObjectKey, RegionOffset>,
    open: Option<OpenStream>,
    /// Whether some empty stream points at the small region's first object (see `close_stream`).
    empty_streams: bool,
    parent_upcase: Option<RegionOffset>,
    filesystem_offset: RegionOffset,
    stats: CommitStats,
    done: bool,
}

/// A name's place in a directory: the directory, the name as stored and as compared, and the
/// entry holding it now, if any.
struct Slot {
    dir: NodeIx,
    name16: Vec<u16>,
    key: Vec<u16>,
    existing: Option<NodeIx>,
}

fn hash_key(len: u64, hasher: Sha256) -> ObjectKey {
    let d = hasher.finalize();
    let mut k = [0u8; format::DIGEST_LEN];
    k.copy_from_slice(&d[..format::DIGEST_LEN]);
    (len, k)
}

impl CimWriter {
    /// Starts a new image `dir/name` (e.g. "12.cim").
    pub fn create(dir: &Path, name: &str) -> Result<CimWriter> {
        CimWriter::start(dir, name, Vec::new())
    }

    /// Starts `dir/name` as a fork of the image `dir/parent`: it shows the parent's whole tree,
    /// reuses the parent's data in place, and writes only what changes.
    pub fn fork(dir: &Path, parent: &str, name: &str) -> Result<CimWriter> {
        // Image names are case-insensitive on Windows; find the parent that way on other hosts too.
        let parent_path =
            reader::find_in_dir(dir, parent, &mut None).unwrap_or_else(|| dir.join(parent));
        if parent.eq_ignore_ascii_case(name) {
            return Err(Error::InvalidArgument {
                image: parent_path,
                path: String::new(),
                reason: "a fork needs a name different from its parent's (in-place extension is not supported)".into(),
            });
        }
        let p = Cim::open(&parent_path)?;
        let header = reader::read_image_header(&parent_path)?;
        let mut sets = header.parents.clone();
        sets.push(header.header.regions);
        let mut w = CimWriter::start(dir, name, sets)?;
        w.load_parent(&p)?;
        Ok(w)
    }

    fn start(dir: &Path, name: &str, parents: Vec<RegionSet>) -> Result<CimWriter> {
        let cim_path = dir.join(name);
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(Error::InvalidArgument {
                image: cim_path,
                path: String::new(),
                reason: "image name must be a plain file name".into(),
            });
        }
        if cim_path.exists() {
            return Err(Error::AlreadyExists { file: cim_path });
        }
        let base: usize = parents.iter().map(|s| usize::from(s.count.get())).sum();
        if base + usize::from(OWN_REGION_COUNT) > 0x10000 {
            return Err(Error::InvalidArgument {
                image: cim_path,
                path: String::new(),
                reason: format!(
                    "parents use {base} regions, no room for more in the 16-bit region index"
                ),
            });
        }
        let id = Guid::new_random();
        let set = RegionSet {
            id,
            count: OWN_REGION_COUNT.into(),
            reserved: 0.into(),
            reserved1: 0.into(),
        };
        let mut w = CimWriter {
            dir: dir.to_path_buf(),
            cim_path: cim_path.clone(),
            set,
            parents,
            regions: Vec::new(),
            objectid_paths: Vec::new(),
            tree: Tree::new(),
            objects: HashMap::new(),
            open: None,
            empty_streams: false,
            parent_upcase: None,
            filesystem_offset: RegionOffset::NULL,
            stats: CommitStats {
                cim_path,
                ..CommitStats::default()
            },
            done: false,
        };
        let types = [
            format::REGION_TYPE_METADATA,
            format::REGION_TYPE_DATA,
            format::REGION_TYPE_SMALL_DATA,
        ];
        for (i, t) in types.into_iter().enumerate() {
            let i = i as u16;
            w.objectid_paths
                .push(dir.join(format::objectid_file_name(&id, i)));
            // Dropping `w` on error removes the regions created so far.
            let r = RegionWriter::create(
                dir.join(format::region_file_name(&id, i)),
                i,
                base as u16 + i,
                t,
            )?;
            w.regions.push(r);
        }
        Ok(w)
    }

    /// Every file this writer creates before its commit publishes the `.cim`: its region and
    /// objectid files and the temporary `.cim`. A process killed before commit (or before the
    /// writer is dropped) leaves some of these behind, and nothing else.
    pub fn own_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (0..OWN_REGION_COUNT)
            .map(|i| self.dir.join(format::region_file_name(&self.set.id, i)))
            .collect();
        files.extend(self.objectid_paths.iter().cloned());
        files.push(commit::tmp_path(&self.cim_path));
        files
    }

    /// Path of the `.cim` this writer commits to.
    pub fn cim_path(&self) -> &Path {
        &self.cim_path
    }

    fn invalid(&self, path: &str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            image: self.cim_path.clone(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    fn not_found(&self, path: &str) -> Error {
        Error::NotFound {
            image: self.cim_path.clone(),
            path: path.to_string(),
        }
    }

    /// Copies the parent's namespace, object ids and upcase table location into this writer.
    fn load_parent(&mut self, p: &Cim) -> Result<()> {
        if p.upcase_table() == upcase::table().as_slice() {
            self.parent_upcase = Some(p.upcase_offset());
        }
        self.load_parent_objects(p)?;
        let mut by_id: HashMap<u32, NodeIx> = HashMap::new();
        let root_info = p.file(p.root())?;
        self.fill_node(ROOT, p, p.root(), &root_info)?;
        by_id.insert(p.root(), ROOT);
        let mut stack = vec![(p.root(), ROOT)];
        let table = upcase::table();
        while let Some((pid, node)) = stack.pop() {
            let t = p.dir_table(pid, &|| format!("file {pid}"))?;
            let mut children = BTreeMap::new();
            for (name, &cid) in t.names.into_iter().zip(t.entries.iter()) {
                let key = names::upcase_key(&name, table);
                if children.contains_key(&key) {
                    continue;
                }
                let child = match by_id.get(&cid) {
                    Some(&c) => {
                        self.tree.nodes[c].links += 1;
                        c
                    }
                    None => {
                        let info = p.file(cid)?;
                        let c = self
                            .tree
                            .push(Node::new(Kind::File(format::Stream::default()), 0));
                        self.fill_node(c, p, cid, &info)?;
                        by_id.insert(cid, c);
                        if info.is_directory {
                            stack.push((cid, c));
                        }
                        c
                    }
                };
                children.insert(key, Entry { name, node: child });
            }
            if let Some(c) = self.tree.children_mut(node) {
                *c = children;
            }
        }
        Ok(())
    }

    fn fill_node(&mut self, n: NodeIx, p: &Cim, id: u32, info: &reader::FileInfo) -> Result<()> {
        let e = p.entry(id)?;
        // The parent's blobs are copied verbatim: a damaged parent must not reach this image.
        blob_problem(
            &info.security_descriptor,
            &info.extended_attributes,
            &info.reparse_data,
        )
        .map_err(|reason| p.entry_corrupt(id, &reason))?;
        let sd = self.tree.sds.intern_or_null(&info.security_descriptor);
        let table = upcase::table();
        let st = p.stream_table(id)?;
        let streams = st
            .names
            .into_iter()
            .zip(st.entries)
            .map(|(name, stream)| Ads {
                key: names::upcase_key(&name, table),
                name,
                stream,
            })
            .collect();
        let node = &mut self.tree.nodes[n];
        node.set_metadata(
            e.flags.get(),
            [
                info.creation_time,
                info.last_write_time,
                info.change_time,
                info.last_access_time,
            ],
            sd,
            &info.extended_attributes,
            &info.reparse_data,
        );
        node.set_streams(streams);
        node.kind = if info.is_directory {
            Kind::Dir(BTreeMap::new())
        } else {
            Kind::File(e.default_stream)
        };
        Ok(())
    }

    /// Reads the object ids of every region set the parent uses, so identical content is not stored again.
    fn load_parent_objects(&mut self, p: &Cim) -> Result<()> {
        let mut combined = 0usize;
        let mut listing = None;
        let regions = p.regions();
        for set in self.parents.clone() {
            for i in 0..set.count.get() {
                let name = format::objectid_file_name(&set.id, i);
                let region_size = regions.get(combined).map(|r| r.size).unwrap_or(0);
                // hcsshim only warns about a missing objectid file: it is a write-side hint, not needed to read.
                if let Some(path) = reader::find_in_dir(&self.dir, &name, &mut listing) {
                    self.load_objectid_file(&path, combined as u16, region_size)?;
                }
                combined += 1;
            }
        }
        Ok(())
    }

    fn load_objectid_file(&mut self, path: &Path, combined: u16, region_size: u64) -> Result<()> {
        // A damaged objectid file only costs de-duplication, as a missing one does.
        let Ok(file) = crate::objectid::ObjectIdFile::open(path) else {
            return Ok(());
        };
        let objects = &mut self.objects;
        let _ = file.for_each(|_, _, e| {
            let off = e.offset.get();
            let len = e.length.get();
            // Only entries that point inside their region are trusted.
            if off != 0
                && off < (1 << 48)
                && off.checked_add(len).is_some_and(|end| end <= region_size)
            {
                objects
                    .entry((len, e.digest))
                    .or_insert(RegionOffset::new(combined, off));
            }
        });
        Ok(())
    }

    /// Resolves the directory that will hold `path`'s last component; returns it and the name.
    fn parent_of<'p>(&self, path: &'p str) -> Result<(NodeIx, &'p str)> {
        names::check_path_len(path).map_err(|r| self.invalid(path, r))?;
        let comps: Vec<&str> = names::components(path).collect();
        let Some((name, dirs)) = comps.split_last() else {
            return Err(self.invalid(path, "the path names the root"));
        };
        names::check_name(name).map_err(|r| self.invalid(path, r))?;
        let mut n = ROOT;
        let mut walked = String::new();
        for c in dirs {
            walked.push('\\');
            walked.push_str(c);
            let children = self.tree.children(n).ok_or_else(|| self.not_dir(&walked))?;
            n = match children.get(&name_key(c)) {
                Some(e) => e.node,
                None => {
                    return Err(
                        self.invalid(path, format!("parent directory {walked} does not exist"))
                    );
                }
            };
        }
        if self.tree.children(n).is_none() {
            return Err(self.not_dir(&walked));
        }
        Ok((n, name))
    }

    /// Where `path` goes in its (existing) parent directory, and what is there now.
    fn slot(&self, path: &str) -> Result<Slot> {
        let (dir, name) = self.parent_of(path)?;
        let name16: Vec<u16> = name.encode_utf16().collect();
        let key = names::upcase_key(&name16, upcase::table());
        let existing = self
            .tree
            .children(dir)
            .and_then(|c| c.get(&key))
            .map(|e| e.node);
        Ok(Slot {
            dir,
            name16,
            key,
            existing,
        })
    }

    fn not_dir(&self, path: &str) -> Error {
        Error::NotADirectory {
            image: self.cim_path.clone(),
            path: path.to_string(),
        }
    }

    /// What `path` currently names in the image being written (parents' entries included), if anything.
    pub fn kind(&self, path: &str) -> Option<crate::FileKind> {
        let n = self.resolve(path).ok()?;
        Some(if self.tree.nodes[n].is_dir() {
            crate::FileKind::Directory
        } else {
            crate::FileKind::File
        })
    }

    /// The nearest directory above `path` (not `path` itself) that is a directory symlink or
    /// junction (a name-surrogate reparse point), parents' entries included, as the path of
    /// it. Windows can hold no entry beneath one. None also when part of the path is missing.
    pub fn reparse_point_above(&self, path: &str) -> Option<String> {
        let comps: Vec<&str> = names::components(path).collect();
        let (_, dirs) = comps.split_last()?;
        let mut n = ROOT;
        for (i, c) in dirs.iter().enumerate() {
            n = self.tree.children(n)?.get(&name_key(c))?.node;
            let node = &self.tree.nodes[n];
            if node.is_dir() && format::is_name_surrogate(node.reparse()) {
                return Some(dirs[..=i].join("\\"));
            }
        }
        None
    }

    /// Resolves an existing path to its node.
    fn resolve(&self, path: &str) -> Result<NodeIx> {
        self.walk(path, names::components(path))
    }

    /// Follows `comps` from the root; `path` (the whole path asked for) names what is missing.
    fn walk<'c>(&self, path: &str, comps: impl IntoIterator<Item = &'c str>) -> Result<NodeIx> {
        let mut n = ROOT;
        for c in comps {
            let key = name_key(c);
            n = self
                .tree
                .children(n)
                .and_then(|ch| ch.get(&key))
                .map(|e| e.node)
                .ok_or_else(|| self.not_found(path))?;
        }
        Ok(n)
    }

    fn check_blobs(&self, path: &str, meta: &FileMetadata) -> Result<()> {
        blob_problem(
            &meta.security_descriptor,
            &meta.extended_attributes,
            &meta.reparse_data,
        )
        .map_err(|r| self.invalid(path, r))
    }

    /// Adds (or replaces) the file or directory at `path`; its parent directory must exist.
    /// For a file, its `meta.size` bytes follow through [`CimWriter::write`]; bytes not written read as zero.
    /// Adding a directory over an existing directory updates its metadata and keeps its entries.
    pub fn add(&mut self, path: &str, meta: &FileMetadata) -> Result<()> {
        self.close_stream()?;
        self.check_blobs(path, meta)?;
        let is_dir = meta.attributes & format::FILE_ATTRIBUTE_DIRECTORY != 0;
        let sd = self.tree.sds.intern_or_null(&meta.security_descriptor);
        let fill = |node: &mut Node| {
            node.set_metadata(
                format::attributes_to_flags(meta.attributes),
                [
                    meta.creation_time,
                    meta.last_write_time,
                    meta.change_time,
                    meta.last_access_time,
                ],
                sd,
                &meta.extended_attributes,
                &meta.reparse_data,
            );
        };
        if names::components(path).next().is_none() {
            if !is_dir {
                return Err(self.invalid(path, "the root can only be a directory"));
            }
            fill(&mut self.tree.nodes[ROOT]);
            return Ok(());
        }
        if !is_dir && meta.size >= 1 << 48 {
            return Err(self.invalid(path, "file size does not fit in 48 bits"));
        }
        let Slot {
            dir,
            name16,
            key,
            existing,
        } = self.slot(path)?;
        if is_dir {
            if let Some(old) = existing.filter(|&o| self.tree.nodes[o].is_dir()) {
                fill(&mut self.tree.nodes[old]);
                if let Some(e) = self.tree.children_mut(dir).and_then(|c| c.get_mut(&key)) {
                    e.name = name16;
                }
                return Ok(());
            }
        }
        if let Some(old) = existing {
            self.tree.unlink(old);
        }
        let kind = if is_dir {
            Kind::Dir(BTreeMap::new())
        } else {
            Kind::File(format::Stream::new(
                RegionOffset::NULL,
                0,
                format::STREAM_TYPE_DATA,
                false,
            ))
        };
        let mut node = Node::new(kind, sd);
        fill(&mut node);
        let ix = self.tree.push(node);
        if let Some(c) = self.tree.children_mut(dir) {
            c.insert(
                key,
                Entry {
                    name: name16,
                    node: ix,
                },
            );
        }
        if !is_dir {
            self.open_stream(Target::Default(ix), path, meta.size)?;
        }
        Ok(())
    }

    /// Adds (or replaces) alternate stream "file:stream" (or "file:stream:$DATA") of `size` bytes,
    /// whose bytes follow through [`CimWriter::write`].
    pub fn add_alternate_stream(&mut self, path: &str, size: u64) -> Result<()> {
        self.close_stream()?;
        let Some((file, stream)) = names::split_stream(path) else {
            return Err(self.invalid(path, "expected file:stream"));
        };
        names::check_name(stream).map_err(|r| self.invalid(path, r))?;
        if stream.is_empty() {
            return Err(self.invalid(path, "empty stream name"));
        }
        if size >= 1 << 48 {
            return Err(self.invalid(path, "stream size does not fit in 48 bits"));
        }
        let node = self.resolve(file)?;
        let name: Vec<u16> = stream.encode_utf16().collect();
        let key = names::upcase_key(&name, upcase::table());
        let empty = format::Stream::new(RegionOffset::NULL, 0, format::STREAM_TYPE_DATA, false);
        let streams = self.tree.nodes[node].streams_mut();
        let i = match streams.iter().position(|s| s.key == key) {
            Some(i) => {
                streams[i] = Ads {
                    name,
                    key,
                    stream: empty,
                };
                i
            }
            None => {
                streams.push(Ads {
                    name,
                    key,
                    stream: empty,
                });
                streams.len() - 1
            }
        };
        self.open_stream(Target::Alternate(node, i), path, size)
    }

    /// Adds hard link `new_path` to the existing file `existing_path` (replacing whatever `new_path` named).
    pub fn add_link(&mut self, new_path: &str, existing_path: &str) -> Result<()> {
        self.close_stream()?;
        let target = self.resolve(existing_path)?;
        if self.tree.nodes[target].is_dir() {
            return Err(Error::IsADirectory {
                image: self.cim_path.clone(),
                path: existing_path.to_string(),
            });
        }
        let Slot {
            dir,
            name16,
            key,
            existing,
        } = self.slot(new_path)?;
        if existing == Some(target) {
            return Ok(());
        }
        if let Some(old) = existing {
            self.tree.unlink(old);
        }
        self.tree.nodes[target].links += 1;
        if let Some(c) = self.tree.children_mut(dir) {
            c.insert(
                key,
                Entry {
                    name: name16,
                    node: target,
                },
            );
        }
        Ok(())
    }

    /// Removes a file, a directory (with everything under it), a hard link, or "file:stream".
    pub fn remove(&mut self, path: &str) -> Result<()> {
        self.close_stream()?;
        if let Some((file, stream)) = names::split_stream(path) {
            let node = self.resolve(file)?;
            let key = name_key(stream);
            let i = self.tree.nodes[node]
                .streams()
                .iter()
                .position(|s| s.key == key)
                .ok_or_else(|| self.not_found(path))?;
            self.tree.nodes[node].remove_stream(i);
            return Ok(());
        }
        if names::components(path).next().is_none() {
            return Err(self.invalid(path, "the root cannot be removed"));
        }
        let comps: Vec<&str> = names::components(path).collect();
        let (name, dirs) = comps.split_last().ok_or_else(|| self.not_found(path))?;
        let n = self.walk(path, dirs.iter().copied())?;
        let removed = self
            .tree
            .children_mut(n)
            .and_then(|c| c.remove(&name_key(name)))
            .ok_or_else(|| self.not_found(path))?;
        self.tree.unlink(removed.node);
        Ok(())
    }

    fn open_stream(&mut self, target: Target, path: &str, size: u64) -> Result<()> {
        let (small, rollback, start) = if size < SMALL_DATA_LIMIT {
            (
                Some(Vec::with_capacity(size as usize)),
                0,
                RegionOffset::NULL,
            )
        } else {
            let r = &mut self.regions[REGION_DATA];
            let rollback = r.pos();
            r.align(format::PAGE_SIZE)?;
            (None, rollback, r.offset())
        };
        self.open = Some(OpenStream {
            target,
            path: path.to_string(),
            declared: size,
            written: 0,
            hasher: Sha256::new(),
            small,
            rollback,
            start,
        });
        Ok(())
    }

    /// Writes the next bytes of the stream opened by the last `add` / `add_alternate_stream`.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let Some(s) = self.open.as_mut() else {
            return Err(Error::InvalidArgument {
                image: self.cim_path.clone(),
                path: String::new(),
                reason: "write without an open stream (add a file or stream first)".into(),
            });
        };
        let end = s.written + data.len() as u64;
        if end > s.declared {
            let reason = format!(
                "write of {} bytes at {} exceeds the declared size {}",
                data.len(),
                s.written,
                s.declared
            );
            let path = s.path.clone();
            return Err(self.invalid(&path, reason));
        }
        s.hasher.update(data);
        match s.small.as_mut() {
            Some(buf) => buf.extend_from_slice(data),
            None => self.regions[REGION_DATA].write_all(data)?,
        }
        s.written = end;
        Ok(())
    }

    /// Finishes the open stream: pads unwritten bytes with zeros, de-duplicates, records its descriptor.
    fn close_stream(&mut self) -> Result<()> {
        let Some(mut s) = self.open.take() else {
            return Ok(());
        };
        let desc = if s.declared == 0 {
            // No object, but a real place: the start of the small-data region's objects (right
            // after its header; `commit` makes sure a byte lies there). hcsshim's own CIM reader
            // resolves the offset of every read, even one of 0 bytes, and refuses a null one
            // (FORMAT-CHOICES.md).
            let at = RegionOffset::new(self.regions[REGION_SMALL].combined, REGION_HEADER_LEN);
            self.empty_streams = true;
            format::Stream::new(at, 0, format::STREAM_TYPE_DATA, false)
        } else if s.written == 0 {
            // Nothing written: a sparse stream with no backing data reads as zeros (cim-format.md §A7).
            if s.small.is_none() {
                self.regions[REGION_DATA].truncate(s.rollback)?;
            }
            format::Stream::new(
                RegionOffset::NULL,
                s.declared,
                format::STREAM_TYPE_DATA,
                true,
            )
        } else {
            let pad = s.declared - s.written;
            let zeros = [0u8; 4096];
            let mut left = pad;
            while left > 0 {
                let k = left.min(zeros.len() as u64) as usize;
                s.hasher.update(&zeros[..k]);
                left -= k as u64;
            }
            let key = hash_key(s.declared, s.hasher);
            let offset = match (self.objects.get(&key).copied(), s.small) {
                (Some(hit), small) => {
                    if small.is_none() {
                        self.regions[REGION_DATA].truncate(s.rollback)?;
                    }
                    self.stats.dedup_hits += 1;
                    self.stats.dedup_bytes += s.declared;
                    hit
                }
                (None, Some(mut buf)) => {
                    buf.resize(s.declared as usize, 0);
                    let r = &mut self.regions[REGION_SMALL];
                    let at = r.put(&buf, format::METADATA_ALIGN)?;
                    r.objects.push(object_entry(key, at));
                    self.objects.insert(key, at);
                    at
                }
                (None, None) => {
                    let r = &mut self.regions[REGION_DATA];
                    r.write_zeros(pad)?;
                    r.objects.push(object_entry(key, s.start));
                    self.objects.insert(key, s.start);
                    s.start
                }
            };
            format::Stream::new(offset, s.declared, format::STREAM_TYPE_DATA, false)
        };
        match s.target {
            Target::Default(n) => self.tree.nodes[n].kind = Kind::File(desc),
            Target::Alternate(n, i) => {
                if let Some(a) = self.tree.nodes[n].streams_mut().get_mut(i) {
                    a.stream = desc;
                }
            }
        }
        Ok(())
    }

    /// Lays out the metadata, fsyncs regions and objectid files, then publishes the `.cim` by rename.
    pub fn commit(mut self) -> Result<CommitStats> {
        self.close_stream()?;
        // Empty streams point at the small region's first object: when it holds none, 8 zero
        // bytes put that offset inside the file rather than at its end.
        let small = &mut self.regions[REGION_SMALL];
        if self.empty_streams && small.pos() == REGION_HEADER_LEN {
            small.write_all(&[0; 8])?;
        }
        commit::write_metadata(&mut self)?;
        for (r, p) in self.regions.iter_mut().zip(self.objectid_paths.iter()) {
            r.finish(p)?;
        }
        self.stats.metadata_region_bytes = self.regions[REGION_METADATA].pos();
        self.stats.data_region_bytes = self.regions[REGION_DATA].pos();
        self.stats.small_region_bytes = self.regions[REGION_SMALL].pos();
        commit::publish(&self)?;
        // The .cim is durable only once the folder is: if that fails, withdraw it (dropping
        // `self` then removes the regions) so an error never leaves an image that opens.
        if let Err(e) = commit::sync_dir(&self.dir) {
            let _ = std::fs::remove_file(&self.cim_path);
            return Err(e);
        }
        self.done = true;
        Ok(std::mem::take(&mut self.stats))
    }
}

/// Why a security descriptor, EA chain or reparse buffer cannot be stored, if it cannot: each is
/// stored verbatim and handed to Windows at mount time, so a malformed one would only fail there.
/// The case-folded key a name (or stream name) is looked up by in a directory or stream table.
fn name_key(name: &str) -> Vec<u16> {
    names::upcase_key(&name.encode_utf16().collect::<Vec<_>>(), upcase::table())
}

fn blob_problem(sd: &[u8], ea: &[u8], reparse: &[u8]) -> std::result::Result<(), String> {
    if sd.len() > 0xffff {
        return Err("security descriptor is longer than 65535 bytes".into());
    }
    if ea.len() > 0xffff {
        return Err("extended attributes are longer than 65535 bytes".into());
    }
    if reparse.len() > 0xffff {
        return Err("reparse buffer is longer than 65535 bytes".into());
    }
    if !reparse.is_empty() && reparse.len() < 8 {
        return Err("reparse buffer is shorter than its 8-byte header".into());
    }
    if !sd.is_empty() {
        crate::blobs::check_security_descriptor(sd)?;
    }
    if !ea.is_empty() {
        crate::blobs::check_ea_chain(ea)?;
    }
    Ok(())
}

/// Writes go to the stream opened by the last `add` / `add_alternate_stream` (for `io::copy`).
impl std::io::Write for CimWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CimWriter::write(self, buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn object_entry(key: ObjectKey, at: RegionOffset) -> format::ObjectIdEntry {
    format::ObjectIdEntry {
        length: key.0.into(),
        digest: key.1,
        offset: at.byte_offset().into(),
    }
}

impl std::fmt::Debug for CimWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimWriter")
            .field("cim_path", &self.cim_path)
            .field("parents", &self.parents.len())
            .field("nodes", &self.tree.nodes.len())
            .finish()
    }
}

impl Drop for CimWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for r in &mut self.regions {
            r.discard();
        }
        for p in &self.objectid_paths {
            let _ = fs::remove_file(p);
        }
        let _ = fs::remove_file(commit::tmp_path(&self.cim_path));
    }
}
