//! Property tests: element values and device records round-trip through their encodings,
//! and arbitrary bytes decode to an error or a value, never a panic.

use bcd::{Device, DeviceElement, ElementValue};
use proptest::prelude::*;
use uuid::Uuid;

fn guid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn path() -> impl Strategy<Value = String> {
    "[A-Za-z0-9\\\\._ -]{0,40}"
}

fn device() -> impl Strategy<Value = Device> {
    let leaf = prop_oneof![
        Just(Device::Boot),
        (guid(), guid()).prop_map(|(disk, partition)| Device::GptPartition { disk, partition }),
        (any::<u32>(), any::<u64>()).prop_map(|(disk_signature, offset)| Device::MbrPartition {
            disk_signature,
            offset
        }),
        (0u32..2, any::<u32>(), path()).prop_map(|(kind, element, path)| Device::Locate {
            kind,
            element,
            parent_offset: 0,
            path
        }),
        (guid(), guid()).prop_map(|(interface_type, instance)| Device::VmBus {
            interface_type,
            instance
        }),
        (guid(), any::<u32>()).prop_map(|(target_mount_volume, version)| Device::Cimfs {
            target_mount_volume,
            version,
            parent_offset: 0,
            root_path_offset: 0,
            root_path_length: 0,
        }),
        (guid(), any::<u32>()).prop_map(|(signature, version)| Device::Composite {
            signature,
            version,
            primary_offset: 0,
            secondary_offset: 0,
        }),
    ];
    leaf.prop_recursive(2, 4, 1, |inner| {
        (inner, path()).prop_map(|(source, path)| Device::Ramdisk {
            source: Box::new(source),
            path,
        })
    })
}

fn value() -> impl Strategy<Value = (u32, ElementValue)> {
    prop_oneof![
        (guid(), device()).prop_map(|(options, device)| (
            0x1100_0001,
            ElementValue::Device(DeviceElement { options, device })
        )),
        path().prop_map(|s| (0x1200_0002, ElementValue::String(s))),
        guid().prop_map(|g| (0x2300_0003, ElementValue::Object(g))),
        prop::collection::vec(guid(), 0..5)
            .prop_map(|l| (0x2400_0001, ElementValue::ObjectList(l))),
        any::<u64>().prop_map(|v| (0x2500_0004, ElementValue::Integer(v))),
        any::<bool>().prop_map(|b| (0x1600_0053, ElementValue::Boolean(b))),
        prop::collection::vec(any::<u64>(), 0..5)
            .prop_map(|l| (0x1700_000A, ElementValue::IntegerList(l))),
    ]
}

proptest! {
    #[test]
    fn values_round_trip((id, v) in value()) {
        let (kind, data) = v.encode();
        prop_assert_eq!(ElementValue::decode(id, kind, &data).unwrap(), v);
    }

    #[test]
    fn arbitrary_device_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..300), size in 0u32..400, ty in 0u32..12) {
        if data.len() >= 28 {
            data[16..20].copy_from_slice(&ty.to_le_bytes());
            data[24..28].copy_from_slice(&size.to_le_bytes());
        }
        if let Ok(d) = DeviceElement::decode(&data) {
            let _ = d.to_string();
        }
        let _ = ElementValue::decode(0x2400_0001, 7, &data);
        let _ = ElementValue::decode(0x1700_000A, 3, &data);
    }
}
