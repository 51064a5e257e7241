//! `cimkit hive` on the real hives of shared/testdata: key names with `/`, `check` on clean
//! and damaged Windows hives, notes on stderr once, multi-sz data, type spellings, and the
//! header of a subtree dump. The `.xz` hives are decompressed with the `xz` tool (the test
//! skips what it cannot decompress).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const HIVES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/hives"
);

/// Real hives Windows (or offreg) made that are not damaged on purpose (SOURCES.txt), dirty
/// ones included.
const CLEAN_REAL_HIVES: &[&str] = &[
    "nt-hive-offreg-testhive",
    "regipy-NTUSER.DAT.xz",
    "regipy-SECURITY.xz",
    "regipy-SYSTEM-offreg-compacted.xz",
    "regipy-SYSTEM-win10-1709-dirty.xz",
    "yarp-BigDataHive",
    "yarp-OffHive",
    "yarp-System_Delta",
    "yarp-UnicodeHive",
    "yarp-NewDirtyHive1/NewDirtyHive",
    "yarp-NewDirtyHive1/RecoveredHive_Windows10",
];

/// The hive `name` of shared/testdata copied (decompressed) into `dir`, or None (skip).
fn hive_copy(name: &str, dir: &Path) -> Option<PathBuf> {
    let src = Path::new(HIVES).join(name);
    if !src.is_file() {
        eprintln!("skipping: {} not found", src.display());
        return None;
    }
    let base = Path::new(name).file_name()?.to_str()?;
    let dest = dir.join(base.trim_end_matches(".xz"));
    if name.ends_with(".xz") {
        match Command::new("xz").arg("-dc").arg(&src).output() {
            Ok(out) if out.status.success() => std::fs::write(&dest, out.stdout).expect("write"),
            _ => {
                eprintln!("skipping: cannot run `xz -dc {}`", src.display());
                return None;
            }
        }
    } else {
        std::fs::copy(&src, &dest).expect("copy");
    }
    Some(dest)
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = cimkit(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const IO_SYSTEM: &str = "ControlSet001\\Control\\Session Manager\\I/O System";

#[test]
fn key_names_with_a_slash_are_reached_and_set() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(h) = hive_copy("regipy-SYSTEM-offreg-compacted.xz", tmp.path()) else {
        return;
    };
    let h = s(&h);
    let listing = cimkit_ok(&["hive", "get", h, IO_SYSTEM], 0);
    assert_eq!(listing, "AllowRemoteDASD\tREG_DWORD\t0 (0x0)\n");
    assert_eq!(
        cimkit_ok(&["hive", "get", h, IO_SYSTEM, "AllowRemoteDASD"], 0),
        "0 (0x0)\n"
    );
    let dump = cimkit_ok(&["hive", "dump", h, "--key", IO_SYSTEM], 0);
    assert!(dump.contains(&format!("\n\\{IO_SYSTEM}  [")), "{dump}");
    // A path with `/` as separator names no key.
    let (code, _, err) = run(&["hive", "get", h, "ControlSet001/Control"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not found"), "{err}");

    // set writes into the existing key and creates no "I" or "I\O System".
    let out = tmp.path().join("EDITED");
    cimkit_ok(
        &["hive", "set", h, IO_SYSTEM, "Test", "x", "-o", s(&out)],
        0,
    );
    let edited = s(&out);
    assert_eq!(
        cimkit_ok(&["hive", "get", edited, IO_SYSTEM, "Test"], 0),
        "x\n"
    );
    let parent = cimkit_ok(
        &[
            "hive",
            "get",
            edited,
            "ControlSet001\\Control\\Session Manager",
        ],
        0,
    );
    assert!(parent.lines().any(|l| l == "I/O System\\"), "{parent}");
    assert!(!parent.lines().any(|l| l == "I\\"), "{parent}");
    let before = cimkit_ok(&["hive", "dump", "--json", h], 0).lines().count();
    let after = cimkit_ok(&["hive", "dump", "--json", edited], 0)
        .lines()
        .count();
    assert_eq!(before, after, "no key was added");

    // A new key whose name holds `/` is one key.
    let new = tmp.path().join("NEW");
    cimkit_ok(&["hive", "set", "--create", s(&new), "A\\b/c", "v", "1"], 0);
    assert_eq!(cimkit_ok(&["hive", "get", s(&new), ""], 0), "A\\\n");
    assert_eq!(cimkit_ok(&["hive", "get", s(&new), "A"], 0), "b/c\\\n");
}

#[test]
fn clean_real_hives_pass_check_and_damaged_ones_fail_with_the_damage_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for name in CLEAN_REAL_HIVES {
        let Some(h) = hive_copy(name, tmp.path()) else {
            continue;
        };
        let (code, out, err) = run(&["hive", "check", s(&h)]);
        assert_eq!(code, Some(0), "{name}: {out}{err}");
        assert_eq!(out, format!("{}: OK\n", s(&h)));
        let (code, out, _) = run(&["hive", "check", "--json", s(&h)]);
        assert_eq!(code, Some(0));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["ok"], true);
        assert_eq!(v["total"], 0);
        assert_eq!(v["truncated"], false);
    }

    // A real hive with over 1000 layout findings: --compact lists 1000 and says so.
    if let Some(h) = hive_copy("regipy-SYSTEM-offreg-compacted.xz", tmp.path()) {
        let (code, out, _) = run(&["hive", "check", "--compact", s(&h)]);
        assert_eq!(code, Some(1));
        let lines: Vec<&str> = out.lines().collect();
        let last = lines.last().expect("summary");
        let total: usize = last
            .strip_prefix(&format!("{}: ", s(&h)))
            .and_then(|l| l.strip_suffix(" problems found"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{last}"));
        assert!(total > 1000, "{total}");
        assert_eq!(lines.len(), 1000 + 2);
        assert_eq!(
            lines[1000],
            format!("{}: … and {} more not listed", s(&h), total - 1000)
        );
        let (_, out, _) = run(&["hive", "check", "--compact", "--json", s(&h)]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["ok"], false);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["total"], total);
        assert_eq!(v["problems"].as_array().map(Vec::len), Some(1000));
        assert_eq!(v["problems"][0]["compact"], true);
    }

    // Deliberately damaged hives fail, their damage listed first.
    if let Some(h) = hive_copy("regipy-corrupted-SYSTEM.xz", tmp.path()) {
        let (code, out, _) = run(&["hive", "check", s(&h)]);
        assert_eq!(code, Some(1));
        assert_eq!(
            out.lines().next(),
            Some(format!("{}: cell 0x19000: no hbin signature", s(&h)).as_str())
        );
        // --compact adds the layout findings after the damage.
        let (_, compact, _) = run(&["hive", "check", "--compact", s(&h)]);
        let damage = out.lines().count() - 1;
        let compact: Vec<&str> = compact.lines().collect();
        assert!(compact.len() > damage + 1);
        assert_eq!(compact[..damage], out.lines().collect::<Vec<_>>()[..damage]);
    }
    if let Some(h) = hive_copy("yarp-WrongOrderHive", tmp.path()) {
        let (code, out, _) = run(&["hive", "check", s(&h)]);
        assert_eq!(code, Some(1));
        assert!(out.contains("out of order"), "{out}");
        assert!(out.ends_with(": 2 problems found\n"), "{out}");
    }
}

#[test]
fn dirty_hive_notes_go_to_stderr_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(h) = hive_copy("regipy-SYSTEM-win10-1709-dirty.xz", tmp.path()) else {
        return;
    };
    let h = s(&h);
    let note = format!(
        "cimkit: note: {h}: dirty hive: sequence numbers 4317 != 4316 (read without logs)\n"
    );
    for args in [
        &["hive", "get", h, "Select"][..],
        &["hive", "get", "--json", h, "Select", "Current"],
        &["hive", "dump", h, "--key", "Select"],
        &["hive", "dump", "--lenient", h, "--key", "Select"],
        &["hive", "dump", "--json", h, "--key", "Select"],
        &["hive", "check", h],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(err, note, "{args:?}");
        assert!(!out.contains("dirty hive"), "{args:?}: {out}");
    }
    let edited = tmp.path().join("EDITED");
    let (code, _, err) = run(&["hive", "set", h, "Select", "T", "x", "-o", s(&edited)]);
    assert_eq!(code, Some(0));
    assert_eq!(err, note);
    // What set wrote is clean.
    let (_, _, err) = run(&["hive", "get", s(&edited), "Select", "T"]);
    assert!(err.is_empty(), "{err}");
}

#[test]
fn lenient_skips_are_named_on_stderr_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(h) = hive_copy("regipy-corrupted-SYSTEM.xz", tmp.path()) else {
        return;
    };
    let (code, out, err) = run(&["hive", "dump", "--lenient", s(&h)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("skipped"), "skip notes on stdout");
    let skipped: Vec<&str> = err.lines().filter(|l| l.contains("skipped: ")).collect();
    assert!(!skipped.is_empty());
    assert!(skipped
        .iter()
        .all(|l| l.starts_with(&format!("cimkit: note: {}: skipped: ", s(&h)))));
    let mut unique = skipped.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), skipped.len(), "a note said twice");
    // check has no --lenient.
    let (code, _, err) = run(&["hive", "check", "--lenient", s(&h)]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn multi_sz_refuses_empty_strings_and_types_take_both_spellings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = tmp.path().join("H");
    let h = s(&h);
    for data in ["a;;b", "a;b;", ";a"] {
        let (code, _, err) = run(&[
            "hive", "set", "--create", h, "T", "m", "--type", "multi-sz", data,
        ]);
        assert_eq!(code, Some(2), "{data}");
        assert!(
            err.contains("is empty") && err.contains("ends the list"),
            "{err}"
        );
        assert!(!Path::new(h).exists(), "nothing written for {data:?}");
    }
    cimkit_ok(
        &[
            "hive", "set", "--create", h, "T", "m", "--type", "multi_sz", "a;b",
        ],
        0,
    );
    let (_, out, _) = run(&["hive", "get", "--json", h, "T", "m"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["type"], "REG_MULTI_SZ");
    assert_eq!(v["text"], "a;b");
    // "" is the empty list: just the terminating empty string.
    cimkit_ok(
        &["hive", "set", h, "T", "none", "--type", "multi-sz", ""],
        0,
    );
    let (_, out, _) = run(&["hive", "get", "--json", h, "T", "none"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["data"], "AAA=");
    for kind in ["expand_sz", "expand-sz"] {
        cimkit_ok(&["hive", "set", h, "T", kind, "--type", kind, "%x%"], 0);
        let (_, out, _) = run(&["hive", "get", "--json", h, "T", kind]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["type"], "REG_EXPAND_SZ", "{kind}");
    }
}

#[test]
fn help_placeholders_and_options_agree() {
    let get = cimkit_ok(&["hive", "get", "--help"], 0);
    let set = cimkit_ok(&["hive", "set", "--help"], 0);
    assert!(get.contains("<KEY> [NAME]"), "{get}");
    assert!(set.contains("<KEY> <NAME> [DATA]"), "{set}");
    assert!(
        !set.contains("expand_sz/") && !set.contains("for multi_sz"),
        "{set}"
    );
    let check = cimkit_ok(&["hive", "check", "--help"], 0);
    assert!(!check.contains("--lenient"), "{check}");
    assert!(check.contains("--compact"), "{check}");
    for cmd in ["dump", "get"] {
        let help = cimkit_ok(&["hive", cmd, "--help"], 0);
        assert!(help.contains("--lenient"), "{cmd}: {help}");
        assert!(!help.contains("dump, get:"), "{cmd}: {help}");
    }
}

#[test]
fn a_subtree_dump_says_which_key_it_starts_at() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = tmp.path().join("H");
    let h = s(&h);
    cimkit_ok(&["hive", "set", "--create", h, "T\\U", "v", "1"], 0);
    let out = cimkit_ok(&["hive", "dump", h, "--key", "t"], 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "hive: root \"ROOT\", format 1.5; key \\T and below"
    );
    assert!(lines[1].starts_with("\\T  ["), "{out}");
    assert!(lines[2].starts_with("\\T\\U  ["), "{out}");
    assert_eq!(lines[3], "  \"v\" REG_SZ = \"1\"");
}
