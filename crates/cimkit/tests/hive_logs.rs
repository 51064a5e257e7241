//! Every `cimkit hive` command applies the transaction logs found beside a dirty hive (on disk
//! and inside a CIM), say so on stderr, never touch the input, and read the primary as it is
//! with `--no-logs`. Data: yarp's NewDirtyHive1 from shared/testdata.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/hives/yarp-NewDirtyHive1"
);

/// (primary, LOG1, LOG2) bytes, or None (skip) when the shared data is absent.
fn sample() -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let read = |name: &str| {
        let p = Path::new(DIR).join(name);
        std::fs::read(&p)
            .map_err(|_| eprintln!("skipping: {} not found", p.display()))
            .ok()
    };
    Some((
        read("NewDirtyHive")?,
        read("NewDirtyHive.LOG1")?,
        read("NewDirtyHive.LOG2")?,
    ))
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = cimkit(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes the sample as SYSTEM, SYSTEM.LOG1, SYSTEM.LOG2 into `dir`.
fn write_sample(dir: &Path, s: &(Vec<u8>, Vec<u8>, Vec<u8>)) -> PathBuf {
    let hive = dir.join("SYSTEM");
    std::fs::write(&hive, &s.0).expect("write");
    std::fs::write(dir.join("SYSTEM.LOG1"), &s.1).expect("write");
    std::fs::write(dir.join("SYSTEM.LOG2"), &s.2).expect("write");
    hive
}

#[test]
fn logs_beside_a_hive_are_applied_in_memory() {
    let Some(sample) = sample() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = write_sample(tmp.path(), &sample);

    let (code, out, err) = run(&["hive", "get", s(&hive), ""]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Key3\\\n");
    assert!(err.contains("applied 4 log entries from"), "{err}");
    assert!(
        err.contains("SYSTEM.LOG1") && err.contains("SYSTEM.LOG2"),
        "{err}"
    );
    assert!(err.contains("sequence now 6"), "{err}");

    let (code, out, err) = run(&["hive", "get", "--no-logs", s(&hive), ""]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Key1\\\nKey2\\\n");
    // The primary is dirty: said once, on stderr.
    assert_eq!(
        err,
        format!(
            "cimkit: note: {}: dirty hive: sequence numbers 3 != 2 (read without logs)\n",
            s(&hive)
        )
    );
    assert_eq!(
        cimkit_ok(&["hive", "get", "--no-logs", s(&hive), "Key2", "v"], 0),
        "testTEST\n"
    );

    let (code, out, err) = run(&["hive", "dump", s(&hive)]);
    assert_eq!(code, Some(0), "{err}");
    for k in ["Key3_1", "Key3_2", "Key3_3"] {
        assert!(out.contains(k), "{k} missing from dump:\n{out}");
    }
    assert!(!out.contains("Key2_1"), "{out}");
    assert!(err.contains("applied 4 log entries"), "{err}");

    // check: the recovered hive is sound (exit 0; its live-hive slack shows only with
    // --compact); without logs the file is dirty, which is said once on stderr, not a problem
    // (--compact, which wants a clean file, reports the sequence numbers).
    let (code, out, err) = run(&["hive", "check", s(&hive)]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, format!("{}: OK\n", s(&hive)));
    assert!(!err.contains("dirty"), "{err}");
    let (code, out, _) = run(&["hive", "check", "--compact", s(&hive)]);
    assert_eq!(code, Some(1));
    assert!(!out.contains("sequence"), "{out}");
    let (code, out, err) = run(&["hive", "check", "--no-logs", s(&hive)]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        err,
        format!(
            "cimkit: note: {}: dirty hive: sequence numbers 3 != 2 (read without logs)\n",
            s(&hive)
        )
    );
    let (code, out, _) = run(&["hive", "check", "--compact", "--no-logs", s(&hive)]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("file: secondary sequence is 0x2, expected 0x3"),
        "{out}"
    );

    // Nothing was written back.
    assert!(std::fs::read(&hive).expect("read") == sample.0);
    assert!(std::fs::read(tmp.path().join("SYSTEM.LOG1")).expect("read") == sample.1);
    assert!(std::fs::read(tmp.path().join("SYSTEM.LOG2")).expect("read") == sample.2);
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["SYSTEM", "SYSTEM.LOG1", "SYSTEM.LOG2"]);
}

#[test]
fn unusable_logs_leave_the_primary_as_it_is() {
    let Some(sample) = sample() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = write_sample(tmp.path(), &sample);

    // LOG2 truncated inside its first entry: LOG1's entry applies, LOG2 is named as unused.
    std::fs::write(tmp.path().join("SYSTEM.LOG2"), &sample.2[..0x1000]).expect("write");
    let (code, _, err) = run(&["hive", "get", s(&hive), ""]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("applied 1 log entry from"), "{err}");
    assert!(err.contains("not used:") && err.contains("0x200"), "{err}");

    // Both logs garbage: the hive is dirty, nothing applies, the primary is read.
    std::fs::write(tmp.path().join("SYSTEM.LOG1"), b"junk").expect("write");
    std::fs::write(tmp.path().join("SYSTEM.LOG2"), vec![0u8; 8192]).expect("write");
    let (code, out, err) = run(&["hive", "get", s(&hive), ""]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Key1\\\nKey2\\\n");
    assert!(err.contains("dirty but no log entry applies"), "{err}");

    // A log claiming the old format (file type 1) without a dirty vector: not applied.
    let mut old = sample.1.clone();
    old[28..32].copy_from_slice(&1u32.to_le_bytes());
    let sum = regf::format::checksum(&old[..512]);
    old[508..512].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(tmp.path().join("SYSTEM.LOG1"), &old).expect("write");
    let (code, out, err) = run(&["hive", "get", s(&hive), ""]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Key1\\\nKey2\\\n");
    assert!(err.contains("no \"DIRT\" signature"), "{err}");
}

#[test]
fn logs_beside_a_hive_inside_a_cim_are_applied() {
    let Some(sample) = sample() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut t = LayerTar::new();
    t.dir("Files").base_hives();
    t.file("Files/Windows/System32/config/Dirty", &sample.0);
    t.file("Files/Windows/System32/config/Dirty.LOG1", &sample.1);
    t.file("Files/Windows/System32/config/Dirty.LOG2", &sample.2);
    let tar = tmp.path().join("l.tar");
    std::fs::write(&tar, t.finish()).expect("write");
    import_tar(&tar, &tmp.path().join("s/1"), &[]);
    let cim = tmp.path().join("s/cim-layers/1.cim");
    let hive = "Files\\Windows\\System32\\config\\Dirty";
    let (code, out, err) = run(&["hive", "get", "--cim", s(&cim), hive, ""]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Key3\\\n");
    assert!(err.contains("applied 4 log entries"), "{err}");
    assert!(
        err.contains("Dirty.LOG1") && err.contains("Dirty.LOG2"),
        "{err}"
    );
    let (code, out, err) = run(&["hive", "get", "--cim", s(&cim), "--no-logs", hive, ""]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Key1\\\nKey2\\\n");
}

#[test]
fn set_and_merge_edit_the_recovered_hive() {
    let Some(sample) = sample() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = write_sample(tmp.path(), &sample);

    // set writes the recovered tree plus the edit, as a clean hive; the stale logs are then ignored.
    let edited = tmp.path().join("EDITED");
    let (code, _, err) = run(&[
        "hive",
        "set",
        s(&hive),
        "Key3",
        "Level",
        "7",
        "--type",
        "dword",
        "-o",
        s(&edited),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("applied 4 log entries"), "{err}");
    assert_eq!(cimkit_ok(&["hive", "get", s(&edited), ""], 0), "Key3\\\n");
    assert_eq!(
        cimkit_ok(&["hive", "get", s(&edited), "Key3", "Level"], 0),
        "7 (0x7)\n"
    );
    let (code, out, _) = run(&["hive", "check", s(&edited)]);
    assert_eq!(code, Some(0), "{out}");

    // --no-logs edits the primary as it is.
    let raw = tmp.path().join("RAW");
    let (code, _, err) = run(&[
        "hive",
        "set",
        "--no-logs",
        s(&hive),
        "Key2",
        "w",
        "x",
        "-o",
        s(&raw),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.starts_with("cimkit: note: ") && err.ends_with("(read without logs)\n"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        cimkit_ok(&["hive", "get", s(&raw), ""], 0),
        "Key1\\\nKey2\\\n"
    );

    // merge reads the recovered base: an empty delta leaves its keys as they are.
    let delta = tmp.path().join("DELTA");
    cimkit_ok(&["hive", "set", "--create", s(&delta), "Key4", "a", "b"], 0);
    let merged = tmp.path().join("MERGED");
    let (code, _, err) = run(&["hive", "merge", s(&hive), s(&delta), "-o", s(&merged)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("applied 4 log entries"), "{err}");
    assert_eq!(
        cimkit_ok(&["hive", "get", s(&merged), ""], 0),
        "Key3\\\nKey4\\\n"
    );

    // The input files are untouched.
    assert!(std::fs::read(&hive).expect("read") == sample.0);
    assert!(std::fs::read(tmp.path().join("SYSTEM.LOG1")).expect("read") == sample.1);
}
