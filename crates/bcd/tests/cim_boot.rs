//! hcsshim's eleven bcdedit edits applied to a utility-VM-shaped store and to a real store:
//! re-read through regf with every element decoded, read by hivexsh, listed by `show`.

use std::path::{Path, PathBuf};
use std::process::Command;

use bcd::{
    apply_cim_boot_edits, create_object, ids, set_element, show, CimBootParams, Device,
    DeviceElement, ElementValue, Error, Store, BOOTMGR, BOOT_CONTAINER_ID, CIMFS_OPTIONS,
    COMPOSITE_OPTIONS, VMBFS_BOOT_INSTANCE,
};
use regf::Hive;
use uuid::{uuid, Uuid};

const LOADER: Uuid = uuid!("2a8f2b41-0e1c-11ef-9b6a-00155d000001");
const DISK: Uuid = uuid!("313f38e4-2a0c-41f6-9607-964d55ca475a");
const PART: Uuid = uuid!("f03f1d68-34f3-49c7-a7a3-7f74d4f903ad");

fn params() -> CimBootParams {
    CimBootParams::for_cim(DISK, PART, Path::new("/snapshots/cim-layers/12.cim")).unwrap()
}

fn boot() -> ElementValue {
    ElementValue::Device(DeviceElement {
        options: Uuid::nil(),
        device: Device::Boot,
    })
}

/// A store like the one a Windows base layer's utility VM carries: created by
/// `bcdedit /createstore` (root NewStoreRoot, format 1.3), a boot manager and one loader.
fn uvm_store() -> Hive {
    let mut h = Hive::new();
    h.minor_version = 3;
    h.root.name = "NewStoreRoot".into();
    h.create_key("Description")
        .set_string("KeyName", "BCD00000000");
    h.create_key("Objects");
    create_object(&mut h, &BOOTMGR, 0x1010_0002, Some("Windows Boot Manager")).unwrap();
    set_element(&mut h, &BOOTMGR, ids::APPLICATION_DEVICE, &boot()).unwrap();
    let s = |t: &str| ElementValue::String(t.into());
    set_element(
        &mut h,
        &BOOTMGR,
        ids::APPLICATION_PATH,
        &s("\\EFI\\Microsoft\\Boot\\bootmgfw.efi"),
    )
    .unwrap();
    set_element(
        &mut h,
        &BOOTMGR,
        ids::DEFAULT_OBJECT,
        &ElementValue::Object(LOADER),
    )
    .unwrap();
    set_element(
        &mut h,
        &BOOTMGR,
        0x2400_0001,
        &ElementValue::ObjectList(vec![LOADER]),
    )
    .unwrap();
    set_element(&mut h, &BOOTMGR, 0x2500_0004, &ElementValue::Integer(0)).unwrap();
    create_object(&mut h, &LOADER, 0x1020_0003, Some("Microsoft Windows")).unwrap();
    set_element(&mut h, &LOADER, ids::APPLICATION_DEVICE, &boot()).unwrap();
    set_element(&mut h, &LOADER, ids::OS_DEVICE, &boot()).unwrap();
    set_element(
        &mut h,
        &LOADER,
        ids::APPLICATION_PATH,
        &s("\\Windows\\system32\\winload.efi"),
    )
    .unwrap();
    set_element(&mut h, &LOADER, ids::SYSTEM_ROOT, &s("\\Windows")).unwrap();
    set_element(&mut h, &LOADER, 0x1200_0005, &s("en-US")).unwrap();
    h
}

fn value(store: &Store, object: &Uuid, id: u32) -> ElementValue {
    store
        .object(object)
        .unwrap_or_else(|| panic!("no object {object}"))
        .element(id)
        .unwrap_or_else(|| panic!("no element {id:08x} in {object}"))
        .decode()
        .unwrap()
}

/// Every element the edits write, decoded as intended.
fn check_edited(hive: &Hive, default: &Uuid) {
    let st = Store::open(hive).unwrap();
    assert_eq!(st.default_object().unwrap(), *default);
    let composite = ElementValue::Device(DeviceElement {
        options: COMPOSITE_OPTIONS,
        device: Device::Composite {
            signature: Uuid::nil(),
            version: 0,
            primary_offset: 0,
            secondary_offset: 0,
        },
    });
    assert_eq!(
        value(&st, default, ids::RESTART_ON_FAILURE),
        ElementValue::Boolean(true)
    );
    assert_eq!(value(&st, default, ids::APPLICATION_DEVICE), composite);
    assert_eq!(value(&st, default, ids::OS_DEVICE), composite);
    assert_eq!(
        value(&st, default, ids::APPLICATION_PATH),
        ElementValue::String("\\UtilityVM\\Files\\Windows\\System32\\winload.efi".into())
    );
    assert_eq!(
        value(&st, default, ids::SYSTEM_ROOT),
        ElementValue::String("\\UtilityVM\\Files\\Windows".into())
    );
    let cimfs = st.object(&CIMFS_OPTIONS).unwrap();
    assert_eq!(cimfs.key_name(), "{763e9fea-502d-434f-aad9-5fabe9c91a7b}");
    assert_eq!(cimfs.object_type(), Some(0x3000_0000));
    assert_eq!(
        value(&st, &CIMFS_OPTIONS, ids::DESCRIPTION),
        ElementValue::String("CimFS Device Options".into())
    );
    assert_eq!(
        value(&st, &CIMFS_OPTIONS, ids::CIMFS_PARENT_DEVICE),
        ElementValue::Device(DeviceElement::vmbus(VMBFS_BOOT_INSTANCE))
    );
    assert_eq!(
        value(&st, &CIMFS_OPTIONS, ids::CIMFS_ROOT_DIRECTORY),
        ElementValue::String("\\cim-layers\\12.cim".into())
    );
    let comp = st.object(&COMPOSITE_OPTIONS).unwrap();
    assert_eq!(comp.object_type(), Some(0x3000_0000));
    assert_eq!(
        value(&st, &COMPOSITE_OPTIONS, ids::DESCRIPTION),
        ElementValue::String("Composite Device Options".into())
    );
    assert_eq!(
        value(&st, &COMPOSITE_OPTIONS, ids::PRIMARY_DEVICE),
        ElementValue::Device(DeviceElement::gpt_partition(DISK, PART))
    );
    assert_eq!(
        value(&st, &COMPOSITE_OPTIONS, ids::SECONDARY_DEVICE),
        ElementValue::Device(DeviceElement::cimfs(BOOT_CONTAINER_ID, CIMFS_OPTIONS))
    );
    // Exactly the element keys bcdedit would have: lower-case 8-digit names.
    let names: Vec<String> = comp
        .elements()
        .iter()
        .map(|e| format!("{:08x}", e.id))
        .collect();
    assert_eq!(names, ["12000004", "3100000e", "3100000f"]);
    let raw = hive
        .key("Objects\\{e1787220-d17f-49e7-977a-d8fe4c8537e2}\\Elements\\3100000e")
        .unwrap();
    assert_eq!(raw.name, "3100000e");
    assert_eq!(raw.value("Element").unwrap().kind, regf::REG_BINARY);
    assert_eq!(
        st.object(default)
            .unwrap()
            .element(ids::RESTART_ON_FAILURE)
            .unwrap()
            .value
            .unwrap()
            .data,
        [1]
    );
}

fn save_and_reopen(h: &Hive, dir: &Path) -> (PathBuf, Hive) {
    let p = dir.join("BCD");
    h.save(&p).unwrap();
    (p.clone(), Hive::open(&p).unwrap())
}

fn hex_list(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// hivexsh reads the saved file and sees the same values.
fn hivex_reads(path: &Path, default: &Uuid) {
    if Command::new("hivexsh").arg("--help").output().is_err() {
        eprintln!("skipping: hivexsh not found");
        return;
    }
    let script = format!(
        "cd Objects\\{{{default}}}\\Elements\\16000053\nlsval\n\
         cd ..\\11000001\nlsval\n\
         cd ..\\22000002\nlsval\n\
         cd \\Objects\\{{e1787220-d17f-49e7-977a-d8fe4c8537e2}}\\Elements\\3100000e\nlsval\n\
         cd ..\\3100000f\nlsval\n\
         cd \\Objects\\{{763e9fea-502d-434f-aad9-5fabe9c91a7b}}\\Elements\\31000012\nlsval\n\
         cd ..\\32000011\nlsval\n\
         cd ..\\..\\Description\nlsval\n"
    );
    let mut child = Command::new("hivexsh")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let composite = DeviceElement::composite(0, COMPOSITE_OPTIONS).encode();
    let want = [
        "\"Element\"=hex(3):01".to_string(),
        format!("\"Element\"=hex(3):{}", hex_list(&composite)),
        // hivexsh doubles backslashes inside strings.
        "\"Element\"=\"\\\\UtilityVM\\\\Files\\\\Windows\"".to_string(),
        format!(
            "\"Element\"=hex(3):{}",
            hex_list(&DeviceElement::gpt_partition(DISK, PART).encode())
        ),
        format!(
            "\"Element\"=hex(3):{}",
            hex_list(&DeviceElement::cimfs(BOOT_CONTAINER_ID, CIMFS_OPTIONS).encode())
        ),
        format!(
            "\"Element\"=hex(3):{}",
            hex_list(&DeviceElement::vmbus(VMBFS_BOOT_INSTANCE).encode())
        ),
        "\"Element\"=\"\\\\cim-layers\\\\12.cim\"".to_string(),
        "\"Type\"=dword:30000000".to_string(),
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, want, "hivexsh output:\n{text}");
}

#[test]
fn edits_on_a_utility_vm_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = uvm_store();
    apply_cim_boot_edits(&mut h, &params()).unwrap();
    check_edited(&h, &LOADER);
    let (path, back) = save_and_reopen(&h, dir.path());
    check_edited(&back, &LOADER);
    // Untouched elements stay.
    let st = Store::open(&back).unwrap();
    assert_eq!(
        value(&st, &LOADER, 0x1200_0005),
        ElementValue::String("en-US".into())
    );
    hivex_reads(&path, &LOADER);

    // The listing decodes every element type written.
    let mut out = Vec::new();
    show(&back, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    for line in [
        "restartonfailure        Yes",
        "device                  composite=0,{e1787220-d17f-49e7-977a-d8fe4c8537e2}",
        "osdevice                composite=0,{e1787220-d17f-49e7-977a-d8fe4c8537e2}",
        "path                    \\UtilityVM\\Files\\Windows\\System32\\winload.efi",
        "systemroot              \\UtilityVM\\Files\\Windows",
        "description             CimFS Device Options",
        "cimfsparentdevice       vmbus={c63c9bdf-5fa5-4208-b03f-6b458b365592}",
        "cimfsrootdirectory      \\cim-layers\\12.cim",
        "description             Composite Device Options",
        "primarydevice           gpt_partition={313f38e4-2a0c-41f6-9607-964d55ca475a};{f03f1d68-34f3-49c7-a7a3-7f74d4f903ad}",
        "secondarydevice         cimfs={b890454c-80de-4e98-a7ab-56b74b4fbd0c},{763e9fea-502d-434f-aad9-5fabe9c91a7b}",
        "default                 {2a8f2b41-0e1c-11ef-9b6a-00155d000001}",
        "displayorder            {2a8f2b41-0e1c-11ef-9b6a-00155d000001}",
        "timeout                 0",
    ] {
        assert!(text.contains(&format!("{line}\n")), "missing {line:?} in\n{text}");
    }
    assert_eq!(text.matches("Device options\n--------------\n").count(), 2);
    assert!(!text.contains("undecodable"), "{text}");
}

#[test]
fn edits_on_a_real_store() {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/bcd/windeploy-uefi-locate.BCD"
    ));
    if !p.is_file() {
        eprintln!("skipping: {} not found", p.display());
        return;
    }
    let mut h = Hive::open(&p).unwrap();
    let default = Store::open(&h).unwrap().default_object().unwrap();
    apply_cim_boot_edits(&mut h, &params()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, back) = save_and_reopen(&h, dir.path());
    check_edited(&back, &default);
    hivex_reads(&path, &default);
}

#[test]
fn failures_leave_the_store_unchanged() {
    let mut h = uvm_store();
    apply_cim_boot_edits(&mut h, &params()).unwrap();
    let before = h.clone();
    // bcdedit /create refuses existing identifiers.
    match apply_cim_boot_edits(&mut h, &params()) {
        Err(Error::ObjectExists(id)) => assert_eq!(id, CIMFS_OPTIONS),
        other => panic!("{other:?}"),
    }
    assert_eq!(h, before);
    // No {bootmgr}, or a default pointing nowhere: {default} does not resolve.
    let mut h = uvm_store();
    h.delete_key("Objects\\{2a8f2b41-0e1c-11ef-9b6a-00155d000001}");
    let before = h.clone();
    assert!(matches!(
        apply_cim_boot_edits(&mut h, &params()),
        Err(Error::NoDefault(_))
    ));
    assert_eq!(h, before);
    let mut h = Hive::new();
    assert!(matches!(
        apply_cim_boot_edits(&mut h, &params()),
        Err(Error::NotAStore(_))
    ));
    let mut bad = params();
    bad.cim_root = String::new();
    assert!(apply_cim_boot_edits(&mut uvm_store(), &bad).is_err());
}

/// A real store made by Windows, or None (after saying the test is skipped) without ../shared.
fn real_store() -> Option<PathBuf> {
    let src = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/bcd/windeploy-uefi-locate.BCD"
    ));
    if src.is_file() {
        Some(src)
    } else {
        eprintln!("skipping: {} not found", src.display());
        None
    }
}

#[test]
fn store_file_is_edited_in_place_and_dirty_files_are_refused() {
    let Some(src) = real_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bcd = dir.path().join("BCD");
    std::fs::copy(&src, &bcd).unwrap();
    assert!(bcd::edit_store_file(&bcd, &params()).unwrap().is_empty());
    let back = Hive::open(&bcd).unwrap();
    let default = Store::open(&back).unwrap().default_object().unwrap();
    check_edited(&back, &default);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Edited again (a processed utility VM imported once more): the earlier run's objects are
    // replaced, and the store ends up as one run would leave it.
    let replaced = bcd::edit_store_file(&bcd, &params()).unwrap();
    assert_eq!(replaced, [CIMFS_OPTIONS, COMPOSITE_OPTIONS]);
    let twice = Hive::open(&bcd).unwrap();
    check_edited(&twice, &default);
    let once_objects = Store::open(&back).unwrap().objects().len();
    assert_eq!(Store::open(&twice).unwrap().objects().len(), once_objects);

    // A hive whose sequence numbers differ was not closed cleanly.
    let dirty = dir.path().join("DIRTY");
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[8] = bytes[8].wrapping_add(1);
    std::fs::write(&dirty, &bytes).unwrap();
    match bcd::edit_store_file(&dirty, &params()) {
        Err(Error::Dirty { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&dirty).unwrap(), bytes);

    // So is one whose base block checksum is wrong (a torn write: its logs hold the base block).
    let torn = dir.path().join("TORN");
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[508] ^= 0x55;
    std::fs::write(&torn, &bytes).unwrap();
    match bcd::edit_store_file(&torn, &params()) {
        Err(Error::Dirty { notes, .. }) => assert!(notes.contains("checksum"), "{notes}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&torn).unwrap(), bytes);
}

/// The store is replaced as `Hive::save` replaces a hive: its mode stays, a symlink's target
/// is what gets edited, and other hard links see the edit.
#[cfg(unix)]
#[test]
fn store_file_keeps_its_mode_symlink_and_hard_links() {
    use std::os::unix::fs::PermissionsExt;
    let Some(src) = real_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("BCD");
    std::fs::copy(&src, &real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = dir.path().join("BCD-other-name");
    std::fs::hard_link(&real, &other).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    bcd::edit_store_file(&link, &params()).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let mode = std::fs::metadata(&real).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read(&real).unwrap(),
        std::fs::read(&other).unwrap()
    );
    let back = Hive::open(&other).unwrap();
    let default = Store::open(&back).unwrap().default_object().unwrap();
    check_edited(&back, &default);
}

/// A key under Elements that is not an element id is shown, not skipped, and never read as one
/// (`+1200004` parses as a hex number but is not eight hex digits).
#[test]
fn stray_element_keys_are_shown_not_read() {
    let mut hive = uvm_store();
    let default = Store::open(&hive).unwrap().default_object().unwrap();
    let object = format!("Objects\\{}", bcd::object_key_name(&default));
    hive.create_key(&format!("{object}\\Elements\\+1200004"))
        .set_value("Element", regf::REG_SZ, regf::encode_sz("sneaky"));
    let store = Store::open(&hive).unwrap();
    let o = store.object(&default).unwrap();
    assert_eq!(o.stray_keys(), ["+1200004"]);
    assert!(o.elements().iter().all(|e| e.id != 0x0120_0004));
    let mut shown = Vec::new();
    bcd::show(&hive, &mut shown).unwrap();
    let shown = String::from_utf8(shown).unwrap();
    assert!(
        shown.contains("<key \"+1200004\" under Elements is not an element id>"),
        "{shown}"
    );
}
