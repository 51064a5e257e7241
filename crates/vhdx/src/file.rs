//! An opened VHDX file: replays a dirty log (in memory when read-only), validates headers,
//! region table, metadata and BAT, reads virtual-disk bytes through the BAT (following a
//! differencing chain to its parents) and writes dynamic disks by allocating 1 MiB-aligned
//! payload blocks at the end of the file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{count, Error, Result};
use crate::format::*;
use crate::log::{find_active_sequence, Overlay, PlacedEntry, SearchError};
use crate::posio;

/// Deepest differencing chain followed before giving up (guards against locator loops).
const MAX_CHAIN_DEPTH: usize = 64;

/// Highest file offset a replayed log entry may write to or extend the file to: far above any
/// real VHDX (64 TiB of payload plus metadata), far below what would overflow.
const MAX_LOGGED_FILE_END: u64 = 1 << 48;

/// Most problems [`VhdxInfo::problems`] lists; [`VhdxInfo::problems_total`] counts them all.
pub const MAX_LISTED_PROBLEMS: usize = 10;

/// A span of the file that payload and sector-bitmap blocks must stay out of: the header
/// section, the log, or a region from the region table (MS-VHDX 2.2.3.2: all of these and the
/// blocks the BAT places must not overlap).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extent {
    name: String,
    start: u64,
    end: u64,
}

impl Extent {
    /// Whether `start..end` shares a byte with this extent (an empty span shares none).
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < self.end && start < end && self.start < end && start < self.end
    }
}

impl std::fmt::Display for Extent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#x}..{:#x}", self.name, self.start, self.end)
    }
}

/// Problems found in the BAT: how many in all, and the text of the first few.
#[derive(Debug, Default)]
struct Problems {
    total: u64,
    listed: Vec<String>,
}

impl Problems {
    fn push(&mut self, text: impl FnOnce() -> String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(text());
        }
    }
}

/// What tells two paths to the same file apart from two files, for the loop check of a
/// differencing chain: device and inode where there are some (seeing through hard and symbolic
/// links), else the canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileIdentity {
    #[cfg(unix)]
    Inode { dev: u64, ino: u64 },
    #[cfg(not(unix))]
    Path(PathBuf),
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(_path: &Path, metadata: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity::Inode {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }

    #[cfg(not(unix))]
    fn of(path: &Path, _metadata: &std::fs::Metadata) -> FileIdentity {
        FileIdentity::Path(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()))
    }
}

/// What opening a file did about its log (MS-VHDX 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogReplay {
    /// LogGuid is zero: there is nothing to replay.
    Clean,
    /// LogGuid is set but the log holds no valid active sequence (for example the only entry
    /// is torn): nothing is applied, as nothing of an incomplete entry reaches the file.
    NoValidEntries {
        /// The header's LogGuid.
        log_guid: Uuid,
    },
    /// Replayed into memory for a read-only open; the file is unchanged.
    InMemory(ReplayedLog),
    /// Replayed into the file, flushed, and LogGuid cleared in a new header.
    Written(ReplayedLog),
}

/// The active log sequence that was replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedLog {
    /// The header's LogGuid, which the replayed entries carry.
    pub log_guid: Uuid,
    /// Entries replayed, from the tail entry to the head.
    pub entries: u32,
    /// Sequence number of the first (tail) entry replayed.
    pub first_sequence: u64,
    /// Sequence number of the last (head) entry replayed.
    pub last_sequence: u64,
    /// 4 KiB data sectors written.
    pub data_sectors: u64,
    /// Zero descriptors applied.
    pub zero_ranges: u64,
}

impl std::fmt::Display for LogReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let summary = |f: &mut std::fmt::Formatter<'_>, r: &ReplayedLog| {
            write!(
                f,
                "{} (sequence {}..{}), {}, {}, LogGuid {}",
                count(r.entries, "entry", "entries"),
                r.first_sequence,
                r.last_sequence,
                count(r.data_sectors, "data sector", "data sectors"),
                count(r.zero_ranges, "zero range", "zero ranges"),
                braced_upper(&r.log_guid)
            )
        };
        match self {
            LogReplay::Clean => f.write_str("clean (nothing to replay)"),
            LogReplay::NoValidEntries { log_guid } => write!(
                f,
                "LogGuid {} set but no valid entries: nothing replayed",
                braced_upper(log_guid)
            ),
            LogReplay::InMemory(r) => {
                f.write_str("replayed in memory (file unchanged): ")?;
                summary(f, r)
            }
            LogReplay::Written(r) => {
                f.write_str("replayed into the file: ")?;
                summary(f, r)
            }
        }
    }
}

/// A log replayed for a read-only open: the replayed ranges and the real length on disk.
#[derive(Debug)]
struct ReplayOverlay {
    overlay: Overlay,
    disk_len: u64,
}

/// The kind of virtual disk, from the File Parameters item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// LeaveBlockAllocated set: every block allocated up front.
    Fixed,
    /// Blocks allocated on first write.
    Dynamic,
    /// HasParent set: absent blocks come from the parent.
    Differencing,
}

impl std::fmt::Display for DiskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        })
    }
}

/// An open VHDX file (and, for a differencing disk, its opened parent chain).
#[derive(Debug)]
pub struct VhdxFile {
    path: PathBuf,
    file: File,
    writable: bool,
    creator: String,
    header: Header,
    header_slot: u8,
    header_refreshed: bool,
    regions: Vec<RegionEntry>,
    /// The header section, the log (when it has a length) and every region: what blocks must
    /// stay out of.
    extents: Vec<Extent>,
    /// Why the first region table was passed over for the second (it was damaged).
    region_table_note: Option<String>,
    bat_offset: u64,
    bat_length: u32,
    metadata_offset: u64,
    metadata_length: u32,
    geometry: Geometry,
    physical_sector_size: u32,
    virtual_disk_id: Uuid,
    params_flags: u32,
    locator: Option<LocatorItem>,
    bat: Vec<u64>,
    /// Length of the file as the structures see it (after an in-memory replay, the length the
    /// log says the file has).
    file_len: u64,
    log_replay: LogReplay,
    overlay: Option<ReplayOverlay>,
    identity: FileIdentity,
    parent: Option<Box<VhdxFile>>,
}

impl VhdxFile {
    /// Opens a VHDX read-only; a differencing disk's parents are opened and checked too.
    pub fn open(path: &Path) -> Result<VhdxFile> {
        Self::open_chain(path, false, &[], true)
    }

    /// Opens a VHDX for reading and writing (writes are supported on dynamic and fixed disks).
    pub fn open_rw(path: &Path) -> Result<VhdxFile> {
        Self::open_chain(path, true, &[], true)
    }

    /// Opens `path` as the parent of the files in `children` (nearest last; empty for the file
    /// the caller asked for), refusing a file that is already one of them; and its own parents
    /// too when `with_parents` (a differencing disk opened without them can only be described,
    /// not read).
    fn open_chain(
        path: &Path,
        writable: bool,
        children: &[FileIdentity],
        with_parents: bool,
    ) -> Result<VhdxFile> {
        let io = |op, offset, source| Error::Io {
            path: path.to_path_buf(),
            op,
            offset,
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| io("open", 0, e))?;
        let metadata = file.metadata().map_err(|e| io("stat", 0, e))?;
        let identity = FileIdentity::of(path, &metadata);
        if children.contains(&identity) {
            // Followed to the depth limit, a loop would keep one BAT per level in memory, and a
            // log replayed in memory can make each of them hundreds of MiB.
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: "the differencing chain loops back to this file".into(),
            });
        }
        let file_len = metadata.len();
        let mut v = VhdxFile {
            path: path.to_path_buf(),
            file,
            writable,
            creator: String::new(),
            header: Header {
                sequence_number: 0,
                file_write_guid: Uuid::nil(),
                data_write_guid: Uuid::nil(),
                log_guid: Uuid::nil(),
                log_version: 0,
                version: 1,
                log_length: 0,
                log_offset: 0,
            },
            header_slot: 1,
            header_refreshed: false,
            regions: Vec::new(),
            extents: Vec::new(),
            region_table_note: None,
            bat_offset: 0,
            bat_length: 0,
            metadata_offset: 0,
            metadata_length: 0,
            geometry: Geometry {
                virtual_size: 0,
                block_size: 0,
                logical_sector_size: 0,
            },
            physical_sector_size: 0,
            virtual_disk_id: Uuid::nil(),
            params_flags: 0,
            locator: None,
            bat: Vec::new(),
            file_len,
            log_replay: LogReplay::Clean,
            overlay: None,
            identity,
            parent: None,
        };
        if file_len < MIB {
            return Err(v.corrupt(
                "file",
                0,
                format!("only {file_len} bytes, below the 1 MiB header section"),
            ));
        }
        v.read_headers()?;
        v.replay_log()?;
        v.read_region_table()?;
        v.read_metadata()?;
        v.read_bat()?;
        if writable {
            // A write could land in a block the BAT places over metadata, and a new block
            // appended at the end of the file could become one the BAT already places there.
            let problems = v.bat_problems();
            if let Some(first) = problems.listed.first() {
                return Err(v.corrupt(
                    "BAT",
                    v.bat_offset,
                    format!(
                        "{}, the first: {first}; refusing to open for writing",
                        count(problems.total, "problem", "problems")
                    ),
                ));
            }
        }
        if v.disk_type() == DiskType::Differencing && with_parents {
            v.attach_parent(children)?;
        }
        Ok(v)
    }

    /// Opens and checks the parent chain of a differencing disk; `children` are the files
    /// below this one (nearest last).
    fn attach_parent(&mut self, children: &[FileIdentity]) -> Result<()> {
        if children.len() >= MAX_CHAIN_DEPTH {
            return Err(
                self.unsupported(format!("differencing chain deeper than {MAX_CHAIN_DEPTH}"))
            );
        }
        let mut chain = children.to_vec();
        chain.push(self.identity.clone());
        let parent = self.open_parent(&chain)?;
        self.parent = Some(Box::new(parent));
        Ok(())
    }

    fn corrupt(&self, what: &'static str, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            what,
            offset,
            reason: reason.into(),
        }
    }

    fn unsupported(&self, reason: impl Into<String>) -> Error {
        Error::Unsupported {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn io(&self, op: &'static str, offset: u64, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            op,
            offset,
            source,
        }
    }

    /// Reads file bytes; after an in-memory replay, the replayed ranges are patched in and the
    /// bytes between the real end of the file and the log's LastFileOffset read as zeros.
    fn read_file(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(r) = &self.overlay else {
            return posio::read_exact_at(&self.file, buf, offset)
                .map_err(|e| self.io("read", offset, e));
        };
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.file_len) {
            return Err(self.io("read", offset, std::io::ErrorKind::UnexpectedEof.into()));
        }
        let on_disk = r.disk_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(on_disk);
        posio::read_exact_at(&self.file, head, offset).map_err(|e| self.io("read", offset, e))?;
        tail.fill(0);
        r.overlay.patch(offset, buf);
        Ok(())
    }

    fn write_file(&self, offset: u64, buf: &[u8]) -> Result<()> {
        posio::write_all_at(&self.file, buf, offset).map_err(|e| self.io("write", offset, e))
    }

    fn read_headers(&mut self) -> Result<()> {
        let mut id = vec![0u8; 520];
        self.read_file(FILE_IDENTIFIER_OFFSET, &mut id)?;
        self.creator =
            decode_file_identifier(&id).map_err(|e| self.corrupt("file identifier", 0, e.0))?;
        let mut best: Option<(Header, u8)> = None;
        let mut reasons = Vec::new();
        for (slot, off) in [(1u8, HEADER1_OFFSET), (2, HEADER2_OFFSET)] {
            let mut b = vec![0u8; HEADER_SIZE];
            self.read_file(off, &mut b)?;
            match Header::decode(&b) {
                Ok(h) => {
                    let newer = match &best {
                        None => true,
                        Some((b, _)) => b.sequence_number < h.sequence_number,
                    };
                    if newer {
                        best = Some((h, slot));
                    }
                }
                Err(e) => reasons.push(format!("header {slot}: {}", e.0)),
            }
        }
        let Some((h, slot)) = best else {
            return Err(self.corrupt("headers", HEADER1_OFFSET, reasons.join("; ")));
        };
        self.header = h;
        self.header_slot = slot;
        Ok(())
    }

    fn log_error(&self, offset: u64, reason: impl Into<String>) -> Error {
        Error::Log {
            path: self.path.clone(),
            offset,
            reason: reason.into(),
        }
    }

    /// Replays the log when LogGuid is set (MS-VHDX 2.3.3): into the file when opened for
    /// writing (then flushes and clears LogGuid in a new header, as Windows and qemu do), into
    /// an in-memory overlay when read-only. Runs before the region table is read, since the log
    /// may change the region table, metadata and BAT.
    fn replay_log(&mut self) -> Result<()> {
        let h = self.header.clone();
        if h.log_guid.is_nil() {
            return Ok(());
        }
        let log_offset = h.log_offset;
        let log_len = u64::from(h.log_length);
        if h.log_version != 0 {
            return Err(self.log_error(
                log_offset,
                format!("log version {} (only 0 is defined)", h.log_version),
            ));
        }
        if log_len == 0
            || !log_len.is_multiple_of(MIB)
            || !log_offset.is_multiple_of(MIB)
            || log_offset < MIB
            || log_offset.saturating_add(log_len) > self.file_len
        {
            return Err(self.log_error(
                log_offset,
                format!(
                    "log region {log_offset:#x}+{log_len:#x} is not 1 MiB aligned, empty, in the header section or past the end of the file ({:#x})",
                    self.file_len
                ),
            ));
        }
        // Bounded by the file size (checked just above).
        let mut log = vec![0u8; log_len as usize];
        self.read_file(log_offset, &mut log)?;
        let sequence = match find_active_sequence(&log, h.log_guid) {
            Ok(s) => s,
            Err(SearchError::BadLength(n)) => {
                return Err(self.log_error(log_offset, format!("log length {n} unusable")))
            }
            Err(SearchError::Budget(n)) => {
                return Err(self.log_error(
                    log_offset,
                    format!("gave up searching the {n}-byte log for its active sequence: far more checksum work than a real log needs"),
                ))
            }
        };
        drop(log);
        let Some(entries) = sequence else {
            if self.writable {
                // Windows might still find entries we reject; writing without the log would let
                // a later replay of them overwrite our changes.
                return Err(self.log_error(
                    log_offset,
                    format!(
                        "LogGuid {} is set but the log holds no valid sequence; refusing to open for writing",
                        braced_upper(&h.log_guid)
                    ),
                ));
            }
            self.log_replay = LogReplay::NoValidEntries {
                log_guid: h.log_guid,
            };
            return Ok(());
        };
        let (Some(first), Some(head)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let head_h = &head.entry.header;
        if head_h.flushed_file_offset > self.file_len {
            return Err(self.log_error(
                log_offset + u64::from(head.offset),
                format!(
                    "the file is {} bytes, shorter than the FlushedFileOffset {} of log entry {}: it was truncated",
                    self.file_len, head_h.flushed_file_offset, head_h.sequence_number
                ),
            ));
        }
        let log_end = log_offset + log_len;
        let mut last_file_offset = 0u64;
        for e in &entries {
            let eh = &e.entry.header;
            let at = log_offset + u64::from(e.offset);
            if eh.last_file_offset > MAX_LOGGED_FILE_END {
                return Err(self.log_error(
                    at,
                    format!(
                        "entry {} has LastFileOffset {:#x}",
                        eh.sequence_number, eh.last_file_offset
                    ),
                ));
            }
            last_file_offset = last_file_offset.max(eh.last_file_offset);
            for w in &e.entry.writes {
                let start = w.file_offset();
                let end = start.saturating_add(w.len());
                // The file identifier and headers are never logged; the log never logs itself.
                let bad_target = if w.is_empty() {
                    None
                } else if start < REGION_TABLE1_OFFSET {
                    Some("the file identifier or headers")
                } else if start < log_end && end > log_offset {
                    Some("the log itself")
                } else if end > MAX_LOGGED_FILE_END {
                    Some("beyond 256 TiB")
                } else {
                    None
                };
                if let Some(what) = bad_target {
                    return Err(self.log_error(
                        at,
                        format!(
                            "entry {} writes {start:#x}..{end:#x}, into {what}",
                            eh.sequence_number
                        ),
                    ));
                }
            }
        }
        let summary = ReplayedLog {
            log_guid: h.log_guid,
            entries: entries.len() as u32,
            first_sequence: first.entry.header.sequence_number,
            last_sequence: head_h.sequence_number,
            data_sectors: count_writes(&entries, true),
            zero_ranges: count_writes(&entries, false),
        };
        // LastFileOffset is a multiple of 1 MiB per the spec; round up in case it is not.
        let wanted_len = last_file_offset.div_ceil(MIB) * MIB;
        if self.writable {
            self.replay_into_file(&entries, wanted_len)?;
            self.log_replay = LogReplay::Written(summary);
        } else {
            let mut overlay = Overlay::default();
            for w in entries.iter().flat_map(|e| &e.entry.writes) {
                overlay.apply(w);
            }
            let disk_len = self.file_len;
            self.file_len = disk_len.max(wanted_len).max(overlay.end());
            self.overlay = Some(ReplayOverlay { overlay, disk_len });
            self.log_replay = LogReplay::InMemory(summary);
        }
        Ok(())
    }

    /// Applies the writes in order, extends the file to the log's LastFileOffset, flushes, then
    /// writes a header with LogGuid zero in the other slot. DataWriteGuid is kept: the replay
    /// completes changes the writer already made under that GUID; FileWriteGuid is new.
    fn replay_into_file(&mut self, entries: &[PlacedEntry], wanted_len: u64) -> Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
        for w in entries.iter().flat_map(|e| &e.entry.writes) {
            match w {
                LogWrite::Data { file_offset, bytes } => {
                    self.write_file(*file_offset, &bytes[..])?;
                    self.file_len = self.file_len.max(file_offset + LOG_SECTOR_SIZE as u64);
                }
                LogWrite::Zero {
                    file_offset,
                    length,
                } => {
                    let end = file_offset + length;
                    // Inside the file: write zeros. Past its end: extending leaves a hole that
                    // reads as zeros.
                    let mut pos = *file_offset;
                    while pos < end.min(self.file_len) {
                        let n = (end.min(self.file_len) - pos).min(ZEROS.len() as u64) as usize;
                        self.write_file(pos, &ZEROS[..n])?;
                        pos += n as u64;
                    }
                    if end > self.file_len {
                        self.set_file_len(end)?;
                    }
                }
            }
        }
        if wanted_len > self.file_len {
            self.set_file_len(wanted_len)?;
        }
        self.file
            .sync_all()
            .map_err(|e| self.io("sync", self.header.log_offset, e))?;
        let mut h = self.header.clone();
        h.log_guid = Uuid::nil();
        h.file_write_guid = Uuid::new_v4();
        self.write_next_header(h)
    }

    /// Writes `h` with the next sequence number into the header slot not in use and makes it
    /// the current one (MS-VHDX 2.2.2.1: the other slot, a higher sequence number, synced).
    fn write_next_header(&mut self, mut h: Header) -> Result<()> {
        let current = if self.header_slot == 1 {
            HEADER1_OFFSET
        } else {
            HEADER2_OFFSET
        };
        h.sequence_number = h
            .sequence_number
            .checked_add(1)
            .ok_or_else(|| self.corrupt("header", current, "sequence number at its maximum"))?;
        let (slot, off) = if self.header_slot == 1 {
            (2, HEADER2_OFFSET)
        } else {
            (1, HEADER1_OFFSET)
        };
        self.write_file(off, &h.encode())?;
        self.file.sync_data().map_err(|e| self.io("sync", off, e))?;
        self.header = h;
        self.header_slot = slot;
        Ok(())
    }

    fn set_file_len(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| self.io("extend", len, e))?;
        self.file_len = len;
        Ok(())
    }

    /// Reads the region table: the first copy, or the second when the first is damaged (bad
    /// signature or checksum). A copy that is intact but breaks a rule (too many entries,
    /// misaligned, a region listed twice) is refused, not passed over. Then checks that the
    /// regions, the log and the header section do not overlap (MS-VHDX 2.2.3.2).
    fn read_region_table(&mut self) -> Result<()> {
        let mut reasons = Vec::new();
        let mut table = None;
        for off in [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET] {
            let mut b = vec![0u8; REGION_TABLE_SIZE];
            self.read_file(off, &mut b)?;
            let intact =
                &b[..4] == REGION_SIGNATURE && le_u32(&b, 4) == checksum_with_zeroed_field(&b, 4);
            match decode_region_table(&b) {
                Ok(t) => {
                    table = Some((t, off));
                    break;
                }
                Err(e) if intact => return Err(self.corrupt("region table", off, e.0)),
                Err(e) => reasons.push(format!("at {off:#x}: {}", e.0)),
            }
        }
        let Some((table, table_offset)) = table else {
            return Err(self.corrupt("region table", REGION_TABLE1_OFFSET, reasons.join("; ")));
        };
        if table_offset != REGION_TABLE1_OFFSET {
            self.region_table_note = Some(format!(
                "region table {}; the copy at {table_offset:#x} was used",
                reasons.join("; ")
            ));
        }
        for e in &table {
            if e.guid == BAT_REGION {
                self.bat_offset = e.file_offset;
                self.bat_length = e.length;
            } else if e.guid == METADATA_REGION {
                self.metadata_offset = e.file_offset;
                self.metadata_length = e.length;
            } else if e.required {
                return Err(self.unsupported(format!("unknown required region {}", e.guid)));
            }
            if e.file_offset.saturating_add(u64::from(e.length)) > self.file_len {
                return Err(self.corrupt(
                    "region table",
                    table_offset,
                    format!(
                        "region {} at {:#x}+{:#x} runs past the end of the file ({:#x})",
                        e.guid, e.file_offset, e.length, self.file_len
                    ),
                ));
            }
        }
        if self.bat_length == 0 || self.metadata_length == 0 {
            return Err(self.corrupt(
                "region table",
                table_offset,
                "BAT or metadata region missing or empty",
            ));
        }
        let mut extents = vec![Extent {
            name: "header section".into(),
            start: 0,
            end: MIB,
        }];
        let log_length = u64::from(self.header.log_length);
        if log_length > 0 {
            extents.push(Extent {
                name: "log".into(),
                start: self.header.log_offset,
                end: self.header.log_offset.saturating_add(log_length),
            });
        }
        for e in &table {
            extents.push(Extent {
                name: region_name(&e.guid),
                start: e.file_offset,
                end: e.file_offset + u64::from(e.length),
            });
        }
        for (i, a) in extents.iter().enumerate() {
            if let Some(b) = extents[i + 1..].iter().find(|b| a.overlaps(b.start, b.end)) {
                return Err(self.corrupt(
                    "region table",
                    table_offset,
                    format!("{b} overlaps {a}"),
                ));
            }
        }
        self.extents = extents;
        self.regions = table;
        Ok(())
    }

    fn read_metadata(&mut self) -> Result<()> {
        let base = self.metadata_offset;
        let mut table = vec![0u8; METADATA_TABLE_SIZE];
        self.read_file(base, &mut table)?;
        let entries = decode_metadata_table(&table, u64::from(self.metadata_length))
            .map_err(|e| self.corrupt("metadata table", base, e.0))?;
        let mut params = None;
        let mut size = None;
        let mut disk_id = None;
        let mut logical = None;
        let mut physical = None;
        for e in entries.iter().filter(|e| e.flags & META_IS_USER == 0) {
            let off = base + u64::from(e.offset);
            let mut data = vec![0u8; e.length as usize];
            self.read_file(off, &mut data)?;
            let need = |n: usize| -> Result<()> {
                if data.len() < n {
                    Err(self.corrupt(
                        "metadata item",
                        off,
                        format!("item {} is {} bytes, needs {n}", e.item_id, data.len()),
                    ))
                } else {
                    Ok(())
                }
            };
            match e.item_id {
                FILE_PARAMETERS => {
                    need(8)?;
                    params = Some((le_u32(&data, 0), le_u32(&data, 4)));
                }
                VIRTUAL_DISK_SIZE => {
                    need(8)?;
                    size = Some(le_u64(&data, 0));
                }
                VIRTUAL_DISK_ID => {
                    need(16)?;
                    disk_id = Some(le_guid(&data, 0));
                }
                LOGICAL_SECTOR_SIZE => {
                    need(4)?;
                    logical = Some(le_u32(&data, 0));
                }
                PHYSICAL_SECTOR_SIZE => {
                    need(4)?;
                    physical = Some(le_u32(&data, 0));
                }
                PARENT_LOCATOR => {
                    let item = LocatorItem::decode(&data)
                        .map_err(|err| self.corrupt("parent locator", off, err.0))?;
                    self.locator = Some(item);
                }
                other if e.flags & META_IS_REQUIRED != 0 => {
                    return Err(self.unsupported(format!("unknown required metadata item {other}")));
                }
                _ => {}
            }
        }
        let path = self.path.clone();
        let missing = |what: &str| Error::Corrupt {
            path: path.clone(),
            what: "metadata",
            offset: base,
            reason: format!("no {what} item"),
        };
        let (block_size, flags) = params.ok_or_else(|| missing("File Parameters"))?;
        let virtual_size = size.ok_or_else(|| missing("Virtual Disk Size"))?;
        let logical_sector_size = logical.ok_or_else(|| missing("Logical Sector Size"))?;
        let physical_sector_size = physical.ok_or_else(|| missing("Physical Sector Size"))?;
        let virtual_disk_id = disk_id.ok_or_else(|| missing("Virtual Disk ID"))?;
        self.physical_sector_size = physical_sector_size;
        self.virtual_disk_id = virtual_disk_id;
        self.params_flags = flags;
        self.geometry = Geometry {
            virtual_size,
            block_size,
            logical_sector_size,
        };
        self.geometry
            .validate()
            .map_err(|e| self.corrupt("metadata", base, e.0))?;
        if physical_sector_size != 512 && physical_sector_size != 4096 {
            return Err(self.corrupt(
                "metadata",
                base,
                format!("physical sector size {physical_sector_size} is neither 512 nor 4096"),
            ));
        }
        if flags & PARAM_HAS_PARENT != 0 {
            match &self.locator {
                None => return Err(missing("Parent Locator (HasParent is set)")),
                Some(l) if l.locator_type != VHDX_LOCATOR_TYPE => {
                    return Err(self.unsupported(format!(
                        "parent locator type {} (only VHDX parents are supported)",
                        l.locator_type
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The file's length on disk (a log replayed in memory can make it look longer).
    fn disk_len(&self) -> u64 {
        self.overlay.as_ref().map_or(self.file_len, |r| r.disk_len)
    }

    fn read_bat(&mut self) -> Result<()> {
        let n = self.geometry.bat_entries(self.has_parent());
        let need = n * 8;
        if need > u64::from(self.bat_length) {
            return Err(self.corrupt(
                "BAT",
                self.bat_offset,
                format!(
                    "{n} entries need {need} bytes, region holds {}",
                    self.bat_length
                ),
            ));
        }
        // The region lies inside the file (checked with the region table); a log replayed in
        // memory may make the file look longer than it is, so the allocation is bounded by
        // the file's size on disk too (a real BAT lies in the file as created).
        let on_disk = self.disk_len();
        if need > on_disk {
            return Err(self.corrupt(
                "BAT",
                self.bat_offset,
                format!("{n} entries need {need} bytes, more than the file's {on_disk} bytes"),
            ));
        }
        let mut raw = vec![0u8; need as usize];
        self.read_file(self.bat_offset, &mut raw)?;
        self.bat = raw.chunks_exact(8).map(|c| le_u64(c, 0)).collect();
        Ok(())
    }

    fn has_parent(&self) -> bool {
        self.params_flags & PARAM_HAS_PARENT != 0
    }

    fn open_parent(&self, chain: &[FileIdentity]) -> Result<VhdxFile> {
        let Some(loc) = &self.locator else {
            return Err(self.corrupt("metadata", self.metadata_offset, "no parent locator"));
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(rel) = loc.get(KEY_RELATIVE_PATH) {
            // `.\base.vhdx` names the file beside this one: drop the `.` components.
            let rel = PathBuf::from(windows_to_unix(rel));
            let rel: PathBuf = rel
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            candidates.push(dir.join(rel));
        }
        for key in [KEY_VOLUME_PATH, KEY_ABSOLUTE_WIN32_PATH] {
            if let Some(abs) = loc.get(key) {
                candidates.push(PathBuf::from(windows_to_unix(abs)));
            }
        }
        let Some(found) = candidates.iter().find(|p| p.is_file()) else {
            return Err(Error::ParentNotFound {
                path: self.path.clone(),
                tried: candidates.iter().map(|p| p.display().to_string()).collect(),
            });
        };
        let parent = VhdxFile::open_chain(found, false, chain, true)?;
        let linkage: Vec<Uuid> = [KEY_PARENT_LINKAGE, KEY_PARENT_LINKAGE2]
            .iter()
            .filter_map(|k| loc.get(k).and_then(parse_guid))
            .collect();
        if !linkage.contains(&parent.header.data_write_guid) {
            return Err(Error::ParentMismatch {
                path: self.path.clone(),
                parent: found.clone(),
                expected: loc.get(KEY_PARENT_LINKAGE).unwrap_or("(none)").to_string(),
                found: braced_upper(&parent.header.data_write_guid),
            });
        }
        // The child reads through to the parent sector by sector, so both must describe the
        // same disk (MS-VHDX 2.6.2: a child copies these IsVirtualDisk items from its parent).
        let (p, c) = (parent.geometry, self.geometry);
        let differs = if p.virtual_size != c.virtual_size {
            Some(format!(
                "its virtual size is {} bytes, the child's {}",
                p.virtual_size, c.virtual_size
            ))
        } else if p.logical_sector_size != c.logical_sector_size {
            Some(format!(
                "its logical sector size is {}, the child's {}",
                p.logical_sector_size, c.logical_sector_size
            ))
        } else {
            None
        };
        if let Some(reason) = differs {
            return Err(Error::ParentIncompatible {
                path: self.path.clone(),
                parent: found.clone(),
                reason,
            });
        }
        Ok(parent)
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the virtual disk in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.geometry.virtual_size
    }

    /// Logical sector size of the virtual disk (512 or 4096).
    pub fn logical_sector_size(&self) -> u32 {
        self.geometry.logical_sector_size
    }

    /// Payload block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.geometry.block_size
    }

    /// Fixed, dynamic or differencing.
    pub fn disk_type(&self) -> DiskType {
        if self.has_parent() {
            DiskType::Differencing
        } else if self.params_flags & PARAM_LEAVE_BLOCK_ALLOCATED != 0 {
            DiskType::Fixed
        } else {
            DiskType::Dynamic
        }
    }

    /// What opening did about the file's log.
    pub fn log_replay(&self) -> &LogReplay {
        &self.log_replay
    }

    /// The current header's DataWriteGuid (what a child's parent_linkage must hold).
    pub fn data_write_guid(&self) -> Uuid {
        self.header.data_write_guid
    }

    /// The Virtual Disk ID (SCSI page 83 identity) from the metadata.
    pub fn virtual_disk_id(&self) -> Uuid {
        self.virtual_disk_id
    }

    /// The opened parent of a differencing disk.
    pub fn parent(&self) -> Option<&VhdxFile> {
        self.parent.as_deref()
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<()> {
        let size = self.geometry.virtual_size;
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Error::OutOfRange {
                path: self.path.clone(),
                offset,
                len: len as u64,
                size,
            }),
        }
    }

    fn bat_entry(&self, index: u64) -> Result<BatEntry> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.bat.get(i))
            .map(|&raw| BatEntry::from_raw(raw))
            .ok_or_else(|| self.corrupt("BAT", self.bat_offset, format!("no entry {index}")))
    }

    /// File offset of a present block of `len` bytes (a payload block, or the 1 MiB of a
    /// sector bitmap); refuses a block that lies past the end of the file or over the header
    /// section, the log or a region, so a read never returns those bytes as disk data and a
    /// write never lands in them.
    fn block_file_offset(&self, index: u64, e: BatEntry, len: u64) -> Result<u64> {
        match self.placement_problem(e.file_offset_mb, len) {
            None => Ok(e.file_offset_mb * MIB),
            Some(reason) => Err(self.corrupt(
                "BAT entry",
                self.bat_offset + index * 8,
                format!(
                    "{} at file offset {:#x}: {reason}",
                    self.bat_entry_name(index),
                    e.file_offset_mb * MIB
                ),
            )),
        }
    }

    /// Why a block of `len` bytes at `offset_mb` MiB cannot be where the BAT puts it.
    fn placement_problem(&self, offset_mb: u64, len: u64) -> Option<String> {
        // FileOffsetMB has 44 bits, so this cannot overflow; the end can.
        let start = offset_mb * MIB;
        let Some(end) = start.checked_add(len) else {
            return Some("its end lies beyond 2^64".into());
        };
        if let Some(x) = self.extents.iter().find(|x| x.overlaps(start, end)) {
            return Some(format!("the block ({len:#x} bytes) overlaps the {x}"));
        }
        if end > self.file_len {
            return Some(format!(
                "the block ({len:#x} bytes) ends at {end:#x}, past the end of the file ({:#x})",
                self.file_len
            ));
        }
        None
    }

    /// "payload block N (BAT entry I)" or "sector bitmap of chunk C (BAT entry I)".
    fn bat_entry_name(&self, index: u64) -> String {
        let per_chunk = self.geometry.chunk_ratio() + 1;
        if (index + 1).is_multiple_of(per_chunk) {
            format!(
                "sector bitmap of chunk {} (BAT entry {index})",
                index / per_chunk
            )
        } else {
            format!(
                "payload block {} (BAT entry {index})",
                index - index / per_chunk
            )
        }
    }

    /// Every BAT entry that cannot be used as it stands: a present block past the end of the
    /// file, over the header section, the log or a region, or over another present block
    /// (MS-VHDX 2.2.3.2); a state that is reserved, or that only a differencing disk may use.
    fn bat_problems(&self) -> Problems {
        let mut problems = Problems::default();
        let per_chunk = self.geometry.chunk_ratio() + 1;
        let has_parent = self.has_parent();
        // (start, end, BAT index) of every block placed in a usable spot.
        let mut placed: Vec<(u64, u64, u64)> = Vec::new();
        for (index, &raw) in (0u64..).zip(&self.bat) {
            let e = BatEntry::from_raw(raw);
            let bitmap = (index + 1).is_multiple_of(per_chunk);
            let len = if bitmap {
                MIB
            } else {
                u64::from(self.geometry.block_size)
            };
            let state_problem = match (bitmap, e.state) {
                (false, PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO)
                | (false, PAYLOAD_UNMAPPED | PAYLOAD_UNMAPPED_V095)
                | (true, SB_NOT_PRESENT) => continue,
                (false, PAYLOAD_FULLY_PRESENT) => None,
                (false, PAYLOAD_PARTIALLY_PRESENT) | (true, SB_PRESENT) if has_parent => None,
                (false, PAYLOAD_PARTIALLY_PRESENT) | (true, SB_PRESENT) => {
                    Some(format!("state {} is for differencing disks only", e.state))
                }
                (_, s) => Some(format!("state {s} is reserved")),
            };
            if let Some(reason) = state_problem {
                problems.push(|| format!("{}: {reason}", self.bat_entry_name(index)));
                continue;
            }
            match self.placement_problem(e.file_offset_mb, len) {
                Some(reason) => problems.push(|| {
                    format!(
                        "{} at file offset {:#x}: {reason}",
                        self.bat_entry_name(index),
                        e.file_offset_mb * MIB
                    )
                }),
                None => placed.push((e.file_offset_mb * MIB, e.file_offset_mb * MIB + len, index)),
            }
        }
        placed.sort_unstable();
        let mut reach: Option<(u64, u64)> = None; // (end, index) of the block reaching furthest
        for &(start, end, index) in &placed {
            match reach {
                Some((r_end, r_index)) if start < r_end => {
                    problems.push(|| {
                        format!(
                            "{} at file offset {start:#x} overlaps {}, which ends at {r_end:#x}",
                            self.bat_entry_name(index),
                            self.bat_entry_name(r_index)
                        )
                    });
                    if end > r_end {
                        reach = Some((end, index));
                    }
                }
                _ => reach = Some((end, index)),
            }
        }
        problems
    }

    /// Fills `buf` with the virtual-disk bytes at `offset`; the range must lie inside the disk.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        for (pos, span) in block_spans(offset, buf.len(), self.geometry.block_size) {
            if let Some(part) = buf.get_mut(span) {
                self.read_in_block(pos, part)?;
            }
        }
        Ok(())
    }

    /// Reads a range that lies within one payload block.
    fn read_in_block(&self, pos: u64, out: &mut [u8]) -> Result<()> {
        let bs = u64::from(self.geometry.block_size);
        let block = pos / bs;
        let index = self.geometry.payload_index(block);
        let e = self.bat_entry(index)?;
        match e.state {
            PAYLOAD_FULLY_PRESENT => {
                let off = self.block_file_offset(index, e, bs)?;
                self.read_file(off + pos % bs, out)
            }
            PAYLOAD_PARTIALLY_PRESENT if self.parent.is_some() => {
                let off = self.block_file_offset(index, e, bs)?;
                self.read_partial(block, off, pos, out)
            }
            PAYLOAD_NOT_PRESENT => match &self.parent {
                Some(p) => p.read_at(pos, out),
                None => {
                    out.fill(0);
                    Ok(())
                }
            },
            PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED | PAYLOAD_UNMAPPED_V095 => {
                out.fill(0);
                Ok(())
            }
            s => Err(self.corrupt(
                "BAT entry",
                self.bat_offset + index * 8,
                format!("payload block {block} has state {s}"),
            )),
        }
    }

    /// PARTIALLY_PRESENT block: each logical sector comes from this file or the parent, as the
    /// chunk's sector bitmap says (bit i, LSB first = sector i of the chunk; MS-VHDX 2.5.1.2).
    fn read_partial(&self, block: u64, block_off: u64, pos: u64, out: &mut [u8]) -> Result<()> {
        let g = self.geometry;
        let ls = u64::from(g.logical_sector_size);
        let chunk = block / g.chunk_ratio();
        let sb_index = g.bitmap_index(chunk);
        let sb = self.bat_entry(sb_index)?;
        if sb.state != SB_PRESENT {
            return Err(self.corrupt(
                "BAT entry",
                self.bat_offset + sb_index * 8,
                format!("block {block} is partially present but its sector bitmap is not"),
            ));
        }
        let sb_off = self.block_file_offset(sb_index, sb, MIB)?;
        let chunk_start = chunk * g.chunk_ratio() * u64::from(g.block_size);
        let first = (pos - chunk_start) / ls;
        let last = (pos + out.len() as u64 - 1 - chunk_start) / ls;
        let mut bits = vec![0u8; ((last / 8) - (first / 8) + 1) as usize];
        self.read_file(sb_off + first / 8, &mut bits)?;
        let present = |sector: u64| {
            let i = sector / 8 - first / 8;
            bits[i as usize] >> (sector % 8) & 1 == 1
        };
        let bs = u64::from(g.block_size);
        let mut done = 0usize;
        while done < out.len() {
            let p = pos + done as u64;
            let sector = (p - chunk_start) / ls;
            let here = present(sector);
            let mut end = (sector + 1) * ls + chunk_start;
            while end < pos + out.len() as u64 && present((end - chunk_start) / ls) == here {
                end += ls;
            }
            let n = (end.min(pos + out.len() as u64) - p) as usize;
            let dst = &mut out[done..done + n];
            if here {
                self.read_file(block_off + p % bs, dst)?;
            } else if let Some(parent) = &self.parent {
                parent.read_at(p, dst)?;
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at virtual offset `offset` of a dynamic or fixed disk. Blocks that are not
    /// allocated yet are appended to the file; an all-zero write to such a block allocates nothing.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(self.unsupported("write to a file opened read-only"));
        }
        if self.has_parent() {
            return Err(self.unsupported("writes to differencing disks"));
        }
        self.check_range(offset, data.len())?;
        for (pos, span) in block_spans(offset, data.len(), self.geometry.block_size) {
            if let Some(part) = data.get(span) {
                self.write_in_block(pos, part)?;
            }
        }
        Ok(())
    }

    fn write_in_block(&mut self, pos: u64, data: &[u8]) -> Result<()> {
        let bs = u64::from(self.geometry.block_size);
        let block = pos / bs;
        let index = self.geometry.payload_index(block);
        let e = self.bat_entry(index)?;
        if e.state == PAYLOAD_FULLY_PRESENT {
            let off = self.block_file_offset(index, e, bs)?;
            self.refresh_header()?;
            return self.write_file(off + pos % bs, data);
        }
        if e.state == PAYLOAD_PARTIALLY_PRESENT {
            return Err(self.corrupt(
                "BAT entry",
                self.bat_offset + index * 8,
                "partially present block in a disk without parent",
            ));
        }
        if data.iter().all(|&b| b == 0) {
            // The block reads as zeros already (see read_in_block).
            return Ok(());
        }
        self.refresh_header()?;
        // New blocks go at the first 1 MiB boundary past the end; set_len leaves the unwritten
        // rest of the block as a hole that reads as zeros.
        let off = self.file_len.div_ceil(MIB) * MIB;
        let new_len = off + bs;
        self.file
            .set_len(new_len)
            .map_err(|err| self.io("extend", new_len, err))?;
        self.file_len = new_len;
        self.write_file(off + pos % bs, data)?;
        let entry = BatEntry {
            state: PAYLOAD_FULLY_PRESENT,
            file_offset_mb: off / MIB,
        };
        self.write_file(self.bat_offset + index * 8, &entry.to_raw().to_le_bytes())?;
        self.bat[index as usize] = entry.to_raw();
        Ok(())
    }

    /// Before the first change after open, write the other header slot with a higher sequence
    /// number and new FileWriteGuid/DataWriteGuid (MS-VHDX 2.2.2.1 update rule).
    fn refresh_header(&mut self) -> Result<()> {
        if self.header_refreshed {
            return Ok(());
        }
        let mut h = self.header.clone();
        h.file_write_guid = Uuid::new_v4();
        h.data_write_guid = Uuid::new_v4();
        self.write_next_header(h)?;
        self.header_refreshed = true;
        Ok(())
    }

    /// Flushes written data and metadata to stable storage.
    pub fn flush(&self) -> Result<()> {
        self.file.sync_all().map_err(|e| self.io("sync", 0, e))
    }

    /// A description of the file's structures (what `cimkit vhdx info` prints), with the
    /// problems found in this file's own BAT and region table (not its parent's).
    pub fn info(&self) -> VhdxInfo {
        let g = self.geometry;
        let mut present = 0u64;
        let mut partial = 0u64;
        let mut zero = 0u64;
        for b in 0..g.payload_blocks() {
            match self.bat_entry(g.payload_index(b)).map(|e| e.state) {
                Ok(PAYLOAD_FULLY_PRESENT) => present += 1,
                Ok(PAYLOAD_PARTIALLY_PRESENT) => partial += 1,
                Ok(PAYLOAD_ZERO) => zero += 1,
                _ => {}
            }
        }
        let mut problems = Problems::default();
        if let Some(note) = &self.region_table_note {
            problems.push(|| note.clone());
        }
        let bat = self.bat_problems();
        problems.total += bat.total;
        let room = MAX_LISTED_PROBLEMS - problems.listed.len();
        problems.listed.extend(bat.listed.into_iter().take(room));
        VhdxInfo {
            path: self.path.clone(),
            file_size: self.disk_len(),
            creator: self.creator.clone(),
            disk_type: self.disk_type(),
            virtual_size: g.virtual_size,
            block_size: g.block_size,
            logical_sector_size: g.logical_sector_size,
            physical_sector_size: self.physical_sector_size,
            virtual_disk_id: self.virtual_disk_id,
            sequence_number: self.header.sequence_number,
            current_header: self.header_slot,
            file_write_guid: self.header.file_write_guid,
            data_write_guid: self.header.data_write_guid,
            log_offset: self.header.log_offset,
            log_length: self.header.log_length,
            log_replay: self.log_replay.clone(),
            regions: self.regions.clone(),
            bat_entries: self.bat.len() as u64,
            payload_blocks: g.payload_blocks(),
            blocks_present: present,
            blocks_partial: partial,
            blocks_zero: zero,
            parent_locator: self
                .locator
                .as_ref()
                .map(|l| l.entries.clone())
                .unwrap_or_default(),
            parent: self.parent.as_ref().map(|p| p.path.clone()),
            parent_problem: None,
            problems: problems.listed,
            problems_total: problems.total,
        }
    }
}

/// Data sectors (`data` = true) or zero descriptors in a sequence.
fn count_writes(entries: &[PlacedEntry], data: bool) -> u64 {
    entries
        .iter()
        .flat_map(|e| &e.entry.writes)
        .filter(|w| matches!(w, LogWrite::Data { .. }) == data)
        .count() as u64
}

/// Everything `info` reports about one VHDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdxInfo {
    /// The file described.
    pub path: PathBuf,
    /// Size of the file on disk in bytes.
    pub file_size: u64,
    /// Creator string from the file type identifier (diagnostic only).
    pub creator: String,
    /// Fixed, dynamic or differencing.
    pub disk_type: DiskType,
    /// Size of the virtual disk in bytes.
    pub virtual_size: u64,
    /// Payload block size in bytes.
    pub block_size: u32,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// The Virtual Disk ID metadata item.
    pub virtual_disk_id: Uuid,
    /// Sequence number of the current header.
    pub sequence_number: u64,
    /// Which header is current: 1 or 2.
    pub current_header: u8,
    /// The current header's FileWriteGuid.
    pub file_write_guid: Uuid,
    /// The current header's DataWriteGuid (what a child's `parent_linkage` must name).
    pub data_write_guid: Uuid,
    /// File offset of the log region.
    pub log_offset: u64,
    /// Length of the log region in bytes.
    pub log_length: u32,
    /// What opening did about the log.
    pub log_replay: LogReplay,
    /// The region table entries.
    pub regions: Vec<RegionEntry>,
    /// Number of BAT entries (payload and sector-bitmap entries).
    pub bat_entries: u64,
    /// Number of payload blocks of the virtual disk.
    pub payload_blocks: u64,
    /// Payload blocks in state FULLY_PRESENT.
    pub blocks_present: u64,
    /// Payload blocks in state PARTIALLY_PRESENT.
    pub blocks_partial: u64,
    /// Payload blocks in state ZERO.
    pub blocks_zero: u64,
    /// Parent locator key/value pairs as stored (differencing disks only).
    pub parent_locator: Vec<(String, String)>,
    /// The parent file that was opened, if any.
    pub parent: Option<PathBuf>,
    /// Why a differencing disk's parent is not used: missing, not its parent (DataWriteGuid),
    /// a different virtual size or logical sector size, damaged, or a loop in the chain.
    pub parent_problem: Option<String>,
    /// The first [`MAX_LISTED_PROBLEMS`] problems found in the file: BAT entries whose block
    /// lies past the end of the file, over the header section, the log, a region or another
    /// block, or whose state is reserved or for differencing disks only; and a damaged first
    /// region table (the second copy was used). Reading such a block fails; the rest reads.
    pub problems: Vec<String>,
    /// How many problems were found in all.
    pub problems_total: u64,
}

impl std::fmt::Display for VhdxInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "file:                 {}", self.path.display())?;
        writeln!(f, "file size:            {} bytes", self.file_size)?;
        writeln!(f, "creator:              {}", upcase::shown(&self.creator))?;
        writeln!(f, "disk type:            {}", self.disk_type)?;
        writeln!(
            f,
            "virtual size:         {} bytes ({:.2} GiB)",
            self.virtual_size,
            self.virtual_size as f64 / (1u64 << 30) as f64
        )?;
        writeln!(f, "block size:           {} bytes", self.block_size)?;
        writeln!(f, "logical sector size:  {}", self.logical_sector_size)?;
        writeln!(f, "physical sector size: {}", self.physical_sector_size)?;
        writeln!(
            f,
            "virtual disk id:      {}",
            braced_upper(&self.virtual_disk_id)
        )?;
        writeln!(
            f,
            "current header:       {} (sequence {})",
            self.current_header, self.sequence_number
        )?;
        writeln!(
            f,
            "file write guid:      {}",
            braced_upper(&self.file_write_guid)
        )?;
        writeln!(
            f,
            "data write guid:      {}",
            braced_upper(&self.data_write_guid)
        )?;
        writeln!(
            f,
            "log:                  offset {:#x} length {:#x}",
            self.log_offset, self.log_length
        )?;
        writeln!(f, "log replay:           {}", self.log_replay)?;
        for r in &self.regions {
            let name = if r.guid == BAT_REGION {
                "BAT"
            } else if r.guid == METADATA_REGION {
                "metadata"
            } else {
                "unknown"
            };
            writeln!(
                f,
                "region {:<14} offset {:#x} length {:#x} required {}",
                format!("{name}:"),
                r.file_offset,
                r.length,
                r.required
            )?;
        }
        writeln!(f, "BAT entries:          {}", self.bat_entries)?;
        writeln!(
            f,
            "payload blocks:       {} ({} present, {} partially present, {} zero)",
            self.payload_blocks, self.blocks_present, self.blocks_partial, self.blocks_zero
        )?;
        for (k, v) in &self.parent_locator {
            writeln!(
                f,
                "parent locator:       {} = {}",
                upcase::shown(k),
                upcase::shown(v)
            )?;
        }
        if let Some(p) = &self.parent {
            writeln!(f, "parent file:          {}", p.display())?;
        }
        if let Some(problem) = &self.parent_problem {
            writeln!(f, "parent file:          not used: {problem}")?;
        }
        match self.problems_total {
            0 => writeln!(f, "problems:             none")?,
            n if n as usize > self.problems.len() => writeln!(
                f,
                "problems:             {n} (the first {} listed)",
                self.problems.len()
            )?,
            n => writeln!(f, "problems:             {n}")?,
        }
        for p in &self.problems {
            writeln!(f, "problem:              {p}")?;
        }
        Ok(())
    }
}

/// Opens `path` read-only and describes it. Fails only when the file itself cannot be read; a
/// differencing disk whose parent cannot be used (missing, not its parent, a different size or
/// sector size, damaged) is still described, with [`VhdxInfo::parent_problem`] saying why.
pub fn info(path: &Path) -> Result<VhdxInfo> {
    let mut v = VhdxFile::open_chain(path, false, &[], false)?;
    let mut parent_problem = None;
    if v.disk_type() == DiskType::Differencing {
        if let Err(e) = v.attach_parent(&[]) {
            parent_problem = Some(e.to_string());
        }
    }
    let mut info = v.info();
    info.parent_problem = parent_problem;
    Ok(info)
}

/// How a region is named in messages: "BAT region", "metadata region" or "region {GUID}".
fn region_name(guid: &Uuid) -> String {
    if *guid == BAT_REGION {
        "BAT region".into()
    } else if *guid == METADATA_REGION {
        "metadata region".into()
    } else {
        format!("region {guid}")
    }
}

/// Maps a Windows path from a parent locator to one to try here: drops a `\\?\` prefix, then
/// a drive letter (`C:`) or a leading `Volume{GUID}` component, and turns `\` into `/`; so
/// `C:\d\p.vhdx` and `\\?\Volume{GUID}\d\p.vhdx` are both tried as `/d/p.vhdx`.
fn windows_to_unix(p: &str) -> String {
    let p = p.strip_prefix(r"\\?\").unwrap_or(p);
    let b = p.as_bytes();
    let p = if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        &p[2..]
    } else if p.starts_with("Volume{") {
        // The volume's mount point is unknown here: try the rest from the root.
        p.find('\\').map_or("", |i| &p[i..])
    } else {
        p
    };
    p.replace('\\', "/")
}

/// Splits `len` bytes at virtual `offset` into the pieces that each lie in one block: the
/// virtual position of each piece and its range within the caller's buffer.
fn block_spans(
    offset: u64,
    len: usize,
    block_size: u32,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> {
    let bs = u64::from(block_size).max(1);
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let pos = offset + done as u64;
        let room = usize::try_from(bs - pos % bs).unwrap_or(usize::MAX);
        let n = (len - done).min(room);
        let span = done..done + n;
        done += n;
        Some((pos, span))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_map_to_unix() {
        assert_eq!(windows_to_unix(r".\base.vhdx"), "./base.vhdx");
        assert_eq!(windows_to_unix(r"\\?\C:\dir\base.vhdx"), "/dir/base.vhdx");
        assert_eq!(windows_to_unix(r"D:\x"), "/x");
        assert_eq!(
            windows_to_unix(r"\\?\Volume{3a1b5c7d-0000-0000-0000-100000000000}\dir\base.vhdx"),
            "/dir/base.vhdx"
        );
    }
}
