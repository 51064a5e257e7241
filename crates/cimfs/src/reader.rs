//! Reader for classic CimFS images: opens a `.cim` with its parents' regions and resolves paths,
//! directories, metadata and stream data. Every offset, length and count read from disk is checked
//! against the real size of the file it points into before anything is read, and every buffer
//! sized from disk also against a fixed limit (a sparse region file can claim terabytes).

use std::cmp::Ordering;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use crate::error::{Error, Result};
use crate::format::{self, RegionOffset, RegionSet};
use crate::names;

/// 1-based index of a file entry in an image's file tables.
pub type FileId = u32;

/// What kind of object a file entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A file: its default stream holds data.
    File,
    /// A directory: its default stream is a link table.
    Directory,
}

/// Metadata of one file or directory of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The entry's file id.
    pub file_id: FileId,
    /// Win32 FILE_ATTRIBUTE_* bits, including the directory and reparse-point bits.
    pub attributes: u32,
    /// Default-stream size (0 for directories).
    pub size: u64,
    /// Creation time, FILETIME (100 ns units since 1601-01-01 UTC).
    pub creation_time: u64,
    /// Last write time, FILETIME.
    pub last_write_time: u64,
    /// Change time, FILETIME.
    pub change_time: u64,
    /// Last access time, FILETIME.
    pub last_access_time: u64,
    /// Self-relative security descriptor; empty when the entry has none.
    pub security_descriptor: Vec<u8>,
    /// Packed FILE_FULL_EA_INFORMATION chain; empty when the entry has none.
    pub extended_attributes: Vec<u8>,
    /// Complete REPARSE_DATA_BUFFER; empty when the entry is no reparse point.
    pub reparse_data: Vec<u8>,
    /// Reparse tag stored in the entry (0 when none).
    pub reparse_tag: u32,
    /// Whether the entry is a directory.
    pub is_directory: bool,
    /// The default stream has no backing data and reads as zeros.
    pub sparse: bool,
    /// The default stream is stored as an expanded PE image.
    pub pe_image: bool,
}

impl From<&FileInfo> for crate::FileMetadata {
    /// The metadata a writer needs to add this entry again (e.g. to another image).
    fn from(info: &FileInfo) -> Self {
        crate::FileMetadata {
            attributes: info.attributes,
            size: info.size,
            creation_time: info.creation_time,
            last_write_time: info.last_write_time,
            change_time: info.change_time,
            last_access_time: info.last_access_time,
            security_descriptor: info.security_descriptor.clone(),
            extended_attributes: info.extended_attributes.clone(),
            reparse_data: info.reparse_data.clone(),
        }
    }
}

impl FileInfo {
    /// File or directory.
    pub fn kind(&self) -> FileKind {
        if self.is_directory {
            FileKind::Directory
        } else {
            FileKind::File
        }
    }
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name as stored (UTF-16 that is not valid Unicode is replaced lossily).
    pub name: String,
    /// File id the entry points at (hard links share one).
    pub file_id: FileId,
}

/// One alternate data stream of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's name as stored, lossy like [`DirEntry::name`] (this crate's writer stores the
    /// bare name, without `:` or `:$DATA`).
    pub name: String,
    /// The stream's size in bytes.
    pub size: u64,
}

/// A region set an image depends on, with the region files found for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSetInfo {
    /// The region set's GUID.
    pub id: format::Guid,
    /// Number of region files in the set.
    pub count: u16,
    /// Paths of the set's region files as found on disk, in index order.
    pub region_files: Vec<PathBuf>,
}

pub(crate) struct Region {
    pub(crate) file: fs::File,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
}

/// Parsed `.cim` header and parent list.
pub(crate) struct ImageHeader {
    pub(crate) header: format::FilesystemHeader,
    pub(crate) parents: Vec<RegionSet>,
}

/// An opened image (with its parents' regions).
pub struct Cim {
    path: PathBuf,
    dir: PathBuf,
    regions: Vec<Region>,
    parents: Vec<RegionSetInfo>,
    own: RegionSetInfo,
    ftd: Vec<format::FileTableDirectoryEntry>,
    upcase: Vec<u16>,
    upcase_offset: RegionOffset,
    ftd_offset: RegionOffset,
    fs_offset: RegionOffset,
    root: FileId,
}

impl std::fmt::Debug for Cim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cim")
            .field("path", &self.path)
            .field("regions", &self.regions.len())
            .field("parents", &self.parents.len())
            .field("files", &self.file_count())
            .finish()
    }
}

/// A parsed link table: names and entries in stored order.
pub(crate) struct LinkTable<T> {
    pub(crate) names: Vec<Vec<u16>>,
    pub(crate) entries: Vec<T>,
    /// Where each name (its u16 length) sits, in bytes from the start of the table.
    pub(crate) name_offsets: Vec<u32>,
}

impl<T> LinkTable<T> {
    fn empty() -> LinkTable<T> {
        LinkTable {
            names: Vec::new(),
            entries: Vec::new(),
            name_offsets: Vec::new(),
        }
    }
}

fn corrupt(
    image: &Path,
    file: &Path,
    object: String,
    offset: u64,
    reason: impl Into<String>,
) -> Error {
    Error::Corrupt {
        image: image.to_path_buf(),
        file: file.to_path_buf(),
        object,
        offset,
        reason: reason.into(),
    }
}

/// Reads exactly `buf.len()` bytes at `offset` without moving a shared cursor.
pub(crate) fn read_exact_at(file: &fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Finds `name` in `dir`, exactly or else ignoring ASCII case (region names are ASCII; cimfs.dll
/// only ever ran on case-insensitive NTFS, so the case it writes is unknown).
pub(crate) fn find_in_dir(
    dir: &Path,
    name: &str,
    listing: &mut Option<Vec<OsString>>,
) -> Option<PathBuf> {
    let exact = dir.join(name);
    if exact.exists() {
        return Some(exact);
    }
    if listing.is_none() {
        let names = fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        *listing = Some(names);
    }
    listing
        .as_ref()?
        .iter()
        .find(|n| n.to_str().is_some_and(|s| s.eq_ignore_ascii_case(name)))
        .map(|n| dir.join(n))
}

fn check_common(
    image: &Path,
    file: &Path,
    common: &format::CommonHeader,
    what: &str,
) -> Result<()> {
    if common.magic != format::MAGIC {
        return Err(corrupt(
            image,
            file,
            what.into(),
            0,
            "bad magic (not a CIM file)",
        ));
    }
    let major = common.version_major.get();
    if !(format::MIN_READ_MAJOR..=format::MAX_READ_MAJOR).contains(&major) {
        return Err(corrupt(
            image,
            file,
            what.into(),
            0x10,
            format!("unsupported version {major}.{}", common.version_minor.get()),
        ));
    }
    Ok(())
}

/// Reads and checks the `.cim` header and its parent region sets.
pub(crate) fn read_image_header(cim_path: &Path) -> Result<ImageHeader> {
    let bytes = {
        let f = fs::File::open(cim_path).map_err(|e| Error::io(cim_path, e))?;
        let len = f.metadata().map_err(|e| Error::io(cim_path, e))?.len();
        // The header plus at most 0xffff parents: anything longer is ignored, never loaded.
        let cap = 0x48 + 0xffff * 0x18;
        let mut buf = Vec::with_capacity(len.min(cap) as usize);
        f.take(cap)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(cim_path, e))?;
        buf
    };
    let (header, rest) = format::FilesystemHeader::read_from_prefix(&bytes).map_err(|_| {
        corrupt(
            cim_path,
            cim_path,
            "filesystem header".into(),
            0,
            format!("file is {} bytes, shorter than the header", bytes.len()),
        )
    })?;
    check_common(cim_path, cim_path, &header.common, "filesystem header")?;
    let pc = usize::from(header.parent_count.get());
    let (parents, _) = <[RegionSet]>::ref_from_prefix_with_elems(rest, pc).map_err(|_| {
        corrupt(
            cim_path,
            cim_path,
            "parent region sets".into(),
            0x48,
            format!("header lists {pc} parents but the file ends first"),
        )
    })?;
    Ok(ImageHeader {
        header,
        parents: parents.to_vec(),
    })
}

/// Opens and checks the region files of one region set, appending them to `out`.
fn load_region_set(
    cim_path: &Path,
    dir: &Path,
    set: &RegionSet,
    listing: &mut Option<Vec<OsString>>,
    out: &mut Vec<Region>,
) -> Result<RegionSetInfo> {
    let mut files = Vec::new();
    for i in 0..set.count.get() {
        let name = format::region_file_name(&set.id, i);
        let path = find_in_dir(dir, &name, listing).ok_or_else(|| Error::MissingRegion {
            image: cim_path.to_path_buf(),
            file: dir.join(&name),
        })?;
        let file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut hb = [0u8; 0x28];
        if size < hb.len() as u64 {
            return Err(corrupt(
                cim_path,
                &path,
                "region header".into(),
                0,
                format!("region file is only {size} bytes"),
            ));
        }
        read_exact_at(&file, &mut hb, 0).map_err(|e| Error::io(&path, e))?;
        let (rh, _) = format::RegionHeader::read_from_prefix(&hb)
            .map_err(|_| corrupt(cim_path, &path, "region header".into(), 0, "short header"))?;
        check_common(cim_path, &path, &rh.common, "region header")?;
        files.push(path.clone());
        out.push(Region { file, path, size });
    }
    Ok(RegionSetInfo {
        id: set.id,
        count: set.count.get(),
        region_files: files,
    })
}

impl Cim {
    /// Opens the image at `cim_path`; its parents' region files are looked up in the same folder.
    pub fn open(cim_path: &Path) -> Result<Cim> {
        let ih = read_image_header(cim_path)?;
        let dir = crate::folder_of(cim_path).to_path_buf();
        let total: usize = ih
            .parents
            .iter()
            .map(|p| usize::from(p.count.get()))
            .sum::<usize>()
            + usize::from(ih.header.regions.count.get());
        if total == 0 || total > 0x10000 {
            return Err(corrupt(
                cim_path,
                cim_path,
                "region sets".into(),
                0x30,
                format!("invalid total region count {total}"),
            ));
        }
        let mut listing = None;
        let mut regions = Vec::with_capacity(total);
        let mut parents = Vec::with_capacity(ih.parents.len());
        for p in &ih.parents {
            parents.push(load_region_set(
                cim_path,
                &dir,
                p,
                &mut listing,
                &mut regions,
            )?);
        }
        let own = load_region_set(
            cim_path,
            &dir,
            &ih.header.regions,
            &mut listing,
            &mut regions,
        )?;
        let mut cim = Cim {
            path: cim_path.to_path_buf(),
            dir,
            regions,
            parents,
            own,
            ftd: Vec::new(),
            upcase: Vec::new(),
            upcase_offset: RegionOffset::NULL,
            ftd_offset: RegionOffset::NULL,
            fs_offset: RegionOffset::NULL,
            root: 0,
        };
        let fs_off = RegionOffset(ih.header.filesystem_offset.get());
        let mut fsb = [0u8; 0x18];
        cim.read_obj(fs_off, 0, &mut fsb, || "filesystem object".into())?;
        let (fsobj, _) = format::Filesystem::read_from_prefix(&fsb).map_err(|_| {
            corrupt(
                cim_path,
                cim_path,
                "filesystem object".into(),
                0x38,
                "short",
            )
        })?;
        let ftd_off = RegionOffset(fsobj.file_table_directory_offset.get());
        let ftd_len = u64::from(fsobj.file_table_directory_length.get());
        let ftd_bytes = cim.read_vec(
            ftd_off,
            ftd_len * 16,
            u64::from(format::MAX_FILE_TABLES) * 16,
            || "file table directory".into(),
        )?;
        cim.ftd = <[format::FileTableDirectoryEntry]>::ref_from_bytes(&ftd_bytes)
            .map(|s| s.to_vec())
            .map_err(|_| {
                corrupt(
                    cim_path,
                    cim_path,
                    "file table directory".into(),
                    ftd_off.byte_offset(),
                    "bad size",
                )
            })?;
        for (i, e) in cim.ftd.iter().enumerate() {
            let es = e.entry_size.get();
            if es == 0 || u32::from(e.count.get()) > format::FILES_PER_TABLE {
                let (file, off) = cim.locate(ftd_off);
                return Err(corrupt(
                    cim_path,
                    &file,
                    format!("file table directory entry {i}"),
                    off + i as u64 * 16,
                    format!("entry size {es}, count {}", e.count.get()),
                ));
            }
        }
        let up_off = RegionOffset(fsobj.upcase_table_offset.get());
        let upb = cim.read_vec(
            up_off,
            format::UPCASE_TABLE_BYTES,
            format::UPCASE_TABLE_BYTES,
            || "upcase table".into(),
        )?;
        cim.upcase = upb
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        cim.upcase_offset = up_off;
        cim.ftd_offset = ftd_off;
        cim.fs_offset = fs_off;
        cim.root = fsobj.root_directory.get();
        let root = cim.entry(cim.root)?;
        if root.default_stream.stream_type() != format::STREAM_TYPE_LINK_TABLE {
            return Err(cim.entry_error(cim.root, "the root is not a directory"));
        }
        Ok(cim)
    }

    /// Path of the `.cim` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folder holding the image and its region files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File id of the root directory.
    pub fn root(&self) -> FileId {
        self.root
    }

    /// The parent region sets this image depends on, oldest first, as listed in its header.
    pub fn parents(&self) -> &[RegionSetInfo] {
        &self.parents
    }

    /// The image's own region set.
    pub fn own_regions(&self) -> &RegionSetInfo {
        &self.own
    }

    /// Number of file ids (valid ids are 1..=count, possibly with holes the tables mark as empty).
    pub fn file_count(&self) -> u64 {
        self.ftd.iter().map(|e| u64::from(e.count.get())).sum()
    }

    /// The image's own upcase table (what its link tables are sorted by).
    pub fn upcase_table(&self) -> &[u16] {
        &self.upcase
    }

    /// Where the fixed metadata objects live: (offset, byte length) of the upcase table, the file
    /// table directory, each file table and the filesystem object.
    pub(crate) fn fixed_objects(&self) -> Vec<(RegionOffset, u64)> {
        let mut v = vec![
            (self.upcase_offset, format::UPCASE_TABLE_BYTES),
            (self.ftd_offset, self.ftd.len() as u64 * 16),
            (self.fs_offset, 0x18),
        ];
        for t in &self.ftd {
            v.push((
                RegionOffset(t.offset.get()),
                u64::from(t.count.get()) * u64::from(t.entry_size.get()),
            ));
        }
        v
    }

    pub(crate) fn upcase_offset(&self) -> RegionOffset {
        self.upcase_offset
    }

    pub(crate) fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Region file path and byte offset of a region offset (for error messages).
    pub(crate) fn locate(&self, off: RegionOffset) -> (PathBuf, u64) {
        match self.regions.get(usize::from(off.region_index())) {
            Some(r) => (r.path.clone(), off.byte_offset()),
            None => (self.path.clone(), off.0),
        }
    }

    /// Checks that `len` bytes at `off + extra` lie inside a region; returns the region and absolute offset.
    pub(crate) fn check_range(
        &self,
        off: RegionOffset,
        extra: u64,
        len: u64,
        object: &dyn Fn() -> String,
    ) -> Result<(&Region, u64)> {
        let idx = usize::from(off.region_index());
        let region = self.regions.get(idx).ok_or_else(|| {
            corrupt(
                &self.path,
                &self.path,
                object(),
                off.0,
                format!(
                    "the region offset (shown as the offset) names region {idx}, but the image \
                     has {} regions",
                    self.regions.len()
                ),
            )
        })?;
        let bo = off.byte_offset();
        if bo == 0 {
            return Err(corrupt(
                &self.path,
                &region.path,
                object(),
                0,
                "null offset",
            ));
        }
        let start = bo.checked_add(extra);
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(s), Some(e)) if e <= region.size => Ok((region, s)),
            _ => Err(corrupt(
                &self.path,
                &region.path,
                object(),
                bo.saturating_add(extra),
                format!(
                    "{len} bytes run past the end of the region ({} bytes)",
                    region.size
                ),
            )),
        }
    }

    /// Reads `buf.len()` bytes at `off + extra`, bounds-checked.
    pub(crate) fn read_obj(
        &self,
        off: RegionOffset,
        extra: u64,
        buf: &mut [u8],
        object: impl Fn() -> String,
    ) -> Result<()> {
        let (region, abs) = self.check_range(off, extra, buf.len() as u64, &object)?;
        read_exact_at(&region.file, buf, abs).map_err(|e| Error::io(&region.path, e))
    }

    /// Reads `len` bytes at `off`; the length is checked against `limit` and the region size
    /// before anything is allocated.
    pub(crate) fn read_vec(
        &self,
        off: RegionOffset,
        len: u64,
        limit: u64,
        object: impl Fn() -> String,
    ) -> Result<Vec<u8>> {
        self.read_vec_at(off, 0, len, limit, object)
    }

    /// Reads `len` bytes at `off + extra`, refusing more than `limit` bytes (the largest the
    /// object can be) and ranges past the end of the region.
    fn read_vec_at(
        &self,
        off: RegionOffset,
        extra: u64,
        len: u64,
        limit: u64,
        object: impl Fn() -> String,
    ) -> Result<Vec<u8>> {
        if len > limit {
            let (file, at) = self.locate(off);
            return Err(corrupt(
                &self.path,
                &file,
                object(),
                at.saturating_add(extra),
                format!("length {len} is over the {limit}-byte limit for this object"),
            ));
        }
        let (region, abs) = self.check_range(off, extra, len, &object)?;
        let size = usize::try_from(len).map_err(|_| {
            corrupt(
                &self.path,
                &region.path,
                object(),
                abs,
                format!("length {len} does not fit in memory"),
            )
        })?;
        let mut buf = vec![0u8; size];
        read_exact_at(&region.file, &mut buf, abs).map_err(|e| Error::io(&region.path, e))?;
        Ok(buf)
    }

    /// Reads a u16-counted blob (security descriptor, reparse buffer).
    pub(crate) fn read_counted(
        &self,
        off: RegionOffset,
        object: impl Fn() -> String,
    ) -> Result<Vec<u8>> {
        let mut n = [0u8; 2];
        self.read_obj(off, 0, &mut n, &object)?;
        let len = u64::from(u16::from_le_bytes(n));
        self.read_vec_at(off, 2, len, u64::from(u16::MAX), object)
    }

    /// A `Corrupt` error located at file `id`'s entry.
    pub(crate) fn entry_corrupt(&self, id: FileId, reason: &str) -> Error {
        self.entry_error(id, reason)
    }

    fn entry_error(&self, id: FileId, reason: &str) -> Error {
        let (file, off) = self.entry_location(id).unwrap_or((self.path.clone(), 0));
        corrupt(&self.path, &file, format!("file {id}"), off, reason)
    }

    pub(crate) fn entry_location(&self, id: FileId) -> Option<(PathBuf, u64)> {
        let t = self
            .ftd
            .get(((id.checked_sub(1)?) / format::FILES_PER_TABLE) as usize)?;
        let slot = u64::from((id - 1) % format::FILES_PER_TABLE);
        let (file, off) = self.locate(RegionOffset(t.offset.get()));
        Some((file, off + slot * u64::from(t.entry_size.get())))
    }

    /// Reads the raw file entry of `id`.
    pub(crate) fn entry(&self, id: FileId) -> Result<format::File> {
        let bad = || Error::Corrupt {
            image: self.path.clone(),
            file: self.path.clone(),
            object: format!("file {id}"),
            offset: 0,
            reason: format!(
                "file id {id} is not in the file tables ({} ids)",
                self.file_count()
            ),
        };
        if id == 0 {
            return Err(bad());
        }
        let t = self
            .ftd
            .get(((id - 1) / format::FILES_PER_TABLE) as usize)
            .ok_or_else(bad)?;
        let slot = (id - 1) % format::FILES_PER_TABLE;
        if slot >= u32::from(t.count.get()) {
            return Err(bad());
        }
        let es = u64::from(t.entry_size.get());
        let mut buf = [0u8; format::FILE_ENTRY_SIZE as usize];
        let n = (es as usize).min(buf.len());
        // Entries may be shorter (v1) or longer (v3) than ours: copy what overlaps, zero the rest.
        self.read_obj(
            RegionOffset(t.offset.get()),
            u64::from(slot) * es,
            &mut buf[..n],
            || format!("file {id}"),
        )?;
        let (f, _) = format::File::read_from_prefix(&buf)
            .map_err(|_| self.entry_error(id, "short entry"))?;
        match f.default_stream.stream_type() {
            format::STREAM_TYPE_DATA
            | format::STREAM_TYPE_LINK_TABLE
            | format::STREAM_TYPE_PE_IMAGE => Ok(f),
            t => Err(self.entry_error(id, &format!("unknown default stream type {t}"))),
        }
    }

    /// Metadata of file `id`.
    pub fn file(&self, id: FileId) -> Result<FileInfo> {
        let e = self.entry(id)?;
        let is_dir = e.default_stream.stream_type() == format::STREAM_TYPE_LINK_TABLE;
        let mut attributes = format::flags_to_attributes(e.flags.get());
        if is_dir {
            attributes |= format::FILE_ATTRIBUTE_DIRECTORY;
        }
        let sd_off = RegionOffset(e.sd_offset.get());
        let security_descriptor = if sd_off.is_null() {
            Vec::new()
        } else {
            self.read_counted(sd_off, || format!("security descriptor of file {id}"))?
        };
        let ea_off = RegionOffset(e.ea_offset.get());
        let extended_attributes = if ea_off.is_null() {
            if e.ea_length.get() != 0 {
                return Err(self.entry_error(id, "EA length without an EA offset"));
            }
            Vec::new()
        } else {
            self.read_vec(
                ea_off,
                u64::from(e.ea_length.get()),
                u64::from(u16::MAX),
                || format!("extended attributes of file {id}"),
            )?
        };
        let rp_off = RegionOffset(e.reparse_offset.get());
        let reparse_data = if rp_off.is_null() {
            Vec::new()
        } else {
            attributes |= format::FILE_ATTRIBUTE_REPARSE_POINT;
            self.read_counted(rp_off, || format!("reparse buffer of file {id}"))?
        };
        Ok(FileInfo {
            file_id: id,
            attributes,
            size: if is_dir { 0 } else { e.default_stream.length() },
            creation_time: e.creation_time.get(),
            last_write_time: e.last_write_time.get(),
            change_time: e.change_time.get(),
            last_access_time: e.last_access_time.get(),
            security_descriptor,
            extended_attributes,
            reparse_data,
            reparse_tag: e.reparse_tag.get(),
            is_directory: is_dir,
            sparse: e.default_stream.sparse(),
            pe_image: e.default_stream.stream_type() == format::STREAM_TYPE_PE_IMAGE,
        })
    }

    /// Reads a link table of `len` bytes at `off` with entries of `entry_size` bytes and checks its header.
    fn raw_link_table(
        &self,
        off: RegionOffset,
        len: u64,
        entry_size: usize,
        object: &dyn Fn() -> String,
    ) -> Result<RawLinkTable> {
        let mut bytes = self.read_vec(off, len, format::MAX_LINK_TABLE_BYTES, object)?;
        let (file, base) = self.locate(off);
        let bad = |at: usize, reason: String| {
            corrupt(&self.path, &file, object(), base + at as u64, reason)
        };
        if bytes.len() < 8 {
            return Err(bad(
                0,
                format!("link table span {} is shorter than its header", bytes.len()),
            ));
        }
        let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if length < 8 || length > bytes.len() {
            return Err(bad(
                0,
                format!("link table length {length} outside 8..={}", bytes.len()),
            ));
        }
        bytes.truncate(length);
        let per = entry_size + format::LINK_NAME_OFFSET_SIZE;
        if count > (length - 8) / per {
            return Err(bad(
                4,
                format!("link count {count} does not fit in {length} bytes"),
            ));
        }
        Ok(RawLinkTable {
            bytes,
            count,
            entry_size,
            file,
            base,
        })
    }

    /// Bytes (UTF-16LE) of name `i` of a raw link table, bounds-checked.
    fn link_name<'t>(
        &self,
        t: &'t RawLinkTable,
        i: usize,
        object: &dyn Fn() -> String,
    ) -> Result<&'t [u8]> {
        let table = &t.bytes;
        let length = table.len();
        let offsets_at = 8 + t.count * t.entry_size;
        let bad = |at: usize, reason: String| {
            corrupt(&self.path, &t.file, object(), t.base + at as u64, reason)
        };
        let o = offsets_at + i * 4;
        let no = u32::from_le_bytes([table[o], table[o + 1], table[o + 2], table[o + 3]]) as usize;
        if no < offsets_at + t.count * 4 || no.checked_add(2).is_none_or(|e| e > length) {
            return Err(bad(
                o,
                format!("name offset {no} of link {i} is outside the name area"),
            ));
        }
        let nl = usize::from(u16::from_le_bytes([table[no], table[no + 1]]));
        let end = no + 2 + nl * 2;
        if end > length {
            return Err(bad(
                no,
                format!("name of link {i} ({nl} units) runs past the table"),
            ));
        }
        if nl == 0 {
            return Err(bad(no, format!("link {i} has an empty name")));
        }
        Ok(&table[no + 2..end])
    }

    /// Parses a link table of `len` bytes at `off` with entries of `entry_size` bytes.
    pub(crate) fn read_link_table<T: Copy>(
        &self,
        off: RegionOffset,
        len: u64,
        entry_size: usize,
        object: &dyn Fn() -> String,
        parse: impl Fn(&[u8]) -> T,
    ) -> Result<LinkTable<T>> {
        let t = self.raw_link_table(off, len, entry_size, object)?;
        let mut names = Vec::with_capacity(t.count);
        let mut entries = Vec::with_capacity(t.count);
        let mut name_offsets = Vec::with_capacity(t.count);
        // Every link may point at the same long name: without this cap the decoded names grow
        // with count x name length (gigabytes from a 1 MiB table), not with the table's size.
        let mut name_bytes = 0usize;
        for i in 0..t.count {
            entries.push(parse(t.entry(i)));
            let n = self.link_name(&t, i, object)?;
            name_bytes += n.len() + 2;
            if name_bytes > t.bytes.len() {
                return Err(corrupt(
                    &self.path,
                    &t.file,
                    object(),
                    t.base,
                    format!(
                        "names of links 0..={i} add up to more than the {}-byte table (names overlap)",
                        t.bytes.len()
                    ),
                ));
            }
            names.push(
                n.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            );
            name_offsets.push(t.name_offset(i));
        }
        Ok(LinkTable {
            names,
            entries,
            name_offsets,
        })
    }

    /// The directory link table of `id` (which must be a directory).
    pub(crate) fn dir_table(
        &self,
        id: FileId,
        path: &dyn Fn() -> String,
    ) -> Result<LinkTable<FileId>> {
        let e = self.entry(id)?;
        let s = e.default_stream;
        if s.stream_type() != format::STREAM_TYPE_LINK_TABLE {
            return Err(Error::NotADirectory {
                image: self.path.clone(),
                path: path(),
            });
        }
        if s.length() == 0 {
            // cimfs.dll's encoding of an empty directory is unknown; the hcsshim reader treats size 0 as empty.
            return Ok(LinkTable::empty());
        }
        self.read_link_table(
            s.offset(),
            s.length(),
            format::LINK_DIR_ENTRY_SIZE,
            &|| format!("directory table of file {id}"),
            |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        )
    }

    /// The alternate stream table of `id` (empty when it has none).
    pub(crate) fn stream_table(&self, id: FileId) -> Result<LinkTable<format::Stream>> {
        let e = self.entry(id)?;
        let off = RegionOffset(e.stream_table_offset.get());
        if off.is_null() {
            return Ok(LinkTable::empty());
        }
        let object = || format!("stream table of file {id}");
        let (at, len) = self.stream_table_span(off, &object)?;
        self.read_link_table(at, len, format::LINK_STREAM_ENTRY_SIZE, &object, |b| {
            format::Stream::read_from_bytes(b).unwrap_or_default()
        })
    }

    /// Where the stream table that a file's StreamTableOffset names starts, and its length.
    /// Only the offset is stored, so the span is the table's own Length field (cim-format.md
    /// §A8). hcsshim's Go reader instead takes a u32 byte count before the table; that layout
    /// is read too, told apart by the count equalling the table's Length (in the §A8 layout
    /// the second u32 is the entry count, always below the Length).
    pub(crate) fn stream_table_span(
        &self,
        off: RegionOffset,
        object: &dyn Fn() -> String,
    ) -> Result<(RegionOffset, u64)> {
        let mut hdr = [0u8; 8];
        self.read_obj(off, 0, &mut hdr, object)?;
        let first = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let second = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if first == second && first >= 8 {
            let table = RegionOffset::new(off.region_index(), off.byte_offset() + 4);
            return Ok((table, u64::from(second)));
        }
        Ok((off, u64::from(first)))
    }

    /// Entries of directory `id`, in stored (sorted) order.
    pub fn read_dir_id(&self, id: FileId) -> Result<Vec<DirEntry>> {
        Ok(dir_entries(self.dir_table(id, &|| format!("file {id}"))?))
    }

    /// Entries of the directory at `path`.
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let id = self.lookup(path)?;
        let t = self.dir_table(id, &|| path.to_string())?;
        Ok(dir_entries(t))
    }

    /// Finds `name` in directory `dir` case-insensitively (binary search, like the driver).
    pub fn child(&self, dir: FileId, name: &str, path: &str) -> Result<Option<FileId>> {
        Ok(self.child_entry(dir, name, path)?.map(|e| e.file_id))
    }

    /// [`Cim::child`] with the name as the image stores it.
    pub fn child_entry(&self, dir: FileId, name: &str, path: &str) -> Result<Option<DirEntry>> {
        let e = self.entry(dir)?;
        let s = e.default_stream;
        if s.stream_type() != format::STREAM_TYPE_LINK_TABLE {
            return Err(Error::NotADirectory {
                image: self.path.clone(),
                path: path.to_string(),
            });
        }
        if s.length() == 0 {
            return Ok(None);
        }
        let object = || format!("directory table of file {dir}");
        let t =
            self.raw_link_table(s.offset(), s.length(), format::LINK_DIR_ENTRY_SIZE, &object)?;
        let key: Vec<u16> = name.encode_utf16().collect();
        // Binary search on the stored bytes: only O(log n) names are decoded.
        let (mut lo, mut hi) = (0usize, t.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let n = self.link_name(&t, mid, &object)?;
            match names::compare_le_bytes(n, &key, &self.upcase) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => {
                    let b = t.entry(mid);
                    let units: Vec<u16> = n
                        .chunks_exact(2)
                        .map(|u| u16::from_le_bytes([u[0], u[1]]))
                        .collect();
                    return Ok(Some(DirEntry {
                        name: String::from_utf16_lossy(&units),
                        file_id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Resolves a path case-insensitively; `\` or `/` separate, "" and "\\" are the root.
    pub fn lookup(&self, path: &str) -> Result<FileId> {
        let mut id = self.root;
        let mut walked = String::new();
        for c in names::components(path) {
            walked.push('\\');
            walked.push_str(c);
            match self.child(id, c, &walked)? {
                Some(next) => id = next,
                None => {
                    return Err(Error::NotFound {
                        image: self.path.clone(),
                        path: path.to_string(),
                    })
                }
            }
        }
        Ok(id)
    }

    /// `path` spelled as the image stores its names (`files\windows` → `Files\Windows`),
    /// components joined by `\`, no leading separator; "" for the root.
    pub fn stored_path(&self, path: &str) -> Result<String> {
        let mut id = self.root;
        let mut walked = String::new();
        let mut stored = String::new();
        for c in names::components(path) {
            walked.push('\\');
            walked.push_str(c);
            let e = self
                .child_entry(id, c, &walked)?
                .ok_or_else(|| Error::NotFound {
                    image: self.path.clone(),
                    path: path.to_string(),
                })?;
            if !stored.is_empty() {
                stored.push('\\');
            }
            stored.push_str(&e.name);
            id = e.file_id;
        }
        Ok(stored)
    }

    /// Metadata of the file at `path`.
    pub fn stat(&self, path: &str) -> Result<FileInfo> {
        self.file(self.lookup(path)?)
    }

    /// Alternate data streams of file `id`, in stored order.
    pub fn streams_id(&self, id: FileId) -> Result<Vec<StreamInfo>> {
        let t = self.stream_table(id)?;
        Ok(t.names
            .iter()
            .zip(t.entries.iter())
            .map(|(n, s)| StreamInfo {
                name: String::from_utf16_lossy(n),
                size: s.length(),
            })
            .collect())
    }

    /// The stream descriptor of the default stream (`None`) or a named alternate stream of `id`.
    pub(crate) fn stream_desc(
        &self,
        id: FileId,
        stream: Option<&str>,
        path: &dyn Fn() -> String,
    ) -> Result<format::Stream> {
        match stream {
            None => {
                let e = self.entry(id)?;
                if e.default_stream.stream_type() == format::STREAM_TYPE_LINK_TABLE {
                    return Err(Error::IsADirectory {
                        image: self.path.clone(),
                        path: path(),
                    });
                }
                Ok(e.default_stream)
            }
            Some(name) => {
                let t = self.stream_table(id)?;
                let key: Vec<u16> = name.encode_utf16().collect();
                let i = t
                    .names
                    .iter()
                    .position(|n| names::compare_units(n, &key, &self.upcase) == Ordering::Equal)
                    .ok_or_else(|| Error::NotFound {
                        image: self.path.clone(),
                        path: format!("{}:{name}", path()),
                    })?;
                let s = t.entries[i];
                if s.stream_type() != format::STREAM_TYPE_DATA {
                    return Err(self.entry_error(
                        id,
                        &format!(
                            "alternate stream {} has type {}",
                            crate::names::quote(name),
                            s.stream_type()
                        ),
                    ));
                }
                Ok(s)
            }
        }
    }

    /// Reads stream bytes at `offset` into `buf`; returns the count read (0 at the end).
    pub(crate) fn read_stream(
        &self,
        id: FileId,
        s: &format::Stream,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let len = s.length();
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let n = (len - offset).min(buf.len() as u64) as usize;
        let buf = &mut buf[..n];
        if s.sparse() {
            buf.fill(0);
            return Ok(n);
        }
        match s.stream_type() {
            format::STREAM_TYPE_DATA => {
                self.read_obj(s.offset(), offset, buf, || format!("data of file {id}"))?;
                Ok(n)
            }
            format::STREAM_TYPE_PE_IMAGE => {
                let pe = self.pe_image(id, s.offset())?;
                let mut done = 0;
                while done < n {
                    let pos = offset + done as u64;
                    let (delta, seg_end) = pe.segment(pos);
                    if seg_end <= pos {
                        return Err(self.entry_error(
                            id,
                            &format!("PE image mapping does not cover offset {pos:#x}"),
                        ));
                    }
                    let take = ((seg_end - pos).min((n - done) as u64)) as usize;
                    self.read_obj(pe.data, pos + delta, &mut buf[done..done + take], || {
                        format!("PE image data of file {id}")
                    })?;
                    done += take;
                }
                Ok(n)
            }
            t => Err(self.entry_error(id, &format!("stream type {t} has no data"))),
        }
    }

    fn pe_image(&self, id: FileId, off: RegionOffset) -> Result<PeLayout> {
        let mut hb = [0u8; 0x18];
        self.read_obj(off, 0, &mut hb, || {
            format!("PE image descriptor of file {id}")
        })?;
        let (h, _) = format::PeImage::read_from_prefix(&hb)
            .map_err(|_| self.entry_error(id, "short PE descriptor"))?;
        let count = u64::from(h.mapping_count.get());
        let mb = self.read_vec_at(off, 0x18, count * 8, u64::from(u16::MAX) * 8, || {
            format!("PE image mappings of file {id}")
        })?;
        let mappings: Vec<(u64, u64)> = mb
            .chunks_exact(8)
            .map(|c| {
                (
                    u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    u64::from(u32::from_le_bytes([c[4], c[5], c[6], c[7]])),
                )
            })
            .collect();
        Ok(PeLayout {
            data: RegionOffset(h.data_offset.get()),
            mappings,
        })
    }

    /// Reads from the default stream (`stream == None`) or an alternate stream of `id` at `offset`.
    pub fn read_at(
        &self,
        id: FileId,
        stream: Option<&str>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let s = self.stream_desc(id, stream, &|| format!("file {id}"))?;
        self.read_stream(id, &s, offset, buf)
    }

    /// A reader over the default stream of the file at `path`.
    pub fn open_file(&self, path: &str) -> Result<FileReader<'_>> {
        let id = self.lookup(path)?;
        let s = self.stream_desc(id, None, &|| path.to_string())?;
        Ok(FileReader {
            cim: self,
            id,
            stream: s,
            pos: 0,
        })
    }

    /// A reader over alternate stream `stream` of the file at `path`.
    pub fn open_stream(&self, path: &str, stream: &str) -> Result<FileReader<'_>> {
        let id = self.lookup(path)?;
        let s = self.stream_desc(id, Some(stream), &|| path.to_string())?;
        Ok(FileReader {
            cim: self,
            id,
            stream: s,
            pos: 0,
        })
    }

    /// A reader over the default stream of file `id`.
    pub fn open_id(&self, id: FileId, stream: Option<&str>) -> Result<FileReader<'_>> {
        let s = self.stream_desc(id, stream, &|| format!("file {id}"))?;
        Ok(FileReader {
            cim: self,
            id,
            stream: s,
            pos: 0,
        })
    }
}

fn dir_entries(t: LinkTable<FileId>) -> Vec<DirEntry> {
    t.names
        .iter()
        .zip(t.entries.iter())
        .map(|(n, &file_id)| DirEntry {
            name: String::from_utf16_lossy(n),
            file_id,
        })
        .collect()
}

/// A link table's bytes with a checked header; names are checked when read.
struct RawLinkTable {
    bytes: Vec<u8>,
    count: usize,
    entry_size: usize,
    file: PathBuf,
    base: u64,
}

impl RawLinkTable {
    /// Entry `i` (the header check guarantees entries and name offsets fit in the table).
    fn entry(&self, i: usize) -> &[u8] {
        &self.bytes[8 + i * self.entry_size..8 + (i + 1) * self.entry_size]
    }

    /// The stored offset of name `i` from the table start, as stored (`link_name` checks it).
    fn name_offset(&self, i: usize) -> u32 {
        let o = 8 + self.count * self.entry_size + i * format::LINK_NAME_OFFSET_SIZE;
        u32::from_le_bytes([
            self.bytes[o],
            self.bytes[o + 1],
            self.bytes[o + 2],
            self.bytes[o + 3],
        ])
    }
}

struct PeLayout {
    data: RegionOffset,
    mappings: Vec<(u64, u64)>,
}

impl PeLayout {
    /// Delta and end of the segment holding file offset `pos`: the last mapping whose file offset
    /// is ≤ pos applies up to the next mapping's file offset (hcsshim getPESegment). The last
    /// segment runs to the end of the stream: hcsshim ends it at DataLength, whose exact meaning is
    /// unknown, so we rely on the stream length and the region bounds check instead.
    fn segment(&self, pos: u64) -> (u64, u64) {
        let mut delta = 0;
        let mut end = u64::MAX;
        for &(fo, d) in &self.mappings {
            if fo > pos {
                end = fo;
                break;
            }
            delta = d;
        }
        (delta, end)
    }
}

/// `Read + Seek` over one stream of a file in an image.
pub struct FileReader<'a> {
    cim: &'a Cim,
    id: FileId,
    stream: format::Stream,
    pos: u64,
}

impl std::fmt::Debug for FileReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("file_id", &self.id)
            .field("len", &self.stream.length())
            .field("pos", &self.pos)
            .finish()
    }
}

impl FileReader<'_> {
    /// Length of the stream in bytes.
    pub fn len(&self) -> u64 {
        self.stream.length()
    }
    /// True for an empty stream.
    pub fn is_empty(&self) -> bool {
        self.stream.length() == 0
    }
    /// File id of the file the stream belongs to.
    pub fn file_id(&self) -> FileId {
        self.id
    }

    /// True when `other` (possibly of another image, e.g. a fork and its parent) reads the very
    /// same stored object: same stream type, length and sparseness, at the same offset of the
    /// same region (named by region set id and index, not by path). False proves nothing: the
    /// bytes may still be equal.
    pub fn same_stored_bytes(&self, other: &FileReader<'_>) -> bool {
        let (a, b) = (&self.stream, &other.stream);
        if a.stream_type() != b.stream_type() || a.length() != b.length() {
            return false;
        }
        if a.length() == 0 || (a.sparse() && b.sparse()) {
            return true;
        }
        if a.sparse() != b.sparse() || a.offset().byte_offset() != b.offset().byte_offset() {
            return false;
        }
        let here = self.cim.region_identity(a.offset().region_index());
        here.is_some() && here == other.cim.region_identity(b.offset().region_index())
    }
}

impl Cim {
    /// The region set id and index within the set of image-wide region `index` (the parents'
    /// regions come first, then the image's own, as the header lists them).
    fn region_identity(&self, index: u16) -> Option<(format::Guid, u16)> {
        let mut i = index;
        for set in self.parents.iter().chain(std::iter::once(&self.own)) {
            if i < set.count {
                return Some((set.id, i));
            }
            i -= set.count;
        }
        None
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .cim
            .read_stream(self.id, &self.stream, self.pos, buf)
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.stream.length().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the stream",
            )),
        }
    }
}
