//! Format 1.3 output (the format of BCD stores and pre-XP hives): lf leaves with name hints,
//! ri above 507 entries, big values in one cell instead of db; real 1.3 hives keep their
//! format through parse -> write, and merges keep the base's format.

mod common;

use std::process::Command;

use common::*;
use regf::{Hive, LayerSemantics, REG_BINARY};

/// The real 1.3 hives of shared/testdata, with their bytes.
fn real_13_hives() -> Vec<(&'static str, Vec<u8>)> {
    GOOD_HIVES
        .iter()
        .filter_map(|&name| Some((name, load(name)?)))
        .filter(|(_, bytes)| minor_of(bytes) == 3)
        .collect()
}

#[test]
fn real_13_hives_are_written_as_13() {
    let hives = real_13_hives();
    for (name, bytes) in &hives {
        // Windows' own lf hints agree with ours (the validator recomputes each one), and
        // nothing Windows wrote into a 1.3 hive is an lh leaf.
        let own: Vec<String> = regf::validate::validate(bytes)
            .iter()
            .map(ToString::to_string)
            .filter(|p| p.contains("lf hint") || p.contains("lh leaf"))
            .collect();
        assert!(own.is_empty(), "{name}: original: {own:?}");

        let hive = parse_named(name, bytes);
        assert_eq!(hive.minor_version, 3, "{name}");
        let written = hive.to_bytes().expect("write");
        assert_eq!(minor_of(&written), 3, "{name}");
        let problems = regf::validate::validate(&written);
        assert!(problems.is_empty(), "{name}: {:?}", &problems);
        let sigs = cell_signatures(&written);
        assert!(!sigs.contains(b"lh"), "{name}: lh leaf in 1.3 output");
        if hive.key_count() > 1 {
            assert!(sigs.contains(b"lf"), "{name}: no lf leaf");
        }
        let again = Hive::parse(&written).expect("reparse");
        assert_eq!(again.minor_version, 3);
        if let Some(d) = tree_diff(&hive.root, &again.root, "") {
            panic!("{name}: {d}");
        }
    }
    eprintln!("{} real 1.3 hives written as 1.3", hives.len());
}

/// A 1.3 hive exercising everything format-specific: a big value, names whose hints need
/// the non-Latin-1 rule, and a key with more subkeys than one leaf holds.
fn synthetic_13() -> Hive {
    let mut h = Hive::new();
    h.minor_version = 3;
    let k = h.create_key("Big");
    k.set_value(
        "huge",
        REG_BINARY,
        (0..100_000u32).map(|i| (i * 7) as u8).collect(),
    );
    k.set_value("edge", REG_BINARY, vec![0x5a; 16_345]);
    k.set_value("fits", REG_BINARY, vec![0xa5; 16_344]);
    for name in ["AБcd", "Привет", "ab", "äöüß", "Elements"] {
        h.create_key(&format!("Names\\{name}")).set_u32("x", 1);
    }
    let many = h.create_key("Many");
    for i in 0..600 {
        many.create_subkey(&format!("k{i:04}"));
    }
    h
}

#[test]
fn synthetic_13_hive_uses_lf_ri_and_single_big_cells() {
    let h = synthetic_13();
    let bytes = h.to_bytes().expect("write");
    assert_eq!(minor_of(&bytes), 3);
    let problems = regf::validate::validate(&bytes);
    assert!(problems.is_empty(), "{problems:?}");
    let sigs = cell_signatures(&bytes);
    // Value data here never starts with these letters, so any such cell is a record.
    assert!(!sigs.contains(b"db"), "db record in a 1.3 hive");
    assert!(!sigs.contains(b"lh"), "lh leaf in a 1.3 hive");
    assert!(sigs.contains(b"ri"), "600 subkeys need an ri");
    // Root, Names, and Many (507 + 93 entries).
    assert_eq!(sigs.iter().filter(|s| *s == b"lf").count(), 4);
    let back = Hive::parse(&bytes).expect("parse");
    assert_eq!(back.minor_version, 3);
    assert!(tree_diff(&h.root, &back.root, "").is_none());

    // The same tree as 1.5 uses db and lh, and 1.4 lf leaves with db (regf.md §1.6, §1.9).
    for (minor, db, leaf) in [(5, true, b"lh"), (4, true, b"lf")] {
        let mut h5 = h.clone();
        h5.minor_version = minor;
        let b5 = h5.to_bytes().expect("write");
        assert_eq!(minor_of(&b5), minor);
        assert!(regf::validate::validate(&b5).is_empty());
        let s5 = cell_signatures(&b5);
        assert_eq!(s5.contains(b"db"), db);
        assert!(s5.contains(leaf));
        let back = Hive::parse(&b5).expect("parse");
        assert!(tree_diff(&h.root, &back.root, "").is_none());
    }
}

#[test]
fn lf_hints_follow_the_kernel_rule() {
    let h = synthetic_13();
    let bytes = h.to_bytes().expect("write");
    // Find the lf leaf of "Names" by its first entry's hint; entries are sorted.
    let bins = &bytes[4096..];
    let mut hints = Vec::new();
    for at in (0..bins.len() - 8).step_by(8) {
        if &bins[at + 4..at + 8] == b"lf\x05\0" {
            let leaf = &bins[at + 8..at + 8 + 40];
            hints = leaf.chunks(8).map(|e| e[4..8].to_vec()).collect();
        }
    }
    let expected: Vec<Vec<u8>> = vec![
        b"ab\0\0".to_vec(),
        // "AБcd": filled from the fourth unit backwards, stopped at "Б": byte 0 stays 0.
        vec![0, 0, b'c', b'd'],
        b"Elem".to_vec(),
        vec![0xe4, 0xf6, 0xfc, 0xdf],
        vec![0, 0, 0, 0],
    ];
    assert_eq!(hints, expected);
}

/// hivex reads the 100,000-byte single-cell value of a 1.3 hive byte for byte
/// (hivexregedit prints REG_BINARY data as exact hex), and walks every key, including the
/// 600 below an ri of lf leaves.
#[test]
fn hivex_reads_a_13_big_value() {
    if Command::new("hivexregedit").arg("--help").output().is_err() {
        eprintln!("skipping: hivexregedit not installed (apt-get install libwin-hivex-perl)");
        return;
    }
    let h = synthetic_13();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big13");
    h.save(&path).expect("save");
    let out = Command::new("hivexregedit")
        .arg("--export")
        .arg(&path)
        .arg("\\Big")
        .output()
        .expect("run hivexregedit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("ASCII export");
    let all = Command::new("hivexregedit")
        .arg("--export")
        .arg(&path)
        .arg("\\")
        .output()
        .expect("run hivexregedit");
    assert!(all.status.success());
    let headers = all
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.first() == Some(&b'['));
    assert_eq!(headers.count(), h.key_count());
    let big = h.key("Big").expect("Big");
    for name in ["huge", "edge", "fits"] {
        let data = &big.value(name).expect("value").data;
        let hex: Vec<String> = data.iter().map(|b| format!("{b:02x}")).collect();
        let line = format!("\"{name}\"=hex(3):{}", hex.join(","));
        assert!(
            text.lines().any(|l| l == line),
            "hivexregedit does not show {name} ({} bytes) exactly",
            data.len()
        );
    }
}

#[test]
fn merge_keeps_the_base_format() {
    let mut base = Hive::new();
    base.minor_version = 3;
    base.create_key("Objects\\{a}").set_u32("Type", 1);
    base.create_key("Objects\\{c}").set_u32("Type", 3);
    let mut delta = Hive::new();
    delta.differencing = true;
    delta.minor_version = 6;
    delta.create_key("Objects\\{b}").set_u32("Type", 2);
    delta.create_key("Objects\\{c}").layer = LayerSemantics::Tombstone;
    let m = regf::merge(&base, &delta).expect("merge");
    assert_eq!(m.minor_version, 3);
    let bytes = m.to_bytes().expect("write");
    assert_eq!(minor_of(&bytes), 3);
    assert!(regf::validate::validate(&bytes).is_empty());
    assert!(!cell_signatures(&bytes).contains(b"lh"));
    let back = Hive::parse(&bytes).expect("parse");
    assert!(back.key("Objects\\{a}").is_some() && back.key("Objects\\{b}").is_some());
    assert!(back.key("Objects\\{c}").is_none());
}

const DISSECT_BIG: &str = r#"
import sys, hashlib
from dissect.regf import regf
r = regf.RegistryHive(open(sys.argv[1], "rb")).root()
print(hashlib.sha1(r.subkey("Big").value("huge").value).hexdigest(), len(list(r.subkey("Many").subkeys())))
"#;

/// dissect.regf (a second, independent reader) also takes the single-cell big value of a 1.3
/// hive and the ri of lf leaves.
#[test]
fn dissect_regf_reads_a_13_big_value() {
    let Some(python) = python_with("dissect.regf") else {
        return;
    };
    let h = synthetic_13();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big13");
    h.save(&path).expect("save");
    let out = Command::new(&python)
        .args(["-c", DISSECT_BIG])
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // sha1 of (i * 7) as u8 for i in 0..100000, computed independently with Python hashlib.
    let expected = "db6498cdec44effeaa7284401972c6af8645d842 600\n";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
