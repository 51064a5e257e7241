//! Every real hive in shared/testdata parses, survives parse -> write -> parse unchanged,
//! and what we write passes the validator.

mod common;

use common::*;
use regf::Hive;

#[test]
fn real_hives_parse_and_round_trip() {
    for name in GOOD_HIVES {
        let Some(bytes) = load(name) else { continue };
        let hive = parse_named(name, &bytes);
        let written = hive
            .to_bytes()
            .unwrap_or_else(|e| panic!("{name}: write: {e}"));
        let problems = regf::validate::validate(&written);
        assert!(
            problems.is_empty(),
            "{name}: written hive fails validation: {:?}",
            &problems[..problems.len().min(10)]
        );
        let original_problems = regf::validate::validate(&bytes);
        eprintln!(
            "{name}: original has {} validator findings, e.g. {:?}",
            original_problems.len(),
            original_problems.first().map(ToString::to_string)
        );
        // The source format is kept (1.3 stays 1.3: lf leaves, no db).
        assert_eq!(
            minor_of(&written),
            minor_of(&bytes),
            "{name}: format version"
        );
        let again = Hive::parse(&written).unwrap_or_else(|e| panic!("{name}: reparse: {e}"));
        assert!(again.notes.is_empty(), "{name}: {:?}", again.notes);
        if let Some(d) = tree_diff(&hive.root, &again.root, "") {
            panic!("{name}: round trip changed the tree: {d}");
        }
        eprintln!(
            "{name}: {} keys, {} -> {} bytes, notes {:?}",
            hive.key_count(),
            bytes.len(),
            written.len(),
            hive.notes
        );
    }
}

#[test]
fn lookups_are_case_insensitive_with_windows_upcase() {
    let Some(bytes) = load("yarp-UnicodeHive") else {
        return;
    };
    let hive = parse_named("yarp-UnicodeHive", &bytes);
    let k = hive
        .key("ПриВет\\КлюЧ")
        .expect("Cyrillic key found case-insensitively");
    assert_eq!(k.name, "Ключ");
    assert_eq!(hive.minor_version, 3);
}

#[test]
fn big_data_values_are_reassembled() {
    let Some(bytes) = load("yarp-BigDataHive") else {
        return;
    };
    let hive = parse_named("yarp-BigDataHive", &bytes);
    let k = hive.key("key_with_bigdata").expect("key");
    let mut sizes: Vec<usize> = k.values.iter().map(|v| v.data.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [16345, 81725]);
}

#[test]
fn differencing_hive_layer_bits_are_read() {
    let Some(bytes) = load("yarp-System_Delta") else {
        return;
    };
    let hive = parse_named("yarp-System_Delta", &bytes);
    assert!(hive.differencing);
    assert_eq!(hive.minor_version, 6);
    let gone = hive
        .key("ControlSet001\\Services\\XBOXGIP")
        .expect("tombstone key");
    assert_eq!(gone.layer, regf::LayerSemantics::Tombstone);
    let tree = hive
        .key("ControlSet001\\Services\\xboxgipsvc")
        .expect("supersede-tree key");
    assert_eq!(tree.layer, regf::LayerSemantics::SupersedeTree);
    assert!(tree.inherit_class);
    let v = hive
        .key("ControlSet001\\Services\\XboxNetApiSvc")
        .and_then(|k| k.value("displayname"))
        .expect("tombstone value");
    assert!(v.tombstone);
}
