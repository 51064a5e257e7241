//! `cimkit export` of a child layer, running the built binary: the export of a fork holds only
//! its changes against the nearest parent image (found by region sets or named by --parent),
//! imports again on the same parent with no differences and the same merged SYSTEM_BASE, and
//! --flatten still gives a base-layer tar.

mod common;

use std::path::Path;

use common::{cimkit, cimkit_ok, s, LayerTar};

fn delta_hive() -> Option<Vec<u8>> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/hives/yarp-System_Delta"
    );
    match std::fs::read(p) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("skipping the hive delta part: {p} not found");
            None
        }
    }
}

/// A small real SYSTEM hive for the base layer (the delta is merged onto it).
fn system_hive() -> Vec<u8> {
    let mut h = regf::Hive::new();
    h.create_key("Select")
        .set_value("Current", regf::REG_DWORD, 1u32.to_le_bytes().to_vec());
    h.create_key(r"ControlSet001\Control").set_value(
        "SystemStartOptions",
        regf::REG_SZ,
        regf::encode_sz("NOEXECUTE=OPTOUT"),
    );
    h.to_bytes().expect("serialize SYSTEM")
}

fn base_layer() -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("Files")
        .dir("Files/Windows")
        .dir("Files/Windows/System32")
        .dir("Files/Windows/System32/config");
    for h in ["SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
        t.file(&format!("Files/Windows/System32/config/{h}"), b"not a hive");
    }
    t.file("Files/Windows/System32/config/SYSTEM", &system_hive());
    t.dir("Files/app")
        .dir("Files/app/old")
        .dir("Files/app/old/deep");
    t.file("Files/app/old/deep/x.dll", b"x");
    t.file("Files/app/keep.txt", b"unchanged");
    t.file("Files/app/gone.txt", b"removed");
    t.file("Files/app/replace.txt", b"before");
    t.file_with("Files/app/attrs.txt", b"same bytes", 0x20, &[]);
    t.file("Files/app/streamy.txt", b"has a stream");
    t.stream("Files/app/streamy.txt:zone", b"ZoneId=3");
    t.file("Files/app/one.txt", b"one");
    t.hardlink("Files/app/one-link.txt", "Files/app/one.txt");
    t.finish()
}

fn child_layer(delta: Option<&[u8]>) -> Vec<u8> {
    let mut t = LayerTar::new();
    t.whiteout("Files/app/.wh.gone.txt");
    t.whiteout("Files/app/.wh.old");
    t.file("Files/app/replace.txt", b"after, and longer");
    t.file_with("Files/app/attrs.txt", b"same bytes", 0x21, &[]);
    t.file("Files/app/streamy.txt", b"has a stream");
    t.stream("Files/app/streamy.txt:zone", b"ZoneId=4");
    t.file("Files/app/new.txt", b"new");
    t.stream("Files/app/new.txt:meta", b"stream of a new file");
    t.hardlink("Files/app/new-alias.txt", "Files/app/new.txt");
    t.hardlink("Files/app/one-more.txt", "Files/app/one.txt");
    if let Some(delta) = delta {
        t.dir("Hives");
        t.file("Hives/SYSTEM_DELTA", delta);
    }
    t.finish()
}

fn import(tar: &Path, layer: &Path, parent: Option<&Path>) {
    let mut args = vec!["import", "-q", s(tar), "--layer", s(layer)];
    if let Some(p) = parent {
        args.extend(["--parent", s(p)]);
    }
    cimkit_ok(&args, 0);
}

fn stderr_of(args: &[&str], code: i32) -> String {
    let out = cimkit(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "cimkit {args:?}: {err}");
    err
}

fn tar_names(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).expect("open tar");
    let mut ar = tar::Archive::new(f);
    let mut names: Vec<String> = ar
        .entries()
        .expect("entries")
        .map(|e| {
            String::from_utf8(e.expect("entry").path_bytes().into_owned()).expect("utf-8 name")
        })
        .collect();
    names.sort();
    names
}

#[test]
fn child_export_imports_back_with_no_differences() {
    let delta = delta_hive();
    let tmp = tempfile::tempdir().expect("tempdir");
    let snap = tmp.path().join("snap");
    let (base_tar, child_tar) = (tmp.path().join("base.tar"), tmp.path().join("child.tar"));
    std::fs::write(&base_tar, base_layer()).expect("write");
    std::fs::write(&child_tar, child_layer(delta.as_deref())).expect("write");
    let (l1, l2, l3) = (snap.join("1"), snap.join("2"), snap.join("3"));
    import(&base_tar, &l1, None);
    import(&child_tar, &l2, Some(&l1));
    let cims = snap.join("cim-layers");
    let (c1, c2, c3) = (cims.join("1.cim"), cims.join("2.cim"), cims.join("3.cim"));

    let exported = tmp.path().join("exported.tar");
    let msg = stderr_of(&["export", s(&c2), "-o", s(&exported)], 0);
    assert!(
        msg.contains("changes against") && msg.contains("1.cim"),
        "{msg}"
    );
    assert!(msg.contains("2 whiteouts"), "{msg}");
    let mut want = vec![
        "Files/app/.wh.gone.txt",
        "Files/app/.wh.old",
        "Files/app/attrs.txt",
        // new-alias.txt sorts first in the image, so it carries the data and stream.
        "Files/app/new-alias.txt",
        "Files/app/new-alias.txt:meta",
        "Files/app/new.txt",
        "Files/app/one-more.txt",
        "Files/app/replace.txt",
        "Files/app/streamy.txt",
        "Files/app/streamy.txt:zone",
    ];
    if delta.is_some() {
        want.extend(["Hives", "Hives/SYSTEM_DELTA"]);
    }
    assert_eq!(tar_names(&exported), want);
    import(&exported, &l3, Some(&l1));
    assert_eq!(cimkit_ok(&["diff", s(&c2), s(&c3)], 0), "");
    if delta.is_some() {
        let base_of = |layer: &Path| std::fs::read(layer.join("Hives/SYSTEM_BASE")).expect("read");
        assert!(base_of(&l2) == base_of(&l3), "same merged SYSTEM_BASE");
        assert!(base_of(&l2) != system_hive(), "SYSTEM_BASE is the merge");
    }

    // --parent names the parent; a wrong one is refused.
    let named = tmp.path().join("named.tar");
    stderr_of(&["export", s(&c2), "--parent", s(&c1), "-o", s(&named)], 0);
    assert!(std::fs::read(&named).expect("read") == std::fs::read(&exported).expect("read"));
    let err = stderr_of(&["export", s(&c2), "--parent", s(&c3), "-o", s(&named)], 2);
    assert!(err.contains("not its nearest parent"), "{err}");
    stderr_of(
        &[
            "export",
            s(&c2),
            "--flatten",
            "--parent",
            s(&c1),
            "-o",
            s(&named),
        ],
        2,
    );

    // --flatten: the whole merged tree, which imports as a base layer.
    let flat = tmp.path().join("flat.tar");
    let msg = stderr_of(&["export", "--flatten", s(&c2), "-o", s(&flat)], 0);
    assert!(msg.contains("whole tree"), "{msg}");
    let names = tar_names(&flat);
    assert!(names.iter().any(|n| n == "Files/app/keep.txt"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("Hives")), "{names:?}");
    import(&flat, &tmp.path().join("flat/1"), None);

    // Without the parent's .cim the export says how to go on.
    std::fs::rename(&c1, cims.join("1.moved")).expect("rename");
    let lost = tmp.path().join("lost.tar");
    let err = stderr_of(&["export", s(&c2), "-o", s(&lost)], 2);
    assert!(
        err.contains("no image in") && err.contains("--flatten"),
        "{err}"
    );
    assert!(!lost.exists(), "no tar is left behind");
    std::fs::rename(cims.join("1.moved"), &c1).expect("rename");
}
