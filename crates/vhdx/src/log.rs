//! The VHDX log (MS-VHDX 2.3): finding the active sequence of entries in the circular log
//! buffer, and the in-memory overlay of replayed file ranges used when a file with a dirty log
//! is opened read-only.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::format::{LogEntry, LogEntryHeader, LogWrite, LOG_ENTRY_HEADER_SIZE, LOG_SECTOR_SIZE};

/// One entry of the active sequence and where it starts inside the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlacedEntry {
    pub offset: u32,
    pub entry: LogEntry,
}

/// Why the search for the active sequence stopped without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SearchError {
    /// The log length is zero or not a multiple of 4 KiB.
    BadLength(usize),
    /// More checksum work than any real log needs: the log is built to waste time.
    Budget(u64),
}

/// Finds the active sequence: among the runs of valid entries (each entry directly after the
/// previous one, sequence numbers consecutive, LogGuid = `log_guid`) whose last entry's Tail
/// names an entry of the run, the one whose last entry has the highest sequence number
/// (MS-VHDX 2.3.3). Returns its entries from the tail entry to the head, or None when the log
/// holds no valid sequence.
///
/// Every sector offset is tried as a start, but a run, once found, is skipped as a whole, so each
/// entry is decoded about once (DiscUtils' FindActiveLogSequence walks the log the same way).
/// Checksum work is capped at 16 × the log length plus 64 MiB, which a real log never reaches.
pub(crate) fn find_active_sequence(
    log: &[u8],
    log_guid: Uuid,
) -> Result<Option<Vec<PlacedEntry>>, SearchError> {
    let n = log.len();
    if n == 0 || !n.is_multiple_of(LOG_SECTOR_SIZE) || u32::try_from(n).is_err() {
        return Err(SearchError::BadLength(n));
    }
    let mut budget = (n as u64).saturating_mul(16).saturating_add(64 << 20);
    let mut best: Option<Vec<PlacedEntry>> = None;
    let mut start = 0usize;
    while start < n {
        let mut run: Vec<PlacedEntry> = Vec::new();
        let mut covered = 0usize;
        loop {
            let pos = (start + covered) % n;
            let Some(entry) = entry_at(log, pos, log_guid, &mut budget)? else {
                break;
            };
            let len = entry.header.entry_length as usize;
            let follows = run.last().is_none_or(|last| {
                last.entry.header.sequence_number.checked_add(1)
                    == Some(entry.header.sequence_number)
            });
            // An entry that would run into the first entry of the run cannot belong to it.
            if !follows || covered + len > n {
                break;
            }
            run.push(PlacedEntry {
                offset: pos as u32,
                entry,
            });
            covered += len;
        }
        let Some(head) = run.last() else {
            start += LOG_SECTOR_SIZE;
            continue;
        };
        let tail = head.entry.header.tail;
        let head_seq = head.entry.header.sequence_number;
        if let Some(t) = run.iter().position(|e| e.offset == tail) {
            let better = best.as_ref().is_none_or(|b| {
                b.last()
                    .is_some_and(|h| h.entry.header.sequence_number < head_seq)
            });
            if better {
                best = Some(run.split_off(t));
            }
        }
        // A run that wrapped past the end of the log has covered everything after `start`.
        start += covered;
    }
    Ok(best)
}

/// The valid entry starting at sector offset `pos`, if there is one.
fn entry_at(
    log: &[u8],
    pos: usize,
    log_guid: Uuid,
    budget: &mut u64,
) -> Result<Option<LogEntry>, SearchError> {
    let Some(first) = log.get(pos..pos + LOG_ENTRY_HEADER_SIZE) else {
        return Ok(None);
    };
    let Ok(h) = LogEntryHeader::decode(first) else {
        return Ok(None);
    };
    let len = h.entry_length as usize;
    // Cheap checks before paying for the checksum.
    if h.log_guid != log_guid
        || h.sequence_number == 0
        || len == 0
        || len > log.len()
        || !len.is_multiple_of(LOG_SECTOR_SIZE)
    {
        return Ok(None);
    }
    *budget = budget
        .checked_sub(len as u64)
        .ok_or(SearchError::Budget(log.len() as u64))?;
    let mut bytes = Vec::with_capacity(len);
    let end = pos + len;
    if end <= log.len() {
        bytes.extend_from_slice(&log[pos..end]);
    } else {
        bytes.extend_from_slice(&log[pos..]);
        bytes.extend_from_slice(&log[..end - log.len()]);
    }
    Ok(LogEntry::decode(&bytes).ok())
}

/// Replayed file ranges kept in memory, newest content only: non-overlapping pieces keyed by
/// their file offset. Reads of the file are patched with it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overlay {
    pieces: BTreeMap<u64, Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Zero(u64),
    Data(Vec<u8>),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Zero(n) => *n,
            Piece::Data(d) => d.len() as u64,
        }
    }

    /// The part `[from, to)` of this piece (offsets relative to its start).
    fn slice(&self, from: u64, to: u64) -> Piece {
        match self {
            Piece::Zero(_) => Piece::Zero(to - from),
            Piece::Data(d) => Piece::Data(d[from as usize..to as usize].to_vec()),
        }
    }
}

impl Overlay {
    /// Applies one write on top of what is there (later writes win, as in a replay).
    pub fn apply(&mut self, w: &LogWrite) {
        let (start, piece) = match w {
            LogWrite::Data { file_offset, bytes } => (*file_offset, Piece::Data(bytes.to_vec())),
            LogWrite::Zero {
                file_offset,
                length,
            } => (*file_offset, Piece::Zero(*length)),
        };
        let len = piece.len();
        if len == 0 {
            return;
        }
        // Entries were checked not to overflow (LogEntry::decode).
        let end = start.saturating_add(len);
        let first = self
            .pieces
            .range(..start)
            .next_back()
            .map_or(start, |(&k, _)| k);
        let hit: Vec<u64> = self.pieces.range(first..end).map(|(&k, _)| k).collect();
        for k in hit {
            let Some(p) = self.pieces.remove(&k) else {
                continue;
            };
            let pend = k + p.len();
            if pend <= start {
                self.pieces.insert(k, p);
                continue;
            }
            if k < start {
                self.pieces.insert(k, p.slice(0, start - k));
            }
            if pend > end {
                self.pieces.insert(end, p.slice(end - k, pend - k));
            }
        }
        self.pieces.insert(start, piece);
    }

    /// Overwrites the parts of `buf` (file bytes at `offset`) that the replay changed.
    pub fn patch(&self, offset: u64, buf: &mut [u8]) {
        let end = offset.saturating_add(buf.len() as u64);
        let first = self
            .pieces
            .range(..=offset)
            .next_back()
            .map_or(offset, |(&k, _)| k);
        for (&k, p) in self.pieces.range(first..end) {
            let pend = k + p.len();
            let lo = k.max(offset);
            let hi = pend.min(end);
            if lo >= hi {
                continue;
            }
            let dst = &mut buf[(lo - offset) as usize..(hi - offset) as usize];
            match p {
                Piece::Zero(_) => dst.fill(0),
                Piece::Data(d) => dst.copy_from_slice(&d[(lo - k) as usize..(hi - k) as usize]),
            }
        }
    }

    /// End of the last replayed range (0 when empty).
    pub fn end(&self) -> u64 {
        self.pieces
            .iter()
            .next_back()
            .map_or(0, |(&k, p)| k + p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::LogEntryHeader;

    const GUID: Uuid = uuid::uuid!("11111111-2222-3333-4444-555555555555");

    fn sector(fill: u8) -> Box<[u8; LOG_SECTOR_SIZE]> {
        let mut b = Box::new([fill; LOG_SECTOR_SIZE]);
        b[0] = 0xA0;
        b[LOG_SECTOR_SIZE - 1] = 0xAF;
        b
    }

    fn entry(seq: u64, tail: u32, writes: Vec<LogWrite>) -> LogEntry {
        LogEntry {
            header: LogEntryHeader {
                entry_length: 0,
                tail,
                sequence_number: seq,
                descriptor_count: 0,
                log_guid: GUID,
                flushed_file_offset: 4 << 20,
                last_file_offset: 4 << 20,
            },
            writes,
        }
    }

    /// Puts encoded entries into a log of `len` bytes at the given offsets (wrapping around).
    fn log_with(len: usize, entries: &[(usize, &LogEntry)]) -> Vec<u8> {
        let mut log = vec![0u8; len];
        for (at, e) in entries {
            for (i, b) in e.encode().iter().enumerate() {
                log[(at + i) % len] = *b;
            }
        }
        log
    }

    fn seqs(found: &Option<Vec<PlacedEntry>>) -> Vec<u64> {
        found
            .iter()
            .flatten()
            .map(|e| e.entry.header.sequence_number)
            .collect()
    }

    #[test]
    fn entry_round_trip_restores_leading_and_trailing_bytes() {
        let e = entry(
            7,
            0,
            vec![
                LogWrite::Data {
                    file_offset: 0x30_0000,
                    bytes: sector(0x5A),
                },
                LogWrite::Zero {
                    file_offset: 0x40_0000,
                    length: 0x2000,
                },
            ],
        );
        let b = e.encode();
        assert_eq!(b.len(), 2 * LOG_SECTOR_SIZE);
        assert_eq!(&b[..4], b"loge");
        assert_eq!(&b[64..68], b"desc");
        assert_eq!(&b[96..100], b"zero");
        assert_eq!(&b[4096..4100], b"data");
        let d = LogEntry::decode(&b).unwrap();
        assert_eq!(d.writes, e.writes);
        assert_eq!(d.header.entry_length, 8192);
        assert_eq!(d.header.descriptor_count, 2);
    }

    #[test]
    fn single_bit_flips_invalidate_the_entry() {
        let b = entry(
            3,
            0,
            vec![LogWrite::Data {
                file_offset: 0x10_0000,
                bytes: sector(1),
            }],
        )
        .encode();
        // CRC-32C catches every single-bit error; the decoder must say so, not panic.
        for bit in (0..b.len() * 8).step_by(3) {
            let mut x = b.clone();
            x[bit / 8] ^= 1 << (bit % 8);
            assert!(LogEntry::decode(&x).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn active_sequence_is_the_run_with_the_highest_head_from_its_tail() {
        // An old run (seq 1-2, its own tail) and the active run (seq 8-10, tail at seq 9).
        let old1 = entry(1, 0, vec![]);
        let old2 = entry(2, 0, vec![]);
        let a8 = entry(8, 0x4000, vec![]);
        let a9 = entry(9, 0x5000, vec![]);
        let a10 = entry(
            10,
            0x5000,
            vec![LogWrite::Zero {
                file_offset: 0x10_0000,
                length: 4096,
            }],
        );
        let log = log_with(
            1 << 20,
            &[
                (0, &old1),
                (0x1000, &old2),
                (0x4000, &a8),
                (0x5000, &a9),
                (0x6000, &a10),
            ],
        );
        let found = find_active_sequence(&log, GUID).unwrap();
        assert_eq!(seqs(&found), [9, 10]);
        assert_eq!(found.unwrap()[0].offset, 0x5000);
    }

    #[test]
    fn entries_wrap_around_the_end_of_the_log() {
        let len = 64 * 1024;
        let e1 = entry(
            5,
            (len - LOG_SECTOR_SIZE) as u32,
            vec![LogWrite::Data {
                file_offset: 0x20_0000,
                bytes: sector(9),
            }],
        );
        let e2 = entry(6, (len - LOG_SECTOR_SIZE) as u32, vec![]);
        let log = log_with(len, &[(len - LOG_SECTOR_SIZE, &e1), (LOG_SECTOR_SIZE, &e2)]);
        let found = find_active_sequence(&log, GUID).unwrap();
        assert_eq!(seqs(&found), [5, 6]);
        let first = &found.unwrap()[0];
        assert_eq!(first.entry.writes, e1.writes);
    }

    #[test]
    fn a_run_whose_tail_is_outside_it_is_not_active() {
        let e = entry(4, 0x8000, vec![]);
        let log = log_with(1 << 20, &[(0, &e)]);
        assert_eq!(find_active_sequence(&log, GUID).unwrap(), None);
    }

    #[test]
    fn wrong_guid_gap_or_bad_checksum_ends_a_run() {
        let e1 = entry(1, 0, vec![]);
        let mut other = entry(2, 0, vec![]);
        other.header.log_guid = Uuid::nil();
        let log = log_with(1 << 20, &[(0, &e1), (0x1000, &other)]);
        assert_eq!(seqs(&find_active_sequence(&log, GUID).unwrap()), [1]);
        assert_eq!(find_active_sequence(&log, Uuid::new_v4()).unwrap(), None);
        // A gap in sequence numbers.
        let e3 = entry(3, 0, vec![]);
        let log = log_with(1 << 20, &[(0, &e1), (0x1000, &e3)]);
        assert_eq!(seqs(&find_active_sequence(&log, GUID).unwrap()), [1]);
        // A torn second entry.
        let e2 = entry(2, 0, vec![]);
        let mut log = log_with(1 << 20, &[(0, &e1), (0x1000, &e2)]);
        log[0x1000 + 100] ^= 0x40;
        assert_eq!(seqs(&find_active_sequence(&log, GUID).unwrap()), [1]);
    }

    #[test]
    fn hostile_lengths_are_refused_or_bounded() {
        assert_eq!(
            find_active_sequence(&[0u8; 100], GUID),
            Err(SearchError::BadLength(100))
        );
        // Every sector claims to start an entry as long as the log with a bad checksum: the
        // search gives up once its checksum budget is spent instead of doing 256 × 1 MiB.
        let len = 1 << 20;
        let mut log = vec![0u8; len];
        for s in (0..len).step_by(LOG_SECTOR_SIZE) {
            log[s..s + 4].copy_from_slice(b"loge");
            log[s + 8..s + 12].copy_from_slice(&(len as u32).to_le_bytes());
            log[s + 16] = 1;
            log[s + 32..s + 48].copy_from_slice(&GUID.to_bytes_le());
        }
        assert_eq!(
            find_active_sequence(&log, GUID),
            Err(SearchError::Budget(len as u64))
        );
        // The same entries, but only a few: no budget problem, just nothing valid.
        let few: Vec<u8> = log[..8 * LOG_SECTOR_SIZE]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, len - 8 * LOG_SECTOR_SIZE))
            .collect();
        assert_eq!(find_active_sequence(&few, GUID), Ok(None));
    }

    #[test]
    fn overlay_keeps_the_newest_bytes() {
        let mut o = Overlay::default();
        o.apply(&LogWrite::Data {
            file_offset: 0x1000,
            bytes: Box::new([1; LOG_SECTOR_SIZE]),
        });
        o.apply(&LogWrite::Zero {
            file_offset: 0x1800,
            length: 0x1000,
        });
        o.apply(&LogWrite::Data {
            file_offset: 0x2000,
            bytes: Box::new([2; LOG_SECTOR_SIZE]),
        });
        let mut buf = vec![7u8; 0x4000];
        o.patch(0, &mut buf);
        assert!(buf[..0x1000].iter().all(|&b| b == 7));
        assert!(buf[0x1000..0x1800].iter().all(|&b| b == 1));
        assert!(buf[0x1800..0x2000].iter().all(|&b| b == 0));
        assert!(buf[0x2000..0x3000].iter().all(|&b| b == 2));
        assert!(buf[0x3000..].iter().all(|&b| b == 7));
        assert_eq!(o.end(), 0x3000);
        // A read starting inside a piece.
        let mut small = vec![7u8; 16];
        o.patch(0x17f8, &mut small);
        assert_eq!(small, [[1u8; 8], [0u8; 8]].concat());
    }
}
