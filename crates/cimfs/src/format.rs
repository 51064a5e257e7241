//! Every on-disk structure and constant of the classic (file-based) CimFS format, version 2.0.
//! All integers are little-endian; layouts follow shared/docs/cim-format.md §A2–§A9, which cites
//! hcsshim e86001a65 internal/cimfs/format/format.go for each field.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `cimfile0`, the magic at offset 0 of every CIM file.
pub const MAGIC: [u8; 8] = *b"cimfile0";
/// Version this crate writes: 2.0 (A16b: the newest version every known reader accepts).
pub const VERSION_MAJOR: u32 = 2;
pub const VERSION_MINOR: u32 = 0;
/// Oldest and newest major versions the reader accepts (`[FH]`: readers accept 2 and 3; 3 adds no struct changes).
pub const MIN_READ_MAJOR: u32 = 2;
pub const MAX_READ_MAJOR: u32 = 3;

/// `CommonHeader.Type` values.
pub const FILE_TYPE_IMAGE: u8 = 0;
pub const FILE_TYPE_REGION: u8 = 1;
pub const FILE_TYPE_OBJECT_ID: u8 = 2;

/// `RegionHeader.Type` values (format.go comments, in the listed order).
pub const REGION_TYPE_METADATA: u8 = 0;
pub const REGION_TYPE_DATA: u8 = 1;
pub const REGION_TYPE_SMALL_DATA: u8 = 2;

/// File entries per file table; a file id `n` lives in table `(n-1)/1024`, slot `(n-1)%1024`.
pub const FILES_PER_TABLE: u32 = 1024;
/// Page size used to align large file data.
pub const PAGE_SIZE: u64 = 4096;
/// Alignment of every metadata object and of small file data.
pub const METADATA_ALIGN: u64 = 8;
/// Number of UTF-16 units in the upcase table (the BMP).
pub const UPCASE_TABLE_LEN: usize = 0x10000;
/// Byte size of the upcase table.
pub const UPCASE_TABLE_BYTES: u64 = 0x20000;
/// Longest path component, in UTF-16 units.
pub const MAX_NAME_UNITS: usize = 255;
/// Longest path, in UTF-16 units.
pub const MAX_PATH_UNITS: usize = 0x7fff;

/// `Stream` type field values (bits 48–55 of `LengthAndType`).
pub const STREAM_TYPE_DATA: u8 = 0;
pub const STREAM_TYPE_LINK_TABLE: u8 = 1;
pub const STREAM_TYPE_PE_IMAGE: u8 = 2;
/// Bit 56 of `LengthAndType`: the stream has no backing data and reads as zeros.
pub const STREAM_SPARSE_BIT: u64 = 1 << 56;
const STREAM_LENGTH_MASK: u64 = (1 << 48) - 1;

/// `File.Flags` bits.
pub const FILE_FLAG_READ_ONLY: u16 = 0x01;
pub const FILE_FLAG_HIDDEN: u16 = 0x02;
pub const FILE_FLAG_SYSTEM: u16 = 0x04;
pub const FILE_FLAG_ARCHIVE: u16 = 0x08;
pub const FILE_FLAG_SPARSE: u16 = 0x10;

/// Win32 FILE_ATTRIBUTE_* values this format can represent.
pub const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
pub const FILE_ATTRIBUTE_HIDDEN: u32 = 0x2;
pub const FILE_ATTRIBUTE_SYSTEM: u32 = 0x4;
pub const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
pub const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x20;
pub const FILE_ATTRIBUTE_SPARSE_FILE: u32 = 0x200;
pub const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;

/// Reparse tag bit of name surrogates (symlinks, junctions): a directory carrying such a tag
/// stands for another one, and NTFS refuses to set one on a directory that has entries.
pub const REPARSE_TAG_NAME_SURROGATE: u32 = 0x2000_0000;

/// Whether a reparse buffer's tag (its first four bytes) is a name surrogate.
pub fn is_name_surrogate(reparse: &[u8]) -> bool {
    match reparse {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) & REPARSE_TAG_NAME_SURROGATE != 0,
        _ => false,
    }
}

/// The security descriptor hcsshim passes when a file has none: revision 1,
/// SE_SELF_RELATIVE|SE_DACL_PRESENT, no owner/group/DACL ("D:NO_ACCESS_CONTROL").
pub const NULL_DACL_SD: [u8; 20] = [
    0x01, 0x00, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Which `File.Flags` bit holds which Win32 attribute ([F21] / hcsshim e86001a65 `attributes()`).
const FLAG_ATTRIBUTES: [(u16, u32); 5] = [
    (FILE_FLAG_READ_ONLY, FILE_ATTRIBUTE_READONLY),
    (FILE_FLAG_HIDDEN, FILE_ATTRIBUTE_HIDDEN),
    (FILE_FLAG_SYSTEM, FILE_ATTRIBUTE_SYSTEM),
    (FILE_FLAG_ARCHIVE, FILE_ATTRIBUTE_ARCHIVE),
    (FILE_FLAG_SPARSE, FILE_ATTRIBUTE_SPARSE_FILE),
];

/// Maps Win32 attributes to `File.Flags` (bits the format cannot hold are dropped).
pub fn attributes_to_flags(attributes: u32) -> u16 {
    FLAG_ATTRIBUTES
        .iter()
        .filter(|&&(_, attr)| attributes & attr != 0)
        .fold(0, |f, &(flag, _)| f | flag)
}

/// Maps `File.Flags` back to Win32 attributes (directory and reparse bits are derived elsewhere).
pub fn flags_to_attributes(flags: u16) -> u32 {
    FLAG_ATTRIBUTES
        .iter()
        .filter(|&&(flag, _)| flags & flag != 0)
        .fold(0, |a, &(_, attr)| a | attr)
}

/// The Win32 attribute bits that survive a round trip through an image.
pub const REPRESENTABLE_ATTRIBUTES: u32 = FILE_ATTRIBUTE_READONLY
    | FILE_ATTRIBUTE_HIDDEN
    | FILE_ATTRIBUTE_SYSTEM
    | FILE_ATTRIBUTE_DIRECTORY
    | FILE_ATTRIBUTE_ARCHIVE
    | FILE_ATTRIBUTE_SPARSE_FILE
    | FILE_ATTRIBUTE_REPARSE_POINT;

/// A u64 pointing into the combined region list: bits 0–47 byte offset, bits 48–63 region index.
/// 0 is the null offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RegionOffset(pub u64);

impl RegionOffset {
    pub const NULL: RegionOffset = RegionOffset(0);
    /// Builds an offset; `byte_offset` must fit 48 bits.
    pub fn new(region_index: u16, byte_offset: u64) -> RegionOffset {
        debug_assert!(byte_offset <= STREAM_LENGTH_MASK);
        RegionOffset((u64::from(region_index) << 48) | (byte_offset & STREAM_LENGTH_MASK))
    }
    pub fn region_index(self) -> u16 {
        (self.0 >> 48) as u16
    }
    pub fn byte_offset(self) -> u64 {
        self.0 & STREAM_LENGTH_MASK
    }
    pub fn is_null(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for RegionOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "region {} + {:#x}",
            self.region_index(),
            self.byte_offset()
        )
    }
}

/// Windows GUID in its on-disk layout (Data1 LE u32, Data2 LE u16, Data3 LE u16, Data4 bytes).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
    Default,
)]
#[repr(C)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// A new random GUID.
    pub fn new_random() -> Guid {
        Guid(uuid::Uuid::new_v4().to_bytes_le())
    }
    /// Lower-case, hyphenated, brace-less text form, as go-winio formats it for region file names.
    pub fn to_file_string(&self) -> String {
        uuid::Uuid::from_bytes_le(self.0).hyphenated().to_string()
    }
}

/// Header at offset 0 of every CIM file (32 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CommonHeader {
    pub magic: [u8; 8],
    pub header_length: U32,
    pub file_type: u8,
    pub reserved: u8,
    pub reserved2: U16,
    // 0x10
    pub version_major: U32,
    pub version_minor: U32,
    pub reserved3: U64,
}

impl CommonHeader {
    /// A header of our version. `header_length` is the byte length of the whole type-specific header
    /// (the doc marks its meaning UNKNOWN; no reader checks it).
    pub fn new(file_type: u8, header_length: u32) -> CommonHeader {
        CommonHeader {
            magic: MAGIC,
            header_length: header_length.into(),
            file_type,
            reserved: 0,
            reserved2: 0.into(),
            version_major: VERSION_MAJOR.into(),
            version_minor: VERSION_MINOR.into(),
            reserved3: 0.into(),
        }
    }
}

/// A region set: the GUID in region file names and how many region files it has (24 bytes).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RegionSet {
    pub id: Guid,
    pub count: U16,
    pub reserved: U16,
    pub reserved1: U32,
}

/// The `.cim` file header (72 bytes), followed by `parent_count` parent [`RegionSet`]s.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FilesystemHeader {
    pub common: CommonHeader,
    // 0x20
    pub regions: RegionSet,
    // 0x38
    pub filesystem_offset: U64,
    pub reserved: U32,
    pub reserved1: U16,
    pub parent_count: U16,
}

/// Header of every `region_*` file (40 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RegionHeader {
    pub common: CommonHeader,
    // 0x20
    pub index: U16,
    pub region_type: u8,
    pub reserved: u8,
    pub reserved2: U32,
}

/// Header of every `objectid_*` file (48 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ObjectIdHeader {
    pub common: CommonHeader,
    // 0x20
    pub index: U16,
    pub region_type: u8,
    pub reserved: u8,
    pub reserved2: U32,
    pub table_offset: U32,
    pub count: U32,
}

/// Length of an object id digest.
pub const DIGEST_LEN: usize = 24;

/// One object id: content length and digest, then the object's byte offset in the region (40 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ObjectIdEntry {
    pub length: U64,
    pub digest: [u8; DIGEST_LEN],
    // 0x20
    pub offset: U64,
}

/// The filesystem object located by `FilesystemHeader.filesystem_offset` (24 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Filesystem {
    pub upcase_table_offset: U64,
    pub file_table_directory_offset: U64,
    // 0x10
    pub file_table_directory_length: U32,
    pub root_directory: U32,
}

/// One entry of the file table directory (16 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FileTableDirectoryEntry {
    pub offset: U64,
    pub count: U16,
    pub entry_size: U16,
    pub reserved: U32,
}

/// A stream descriptor (16 bytes): data offset and length/type/sparse bits.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct Stream {
    pub data_offset: U64,
    pub length_and_type: U64,
}

impl Stream {
    pub fn new(data_offset: RegionOffset, length: u64, stream_type: u8, sparse: bool) -> Stream {
        let mut lt = (length & STREAM_LENGTH_MASK) | (u64::from(stream_type) << 48);
        if sparse {
            lt |= STREAM_SPARSE_BIT;
        }
        Stream {
            data_offset: data_offset.0.into(),
            length_and_type: lt.into(),
        }
    }
    pub fn offset(&self) -> RegionOffset {
        RegionOffset(self.data_offset.get())
    }
    pub fn length(&self) -> u64 {
        self.length_and_type.get() & STREAM_LENGTH_MASK
    }
    pub fn stream_type(&self) -> u8 {
        (self.length_and_type.get() >> 48) as u8
    }
    pub fn sparse(&self) -> bool {
        self.length_and_type.get() & STREAM_SPARSE_BIT != 0
    }
}

/// A file entry, version 2 layout (0x60 bytes).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct File {
    pub flags: U16,
    pub ea_length: U16,
    pub reparse_tag: U32,
    pub creation_time: U64,
    // 0x10
    pub last_write_time: U64,
    pub change_time: U64,
    // 0x20
    pub last_access_time: U64,
    pub default_stream: Stream,
    pub sd_offset: U64,
    // 0x40
    pub ea_offset: U64,
    pub reparse_offset: U64,
    // 0x50
    pub stream_table_offset: U64,
    pub parent_file_id: U32,
    pub base_region_index: U16,
    pub reserved: U16,
}

/// Size of a version 2 file entry.
pub const FILE_ENTRY_SIZE: u16 = 0x60;

/// PE image descriptor (24 bytes), followed by `mapping_count` [`PeImageMapping`]s.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PeImage {
    pub data_offset: U64,
    pub data_length: U64,
    // 0x10
    pub image_length: U32,
    pub mapping_count: U16,
    pub flags: U16,
}

/// One PE mapping: reads at file offset ≥ `file_offset` come from `data + offset + delta` (8 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PeImageMapping {
    pub file_offset: U32,
    pub delta: U32,
}

/// `PeImage.flags` bit meaning the image was expanded successfully ("ValidImage").
pub const PE_IMAGE_FLAG_VALID: u16 = 0x1;

/// Link table header (8 bytes): total byte length including the header, and entry count.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LinkTableHeader {
    pub length: U32,
    pub count: U32,
}

/// Most file ids an image may have. Not a format limit (ids are u32): a limit this crate's writer
/// and reader share so that a file table directory read from disk stays small (16,384 entries,
/// 256 KiB) whatever its length field says; a Windows base layer has about 100,000 files.
pub const MAX_FILES: u32 = 1 << 24;
/// Most file tables an image may have (what [`MAX_FILES`] needs).
pub const MAX_FILE_TABLES: u32 = MAX_FILES / FILES_PER_TABLE;
/// Largest link table (directory or stream table) in bytes, a writer and reader limit: the
/// format's Length field is u32 (4 GiB), a real directory table is under 16 MiB (WinSxS: ~80,000
/// links), and a reader must not allocate gigabytes because one descriptor says so.
pub const MAX_LINK_TABLE_BYTES: u64 = 64 << 20;
/// Most entries one objectid file may list (one per stored object; 640 MiB of table), a writer
/// and reader limit.
pub const MAX_OBJECT_IDS: u32 = 1 << 24;

/// Size of one name offset in a link table.
pub const LINK_NAME_OFFSET_SIZE: usize = 4;
/// Size of a directory link table entry (a file id).
pub const LINK_DIR_ENTRY_SIZE: usize = 4;
/// Size of a stream link table entry (a [`Stream`]).
pub const LINK_STREAM_ENTRY_SIZE: usize = 16;

const _: () = {
    assert!(std::mem::size_of::<CommonHeader>() == 0x20);
    assert!(std::mem::size_of::<RegionSet>() == 0x18);
    assert!(std::mem::size_of::<FilesystemHeader>() == 0x48);
    assert!(std::mem::size_of::<RegionHeader>() == 0x28);
    assert!(std::mem::size_of::<ObjectIdHeader>() == 0x30);
    assert!(std::mem::size_of::<ObjectIdEntry>() == 0x28);
    assert!(std::mem::size_of::<Filesystem>() == 0x18);
    assert!(std::mem::size_of::<FileTableDirectoryEntry>() == 0x10);
    assert!(std::mem::size_of::<Stream>() == 0x10);
    assert!(std::mem::size_of::<File>() == FILE_ENTRY_SIZE as usize);
    assert!(std::mem::size_of::<PeImage>() == 0x18);
    assert!(std::mem::size_of::<PeImageMapping>() == 8);
    assert!(std::mem::size_of::<LinkTableHeader>() == 8);
};

/// Region file name for index `i` of region set `id`.
pub fn region_file_name(id: &Guid, i: u16) -> String {
    format!("region_{}_{}", id.to_file_string(), i)
}

/// Object id file name for index `i` of region set `id`.
pub fn objectid_file_name(id: &Guid, i: u16) -> String {
    format!("objectid_{}_{}", id.to_file_string(), i)
}

/// Rounds `v` up to a multiple of `align` (a power of two).
pub fn align_up(v: u64, align: u64) -> u64 {
    (v + align - 1) & !(align - 1)
}
