//! `cimkit hive` (create/set/get/dump/check/merge, also from inside a CIM, cross-checked with
//! hivexget when installed) and `cimkit vhdx info`.

mod common;

use std::path::Path;

use common::*;

fn hivexget(hive: &Path, key: &str, value: &str) -> Option<String> {
    let out = std::process::Command::new("hivexget")
        .args([s(hive), key, value])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn hive_set_get_dump_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = tmp.path().join("SOFTWARE");
    cimkit_ok(
        &[
            "hive",
            "set",
            "--create",
            s(&hive),
            "Microsoft\\Windows NT\\CurrentVersion",
            "CurrentBuild",
            "20348",
        ],
        0,
    );
    cimkit_ok(
        &[
            "hive",
            "set",
            s(&hive),
            "\\Microsoft\\Windows NT\\CurrentVersion\\",
            "UBR",
            "--type",
            "dword",
            "0x9a6",
        ],
        0,
    );
    cimkit_ok(
        &[
            "hive",
            "set",
            s(&hive),
            "Test",
            "List",
            "--type",
            "multi-sz",
            "a;b;c",
        ],
        0,
    );
    cimkit_ok(
        &[
            "hive",
            "set",
            s(&hive),
            "Test",
            "Blob",
            "--type",
            "binary",
            "de ad be ef",
        ],
        0,
    );
    cimkit_ok(&["hive", "set", s(&hive), "Test", "Gone", "x"], 0);
    cimkit_ok(&["hive", "set", "--delete", s(&hive), "Test", "Gone"], 0);
    assert_eq!(
        cimkit(&["hive", "set", "--delete", s(&hive), "Test", "Gone"])
            .status
            .code(),
        Some(2)
    );

    let key = "Microsoft\\Windows NT\\CurrentVersion";
    assert_eq!(
        cimkit_ok(&["hive", "get", s(&hive), key, "CurrentBuild"], 0),
        "20348\n"
    );
    assert_eq!(
        cimkit_ok(&["hive", "get", s(&hive), key, "UBR"], 0),
        "2470 (0x9a6)\n"
    );
    assert_eq!(
        cimkit_ok(&["hive", "get", s(&hive), "Test", "Blob"], 0),
        "deadbeef\n"
    );
    let listing = cimkit_ok(&["hive", "get", s(&hive), "Test"], 0);
    assert!(listing.contains("List\tREG_MULTI_SZ\ta;b;c"), "{listing}");
    assert!(!listing.contains("Gone"), "{listing}");
    let j: serde_json::Value = serde_json::from_str(&cimkit_ok(
        &["hive", "get", "--json", s(&hive), key, "UBR"],
        0,
    ))
    .expect("json");
    assert_eq!(j["type"], "REG_DWORD");
    assert_eq!(j["data"], "pgkAAA==");
    assert_eq!(
        cimkit(&["hive", "get", s(&hive), "Nope"]).status.code(),
        Some(2)
    );

    let dump = cimkit_ok(&["hive", "dump", s(&hive)], 0);
    assert!(
        dump.contains("CurrentBuild") && dump.contains("20348"),
        "{dump}"
    );
    let reg = cimkit_ok(
        &[
            "hive",
            "dump",
            "--reg",
            "HKEY_LOCAL_MACHINE\\SOFTWARE",
            s(&hive),
        ],
        0,
    );
    assert!(
        reg.contains("[HKEY_LOCAL_MACHINE\\SOFTWARE\\Test]"),
        "{reg}"
    );
    let lines = cimkit_ok(&["hive", "dump", "--json", "--key", "Test", s(&hive)], 0);
    let first: serde_json::Value =
        serde_json::from_str(lines.lines().next().expect("line")).expect("json");
    assert_eq!(first["path"], "Test");
    cimkit_ok(&["hive", "check", s(&hive)], 0);
    // What cimkit writes also has the compact layout.
    cimkit_ok(&["hive", "check", "--compact", s(&hive)], 0);

    match hivexget(
        &hive,
        "\\Microsoft\\Windows NT\\CurrentVersion",
        "CurrentBuild",
    ) {
        Some(v) => assert_eq!(v, "20348"),
        None => eprintln!("skipping hivexget cross-check: hivexget not installed"),
    }

    // A damaged hive fails the check with exit 1.
    let mut bytes = std::fs::read(&hive).expect("read");
    let n = bytes.len();
    for b in bytes.iter_mut().take(n).skip(4096 + 32).take(64) {
        *b = 0x5a;
    }
    let bad = tmp.path().join("BAD");
    std::fs::write(&bad, bytes).expect("write");
    let out = cimkit(&["hive", "check", s(&bad)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn hive_from_inside_a_cim_and_merge() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = tmp.path().join("SYSTEM");
    cimkit_ok(
        &[
            "hive",
            "set",
            "--create",
            s(&hive),
            "Select",
            "Current",
            "--type",
            "dword",
            "1",
        ],
        0,
    );
    let hive_bytes = std::fs::read(&hive).expect("read");
    let mut t = LayerTar::new();
    t.dir("Files")
        .dir("Files/Windows")
        .dir("Files/Windows/System32")
        .dir("Files/Windows/System32/config");
    for h in ["SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
        t.file(&format!("Files/Windows/System32/config/{h}"), b"not a hive");
    }
    t.file("Files/Windows/System32/config/SYSTEM", &hive_bytes);
    // A hive in an alternate stream, and a symlink to a hive.
    t.file("Files/carrier.txt", b"text")
        .stream("Files/carrier.txt:hive:$DATA", &hive_bytes);
    t.symlink(
        "Files/system-link",
        "Windows\\System32\\config\\SYSTEM",
        false,
    );
    let tar = tmp.path().join("l.tar");
    std::fs::write(&tar, t.finish()).expect("write");
    import_tar(&tar, &tmp.path().join("s/1"), &[]);
    let cim = tmp.path().join("s/cim-layers/1.cim");
    assert_eq!(
        cimkit_ok(
            &[
                "hive",
                "get",
                "--cim",
                s(&cim),
                "Hives\\SYSTEM_BASE",
                "Select",
                "Current"
            ],
            0
        ),
        "1 (0x1)\n"
    );
    cimkit_ok(
        &[
            "hive",
            "check",
            "--cim",
            s(&cim),
            "Files/Windows/System32/config/SYSTEM",
        ],
        0,
    );
    let out = cimkit(&["hive", "dump", "--cim", s(&cim), "Hives\\SAM_BASE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SAM_BASE"));
    // FILE:stream reads the stream, as cat does; a link says where it points.
    assert_eq!(
        cimkit_ok(
            &[
                "hive",
                "get",
                "--cim",
                s(&cim),
                "files/CARRIER.txt:hive",
                "Select",
                "Current"
            ],
            0
        ),
        "1 (0x1)\n"
    );
    let out = cimkit(&["hive", "dump", "--cim", s(&cim), "Files/system-link"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Files/system-link: is a link to Windows\\System32"),
        "{err}"
    );
    let out = cimkit(&["bcd", "show", "--cim", s(&cim), "Files/system-link"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a link to"));

    let delta = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/hives/yarp-System_Delta"
    );
    if !Path::new(delta).exists() {
        eprintln!("skipping merge part: {delta} not found");
        return;
    }
    let merged = tmp.path().join("MERGED");
    let msg = cimkit_ok(&["hive", "merge", s(&hive), delta, "-o", s(&merged)], 0);
    assert!(msg.contains("merged 1 delta"), "{msg}");
    cimkit_ok(&["hive", "check", s(&merged)], 0);
    // The base's value survives unless the delta touches it.
    assert!(cimkit_ok(&["hive", "dump", s(&merged)], 0).contains("Select"));
}

#[test]
fn vhdx_info_describes_a_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("d.vhdx");
    vhdx_create(&path);
    let text = cimkit_ok(&["vhdx", "info", s(&path)], 0);
    assert!(
        text.contains("virtual size:") && text.contains("1073741824"),
        "{text}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&cimkit_ok(&["vhdx", "info", "--json", s(&path)], 0)).expect("json");
    assert_eq!(j["virtual_size"], 1u64 << 30);
    assert_eq!(j["block_size"], 1u64 << 20);
    let junk = tmp.path().join("junk.vhdx");
    std::fs::write(&junk, b"not a vhdx").expect("write");
    assert_eq!(cimkit(&["vhdx", "info", s(&junk)]).status.code(), Some(2));
}

/// A differencing disk is described even when its parent is gone, and says why it is not read.
#[test]
fn vhdx_info_of_a_child_without_its_parent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base.vhdx");
    let child = tmp.path().join("child.vhdx");
    vhdx::create_dynamic(&base, 1 << 30, 1 << 20, 512).expect("create base");
    vhdx::create_differencing(&child, &base, &vhdx::ParentLocator::sibling("base.vhdx"))
        .expect("create child");
    let text = cimkit_ok(&["vhdx", "info", s(&child)], 0);
    assert!(
        text.contains("parent file:") && text.contains("base.vhdx"),
        "{text}"
    );
    assert!(!text.contains("not used"), "{text}");

    std::fs::remove_file(&base).expect("remove base");
    let text = cimkit_ok(&["vhdx", "info", s(&child)], 0);
    assert!(text.contains("differencing"), "{text}");
    assert!(
        text.contains("not used") && text.contains("parent not found"),
        "{text}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&cimkit_ok(&["vhdx", "info", "--json", s(&child)], 0)).expect("json");
    assert_eq!(j["parent"], serde_json::Value::Null);
    assert!(j["parent_problem"]
        .as_str()
        .expect("problem")
        .contains("base.vhdx"));
    assert_eq!(j["virtual_size"], 1u64 << 30);
}

/// A differencing disk whose parent is there but describes another disk (here: another virtual
/// size) is described too, with the reason; that is not a problem of the child's own file.
#[test]
fn vhdx_info_of_a_child_whose_parent_has_another_size() {
    use vhdx::format::*;
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base.vhdx");
    let child = tmp.path().join("child.vhdx");
    vhdx::create_dynamic(&base, 1 << 30, 1 << 20, 512).expect("create base");
    vhdx::create_differencing(&child, &base, &vhdx::ParentLocator::sibling("base.vhdx"))
        .expect("create child");
    // The child's Virtual Disk Size item, set to 2 GiB.
    let mut bytes = std::fs::read(&child).expect("read child");
    let table = |o: u64| &bytes[o as usize..o as usize + REGION_TABLE_SIZE];
    let regions = decode_region_table(table(REGION_TABLE1_OFFSET)).expect("regions");
    let meta = regions
        .iter()
        .find(|r| r.guid == METADATA_REGION)
        .expect("metadata region");
    let m = meta.file_offset as usize;
    let items = decode_metadata_table(&bytes[m..m + METADATA_TABLE_SIZE], meta.length.into())
        .expect("metadata table");
    let size = items
        .iter()
        .find(|e| e.item_id == VIRTUAL_DISK_SIZE)
        .expect("size item");
    put_u64(&mut bytes, m + size.offset as usize, 2 << 30);
    std::fs::write(&child, &bytes).expect("write child");

    let text = cimkit_ok(&["vhdx", "info", s(&child)], 0);
    assert!(
        text.contains("parent file:          not used:")
            && text.contains("its virtual size is 1073741824 bytes, the child's 2147483648"),
        "{text}"
    );
    assert!(text.contains("problems:             none"), "{text}");
    let j: serde_json::Value =
        serde_json::from_str(&cimkit_ok(&["vhdx", "info", "--json", s(&child)], 0)).expect("json");
    assert_eq!(j["parent"], serde_json::Value::Null);
    assert!(j["parent_problem"]
        .as_str()
        .is_some_and(|p| p.contains("virtual size")));
    assert_eq!(j["ok"], true);
}

/// Blocks past the end of a truncated file are listed as problems and make `info` exit 1; a
/// region table whose regions overlap is refused (exit 2) with both regions named.
#[test]
fn vhdx_info_reports_problems_with_exit_1_and_refuses_overlapping_regions() {
    use vhdx::format::*;
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("d.vhdx");
    vhdx::create_dynamic(&path, 64 << 20, 1 << 20, 512).expect("create");
    let mut v = vhdx::VhdxFile::open_rw(&path).expect("open_rw");
    for block in 0..14u64 {
        v.write_at(block << 20, &[1u8; 4096]).expect("write");
    }
    drop(v);
    let len = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(len, 18 << 20);
    // Cut off the last 12 blocks.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(6 << 20)
        .expect("truncate");
    let text = cimkit_ok(&["vhdx", "info", s(&path)], 1);
    assert!(
        text.contains("payload blocks:       64 (14 present")
            && text.contains("problems:             12 (the first 10 listed)")
            && text.contains("problem:              payload block 2 (BAT entry 2) at file offset 0x600000: the block (0x100000 bytes) ends at 0x700000, past the end of the file (0x600000)"),
        "{text}"
    );
    assert_eq!(text.matches("\nproblem: ").count(), 10, "{text}");
    let j: serde_json::Value =
        serde_json::from_str(&cimkit_ok(&["vhdx", "info", "--json", s(&path)], 1)).expect("json");
    assert_eq!(j["ok"], false);
    assert_eq!(j["problems_total"], 12);
    assert_eq!(j["problems"].as_array().map(Vec::len), Some(10));

    // The BAT region moved onto the metadata region.
    let mut bytes = std::fs::read(&path).expect("read");
    let o = REGION_TABLE1_OFFSET as usize;
    let mut regions = decode_region_table(&bytes[o..o + REGION_TABLE_SIZE]).expect("region table");
    let meta = regions
        .iter()
        .find(|r| r.guid == METADATA_REGION)
        .expect("metadata region")
        .file_offset;
    for r in &mut regions {
        if r.guid == BAT_REGION {
            r.file_offset = meta;
        }
    }
    let table = encode_region_table(&regions);
    for at in [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET] {
        bytes[at as usize..at as usize + REGION_TABLE_SIZE].copy_from_slice(&table);
    }
    std::fs::write(&path, &bytes).expect("write");
    let out = cimkit(&["vhdx", "info", s(&path)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BAT region 0x200000..0x300000")
            && err.contains("metadata region 0x200000..0x300000")
            && err.contains("overlaps"),
        "{err}"
    );

    let help = cimkit_ok(&["vhdx", "info", "--help"], 0);
    assert!(
        help.contains("Exit codes") && help.contains("1 described, but problems were found"),
        "{help}"
    );
}

/// Makes a 1 GiB dynamic VHDX with qemu-img when present, else with the vhdx crate's own writer.
fn vhdx_create(path: &Path) {
    let qemu = std::process::Command::new("qemu-img")
        .args(["create", "-f", "vhdx", "-o", "block_size=1M", s(path), "1G"])
        .output();
    if !matches!(qemu, Ok(ref o) if o.status.success()) {
        eprintln!("qemu-img unavailable: creating the test disk with the vhdx crate");
        vhdx::create_dynamic(path, 1 << 30, 1 << 20, 512).expect("create vhdx");
    }
}

#[test]
fn bcd_show_lists_a_real_store() {
    let store = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/bcd/win10-install-media-efi.BCD"
    );
    if !Path::new(store).exists() {
        eprintln!("skipping: {store} not found");
        return;
    }
    let text = cimkit_ok(&["bcd", "show", store], 0);
    assert!(text.contains("Windows Boot Manager"), "{text}");
    assert!(text.contains("identifier"), "{text}");
    let lines = cimkit_ok(&["bcd", "show", "--json", store], 0);
    let objects: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(!objects.is_empty());
    assert!(objects
        .iter()
        .all(|o| o["identifier"].as_str().is_some_and(|i| i.starts_with('{'))));
    assert!(objects
        .iter()
        .any(|o| o["elements"].as_array().is_some_and(|e| !e.is_empty())));
    let tmp = tempfile::tempdir().expect("tempdir");
    let junk = tmp.path().join("BCD");
    std::fs::write(&junk, b"junk").expect("write");
    assert_eq!(cimkit(&["bcd", "show", s(&junk)]).status.code(), Some(2));
}

#[test]
fn hive_dump_lenient_reads_a_damaged_hive_as_far_as_it_is_sound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hive = tmp.path().join("h");
    let h = s(&hive);
    cimkit_ok(&["hive", "set", "--create", h, "A", "good", "kept"], 0);
    let marker = "0123456789abcdef".repeat(8);
    cimkit_ok(&["hive", "set", h, "B", "bad", &marker], 0);
    // Make the cell holding B's data claim far more bytes than the file has.
    let mut bytes = std::fs::read(&hive).expect("read");
    let utf16: Vec<u8> = marker.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let at = bytes
        .windows(utf16.len())
        .position(|w| w == utf16.as_slice())
        .expect("value data in the hive");
    bytes[at - 4..at].copy_from_slice(&(-0x0100_0000i32).to_le_bytes());
    std::fs::write(&hive, &bytes).expect("write");

    let strict = cimkit(&["hive", "dump", h]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--lenient"));
    let lenient = cimkit(&["hive", "dump", "--lenient", h]);
    assert_eq!(lenient.status.code(), Some(0));
    let out = String::from_utf8_lossy(&lenient.stdout);
    assert!(out.contains("good") && out.contains("kept"), "{out}");
    assert!(!out.contains(&marker), "{out}");
    let err = String::from_utf8_lossy(&lenient.stderr);
    assert!(
        err.contains("skipped") && err.contains(r#"key "B\bad""#),
        "{err}"
    );
}
