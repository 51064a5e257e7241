//! What HcsFormatWritableLayerVhd leaves on a disk, done on Linux: a GPT with an MSR and one
//! basic-data partition (vhdx.md §2 layout) and an empty NTFS volume made by `mkntfs` (ntfs-3g)
//! on a sparse temporary image of the partition, copied block by block into the VHDX.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::file::{DiskType, VhdxFile};
use crate::format::MIB;
use crate::gpt::{self, GptLayout, GptPartition, PartitionInfo, BASIC_DATA_TYPE, MSR_TYPE};
use crate::posio;

/// Where the data partition starts: 16 MiB, Windows 10+ disk initialisation (vhdx.md §2, `[M]`).
pub const DATA_PARTITION_OFFSET: u64 = 16 * MIB;
/// NTFS cluster size Windows picks for a ~10 GiB volume (KB140365).
pub const NTFS_CLUSTER_SIZE: u32 = 4096;
/// Smallest data partition we format (mkntfs needs room for its $LogFile and MFT).
const MIN_DATA_PARTITION: u64 = 8 * MIB;

/// Partitions `path` (an empty dynamic VHDX) as GPT with MSR + basic data and puts an empty
/// NTFS volume on the data partition. Needs `mkntfs` from the Debian package `ntfs-3g`.
pub fn format_gpt_ntfs(path: &Path) -> Result<PartitionInfo> {
    let mkntfs = find_tool("mkntfs").ok_or(Error::ToolMissing {
        tool: "mkntfs",
        package: "ntfs-3g",
    })?;
    let mut disk = VhdxFile::open_rw(path)?;
    if disk.disk_type() == DiskType::Differencing {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: "formatting a differencing disk".into(),
        });
    }
    let ss = u64::from(disk.logical_sector_size());
    let layout = GptLayout {
        sector_size: ss,
        sectors: disk.virtual_size() / ss,
    };
    let data_first = DATA_PARTITION_OFFSET / ss;
    if layout.last_usable() < data_first
        || (layout.last_usable() + 1 - data_first) * ss < MIN_DATA_PARTITION
    {
        return Err(Error::InvalidArgument(format!(
            "{}: a {} byte disk is too small for an MSR and an NTFS data partition",
            path.display(),
            disk.virtual_size()
        )));
    }
    let info = PartitionInfo {
        disk_guid: Uuid::new_v4(),
        partition_guid: Uuid::new_v4(),
    };
    let parts = [
        GptPartition {
            type_guid: MSR_TYPE,
            unique_guid: Uuid::new_v4(),
            first_lba: layout.first_usable(),
            last_lba: data_first - 1,
            attributes: 0,
            name: "Microsoft reserved partition".into(),
        },
        GptPartition {
            type_guid: BASIC_DATA_TYPE,
            unique_guid: info.partition_guid,
            first_lba: data_first,
            last_lba: layout.last_usable(),
            attributes: 0,
            name: "Basic data partition".into(),
        },
    ];
    let part_bytes = (layout.last_usable() + 1 - data_first) * ss;

    let tmp = tempfile::Builder::new()
        .prefix("cimkit-ntfs-")
        .tempdir()
        .map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            op: "create temporary directory",
            offset: 0,
            source,
        })?;
    let raw = tmp.path().join("partition.raw");
    let raw_io = |op, offset, source| Error::Io {
        path: raw.clone(),
        op,
        offset,
        source,
    };
    File::create(&raw)
        .and_then(|f| f.set_len(part_bytes))
        .map_err(|e| raw_io("create", part_bytes, e))?;
    // -Q quick (no zeroing), -F regular file, -p hidden sectors = partition start LBA, geometry
    // given because a file has none; -s/-c match what Windows uses (vhdx.md §2).
    let out = Command::new(&mkntfs)
        .args(["-q", "-Q", "-F"])
        .args(["-s", &ss.to_string()])
        .args(["-c", &NTFS_CLUSTER_SIZE.to_string()])
        .args(["-p", &data_first.to_string()])
        .args(["-H", "255", "-S", "63"])
        .arg(&raw)
        .output()
        .map_err(|e| raw_io("run mkntfs on", 0, e))?;
    if !out.status.success() {
        return Err(Error::ToolFailed {
            tool: "mkntfs",
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }

    let (primary, backup) = gpt::build(&layout, &info.disk_guid, &parts);
    disk.write_at(0, &primary)?;
    disk.write_at(layout.backup_entries_lba() * ss, &backup)?;
    copy_data_blocks(&raw, &mut disk, data_first * ss)?;
    disk.flush()?;
    Ok(info)
}

/// Copies every 1 MiB window of `raw` holding a non-zero byte to `disk` at `base` + its offset.
/// Where the platform can tell (SEEK_DATA/SEEK_HOLE), the holes of a sparse file cost nothing.
fn copy_data_blocks(raw: &Path, disk: &mut VhdxFile, base: u64) -> Result<()> {
    let io = |op, offset, source| Error::Io {
        path: raw.to_path_buf(),
        op,
        offset,
        source,
    };
    let f = File::open(raw).map_err(|e| io("open", 0, e))?;
    let len = f.metadata().map_err(|e| io("stat", 0, e))?.len();
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    while let Some((data, hole)) =
        posio::next_data_range(&f, pos, len).map_err(|e| io("seek data", pos, e))?
    {
        let mut w = data / MIB * MIB;
        while w < hole {
            let n = (len - w).min(MIB) as usize;
            posio::read_exact_at(&f, &mut buf[..n], w).map_err(|e| io("read", w, e))?;
            if buf[..n].iter().any(|&b| b != 0) {
                disk.write_at(base + w, &buf[..n])?;
            }
            w += MIB;
        }
        pos = w.max(hole);
    }
    Ok(())
}

/// Looks for an executable in PATH, then /usr/sbin and /sbin (not always in a user's PATH).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Reads the GPT through the VHDX (following a differencing chain) and returns what hcsshim's
/// GetScratchVhdPartitionInfo returns: the disk GUID and the basic-data partition's GUID.
pub fn read_partition_info(path: &Path) -> Result<PartitionInfo> {
    let disk = VhdxFile::open(path)?;
    let ss = u64::from(disk.logical_sector_size());
    let gpt = gpt::parse(ss, disk.virtual_size() / ss, |off, buf| {
        disk.read_at(off, buf).map_err(|e| e.to_string())
    })
    .map_err(|e| Error::Partition {
        path: path.to_path_buf(),
        reason: e.0,
    })?;
    gpt::scratch_partition_info(&gpt).map_err(|e| Error::Partition {
        path: path.to_path_buf(),
        reason: e.0,
    })
}
