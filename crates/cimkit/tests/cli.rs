//! End-to-end tests of every read command and import/export/diff/extract/du/destroy, running the
//! built binary on CIMs imported from layer tars built in the test.

mod common;

use common::*;
use serde_json::Value;

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(cimkit(&[]).status.code(), Some(2));
    assert_eq!(cimkit(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(cimkit(&["ls"]).status.code(), Some(2));
    let help = cimkit(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in [
        "import",
        "import-image",
        "ls",
        "stat",
        "cat",
        "verify",
        "extract",
        "export",
        "diff",
        "du",
        "destroy",
        "mount",
    ] {
        assert!(text.contains(cmd), "help lists {cmd}: {text}");
    }
    let out = cimkit(&["ls", "/nonexistent/x.cim"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.cim"));

    // Not a tar: said plainly, with how far the input was read, and nothing left behind.
    let tmp = tempfile::tempdir().expect("tempdir");
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"hello, this is no tar archive").expect("write");
    let snaps = tmp.path().join("snaps");
    let out = cimkit(&["import", "-q", s(&junk), "--layer", s(&snaps.join("1"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a readable tar archive") && err.contains("up to byte 29"),
        "{err}"
    );
    assert!(!snaps.exists(), "a failed import leaves no snapshot folder");
}

#[test]
fn import_prints_total_size_and_ls_lists() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("base.tar");
    std::fs::write(&tar, sample_base_layer()).expect("write");
    let layer = tmp.path().join("snap/1");
    let out = cimkit_ok(&["import", "-q", s(&tar), "--layer", s(&layer)], 0);
    // Regular file sizes: 12 + 7 + 4 + 0 + 300000 + five hives.
    let hives: usize = ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"]
        .iter()
        .map(|h| 5 + h.len())
        .sum();
    let total = 12 + 7 + 4 + 300_000 + hives;
    assert!(out.contains(&format!("total size {total} bytes")), "{out}");
    let cim = tmp.path().join("snap/cim-layers/1.cim");
    assert!(cim.is_file());

    let root = cimkit_ok(&["ls", s(&cim)], 0);
    assert_eq!(
        root.lines().collect::<Vec<_>>(),
        ["Files", "Hives", "layout"]
    );
    let files = cimkit_ok(&["ls", "-l", s(&cim), "Files"], 0);
    assert!(files.contains("link -> hello.txt"), "{files}");
    assert!(files.contains("junction -> C:\\ProgramData"), "{files}");
    assert!(files.contains(" 300000 "), "{files}");
    // -R prints full paths from the root, spelled as stored whatever case the argument has
    let rec = cimkit_ok(&["ls", "-R", s(&cim), "/files/DIR"], 0);
    assert!(
        rec.lines()
            .any(|l| l == "Files\\dir\\\u{fc}nic\u{f6}de.txt"),
        "{rec}"
    );
    assert!(
        rec.lines().any(|l| l == format!("Files\\dir\\{LONG_NAME}")),
        "{rec}"
    );
    let json = json_lines(&cimkit_ok(&["ls", "-R", "--json", s(&cim), "FILES/dir"], 0));
    assert!(json.iter().all(|j| j["path"]
        .as_str()
        .expect("path")
        .starts_with("Files\\dir\\")));
}

#[test]
fn ls_recursive_json_has_every_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let lines = json_lines(&cimkit_ok(&["ls", "-R", "--json", s(&cim)], 0));
    let find = |p: &str| {
        lines
            .iter()
            .find(|v| v["path"] == p)
            .unwrap_or_else(|| panic!("{p} listed"))
            .clone()
    };
    for v in &lines {
        for key in [
            "path",
            "type",
            "attributes",
            "size",
            "creation_time",
            "last_write_time",
            "change_time",
            "last_access_time",
            "file_id",
            "sd",
            "ea",
            "reparse",
            "sha256",
            "streams",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
    }
    let hello = find("Files\\hello.txt");
    assert_eq!(hello["type"], "file");
    assert_eq!(hello["size"], 12);
    assert_eq!(hello["attributes"], 0x20);
    // sha256("hello world\n")
    assert_eq!(
        hello["sha256"],
        "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
    );
    assert_eq!(hello["streams"][0]["name"], "zone");
    assert_eq!(hello["streams"][0]["size"], 26);
    // links have no data of their own, file symlink or junction alike
    assert_eq!(find("Files\\link")["sha256"], serde_json::Value::Null);
    assert_eq!(find("Files\\junction")["sha256"], serde_json::Value::Null);
    let dir = find("Files\\dir");
    assert_eq!(dir["type"], "dir");
    assert_eq!(dir["streams"][0]["name"], "tag");
    assert_eq!(dir["streams"][0]["size"], 20);
    // 1650000000.1234567 s after 1970 in FILETIME ticks.
    assert_eq!(
        hello["last_write_time"],
        116_444_736_000_000_000u64 + 16_500_000_001_234_567
    );
    assert_eq!(hello["sd"], SD_B64);
    let link = find("Files\\hello-link.txt");
    assert_eq!(link["file_id"], hello["file_id"]);
    assert_eq!(find("Files\\link")["type"], "symlink");
    assert_eq!(find("Files\\junction")["type"], "reparse");
    assert!(find("Files\\junction")["reparse"].is_string());
    assert_eq!(find("Files\\dir")["type"], "dir");
    assert!(find("Files\\dir\\\u{fc}nic\u{f6}de.txt")["ea"].is_string());
    assert!(lines
        .iter()
        .any(|v| v["path"] == format!("Files\\dir\\{LONG_NAME}")));
}

#[test]
fn stat_shows_metadata_and_names_missing_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let text = cimkit_ok(&["stat", s(&cim), "Files\\hello.txt"], 0);
    assert!(text.contains("Type:        file"), "{text}");
    assert!(text.contains("Size:        12"), "{text}");
    assert!(text.contains("ARCHIVE"), "{text}");
    assert!(text.contains("2022-04-15 05:20:00.1234567Z"), "{text}");
    assert!(text.contains("Files\\hello.txt:zone (26 bytes)"), "{text}");
    assert!(text.contains("Owner:       S-1-5-80-"), "{text}");
    let ea = cimkit_ok(&["stat", s(&cim), "files/DIR/\u{dc}NIC\u{d6}DE.TXT"], 0);
    assert!(ea.contains("EA:          user.test = AQID"), "{ea}");
    let j = json_lines(&cimkit_ok(&["stat", "--json", s(&cim), "Files/link"], 0));
    assert_eq!(j[0]["link_target"], "hello.txt");

    // one alternate stream, as cat names it
    let st = cimkit_ok(&["stat", s(&cim), "files/HELLO.txt:zone:$DATA"], 0);
    assert!(st.contains("Path:        Files\\hello.txt:zone"), "{st}");
    assert!(st.contains("Size:        26"), "{st}");
    let j = json_lines(&cimkit_ok(
        &["stat", "--json", s(&cim), "Files/hello.txt:zone"],
        0,
    ));
    assert_eq!(j[0]["size"], 26);
    assert_eq!(j[0]["stream"], "zone");
    assert_eq!(
        cimkit(&["stat", s(&cim), "Files/hello.txt:nope"])
            .status
            .code(),
        Some(2)
    );

    let out = cimkit(&["stat", s(&cim), "Files/nope.txt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1.cim") && err.contains("nope.txt"), "{err}");
    // the image and path are said once, not once per layer of context
    assert_eq!(err.matches("nope.txt").count(), 1, "{err}");
}

#[test]
fn cat_prints_data_and_streams() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    assert_eq!(
        cimkit_ok(&["cat", s(&cim), "Files/hello.txt"], 0),
        "hello world\n"
    );
    assert_eq!(
        cimkit_ok(&["cat", s(&cim), "Files/hello.txt:zone"], 0),
        "[ZoneTransfer]\r\nZoneId=3\r\n"
    );
    assert_eq!(
        cimkit_ok(&["cat", s(&cim), "Files/hello.txt:zone:$DATA"], 0),
        "[ZoneTransfer]\r\nZoneId=3\r\n"
    );
    let big = cimkit(&["cat", s(&cim), "Files/big.bin"]);
    assert_eq!(big.stdout, pattern(300_000, 7));
    assert_eq!(
        cimkit(&["cat", s(&cim), "Files/dir"]).status.code(),
        Some(2)
    );
    assert_eq!(
        cimkit(&["cat", s(&cim), "Files/hello.txt:nostream"])
            .status
            .code(),
        Some(2)
    );
    // a symlink has no data of its own: empty output and a note naming its target
    let link = cimkit(&["cat", s(&cim), "Files/link"]);
    assert_eq!(link.status.code(), Some(0));
    assert!(link.stdout.is_empty());
    let note = String::from_utf8_lossy(&link.stderr);
    assert!(note.contains("symlink to hello.txt"), "{note}");
    // so has a junction (a directory reparse point): the same, not "is a directory"
    let junction = cimkit(&["cat", s(&cim), "Files/junction"]);
    assert_eq!(junction.status.code(), Some(0), "{junction:?}");
    assert!(junction.stdout.is_empty());
    let note = String::from_utf8_lossy(&junction.stderr);
    assert!(
        note.contains("directory symlink to C:\\ProgramData") && !note.contains("error"),
        "{note}"
    );
    // ls lists a junction as itself
    let listed = cimkit_ok(&["ls", "-l", s(&cim), "Files/junction"], 0);
    assert!(
        listed.contains("Files\\junction -> C:\\ProgramData"),
        "{listed}"
    );
    // a missing stream is named once, as the image spells the path
    let missing = cimkit(&["cat", s(&cim), "Files/hello.txt:nostream"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.matches("hello.txt").count(), 1, "{err}");
}

#[test]
fn verify_du_destroy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let out = cimkit_ok(&["verify", s(&cim)], 0);
    assert!(out.contains("OK"), "{out}");
    let j = json_lines(&cimkit_ok(&["verify", "--json", s(&cim)], 0));
    assert_eq!(j[0]["ok"], true);

    let du = json_lines(&cimkit_ok(&["du", "--json", s(&cim)], 0));
    assert!(du[0]["own_region_bytes"].as_u64().expect("u64") > 300_000);
    assert_eq!(du[0]["parent_region_bytes"], 0);
    assert_eq!(du[0]["hard_links"].as_u64(), Some(1 + 5)); // hello-link + the Hives\*_BASE links
    let text = cimkit_ok(&["du", s(&cim)], 0);
    assert!(text.contains("own total"), "{text}");

    // A copy of the image shares its region set: destroying the copy keeps those files.
    let copy = tmp.path().join("snap/cim-layers/copy.cim");
    std::fs::copy(&cim, &copy).expect("copy the .cim");
    std::fs::create_dir(tmp.path().join("snap/copy")).expect("layer folder of the copy");
    let out = cimkit_ok(&["destroy", "--layer", s(&tmp.path().join("snap/copy"))], 0);
    assert!(
        out.contains("removed") && out.contains("and 0 region/objectid files"),
        "{out}"
    );
    assert!(
        out.contains("kept") && out.contains("another image"),
        "{out}"
    );
    assert!(!copy.exists());
    cimkit_ok(&["verify", s(&cim)], 0);

    let layer = tmp.path().join("snap/1");
    let out = cimkit_ok(&["destroy", "--layer", s(&layer)], 0);
    assert!(!out.contains("kept"), "{out}");
    assert!(!cim.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("snap/cim-layers"))
        .expect("list cim-layers")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(cimkit(&["ls", s(&cim)]).status.code(), Some(2));
    // Destroying again is an input error that says so.
    let again = cimkit(&["destroy", "--layer", s(&layer)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not a CIM layer"));
}

#[test]
fn export_import_round_trip_has_no_differences() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let tar = tmp.path().join("export.tar");
    let out = cimkit(&["export", s(&cim), "-o", s(&tar)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("1 hard link ") && summary.contains("2 alternate streams"),
        "{summary}"
    );
    let layer2 = tmp.path().join("snap2/7");
    cimkit_ok(&["import", "-q", s(&tar), "--layer", s(&layer2)], 0);
    let cim2 = tmp.path().join("snap2/cim-layers/7.cim");
    let diff = cimkit_ok(&["diff", s(&cim), s(&cim2)], 0);
    assert_eq!(diff, "");
    cimkit_ok(&["verify", s(&cim2)], 0);

    // The export to stdout is the same tar.
    let stdout = cimkit(&["export", s(&cim), "-o", "-"]);
    assert_eq!(stdout.status.code(), Some(0));
    assert_eq!(stdout.stdout, std::fs::read(&tar).expect("read tar"));
}

#[test]
fn diff_reports_added_removed_changed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let mut t = LayerTar::new();
    t.dir("Files").base_hives();
    t.file("Files/hello.txt", b"hello WORLD\n"); // same size, other data, no stream
    t.dir("Files/dir");
    t.file_with("Files/dir/\u{fc}nic\u{f6}de.txt", b"unicode", 0x20, &[]); // attrs + EA differ
    t.file(&format!("Files/dir/{LONG_NAME}"), b"long");
    t.file("Files/dir/empty", b"");
    t.file("Files/big.bin", &pattern(300_000, 7));
    t.file("Files/new.txt", b"new");
    t.file("Files/hello-link.txt", b"hello world\n"); // no longer a hard link
    t.symlink("Files/link", "big.bin", false);
    let tar = tmp.path().join("b.tar");
    std::fs::write(&tar, t.finish()).expect("write");
    import_tar(&tar, &tmp.path().join("snapb/1"), &[]);
    let cim_b = tmp.path().join("snapb/cim-layers/1.cim");
    let out = cimkit_ok(&["diff", s(&cim), s(&cim_b)], 1);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"M Files\\hello.txt (data, streams, links)"),
        "{out}"
    );
    assert!(
        lines.contains(&"M Files\\dir\\\u{fc}nic\u{f6}de.txt (attributes, ea)"),
        "{out}"
    );
    assert!(
        lines.contains(&"M Files\\hello-link.txt (streams, links)"),
        "{out}"
    );
    assert!(lines.contains(&"M Files\\link (reparse)"), "{out}");
    assert!(lines.contains(&"- Files\\junction"), "{out}");
    assert!(lines.contains(&"+ Files\\new.txt"), "{out}");
    // A directory's alternate streams count too: b's Files\dir has none.
    assert!(lines.contains(&"M Files\\dir (streams)"), "{out}");
    assert_eq!(lines.len(), 7, "{out}");
    let j = json_lines(&cimkit_ok(&["diff", "--json", s(&cim), s(&cim_b)], 1));
    assert!(j
        .iter()
        .any(|v| v["path"] == "Files\\new.txt" && v["change"] == "added"));
    cimkit_ok(&["diff", s(&cim), s(&cim)], 0);
}

#[cfg(unix)]
#[test]
fn extract_writes_tree_links_and_sidecar() {
    use std::os::unix::fs::MetadataExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    // a failed extraction (a path that is not in the image) leaves no folder behind
    let dir = tmp.path().join("out");
    let failed = cimkit(&["extract", s(&cim), s(&dir), "--path", "Files/nope"]);
    assert_eq!(failed.status.code(), Some(2));
    assert!(!dir.exists());
    // --metadata - puts the sidecar on stdout and the summary on stderr
    let single = tmp.path().join("single");
    let out = cimkit(&[
        "extract",
        s(&cim),
        s(&single),
        "--path",
        "Files/hello.txt",
        "--metadata",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let sidecar = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(sidecar.len(), 1);
    assert_eq!(sidecar[0]["path"], "Files\\hello.txt");
    assert!(String::from_utf8_lossy(&out.stderr).contains("metadata in stdout"));
    assert!(!single.join("-").exists() && single.join("hello.txt").is_file());

    let out = cimkit_ok(&["extract", s(&cim), s(&dir)], 0);
    assert!(out.contains("symlinks"), "{out}");
    let hello = dir.join("Files/hello.txt");
    assert_eq!(std::fs::read(&hello).expect("hello"), b"hello world\n");
    assert_eq!(
        std::fs::read(dir.join("Files/big.bin")).expect("big"),
        pattern(300_000, 7)
    );
    let link = dir.join("Files/hello-link.txt");
    assert_eq!(
        std::fs::metadata(&hello).expect("m").ino(),
        std::fs::metadata(&link).expect("m").ino()
    );
    assert_eq!(
        std::fs::read_link(dir.join("Files/link")).expect("symlink"),
        std::path::PathBuf::from("hello.txt")
    );
    assert_eq!(
        std::fs::read_link(dir.join("Files/junction")).expect("junction"),
        std::path::PathBuf::from("C:/ProgramData")
    );
    assert!(dir.join(format!("Files/dir/{LONG_NAME}")).is_file());
    let mtime = std::fs::metadata(&hello).expect("m").mtime();
    assert_eq!(mtime, 1_650_000_000);
    let sidecar = std::fs::read_to_string(dir.join(".cimkit-metadata.jsonl")).expect("sidecar");
    let records = json_lines(&sidecar);
    let h = records
        .iter()
        .find(|v| v["path"] == "Files\\hello.txt")
        .expect("hello record");
    assert_eq!(
        h["streams"][0]["data"],
        "W1pvbmVUcmFuc2Zlcl0NClpvbmVJZD0zDQo="
    );
    assert_eq!(h["sd"], SD_B64);
    // The image root comes first; a second name of a file carries its data's hash too.
    assert_eq!(records[0]["path"], "");
    let second = records
        .iter()
        .find(|v| v["path"] == "Files\\hello-link.txt")
        .expect("link record");
    assert!(h["sha256"].is_string());
    assert_eq!(second["sha256"], h["sha256"]);
    // Extracting into a non-empty folder is refused.
    assert_eq!(
        cimkit(&["extract", s(&cim), s(&dir)]).status.code(),
        Some(2)
    );
    // A subtree only.
    let sub = tmp.path().join("sub");
    cimkit_ok(&["extract", "--path", "Files/dir", s(&cim), s(&sub)], 0);
    assert_eq!(std::fs::read(sub.join("empty")).expect("empty"), b"");
    // ... whose own metadata is the sidecar's first line, and whose times the folder gets
    // (after the sidecar landed in it).
    let sidecar = std::fs::read_to_string(sub.join(".cimkit-metadata.jsonl")).expect("sidecar");
    let first = &json_lines(&sidecar)[0];
    assert_eq!(first["path"], "Files\\dir");
    assert_eq!(first["type"], "dir");
    let filetime = first["last_write_time"].as_i64().expect("time");
    let dir_mtime = filetime / 10_000_000 - 11_644_473_600;
    assert_eq!(std::fs::metadata(&sub).expect("m").mtime(), dir_mtime);
    // ... also when --metadata names the folder otherwise (relative, beside an absolute DIR).
    let sub2 = tmp.path().join("sub2");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cimkit"))
        .current_dir(tmp.path())
        .args(["extract", "--path", "Files/dir", s(&cim), s(&sub2)])
        .args(["--metadata", "sub2/meta.jsonl"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&sub2).expect("m").mtime(), dir_mtime);
    // A junction named by --path is a link in the folder, not an empty extraction.
    let junction = tmp.path().join("junction");
    cimkit_ok(
        &["extract", "--path", "Files/junction", s(&cim), s(&junction)],
        0,
    );
    assert_eq!(
        std::fs::read_link(junction.join("junction")).expect("junction"),
        std::path::PathBuf::from("C:/ProgramData")
    );
    // A single file lands under its own name, its stream in the sidecar.
    let one = tmp.path().join("one");
    cimkit_ok(
        &["extract", "--path", "Files\\hello.txt", s(&cim), s(&one)],
        0,
    );
    assert_eq!(
        std::fs::read(one.join("hello.txt")).expect("hello"),
        b"hello world\n"
    );
    let records =
        json_lines(&std::fs::read_to_string(one.join(".cimkit-metadata.jsonl")).expect("sidecar"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["streams"][0]["name"], "zone");
}

#[test]
fn gen_layer_round_trip() {
    let gen = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/tools/gen_layer.py"
    );
    if !std::path::Path::new(gen).exists() {
        eprintln!("skipping: {gen} not found");
        return;
    }
    let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = tmp.path().join("gen.tar");
    let status = std::process::Command::new(&python)
        .args([
            gen,
            "--files",
            "300",
            "--size",
            "3M",
            "--seed",
            "5",
            "--hardlinks",
            "10",
            "--ads",
            "5",
            "-o",
            s(&tar),
        ])
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(st) if st.success() => {}
        other => {
            eprintln!("skipping: {python} could not run gen_layer.py ({other:?})");
            return;
        }
    }
    import_tar(&tar, &tmp.path().join("a/1"), &[]);
    let a = tmp.path().join("a/cim-layers/1.cim");
    let exported = tmp.path().join("exported.tar.gz");
    // Export, compress with gzip, import again: compression is detected from the bytes.
    let raw = cimkit(&["export", s(&a), "-o", "-"]);
    assert_eq!(raw.status.code(), Some(0));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw.stdout).expect("gzip");
    std::fs::write(&exported, gz.finish().expect("gzip")).expect("write");
    import_tar(&exported, &tmp.path().join("b/1"), &[]);
    let b = tmp.path().join("b/cim-layers/1.cim");
    assert_eq!(cimkit_ok(&["diff", s(&a), s(&b)], 0), "");
    // ls -R --json of both is identical except file ids may differ: compare paths and hashes.
    let la = json_lines(&cimkit_ok(&["ls", "-R", "--json", s(&a)], 0));
    let lb = json_lines(&cimkit_ok(&["ls", "-R", "--json", s(&b)], 0));
    let key = |v: &Value| {
        (
            v["path"].to_string(),
            v["sha256"].to_string(),
            v["streams"].to_string(),
        )
    };
    assert_eq!(
        la.iter().map(key).collect::<Vec<_>>(),
        lb.iter().map(key).collect::<Vec<_>>()
    );
}

#[test]
fn exporting_a_fork_flattened_gives_its_merged_view() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, base) = import_sample(tmp.path());
    let mut t = LayerTar::new();
    t.dir("Files");
    t.file("Files/added.txt", b"added in the child");
    t.file("Files/hello.txt", b"replaced\n");
    t.whiteout("Files/.wh.big.bin");
    let child_tar = tmp.path().join("child.tar");
    std::fs::write(&child_tar, t.finish()).expect("write");
    let (l1, l2) = (tmp.path().join("snap/1"), tmp.path().join("snap/2"));
    import_tar(&child_tar, &l2, &[&l1]);
    let child = tmp.path().join("snap/cim-layers/2.cim");
    let diff = cimkit_ok(&["diff", s(&base), s(&child)], 1);
    assert!(
        diff.contains("+ Files\\added.txt") && diff.contains("- Files\\big.bin"),
        "{diff}"
    );
    assert!(diff.contains("M Files\\hello.txt"), "{diff}");

    // The base cannot be destroyed while the child reads its regions.
    let out = cimkit(&["destroy", "--layer", s(&l1)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2.cim"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(base.exists());

    let tar = tmp.path().join("flat.tar");
    let out = cimkit(&["export", "--flatten", s(&child), "-o", s(&tar)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    import_tar(&tar, &tmp.path().join("flat/1"), &[]);
    let flat = tmp.path().join("flat/cim-layers/1.cim");
    assert_eq!(cimkit_ok(&["diff", s(&child), s(&flat)], 0), "");
    let du: Value = serde_json::from_str(&cimkit_ok(&["du", "--json", s(&flat)], 0)).expect("json");
    assert_eq!(du["parent_region_bytes"], 0);

    cimkit_ok(&["destroy", "--layer", s(&l2)], 0);
    cimkit_ok(&["destroy", "--layer", s(&l1)], 0);
    assert!(!base.exists() && !child.exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_import_leaves_no_layer_behind() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar = sample_base_layer();
    let layer = tmp.path().join("snap/1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimkit"))
        .args(["import", "-q", "-", "--layer", s(&layer)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&tar[..tar.len() / 2]).expect("first half");
    stdin.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    // More input wakes the reader, which sees the interrupt.
    let _ = stdin.write_all(&tar[tar.len() / 2..]);
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "cimkit: error: import into {} interrupted (Ctrl-C or SIGTERM) after ",
            s(&layer)
        )) && err.ends_with("; the layer was removed\n"),
        "{err}"
    );
    let cim_dir = tmp.path().join("snap/cim-layers");
    let left: Vec<_> = std::fs::read_dir(&cim_dir)
        .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn extract_streams_large_alternate_streams_into_the_sidecar() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let big = pattern(200_001, 3);
    let mut t = LayerTar::new();
    t.dir("Files").base_hives();
    t.file("Files/a.txt", b"a");
    t.stream("Files/a.txt:big", &big);
    t.stream("Files/a.txt:small", b"s");
    let tar = tmp.path().join("s.tar");
    std::fs::write(&tar, t.finish()).expect("write");
    import_tar(&tar, &tmp.path().join("snap/1"), &[]);
    let cim = tmp.path().join("snap/cim-layers/1.cim");
    let dir = tmp.path().join("out");
    cimkit_ok(&["extract", s(&cim), s(&dir)], 0);
    let sidecar = std::fs::read_to_string(dir.join(".cimkit-metadata.jsonl")).expect("sidecar");
    let records = json_lines(&sidecar);
    let a = records
        .iter()
        .find(|v| v["path"] == "Files\\a.txt")
        .expect("record");
    let streams = a["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2);
    for st in streams {
        let data = base64::engine::general_purpose::STANDARD
            .decode(st["data"].as_str().expect("data"))
            .expect("base64");
        let want: &[u8] = if st["name"] == "big" { &big } else { b"s" };
        assert!(data == want, "{}", st["name"]);
        assert_eq!(st["size"], want.len());
        let sha: String = sha2::Sha256::digest(want)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(st["sha256"], sha);
    }
}

/// An extraction or export that fails half-way (a region truncated under big.bin's data) leaves
/// neither the folder nor a partial file, and a file already at --metadata FILE or -o FILE
/// keeps its content.
#[test]
fn failed_extract_or_export_keeps_existing_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let cim_dir = cim.parent().expect("cim-layers");
    let mut regions: Vec<_> = std::fs::read_dir(cim_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("region_"))
        })
        .collect();
    regions.sort_by_key(|p| std::fs::metadata(p).expect("size").len());
    let largest = regions.last().expect("a region file");
    let len = std::fs::metadata(largest).expect("size").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(largest)
        .expect("open region")
        .set_len(len / 2)
        .expect("truncate");

    // export -o FILE likewise
    let tar = tmp.path().join("kept.tar");
    std::fs::write(&tar, "an older tar\n").expect("write");
    let failed = cimkit(&["export", s(&cim), "-o", s(&tar)]);
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert_eq!(
        std::fs::read_to_string(&tar).expect("read"),
        "an older tar\n"
    );

    let keep = tmp.path().join("important.jsonl");
    std::fs::write(&keep, "keep me\n").expect("write");
    let dir = tmp.path().join("out");
    let failed = cimkit(&["extract", "--metadata", s(&keep), s(&cim), s(&dir)]);
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert_eq!(std::fs::read_to_string(&keep).expect("read"), "keep me\n");
    assert!(!dir.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A reader that closes the pipe early: a truncated export is an error (exit 2), a truncated
/// listing is not.
#[test]
fn broken_pipe_fails_an_export_but_not_a_listing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let run_closed = |args: &[&str]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cimkit"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn cimkit");
        drop(child.stdout.take());
        child.wait_with_output().expect("wait")
    };
    // The sample's export is far larger than a pipe buffer, so the write must fail.
    let out = run_closed(&["export", s(&cim), "-o", "-"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken pipe"));
    let out = run_closed(&["ls", "-R", "--json", s(&cim)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// Mixing up a layer folder and its `.cim` gets a message that names the right one.
#[test]
fn layer_folder_and_cim_file_mix_ups_are_explained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (tar, cim) = import_sample(tmp.path());
    let layer = tmp.path().join("snap/1");
    for args in [
        vec!["verify", s(&layer)],
        vec!["ls", s(&layer)],
        vec!["du", s(&layer)],
    ] {
        let out = cimkit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is a layer folder") && err.contains("1.cim"),
            "{args:?}: {err}"
        );
    }
    let child = tmp.path().join("snap/2");
    let out = cimkit(&[
        "import",
        "-q",
        s(&tar),
        "--layer",
        s(&child),
        "--parent",
        s(&cim),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("give the layer folder"), "{err}");
    assert!(err.contains(&format!("here {}", layer.display())), "{err}");
    assert!(!child.exists());
}

/// Output to a symlink goes to its target (the link stays); output to a FIFO is written into
/// it (not replaced by a regular file).
#[cfg(unix)]
#[test]
fn output_files_keep_symlinks_and_fifos() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let real = tmp.path().join("real.tar");
    std::fs::write(&real, "old").expect("write");
    let link = tmp.path().join("link.tar");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    cimkit_ok(&["export", "-q", s(&cim), "-o", s(&link)], 0);
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata(&real).expect("real").len() > 300_000);

    let fifo = tmp.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipping the FIFO part: no mkfifo");
        return;
    }
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo").len())
    };
    cimkit_ok(&["export", "-q", s(&cim), "-o", s(&fifo)], 0);
    assert!(reader.join().expect("reader") > 300_000);
    use std::os::unix::fs::FileTypeExt as _;
    assert!(std::fs::symlink_metadata(&fifo)
        .expect("fifo")
        .file_type()
        .is_fifo());
}

/// An import killed mid-way (SIGKILL: no cleanup of its own) leaves its lock file listing what
/// it wrote; the next import of that layer removes those files first and succeeds, and no
/// region file of the killed run is left. A second import while one runs is refused.
#[cfg(unix)]
#[test]
fn a_killed_import_is_cleaned_up_by_the_next_one() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let tar_bytes = sample_base_layer();
    let tar = tmp.path().join("base.tar");
    std::fs::write(&tar, &tar_bytes).expect("write tar");
    let layer = tmp.path().join("snap/1");
    let cim_dir = tmp.path().join("snap/cim-layers");
    let lock = cim_dir.join("1.cimkit-import");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cimkit"))
        .args(["import", "-q", "-", "--layer", s(&layer)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cimkit");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&tar_bytes[..tar_bytes.len() / 2])
        .expect("feed half the tar");
    let started = std::time::Instant::now();
    while !std::fs::metadata(&lock).is_ok_and(|m| m.len() > 0) {
        assert!(started.elapsed().as_secs() < 60, "the import never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // While it runs (its stdin still open), another import of the layer is refused.
    assert!(
        !wclayer::interrupted_import(&layer),
        "running, not interrupted"
    );
    let second = cimkit(&["import", "-q", s(&tar), "--layer", s(&layer)]);
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another import of this layer is running"),
        "{err}"
    );

    child.kill().expect("kill -9");
    child.wait().expect("reap");
    drop(stdin);
    let regions_left = std::fs::read_dir(&cim_dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("region_"))
        })
        .count();
    assert!(regions_left > 0, "the killed run left its regions");
    assert!(!cim_dir.join("1.cim").exists());
    assert!(wclayer::interrupted_import(&layer));

    let out = cimkit(&["import", "-q", s(&tar), "--layer", s(&layer)]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("cimkit: note: {}: ", s(&layer))) && err.contains("was killed"),
        "{err}"
    );
    let cim = cim_dir.join("1.cim");
    cimkit_ok(&["verify", s(&cim)], 0);
    let files = cimfs::image_files(&cim).expect("image files");
    let mut expected: Vec<std::path::PathBuf> = files.regions.clone();
    expected.extend(files.objectids.clone());
    expected.push(cim.clone());
    expected.sort();
    let mut present: Vec<std::path::PathBuf> = std::fs::read_dir(&cim_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    present.sort();
    assert_eq!(present, expected, "only the new image's files remain");
}

/// Replacing an output file keeps its permissions, and a file with hard links is written in
/// place so every name sees the new content (hive set and export -o alike).
#[cfg(unix)]
#[test]
fn replaced_files_keep_their_mode_and_links() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let private = |p: &std::path::Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod")
    };
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;

    let tar = tmp.path().join("out.tar");
    std::fs::write(&tar, "old").expect("write");
    private(&tar);
    cimkit_ok(&["export", "-q", s(&cim), "-o", s(&tar)], 0);
    assert_eq!(mode(&tar), 0o600);
    assert!(std::fs::metadata(&tar).expect("stat").len() > 300_000);

    let real = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/hives/yarp-OffHive"
    ));
    if !real.is_file() {
        eprintln!("skipping the hive part: {} is absent", real.display());
        return;
    }
    let hive = tmp.path().join("SAM");
    std::fs::copy(real, &hive).expect("hive");
    private(&hive);
    let other_name = tmp.path().join("SAM-link");
    std::fs::hard_link(&hive, &other_name).expect("hard link");
    cimkit_ok(
        &[
            "hive",
            "set",
            s(&hive),
            "Cimkit",
            "Mark",
            "--type",
            "dword",
            "7",
        ],
        0,
    );
    assert_eq!(mode(&hive), 0o600);
    let seen = cimkit_ok(&["hive", "get", s(&other_name), "Cimkit", "Mark"], 0);
    assert!(seen.starts_with('7'), "{seen}");
}

/// Import notes go to stderr as `cimkit: note: LAYER: …`, counted in words that agree with the
/// number; the summary stays alone on stdout, and --json keeps the notes in its object.
#[test]
fn import_notes_go_to_stderr_with_the_cimkit_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    import_sample(tmp.path());
    let mut t = LayerTar::new();
    t.dir("Files");
    t.whiteout("Files/.wh.nowhere.txt");
    let tar = tmp.path().join("child.tar");
    std::fs::write(&tar, t.finish()).expect("write");
    let (l1, l2) = (tmp.path().join("snap/1"), tmp.path().join("snap/2"));
    let out = cimkit(&[
        "import",
        "-q",
        s(&tar),
        "--layer",
        s(&l2),
        "--parent",
        s(&l1),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(": 2 entries, total size"), "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "cimkit: note: {}: 1 whiteout named a file that no parent layer has\n",
            s(&l2)
        )
    );

    let l3 = tmp.path().join("snap/3");
    let out = cimkit(&[
        "import",
        "-q",
        "--json",
        s(&tar),
        "--layer",
        s(&l3),
        "--parent",
        s(&l1),
    ]);
    assert_eq!(out.status.code(), Some(0));
    // With --json the notes are in the object, and on stderr as always.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("cimkit: note: "), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v["notes"][0],
        "1 whiteout named a file that no parent layer has"
    );
}

/// du, extract and export count the same tree the same way: regular files once each (with their
/// data), directories, symlinks apart, and hard links as further names.
#[test]
fn du_extract_and_export_count_files_alike() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut t = LayerTar::new();
    t.dir("Files");
    t.file("Files/a.txt", b"aaaa");
    t.hardlink("Files/a2.txt", "Files/a.txt");
    t.symlink("Files/link", "C:\\Files\\a.txt", false);
    t.base_hives();
    let tar = tmp.path().join("base.tar");
    std::fs::write(&tar, t.finish()).expect("write");
    let layer = tmp.path().join("snap/1");
    import_tar(&tar, &layer, &[]);
    let cim = tmp.path().join("snap/cim-layers/1.cim");

    let du = cimkit_ok(&["du", s(&cim)], 0);
    let du = du.lines().last().expect("contents line");
    let counts = du.strip_prefix("contents: ").expect(du);
    assert!(counts.contains(", 1 symlink, "), "{du}");

    let dir = tmp.path().join("out");
    let ex = cimkit_ok(&["extract", "-q", s(&cim), s(&dir)], 0);
    assert!(
        ex.contains(&format!(": {counts}; metadata in ")),
        "{ex}\n{du}"
    );

    let out = cimkit(&[
        "export",
        "-q",
        "--include-generated",
        s(&cim),
        "-o",
        s(&tmp.path().join("x.tar")),
    ]);
    let exported = String::from_utf8_lossy(&out.stderr);
    assert!(
        exported.contains(&format!(": {counts}, ")),
        "{exported}\n{du}"
    );

    let du: Value = serde_json::from_str(&cimkit_ok(&["du", "--json", s(&cim)], 0)).expect("json");
    assert_eq!(du["symlinks"], 1);
}

#[test]
fn hive_set_on_a_missing_file_names_create() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = tmp.path().join("NEWHIVE");
    let out = cimkit(&["hive", "set", s(&hive), "K", "v", "d"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(use --create to start a new hive)"), "{err}");
    cimkit_ok(&["hive", "set", "--create", s(&hive), "K", "v", "d"], 0);
}

#[test]
fn diff_help_lists_changes_in_output_order() {
    let help = cimkit_ok(&["diff", "--help"], 0);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("type, size, data, attributes, times, sd, ea, reparse, streams, links"),
        "{help}"
    );
}

/// The README's examples on the two shipped sample layers, run where they say: in the
/// `cim-layers` folder, naming images by bare file name (whose folder is `.`, not the empty
/// path a bare name's `parent()` gives).
#[test]
fn readme_examples_on_the_samples_with_bare_image_names() {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path();
    import_tar(&samples.join("base-layer.tar.gz"), &snap.join("1"), &[]);
    import_tar(
        &samples.join("child-layer.tar.gz"),
        &snap.join("2"),
        &[&snap.join("1")],
    );
    let here = snap.join("cim-layers");
    let run = |args: &[&str], code: i32| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cimkit"))
            .args(args)
            .current_dir(&here)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "cimkit {args:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&["ls", "2.cim"], 0), "Files\nHives\nlayout\n");
    assert_eq!(
        run(&["cat", "2.cim", r"Files\setup.exe:Zone.Identifier"], 0),
        "[ZoneTransfer]\r\nZoneId=3\r\n"
    );
    assert!(run(&["stat", "2.cim", "Files/link"], 0).contains("-> hello.txt"));
    let diff = run(&["diff", "1.cim", "2.cim"], 1);
    assert!(
        diff.contains(r"- Files\PerfLogs") && diff.contains(r"+ Files\setup.exe"),
        "{diff}"
    );
    run(&["verify", "--digests", "2.cim"], 0);
    run(&["export", "2.cim", "-o", "child.tar"], 0);
    run(
        &[
            "import",
            "-q",
            "child.tar",
            "--layer",
            "../3",
            "--parent",
            "../1",
        ],
        0,
    );
    assert_eq!(run(&["diff", "2.cim", "3.cim"], 0), "");
    run(&["du", "3.cim"], 0);
    run(&["destroy", "--layer", "../3"], 0);
    assert!(!here.join("3.cim").exists());
    run(&["verify", "2.cim"], 0);
}
