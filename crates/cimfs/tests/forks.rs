//! A chain of forks with adds, replacements and deletes, each image checked against an
//! in-memory model after the whole chain is written (parents must stay unchanged).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use cimfs::{format, Cim, CimWriter, FileMetadata};

/// Upcased path -> (last component as written, Some(content) for files, None for directories).
type Model = BTreeMap<String, (String, Option<Vec<u8>>)>;

fn key(p: &str) -> String {
    upcase::upcase_str(p)
}

fn last(p: &str) -> String {
    p.rsplit('\\').next().unwrap_or(p).to_string()
}

fn add_dir(w: &mut CimWriter, m: &mut Model, p: &str) {
    let meta = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    };
    w.add(p, &meta).unwrap();
    m.insert(key(p), (last(p), None));
}

fn add_file(w: &mut CimWriter, m: &mut Model, p: &str, data: &[u8]) {
    w.add(
        p,
        &FileMetadata {
            size: data.len() as u64,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(data).unwrap();
    m.insert(key(p), (last(p), Some(data.to_vec())));
}

fn remove(w: &mut CimWriter, m: &mut Model, p: &str) {
    w.remove(p).unwrap();
    let k = key(p);
    let prefix = format!("{k}\\");
    m.retain(|kk, _| *kk != k && !kk.starts_with(&prefix));
}

/// Walks the image and compares every path, kind and content with the model.
fn check(cim_path: &Path, model: &Model) {
    let cim = Cim::open(cim_path).unwrap();
    let mut seen = Model::new();
    let mut stack = vec![(cim.root(), String::new())];
    while let Some((id, path)) = stack.pop() {
        for e in cim.read_dir_id(id).unwrap() {
            let p = if path.is_empty() {
                e.name.clone()
            } else {
                format!("{path}\\{}", e.name)
            };
            let info = cim.file(e.file_id).unwrap();
            if info.is_directory {
                seen.insert(key(&p), (e.name.clone(), None));
                stack.push((e.file_id, p));
            } else {
                let mut d = Vec::new();
                cim.open_id(e.file_id, None)
                    .unwrap()
                    .read_to_end(&mut d)
                    .unwrap();
                seen.insert(key(&p), (e.name.clone(), Some(d)));
            }
        }
    }
    assert_eq!(seen.len(), model.len(), "{}", cim_path.display());
    for (k, (p, c)) in model {
        let (sp, sc) = seen
            .get(k)
            .unwrap_or_else(|| panic!("{}: {p} missing", cim_path.display()));
        assert_eq!(sp, p, "{}", cim_path.display());
        assert!(sc == c, "{}: {p} content differs", cim_path.display());
    }
    let problems = cimfs::verify::verify(cim_path);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn chain_of_24_forks() {
    let t = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let mut w = CimWriter::create(t.path(), "layer0.cim").unwrap();
    add_dir(&mut w, &mut model, "Files");
    add_dir(&mut w, &mut model, "Files\\keep");
    for i in 0..20 {
        add_file(
            &mut w,
            &mut model,
            &format!("Files\\keep\\f{i}.txt"),
            format!("base {i}").as_bytes(),
        );
    }
    add_file(&mut w, &mut model, "Files\\big.bin", &vec![7u8; 50_000]);
    w.commit().unwrap();
    let mut snapshots = vec![("layer0.cim".to_string(), model.clone())];
    for n in 1..=24 {
        let parent = format!("layer{}.cim", n - 1);
        let name = format!("layer{n}.cim");
        // The parent's name is matched case-insensitively, as on Windows.
        let parent = if n % 5 == 0 {
            parent.to_uppercase()
        } else {
            parent
        };
        let mut w = CimWriter::fork(t.path(), &parent, &name).unwrap();
        // Replace one base file (in a different case), delete another, add a directory with files.
        let case_flipped = if n % 2 == 0 {
            format!("FILES\\KEEP\\F{}.TXT", n % 20)
        } else {
            format!("files\\keep\\f{}.txt", n % 20)
        };
        let old = model.keys().find(|k| **k == key(&case_flipped)).cloned();
        if let Some(old) = old {
            model.remove(&old);
        }
        add_file(
            &mut w,
            &mut model,
            &case_flipped,
            format!("layer {n}").as_bytes(),
        );
        let victim = format!("Files\\keep\\f{}.txt", (n + 7) % 20);
        if model.contains_key(&key(&victim)) {
            remove(&mut w, &mut model, &victim);
        }
        add_dir(&mut w, &mut model, &format!("Files\\d{n}"));
        add_file(
            &mut w,
            &mut model,
            &format!("Files\\d{n}\\x.bin"),
            &vec![n as u8; 5000 + n],
        );
        if n > 3 {
            remove(&mut w, &mut model, &format!("Files\\d{}", n - 3));
        }
        w.commit().unwrap();
        snapshots.push((name, model.clone()));
    }
    for (name, m) in &snapshots {
        check(&t.path().join(name), m);
    }
    let top = Cim::open(&t.path().join("layer24.cim")).unwrap();
    assert_eq!(top.parents().len(), 24);
    let files = cimfs::image_files(&t.path().join("layer24.cim")).unwrap();
    assert_eq!(files.parent_regions.len(), 72);
}

#[test]
fn fork_of_missing_parent_fails_cleanly() {
    let t = tempfile::tempdir().unwrap();
    assert!(CimWriter::fork(t.path(), "nope.cim", "c.cim").is_err());
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn missing_parent_region_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let mut m = Model::new();
    let mut w = CimWriter::create(t.path(), "p.cim").unwrap();
    add_file(&mut w, &mut m, "a", b"a");
    w.commit().unwrap();
    CimWriter::fork(t.path(), "p.cim", "c.cim")
        .unwrap()
        .commit()
        .unwrap();
    let pf = cimfs::image_files(&t.path().join("p.cim")).unwrap();
    std::fs::remove_file(&pf.regions[0]).unwrap();
    let e = Cim::open(&t.path().join("c.cim")).err().unwrap();
    assert!(e.to_string().contains("region_"), "{e}");
    assert!(!cimfs::verify::verify(&t.path().join("c.cim")).is_empty());
}
