//! Writer: lays out a fresh compact hive from the in-memory tree the way ORSaveHive does
//! (regf.md §2): keys breadth-first, minimal cells, 4096-byte bins with big cells in bins of
//! their own, leaves of at most 507 sorted entries (ri above), shared sk cells. The source
//! format is kept: 1.5/1.6 get lh leaves and db big data, 1.3 gets lf leaves and big values
//! in one cell (1.4: lf leaves, db big data).

use std::collections::{HashMap, HashSet, VecDeque};

use crate::error::{Error, Result};
use crate::format::*;
use crate::model::{Hive, Key, Value, DEFAULT_ROOT_SECURITY};

impl Hive {
    /// Serializes the tree as a compact hive file (base block + bins, valid checksum) in the
    /// hive's format version: `minor_version` 3..=6 is kept (older values are written as 1.3),
    /// except that a tree with layered-key bits is always a 1.6 differencing hive.
    /// Fails when the tree cannot be stored: empty/oversized/duplicate names, names with
    /// a backslash, or data too large for the format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layered = self.differencing || self.has_layer_bits();
        // Layered keys exist only in format 1.6 differencing hives (yarp System_Delta).
        // Otherwise the source format is kept, so a 1.3 BCD store stays readable by whatever
        // read the original (boot managers; regf.md §1.2 "minor version meaning").
        let minor = if layered {
            6
        } else {
            self.minor_version.clamp(3, 6)
        };
        let mut w = Writer {
            hash_leaves: minor >= MINOR_HASH_LEAVES,
            big_data: minor >= MINOR_BIG_DATA,
            ..Writer::default()
        };
        let root_off = w.tree(&self.root)?;
        let bins = w.finish();
        let mut out = vec![0u8; BASE_BLOCK_SIZE];
        out[BB_SIGNATURE..4].copy_from_slice(b"regf");
        let mut put = |at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(BB_SEQ1, 1);
        put(BB_SEQ2, 1);
        put(BB_MAJOR, 1);
        put(BB_MINOR, minor);
        put(BB_TYPE, 0);
        put(BB_FORMAT, 1);
        put(BB_ROOT, root_off);
        put(
            BB_BINS_SIZE,
            u32::try_from(bins.len()).map_err(|_| too_big("hive"))?,
        );
        put(BB_CLUSTERING, 1);
        put(BB_FLAGS, if layered { BB_FLAG_LAYERED } else { 0 });
        // offreg 6.2+ marks files it serialized with "OfRg" and flags 1 (regf.md §1.2); we
        // write the same so consumers see what an ORSaveHive output looks like. The
        // serialization time at 512 is left 0 to keep output reproducible.
        put(BB_OFRG, u32::from_le_bytes(*b"OfRg"));
        put(BB_OFRG_FLAGS, 1);
        let sum = checksum(&out);
        out[BB_CHECKSUM..BB_CHECKSUM + 4].copy_from_slice(&sum.to_le_bytes());
        out.extend_from_slice(&bins);
        Ok(out)
    }
}

fn too_big(what: &str) -> Error {
    Error::Invalid {
        key: what.to_string(),
        reason: "too large for the hive format".into(),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

#[derive(Default)]
struct Bin {
    end: usize,
    used: usize,
}

struct SkCell {
    offset: u32,
    refs: u32,
}

/// Bins kept open for first-fit allocation.
const OPEN_BINS: usize = 8;
/// Smallest cell (a 4-byte payload rounds to 8; nothing real is smaller than 16).
const MIN_CELL: usize = 16;

#[derive(Default)]
struct Writer<'t> {
    buf: Vec<u8>,
    bins: Vec<Bin>,
    /// Indices in `bins` of the few most recent bins that still have room; cells go to the
    /// first that fits (a small window keeps allocation O(1) while leaving little slack).
    open: Vec<usize>,
    sk_index: HashMap<&'t [u8], usize>,
    sks: Vec<SkCell>,
    /// lh leaves (format >= 1.5) instead of lf leaves.
    hash_leaves: bool,
    /// db records for data above one cell's worth (format >= 1.4) instead of one big cell.
    big_data: bool,
    /// Every key queued so far, in queue order, with its parent's index: key paths are
    /// rendered from it only for an error (a path per queued key would cost depth x width).
    nodes: Vec<Node<'t>>,
}

/// A key of the tree and the index of its parent in `Writer::nodes` (`None` for the root).
struct Node<'t> {
    key: &'t Key,
    parent: Option<usize>,
}

struct Job<'t> {
    key: &'t Key,
    /// Index of this key in `Writer::nodes`.
    node: usize,
    /// 0 for the root.
    depth: usize,
    /// Offset of the parent's nk cell (NIL for the root).
    parent: u32,
    /// Byte position in `buf` where this key's nk offset must be patched in.
    slot: Option<usize>,
    inherited_sd: &'t [u8],
}

fn name_units(name: &str) -> Vec<u16> {
    name.encode_utf16().collect()
}

fn stored_name(units: &[u16]) -> (Vec<u8>, bool) {
    if is_compressible(units) {
        (units.iter().map(|&u| u as u8).collect(), true)
    } else {
        (units.iter().flat_map(|u| u.to_le_bytes()).collect(), false)
    }
}

impl<'t> Writer<'t> {
    /// Path of `nodes[node]` below the root ("" for the root).
    fn path(&self, node: usize) -> String {
        let mut names = Vec::new();
        let mut at = Some(node);
        while let Some(i) = at {
            let n = &self.nodes[i];
            if n.parent.is_some() {
                names.push(n.key.name.as_str());
            }
            at = n.parent;
        }
        names.reverse();
        names.join("\\")
    }

    /// An error about the key `nodes[node]`.
    fn invalid(&self, node: usize, reason: impl Into<String>) -> Error {
        invalid(&self.path(node), reason)
    }

    fn new_bin(&mut self, size: usize) -> usize {
        let start = self.buf.len();
        self.buf.resize(start + size, 0);
        self.buf[start..start + 4].copy_from_slice(b"hbin");
        self.buf[start + 4..start + 8].copy_from_slice(&(start as u32).to_le_bytes());
        self.buf[start + 8..start + 12].copy_from_slice(&(size as u32).to_le_bytes());
        self.bins.push(Bin {
            end: start + size,
            used: start + HBIN_HEADER_SIZE,
        });
        self.bins.len() - 1
    }

    /// Allocates a cell with `payload` bytes; returns its offset (the size field is written).
    fn alloc(&mut self, payload: usize) -> Result<u32> {
        let size = cell_size(payload);
        if size > i32::MAX as usize / 2 {
            return Err(too_big("cell"));
        }
        let fits = |b: &Bin| b.used + size <= b.end;
        let bin = match self.open.iter().position(|&i| fits(&self.bins[i])) {
            Some(k) => self.open[k],
            None => {
                // A cell too big for a 4096-byte bin gets a bin of its own, rounded up to
                // 4096 (offreg layout, regf.md §1.3); its tail stays usable for small cells.
                let bin_size = (size + HBIN_HEADER_SIZE).div_ceil(HBIN_ALIGN) * HBIN_ALIGN;
                let i = self.new_bin(bin_size);
                if self.open.len() == OPEN_BINS {
                    self.open.remove(0);
                }
                self.open.push(i);
                i
            }
        };
        let at = self.bins[bin].used;
        self.bins[bin].used += size;
        if self.bins[bin].end - self.bins[bin].used < MIN_CELL {
            self.open.retain(|&i| i != bin);
        }
        self.buf[at..at + 4].copy_from_slice(&(-(size as i32)).to_le_bytes());
        u32::try_from(at).map_err(|_| too_big("hive"))
    }

    fn put(&mut self, cell: u32, at: usize, bytes: &[u8]) {
        let p = cell as usize + 4 + at;
        self.buf[p..p + bytes.len()].copy_from_slice(bytes);
    }

    fn put32(&mut self, cell: u32, at: usize, v: u32) {
        self.put(cell, at, &v.to_le_bytes());
    }

    fn cell_with(&mut self, bytes: &[u8]) -> Result<u32> {
        let off = self.alloc(bytes.len())?;
        self.put(off, 0, bytes);
        Ok(off)
    }

    /// Closes every bin's tail into one free cell and returns the hive bins data.
    fn finish(mut self) -> Vec<u8> {
        let n = self.sks.len();
        for i in 0..n {
            let (off, refs) = (self.sks[i].offset, self.sks[i].refs);
            let flink = self.sks[(i + 1) % n].offset;
            let blink = self.sks[(i + n - 1) % n].offset;
            self.put32(off, 4, flink);
            self.put32(off, 8, blink);
            self.put32(off, 12, refs);
        }
        for b in &self.bins {
            if b.used < b.end {
                let free = (b.end - b.used) as u32;
                self.buf[b.used..b.used + 4].copy_from_slice(&free.to_le_bytes());
            }
        }
        self.buf
    }

    fn security(&mut self, sd: &'t [u8]) -> Result<u32> {
        if let Some(&i) = self.sk_index.get(sd) {
            self.sks[i].refs += 1;
            return Ok(self.sks[i].offset);
        }
        let len = u32::try_from(sd.len()).map_err(|_| too_big("security descriptor"))?;
        let off = self.alloc(20 + sd.len())?;
        self.put(off, 0, b"sk");
        self.put32(off, 16, len);
        self.put(off, 20, sd);
        self.sk_index.insert(sd, self.sks.len());
        self.sks.push(SkCell {
            offset: off,
            refs: 1,
        });
        Ok(off)
    }

    /// Writes the whole tree breadth-first; returns the root's offset.
    fn tree(&mut self, root: &'t Key) -> Result<u32> {
        let mut queue = VecDeque::new();
        self.nodes.push(Node {
            key: root,
            parent: None,
        });
        queue.push_back(Job {
            key: root,
            node: 0,
            depth: 0,
            parent: NIL,
            slot: None,
            inherited_sd: &DEFAULT_ROOT_SECURITY,
        });
        let mut root_off = None;
        while let Some(job) = queue.pop_front() {
            if job.depth > MAX_DEPTH {
                return Err(self.invalid(job.node, format!("deeper than {MAX_DEPTH} levels")));
            }
            let off = self.key(job, &mut queue)?;
            root_off.get_or_insert(off);
        }
        root_off.ok_or_else(|| invalid("", "no root"))
    }

    fn key(&mut self, job: Job<'t>, queue: &mut VecDeque<Job<'t>>) -> Result<u32> {
        let key = job.key;
        let is_root = job.slot.is_none();
        let units = name_units(&key.name);
        if units.is_empty() || units.len() > MAX_KEY_NAME_CHARS {
            return Err(self.invalid(
                job.node,
                format!("key name of {} UTF-16 units (1..=255 allowed)", units.len()),
            ));
        }
        if !is_root && key.name.contains('\\') {
            return Err(self.invalid(job.node, "key name contains a backslash"));
        }
        let (name, compressed) = stored_name(&units);
        let nk = self.alloc(NK_NAME + name.len())?;
        if let Some(slot) = job.slot {
            self.buf[slot..slot + 4].copy_from_slice(&nk.to_le_bytes());
        }

        // No (or an empty) descriptor inherits the parent's, as ORCreateKey does.
        let sd: &'t [u8] = match key.security.as_deref() {
            Some(sd) if !sd.is_empty() => sd,
            _ => job.inherited_sd,
        };
        let sk = self.security(sd)?;

        let (class_off, class_len) = match key.class.as_deref() {
            Some(c) if !c.is_empty() => {
                let len = u16::try_from(c.len())
                    .map_err(|_| self.invalid(job.node, "class name longer than 65535 bytes"))?;
                (self.cell_with(c)?, len)
            }
            _ => (NIL, 0),
        };

        let (value_list, max_value_name, max_value_data) = self.values(key, job.node)?;

        // Subkeys sorted by upcased UTF-16 units (ReactOS cmindex.c compare; regf.md §1.6).
        let mut kids: Vec<(Vec<u16>, &'t Key)> = key
            .subkeys
            .iter()
            .map(|k| (name_units(&k.name), k))
            .collect();
        kids.sort_by(|a, b| upcase::compare(&a.0, &b.0));
        for pair in kids.windows(2) {
            if upcase::compare(&pair[0].0, &pair[1].0).is_eq() {
                return Err(self.invalid(
                    job.node,
                    format!("two subkeys named \"{}\"", pair[1].1.name),
                ));
            }
        }
        let max_subkey_name = kids.iter().map(|(u, _)| u.len() * 2).max().unwrap_or(0) as u32;
        let max_subkey_class = kids
            .iter()
            .map(|(_, k)| k.class.as_ref().map_or(0, Vec::len))
            .max()
            .unwrap_or(0) as u32;
        let (subkey_list, slots) = self.subkey_index(&kids, LEAF_CAPACITY, job.node)?;

        let mut flags = key.flags & !(KEY_COMP_NAME | KEY_HIVE_ENTRY);
        if compressed {
            flags |= KEY_COMP_NAME;
        }
        if is_root {
            // 0x2C = HIVE_ENTRY|NO_DELETE|COMP_NAME for the usual Latin-1 root name.
            flags |= ROOT_FLAGS & !KEY_COMP_NAME;
        }
        let layer = key.layer.bits()
            | if key.inherit_class {
                LAYER_INHERIT_CLASS
            } else {
                0
            };
        self.put(nk, 0, b"nk");
        self.put(nk, NK_FLAGS, &flags.to_le_bytes());
        self.put(nk, NK_LAST_WRITTEN, &key.last_written.to_le_bytes());
        self.put(nk, NK_LAYER, &[layer]);
        self.put32(nk, NK_PARENT, job.parent);
        self.put32(nk, NK_SUBKEY_COUNT, kids.len() as u32);
        self.put32(nk, NK_VOLATILE_SUBKEY_COUNT, 0);
        self.put32(nk, NK_SUBKEY_LIST, subkey_list);
        self.put32(nk, NK_VOLATILE_SUBKEY_LIST, NIL);
        self.put32(nk, NK_VALUE_COUNT, key.values.len() as u32);
        self.put32(nk, NK_VALUE_LIST, value_list);
        self.put32(nk, NK_SECURITY, sk);
        self.put32(nk, NK_CLASS, class_off);
        self.put32(
            nk,
            NK_MAX_SUBKEY_NAME,
            max_subkey_name | u32::from(key.user_flags) << 16,
        );
        self.put32(nk, NK_MAX_SUBKEY_CLASS, max_subkey_class);
        self.put32(nk, NK_MAX_VALUE_NAME, max_value_name);
        self.put32(nk, NK_MAX_VALUE_DATA, max_value_data);
        self.put32(nk, NK_WORK_VAR, key.work_var);
        self.put(nk, NK_NAME_LEN, &(name.len() as u16).to_le_bytes());
        self.put(nk, NK_CLASS_LEN, &class_len.to_le_bytes());
        self.put(nk, NK_NAME, &name);

        for ((_, child), slot) in kids.into_iter().zip(slots) {
            self.nodes.push(Node {
                key: child,
                parent: Some(job.node),
            });
            queue.push_back(Job {
                key: child,
                node: self.nodes.len() - 1,
                depth: job.depth + 1,
                parent: nk,
                slot: Some(slot),
                inherited_sd: sd,
            });
        }
        Ok(nk)
    }

    /// Writes the value list and values; returns (list offset, largest name, largest data).
    fn values(&mut self, key: &Key, node: usize) -> Result<(u32, u32, u32)> {
        if key.values.is_empty() {
            return Ok((NIL, 0, 0));
        }
        let mut seen = HashSet::new();
        for v in &key.values {
            if !seen.insert(upcase::upcase_units(&v.name)) {
                return Err(self.invalid(node, format!("two values named \"{}\"", v.name)));
            }
        }
        let list = self.alloc(4 * key.values.len())?;
        let (mut max_name, mut max_data) = (0u32, 0u32);
        for (i, v) in key.values.iter().enumerate() {
            let vk = self.value(v, node)?;
            self.put32(list, 4 * i, vk);
            max_name = max_name.max(v.name.encode_utf16().count() as u32 * 2);
            max_data = max_data.max(v.data.len() as u32);
        }
        Ok((list, max_name, max_data))
    }

    fn value(&mut self, v: &Value, node: usize) -> Result<u32> {
        let units = name_units(&v.name);
        if units.len() > MAX_VALUE_NAME_CHARS {
            return Err(self.invalid(node, format!("value name of {} UTF-16 units", units.len())));
        }
        let (name, compressed) = stored_name(&units);
        let len = u32::try_from(v.data.len())
            .ok()
            .filter(|&l| l < DATA_INLINE)
            .ok_or_else(|| self.invalid(node, format!("value \"{}\" too large", v.name)))?;
        let vk = self.alloc(VK_NAME + name.len())?;
        let (size, data_off) = if v.data.is_empty() && v.tombstone {
            // Tombstone values carry no data: size 0, no cell (as in yarp System_Delta).
            (0, NIL)
        } else if v.data.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..v.data.len()].copy_from_slice(&v.data);
            (DATA_INLINE | len, u32::from_le_bytes(inline))
        } else if v.data.len() <= MAX_SINGLE_CELL_DATA || !self.big_data {
            // Format 1.3 has no db: any size is one cell, in a bin of its own when it does
            // not fit a 4096-byte bin (regf.md §1.9).
            (len, self.cell_with(&v.data)?)
        } else {
            (len, self.big_data(&v.data, node)?)
        };
        // offreg sets VALUE_COMP_NAME only on named values (default value: flags 0; measured).
        let mut flags = if compressed && !units.is_empty() {
            VALUE_COMP_NAME
        } else {
            0
        };
        if v.tombstone {
            flags |= VALUE_TOMBSTONE;
        }
        self.put(vk, 0, b"vk");
        self.put(vk, VK_NAME_LEN, &(name.len() as u16).to_le_bytes());
        self.put32(vk, VK_DATA_SIZE, size);
        self.put32(vk, VK_DATA_OFFSET, data_off);
        self.put32(vk, VK_TYPE, v.kind);
        self.put(vk, VK_FLAGS, &flags.to_le_bytes());
        self.put(vk, VK_NAME, &name);
        Ok(vk)
    }

    /// db record + segment list + 16352-byte segment cells (regf.md §2.7).
    fn big_data(&mut self, data: &[u8], node: usize) -> Result<u32> {
        let count = data.len().div_ceil(DB_SEGMENT_DATA);
        let count16 = u16::try_from(count)
            .map_err(|_| self.invalid(node, "value data needs more than 65535 segments"))?;
        let db = self.alloc(8)?;
        let list = self.alloc(4 * count)?;
        self.put(db, 0, b"db");
        self.put(db, 2, &count16.to_le_bytes());
        self.put32(db, 4, list);
        for (i, chunk) in data.chunks(DB_SEGMENT_DATA).enumerate() {
            // Every segment cell is 16352 bytes, the last one too (yarp BigDataHive).
            let seg = self.alloc(DB_SEGMENT_DATA + 4)?;
            self.put(seg, 0, chunk);
            self.put32(list, 4 * i, seg);
        }
        Ok(db)
    }

    /// Writes the lh or lf leaf (or ri + leaves) for the sorted children of `nodes[node]`,
    /// at most `capacity` (1..=[`LEAF_CAPACITY`]) to a leaf; returns its offset and the buffer
    /// positions where each child's nk offset goes.
    fn subkey_index(
        &mut self,
        kids: &[(Vec<u16>, &Key)],
        capacity: usize,
        node: usize,
    ) -> Result<(u32, Vec<usize>)> {
        if kids.is_empty() {
            return Ok((NIL, Vec::new()));
        }
        let capacity = capacity.clamp(1, LEAF_CAPACITY);
        let mut slots = Vec::with_capacity(kids.len());
        let leaves: Vec<&[(Vec<u16>, &Key)]> = kids.chunks(capacity).collect();
        let mut leaf_offs = Vec::with_capacity(leaves.len());
        let ri = if leaves.len() > 1 {
            // An ri counts its leaves in 16 bits: at most 65535 x 507 subkeys per key.
            let count = u16::try_from(leaves.len()).map_err(|_| {
                self.invalid(
                    node,
                    format!("{} subkeys need more than 65535 leaves", kids.len()),
                )
            })?;
            let ri = self.alloc(4 + 4 * leaves.len())?;
            self.put(ri, 0, b"ri");
            self.put(ri, 2, &count.to_le_bytes());
            Some(ri)
        } else {
            None
        };
        for leaf in &leaves {
            // lf and lh entries are both (nk offset, 4 bytes): a name hint or a hash.
            let cell = self.alloc(4 + 8 * leaf.len())?;
            let sig = if self.hash_leaves { b"lh" } else { b"lf" };
            self.put(cell, 0, sig);
            self.put(cell, 2, &(leaf.len() as u16).to_le_bytes());
            for (i, (units, _)) in leaf.iter().enumerate() {
                let check = if self.hash_leaves {
                    lh_hash(units).to_le_bytes()
                } else {
                    lf_hint(units)
                };
                self.put(cell, 4 + 8 * i + 4, &check);
                slots.push(cell as usize + 4 + 4 + 8 * i);
            }
            leaf_offs.push(cell);
        }
        match ri {
            Some(ri) => {
                for (i, &leaf) in leaf_offs.iter().enumerate() {
                    self.put32(ri, 4 + 4 * i, leaf);
                }
                Ok((ri, slots))
            }
            None => Ok((leaf_offs[0], slots)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ri_counting_more_than_65535_leaves_is_an_error() {
        let key = Key::new("k");
        let kids: Vec<(Vec<u16>, &Key)> = (0..65536).map(|_| (Vec::new(), &key)).collect();
        let writer = || {
            let mut w = Writer::default();
            w.nodes.push(Node {
                key: &key,
                parent: None,
            });
            w
        };
        // One entry a leaf: 65536 leaves, one more than the ri's 16-bit count holds (this
        // used to wrap to 0). 65535 x 507 entries would take gigabytes of keys.
        match writer().subkey_index(&kids, 1, 0) {
            Err(Error::Invalid { reason, .. }) => {
                assert!(reason.contains("65535 leaves"), "{reason}")
            }
            other => panic!("expected an error, got {:?}", other.map(|_| ())),
        }
        let mut w = writer();
        let (ri, slots) = w.subkey_index(&kids[1..], 1, 0).expect("65535 leaves");
        assert_eq!(slots.len(), 65535);
        assert_eq!(&w.buf[ri as usize + 4..ri as usize + 6], b"ri");
        assert_eq!(le_u16(&w.buf, ri as usize + 6), Some(65535));
    }
}
