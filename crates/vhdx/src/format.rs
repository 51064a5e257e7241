//! Every VHDX on-disk structure and constant ([MS-VHDX] v1.0): file identifier, headers,
//! region table, BAT entries, metadata table and items, parent locator. Encoders produce exact
//! bytes; decoders check signatures, checksums and bounds and never trust a count from disk.

use uuid::Uuid;

/// One KiB in bytes.
pub const KIB: u64 = 1024;
/// One MiB in bytes; the alignment of every region and block in the file.
pub const MIB: u64 = 1024 * 1024;

// Offsets of the fixed 64 KiB slots of the 1 MiB header section (MS-VHDX 2.2).
/// File offset of the file type identifier.
pub const FILE_IDENTIFIER_OFFSET: u64 = 0;
/// File offset of the first header's slot.
pub const HEADER1_OFFSET: u64 = 64 * KIB;
/// File offset of the second header's slot.
pub const HEADER2_OFFSET: u64 = 128 * KIB;
/// File offset of the first region table.
pub const REGION_TABLE1_OFFSET: u64 = 192 * KIB;
/// File offset of the second region table (an identical copy of the first).
pub const REGION_TABLE2_OFFSET: u64 = 256 * KIB;

/// Bytes of a header that are used (and checksummed) at the start of its 64 KiB slot.
pub const HEADER_SIZE: usize = 4096;
/// Size of a region table in bytes, the checksummed span included.
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
/// The metadata table occupies the first 64 KiB of the metadata region (MS-VHDX 2.6.1).
pub const METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Most entries a region table or the metadata table may hold.
pub const MAX_TABLE_ENTRIES: u32 = 2047;
/// Largest virtual disk the format allows (MS-VHDX 2.6.2.2).
pub const MAX_VIRTUAL_SIZE: u64 = 64 * 1024 * 1024 * MIB;
/// A metadata item may not exceed 1 MiB (MS-VHDX 2.6.1.2).
pub const MAX_METADATA_ITEM: u32 = 1024 * 1024;

/// Signature at the start of the file type identifier (MS-VHDX 2.2.1).
pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
/// Signature at the start of each header (MS-VHDX 2.2.2).
pub const HEADER_SIGNATURE: &[u8; 4] = b"head";
/// Signature at the start of each region table (MS-VHDX 2.2.3.1).
pub const REGION_SIGNATURE: &[u8; 4] = b"regi";
/// Signature at the start of the metadata table (MS-VHDX 2.6.1.1).
pub const METADATA_SIGNATURE: &[u8; 8] = b"metadata";

/// Region table GUID of the BAT region (MS-VHDX 2.2.3.2).
pub const BAT_REGION: Uuid = uuid::uuid!("2DC27766-F623-4200-9D64-115E9BFD4A08");
/// Region table GUID of the metadata region (MS-VHDX 2.2.3.2).
pub const METADATA_REGION: Uuid = uuid::uuid!("8B7CA206-4790-4B9A-B8FE-575F050F886E");

/// Item id of File Parameters: block size and flags, 8 bytes (MS-VHDX 2.6.2.1).
pub const FILE_PARAMETERS: Uuid = uuid::uuid!("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
/// Item id of Virtual Disk Size: the disk size in bytes, u64 (MS-VHDX 2.6.2.2).
pub const VIRTUAL_DISK_SIZE: Uuid = uuid::uuid!("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
/// Item id of Virtual Disk ID (v1.0's "Page 83 Data"): the disk's identity GUID (MS-VHDX 2.6.2.3).
pub const VIRTUAL_DISK_ID: Uuid = uuid::uuid!("BECA12AB-B2E6-4523-93EF-C309E000C746");
/// Item id of Logical Sector Size: 512 or 4096, u32 (MS-VHDX 2.6.2.4).
pub const LOGICAL_SECTOR_SIZE: Uuid = uuid::uuid!("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
/// Item id of Physical Sector Size: 512 or 4096, u32 (MS-VHDX 2.6.2.5).
pub const PHYSICAL_SECTOR_SIZE: Uuid = uuid::uuid!("CDA348C7-445D-4471-9CC9-E9885251C556");
/// Item id of the Parent Locator, present in differencing disks only (MS-VHDX 2.6.2.6).
pub const PARENT_LOCATOR: Uuid = uuid::uuid!("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
/// Locator type of a VHDX parent (MS-VHDX 2.6.2.6.3).
pub const VHDX_LOCATOR_TYPE: Uuid = uuid::uuid!("B04AEFB7-D19E-4A81-B789-25B8E9445913");

/// Metadata entry flag IsUser: a user item rather than a system item (MS-VHDX 2.6.1.2).
pub const META_IS_USER: u32 = 1;
/// Metadata entry flag IsVirtualDisk: the item describes the virtual disk rather than the
/// file, so a differencing child copies it from its parent.
pub const META_IS_VIRTUAL_DISK: u32 = 2;
/// Metadata entry flag IsRequired: a reader that does not know the item must not open the file.
pub const META_IS_REQUIRED: u32 = 4;

/// File Parameters flag LeaveBlockAllocated: payload blocks are never freed, as in a fixed
/// disk; 0 for dynamic disks (MS-VHDX 2.6.2.1).
pub const PARAM_LEAVE_BLOCK_ALLOCATED: u32 = 1;
/// File Parameters flag HasParent: a differencing disk, with a parent locator.
pub const PARAM_HAS_PARENT: u32 = 2;

/// Payload block state NOT_PRESENT: no data in this file; in a dynamic disk the contents are
/// undefined (read as zeros), a differencing disk reads the parent (MS-VHDX 2.5.1.1).
pub const PAYLOAD_NOT_PRESENT: u8 = 0;
/// Payload block state UNDEFINED: the block's contents are undefined (read as zeros here).
pub const PAYLOAD_UNDEFINED: u8 = 1;
/// Payload block state ZERO: the block reads as zeros.
pub const PAYLOAD_ZERO: u8 = 2;
/// Payload block state UNMAPPED: the block was unmapped (trimmed); read as zeros here.
pub const PAYLOAD_UNMAPPED: u8 = 3;
/// The v0.95 draft's value for UNMAPPED, still accepted on input.
pub const PAYLOAD_UNMAPPED_V095: u8 = 5;
/// Payload block state FULLY_PRESENT: the whole block is in this file at the entry's offset.
pub const PAYLOAD_FULLY_PRESENT: u8 = 6;
/// Payload block state PARTIALLY_PRESENT (differencing disks only): the chunk's sector bitmap
/// says which sectors are in this file and which come from the parent.
pub const PAYLOAD_PARTIALLY_PRESENT: u8 = 7;
/// Sector bitmap block state NOT_PRESENT: the chunk has no sector bitmap (MS-VHDX 2.5.1.2).
pub const SB_NOT_PRESENT: u8 = 0;
/// Sector bitmap block state PRESENT (differencing disks only): the bitmap is in this file.
pub const SB_PRESENT: u8 = 6;

/// Parent locator key: the parent's DataWriteGuid as braced text (MS-VHDX 2.6.2.6.3); required.
pub const KEY_PARENT_LINKAGE: &str = "parent_linkage";
/// Parent locator key: a second DataWriteGuid also accepted as the parent's identity.
pub const KEY_PARENT_LINKAGE2: &str = "parent_linkage2";
/// Parent locator key: the parent's path relative to the child's folder, `\`-separated.
pub const KEY_RELATIVE_PATH: &str = "relative_path";
/// Parent locator key: the parent's path as `\\?\Volume{GUID}\...`.
pub const KEY_VOLUME_PATH: &str = "volume_path";
/// Parent locator key: the parent's absolute Windows path.
pub const KEY_ABSOLUTE_WIN32_PATH: &str = "absolute_win32_path";

/// Why a structure failed to decode; the caller adds the file and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

type FResult<T> = std::result::Result<T, FormatError>;

fn bad<T>(msg: impl Into<String>) -> FResult<T> {
    Err(FormatError(msg.into()))
}

/// The little-endian u16 at `off` (panics when out of bounds).
pub fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
/// The little-endian u32 at `off` (panics when out of bounds).
pub fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
/// The little-endian u64 at `off` (panics when out of bounds).
pub fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
/// A GUID stored in the Windows layout (u32, u16, u16 little-endian, then 8 bytes).
pub fn le_guid(b: &[u8], off: usize) -> Uuid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    Uuid::from_bytes_le(a)
}
/// Stores `v` little-endian at `off`.
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
/// Stores `v` little-endian at `off`.
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
/// Stores `v` little-endian at `off`.
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
/// Stores `g` at `off` in the Windows GUID layout.
pub fn put_guid(b: &mut [u8], off: usize, g: &Uuid) {
    b[off..off + 16].copy_from_slice(&g.to_bytes_le());
}

/// CRC-32C (Castagnoli) as VHDX stores it: over `buf` with the 4 bytes at `field` taken as zero.
pub fn checksum_with_zeroed_field(buf: &[u8], field: usize) -> u32 {
    let crc = crc32c::crc32c(&buf[..field]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &buf[field + 4..])
}

/// The file type identifier at offset 0 (MS-VHDX 2.2.1), 64 KiB with the creator string.
pub fn encode_file_identifier(creator: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64 * 1024];
    b[..8].copy_from_slice(FILE_SIGNATURE);
    for (i, unit) in creator.encode_utf16().take(256).enumerate() {
        put_u16(&mut b, 8 + 2 * i, unit);
    }
    b
}

/// Reads the creator string of a file identifier (diagnostic only).
pub fn decode_file_identifier(b: &[u8]) -> FResult<String> {
    if b.len() < 520 || &b[..8] != FILE_SIGNATURE {
        return bad("missing the \"vhdxfile\" signature");
    }
    let units: Vec<u16> = (0..256)
        .map(|i| le_u16(b, 8 + 2 * i))
        .take_while(|&u| u != 0)
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// One of the two headers (MS-VHDX 2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Picks the current header: of the two valid ones, the one with the larger number.
    pub sequence_number: u64,
    /// Changed before the file is first modified after each open.
    pub file_write_guid: Uuid,
    /// Changed before the disk's data is first modified after each open; a differencing
    /// child's `parent_linkage` names it.
    pub data_write_guid: Uuid,
    /// Identifies the log entries to replay; all zeros means there is nothing to replay.
    pub log_guid: Uuid,
    /// Log format version, 0.
    pub log_version: u16,
    /// Header format version, 1.
    pub version: u16,
    /// Length of the log region in bytes (a multiple of 1 MiB).
    pub log_length: u32,
    /// File offset of the log region (a multiple of 1 MiB, at least 1 MiB).
    pub log_offset: u64,
}

impl Header {
    /// The 4 KiB header with its checksum filled in.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[..4].copy_from_slice(HEADER_SIGNATURE);
        put_u64(&mut b, 8, self.sequence_number);
        put_guid(&mut b, 16, &self.file_write_guid);
        put_guid(&mut b, 32, &self.data_write_guid);
        put_guid(&mut b, 48, &self.log_guid);
        put_u16(&mut b, 64, self.log_version);
        put_u16(&mut b, 66, self.version);
        put_u32(&mut b, 68, self.log_length);
        put_u64(&mut b, 72, self.log_offset);
        let crc = checksum_with_zeroed_field(&b, 4);
        put_u32(&mut b, 4, crc);
        b
    }

    /// Decodes a header slot; fails on a wrong signature, checksum or version.
    pub fn decode(b: &[u8]) -> FResult<Header> {
        if b.len() < HEADER_SIZE {
            return bad("header shorter than 4096 bytes");
        }
        let b = &b[..HEADER_SIZE];
        if &b[..4] != HEADER_SIGNATURE {
            return bad("missing the \"head\" signature");
        }
        let stored = le_u32(b, 4);
        let computed = checksum_with_zeroed_field(b, 4);
        if stored != computed {
            return bad(format!(
                "header checksum {stored:#010x} does not match computed {computed:#010x}"
            ));
        }
        let h = Header {
            sequence_number: le_u64(b, 8),
            file_write_guid: le_guid(b, 16),
            data_write_guid: le_guid(b, 32),
            log_guid: le_guid(b, 48),
            log_version: le_u16(b, 64),
            version: le_u16(b, 66),
            log_length: le_u32(b, 68),
            log_offset: le_u64(b, 72),
        };
        if h.version != 1 {
            return bad(format!("header version {} (only 1 is defined)", h.version));
        }
        Ok(h)
    }
}

/// One region table entry (MS-VHDX 2.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEntry {
    /// Which region: [`BAT_REGION`], [`METADATA_REGION`] or one unknown to this crate.
    pub guid: Uuid,
    /// File offset of the region (a multiple of 1 MiB).
    pub file_offset: u64,
    /// Length of the region in bytes (a multiple of 1 MiB).
    pub length: u32,
    /// Bit 0 of the entry's Required field: a reader that does not know the region must not
    /// open the file.
    pub required: bool,
}

/// Encodes the 64 KiB region table with its checksum.
pub fn encode_region_table(entries: &[RegionEntry]) -> Vec<u8> {
    let mut b = vec![0u8; REGION_TABLE_SIZE];
    b[..4].copy_from_slice(REGION_SIGNATURE);
    put_u32(&mut b, 8, entries.len() as u32);
    for (i, e) in entries.iter().enumerate() {
        let o = 16 + 32 * i;
        put_guid(&mut b, o, &e.guid);
        put_u64(&mut b, o + 16, e.file_offset);
        put_u32(&mut b, o + 24, e.length);
        put_u32(&mut b, o + 28, u32::from(e.required));
    }
    let crc = checksum_with_zeroed_field(&b, 4);
    put_u32(&mut b, 4, crc);
    b
}

/// Decodes a region table; checks signature, checksum, entry count and alignment.
pub fn decode_region_table(b: &[u8]) -> FResult<Vec<RegionEntry>> {
    if b.len() < REGION_TABLE_SIZE {
        return bad("region table shorter than 64 KiB");
    }
    let b = &b[..REGION_TABLE_SIZE];
    if &b[..4] != REGION_SIGNATURE {
        return bad("missing the \"regi\" signature");
    }
    let stored = le_u32(b, 4);
    let computed = checksum_with_zeroed_field(b, 4);
    if stored != computed {
        return bad(format!(
            "region table checksum {stored:#010x} does not match computed {computed:#010x}"
        ));
    }
    let count = le_u32(b, 8);
    if count > MAX_TABLE_ENTRIES {
        return bad(format!("region table claims {count} entries (max 2047)"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let o = 16 + 32 * i;
        let e = RegionEntry {
            guid: le_guid(b, o),
            file_offset: le_u64(b, o + 16),
            length: le_u32(b, o + 24),
            required: le_u32(b, o + 28) & 1 != 0,
        };
        if !e.file_offset.is_multiple_of(MIB)
            || e.file_offset < MIB
            || !u64::from(e.length).is_multiple_of(MIB)
        {
            return bad(format!(
                "region {} at {:#x} length {:#x} is not 1 MiB aligned or lies in the header section",
                e.guid, e.file_offset, e.length
            ));
        }
        if out.iter().any(|p: &RegionEntry| p.guid == e.guid) {
            return bad(format!("region {} listed twice", e.guid));
        }
        out.push(e);
    }
    Ok(out)
}

/// One metadata table entry (MS-VHDX 2.6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataEntry {
    /// Which item (e.g. [`FILE_PARAMETERS`]); unique together with the IsUser flag.
    pub item_id: Uuid,
    /// Offset of the item from the start of the metadata region (at least 64 KiB; 0 when
    /// `length` is 0).
    pub offset: u32,
    /// Length of the item in bytes (at most 1 MiB).
    pub length: u32,
    /// `META_*` flag bits.
    pub flags: u32,
}

/// Encodes the 64 KiB metadata table.
pub fn encode_metadata_table(entries: &[MetadataEntry]) -> Vec<u8> {
    let mut b = vec![0u8; METADATA_TABLE_SIZE];
    b[..8].copy_from_slice(METADATA_SIGNATURE);
    put_u16(&mut b, 10, entries.len() as u16);
    for (i, e) in entries.iter().enumerate() {
        let o = 32 + 32 * i;
        put_guid(&mut b, o, &e.item_id);
        put_u32(&mut b, o + 16, e.offset);
        put_u32(&mut b, o + 20, e.length);
        put_u32(&mut b, o + 24, e.flags);
    }
    b
}

/// Decodes the metadata table and checks every item lies inside a region of `region_len` bytes.
pub fn decode_metadata_table(b: &[u8], region_len: u64) -> FResult<Vec<MetadataEntry>> {
    if b.len() < METADATA_TABLE_SIZE {
        return bad("metadata table shorter than 64 KiB");
    }
    if &b[..8] != METADATA_SIGNATURE {
        return bad("missing the \"metadata\" signature");
    }
    let count = u32::from(le_u16(b, 10));
    if count > MAX_TABLE_ENTRIES {
        return bad(format!("metadata table claims {count} entries (max 2047)"));
    }
    let mut out: Vec<MetadataEntry> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let o = 32 + 32 * i;
        let e = MetadataEntry {
            item_id: le_guid(b, o),
            offset: le_u32(b, o + 16),
            length: le_u32(b, o + 20),
            flags: le_u32(b, o + 24),
        };
        if e.length > MAX_METADATA_ITEM {
            return bad(format!(
                "metadata item {} is {} bytes (max 1 MiB)",
                e.item_id, e.length
            ));
        }
        if e.length > 0
            && (u64::from(e.offset) < METADATA_TABLE_SIZE as u64
                || u64::from(e.offset) + u64::from(e.length) > region_len)
        {
            return bad(format!(
                "metadata item {} at {:#x}+{:#x} lies outside the metadata region",
                e.item_id, e.offset, e.length
            ));
        }
        if e.length == 0 && e.offset != 0 {
            return bad(format!(
                "metadata item {} is empty but has offset {:#x} (must be 0)",
                e.item_id, e.offset
            ));
        }
        let user = e.flags & META_IS_USER;
        if out
            .iter()
            .any(|p| p.item_id == e.item_id && p.flags & META_IS_USER == user)
        {
            return bad(format!("metadata item {} listed twice", e.item_id));
        }
        let end = |m: &MetadataEntry| u64::from(m.offset) + u64::from(m.length);
        if let Some(p) = out.iter().find(|p| {
            p.length > 0
                && e.length > 0
                && u64::from(e.offset) < end(p)
                && u64::from(p.offset) < end(&e)
        }) {
            return bad(format!(
                "metadata items {} ({:#x}+{:#x}) and {} ({:#x}+{:#x}) overlap",
                p.item_id, p.offset, p.length, e.item_id, e.offset, e.length
            ));
        }
        out.push(e);
    }
    Ok(out)
}

/// The File Parameters item (MS-VHDX 2.6.2.1).
pub fn encode_file_parameters(block_size: u32, flags: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    put_u32(&mut b, 0, block_size);
    put_u32(&mut b, 4, flags);
    b
}

/// A BAT entry (MS-VHDX 2.5.1): state in bits 0-2, file offset in MiB in bits 20-63.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatEntry {
    /// Block state: a `PAYLOAD_*` value for a payload entry, `SB_*` for a sector-bitmap entry.
    pub state: u8,
    /// File offset of the block in MiB; only meaningful in the present states, 0 otherwise.
    pub file_offset_mb: u64,
}

impl BatEntry {
    /// Splits a raw 64-bit BAT entry (reserved bits 3-19 are dropped).
    pub fn from_raw(raw: u64) -> BatEntry {
        BatEntry {
            state: (raw & 7) as u8,
            file_offset_mb: raw >> 20,
        }
    }
    /// The raw 64-bit BAT entry, reserved bits zero.
    pub fn to_raw(self) -> u64 {
        u64::from(self.state & 7) | (self.file_offset_mb << 20)
    }
}

/// Block geometry derived from the metadata (MS-VHDX 2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Size of the virtual disk in bytes.
    pub virtual_size: u64,
    /// Payload block size in bytes (a power of two, 1 MiB to 256 MiB).
    pub block_size: u32,
    /// Logical sector size in bytes (512 or 4096).
    pub logical_sector_size: u32,
}

impl Geometry {
    /// Payload blocks per sector-bitmap block: 2^23 sectors / sectors per block.
    pub fn chunk_ratio(&self) -> u64 {
        (1u64 << 23) * u64::from(self.logical_sector_size) / u64::from(self.block_size)
    }
    /// Number of payload blocks covering the virtual disk.
    pub fn payload_blocks(&self) -> u64 {
        self.virtual_size.div_ceil(u64::from(self.block_size))
    }
    /// Number of sector-bitmap blocks (chunks) covering the virtual disk.
    pub fn sector_bitmap_blocks(&self) -> u64 {
        self.payload_blocks().div_ceil(self.chunk_ratio())
    }
    /// Number of BAT entries: differencing disks carry every sector-bitmap entry.
    pub fn bat_entries(&self, has_parent: bool) -> u64 {
        if has_parent {
            self.sector_bitmap_blocks() * (self.chunk_ratio() + 1)
        } else {
            let p = self.payload_blocks();
            p + (p.saturating_sub(1)) / self.chunk_ratio()
        }
    }
    /// BAT index of payload block `block`.
    pub fn payload_index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio()
    }
    /// BAT index of the sector bitmap covering chunk `chunk`.
    pub fn bitmap_index(&self, chunk: u64) -> u64 {
        (chunk + 1) * self.chunk_ratio() + chunk
    }
    /// Checks the ranges MS-VHDX 2.6.2 allows.
    pub fn validate(&self) -> FResult<()> {
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(MIB as u32..=256 * MIB as u32).contains(&bs) {
            return bad(format!(
                "block size {bs} is not a power of two in 1..256 MiB"
            ));
        }
        let ls = self.logical_sector_size;
        if ls != 512 && ls != 4096 {
            return bad(format!("logical sector size {ls} is neither 512 nor 4096"));
        }
        let vs = self.virtual_size;
        let why = if vs == 0 {
            Some("is zero".to_string())
        } else if vs > MAX_VIRTUAL_SIZE {
            Some("is above 64 TiB".to_string())
        } else if !vs.is_multiple_of(u64::from(ls)) {
            Some(format!("is not a multiple of the sector size {ls}"))
        } else {
            None
        };
        if let Some(why) = why {
            return bad(format!("virtual size {vs} {why}"));
        }
        Ok(())
    }
}

/// Key/value pairs of a parent locator item in stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatorItem {
    /// Locator type GUID; [`VHDX_LOCATOR_TYPE`] for a VHDX parent.
    pub locator_type: Uuid,
    /// `(key, value)` pairs, e.g. ([`KEY_PARENT_LINKAGE`], "{...}").
    pub entries: Vec<(String, String)>,
}

impl LocatorItem {
    /// The value of `key` (keys are case-sensitive per MS-VHDX 2.6.2.6.2).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Encodes the item: header, 12-byte entries, then UTF-16LE keys and values; offsets are
    /// relative to the item start (DiscUtils, dissect.hypervisor and urbackup agree; vhdx.md §4.3).
    /// Refused when a count, length or offset does not fit its field (a key or value of 32,768
    /// UTF-16 units or more: longer than any Windows path).
    pub fn encode(&self) -> FResult<Vec<u8>> {
        let n = self.entries.len();
        let count = u16::try_from(n)
            .map_err(|_| FormatError(format!("parent locator has {n} entries, over 65535")))?;
        let mut b = vec![0u8; 20 + 12 * n];
        put_guid(&mut b, 0, &self.locator_type);
        put_u16(&mut b, 18, count);
        for (i, (k, v)) in self.entries.iter().enumerate() {
            let put = |s: &str, what: &str, b: &mut Vec<u8>| -> FResult<(u32, u16)> {
                let off = b.len();
                for u in s.encode_utf16() {
                    b.extend_from_slice(&u.to_le_bytes());
                }
                let too_long = || {
                    FormatError(format!(
                        "parent locator {what} of {} UTF-16 units is too long for its \
                         16-bit byte length",
                        (b.len() - off) / 2
                    ))
                };
                Ok((
                    u32::try_from(off).map_err(|_| too_long())?,
                    u16::try_from(b.len() - off).map_err(|_| too_long())?,
                ))
            };
            let (ko, kl) = put(k, "key", &mut b)?;
            let (vo, vl) = put(v, &format!("{k} value"), &mut b)?;
            let o = 20 + 12 * i;
            put_u32(&mut b, o, ko);
            put_u32(&mut b, o + 4, vo);
            put_u16(&mut b, o + 8, kl);
            put_u16(&mut b, o + 10, vl);
        }
        Ok(b)
    }

    /// Decodes a parent locator item, checking every offset and length against the item.
    pub fn decode(b: &[u8]) -> FResult<LocatorItem> {
        if b.len() < 20 {
            return bad("parent locator shorter than its 20-byte header");
        }
        let locator_type = le_guid(b, 0);
        let n = usize::from(le_u16(b, 18));
        if 20 + 12 * n > b.len() {
            return bad(format!("parent locator claims {n} entries, more than fit"));
        }
        let text = |off: u32, len: u16, what: &str| -> FResult<String> {
            let (off, len) = (off as usize, usize::from(len));
            let end = off.saturating_add(len);
            if len == 0 || len % 2 != 0 || end > b.len() {
                return bad(format!(
                    "parent locator {what} at {off:#x}+{len:#x} is empty, odd or out of bounds"
                ));
            }
            let units: Vec<u16> = (0..len / 2).map(|i| le_u16(b, off + 2 * i)).collect();
            String::from_utf16(&units)
                .map_err(|_| FormatError(format!("parent locator {what} is not valid UTF-16")))
        };
        let mut entries: Vec<(String, String)> = Vec::with_capacity(n);
        for i in 0..n {
            let o = 20 + 12 * i;
            let key = text(le_u32(b, o), le_u16(b, o + 8), "key")?;
            let value = text(le_u32(b, o + 4), le_u16(b, o + 10), "value")?;
            if entries.iter().any(|(k, _)| *k == key) {
                return bad(format!(
                    "parent locator key {} appears twice",
                    crate::error::quote(&key)
                ));
            }
            entries.push((key, value));
        }
        Ok(LocatorItem {
            locator_type,
            entries,
        })
    }
}

/// `{XXXXXXXX-XXXX-...}`: the upper-case braced form Windows gives GUIDs in text (vhdx.md §4.4).
pub fn braced_upper(g: &Uuid) -> String {
    format!("{{{}}}", g.hyphenated().to_string().to_uppercase())
}

/// `{xxxxxxxx-xxxx-...}`: the form MS-VHDX 2.6.2.6.3 asks for in `parent_linkage` ("lowercase",
/// braces). libvhdi 20210425 reads only this form; readers that parse any case accept it too.
pub fn braced_lower(g: &Uuid) -> String {
    format!("{{{}}}", g.hyphenated())
}

/// Parses a GUID with or without braces, any case.
pub fn parse_guid(s: &str) -> Option<Uuid> {
    // uuid's parser takes the braced Microsoft form as well as the plain one.
    Uuid::parse_str(s.trim()).ok()
}

// Log structures (MS-VHDX 2.3): the log is a circular buffer of 4 KiB sectors holding entries.
/// Size of a log sector in bytes; entries are made of whole sectors.
pub const LOG_SECTOR_SIZE: usize = 4096;
/// Signature of a log entry header (MS-VHDX 2.3.1.1).
pub const LOG_ENTRY_SIGNATURE: &[u8; 4] = b"loge";
/// Signature of a data descriptor (MS-VHDX 2.3.1.3).
pub const LOG_DATA_DESCRIPTOR_SIGNATURE: &[u8; 4] = b"desc";
/// Signature of a zero descriptor (MS-VHDX 2.3.1.2).
pub const LOG_ZERO_DESCRIPTOR_SIGNATURE: &[u8; 4] = b"zero";
/// Signature of a data sector (MS-VHDX 2.3.1.4).
pub const LOG_DATA_SECTOR_SIGNATURE: &[u8; 4] = b"data";
/// Size of a log entry header in bytes.
pub const LOG_ENTRY_HEADER_SIZE: usize = 64;
/// Size of a zero or data descriptor in bytes.
pub const LOG_DESCRIPTOR_SIZE: usize = 32;
/// Bytes of a data sector that the sector itself carries; the first 8 and last 4 of the 4 KiB
/// written to the file come from the descriptor (MS-VHDX 2.3.1.3 and 2.3.1.4).
pub const LOG_DATA_PAYLOAD: usize = 4084;

/// The 64-byte header of a log entry (MS-VHDX 2.3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntryHeader {
    /// Length of the whole entry in bytes (a multiple of 4 KiB).
    pub entry_length: u32,
    /// Offset inside the log of the oldest entry not yet known to be applied.
    pub tail: u32,
    /// The entry's sequence number; consecutive entries of one log count up by one.
    pub sequence_number: u64,
    /// Number of zero and data descriptors in the entry.
    pub descriptor_count: u32,
    /// The log the entry belongs to; must equal the header's `log_guid` to be replayed.
    pub log_guid: Uuid,
    /// The file was at least this long when the entry was written.
    pub flushed_file_offset: u64,
    /// Every structure the entry refers to lies below this file offset.
    pub last_file_offset: u64,
}

impl LogEntryHeader {
    /// Decodes the first 64 bytes of an entry; checks only the signature.
    pub fn decode(b: &[u8]) -> FResult<LogEntryHeader> {
        if b.len() < LOG_ENTRY_HEADER_SIZE {
            return bad("log entry header shorter than 64 bytes");
        }
        if &b[..4] != LOG_ENTRY_SIGNATURE {
            return bad("missing the \"loge\" signature");
        }
        Ok(LogEntryHeader {
            entry_length: le_u32(b, 8),
            tail: le_u32(b, 12),
            sequence_number: le_u64(b, 16),
            descriptor_count: le_u32(b, 24),
            log_guid: le_guid(b, 32),
            flushed_file_offset: le_u64(b, 48),
            last_file_offset: le_u64(b, 56),
        })
    }
}

/// One change a log entry makes to the file, in the order the entry lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// A data descriptor with its data sector: 4 KiB written at `file_offset`.
    Data {
        /// File offset written (4 KiB aligned).
        file_offset: u64,
        /// The 4 KiB written there.
        bytes: Box<[u8; LOG_SECTOR_SIZE]>,
    },
    /// A zero descriptor: `length` bytes of zeros at `file_offset`.
    Zero {
        /// File offset of the first zero byte (4 KiB aligned).
        file_offset: u64,
        /// Number of zero bytes (a multiple of 4 KiB).
        length: u64,
    },
}

impl LogWrite {
    /// File offset the write starts at.
    pub fn file_offset(&self) -> u64 {
        match self {
            LogWrite::Data { file_offset, .. } | LogWrite::Zero { file_offset, .. } => *file_offset,
        }
    }
    /// Number of bytes the write covers.
    pub fn len(&self) -> u64 {
        match self {
            LogWrite::Data { .. } => LOG_SECTOR_SIZE as u64,
            LogWrite::Zero { length, .. } => *length,
        }
    }
    /// Whether the write covers no bytes (a zero descriptor of length 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole log entry: header and the writes its descriptors describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The entry's header.
    pub header: LogEntryHeader,
    /// The writes its descriptors describe, in stored order.
    pub writes: Vec<LogWrite>,
}

/// Sectors taken by the entry header and `count` descriptors (the header takes the room of
/// two descriptors in the first sector; MS-VHDX 2.3.1).
pub fn log_descriptor_sectors(count: u32) -> u64 {
    ((LOG_ENTRY_HEADER_SIZE + LOG_DESCRIPTOR_SIZE * count as usize) as u64)
        .div_ceil(LOG_SECTOR_SIZE as u64)
}

impl LogEntry {
    /// Encodes the entry as it sits in the log: header and descriptor sectors, then one data
    /// sector per data descriptor, checksum filled in. `header.entry_length` and
    /// `header.descriptor_count` are computed from `writes`; the other header fields are used
    /// as given.
    pub fn encode(&self) -> Vec<u8> {
        let count = self.writes.len() as u32;
        let desc_sectors = log_descriptor_sectors(count) as usize;
        let data_sectors = self
            .writes
            .iter()
            .filter(|w| matches!(w, LogWrite::Data { .. }))
            .count();
        let total = (desc_sectors + data_sectors) * LOG_SECTOR_SIZE;
        let mut b = vec![0u8; total];
        let h = &self.header;
        b[..4].copy_from_slice(LOG_ENTRY_SIGNATURE);
        put_u32(&mut b, 8, total as u32);
        put_u32(&mut b, 12, h.tail);
        put_u64(&mut b, 16, h.sequence_number);
        put_u32(&mut b, 24, count);
        put_guid(&mut b, 32, &h.log_guid);
        put_u64(&mut b, 48, h.flushed_file_offset);
        put_u64(&mut b, 56, h.last_file_offset);
        let seq = h.sequence_number;
        let mut data_at = desc_sectors * LOG_SECTOR_SIZE;
        for (i, w) in self.writes.iter().enumerate() {
            let o = LOG_ENTRY_HEADER_SIZE + LOG_DESCRIPTOR_SIZE * i;
            match w {
                LogWrite::Data { file_offset, bytes } => {
                    b[o..o + 4].copy_from_slice(LOG_DATA_DESCRIPTOR_SIGNATURE);
                    b[o + 4..o + 8].copy_from_slice(&bytes[LOG_SECTOR_SIZE - 4..]);
                    b[o + 8..o + 16].copy_from_slice(&bytes[..8]);
                    put_u64(&mut b, o + 16, *file_offset);
                    put_u64(&mut b, o + 24, seq);
                    let d = data_at;
                    b[d..d + 4].copy_from_slice(LOG_DATA_SECTOR_SIGNATURE);
                    put_u32(&mut b, d + 4, (seq >> 32) as u32);
                    b[d + 8..d + 8 + LOG_DATA_PAYLOAD]
                        .copy_from_slice(&bytes[8..8 + LOG_DATA_PAYLOAD]);
                    put_u32(&mut b, d + LOG_SECTOR_SIZE - 4, seq as u32);
                    data_at += LOG_SECTOR_SIZE;
                }
                LogWrite::Zero {
                    file_offset,
                    length,
                } => {
                    b[o..o + 4].copy_from_slice(LOG_ZERO_DESCRIPTOR_SIGNATURE);
                    put_u64(&mut b, o + 8, *length);
                    put_u64(&mut b, o + 16, *file_offset);
                    put_u64(&mut b, o + 24, seq);
                }
            }
        }
        let crc = checksum_with_zeroed_field(&b, 4);
        put_u32(&mut b, 4, crc);
        b
    }

    /// Decodes and validates a whole entry (`b` holds exactly EntryLength bytes, already
    /// unwrapped from the circular log): checksum, sequence numbers of every descriptor and data
    /// sector, signatures, 4 KiB alignment of offsets and zero lengths, and that every data
    /// sector lies inside the entry.
    pub fn decode(b: &[u8]) -> FResult<LogEntry> {
        let header = LogEntryHeader::decode(b)?;
        let len = header.entry_length as usize;
        if len != b.len() || len == 0 || !len.is_multiple_of(LOG_SECTOR_SIZE) {
            return bad(format!(
                "entry length {len} is zero, not a multiple of 4 KiB or not the {} bytes given",
                b.len()
            ));
        }
        let stored = le_u32(b, 4);
        let computed = checksum_with_zeroed_field(b, 4);
        if stored != computed {
            return bad(format!(
                "entry checksum {stored:#010x} does not match computed {computed:#010x}"
            ));
        }
        let seq = header.sequence_number;
        if seq == 0 {
            return bad("sequence number 0");
        }
        let count = header.descriptor_count;
        let desc_sectors = log_descriptor_sectors(count);
        if desc_sectors > (len / LOG_SECTOR_SIZE) as u64 {
            return bad(format!(
                "{count} descriptors do not fit an entry of {len} bytes"
            ));
        }
        let mut data_at = desc_sectors as usize * LOG_SECTOR_SIZE;
        let mut writes = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let o = LOG_ENTRY_HEADER_SIZE + LOG_DESCRIPTOR_SIZE * i;
            let d = &b[o..o + LOG_DESCRIPTOR_SIZE];
            let file_offset = le_u64(d, 16);
            if le_u64(d, 24) != seq {
                return bad(format!("descriptor {i} has sequence {}", le_u64(d, 24)));
            }
            if !file_offset.is_multiple_of(LOG_SECTOR_SIZE as u64) {
                return bad(format!(
                    "descriptor {i} file offset {file_offset:#x} is not 4 KiB aligned"
                ));
            }
            if &d[..4] == LOG_ZERO_DESCRIPTOR_SIGNATURE {
                let length = le_u64(d, 8);
                if !length.is_multiple_of(LOG_SECTOR_SIZE as u64)
                    || file_offset.checked_add(length).is_none()
                {
                    return bad(format!(
                        "zero descriptor {i} length {length:#x} is not 4 KiB aligned or overflows"
                    ));
                }
                writes.push(LogWrite::Zero {
                    file_offset,
                    length,
                });
            } else if &d[..4] == LOG_DATA_DESCRIPTOR_SIGNATURE {
                let Some(s) = b.get(data_at..data_at + LOG_SECTOR_SIZE) else {
                    return bad(format!(
                        "data descriptor {i} has no data sector in the entry"
                    ));
                };
                let sector_seq =
                    (u64::from(le_u32(s, 4)) << 32) | u64::from(le_u32(s, LOG_SECTOR_SIZE - 4));
                if &s[..4] != LOG_DATA_SECTOR_SIGNATURE || sector_seq != seq {
                    return bad(format!(
                        "data sector of descriptor {i} lacks the \"data\" signature or has sequence {sector_seq}"
                    ));
                }
                if file_offset.checked_add(LOG_SECTOR_SIZE as u64).is_none() {
                    return bad(format!("data descriptor {i} file offset overflows"));
                }
                let mut bytes = Box::new([0u8; LOG_SECTOR_SIZE]);
                bytes[..8].copy_from_slice(&d[8..16]);
                bytes[8..8 + LOG_DATA_PAYLOAD].copy_from_slice(&s[8..8 + LOG_DATA_PAYLOAD]);
                bytes[LOG_SECTOR_SIZE - 4..].copy_from_slice(&d[4..8]);
                writes.push(LogWrite::Data { file_offset, bytes });
                data_at += LOG_SECTOR_SIZE;
            } else {
                return bad(format!("descriptor {i} has neither \"desc\" nor \"zero\""));
            }
        }
        Ok(LogEntry { header, writes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn crc32c_check_value() {
        // vhdx.md §5.9: check value of "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn guid_bytes_match_vhdx_md_table() {
        // vhdx.md §5.8.
        let table: &[(Uuid, &str)] = &[
            (BAT_REGION, "6677c22d23f600429d64115e9bfd4a08"),
            (METADATA_REGION, "06a27c8b90479a4bb8fe575f050f886e"),
            (FILE_PARAMETERS, "3767a1ca36fa434db3b633f0aa44e76b"),
            (VIRTUAL_DISK_SIZE, "2442a52f1bcd7648b2115dbed83bf4b8"),
            (VIRTUAL_DISK_ID, "ab12cabee6b2234593efc309e000c746"),
            (LOGICAL_SECTOR_SIZE, "1dbf41816fa90947ba47f233a8faab5f"),
            (PHYSICAL_SECTOR_SIZE, "c748a3cd5d4471449cc9e9885251c556"),
            (PARENT_LOCATOR, "2d5fd3a80bb34d45abf7d3d84834ab0c"),
            (VHDX_LOCATOR_TYPE, "b7ef4ab09ed1814ab78925b8e9445913"),
        ];
        for (g, want) in table {
            assert_eq!(hex(&g.to_bytes_le()), *want, "{g}");
        }
    }

    #[test]
    fn header_layout_and_round_trip() {
        let h = Header {
            sequence_number: 0x0102030405060708,
            file_write_guid: uuid::uuid!("00112233-4455-6677-8899-aabbccddeeff"),
            data_write_guid: uuid::uuid!("10112233-4455-6677-8899-aabbccddeeff"),
            log_guid: Uuid::nil(),
            log_version: 0,
            version: 1,
            log_length: MIB as u32,
            log_offset: MIB,
        };
        let b = h.encode();
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[0..4], b"head");
        assert_eq!(hex(&b[8..16]), "0807060504030201");
        assert_eq!(hex(&b[16..32]), "33221100554477668899aabbccddeeff");
        assert_eq!(
            hex(&b[64..80]),
            "0000010000001000".to_string() + "0000100000000000"
        );
        assert!(b[80..].iter().all(|&x| x == 0));
        assert_eq!(le_u32(&b, 4), checksum_with_zeroed_field(&b, 4));
        assert_eq!(Header::decode(&b), Ok(h));
        let mut broken = b.clone();
        broken[100] = 1;
        assert!(Header::decode(&broken).is_err());
    }

    #[test]
    fn region_table_layout_and_round_trip() {
        let entries = [
            RegionEntry {
                guid: BAT_REGION,
                file_offset: 3 * MIB,
                length: MIB as u32,
                required: true,
            },
            RegionEntry {
                guid: METADATA_REGION,
                file_offset: 2 * MIB,
                length: MIB as u32,
                required: true,
            },
        ];
        let b = encode_region_table(&entries);
        assert_eq!(b.len(), 65536);
        assert_eq!(&b[0..4], b"regi");
        assert_eq!(hex(&b[8..16]), "0200000000000000");
        assert_eq!(
            hex(&b[16..48]),
            "6677c22d23f600429d64115e9bfd4a08".to_string()
                + "0000300000000000"
                + "00001000"
                + "01000000"
        );
        assert_eq!(decode_region_table(&b), Ok(entries.to_vec()));
    }

    #[test]
    fn metadata_table_layout() {
        let e = [MetadataEntry {
            item_id: FILE_PARAMETERS,
            offset: 0x10000,
            length: 8,
            flags: META_IS_REQUIRED,
        }];
        let b = encode_metadata_table(&e);
        assert_eq!(&b[0..8], b"metadata");
        assert_eq!(hex(&b[8..12]), "00000100");
        assert_eq!(
            hex(&b[32..64]),
            "3767a1ca36fa434db3b633f0aa44e76b".to_string()
                + "00000100"
                + "08000000"
                + "04000000"
                + "00000000"
        );
        assert_eq!(decode_metadata_table(&b, MIB), Ok(e.to_vec()));
        // An item running past the region is refused.
        let bad = encode_metadata_table(&[MetadataEntry {
            offset: 0xFFFF0,
            length: 0x20,
            ..e[0]
        }]);
        assert!(decode_metadata_table(&bad, MIB).is_err());
        // Items must not overlap (vhdx.md §5.7), and an empty item has offset 0.
        let size = MetadataEntry {
            item_id: VIRTUAL_DISK_SIZE,
            offset: 0x10004,
            length: 8,
            flags: META_IS_REQUIRED | META_IS_VIRTUAL_DISK,
        };
        let overlapping = encode_metadata_table(&[e[0], size]);
        let msg = decode_metadata_table(&overlapping, MIB).unwrap_err().0;
        assert!(msg.contains("overlap"), "{msg}");
        let apart = encode_metadata_table(&[
            e[0],
            MetadataEntry {
                offset: 0x10008,
                ..size
            },
        ]);
        assert!(decode_metadata_table(&apart, MIB).is_ok());
        let empty_at = encode_metadata_table(&[MetadataEntry { length: 0, ..e[0] }]);
        let msg = decode_metadata_table(&empty_at, MIB).unwrap_err().0;
        assert!(msg.contains("must be 0"), "{msg}");
    }

    #[test]
    fn bat_geometry_for_the_utility_vm_disk() {
        // vhdx.md §1: 10 GiB, 1 MiB blocks, 512-byte sectors.
        let g = Geometry {
            virtual_size: 10 << 30,
            block_size: MIB as u32,
            logical_sector_size: 512,
        };
        g.validate().unwrap();
        assert_eq!(g.chunk_ratio(), 4096);
        assert_eq!(g.payload_blocks(), 10240);
        assert_eq!(g.sector_bitmap_blocks(), 3);
        assert_eq!(g.bat_entries(false), 10242);
        assert_eq!(g.bat_entries(true), 12291);
        assert_eq!(g.payload_index(4095), 4095);
        assert_eq!(g.payload_index(4096), 4097);
        assert_eq!(g.bitmap_index(0), 4096);
        assert_eq!(g.bitmap_index(1), 8193);
        let e = BatEntry {
            state: PAYLOAD_FULLY_PRESENT,
            file_offset_mb: 4,
        };
        assert_eq!(e.to_raw(), 0x0040_0006);
        assert_eq!(BatEntry::from_raw(0x0040_0006), e);
    }

    #[test]
    fn parent_locator_layout() {
        let item = LocatorItem {
            locator_type: VHDX_LOCATOR_TYPE,
            entries: vec![
                ("parent_linkage".into(), "{A}".into()),
                ("relative_path".into(), ".\\b".into()),
            ],
        };
        let b = item.encode().unwrap();
        // Header: type GUID, reserved 0, count 2; entries from 20; strings from 44.
        assert_eq!(
            hex(&b[0..20]),
            "b7ef4ab09ed1814ab78925b8e94459130000".to_string() + "0200"
        );
        assert_eq!(
            hex(&b[20..44]),
            // key 44 len 28, value 72 len 6 | key 78 len 26, value 104 len 6
            "2c000000480000001c000600".to_string() + "4e000000680000001a000600"
        );
        assert_eq!(&b[44..46], &[b'p', 0]);
        assert_eq!(&b[72..78], &[b'{', 0, b'A', 0, b'}', 0]);
        assert_eq!(b.len(), 110);
        assert_eq!(LocatorItem::decode(&b), Ok(item));
        // An entry pointing past the end is refused.
        let mut broken = b.clone();
        put_u32(&mut broken, 24, 200);
        assert!(LocatorItem::decode(&broken).is_err());
    }

    #[test]
    fn guid_text_forms() {
        let g = uuid::uuid!("2dc27766-f623-4200-9d64-115e9bfd4a08");
        assert_eq!(braced_upper(&g), "{2DC27766-F623-4200-9D64-115E9BFD4A08}");
        assert_eq!(braced_lower(&g), "{2dc27766-f623-4200-9d64-115e9bfd4a08}");
        assert_eq!(
            parse_guid("{2dc27766-F623-4200-9D64-115E9BFD4A08}"),
            Some(g)
        );
        assert_eq!(parse_guid("2dc27766-f623-4200-9d64-115e9bfd4a08"), Some(g));
        assert_eq!(parse_guid("{nope}"), None);
    }
}
