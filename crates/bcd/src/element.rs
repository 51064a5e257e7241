//! BCD element ids, their bcdedit names, and the registry encoding of each element format
//! (bcd.md §1-2): the format nibble of the id decides the value type and byte layout.

use std::fmt;

use uuid::Uuid;

use crate::device::DeviceElement;

/// Element ids this crate writes (bcd.md §2).
pub mod ids {
    /// `description`: the object's display name (string).
    pub const DESCRIPTION: u32 = 0x1200_0004;
    /// `device`: the device the boot application is loaded from (device).
    pub const APPLICATION_DEVICE: u32 = 0x1100_0001;
    /// `path`: the boot application's path on that device (string).
    pub const APPLICATION_PATH: u32 = 0x1200_0002;
    /// `restartonfailure`: restart the machine when the application fails (boolean).
    pub const RESTART_ON_FAILURE: u32 = 0x1600_0053;
    /// `osdevice`: the device the operating system is on (device).
    pub const OS_DEVICE: u32 = 0x2100_0001;
    /// `systemroot`: the Windows directory on the OS device (string).
    pub const SYSTEM_ROOT: u32 = 0x2200_0002;
    /// `default` of the boot manager: the object booted by default (object GUID).
    pub const DEFAULT_OBJECT: u32 = 0x2300_0003;
    /// `primarydevice`: a composite device's first device (device; bcd.md §2).
    pub const PRIMARY_DEVICE: u32 = 0x3100_000E;
    /// `secondarydevice`: a composite device's second device (device; from one source only,
    /// bcd.md §7).
    pub const SECONDARY_DEVICE: u32 = 0x3100_000F;
    /// `cimfsrootdirectory`: path of the CIM file on the CimFS parent device (string; from one
    /// source only, bcd.md §7).
    pub const CIMFS_ROOT_DIRECTORY: u32 = 0x3200_0011;
    /// `cimfsparentdevice`: the device holding the CIM (device).
    pub const CIMFS_PARENT_DEVICE: u32 = 0x3100_0012;
}

/// bcdedit's names for element ids (GC elements.htm, ROS bcd.h; DU-C for the CimFS ones).
/// Ids seen in real stores or written here, and the hypervisor ones beside them (0x250000F0
/// launch type, 0x250000F3-F5 debugger type, port and baud rate: BcdOSLoaderInteger_* in the
/// Windows SDK's element list); others show as `custom:XXXXXXXX`.
const NAMES: &[(u32, &str)] = &[
    (0x1100_0001, "device"),
    (0x1200_0002, "path"),
    (0x1200_0004, "description"),
    (0x1200_0005, "locale"),
    (0x1400_0006, "inherit"),
    (0x1400_0008, "recoverysequence"),
    (0x1500_0011, "debugtype"),
    (0x1500_0013, "debugport"),
    (0x1500_0014, "baudrate"),
    (0x1500_0065, "displaymessage"),
    (0x1500_0066, "displaymessageoverride"),
    (0x1600_0009, "recoveryenabled"),
    (0x1600_000B, "badmemoryaccess"),
    (0x1600_0020, "bootems"),
    (0x1600_0053, "restartonfailure"),
    (0x1600_0060, "isolatedcontext"),
    (0x1700_0077, "allowedinmemorysettings"),
    (0x2100_0001, "osdevice"),
    (0x2200_0002, "systemroot"),
    (0x2300_0003, "resumeobject"),
    (0x2400_0001, "displayorder"),
    (0x2400_0010, "toolsdisplayorder"),
    (0x2500_0004, "timeout"),
    (0x2500_0020, "nx"),
    (0x2500_00C2, "bootmenupolicy"),
    (0x2500_00F0, "hypervisorlaunchtype"),
    (0x2500_00F3, "hypervisordebugtype"),
    (0x2500_00F4, "hypervisordebugport"),
    (0x2500_00F5, "hypervisorbaudrate"),
    (0x2600_00F2, "hypervisordebug"),
    (0x2600_0010, "detecthal"),
    (0x2600_0022, "winpe"),
    (0x2600_00B0, "ems"),
    (0x3100_0003, "ramdisksdidevice"),
    (0x3200_0004, "ramdisksdipath"),
    (0x3100_000E, "primarydevice"),
    (0x3100_000F, "secondarydevice"),
    (0x3200_0011, "cimfsrootdirectory"),
    (0x3100_0012, "cimfsparentdevice"),
];

/// Names that differ in the boot manager's objects (GC: class-2 ids are per application).
const BOOTMGR_NAMES: &[(u32, &str)] = &[
    (0x2300_0003, "default"),
    (0x2300_0006, "resumeobject"),
    (0x2600_0020, "displaybootmenu"),
];

/// bcdedit's name for `id` in an object of type `object_type`, if known.
pub fn element_name(id: u32, object_type: Option<u32>) -> Option<&'static str> {
    // Boot manager objects: {bootmgr} 0x10100002 and {fwbootmgr} 0x10100001.
    let bootmgr = matches!(object_type, Some(0x1010_0001) | Some(0x1010_0002));
    BOOTMGR_NAMES
        .iter()
        .filter(|_| bootmgr)
        .chain(NAMES)
        .find(|(i, _)| *i == id)
        .map(|(_, n)| *n)
}

/// Element format: bits 24-27 of the id (bcd.md §1).
pub fn element_format(id: u32) -> u32 {
    (id >> 24) & 0xF
}

/// The decoded value of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementValue {
    /// Format 1, a device: REG_BINARY options GUID and device record.
    Device(DeviceElement),
    /// Format 2, a string: REG_SZ.
    String(String),
    /// Format 3, one object: REG_SZ holding a braced GUID.
    Object(Uuid),
    /// Format 4, a list of objects: REG_MULTI_SZ of braced GUIDs.
    ObjectList(Vec<Uuid>),
    /// Format 5, an integer: REG_BINARY, normally 8 bytes little-endian.
    Integer(u64),
    /// Format 6, a boolean: REG_BINARY of one byte.
    Boolean(bool),
    /// Format 7, a list of integers: REG_BINARY of 8-byte little-endian numbers.
    IntegerList(Vec<u64>),
}

fn guid_text(g: &Uuid) -> String {
    format!("{{{g}}}")
}

fn parse_guid(s: &str) -> Option<Uuid> {
    // uuid's parser takes the braced Microsoft form as well as the plain one.
    Uuid::parse_str(s.trim()).ok()
}

/// Little-endian integer of 1..=8 bytes, zero-extended (older media store 1 or 3 bytes).
fn short_int(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

impl ElementValue {
    /// The format nibble this value belongs to.
    pub fn format(&self) -> u32 {
        match self {
            ElementValue::Device(_) => 1,
            ElementValue::String(_) => 2,
            ElementValue::Object(_) => 3,
            ElementValue::ObjectList(_) => 4,
            ElementValue::Integer(_) => 5,
            ElementValue::Boolean(_) => 6,
            ElementValue::IntegerList(_) => 7,
        }
    }

    /// Registry value type and data as bcdedit stores them (bcd.md §1 table).
    pub fn encode(&self) -> (u32, Vec<u8>) {
        match self {
            ElementValue::Device(d) => (regf::REG_BINARY, d.encode()),
            ElementValue::String(s) => (regf::REG_SZ, regf::encode_sz(s)),
            ElementValue::Object(g) => (regf::REG_SZ, regf::encode_sz(&guid_text(g))),
            ElementValue::ObjectList(l) => {
                let texts: Vec<String> = l.iter().map(guid_text).collect();
                (regf::REG_MULTI_SZ, regf::encode_multi_sz(&texts))
            }
            ElementValue::Integer(v) => (regf::REG_BINARY, v.to_le_bytes().to_vec()),
            ElementValue::Boolean(b) => (regf::REG_BINARY, vec![u8::from(*b)]),
            ElementValue::IntegerList(l) => (
                regf::REG_BINARY,
                l.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        }
    }

    /// Decodes the registry data of element `id`.
    pub fn decode(id: u32, kind: u32, data: &[u8]) -> Result<ElementValue, String> {
        let format = element_format(id);
        let want = match format {
            2..=3 => regf::REG_SZ,
            4 => regf::REG_MULTI_SZ,
            1 | 5..=7 => regf::REG_BINARY,
            f => return Err(format!("unknown element format {f}")),
        };
        if kind != want {
            return Err(format!(
                "format {format} element stored as registry type {kind}, expected {want}"
            ));
        }
        let string = || regf::decode_utf16z(data);
        Ok(match format {
            1 => ElementValue::Device(DeviceElement::decode(data)?),
            2 => ElementValue::String(string()),
            3 => {
                let s = string();
                ElementValue::Object(
                    parse_guid(&s).ok_or(format!("{} is not a GUID", crate::error::quote(&s)))?,
                )
            }
            4 => {
                let units = regf::format::utf16le_units(data);
                let mut out = Vec::new();
                for part in units.split(|&u| u == 0).take_while(|p| !p.is_empty()) {
                    let s = String::from_utf16_lossy(part);
                    out.push(
                        parse_guid(&s)
                            .ok_or(format!("{} is not a GUID", crate::error::quote(&s)))?,
                    );
                }
                ElementValue::ObjectList(out)
            }
            5 => ElementValue::Integer(
                short_int(data).ok_or(format!("integer of {} bytes", data.len()))?,
            ),
            6 => ElementValue::Boolean(
                short_int(data).ok_or(format!("boolean of {} bytes", data.len()))? != 0,
            ),
            _ => {
                if !data.len().is_multiple_of(8) {
                    return Err(format!("integer list of {} bytes", data.len()));
                }
                ElementValue::IntegerList(
                    data.chunks_exact(8)
                        .map(|c| short_int(c).unwrap_or(0))
                        .collect(),
                )
            }
        })
    }
}

impl fmt::Display for ElementValue {
    /// bcdedit `/enum /v` style: GUIDs in braces, booleans Yes/No, integers in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementValue::Device(d) => write!(f, "{d}"),
            ElementValue::String(s) => write!(f, "{s}"),
            ElementValue::Object(g) => write!(f, "{}", guid_text(g)),
            ElementValue::ObjectList(l) => {
                let texts: Vec<String> = l.iter().map(guid_text).collect();
                write!(f, "{}", texts.join(" "))
            }
            ElementValue::Integer(v) => write!(f, "{v}"),
            ElementValue::Boolean(b) => write!(f, "{}", if *b { "Yes" } else { "No" }),
            ElementValue::IntegerList(l) => {
                let texts: Vec<String> = l.iter().map(|v| format!("{v:#x}")).collect();
                write!(f, "{}", texts.join(" "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_bcd_md() {
        let (k, d) = ElementValue::Boolean(true).encode();
        assert_eq!((k, d), (regf::REG_BINARY, vec![1]));
        let (k, d) = ElementValue::String("\\UtilityVM\\Files\\Windows".into()).encode();
        assert_eq!(k, regf::REG_SZ);
        assert_eq!(d.len(), 50);
        let (k, d) =
            ElementValue::String("\\UtilityVM\\Files\\Windows\\System32\\winload.efi".into())
                .encode();
        assert_eq!((k, d.len()), (regf::REG_SZ, 92));
        let g = uuid::uuid!("9dea862c-5cdd-4e70-acc1-f32b344d4795");
        let (k, d) = ElementValue::Object(g).encode();
        assert_eq!((k, d.len()), (regf::REG_SZ, 78));
        assert_eq!(
            ElementValue::decode(ids::DEFAULT_OBJECT, k, &d).unwrap(),
            ElementValue::Object(g)
        );
        let (k, d) = ElementValue::Integer(30).encode();
        assert_eq!(d, 30u64.to_le_bytes());
        assert_eq!(
            ElementValue::decode(0x2500_0004, k, &d).unwrap(),
            ElementValue::Integer(30)
        );
        // Short integers of old media are zero-extended.
        assert_eq!(
            ElementValue::decode(0x2500_0004, regf::REG_BINARY, &[5, 0, 0]).unwrap(),
            ElementValue::Integer(5)
        );
        let l = ElementValue::ObjectList(vec![g, Uuid::nil()]);
        let (k, d) = l.encode();
        assert_eq!(ElementValue::decode(0x2400_0001, k, &d).unwrap(), l);
    }

    #[test]
    fn wrong_types_are_reported() {
        assert!(ElementValue::decode(ids::RESTART_ON_FAILURE, regf::REG_SZ, &[1, 0]).is_err());
        assert!(ElementValue::decode(0x2500_0004, regf::REG_BINARY, &[0; 9]).is_err());
        assert!(ElementValue::decode(ids::DEFAULT_OBJECT, regf::REG_SZ, &[b'x', 0]).is_err());
    }

    #[test]
    fn names_depend_on_object_class() {
        assert_eq!(
            element_name(0x2300_0003, Some(0x1010_0002)),
            Some("default")
        );
        assert_eq!(
            element_name(0x2300_0003, Some(0x1020_0003)),
            Some("resumeobject")
        );
        assert_eq!(
            element_name(0x3100_0012, Some(0x3000_0000)),
            Some("cimfsparentdevice")
        );
        assert_eq!(element_name(0x1600_0053, None), Some("restartonfailure"));
        // The hypervisor settings of the real stores: debugger type, port and baud rate.
        assert_eq!(
            element_name(0x2500_00F0, None),
            Some("hypervisorlaunchtype")
        );
        assert_eq!(element_name(0x2500_00F3, None), Some("hypervisordebugtype"));
        assert_eq!(element_name(0x2500_00F5, None), Some("hypervisorbaudrate"));
    }
}
