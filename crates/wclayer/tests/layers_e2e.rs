//! End to end: a generated base layer with real hives plus two child layers (whiteouts, replaced
//! files, hive deltas, links to hives), imported into a containerd-style snapshot folder and read
//! back through cimfs, entry by entry against what the tars say.

mod common;

use std::fs;
use std::path::Path;

use common::{import, opts, Model, TarBuilder};
use wclayer::{cim_path_for_layer, import_layer};

fn pax_meta(attr: u32, mtime: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MSWINDOWS.fileattr", attr.to_string()),
        ("mtime", mtime.to_string()),
        ("atime", "1650000001.5".into()),
        ("ctime", "1650000002".into()),
        ("LIBARCHIVE.creationtime", "1640000000.1234567".into()),
        ("MSWINDOWS.rawsd", "AQAEgBQAAAAkAAAAAAAAADAAAAABAgAAAAAABSAAAAAgAgAAAQEAAAAAAAUSAAAAAgAcAAEAAAAAABQA/wEfAAEBAAAAAAAFEgAAAA==".into()),
    ]
}

const UVM_SYSTEM: &str = r"UtilityVM\Files\Windows\System32\config\SYSTEM";
const UVM_BCD: &str = r"UtilityVM\Files\EFI\Microsoft\Boot\BCD";

/// Appends the utility VM's boot files to a gen_layer tar (which ends in two zero blocks).
fn with_uvm_boot_files(tar: &[u8], shared: &Path) -> Vec<u8> {
    let body = tar.len() - 1024;
    assert!(
        tar[body..].iter().all(|b| *b == 0),
        "gen_layer tar ends in two zero blocks"
    );
    let mut t = TarBuilder::new();
    for d in [
        "UtilityVM/Files/Windows",
        "UtilityVM/Files/Windows/System32",
        "UtilityVM/Files/Windows/System32/config",
        "UtilityVM/Files/EFI",
        "UtilityVM/Files/EFI/Microsoft",
        "UtilityVM/Files/EFI/Microsoft/Boot",
    ] {
        t.dir(d, &pax_meta(16, "1650000000"));
    }
    let cfg = "UtilityVM/Files/Windows/System32/config";
    t.file(
        &format!("{cfg}/SOFTWARE"),
        &pax_meta(0x20, "1650000000"),
        &common::software_hive("26100"),
    );
    let system = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    t.file(
        &format!("{cfg}/SYSTEM"),
        &pax_meta(0x20, "1650000000"),
        &system,
    );
    let bcd = fs::read(shared.join("testdata/bcd/windeploy-uefi-locate.BCD")).unwrap();
    t.file(
        "UtilityVM/Files/EFI/Microsoft/Boot/BCD",
        &pax_meta(0x26, "1650000000"),
        &bcd,
    );
    t.file(
        "UtilityVM/Files/EFI/Microsoft/Boot/bootmgfw.efi",
        &pax_meta(0x20, "1650000000"),
        b"MZ bootmgr",
    );
    let mut out = tar[..body].to_vec();
    out.extend_from_slice(&t.finish());
    out
}

/// Regular files of a layer tar in tar order (names with `/`).
fn regular_files(tar: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        if e.header().entry_type() == tar::EntryType::Regular
            && !name.contains(':')
            && !name.contains("/config/")
        {
            out.push(name);
        }
    }
    out
}

fn read_host(layer: &Path, rel: &str) -> Vec<u8> {
    fs::read(wclayer::layout::host_path(layer, rel)).unwrap()
}

/// The bytes of `delta` merged onto `base`, straight from regf (what a child layer's
/// `Hives\<X>_BASE` must hold).
fn merged_hive(base: &[u8], delta: &[u8]) -> Vec<u8> {
    regf::merge(
        &regf::Hive::parse(base).unwrap(),
        &regf::Hive::parse(delta).unwrap(),
    )
    .unwrap()
    .to_bytes()
    .unwrap()
}

#[test]
fn base_and_two_child_layers() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(hives) = common::hive_dir(&shared, &tmp.path().join("hives")) else {
        return;
    };
    let base_tar_path = tmp.path().join("base.tar");
    let args = [
        "--files",
        "2500",
        "--size",
        "16M",
        "--uvm-frac",
        "0.15",
        "--seed",
        "7",
        "--ads",
        "6",
        "--hives-from",
    ];
    let mut args: Vec<&str> = args.to_vec();
    let hives_s = hives.to_str().unwrap().to_string();
    args.push(&hives_s);
    let Some(_) = common::gen_layer(&shared, &args, &base_tar_path) else {
        return;
    };
    // gen_layer's UtilityVM tree has no boot files: add a UVM SOFTWARE hive (build 26100, so
    // the boot-from-CIM processing runs), a SYSTEM hive, a real BCD store and bootmgr.
    let base_tar = with_uvm_boot_files(&fs::read(&base_tar_path).unwrap(), &shared);
    fs::write(&base_tar_path, &base_tar).unwrap();

    let snaps = tmp.path().join("snapshots");
    let l1 = snaps.join("1");
    let l2 = snaps.join("2");
    let l3 = snaps.join("3");

    // ---- base layer
    let mut model = Model::default();
    model.apply_tar(&base_tar[..]);
    let mut progress_calls = 0u64;
    let imported = import_layer(
        fs::File::open(&base_tar_path).unwrap(),
        &opts(&l1, &[]),
        &mut |_| progress_calls += 1,
    );
    let Some(s1) = common::unless_mkntfs_missing(imported) else {
        return;
    };
    // utility VM processing: disks made, BCD and SYSTEM edited on the host and in the CIM
    assert_eq!(read_host(&l1, "uvmbuildversion"), b"26100");
    assert!(l1.join("UtilityVM/SystemTemplateBase.vhdx").is_file());
    assert!(l1.join("UtilityVM/SystemTemplate.vhdx").is_file());
    for edited in [UVM_SYSTEM, UVM_BCD] {
        let host = read_host(&l1, edited);
        let e = model.entries.get_mut(&edited.to_lowercase()).unwrap();
        assert_ne!(e.data, host, "{edited} was edited");
        e.data = host;
    }
    assert_eq!(s1.cim_path, snaps.join("cim-layers").join("1.cim"));
    assert_eq!(s1.cim_path, cim_path_for_layer(&l1));
    assert_eq!(s1.size, model.regular_bytes, "size = sum of regular files");
    assert_eq!(progress_calls, s1.entries);
    assert!(wclayer::is_cim_layer(&l1));
    assert_eq!(read_host(&l1, "layout"), b"vhd-with-hives\n");
    model.generated_dir("Hives");
    model.generated_file("layout", b"vhd-with-hives\n".to_vec());
    for h in &wclayer::layout::HIVES {
        let config = format!(r"Files\Windows\System32\config\{}", h.name);
        let base = format!(r"Hives\{}", h.base);
        assert_eq!(
            read_host(&l1, &base),
            fs::read(hives.join(h.name)).unwrap(),
            "{base}"
        );
        let mut e = model.get(&config).unwrap().clone();
        e.path = base.clone();
        model.insert(e);
        model.links.push((base, config));
    }
    let n = common::compare(&s1.cim_path, &model);
    assert!(n > 2500, "{n} entries");
    check_links(&s1.cim_path, &model);

    // ---- child 1: whiteouts, replaced files, new files of every kind, a SYSTEM delta and a
    // link to it
    let files = regular_files(&base_tar);
    let gone: Vec<&String> = files.iter().skip(100).step_by(97).take(5).collect();
    let replaced: Vec<&String> = files.iter().skip(150).step_by(101).take(5).collect();
    let gone_dir = files
        .iter()
        .find(|f| f.contains("/WinSxS/") && f.matches('/').count() == 4)
        .unwrap();
    let gone_dir = gone_dir.rsplit_once('/').unwrap().0.to_string();
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.dir("Files/App", &pax_meta(16, "1650000000"));
    for g in &gone {
        let (d, b) = g.rsplit_once('/').unwrap();
        t.file(&format!("{d}/.wh.{b}"), &[], b"");
    }
    let (gd, gb) = gone_dir.rsplit_once('/').unwrap();
    t.file(&format!("{gd}/.wh.{gb}"), &[], b"");
    for (i, r) in replaced.iter().enumerate() {
        t.file(
            r,
            &pax_meta(0x21, "1650000000.25"),
            format!("replaced {i}").as_bytes(),
        );
    }
    for i in 0..40 {
        let mut pax = pax_meta(
            if i % 3 == 0 { 0x20 } else { 0x26 },
            &format!("16500000{i:02}.5"),
        );
        if i % 5 == 0 {
            pax.retain(|(k, _)| *k != "MSWINDOWS.rawsd");
            pax.push((
                "MSWINDOWS.sd",
                "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)".into(),
            ));
        }
        if i % 7 == 0 {
            pax.push((
                "MSWINDOWS.xattr.$KERNEL.PURGE.APPXFICACHE",
                "AQIDBA==".into(),
            ));
        }
        t.file(
            &format!("Files/App/file{i:03}.dll"),
            &pax,
            &vec![i as u8; 1000 + i * 37],
        );
        if i == 3 {
            t.file(
                "Files/App/file003.dll:Zone.Identifier",
                &[],
                b"[ZoneTransfer]\r\nZoneId=3\r\n",
            );
        }
    }
    t.entry(
        "Files/App/alias.dll",
        tar::EntryType::Link,
        &[],
        "Files/App/file001.dll",
        b"",
    );
    t.entry(
        "Files/App/sym",
        tar::EntryType::Symlink,
        &pax_meta(0x20, "1650000000"),
        "file002.dll",
        b"",
    );
    // As go-winio writes them: a junction and a directory symlink are symlink entries whose
    // attributes say directory (0x410); the CIM holds directory reparse points.
    t.entry(
        "Files/App/junction",
        tar::EntryType::Symlink,
        &[
            ("MSWINDOWS.mountpoint", "1".into()),
            ("MSWINDOWS.fileattr", "1040".into()),
        ],
        "C:/ProgramData",
        b"",
    );
    t.entry(
        "Files/App/dirsym",
        tar::EntryType::Symlink,
        &pax_meta(0x410, "1650000000"),
        "..",
        b"",
    );
    t.dir("Hives", &[]);
    t.file("Hives/System_Delta", &pax_meta(0x20, "1650000000"), &delta);
    t.entry(
        "Files/App/system-delta-link",
        tar::EntryType::Link,
        &[],
        "Hives/System_Delta",
        b"",
    );
    let child1 = t.finish();

    model.apply_tar(&child1[..]);
    let s2 = import(&child1, &l2, &[&l1]).unwrap();
    assert_eq!(s2.size, model.regular_bytes);
    let merged = read_host(&l2, r"Hives\SYSTEM_BASE");
    let want = merged_hive(&read_host(&l1, r"Hives\SYSTEM_BASE"), &delta);
    assert!(
        merged == want,
        "SYSTEM_BASE is the merge of the parent base and the delta"
    );
    regf::Hive::parse(&merged).unwrap();
    model.generated_file(r"Hives\SYSTEM_BASE", merged);
    common::compare(&s2.cim_path, &model);
    check_links(&s2.cim_path, &model);
    for g in &gone {
        assert!(model.get(&g.replace('/', "\\")).is_none());
    }
    // the parent image is untouched by its child
    let parent = cimfs::Cim::open(&s1.cim_path).unwrap();
    parent.stat(&gone[0].replace('/', "\\")).unwrap();
    assert!(parent.stat(r"Files\App").is_err());

    // ---- child 2: SOFTWARE and SAM deltas (child 1 has no SAM_BASE: the base layer's is used),
    // removes part of child 1, brings back a file child 1 removed
    let sw_delta = common::software_hive("20348");
    let sam_delta = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    let mut t = TarBuilder::new();
    t.file("Files/App/.wh.file010.dll", &[], b"");
    t.file("Files/App/.wh.sym", &[], b"");
    t.file(gone[0], &pax_meta(0x20, "1660000000"), b"back again");
    t.file(
        "Hives/Software_Delta",
        &pax_meta(0x20, "1660000000"),
        &sw_delta,
    );
    t.file("Hives/Sam_Delta", &pax_meta(0x20, "1660000000"), &sam_delta);
    t.entry(
        "Files/App/sam-link",
        tar::EntryType::Link,
        &[],
        "Hives/Sam_Delta",
        b"",
    );
    let child2 = t.finish();
    model.apply_tar(&child2[..]);
    let s3 = import(&child2, &l3, &[&l2, &l1]).unwrap();
    for (base, parent_dir) in [(r"Hives\SOFTWARE_BASE", &l1), (r"Hives\SAM_BASE", &l1)] {
        let d = if base.contains("SOFTWARE") {
            &sw_delta
        } else {
            &sam_delta
        };
        let want = merged_hive(&read_host(parent_dir, base), d);
        let got = read_host(&l3, base);
        assert!(got == want, "{base}");
        model.generated_file(base, got);
    }
    assert!(!wclayer::layout::host_path(&l3, r"Hives\SYSTEM_BASE").exists());
    common::compare(&s3.cim_path, &model);
    check_links(&s3.cim_path, &model);

    // disk usage and destroy: only the layer's own files go
    let usage = wclayer::layer_disk_usage(&l3).unwrap();
    assert!(usage > 0);
    let before = common::listing(&snaps.join("cim-layers"));
    let own = cimfs::image_files(&s3.cim_path).unwrap();
    wclayer::destroy_layer(&l3).unwrap();
    assert!(!wclayer::is_cim_layer(&l3));
    let after = common::listing(&snaps.join("cim-layers"));
    assert_eq!(
        before.len() - after.len(),
        1 + own.regions.len() + own.objectids.len()
    );
    // child 1 still reads back as before
    common::compare(
        &s2.cim_path,
        &rebuild_model_through(&base_tar, &child1, &l1, &l2, &hives),
    );
}

/// The model after the base layer and child 1 (to re-check child 1 once child 2 is destroyed).
fn rebuild_model_through(
    base_tar: &[u8],
    child1: &[u8],
    l1: &Path,
    l2: &Path,
    hives: &Path,
) -> Model {
    let mut m = Model::default();
    m.apply_tar(base_tar);
    m.generated_dir("Hives");
    m.generated_file("layout", b"vhd-with-hives\n".to_vec());
    for h in &wclayer::layout::HIVES {
        let config = format!(r"Files\Windows\System32\config\{}", h.name);
        let mut e = m.get(&config).unwrap().clone();
        assert_eq!(e.data, fs::read(hives.join(h.name)).unwrap());
        e.path = format!(r"Hives\{}", h.base);
        m.insert(e);
    }
    for edited in [UVM_SYSTEM, UVM_BCD] {
        m.entries.get_mut(&edited.to_lowercase()).unwrap().data = read_host(l1, edited);
    }
    m.apply_tar(child1);
    m.generated_file(r"Hives\SYSTEM_BASE", read_host(l2, r"Hives\SYSTEM_BASE"));
    m
}

/// Hard links of the last layer share one file in the CIM.
fn check_links(cim_path: &Path, model: &Model) {
    let cim = cimfs::Cim::open(cim_path).unwrap();
    for (name, target) in &model.links {
        if model.get(name).is_none() || model.get(target).is_none() {
            continue;
        }
        assert_eq!(
            cim.lookup(name).unwrap(),
            cim.lookup(target).unwrap(),
            "{name} -> {target}"
        );
    }
}
