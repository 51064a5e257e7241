//! The in-memory hive: a tree of keys with values, class names, security descriptors and
//! layered-key bits, plus the editing operations (open/create keys, set/get/delete values).
//! Name lookups are case-insensitive with Windows' upcase table, like the kernel's.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{KEY_COMP_NAME, ROOT_FLAGS};

// Value types ([`Value::kind`]); the data is kept as raw bytes whatever the type.
/// Value type: no particular type.
pub const REG_NONE: u32 = 0;
/// Value type: a UTF-16LE string, normally NUL-terminated.
pub const REG_SZ: u32 = 1;
/// Value type: a UTF-16LE string with `%NAME%` environment references left unexpanded.
pub const REG_EXPAND_SZ: u32 = 2;
/// Value type: arbitrary bytes.
pub const REG_BINARY: u32 = 3;
/// Value type: a 32-bit little-endian number.
pub const REG_DWORD: u32 = 4;
/// Value type: a 32-bit big-endian number.
pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
/// Value type: a registry symbolic link, the target key path in UTF-16LE.
pub const REG_LINK: u32 = 6;
/// Value type: a list of NUL-terminated UTF-16LE strings, closed by an empty one.
pub const REG_MULTI_SZ: u32 = 7;
/// Value type: a device driver's hardware resource list.
pub const REG_RESOURCE_LIST: u32 = 8;
/// Value type: a hardware resource descriptor.
pub const REG_FULL_RESOURCE_DESCRIPTOR: u32 = 9;
/// Value type: a list of hardware resource requirements.
pub const REG_RESOURCE_REQUIREMENTS_LIST: u32 = 10;
/// Value type: a 64-bit little-endian number.
pub const REG_QWORD: u32 = 11;

/// Security descriptor ORCreateHive gives a new root (144 bytes, copied from the roots of
/// nt-hive testhive and yarp System_Delta, which agree; regf.md §1.11): owner/group
/// BUILTIN\Administrators, DACL SYSTEM + Administrators KEY_ALL_ACCESS, Everyone +
/// RESTRICTED KEY_READ, all CONTAINER_INHERIT.
pub const DEFAULT_ROOT_SECURITY: [u8; 144] = [
    0x01, 0x00, 0x04, 0x80, 0x70, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x5c, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x02, 0x14, 0x00,
    0x3f, 0x00, 0x0f, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00,
    0x00, 0x02, 0x18, 0x00, 0x3f, 0x00, 0x0f, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x00, 0x02, 0x14, 0x00, 0x19, 0x00, 0x02, 0x00,
    0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x14, 0x00,
    0x19, 0x00, 0x02, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0c, 0x00, 0x00, 0x00,
    0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00,
    0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00,
];

/// How a key of a differencing hive combines with the same key in the layers below it
/// (nk byte 13, bits 0-1; regf.md §1.12, §3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LayerSemantics {
    /// Ordinary key, or "merge with the layers below" in a differencing hive.
    #[default]
    Merge,
    /// The key and its subtree are deleted from the merged view.
    Tombstone,
    /// This key's values/class replace the lower layers' for this key; subkeys still merge.
    SupersedeLocal,
    /// This key and its whole subtree replace the lower layers'.
    SupersedeTree,
}

impl LayerSemantics {
    /// The two-bit on-disk encoding.
    pub fn bits(self) -> u8 {
        match self {
            LayerSemantics::Merge => 0,
            LayerSemantics::Tombstone => 1,
            LayerSemantics::SupersedeLocal => 2,
            LayerSemantics::SupersedeTree => 3,
        }
    }

    /// Decodes the two low bits of the layer byte.
    pub fn from_bits(b: u8) -> LayerSemantics {
        match b & 3 {
            1 => LayerSemantics::Tombstone,
            2 => LayerSemantics::SupersedeLocal,
            3 => LayerSemantics::SupersedeTree,
            _ => LayerSemantics::Merge,
        }
    }
}

/// A registry value. `data` holds the raw bytes exactly as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// Value name; "" is the default value.
    pub name: String,
    /// Value type (REG_*); any u32 is kept.
    pub kind: u32,
    /// Raw data bytes.
    pub data: Vec<u8>,
    /// A tombstone value of a differencing hive (deletes the name in the merged view).
    pub tombstone: bool,
}

/// A registry key with its values and subkeys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// Key name (the root's name is informational, e.g. "ROOT").
    pub name: String,
    /// Class name bytes (UTF-16LE as stored), if any.
    pub class: Option<Vec<u8>>,
    /// Self-relative security descriptor; None inherits the parent's when written.
    pub security: Option<Vec<u8>>,
    /// Last-written FILETIME.
    pub last_written: u64,
    /// nk flags (KEY_* bits); the compressed-name bit is recomputed on write.
    pub flags: u16,
    /// Layered-key semantics (differencing hives only).
    pub layer: LayerSemantics,
    /// Layered key: take the class from the layer below.
    pub inherit_class: bool,
    /// Values in stored order.
    pub values: Vec<Value>,
    /// Subkeys (kept sorted by Windows order when created through this API; the writer sorts).
    pub subkeys: Vec<Key>,
    /// Bits 16-31 of the nk "largest subkey name" field: virtualization control, user
    /// (Wow64) and debug flags, carried through like offreg does (regf.md §2.6).
    pub user_flags: u16,
    /// The nk WorkVar field, carried through like offreg does (regf.md §2.6).
    pub work_var: u32,
}

/// A registry hive held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hive {
    /// The root key.
    pub root: Key,
    /// Minor format version (3..=6) read from the file, or 5 for a new hive; the writer
    /// keeps it (1.3/1.4: lf leaves; 1.3: no db big data).
    pub minor_version: u32,
    /// Base-block flag 0x2: a differencing hive whose keys carry layered-key semantics.
    pub differencing: bool,
    /// Problems the reader tolerated (dirty hive, bad checksum, skipped damaged cells).
    pub notes: Vec<String>,
}

/// How a note about a dirty file starts (see [`Hive::dirty_notes`]).
pub const DIRTY_NOTE: &str = "dirty hive: ";

/// Current time as a Windows FILETIME (100 ns since 1601-01-01).
pub fn now_filetime() -> u64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() / 100)
        .unwrap_or(0);
    (since_unix as u64).saturating_add(116_444_736_000_000_000)
}

/// The key names of a path. Only `\` separates: `/` is an ordinary character in registry key
/// names (SYSTEM has `Control\Session Manager\I/O System`). Empty components (a leading,
/// trailing or doubled `\`) are skipped.
fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('\\').filter(|c| !c.is_empty())
}

impl Default for Hive {
    fn default() -> Self {
        Hive::new()
    }
}

impl Hive {
    /// An empty hive with a root named "ROOT", like ORCreateHive.
    pub fn new() -> Hive {
        let mut root = Key::new("ROOT");
        root.flags = ROOT_FLAGS;
        root.security = Some(DEFAULT_ROOT_SECURITY.to_vec());
        Hive {
            root,
            minor_version: 5,
            differencing: false,
            notes: Vec::new(),
        }
    }

    /// Reads a hive file (see [`Hive::parse`]).
    pub fn open(path: &Path) -> Result<Hive> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Hive::parse(&bytes).map_err(|e| Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Writes the hive to a new file at `path`, replacing an existing one only once the new one
    /// is complete and synced.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes().map_err(|e| Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        // Written beside the file and renamed over it, so a failed write (a full disk) never
        // leaves a truncated hive where a good one was; through a symlink that is its target.
        // What is not a regular file (a FIFO, a device) is written in place.
        // A file with other names (hard links) is written in place too, so they see the edit.
        let dest = match std::fs::symlink_metadata(path) {
            Err(_) => path.to_path_buf(),
            Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
                Ok(target)
                    if std::fs::metadata(&target)
                        .is_ok_and(|t| t.is_file() && !has_other_names(&t)) =>
                {
                    target
                }
                _ => return write_in_place(path, &bytes),
            },
            Ok(m) if m.is_file() && !has_other_names(&m) => path.to_path_buf(),
            Ok(_) => return write_in_place(path, &bytes),
        };
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".regf-partial.{}", std::process::id()));
        let partial = dest.with_file_name(name);
        let written = (|| {
            // A new file, never one already there (a stale partial, or a symlink planted
            // under that name, is removed first, not followed).
            let _ = std::fs::remove_file(&partial);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&partial)?;
            // The replaced hive's permissions (SAM and SECURITY are private) and owner stay.
            if let Ok(old) = std::fs::metadata(&dest) {
                f.set_permissions(old.permissions())?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt as _;
                    let _ = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()));
                }
            }
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&partial, &dest)?;
            // The rename itself reaches the disk with the folder. Best effort: the hive is in
            // place by now, so a failure here must not report the save as failed.
            #[cfg(unix)]
            if let Some(dir) = dest.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(())
        })();
        written.map_err(|source| {
            let _ = std::fs::remove_file(&partial);
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The key at a "A\\B\\C" path below the root ("" is the root); case-insensitive. Only `\`
    /// separates names (`/` belongs to the name).
    pub fn key(&self, path: &str) -> Option<&Key> {
        split_path(path).try_fold(&self.root, |k, c| k.subkey(c))
    }

    /// Mutable access to the key at a path.
    pub fn key_mut(&mut self, path: &str) -> Option<&mut Key> {
        split_path(path).try_fold(&mut self.root, |k, c| k.subkey_mut(c))
    }

    /// Opens the key at `path`, creating missing keys along it (like ORCreateKey: new keys
    /// get the parent's security descriptor and the current time).
    pub fn create_key(&mut self, path: &str) -> &mut Key {
        split_path(path).fold(&mut self.root, |k, c| k.create_subkey(c))
    }

    /// Deletes the key at `path` with its subtree; false when it does not exist.
    pub fn delete_key(&mut self, path: &str) -> bool {
        let mut parts: Vec<&str> = split_path(path).collect();
        let Some(last) = parts.pop() else {
            return false;
        };
        match self.key_mut(&parts.join("\\")) {
            Some(parent) => parent.delete_subkey(last),
            None => false,
        }
    }

    /// The notes saying the file was dirty when read (its transaction logs hold changes it
    /// lacks), joined by "; "; None for a clean hive.
    pub fn dirty_notes(&self) -> Option<String> {
        let dirty: Vec<&str> = self
            .notes
            .iter()
            .filter(|n| n.starts_with(DIRTY_NOTE))
            .map(String::as_str)
            .collect();
        (!dirty.is_empty()).then(|| dirty.join("; "))
    }

    /// True when any key or value carries layered-key bits.
    pub fn has_layer_bits(&self) -> bool {
        fn walk(k: &Key) -> bool {
            k.layer != LayerSemantics::Merge
                || k.inherit_class
                || k.values.iter().any(|v| v.tombstone)
                || k.subkeys.iter().any(walk)
        }
        walk(&self.root)
    }

    /// Number of keys in the tree, the root included.
    pub fn key_count(&self) -> usize {
        fn walk(k: &Key) -> usize {
            1 + k.subkeys.iter().map(walk).sum::<usize>()
        }
        walk(&self.root)
    }
}

impl Key {
    /// A new empty key with the given name, stamped with the current time.
    pub fn new(name: &str) -> Key {
        Key {
            name: name.to_string(),
            class: None,
            security: None,
            last_written: now_filetime(),
            flags: KEY_COMP_NAME,
            layer: LayerSemantics::Merge,
            inherit_class: false,
            values: Vec::new(),
            subkeys: Vec::new(),
            user_flags: 0,
            work_var: 0,
        }
    }

    /// The direct subkey with this name (case-insensitive).
    pub fn subkey(&self, name: &str) -> Option<&Key> {
        self.subkeys
            .iter()
            .find(|k| upcase::eq_ignore_case_str(&k.name, name))
    }

    /// Mutable access to a direct subkey.
    pub fn subkey_mut(&mut self, name: &str) -> Option<&mut Key> {
        self.subkeys
            .iter_mut()
            .find(|k| upcase::eq_ignore_case_str(&k.name, name))
    }

    /// The direct subkey with this name, created (in Windows order) when missing.
    pub fn create_subkey(&mut self, name: &str) -> &mut Key {
        let pos = self
            .subkeys
            .iter()
            .position(|k| upcase::eq_ignore_case_str(&k.name, name));
        let idx = match pos {
            Some(i) => i,
            None => {
                let mut k = Key::new(name);
                k.security = self.security.clone();
                let at = self
                    .subkeys
                    .partition_point(|s| upcase::compare_str(&s.name, name).is_lt());
                self.subkeys.insert(at, k);
                self.last_written = now_filetime();
                at
            }
        };
        &mut self.subkeys[idx]
    }

    /// Removes a direct subkey and its subtree; false when there is none.
    pub fn delete_subkey(&mut self, name: &str) -> bool {
        let before = self.subkeys.len();
        self.subkeys
            .retain(|k| !upcase::eq_ignore_case_str(&k.name, name));
        let removed = self.subkeys.len() != before;
        if removed {
            self.last_written = now_filetime();
        }
        removed
    }

    /// The value with this name ("" = default value), case-insensitive.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|v| upcase::eq_ignore_case_str(&v.name, name))
    }

    /// Sets (replaces or adds) a value with raw data.
    pub fn set_value(&mut self, name: &str, kind: u32, data: Vec<u8>) {
        self.last_written = now_filetime();
        if let Some(v) = self
            .values
            .iter_mut()
            .find(|v| upcase::eq_ignore_case_str(&v.name, name))
        {
            v.kind = kind;
            v.data = data;
            v.tombstone = false;
            return;
        }
        self.values.push(Value {
            name: name.to_string(),
            kind,
            data,
            tombstone: false,
        });
    }

    /// Sets a REG_SZ value (UTF-16LE with a terminating NUL, as RegSetValue callers store it).
    pub fn set_string(&mut self, name: &str, s: &str) {
        self.set_value(name, REG_SZ, encode_sz(s));
    }

    /// Sets a REG_DWORD value.
    pub fn set_u32(&mut self, name: &str, v: u32) {
        self.set_value(name, REG_DWORD, v.to_le_bytes().to_vec());
    }

    /// Sets a REG_QWORD value.
    pub fn set_u64(&mut self, name: &str, v: u64) {
        self.set_value(name, REG_QWORD, v.to_le_bytes().to_vec());
    }

    /// Removes a value; false when there is none.
    pub fn delete_value(&mut self, name: &str) -> bool {
        let before = self.values.len();
        self.values
            .retain(|v| !upcase::eq_ignore_case_str(&v.name, name));
        let removed = self.values.len() != before;
        if removed {
            self.last_written = now_filetime();
        }
        removed
    }

    /// Visits this key and every key below it, parents first, each with its path: `path`
    /// extended by the names below this key, `\` between names (none before the first when
    /// `path` is empty). One buffer serves the whole walk, so a deep tree costs one path.
    pub fn walk<E>(
        &self,
        path: &mut String,
        visit: &mut dyn FnMut(&Key, &str) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        visit(self, path)?;
        let len = path.len();
        for k in &self.subkeys {
            if len > 0 {
                path.push('\\');
            }
            path.push_str(&k.name);
            let done = k.walk(path, visit);
            path.truncate(len);
            done?;
        }
        Ok(())
    }

    /// The class name decoded from UTF-16LE.
    pub fn class_name(&self) -> Option<String> {
        self.class.as_deref().map(decode_utf16le)
    }
}

/// UTF-16LE bytes of `s` followed by a NUL unit (REG_SZ / REG_EXPAND_SZ encoding).
pub fn encode_sz(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// REG_MULTI_SZ encoding: each string NUL-terminated, then an empty string.
pub fn encode_multi_sz<S: AsRef<str>>(items: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend(encode_sz(s.as_ref()));
    }
    out.extend([0, 0]);
    out
}

/// Decodes UTF-16LE bytes (an odd trailing byte is ignored, unpaired surrogates replaced).
pub fn decode_utf16le(b: &[u8]) -> String {
    String::from_utf16_lossy(&crate::format::utf16le_units(b))
}

/// Decodes UTF-16LE bytes up to the first NUL unit (or the end), as [`decode_utf16le`].
pub fn decode_utf16z(b: &[u8]) -> String {
    let units = crate::format::utf16le_units(b);
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

impl Value {
    /// The data as a string for REG_SZ, REG_EXPAND_SZ and REG_LINK (up to the first NUL).
    pub fn as_string(&self) -> Option<String> {
        match self.kind {
            REG_SZ | REG_EXPAND_SZ | REG_LINK => Some(decode_utf16z(&self.data)),
            _ => None,
        }
    }

    /// The strings of a REG_MULTI_SZ value (stops at the first empty string).
    pub fn as_multi_string(&self) -> Option<Vec<String>> {
        if self.kind != REG_MULTI_SZ {
            return None;
        }
        Some(
            crate::format::utf16le_units(&self.data)
                .split(|&u| u == 0)
                .take_while(|s| !s.is_empty())
                .map(String::from_utf16_lossy)
                .collect(),
        )
    }

    /// The data of a 4-byte REG_DWORD or REG_DWORD_BIG_ENDIAN value.
    pub fn as_u32(&self) -> Option<u32> {
        let b: [u8; 4] = self.data.as_slice().try_into().ok()?;
        match self.kind {
            REG_DWORD => Some(u32::from_le_bytes(b)),
            REG_DWORD_BIG_ENDIAN => Some(u32::from_be_bytes(b)),
            _ => None,
        }
    }

    /// The data of an 8-byte REG_QWORD value (or a REG_DWORD widened).
    pub fn as_u64(&self) -> Option<u64> {
        if self.kind == REG_QWORD {
            let b: [u8; 8] = self.data.as_slice().try_into().ok()?;
            return Some(u64::from_le_bytes(b));
        }
        self.as_u32().map(u64::from)
    }
}

/// Whether the file behind `m` has other names (hard links) that a replacement would not reach.
fn has_other_names(m: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        m.nlink() > 1
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        false
    }
}

/// Writes `bytes` to `path` as it is (a FIFO, a device, a dangling symlink, a hard-linked file).
fn write_in_place(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_set_get_delete() {
        let mut h = Hive::new();
        h.create_key("Objects\\{abc}\\Elements\\12000004")
            .set_string("Element", "Windows Boot Manager");
        h.create_key("objects\\{ABC}").set_u32("Type", 0x1010_0002);
        assert_eq!(h.root.subkeys.len(), 1);
        let k = h
            .key("OBJECTS\\{Abc}\\elements\\12000004")
            .expect("created key");
        assert_eq!(
            k.value("element").and_then(Value::as_string).as_deref(),
            Some("Windows Boot Manager")
        );
        assert_eq!(
            h.key("\\Objects\\\\{abc}\\")
                .and_then(|k| k.value("TYPE"))
                .and_then(Value::as_u32),
            Some(0x1010_0002)
        );
        // `/` is part of a name, not a separator.
        assert!(h.key("Objects/{abc}").is_none());
        h.create_key("Objects\\I/O System").set_u32("x", 1);
        let objects = h.key("objects").expect("key");
        assert_eq!(objects.subkeys.len(), 2);
        assert!(objects.subkey("I").is_none());
        assert!(h.key("Objects\\i/o system").is_some());
        assert!(h.delete_key("Objects\\I/O System"));
        assert_eq!(h.key("objects").map(|k| k.subkeys.len()), Some(1));
        let k = h.key_mut("Objects\\{abc}").expect("key");
        assert!(k.delete_value("type"));
        assert!(!k.delete_value("type"));
        assert!(h.delete_key("objects\\{abc}\\Elements"));
        assert!(h.key("Objects\\{abc}\\Elements").is_none());
        assert!(h.key("Objects\\{abc}").is_some());
        assert!(h.key("").is_some());
        assert!(!h.delete_key(""));
    }

    #[test]
    fn new_subkeys_are_kept_in_windows_order_and_inherit_security() {
        let mut h = Hive::new();
        for n in ["b", "A", "c", "_", "a"] {
            h.create_key(n);
        }
        let names: Vec<&str> = h.root.subkeys.iter().map(|k| k.name.as_str()).collect();
        // '_' (0x5F) sorts after upcased letters (0x41..0x5A).
        assert_eq!(names, ["A", "b", "c", "_"]);
        assert_eq!(
            h.key("c").and_then(|k| k.security.as_deref()),
            Some(&DEFAULT_ROOT_SECURITY[..])
        );
    }

    #[test]
    fn value_decoders() {
        let v = |kind, data: Vec<u8>| Value {
            name: String::new(),
            kind,
            data,
            tombstone: false,
        };
        assert_eq!(
            v(REG_SZ, encode_sz("19045")).as_string().as_deref(),
            Some("19045")
        );
        assert_eq!(v(REG_BINARY, vec![1, 2]).as_string(), None);
        assert_eq!(
            v(REG_DWORD_BIG_ENDIAN, vec![0, 0, 1, 0]).as_u32(),
            Some(256)
        );
        assert_eq!(v(REG_DWORD, vec![1, 0, 0]).as_u32(), None);
        assert_eq!(v(REG_QWORD, 7u64.to_le_bytes().to_vec()).as_u64(), Some(7));
        assert_eq!(
            v(REG_MULTI_SZ, encode_multi_sz(&["a", "bc"])).as_multi_string(),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
    }

    #[test]
    fn edited_hive_survives_write_and_parse() {
        let mut h = Hive::new();
        h.create_key("ControlSet001\\Control")
            .set_string("SystemBootDevice", "multi(0)");
        h.create_key("Big")
            .set_value("blob", REG_BINARY, vec![7; 40_000]);
        h.create_key("Big").set_value("", REG_NONE, vec![]);
        let bytes = h.to_bytes().expect("write");
        let back = Hive::parse(&bytes).expect("parse");
        assert_eq!(back.root.name, "ROOT");
        assert_eq!(back.root.flags, crate::format::ROOT_FLAGS);
        assert_eq!(
            back.key("big")
                .and_then(|k| k.value("BLOB"))
                .map(|v| v.data.len()),
            Some(40_000)
        );
        assert_eq!(back.root, h.root);
    }

    #[test]
    fn a_bad_base_block_checksum_makes_the_hive_dirty() {
        let mut bytes = Hive::new().to_bytes().expect("write");
        assert_eq!(Hive::parse(&bytes).expect("parse").dirty_notes(), None);
        bytes[crate::format::BB_CHECKSUM] ^= 0x55;
        let notes = Hive::parse(&bytes)
            .expect("parse")
            .dirty_notes()
            .expect("dirty");
        assert!(notes.contains("base block checksum"), "{notes}");
    }

    #[cfg(unix)]
    #[test]
    fn save_keeps_mode_follows_symlinks_and_links_but_not_a_planted_partial() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = |n: usize| {
            let mut h = Hive::new();
            h.create_key(&vec!["k"; n].join("\\"));
            h
        };
        let real = dir.path().join("hive");
        keys(1).save(&real).expect("save");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // Through a symlink: the target is replaced, mode kept, the link stays a link.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        keys(2).save(&link).expect("save through link");
        assert!(std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink());
        let mode = std::fs::metadata(&real).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Hive::open(&real).expect("open").key_count(), 3);
        // A second hard link sees the edit.
        let other = dir.path().join("other");
        std::fs::hard_link(&real, &other).expect("link");
        keys(3).save(&real).expect("save linked");
        assert_eq!(Hive::open(&other).expect("open").key_count(), 4);
        std::fs::remove_file(&other).expect("unlink");
        // A symlink planted where the partial file goes is replaced, not written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").expect("write");
        let partial = dir
            .path()
            .join(format!("hive.regf-partial.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &partial).expect("plant");
        keys(4).save(&real).expect("save");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep");
        assert!(!partial.exists());
        assert_eq!(Hive::open(&real).expect("open").key_count(), 5);
    }
}
