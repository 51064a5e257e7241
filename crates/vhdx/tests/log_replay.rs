//! Log replay (MS-VHDX 2.3) on files left "dirty" by hand: a disk made by create_dynamic gets
//! log entries that change a BAT entry, payload sectors and a zeroed range, and a new header
//! with LogGuid set. Our reader must see the replayed disk, read-only (in memory, file
//! untouched) and read-write (replayed into the file, LogGuid cleared). The oracle is qemu-img,
//! which replays a VHDX log when it opens the file for writing (`qemu-img check -r all`); its
//! `convert -O raw` must give the same bytes. Broken logs must give the documented outcome.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{current_header, read_at, write_at};
use proptest::prelude::*;
use vhdx::format::{
    BatEntry, LogEntry, LogEntryHeader, LogWrite, HEADER1_OFFSET, LOG_SECTOR_SIZE,
    PAYLOAD_FULLY_PRESENT,
};
use vhdx::{create_dynamic, Error, LogReplay, Uuid, VhdxFile};

const MIB: u64 = 1 << 20;
const DISK: u64 = 16 * MIB;
/// create_dynamic's placement: log @1 MiB (1 MiB), metadata @2 MiB, BAT @3 MiB, payload after.
const LOG_OFFSET: u64 = MIB;
const LOG_LEN: usize = MIB as usize;
const BAT_OFFSET: u64 = 3 * MIB;
/// Block 0 is allocated by our writer at 4 MiB; "Windows" put block 2 at 5 MiB.
const BLOCK0_AT: u64 = 4 * MIB;
const BLOCK2_AT: u64 = 5 * MIB;
const LOG_GUID: Uuid = uuid::uuid!("0badc0de-1234-4321-8765-fedcba987654");

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

fn sector(seed: u8) -> Box<[u8; LOG_SECTOR_SIZE]> {
    let mut b = Box::new([0u8; LOG_SECTOR_SIZE]);
    b.copy_from_slice(&pattern(seed, LOG_SECTOR_SIZE));
    b
}

fn entry(seq: u64, tail: u32, flushed: u64, writes: Vec<LogWrite>) -> LogEntry {
    LogEntry {
        header: LogEntryHeader {
            entry_length: 0,
            tail,
            sequence_number: seq,
            descriptor_count: 0,
            log_guid: LOG_GUID,
            flushed_file_offset: flushed,
            last_file_offset: 6 * MIB,
        },
        writes,
    }
}

/// Sets LogGuid in a new header (higher sequence number, other slot), as a writer does before
/// its first log entry.
fn set_log_guid(path: &Path, guid: Uuid) {
    let (mut h, other) = current_header(path);
    h.sequence_number += 1;
    h.log_guid = guid;
    write_at(path, other, &h.encode());
}

/// Writes encoded entries into the log region at the given log offsets, wrapping at its end.
fn put_entries(path: &Path, entries: &[(usize, &LogEntry)]) {
    let mut log = read_at(path, LOG_OFFSET, LOG_LEN);
    for (at, e) in entries {
        for (i, b) in e.encode().iter().enumerate() {
            log[(at + i) % LOG_LEN] = *b;
        }
    }
    write_at(path, LOG_OFFSET, &log);
}

/// A clean 16 MiB dynamic disk with block 0 written by our writer, and block 2's data already
/// in the file at 5 MiB but not yet in the BAT (a writer logs the BAT change after writing the
/// block). Returns the disk content the clean file shows.
fn clean_disk(path: &Path) -> Vec<u8> {
    create_dynamic(path, DISK, MIB as u32, 512).unwrap();
    let mut v = VhdxFile::open_rw(path).unwrap();
    v.write_at(0, &pattern(0xA0, MIB as usize)).unwrap();
    v.flush().unwrap();
    drop(v);
    assert_eq!(fs::metadata(path).unwrap().len(), 5 * MIB);
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(6 * MIB).unwrap();
    drop(f);
    write_at(path, BLOCK2_AT, &pattern(0xB0, MIB as usize));
    let mut want = vec![0u8; DISK as usize];
    want[..MIB as usize].copy_from_slice(&pattern(0xA0, MIB as usize));
    want
}

/// The BAT's first 4 KiB sector with payload block 2 mapped at 5 MiB.
fn bat_sector_with_block2(path: &Path) -> Box<[u8; LOG_SECTOR_SIZE]> {
    let mut s = Box::new([0u8; LOG_SECTOR_SIZE]);
    s.copy_from_slice(&read_at(path, BAT_OFFSET, LOG_SECTOR_SIZE));
    let e = BatEntry {
        state: PAYLOAD_FULLY_PRESENT,
        file_offset_mb: BLOCK2_AT / MIB,
    };
    s[16..24].copy_from_slice(&e.to_raw().to_le_bytes());
    s
}

/// Entry 5 (tail = itself at log offset 0): maps block 2, writes a sector of block 0, zeroes
/// 8 KiB of block 0. Entry 6 (same tail): writes a sector of block 2 and overwrites entry 5's
/// sector of block 0 (the later write must win).
fn two_entries(path: &Path, flushed: u64) -> (LogEntry, LogEntry) {
    let e5 = entry(
        5,
        0,
        flushed,
        vec![
            LogWrite::Data {
                file_offset: BAT_OFFSET,
                bytes: bat_sector_with_block2(path),
            },
            LogWrite::Data {
                file_offset: BLOCK0_AT + 8192,
                bytes: sector(0xC0),
            },
            LogWrite::Zero {
                file_offset: BLOCK0_AT + 16384,
                length: 8192,
            },
        ],
    );
    let e6 = entry(
        6,
        0,
        flushed,
        vec![
            LogWrite::Data {
                file_offset: BLOCK2_AT + 4096,
                bytes: sector(0xD0),
            },
            LogWrite::Data {
                file_offset: BLOCK0_AT + 8192,
                bytes: sector(0xE0),
            },
        ],
    );
    (e5, e6)
}

/// What the disk shows after replaying entry 5 only, or entries 5 and 6.
fn replayed(mut want: Vec<u8>, through_6: bool) -> Vec<u8> {
    let m = MIB as usize;
    want[2 * m..3 * m].copy_from_slice(&pattern(0xB0, m));
    want[8192..12288].copy_from_slice(&sector(0xC0)[..]);
    want[16384..24576].fill(0);
    if through_6 {
        want[2 * m + 4096..2 * m + 8192].copy_from_slice(&sector(0xD0)[..]);
        want[8192..12288].copy_from_slice(&sector(0xE0)[..]);
    }
    want
}

/// A dirty file with entries 5 and 6 at the start of the log, plus two runs that must not be
/// chosen: an entry of another log (other LogGuid) and an older valid run (sequence 1).
fn dirty_file(path: &Path) -> Vec<u8> {
    let clean = clean_disk(path);
    let (e5, e6) = two_entries(path, 6 * MIB);
    let e5_len = e5.encode().len();
    let mut foreign = entry(9, 0x8_0000, 6 * MIB, vec![]);
    foreign.header.log_guid = Uuid::new_v4();
    let old = entry(
        1,
        0x9_0000,
        6 * MIB,
        vec![LogWrite::Zero {
            file_offset: BLOCK0_AT,
            length: MIB,
        }],
    );
    put_entries(
        path,
        &[
            (0, &e5),
            (e5_len, &e6),
            (0x8_0000, &foreign),
            (0x9_0000, &old),
        ],
    );
    set_log_guid(path, LOG_GUID);
    replayed(clean, true)
}

fn read_disk(path: &Path) -> Vec<u8> {
    let v = VhdxFile::open(path).unwrap();
    let mut got = vec![0u8; v.virtual_size() as usize];
    v.read_at(0, &mut got).unwrap();
    got
}

fn qemu_img() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join("qemu-img"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipping the qemu-img comparison: qemu-img not found");
    }
    found
}

fn qemu(tool: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// qemu-img's view of the disk after it replayed the log (on a copy): check -r all, then
/// convert to raw.
fn qemu_replayed(tool: &Path, dirty: &Path, dir: &Path) -> Vec<u8> {
    let copy = dir.join("qemu-copy.vhdx");
    fs::copy(dirty, &copy).unwrap();
    let c = copy.to_str().unwrap();
    let (ok, text) = qemu(tool, &["check", "-r", "all", "-f", "vhdx", c]);
    assert!(ok, "qemu-img check -r all failed:\n{text}");
    let raw = dir.join("qemu.raw");
    let (ok, text) = qemu(
        tool,
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "raw",
            c,
            raw.to_str().unwrap(),
        ],
    );
    assert!(ok, "qemu-img convert failed:\n{text}");
    let bytes = fs::read(&raw).unwrap();
    fs::remove_file(&raw).unwrap();
    fs::remove_file(&copy).unwrap();
    bytes
}

#[test]
fn read_only_open_replays_in_memory_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dirty.vhdx");
    let want = dirty_file(&path);
    let before = fs::read(&path).unwrap();

    let v = VhdxFile::open(&path).unwrap();
    match v.log_replay() {
        LogReplay::InMemory(r) => {
            assert_eq!(r.log_guid, LOG_GUID);
            assert_eq!((r.entries, r.first_sequence, r.last_sequence), (2, 5, 6));
            assert_eq!((r.data_sectors, r.zero_ranges), (4, 1));
        }
        other => panic!("expected an in-memory replay, got {other:?}"),
    }
    let info = v.info();
    assert_eq!(info.blocks_present, 2);
    assert!(info.to_string().contains("replayed in memory"), "{info}");
    drop(v);
    assert!(read_disk(&path) == want, "replayed content differs");
    assert!(
        fs::read(&path).unwrap() == before,
        "a read-only open changed the file"
    );
    // Writing is refused on a read-only handle whatever the log did.
    let mut ro = VhdxFile::open(&path).unwrap();
    assert!(ro.write_at(0, &[1]).is_err());

    if let Some(tool) = qemu_img() {
        // qemu refuses to open a dirty file read-only: the log is really there.
        let (ok, text) = qemu(
            &tool,
            &[
                "convert",
                "-f",
                "vhdx",
                "-O",
                "raw",
                path.to_str().unwrap(),
                "/dev/null",
            ],
        );
        assert!(!ok && text.contains("log"), "{text}");
        assert!(
            qemu_replayed(&tool, &path, dir.path()) == want,
            "qemu-img sees other bytes"
        );
    }
}

#[test]
fn read_write_open_replays_into_the_file_and_clears_log_guid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dirty.vhdx");
    let want = dirty_file(&path);
    let (dirty_header, _) = current_header(&path);

    let v = VhdxFile::open_rw(&path).unwrap();
    assert!(matches!(v.log_replay(), LogReplay::Written(r) if r.entries == 2));
    drop(v);
    let (h, _) = current_header(&path);
    assert!(h.log_guid.is_nil());
    assert_eq!(h.sequence_number, dirty_header.sequence_number + 1);
    assert_eq!(h.data_write_guid, dirty_header.data_write_guid);
    let v = VhdxFile::open(&path).unwrap();
    assert_eq!(v.log_replay(), &LogReplay::Clean);
    drop(v);
    assert!(
        read_disk(&path) == want,
        "content after replay into the file differs"
    );

    if let Some(tool) = qemu_img() {
        let p = path.to_str().unwrap();
        let (ok, text) = qemu(&tool, &["check", "-f", "vhdx", p]);
        assert!(ok && text.contains("No errors"), "{text}");
        let raw = dir.path().join("ours.raw");
        let (ok, text) = qemu(
            &tool,
            &[
                "convert",
                "-f",
                "vhdx",
                "-O",
                "raw",
                p,
                raw.to_str().unwrap(),
            ],
        );
        assert!(ok, "{text}");
        assert!(fs::read(&raw).unwrap() == want);
    }
}

#[test]
fn an_entry_wrapping_around_the_end_of_the_log_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrap.vhdx");
    let clean = clean_disk(&path);
    let (e5, _) = two_entries(&path, 6 * MIB);
    // Header sector in the last sector of the log, the two data sectors at its start.
    let at = LOG_LEN - LOG_SECTOR_SIZE;
    let e5 = LogEntry {
        header: LogEntryHeader {
            tail: at as u32,
            ..e5.header
        },
        ..e5
    };
    put_entries(&path, &[(at, &e5)]);
    set_log_guid(&path, LOG_GUID);
    let want = replayed(clean, false);
    assert!(read_disk(&path) == want);
    if let Some(tool) = qemu_img() {
        assert!(qemu_replayed(&tool, &path, dir.path()) == want);
    }
}

#[test]
fn a_torn_last_entry_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.vhdx");
    let clean = clean_disk(&path);
    let (e5, e6) = two_entries(&path, 6 * MIB);
    let e5_len = e5.encode().len();
    put_entries(&path, &[(0, &e5), (e5_len, &e6)]);
    // Entry 6's last data sector never reached the disk.
    let e6_end = e5_len + e6.encode().len();
    write_at(
        &path,
        LOG_OFFSET + (e6_end - LOG_SECTOR_SIZE) as u64,
        &[0u8; LOG_SECTOR_SIZE],
    );
    set_log_guid(&path, LOG_GUID);
    let v = VhdxFile::open(&path).unwrap();
    assert!(
        matches!(v.log_replay(), LogReplay::InMemory(r) if r.entries == 1 && r.last_sequence == 5)
    );
    drop(v);
    let want = replayed(clean, false);
    assert!(read_disk(&path) == want);
    if let Some(tool) = qemu_img() {
        assert!(qemu_replayed(&tool, &path, dir.path()) == want);
    }
}

/// With no valid sequence nothing is replayed: read-only opens show the file as it is (as
/// qemu-img does), read-write opens are refused with Error::Log.
fn assert_nothing_replayable(path: &Path, clean: &[u8], dir: &Path) {
    let v = VhdxFile::open(path).unwrap();
    assert!(
        matches!(v.log_replay(), LogReplay::NoValidEntries { .. }),
        "{:?}",
        v.log_replay()
    );
    assert!(v.info().to_string().contains("nothing replayed"));
    drop(v);
    assert!(read_disk(path) == clean);
    match VhdxFile::open_rw(path) {
        Err(Error::Log { reason, .. }) => assert!(reason.contains("no valid sequence"), "{reason}"),
        other => panic!("expected Error::Log, got {other:?}"),
    }
    if let Some(tool) = qemu_img() {
        let raw = dir.join("broken.raw");
        let (ok, text) = qemu(
            &tool,
            &[
                "convert",
                "-f",
                "vhdx",
                "-O",
                "raw",
                path.to_str().unwrap(),
                raw.to_str().unwrap(),
            ],
        );
        assert!(ok, "{text}");
        assert!(
            fs::read(&raw).unwrap() == clean,
            "qemu-img shows other bytes"
        );
        fs::remove_file(&raw).unwrap();
    }
}

#[test]
fn a_bad_checksum_or_a_wrong_log_guid_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Bad checksum in the only entry. (With entry 6 after it, entry 6 alone would be a run whose
    // tail lies outside it: not active for us, but qemu 10 does not check the tail.)
    let path = dir.path().join("crc.vhdx");
    let clean = clean_disk(&path);
    let (e5, _) = two_entries(&path, 6 * MIB);
    put_entries(&path, &[(0, &e5)]);
    let mut b = read_at(&path, LOG_OFFSET + 5000, 1);
    b[0] ^= 0x10;
    write_at(&path, LOG_OFFSET + 5000, &b);
    set_log_guid(&path, LOG_GUID);
    assert_nothing_replayable(&path, &clean, dir.path());

    // Entries of another log than the header's LogGuid.
    let path = dir.path().join("guid.vhdx");
    let clean = clean_disk(&path);
    let (e5, e6) = two_entries(&path, 6 * MIB);
    let e5_len = e5.encode().len();
    put_entries(&path, &[(0, &e5), (e5_len, &e6)]);
    set_log_guid(&path, Uuid::new_v4());
    assert_nothing_replayable(&path, &clean, dir.path());
}

#[test]
fn a_file_shorter_than_flushed_file_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.vhdx");
    clean_disk(&path);
    let (e5, e6) = two_entries(&path, 64 * MIB);
    let e5_len = e5.encode().len();
    put_entries(&path, &[(0, &e5), (e5_len, &e6)]);
    set_log_guid(&path, LOG_GUID);
    for r in [VhdxFile::open(&path), VhdxFile::open_rw(&path)] {
        match r {
            Err(Error::Log { reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("expected Error::Log, got {other:?}"),
        }
    }
}

#[test]
fn entries_writing_into_the_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hdr.vhdx");
    clean_disk(&path);
    let e = entry(
        3,
        0,
        6 * MIB,
        vec![LogWrite::Zero {
            file_offset: HEADER1_OFFSET,
            length: 4096,
        }],
    );
    put_entries(&path, &[(0, &e)]);
    set_log_guid(&path, LOG_GUID);
    match VhdxFile::open(&path) {
        Err(Error::Log { reason, .. }) => assert!(reason.contains("headers"), "{reason}"),
        other => panic!("expected Error::Log, got {other:?}"),
    }
}

#[test]
fn a_log_region_outside_the_file_or_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("region.vhdx");
    clean_disk(&path);
    let (mut h, other) = current_header(&path);
    h.sequence_number += 1;
    h.log_guid = LOG_GUID;
    h.log_offset = 5 * MIB;
    h.log_length = 2 * MIB as u32;
    write_at(&path, other, &h.encode());
    match VhdxFile::open(&path) {
        Err(Error::Log { reason, .. }) => assert!(reason.contains("past the end"), "{reason}"),
        other => panic!("expected Error::Log, got {other:?}"),
    }
    h.log_offset = LOG_OFFSET;
    h.log_length = MIB as u32;
    h.log_version = 1;
    write_at(&path, other, &h.encode());
    match VhdxFile::open(&path) {
        Err(Error::Log { reason, .. }) => assert!(reason.contains("log version 1"), "{reason}"),
        other => panic!("expected Error::Log, got {other:?}"),
    }
}

/// Opens a copy of `dirty` with `flips` applied to its log region; must not panic. Returns
/// whether a read of the whole disk succeeded.
fn open_flipped(dirty: &[u8], path: &Path, flips: &[(usize, u8)]) -> bool {
    let mut b = dirty.to_vec();
    for &(at, x) in flips {
        b[LOG_OFFSET as usize + at % LOG_LEN] ^= x;
    }
    fs::write(path, &b).unwrap();
    match VhdxFile::open(path) {
        Ok(v) => {
            let mut buf = vec![0u8; 3 * MIB as usize];
            v.read_at(0, &mut buf).is_ok()
        }
        Err(Error::Log { .. } | Error::Corrupt { .. } | Error::Unsupported { .. }) => false,
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn bit_flips_over_the_used_log_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("dirty.vhdx");
    dirty_file(&src);
    let dirty = fs::read(&src).unwrap();
    let path = dir.path().join("flipped.vhdx");
    // Entries 5 and 6 take the first 8 sectors: flip one bit every 61 bytes over them.
    let mut opened = 0;
    for at in (0..8 * LOG_SECTOR_SIZE).step_by(61) {
        if open_flipped(&dirty, &path, &[(at, 1 << (at % 8))]) {
            opened += 1;
        }
    }
    // A flip inside an entry drops it from the sequence; the file still opens.
    assert!(opened > 0);
}

static DIRTY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_log_damage_never_panics(
        flips in proptest::collection::vec((0usize..LOG_LEN, 1u8..=255), 1..16)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let dirty = DIRTY.get_or_init(|| {
            let src = dir.path().join("dirty.vhdx");
            dirty_file(&src);
            fs::read(&src).unwrap()
        });
        // Bias half the flips into the used sectors, where they matter.
        let flips: Vec<(usize, u8)> = flips
            .iter()
            .enumerate()
            .map(|(i, &(at, x))| (if i % 2 == 0 { at % (8 * LOG_SECTOR_SIZE) } else { at }, x))
            .collect();
        open_flipped(dirty, &dir.path().join("flipped.vhdx"), &flips);
    }
}
