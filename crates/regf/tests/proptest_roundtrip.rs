//! Property: any tree the model can hold (unique names per parent) writes, in any format
//! version 1.3-1.6, to a hive that the validator accepts and that parses back to the same
//! tree in the same version.

mod common;

use common::tree_diff;
use proptest::prelude::*;
use regf::{Hive, Key, LayerSemantics, Value};

fn value() -> impl Strategy<Value = Value> {
    let data = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..9),
        2 => proptest::collection::vec(any::<u8>(), 9..300),
        1 => (16_340usize..16_350, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => (30_000usize..50_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ];
    ("[a-zA-Z0-9 _äÄßΩω\u{10410}]{0,10}", any::<u32>(), data).prop_map(|(name, kind, data)| Value {
        name,
        kind,
        data,
        tombstone: false,
    })
}

fn leaf() -> impl Strategy<Value = Key> {
    (
        "[a-zA-Z0-9 _.äÄßΩωЖж\u{FF21}\u{FF41}\u{10410}\u{10438}{}-]{1,12}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 20..60)),
        any::<u64>(),
        proptest::collection::vec(value(), 0..5),
        any::<u16>(),
        any::<u32>(),
    )
        .prop_map(
            |(name, class, security, last_written, values, user_flags, work_var)| {
                let mut k = Key::new(&name);
                k.class = class;
                k.security = security;
                k.last_written = last_written;
                k.user_flags = user_flags;
                k.work_var = work_var;
                for v in values {
                    if k.value(&v.name).is_none() {
                        k.values.push(v);
                    }
                }
                k
            },
        )
}

fn tree() -> impl Strategy<Value = Key> {
    leaf().prop_recursive(4, 64, 12, |inner| {
        (leaf(), proptest::collection::vec(inner, 0..12)).prop_map(|(mut k, kids)| {
            for c in kids {
                if k.subkey(&c.name).is_none() {
                    k.subkeys.push(c);
                }
            }
            k
        })
    })
}

/// Fill in what the writer supplies: inherited descriptors and the root's.
fn resolve_security(k: &mut Key, inherited: &[u8]) {
    let sd = k.security.get_or_insert_with(|| inherited.to_vec()).clone();
    for c in &mut k.subkeys {
        resolve_security(c, &sd);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn write_then_parse_gives_the_same_tree(
        root in tree(),
        layered in any::<bool>(),
        minor in 3u32..=6,
    ) {
        let mut hive = Hive::new();
        hive.root = root;
        hive.minor_version = minor;
        if layered {
            hive.differencing = true;
            if let Some(k) = hive.root.subkeys.first_mut() {
                k.layer = LayerSemantics::SupersedeTree;
                k.inherit_class = true;
            }
            if let Some(v) = hive.root.values.first_mut() {
                v.tombstone = true;
            }
        }
        let bytes = hive.to_bytes().expect("write");
        let problems = regf::validate::validate(&bytes);
        prop_assert!(problems.is_empty(), "{:?}", problems);
        let back = Hive::parse(&bytes).expect("parse");
        // A differencing hive is always 1.6; anything else keeps its version.
        let layered = hive.differencing || hive.has_layer_bits();
        prop_assert_eq!(back.minor_version, if layered { 6 } else { minor });
        let mut expected = hive.root.clone();
        resolve_security(&mut expected, &regf::DEFAULT_ROOT_SECURITY);
        prop_assert_eq!(tree_diff(&expected, &back.root, ""), None);
    }
}
