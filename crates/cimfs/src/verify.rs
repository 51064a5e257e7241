//! Full consistency check of an image for `cimkit verify`: headers of every file, region and
//! objectid ranges, the file tables, every reachable directory and stream table (bounds, sort
//! order, alignment, names a lookup can reach and Windows can hold), every stream's data range,
//! every file entry's flag bits, reparse tag, security descriptor and EA chain, and unreachable
//! file ids; `verify_digests` additionally re-hashes stored objects against the objectid files.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use crate::error::Error;
use crate::format::{self, RegionOffset};
use crate::names::{self, quote};
use crate::reader::{self, Cim, FileId, FileInfo, LinkTable};

/// One thing wrong with an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file on disk holding the problem.
    pub file: PathBuf,
    /// What inside the image is wrong (e.g. "file 12", "directory \\Files").
    pub object: String,
    /// Byte offset in `file`, when known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.object)?;
        if let Some(o) = self.offset {
            write!(f, " at offset {o:#x}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Problem {
    fn from_error(cim: &Path, object: &str, e: Error) -> Problem {
        match e {
            Error::Corrupt {
                file,
                object,
                offset,
                reason,
                ..
            } => Problem {
                file,
                object,
                offset: Some(offset),
                message: reason,
            },
            Error::Io { file, source } => Problem {
                file,
                object: object.into(),
                offset: None,
                message: source.to_string(),
            },
            other => Problem {
                file: cim.to_path_buf(),
                object: object.into(),
                offset: None,
                message: other.to_string(),
            },
        }
    }
}

struct Checker<'a> {
    cim_path: &'a Path,
    problems: Vec<Problem>,
    /// Metadata objects seen: (region index, start, end).
    meta: Vec<(u16, u64, u64)>,
    /// Data streams seen: (region index, start, end, what).
    data: Vec<(u16, u64, u64, String)>,
    /// Security descriptors already checked, by offset (files share them).
    sds: HashSet<RegionOffset>,
}

/// Bits 57–63 of a stream's LengthAndType, which the format does not define.
const STREAM_UNDEFINED_BITS: u64 = !((1 << 57) - 1);

/// Offsets inside a file entry of the fields reported on.
const ENTRY_FLAGS: u64 = 0x00;
const ENTRY_EA_LENGTH: u64 = 0x02;
const ENTRY_REPARSE_TAG: u64 = 0x04;
const ENTRY_DEFAULT_STREAM_LENGTH: u64 = 0x30;
const ENTRY_SD_OFFSET: u64 = 0x38;

/// Why a stored link name cannot be a Windows name, if it cannot: not UTF-16, too long, `.` or
/// `..`, or holding NUL, `\`, `/` or `:` (what the writer refuses and a path cannot spell).
fn name_problem(units: &[u16]) -> Option<String> {
    let mut at = 0;
    for r in char::decode_utf16(units.iter().copied()) {
        match r {
            Ok(c) => at += c.len_utf16(),
            Err(e) => {
                return Some(format!(
                    "is not valid UTF-16 (unpaired surrogate {:#06x} at unit {at}), so no path can name it",
                    e.unpaired_surrogate()
                ))
            }
        }
    }
    if units.len() > format::MAX_NAME_UNITS {
        return Some(format!(
            "is {} UTF-16 units long, over the {} a name may have",
            units.len(),
            format::MAX_NAME_UNITS
        ));
    }
    let dot = u16::from(b'.');
    if units == [dot] || units == [dot, dot] {
        return Some("is \".\" or \"..\", which no file may be named".into());
    }
    let bad = [0u16, u16::from(b'\\'), u16::from(b'/'), u16::from(b':')];
    if let Some(&u) = units.iter().find(|u| bad.contains(u)) {
        let what = match u {
            0 => "a NUL character",
            0x5c => "a backslash (\\)",
            0x2f => "a slash (/)",
            _ => "a colon (:)",
        };
        return Some(format!("holds {what}, which a name cannot hold"));
    }
    None
}

/// The link a binary search for `key` lands on, compared as `Cim::child` compares.
fn binary_search(names: &[Vec<u16>], key: &[u16], up: &[u16]) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, names.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match names::compare_units(&names[mid], key, up) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

impl<'a> Checker<'a> {
    fn new(cim_path: &'a Path) -> Checker<'a> {
        Checker {
            cim_path,
            problems: Vec::new(),
            meta: Vec::new(),
            data: Vec::new(),
            sds: HashSet::new(),
        }
    }

    fn meta_object(&mut self, off: RegionOffset, len: u64) {
        if !off.is_null() && len > 0 {
            let start = off.byte_offset();
            self.meta
                .push((off.region_index(), start, start.saturating_add(len)));
        }
    }

    /// Reports data streams whose bytes overlap a metadata object (data may share bytes with
    /// other data — de-duplication — but never with metadata).
    fn check_overlaps(&mut self, cim: &Cim) {
        let mut meta = std::mem::take(&mut self.meta);
        meta.sort_unstable();
        // Merge into disjoint intervals per region.
        let mut merged: Vec<(u16, u64, u64)> = Vec::with_capacity(meta.len());
        for (r, s, e) in meta {
            match merged.last_mut() {
                Some(last) if last.0 == r && s <= last.2 => last.2 = last.2.max(e),
                _ => merged.push((r, s, e)),
            }
        }
        let data = std::mem::take(&mut self.data);
        for (r, s, e, what) in data {
            // First merged interval of region r whose end is past s.
            let i = merged.partition_point(|m| (m.0, m.2) <= (r, s));
            if let Some(m) = merged.get(i) {
                if m.0 == r && m.1 < e {
                    let (file, _) = cim.locate(RegionOffset::new(r, s));
                    self.push(
                        &file,
                        what,
                        Some(s),
                        format!(
                            "data {s:#x}..{e:#x} overlaps metadata at {:#x}..{:#x}",
                            m.1, m.2
                        ),
                    );
                }
            }
        }
    }

    fn err(&mut self, object: &str, e: Error) {
        self.problems
            .push(Problem::from_error(self.cim_path, object, e));
    }

    fn push(
        &mut self,
        file: &Path,
        object: impl Into<String>,
        offset: Option<u64>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            object: object.into(),
            offset,
            message: message.into(),
        });
    }

    /// Checks region header index/type and the objectid file of one region.
    fn check_region_files(&mut self, dir: &Path, set: &format::RegionSet, own: bool) {
        let mut listing = None;
        for i in 0..set.count.get() {
            let name = format::region_file_name(&set.id, i);
            let Some(path) = reader::find_in_dir(dir, &name, &mut listing) else {
                let what = if own {
                    "region file"
                } else {
                    "parent region file"
                };
                self.push(&dir.join(&name), what, None, "missing");
                continue;
            };
            let bytes = match read_prefix(&path, 0x28) {
                Ok(b) => b,
                Err(e) => {
                    self.push(&path, "region header", None, e.to_string());
                    continue;
                }
            };
            let region_size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match format::RegionHeader::read_from_prefix(&bytes) {
                Ok((h, _)) => {
                    if h.index.get() != i {
                        self.push(
                            &path,
                            "region header",
                            Some(0x20),
                            format!("index {} but file is region {i}", h.index.get()),
                        );
                    }
                    if h.region_type > format::REGION_TYPE_SMALL_DATA {
                        self.push(
                            &path,
                            "region header",
                            Some(0x22),
                            format!("unknown region type {}", h.region_type),
                        );
                    }
                    if h.common.file_type != format::FILE_TYPE_REGION {
                        self.push(
                            &path,
                            "region header",
                            Some(0xc),
                            format!("file type {} is not region (1)", h.common.file_type),
                        );
                    }
                }
                Err(_) => self.push(
                    &path,
                    "region header",
                    Some(0),
                    "file shorter than a region header",
                ),
            }
            if own {
                self.check_objectid(dir, set, i, region_size, &mut listing);
            }
        }
    }

    fn check_objectid(
        &mut self,
        dir: &Path,
        set: &format::RegionSet,
        i: u16,
        region_size: u64,
        listing: &mut Option<Vec<std::ffi::OsString>>,
    ) {
        let name = format::objectid_file_name(&set.id, i);
        let Some(path) = reader::find_in_dir(dir, &name, listing) else {
            self.push(
                &dir.join(&name),
                "objectid file",
                None,
                "missing (only needed to de-duplicate forks)",
            );
            return;
        };
        let file = match crate::objectid::ObjectIdFile::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.push(&path, "objectid header", e.offset(), e.to_string());
                return;
            }
        };
        let h = file.header;
        if h.index.get() != i {
            self.push(
                &path,
                "objectid header",
                Some(0x20),
                format!("index {} but file is objectid {i}", h.index.get()),
            );
        }
        let mut outside = Vec::new();
        if let Err(e) = file.for_each(|k, at, e| {
            let off = e.offset.get();
            let len = e.length.get();
            if off == 0 || off.checked_add(len).is_none_or(|end| end > region_size) {
                outside.push((k, at, off, len));
            }
        }) {
            self.push(&path, "objectid table", e.offset(), e.to_string());
        }
        for (k, at, off, len) in outside {
            self.push(
                &path,
                format!("object id {k}"),
                Some(at),
                format!(
                    "object at {off:#x} of {len} bytes is outside the region ({region_size} bytes)"
                ),
            );
        }
    }

    fn check_stream(&mut self, cim: &Cim, object: &str, s: &format::Stream) {
        if s.sparse() || s.length() == 0 {
            return;
        }
        match s.stream_type() {
            format::STREAM_TYPE_DATA => {
                if let Err(e) = cim.check_range(s.offset(), 0, s.length(), &|| object.to_string()) {
                    self.err(object, e);
                } else {
                    let start = s.offset().byte_offset();
                    self.data.push((
                        s.offset().region_index(),
                        start,
                        start + s.length(),
                        object.to_string(),
                    ));
                }
            }
            format::STREAM_TYPE_PE_IMAGE => {
                self.meta_object(s.offset(), 0x18);
                let mut buf = [0u8; 1];
                // Reading the last byte walks the descriptor, its mappings and the final segment.
                if let Err(e) = cim.read_stream(0, s, s.length() - 1, &mut buf) {
                    self.err(object, e);
                }
            }
            t => self.push(
                cim.path(),
                object,
                None,
                format!("stream type {t} is not a data stream"),
            ),
        }
    }

    fn check_sorted(
        &mut self,
        cim: &Cim,
        object: &str,
        table_names: &[Vec<u16>],
        at: RegionOffset,
    ) {
        let up = cim.upcase_table();
        let (file, _) = cim.locate(at);
        for (k, pair) in table_names.windows(2).enumerate() {
            if names::compare_units(&pair[0], &pair[1], up) != std::cmp::Ordering::Less {
                self.push(
                    &file,
                    object,
                    Some(at.byte_offset()),
                    format!(
                        "entries {k} ({}) and {} ({}) are not in case-insensitive order",
                        quote(&String::from_utf16_lossy(&pair[0])),
                        k + 1,
                        quote(&String::from_utf16_lossy(&pair[1]))
                    ),
                );
            }
        }
        if at.byte_offset() & (format::METADATA_ALIGN - 1) != 0 {
            self.push(
                &file,
                object,
                Some(at.byte_offset()),
                "link table is not 8-byte aligned",
            );
        }
    }

    /// Reports problems of one file entry that need no other object: flag bits the format does
    /// not define, a reparse tag without a reparse buffer, a missing security descriptor, an EA
    /// offset with no EA bytes.
    fn check_entry_fields(&mut self, cim: &Cim, id: FileId, object: &str, e: &format::File) {
        let (file, at) = cim
            .entry_location(id)
            .unwrap_or((cim.path().to_path_buf(), 0));
        let defined = format::attributes_to_flags(u32::MAX);
        let flags = e.flags.get();
        if flags & !defined != 0 {
            self.push(
                &file,
                object,
                Some(at + ENTRY_FLAGS),
                format!(
                    "flags {flags:#06x} set bits {:#06x} that the format does not define (defined: {defined:#06x})",
                    flags & !defined
                ),
            );
        }
        let lt = e.default_stream.length_and_type.get();
        if lt & STREAM_UNDEFINED_BITS != 0 {
            self.push(
                &file,
                object,
                Some(at + ENTRY_DEFAULT_STREAM_LENGTH),
                format!("default stream length/type {lt:#018x} sets bits 57-63, which the format does not define"),
            );
        }
        let tag = e.reparse_tag.get();
        if tag != 0 && RegionOffset(e.reparse_offset.get()).is_null() {
            self.push(
                &file,
                object,
                Some(at + ENTRY_REPARSE_TAG),
                format!("reparse tag {tag:#x} but no reparse buffer (null reparse offset)"),
            );
        }
        if RegionOffset(e.sd_offset.get()).is_null() {
            self.push(
                &file,
                object,
                Some(at + ENTRY_SD_OFFSET),
                "no security descriptor (null offset; writers always store one)",
            );
        }
        if !RegionOffset(e.ea_offset.get()).is_null() && e.ea_length.get() == 0 {
            self.push(
                &file,
                object,
                Some(at + ENTRY_EA_LENGTH),
                "EA offset set but EA length 0 (an EA chain has at least one 8-byte entry)",
            );
        }
    }

    /// Reports a security descriptor, EA chain or reparse buffer Windows could not take; a
    /// descriptor shared by several files is checked (and reported) once.
    fn check_blobs(
        &mut self,
        cim: &Cim,
        id: FileId,
        object: &str,
        e: &format::File,
        info: &FileInfo,
    ) {
        let sd = RegionOffset(e.sd_offset.get());
        if !sd.is_null() && self.sds.insert(sd) {
            if let Err(why) = crate::blobs::check_security_descriptor(&info.security_descriptor) {
                let (file, at) = cim.locate(sd);
                self.push(&file, object, Some(at), why);
            }
        }
        let ea = RegionOffset(e.ea_offset.get());
        if !ea.is_null() && !info.extended_attributes.is_empty() {
            if let Err(why) = crate::blobs::check_ea_chain(&info.extended_attributes) {
                let (file, at) = cim.locate(ea);
                self.push(&file, object, Some(at), why);
            }
        }
        let rp = RegionOffset(e.reparse_offset.get());
        if rp.is_null() {
            return;
        }
        let data = &info.reparse_data;
        if data.len() < 8 {
            let (file, at) = cim.locate(rp);
            self.push(
                &file,
                object,
                Some(at),
                format!(
                    "reparse buffer is {} bytes, shorter than its 8-byte header",
                    data.len()
                ),
            );
            return;
        }
        let stored = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        if stored != e.reparse_tag.get() {
            let (file, at) = cim
                .entry_location(id)
                .unwrap_or((cim.path().to_path_buf(), 0));
            self.push(
                &file,
                object,
                Some(at + ENTRY_REPARSE_TAG),
                format!(
                    "reparse tag {:#x} differs from the stored reparse buffer's tag {stored:#x}",
                    e.reparse_tag.get()
                ),
            );
        }
    }

    fn check_file(&mut self, cim: &Cim, id: FileId, path: &str) -> Option<bool> {
        let object = format!("file {id} ({path})");
        let e = match cim.entry(id) {
            Ok(e) => e,
            Err(err) => {
                self.err(&object, err);
                return None;
            }
        };
        self.check_entry_fields(cim, id, &object, &e);
        match cim.file(id) {
            Ok(info) => {
                self.meta_object(
                    RegionOffset(e.sd_offset.get()),
                    2 + info.security_descriptor.len() as u64,
                );
                self.meta_object(
                    RegionOffset(e.ea_offset.get()),
                    u64::from(e.ea_length.get()),
                );
                let rp = RegionOffset(e.reparse_offset.get());
                self.meta_object(rp, 2 + info.reparse_data.len() as u64);
                self.check_blobs(cim, id, &object, &e, &info);
            }
            Err(err) => self.err(&object, err),
        }
        let is_dir = e.default_stream.stream_type() == format::STREAM_TYPE_LINK_TABLE;
        if !is_dir {
            self.check_stream(cim, &object, &e.default_stream);
        }
        let st = RegionOffset(e.stream_table_offset.get());
        if !st.is_null() {
            // The table itself (behind a size prefix in the Go reader's layout).
            let mut at = st;
            if let Ok((table, len)) = cim.stream_table_span(st, &|| object.clone()) {
                let prefix = table.byte_offset() - st.byte_offset();
                self.meta_object(st, prefix + len);
                at = table;
            }
            match cim.stream_table(id) {
                Ok(t) => {
                    self.check_sorted(cim, &format!("stream table of {object}"), &t.names, at);
                    self.check_stream_names(cim, &object, &t, at);
                    for (n, s) in t.names.iter().zip(t.entries.iter()) {
                        let so =
                            format!("stream {} of {object}", quote(&String::from_utf16_lossy(n)));
                        if s.stream_type() != format::STREAM_TYPE_DATA {
                            self.push(
                                cim.path(),
                                &so,
                                None,
                                format!("alternate stream has type {}", s.stream_type()),
                            );
                        } else {
                            self.check_stream(cim, &so, s);
                        }
                    }
                }
                Err(err) => self.err(&object, err),
            }
        }
        Some(is_dir)
    }

    /// Reports alternate stream names Windows cannot hold or a stream lookup cannot reach (it
    /// takes the first name equal ignoring case), and stream descriptors with undefined bits.
    fn check_stream_names(
        &mut self,
        cim: &Cim,
        object: &str,
        t: &LinkTable<format::Stream>,
        at: RegionOffset,
    ) {
        let (file, base) = cim.locate(at);
        let up = cim.upcase_table();
        let mut first: HashMap<Vec<u16>, usize> = HashMap::with_capacity(t.names.len());
        for (i, (name, s)) in t.names.iter().zip(t.entries.iter()).enumerate() {
            let so = format!(
                "stream {} of {object}",
                quote(&String::from_utf16_lossy(name))
            );
            let name_at = base + u64::from(t.name_offsets.get(i).copied().unwrap_or(0));
            if let Some(why) = name_problem(name) {
                self.push(&file, &so, Some(name_at), format!("stream name {why}"));
            }
            match first.entry(names::upcase_key(name, up)) {
                std::collections::hash_map::Entry::Occupied(o) => self.push(
                    &file,
                    &so,
                    Some(name_at),
                    format!(
                        "a stream lookup finds stream {} ({}) instead: the names are equal ignoring case",
                        o.get(),
                        quote(&String::from_utf16_lossy(&t.names[*o.get()]))
                    ),
                ),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
            }
            let lt = s.length_and_type.get();
            if lt & STREAM_UNDEFINED_BITS != 0 {
                let desc = (8 + i * format::LINK_STREAM_ENTRY_SIZE + 8) as u64;
                self.push(
                    &file,
                    &so,
                    Some(base + desc),
                    format!(
                        "length/type {lt:#018x} sets bits 57-63, which the format does not define"
                    ),
                );
            }
        }
    }

    /// Reports directory links whose name Windows cannot hold, or which `Cim::lookup` of their
    /// own path would not find (it binary-searches, so an unsorted table or a name equal to a
    /// sibling's ignoring case hides links).
    fn check_dir_names(&mut self, cim: &Cim, dir: &str, t: &LinkTable<FileId>, at: RegionOffset) {
        let (file, base) = cim.locate(at);
        let up = cim.upcase_table();
        for (i, (name, &child)) in t.names.iter().zip(t.entries.iter()).enumerate() {
            let object = format!("file {child} ({})", link_path(dir, name));
            let name_at = base + u64::from(t.name_offsets.get(i).copied().unwrap_or(0));
            if let Some(why) = name_problem(name) {
                self.push(
                    &file,
                    &object,
                    Some(name_at),
                    format!("name in directory {dir} {why}"),
                );
                continue;
            }
            match binary_search(&t.names, name, up) {
                Some(j) if t.entries[j] == child => {}
                Some(j) => self.push(
                    &file,
                    &object,
                    Some(name_at),
                    format!(
                        "a lookup of this path finds file {} ({}, link {j}) instead: the names are equal ignoring case",
                        t.entries[j],
                        quote(&String::from_utf16_lossy(&t.names[j]))
                    ),
                ),
                None => self.push(
                    &file,
                    &object,
                    Some(name_at),
                    format!(
                        "a lookup of this path finds nothing: directory {dir} is not in the order its binary search needs (link {i})"
                    ),
                ),
            }
        }
    }
}

/// The path of link `name` in directory `dir` (names that are not UTF-16 are shown lossily).
fn link_path(dir: &str, name: &[u16]) -> String {
    let name = String::from_utf16_lossy(name);
    if dir == "\\" {
        format!("\\{name}")
    } else {
        format!("{dir}\\{name}")
    }
}

fn read_prefix(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut v = Vec::with_capacity(n);
    fs::File::open(path)?.take(n as u64).read_to_end(&mut v)?;
    Ok(v)
}

/// Checks the image at `cim_path` and returns every problem found (empty when it is consistent).
pub fn verify(cim_path: &Path) -> Vec<Problem> {
    let mut c = Checker::new(cim_path);
    let header = match reader::read_image_header(cim_path) {
        Ok(h) => h,
        Err(e) => {
            c.err("filesystem header", e);
            return c.problems;
        }
    };
    let dir = crate::folder_of(cim_path);
    for p in &header.parents {
        c.check_region_files(dir, p, false);
    }
    c.check_region_files(dir, &header.header.regions, true);
    let cim = match Cim::open(cim_path) {
        Ok(cim) => cim,
        Err(e) => {
            c.err("image", e);
            return c.problems;
        }
    };
    let count = cim.file_count();
    // Reached ids are kept in a set: it grows with the files actually walked, not with a count
    // read from disk.
    let mut seen: HashSet<FileId> = HashSet::new();
    let mut queue = VecDeque::new();
    queue.push_back((cim.root(), String::from("\\")));
    seen.insert(cim.root());
    while let Some((id, path)) = queue.pop_front() {
        if c.check_file(&cim, id, &path) != Some(true) {
            continue;
        }
        let e = match cim.entry(id) {
            Ok(e) => e,
            Err(_) => continue,
        };
        let t = match cim.dir_table(id, &|| path.clone()) {
            Ok(t) => t,
            Err(err) => {
                c.err(&format!("directory {path}"), err);
                continue;
            }
        };
        c.meta_object(e.default_stream.offset(), e.default_stream.length());
        let tag = e.reparse_tag.get();
        if !t.names.is_empty() && tag & format::REPARSE_TAG_NAME_SURROGATE != 0 {
            c.push(
                cim.path(),
                format!("directory {path}"),
                None,
                format!(
                    "is a directory symlink or junction (reparse tag {tag:#010x}) yet has {} \
                     entries: Windows cannot hold entries beneath one, so they cannot be reached \
                     or extracted",
                    t.names.len()
                ),
            );
        }
        if e.default_stream.length() > 0 {
            c.check_sorted(
                &cim,
                &format!("directory {path}"),
                &t.names,
                e.default_stream.offset(),
            );
            c.check_dir_names(&cim, &path, &t, e.default_stream.offset());
        }
        for (name, &child) in t.names.iter().zip(t.entries.iter()) {
            let child_path = link_path(&path, name);
            if child == 0 || u64::from(child) > count {
                c.push(
                    cim.path(),
                    format!("directory {path}"),
                    None,
                    format!("{child_path} names file id {child}, outside 1..={count}"),
                );
                continue;
            }
            if !seen.insert(child) {
                // A second link is fine for files (hard links); a directory reached twice is a cycle or a linked directory.
                if let Ok(ce) = cim.entry(child) {
                    if ce.default_stream.stream_type() == format::STREAM_TYPE_LINK_TABLE {
                        c.push(
                            cim.path(),
                            format!("directory {path}"),
                            None,
                            format!("{child_path} links to directory {child} a second time"),
                        );
                    }
                }
                continue;
            }
            queue.push_back((child, child_path));
        }
    }
    for (off, len) in cim.fixed_objects() {
        c.meta_object(off, len);
    }
    c.check_overlaps(&cim);
    let unreached = count.saturating_sub(seen.len() as u64);
    if unreached > 0 {
        let first: Vec<u64> = (1..=count)
            .filter(|&i| !seen.contains(&(i as FileId)))
            .take(10)
            .collect();
        c.push(
            cim.path(),
            "file tables",
            None,
            format!(
                "{unreached} file {} not reachable from the root (first: {first:?})",
                if unreached == 1 { "id is" } else { "ids are" }
            ),
        );
    }
    c.problems
}

/// Re-reads every object listed in the image's own objectid files and checks that its bytes still
/// match the recorded digest (SHA-256 truncated to 24 bytes, what this crate's writer records).
/// Reads all stored data once; objectid files written by other tools may use another digest and
/// would then all be reported.
pub fn verify_digests(cim_path: &Path) -> Vec<Problem> {
    verify_digests_report(cim_path).problems
}

/// What [`verify_digests_report`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestReport {
    /// Objects whose bytes were read and hashed.
    pub objects: u64,
    /// Objects that no longer match their digest (each naming, when the image can be walked,
    /// the paths whose data it is), and objects that could not be read.
    pub problems: Vec<Problem>,
}

/// [`verify_digests`], also counting the objects re-hashed.
pub fn verify_digests_report(cim_path: &Path) -> DigestReport {
    use sha2::{Digest, Sha256};
    let mut objects = 0u64;
    // (region file, byte offset) of each object whose bytes changed, with its problem's index.
    let mut changed: Vec<(PathBuf, u64, usize)> = Vec::new();
    let mut c = Checker::new(cim_path);
    let files = match crate::image_files(cim_path) {
        Ok(f) => f,
        Err(e) => {
            c.err("image", e);
            return DigestReport {
                objects,
                problems: c.problems,
            };
        }
    };
    let header = match reader::read_image_header(cim_path) {
        Ok(h) => h,
        Err(e) => {
            c.err("filesystem header", e);
            return DigestReport {
                objects,
                problems: c.problems,
            };
        }
    };
    let set = header.header.regions;
    let dir = crate::folder_of(cim_path);
    let mut listing = None;
    for (i, region_path) in files.regions.iter().enumerate() {
        let name = format::objectid_file_name(&set.id, i as u16);
        let Some(oid_path) = reader::find_in_dir(dir, &name, &mut listing) else {
            continue;
        };
        let Ok(file) = crate::objectid::ObjectIdFile::open(&oid_path) else {
            continue; // reported by verify()
        };
        let region = match fs::File::open(region_path) {
            Ok(f) => f,
            Err(e) => {
                c.push(region_path, "region", None, e.to_string());
                continue;
            }
        };
        let size = region.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = vec![0u8; 1 << 20];
        let problems = &mut c.problems;
        let changed = &mut changed;
        let objects = &mut objects;
        let _ = file.for_each(|k, _, e| {
            let (off, len) = (e.offset.get(), e.length.get());
            if off == 0 || off.checked_add(len).is_none_or(|end| end > size) {
                return; // reported by verify()
            }
            *objects += 1;
            let mut hasher = Sha256::new();
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                if let Err(err) = reader::read_exact_at(&region, &mut buf[..n], off + done) {
                    problems.push(Problem {
                        file: region_path.clone(),
                        object: format!("object {k}"),
                        offset: Some(off + done),
                        message: err.to_string(),
                    });
                    break;
                }
                hasher.update(&buf[..n]);
                done += n as u64;
            }
            if done == len && hasher.finalize()[..format::DIGEST_LEN] != e.digest {
                changed.push((region_path.clone(), off, problems.len()));
                problems.push(Problem {
                    file: region_path.clone(),
                    object: format!("object {k}"),
                    offset: Some(off),
                    message: format!("{len} bytes do not match their object id digest"),
                });
            }
        });
    }
    let mut problems = c.problems;
    if !changed.is_empty() {
        name_changed_objects(cim_path, &changed, &mut problems);
    }
    DigestReport { objects, problems }
}

/// Adds to each changed object's problem the paths (and streams) whose data it is, found by
/// walking the image; nothing is added when the image cannot be opened or walked.
fn name_changed_objects(
    cim_path: &Path,
    changed: &[(PathBuf, u64, usize)],
    problems: &mut [Problem],
) {
    const MAX_NAMES: usize = 3;
    let Ok(cim) = Cim::open(cim_path) else {
        return;
    };
    let mut users: HashMap<(PathBuf, u64), Vec<String>> = changed
        .iter()
        .map(|(file, off, _)| ((file.clone(), *off), Vec::new()))
        .collect();
    let mut note = |stream: &format::Stream, path: &str| {
        // An empty stream's offset names no data (it may point at another file's object).
        if stream.offset().is_null()
            || stream.length() == 0
            || stream.stream_type() == format::STREAM_TYPE_LINK_TABLE
        {
            return;
        }
        if let Some(names) = users.get_mut(&cim.locate(stream.offset())) {
            names.push(path.to_string());
        }
    };
    let mut seen = HashSet::new();
    let mut stack = vec![(cim.root(), String::new())];
    while let Some((id, path)) = stack.pop() {
        let Ok(entry) = cim.entry(id) else { continue };
        note(&entry.default_stream, &path);
        if let Ok(streams) = cim.stream_table(id) {
            for (name, s) in streams.names.iter().zip(streams.entries.iter()) {
                note(s, &format!("{path}:{}", String::from_utf16_lossy(name)));
            }
        }
        // Every name of a hard-linked file is noted; a directory is entered once.
        if entry.default_stream.stream_type() == format::STREAM_TYPE_LINK_TABLE && seen.insert(id) {
            if let Ok(children) = cim.read_dir_id(id) {
                for child in children {
                    let child_path = if path.is_empty() {
                        child.name
                    } else {
                        format!("{path}\\{}", child.name)
                    };
                    stack.push((child.file_id, child_path));
                }
            }
        }
    }
    for (file, off, index) in changed {
        let Some(names) = users.get(&(file.clone(), *off)) else {
            continue;
        };
        let Some(problem) = problems.get_mut(*index) else {
            continue;
        };
        if names.is_empty() {
            continue;
        }
        let mut names = names.clone();
        names.sort();
        let more = names.len().saturating_sub(MAX_NAMES);
        names.truncate(MAX_NAMES);
        problem
            .message
            .push_str(&format!(" (the data of {}", names.join(", ")));
        if more > 0 {
            problem.message.push_str(&format!(" and {more} more"));
        }
        problem.message.push(')');
    }
}
