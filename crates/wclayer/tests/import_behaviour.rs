//! Import behaviour around the edges: the README sample, compression, failures that must leave
//! nothing usable behind, determinism, utility VM layers, layer-folder rules.

mod common;

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::{import, import_error, listing, opts, read_cim_file, small_base, TarBuilder};
use wclayer::{cim_path_for_layer, import_layer, ImportOptions};

#[test]
fn readme_sample_imports_plain_and_gzip() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("x.tar");
    let Some(_) = common::gen_layer(
        &shared,
        &["--files", "300", "--size", "1M", "--seed", "1"],
        &tar,
    ) else {
        return;
    };
    let bytes = fs::read(&tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let gz = gz.finish().unwrap();
    let mut sizes = vec![];
    for (i, input) in [bytes.clone(), gz].into_iter().enumerate() {
        let layer = tmp.path().join(format!("snap{i}/snapshots/1"));
        let s = import(&input, &layer, &[]).unwrap();
        let cim = cimfs::Cim::open(&s.cim_path).unwrap();
        cim.stat(r"Hives\SYSTEM_BASE").unwrap();
        assert_eq!(cim.read_dir("").unwrap().len(), 3, "Files, Hives, layout");
        assert!(cimfs::verify::verify(&s.cim_path).is_empty());
        sizes.push(s.size);
    }
    assert_eq!(sizes[0], sizes[1]);
    let mut m = common::Model::default();
    m.apply_tar(&bytes[..]);
    assert_eq!(sizes[0], m.regular_bytes);
}

/// Region-set GUID of an image, as written in its region file names.
/// The region-set GUIDs of the images in `cim_dir`, in name order.
fn region_guids(cim_dir: &Path) -> Vec<String> {
    let mut guids: Vec<String> = listing(cim_dir)
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("region_"))
        .map(|n| n["region_".len()..n.rfind('_').unwrap()].to_string())
        .collect();
    guids.dedup();
    guids
}

/// The 16 bytes a GUID string stands for (first three fields little-endian).
fn guid_bytes(s: &str) -> Vec<u8> {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut out = vec![b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]];
    out.extend_from_slice(&b[8..]);
    out
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn importing_twice_gives_identical_images_but_for_the_guid() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("x.tar");
    let Some(hives) = common::hive_dir(&shared, &tmp.path().join("hives")) else {
        return;
    };
    let hives = hives.to_str().unwrap();
    let Some(_) = common::gen_layer(
        &shared,
        &[
            "--files",
            "400",
            "--size",
            "24M",
            "--seed",
            "3",
            "--hives-from",
            hives,
        ],
        &tar,
    ) else {
        return;
    };
    // A child layer too: a hive delta merged onto the base's, whiteouts, SDDL, EAs, links.
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let mut t = TarBuilder::new();
    t.file("Hives/System_Delta", &[], &delta);
    t.file(
        "Files/app.dll",
        &[
            ("MSWINDOWS.sd", "O:BAG:SYD:PAI(A;OICI;FA;;;SY)".into()),
            ("MSWINDOWS.xattr.b", "AQI=".into()),
            ("MSWINDOWS.xattr.a", "Aw==".into()),
        ],
        b"app",
    );
    t.entry(
        "Files/app-link.dll",
        tar::EntryType::Link,
        &[],
        "Files/app.dll",
        b"",
    );
    t.file("Files/.wh.Windows", &[], b"");
    let child_tar = t.finish();
    let mut images = vec![];
    for run in 0..2 {
        let layer = tmp.path().join(format!("run{run}/snapshots/7"));
        let s = import_layer(
            fs::File::open(&tar).unwrap(),
            &opts(&layer, &[]),
            &mut |_| {},
        )
        .unwrap();
        let dir = s.cim_path.parent().unwrap().to_path_buf();
        let base_guid = region_guids(&dir).pop().unwrap();
        let child = tmp.path().join(format!("run{run}/snapshots/8"));
        import(&child_tar, &child, &[&layer]).unwrap();
        let child_guid = region_guids(&dir)
            .into_iter()
            .find(|g| *g != base_guid)
            .unwrap();
        let mut files: Vec<(String, Vec<u8>)> = listing(&dir)
            .into_iter()
            .chain(listing(&child.join("Hives")))
            .map(|p| {
                let name = p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .replace(&base_guid, "BASE")
                    .replace(&child_guid, "CHILD");
                let data = fs::read(&p).unwrap();
                let data = replace_all(&data, &guid_bytes(&base_guid), &[0; 16]);
                let data = replace_all(&data, &guid_bytes(&child_guid), &[1; 16]);
                (name, data)
            })
            .collect();
        files.sort();
        images.push(files);
    }
    assert_eq!(images[0].len(), images[1].len());
    for (a, b) in images[0].iter().zip(&images[1]) {
        assert_eq!(a.0, b.0);
        assert!(
            a.1 == b.1,
            "{} differs between two imports of the same tar",
            a.0
        );
    }
    assert!(images[0].iter().any(|(n, _)| n == "SYSTEM_BASE"));
}

/// No CIM for `layer`, no file in cim-layers beyond `before`, an empty or absent layer folder.
fn assert_nothing_left(layer: &Path, before: &[PathBuf]) {
    let cim = cim_path_for_layer(layer);
    assert!(!cim.exists(), "{} left behind", cim.display());
    assert_eq!(listing(cim.parent().unwrap()), before);
    assert!(
        !layer.exists() || listing(layer).is_empty(),
        "{:?}",
        listing(layer)
    );
}

#[test]
fn errors_mid_import_leave_no_image_and_no_half_written_hive() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tar = small_base(&shared, |t| {
        t.file(
            "Files/bad",
            &[("MSWINDOWS.sd", "O:BAD:(A;;FA;;;NOPE)".into())],
            b"",
        );
    });
    let layer = tmp.path().join("snapshots/1");
    let err = import_error(&tar, &layer, &[]);
    assert!(err.contains("Files/bad") && err.contains("NOPE"), "{err}");
    assert_nothing_left(&layer, &[]);

    // cut the stream inside the SYSTEM hive's data: the std file must not appear complete
    let good = small_base(&shared, |_| {});
    let hive = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    let system_at = good
        .windows(29)
        .position(|w| w == b"Files/Windows/System32/config".as_slice())
        .unwrap();
    let cut = good[system_at..]
        .windows(hive.len().min(64))
        .position(|w| w == &hive[..64])
        .unwrap();
    let layer = tmp.path().join("snapshots/2");
    assert!(import(&good[..system_at + cut + 1000], &layer, &[]).is_err());
    assert_nothing_left(&layer, &[]);

    // an error in layer processing (a base layer without its hives) comes after every entry
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.file("Files/a", &[], b"x");
    let layer = tmp.path().join("snapshots/3");
    let err = import_error(&t.finish(), &layer, &[]);
    assert!(
        err.contains(r"Files\Windows\System32\config\SYSTEM"),
        "{err}"
    );
    assert_nothing_left(&layer, &[]);
}

#[test]
fn layer_folder_rules() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tar = small_base(&shared, |_| {});
    let layer = tmp.path().join("snapshots/1");
    fs::create_dir_all(&layer).unwrap();
    fs::write(layer.join("keep.txt"), b"mine").unwrap();
    assert!(import(&tar, &layer, &[]).is_err());
    assert_eq!(
        fs::read(layer.join("keep.txt")).unwrap(),
        b"mine",
        "a non-empty folder is not touched"
    );
    fs::remove_file(layer.join("keep.txt")).unwrap();
    let s = import(&tar, &layer, &[]).unwrap();
    // importing again onto an existing CIM is refused and leaves it intact
    let other = tmp.path().join("elsewhere/1");
    let err = import(&tar, &other, &[]);
    assert!(err.is_ok());
    let again = import(&tar, &layer, &[]);
    assert!(again.is_err());
    cimfs::Cim::open(&s.cim_path).unwrap();
    // a parent in another snapshot folder cannot be forked
    let child = tmp.path().join("third/2");
    let err = import_error(&tar, &child, &[&layer]);
    assert!(err.contains("parent CIM"), "{err}");
    assert!(
        !child.exists(),
        "no layer folder is left by a refused import"
    );
    // parents must be imported layers, each named once
    let err = import_error(&tar, &child, &[&tmp.path().join("snapshots/9")]);
    assert!(err.contains("has no CIM"), "{err}");
    let err = import_error(&tar, &child, &[&layer, &layer]);
    assert!(err.contains("given twice"), "{err}");
    assert!(!child.exists());
    // the host layer path must be an absolute Windows path of a layer folder
    const NOT_ABSOLUTE: &str = "absolute Windows path";
    const NOT_A_FOLDER: &str = "not a layer folder";
    for (bad, says) in [
        ("/var/lib/containerd/snapshots/9", NOT_ABSOLUTE),
        ("", NOT_ABSOLUTE),
        (r"snapshots\9", NOT_ABSOLUTE),
        (r"\\server", NOT_ABSOLUTE),
        (r"C:\", NOT_A_FOLDER),
        ("c:/", NOT_A_FOLDER),
        (r"\\server\share", NOT_A_FOLDER),
        (r"\\server\share\", NOT_A_FOLDER),
        (r"\\?\C:\", NOT_A_FOLDER),
        (r"C:\x\..", "not a folder name"),
        (r"C:\snap\a*b", "no Windows folder name can"),
        ("C:\\snap\\x\ty", "no Windows folder name can"),
        (r"C:\snap\a:b", "no Windows folder name can"),
        (r"C:\snap\7.", "trailing dot or space"),
        (r"C:\snap\7 ", "trailing dot or space"),
        (r"C:\snap\CON", "device name"),
        (r"C:\snap\lpt1.txt", "device name"),
    ] {
        let o = ImportOptions {
            host_layer_path: Some(bad.into()),
            ..opts(&child, &[])
        };
        let err = import_layer(&tar[..], &o, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{bad:?}: {err}");
        assert!(!child.exists(), "{bad:?}");
    }
    for (good, name) in [
        (r"C:\x\9", "9"),
        ("d:/x/9/", "9"),
        (r"\\srv\share\9", "9"),
        (r"\\?\C:\x\9", "9"),
        (r"\\?\UNC\srv\share\x\12", "12"),
        (r"C:\x\a€", "a€"),
        (r"C:\x\COM10", "COM10"),
    ] {
        assert!(wclayer::uvm::is_absolute_windows_path(good), "{good}");
        assert_eq!(
            wclayer::uvm::windows_folder_name(good),
            Ok(name.to_string())
        );
    }
}

fn uvm_layer(shared: &Path, build: &str, bcd: &[u8]) -> Vec<u8> {
    let sys = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    uvm_layer_with_hives(shared, &common::software_hive(build), bcd, &sys)
}

/// A base layer with a utility VM whose SOFTWARE and SYSTEM hives are `sw` and `sys`.
fn uvm_layer_with_hives(shared: &Path, sw: &[u8], bcd: &[u8], sys: &[u8]) -> Vec<u8> {
    small_base(shared, |t| {
        t.dir("UtilityVM", &[]);
        t.dir("UtilityVM/Files", &[]);
        t.dir("UtilityVM/Files/Windows", &[]);
        t.dir("UtilityVM/Files/Windows/System32", &[]);
        t.dir("UtilityVM/Files/Windows/System32/config", &[]);
        t.file("UtilityVM/Files/Windows/System32/config/SOFTWARE", &[], sw);
        t.file(
            "UtilityVM/Files/Windows/System32/config/SYSTEM",
            &[("MSWINDOWS.fileattr", "32".into())],
            sys,
        );
        t.dir("UtilityVM/Files/EFI", &[]);
        t.dir("UtilityVM/Files/EFI/Microsoft", &[]);
        t.dir("UtilityVM/Files/EFI/Microsoft/Boot", &[]);
        t.file(
            "UtilityVM/Files/EFI/Microsoft/Boot/BCD",
            &[("MSWINDOWS.fileattr", "38".into())],
            bcd,
        );
        t.file(
            "UtilityVM/Files/EFI/Microsoft/Boot/bootmgfw.efi",
            &[],
            b"MZ bootmgr",
        );
    })
}

#[test]
fn utility_vm_up_to_20348_only_records_the_build() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("snapshots/1");
    let bcd = fs::read(shared.join("testdata/bcd/windeploy-uefi-locate.BCD")).unwrap();
    let s = import(&uvm_layer(&shared, "17763", &bcd), &layer, &[]).unwrap();
    assert_eq!(fs::read(layer.join("uvmbuildversion")).unwrap(), b"17763");
    assert!(!layer.join("UtilityVM/SystemTemplateBase.vhdx").exists());
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(
        read_cim_file(&cim, r"UtilityVM\Files\EFI\Microsoft\Boot\bootmgfw.efi"),
        b"MZ bootmgr"
    );
    assert_eq!(
        read_cim_file(&cim, r"UtilityVM\Files\EFI\Microsoft\Boot\BCD"),
        bcd,
        "BCD unchanged"
    );
}

#[test]
fn utility_vm_after_20348_boots_from_the_cim() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("snapshots/5");
    let bcd = fs::read(shared.join("testdata/bcd/windeploy-uefi-locate.BCD")).unwrap();
    let o = ImportOptions {
        host_layer_path: Some(r"C:\ProgramData\containerd\snapshots\5".into()),
        ..opts(&layer, &[])
    };
    let imported = import_layer(&uvm_layer(&shared, "26100", &bcd)[..], &o, &mut |_| {});
    let Some(s) = common::unless_mkntfs_missing(imported) else {
        return;
    };
    assert_eq!(fs::read(layer.join("uvmbuildversion")).unwrap(), b"26100");
    let base = layer.join("UtilityVM/SystemTemplateBase.vhdx");
    let diff = layer.join("UtilityVM/SystemTemplate.vhdx");
    assert!(base.is_file() && diff.is_file());
    let part = vhdx::read_partition_info(&base).unwrap();

    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    // the CIM holds the edited SYSTEM hive (== the host copy) with hcsshim's four values
    let system = read_cim_file(&cim, r"UtilityVM\Files\Windows\System32\config\SYSTEM");
    assert_eq!(
        system,
        fs::read(layer.join("UtilityVM/Files/Windows/System32/config/SYSTEM")).unwrap()
    );
    let hive = regf::Hive::parse(&system).unwrap();
    let v = |k: &str, n: &str| hive.key(k).unwrap().value(n).unwrap().clone();
    assert_eq!(
        v(r"ControlSet001\Control", "BootContainerGuid")
            .as_string()
            .unwrap(),
        wclayer::uvm::BOOT_CONTAINER_GUID
    );
    assert_eq!(
        v(r"ControlSet001\Services\UnionFS", "Start").as_u32(),
        Some(0)
    );
    assert_eq!(
        v(r"ControlSet001\Services\wcifs", "Start").as_u32(),
        Some(4)
    );
    assert_eq!(
        v("Setup", "BootPathOverride").as_string().unwrap(),
        r"\Windows\"
    );
    // its metadata is still the tar's
    assert_eq!(
        cim.stat(r"UtilityVM\Files\Windows\System32\config\SYSTEM")
            .unwrap()
            .attributes,
        0x20
    );

    // the CIM holds the edited BCD: composite device over the VHDX partition + this CIM
    let bcd_bytes = read_cim_file(&cim, r"UtilityVM\Files\EFI\Microsoft\Boot\BCD");
    assert_ne!(bcd_bytes, bcd);
    let store_hive = regf::Hive::parse(&bcd_bytes).unwrap();
    let mut shown = Vec::new();
    bcd::show(&store_hive, &mut shown).unwrap();
    let shown = String::from_utf8_lossy(&shown).to_lowercase();
    assert!(shown.contains(r"\cim-layers\5.cim"), "{shown}");
    assert!(shown.contains(&part.disk_guid.to_string()), "{shown}");
    assert!(shown.contains(&part.partition_guid.to_string()), "{shown}");
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("SystemTemplateBase.vhdx")),
        "{:?}",
        s.notes
    );
    // what GrantVmGroupAccess would do is left to the Windows host, and said so
    assert!(
        s.notes.iter().any(|n| n.contains("S-1-5-83-0")
            && n.contains(r"C:\ProgramData\containerd\snapshots\5\UtilityVM\SystemTemplate.vhdx")),
        "{:?}",
        s.notes
    );

    // Independent readers agree with what the import wrote.
    let system_path = layer.join("UtilityVM/Files/Windows/System32/config/SYSTEM");
    let want = [
        (
            r"ControlSet001\Control",
            "BootContainerGuid",
            wclayer::uvm::BOOT_CONTAINER_GUID,
        ),
        (r"ControlSet001\Services\UnionFS", "Start", "0"),
        (r"ControlSet001\Services\wcifs", "Start", "4"),
        ("Setup", "BootPathOverride", r"\Windows\"),
    ];
    hivexget_agrees(&system_path, &want);
    regipy_agrees(&system_path, &want);
    qemu_img_checks(&base);
    vhdiinfo_follows_the_parent(&diff);

    // The processed utility VM imported again (as an export of this layer would be): the BCD's
    // device options from the first processing are replaced by this layer's. A host path with
    // `/` is written with `\`.
    let again = tmp.path().join("snapshots/6");
    let o = ImportOptions {
        host_layer_path: Some("C:/ProgramData/containerd/snapshots/6/".into()),
        ..opts(&again, &[])
    };
    let s = import_layer(
        &uvm_layer(&shared, "26100", &bcd_bytes)[..],
        &o,
        &mut |_| {},
    )
    .unwrap();
    assert!(
        s.notes.iter().any(|n| n.contains("earlier processing")),
        "{:?}",
        s.notes
    );
    assert!(
        s.notes
            .iter()
            .any(|n| n
                .contains(r"C:\ProgramData\containerd\snapshots\6\UtilityVM\SystemTemplate.vhdx")),
        "{:?}",
        s.notes
    );
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    let store_hive = regf::Hive::parse(&read_cim_file(
        &cim,
        r"UtilityVM\Files\EFI\Microsoft\Boot\BCD",
    ))
    .unwrap();
    let mut shown = Vec::new();
    bcd::show(&store_hive, &mut shown).unwrap();
    let shown = String::from_utf8_lossy(&shown).to_lowercase();
    let part = vhdx::read_partition_info(&again.join("UtilityVM/SystemTemplateBase.vhdx")).unwrap();
    assert!(shown.contains(r"\cim-layers\6.cim"), "{shown}");
    assert!(!shown.contains(r"\cim-layers\5.cim"), "{shown}");
    assert!(shown.contains(&part.partition_guid.to_string()), "{shown}");
    let store = bcd::Store::open(&store_hive).unwrap();
    let options = store
        .objects()
        .iter()
        .filter(|o| o.object_type() == Some(bcd::OBJECT_TYPE_DEVICE_OPTIONS))
        .count();
    assert_eq!(options, 2, "{shown}");
}

#[test]
fn utility_vm_errors_name_the_step_and_leave_no_disks() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("snapshots/2");
    // not a BCD store: the BCD step fails after the base disk was made
    let not_a_store = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    let err = import_error(&uvm_layer(&shared, "26100", &not_a_store), &layer, &[]);
    if err.contains("mkntfs") {
        eprintln!("skipping: {err}");
        return;
    }
    assert!(err.contains("edit BCD"), "{err}");
    assert_nothing_left(&layer, &[]);

    // a hive that is a symlink
    let mut t = TarBuilder::new();
    t.entry(
        "Files/Windows/System32/config/SYSTEM",
        tar::EntryType::Symlink,
        &[],
        "SOFTWARE",
        b"",
    );
    let err = import_error(&t.finish(), &layer, &[]);
    assert!(err.contains("regular file"), "{err}");
    assert_nothing_left(&layer, &[]);

    // a dirty SYSTEM hive: saving it edited would drop what its logs hold
    let dirty = fs::read(shared.join("testdata/hives/yarp-NewDirtyHive1/NewDirtyHive")).unwrap();
    let bcd = fs::read(shared.join("testdata/bcd/windeploy-uefi-locate.BCD")).unwrap();
    let err = import_error(
        &uvm_layer_with_hives(&shared, &common::software_hive("26100"), &bcd, &dirty),
        &layer,
        &[],
    );
    assert!(
        err.contains("edit SYSTEM hive") && err.contains("dirty"),
        "{err}"
    );
    assert_nothing_left(&layer, &[]);

    // a UtilityVM folder without its SOFTWARE hive
    let mut t = TarBuilder::new();
    t.dir("UtilityVM", &[]);
    let err = import_error(&t.finish(), &layer, &[]);
    assert!(err.contains("read build number"), "{err}");
    assert_nothing_left(&layer, &[]);

    // a CurrentBuild that is not a build number is quoted
    let err = import_error(&uvm_layer(&shared, "99999999999", &bcd), &layer, &[]);
    assert!(
        err.contains("read build number") && err.contains(r#""99999999999", not a build number"#),
        "{err}"
    );
    assert_nothing_left(&layer, &[]);
}

#[test]
fn whiteout_of_a_std_file_added_by_the_same_tar() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    import(&small_base(&shared, |_| {}), &base, &[]).unwrap();
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let mut t = TarBuilder::new();
    t.file("Hives/System_Delta", &[], &delta);
    t.entry(
        "Files/delta-link",
        tar::EntryType::Link,
        &[],
        "Hives/System_Delta",
        b"",
    );
    t.file(
        "Hives/Sam_Delta",
        &[],
        &fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap(),
    );
    t.file("Hives/.wh.System_Delta", &[], b"");
    t.file("Files/.wh.delta-link", &[], b"");
    let child = tmp.path().join("snapshots/2");
    let s = import(&t.finish(), &child, &[&base]).unwrap();
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    assert!(!child.join("Hives/SYSTEM_DELTA").exists());
    assert!(!child.join("Hives/SYSTEM_BASE").exists());
    assert!(child.join("Hives/SAM_BASE").is_file());
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert!(cim.stat(r"Hives\System_Delta").is_err());
    assert!(cim.stat(r"Files\delta-link").is_err());
    assert_eq!(
        read_cim_file(&cim, r"Hives\SYSTEM_BASE"),
        fs::read(base.join("Hives/SYSTEM_BASE")).unwrap()
    );
    assert_eq!(
        read_cim_file(&cim, r"Hives\SAM_BASE"),
        fs::read(child.join("Hives/SAM_BASE")).unwrap()
    );
}

#[test]
fn links_to_std_files_follow_tar_order() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    import(&small_base(&shared, |_| {}), &base, &[]).unwrap();
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let link = |t: &mut TarBuilder, name: &str, target: &str| {
        t.entry(name, tar::EntryType::Link, &[], target, b"")
    };
    let mut t = TarBuilder::new();
    t.file("Hives/System_Delta", &[], &delta);
    // a link to a link to a hive waits for the hive too
    link(&mut t, "Files/a", "Hives/System_Delta");
    link(&mut t, "Files/b", "Files/a");
    // a later entry at a pending link's name replaces the link
    link(&mut t, "Files/c", "Hives/System_Delta");
    t.file("Files/c", &[], b"plain file");
    // a link to a hive of the parent image is made at once: removing the hive later keeps it
    link(&mut t, "Files/sam", r"Files/Windows/System32/config/SAM");
    t.file("Files/Windows/System32/config/.wh.SAM", &[], b"");
    let child = tmp.path().join("snapshots/2");
    let s = import(&t.finish(), &child, &[&base]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(read_cim_file(&cim, r"Files\a"), delta);
    assert_eq!(read_cim_file(&cim, r"Files\b"), delta);
    assert_eq!(
        cim.stat(r"Files\b").unwrap().file_id,
        cim.stat(r"Hives\System_Delta").unwrap().file_id
    );
    assert_eq!(read_cim_file(&cim, r"Files\c"), b"plain file");
    assert_eq!(
        read_cim_file(&cim, r"Files\sam"),
        fs::read(base.join("Hives/SAM_BASE")).unwrap()
    );
    assert!(cim.stat(r"Files\Windows\System32\config\SAM").is_err());
    assert_eq!(s.size, delta.len() as u64 + 10);

    // a hive this tar adds, links and removes again: the link cannot keep it, and says so
    let mut t = TarBuilder::new();
    t.file("Hives/System_Delta", &[], &delta);
    link(&mut t, "Files/keep", "Hives/System_Delta");
    t.file("Hives/.wh.System_Delta", &[], b"");
    let err = import_error(&t.finish(), &tmp.path().join("snapshots/3"), &[&base]);
    assert!(err.contains("which this tar removed later"), "{err}");
}

#[test]
fn a_delta_without_any_parent_base_is_an_error() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    import(&small_base(&shared, |_| {}), &base, &[]).unwrap();
    // the parent folder lost its SYSTEM_BASE (e.g. copied without it)
    fs::remove_file(base.join("Hives/SYSTEM_BASE")).unwrap();
    let mut t = TarBuilder::new();
    t.file(
        "Hives/System_Delta",
        &[],
        &fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap(),
    );
    let child = tmp.path().join("snapshots/2");
    let before = listing(&tmp.path().join("snapshots/cim-layers"));
    let err = import_error(&t.finish(), &child, &[&base]);
    assert!(
        err.contains(r"Hives\SYSTEM_BASE") && err.contains("no parent"),
        "{err}"
    );
    assert_nothing_left(&child, &before);
}

fn names_in(cim: &cimfs::Cim, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = cim
        .read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .into_iter()
        .map(|e| e.name)
        .collect();
    v.sort();
    v
}

#[test]
fn opaque_whiteout_hides_only_what_the_parents_had() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    let base_tar = small_base(&shared, |t| {
        t.dir("Files/D", &[]);
        t.file("Files/D/a", &[], b"a");
        t.file("Files/D/b", &[], b"b");
        t.dir("Files/D/s", &[]);
        t.file("Files/D/s/x", &[], b"x");
        // a marker in a base layer hides nothing
        t.file("Files/D/.wh..wh..opq", &[], b"");
    });
    let s = import(&base_tar, &base, &[]).unwrap();
    let base_cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(names_in(&base_cim, r"Files\D"), ["a", "b", "s"]);

    // c comes before the marker, d after it: both are this layer's and stay
    let mut t = TarBuilder::new();
    t.file("Files/D/c", &[], b"c");
    t.file("Files/D/.wh..wh..opq", &[], b"");
    t.file("Files/D/d", &[], b"d");
    let child = tmp.path().join("snapshots/2");
    let s = import(&t.finish(), &child, &[&base]).unwrap();
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(names_in(&cim, r"Files\D"), ["c", "d"]);
    assert_eq!(read_cim_file(&cim, r"Files\D\c"), b"c");
    assert!(cim.stat(r"Files\D\s\x").is_err());
    // outside D nothing changed, and the parent image is untouched
    assert_eq!(
        read_cim_file(&cim, r"Files\Windows\notepad.exe"),
        b"MZ notepad"
    );
    let base_cim = cimfs::Cim::open(&cim_path_for_layer(&base)).unwrap();
    assert_eq!(names_in(&base_cim, r"Files\D"), ["a", "b", "s"]);
    assert_eq!(read_cim_file(&base_cim, r"Files\D\s\x"), b"x");

    // Added before the marker under another case: an inherited subdirectory the layer writes
    // into stays, but only with what the layer put there.
    let mut t = TarBuilder::new();
    t.file("files/d/S/y", &[], b"y");
    t.file("Files/D/.wh..wh..opq", &[], b"");
    let third = tmp.path().join("snapshots/3");
    let s = import(&t.finish(), &third, &[&base]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(names_in(&cim, r"Files\D"), ["s"]);
    assert_eq!(names_in(&cim, r"Files\D\s"), ["y"]);
    assert_eq!(read_cim_file(&cim, r"Files\D\S\Y"), b"y");

    // Further up the chain the marker hides what every lower layer left in D.
    let mut t = TarBuilder::new();
    t.file("Files/D/.wh..wh..opq", &[], b"");
    t.file("Files/D/e", &[], b"e");
    let fourth = tmp.path().join("snapshots/4");
    let s = import(&t.finish(), &fourth, &[&child, &base]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(names_in(&cim, r"Files\D"), ["e"]);
    let child_cim = cimfs::Cim::open(&cim_path_for_layer(&child)).unwrap();
    assert_eq!(names_in(&child_cim, r"Files\D"), ["c", "d"]);
}

#[test]
fn opaque_whiteout_of_a_missing_directory_is_accepted() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    import(&small_base(&shared, |_| {}), &base, &[]).unwrap();
    let mut t = TarBuilder::new();
    t.dir("Files/New", &[]);
    t.file("Files/New/.wh..wh..opq", &[], b"");
    t.file("Files/New/n", &[], b"n");
    t.file("Files/Nowhere/.wh..wh..opq", &[], b"");
    // a file is not a directory with children to hide
    t.file("Files/Windows/notepad.exe/.wh..wh..opq", &[], b"");
    let child = tmp.path().join("snapshots/2");
    let s = import(&t.finish(), &child, &[&base]).unwrap();
    assert_eq!(
        s.notes,
        ["3 opaque whiteouts named directories that no parent layer has"]
    );
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(names_in(&cim, r"Files\New"), ["n"]);
    assert!(cim.stat(r"Files\Nowhere").is_err());
    assert_eq!(
        read_cim_file(&cim, r"Files\Windows\notepad.exe"),
        b"MZ notepad"
    );

    // at the root it would hide the whole parent image: refused, naming the entry
    let mut t = TarBuilder::new();
    t.file(".wh..wh..opq", &[], b"");
    let err = import_error(&t.finish(), &tmp.path().join("snapshots/3"), &[&base]);
    assert!(
        err.contains(".wh..wh..opq") && err.contains("root"),
        "{err}"
    );
}

#[test]
fn opaque_whiteout_after_whiteouts_and_links_of_the_same_layer() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    let base_tar = small_base(&shared, |t| {
        t.dir("Files/D", &[]);
        t.file("Files/D/a", &[], b"a");
        t.file("Files/D/b", &[], b"b");
    });
    import(&base_tar, &base, &[]).unwrap();
    let mut t = TarBuilder::new();
    // already removed when the marker comes: not an error
    t.file("Files/D/.wh.a", &[], b"");
    // a hard link this layer adds under D stays, and so does its target outside D
    t.entry(
        "Files/D/np",
        tar::EntryType::Link,
        &[],
        "Files/Windows/notepad.exe",
        b"",
    );
    t.file("Files/D/.wh..wh..opq", &[], b"");
    let child = tmp.path().join("snapshots/2");
    let s = import(&t.finish(), &child, &[&base]).unwrap();
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(names_in(&cim, r"Files\D"), ["np"]);
    assert_eq!(read_cim_file(&cim, r"Files\D\np"), b"MZ notepad");
    assert_eq!(
        read_cim_file(&cim, r"Files\Windows\notepad.exe"),
        b"MZ notepad"
    );
}

/// Runs an oracle; None (with a message) when it is not installed.
fn oracle(program: &str, args: &[OsString]) -> Option<String> {
    match std::process::Command::new(program).args(args).output() {
        Ok(o) => {
            assert!(
                o.status.success(),
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Err(e) => {
            eprintln!("skipping the {program} check: {e}");
            None
        }
    }
}

/// hivexget (libhivex) reads each (key, value, data) from the hive file.
fn hivexget_agrees(hive: &Path, want: &[(&str, &str, &str)]) {
    for (key, name, data) in want {
        let args = [hive.into(), key.into(), name.into()];
        let Some(out) = oracle("hivexget", &args) else {
            return;
        };
        assert_eq!(out.trim_end_matches('\n'), *data, "hivexget {key} {name}");
    }
}

/// regipy (the Python reader in $CIMKIT_PYTHON's environment) reads the same values.
fn regipy_agrees(hive: &Path, want: &[(&str, &str, &str)]) {
    let py = common::python();
    let probe = std::process::Command::new(&py)
        .args(["-c", "import regipy"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        eprintln!("skipping the regipy check: regipy not importable by {py}");
        return;
    }
    let script = r#"
import sys
from regipy.registry import RegistryHive
h = RegistryHive(sys.argv[1])
for spec in sys.argv[2:]:
    key, name = spec.split("|")
    print(h.get_key("\\" + key).get_value(name))
"#;
    let mut args: Vec<OsString> = vec!["-c".into(), script.into(), hive.into()];
    args.extend(want.iter().map(|(k, n, _)| format!("{k}|{n}").into()));
    let out = oracle(&py, &args).expect("python ran for the probe");
    let got: Vec<&str> = out.lines().collect();
    let data: Vec<&str> = want.iter().map(|w| w.2).collect();
    assert_eq!(got, data, "regipy read the SYSTEM hive edits");
}

/// qemu-img accepts the base disk and reads its size.
fn qemu_img_checks(base: &Path) {
    let Some(check) = oracle(
        "qemu-img",
        &["check".into(), "-f".into(), "vhdx".into(), base.into()],
    ) else {
        return;
    };
    assert!(check.contains("No errors were found"), "{check}");
    let info = oracle(
        "qemu-img",
        &["info".into(), "-f".into(), "vhdx".into(), base.into()],
    )
    .expect("qemu-img ran once");
    assert!(info.contains("virtual size: 10 GiB"), "{info}");
}

/// vhdiinfo (libvhdi) reads the differencing disk as one whose parent is the base.
fn vhdiinfo_follows_the_parent(diff: &Path) {
    let Some(out) = oracle("vhdiinfo", &[diff.into()]) else {
        return;
    };
    assert!(out.contains("Differential"), "{out}");
    assert!(out.contains("SystemTemplateBase.vhdx"), "{out}");
}

/// A layer packed with GNU tar from a folder (`tar -C DIR -c .`) starts with a `./` entry for
/// the root and names everything `./Files/...`: the root entry is skipped (with a note), the
/// rest imports as usual.
#[test]
fn root_entry_of_tar_made_from_a_folder_is_skipped() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let config = src.join("Files/Windows/System32/config");
    fs::create_dir_all(&config).unwrap();
    for h in ["DEFAULT", "SAM", "SECURITY", "SOFTWARE", "SYSTEM"] {
        fs::copy(shared.join("testdata/hives/yarp-OffHive"), config.join(h)).unwrap();
    }
    fs::create_dir_all(src.join("Files/Data")).unwrap();
    fs::write(src.join("Files/Data/a.txt"), b"from a folder").unwrap();
    let packed = std::process::Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["-cf", "-", "."])
        .output();
    let Some(packed) = packed.ok().filter(|o| o.status.success()) else {
        eprintln!("skipping: no working `tar` command");
        return;
    };
    assert!(packed.stdout.len() > 512 && packed.stdout[..2] == *b"./");
    let layer = tmp.path().join("snapshots/1");
    let s = import(&packed.stdout, &layer, &[]).unwrap();
    assert!(
        s.notes.iter().any(|n| n.contains("layer root")),
        "{:?}",
        s.notes
    );
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(read_cim_file(&cim, r"Files\Data\a.txt"), b"from a folder");
    assert!(cim.stat(".").is_err(), "no file named \".\" in the root");

    // A root entry that is not a directory is still refused.
    let mut t = TarBuilder::new();
    t.file("./", &[], b"");
    let err = import_error(&t.finish(), &tmp.path().join("snapshots/2"), &[]);
    assert!(err.contains("empty path"), "{err}");
}

/// With utility-VM processing skipped (hcsshim's behaviour since 2024), a UtilityVM layer of a
/// build that would be prepared for CIM boot is stored exactly as the tar has it, and a
/// UtilityVM without a SOFTWARE hive is accepted.
#[test]
fn utility_vm_processing_can_be_skipped() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bcd = fs::read(shared.join("testdata/bcd/windeploy-uefi-locate.BCD")).unwrap();
    let sys = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    let layer = tmp.path().join("snapshots/1");
    let o = ImportOptions {
        skip_utility_vm_processing: true,
        ..opts(&layer, &[])
    };
    let s = import_layer(&uvm_layer(&shared, "26100", &bcd)[..], &o, &mut |_| {}).unwrap();
    assert!(s.notes.iter().any(|n| n.contains("processing skipped")));
    assert!(!layer.join("uvmbuildversion").exists());
    assert!(!layer.join("UtilityVM/SystemTemplateBase.vhdx").exists());
    assert!(!layer.join("UtilityVM/SystemTemplate.vhdx").exists());
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    let uvm_config = r"UtilityVM\Files\Windows\System32\config";
    assert_eq!(
        read_cim_file(&cim, r"UtilityVM\Files\EFI\Microsoft\Boot\BCD"),
        bcd
    );
    assert_eq!(read_cim_file(&cim, &format!(r"{uvm_config}\SYSTEM")), sys);

    // No SOFTWARE hive in the UtilityVM: refused when processing, accepted when skipping.
    let bare = small_base(&shared, |t| t.dir("UtilityVM", &[]));
    let err = import_error(&bare, &tmp.path().join("snapshots/2"), &[]);
    assert!(err.contains("read build number"), "{err}");
    let o = ImportOptions {
        skip_utility_vm_processing: true,
        ..opts(&tmp.path().join("snapshots/3"), &[])
    };
    let s = import_layer(&bare[..], &o, &mut |_| {}).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert!(cim.stat("UtilityVM").unwrap().is_directory);
}

/// A symlink entry whose attributes say directory: a junction (`mountpoint`) or a directory
/// symlink, as go-winio writes them.
fn dir_link(t: &mut TarBuilder, name: &str, target: &str, junction: bool) {
    let mut pax = vec![("MSWINDOWS.fileattr", "16".to_string())];
    if junction {
        pax.push(("MSWINDOWS.mountpoint", "1".to_string()));
    }
    t.entry(name, tar::EntryType::Symlink, &pax, target, b"");
}

/// NTFS holds no entries beneath a junction or directory symlink: a tar entry (file, directory
/// or hard link) under one, added by the same layer or inherited from a parent layer, is refused
/// with the entry and the reparse point named. A layer that first turns the junction back into a
/// plain directory may add beneath it.
#[test]
fn entries_beneath_a_junction_or_directory_symlink_are_refused() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let snapshots = tmp.path().join("snapshots");
    for (i, junction) in [true, false].into_iter().enumerate() {
        let tar = small_base(&shared, |t| {
            dir_link(t, "Files/jct", "C:/ProgramData", junction);
            t.file("Files/jct/x.txt", &[], b"lost");
        });
        let err = import_error(&tar, &snapshots.join(format!("bad{i}")), &[]);
        assert!(
            err.contains(r#""Files\jct\x.txt""#) && err.contains("directory symlink or junction"),
            "{err}"
        );
        assert!(!snapshots.join(format!("cim-layers/bad{i}.cim")).exists());
    }

    let base = snapshots.join("1");
    let tar = small_base(&shared, |t| {
        dir_link(t, "Files/jct", "C:/ProgramData", true);
        t.dir("Files/plain", &[]);
    });
    let s = import(&tar, &base, &[]).unwrap();
    assert!(cimfs::verify::verify(&s.cim_path).is_empty());

    // A child layer adding under the parent's junction, deeper or through a hard link.
    type Build = fn(&mut TarBuilder);
    let children: [(&str, Build); 3] = [
        ("file", |t| t.file("Files/jct/new.txt", &[], b"x")),
        ("dir", |t| {
            t.dir("Files/JCT/sub", &[]);
        }),
        ("link", |t| {
            t.entry(
                "Files/jct/l",
                tar::EntryType::Link,
                &[],
                "Files/Windows/notepad.exe",
                b"",
            )
        }),
    ];
    for (what, build) in children {
        let mut t = TarBuilder::new();
        build(&mut t);
        let layer = snapshots.join(format!("child-{what}"));
        let err = import_error(&t.finish(), &layer, &[&base]);
        assert!(
            err.contains("directory symlink or junction")
                && err.to_lowercase().contains(r#""files\jct""#),
            "{what}: {err}"
        );
    }

    // The same layer turns it back into a directory first: its entries are fine.
    let mut t = TarBuilder::new();
    t.dir("Files/jct", &[]);
    t.file("Files/jct/new.txt", &[], b"now a directory");
    let s = import(&t.finish(), &snapshots.join("2"), &[&base]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(
        read_cim_file(&cim, r"Files\jct\new.txt"),
        b"now a directory"
    );
    assert!(cimfs::verify::verify(&s.cim_path).is_empty());

    // A plain directory made a junction by a later entry loses what it held, and a later
    // entry beneath it is refused.
    let mut t = TarBuilder::new();
    t.file("Files/plain/a.txt", &[], b"a");
    dir_link(&mut t, "Files/plain", "C:/Windows", true);
    t.file("Files/plain/b.txt", &[], b"b");
    let err = import_error(&t.finish(), &snapshots.join("3"), &[&base]);
    assert!(
        err.contains(r#""Files\plain\b.txt""#) && err.contains(r#""Files\plain""#),
        "{err}"
    );
}

/// A zstd stream that starts with a skippable frame (as pzstd writes) or has one between its
/// frames is still zstd.
#[test]
fn zstd_with_skippable_frames_is_detected() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let plain = small_base(&shared, |t| t.file("Files/data.txt", &[], b"zstd data"));
    let skippable = |magic_low: u8, payload: &[u8]| -> Vec<u8> {
        let mut f = vec![magic_low, 0x2a, 0x4d, 0x18];
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(payload);
        f
    };
    let (first, second) = plain.split_at(plain.len() / 2);
    let mut zst = skippable(0x50, b"pzstd");
    zst.extend(zstd::stream::encode_all(first, 3).unwrap());
    zst.extend(skippable(0x5f, &[0xff; 7]));
    zst.extend(zstd::stream::encode_all(second, 3).unwrap());
    assert_eq!(
        wclayer::detect_compression(&zst).unwrap(),
        wclayer::Compression::Zstd
    );
    let s = import(&zst, &tmp.path().join("snapshots/1"), &[]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(read_cim_file(&cim, r"Files\data.txt"), b"zstd data");
    // Not every 0x18 0x4d 0x2a word is a skippable frame: 0x184D2A60 is nothing.
    assert_eq!(
        wclayer::detect_compression(&[0x60, 0x2a, 0x4d, 0x18, 0, 0]).unwrap(),
        wclayer::Compression::None
    );
}

/// Windows takes a FILETIME as signed: a time past 30828-09-14 (or before 1601) is refused at
/// import, naming the entry and the record, instead of being stored and then not set.
#[test]
fn times_outside_the_signed_filetime_range_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (record, value)) in [
        ("mtime", "922337203685"),
        ("atime", "910692730085.4775808"),
        ("LIBARCHIVE.creationtime", "-11644473601"),
        ("ctime", "99999999999999999999"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = TarBuilder::new();
        t.dir("Files", &[]);
        t.file("Files/p", &[(record, value.to_string())], b"x");
        let err = import_error(&t.finish(), &tmp.path().join(format!("s/{i}")), &[]);
        assert!(
            err.contains(r#"tar entry "Files/p""#) && err.contains(&format!("PAX record {record}")),
            "{err}"
        );
        if value != "99999999999999999999" {
            assert!(err.contains("outside the FILETIME range"), "{err}");
        }
    }
    // The last representable tick is fine.
    let mut t = TarBuilder::new();
    t.file(
        "Files/p",
        &[("mtime", "910692730085.4775807".to_string())],
        b"x",
    );
    let ops = record_ops(&t.finish()).unwrap();
    assert!(matches!(
        &ops[0],
        wclayer::RecordedOp::Add { info, .. } if info.last_write_time == i64::MAX as u64
    ));
}

fn record_ops(tar: &[u8]) -> wclayer::Result<Vec<wclayer::RecordedOp>> {
    let mut w = wclayer::RecordingLayerWriter::new();
    wclayer::write_layer_from_tar(tar, &mut w, &mut |_| {})?;
    Ok(w.ops)
}

/// NTFS EA names are case-insensitive: two records naming the same EA in different case are
/// refused. A PAX `size` that is not a non-negative number is refused too (tar-rs would quietly
/// use the header's size instead).
#[test]
fn ea_names_equal_ignoring_case_and_bad_pax_sizes_are_refused() {
    let mut t = TarBuilder::new();
    t.file(
        "Files/p",
        &[
            ("MSWINDOWS.xattr.foo", "YQ==".to_string()),
            ("MSWINDOWS.xattr.FOO", "Yg==".to_string()),
        ],
        b"x",
    );
    let err = record_ops(&t.finish()).unwrap_err().to_string();
    assert!(
        err.contains(r#""Files/p""#)
            && err.contains(r#""FOO""#)
            && err.contains(r#""foo""#)
            && err.contains("differ only in case"),
        "{err}"
    );
    // Distinct names still work.
    let mut t = TarBuilder::new();
    t.file(
        "Files/p",
        &[
            ("MSWINDOWS.xattr.foo", "YQ==".to_string()),
            ("MSWINDOWS.xattr.bar", "Yg==".to_string()),
        ],
        b"x",
    );
    record_ops(&t.finish()).unwrap();

    for bad in ["abc", "-1", "", "1e3", "99999999999999999999"] {
        let mut t = TarBuilder::new();
        t.file("Files/p", &[("size", bad.to_string())], b"x");
        let err = record_ops(&t.finish()).unwrap_err().to_string();
        assert!(
            err.contains(r#""Files/p""#) && err.contains("PAX record size="),
            "{bad:?}: {err}"
        );
    }
    // A good PAX size is the entry's size.
    let mut t = TarBuilder::new();
    t.file("Files/p", &[("size", "1".to_string())], b"x");
    record_ops(&t.finish()).unwrap();
}

fn zstd_with_checksum(b: &[u8]) -> Vec<u8> {
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A damaged gzip or zstd stream is reported as a decompression failure saying what the
/// decompressor found, not as an unreadable tar; a gzip stream of several members is fine.
#[test]
fn damaged_compression_is_reported_as_such() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let plain = small_base(&shared, |t| t.file("Files/data.txt", &[], b"some data"));
    let zst = zstd_with_checksum(&plain);
    let gz = gzip(&plain);
    let mut bad_sum = zst.clone();
    let n = bad_sum.len();
    bad_sum[n - 2] ^= 0xff;
    let mut trailing = gz.clone();
    trailing.extend_from_slice(b"trailing garbage");
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 32] {
        *b ^= 0x5a;
    }
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("zstd checksum", bad_sum, "zstd decompression failed"),
        (
            "zstd truncated",
            zst[..zst.len() / 2].to_vec(),
            "zstd decompression failed",
        ),
        (
            "gzip trailing data",
            trailing,
            "trailing data after the gzip stream",
        ),
        (
            "gzip truncated",
            gz[..gz.len() / 2].to_vec(),
            "gzip stream is truncated",
        ),
        ("gzip damaged", flipped, "gzip decompression failed"),
    ];
    for (i, (what, bytes, want)) in cases.into_iter().enumerate() {
        let err = import_error(&bytes, &tmp.path().join(format!("s{i}/1")), &[]);
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            !err.contains("tar archive") && !err.contains("byte 0)") && !err.contains("\\'"),
            "{what}: {err}"
        );
        // How far decompression got is told in bytes, not in tar entries: the import runs on
        // another thread behind it, so its entry count says nothing about where the damage is.
        if want.contains("decompression failed") {
            assert!(
                err.contains("of tar had come out") && !err.contains("tar entr"),
                "{what}: {err}"
            );
        }
    }
    // One byte flipped early in the deflate data can decompress to garbage the tar reader
    // trips over before the decompressor notices: the decompressor's error is reported all the
    // same, whichever thread gets there first.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/base-layer.tar.gz");
    let mut one = fs::read(sample).unwrap();
    one[5000] ^= 0x01;
    for run in 0..6 {
        let err = import_error(&one, &tmp.path().join(format!("one{run}/1")), &[]);
        assert!(
            err.contains("gzip decompression failed"),
            "run {run}: {err}"
        );
    }
    // Two gzip members, as `cat a.gz b.gz` or pigz make, are one stream.
    let (first, second) = plain.split_at(plain.len() / 3);
    let mut two = gzip(first);
    two.extend(gzip(second));
    let s = import(&two, &tmp.path().join("two/1"), &[]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert_eq!(read_cim_file(&cim, r"Files\data.txt"), b"some data");
}

/// Over-long names and link targets are shortened in messages (start, length, end), not
/// echoed whole.
#[test]
fn long_names_are_shortened_in_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("C:/{}", "t".repeat(40_000));
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.entry("Files/s", tar::EntryType::Symlink, &[], &target, b"");
    let err = import_error(&t.finish(), &tmp.path().join("s/1"), &[]);
    assert!(err.len() < 1000, "{} bytes: {}", err.len(), &err[..300]);
    assert!(err.contains("[40003 characters]"), "{err}");

    let deep = format!("Files/{}x.txt", "dir/".repeat(2500));
    let mut t = TarBuilder::new();
    t.dir("Files", &[]);
    t.file(&deep, &[], b"x");
    let err = import_error(&t.finish(), &tmp.path().join("s/2"), &[]);
    assert!(err.len() < 1000, "{} bytes: {}", err.len(), &err[..300]);
    assert!(
        err.contains("characters]") && err.ends_with("does not exist"),
        "{err}"
    );
}

/// `.wh..wh.plnk` (docker's AUFS hard-link directory) and what is under it are skipped with a
/// note; other reserved `.wh..wh.` names and a bare `.wh.` are still refused.
#[test]
fn aufs_hard_link_directory_is_skipped() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tar = small_base(&shared, |t| {
        t.dir("Files/.wh..wh.plnk", &[]);
        t.file("Files/.wh..wh.plnk/1234.5678", &[], b"aufs link target");
        t.file("Files/after.txt", &[], b"after");
    });
    let s = import(&tar, &tmp.path().join("s/1"), &[]).unwrap();
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("2 AUFS hard-link entries (.wh..wh.plnk) skipped")),
        "{:?}",
        s.notes
    );
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert!(cim.stat(r"Files\.wh..wh.plnk").is_err());
    assert_eq!(read_cim_file(&cim, r"Files\after.txt"), b"after");
    for (i, name) in ["Files/.wh.", "Files/.wh..wh.aufs"].into_iter().enumerate() {
        let tar = small_base(&shared, |t| t.file(name, &[], b""));
        let err = import_error(&tar, &tmp.path().join(format!("s/bad{i}")), &[]);
        assert!(err.contains(name), "{err}");
    }
}

/// Gives the first `limit` bytes of `data`, then fails the way a blob check does.
struct FailingInput {
    data: Vec<u8>,
    pos: usize,
    limit: usize,
}

impl std::io::Read for FailingInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "size mismatch: the descriptor says 10 bytes",
            ));
        }
        let n = buf.len().min(self.limit - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An input that fails part-way (a blob whose size or digest is wrong) is reported as the
/// input's failure, not as a tar that cannot be read nor as damaged compression.
#[test]
fn a_failing_input_is_blamed_not_the_tar_or_its_compression() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tar = small_base(&shared, |_| {});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The last two fail only where the blob ends (as a digest check does): after the tar, while
    // the rest is read for the gzip checksum, or for the uncompressed digest.
    let (gz_len, tar_len) = (gz.len(), tar.len());
    for (i, (data, limit)) in [
        (tar.clone(), 0),
        (tar.clone(), 3000),
        (tar.clone(), 9000),
        (gz.clone(), 100),
        (gz.clone(), gz_len),
        (tar.clone(), tar_len),
    ]
    .into_iter()
    .enumerate()
    {
        let layer = tmp.path().join(format!("snapshots/{i}"));
        let input = FailingInput {
            data,
            pos: 0,
            limit,
        };
        let o = ImportOptions {
            uncompressed_digest: (i == 5).then(|| format!("sha256:{}", "0".repeat(64))),
            ..opts(&layer, &[])
        };
        let err = import_layer(input, &o, &mut |_| {})
            .unwrap_err()
            .to_string();
        // Inside an entry's data the entry is named instead.
        assert!(
            (err.contains("reading the layer input failed")
                || err.contains("reading data of tar entry"))
                && err.contains("size mismatch: the descriptor says 10 bytes"),
            "{i}: {err}"
        );
        assert!(
            !err.contains("not a readable tar") && !err.contains("decompression"),
            "{err}"
        );
        assert!(!layer.exists());
    }
}

/// GNU tar's PAX sparse files (`tar --format=posix --sparse`) are refused by name, not
/// imported under their encoded `GNUSparseFile.0/…` name with the hole map as data.
#[test]
fn pax_gnu_sparse_files_are_refused_clearly() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tar = small_base(&shared, |t| {
        t.file(
            "Files/GNUSparseFile.0/big.img",
            &[
                ("GNU.sparse.major", "1".into()),
                ("GNU.sparse.minor", "0".into()),
                ("GNU.sparse.name", "Files/big.img".into()),
                ("GNU.sparse.realsize", "1048576".into()),
            ],
            b"1\n0\n4\n",
        );
    });
    let tmp = tempfile::tempdir().unwrap();
    let err = import_error(&tar, &tmp.path().join("snapshots/1"), &[]);
    assert!(
        err.contains("GNU sparse file in PAX format") && err.contains("GNUSparseFile.0"),
        "{err}"
    );
}

/// The dirty hive of shared/testdata (sequence numbers differ: its logs hold changes).
fn dirty_hive(shared: &Path) -> Vec<u8> {
    let dirty = fs::read(shared.join("testdata/hives/yarp-NewDirtyHive1/NewDirtyHive")).unwrap();
    assert!(regf::Hive::parse(&dirty).unwrap().dirty_notes().is_some());
    dirty
}

/// A child layer whose only content is the differencing hive `Hives/System_Delta`.
fn child_with_system_delta(delta: &[u8]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("Hives", &[]);
    t.file(
        "Hives/System_Delta",
        &[("MSWINDOWS.fileattr", "32".into())],
        delta,
    );
    t.finish()
}

/// A merge writes a clean hive: a dirty input (the delta, or the parent's `_BASE`) would lose
/// what its transaction logs hold, so the import is refused, naming the file.
#[test]
fn dirty_hives_are_not_merged() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    import(&small_base(&shared, |_| {}), &base, &[]).unwrap();
    let cim_layers = tmp.path().join("snapshots/cim-layers");
    let before = listing(&cim_layers);
    let child = tmp.path().join("snapshots/2");
    let err = import_error(
        &child_with_system_delta(&dirty_hive(&shared)),
        &child,
        &[&base],
    );
    assert!(
        err.contains("SYSTEM_DELTA") && err.contains("dirty") && err.contains(".LOG1"),
        "{err}"
    );
    assert_nothing_left(&child, &before);

    // a base layer whose SYSTEM hive is dirty imports (nothing rewrites it), but a delta cannot
    // be merged onto it
    let dirty_base = tmp.path().join("snapshots/3");
    let tar = small_base(&shared, |t| {
        t.file(
            "Files/Windows/System32/config/SYSTEM",
            &[],
            &dirty_hive(&shared),
        )
    });
    import(&tar, &dirty_base, &[]).unwrap();
    let before = listing(&cim_layers);
    let delta = fs::read(shared.join("testdata/hives/yarp-System_Delta")).unwrap();
    let err = import_error(&child_with_system_delta(&delta), &child, &[&dirty_base]);
    assert!(
        err.contains("SYSTEM_BASE") && err.contains("dirty"),
        "{err}"
    );
    assert_nothing_left(&child, &before);
}

/// Only read, a dirty utility-VM SOFTWARE hive is used, with a note that the build number read
/// from it may be stale.
#[test]
fn dirty_uvm_software_hive_gives_a_note() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("snapshots/1");
    let mut sw = common::software_hive("17763");
    // primary sequence number bumped, checksum (XOR of the first 127 dwords) kept right
    sw[4] = sw[4].wrapping_add(1);
    let sum = (0..127).fold(0u32, |x, i| {
        x ^ u32::from_le_bytes(sw[i * 4..i * 4 + 4].try_into().unwrap())
    });
    sw[508..512].copy_from_slice(&sum.to_le_bytes());
    let sys = fs::read(shared.join("testdata/hives/yarp-OffHive")).unwrap();
    let bcd = fs::read(shared.join("testdata/bcd/windeploy-uefi-locate.BCD")).unwrap();
    let s = import(&uvm_layer_with_hives(&shared, &sw, &bcd, &sys), &layer, &[]).unwrap();
    assert_eq!(fs::read(layer.join("uvmbuildversion")).unwrap(), b"17763");
    assert!(
        s.notes.iter().any(|n| n.contains("SOFTWARE hive is dirty")),
        "{:?}",
        s.notes
    );
}

/// A directory entry with the legacy `'\0'` typeflag that restates an inherited directory keeps
/// it (Go's archive/tar reads it as a directory), rather than replacing its tree with a file.
#[test]
fn legacy_nul_typeflag_directory_keeps_the_inherited_tree() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("snapshots/1");
    import(&small_base(&shared, |_| {}), &base, &[]).unwrap();
    let mut t = TarBuilder::new();
    t.entry_with_typeflag("Files/Windows/", 0, &[], "", b"");
    let child = tmp.path().join("snapshots/2");
    let s = import(&t.finish(), &child, &[&base]).unwrap();
    let cim = cimfs::Cim::open(&s.cim_path).unwrap();
    assert!(cim.stat(r"Files\Windows").unwrap().is_directory);
    assert_eq!(
        read_cim_file(&cim, r"Files\Windows\notepad.exe"),
        b"MZ notepad"
    );
}

/// A fork must share its parent's `cim-layers` folder: the same folder spelled another way
/// (`./`, an absolute path, `x/..`) is that folder; another folder is refused.
#[test]
fn parent_folder_is_compared_as_a_folder_not_as_text() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("snapshots");
    import(&small_base(&shared, |_| {}), &snap.join("1"), &[]).unwrap();
    let mut t = TarBuilder::new();
    t.file("Files/new.txt", &[], b"new");
    let child = t.finish();
    import(&child, &snap.join("./2"), &[&snap.join("1")]).unwrap();
    fs::create_dir_all(snap.join("x")).unwrap();
    import(&child, &snap.join("3"), &[&snap.join("x/../1")]).unwrap();
    let other = tmp.path().join("other/4");
    let err = import_error(&child, &other, &[&snap.join("1")]);
    assert!(
        err.contains("a fork must share its parent's folder"),
        "{err}"
    );
}
