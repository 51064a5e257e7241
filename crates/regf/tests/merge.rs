//! Merge (ORMergeHives flattening) on a real delta and on hand-built deltas with every
//! layered-key kind.

mod common;

use common::*;
use regf::{merge, merge_all, Hive, Key, LayerSemantics, Value, REG_DWORD};

fn tombstone_value(name: &str) -> Value {
    Value {
        name: name.into(),
        kind: 0,
        data: Vec::new(),
        tombstone: true,
    }
}

fn layered(k: &mut Key, layer: LayerSemantics, inherit_class: bool) {
    k.layer = layer;
    k.inherit_class = inherit_class;
}

/// Asserts a tree carries no layer bits at all.
fn assert_plain(k: &Key, path: &str) {
    assert_eq!(k.layer, LayerSemantics::Merge, "{path}");
    assert!(!k.inherit_class, "{path}");
    assert!(k.values.iter().all(|v| !v.tombstone), "{path}");
    for c in &k.subkeys {
        assert_plain(c, &format!("{path}\\{}", c.name));
    }
}

fn base() -> Hive {
    let mut h = Hive::new();
    let k = h.create_key("Svc\\Keep");
    k.set_string("ImagePath", "keep.sys");
    k.class = Some(b"b\0a\0".to_vec());
    let k = h.create_key("Svc\\Gone");
    k.set_u32("Start", 3);
    h.create_key("Svc\\Gone\\Params").set_u32("x", 1);
    let k = h.create_key("Svc\\Local");
    k.set_u32("Start", 2);
    k.set_u32("Type", 1);
    k.class = Some(b"L\0".to_vec());
    h.create_key("Svc\\Local\\Child").set_u32("c", 1);
    let k = h.create_key("Svc\\Tree");
    k.set_u32("Start", 4);
    k.class = Some(b"T\0".to_vec());
    h.create_key("Svc\\Tree\\Old").set_u32("o", 1);
    h.create_key("Svc\\Tree\\Kept").set_u32("k", 1);
    let k = h.create_key("Svc\\Vals");
    k.set_u32("a", 1);
    k.set_u32("b", 2);
    k.set_u32("c", 3);
    k.last_written = 100;
    k.class = Some(b"V\0".to_vec());
    h
}

fn delta() -> Hive {
    let mut d = Hive::new();
    d.differencing = true;
    d.minor_version = 6;
    let svc = d.create_key("Svc");
    layered(svc, LayerSemantics::Merge, true);
    layered(d.create_key("Svc\\Gone"), LayerSemantics::Tombstone, false);
    let k = d.create_key("Svc\\Local");
    layered(k, LayerSemantics::SupersedeLocal, false);
    k.set_u32("Start", 4);
    k.class = Some(b"N\0".to_vec());
    let k = d.create_key("Svc\\Tree");
    layered(k, LayerSemantics::SupersedeTree, true);
    k.set_u32("Start", 1);
    let k = d.create_key("Svc\\Tree\\Kept");
    layered(k, LayerSemantics::SupersedeTree, false);
    k.set_u32("new", 9);
    let k = d.create_key("Svc\\Tree\\Dead");
    layered(k, LayerSemantics::Tombstone, false);
    let k = d.create_key("SVC\\vals");
    layered(k, LayerSemantics::Merge, true);
    k.values.push(tombstone_value("A"));
    k.set_u32("c", 30);
    k.set_u32("d", 4);
    k.last_written = 200;
    let k = d.create_key("Svc\\New\\Sub");
    layered(k, LayerSemantics::Merge, true);
    k.set_string("", "fresh");
    d
}

#[test]
fn hand_built_delta_with_every_layer_kind() {
    let b = base();
    let d = delta();
    // The delta itself survives a write/parse with its bits.
    let d = Hive::parse(&d.to_bytes().expect("write delta")).expect("parse delta");
    assert!(d.differencing);
    let m = merge(&b, &d).expect("merge");
    assert!(!m.differencing);
    assert_plain(&m.root, "");
    assert_eq!(m.root.name, "ROOT");

    // Tombstone: key and subtree gone.
    assert!(m.key("Svc\\Gone").is_none());
    assert!(m.key("Svc\\Gone\\Params").is_none());
    // Untouched base key kept as it was.
    assert_eq!(m.key("Svc\\Keep"), b.key("Svc\\Keep"));
    // SupersedeLocal: own values/class from the delta only; base subkeys still there.
    let l = m.key("Svc\\Local").expect("local");
    assert_eq!(l.values.len(), 1);
    assert_eq!(l.value("Start").and_then(Value::as_u32), Some(4));
    assert_eq!(l.class.as_deref(), Some(&b"N\0"[..]));
    assert!(l.subkey("Child").is_some());
    // SupersedeTree: the delta subtree replaces the base one; InheritClass takes the base class.
    let t = m.key("Svc\\Tree").expect("tree");
    assert_eq!(t.values.len(), 1);
    assert_eq!(t.value("Start").and_then(Value::as_u32), Some(1));
    assert_eq!(t.class.as_deref(), Some(&b"T\0"[..]));
    let names: Vec<&str> = t.subkeys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["Kept"]);
    let kept = t.subkey("kept").expect("kept");
    assert_eq!(kept.values.len(), 1);
    assert_eq!(kept.value("new").and_then(Value::as_u32), Some(9));
    // Merge: tombstone value removes, delta replaces in place, new appended; newest time;
    // inherit class from base; base spelling of the name.
    let v = m.key("Svc\\Vals").expect("vals");
    assert_eq!(v.name, "Vals");
    let vals: Vec<(&str, Option<u32>)> = v
        .values
        .iter()
        .map(|x| (x.name.as_str(), x.as_u32()))
        .collect();
    assert_eq!(vals, [("b", Some(2)), ("c", Some(30)), ("d", Some(4))]);
    assert_eq!(v.last_written, 200);
    assert_eq!(v.class.as_deref(), Some(&b"V\0"[..]));
    // Keys only in the delta are created; InheritClass with nothing below -> no class.
    let n = m.key("Svc\\New\\Sub").expect("new");
    assert_eq!(
        n.value("").and_then(Value::as_string).as_deref(),
        Some("fresh")
    );
    assert_eq!(n.class, None);
    assert_eq!(m.key("Svc").and_then(|k| k.class.clone()), None);

    // The merged hive writes as an ordinary 1.5 hive that validates.
    let bytes = m.to_bytes().expect("write merged");
    assert!(regf::validate::validate(&bytes).is_empty());
    let back = Hive::parse(&bytes).expect("parse merged");
    assert!(!back.differencing);
    assert_eq!(back.minor_version, 5);
    assert_eq!(back.root, m.root);
}

#[test]
fn deltas_apply_left_to_right() {
    let b = base();
    let mut d1 = Hive::new();
    d1.differencing = true;
    d1.create_key("Svc\\Keep").set_u32("Start", 1);
    let mut d2 = Hive::new();
    d2.differencing = true;
    layered(d2.create_key("Svc\\Keep"), LayerSemantics::Tombstone, false);
    let m = merge_all(&b, &[&d1, &d2]).expect("merge");
    assert!(m.key("Svc\\Keep").is_none());
    let m = merge_all(&b, &[&d2, &d1]).expect("merge");
    let k = m.key("Svc\\Keep").expect("recreated");
    assert_eq!(k.values.len(), 1);
    assert_eq!(k.value("start").map(|v| v.kind), Some(REG_DWORD));
}

#[test]
fn tombstone_root_is_an_error() {
    let mut d = Hive::new();
    d.root.layer = LayerSemantics::Tombstone;
    assert!(merge(&base(), &d).is_err());
}

/// Walks the delta and checks the merged tree shows exactly what the layer bits say.
fn check_against_delta(
    base: Option<&Key>,
    delta: &Key,
    merged: Option<&Key>,
    path: &str,
    in_tree: bool,
) {
    let layer = if in_tree && delta.layer != LayerSemantics::Tombstone {
        LayerSemantics::SupersedeTree
    } else {
        delta.layer
    };
    if layer == LayerSemantics::Tombstone {
        assert!(merged.is_none(), "{path}: tombstoned key still present");
        return;
    }
    let m = merged.unwrap_or_else(|| panic!("{path}: delta key missing from the merge"));
    for v in &delta.values {
        let got = m.value(&v.name);
        if v.tombstone {
            assert!(got.is_none(), "{path}: tombstoned value {} present", v.name);
        } else {
            assert_eq!(got, Some(v), "{path}: value {}", v.name);
        }
    }
    let local = matches!(
        layer,
        LayerSemantics::SupersedeLocal | LayerSemantics::SupersedeTree
    );
    match base {
        Some(b) if !local => {
            for bv in &b.values {
                if delta.value(&bv.name).is_none() {
                    assert_eq!(m.value(&bv.name), Some(bv), "{path}: base value lost");
                }
            }
        }
        _ => assert_eq!(
            m.values.len(),
            delta.values.iter().filter(|v| !v.tombstone).count(),
            "{path}: values other than the delta's"
        ),
    }
    let tree = layer == LayerSemantics::SupersedeTree;
    if let Some(b) = base {
        for bc in &b.subkeys {
            if delta.subkey(&bc.name).is_none() {
                assert_eq!(m.subkey(&bc.name).is_some(), !tree, "{path}\\{}", bc.name);
            }
        }
    }
    for dc in &delta.subkeys {
        let bc = if tree {
            None
        } else {
            base.and_then(|b| b.subkey(&dc.name))
        };
        check_against_delta(
            bc,
            dc,
            m.subkey(&dc.name),
            &format!("{path}\\{}", dc.name),
            tree,
        );
    }
}

#[test]
fn real_delta_onto_real_system_hive() {
    let (Some(base_bytes), Some(delta_bytes)) = (
        load("regipy-SYSTEM-offreg-compacted.xz"),
        load("yarp-System_Delta"),
    ) else {
        return;
    };
    let base = parse_named("SYSTEM", &base_bytes);
    let delta = parse_named("System_Delta", &delta_bytes);
    let m = merge(&base, &delta).expect("merge");
    assert_plain(&m.root, "");
    assert_eq!(m.root.name, base.root.name);
    // The delta's root descriptor is not a copy of a base root's: the merged root keeps the base's.
    eprintln!(
        "root SD: base {} bytes, delta {} bytes",
        base.root.security.as_ref().map_or(0, Vec::len),
        delta.root.security.as_ref().map_or(0, Vec::len)
    );
    assert_ne!(base.root.security, delta.root.security);
    assert_eq!(m.root.security, base.root.security);
    check_against_delta(Some(&base.root), &delta.root, Some(&m.root), "", false);
    // Some concrete facts from the delta (regf.md §1.12 / SOURCES.txt).
    assert!(m.key("ControlSet001\\Services\\XBOXGIP").is_none());
    assert!(m.key("ControlSet001\\Services\\xboxgipsvc").is_some());
    if let Some(k) = m.key("ControlSet001\\Services\\XboxNetApiSvc") {
        assert!(k.value("displayname").is_none());
    }
    let bytes = m.to_bytes().expect("write merged");
    let problems = regf::validate::validate(&bytes);
    assert!(
        problems.is_empty(),
        "{:?}",
        &problems[..problems.len().min(5)]
    );
    let back = Hive::parse(&bytes).expect("reparse");
    assert!(!back.differencing);
    assert_eq!(back.minor_version, 5);
    assert!(tree_diff(&m.root, &back.root, "").is_none());
}
