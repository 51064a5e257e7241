//! Flattening of container-layer differencing hives onto their base, like ORMergeHives
//! (regf.md §3): tombstones delete, supersede-local/-tree replace, everything else overlays.
//! The result is an ordinary hive: no layer bits, no tombstone values.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::model::{Hive, Key, LayerSemantics, Value};

/// Merges `delta` (a differencing hive, e.g. a layer's SYSTEM_DELTA) onto `base` (the parent
/// layer's SYSTEM_BASE) and returns the flattened hive, as hcsshim's
/// ORMergeHives([base, delta]) + ORSaveHive produce for each non-base layer.
pub fn merge(base: &Hive, delta: &Hive) -> Result<Hive> {
    merge_all(base, &[delta])
}

/// Merges several deltas onto `base`, left to right (regf.md §3.3: "apply left to right").
pub fn merge_all(base: &Hive, deltas: &[&Hive]) -> Result<Hive> {
    let mut root = strip(&base.root);
    for delta in deltas {
        let base_security = root.security.clone();
        root = merge_key(Some(&root), &delta.root).ok_or_else(|| Error::Invalid {
            key: String::new(),
            reason: "the delta's root key is a tombstone; a hive root cannot be deleted".into(),
        })?;
        // A delta's root is the key ORCreateHive made, with a descriptor of its own rather
        // than a copy of the base root's (the real delta's root has 144 bytes where real
        // SYSTEM roots have 236, while most of its merge keys carry copies of their base
        // keys' descriptors): the root keeps the base's. Other keys take the delta's
        // (UNKNOWN (a), regf.md §3.3).
        if root.security.is_some()
            && base_security.is_some()
            && delta.root.layer == LayerSemantics::Merge
        {
            root.security = base_security;
        }
    }
    // Output format: the base's, which the writer keeps (a 1.3 base gives 1.3). What
    // ORSaveHive(10, 0) picks is UNKNOWN (e) in regf.md §3.3; container bases are 1.5.
    Ok(Hive {
        root,
        minor_version: base.minor_version,
        differencing: false,
        notes: Vec::new(),
    })
}

/// The delta's own values without tombstones.
fn live_values(values: &[Value]) -> Vec<Value> {
    values.iter().filter(|v| !v.tombstone).cloned().collect()
}

/// A key's own data (no subkeys) with the layer bits cleared.
fn own(k: &Key, values: Vec<Value>) -> Key {
    Key {
        name: k.name.clone(),
        class: k.class.clone(),
        security: k.security.clone(),
        last_written: k.last_written,
        flags: k.flags,
        layer: LayerSemantics::Merge,
        inherit_class: false,
        values,
        subkeys: Vec::new(),
        user_flags: k.user_flags,
        work_var: k.work_var,
    }
}

/// A copy of a key tree with any layer bits removed (tombstones dropped), for bases that
/// are themselves differencing hives.
fn strip(k: &Key) -> Key {
    let mut out = own(k, live_values(&k.values));
    out.subkeys = k
        .subkeys
        .iter()
        .filter(|c| c.layer != LayerSemantics::Tombstone)
        .map(strip)
        .collect();
    out
}

/// The class a delta node shows: its own, or with InheritClass the base node's (none when
/// there is no base node; regf.md §3.2).
fn class_of(base: Option<&Key>, delta: &Key) -> Option<Vec<u8>> {
    if delta.inherit_class {
        base.and_then(|b| b.class.clone())
    } else {
        delta.class.clone()
    }
}

/// Merges one delta node over an optional base node; None when the key is deleted.
fn merge_key(base: Option<&Key>, delta: &Key) -> Option<Key> {
    match (delta.layer, base) {
        (LayerSemantics::Tombstone, _) => None,
        (LayerSemantics::SupersedeTree, _) => Some(supersede_tree(base, delta)),
        (LayerSemantics::SupersedeLocal, _) | (LayerSemantics::Merge, None) => {
            // The delta node alone supplies values, class, descriptor, time and flags; the
            // base's subkeys stay visible and merge with the delta's (dfir.ru, regf.md
            // §3.2; UNKNOWN (f) — we take that description). Name spelling: the delta's.
            let mut k = own(delta, live_values(&delta.values));
            k.class = class_of(base, delta);
            k.subkeys = merge_children(base.map_or(&[][..], |b| &b.subkeys), &delta.subkeys);
            Some(k)
        }
        (LayerSemantics::Merge, Some(b)) => {
            // Values: base order, delta values replace in place, new ones appended,
            // tombstones remove (UNKNOWN (c): the order suggested in regf.md §3.3).
            let mut values = b.values.clone();
            for v in &delta.values {
                let pos = values
                    .iter()
                    .position(|x| upcase::eq_ignore_case_str(&x.name, &v.name));
                match (v.tombstone, pos) {
                    (true, Some(i)) => {
                        values.remove(i);
                    }
                    (true, None) => {}
                    (false, Some(i)) => values[i] = v.clone(),
                    (false, None) => values.push(v.clone()),
                }
            }
            // Descriptor, flags, WorkVar: the delta node's, the node the kernel opens
            // (UNKNOWN (a)/(d), regf.md §3.3); name: the base spelling (UNKNOWN (b)).
            let mut k = own(delta, values);
            k.name = b.name.clone();
            if k.security.is_none() {
                k.security = b.security.clone();
            }
            k.class = class_of(Some(b), delta);
            // The merged view's time is the newest of the stack (regf.md §3.2).
            k.last_written = b.last_written.max(delta.last_written);
            k.subkeys = merge_children(&b.subkeys, &delta.subkeys);
            Some(k)
        }
    }
}

/// A supersede-tree key: the delta subtree replaces the base subtree. Base nodes are only
/// consulted for InheritClass (the rule of regf.md §3.3, applied at every level).
fn supersede_tree(base: Option<&Key>, delta: &Key) -> Key {
    let mut k = own(delta, live_values(&delta.values));
    k.class = class_of(base, delta);
    k.subkeys = delta
        .subkeys
        .iter()
        .filter(|d| d.layer != LayerSemantics::Tombstone)
        .map(|d| supersede_tree(base.and_then(|b| b.subkey(&d.name)), d))
        .collect();
    sort(&mut k.subkeys);
    k
}

fn merge_children(base: &[Key], delta: &[Key]) -> Vec<Key> {
    let index: HashMap<Vec<u16>, &Key> = delta
        .iter()
        .map(|d| (upcase::upcase_units(&d.name), d))
        .collect();
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(base.len() + delta.len());
    for b in base {
        let f = upcase::upcase_units(&b.name);
        match index.get(&f) {
            Some(d) => {
                if let Some(k) = merge_key(Some(b), d) {
                    out.push(k);
                }
                used.insert(f);
            }
            None => out.push(b.clone()),
        }
    }
    for d in delta {
        // `used` also keeps a second delta child of the same (case-folded) name out.
        if used.insert(upcase::upcase_units(&d.name)) {
            if let Some(k) = merge_key(None, d) {
                out.push(k);
            }
        }
    }
    sort(&mut out);
    out
}

fn sort(keys: &mut [Key]) {
    keys.sort_by(|a, b| upcase::compare_str(&a.name, &b.name));
}
