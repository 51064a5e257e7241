//! Creating empty dynamic and differencing VHDX files with the Windows-like placement of
//! vhdx.md §5.1: header section, log @1 MiB, metadata @2 MiB, BAT @3 MiB, payload after it.
//! Files are sparse: the length is set and only the structures are written.

use std::fs::OpenOptions;
use std::path::Path;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::file::VhdxFile;
use crate::format::*;
use crate::posio;

/// Physical sector size written for new disks: the Hyper-V default (vhdx.md §1, `[M]`).
pub const DEFAULT_PHYSICAL_SECTOR_SIZE: u32 = 4096;

const LOG_OFFSET: u64 = MIB;
const LOG_LENGTH: u64 = MIB;
const METADATA_OFFSET: u64 = 2 * MIB;
const METADATA_LENGTH: u64 = MIB;
const BAT_OFFSET: u64 = 3 * MIB;

/// Where a differencing disk finds its parent (MS-VHDX 2.6.2.6.3). `parent_linkage` is not
/// here: it is always read from the parent's current header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParentLocator {
    /// Parent path relative to the child's directory, `\`-separated; Windows writes
    /// `.\name.vhdx` for a sibling.
    pub relative_path: String,
    /// `\\?\Volume{GUID}\dir\parent.vhdx`, when known.
    pub volume_path: Option<String>,
    /// The parent's absolute Windows path (e.g. `C:\dir\parent.vhdx`), when known.
    pub absolute_win32_path: Option<String>,
}

impl ParentLocator {
    /// A locator for a parent in the same directory as the child: `relative_path` = `.\name`.
    pub fn sibling(parent_file_name: &str) -> ParentLocator {
        ParentLocator {
            relative_path: format!(".\\{parent_file_name}"),
            volume_path: None,
            absolute_win32_path: None,
        }
    }
}

struct NewDisk {
    geometry: Geometry,
    physical_sector_size: u32,
    virtual_disk_id: Uuid,
    /// The encoded parent locator item of a differencing disk.
    locator: Option<Vec<u8>>,
}

/// Creates an empty dynamic VHDX of `size` bytes; fails if `path` exists.
pub fn create_dynamic(path: &Path, size: u64, block_size: u32, logical_sector: u32) -> Result<()> {
    let geometry = Geometry {
        virtual_size: size,
        block_size,
        logical_sector_size: logical_sector,
    };
    geometry
        .validate()
        .map_err(|e| Error::InvalidArgument(e.0))?;
    write_new(
        path,
        &NewDisk {
            geometry,
            physical_sector_size: DEFAULT_PHYSICAL_SECTOR_SIZE,
            virtual_disk_id: Uuid::new_v4(),
            locator: None,
        },
    )
}

/// Creates an empty differencing VHDX whose parent is `parent_path`. Size, sector sizes, block
/// size and Virtual Disk ID are the parent's (the spec's rule for IsVirtualDisk items);
/// `parent_linkage` is the parent's current DataWriteGuid, so the parent must not change
/// afterwards. Fails if `path` exists.
pub fn create_differencing(path: &Path, parent_path: &Path, locator: &ParentLocator) -> Result<()> {
    let parent = VhdxFile::open(parent_path)?;
    let info = parent.info();
    let mut entries = vec![
        (
            KEY_PARENT_LINKAGE.to_string(),
            braced_lower(&parent.data_write_guid()),
        ),
        (KEY_RELATIVE_PATH.to_string(), locator.relative_path.clone()),
    ];
    if locator.relative_path.is_empty() {
        return Err(Error::InvalidArgument("relative_path is empty".into()));
    }
    for (key, value) in [
        (KEY_VOLUME_PATH, &locator.volume_path),
        (KEY_ABSOLUTE_WIN32_PATH, &locator.absolute_win32_path),
    ] {
        match value {
            Some(v) if v.is_empty() || v.contains('\0') => {
                return Err(Error::InvalidArgument(format!(
                    "{key} {} is empty or has a NUL",
                    crate::error::quote(v)
                )))
            }
            Some(v) => entries.push((key.to_string(), v.clone())),
            None => {}
        }
    }
    if locator.relative_path.contains('\0') {
        return Err(Error::InvalidArgument("relative_path has a NUL".into()));
    }
    let item = LocatorItem {
        locator_type: VHDX_LOCATOR_TYPE,
        entries,
    };
    let item = item.encode().map_err(|e| Error::InvalidArgument(e.0))?;
    if item.len() > MAX_METADATA_ITEM as usize - 64 {
        return Err(Error::InvalidArgument(
            "parent locator paths too long".into(),
        ));
    }
    write_new(
        path,
        &NewDisk {
            geometry: Geometry {
                virtual_size: info.virtual_size,
                block_size: info.block_size,
                logical_sector_size: info.logical_sector_size,
            },
            physical_sector_size: info.physical_sector_size,
            virtual_disk_id: info.virtual_disk_id,
            locator: Some(item),
        },
    )
}

/// Writes a new file; removes it again if anything fails after it was created.
fn write_new(path: &Path, d: &NewDisk) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            op: "create",
            offset: 0,
            source,
        })?;
    let result = write_structures(&file, path, d);
    if result.is_err() {
        drop(file);
        // Best effort: the creation error is the one worth reporting.
        let _ = std::fs::remove_file(path);
    }
    result
}

fn write_structures(file: &std::fs::File, path: &Path, d: &NewDisk) -> Result<()> {
    let at = |offset: u64, buf: &[u8]| {
        posio::write_all_at(file, buf, offset).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            op: "write",
            offset,
            source,
        })
    };
    let has_parent = d.locator.is_some();
    let bat_bytes = d.geometry.bat_entries(has_parent) * 8;
    let bat_length = bat_bytes.div_ceil(MIB) * MIB;
    if bat_length > u64::from(u32::MAX) - MIB {
        return Err(Error::InvalidArgument(format!(
            "BAT of {bat_bytes} bytes does not fit a region"
        )));
    }
    let total = BAT_OFFSET + bat_length;
    file.set_len(total).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        op: "set length",
        offset: total,
        source,
    })?;

    at(
        FILE_IDENTIFIER_OFFSET,
        &encode_file_identifier(concat!("cimkit vhdx ", env!("CARGO_PKG_VERSION"))),
    )?;
    let guid = Uuid::new_v4();
    let mut header = Header {
        sequence_number: 1,
        file_write_guid: guid,
        data_write_guid: Uuid::new_v4(),
        log_guid: Uuid::nil(),
        log_version: 0,
        version: 1,
        log_length: LOG_LENGTH as u32,
        log_offset: LOG_OFFSET,
    };
    at(HEADER1_OFFSET, &header.encode())?;
    header.sequence_number = 2;
    at(HEADER2_OFFSET, &header.encode())?;
    let regions = encode_region_table(&[
        RegionEntry {
            guid: BAT_REGION,
            file_offset: BAT_OFFSET,
            length: bat_length as u32,
            required: true,
        },
        RegionEntry {
            guid: METADATA_REGION,
            file_offset: METADATA_OFFSET,
            length: METADATA_LENGTH as u32,
            required: true,
        },
    ]);
    at(REGION_TABLE1_OFFSET, &regions)?;
    at(REGION_TABLE2_OFFSET, &regions)?;
    at(METADATA_OFFSET, &encode_metadata(d))?;
    // The BAT stays all zero (NOT_PRESENT), as in Windows' new dynamic and differencing disks.
    file.sync_all().map_err(|source| Error::Io {
        path: path.to_path_buf(),
        op: "sync",
        offset: 0,
        source,
    })
}

/// The metadata table followed by the items packed from 64 KiB (qemu and DiscUtils do the same).
fn encode_metadata(d: &NewDisk) -> Vec<u8> {
    let params = if d.locator.is_some() {
        PARAM_HAS_PARENT
    } else {
        0
    };
    let mut items: Vec<(Uuid, u32, Vec<u8>)> = vec![
        (
            FILE_PARAMETERS,
            META_IS_REQUIRED,
            encode_file_parameters(d.geometry.block_size, params).to_vec(),
        ),
        (
            VIRTUAL_DISK_SIZE,
            META_IS_VIRTUAL_DISK | META_IS_REQUIRED,
            d.geometry.virtual_size.to_le_bytes().to_vec(),
        ),
        (
            VIRTUAL_DISK_ID,
            META_IS_VIRTUAL_DISK | META_IS_REQUIRED,
            d.virtual_disk_id.to_bytes_le().to_vec(),
        ),
        (
            LOGICAL_SECTOR_SIZE,
            META_IS_VIRTUAL_DISK | META_IS_REQUIRED,
            d.geometry.logical_sector_size.to_le_bytes().to_vec(),
        ),
        (
            PHYSICAL_SECTOR_SIZE,
            META_IS_VIRTUAL_DISK | META_IS_REQUIRED,
            d.physical_sector_size.to_le_bytes().to_vec(),
        ),
    ];
    if let Some(l) = &d.locator {
        items.push((PARENT_LOCATOR, META_IS_REQUIRED, l.clone()));
    }
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (id, flags, bytes) in &items {
        entries.push(MetadataEntry {
            item_id: *id,
            offset: (METADATA_TABLE_SIZE + data.len()) as u32,
            length: bytes.len() as u32,
            flags: *flags,
        });
        data.extend_from_slice(bytes);
    }
    let mut out = encode_metadata_table(&entries);
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn metadata_items_for_a_dynamic_disk() {
        let d = NewDisk {
            geometry: Geometry {
                virtual_size: 10 << 30,
                block_size: MIB as u32,
                logical_sector_size: 512,
            },
            physical_sector_size: 4096,
            virtual_disk_id: uuid::uuid!("00112233-4455-6677-8899-aabbccddeeff"),
            locator: None,
        };
        let m = encode_metadata(&d);
        assert_eq!(u16::from_le_bytes([m[10], m[11]]), 5);
        // Entries: id, offset, length, flags (vhdx.md §5.7 flag values).
        let e = |i: usize| &m[32 + 32 * i..64 + 32 * i];
        assert_eq!(hex(&e(0)[16..28]), "000001000800000004000000");
        assert_eq!(hex(&e(1)[16..28]), "080001000800000006000000");
        assert_eq!(hex(&e(2)[16..28]), "100001001000000006000000");
        assert_eq!(hex(&e(3)[16..28]), "200001000400000006000000");
        assert_eq!(hex(&e(4)[16..28]), "240001000400000006000000");
        // Items: block size 1 MiB, flags 0; size 10 GiB; id; 512; 4096.
        assert_eq!(
            hex(&m[0x10000..0x10028]),
            "0000100000000000".to_string()
                + "0000008002000000"
                + "33221100554477668899aabbccddeeff"
                + "00020000"
                + "00100000"
        );
        assert_eq!(m.len(), 0x10028);
    }

    #[test]
    fn differencing_metadata_sets_has_parent_and_locator() {
        let d = NewDisk {
            geometry: Geometry {
                virtual_size: 10 << 30,
                block_size: MIB as u32,
                logical_sector_size: 512,
            },
            physical_sector_size: 4096,
            virtual_disk_id: Uuid::nil(),
            locator: Some(
                LocatorItem {
                    locator_type: VHDX_LOCATOR_TYPE,
                    entries: vec![("relative_path".into(), ".\\a".into())],
                }
                .encode()
                .unwrap(),
            ),
        };
        let m = encode_metadata(&d);
        assert_eq!(u16::from_le_bytes([m[10], m[11]]), 6);
        assert_eq!(hex(&m[0x10004..0x10008]), "02000000");
        let e5 = &m[32 + 32 * 5..64 + 32 * 5];
        assert_eq!(hex(&e5[..16]), "2d5fd3a80bb34d45abf7d3d84834ab0c");
        assert_eq!(hex(&e5[16..28]), "280001004000000004000000");
    }
}
