//! A text listing of every object and element of a store, in the manner of
//! `bcdedit /enum all /v`: identifiers as GUIDs, elements by bcdedit name, devices decoded.

use std::io::Write;

use regf::Hive;

use crate::element::{element_name, ElementValue};
use crate::error::Result;
use crate::store::Store;

/// Heading bcdedit prints for an object type (GC objects.htm).
fn type_heading(object_type: Option<u32>) -> String {
    match object_type {
        Some(0x1010_0001) => "Firmware Boot Manager".into(),
        Some(0x1010_0002) => "Windows Boot Manager".into(),
        Some(0x101F_FFFF) => "Firmware Application (101fffff)".into(),
        Some(0x1020_0003) => "Windows Boot Loader".into(),
        Some(0x1020_0004) => "Resume from Hibernate".into(),
        Some(0x1020_0005) => "Windows Memory Tester".into(),
        Some(0x3000_0000) => "Device options".into(),
        Some(t) if t & 0xF000_0000 == 0x2000_0000 => "Inherited settings".into(),
        Some(t) => format!("Object of type {t:#010x}"),
        None => "Object without a type".into(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes the listing of every object (ordered by type, then identifier) to `out`. Elements
/// that do not decode are shown with their raw bytes and the reason instead of failing.
pub fn show(hive: &Hive, out: &mut dyn Write) -> Result<()> {
    let store = Store::open(hive)?;
    let mut objects = store.objects();
    objects.sort_by_key(|o| {
        (
            o.object_type().unwrap_or(u32::MAX),
            o.key_name().to_lowercase(),
        )
    });
    for (n, o) in objects.iter().enumerate() {
        if n > 0 {
            writeln!(out)?;
        }
        let heading = type_heading(o.object_type());
        writeln!(out, "{heading}")?;
        writeln!(out, "{}", "-".repeat(heading.len()))?;
        writeln!(out, "{:<24}{}", "identifier", o.key_name())?;
        for e in o.elements() {
            let name = element_name(e.id, o.object_type())
                .map(str::to_string)
                .unwrap_or_else(|| format!("custom:{:08x}", e.id));
            match e.decode() {
                // Lists continue on following lines, aligned like bcdedit's displayorder.
                Ok(ElementValue::ObjectList(list)) => {
                    let mut label = name.as_str();
                    for g in &list {
                        writeln!(out, "{label:<24}{{{g}}}")?;
                        label = "";
                    }
                    if list.is_empty() {
                        writeln!(out, "{name}")?;
                    }
                }
                Ok(v) => writeln!(out, "{name:<24}{v}")?,
                Err(reason) => match e.value {
                    Some(v) => writeln!(
                        out,
                        "{name:<24}<undecodable: {reason}; type {} data {}>",
                        v.kind,
                        hex(&v.data)
                    )?,
                    None => writeln!(out, "{name:<24}<undecodable: {reason}>")?,
                },
            }
        }
        for key in o.stray_keys() {
            writeln!(
                out,
                "{:<24}<key {key:?} under Elements is not an element id>",
                "?"
            )?;
        }
    }
    Ok(())
}
