//! Transaction-log recovery: yarp's NewDirtyHive1 (a dirty 1.3 hive, two new-format logs and
//! what Windows 10 made of them), log choice and ordering, damaged primaries, and hostile,
//! truncated or bit-flipped logs (never a panic, never an unbounded allocation).

mod common;

use common::*;
use regf::format::{checksum, marvin32, LOG_HASH_SEED};
use regf::{recover, Error, Hive};

const DIR: &str = "yarp-NewDirtyHive1";

struct Sample {
    primary: Vec<u8>,
    log1: Vec<u8>,
    log2: Vec<u8>,
    windows: Vec<u8>,
}

fn sample() -> Option<Sample> {
    Some(Sample {
        primary: load(&format!("{DIR}/NewDirtyHive"))?,
        log1: load(&format!("{DIR}/NewDirtyHive.LOG1"))?,
        log2: load(&format!("{DIR}/NewDirtyHive.LOG2"))?,
        windows: load(&format!("{DIR}/RecoveredHive_Windows10"))?,
    })
}

/// Validator findings at the Windows level: live-hive slack (free cells inside bins, stale
/// "largest" fields, oversized cells, trailing padding) is not counted.
fn consistency_problems(bytes: &[u8]) -> Vec<String> {
    regf::validate::check(bytes, regf::validate::Level::Windows)
        .problems
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Rewrites a log's base-block sequence numbers and fixes its checksum.
fn with_log_sequence(log: &[u8], seq: u32) -> Vec<u8> {
    let mut l = log.to_vec();
    set_u32(&mut l, 4, seq);
    set_u32(&mut l, 8, seq);
    let sum = checksum(&l[..512]);
    set_u32(&mut l, 508, sum);
    l
}

#[test]
fn new_dirty_hive_recovers_to_what_windows_10_wrote() {
    let Some(s) = sample() else { return };
    let before = Hive::parse(&s.primary).expect("dirty primary parses");
    assert!(before.key("Key1").is_some());
    assert!(before.key("Key2\\Key2_1").is_some());
    assert!(before.key("Key2\\Key2_2").is_some());
    let default = before
        .key("Key1")
        .and_then(|k| k.value(""))
        .and_then(regf::Value::as_string)
        .expect("Key1 default value");
    assert_eq!(default, "1".repeat(6000));
    assert_eq!(
        before
            .key("Key2")
            .and_then(|k| k.value("v"))
            .and_then(regf::Value::as_string)
            .as_deref(),
        Some("testTEST")
    );
    assert!(before.notes.iter().any(|n| n.contains("dirty")));

    let r = recover(&s.primary, &[&s.log1, &s.log2]).expect("recover");
    assert!(r.was_dirty);
    assert_eq!(r.entries_applied(), 4);
    assert_eq!(r.logs[0].entries_applied, 1, "{:?}", r.logs[0]);
    assert_eq!(r.logs[1].entries_applied, 3, "{:?}", r.logs[1]);
    assert_eq!(r.logs[0].sequence, Some(2));
    assert_eq!(r.logs[1].sequence, Some(3));
    assert_eq!(r.sequence, 6);
    // The hive bins are what Windows 10 produced; so is the base block (sequence 6/6 =
    // one past the last entry, as Windows leaves it after writing the recovered hive).
    assert_eq!(r.bytes.len(), s.windows.len());
    assert!(r.bytes[4096..] == s.windows[4096..], "hive bins differ");
    assert!(r.bytes == s.windows, "base block differs");

    let after = Hive::parse(&r.bytes).expect("recovered hive parses");
    assert!(after.notes.is_empty(), "{:?}", after.notes);
    assert!(after.key("Key1").is_none());
    assert!(after.key("Key2").is_none());
    for k in ["Key3\\Key3_1", "Key3\\Key3_2", "Key3\\Key3_3"] {
        assert!(after.key(k).is_some(), "{k} missing");
    }
    // The primary is dirty: a note at the Windows level, a problem at the compact level.
    let windows = regf::validate::check(&s.primary, regf::validate::Level::Windows);
    assert_eq!(
        windows.notes,
        ["dirty hive: sequence numbers 3 != 2 (read without logs)"]
    );
    assert!(
        regf::validate::validate(&s.primary)
            .iter()
            .any(|p| p.message.contains("secondary sequence")),
        "the primary is flagged dirty"
    );
    assert_eq!(consistency_problems(&r.bytes), Vec::<String>::new());
    let rewritten = after.to_bytes().expect("write");
    assert!(regf::validate::validate(&rewritten).is_empty());
}

#[test]
fn logs_are_ordered_by_sequence_not_by_position() {
    let Some(s) = sample() else { return };
    let r = recover(&s.primary, &[&s.log2, &s.log1]).expect("recover");
    assert_eq!(r.logs[0].entries_applied, 3);
    assert_eq!(r.logs[1].entries_applied, 1);
    assert!(r.bytes == s.windows);
}

#[test]
fn a_single_log_applies_from_its_own_first_entry() {
    let Some(s) = sample() else { return };
    // LOG1 alone: entry 2 only.
    let r = recover(&s.primary, &[&s.log1]).expect("recover");
    assert_eq!(r.entries_applied(), 1);
    assert_eq!(r.sequence, 3);
    Hive::parse(&r.bytes).expect("parses");
    // LOG2 alone: its entries (3..5) do not predate the primary (secondary 2), so they apply;
    // entry 4 rewrites all bins, so the result is Windows' again.
    let r = recover(&s.primary, &[&s.log2]).expect("recover");
    assert_eq!(r.entries_applied(), 3);
    assert!(r.bytes == s.windows);
}

#[test]
fn the_second_log_must_continue_the_first() {
    let Some(s) = sample() else { return };
    // LOG2 claims to start at 4: it does not continue LOG1 (which ends at 2).
    let log2 = with_log_sequence(&s.log2, 4);
    let r = recover(&s.primary, &[&s.log1, &log2]).expect("recover");
    assert_eq!(r.logs[0].entries_applied, 1);
    assert_eq!(r.logs[1].entries_applied, 0);
    assert!(r.logs[1].note.contains("not 3"), "{}", r.logs[1].note);
    // A log older than the primary is not applied at all.
    let old = with_log_sequence(&s.log1, 1);
    let r = recover(&s.primary, &[&old]).expect("recover");
    assert_eq!(r.entries_applied(), 0);
    assert!(r.bytes == s.primary);
    assert!(
        r.logs[0].note.contains("before the primary"),
        "{}",
        r.logs[0].note
    );
}

#[test]
fn clean_hive_with_logs_is_unchanged() {
    let Some(s) = sample() else { return };
    let r = recover(&s.windows, &[&s.log1, &s.log2]).expect("recover");
    assert!(!r.was_dirty);
    assert_eq!(r.entries_applied(), 0);
    assert!(r.bytes == s.windows);
    assert!(r.logs.iter().all(|l| l.note.contains("clean")));
    let written = Hive::new().to_bytes().expect("write");
    let r = recover(&written, &[]).expect("recover");
    assert!(r.bytes == written && !r.was_dirty);
}

#[test]
fn damaged_base_block_is_rebuilt_from_the_latest_log() {
    let Some(s) = sample() else { return };
    let mut primary = s.primary.clone();
    primary[48] ^= 0xFF; // file-name field: the checksum no longer matches
    let r = recover(&primary, &[&s.log1, &s.log2]).expect("recover");
    assert!(r.was_dirty);
    assert_eq!(r.logs[0].entries_applied, 0, "only the latest log is used");
    assert_eq!(r.logs[1].entries_applied, 3);
    assert!(r.bytes[4096..] == s.windows[4096..]);
    // The base block is LOG2's copy, made a primary again.
    assert_eq!(&r.bytes[..4], b"regf");
    assert_eq!(u32_at(&r.bytes, 28), 0);
    assert_eq!(u32_at(&r.bytes, 4), 6);
    assert_eq!(u32_at(&r.bytes, 8), 6);
    assert_eq!(u32_at(&r.bytes, 508), checksum(&r.bytes[..512]));
    assert!(r.bytes[512..4096].iter().all(|&b| b == 0));
    let hive = Hive::parse(&r.bytes).expect("parses");
    assert!(hive.key("Key3\\Key3_3").is_some());
}

#[test]
fn a_bad_entry_stops_its_log() {
    let Some(s) = sample() else { return };
    // Flip one byte in the page data of LOG2's second entry (at 0x2000): Hash-1 fails.
    let mut log2 = s.log2.clone();
    log2[0x2000 + 0x100] ^= 1;
    let r = recover(&s.primary, &[&s.log1, &log2]).expect("recover");
    assert_eq!(r.logs[1].entries_applied, 1);
    assert!(r.logs[1].note.contains("0x2000"), "{}", r.logs[1].note);
    assert!(r.logs[1].note.contains("Hash-1"), "{}", r.logs[1].note);
    assert_eq!(r.sequence, 4);
    // The header hash guards the sequence number and sizes.
    let mut log2 = s.log2.clone();
    log2[0x2000 + 12] ^= 1;
    let r = recover(&s.primary, &[&s.log1, &log2]).expect("recover");
    assert_eq!(r.logs[1].entries_applied, 1);
    assert!(r.logs[1].note.contains("Hash-2"), "{}", r.logs[1].note);
}

#[test]
fn truncated_logs_apply_their_complete_entries() {
    let Some(s) = sample() else { return };
    // LOG2 entries end at 0x2000, 0x8000 and 0xa000.
    for cut in (0..=s.log2.len())
        .step_by(256)
        .chain([1, 39, 511, 513, 0x2027])
    {
        let log2 = &s.log2[..cut.min(s.log2.len())];
        let r = recover(&s.primary, &[&s.log1, log2]).expect("recover");
        let complete = [0x2000, 0x8000, 0xa000]
            .iter()
            .filter(|&&end| end <= cut)
            .count();
        assert_eq!(r.logs[1].entries_applied, complete, "cut {cut:#x}");
        let _ = Hive::parse_lenient(&r.bytes);
    }
}

/// Deterministic xorshift so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn bit_flips_in_logs_and_primary_never_panic() {
    let Some(s) = sample() else { return };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let (mut p, mut l1, mut l2) = (s.primary.clone(), s.log1.clone(), s.log2.clone());
        for _ in 0..1 + rng.next() % 4 {
            let pick = rng.next() % 3;
            let target = match pick {
                0 => &mut p[..4096], // the base block: checksum, sequences, sizes
                1 => &mut l1[..],
                _ => &mut l2[..],
            };
            // Mostly headers (base blocks, entry headers, page references).
            let at = if rng.next().is_multiple_of(2) {
                (rng.next() % 64) as usize + [0, 512, 0x2000, 0x8000][(rng.next() % 4) as usize]
            } else {
                rng.next() as usize
            } % target.len();
            target[at] ^= 1 << (rng.next() % 8);
        }
        match recover(&p, &[&l1, &l2]) {
            Ok(r) => {
                assert!(
                    r.bytes.len() <= 4096 + p.len() + l1.len() + l2.len(),
                    "round {round}"
                );
                let _ = Hive::parse_lenient(&r.bytes);
                let _ = regf::validate::validate(&r.bytes);
            }
            Err(e) => eprintln!("round {round}: {e}"),
        }
    }
}

/// A log entry to build: flags, sequence, hive bins size, pages as (offset, bytes).
type TestEntry = (u32, u32, u32, Vec<(u32, Vec<u8>)>);

/// A new-format log with the given base-block sequence and entries, hashed like Windows does.
fn make_log(seq: u32, entries: &[TestEntry]) -> Vec<u8> {
    let mut log = vec![0u8; 512];
    log[..4].copy_from_slice(b"regf");
    set_u32(&mut log, 4, seq);
    set_u32(&mut log, 8, seq);
    set_u32(&mut log, 20, 1);
    set_u32(&mut log, 24, 5);
    set_u32(&mut log, 28, 6);
    set_u32(&mut log, 32, 1);
    set_u32(&mut log, 44, 1);
    let sum = checksum(&log);
    set_u32(&mut log, 508, sum);
    for (flags, seq, bins, pages) in entries {
        let mut e = vec![0u8; 40];
        e[..4].copy_from_slice(b"HvLE");
        set_u32(&mut e, 8, *flags);
        set_u32(&mut e, 12, *seq);
        set_u32(&mut e, 16, *bins);
        set_u32(&mut e, 20, pages.len() as u32);
        for (off, data) in pages {
            e.extend_from_slice(&off.to_le_bytes());
            e.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        for (_, data) in pages {
            e.extend_from_slice(data);
        }
        e.resize(e.len().div_ceil(512) * 512, 0);
        let size = e.len() as u32;
        set_u32(&mut e, 4, size);
        let h1 = marvin32(LOG_HASH_SEED, &e[40..]);
        e[24..32].copy_from_slice(&h1.to_le_bytes());
        let h2 = marvin32(LOG_HASH_SEED, &e[..32]);
        e[32..40].copy_from_slice(&h2.to_le_bytes());
        log.extend_from_slice(&e);
    }
    log
}

/// A small hive of our own, made dirty (secondary sequence one behind).
fn dirty_hive() -> Vec<u8> {
    let mut hive = Hive::new();
    hive.create_key("A\\B").set_string("v", "before");
    let mut bytes = hive.to_bytes().expect("write");
    let seq = u32_at(&bytes, 4);
    set_u32(&mut bytes, 4, seq + 1);
    let sum = checksum(&bytes[..512]);
    set_u32(&mut bytes, 508, sum);
    bytes
}

#[test]
fn entries_grow_the_hive_and_carry_the_ktm_flag() {
    let primary = dirty_hive();
    let bins = u32_at(&primary, 40);
    let seq2 = u32_at(&primary, 8);
    // Entry 1: a new empty 4096-byte bin after the existing ones; the hive grows.
    let mut bin = vec![0u8; 4096];
    bin[..4].copy_from_slice(b"hbin");
    set_u32(&mut bin, 4, bins);
    set_u32(&mut bin, 8, 4096);
    set_u32(&mut bin, 32, 4096 - 32);
    let log = make_log(seq2, &[(1, seq2, bins + 4096, vec![(bins, bin.clone())])]);
    let r = recover(&primary, &[&log]).expect("recover");
    assert_eq!(r.entries_applied(), 1);
    assert_eq!(r.bytes.len(), 4096 + bins as usize + 4096);
    assert_eq!(u32_at(&r.bytes, 40), bins + 4096);
    assert_eq!(
        u32_at(&r.bytes, 144) & 1,
        1,
        "KTM-locked bit from the entry"
    );
    assert_eq!(u32_at(&r.bytes, 4), seq2 + 1);
    assert!(r.bytes[4096 + bins as usize..] == bin[..]);
    let hive = Hive::parse(&r.bytes).expect("parses");
    assert!(hive.notes.is_empty(), "{:?}", hive.notes);
    assert!(hive.key("A\\B").is_some());
}

#[test]
fn hostile_entries_are_refused_without_allocating() {
    let primary = dirty_hive();
    let bins = u32_at(&primary, 40);
    let seq2 = u32_at(&primary, 8);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // 4 GiB of bins from a 1 KiB log.
        (
            "exceeds",
            make_log(seq2, &[(0, seq2, 0xFFFF_F000, vec![(0, vec![1; 8])])]),
        ),
        (
            "multiple of 4096",
            make_log(seq2, &[(0, seq2, bins + 1, vec![(0, vec![1; 8])])]),
        ),
        (
            "outside the hive bins",
            make_log(seq2, &[(0, seq2, bins, vec![(bins - 4, vec![1; 8])])]),
        ),
        ("no dirty pages", make_log(seq2, &[(0, seq2, bins, vec![])])),
        (
            "sequence number",
            make_log(seq2, &[(0, seq2 + 5, bins, vec![(0, vec![1; 8])])]),
        ),
    ];
    for (why, log) in cases {
        let r = recover(&primary, &[&log]).expect("recover");
        assert_eq!(r.entries_applied(), 0, "{why}");
        assert!(r.logs[0].note.contains(why), "{why}: {}", r.logs[0].note);
        assert!(r.bytes == primary);
    }
    // A page count too large for the entry, and a page running past it, with valid hashes.
    let base = make_log(seq2, &[(0, seq2, bins, vec![(0, vec![1; 8])])]);
    for (field, value, why) in [
        (20, 0x2000_0000, "do not fit"),
        (44, 0x7FFF_FFFF, "runs past the end of the entry"),
    ] {
        let mut log = base.clone();
        set_u32(&mut log, 512 + field, value);
        rehash(&mut log, 512);
        let r = recover(&primary, &[&log]).expect("recover");
        assert_eq!(r.entries_applied(), 0, "{why}");
        assert!(r.logs[0].note.contains(why), "{why}: {}", r.logs[0].note);
    }
}

/// Recomputes both hashes of the entry at `pos` after an edit.
fn rehash(log: &mut [u8], pos: usize) {
    let size = u32_at(log, pos + 4) as usize;
    let h1 = marvin32(LOG_HASH_SEED, &log[pos + 40..pos + size]);
    log[pos + 24..pos + 32].copy_from_slice(&h1.to_le_bytes());
    let h2 = marvin32(LOG_HASH_SEED, &log[pos..pos + 32]);
    log[pos + 32..pos + 40].copy_from_slice(&h2.to_le_bytes());
}

#[test]
fn logs_that_are_not_logs_are_skipped_and_primaries_that_are_not_primaries_refused() {
    let Some(s) = sample() else { return };
    let r = recover(&s.primary, &[&[0u8; 4096][..], &s.windows]).expect("recover");
    assert_eq!(r.entries_applied(), 0);
    assert!(r.bytes == s.primary);
    assert!(r.logs[0].note.contains("signature"), "{}", r.logs[0].note);
    assert!(r.logs[1].note.contains("file type 0"), "{}", r.logs[1].note);
    let mut torn = s.log1.clone();
    torn[8] ^= 1;
    let r = recover(&s.primary, &[&torn]).expect("recover");
    assert!(r.logs[0].note.contains("checksum"), "{}", r.logs[0].note);
    assert!(matches!(recover(&s.log1, &[]), Err(Error::BaseBlock(_))));
    assert!(matches!(recover(&[], &[]), Err(Error::BaseBlock(_))));
}

/// An old-format log turning `from` into `to` (same bins size): base block copy of `to` with
/// file type 1 and sequence `seq`, a DIRT vector of the differing 512-byte pages, the pages.
fn old_log(from: &[u8], to: &[u8], seq: u32) -> Vec<u8> {
    let bins = u32_at(to, 40) as usize;
    let mut log = to[..512].to_vec();
    set_u32(&mut log, 4, seq);
    set_u32(&mut log, 8, seq);
    set_u32(&mut log, 28, 1);
    let sum = checksum(&log);
    set_u32(&mut log, 508, sum);
    let mut bitmap = vec![0u8; bins / 4096];
    let mut pages = Vec::new();
    for page in 0..bins / 512 {
        let at = 4096 + page * 512;
        if from.get(at..at + 512) != to.get(at..at + 512) {
            bitmap[page / 8] |= 1 << (page % 8);
            pages.extend_from_slice(&to[at..at + 512]);
        }
    }
    log.extend_from_slice(b"DIRT");
    log.extend_from_slice(&bitmap);
    log.resize(log.len().next_multiple_of(512), 0);
    log.extend_from_slice(&pages);
    log
}

/// Two versions of a small hive with the same layout, the first made dirty.
fn before_and_after() -> (Vec<u8>, Vec<u8>) {
    let mut hive = Hive::new();
    hive.create_key("A\\B").set_string("v", "before");
    let from = hive.to_bytes().expect("write");
    hive.create_key("A\\B").set_string("v", "after!");
    let mut to = hive.to_bytes().expect("write");
    assert_eq!(from.len(), to.len());
    // Both carry the same last-written time, which old-format logs are matched by.
    let time = 0x01D2_9505_9E68_E89Eu64.to_le_bytes();
    to[12..20].copy_from_slice(&time);
    let mut dirty = from.clone();
    dirty[12..20].copy_from_slice(&time);
    let seq = u32_at(&dirty, 4);
    set_u32(&mut dirty, 4, seq + 1);
    let sum = checksum(&dirty[..512]);
    set_u32(&mut dirty, 508, sum);
    (dirty, to)
}

fn value_v(bytes: &[u8]) -> Option<String> {
    Hive::parse(bytes)
        .expect("parses")
        .key("A\\B")
        .and_then(|k| k.value("v"))
        .and_then(regf::Value::as_string)
}

#[test]
fn old_format_log_applies_its_dirty_pages() {
    let (primary, to) = before_and_after();
    let seq = u32_at(&primary, 4);
    let log = old_log(&primary, &to, seq);
    let r = recover(&primary, &[&log]).expect("recover");
    assert!(r.was_dirty);
    assert_eq!(r.logs[0].format, Some(regf::LogFormat::Old));
    assert_eq!(r.entries_applied(), 1);
    assert!(r.logs[0].pages_applied >= 1, "{:?}", r.logs[0]);
    assert!(r.bytes[4096..] == to[4096..]);
    assert_eq!((u32_at(&r.bytes, 4), u32_at(&r.bytes, 8)), (seq, seq));
    assert_eq!(u32_at(&r.bytes, 508), checksum(&r.bytes[..512]));
    assert_eq!(value_v(&r.bytes).as_deref(), Some("after!"));
    assert!(Hive::parse(&r.bytes).expect("parses").notes.is_empty());
    assert_eq!(value_v(&primary).as_deref(), Some("before"));

    // Damaged primary base block: rebuilt from the log's copy.
    let mut damaged = primary.clone();
    damaged[48] ^= 0xFF;
    let r = recover(&damaged, &[&log]).expect("recover");
    assert_eq!(r.entries_applied(), 1);
    assert_eq!(u32_at(&r.bytes, 28), 0);
    assert_eq!(value_v(&r.bytes).as_deref(), Some("after!"));

    // New-format logs take precedence; an old one beside them is noted.
    let Some(s) = sample() else { return };
    let r = recover(
        &s.primary,
        &[&s.log1, &s.log2, &old_log(&s.primary, &s.windows, 3)],
    )
    .expect("recover");
    assert_eq!(r.entries_applied(), 4);
    assert!(r.logs[2].note.contains("new-format"), "{}", r.logs[2].note);
}

#[test]
fn old_format_log_choice_and_damage() {
    let (primary, to) = before_and_after();
    let seq = u32_at(&primary, 4);
    let log = old_log(&primary, &to, seq);
    // Older than the primary: not applied.
    let mut stale = log.clone();
    stale[12..20].copy_from_slice(&1u64.to_le_bytes());
    let sum = checksum(&stale[..512]);
    set_u32(&mut stale, 508, sum);
    let r = recover(&primary, &[&stale]).expect("recover");
    assert_eq!(r.entries_applied(), 0);
    assert!(r.logs[0].note.contains("older"), "{}", r.logs[0].note);
    // Of two applicable logs the more recent one is used.
    let mut newer = log.clone();
    newer[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    let sum = checksum(&newer[..512]);
    set_u32(&mut newer, 508, sum);
    let r = recover(&primary, &[&log, &newer]).expect("recover");
    assert_eq!(r.logs[0].entries_applied, 0);
    assert_eq!(r.logs[1].entries_applied, 1);
    assert!(r.logs[0].note.contains("more recent"), "{}", r.logs[0].note);
    // Truncated pages, a missing dirty vector, a huge bins size: nothing applied.
    for (why, bad) in [
        ("dirty pages need", log[..log.len() - 1].to_vec()),
        ("DIRT", {
            let mut l = log.clone();
            l[512] = b'X';
            l
        }),
        ("exceeds", {
            let mut l = log.clone();
            set_u32(&mut l, 40, 0xFFFF_F000);
            let sum = checksum(&l[..512]);
            set_u32(&mut l, 508, sum);
            l
        }),
    ] {
        let r = recover(&primary, &[&bad]).expect("recover");
        assert_eq!(r.entries_applied(), 0, "{why}");
        assert!(r.logs[0].note.contains(why), "{why}: {}", r.logs[0].note);
        assert!(r.bytes == primary);
    }
    // Bit flips and truncations never panic.
    let mut rng = Rng(7);
    for _ in 0..300 {
        let mut l = log.clone();
        let at = (rng.next() % l.len() as u64) as usize;
        l[at] ^= 1 << (rng.next() % 8);
        if at < 512 {
            let sum = checksum(&l[..512]);
            set_u32(&mut l, 508, sum);
        }
        let cut = (rng.next() % (l.len() as u64 + 1)) as usize;
        for log in [&l[..], &l[..cut]] {
            if let Ok(r) = recover(&primary, &[log]) {
                let _ = Hive::parse_lenient(&r.bytes);
            }
        }
    }
}

#[test]
fn recover_file_finds_the_logs_beside_the_hive() {
    let Some(s) = sample() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = tmp.path().join("SYSTEM");
    std::fs::write(&hive, &s.primary).expect("write");
    std::fs::write(tmp.path().join("SYSTEM.LOG1"), &s.log1).expect("write");
    std::fs::write(tmp.path().join("SYSTEM.log2"), &s.log2).expect("write");
    let f = regf::recover_file(&hive).expect("recover");
    assert_eq!(
        f.log_paths,
        vec![
            tmp.path().join("SYSTEM.LOG1"),
            tmp.path().join("SYSTEM.log2")
        ]
    );
    assert_eq!(f.recovery.entries_applied(), 4);
    assert!(f.recovery.bytes == s.windows);
    assert!(
        std::fs::read(&hive).expect("read") == s.primary,
        "input untouched"
    );

    // A primary that is not one: the error names the file.
    std::fs::write(&hive, b"not a hive").expect("write");
    let e = regf::recover_file(&hive).expect_err("not a hive");
    assert!(e.to_string().contains("SYSTEM"), "{e}");
}

#[test]
fn a_single_dot_log_beside_the_hive_is_found_and_applied() {
    // Windows XP / Server 2003 keep one old-format HIVE.LOG; it is used only when there is no
    // HIVE.LOG1 / HIVE.LOG2.
    let (primary, to) = before_and_after();
    let log = old_log(&primary, &to, u32_at(&primary, 4));
    let dir = tempfile::tempdir().expect("tempdir");
    let hive = dir.path().join("SYSTEM");
    std::fs::write(&hive, &primary).expect("write");
    std::fs::write(dir.path().join("SYSTEM.LOG"), &log).expect("write");
    assert_eq!(regf::log_paths(&hive), vec![dir.path().join("SYSTEM.LOG")]);
    let r = regf::recover_file(&hive).expect("recover");
    assert_eq!(r.recovery.entries_applied(), 1);
    assert_eq!(value_v(&r.recovery.bytes).as_deref(), Some("after!"));
    // With a .LOG1 present, the single .LOG is not one of the logs.
    std::fs::write(dir.path().join("SYSTEM.LOG1"), &log).expect("write");
    assert_eq!(regf::log_paths(&hive), vec![dir.path().join("SYSTEM.LOG1")]);
}
