//! Consistency checker for hive files: the invariants Windows relies on (checksum, bin
//! layout, parent pointers, counts, lh hashes, lf hints, leaf kind and big-data form for the
//! format version, subkey order, sk list and refcounts) plus the
//! compactness rules of ORSaveHive output (every cell referenced once, minimal cell sizes,
//! free space only at bin tails, exact "largest" fields). Live hives legitimately break the
//! compactness rules; anything this crate writes must pass all of them.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::format::*;

/// One violated invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Offset of the offending cell relative to the hive bins data, when there is one.
    pub offset: Option<u32>,
    /// Path of the key concerned ("" for the root or the file as a whole). A path longer
    /// than [`PATH_LIMIT`] bytes is shortened to "…" and its last [`PATH_LIMIT`] bytes.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "cell {o:#x}")?,
            None => write!(f, "file")?,
        }
        write!(f, " (key \"{}\"): {}", self.key, self.message)
    }
}

/// Longest key path (in UTF-8 bytes) a [`Problem`] names in full. Real paths are far shorter;
/// hostile ones (hundreds of levels of 32767-unit names) would otherwise make up to 1000
/// problems hold megabytes each.
pub const PATH_LIMIT: usize = 4096;

/// Where a key name is stored in the hive bins.
struct NameAt {
    start: usize,
    len: usize,
    compressed: bool,
}

/// What a leaf entry says about its key's name besides the nk offset.
#[derive(Clone, Copy)]
enum NameCheck {
    /// li entry: nothing.
    None,
    /// lh entry: hash of the name.
    Hash(u32),
    /// lf entry: first four name units as Latin-1.
    Hint([u8; 4]),
}

/// Checks a hive file and returns every problem found (empty = valid and compact).
pub fn validate(bytes: &[u8]) -> Vec<Problem> {
    let mut v = Validator::default();
    v.run(bytes);
    v.problems
}

#[derive(Default)]
struct Validator<'a> {
    bins: &'a [u8],
    minor: u32,
    /// Base-block flag 0x2 (layered keys allowed).
    layered: bool,
    /// Allocated cells: offset -> total size.
    cells: HashMap<u32, usize>,
    refs: HashMap<u32, u32>,
    /// sk offset -> number of nk cells pointing at it.
    sk_users: HashMap<u32, u32>,
    problems: Vec<Problem>,
    /// Names of the keys being checked, below the root, outermost first: the current key's
    /// path, rendered only for a problem (a path per level would cost depth^2 x name length).
    chain: Vec<NameAt>,
}

impl<'a> Validator<'a> {
    fn report(&mut self, offset: Option<u32>, key: &str, message: impl Into<String>) {
        if self.problems.len() < 1000 {
            self.problems.push(Problem {
                offset,
                key: key.to_string(),
                message: message.into(),
            });
        }
    }

    /// Reports a problem with the key being checked.
    fn report_here(&mut self, offset: Option<u32>, message: impl Into<String>) {
        if self.problems.len() < 1000 {
            let key = self.path();
            self.report(offset, &key, message);
        }
    }

    /// Path of the key being checked, shortened to its tail beyond [`PATH_LIMIT`] bytes; only
    /// the names that fit are decoded.
    fn path(&self) -> String {
        let mut names = Vec::new();
        let mut len = 0;
        let mut cut = false;
        for n in self.chain.iter().rev() {
            if len > PATH_LIMIT {
                cut = true;
                break;
            }
            let bytes = self.bins.get(n.start..n.start + n.len).unwrap_or_default();
            let units: Vec<u16> = if n.compressed {
                bytes.iter().map(|&b| u16::from(b)).collect()
            } else {
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            };
            let name = String::from_utf16_lossy(&units);
            len += name.len() + usize::from(!names.is_empty());
            names.push(name);
        }
        names.reverse();
        let path = names.join("\\");
        if !cut && path.len() <= PATH_LIMIT {
            return path;
        }
        let mut from = path.len().saturating_sub(PATH_LIMIT);
        while !path.is_char_boundary(from) {
            from += 1;
        }
        format!("…{}", &path[from..])
    }

    fn run(&mut self, bytes: &'a [u8]) {
        if bytes.len() < BASE_BLOCK_SIZE || &bytes[..4] != b"regf" {
            self.report(None, "", "no regf base block");
            return;
        }
        let base = &bytes[..BASE_BLOCK_SIZE];
        let f = |at| le_u32(base, at).unwrap_or(0);
        self.minor = f(BB_MINOR);
        self.layered = f(BB_FLAGS) & BB_FLAG_LAYERED != 0;
        for (what, got, want) in [
            ("major version", f(BB_MAJOR), 1),
            ("file type", f(BB_TYPE), 0),
            ("file format", f(BB_FORMAT), 1),
            ("clustering factor", f(BB_CLUSTERING), 1),
            ("secondary sequence", f(BB_SEQ2), f(BB_SEQ1)),
            ("checksum", f(BB_CHECKSUM), checksum(base)),
        ] {
            if got != want {
                self.report(None, "", format!("{what} is {got:#x}, expected {want:#x}"));
            }
        }
        if !(3..=6).contains(&self.minor) {
            self.report(None, "", format!("minor version {}", self.minor));
        }
        let size = f(BB_BINS_SIZE) as usize;
        if size & (HBIN_ALIGN - 1) != 0 || size == 0 {
            self.report(
                None,
                "",
                format!("hive bins size {size:#x} not a positive multiple of 4096"),
            );
        }
        if bytes.len() != BASE_BLOCK_SIZE + size {
            self.report(
                None,
                "",
                format!(
                    "file is {} bytes, base block + bins are {}",
                    bytes.len(),
                    BASE_BLOCK_SIZE + size
                ),
            );
        }
        self.bins = &bytes[BASE_BLOCK_SIZE..bytes.len().min(BASE_BLOCK_SIZE + size)];
        self.scan_bins();
        let root = f(BB_ROOT);
        let mut seen = HashSet::new();
        let root_sk = self.key(root, NIL, &mut seen, 0);
        self.check_sk_list(root_sk);
        let mut unreferenced: Vec<u32> = self
            .cells
            .keys()
            .filter(|o| !self.refs.contains_key(o))
            .copied()
            .collect();
        unreferenced.sort();
        for o in unreferenced.into_iter().take(20) {
            self.report(Some(o), "", "allocated cell referenced by nothing");
        }
        let twice: Vec<u32> = self
            .refs
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(&o, _)| o)
            .collect();
        for o in twice.into_iter().take(20) {
            self.report(Some(o), "", "cell referenced more than once");
        }
    }

    fn scan_bins(&mut self) {
        let mut at = 0usize;
        while at < self.bins.len() {
            let b = self.bins;
            if b.get(at..at + 4) != Some(b"hbin") {
                self.report(Some(at as u32), "", "no hbin signature");
                return;
            }
            let off = le_u32(b, at + 4).unwrap_or(0) as usize;
            let size = le_u32(b, at + 8).unwrap_or(0) as usize;
            if off != at {
                self.report(Some(at as u32), "", format!("hbin offset field {off:#x}"));
            }
            if size == 0 || size & (HBIN_ALIGN - 1) != 0 || at + size > b.len() {
                self.report(Some(at as u32), "", format!("hbin size {size:#x}"));
                return;
            }
            let end = at + size;
            let mut c = at + HBIN_HEADER_SIZE;
            while c < end {
                let raw = le_u32(b, c).unwrap_or(0) as i32;
                let len = raw.unsigned_abs() as usize;
                if len < 8 || len & 7 != 0 || c + len > end {
                    self.report(
                        Some(c as u32),
                        "",
                        format!("cell size {raw} breaks the bin"),
                    );
                    break;
                }
                if raw < 0 {
                    self.cells.insert(c as u32, len);
                } else if c + len != end {
                    self.report(Some(c as u32), "", "free cell not at the end of its bin");
                }
                c += len;
            }
            at = end;
        }
    }

    /// Payload of a referenced cell, counting the reference and checking minimal size.
    fn cell(&mut self, off: u32, needed: Option<usize>) -> Option<&'a [u8]> {
        let Some(&len) = self.cells.get(&off) else {
            self.report_here(
                Some(off),
                "reference to something that is not an allocated cell",
            );
            return None;
        };
        *self.refs.entry(off).or_insert(0) += 1;
        if let Some(n) = needed {
            if cell_size(n) != len {
                self.report_here(
                    Some(off),
                    format!("cell of {len} bytes, minimal is {}", cell_size(n)),
                );
            }
        }
        let b: &'a [u8] = self.bins;
        b.get(off as usize + 4..off as usize + len)
    }

    fn key(&mut self, off: u32, parent: u32, seen: &mut HashSet<u32>, depth: usize) -> u32 {
        if !seen.insert(off) || depth > MAX_DEPTH {
            self.report_here(Some(off), "key reached twice or nested too deep");
            return NIL;
        }
        let Some(nk) = self.cell(off, None) else {
            return NIL;
        };
        if nk.len() < NK_NAME || &nk[..2] != b"nk" {
            self.report_here(Some(off), "not an nk cell");
            return NIL;
        }
        let u16_at = |at| le_u16(nk, at).unwrap_or(0);
        let u32_at = |at| le_u32(nk, at).unwrap_or(0);
        let flags = u16_at(NK_FLAGS);
        let name_len = usize::from(u16_at(NK_NAME_LEN));
        if cell_size(NK_NAME + name_len) != nk.len() + 4 {
            self.report_here(Some(off), "nk cell not minimal");
        }
        let name_bytes = nk.get(NK_NAME..NK_NAME + name_len).unwrap_or_default();
        let units: Vec<u16> = if flags & KEY_COMP_NAME != 0 {
            name_bytes.iter().map(|&b| u16::from(b)).collect()
        } else {
            name_bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        if units.is_empty() {
            self.report_here(Some(off), "empty key name");
        }
        if (flags & KEY_COMP_NAME != 0) != is_compressible(&units) {
            self.report_here(Some(off), "compressed-name flag does not match the name");
        }
        if parent == NIL && flags & KEY_HIVE_ENTRY == 0 {
            self.report_here(Some(off), "root without KEY_HIVE_ENTRY");
        }
        if parent != NIL && u32_at(NK_PARENT) != parent {
            self.report_here(
                Some(off),
                format!("parent {:#x}, expected {parent:#x}", u32_at(NK_PARENT)),
            );
        }
        if u32_at(NK_VOLATILE_SUBKEY_COUNT) != 0 {
            self.report_here(Some(off), "volatile subkey count on disk");
        }
        if !self.layered && nk[NK_LAYER] != 0 {
            self.report_here(
                Some(off),
                "layer bits in a hive without the layered-keys flag",
            );
        }
        // Security.
        let sk = u32_at(NK_SECURITY);
        *self.sk_users.entry(sk).or_insert(0) += 1;
        if self.sk_users[&sk] == 1 {
            match self.cell(sk, None) {
                Some(c) if c.len() >= 20 && &c[..2] == b"sk" => {
                    let n = le_u32(c, 16).unwrap_or(0) as usize;
                    if cell_size(20 + n) != c.len() + 4 {
                        self.report_here(Some(sk), "sk cell not minimal");
                    }
                }
                _ => self.report_here(Some(sk), "not an sk cell"),
            }
        }
        // Class.
        let class_len = usize::from(u16_at(NK_CLASS_LEN));
        if class_len > 0 {
            self.cell(u32_at(NK_CLASS), Some(class_len));
        }
        // Values.
        let (mut max_vname, mut max_vdata) = (0u32, 0u32);
        let nvalues = u32_at(NK_VALUE_COUNT) as usize;
        if nvalues > 0 {
            let list_off = u32_at(NK_VALUE_LIST);
            let list = self
                .cell(list_off, Some(4 * nvalues))
                .filter(|_| !self.walked_before(list_off));
            if let Some(list) = list {
                for i in 0..nvalues.min(list.len() / 4) {
                    let vk = le_u32(list, 4 * i).unwrap_or(NIL);
                    let (n, d) = self.value(vk);
                    max_vname = max_vname.max(n);
                    max_vdata = max_vdata.max(d);
                }
            }
        }
        if (u32_at(NK_MAX_VALUE_NAME), u32_at(NK_MAX_VALUE_DATA)) != (max_vname, max_vdata) {
            self.report_here(
                Some(off),
                format!(
                    "largest value name/data fields {}/{} not exact ({max_vname}/{max_vdata})",
                    u32_at(NK_MAX_VALUE_NAME),
                    u32_at(NK_MAX_VALUE_DATA)
                ),
            );
        }
        // Subkeys.
        let count = u32_at(NK_SUBKEY_COUNT) as usize;
        let children = if count > 0 {
            self.subkeys(u32_at(NK_SUBKEY_LIST))
        } else {
            Vec::new()
        };
        if children.len() != count {
            self.report_here(
                Some(off),
                format!("subkey count {count}, lists hold {}", children.len()),
            );
        }
        let (mut max_name, mut max_class) = (0u32, 0u32);
        let mut prev: Option<Vec<u16>> = None;
        for (child, check) in children {
            // Decoding a child's name costs up to 64 KiB: a key listed many times is reported
            // once by `key` and skipped here.
            if seen.contains(&child) {
                self.report_here(Some(child), "key reached twice or nested too deep");
                continue;
            }
            let Some(c) = self.bins.get(child as usize + 4..) else {
                continue;
            };
            let cflags = le_u16(c, NK_FLAGS).unwrap_or(0);
            let clen = usize::from(le_u16(c, NK_NAME_LEN).unwrap_or(0));
            let cb = c.get(NK_NAME..NK_NAME + clen).unwrap_or_default();
            let cu: Vec<u16> = if cflags & KEY_COMP_NAME != 0 {
                cb.iter().map(|&b| u16::from(b)).collect()
            } else {
                cb.chunks_exact(2)
                    .map(|x| u16::from_le_bytes([x[0], x[1]]))
                    .collect()
            };
            let cname = String::from_utf16_lossy(&cu);
            match check {
                NameCheck::Hash(h) if h != lh_hash(&cu) => {
                    self.report_here(Some(child), format!("lh hash of \"{cname}\" wrong"));
                }
                NameCheck::Hint(h) if h != lf_hint(&cu) => {
                    self.report_here(
                        Some(child),
                        format!(
                            "lf hint of \"{cname}\" is {h:02x?}, expected {:02x?}",
                            lf_hint(&cu)
                        ),
                    );
                }
                _ => {}
            }
            if let Some(p) = &prev {
                if !upcase::compare(p, &cu).is_lt() {
                    self.report_here(Some(child), format!("subkey \"{cname}\" out of order"));
                }
            }
            max_name = max_name.max(cu.len() as u32 * 2);
            max_class = max_class.max(u32::from(le_u16(c, NK_CLASS_LEN).unwrap_or(0)));
            prev = Some(cu);
            drop(cname);
            self.chain.push(NameAt {
                start: child as usize + 4 + NK_NAME,
                len: cb.len(),
                compressed: cflags & KEY_COMP_NAME != 0,
            });
            self.key(child, off, seen, depth + 1);
            self.chain.pop();
        }
        if (
            u32_at(NK_MAX_SUBKEY_NAME) & 0xFFFF,
            u32_at(NK_MAX_SUBKEY_CLASS),
        ) != (max_name, max_class)
        {
            self.report_here(
                Some(off),
                format!(
                    "largest subkey name/class fields {:#x}/{} not exact ({max_name}/{max_class})",
                    u32_at(NK_MAX_SUBKEY_NAME),
                    u32_at(NK_MAX_SUBKEY_CLASS)
                ),
            );
        }
        sk
    }

    /// (child offset, hash or hint) of every entry of a subkey index.
    fn subkeys(&mut self, off: u32) -> Vec<(u32, NameCheck)> {
        let mut out = Vec::new();
        let Some(c) = self.cell(off, None) else {
            return out;
        };
        let count = usize::from(le_u16(c, 2).unwrap_or(0));
        if c.get(..2) == Some(b"ri") {
            if self.walked_before(off) {
                return out;
            }
            if cell_size(4 + 4 * count) != c.len() + 4 {
                self.report_here(Some(off), "ri cell not minimal");
            }
            for i in 0..count {
                let leaf = le_u32(c, 4 + 4 * i).unwrap_or(NIL);
                self.leaf(leaf, &mut out);
            }
        } else {
            // The leaf is the list itself: count one reference, not two.
            self.refs.entry(off).and_modify(|n| *n -= 1);
            self.leaf(off, &mut out);
        }
        out
    }

    /// True (after reporting it) when the list cell at `off` was already walked: a cell named n
    /// times must not be walked n times (count x count entries from one small cell).
    fn walked_before(&mut self, off: u32) -> bool {
        if self.refs.get(&off).is_some_and(|&n| n > 1) {
            self.report_here(
                Some(off),
                "list cell reached a second time; not walked again",
            );
            return true;
        }
        false
    }

    fn leaf(&mut self, off: u32, out: &mut Vec<(u32, NameCheck)>) {
        let Some(c) = self.cell(off, None) else {
            return;
        };
        if self.walked_before(off) {
            return;
        }
        let count = usize::from(le_u16(c, 2).unwrap_or(0));
        let sig = c.get(..2).unwrap_or_default();
        let stride = match sig {
            b"lh" | b"lf" => 8,
            b"li" => 4,
            _ => {
                self.report_here(Some(off), "not an li/lf/lh leaf");
                return;
            }
        };
        // Windows uses lh from 1.5 on and lf before (regf.md §1.6); an lh leaf in an older
        // hive is unknown to the Windows versions that format is meant for.
        if self.minor >= MINOR_HASH_LEAVES && sig != b"lh" {
            self.report_here(Some(off), "format 1.5+ hive with a non-lh leaf");
        }
        if self.minor < MINOR_HASH_LEAVES && sig == b"lh" {
            self.report_here(
                Some(off),
                format!("format 1.{} hive with an lh leaf", self.minor),
            );
        }
        if cell_size(4 + stride * count) != c.len() + 4 {
            self.report_here(Some(off), "leaf cell not minimal");
        }
        for i in 0..count.min(c.len().saturating_sub(4) / stride) {
            let child = le_u32(c, 4 + stride * i).unwrap_or(NIL);
            let extra = c.get(8 + stride * i..12 + stride * i);
            let check = match (sig, extra) {
                (b"lh", Some(e)) => NameCheck::Hash(u32::from_le_bytes([e[0], e[1], e[2], e[3]])),
                (b"lf", Some(e)) => NameCheck::Hint([e[0], e[1], e[2], e[3]]),
                _ => NameCheck::None,
            };
            out.push((child, check));
        }
    }

    /// Checks one vk and its data; returns (name length as UTF-16 bytes, data length).
    fn value(&mut self, off: u32) -> (u32, u32) {
        let Some(vk) = self.cell(off, None) else {
            return (0, 0);
        };
        if vk.len() < VK_NAME || &vk[..2] != b"vk" {
            self.report_here(Some(off), "not a vk cell");
            return (0, 0);
        }
        let name_len = usize::from(le_u16(vk, VK_NAME_LEN).unwrap_or(0));
        if cell_size(VK_NAME + name_len) != vk.len() + 4 {
            self.report_here(Some(off), "vk cell not minimal");
        }
        let flags = le_u16(vk, VK_FLAGS).unwrap_or(0);
        if flags & VALUE_TOMBSTONE != 0 && !self.layered {
            self.report_here(
                Some(off),
                "tombstone value in a hive without the layered-keys flag",
            );
        }
        let name_units = if flags & VALUE_COMP_NAME != 0 {
            name_len
        } else {
            name_len / 2
        };
        let size = le_u32(vk, VK_DATA_SIZE).unwrap_or(0);
        let data = le_u32(vk, VK_DATA_OFFSET).unwrap_or(NIL);
        let len = (size & !DATA_INLINE) as usize;
        if size & DATA_INLINE != 0 {
            if len > 4 {
                self.report_here(Some(off), "inline data longer than 4 bytes");
            }
        } else if len > 0 && len <= 4 {
            self.report_here(Some(off), "data of 1-4 bytes not stored inline");
        } else if len > MAX_SINGLE_CELL_DATA && self.minor >= MINOR_BIG_DATA {
            let segs = len.div_ceil(DB_SEGMENT_DATA);
            let db = self
                .cell(data, Some(8))
                .filter(|_| !self.walked_before(data));
            if let Some(db) = db {
                let count = usize::from(le_u16(db, 2).unwrap_or(0));
                if db.get(..2) != Some(b"db") || count != segs {
                    self.report_here(Some(data), format!("db record: expected {segs} segments"));
                }
                let list_off = le_u32(db, 4).unwrap_or(NIL);
                if let Some(list) = self.cell(list_off, Some(4 * count)) {
                    for i in 0..count.min(list.len() / 4) {
                        let seg = le_u32(list, 4 * i).unwrap_or(NIL);
                        self.cell(seg, Some(DB_SEGMENT_DATA + 4));
                    }
                }
            }
        } else if len > 0 {
            self.cell(data, Some(len));
        }
        (name_units as u32 * 2, len as u32)
    }

    /// All sk cells must form one circular list with consistent links and exact refcounts.
    fn check_sk_list(&mut self, start: u32) {
        if start == NIL {
            return;
        }
        let mut seen = HashSet::new();
        let mut at = start;
        loop {
            if !seen.insert(at) {
                if at != start {
                    self.report(
                        Some(at),
                        "",
                        "sk list loops back somewhere other than its start",
                    );
                }
                break;
            }
            let Some(c) = self.bins.get(at as usize + 4..at as usize + 24) else {
                self.report(Some(at), "", "sk list leaves the hive");
                return;
            };
            let (flink, refs) = (le_u32(c, 4).unwrap_or(NIL), le_u32(c, 12).unwrap_or(0));
            let users = self.sk_users.get(&at).copied().unwrap_or(0);
            if refs != users {
                self.report(
                    Some(at),
                    "",
                    format!("sk refcount {refs}, {users} keys use it"),
                );
            }
            let back = self
                .bins
                .get(flink as usize + 4 + 8..)
                .and_then(|b| le_u32(b, 0))
                .unwrap_or(NIL);
            if back != at {
                self.report(Some(flink), "", "sk blink does not point back");
            }
            at = flink;
        }
        let used: HashSet<u32> = self.sk_users.keys().copied().collect();
        if used != seen {
            self.report(
                None,
                "",
                format!(
                    "sk list holds {} cells, keys use {}",
                    seen.len(),
                    used.len()
                ),
            );
        }
    }
}
