//! Writes seeds for the `decode` target into corpus/decode (run from crates/bcd/fuzz:
//! `cargo run --example make_seeds [DIR]`): a small utility-VM-like store built here, the same
//! store after the CIM boot edits, element values of every format, and, when DIR is given, every
//! file in DIR (real BCD stores) with the mode byte in front. Nothing is written into the repo.

use std::path::Path;

use bcd::{ids, DeviceElement, ElementValue, Uuid, BOOTMGR};
use regf::Hive;

fn seed(name: &str, mode: u8, data: &[u8]) {
    let dir = Path::new("corpus/decode");
    std::fs::create_dir_all(dir).expect("corpus dir");
    let mut bytes = vec![mode];
    bytes.extend_from_slice(data);
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn element_seed(name: &str, id: u32, v: &ElementValue) {
    let (kind, data) = v.encode();
    let mut b = id.to_le_bytes().to_vec();
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&data);
    seed(name, 1, &b);
}

fn main() {
    let loader = Uuid::from_u128(0x2a8f2b41_0e1c_11ef_9b6a_00155d000001);
    let boot = ElementValue::Device(DeviceElement {
        options: Uuid::nil(),
        device: bcd::Device::Boot,
    });
    let text = |s: &str| ElementValue::String(s.into());
    let mut h = Hive::new();
    h.root.name = "NewStoreRoot".into();
    h.create_key("Description")
        .set_string("KeyName", "BCD00000000");
    h.create_key("Objects");
    bcd::create_object(&mut h, &BOOTMGR, 0x1010_0002, Some("Windows Boot Manager")).unwrap();
    for (id, v) in [
        (ids::APPLICATION_DEVICE, boot.clone()),
        (
            ids::APPLICATION_PATH,
            text(r"\EFI\Microsoft\Boot\bootmgfw.efi"),
        ),
        (ids::DEFAULT_OBJECT, ElementValue::Object(loader)),
        (0x2400_0001, ElementValue::ObjectList(vec![loader])),
        (0x2500_0004, ElementValue::Integer(30)),
        (0x2600_0010, ElementValue::Boolean(true)),
    ] {
        bcd::set_element(&mut h, &BOOTMGR, id, &v).unwrap();
    }
    bcd::create_object(&mut h, &loader, 0x1020_0003, Some("Microsoft Windows")).unwrap();
    for (id, v) in [
        (ids::APPLICATION_DEVICE, boot.clone()),
        (ids::OS_DEVICE, boot.clone()),
        (
            ids::APPLICATION_PATH,
            text(r"\Windows\system32\winload.efi"),
        ),
        (ids::SYSTEM_ROOT, text(r"\Windows")),
        (0x1200_0005, text("en-US")),
        (
            0x1700_0077,
            ElementValue::IntegerList(vec![1, 2, 0x8000_0000_0000_0000]),
        ),
    ] {
        bcd::set_element(&mut h, &loader, id, &v).unwrap();
    }
    seed("store", 0, &h.to_bytes().unwrap());
    let params = bcd::CimBootParams {
        disk_guid: Uuid::from_u128(1),
        partition_guid: Uuid::from_u128(2),
        cim_root: r"\cim-layers\1.cim".into(),
    };
    bcd::apply_cim_boot_edits(&mut h, &params).unwrap();
    seed("store-edited", 0, &h.to_bytes().unwrap());

    element_seed("boot-device", ids::APPLICATION_DEVICE, &boot);
    for (i, d) in [
        DeviceElement::vmbus(bcd::VMBFS_BOOT_INSTANCE),
        DeviceElement::gpt_partition(Uuid::from_u128(1), Uuid::from_u128(2)),
        DeviceElement::cimfs(Uuid::from_u128(3), bcd::CIMFS_OPTIONS),
        DeviceElement::composite(0, bcd::COMPOSITE_OPTIONS),
    ]
    .into_iter()
    .enumerate()
    {
        element_seed(
            &format!("device-{i}"),
            ids::OS_DEVICE,
            &ElementValue::Device(d),
        );
    }
    element_seed("string", ids::DESCRIPTION, &text("Windows Boot Manager"));
    element_seed("object", ids::DEFAULT_OBJECT, &ElementValue::Object(loader));
    element_seed(
        "objects",
        0x2400_0001,
        &ElementValue::ObjectList(vec![loader, BOOTMGR]),
    );
    element_seed("integer", 0x2500_0004, &ElementValue::Integer(30));
    element_seed("boolean", 0x2600_0010, &ElementValue::Boolean(true));
    element_seed(
        "integers",
        0x1700_0077,
        &ElementValue::IntegerList(vec![5, 6]),
    );

    if let Some(dir) = std::env::args().nth(1) {
        for e in std::fs::read_dir(&dir).expect("read DIR").flatten() {
            let p = e.path();
            if let (Some(name), Ok(bytes)) = (p.file_name(), std::fs::read(&p)) {
                seed(&format!("real-{}", name.to_string_lossy()), 0, &bytes);
            }
        }
    }
    println!("seeds written to corpus/decode");
}
