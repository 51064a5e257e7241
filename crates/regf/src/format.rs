//! On-disk constants of the regf format (base block, hbin, cell layouts) and the
//! little-endian helpers shared by the reader, the writer and the validator.
//! Facts: shared/docs/regf.md §1 (msuhanov/regf spec 88e878de, ReactOS cmlib).

/// Size of the base block at the start of the file; cell offsets are relative to its end.
pub const BASE_BLOCK_SIZE: usize = 4096;
/// Size of an hbin header.
pub const HBIN_HEADER_SIZE: usize = 32;
/// Bins are multiples of this size.
pub const HBIN_ALIGN: usize = 4096;
/// Offset of the FILETIME in an hbin header (a backup of the base block's last-written time
/// in the first bin).
pub const HBIN_TIMESTAMP: usize = 20;
/// "No cell" offset.
pub const NIL: u32 = 0xFFFF_FFFF;

// Base block field offsets (regf.md §1.2).
/// Base block: the `regf` signature (4 bytes).
pub const BB_SIGNATURE: usize = 0;
/// Base block: primary sequence number (u32), bumped when a write starts.
pub const BB_SEQ1: usize = 4;
/// Base block: secondary sequence number (u32), bumped when a write ends; differs from the
/// primary one in a dirty hive.
pub const BB_SEQ2: usize = 8;
/// Base block: last-written time (FILETIME); Windows stopped updating it after 8.1.
pub const BB_LAST_WRITTEN: usize = 12;
/// Base block: major format version (u32, always 1).
pub const BB_MAJOR: usize = 20;
/// Base block: minor format version (u32, 3 to 6).
pub const BB_MINOR: usize = 24;
/// Base block: file type (u32, one of the `FILE_TYPE_*` values).
pub const BB_TYPE: usize = 28;
/// Base block: file format (u32, 1 = direct memory load).
pub const BB_FORMAT: usize = 32;
/// Base block: offset of the root key's nk cell (u32).
pub const BB_ROOT: usize = 36;
/// Base block: size of the hive bins data in bytes (u32, the sum of all hbin sizes).
pub const BB_BINS_SIZE: usize = 40;
/// Base block: clustering factor (u32, always 1).
pub const BB_CLUSTERING: usize = 44;
/// Base block: flags (u32): 0x1 KTM locked, [`BB_FLAG_LAYERED`].
pub const BB_FLAGS: usize = 144;
/// Base block: the `OfRg` signature offreg 6.2+ writes when it saves a hive.
pub const BB_OFRG: usize = 176;
/// Base block: offreg flags (u32, 1 in offreg output).
pub const BB_OFRG_FLAGS: usize = 180;
/// Base block: XOR checksum of the first 508 bytes (u32, see [`checksum`]).
pub const BB_CHECKSUM: usize = 508;
/// Base-block flag: the hive supports layered keys (a differencing hive), Windows 10 RS1+.
pub const BB_FLAG_LAYERED: u32 = 0x2;

// Key node (nk) field offsets, relative to the cell payload (after the 4-byte size);
// regf.md §1.5.
/// nk: flags (u16, `KEY_*` bits).
pub const NK_FLAGS: usize = 2;
/// nk: last-written time (FILETIME).
pub const NK_LAST_WRITTEN: usize = 4;
/// nk: layered-key byte (Windows 10 RS1+): [`LAYER_INHERIT_CLASS`] and the layer semantics
/// in [`LAYER_SEMANTICS_MASK`] (regf.md §1.12).
pub const NK_LAYER: usize = 13;
/// nk: offset of the parent key's nk cell (u32; meaningless for the root).
pub const NK_PARENT: usize = 16;
/// nk: number of (stable) subkeys (u32).
pub const NK_SUBKEY_COUNT: usize = 20;
/// nk: number of volatile subkeys (u32; should be 0 on disk, real files keep leftovers).
pub const NK_VOLATILE_SUBKEY_COUNT: usize = 24;
/// nk: offset of the subkey index (li/lf/lh or ri cell; u32, [`NIL`] when none).
pub const NK_SUBKEY_LIST: usize = 28;
/// nk: volatile subkey list offset (u32; meaningless on disk).
pub const NK_VOLATILE_SUBKEY_LIST: usize = 32;
/// nk: number of values (u32).
pub const NK_VALUE_COUNT: usize = 36;
/// nk: offset of the value list cell (u32).
pub const NK_VALUE_LIST: usize = 40;
/// nk: offset of the key's sk (security) cell (u32).
pub const NK_SECURITY: usize = 44;
/// nk: offset of the class name cell (u32, [`NIL`] when none).
pub const NK_CLASS: usize = 48;
/// nk: low 16 bits the longest subkey name in bytes counted as UTF-16; bits 16-31
/// virtualization control, user (Wow64) and debug flags.
pub const NK_MAX_SUBKEY_NAME: usize = 52;
/// nk: longest subkey class name in bytes (u32).
pub const NK_MAX_SUBKEY_CLASS: usize = 56;
/// nk: longest value name in bytes counted as UTF-16 (u32).
pub const NK_MAX_VALUE_NAME: usize = 60;
/// nk: largest value data size in bytes (u32, big data included).
pub const NK_MAX_VALUE_DATA: usize = 64;
/// nk: WorkVar (u32, unused since XP; real files keep junk there).
pub const NK_WORK_VAR: usize = 68;
/// nk: length of the key name in bytes as stored (u16).
pub const NK_NAME_LEN: usize = 72;
/// nk: length of the class name in bytes (u16).
pub const NK_CLASS_LEN: usize = 74;
/// nk: the key name: Latin-1 bytes with [`KEY_COMP_NAME`], UTF-16LE otherwise; no terminator.
pub const NK_NAME: usize = 76;

/// nk flag: the key is volatile (never on disk normally).
pub const KEY_VOLATILE: u16 = 0x0001;
/// nk flag: root of a hive.
pub const KEY_HIVE_ENTRY: u16 = 0x0004;
/// nk flag: the key cannot be deleted.
pub const KEY_NO_DELETE: u16 = 0x0008;
/// nk flag: the name is stored as Latin-1 bytes.
pub const KEY_COMP_NAME: u16 = 0x0020;
/// Flags ORSaveHive-style writers give the root key (HIVE_ENTRY|NO_DELETE|COMP_NAME).
pub const ROOT_FLAGS: u16 = 0x002C;

/// Layer byte (nk offset 13) bit 7: the key takes its class from the layer below.
pub const LAYER_INHERIT_CLASS: u8 = 0x80;
/// Layer byte bits 0-1: the layer semantics (0 merge, 1 tombstone, 2 supersede local,
/// 3 supersede tree).
pub const LAYER_SEMANTICS_MASK: u8 = 0x03;

// Value (vk) field offsets, relative to the cell payload; regf.md §1.8.
/// vk: length of the value name in bytes as stored (u16; 0 for the default value).
pub const VK_NAME_LEN: usize = 2;
/// vk: data size in bytes (u32); with [`DATA_INLINE`] set, the low 31 bits give the inline length.
pub const VK_DATA_SIZE: usize = 4;
/// vk: offset of the data cell (or db record), or the data itself when inline (u32).
pub const VK_DATA_OFFSET: usize = 8;
/// vk: value type (u32, REG_*; any number is allowed).
pub const VK_TYPE: usize = 12;
/// vk: flags (u16, [`VALUE_COMP_NAME`], [`VALUE_TOMBSTONE`]).
pub const VK_FLAGS: usize = 16;
/// vk: the value name: Latin-1 bytes with [`VALUE_COMP_NAME`], UTF-16LE otherwise.
pub const VK_NAME: usize = 20;
/// vk flag: the name is stored as Latin-1 bytes.
pub const VALUE_COMP_NAME: u16 = 0x0001;
/// vk flag: a tombstone value in a differencing hive.
pub const VALUE_TOMBSTONE: u16 = 0x0002;
/// Data-size bit: data is stored in the data-offset field itself (<= 4 bytes).
pub const DATA_INLINE: u32 = 0x8000_0000;

/// Largest value data stored in one cell; above it (format >= 1.4) a db big-data record is used.
pub const MAX_SINGLE_CELL_DATA: usize = 16344;
/// Data bytes per db segment (each segment is a 16352-byte cell).
pub const DB_SEGMENT_DATA: usize = 16344;
/// Entries per lh (or lf: same 8-byte entries) leaf in ORSaveHive output
/// (507 * 8 + 8 = 4064 bytes, one 4096-byte bin).
pub const LEAF_CAPACITY: usize = 507;
/// Lowest minor version whose subkey leaves are lh (hash) leaves; below it they are lf
/// (name-hint) leaves (ReactOS cmindex.c CmpAddSubKey; regf.md §1.6).
pub const MINOR_HASH_LEAVES: u32 = 5;
/// Lowest minor version that stores data above [`MAX_SINGLE_CELL_DATA`] as db big data;
/// below it such data is one cell (msuhanov/regf spec; regf.md §1.9).
pub const MINOR_BIG_DATA: u32 = 4;

/// Longest key name Windows allows, in characters (limits: ReactOS cmcheck.c / MSDN).
pub const MAX_KEY_NAME_CHARS: usize = 255;
/// Longest value name Windows allows, in characters.
pub const MAX_VALUE_NAME_CHARS: usize = 16383;
/// Deepest key tree Windows allows, in levels.
pub const MAX_DEPTH: usize = 512;

// Transaction logs (regf.md §1.13; msuhanov/regf spec 88e878de "Format of transaction log
// files"). A log starts with a copy of the first 512 bytes of the base block.
/// Bytes of the base-block copy at the start of a log file; entries or the dirty vector follow.
pub const LOG_BASE_BLOCK_SIZE: usize = 512;
/// File type of a primary hive.
pub const FILE_TYPE_PRIMARY: u32 = 0;
/// File type of an old-format log written by Windows XP to 8.
pub const FILE_TYPE_LOG_OLD: u32 = 1;
/// File type of an old-format log written by NT 4 / 2000.
pub const FILE_TYPE_LOG_VERY_OLD: u32 = 2;
/// File type of a new-format log (Windows 8.1+): HvLE entries.
pub const FILE_TYPE_LOG_NEW: u32 = 6;
/// Log entries start at and are multiples of this size.
pub const LOG_SECTOR: usize = 512;
// Log entry ("HvLE") header: signature, size, flags, sequence, bins size, page count, hashes.
/// Log entry: the `HvLE` signature.
pub const LE_SIGNATURE: usize = 0;
/// Log entry: size of the whole entry in bytes (u32, a multiple of [`LOG_SECTOR`]).
pub const LE_SIZE: usize = 4;
/// Log entry: flags (u32); only bit 0x1, the base block's KTM-locked flag, is carried over.
pub const LE_FLAGS: usize = 8;
/// Log entry: sequence number (u32); consecutive entries count up by one.
pub const LE_SEQUENCE: usize = 12;
/// Log entry: hive bins data size after the entry is applied (u32).
pub const LE_BINS_SIZE: usize = 16;
/// Log entry: number of dirty page references (u32).
pub const LE_PAGE_COUNT: usize = 20;
/// Log entry: Hash-1, Marvin32 of the entry from [`LE_HEADER_SIZE`] on (u64).
pub const LE_HASH1: usize = 24;
/// Log entry: Hash-2, Marvin32 of the first [`LE_HASH2_SPAN`] bytes of the entry (u64).
pub const LE_HASH2: usize = 32;
/// Size of the entry header; the dirty page references (offset, size: 8 bytes each) follow.
pub const LE_HEADER_SIZE: usize = 40;
/// Hash-2 covers this many bytes at the start of an entry (Hash-1 included).
pub const LE_HASH2_SPAN: usize = 32;
/// Marvin32 seed of log entry hashes, bytes 82 EF 4D 88 7A 4E 55 C5 read as one big-endian
/// number: low half 0x7A4E55C5 starts the first register (checked against the hashes in yarp
/// NewDirtyHive1's logs).
pub const LOG_HASH_SEED: u64 = 0x82EF_4D88_7A4E_55C5;

/// Marvin32 of `data` with `seed`, as a 64-bit value (high register << 32 | low register):
/// 4-byte little-endian words are added to the low register and mixed; the 0-3 tail bytes
/// plus a 0x80 marker form a final word, followed by one more mix of a zero word.
pub fn marvin32(seed: u64, data: &[u8]) -> u64 {
    fn mix(lo: &mut u32, hi: &mut u32, word: u32) {
        *lo = lo.wrapping_add(word);
        *hi ^= *lo;
        *lo = lo.rotate_left(20).wrapping_add(*hi);
        *hi = hi.rotate_left(9) ^ *lo;
        *lo = lo.rotate_left(27).wrapping_add(*hi);
        *hi = hi.rotate_left(19);
    }
    let (mut lo, mut hi) = (seed as u32, (seed >> 32) as u32);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        mix(
            &mut lo,
            &mut hi,
            u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
        );
    }
    let tail = words.remainder();
    let mut last = 0x80u32 << (8 * tail.len());
    for (i, &b) in tail.iter().enumerate() {
        last |= u32::from(b) << (8 * i);
    }
    mix(&mut lo, &mut hi, last);
    mix(&mut lo, &mut hi, 0);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Reads a little-endian u16 at `at`, or None when out of bounds.
pub fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Reads a little-endian u32 at `at`, or None when out of bounds.
pub fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a little-endian u64 at `at`, or None when out of bounds.
pub fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Base-block checksum: XOR of the 127 u32 words before offset 508, with 0 -> 1 and
/// 0xFFFFFFFF -> 0xFFFFFFFE (ReactOS hivesum.c). `base` must hold at least 508 bytes.
pub fn checksum(base: &[u8]) -> u32 {
    let mut x = 0u32;
    for i in 0..127 {
        x ^= le_u32(base, i * 4).unwrap_or(0);
    }
    match x {
        0 => 1,
        0xFFFF_FFFF => 0xFFFF_FFFE,
        v => v,
    }
}

/// lh hash of a name given as UTF-16 units: h = h*37 + upcase(c) (ReactOS CmpComputeHashKey).
pub fn lh_hash(name: &[u16]) -> u32 {
    name.iter().fold(0u32, |h, &c| {
        h.wrapping_mul(37)
            .wrapping_add(u32::from(upcase::upcase(c)))
    })
}

/// lf name hint of a name given as UTF-16 units: its first four units as Latin-1 bytes, zero
/// padded. The kernel fills the hint from the fourth unit backwards and stops at the first
/// unit above 0xFF, so such a name always has hint byte 0 = 0, which makes lookups compare
/// the full name (ReactOS cmindex.c CmpAddToLeaf; regf.md §1.6: Cyrillic names have zero
/// hints in yarp UnicodeHive).
pub fn lf_hint(name: &[u16]) -> [u8; 4] {
    let mut hint = [0u8; 4];
    for i in (0..name.len().min(4)).rev() {
        match u8::try_from(name[i]) {
            Ok(b) => hint[i] = b,
            Err(_) => break,
        }
    }
    hint
}

/// True when every UTF-16 unit fits in Latin-1, i.e. the name is stored compressed
/// (ReactOS cmname.c CmpNameSize).
pub fn is_compressible(name: &[u16]) -> bool {
    name.iter().all(|&c| c <= 0xFF)
}

/// UTF-16LE bytes as units (an odd trailing byte is ignored).
pub fn utf16le_units(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The UTF-16 units of a stored key or value name: Latin-1 bytes when `compressed`, else
/// UTF-16LE (see [`utf16le_units`]).
pub fn name_units(bytes: &[u8], compressed: bool) -> Vec<u16> {
    if compressed {
        bytes.iter().map(|&b| u16::from(b)).collect()
    } else {
        utf16le_units(bytes)
    }
}

/// A stored key or value name as text (see [`name_units`]; unpaired surrogates replaced).
pub fn decode_name(bytes: &[u8], compressed: bool) -> String {
    String::from_utf16_lossy(&name_units(bytes, compressed))
}

/// Where a key name is stored in the hive bins: enough to render a key's path only when an
/// error or note names it.
pub(crate) struct NameAt {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) compressed: bool,
}

impl NameAt {
    /// The name as text; empty when the range is not within `bins`.
    pub(crate) fn decode(&self, bins: &[u8]) -> String {
        let bytes = bins
            .get(self.start..self.start + self.len)
            .unwrap_or_default();
        decode_name(bytes, self.compressed)
    }
}

/// Rounds a cell size (including its 4-byte size field) up to the 8-byte cell granularity.
pub fn cell_size(payload: usize) -> usize {
    (payload + 4 + 7) & !7
}

/// Name of a value type for dumps.
pub fn type_name(kind: u32) -> Option<&'static str> {
    Some(match kind {
        0 => "REG_NONE",
        1 => "REG_SZ",
        2 => "REG_EXPAND_SZ",
        3 => "REG_BINARY",
        4 => "REG_DWORD",
        5 => "REG_DWORD_BIG_ENDIAN",
        6 => "REG_LINK",
        7 => "REG_MULTI_SZ",
        8 => "REG_RESOURCE_LIST",
        9 => "REG_FULL_RESOURCE_DESCRIPTOR",
        10 => "REG_RESOURCE_REQUIREMENTS_LIST",
        11 => "REG_QWORD",
        _ => return None,
    })
}
