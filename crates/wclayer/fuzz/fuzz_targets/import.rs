//! Fuzz target: `import_layer` on hostile layer tars. Bit 0 of the first byte picks a base
//! import or a child import on top of a base layer imported at start-up; the rest is the tar
//! (plain, gzip or zstd). Everything lives in /tmp/fuzz-wclayer-<pid>: the layers under
//! `snapshots/`, and a sentinel folder `outside/` next to them. After each run the whole folder
//! must look exactly as before it (names, kinds, file sizes and modification times): a failed import
//! removes what it wrote, a successful one leaves a CIM that verifies and is then destroyed
//! here, and nothing is ever written outside the layer folder and its `cim-layers` files.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use wclayer::{destroy_layer, import_layer, layer_disk_usage, ImportOptions};

struct Setup {
    root: PathBuf,
    base: PathBuf,
    layer: PathBuf,
    before: Listing,
}

/// Every path under a folder (links not followed) with its kind, size and mtime.
type Listing = BTreeMap<PathBuf, (bool, u64, Option<SystemTime>)>;

fn listing(root: &Path) -> Listing {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                stack.push(p.clone());
            }
            // A folder's own size and mtime change whenever a layer comes and goes in it.
            let v = if md.is_dir() {
                (true, 0, None)
            } else {
                (false, md.len(), md.modified().ok())
            };
            out.insert(p, v);
        }
    }
    out
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let root = PathBuf::from(format!("/tmp/fuzz-wclayer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("outside")).expect("outside dir");
        fs::write(root.join("outside").join("sentinel"), b"do not touch").expect("sentinel");
        let snapshots = root.join("snapshots");
        let base = snapshots.join("1");
        let opts = ImportOptions {
            layer: base.clone(),
            ..Default::default()
        };
        import_layer(Cursor::new(wclayer_fuzz::base_layer()), &opts, &mut |_| {})
            .expect("the start-up base layer imports");
        let before = listing(&root);
        Setup {
            layer: snapshots.join("2"),
            root,
            base,
            before,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let Some((&mode, tar)) = data.split_first() else {
        return;
    };
    let opts = ImportOptions {
        layer: s.layer.clone(),
        parents: if mode & 1 == 1 {
            vec![s.base.clone()]
        } else {
            Vec::new()
        },
        host_layer_path: None,
        skip_utility_vm_processing: false,
        uncompressed_digest: None,
    };
    match import_layer(Cursor::new(tar), &opts, &mut |_| {}) {
        Ok(summary) => {
            assert!(summary.cim_path.starts_with(s.root.join("snapshots")));
            let problems = cimfs::verify::verify(&summary.cim_path);
            assert!(problems.is_empty(), "imported CIM: {problems:?}");
            layer_disk_usage(&s.layer).expect("disk usage of an imported layer");
            destroy_layer(&s.layer).expect("destroy the imported layer");
            fs::remove_dir_all(&s.layer).expect("remove the layer folder");
        }
        Err(_) => assert!(!s.layer.exists(), "a failed import left its layer folder"),
    }
    let after = listing(&s.root);
    if after != s.before {
        let added: Vec<_> = after
            .keys()
            .filter(|p| !s.before.contains_key(*p))
            .collect();
        let changed: Vec<_> = s
            .before
            .iter()
            .filter(|(p, v)| after.get(*p) != Some(v))
            .map(|(p, _)| p)
            .collect();
        panic!(
            "the import changed the fuzz folder: added {added:?}, changed or removed {changed:?}"
        );
    }
});
