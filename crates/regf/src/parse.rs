//! Reader: base block, cells, key nodes, values (inline, single cell, db big data), subkey
//! lists (li/lf/lh/ri), security (sk) and class cells, into the in-memory tree.
//! Every offset is bounds-checked, every key node may be reached only once (cycles and shared
//! subtrees are errors), and memory is capped by a budget proportional to the file size.

use std::collections::{HashMap, HashSet};

use crate::error::{quote, Error, Result};
use crate::format::*;
use crate::model::{Hive, Key, LayerSemantics, Value};

/// How the reader treats damage below the root.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Any damaged cell is an error.
    Strict,
    /// A damaged subkey or value is skipped and described in `Hive::notes`.
    Lenient,
}

impl Hive {
    /// Parses a primary hive file (format 1.3-1.6). Dirty hives (sequence numbers differ, bad
    /// checksum) are read as they are, without logs, and noted in `notes`; any damaged cell
    /// reachable from the root is an error naming its offset.
    pub fn parse(bytes: &[u8]) -> Result<Hive> {
        parse(bytes, Mode::Strict)
    }

    /// Like [`Hive::parse`], but skips keys and values whose cells are damaged (noting each
    /// in `notes`), so a partly destroyed hive is read as far as it is sound. The base block
    /// and the root key must still be readable.
    pub fn parse_lenient(bytes: &[u8]) -> Result<Hive> {
        parse(bytes, Mode::Lenient)
    }
}

fn parse(bytes: &[u8], mode: Mode) -> Result<Hive> {
    let bad = |s: String| Error::BaseBlock(s);
    if bytes.len() < BASE_BLOCK_SIZE {
        return Err(bad(format!(
            "file is {} bytes, shorter than the 4096-byte base block",
            bytes.len()
        )));
    }
    let base = &bytes[..BASE_BLOCK_SIZE];
    if &base[BB_SIGNATURE..4] != b"regf" {
        return Err(bad("no \"regf\" signature".into()));
    }
    let field = |at| le_u32(base, at).unwrap_or(0);
    let major = field(BB_MAJOR);
    let minor = field(BB_MINOR);
    if major != 1 {
        return Err(bad(format!("major version {major}, expected 1")));
    }
    if !(2..=6).contains(&minor) {
        return Err(bad(format!("minor version {minor}, expected 2..=6")));
    }
    let file_type = field(BB_TYPE);
    if file_type != 0 {
        return Err(bad(format!(
            "file type {file_type}: a transaction log, not a primary hive"
        )));
    }
    let mut notes = Vec::new();
    let (seq1, seq2) = (field(BB_SEQ1), field(BB_SEQ2));
    if seq1 != seq2 {
        notes.push(format!(
            "{}sequence numbers {seq1} != {seq2} (read without logs)",
            crate::model::DIRTY_NOTE
        ));
    }
    let stored = field(BB_CHECKSUM);
    if stored != checksum(base) {
        // As with unequal sequence numbers, Windows takes the base block from the logs.
        notes.push(format!(
            "{}base block checksum {stored:#010x} != computed {:#010x}",
            crate::model::DIRTY_NOTE,
            checksum(base)
        ));
    }
    let declared = field(BB_BINS_SIZE) as usize;
    let available = bytes.len() - BASE_BLOCK_SIZE;
    let bins_len = if declared > available {
        notes.push(format!(
            "hive bins size {declared:#x} exceeds the {available:#x} bytes present; truncated"
        ));
        available
    } else {
        declared
    };
    let bins = &bytes[BASE_BLOCK_SIZE..BASE_BLOCK_SIZE + bins_len];
    let differencing = field(BB_FLAGS) & BB_FLAG_LAYERED != 0;
    let mut r = Reader {
        bins,
        minor,
        differencing,
        mode,
        budget: 16 * bins.len() as u64 + (16 << 20),
        budget_total: 16 * bins.len() as u64 + (16 << 20),
        visited: HashSet::new(),
        leaves: HashSet::new(),
        security: HashMap::new(),
        notes,
        inexact_names: 0,
        first_inexact: None,
        chain: Vec::new(),
    };
    let root_off = field(BB_ROOT);
    let root = r.key(root_off, 0)?;
    if let Some(first) = &r.first_inexact {
        let n = r.inexact_names;
        r.notes.push(format!(
            "{n} key or value name{} not valid UTF-16 (an unpaired surrogate or odd length; \
             first: {first}): read, and written back, with U+FFFD in place of the bad units",
            if n == 1 { " is" } else { "s are" }
        ));
    }
    Ok(Hive {
        root,
        minor_version: minor,
        differencing,
        notes: r.notes,
    })
}

struct Reader<'a> {
    bins: &'a [u8],
    minor: u32,
    differencing: bool,
    mode: Mode,
    /// Bytes the tree may still allocate (names, data, classes, descriptors, records).
    budget: u64,
    budget_total: u64,
    visited: HashSet<u32>,
    /// Subkey leaves already listed: an ri naming one leaf n times would otherwise list its
    /// children n times (count x count offsets from one small cell).
    leaves: HashSet<u32>,
    security: HashMap<u32, Vec<u8>>,
    notes: Vec<String>,
    /// Names that UTF-16 cannot spell exactly (an unpaired surrogate, an odd byte), and the
    /// first of them: they read, and write back, with U+FFFD in place of the bad unit.
    inexact_names: u64,
    first_inexact: Option<String>,
    /// Where the names of the keys being read (below the root, outermost first) are stored
    /// in `bins`. The path of the current key is rendered from it only when an error names
    /// it: building it at every level would cost depth x name length per key, and keeping
    /// one per level depth^2 x name length, none of it charged to the budget.
    chain: Vec<NameAt>,
}

/// Whether UTF-16LE bytes decode without loss (even length, surrogates paired).
fn is_exact_utf16(b: &[u8]) -> bool {
    b.len().is_multiple_of(2)
        && char::decode_utf16(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .all(|c| c.is_ok())
}

impl<'a> Reader<'a> {
    /// Counts a name UTF-16 cannot spell exactly; `what` describes the first.
    fn note_inexact(&mut self, what: impl FnOnce(&Self) -> String) {
        self.inexact_names += 1;
        if self.first_inexact.is_none() {
            self.first_inexact = Some(what(self));
        }
    }

    /// Path of the key being read ("" for the root), rendered from `chain`.
    fn path(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.chain.iter().enumerate() {
            if i > 0 {
                out.push('\\');
            }
            out.push_str(&n.decode(self.bins));
        }
        out
    }

    /// A damaged-cell error naming the current key, or its value `value` when given.
    fn corrupt(
        &self,
        offset: u32,
        what: &'static str,
        value: Option<&str>,
        reason: impl Into<String>,
    ) -> Error {
        let mut key = self.path();
        if let Some(name) = value {
            key.push('\\');
            key.push_str(name);
        }
        Error::Corrupt {
            offset,
            what,
            key,
            reason: reason.into(),
        }
    }

    /// Payload of the cell at `offset` (after its 4-byte size field). Errors name the
    /// current key, or its value `value` when given.
    fn cell(&self, offset: u32, what: &'static str, value: Option<&str>) -> Result<&'a [u8]> {
        let bins: &'a [u8] = self.bins;
        let bad = |reason: String| self.corrupt(offset, what, value, reason);
        if offset == NIL {
            return Err(bad("reference to no cell (0xFFFFFFFF)".into()));
        }
        let at = offset as usize;
        if at & 3 != 0 {
            return Err(bad("cell offset not 4-byte aligned".into()));
        }
        let raw = le_u32(bins, at).ok_or_else(|| bad("cell offset beyond the hive bins".into()))?;
        let size = (raw as i32).unsigned_abs() as usize;
        if size < 8 {
            return Err(bad(format!("cell size {size} too small")));
        }
        bins.get(at + 4..at + size)
            .ok_or_else(|| bad(format!("cell of {size} bytes runs past the hive bins")))
    }

    fn charge(&mut self, bytes: usize) -> Result<()> {
        let n = bytes as u64;
        if n > self.budget {
            return Err(Error::Budget {
                key: self.path(),
                budget: self.budget_total,
            });
        }
        self.budget -= n;
        Ok(())
    }

    /// In lenient mode turns a damaged child into a note; in strict mode passes the error on.
    fn tolerate<T>(&mut self, r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e @ Error::Budget { .. }) => Err(e),
            Err(e) if self.mode == Mode::Lenient => {
                // Notes name the key path, which can be as long as the file: charge them so a
                // long list of damaged children cannot make notes grow with count x path length.
                let note = format!("skipped: {e}");
                self.charge(note.len())?;
                self.notes.push(note);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the key node at `offset` and its subtree; `depth` is 0 for the root. Errors
    /// about the node itself name the parent key (the one listing it).
    fn key(&mut self, offset: u32, depth: usize) -> Result<Key> {
        let nk = self.cell(offset, "key node", None)?;
        if nk.len() < NK_NAME || &nk[..2] != b"nk" {
            return Err(self.corrupt(offset, "key node", None, "no \"nk\" signature"));
        }
        // Checked before the name is decoded: a leaf listing one key with a 64 KiB name thousands
        // of times must cost a set lookup per entry, not a name decode.
        if !self.visited.insert(offset) {
            return Err(Error::Cycle {
                offset,
                key: self.path(),
            });
        }
        let flags = le_u16(nk, NK_FLAGS).unwrap_or(0);
        let name_len = usize::from(le_u16(nk, NK_NAME_LEN).unwrap_or(0));
        let compressed = flags & KEY_COMP_NAME != 0;
        let name = match nk.get(NK_NAME..NK_NAME + name_len) {
            Some(bytes) => {
                if !compressed && !is_exact_utf16(bytes) {
                    self.note_inexact(|r| {
                        format!(
                            "key {} under {}",
                            quote(&decode_name(bytes, false)),
                            quote(&r.path())
                        )
                    });
                }
                decode_name(bytes, compressed)
            }
            None => {
                return Err(self.corrupt(offset, "key node", None, "name runs past the cell"));
            }
        };
        // The root's name is not part of key paths.
        if depth == 0 {
            return self.key_contents(nk, name, depth);
        }
        self.chain.push(NameAt {
            start: offset as usize + 4 + NK_NAME,
            len: name_len,
            compressed,
        });
        let key = self.key_contents(nk, name, depth);
        self.chain.pop();
        key
    }

    /// The rest of [`Reader::key`], with the key's name on `chain`.
    fn key_contents(&mut self, nk: &'a [u8], name: String, depth: usize) -> Result<Key> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep {
                key: self.path(),
                limit: MAX_DEPTH,
            });
        }
        let u16_at = |at| le_u16(nk, at).unwrap_or(0);
        let u32_at = |at| le_u32(nk, at).unwrap_or(0);
        let flags = u16_at(NK_FLAGS);
        self.charge(std::mem::size_of::<Key>() + name.len())?;
        let layer_byte = if self.differencing { nk[NK_LAYER] } else { 0 };
        let mut key = Key {
            name,
            class: None,
            security: None,
            last_written: le_u64(nk, NK_LAST_WRITTEN).unwrap_or(0),
            flags,
            layer: LayerSemantics::from_bits(layer_byte & LAYER_SEMANTICS_MASK),
            inherit_class: layer_byte & LAYER_INHERIT_CLASS != 0,
            values: Vec::new(),
            subkeys: Vec::new(),
            user_flags: (u32_at(NK_MAX_SUBKEY_NAME) >> 16) as u16,
            work_var: u32_at(NK_WORK_VAR),
        };

        let sk = u32_at(NK_SECURITY);
        if sk != NIL {
            let sd = self.security(sk);
            key.security = self.tolerate(sd)?;
        }

        let class_len = usize::from(u16_at(NK_CLASS_LEN));
        let class_off = u32_at(NK_CLASS);
        if class_len > 0 && class_off != NIL {
            let class = self.class(class_off, class_len);
            key.class = self.tolerate(class)?;
        }

        let value_count = u32_at(NK_VALUE_COUNT) as usize;
        if value_count > 0 {
            let list_off = u32_at(NK_VALUE_LIST);
            let list = self.cell(list_off, "value list", None);
            if let Some(list) = self.tolerate(list)? {
                let usable = if value_count * 4 > list.len() {
                    let e = self.corrupt(
                        list_off,
                        "value list",
                        None,
                        format!("{value_count} values do not fit a {}-byte list", list.len()),
                    );
                    self.tolerate::<()>(Err(e))?;
                    list.len() / 4
                } else {
                    value_count
                };
                key.values.reserve(usable);
                for i in 0..usable {
                    let vk = le_u32(list, i * 4).unwrap_or(NIL);
                    let v = self.value(vk);
                    if let Some(v) = self.tolerate(v)? {
                        key.values.push(v);
                    }
                }
            }
        }

        let subkey_count = u32_at(NK_SUBKEY_COUNT);
        let list_off = u32_at(NK_SUBKEY_LIST);
        if subkey_count > 0 && list_off != NIL {
            let children = self.subkey_offsets(list_off);
            if let Some(children) = self.tolerate(children)? {
                key.subkeys.reserve(children.len());
                for child in children {
                    let k = self.key(child, depth + 1);
                    if let Some(k) = self.tolerate(k)? {
                        key.subkeys.push(k);
                    }
                }
            }
        }
        Ok(key)
    }

    fn security(&mut self, offset: u32) -> Result<Vec<u8>> {
        let sd = match self.security.get(&offset) {
            Some(sd) => sd.clone(),
            None => {
                let sk = self.cell(offset, "security", None)?;
                if sk.len() < 20 || &sk[..2] != b"sk" {
                    return Err(self.corrupt(offset, "security", None, "no \"sk\" signature"));
                }
                let n = le_u32(sk, 16).unwrap_or(0) as usize;
                let sd = sk.get(20..20 + n).ok_or_else(|| {
                    self.corrupt(
                        offset,
                        "security",
                        None,
                        format!("descriptor of {n} bytes runs past the cell"),
                    )
                })?;
                self.security.insert(offset, sd.to_vec());
                sd.to_vec()
            }
        };
        self.charge(sd.len())?;
        Ok(sd)
    }

    fn class(&mut self, offset: u32, len: usize) -> Result<Vec<u8>> {
        let cell = self.cell(offset, "class name", None)?;
        let class = cell.get(..len).ok_or_else(|| {
            self.corrupt(
                offset,
                "class name",
                None,
                format!("class of {len} bytes runs past the cell"),
            )
        })?;
        self.charge(len)?;
        Ok(class.to_vec())
    }

    /// Offsets of the nk cells listed by a subkey index (li/lf/lh, or ri of those).
    fn subkey_offsets(&mut self, offset: u32) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let cell = self.cell(offset, "subkey list", None)?;
        if cell.len() >= 2 && &cell[..2] == b"ri" {
            let count = usize::from(le_u16(cell, 2).unwrap_or(0));
            if 4 + count * 4 > cell.len() {
                return Err(self.corrupt(
                    offset,
                    "subkey list",
                    None,
                    format!("ri of {count} entries runs past the cell"),
                ));
            }
            for i in 0..count {
                let leaf = le_u32(cell, 4 + i * 4).unwrap_or(NIL);
                let r = self.leaf(leaf, &mut out);
                self.tolerate(r)?;
            }
        } else {
            self.leaf(offset, &mut out)?;
        }
        Ok(out)
    }

    fn leaf(&mut self, offset: u32, out: &mut Vec<u32>) -> Result<()> {
        let cell = self.cell(offset, "subkey list", None)?;
        let sig = cell.get(..2).unwrap_or_default();
        let stride = match sig {
            b"li" => 4,
            b"lf" | b"lh" => 8,
            b"ri" => return Err(self.corrupt(offset, "subkey list", None, "ri nested in ri")),
            _ => return Err(self.corrupt(offset, "subkey list", None, "no li/lf/lh/ri signature")),
        };
        if !self.leaves.insert(offset) {
            return Err(self.corrupt(
                offset,
                "subkey list",
                None,
                "subkey list reached a second time",
            ));
        }
        let count = usize::from(le_u16(cell, 2).unwrap_or(0));
        if 4 + count * stride > cell.len() {
            return Err(self.corrupt(
                offset,
                "subkey list",
                None,
                format!("{count} entries run past the cell"),
            ));
        }
        self.charge(count * 4)?;
        out.extend((0..count).map(|i| le_u32(cell, 4 + i * stride).unwrap_or(NIL)));
        Ok(())
    }

    fn value(&mut self, offset: u32) -> Result<Value> {
        let vk = self.cell(offset, "value", None)?;
        if vk.len() < VK_NAME || &vk[..2] != b"vk" {
            return Err(self.corrupt(offset, "value", None, "no \"vk\" signature"));
        }
        let name_len = usize::from(le_u16(vk, VK_NAME_LEN).unwrap_or(0));
        let size = le_u32(vk, VK_DATA_SIZE).unwrap_or(0);
        let data_off = le_u32(vk, VK_DATA_OFFSET).unwrap_or(NIL);
        let kind = le_u32(vk, VK_TYPE).unwrap_or(0);
        let flags = le_u16(vk, VK_FLAGS).unwrap_or(0);
        let name_bytes = vk
            .get(VK_NAME..VK_NAME + name_len)
            .ok_or_else(|| self.corrupt(offset, "value", None, "name runs past the cell"))?;
        let name = decode_name(name_bytes, flags & VALUE_COMP_NAME != 0);
        if flags & VALUE_COMP_NAME == 0 && !is_exact_utf16(name_bytes) {
            self.note_inexact(|r| format!("value {} of key {}", quote(&name), quote(&r.path())));
        }
        self.charge(std::mem::size_of::<Value>() + name.len())?;
        let len = (size & !DATA_INLINE) as usize;
        let data = if size & DATA_INLINE != 0 {
            if len > 4 {
                return Err(self.corrupt(
                    offset,
                    "value",
                    Some(&name),
                    format!("inline data of {len} bytes (> 4)"),
                ));
            }
            data_off.to_le_bytes()[..len].to_vec()
        } else if len == 0 {
            Vec::new()
        } else {
            self.charge(len)?;
            self.data(data_off, len, &name)?
        };
        Ok(Value {
            name,
            kind,
            data,
            tombstone: self.differencing && flags & VALUE_TOMBSTONE != 0,
        })
    }

    /// Data of the value named `value` of the current key.
    fn data(&mut self, offset: u32, len: usize, value: &str) -> Result<Vec<u8>> {
        let cell = self.cell(offset, "value data", Some(value))?;
        // db big data exists from format 1.4 on, for data above one cell's worth (regf.md §1.8).
        if len > MAX_SINGLE_CELL_DATA
            && self.minor >= MINOR_BIG_DATA
            && cell.get(..2) == Some(b"db")
        {
            let count = usize::from(le_u16(cell, 2).unwrap_or(0));
            let list_off = le_u32(cell, 4).unwrap_or(NIL);
            let list = self.cell(list_off, "big data segment list", Some(value))?;
            if count * 4 > list.len() {
                return Err(self.corrupt(
                    list_off,
                    "big data segment list",
                    Some(value),
                    format!("{count} segments do not fit the list"),
                ));
            }
            let mut out = Vec::with_capacity(len);
            for i in 0..count {
                if out.len() == len {
                    break;
                }
                let seg_off = le_u32(list, i * 4).unwrap_or(NIL);
                let seg = self.cell(seg_off, "big data segment", Some(value))?;
                let take = (len - out.len()).min(DB_SEGMENT_DATA).min(seg.len());
                out.extend_from_slice(&seg[..take]);
            }
            if out.len() < len {
                return Err(self.corrupt(
                    offset,
                    "big data",
                    Some(value),
                    format!("segments hold {} of {len} bytes", out.len()),
                ));
            }
            return Ok(out);
        }
        cell.get(..len).map(<[u8]>::to_vec).ok_or_else(|| {
            self.corrupt(
                offset,
                "value data",
                Some(value),
                format!("{len} bytes of data do not fit a {}-byte cell", cell.len()),
            )
        })
    }
}
