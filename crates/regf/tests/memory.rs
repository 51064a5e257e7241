//! Memory on deep trees: the reader, the validator and the writer must not keep a key path per
//! nesting level (depth^2 x name length) or per queued key (depth x width); paths are rendered
//! only for an error or a problem, and still name the whole path there.
//!
//! The memory checks run again in a child process of this test binary (one test each, so the
//! peak is that of the work alone) and compare its peak RSS (`VmHWM`) with a limit; they are
//! skipped where there is no /proc. Before the fix the limits were exceeded 3.5 to 8 times.

use std::path::Path;
use std::process::Command;

use regf::format::*;
use regf::{Error, Hive, Key, REG_BINARY};

/// Set in the child process that does a memory check's work.
const CHILD: &str = "REGF_MEMORY_CHILD";

/// A key name as long as Windows allows (255 UTF-16 units), 3 UTF-8 bytes a unit.
fn longest_name() -> String {
    "\u{800}".repeat(MAX_KEY_NAME_CHARS)
}

/// A hive whose root has a chain of `depth` nested keys with [`longest_name`]s; the deepest
/// gets `leaves` subkeys with short names.
fn deep_tree(depth: usize, leaves: usize) -> Hive {
    let mut hive = Hive::new();
    let name = longest_name();
    let mut key = &mut hive.root;
    for _ in 0..depth {
        key = key.create_subkey(&name);
    }
    for i in 0..leaves {
        key.create_subkey(&format!("leaf{i}"));
    }
    hive
}

/// The path of the deepest key of [`deep_tree`].
fn deep_path(depth: usize) -> String {
    vec![longest_name(); depth].join("\\")
}

fn depth_of(hive: &Hive) -> usize {
    let mut key: &Key = &hive.root;
    let mut depth = 0;
    while let Some(next) = key.subkeys.first() {
        key = next;
        depth += 1;
    }
    depth
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A structurally valid hive that Windows would not write: the root and a chain of `depth`
/// keys below it, each named by `units` UTF-16 units (U+0800), each nk cell with its one-entry
/// li leaf in a bin of its own. The reader accepts names of up to 65535 bytes.
fn long_name_chain(depth: usize, units: usize) -> Vec<u8> {
    let name: Vec<u8> = std::iter::repeat_n([0x00, 0x08], units).flatten().collect();
    let nk_size = cell_size(NK_NAME + name.len());
    let li_size = cell_size(8);
    let bin = (HBIN_HEADER_SIZE + nk_size + li_size).div_ceil(HBIN_ALIGN) * HBIN_ALIGN;
    let nk_at = |i: usize| (i * bin + HBIN_HEADER_SIZE) as u32;
    let mut bins = vec![0u8; bin * (depth + 1)];
    for i in 0..=depth {
        let b = &mut bins[i * bin..(i + 1) * bin];
        b[..4].copy_from_slice(b"hbin");
        put32(b, 4, (i * bin) as u32);
        put32(b, 8, bin as u32);
        let nk = HBIN_HEADER_SIZE;
        let li = nk + nk_size;
        put32(b, nk, (nk_size as i32).wrapping_neg() as u32);
        let p = nk + 4;
        b[p..p + 2].copy_from_slice(b"nk");
        let flags = if i == 0 {
            KEY_HIVE_ENTRY | KEY_NO_DELETE
        } else {
            0
        };
        b[p + NK_FLAGS..p + NK_FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
        put32(b, p + NK_PARENT, if i == 0 { NIL } else { nk_at(i - 1) });
        let last = i == depth;
        put32(b, p + NK_SUBKEY_COUNT, u32::from(!last));
        let list = if last { NIL } else { (i * bin + li) as u32 };
        put32(b, p + NK_SUBKEY_LIST, list);
        for field in [
            NK_VOLATILE_SUBKEY_LIST,
            NK_VALUE_LIST,
            NK_SECURITY,
            NK_CLASS,
        ] {
            put32(b, p + field, NIL);
        }
        b[p + NK_NAME_LEN..p + NK_NAME_LEN + 2].copy_from_slice(&(name.len() as u16).to_le_bytes());
        b[p + NK_NAME..p + NK_NAME + name.len()].copy_from_slice(&name);
        put32(b, li, (li_size as i32).wrapping_neg() as u32);
        b[li + 4..li + 6].copy_from_slice(b"li");
        b[li + 6..li + 8].copy_from_slice(&1u16.to_le_bytes());
        put32(b, li + 8, nk_at(i + 1));
        let free = li + li_size;
        if free < bin {
            put32(b, free, (bin - free) as u32);
        }
    }
    let mut out = vec![0u8; BASE_BLOCK_SIZE];
    out[..4].copy_from_slice(b"regf");
    for (at, v) in [
        (BB_SEQ1, 1),
        (BB_SEQ2, 1),
        (BB_MAJOR, 1),
        (BB_MINOR, 5),
        (BB_FORMAT, 1),
        (BB_ROOT, nk_at(0)),
        (BB_BINS_SIZE, bins.len() as u32),
        (BB_CLUSTERING, 1),
    ] {
        put32(&mut out, at, v);
    }
    let sum = checksum(&out);
    put32(&mut out, BB_CHECKSUM, sum);
    out.extend_from_slice(&bins);
    out
}

/// Peak resident set size of this process in bytes, from /proc/self/status.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// Runs `f` on a thread with room for 512 levels of recursion in an unoptimized build too
/// (the reader needs about 3.5 MiB there, more than a test thread's 2 MiB; 0.8 MiB optimized).
fn with_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Runs `work` in a fresh process (this binary, only the test `test`) and checks that the
/// process's peak RSS stays below what `work` returns (bytes). Inside that process it does
/// the work; outside it starts it and waits for its verdict.
fn in_child(test: &str, work: impl FnOnce() -> u64 + Send + 'static) {
    if std::env::var_os(CHILD).is_some() {
        let limit = with_stack(work);
        let peak = peak_rss();
        println!(
            "{test}: peak RSS {} KiB, limit {} KiB",
            peak >> 10,
            limit >> 10
        );
        assert!(
            peak < limit,
            "peak RSS {} KiB, limit {} KiB",
            peak >> 10,
            limit >> 10
        );
        return;
    }
    if !Path::new("/proc/self/status").exists() {
        eprintln!("skipping {test}: no /proc/self/status");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the child test process");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "child process failed:\n{text}");
    assert!(
        text.contains("peak RSS"),
        "child did not run {test}:\n{text}"
    );
}

/// What a test process holds besides the work (binary, harness, allocator slack).
const BASELINE: u64 = 24 << 20;

#[test]
fn a_deep_tree_parses_without_a_path_per_level() {
    // 512 levels of 255-unit names: a 0.3 MB hive whose paths held ~200 MB at once.
    in_child("a_deep_tree_parses_without_a_path_per_level", || {
        let bytes = deep_tree(MAX_DEPTH, 0).to_bytes().expect("write");
        let hive = Hive::parse(&bytes).expect("parse");
        assert_eq!(depth_of(&hive), MAX_DEPTH);
        BASELINE + 16 * bytes.len() as u64
    });
}

#[test]
fn a_deep_tree_validates_without_a_path_per_level() {
    in_child("a_deep_tree_validates_without_a_path_per_level", || {
        let bytes = deep_tree(MAX_DEPTH, 0).to_bytes().expect("write");
        assert_eq!(regf::validate::validate(&bytes), []);
        BASELINE + 16 * bytes.len() as u64
    });
}

#[test]
fn a_deep_wide_tree_writes_without_a_path_per_queued_key() {
    // 1000 keys queued at depth 301, each of whose paths was 230 KB.
    in_child(
        "a_deep_wide_tree_writes_without_a_path_per_queued_key",
        || {
            let hive = deep_tree(300, 1000);
            let bytes = hive.to_bytes().expect("write");
            assert_eq!(hive.key_count(), 1 + 300 + 1000);
            BASELINE + 16 * bytes.len() as u64
        },
    );
}

#[test]
fn long_hostile_names_parse_within_the_budget() {
    // The audit's reproducer: 64 levels of 32767-unit names, a 4.5 MB file that peaked at
    // 406 MB. The README promises 16 x file size + 16 MiB.
    in_child("long_hostile_names_parse_within_the_budget", || {
        let bytes = long_name_chain(64, 32767);
        let hive = Hive::parse(&bytes).expect("parse");
        assert_eq!(depth_of(&hive), 64);
        assert!(!regf::validate::validate(&bytes).is_empty());
        BASELINE + 16 * bytes.len() as u64 + (16 << 20)
    });
}

/// Offsets (relative to the bins) of the nk cells of the chain of [`deep_tree`], root first.
fn chain_offsets(bytes: &[u8]) -> Vec<usize> {
    let bins = &bytes[BASE_BLOCK_SIZE..];
    let mut out = Vec::new();
    let mut nk = le_u32(bytes, BB_ROOT).expect("root") as usize;
    loop {
        out.push(nk);
        let p = &bins[nk + 4..];
        if le_u32(p, NK_SUBKEY_COUNT) == Some(0) {
            return out;
        }
        let leaf = le_u32(p, NK_SUBKEY_LIST).expect("subkey list") as usize;
        nk = le_u32(bins, leaf + 8).expect("first entry") as usize;
    }
}

#[test]
fn validation_problems_name_deep_keys_by_their_last_bytes() {
    with_stack(validation_problems_deep_down);
}

fn validation_problems_deep_down() {
    // One problem per key of the chain: full paths would be 196 KB each on average.
    let mut bytes = deep_tree(MAX_DEPTH, 0).to_bytes().expect("write");
    let chain = chain_offsets(&bytes);
    assert_eq!(chain.len(), MAX_DEPTH + 1);
    for &nk in &chain {
        put32(&mut bytes, BASE_BLOCK_SIZE + nk + 4 + NK_MAX_VALUE_DATA, 7);
    }
    let problems = regf::validate::validate(&bytes);
    assert_eq!(problems.len(), chain.len(), "{problems:?}");
    let limit = regf::validate::PATH_LIMIT;
    for (depth, p) in problems.iter().enumerate() {
        assert_eq!(p.offset, Some(chain[depth] as u32));
        let full = deep_path(depth);
        let key = p.key.as_deref().expect("a problem with a key");
        if full.len() <= limit {
            assert_eq!(key, full);
        } else {
            let tail = key.strip_prefix('…').expect("shortened path starts with …");
            assert!(tail.len() <= limit && full.ends_with(tail), "depth {depth}");
            assert!(
                tail.len() > limit - 4,
                "depth {depth}: {} bytes kept",
                tail.len()
            );
        }
    }
}

#[test]
fn errors_deep_down_name_the_whole_path() {
    with_stack(errors_deep_down);
}

fn errors_deep_down() {
    let bytes = deep_tree(MAX_DEPTH, 0).to_bytes().expect("write");
    let chain = chain_offsets(&bytes);
    let deepest = *chain.last().expect("chain");

    // A damaged value list in the deepest key names that key.
    let mut bad = bytes.clone();
    let p = BASE_BLOCK_SIZE + deepest + 4;
    put32(&mut bad, p + NK_VALUE_COUNT, 1);
    put32(&mut bad, p + NK_VALUE_LIST, 3);
    match Hive::parse(&bad) {
        Err(Error::Corrupt { key, offset: 3, .. }) => assert!(key == deep_path(MAX_DEPTH)),
        other => panic!("expected a corrupt value list, got {:?}", other.map(|_| ())),
    }
    let lenient = Hive::parse_lenient(&bad).expect("lenient");
    assert_eq!(lenient.notes.len(), 1);
    assert!(lenient.notes[0].contains(&deep_path(MAX_DEPTH)));

    // A damaged nk names the key whose list reaches it.
    let mut bad = bytes.clone();
    bad[BASE_BLOCK_SIZE + deepest + 4] = b'x';
    match Hive::parse(&bad) {
        Err(Error::Corrupt { key, .. }) => assert!(key == deep_path(MAX_DEPTH - 1)),
        other => panic!("expected a corrupt key node, got {:?}", other.map(|_| ())),
    }

    // Data of a value of the deepest key: the value's name follows the key path.
    let mut hive = deep_tree(MAX_DEPTH, 0);
    let mut key = &mut hive.root;
    while !key.subkeys.is_empty() {
        key = &mut key.subkeys[0];
    }
    key.set_value("v", REG_BINARY, vec![1; 100]);
    let mut bad = hive.to_bytes().expect("write");
    let deepest = *chain_offsets(&bad).last().expect("chain");
    let list = le_u32(&bad, BASE_BLOCK_SIZE + deepest + 4 + NK_VALUE_LIST).expect("list");
    let vk = le_u32(&bad, BASE_BLOCK_SIZE + list as usize + 4).expect("vk") as usize;
    put32(&mut bad, BASE_BLOCK_SIZE + vk + 4 + VK_DATA_OFFSET, NIL);
    match Hive::parse(&bad) {
        Err(Error::Corrupt { key, what, .. }) => {
            assert_eq!(what, "value data");
            assert!(key == format!("{}\\v", deep_path(MAX_DEPTH)));
        }
        other => panic!("expected corrupt value data, got {:?}", other.map(|_| ())),
    }

    // The writer names the key it cannot write.
    let mut hive = deep_tree(MAX_DEPTH, 0);
    let mut key = &mut hive.root;
    while !key.subkeys.is_empty() {
        key = &mut key.subkeys[0];
    }
    key.subkeys.push(Key::new("x"));
    key.subkeys.push(Key::new("X"));
    match hive.to_bytes() {
        Err(Error::Invalid { key, reason }) => {
            assert!(key == deep_path(MAX_DEPTH), "{reason}");
            assert!(reason.contains("two subkeys"), "{reason}");
        }
        other => panic!("expected a duplicate subkey, got {:?}", other.map(|_| ())),
    }
    key_too_deep_names_it();
}

/// One level more than Windows allows: the writer's error names the key 513 levels down.
fn key_too_deep_names_it() {
    let mut hive = deep_tree(MAX_DEPTH, 0);
    let mut key = &mut hive.root;
    while !key.subkeys.is_empty() {
        key = &mut key.subkeys[0];
    }
    key.create_subkey("z");
    match hive.to_bytes() {
        Err(Error::Invalid { key, reason }) => {
            assert!(key == format!("{}\\z", deep_path(MAX_DEPTH)), "{reason}");
            assert!(reason.contains("deeper than"), "{reason}");
        }
        other => panic!("expected too deep, got {:?}", other.map(|_| ())),
    }
}
