//! Device elements (format 1): a 16-byte options-object GUID followed by a device record
//! (type, flags, size, reserved, identifier). Encoders for the kinds hcsshim's bcdedit calls
//! write, decoders for those plus the kinds seen in real stores (bcd.md §4).

use std::fmt;

use regf::format::{le_u32, le_u64};
use uuid::Uuid;

use crate::guessed::*;

// Device record types as stored on disk (bcd.md §4.2, not the bcd.dll API numbering).
/// Block-IO device: disk, ramdisk, file or VHD, told apart by a sub-type at record offset 0x10.
pub const DEVICE_TYPE_BLOCK_IO: u32 = 0;
/// Device type `boot`: the device the boot manager was loaded from (bcd.md §4.3).
pub const DEVICE_TYPE_BOOT: u32 = 5;
/// Device type of a GPT or MBR partition (`partition=`, `gpt_partition=`; bcd.md §4.4).
pub const DEVICE_TYPE_PARTITION_EX: u32 = 6;
/// Device type `locate`: whichever device holds a given file (bcd.md §4.5).
pub const DEVICE_TYPE_LOCATE: u32 = 8;

/// Size every fixed-size record (boot, partition) is written with: sizeof(BOOT_ENVIRONMENT_DEVICE).
pub const FIXED_RECORD_SIZE: u32 = 0x48;
const HEADER: usize = 16;
/// Block-IO sub-type of a ramdisk (bcd.md §4.5).
const BLOCK_IO_RAMDISK: u32 = 3;
/// Nested records are followed at most this deep (a hostile record could nest forever).
const MAX_NESTING: usize = 4;

/// A decoded device record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// `boot`.
    Boot,
    /// `gpt_partition={disk};{partition}`.
    GptPartition {
        /// GPT disk GUID.
        disk: Uuid,
        /// Unique GUID of the partition.
        partition: Uuid,
    },
    /// An MBR partition: disk signature and the partition's byte offset.
    MbrPartition {
        /// MBR disk signature.
        disk_signature: u32,
        /// Byte offset of the partition on the disk.
        offset: u64,
    },
    /// `locate`: search for the file named by `element` (kind 0) or by `path`.
    Locate {
        /// Locate kind (record offset 0x10): 0 searches for the path an element holds.
        kind: u32,
        /// Id of the element whose path is searched for, e.g. 0x22000002 (record offset 0x14).
        element: u32,
        /// Offset of an inline parent device record, 0 for none (record offset 0x18).
        parent_offset: u32,
        /// The path searched for, when given inline (empty otherwise).
        path: String,
    },
    /// `ramdisk=[<source>]<path>`.
    Ramdisk {
        /// The device holding the image file (an inline nested record).
        source: Box<Device>,
        /// Path of the image file on that device, e.g. `\sourcesoot.wim`.
        path: String,
    },
    /// `vmbus={instance}`.
    VmBus {
        /// VMBus interface type GUID; which one bcdedit writes is a guess (bcd.md §4.6).
        interface_type: Uuid,
        /// VMBus interface instance GUID, the one given in the bcdedit syntax.
        instance: Uuid,
    },
    /// `cimfs={target_mount_volume},{options}`; offsets of inline parent/root (0 = none).
    Cimfs {
        /// GUID of the volume the CIM is mounted as (hcsshim's "bootContainerID").
        target_mount_volume: Uuid,
        /// Record version (2 is the only one known, bcd.md §4.7).
        version: u32,
        /// Offset of an inline parent device record, 0 for none.
        parent_offset: u32,
        /// Offset of an inline UTF-16 root path, 0 for none.
        root_path_offset: u32,
        /// Length of that root path in bytes, 0 for none.
        root_path_length: u32,
    },
    /// `composite=<version>,{options}`; offsets of inline primary/secondary (0 = none).
    Composite {
        /// The record's "Signature" GUID; meaning unknown (bcd.md §4.8).
        signature: Uuid,
        /// Record version; the number in `composite=0,...` (bcd.md §4.8).
        version: u32,
        /// Offset of an inline primary device record, 0 for none.
        primary_offset: u32,
        /// Offset of an inline secondary device record, 0 for none.
        secondary_offset: u32,
    },
    /// Any other record, kept as bytes.
    Unknown {
        /// The record's device type.
        device_type: u32,
        /// The record's flags word.
        flags: u32,
        /// The whole record, header included.
        record: Vec<u8>,
    },
}

/// A device element's value: the options object (nil = none) and the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceElement {
    /// Object holding further settings of the device (e.g. a ramdisk's SDI file); nil for none.
    pub options: Uuid,
    /// The device record.
    pub device: Device,
}

/// A GUID in the Windows mixed-endian layout (bcd.md §3).
fn guid_at(b: &[u8], off: usize) -> Option<Uuid> {
    let s = b.get(off..off + 16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    Some(Uuid::from_bytes_le(a))
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_guid(b: &mut [u8], off: usize, g: &Uuid) {
    b[off..off + 16].copy_from_slice(&g.to_bytes_le());
}

fn header(device_type: u32, flags: u32, size: u32) -> Vec<u8> {
    let mut r = vec![0u8; size as usize];
    put_u32(&mut r, 0, device_type);
    put_u32(&mut r, 4, flags);
    put_u32(&mut r, 8, size);
    r
}

impl Device {
    /// The device record bytes (without the options GUID).
    pub fn encode_record(&self) -> Vec<u8> {
        match self {
            Device::Boot => header(DEVICE_TYPE_BOOT, 0, FIXED_RECORD_SIZE),
            Device::GptPartition { disk, partition } => {
                // rec+0x10 partition GUID, +0x20 parent sub-type 0 (hard disk), +0x24 style 0
                // (GPT), +0x28 disk GUID (bcd.md §4.4, checked on the Windows2Go store).
                let mut r = header(DEVICE_TYPE_PARTITION_EX, 0, FIXED_RECORD_SIZE);
                put_guid(&mut r, 0x10, partition);
                put_guid(&mut r, 0x28, disk);
                r
            }
            Device::MbrPartition {
                disk_signature,
                offset,
            } => {
                let mut r = header(DEVICE_TYPE_PARTITION_EX, 0, FIXED_RECORD_SIZE);
                r[0x10..0x18].copy_from_slice(&offset.to_le_bytes());
                put_u32(&mut r, 0x24, 1);
                put_u32(&mut r, 0x28, *disk_signature);
                r
            }
            Device::Locate {
                kind,
                element,
                parent_offset,
                path,
            } => {
                // rec+0x10 kind, +0x14 element id, +0x18 parent offset, +0x1C UTF-16 path
                // with NUL (as stored in windeploy-uefi-locate.BCD).
                let mut r = header(DEVICE_TYPE_LOCATE, 0, 0x1C);
                put_u32(&mut r, 0x10, *kind);
                put_u32(&mut r, 0x14, *element);
                put_u32(&mut r, 0x18, *parent_offset);
                r.extend(path.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
                let size = r.len() as u32;
                put_u32(&mut r, 8, size);
                r
            }
            Device::Ramdisk { source, path } => {
                let nested = source.encode_record();
                let mut r = header(DEVICE_TYPE_BLOCK_IO, 1, 0x34);
                put_u32(&mut r, 0x10, BLOCK_IO_RAMDISK);
                r.extend_from_slice(&nested);
                r.extend(path.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
                let size = r.len() as u32;
                put_u32(&mut r, 8, size);
                // FILE_PATH header: version 1, length from rec+0x28, type 5 (boot environment).
                put_u32(&mut r, 0x28, 1);
                put_u32(&mut r, 0x2C, size - 0x28);
                put_u32(&mut r, 0x30, 5);
                r
            }
            Device::VmBus {
                interface_type,
                instance,
            } => {
                let mut r = header(DEVICE_TYPE_VMBUS, GUESSED_RECORD_FLAGS, VMBUS_RECORD_SIZE);
                put_guid(&mut r, VMBUS_INTERFACE_TYPE_AT, interface_type);
                put_guid(&mut r, VMBUS_INSTANCE_AT, instance);
                r
            }
            Device::Cimfs {
                target_mount_volume,
                version,
                parent_offset,
                root_path_offset,
                root_path_length,
            } => {
                let mut r = header(DEVICE_TYPE_CIMFS, GUESSED_RECORD_FLAGS, CIMFS_RECORD_SIZE);
                put_u32(&mut r, CIMFS_VERSION_AT, *version);
                put_u32(&mut r, CIMFS_PARENT_OFFSET_AT, *parent_offset);
                put_u32(&mut r, CIMFS_ROOT_PATH_OFFSET_AT, *root_path_offset);
                put_u32(&mut r, CIMFS_ROOT_PATH_LENGTH_AT, *root_path_length);
                put_guid(&mut r, CIMFS_TARGET_VOLUME_AT, target_mount_volume);
                r
            }
            Device::Composite {
                signature,
                version,
                primary_offset,
                secondary_offset,
            } => {
                let mut r = header(
                    DEVICE_TYPE_COMPOSITE,
                    GUESSED_RECORD_FLAGS,
                    COMPOSITE_RECORD_SIZE,
                );
                put_guid(&mut r, COMPOSITE_SIGNATURE_AT, signature);
                put_u32(&mut r, COMPOSITE_VERSION_AT, *version);
                put_u32(&mut r, COMPOSITE_PRIMARY_OFFSET_AT, *primary_offset);
                put_u32(&mut r, COMPOSITE_SECONDARY_OFFSET_AT, *secondary_offset);
                r
            }
            Device::Unknown { record, .. } => record.clone(),
        }
    }

    /// Decodes one record; `rec` may be longer than the record (its Size field bounds it).
    pub fn decode_record(rec: &[u8]) -> Result<Device, String> {
        Self::decode_nested(rec, 0)
    }

    fn decode_nested(rec: &[u8], depth: usize) -> Result<Device, String> {
        let short = || format!("device record of {} bytes is too short", rec.len());
        let device_type = le_u32(rec, 0).ok_or_else(short)?;
        let flags = le_u32(rec, 4).ok_or_else(short)?;
        let size = le_u32(rec, 8).ok_or_else(short)? as usize;
        if size < HEADER || size > rec.len() {
            return Err(format!(
                "device record size {size:#x} outside 16..={:#x}",
                rec.len()
            ));
        }
        let r = &rec[..size];
        let need = |n: usize| -> Result<(), String> {
            if size < n {
                Err(format!(
                    "device type {device_type} record of {size:#x} bytes, needs {n:#x}"
                ))
            } else {
                Ok(())
            }
        };
        Ok(match device_type {
            DEVICE_TYPE_BOOT => Device::Boot,
            DEVICE_TYPE_PARTITION_EX => {
                need(0x38)?;
                match le_u32(r, 0x24).unwrap_or(u32::MAX) {
                    0 => Device::GptPartition {
                        partition: guid_at(r, 0x10).ok_or_else(short)?,
                        disk: guid_at(r, 0x28).ok_or_else(short)?,
                    },
                    1 => Device::MbrPartition {
                        offset: le_u64(r, 0x10).ok_or_else(short)?,
                        disk_signature: le_u32(r, 0x28).ok_or_else(short)?,
                    },
                    _ => Device::Unknown {
                        device_type,
                        flags,
                        record: r.to_vec(),
                    },
                }
            }
            DEVICE_TYPE_LOCATE => {
                need(0x1C)?;
                Device::Locate {
                    kind: le_u32(r, 0x10).ok_or_else(short)?,
                    element: le_u32(r, 0x14).ok_or_else(short)?,
                    parent_offset: le_u32(r, 0x18).ok_or_else(short)?,
                    path: regf::decode_utf16z(&r[0x1C..]),
                }
            }
            DEVICE_TYPE_BLOCK_IO if le_u32(r, 0x10) == Some(BLOCK_IO_RAMDISK) => {
                need(0x34 + HEADER)?;
                if depth >= MAX_NESTING {
                    return Err("device records nested too deeply".into());
                }
                let nested = &r[0x34..];
                let source = Device::decode_nested(nested, depth + 1)?;
                let nested_size = le_u32(nested, 8).ok_or_else(short)? as usize;
                Device::Ramdisk {
                    source: Box::new(source),
                    path: regf::decode_utf16z(&nested[nested_size..]),
                }
            }
            DEVICE_TYPE_VMBUS => {
                need(VMBUS_INSTANCE_AT + 16)?;
                Device::VmBus {
                    interface_type: guid_at(r, VMBUS_INTERFACE_TYPE_AT).ok_or_else(short)?,
                    instance: guid_at(r, VMBUS_INSTANCE_AT).ok_or_else(short)?,
                }
            }
            DEVICE_TYPE_CIMFS => {
                need(CIMFS_TARGET_VOLUME_AT + 16)?;
                Device::Cimfs {
                    version: le_u32(r, CIMFS_VERSION_AT).ok_or_else(short)?,
                    parent_offset: le_u32(r, CIMFS_PARENT_OFFSET_AT).ok_or_else(short)?,
                    root_path_offset: le_u32(r, CIMFS_ROOT_PATH_OFFSET_AT).ok_or_else(short)?,
                    root_path_length: le_u32(r, CIMFS_ROOT_PATH_LENGTH_AT).ok_or_else(short)?,
                    target_mount_volume: guid_at(r, CIMFS_TARGET_VOLUME_AT).ok_or_else(short)?,
                }
            }
            DEVICE_TYPE_COMPOSITE => {
                need(COMPOSITE_SECONDARY_OFFSET_AT + 4)?;
                Device::Composite {
                    signature: guid_at(r, COMPOSITE_SIGNATURE_AT).ok_or_else(short)?,
                    version: le_u32(r, COMPOSITE_VERSION_AT).ok_or_else(short)?,
                    primary_offset: le_u32(r, COMPOSITE_PRIMARY_OFFSET_AT).ok_or_else(short)?,
                    secondary_offset: le_u32(r, COMPOSITE_SECONDARY_OFFSET_AT).ok_or_else(short)?,
                }
            }
            _ => Device::Unknown {
                device_type,
                flags,
                record: r.to_vec(),
            },
        })
    }
}

impl DeviceElement {
    /// The `vmbus={instance}` device with the interface type we write (see guessed.rs).
    pub fn vmbus(instance: Uuid) -> DeviceElement {
        DeviceElement {
            options: Uuid::nil(),
            device: Device::VmBus {
                interface_type: VMBUS_INTERFACE_TYPE,
                instance,
            },
        }
    }

    /// `gpt_partition={disk};{partition}`.
    pub fn gpt_partition(disk: Uuid, partition: Uuid) -> DeviceElement {
        DeviceElement {
            options: Uuid::nil(),
            device: Device::GptPartition { disk, partition },
        }
    }

    /// `cimfs={target},{options}`: parent and root come from the options object.
    pub fn cimfs(target_mount_volume: Uuid, options: Uuid) -> DeviceElement {
        DeviceElement {
            options,
            device: Device::Cimfs {
                target_mount_volume,
                version: CIMFS_VERSION,
                parent_offset: 0,
                root_path_offset: 0,
                root_path_length: 0,
            },
        }
    }

    /// `composite=<version>,{options}`: primary and secondary come from the options object.
    pub fn composite(version: u32, options: Uuid) -> DeviceElement {
        DeviceElement {
            options,
            device: Device::Composite {
                signature: COMPOSITE_SIGNATURE,
                version,
                primary_offset: 0,
                secondary_offset: 0,
            },
        }
    }

    /// The element value bytes: options GUID then the record (length = 16 + record size).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.options.to_bytes_le().to_vec();
        v.extend(self.device.encode_record());
        v
    }

    /// Decodes an element value; checks the length invariant 16 + Size (bcd.md §4.1).
    pub fn decode(data: &[u8]) -> Result<DeviceElement, String> {
        let options = guid_at(data, 0)
            .ok_or_else(|| format!("device element of {} bytes is too short", data.len()))?;
        let record = &data[16..];
        let device = Device::decode_record(record)?;
        // decode_record read the Size field (at 8) and found it within the record.
        let size = le_u32(record, 8).unwrap_or(0) as usize;
        if size != record.len() {
            return Err(format!(
                "device element of {} bytes holds a record of {size:#x} bytes and {} more \
                 (the length must be 16 + Size)",
                data.len(),
                record.len() - size
            ));
        }
        Ok(DeviceElement { options, device })
    }
}

fn braced(g: &Uuid) -> String {
    format!("{{{g}}}")
}

impl fmt::Display for Device {
    /// The bcdedit syntax that creates the device (offline stores cannot resolve volumes,
    /// so partitions are shown by GUIDs the way hcsshim passes them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Boot => write!(f, "boot"),
            Device::GptPartition { disk, partition } => {
                write!(f, "gpt_partition={};{}", braced(disk), braced(partition))
            }
            Device::MbrPartition {
                disk_signature,
                offset,
            } => write!(
                f,
                "mbr_partition=signature {disk_signature:#010x},offset {offset:#x}"
            ),
            Device::Locate {
                kind,
                element,
                path,
                ..
            } => {
                if path.is_empty() && *kind == 0 {
                    write!(f, "locate=custom:{element:08x}")
                } else {
                    write!(f, "locate={path}")
                }
            }
            Device::Ramdisk { source, path } => write!(f, "ramdisk=[{source}]{path}"),
            Device::VmBus {
                interface_type,
                instance,
            } => {
                write!(f, "vmbus={}", braced(instance))?;
                if *interface_type != VMBUS_INTERFACE_TYPE {
                    write!(f, " (interface type {})", braced(interface_type))?;
                }
                Ok(())
            }
            Device::Cimfs {
                target_mount_volume,
                version,
                parent_offset,
                root_path_offset,
                root_path_length,
            } => {
                write!(f, "cimfs={}", braced(target_mount_volume))?;
                if *version != CIMFS_VERSION
                    || *parent_offset != 0
                    || *root_path_offset != 0
                    || *root_path_length != 0
                {
                    write!(
                        f,
                        " (version {version}, parent at {parent_offset:#x}, root at \
                         {root_path_offset:#x}+{root_path_length:#x})"
                    )?;
                }
                Ok(())
            }
            Device::Composite {
                signature,
                version,
                primary_offset,
                secondary_offset,
            } => {
                write!(f, "composite={version}")?;
                if !signature.is_nil() || *primary_offset != 0 || *secondary_offset != 0 {
                    write!(
                        f,
                        " (signature {}, primary at {primary_offset:#x}, secondary at \
                         {secondary_offset:#x})",
                        braced(signature)
                    )?;
                }
                Ok(())
            }
            Device::Unknown {
                device_type,
                flags,
                record,
            } => write!(
                f,
                "unknown device type {device_type} (flags {flags:#x}, {} bytes)",
                record.len()
            ),
        }
    }
}

impl fmt::Display for DeviceElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.device)?;
        if !self.options.is_nil() {
            write!(f, ",{}", braced(&self.options))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn boot_device_is_88_bytes() {
        let e = DeviceElement {
            options: Uuid::nil(),
            device: Device::Boot,
        };
        let b = e.encode();
        assert_eq!(b.len(), 88);
        assert_eq!(&b[16..28], &unhex("05000000 00000000 48000000"));
        assert_eq!(DeviceElement::decode(&b).unwrap(), e);
        assert_eq!(e.to_string(), "boot");
    }

    #[test]
    fn gpt_partition_matches_bcd_md_layout() {
        // bcd.md §4.4, the Windows2Go sample's GUIDs.
        let disk = uuid::uuid!("60664987-ce0e-411b-9db7-86248b86bbb2");
        let part = uuid::uuid!("17b16537-abcc-4487-9792-e63a0a7dc8b4");
        let e = DeviceElement::gpt_partition(disk, part);
        let b = e.encode();
        assert_eq!(b.len(), 88);
        assert_eq!(&b[0x20..0x30], &part.to_bytes_le());
        assert_eq!(&b[0x30..0x38], &[0u8; 8]);
        assert_eq!(&b[0x38..0x48], &disk.to_bytes_le());
        assert_eq!(DeviceElement::decode(&b).unwrap(), e);
        assert_eq!(
            e.to_string(),
            "gpt_partition={60664987-ce0e-411b-9db7-86248b86bbb2};{17b16537-abcc-4487-9792-e63a0a7dc8b4}"
        );
    }

    #[test]
    fn locate_and_ramdisk_round_trip() {
        let l = DeviceElement {
            options: Uuid::nil(),
            device: Device::Locate {
                kind: 0,
                element: 0x1200_0002,
                parent_offset: 0,
                path: String::new(),
            },
        };
        let b = l.encode();
        assert_eq!(b.len(), 46);
        assert_eq!(DeviceElement::decode(&b).unwrap(), l);
        let r = DeviceElement {
            options: uuid::uuid!("7619dcc8-fafe-11d9-b411-000476eba25f"),
            device: Device::Ramdisk {
                source: Box::new(Device::Boot),
                path: "\\sources\\boot.wim".into(),
            },
        };
        let b = r.encode();
        assert_eq!(b.len(), 176);
        assert_eq!(DeviceElement::decode(&b).unwrap(), r);
        assert_eq!(
            r.to_string(),
            "ramdisk=[boot]\\sources\\boot.wim,{7619dcc8-fafe-11d9-b411-000476eba25f}"
        );
    }

    #[test]
    fn hostile_records_are_refused() {
        assert!(DeviceElement::decode(&[0u8; 20]).is_err());
        let mut b = DeviceElement::gpt_partition(Uuid::nil(), Uuid::nil()).encode();
        b[24] = 0xFF; // size far beyond the data
        assert!(DeviceElement::decode(&b).is_err());
        b[24] = 0x18; // too small for a partition record
        assert!(DeviceElement::decode(&b).is_err());
        // Bytes after the record: the length must be 16 + Size.
        let mut b = DeviceElement::gpt_partition(Uuid::nil(), Uuid::nil()).encode();
        b.extend_from_slice(&[0xAB; 8]);
        let err = DeviceElement::decode(&b).expect_err("trailing bytes");
        assert!(err.contains("16 + Size"), "{err}");
        // A ramdisk whose nested record claims to be larger than what is left.
        let mut r = DeviceElement {
            options: Uuid::nil(),
            device: Device::Ramdisk {
                source: Box::new(Device::Boot),
                path: "x".into(),
            },
        }
        .encode();
        r[16 + 0x34 + 8] = 0xF0;
        assert!(DeviceElement::decode(&r).is_err());
    }
}
