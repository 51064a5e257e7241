//! The real BCD stores in shared/testdata/bcd: every element decodes, every device element
//! re-encodes to the exact stored bytes, and the listing shows what bcdedit would.

use std::path::PathBuf;

use bcd::{show, DeviceElement, ElementValue, Store};

fn testdata() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/bcd"
    ));
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipping: {} not found", d.display());
        None
    }
}

const STORES: &[&str] = &[
    "win10-install-media-efi.BCD",
    "windeploy-uefi-locate.BCD",
    "windeploy-bios-mbr.BCD",
    "windows2go-system-gpt.BCD",
    "bcdsys-empty-createstore.BCD",
];

fn listing(name: &str) -> Option<String> {
    let hive = regf::Hive::open(&testdata()?.join(name)).unwrap();
    let mut out = Vec::new();
    show(&hive, &mut out).unwrap();
    Some(String::from_utf8(out).unwrap())
}

#[test]
fn every_element_decodes_and_devices_reencode_exactly() {
    let Some(dir) = testdata() else {
        return;
    };
    let mut devices = 0;
    for name in STORES {
        let hive = regf::Hive::open(&dir.join(name)).unwrap();
        let store = Store::open(&hive).unwrap();
        for o in store.objects() {
            assert!(o.id().is_some(), "{name}: object key {}", o.key_name());
            for e in o.elements() {
                let v = e
                    .decode()
                    .unwrap_or_else(|r| panic!("{name} {} {:08x}: {r}", o.key_name(), e.id));
                if let ElementValue::Device(d) = &v {
                    let stored = &e.value.unwrap().data;
                    assert_eq!(&d.encode(), stored, "{name} {} {:08x}", o.key_name(), e.id);
                    assert_eq!(&DeviceElement::decode(stored).unwrap(), d);
                    devices += 1;
                }
            }
        }
    }
    assert!(devices >= 10, "only {devices} device elements seen");
}

#[test]
fn default_resolves_through_bootmgr() {
    let Some(dir) = testdata() else {
        return;
    };
    let hive = regf::Hive::open(&dir.join("windeploy-uefi-locate.BCD")).unwrap();
    let store = Store::open(&hive).unwrap();
    let d = store.default_object().unwrap();
    assert!(store.object(&d).is_some());
    assert_eq!(store.object(&d).unwrap().object_type(), Some(0x1020_0003));
    let empty = regf::Hive::open(&dir.join("bcdsys-empty-createstore.BCD")).unwrap();
    assert!(Store::open(&empty).unwrap().default_object().is_err());
}

#[test]
fn listing_decodes_ramdisk_locate_partition_and_boot() {
    let Some(media) = listing("win10-install-media-efi.BCD") else {
        return;
    };
    assert!(
        media.contains("ramdisk=[boot]\\sources\\boot.wim,{7619dcc8-fafe-11d9-b411-000476eba25f}"),
        "{media}"
    );
    assert!(media.contains("Device options\n--------------"), "{media}");
    assert!(media.contains("ramdisksdidevice        boot"), "{media}");
    let Some(locate) = listing("windeploy-uefi-locate.BCD") else {
        return;
    };
    assert!(
        locate.contains("osdevice                locate=custom:22000002"),
        "{locate}"
    );
    assert!(
        locate.contains("device                  gpt_partition={"),
        "{locate}"
    );
    assert!(
        locate.contains("Windows Boot Manager\n--------------------"),
        "{locate}"
    );
    assert!(locate.contains("default                 {"), "{locate}");
    let Some(mbr) = listing("windeploy-bios-mbr.BCD") else {
        return;
    };
    assert!(mbr.contains("mbr_partition=signature 0x"), "{mbr}");
    let Some(w2g) = listing("windows2go-system-gpt.BCD") else {
        return;
    };
    assert!(w2g.contains(
        "gpt_partition={60664987-ce0e-411b-9db7-86248b86bbb2};{17b16537-abcc-4487-9792-e63a0a7dc8b4}"
    ), "{w2g}");
    assert!(!w2g.contains("undecodable"), "{w2g}");
}
