//! Consistency checker for hive files, at two levels ([`Level`]):
//!
//! * [`Level::Windows`]: the invariants Windows relies on when it loads a hive (base block and
//!   checksum, bin layout, cells that hold what they claim, parent pointers, counts, lh hashes,
//!   lf hints, big-data records, subkey order, sk list and refcounts, "largest name/data"
//!   fields at least the real maxima). Real, clean Windows hives pass it.
//! * [`Level::Compact`]: those plus the layout of ORSaveHive output, which is what this crate
//!   writes (every cell referenced once, minimal cell sizes, free space only at bin tails, no
//!   bytes after the bins, exact "largest" fields, equal sequence numbers, root flags, leaf kind
//!   for the format version, no volatile leftovers). Live hives legitimately break these rules
//!   (Windows never shrinks a "largest" field, for one); anything this crate writes must pass
//!   all of them.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::format::*;

/// How much a check asks of a hive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Level {
    /// What Windows relies on to load the hive; real, clean Windows hives pass.
    #[default]
    Windows,
    /// Also the compact layout of ORSaveHive output (what this crate writes).
    Compact,
}

/// One violated invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Offset of the offending cell relative to the hive bins data, when there is one.
    pub offset: Option<u32>,
    /// Path of the key concerned ("" is the root key); None when the problem is not about a
    /// key (the base block, the bins, a cell no key was being read through). A path longer
    /// than [`PATH_LIMIT`] bytes is shortened to "…" and its last [`PATH_LIMIT`] bytes.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// True when only a [`Level::Compact`] rule is broken (the layout differs from what
    /// ORSaveHive writes, but Windows reads the hive); false for damage.
    pub compact: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "cell {o:#x}")?,
            None => write!(f, "file")?,
        }
        match self.key.as_deref() {
            None => {}
            Some("") => write!(f, " (root key)")?,
            Some(k) => write!(f, " (key \"{k}\")")?,
        }
        write!(f, ": {}", self.message)
    }
}

/// Most problems a [`Report`] lists; the rest are only counted.
pub const MAX_PROBLEMS: usize = 1000;

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Up to [`MAX_PROBLEMS`] problems: damage first (in the order found), then the
    /// [`Level::Compact`] findings.
    pub problems: Vec<Problem>,
    /// How many problems were found in all (more than `problems.len()` when the list is cut).
    pub total: usize,
    /// Facts worth telling that are not problems at this level, e.g. that the file is dirty
    /// (its sequence numbers differ: its transaction logs hold changes it lacks).
    pub notes: Vec<String>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.total == 0
    }

    /// True when more problems were found than `problems` lists.
    pub fn truncated(&self) -> bool {
        self.total > self.problems.len()
    }
}

/// Longest key path (in UTF-8 bytes) a [`Problem`] names in full. Real paths are far shorter;
/// hostile ones (hundreds of levels of 32767-unit names) would otherwise make up to 1000
/// problems hold megabytes each.
pub const PATH_LIMIT: usize = 4096;

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

/// Checks a hive file at [`Level::Compact`] and returns the problems found, at most
/// [`MAX_PROBLEMS`] (empty = valid and compact).
pub fn validate(bytes: &[u8]) -> Vec<Problem> {
    check(bytes, Level::Compact).problems
}

/// Checks a hive file at `level`.
pub fn check(bytes: &[u8], level: Level) -> Report {
    let mut v = Validator {
        level,
        ..Validator::default()
    };
    v.run(bytes);
    let mut problems = v.damage;
    let room = MAX_PROBLEMS.saturating_sub(problems.len());
    problems.extend(v.layout.into_iter().take(room));
    Report {
        problems,
        total: v.total,
        notes: v.notes,
    }
}

/// Which rule a finding breaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// An invariant Windows relies on.
    Damage,
    /// Only the compact layout.
    Compact,
}
use Rule::{Compact, Damage};

/// The rule a cell of `len` bytes breaks when its contents need a `minimal`-byte cell (size
/// field included): damage when they do not fit, the compact layout when the cell is larger.
fn size_rule(len: usize, minimal: usize) -> Rule {
    if len < minimal {
        Damage
    } else {
        Compact
    }
}

#[derive(Default)]
struct Validator<'a> {
    level: Level,
    bins: &'a [u8],
    minor: u32,
    /// Base-block flag 0x2 (layered keys allowed).
    layered: bool,
    /// Allocated cells: offset -> total size.
    cells: HashMap<u32, usize>,
    refs: HashMap<u32, u32>,
    /// sk offset -> number of nk cells pointing at it.
    sk_users: HashMap<u32, u32>,
    /// Damage found, in the order found (at most [`MAX_PROBLEMS`]).
    damage: Vec<Problem>,
    /// Compact-layout findings (at most [`MAX_PROBLEMS`]), listed after the damage.
    layout: Vec<Problem>,
    /// Every problem counted, listed or not.
    total: usize,
    notes: Vec<String>,
    /// Names of the keys being checked, below the root, outermost first: the current key's
    /// path, rendered only for a problem (a path per level would cost depth^2 x name length).
    chain: Vec<NameAt>,
}

impl<'a> Validator<'a> {
    /// Counts a finding of this rule when it is a problem at this level, and says whether it
    /// is to be listed (false for a compact rule at [`Level::Windows`], or a full list).
    fn counts(&mut self, rule: Rule) -> bool {
        if rule == Compact && self.level != Level::Compact {
            return false;
        }
        self.total += 1;
        match rule {
            Damage => self.damage.len() < MAX_PROBLEMS,
            Compact => self.layout.len() < MAX_PROBLEMS,
        }
    }

    fn push(&mut self, rule: Rule, problem: Problem) {
        match rule {
            Damage => self.damage.push(problem),
            Compact => self.layout.push(problem),
        }
    }

    /// Reports a problem not tied to a key.
    fn report(&mut self, rule: Rule, offset: Option<u32>, message: impl Into<String>) {
        if self.counts(rule) {
            let problem = Problem {
                offset,
                key: None,
                message: message.into(),
                compact: rule == Compact,
            };
            self.push(rule, problem);
        }
    }

    /// Reports a problem with the key being checked (its path is rendered only when listed).
    fn report_here(&mut self, rule: Rule, offset: Option<u32>, message: impl Into<String>) {
        if self.counts(rule) {
            let problem = Problem {
                offset,
                key: Some(self.path()),
                message: message.into(),
                compact: rule == Compact,
            };
            self.push(rule, problem);
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
            let name = n.decode(self.bins);
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
            self.report(Damage, None, "no regf base block");
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
            ("checksum", f(BB_CHECKSUM), checksum(base)),
        ] {
            if got != want {
                self.report(
                    Damage,
                    None,
                    format!("{what} is {got:#x}, expected {want:#x}"),
                );
            }
        }
        // A dirty file (its logs hold changes it lacks) is a state Windows handles on load,
        // not damage; the compact layout is always clean.
        let (seq1, seq2) = (f(BB_SEQ1), f(BB_SEQ2));
        if seq1 != seq2 {
            if self.level == Level::Compact {
                self.report(
                    Compact,
                    None,
                    format!("secondary sequence is {seq2:#x}, expected {seq1:#x}"),
                );
            } else {
                self.notes.push(format!(
                    "{}sequence numbers {seq1} != {seq2} (read without logs)",
                    crate::model::DIRTY_NOTE
                ));
            }
        }
        if !(3..=6).contains(&self.minor) {
            self.report(Damage, None, format!("minor version {}", self.minor));
        }
        let size = f(BB_BINS_SIZE) as usize;
        if size & (HBIN_ALIGN - 1) != 0 || size == 0 {
            self.report(
                Damage,
                None,
                format!("hive bins size {size:#x} not a positive multiple of 4096"),
            );
        }
        if bytes.len() != BASE_BLOCK_SIZE + size {
            // Windows reads the bins the base block declares; bytes after them are unused.
            let rule = if bytes.len() < BASE_BLOCK_SIZE + size {
                Damage
            } else {
                Compact
            };
            self.report(
                rule,
                None,
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
            self.report(Compact, Some(o), "allocated cell referenced by nothing");
        }
        let twice: Vec<u32> = self
            .refs
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(&o, _)| o)
            .collect();
        for o in twice.into_iter().take(20) {
            self.report(Damage, Some(o), "cell referenced more than once");
        }
    }

    fn scan_bins(&mut self) {
        let mut at = 0usize;
        while at < self.bins.len() {
            let b = self.bins;
            if b.get(at..at + 4) != Some(b"hbin") {
                self.report(Damage, Some(at as u32), "no hbin signature");
                return;
            }
            let off = le_u32(b, at + 4).unwrap_or(0) as usize;
            let size = le_u32(b, at + 8).unwrap_or(0) as usize;
            if off != at {
                self.report(
                    Damage,
                    Some(at as u32),
                    format!("hbin offset field {off:#x}"),
                );
            }
            if size == 0 || size & (HBIN_ALIGN - 1) != 0 || at + size > b.len() {
                self.report(Damage, Some(at as u32), format!("hbin size {size:#x}"));
                return;
            }
            let end = at + size;
            let mut c = at + HBIN_HEADER_SIZE;
            while c < end {
                let raw = le_u32(b, c).unwrap_or(0) as i32;
                let len = raw.unsigned_abs() as usize;
                if len < 8 || len & 7 != 0 || c + len > end {
                    self.report(
                        Damage,
                        Some(c as u32),
                        format!("cell size {raw} breaks the bin"),
                    );
                    break;
                }
                if raw < 0 {
                    self.cells.insert(c as u32, len);
                } else if c + len != end {
                    self.report(
                        Compact,
                        Some(c as u32),
                        "free cell not at the end of its bin",
                    );
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
                Damage,
                Some(off),
                "reference to something that is not an allocated cell",
            );
            return None;
        };
        *self.refs.entry(off).or_insert(0) += 1;
        if let Some(n) = needed {
            let minimal = cell_size(n);
            if minimal != len {
                let rule = size_rule(len, minimal);
                let message = if rule == Damage {
                    format!("cell of {len} bytes is too small for {n} bytes of data")
                } else {
                    format!("cell of {len} bytes, minimal is {minimal}")
                };
                self.report_here(rule, Some(off), message);
            }
        }
        let b: &'a [u8] = self.bins;
        b.get(off as usize + 4..off as usize + len)
    }

    fn key(&mut self, off: u32, parent: u32, seen: &mut HashSet<u32>, depth: usize) -> u32 {
        if !seen.insert(off) || depth > MAX_DEPTH {
            self.report_here(Damage, Some(off), "key reached twice or nested too deep");
            return NIL;
        }
        let Some(nk) = self.cell(off, None) else {
            return NIL;
        };
        if nk.len() < NK_NAME || &nk[..2] != b"nk" {
            self.report_here(Damage, Some(off), "not an nk cell");
            return NIL;
        }
        let u16_at = |at| le_u16(nk, at).unwrap_or(0);
        let u32_at = |at| le_u32(nk, at).unwrap_or(0);
        let flags = u16_at(NK_FLAGS);
        let name_len = usize::from(u16_at(NK_NAME_LEN));
        let minimal = cell_size(NK_NAME + name_len);
        if minimal != nk.len() + 4 {
            let rule = size_rule(nk.len() + 4, minimal);
            let message = if rule == Damage {
                "name runs past the nk cell"
            } else {
                "nk cell not minimal"
            };
            self.report_here(rule, Some(off), message);
        }
        let name_bytes = nk.get(NK_NAME..NK_NAME + name_len).unwrap_or_default();
        let units = name_units(name_bytes, flags & KEY_COMP_NAME != 0);
        if units.is_empty() {
            self.report_here(Damage, Some(off), "empty key name");
        }
        if (flags & KEY_COMP_NAME != 0) != is_compressible(&units) {
            self.report_here(
                Compact,
                Some(off),
                "compressed-name flag does not match the name",
            );
        }
        if parent == NIL && flags & KEY_HIVE_ENTRY == 0 {
            // ORSaveHive itself writes such roots (nt-hive's testhive), and Windows loads them.
            self.report_here(Compact, Some(off), "root without KEY_HIVE_ENTRY");
        }
        if parent != NIL && u32_at(NK_PARENT) != parent {
            self.report_here(
                Damage,
                Some(off),
                format!("parent {:#x}, expected {parent:#x}", u32_at(NK_PARENT)),
            );
        }
        if u32_at(NK_VOLATILE_SUBKEY_COUNT) != 0 {
            // A leftover of the live hive; Windows resets it on load.
            self.report_here(Compact, Some(off), "volatile subkey count on disk");
        }
        if !self.layered && nk[NK_LAYER] != 0 {
            self.report_here(
                Damage,
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
                    let minimal = cell_size(20 + n);
                    if minimal != c.len() + 4 {
                        let rule = size_rule(c.len() + 4, minimal);
                        let message = if rule == Damage {
                            "descriptor runs past the sk cell"
                        } else {
                            "sk cell not minimal"
                        };
                        self.report_here(rule, Some(sk), message);
                    }
                }
                _ => self.report_here(Damage, Some(sk), "not an sk cell"),
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
        let (field_vname, field_vdata) = (u32_at(NK_MAX_VALUE_NAME), u32_at(NK_MAX_VALUE_DATA));
        if let Some((rule, what)) =
            largest_rule(&[(field_vname, max_vname), (field_vdata, max_vdata)])
        {
            self.report_here(
                rule,
                Some(off),
                format!(
                    "largest value name/data fields {field_vname}/{field_vdata} {what} \
                     ({max_vname}/{max_vdata})"
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
                Damage,
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
                self.report_here(Damage, Some(child), "key reached twice or nested too deep");
                continue;
            }
            let Some(c) = self.bins.get(child as usize + 4..) else {
                continue;
            };
            let cflags = le_u16(c, NK_FLAGS).unwrap_or(0);
            let clen = usize::from(le_u16(c, NK_NAME_LEN).unwrap_or(0));
            let cb = c.get(NK_NAME..NK_NAME + clen).unwrap_or_default();
            let cu = name_units(cb, cflags & KEY_COMP_NAME != 0);
            let cname = String::from_utf16_lossy(&cu);
            match check {
                NameCheck::Hash(h) if h != lh_hash(&cu) => {
                    self.report_here(Damage, Some(child), format!("lh hash of \"{cname}\" wrong"));
                }
                NameCheck::Hint(h) if h != lf_hint(&cu) => {
                    self.report_here(
                        Damage,
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
                    self.report_here(
                        Damage,
                        Some(child),
                        format!("subkey \"{cname}\" out of order"),
                    );
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
        // The high 16 bits of the name field are flags (regf.md §1.5).
        let (field_name, field_class) = (
            u32_at(NK_MAX_SUBKEY_NAME) & 0xFFFF,
            u32_at(NK_MAX_SUBKEY_CLASS),
        );
        if let Some((rule, what)) =
            largest_rule(&[(field_name, max_name), (field_class, max_class)])
        {
            self.report_here(
                rule,
                Some(off),
                format!(
                    "largest subkey name/class fields {field_name}/{field_class} {what} \
                     ({max_name}/{max_class})"
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
            let minimal = cell_size(4 + 4 * count);
            if minimal != c.len() + 4 {
                let rule = size_rule(c.len() + 4, minimal);
                let message = if rule == Damage {
                    "ri entries run past the cell"
                } else {
                    "ri cell not minimal"
                };
                self.report_here(rule, Some(off), message);
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
                Damage,
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
                self.report_here(Damage, Some(off), "not an li/lf/lh leaf");
                return;
            }
        };
        // Windows writes lh from 1.5 on and lf before (regf.md §1.6); an lh leaf in an older
        // hive is unknown to the Windows versions that format is meant for. Current Windows
        // reads every leaf kind in every version, so this is a layout rule.
        if self.minor >= MINOR_HASH_LEAVES && sig != b"lh" {
            self.report_here(Compact, Some(off), "format 1.5+ hive with a non-lh leaf");
        }
        if self.minor < MINOR_HASH_LEAVES && sig == b"lh" {
            self.report_here(
                Compact,
                Some(off),
                format!("format 1.{} hive with an lh leaf", self.minor),
            );
        }
        let minimal = cell_size(4 + stride * count);
        if minimal != c.len() + 4 {
            let rule = size_rule(c.len() + 4, minimal);
            let message = if rule == Damage {
                "leaf entries run past the cell"
            } else {
                "leaf cell not minimal"
            };
            self.report_here(rule, Some(off), message);
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
            self.report_here(Damage, Some(off), "not a vk cell");
            return (0, 0);
        }
        let name_len = usize::from(le_u16(vk, VK_NAME_LEN).unwrap_or(0));
        let minimal = cell_size(VK_NAME + name_len);
        if minimal != vk.len() + 4 {
            let rule = size_rule(vk.len() + 4, minimal);
            let message = if rule == Damage {
                "name runs past the vk cell"
            } else {
                "vk cell not minimal"
            };
            self.report_here(rule, Some(off), message);
        }
        let flags = le_u16(vk, VK_FLAGS).unwrap_or(0);
        if flags & VALUE_TOMBSTONE != 0 && !self.layered {
            self.report_here(
                Damage,
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
                self.report_here(Damage, Some(off), "inline data longer than 4 bytes");
            }
        } else if len > 0 && len <= 4 {
            self.report_here(Compact, Some(off), "data of 1-4 bytes not stored inline");
        } else if len > MAX_SINGLE_CELL_DATA && self.minor >= MINOR_BIG_DATA {
            let segs = len.div_ceil(DB_SEGMENT_DATA);
            let db = self
                .cell(data, Some(8))
                .filter(|_| !self.walked_before(data));
            if let Some(db) = db {
                let count = usize::from(le_u16(db, 2).unwrap_or(0));
                if db.get(..2) != Some(b"db") || count != segs {
                    self.report_here(
                        Damage,
                        Some(data),
                        format!("db record: expected {segs} segments"),
                    );
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
                        Damage,
                        Some(at),
                        "sk list loops back somewhere other than its start",
                    );
                }
                break;
            }
            let Some(c) = self.bins.get(at as usize + 4..at as usize + 24) else {
                self.report(Damage, Some(at), "sk list leaves the hive");
                return;
            };
            let (flink, refs) = (le_u32(c, 4).unwrap_or(NIL), le_u32(c, 12).unwrap_or(0));
            let users = self.sk_users.get(&at).copied().unwrap_or(0);
            if refs != users {
                self.report(
                    Damage,
                    Some(at),
                    format!("sk refcount {refs}, {users} keys use it"),
                );
            }
            let back = self
                .bins
                .get(flink as usize + 4 + 8..)
                .and_then(|b| le_u32(b, 0))
                .unwrap_or(NIL);
            if back != at {
                self.report(Damage, Some(flink), "sk blink does not point back");
            }
            at = flink;
        }
        let used: HashSet<u32> = self.sk_users.keys().copied().collect();
        if used != seen {
            self.report(
                Damage,
                None,
                format!(
                    "sk list holds {} cells, keys use {}",
                    seen.len(),
                    used.len()
                ),
            );
        }
    }
}

/// The rule a set of "largest ..." fields breaks, with words for it, given (stored, real
/// maximum) pairs: Windows raises these fields as names and data grow and never lowers them,
/// so a field above the real maximum is normal in a live hive (only the compact layout has
/// them exact); a field below it understates what a reader must be ready for.
fn largest_rule(fields: &[(u32, u32)]) -> Option<(Rule, &'static str)> {
    if fields.iter().any(|(stored, real)| stored < real) {
        Some((Damage, "below the real maxima"))
    } else if fields.iter().any(|(stored, real)| stored != real) {
        Some((Compact, "not exact"))
    } else {
        None
    }
}
