//! GUID partition tables (UEFI 2.x §5.3): building the protective MBR, primary and backup
//! headers and entry arrays for the scratch-disk layout, and reading the disk and partition
//! GUIDs back as hcsshim's GetScratchVhdPartitionInfo does.

use uuid::Uuid;

use crate::format::{le_guid, le_u32, le_u64, put_guid, put_u16, put_u32, put_u64};

/// Partition type of the Microsoft reserved partition.
pub const MSR_TYPE: Uuid = uuid::uuid!("E3C9E316-0B5C-4DB8-817D-F92DF00215AE");
/// Partition type of a Windows basic data partition.
pub const BASIC_DATA_TYPE: Uuid = uuid::uuid!("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// Number of entries in the partition entry arrays this crate writes.
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry in bytes.
pub const ENTRY_SIZE: u32 = 128;
const ENTRIES_BYTES: u64 = (ENTRY_COUNT * ENTRY_SIZE) as u64;
/// Upper bound on the entry array we agree to read (guards allocation from a hostile header).
const MAX_ENTRIES_BYTES: u64 = 1 << 20;

/// The two GUIDs hcsshim's GetScratchVhdPartitionInfo returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// GPT disk GUID (header bytes 56..72).
    pub disk_guid: Uuid,
    /// Unique partition GUID of the basic-data partition (entry bytes 16..32).
    pub partition_guid: Uuid,
}

/// One used GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// Partition type GUID (e.g. [`BASIC_DATA_TYPE`]).
    pub type_guid: Uuid,
    /// The partition's own unique GUID.
    pub unique_guid: Uuid,
    /// First sector of the partition.
    pub first_lba: u64,
    /// Last sector of the partition (inclusive).
    pub last_lba: u64,
    /// Attribute bits of the entry.
    pub attributes: u64,
    /// Partition name (UTF-16LE on disk, up to 36 units).
    pub name: String,
}

/// A whole GPT: the disk GUID and the used entries in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// The disk GUID from the header.
    pub disk_guid: Uuid,
    /// The used entries, in table order.
    pub partitions: Vec<GptPartition>,
}

/// Sector numbers of a GPT on a disk of `sectors` sectors of `sector_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptLayout {
    /// Sector size in bytes.
    pub sector_size: u64,
    /// Number of sectors on the disk.
    pub sectors: u64,
}

impl GptLayout {
    /// Sectors one partition entry array takes.
    pub fn entry_sectors(&self) -> u64 {
        ENTRIES_BYTES.div_ceil(self.sector_size)
    }
    /// First sector a partition may use (after the primary header and entries).
    pub fn first_usable(&self) -> u64 {
        2 + self.entry_sectors()
    }
    /// Last sector a partition may use (before the backup entries and header).
    pub fn last_usable(&self) -> u64 {
        self.sectors - 2 - self.entry_sectors()
    }
    /// First sector of the backup entry array.
    pub fn backup_entries_lba(&self) -> u64 {
        self.sectors - 1 - self.entry_sectors()
    }
}

/// IEEE CRC-32 (the zlib one), which GPT uses — not VHDX's CRC-32C.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn encode_entries(parts: &[GptPartition]) -> Vec<u8> {
    let mut b = vec![0u8; ENTRIES_BYTES as usize];
    for (i, p) in parts.iter().enumerate() {
        let o = i * ENTRY_SIZE as usize;
        put_guid(&mut b, o, &p.type_guid);
        put_guid(&mut b, o + 16, &p.unique_guid);
        put_u64(&mut b, o + 32, p.first_lba);
        put_u64(&mut b, o + 40, p.last_lba);
        put_u64(&mut b, o + 48, p.attributes);
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            put_u16(&mut b, o + 56 + 2 * j, u);
        }
    }
    b
}

fn encode_header(l: &GptLayout, disk_guid: &Uuid, backup: bool, entries_crc: u32) -> Vec<u8> {
    let mut h = vec![0u8; l.sector_size as usize];
    let (my_lba, alt_lba, entries_lba) = if backup {
        (l.sectors - 1, 1, l.backup_entries_lba())
    } else {
        (1, l.sectors - 1, 2)
    };
    h[..8].copy_from_slice(SIGNATURE);
    put_u32(&mut h, 8, REVISION);
    put_u32(&mut h, 12, HEADER_SIZE);
    put_u64(&mut h, 24, my_lba);
    put_u64(&mut h, 32, alt_lba);
    put_u64(&mut h, 40, l.first_usable());
    put_u64(&mut h, 48, l.last_usable());
    put_guid(&mut h, 56, disk_guid);
    put_u64(&mut h, 72, entries_lba);
    put_u32(&mut h, 80, ENTRY_COUNT);
    put_u32(&mut h, 84, ENTRY_SIZE);
    put_u32(&mut h, 88, entries_crc);
    let crc = crc32_ieee(&h[..HEADER_SIZE as usize]);
    put_u32(&mut h, 16, crc);
    h
}

/// The bytes of a GPT: `(primary, backup)` where `primary` covers LBA 0 (protective MBR),
/// LBA 1 (header) and the entry array, and `backup` covers the backup entries and header,
/// to be written at `backup_entries_lba() * sector_size`.
pub fn build(l: &GptLayout, disk_guid: &Uuid, parts: &[GptPartition]) -> (Vec<u8>, Vec<u8>) {
    let ss = l.sector_size as usize;
    let entries = encode_entries(parts);
    let entries_crc = crc32_ieee(&entries);
    let mut primary = vec![0u8; ss];
    // Protective MBR: one 0xEE partition from LBA 1 over the whole disk (UEFI 2.x §5.2.3).
    let mbr = 446;
    primary[mbr + 1..mbr + 4].copy_from_slice(&[0x00, 0x02, 0x00]);
    primary[mbr + 4] = 0xEE;
    primary[mbr + 5..mbr + 8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    put_u32(&mut primary, mbr + 8, 1);
    put_u32(
        &mut primary,
        mbr + 12,
        u32::try_from(l.sectors - 1).unwrap_or(u32::MAX),
    );
    primary[510] = 0x55;
    primary[511] = 0xAA;
    primary.extend_from_slice(&encode_header(l, disk_guid, false, entries_crc));
    let mut padded_entries = entries;
    padded_entries.resize((l.entry_sectors() * l.sector_size) as usize, 0);
    primary.extend_from_slice(&padded_entries);
    let mut backup = padded_entries;
    backup.extend_from_slice(&encode_header(l, disk_guid, true, entries_crc));
    (primary, backup)
}

/// Why a GPT could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptError(pub String);

/// Parses the primary GPT: `read(offset, buf)` reads disk bytes. Checks signature, both CRCs
/// and every bound before use.
pub fn parse<F>(sector_size: u64, sectors: u64, mut read: F) -> Result<Gpt, GptError>
where
    F: FnMut(u64, &mut [u8]) -> Result<(), String>,
{
    let err = |m: String| GptError(m);
    let mut h = vec![0u8; sector_size as usize];
    read(sector_size, &mut h).map_err(err)?;
    if &h[..8] != SIGNATURE {
        return Err(err("LBA 1 has no \"EFI PART\" signature".into()));
    }
    let size = le_u32(&h, 12);
    if !(HEADER_SIZE..=sector_size as u32).contains(&size) {
        return Err(err(format!("header size {size}")));
    }
    let stored = le_u32(&h, 16);
    let mut copy = h[..size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32_ieee(&copy);
    if stored != computed {
        return Err(err(format!(
            "header CRC {stored:#010x} does not match computed {computed:#010x}"
        )));
    }
    let disk_guid = le_guid(&h, 56);
    let entries_lba = le_u64(&h, 72);
    let count = u64::from(le_u32(&h, 80));
    let esize = u64::from(le_u32(&h, 84));
    if esize < 128 || !esize.is_power_of_two() {
        return Err(err(format!("entry size {esize}")));
    }
    let total = count * esize;
    if total > MAX_ENTRIES_BYTES {
        return Err(err(format!(
            "{count} entries of {esize} bytes is too large"
        )));
    }
    let end = entries_lba
        .checked_mul(sector_size)
        .and_then(|o| o.checked_add(total));
    let inside = matches!(end, Some(e) if e <= sectors.saturating_mul(sector_size));
    if entries_lba < 2 || !inside {
        return Err(err(format!(
            "entry array at LBA {entries_lba} lies outside the disk"
        )));
    }
    let mut entries = vec![0u8; total as usize];
    read(entries_lba * sector_size, &mut entries).map_err(err)?;
    let computed = crc32_ieee(&entries);
    let stored = le_u32(&h, 88);
    if stored != computed {
        return Err(err(format!(
            "entry array CRC {stored:#010x} does not match computed {computed:#010x}"
        )));
    }
    let mut partitions = Vec::new();
    for e in entries.chunks_exact(esize as usize) {
        let type_guid = le_guid(e, 0);
        if type_guid.is_nil() {
            continue;
        }
        let units: Vec<u16> = (0..36)
            .map(|j| u16::from_le_bytes([e[56 + 2 * j], e[57 + 2 * j]]))
            .take_while(|&u| u != 0)
            .collect();
        partitions.push(GptPartition {
            type_guid,
            unique_guid: le_guid(e, 16),
            first_lba: le_u64(e, 32),
            last_lba: le_u64(e, 40),
            attributes: le_u64(e, 48),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(Gpt {
        disk_guid,
        partitions,
    })
}

/// hcsshim's GetScratchVhdPartitionInfo checks: exactly two partitions, the second basic data.
pub fn scratch_partition_info(gpt: &Gpt) -> Result<PartitionInfo, GptError> {
    if gpt.partitions.len() != 2 {
        return Err(GptError(format!(
            "{} partitions, a scratch disk has exactly 2",
            gpt.partitions.len()
        )));
    }
    let data = &gpt.partitions[1];
    if data.type_guid != BASIC_DATA_TYPE {
        return Err(GptError(format!(
            "partition 2 has type {}, expected basic data {BASIC_DATA_TYPE}",
            data.type_guid
        )));
    }
    Ok(PartitionInfo {
        disk_guid: gpt.disk_guid,
        partition_guid: data.unique_guid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn layout() -> GptLayout {
        GptLayout {
            sector_size: 512,
            sectors: 20_971_520,
        }
    }

    fn parts() -> Vec<GptPartition> {
        vec![
            GptPartition {
                type_guid: MSR_TYPE,
                unique_guid: uuid::uuid!("11111111-2222-3333-4444-555555555555"),
                first_lba: 34,
                last_lba: 32767,
                attributes: 0,
                name: "Microsoft reserved partition".into(),
            },
            GptPartition {
                type_guid: BASIC_DATA_TYPE,
                unique_guid: uuid::uuid!("66666666-7777-8888-9999-aaaaaaaaaaaa"),
                first_lba: 32768,
                last_lba: 20_971_486,
                attributes: 0,
                name: "Basic data partition".into(),
            },
        ]
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn layout_numbers_match_vhdx_md() {
        let l = layout();
        assert_eq!(l.first_usable(), 34);
        assert_eq!(l.last_usable(), 20_971_486);
        assert_eq!(l.backup_entries_lba(), 20_971_487);
    }

    #[test]
    fn build_then_parse_round_trips() {
        let l = layout();
        let disk = uuid::uuid!("aabbccdd-eeff-0011-2233-445566778899");
        let (primary, backup) = build(&l, &disk, &parts());
        assert_eq!(primary.len(), 34 * 512);
        assert_eq!(backup.len(), 33 * 512);
        assert_eq!(hex(&primary[446..462]), "00000200eeffffff01000000ffff3f01");
        assert_eq!(&primary[510..512], &[0x55, 0xAA]);
        assert_eq!(&primary[512..520], b"EFI PART");
        assert_eq!(
            hex(&primary[512 + 56..512 + 72]),
            "ddccbbaaffee11002233445566778899"
        );
        // Entry 2 type GUID bytes (vhdx.md §5.8).
        assert_eq!(
            hex(&primary[1024 + 128..1024 + 144]),
            "a2a0d0ebe5b9334487c068b6b72699c7"
        );
        let gpt = parse(512, l.sectors, |off, buf| {
            let end = off as usize + buf.len();
            if end > primary.len() {
                return Err("out of test data".into());
            }
            buf.copy_from_slice(&primary[off as usize..end]);
            Ok(())
        })
        .unwrap();
        assert_eq!(gpt.disk_guid, disk);
        assert_eq!(gpt.partitions, parts());
        let info = scratch_partition_info(&gpt).unwrap();
        assert_eq!(info.partition_guid, parts()[1].unique_guid);
        // Backup header points back at LBA 1 and at its own entry copy.
        let bh = &backup[32 * 512..];
        assert_eq!(le_u64(bh, 24), l.sectors - 1);
        assert_eq!(le_u64(bh, 32), 1);
        assert_eq!(le_u64(bh, 72), l.backup_entries_lba());
    }

    #[test]
    fn parse_refuses_bad_crc_and_wrong_shapes() {
        let l = layout();
        let (mut primary, _) = build(&l, &Uuid::nil(), &parts());
        primary[1024 + 200] ^= 1;
        let r = parse(512, l.sectors, |off, buf| {
            buf.copy_from_slice(&primary[off as usize..off as usize + buf.len()]);
            Ok(())
        });
        assert!(r.unwrap_err().0.contains("entry array CRC"));
        let one = Gpt {
            disk_guid: Uuid::nil(),
            partitions: parts()[..1].to_vec(),
        };
        assert!(scratch_partition_info(&one).is_err());
        let swapped = Gpt {
            disk_guid: Uuid::nil(),
            partitions: vec![parts()[1].clone(), parts()[0].clone()],
        };
        assert!(scratch_partition_info(&swapped).is_err());
    }
}
