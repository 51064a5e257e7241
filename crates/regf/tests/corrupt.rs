//! Damaged input never panics: the real corrupted hive, truncations, bit flips, and
//! hand-made hostile structures (cycles, shared subtrees, huge counts).

mod common;

use common::*;
use regf::{Error, Hive};

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

/// Validates, parses strictly and leniently; whatever parses must also write (or refuse) without panic,
/// and what we write must parse again.
fn exercise(bytes: &[u8]) {
    let _ = regf::validate::validate(bytes);
    for hive in [Hive::parse(bytes), Hive::parse_lenient(bytes)]
        .into_iter()
        .flatten()
    {
        let mut sink = Vec::new();
        regf::dump(&hive, &mut sink).expect("dump to memory");
        if let Ok(out) = hive.to_bytes() {
            let again = Hive::parse(&out).expect("our own output parses");
            assert_eq!(again.key_count(), hive.key_count());
        }
    }
}

#[test]
fn corrupted_system_hive_is_an_error_strictly_and_partial_leniently() {
    let Some(bytes) = load("regipy-corrupted-SYSTEM.xz") else {
        return;
    };
    let err = Hive::parse(&bytes).expect_err("strict parse must fail");
    match &err {
        Error::Corrupt { offset, .. } => assert!(*offset > 0),
        other => panic!("unexpected error kind: {other}"),
    }
    eprintln!("strict: {err}");
    let hive = Hive::parse_lenient(&bytes).expect("lenient parse keeps the sound part");
    assert!(!hive.notes.is_empty());
    assert!(hive.key_count() > 1);
    eprintln!(
        "lenient: {} keys, {} notes, first: {}",
        hive.key_count(),
        hive.notes.len(),
        hive.notes[0]
    );
    let out = hive.to_bytes().expect("the sound part writes");
    assert!(regf::validate::validate(&out).is_empty());
}

#[test]
fn truncations_never_panic() {
    for name in [
        "nt-hive-offreg-testhive",
        "yarp-System_Delta",
        "yarp-BigDataHive",
    ] {
        let Some(bytes) = load(name) else { continue };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(4096).collect();
        cuts.extend((0..60).map(|_| rng.next() as usize % bytes.len()));
        for cut in cuts {
            exercise(&bytes[..cut]);
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    for name in [
        "nt-hive-offreg-testhive",
        "yarp-System_Delta",
        "regipy-SECURITY.xz",
    ] {
        let Some(bytes) = load(name) else { continue };
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..150 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.next() % 8 {
                // Flip bits mostly in the first bins, where the root and its lists live.
                let span = if rng.next() & 1 == 0 {
                    b.len().min(16384)
                } else {
                    b.len()
                };
                let at = rng.next() as usize % span;
                b[at] ^= 1 << (rng.next() % 8);
            }
            exercise(&b);
        }
    }
}

/// A small valid hive and the offsets of its root and of the child "A".
fn small() -> (Vec<u8>, usize, usize) {
    let mut h = Hive::new();
    h.create_key("A\\B");
    let bytes = h.to_bytes().expect("write");
    let root = 4096 + u32::from_le_bytes(bytes[36..40].try_into().expect("4 bytes")) as usize;
    // The root's single-entry lh leaf points at A.
    let list = 4096
        + u32::from_le_bytes(bytes[root + 4 + 28..root + 4 + 32].try_into().expect("4")) as usize;
    let a = 4096 + u32::from_le_bytes(bytes[list + 8..list + 12].try_into().expect("4")) as usize;
    (bytes, root, a)
}

#[test]
fn cycles_are_detected() {
    let (mut bytes, root, a) = small();
    // Point A's subkey list at the root's list, whose entry is A itself.
    let root_list = bytes[root + 4 + 28..root + 4 + 32].to_vec();
    bytes[a + 4 + 28..a + 4 + 32].copy_from_slice(&root_list);
    // The shared list is caught when it is reached the second time, before its key is.
    match Hive::parse(&bytes) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("second time"), "{reason}"),
        other => panic!("expected the repeated list to be an error, got {other:?}"),
    }
    let lenient = Hive::parse_lenient(&bytes).expect("lenient skips the cycle");
    assert_eq!(lenient.key_count(), 2);
}

#[test]
fn hostile_counts_are_bounded() {
    let (mut bytes, root, _) = small();
    // Claim 2^32-1 values and 2^32-1 subkeys on the root.
    bytes[root + 4 + 36..root + 4 + 40].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[root + 4 + 20..root + 4 + 24].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Hive::parse(&bytes).is_err());
    exercise(&bytes);
}

#[test]
fn bad_base_blocks_are_errors() {
    let (bytes, _, _) = small();
    for (at, val) in [(0usize, 0u8), (20, 2), (24, 9), (28, 1)] {
        let mut b = bytes.clone();
        b[at] = val;
        assert!(
            matches!(Hive::parse(&b), Err(Error::BaseBlock(_))),
            "byte {at}"
        );
    }
    assert!(Hive::parse(&bytes[..100]).is_err());
    // A bad checksum alone is tolerated and noted.
    let mut b = bytes.clone();
    b[508] ^= 0xFF;
    let h = Hive::parse(&b).expect("bad checksum tolerated");
    assert!(h.notes.iter().any(|n| n.contains("checksum")));
}

#[test]
fn a_leaf_named_many_times_is_walked_once() {
    // An ri naming one leaf n times would list that leaf's children n times: n x 507 key
    // offsets, notes and validator entries from one small cell.
    let mut h = Hive::new();
    for i in 0..3 * regf::format::LEAF_CAPACITY {
        h.create_key(&format!("P\\K{i:05}"));
    }
    let mut bytes = h.to_bytes().expect("write");
    let ri = (4096..bytes.len() - 16)
        .step_by(8)
        .find(|&c| &bytes[c + 4..c + 6] == b"ri" && bytes[c + 6..c + 8] == [3, 0])
        .expect("the ri of P");
    let first = bytes[ri + 8..ri + 12].to_vec();
    for i in 1..3 {
        bytes[ri + 8 + 4 * i..ri + 12 + 4 * i].copy_from_slice(&first);
    }
    assert!(Hive::parse(&bytes).is_err());
    let lenient = Hive::parse_lenient(&bytes).expect("lenient skips the repeats");
    assert_eq!(lenient.key_count(), 2 + regf::format::LEAF_CAPACITY);
    assert!(lenient.notes.len() <= 2, "{} notes", lenient.notes.len());
    let problems = regf::validate::validate(&bytes);
    assert!(problems.iter().any(|p| p.message.contains("second time")));
    assert!(problems.len() < 40, "{} problems", problems.len());
}

/// Names UTF-16 cannot spell exactly (an unpaired surrogate) read with U+FFFD, and a note says
/// so, naming the first, since writing the hive back changes them.
#[test]
fn names_with_unpaired_surrogates_are_noted() {
    let mut h = Hive::new();
    h.create_key("Software\\K\u{3a9}\u{3a9}")
        .set_string("V\u{3a9}\u{3a9}", "data");
    let mut bytes = h.to_bytes().expect("write");
    // Ω (U+03A9) stores as a9 03; the first of each pair becomes a lone high surrogate.
    let omega = [0xa9u8, 0x03, 0xa9, 0x03];
    let mut patched = 0;
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if bytes[i..i + 4] == omega {
            bytes[i..i + 2].copy_from_slice(&[0x00, 0xd8]);
            patched += 1;
        }
        i += 1;
    }
    assert_eq!(patched, 2, "one key name and one value name");
    let hive = Hive::parse(&bytes).expect("parses");
    let key = hive
        .key("Software\\K\u{fffd}\u{3a9}")
        .expect("key read with U+FFFD");
    assert!(key.value("V\u{fffd}\u{3a9}").is_some());
    let notes = hive.notes.join("\n");
    assert!(
        notes.contains("2 key or value names are not valid UTF-16")
            && notes.contains("first: key \"K\u{fffd}\u{3a9}\" under \"Software\""),
        "{notes}"
    );
    // An exact hive has no such note.
    let clean = Hive::parse(&h.to_bytes().expect("write")).expect("parses");
    assert!(
        !clean.notes.iter().any(|n| n.contains("UTF-16")),
        "{:?}",
        clean.notes
    );
}
