//! The validator's two levels on real hives: every real Windows hive in shared/testdata that is
//! not deliberately damaged passes the Windows level; the compact level still flags their
//! live-hive slack; damage is listed before layout findings, and a cut list says how many
//! problems there were. Also: key paths split on `\` only, so real names with `/` are found.

mod common;

use common::*;
use regf::format::{BASE_BLOCK_SIZE, BB_ROOT, NK_MAX_SUBKEY_NAME, NK_MAX_VALUE_DATA};
use regf::validate::{check, Level, MAX_PROBLEMS};
use regf::Hive;

/// The hive of [`GOOD_HIVES`] that is damaged on purpose (its cells are out of order) yet
/// parses; every other one is a real hive Windows (or offreg) made or kept, dirty ones included.
const DAMAGED_ON_PURPOSE: &str = "yarp-WrongOrderHive";

#[test]
fn real_windows_hives_pass_the_windows_level() {
    for name in GOOD_HIVES.iter().filter(|h| **h != DAMAGED_ON_PURPOSE) {
        let Some(bytes) = load(name) else { continue };
        let report = check(&bytes, Level::Windows);
        assert!(
            report.is_ok() && report.problems.is_empty(),
            "{name}: {} problems, e.g. {:?}",
            report.total,
            report.problems.first().map(ToString::to_string)
        );
        // A dirty file is told as a note, not a problem.
        let dirty = Hive::parse(&bytes).expect("parses").dirty_notes().is_some();
        assert_eq!(
            report.notes.iter().any(|n| n.starts_with(regf::DIRTY_NOTE)),
            dirty,
            "{name}: {:?}",
            report.notes
        );
    }
}

#[test]
fn the_compact_level_flags_live_hive_slack_and_says_when_the_list_is_cut() {
    let Some(bytes) = load("regipy-SYSTEM-offreg-compacted.xz") else {
        return;
    };
    // Windows left "largest subkey name" fields above the real maxima on over 1000 keys.
    let report = check(&bytes, Level::Compact);
    assert!(report.total > MAX_PROBLEMS, "{}", report.total);
    assert_eq!(report.problems.len(), MAX_PROBLEMS);
    assert!(report.truncated());
    assert!(report.problems.iter().all(|p| p.compact));
    assert!(report.problems[0].message.contains("not exact"));
    let windows = check(&bytes, Level::Windows);
    assert!(windows.is_ok() && !windows.truncated());
}

#[test]
fn a_largest_field_below_the_real_maximum_is_damage_above_it_is_layout() {
    let mut h = Hive::new();
    h.create_key("LongerName").set_u32("value", 1);
    let bytes = h.to_bytes().expect("write");
    assert!(check(&bytes, Level::Compact).is_ok());
    let root = u32::from_le_bytes(bytes[BB_ROOT..BB_ROOT + 4].try_into().expect("u32")) as usize;
    let field = BASE_BLOCK_SIZE + root + 4 + NK_MAX_SUBKEY_NAME;
    let real = u32::from_le_bytes(bytes[field..field + 4].try_into().expect("u32"));
    assert_eq!(real, 20, "\"LongerName\" as UTF-16");
    let with = |v: u32| {
        let mut b = bytes.clone();
        b[field..field + 4].copy_from_slice(&v.to_le_bytes());
        b
    };

    let larger = with(0x40);
    assert!(check(&larger, Level::Windows).is_ok());
    let compact = check(&larger, Level::Compact);
    assert_eq!(compact.total, 1);
    assert!(compact.problems[0].compact);
    assert_eq!(
        compact.problems[0].to_string(),
        format!(
            "cell {root:#x} (root key): largest subkey name/class fields 64/0 not exact (20/0)"
        )
    );

    let smaller = with(4);
    let windows = check(&smaller, Level::Windows);
    assert_eq!(windows.total, 1, "{:?}", windows.problems);
    assert!(!windows.problems[0].compact);
    assert!(windows.problems[0]
        .message
        .contains("largest subkey name/class fields 4/0 below the real maxima (20/0)"));

    // The same for the value fields of the key below.
    let key = h.key("LongerName").expect("key");
    assert_eq!(key.values.len(), 1);
    let mut b = bytes.clone();
    let nk = find_nk(&b, "LongerName");
    let at = BASE_BLOCK_SIZE + nk + 4 + NK_MAX_VALUE_DATA;
    b[at..at + 4].copy_from_slice(&100u32.to_le_bytes());
    assert!(check(&b, Level::Windows).is_ok());
    b[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let damage = check(&b, Level::Windows);
    assert_eq!(damage.problems.len(), 1);
    assert_eq!(damage.problems[0].key.as_deref(), Some("LongerName"));
}

/// Offset (relative to the bins) of the nk cell of a key with this compressed name.
fn find_nk(bytes: &[u8], name: &str) -> usize {
    let bins = &bytes[BASE_BLOCK_SIZE..];
    (0..bins.len() - 80)
        .step_by(8)
        .find(|&c| {
            &bins[c + 4..c + 6] == b"nk"
                && bins.get(c + 4 + 76..c + 4 + 76 + name.len()) == Some(name.as_bytes())
        })
        .expect("nk cell")
}

#[test]
fn damage_is_listed_before_layout_findings() {
    let Some(bytes) = load("regipy-corrupted-SYSTEM.xz") else {
        return;
    };
    let windows = check(&bytes, Level::Windows);
    assert!(!windows.is_ok());
    assert!(windows.problems.iter().all(|p| !p.compact));
    // The zeroed pages: the bins stop where the "hbin" signature is missing.
    assert_eq!(windows.problems[0].offset, Some(0x19000));
    assert_eq!(windows.problems[0].message, "no hbin signature");
    assert_eq!(windows.problems[0].key, None);
    assert_eq!(
        windows.problems[0].to_string(),
        "cell 0x19000: no hbin signature"
    );

    let compact = check(&bytes, Level::Compact);
    assert!(compact.total > windows.total);
    let first_layout = compact
        .problems
        .iter()
        .position(|p| p.compact)
        .expect("layout findings too");
    assert_eq!(first_layout, windows.problems.len());
    assert_eq!(compact.problems[..first_layout], windows.problems[..]);
    assert!(compact.problems[first_layout..].iter().all(|p| p.compact));
}

#[test]
fn a_deliberately_broken_hive_fails_the_windows_level() {
    let Some(bytes) = load("yarp-WrongOrderHive") else {
        return;
    };
    let report = check(&bytes, Level::Windows);
    assert_eq!(report.total, 2, "{:?}", report.problems);
    assert!(report
        .problems
        .iter()
        .all(|p| p.message.contains("out of order")));
}

#[test]
fn key_names_with_a_slash_are_found_by_their_path() {
    let Some(bytes) = load("regipy-SYSTEM-offreg-compacted.xz") else {
        return;
    };
    let hive = parse_named("SYSTEM", &bytes);
    let k = hive
        .key("ControlSet001\\Control\\Session Manager\\I/O System")
        .expect("I/O System");
    assert_eq!(k.name, "I/O System");
    let k = hive
        .key("ControlSet001\\Control\\Print\\Monitors\\Standard TCP/IP Port\\Ports")
        .expect("Ports");
    assert_eq!(k.name, "Ports");
    let parent = hive
        .key("ControlSet001\\Control\\Session Manager")
        .expect("Session Manager");
    assert!(parent.subkey("I").is_none());
    assert!(hive
        .key("ControlSet001/Control/Session Manager/I/O System")
        .is_none());
}
