//! Fuzz target: the validator and the hive parser (strict and lenient) must never panic or allocate without
//! bound; whatever parses must write, and what we write must parse to the same key count.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = regf::validate::validate(data);
    for hive in [regf::Hive::parse(data), regf::Hive::parse_lenient(data)]
        .into_iter()
        .flatten()
    {
        let mut sink = Vec::new();
        let _ = regf::dump(&hive, &mut sink);
        if let Ok(bytes) = hive.to_bytes() {
            assert!(regf::validate::validate(&bytes).is_empty());
            let again = regf::Hive::parse(&bytes).expect("our own output parses");
            assert_eq!(again.key_count(), hive.key_count());
        }
    }
});
