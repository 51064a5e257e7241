//! Fuzz target: BCD stores and element values. Bit 0 of the first byte picks the input kind:
//!   0: the rest is a hive. It is parsed (strict and lenient), listed with `show`, every element
//!      of every object is decoded, and hcsshim's CIM boot edits are applied to a copy, whose
//!      bytes must parse again and list.
//!   1: one element value: u32 element id, u32 registry type, then the data; also the data as
//!      a device element on its own.
//! A decoded value must encode to data that decodes to the same value.
#![no_main]

use bcd::{DeviceElement, ElementValue, Store};
use libfuzzer_sys::fuzz_target;

fn element(id: u32, kind: u32, data: &[u8]) {
    if let Ok(v) = ElementValue::decode(id, kind, data) {
        let _ = v.to_string();
        let (k2, d2) = v.encode();
        assert_eq!(ElementValue::decode(id, k2, &d2).as_ref(), Ok(&v));
    }
}

fn device(data: &[u8]) {
    if let Ok(d) = DeviceElement::decode(data) {
        assert_eq!(DeviceElement::decode(&d.encode()).as_ref(), Ok(&d));
    }
}

fn store(hive: &regf::Hive) {
    let mut sink = Vec::new();
    let _ = bcd::show(hive, &mut sink);
    let Ok(store) = Store::open(hive) else {
        return;
    };
    let _ = store.default_object();
    for o in store.objects() {
        let _ = (o.id(), o.object_type(), o.key_name());
        for e in o.elements() {
            let _ = bcd::element_name(e.id, o.object_type());
            if let Some(v) = e.value {
                element(e.id, v.kind, &v.data);
            }
            let _ = e.decode();
        }
    }
    let params = bcd::CimBootParams {
        disk_guid: bcd::Uuid::from_u128(0x313f38e4_2a0c_41f6_9607_964d55ca475a),
        partition_guid: bcd::Uuid::from_u128(0xf03f1d68_34f3_49c7_a7a3_7f74d4f903ad),
        cim_root: r"\cim-layers\12.cim".into(),
    };
    let mut edited = hive.clone();
    if bcd::apply_cim_boot_edits(&mut edited, &params).is_ok() {
        if let Ok(bytes) = edited.to_bytes() {
            let again = regf::Hive::parse(&bytes).expect("edited store parses");
            let mut sink = Vec::new();
            bcd::show(&again, &mut sink).expect("edited store lists");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        for hive in [regf::Hive::parse(rest), regf::Hive::parse_lenient(rest)]
            .into_iter()
            .flatten()
        {
            store(&hive);
        }
    } else if rest.len() >= 8 {
        let id = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        element(id, kind, &rest[8..]);
        device(&rest[8..]);
    }
});
