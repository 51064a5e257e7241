//! Property test: random operation sequences (dirs, deep directory chains, files of 0 bytes to
//! 20 MiB, Unicode and case-colliding names, ADS, hard links, removes, SD/EA/reparse blobs), in a chain of up to four
//! images (a base and forks), are applied to the writer and to an in-memory model; every image
//! must read back exactly as the model was when it was committed.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use cimfs::{format, Cim, CimWriter, FileId, FileMetadata};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Meta {
    attributes: u32,
    times: [u64; 4],
    sd: Vec<u8>,
    ea: Vec<u8>,
    reparse: Vec<u8>,
}

#[derive(Clone, Debug)]
enum Name {
    Fresh(String),
    /// The name of an existing child of the same parent with its case flipped.
    CaseOf(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Dir {
        parent: usize,
        name: Name,
        meta: Meta,
    },
    File {
        parent: usize,
        name: Name,
        size: usize,
        seed: u8,
        meta: Meta,
    },
    Ads {
        file: usize,
        name: String,
        size: usize,
        seed: u8,
    },
    Link {
        parent: usize,
        name: Name,
        file: usize,
    },
    Remove {
        target: usize,
    },
    /// A chain of `names.len()` nested directories under an existing one, with a file at the bottom.
    Nest {
        parent: usize,
        names: Vec<String>,
        size: usize,
        seed: u8,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    Dir(BTreeMap<Vec<u16>, (String, usize)>),
    File { size: usize, seed: u8 },
}

#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    meta: Meta,
    ads: BTreeMap<Vec<u16>, (String, usize, u8)>,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: Vec<Node>,
}

fn key(s: &str) -> Vec<u16> {
    s.encode_utf16().map(upcase::upcase).collect()
}

fn byte_at(seed: u8, i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ seed
}

fn fill(seed: u8, offset: usize, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(seed, offset + k);
    }
}

fn flip_case(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_lowercase() {
                c.to_uppercase().collect::<Vec<_>>()
            } else {
                c.to_lowercase().collect::<Vec<_>>()
            }
        })
        .collect()
}

impl Model {
    fn new() -> Model {
        let meta = Meta {
            attributes: format::FILE_ATTRIBUTE_DIRECTORY,
            times: [0; 4],
            sd: vec![],
            ea: vec![],
            reparse: vec![],
        };
        Model {
            nodes: vec![Node {
                kind: Kind::Dir(BTreeMap::new()),
                meta,
                ads: BTreeMap::new(),
            }],
        }
    }

    /// (path, node, parent node) of every reachable entry, depth first in link-table order.
    fn entries(&self) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, String::new())];
        while let Some((n, path)) = stack.pop() {
            if let Kind::Dir(children) = &self.nodes[n].kind {
                for (name, child) in children.values().rev() {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}\\{name}")
                    };
                    out.push((p.clone(), *child, n));
                    stack.push((*child, p));
                }
            }
        }
        out
    }

    fn dirs(&self) -> Vec<(String, usize)> {
        let mut v = vec![(String::new(), 0)];
        v.extend(
            self.entries()
                .into_iter()
                .filter(|e| matches!(self.nodes[e.1].kind, Kind::Dir(_)))
                .map(|e| (e.0, e.1)),
        );
        v
    }

    fn files(&self) -> Vec<(String, usize)> {
        self.entries()
            .into_iter()
            .filter(|e| matches!(self.nodes[e.1].kind, Kind::File { .. }))
            .map(|e| (e.0, e.1))
            .collect()
    }

    fn children(&mut self, n: usize) -> &mut BTreeMap<Vec<u16>, (String, usize)> {
        match &mut self.nodes[n].kind {
            Kind::Dir(c) => c,
            Kind::File { .. } => unreachable!("model parents are directories"),
        }
    }

    fn resolve_name(&self, parent: usize, name: &Name) -> String {
        match name {
            Name::Fresh(s) => s.clone(),
            Name::CaseOf(i) => match &self.nodes[parent].kind {
                Kind::Dir(c) if !c.is_empty() => flip_case(
                    &c.values()
                        .nth(i % c.len())
                        .map(|v| v.0.clone())
                        .unwrap_or_default(),
                ),
                _ => "x".into(),
            },
        }
    }
}

fn to_meta(m: &Meta, size: u64) -> FileMetadata {
    FileMetadata {
        attributes: m.attributes,
        size,
        creation_time: m.times[0],
        last_write_time: m.times[1],
        change_time: m.times[2],
        last_access_time: m.times[3],
        security_descriptor: m.sd.clone(),
        extended_attributes: m.ea.clone(),
        reparse_data: m.reparse.clone(),
    }
}

fn write_stream(w: &mut CimWriter, size: usize, seed: u8) {
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() - (off % 7));
        fill(seed, off, &mut buf[..n]);
        w.write(&buf[..n]).unwrap();
        off += n;
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}\\{name}")
    }
}

fn apply(w: &mut CimWriter, m: &mut Model, op: &Op) {
    match op {
        Op::Dir { parent, name, meta } => {
            let dirs = m.dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let name = m.resolve_name(dnode, name);
            let mut meta = meta.clone();
            meta.attributes |= format::FILE_ATTRIBUTE_DIRECTORY;
            w.add(&join(&dpath, &name), &to_meta(&meta, 0)).unwrap();
            let k = key(&name);
            let existing = m.children(dnode).get(&k).map(|e| e.1);
            match existing {
                Some(old) if matches!(m.nodes[old].kind, Kind::Dir(_)) => {
                    m.nodes[old].meta = meta;
                    m.children(dnode).insert(k, (name, old));
                }
                _ => {
                    m.nodes.push(Node {
                        kind: Kind::Dir(BTreeMap::new()),
                        meta,
                        ads: BTreeMap::new(),
                    });
                    let n = m.nodes.len() - 1;
                    m.children(dnode).insert(k, (name, n));
                }
            }
        }
        Op::File {
            parent,
            name,
            size,
            seed,
            meta,
        } => {
            let dirs = m.dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let name = m.resolve_name(dnode, name);
            let mut meta = meta.clone();
            meta.attributes &= !format::FILE_ATTRIBUTE_DIRECTORY;
            w.add(&join(&dpath, &name), &to_meta(&meta, *size as u64))
                .unwrap();
            write_stream(w, *size, *seed);
            m.nodes.push(Node {
                kind: Kind::File {
                    size: *size,
                    seed: *seed,
                },
                meta,
                ads: BTreeMap::new(),
            });
            let n = m.nodes.len() - 1;
            m.children(dnode).insert(key(&name), (name, n));
        }
        Op::Ads {
            file,
            name,
            size,
            seed,
        } => {
            let files = m.files();
            if files.is_empty() {
                return;
            }
            let (fpath, fnode) = files[file % files.len()].clone();
            w.add_alternate_stream(&format!("{fpath}:{name}:$DATA"), *size as u64)
                .unwrap();
            write_stream(w, *size, *seed);
            m.nodes[fnode]
                .ads
                .insert(key(name), (name.clone(), *size, *seed));
        }
        Op::Link { parent, name, file } => {
            let files = m.files();
            if files.is_empty() {
                return;
            }
            let (fpath, fnode) = files[file % files.len()].clone();
            let dirs = m.dirs();
            let (dpath, dnode) = dirs[parent % dirs.len()].clone();
            let name = m.resolve_name(dnode, name);
            w.add_link(&join(&dpath, &name), &fpath).unwrap();
            let k = key(&name);
            if m.children(dnode).get(&k).map(|e| e.1) != Some(fnode) {
                m.children(dnode).insert(k, (name, fnode));
            }
        }
        Op::Nest {
            parent,
            names,
            size,
            seed,
        } => {
            let dirs = m.dirs();
            let (mut dpath, mut dnode) = dirs[parent % dirs.len()].clone();
            let dir_meta = Meta {
                attributes: format::FILE_ATTRIBUTE_DIRECTORY,
                times: [7; 4],
                sd: vec![],
                ea: vec![],
                reparse: vec![],
            };
            for name in names {
                let path = join(&dpath, name);
                // Stop where the path would pass the 32,767-unit limit the writer enforces.
                if path.encode_utf16().count() + 300 > format::MAX_PATH_UNITS {
                    break;
                }
                let k = key(name);
                let next = match m.children(dnode).get(&k).map(|e| e.1) {
                    Some(existing) if matches!(m.nodes[existing].kind, Kind::Dir(_)) => {
                        // Re-adding an existing directory keeps its children, updates its metadata.
                        w.add(&path, &to_meta(&dir_meta, 0)).unwrap();
                        m.nodes[existing].meta = dir_meta.clone();
                        m.children(dnode).insert(k, (name.clone(), existing));
                        existing
                    }
                    _ => {
                        w.add(&path, &to_meta(&dir_meta, 0)).unwrap();
                        m.nodes.push(Node {
                            kind: Kind::Dir(BTreeMap::new()),
                            meta: dir_meta.clone(),
                            ads: BTreeMap::new(),
                        });
                        let n = m.nodes.len() - 1;
                        m.children(dnode).insert(k, (name.clone(), n));
                        n
                    }
                };
                dpath = path;
                dnode = next;
            }
            let file_meta = Meta {
                attributes: 0,
                ..dir_meta
            };
            w.add(&join(&dpath, "leaf"), &to_meta(&file_meta, *size as u64))
                .unwrap();
            write_stream(w, *size, *seed);
            m.nodes.push(Node {
                kind: Kind::File {
                    size: *size,
                    seed: *seed,
                },
                meta: file_meta,
                ads: BTreeMap::new(),
            });
            let n = m.nodes.len() - 1;
            m.children(dnode).insert(key("leaf"), ("leaf".into(), n));
        }
        Op::Remove { target } => {
            let entries = m.entries();
            if entries.is_empty() {
                return;
            }
            let (path, _, parent) = entries[target % entries.len()].clone();
            w.remove(&path).unwrap();
            let last = path.rsplit('\\').next().unwrap_or(&path).to_string();
            m.children(parent).remove(&key(&last));
        }
    }
}

fn read_all(cim: &Cim, id: FileId, stream: Option<&str>) -> Vec<u8> {
    let mut v = Vec::new();
    cim.open_id(id, stream)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

fn expect_content(got: &[u8], size: usize, seed: u8) -> bool {
    got.len() == size && got.iter().enumerate().all(|(i, &b)| b == byte_at(seed, i))
}

fn check(cim_path: &Path, m: &Model) -> Result<(), TestCaseError> {
    let cim = Cim::open(cim_path).unwrap();
    let mut ids: HashMap<usize, FileId> = HashMap::new();
    let mut by_id: HashMap<FileId, usize> = HashMap::new();
    let mut stack = vec![(0usize, cim.root())];
    while let Some((n, id)) = stack.pop() {
        let Kind::Dir(children) = &m.nodes[n].kind else {
            unreachable!()
        };
        let listed = cim.read_dir_id(id).unwrap();
        let want: Vec<&String> = children.values().map(|v| &v.0).collect();
        let got: Vec<&String> = listed.iter().map(|e| &e.name).collect();
        prop_assert_eq!(got, want);
        for ((_, (name, child)), e) in children.iter().zip(listed.iter()) {
            // Hard links: one model node <-> one file id.
            prop_assert_eq!(
                *ids.entry(*child).or_insert(e.file_id),
                e.file_id,
                "{}",
                name
            );
            prop_assert_eq!(
                *by_id.entry(e.file_id).or_insert(*child),
                *child,
                "{}",
                name
            );
            let node = &m.nodes[*child];
            let info = cim.file(e.file_id).unwrap();
            let mm = &node.meta;
            let mut attrs = mm.attributes
                & (format::REPRESENTABLE_ATTRIBUTES & !format::FILE_ATTRIBUTE_REPARSE_POINT);
            if !mm.reparse.is_empty() {
                attrs |= format::FILE_ATTRIBUTE_REPARSE_POINT;
            }
            prop_assert_eq!(info.attributes, attrs, "{}", name);
            prop_assert_eq!(
                [
                    info.creation_time,
                    info.last_write_time,
                    info.change_time,
                    info.last_access_time
                ],
                mm.times
            );
            let sd = if mm.sd.is_empty() {
                format::NULL_DACL_SD.to_vec()
            } else {
                mm.sd.clone()
            };
            prop_assert_eq!(&info.security_descriptor, &sd);
            prop_assert_eq!(&info.extended_attributes, &mm.ea);
            prop_assert_eq!(&info.reparse_data, &mm.reparse);
            let tag = mm
                .reparse
                .get(..4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            prop_assert_eq!(info.reparse_tag, tag);
            match &node.kind {
                Kind::Dir(_) => {
                    prop_assert!(info.is_directory);
                    if !stack.iter().any(|s| s.0 == *child) {
                        stack.push((*child, e.file_id));
                    }
                }
                Kind::File { size, seed } => {
                    prop_assert!(!info.is_directory);
                    prop_assert_eq!(info.size, *size as u64);
                    prop_assert!(
                        expect_content(&read_all(&cim, e.file_id, None), *size, *seed),
                        "content of {}",
                        name
                    );
                }
            }
            let streams = cim.streams_id(e.file_id).unwrap();
            let want: Vec<(&String, u64)> = node.ads.values().map(|a| (&a.0, a.1 as u64)).collect();
            let got: Vec<(&String, u64)> = streams.iter().map(|s| (&s.name, s.size)).collect();
            prop_assert_eq!(got, want);
            for (sname, size, seed) in node.ads.values() {
                prop_assert!(expect_content(
                    &read_all(&cim, e.file_id, Some(sname)),
                    *size,
                    *seed
                ));
            }
        }
    }
    // Every path (deep chains included) resolves, by binary search per level, to the id the walk saw.
    for (path, node, _) in m.entries() {
        prop_assert_eq!(
            Some(&cim.lookup(&path).unwrap()),
            ids.get(&node),
            "{}",
            path
        );
    }
    let problems = cimfs::verify::verify(cim_path);
    prop_assert!(problems.is_empty(), "{:?}", problems);
    Ok(())
}

fn name_strategy() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        8 => "[a-z]",
        4 => "[A-Z]",
        2 => "[0-9 ._-]",
        1 => Just("ä".to_string()),
        1 => Just("Ä".to_string()),
        1 => Just("ß".to_string()),
        1 => Just("σ".to_string()),
        1 => Just("Σ".to_string()),
        1 => Just("ς".to_string()),
        1 => Just("ǅ".to_string()),
        1 => Just("😀".to_string()),
        1 => Just("𐐀".to_string()),
        1 => Just("𐐨".to_string()),
    ];
    prop_oneof![
        20 => proptest::collection::vec(ch, 1..10).prop_map(|v| v.concat()),
        1 => "[a-zA-Z]{250,255}",
    ]
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

/// Empty, or a self-relative SD with an owner SID of random sub-authorities and a DACL of random bytes.
fn sd_strategy() -> impl Strategy<Value = Vec<u8>> {
    let sd = (
        proptest::collection::vec(any::<u32>(), 0..5),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(subs, acl_body)| {
            let mut sd = vec![1u8, 0, 0x04, 0x80];
            let owner = 20u32;
            let dacl = owner + 8 + 4 * subs.len() as u32;
            sd.extend_from_slice(&owner.to_le_bytes());
            sd.extend_from_slice(&[0; 8]);
            sd.extend_from_slice(&dacl.to_le_bytes());
            sd.extend_from_slice(&[1, subs.len() as u8, 0, 0, 0, 0, 0, 5]);
            for s in &subs {
                sd.extend_from_slice(&s.to_le_bytes());
            }
            sd.extend_from_slice(&[2, 0]);
            sd.extend_from_slice(&((8 + acl_body.len()) as u16).to_le_bytes());
            sd.extend_from_slice(&[0, 0, 0, 0]);
            sd.extend_from_slice(&acl_body);
            sd
        });
    prop_oneof![2 => Just(Vec::new()), 1 => sd]
}

/// Empty, or a FILE_FULL_EA_INFORMATION chain of 1-3 entries with random names and values.
fn ea_strategy() -> impl Strategy<Value = Vec<u8>> {
    let entry = ("[A-Z]{1,8}", proptest::collection::vec(any::<u8>(), 0..20));
    let chain = proptest::collection::vec(entry, 1..4).prop_map(|entries| {
        let mut out = Vec::new();
        let n = entries.len();
        for (i, (name, value)) in entries.into_iter().enumerate() {
            let mut e = vec![0u8, 0, 0, 0, 0, name.len() as u8];
            e.extend_from_slice(&(value.len() as u16).to_le_bytes());
            e.extend_from_slice(name.as_bytes());
            e.push(0);
            e.extend_from_slice(&value);
            if i + 1 < n {
                while e.len() & 3 != 0 {
                    e.push(0);
                }
                let next = e.len() as u32;
                e[..4].copy_from_slice(&next.to_le_bytes());
            }
            out.extend_from_slice(&e);
        }
        out
    });
    prop_oneof![2 => Just(Vec::new()), 1 => chain]
}

fn meta_strategy() -> impl Strategy<Value = Meta> {
    let attrs = proptest::sample::subsequence(
        vec![
            format::FILE_ATTRIBUTE_READONLY,
            format::FILE_ATTRIBUTE_HIDDEN,
            format::FILE_ATTRIBUTE_SYSTEM,
            format::FILE_ATTRIBUTE_ARCHIVE,
            format::FILE_ATTRIBUTE_SPARSE_FILE,
            0x80,   // NORMAL: not representable, must be dropped
            0x2000, // NOT_CONTENT_INDEXED: likewise
        ],
        0..4,
    )
    .prop_map(|v| v.into_iter().fold(0, |a, b| a | b));
    let reparse =
        prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(any::<u8>(), 8..64)];
    (
        attrs,
        any::<[u64; 4]>(),
        sd_strategy(),
        ea_strategy(),
        reparse,
    )
        .prop_map(|(attributes, times, sd, ea, reparse)| Meta {
            attributes,
            times,
            sd,
            ea,
            reparse,
        })
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        10 => 0usize..64,
        6 => 64usize..5000,
        1 => Just(4095usize),
        1 => Just(4096usize),
        1 => Just(4097usize),
        2 => 5000usize..300_000,
        1 => prop_oneof![1_000_000usize..3_000_000, Just(20 << 20)],
    ]
}

fn name_or_case() -> impl Strategy<Value = Name> {
    prop_oneof![4 => name_strategy().prop_map(Name::Fresh), 1 => any::<usize>().prop_map(Name::CaseOf)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), name_or_case(), meta_strategy()).prop_map(|(parent, name, meta)| Op::Dir { parent, name, meta }),
        8 => (any::<usize>(), name_or_case(), size_strategy(), 0u8..4, meta_strategy())
            .prop_map(|(parent, name, size, seed, meta)| Op::File { parent, name, size, seed, meta }),
        2 => (any::<usize>(), name_strategy(), 0usize..3000, 0u8..4).prop_map(|(file, name, size, seed)| Op::Ads { file, name, size, seed }),
        2 => (any::<usize>(), name_or_case(), any::<usize>()).prop_map(|(parent, name, file)| Op::Link { parent, name, file }),
        2 => any::<usize>().prop_map(|target| Op::Remove { target }),
        1 => (any::<usize>(), proptest::collection::vec(name_strategy(), 10..70), 0usize..5000, 0u8..4)
            .prop_map(|(parent, names, size, seed)| Op::Nest { parent, names, size, seed }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip_with_forks(stages in proptest::collection::vec(proptest::collection::vec(op_strategy(), 0..30), 1..5)) {
        let t = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut snapshots = Vec::new();
        for (i, ops) in stages.iter().enumerate() {
            let name = format!("img{i}.cim");
            let mut w = if i == 0 {
                CimWriter::create(t.path(), &name).unwrap()
            } else {
                CimWriter::fork(t.path(), &format!("img{}.cim", i - 1), &name).unwrap()
            };
            for op in ops {
                apply(&mut w, &mut model, op);
            }
            w.commit().unwrap();
            snapshots.push((name, model.clone()));
        }
        for (name, m) in &snapshots {
            check(&t.path().join(name), m)?;
        }
    }
}
