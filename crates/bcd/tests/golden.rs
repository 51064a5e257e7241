//! Golden bytes of every device element the CimFS boot edits write. The VMBus, CimFS and
//! composite records are best guesses (src/guessed.rs, bcd.md §7): when a real bcdedit run
//! settles them, update the constants there and the hex strings here — nothing else.

use bcd::{
    DeviceElement, BOOT_CONTAINER_ID, CIMFS_OPTIONS, COMPOSITE_OPTIONS, COMPOSITE_SYNTAX_NUMBER,
    VMBFS_BOOT_INSTANCE,
};
use uuid::uuid;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn golden(s: &str) -> String {
    s.split_whitespace().collect()
}

/// `cimfsparentdevice vmbus={c63c9bdf-5fa5-4208-b03f-6b458b365592}` (bcd.md §4.6; [L]).
const VMBUS: &str = "
    00000000000000000000000000000000
    07000000 00000000 48000000 00000000
    c3c176c376d2d24890a9c04748072c60
    df9b3cc6a55f0842b03f6b458b365592
    000000000000000000000000000000000000000000000000";

/// `secondarydevice cimfs={b890454c-...},{763e9fea-...}` (bcd.md §4.7; [L]/[M]).
const CIMFS: &str = "
    ea9f3e762d504f43aad95fabe9c91a7b
    0b000000 00000000 30000000 00000000
    02000000 00000000 00000000 00000000
    4c4590b8de80984ea7ab56b74b4fbd0c";

/// `device|osdevice composite=0,{e1787220-...}` (bcd.md §4.8; [?]/[L]).
const COMPOSITE: &str = "
    207278e17fd1e749977ad8fe4c8537e2
    0a000000 00000000 2c000000 00000000
    00000000000000000000000000000000
    00000000 00000000 00000000";

/// `primarydevice gpt_partition={disk};{partition}` (bcd.md §4.4; [H] layout).
const GPT_PARTITION: &str = "
    00000000000000000000000000000000
    06000000 00000000 48000000 00000000
    efcdab89674523010123456789abcdef
    00000000 00000000
    33221100554477668899aabbccddeeff
    00000000000000000000000000000000";

#[test]
fn vmbus_parent_device() {
    let b = DeviceElement::vmbus(VMBFS_BOOT_INSTANCE).encode();
    assert_eq!(hex(&b), golden(VMBUS));
    assert_eq!(b.len(), 88);
}

#[test]
fn cimfs_secondary_device() {
    let b = DeviceElement::cimfs(BOOT_CONTAINER_ID, CIMFS_OPTIONS).encode();
    assert_eq!(hex(&b), golden(CIMFS));
    assert_eq!(b.len(), 64);
}

#[test]
fn composite_boot_device() {
    let b = DeviceElement::composite(COMPOSITE_SYNTAX_NUMBER, COMPOSITE_OPTIONS).encode();
    assert_eq!(hex(&b), golden(COMPOSITE));
    assert_eq!(b.len(), 60);
}

#[test]
fn gpt_partition_primary_device() {
    let disk = uuid!("00112233-4455-6677-8899-aabbccddeeff");
    let part = uuid!("89abcdef-4567-0123-0123-456789abcdef");
    let b = DeviceElement::gpt_partition(disk, part).encode();
    assert_eq!(hex(&b), golden(GPT_PARTITION));
    assert_eq!(b.len(), 88);
}

#[test]
fn golden_bytes_decode_back() {
    for g in [VMBUS, CIMFS, COMPOSITE, GPT_PARTITION] {
        let s = golden(g);
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        let d = DeviceElement::decode(&bytes).unwrap();
        assert_eq!(d.encode(), bytes);
    }
}
