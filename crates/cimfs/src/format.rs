//! Every on-disk structure and constant of the classic (file-based) CimFS format, version 2.0.
//! All integers are little-endian; layouts follow shared/docs/cim-format.md §A2–§A9, which cites
//! hcsshim e86001a65 internal/cimfs/format/format.go for each field.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `cimfile0`, the magic at offset 0 of every CIM file.
pub const MAGIC: [u8; 8] = *b"cimfile0";
/// Version this crate writes: 2.0 (A16b: the newest version every known reader accepts).
pub const VERSION_MAJOR: u32 = 2;
/// Minor version this crate writes (the 0 of 2.0).
pub const VERSION_MINOR: u32 = 0;
/// Oldest major version the reader accepts (`[FH]`: readers accept 2 and 3; 3 adds no struct changes).
pub const MIN_READ_MAJOR: u32 = 2;
/// Newest major version the reader accepts (3; see [`MIN_READ_MAJOR`]).
pub const MAX_READ_MAJOR: u32 = 3;

// `CommonHeader.Type` values (cim-format.md §A3.1; no known reader checks them).
/// `CommonHeader.Type` of the `.cim` filesystem description file.
pub const FILE_TYPE_IMAGE: u8 = 0;
/// `CommonHeader.Type` of a `region_*` file.
pub const FILE_TYPE_REGION: u8 = 1;
/// `CommonHeader.Type` of an `objectid_*` file.
pub const FILE_TYPE_OBJECT_ID: u8 = 2;

// `RegionHeader.Type` values (format.go comments, in the listed order; the numbers themselves
// are an inference no reader checks, cim-format.md §A3.3).
/// Region type of a metadata region: file tables, directory tables, security descriptors and
/// other metadata objects.
pub const REGION_TYPE_METADATA: u8 = 0;
/// Region type of a region holding page-aligned file data.
pub const REGION_TYPE_DATA: u8 = 1;
/// Region type of a region holding small file data, 8-byte aligned.
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

// `Stream` type field values (bits 48–55 of `LengthAndType`, cim-format.md §A7).
/// Stream type of plain data: the stream's bytes are stored as they are.
pub const STREAM_TYPE_DATA: u8 = 0;
/// Stream type of a directory: the stream is the directory's link table.
pub const STREAM_TYPE_LINK_TABLE: u8 = 1;
/// Stream type of an expanded PE image: the stream points at a [`PeImage`] descriptor.
pub const STREAM_TYPE_PE_IMAGE: u8 = 2;
/// Bit 56 of `LengthAndType`: the stream has no backing data and reads as zeros.
pub const STREAM_SPARSE_BIT: u64 = 1 << 56;
const STREAM_LENGTH_MASK: u64 = (1 << 48) - 1;

// `File.Flags` bits (cim-format.md §A6).
/// `File.Flags` bit: read-only (FILE_ATTRIBUTE_READONLY).
pub const FILE_FLAG_READ_ONLY: u16 = 0x01;
/// `File.Flags` bit: hidden (FILE_ATTRIBUTE_HIDDEN).
pub const FILE_FLAG_HIDDEN: u16 = 0x02;
/// `File.Flags` bit: system file (FILE_ATTRIBUTE_SYSTEM).
pub const FILE_FLAG_SYSTEM: u16 = 0x04;
/// `File.Flags` bit: archive (FILE_ATTRIBUTE_ARCHIVE).
pub const FILE_FLAG_ARCHIVE: u16 = 0x08;
/// `File.Flags` bit: sparse file (FILE_ATTRIBUTE_SPARSE_FILE).
pub const FILE_FLAG_SPARSE: u16 = 0x10;

// Win32 FILE_ATTRIBUTE_* values this format can represent.
/// Win32 FILE_ATTRIBUTE_READONLY.
pub const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
/// Win32 FILE_ATTRIBUTE_HIDDEN.
pub const FILE_ATTRIBUTE_HIDDEN: u32 = 0x2;
/// Win32 FILE_ATTRIBUTE_SYSTEM.
pub const FILE_ATTRIBUTE_SYSTEM: u32 = 0x4;
/// Win32 FILE_ATTRIBUTE_DIRECTORY; in an image, a default stream of type link table.
pub const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
/// Win32 FILE_ATTRIBUTE_ARCHIVE.
pub const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x20;
/// Win32 FILE_ATTRIBUTE_SPARSE_FILE.
pub const FILE_ATTRIBUTE_SPARSE_FILE: u32 = 0x200;
/// Win32 FILE_ATTRIBUTE_REPARSE_POINT; in an image, a non-null `File.ReparseOffset`.
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
    /// The null offset: "no object".
    pub const NULL: RegionOffset = RegionOffset(0);
    /// Builds an offset; `byte_offset` must fit 48 bits.
    pub fn new(region_index: u16, byte_offset: u64) -> RegionOffset {
        debug_assert!(byte_offset <= STREAM_LENGTH_MASK);
        RegionOffset((u64::from(region_index) << 48) | (byte_offset & STREAM_LENGTH_MASK))
    }
    /// Index into the combined region list (parents' regions first, then the image's own).
    pub fn region_index(self) -> u16 {
        (self.0 >> 48) as u16
    }
    /// Byte offset inside that region file.
    pub fn byte_offset(self) -> u64 {
        self.0 & STREAM_LENGTH_MASK
    }
    /// Whether this is the null offset.
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
    /// [`MAGIC`], `cimfile0`.
    pub magic: [u8; 8],
    /// Meaning unknown (cim-format.md §A3.1); this crate writes the byte length of the whole
    /// type-specific header, and no known reader checks it.
    pub header_length: U32,
    /// What kind of CIM file this is: one of the `FILE_TYPE_*` values.
    pub file_type: u8,
    /// Reserved.
    pub reserved: u8,
    /// Reserved.
    pub reserved2: U16,
    // 0x10
    /// Major format version (2 or 3; see [`MIN_READ_MAJOR`]).
    pub version_major: U32,
    /// Minor format version.
    pub version_minor: U32,
    /// Reserved.
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
    /// The set's GUID, as it appears in its `region_*` and `objectid_*` file names.
    pub id: Guid,
    /// Number of region files in the set (indices 0..count in the file names).
    pub count: U16,
    /// Reserved.
    pub reserved: U16,
    /// Reserved.
    pub reserved1: U32,
}

/// The `.cim` file header (72 bytes), followed by `parent_count` parent [`RegionSet`]s.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FilesystemHeader {
    /// Common header, type [`FILE_TYPE_IMAGE`].
    pub common: CommonHeader,
    // 0x20
    /// The image's own region set.
    pub regions: RegionSet,
    // 0x38
    /// [`RegionOffset`] of the [`Filesystem`] object.
    pub filesystem_offset: U64,
    /// Reserved.
    pub reserved: U32,
    /// Reserved.
    pub reserved1: U16,
    /// Number of parent region sets that follow this header (cim-format.md §A4).
    pub parent_count: U16,
}

/// Header of every `region_*` file (40 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RegionHeader {
    /// Common header, type [`FILE_TYPE_REGION`].
    pub common: CommonHeader,
    // 0x20
    /// Position of this file within its region set.
    pub index: U16,
    /// What the region holds: one of the `REGION_TYPE_*` values (cim-format.md §A3.3).
    pub region_type: u8,
    /// Reserved.
    pub reserved: u8,
    /// Reserved.
    pub reserved2: U32,
}

/// Header of every `objectid_*` file (48 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ObjectIdHeader {
    /// Common header, type [`FILE_TYPE_OBJECT_ID`].
    pub common: CommonHeader,
    // 0x20
    /// Index within the region set of the region file this objectid file belongs to.
    pub index: U16,
    /// Type byte; the format notes give no meaning (cim-format.md §A3.4), this crate writes the
    /// matching region's `REGION_TYPE_*`.
    pub region_type: u8,
    /// Reserved.
    pub reserved: u8,
    /// Reserved.
    pub reserved2: U32,
    /// Byte offset in this file of the first [`ObjectIdEntry`] (whether cimfs.dll always
    /// uses 0x30 is unknown, cim-format.md §A3.4).
    pub table_offset: U32,
    /// Number of [`ObjectIdEntry`] records.
    pub count: U32,
}

/// Length of an object id digest.
pub const DIGEST_LEN: usize = 24;

/// One object id: content length and digest, then the object's byte offset in the region (40 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ObjectIdEntry {
    /// Length of the object's content in bytes.
    pub length: U64,
    /// Digest of the content; cimfs.dll's algorithm is unknown (cim-format.md §A3.4), this
    /// crate stores the first 24 bytes of SHA-256.
    pub digest: [u8; DIGEST_LEN],
    // 0x20
    /// Byte offset of the object in the corresponding region file.
    pub offset: U64,
}

/// The filesystem object located by `FilesystemHeader.filesystem_offset` (24 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Filesystem {
    /// [`RegionOffset`] of the upcase table (0x10000 u16 entries).
    pub upcase_table_offset: U64,
    /// [`RegionOffset`] of the file table directory.
    pub file_table_directory_offset: U64,
    // 0x10
    /// Number of [`FileTableDirectoryEntry`] records in the file table directory.
    pub file_table_directory_length: U32,
    /// File id of the root directory.
    pub root_directory: U32,
}

/// One entry of the file table directory (16 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FileTableDirectoryEntry {
    /// [`RegionOffset`] of the file table.
    pub offset: U64,
    /// Number of valid [`File`] entries in that table.
    pub count: U16,
    /// Size of each entry in bytes ([`FILE_ENTRY_SIZE`] for version 2).
    pub entry_size: U16,
    /// Reserved.
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
    /// [`RegionOffset`] of the stream's data (or link table, or [`PeImage`]).
    pub data_offset: U64,
    /// Bits 0–47 length in bytes, bits 48–55 `STREAM_TYPE_*`, bit 56 [`STREAM_SPARSE_BIT`];
    /// bits 57–63 unknown (cim-format.md §A7).
    pub length_and_type: U64,
}

impl Stream {
    /// A descriptor for `length` bytes of type `stream_type` at `data_offset`.
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
    /// Where the stream's data is.
    pub fn offset(&self) -> RegionOffset {
        RegionOffset(self.data_offset.get())
    }
    /// Length of the stream in bytes.
    pub fn length(&self) -> u64 {
        self.length_and_type.get() & STREAM_LENGTH_MASK
    }
    /// The stream's `STREAM_TYPE_*` value.
    pub fn stream_type(&self) -> u8 {
        (self.length_and_type.get() >> 48) as u8
    }
    /// Whether the stream has no backing data and reads as zeros.
    pub fn sparse(&self) -> bool {
        self.length_and_type.get() & STREAM_SPARSE_BIT != 0
    }
}

/// A file entry, version 2 layout (0x60 bytes).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct File {
    /// `FILE_FLAG_*` bits (cim-format.md §A6).
    pub flags: U16,
    /// Byte length of the EA blob at `ea_offset`.
    pub ea_length: U16,
    /// Reparse tag, 0 when the file has no reparse data.
    pub reparse_tag: U32,
    /// Creation time, FILETIME (100 ns units since 1601-01-01 UTC).
    pub creation_time: U64,
    // 0x10
    /// Last write time, FILETIME.
    pub last_write_time: U64,
    /// Change time, FILETIME.
    pub change_time: U64,
    // 0x20
    /// Last access time, FILETIME.
    pub last_access_time: U64,
    /// The unnamed stream: file data, a PE image or a directory's link table.
    pub default_stream: Stream,
    /// [`RegionOffset`] of the security descriptor (u16 byte count, then the self-relative SD).
    pub sd_offset: U64,
    // 0x40
    /// [`RegionOffset`] of the raw FILE_FULL_EA_INFORMATION chain, `ea_length` bytes.
    pub ea_offset: U64,
    /// [`RegionOffset`] of the reparse buffer (u16 byte count, then the whole
    /// REPARSE_DATA_BUFFER); null when the file is no reparse point.
    pub reparse_offset: U64,
    // 0x50
    /// [`RegionOffset`] of the link table of alternate data streams, null when there are none.
    pub stream_table_offset: U64,
    /// Meaning unknown (cim-format.md §A6); this crate writes the file id of the containing
    /// directory (the root's own id for the root).
    pub parent_file_id: U32,
    /// Meaning unknown (cim-format.md §A6); this crate writes the combined region index of the
    /// image's own first region.
    pub base_region_index: U16,
    /// Reserved.
    pub reserved: U16,
}

/// Size of a version 2 file entry.
pub const FILE_ENTRY_SIZE: u16 = 0x60;

/// PE image descriptor (24 bytes), followed by `mapping_count` [`PeImageMapping`]s.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PeImage {
    /// [`RegionOffset`] of the expanded image data.
    pub data_offset: U64,
    /// Length of the expanded data in bytes; bit 63's meaning is unknown (the Go reader masks it
    /// off, cim-format.md §A7).
    pub data_length: U64,
    // 0x10
    /// Meaning unknown (cim-format.md §A7).
    pub image_length: U32,
    /// Number of [`PeImageMapping`]s that follow.
    pub mapping_count: U16,
    /// Flag bits; only [`PE_IMAGE_FLAG_VALID`] is known.
    pub flags: U16,
}

/// One PE mapping: reads at file offset ≥ `file_offset` come from `data + offset + delta` (8 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PeImageMapping {
    /// File offset where this mapping starts applying.
    pub file_offset: U32,
    /// Distance in bytes from the file offset to its position in the expanded data.
    pub delta: U32,
}

/// `PeImage.flags` bit meaning the image was expanded successfully ("ValidImage").
pub const PE_IMAGE_FLAG_VALID: u16 = 0x1;

/// Link table header (8 bytes): total byte length including the header, and entry count.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LinkTableHeader {
    /// Byte length of the whole table, this header included (an inference, cim-format.md §A8).
    pub length: U32,
    /// Number of entries (and of name offsets).
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
