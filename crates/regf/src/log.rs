//! Transaction-log recovery: replays the logs (.LOG1/.LOG2) of a dirty hive onto a copy of its
//! primary bytes as the Windows kernel does on load: new format (8.1+, file type 6, "HvLE"
//! entries) and old format (file type 1/2, "DIRT" dirty vector of 512-byte pages).
//! Facts: shared/docs/regf.md §1.13; msuhanov/regf spec 88e878de "Format of transaction log
//! files" and "Multiple transaction log files"; yarp RegistryFile.py @125729d7 (log choice).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::*;

/// What recovery did with one log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogReport {
    /// The log's format, when its base block is a valid log base block.
    pub format: Option<LogFormat>,
    /// Sequence number in the log's base block (for a new-format log, the number its first
    /// entry must carry), when the base block is valid.
    pub sequence: Option<u32>,
    /// Log entries applied from this log (an old-format log applies as one entry).
    pub entries_applied: usize,
    /// Dirty pages written by those entries.
    pub pages_applied: usize,
    /// Why the log was not used, or where reading its entries stopped (the first entry that is
    /// not valid, e.g. the zeros or stale entries after the last one written).
    pub note: String,
}

/// The two log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Windows 8.1+ (file type 6): "HvLE" entries with Marvin32 hashes.
    New,
    /// Windows XP to 8 (file type 1; 2 on NT 4/2000): a "DIRT" bitmap of dirty 512-byte pages.
    Old,
}

/// The outcome of [`recover`]: the recovered file and what each log contributed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The primary file with the logs applied (a copy of the input when nothing applied).
    pub bytes: Vec<u8>,
    /// The primary needed recovery (sequence numbers differ or its checksum is wrong).
    pub was_dirty: bool,
    /// One report per log given, in the order given.
    pub logs: Vec<LogReport>,
    /// Primary (= secondary) sequence number of the resulting base block; the primary's own
    /// primary sequence number when nothing was applied.
    pub sequence: u32,
}

impl Recovery {
    /// Log entries applied from all logs.
    pub fn entries_applied(&self) -> usize {
        self.logs.iter().map(|l| l.entries_applied).sum()
    }
}

/// [`recover_file`]'s result: the recovery and the log files it found, index-aligned with
/// `recovery.logs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecovery {
    /// The recovered hive and what each log contributed.
    pub recovery: Recovery,
    /// The log files found beside the hive, one per entry of `recovery.logs`, in the same order.
    pub log_paths: Vec<PathBuf>,
}

/// The fields of a valid log base block that recovery uses.
struct LogHeader {
    format: LogFormat,
    sequence: u32,
    last_written: u64,
}

/// A log's header, or why it cannot be used.
fn classify(log: &[u8]) -> std::result::Result<LogHeader, String> {
    let base = log.get(..LOG_BASE_BLOCK_SIZE).ok_or_else(|| {
        format!(
            "{} bytes, shorter than the {LOG_BASE_BLOCK_SIZE}-byte base block",
            log.len()
        )
    })?;
    if &base[..4] != b"regf" {
        return Err("no \"regf\" signature".into());
    }
    let field = |at| le_u32(base, at).unwrap_or(0);
    let format = match field(BB_TYPE) {
        FILE_TYPE_LOG_NEW => LogFormat::New,
        FILE_TYPE_LOG_OLD | FILE_TYPE_LOG_VERY_OLD => LogFormat::Old,
        t => return Err(format!("file type {t}, not a transaction log")),
    };
    // A log whose base block is torn (bad checksum or sequence numbers differ) was being
    // written when the system stopped: the spec's "valid transaction log file" rule.
    if field(BB_CHECKSUM) != checksum(base) {
        return Err("base block checksum mismatch".into());
    }
    let (seq1, seq2) = (field(BB_SEQ1), field(BB_SEQ2));
    if seq1 != seq2 {
        return Err(format!("base block sequence numbers {seq1} != {seq2}"));
    }
    Ok(LogHeader {
        format,
        sequence: seq1,
        last_written: le_u64(base, BB_LAST_WRITTEN).unwrap_or(0),
    })
}

/// `a` comes at or after `b` in wrapping 32-bit sequence arithmetic (yarp is_starting_log:
/// a difference above 0x7FFFFFFF means the counter wrapped).
fn not_before(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) <= 0x7FFF_FFFF
}

/// One dirty page of a validated entry: where it goes (relative to the bins) and where its
/// bytes are in the log.
struct Page {
    target: usize,
    source: usize,
    len: usize,
}

/// A log entry that passed every check.
struct Entry {
    size: usize,
    flags: u32,
    sequence: u32,
    bins_size: u32,
    pages: Vec<Page>,
}

/// Reads and checks the entry at `pos`. `max_bins` bounds the hive bins size an entry may
/// claim (the output grows to it).
fn entry_at(
    log: &[u8],
    pos: usize,
    expected: u32,
    max_bins: u64,
) -> std::result::Result<Entry, String> {
    let header = log
        .get(pos..)
        .and_then(|rest| rest.get(..LE_HEADER_SIZE))
        .ok_or("no room for an entry header before the end of the file")?;
    if &header[LE_SIGNATURE..LE_SIGNATURE + 4] != b"HvLE" {
        return Err("no \"HvLE\" signature".into());
    }
    let field = |at| le_u32(header, at).unwrap_or(0);
    let size = field(LE_SIZE) as usize;
    if size <= LE_HEADER_SIZE || !size.is_multiple_of(LOG_SECTOR) {
        return Err(format!(
            "entry size {size:#x} is not a positive multiple of 512"
        ));
    }
    let entry = log
        .get(pos..)
        .and_then(|rest| rest.get(..size))
        .ok_or_else(|| format!("entry size {size:#x} runs past the end of the file"))?;
    // Spec note 8: a bins size that is not a whole number of pages makes the entry bogus.
    let bins_size = field(LE_BINS_SIZE);
    if bins_size == 0 || !(bins_size as usize).is_multiple_of(HBIN_ALIGN) {
        return Err(format!(
            "hive bins size {bins_size:#x} is not a multiple of 4096"
        ));
    }
    if u64::from(bins_size) > max_bins {
        return Err(format!(
            "hive bins size {bins_size:#x} exceeds what the primary and the logs can fill ({max_bins:#x})"
        ));
    }
    let hash1 = le_u64(entry, LE_HASH1).unwrap_or(0);
    let hash2 = le_u64(entry, LE_HASH2).unwrap_or(0);
    if marvin32(LOG_HASH_SEED, &entry[..LE_HASH2_SPAN]) != hash2 {
        return Err("header hash (Hash-2) mismatch".into());
    }
    if marvin32(LOG_HASH_SEED, &entry[LE_HEADER_SIZE..]) != hash1 {
        return Err("body hash (Hash-1) mismatch".into());
    }
    let sequence = field(LE_SEQUENCE);
    if sequence != expected {
        return Err(format!("sequence number {sequence}, expected {expected}"));
    }
    let count = field(LE_PAGE_COUNT) as usize;
    if count == 0 {
        return Err("no dirty pages".into());
    }
    let refs_end = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(LE_HEADER_SIZE))
        .filter(|&end| end <= size)
        .ok_or_else(|| format!("{count} dirty page references do not fit the entry"))?;
    // Every reference is read from the entry itself, so `pages` holds at most size/8 items.
    let mut pages = Vec::with_capacity(count);
    let mut source = refs_end;
    for i in 0..count {
        let at = LE_HEADER_SIZE + 8 * i;
        let target = le_u32(entry, at).unwrap_or(0) as usize;
        let len = le_u32(entry, at + 4).unwrap_or(0) as usize;
        if source.checked_add(len).is_none_or(|end| end > size) {
            return Err(format!(
                "dirty page {i} ({len:#x} bytes) runs past the end of the entry"
            ));
        }
        if target
            .checked_add(len)
            .is_none_or(|end| end as u64 > u64::from(bins_size))
        {
            return Err(format!(
                "dirty page {i} at {target:#x} ({len:#x} bytes) lies outside the hive bins size {bins_size:#x}"
            ));
        }
        pages.push(Page {
            target,
            source: pos + source,
            len,
        });
        source += len;
    }
    Ok(Entry {
        size,
        flags: field(LE_FLAGS),
        sequence,
        bins_size,
        pages,
    })
}

/// The file being recovered and the base-block fields the applied entries set.
struct Target {
    bytes: Vec<u8>,
    max_bins: u64,
    last_sequence: Option<u32>,
    bins_size: u32,
    flags: u32,
}

impl Target {
    /// Applies the entries of `log` from the one numbered `first` on, stopping at the first
    /// that is not valid; fills `report`.
    fn apply(&mut self, log: &[u8], first: u32, report: &mut LogReport) {
        let mut pos = LOG_BASE_BLOCK_SIZE;
        let mut expected = first;
        let stop = loop {
            if pos >= log.len() {
                break format!("end of file at {pos:#x}");
            }
            let entry = match entry_at(log, pos, expected, self.max_bins) {
                Ok(e) => e,
                Err(reason) => break format!("entry at offset {pos:#x}: {reason}"),
            };
            // Spec note 9: the primary grows to the entry's bins size. max_bins bounds it.
            let needed = BASE_BLOCK_SIZE + entry.bins_size as usize;
            if self.bytes.len() < needed {
                self.bytes.resize(needed, 0);
            }
            for p in &entry.pages {
                let at = BASE_BLOCK_SIZE + p.target;
                self.bytes[at..at + p.len].copy_from_slice(&log[p.source..p.source + p.len]);
            }
            report.entries_applied += 1;
            report.pages_applied += entry.pages.len();
            // Spec note 11: only the KTM-locked bit (0x1) travels in an entry's flags.
            self.flags = (self.flags & !1) | (entry.flags & 1);
            self.bins_size = entry.bins_size;
            self.last_sequence = Some(entry.sequence);
            expected = entry.sequence.wrapping_add(1);
            pos += entry.size;
        };
        report.note = stop;
    }

    /// Applies an old-format log: the dirty vector after its base block has one bit per
    /// 512-byte page of the hive bins (bins size from the log's base block), and the dirty
    /// pages follow from the next sector on, in bit order (spec "Old format"). There is no
    /// checksum over the pages, so a log too short for its bitmap's pages is not applied.
    fn apply_old(&mut self, log: &[u8], report: &mut LogReport) -> std::result::Result<(), String> {
        let bins_size = le_u32(log, BB_BINS_SIZE).unwrap_or(0);
        if bins_size == 0 || !(bins_size as usize).is_multiple_of(HBIN_ALIGN) {
            return Err(format!(
                "hive bins size {bins_size:#x} is not a multiple of 4096"
            ));
        }
        if u64::from(bins_size) > self.max_bins {
            return Err(format!(
                "hive bins size {bins_size:#x} exceeds what the primary and the logs can fill ({:#x})",
                self.max_bins
            ));
        }
        let bins = bins_size as usize;
        let vector = LOG_BASE_BLOCK_SIZE;
        if log.get(vector..vector + 4) != Some(&b"DIRT"[..]) {
            return Err(format!("no \"DIRT\" signature at {vector:#x}"));
        }
        let bitmap = log
            .get(vector + 4..vector + 4 + bins / (8 * LOG_SECTOR))
            .ok_or("the dirty vector runs past the end of the file")?;
        let first_page = (vector + 4 + bitmap.len()).next_multiple_of(LOG_SECTOR);
        let dirty = bitmap
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum::<usize>();
        let end = first_page + dirty * LOG_SECTOR;
        if end > log.len() {
            return Err(format!(
                "{dirty} dirty pages need {end:#x} bytes, the file has {:#x}",
                log.len()
            ));
        }
        if self.bytes.len() < BASE_BLOCK_SIZE + bins {
            self.bytes.resize(BASE_BLOCK_SIZE + bins, 0);
        }
        let set_bits = bitmap.iter().enumerate().flat_map(|(i, &byte)| {
            (0..8)
                .filter(move |bit| byte & (1 << bit) != 0)
                .map(move |bit| i * 8 + bit)
        });
        for (k, page) in set_bits.enumerate() {
            let at = BASE_BLOCK_SIZE + page * LOG_SECTOR;
            let from = first_page + k * LOG_SECTOR;
            self.bytes[at..at + LOG_SECTOR].copy_from_slice(&log[from..from + LOG_SECTOR]);
        }
        report.entries_applied = 1;
        report.pages_applied = dirty;
        report.note = format!("{dirty} dirty pages of 512 bytes");
        self.bins_size = bins_size;
        self.flags = le_u32(log, BB_FLAGS).unwrap_or(0);
        Ok(())
    }
}

/// Applies transaction logs to a primary hive file the way Windows does on load and returns
/// the recovered bytes (never modifying the input).
///
/// A clean primary (equal sequence numbers, valid checksum) is returned unchanged. Otherwise,
/// with new-format logs: they are ordered by the sequence numbers in their base blocks; the
/// earlier one is applied if it does not predate the primary's secondary sequence number, and
/// the other continues it when its first entry carries the next number. Each log is applied
/// up to its first invalid entry (signature, size, hashes, sequence, bounds). When the
/// primary's base block is damaged it is rebuilt from the latest log, and only that log is
/// applied. The resulting base block has both sequence numbers one past the last entry
/// applied (what Windows writes after recovering: yarp NewDirtyHive1 vs
/// RecoveredHive_Windows10), the last entry's hive bins size and flags bit, and a fresh
/// checksum. With only old-format logs, the most recent one (by last-written time) that is not
/// older than the primary is applied whole, and the sequence numbers are made equal.
/// Logs that are not valid logs are skipped, and say why in their [`LogReport`].
pub fn recover(primary: &[u8], logs: &[&[u8]]) -> Result<Recovery> {
    let bad = |s: String| Error::BaseBlock(s);
    let base = primary.get(..BASE_BLOCK_SIZE).ok_or_else(|| {
        bad(format!(
            "file is {} bytes, shorter than the 4096-byte base block",
            primary.len()
        ))
    })?;
    if &base[..4] != b"regf" {
        return Err(bad("no \"regf\" signature".into()));
    }
    let field = |at| le_u32(base, at).unwrap_or(0);
    let file_type = field(BB_TYPE);
    if file_type != FILE_TYPE_PRIMARY {
        return Err(bad(format!(
            "file type {file_type}: a transaction log, not a primary hive"
        )));
    }
    let base_valid = field(BB_CHECKSUM) == checksum(base);
    let (seq1, seq2) = (field(BB_SEQ1), field(BB_SEQ2));
    let was_dirty = !base_valid || seq1 != seq2;

    let headers: Vec<_> = logs.iter().map(|l| classify(l)).collect();
    let mut reports: Vec<LogReport> = headers
        .iter()
        .map(|h| LogReport {
            format: h.as_ref().ok().map(|h| h.format),
            sequence: h.as_ref().ok().map(|h| h.sequence),
            entries_applied: 0,
            pages_applied: 0,
            note: match h {
                Ok(_) if was_dirty => "not applicable to this primary".into(),
                Ok(_) => "not needed: the primary is clean".into(),
                Err(why) => format!("not a usable log: {why}"),
            },
        })
        .collect();
    let unchanged = |reports| Recovery {
        bytes: primary.to_vec(),
        was_dirty,
        logs: reports,
        sequence: seq1,
    };
    if !was_dirty {
        return Ok(unchanged(reports));
    }
    let valid = |format| {
        headers
            .iter()
            .enumerate()
            .filter_map(move |(i, h)| match h {
                Ok(h) if h.format == format => Some((i, h)),
                _ => None,
            })
    };
    // Every page written comes from a log, so the bins cannot legitimately outgrow the
    // primary's bins plus all log bytes: this bounds the allocation a log can ask for.
    let log_bytes: u64 = logs.iter().map(|l| l.len() as u64).sum();
    let mut target = Target {
        bytes: primary.to_vec(),
        max_bins: (primary.len() - BASE_BLOCK_SIZE) as u64 + log_bytes,
        last_sequence: None,
        bins_size: field(BB_BINS_SIZE),
        flags: field(BB_FLAGS),
    };
    let sequence = if valid(LogFormat::New).next().is_some() {
        for (i, _) in valid(LogFormat::Old) {
            reports[i].note = "not used: new-format logs are present".into();
        }
        let new: Vec<(usize, u32)> = valid(LogFormat::New)
            .map(|(i, h)| (i, h.sequence))
            .collect();
        apply_new(&mut target, logs, new, base_valid, seq2, &mut reports);
        match target.last_sequence {
            Some(last) => last.wrapping_add(1),
            None => return Ok(unchanged(reports)),
        }
    } else {
        // Spec "Old format" notes 3-4: a valid log applies when its last-written time is not
        // older than the primary's (the first bin's copy when the base block is damaged; yarp
        // apply_old_log_file); Windows 8+ prefers the log with the more recent data.
        let primary_time = if base_valid {
            le_u64(base, BB_LAST_WRITTEN)
        } else {
            le_u64(primary, BASE_BLOCK_SIZE + HBIN_TIMESTAMP)
        }
        .unwrap_or(0);
        let mut best: Option<(usize, &LogHeader)> = None;
        for (i, h) in valid(LogFormat::Old) {
            if h.last_written < primary_time {
                reports[i].note = "older than the primary (last-written time)".into();
            } else if best.is_none_or(|(_, b)| h.last_written > b.last_written) {
                best = Some((i, h));
            }
        }
        let Some((i, header)) = best else {
            return Ok(unchanged(reports));
        };
        for (j, _) in valid(LogFormat::Old) {
            if j != i && reports[j].note.starts_with("not applicable") {
                reports[j].note = "not used: another log has more recent data".into();
            }
        }
        if !base_valid {
            take_base_block(&mut target, logs[i]);
        }
        if let Err(why) = target.apply_old(logs[i], &mut reports[i]) {
            reports[i].note = why;
            return Ok(unchanged(reports));
        }
        if base_valid {
            seq1
        } else {
            header.sequence
        }
    };

    let mut bytes = target.bytes;
    let b = &mut bytes[..BASE_BLOCK_SIZE];
    b[BB_SEQ1..BB_SEQ1 + 4].copy_from_slice(&sequence.to_le_bytes());
    b[BB_SEQ2..BB_SEQ2 + 4].copy_from_slice(&sequence.to_le_bytes());
    b[BB_TYPE..BB_TYPE + 4].copy_from_slice(&FILE_TYPE_PRIMARY.to_le_bytes());
    b[BB_BINS_SIZE..BB_BINS_SIZE + 4].copy_from_slice(&target.bins_size.to_le_bytes());
    b[BB_FLAGS..BB_FLAGS + 4].copy_from_slice(&target.flags.to_le_bytes());
    let sum = checksum(b);
    b[BB_CHECKSUM..BB_CHECKSUM + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(Recovery {
        bytes,
        was_dirty,
        logs: reports,
        sequence,
    })
}

/// Replaces the primary's damaged base block by a log's copy of its first sector (yarp
/// save_recovered_hive); the rest of the 4096 bytes is zero.
fn take_base_block(target: &mut Target, log: &[u8]) {
    let copy = &log[..LOG_BASE_BLOCK_SIZE.min(log.len())];
    target.bytes[..BASE_BLOCK_SIZE].fill(0);
    target.bytes[..copy.len()].copy_from_slice(copy);
    target.bins_size = le_u32(copy, BB_BINS_SIZE).unwrap_or(0);
    target.flags = le_u32(copy, BB_FLAGS).unwrap_or(0);
}

/// The new-format log choice: `logs` (index, base-block sequence) are the valid new-format
/// logs; see [`recover`].
fn apply_new(
    target: &mut Target,
    logs: &[&[u8]],
    mut order: Vec<(usize, u32)>,
    base_valid: bool,
    seq2: u32,
    reports: &mut [LogReport],
) {
    // Earlier sequence first (wrapping: yarp is_starting_log).
    order.sort_by(|a, b| {
        if a.1 == b.1 {
            a.0.cmp(&b.0)
        } else if not_before(a.1, b.1) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        }
    });
    let Some(&(latest, latest_seq)) = order.last() else {
        return;
    };
    if !base_valid {
        // Spec "Multiple transaction log files / New format": with a damaged base block only
        // the log with the latest entries is used, and its base-block copy replaces the
        // primary's.
        for &(i, _) in &order {
            if i != latest {
                reports[i].note =
                    "not used: the primary's base block is damaged, so only the latest log applies"
                        .into();
            }
        }
        take_base_block(target, logs[latest]);
        target.apply(logs[latest], latest_seq, &mut reports[latest]);
        return;
    }
    let mut started = false;
    for &(i, seq) in &order {
        if !started {
            // The first log applied must not predate the primary (spec note 7).
            if !not_before(seq, seq2) {
                reports[i].note =
                    format!("its entries start at sequence {seq}, before the primary's {seq2}");
                continue;
            }
            started = true;
            target.apply(logs[i], seq, &mut reports[i]);
            continue;
        }
        // The next log continues only from the entry after the last one applied.
        match target.last_sequence {
            Some(last) if seq == last.wrapping_add(1) => {
                target.apply(logs[i], seq, &mut reports[i]);
            }
            Some(last) => {
                reports[i].note = format!(
                    "its entries start at sequence {seq}, not {} after the last applied",
                    last.wrapping_add(1)
                );
            }
            None => {
                reports[i].note = "not used: the earlier log had no valid entry to continue".into();
            }
        }
    }
}

/// The log files Windows keeps beside the hive at `path` that exist: `<path>.LOG1` and
/// `<path>.LOG2` (or the lower-case `.log1`/`.log2` spellings a copy may have); when there is
/// neither, the single `<path>.LOG` (`.log`) of Windows XP and Server 2003 (old format).
pub fn log_paths(path: &Path) -> Vec<PathBuf> {
    let existing = |suffixes: [String; 2]| {
        suffixes
            .iter()
            .map(|suffix| {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                PathBuf::from(p)
            })
            .find(|p| p.is_file())
    };
    let dual: Vec<PathBuf> = ["1", "2"]
        .iter()
        .filter_map(|n| existing([format!(".LOG{n}"), format!(".log{n}")]))
        .collect();
    if !dual.is_empty() {
        return dual;
    }
    existing([".LOG".to_string(), ".log".to_string()])
        .into_iter()
        .collect()
}

/// Reads the hive at `path` and the logs [`log_paths`] finds beside it, and applies them with
/// [`recover`]. Nothing is written.
pub fn recover_file(path: &Path) -> Result<FileRecovery> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| Error::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let primary = read(path)?;
    let log_paths = log_paths(path);
    let logs = log_paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&[u8]> = logs.iter().map(Vec::as_slice).collect();
    let recovery = recover(&primary, &refs).map_err(|e| Error::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(FileRecovery {
        recovery,
        log_paths,
    })
}
