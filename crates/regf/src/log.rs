//! Transaction-log recovery: replays the new-format logs (.LOG1/.LOG2, file type 6, "HvLE"
//! entries) of a dirty hive onto a copy of its primary bytes, as the Windows kernel does on load.
//! Facts: shared/docs/regf.md §1.13; msuhanov/regf spec 88e878de "Format of transaction log
//! files" and "Multiple transaction log files"; yarp RegistryFile.py @125729d7 (log choice).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::*;

/// What recovery did with one log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogReport {
    /// Sequence number in the log's base block (the number its first entry must carry), when
    /// the log has a valid new-format base block.
    pub sequence: Option<u32>,
    /// Log entries applied from this log.
    pub entries_applied: usize,
    /// Dirty pages written by those entries.
    pub pages_applied: usize,
    /// Why the log was not used, or where reading its entries stopped (the first entry that is
    /// not valid, e.g. the zeros or stale entries after the last one written).
    pub note: String,
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
    pub recovery: Recovery,
    pub log_paths: Vec<PathBuf>,
}

/// A log's base block, when it is a valid new-format one.
struct LogHeader {
    sequence: u32,
}

/// Why a log cannot be used, or its new-format header.
enum LogKind {
    New(LogHeader),
    Old(u32),
    Unusable(String),
}

fn classify(log: &[u8]) -> LogKind {
    let Some(base) = log.get(..LOG_BASE_BLOCK_SIZE) else {
        return LogKind::Unusable(format!(
            "{} bytes, shorter than the {LOG_BASE_BLOCK_SIZE}-byte base block",
            log.len()
        ));
    };
    if &base[..4] != b"regf" {
        return LogKind::Unusable("no \"regf\" signature".into());
    }
    let field = |at| le_u32(base, at).unwrap_or(0);
    let file_type = field(BB_TYPE);
    match file_type {
        FILE_TYPE_LOG_NEW => {}
        FILE_TYPE_LOG_OLD | FILE_TYPE_LOG_VERY_OLD => return LogKind::Old(file_type),
        t => return LogKind::Unusable(format!("file type {t}, not a transaction log")),
    }
    // A log whose base block is torn (bad checksum or sequence numbers differ) was being
    // written when the system stopped: the spec's "valid transaction log file" rule.
    if field(BB_CHECKSUM) != checksum(base) {
        return LogKind::Unusable("base block checksum mismatch".into());
    }
    let (seq1, seq2) = (field(BB_SEQ1), field(BB_SEQ2));
    if seq1 != seq2 {
        return LogKind::Unusable(format!("base block sequence numbers {seq1} != {seq2}"));
    }
    LogKind::New(LogHeader { sequence: seq1 })
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
    let refs_end = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(LE_HEADER_SIZE))
        .filter(|&end| count > 0 && end <= size)
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
}

/// Applies transaction logs to a primary hive file the way Windows does on load and returns
/// the recovered bytes (never modifying the input).
///
/// A clean primary (equal sequence numbers, valid checksum) is returned unchanged. Otherwise
/// the new-format logs are ordered by the sequence numbers in their base blocks; the earlier
/// one is applied if it does not predate the primary's secondary sequence number, and the
/// other continues it when its first entry carries the next number. Each log is applied up
/// to its first invalid entry (signature, size, hashes, sequence, bounds). When the primary's
/// base block is damaged it is rebuilt from the latest log, and only that log is applied.
/// The resulting base block has both sequence numbers one past the last entry applied (what
/// Windows writes after recovering: yarp NewDirtyHive1 vs RecoveredHive_Windows10), the last
/// entry's hive bins size and flags bit, and a fresh checksum. Old-format logs are refused
/// with [`Error::UnsupportedLog`] when the hive needs recovery.
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

    let kinds: Vec<LogKind> = logs.iter().map(|l| classify(l)).collect();
    let mut reports: Vec<LogReport> = kinds
        .iter()
        .map(|k| LogReport {
            sequence: match k {
                LogKind::New(h) => Some(h.sequence),
                _ => None,
            },
            entries_applied: 0,
            pages_applied: 0,
            note: match k {
                LogKind::New(_) if was_dirty => "not applicable to this primary".into(),
                LogKind::New(_) | LogKind::Old(_) => "not needed: the primary is clean".into(),
                LogKind::Unusable(why) => format!("not a usable log: {why}"),
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
    if let Some((log, file_type)) = kinds.iter().enumerate().find_map(|(i, k)| match k {
        LogKind::Old(t) => Some((i, *t)),
        _ => None,
    }) {
        return Err(Error::UnsupportedLog { log, file_type });
    }

    // Usable logs, earlier sequence first.
    let mut order: Vec<(usize, u32)> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| match k {
            LogKind::New(h) => Some((i, h.sequence)),
            _ => None,
        })
        .collect();
    order.sort_by(|a, b| {
        if a.1 == b.1 {
            a.0.cmp(&b.0)
        } else if not_before(a.1, b.1) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        }
    });
    let Some(&(latest, _)) = order.last() else {
        return Ok(unchanged(reports));
    };

    // Every page written comes from a log, so the bins cannot legitimately outgrow the
    // primary's bins plus all log bytes: this bounds the allocation an entry can ask for.
    let log_bytes: u64 = logs.iter().map(|l| l.len() as u64).sum();
    let max_bins = (primary.len() - BASE_BLOCK_SIZE) as u64 + log_bytes;
    let mut target = Target {
        bytes: primary.to_vec(),
        max_bins,
        last_sequence: None,
        bins_size: field(BB_BINS_SIZE),
        flags: field(BB_FLAGS),
    };
    if base_valid {
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
            } else {
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
                        reports[i].note =
                            "not used: the earlier log had no valid entry to continue".into();
                    }
                }
            }
        }
    } else {
        // Spec "Multiple transaction log files / New format": with a damaged base block only
        // the log with the latest entries is used, and its base-block copy replaces the
        // primary's (yarp save_recovered_hive).
        let log = logs[latest];
        target.bytes[..BASE_BLOCK_SIZE].fill(0);
        target.bytes[..LOG_BASE_BLOCK_SIZE].copy_from_slice(&log[..LOG_BASE_BLOCK_SIZE]);
        let copy = &target.bytes[..LOG_BASE_BLOCK_SIZE];
        target.bins_size = le_u32(copy, BB_BINS_SIZE).unwrap_or(0);
        target.flags = le_u32(copy, BB_FLAGS).unwrap_or(0);
        let seq = reports[latest].sequence.unwrap_or(0);
        for &(i, _) in &order {
            if i != latest {
                reports[i].note =
                    "not used: the primary's base block is damaged, so only the latest log applies"
                        .into();
            }
        }
        target.apply(log, seq, &mut reports[latest]);
    }

    let Some(last) = target.last_sequence else {
        return Ok(unchanged(reports));
    };
    let sequence = last.wrapping_add(1);
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

/// The log files Windows keeps beside the hive at `path` that exist: `<path>.LOG1` and
/// `<path>.LOG2` (or the lower-case `.log1`/`.log2` spellings a copy may have).
pub fn log_paths(path: &Path) -> Vec<PathBuf> {
    ["1", "2"]
        .iter()
        .filter_map(|n| {
            [format!(".LOG{n}"), format!(".log{n}")]
                .iter()
                .map(|suffix| {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    PathBuf::from(p)
                })
                .find(|p| p.is_file())
        })
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
    let recovery = recover(&primary, &refs).map_err(|e| match e {
        Error::UnsupportedLog { log, .. } => Error::InFile {
            path: log_paths.get(log).cloned().unwrap_or_default(),
            source: Box::new(e),
        },
        e => Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        },
    })?;
    Ok(FileRecovery {
        recovery,
        log_paths,
    })
}
