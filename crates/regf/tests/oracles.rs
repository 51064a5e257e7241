//! Independent readers agree with what we write: for every real hive, hivex (hivexml, and
//! hivexregedit when installed) and a Python reader (dissect.regf via CIMKIT_PYTHON) give the
//! same output for our rewritten hive as for the original.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Hives whose stored subkey order is not Windows order; hivexml lists children in stored
/// order, so its output legitimately differs after we sort them (hivexregedit sorts).
const UNSORTED: &[&str] = &["yarp-WrongOrderHive"];

fn run(cmd: &mut Command) -> Option<Vec<u8>> {
    match cmd.output() {
        Ok(o) if o.status.success() => Some(o.stdout),
        _ => None,
    }
}

fn tool_exists(name: &str) -> bool {
    Command::new(name).arg("--help").output().is_ok()
}

/// hivexml output without the byte_runs elements (file offsets legitimately differ).
fn hivexml(path: &Path) -> Option<String> {
    let out = String::from_utf8(run(Command::new("hivexml").arg(path))?).ok()?;
    let mut s = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("<byte_runs>") {
        s.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("</byte_runs>") else {
            break;
        };
        rest = &rest[i + j + "</byte_runs>".len()..];
    }
    s.push_str(rest);
    // The <hive> element starts with the base block's last-written time, which a freshly
    // written hive leaves 0 (like offreg); drop it.
    if let Some(i) = s.find("<hive><mtime>") {
        if let Some(j) = s[i..].find("</mtime>") {
            s.replace_range(i + "<hive>".len()..i + j + "</mtime>".len(), "");
        }
    }
    Some(s)
}

/// `hivexregedit --export HIVE '\'`, as raw bytes. How to compare it (checked on the
/// hives here, libwin-hivex-perl 1.3.23):
/// * Value data is printed as hex of the stored bytes for every type except 4-byte
///   REG_DWORD; REG_SZ/EXPAND_SZ/MULTI_SZ come out as hex(1)/hex(2)/hex(7) including their
///   NULs, so unlike hivexml (which decodes strings) a byte-exact comparison between the
///   original and our rewrite checks string data byte for byte.
/// * Key and value names are re-encoded: hivex decodes them and Perl prints the decoded
///   string as Latin-1 bytes when every character is <= U+00FF and as UTF-8 otherwise
///   (with "Wide character" warnings on stderr), so the output is not valid UTF-8 in
///   general ("äöü" in testhive is E4 F6 FC, "Ａ" next to it is UTF-8). It is therefore
///   compared as bytes, never as text; both files go through the same re-encoding, and a
///   name we stored differently (compressed vs UTF-16) still decodes to the same string.
/// * Keys and values are sorted by name, so stored order does not matter and even the
///   hive with unsorted subkeys can be compared.
fn hivexregedit(path: &Path) -> Option<Vec<u8>> {
    run(Command::new("hivexregedit")
        .arg("--export")
        .arg(path)
        .arg("\\"))
}

/// Number of "[key]" headers in a hivexregedit export.
fn exported_keys(reg: &[u8]) -> usize {
    reg.split(|&b| b == b'\n')
        .filter(|l| l.first() == Some(&b'['))
        .count()
}

fn write_pair(name: &str, dir: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    write_pair_keys(name, dir).map(|(o, w, _)| (o, w))
}

/// Like [`write_pair`], also returning the number of keys in the hive.
fn write_pair_keys(
    name: &str,
    dir: &Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf, usize)> {
    let bytes = load(name)?;
    let hive = parse_named(name, &bytes);
    let orig = dir.join("orig");
    let ours = dir.join("ours");
    std::fs::write(&orig, &bytes).expect("write original");
    hive.save(&ours).expect("write ours");
    Some((orig, ours, hive.key_count()))
}

#[test]
fn hivex_reads_our_hives_like_the_originals() {
    if !tool_exists("hivexml") {
        eprintln!("skipping: hivexml not installed (apt-get install libhivex-bin)");
        return;
    }
    let regedit = tool_exists("hivexregedit");
    if !regedit {
        eprintln!("note: hivexregedit not installed (apt-get install libwin-hivex-perl); comparing hivexml output only");
    }
    let (mut compared, mut regedit_compared) = (0, 0);
    for name in GOOD_HIVES {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((orig, ours, keys)) = write_pair_keys(name, dir.path()) else {
            continue;
        };
        let Some(expected) = hivexml(&orig) else {
            eprintln!("{name}: hivex cannot read the original; not compared");
            continue;
        };
        let got = hivexml(&ours).unwrap_or_else(|| panic!("{name}: hivexml fails on our hive"));
        if !UNSORTED.contains(name) {
            assert!(expected == got, "{name}: hivexml output differs");
            compared += 1;
        }
        if regedit {
            let e = hivexregedit(&orig)
                .unwrap_or_else(|| panic!("{name}: hivexregedit fails on the original"));
            let g = hivexregedit(&ours)
                .unwrap_or_else(|| panic!("{name}: hivexregedit fails on our hive"));
            // The export really walked the whole tree (not just an empty or partial dump).
            assert_eq!(exported_keys(&g), keys, "{name}: keys in our export");
            assert!(e == g, "{name}: hivexregedit output differs");
            regedit_compared += 1;
        }
    }
    eprintln!("hivexml agreed on {compared} hives, hivexregedit on {regedit_compared}");
}

const DISSECT_DUMP: &str = r#"
import sys, hashlib
from dissect.regf import regf
def walk(k, path, out):
    cls = k.class_name
    out.append("K %s|%s|%s" % (path, k.timestamp, cls))
    for v in k.values():
        out.append("V %s|%s|%s|%s" % (path, v.name, v.type, hashlib.sha1(v.data).hexdigest()))
    for s in k.subkeys():
        walk(s, path + "\\" + s.name, out)
h = regf.RegistryHive(open(sys.argv[1], "rb"))
out = []
walk(h.root(), "", out)
out.sort()
sys.stdout.write("\n".join(out))
"#;

#[test]
fn dissect_regf_reads_our_hives_like_the_originals() {
    let Some(python) = python_with("dissect.regf") else {
        return;
    };
    let mut compared = 0;
    for name in GOOD_HIVES {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((orig, ours)) = write_pair(name, dir.path()) else {
            continue;
        };
        // Both dumps run at once: dissect.regf needs seconds on the big SYSTEM hives.
        let spawn = |p: &Path| {
            Command::new(&python)
                .args(["-c", DISSECT_DUMP])
                .arg(p)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start python")
        };
        let (a, b) = (spawn(&orig), spawn(&ours));
        let output = |c: std::process::Child| {
            c.wait_with_output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| o.stdout)
        };
        let (expected, got) = (output(a), output(b));
        let Some(expected) = expected else {
            eprintln!("{name}: dissect.regf cannot read the original; not compared");
            continue;
        };
        let got = got.unwrap_or_else(|| panic!("{name}: dissect.regf fails on our hive"));
        assert!(expected == got, "{name}: dissect.regf output differs");
        compared += 1;
    }
    eprintln!("dissect.regf agreed on {compared} hives");
}

#[test]
fn hivex_reads_a_merged_hive() {
    if !tool_exists("hivexml") {
        eprintln!("skipping: hivexml not installed (apt-get install libhivex-bin)");
        return;
    }
    let (Some(base), Some(delta)) = (
        load("regipy-SYSTEM-offreg-compacted.xz"),
        load("yarp-System_Delta"),
    ) else {
        return;
    };
    let merged =
        regf::merge(&parse_named("SYSTEM", &base), &parse_named("delta", &delta)).expect("merge");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("SYSTEM_BASE");
    merged.save(&out).expect("save");
    let xml = hivexml(&out).expect("hivexml reads the merged hive");
    assert!(xml.contains("<node name=\"xboxgipsvc\""));
    assert!(!xml.contains("<node name=\"XBOXGIP\""));
}

const REGIPY_DUMP: &str = r#"
import sys
from regipy.registry import RegistryHive
out = []
for sk in RegistryHive(sys.argv[1]).recurse_subkeys(as_json=False):
    out.append("K %s|%s" % (sk.path, sk.timestamp))
    for v in sk.values:
        out.append("V %s|%s|%s|%r" % (sk.path, v.name, v.value_type, v.value))
out.sort()
sys.stdout.write("\n".join(out))
"#;

/// hivex and dissect.regf cannot read differencing hives (tombstone values); regipy can, so
/// it checks our rewrite of the real delta, layer bits and tombstones included.
#[test]
fn regipy_reads_our_delta_like_the_original() {
    let Some(python) = python_with("regipy") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((orig, ours)) = write_pair("yarp-System_Delta", dir.path()) else {
        return;
    };
    let dump = |p: &Path| run(Command::new(&python).args(["-c", REGIPY_DUMP]).arg(p));
    let expected = dump(&orig).expect("regipy reads the original delta");
    let got = dump(&ours).expect("regipy reads our delta");
    assert!(expected.len() > 1000);
    assert!(expected == got, "regipy output differs");
}

/// The model as dissect.regf sees it: keys, class names, values (name, type, data as hex),
/// sorted; times are left out, so it can be compared with our own model.
const DISSECT_MODEL: &str = r#"
import sys
from dissect.regf import regf
def walk(k, path, out):
    out.append("K %s" % path)
    if k.class_name:
        out.append("C %s|%s" % (path, k.class_name))
    for v in k.values():
        name = "" if v.name == "(Default)" else v.name
        out.append("V %s|%s|%d|%s" % (path, name, v.type, v.data.hex()))
    for s in k.subkeys():
        walk(s, path + "\\" + s.name, out)
out = []
walk(regf.RegistryHive(open(sys.argv[1], "rb")).root(), "", out)
out.sort()
sys.stdout.write("\n".join(out))
"#;

/// Our model in `DISSECT_MODEL`'s form.
fn model_lines(hive: &regf::Hive) -> String {
    fn walk(k: &regf::Key, path: &mut String, out: &mut Vec<String>) {
        out.push(format!("K {path}"));
        if let Some(c) = k.class_name() {
            out.push(format!("C {path}|{c}"));
        }
        for v in &k.values {
            let hex: String = v.data.iter().map(|b| format!("{b:02x}")).collect();
            out.push(format!("V {path}|{}|{}|{hex}", v.name, v.kind));
        }
        for s in &k.subkeys {
            let len = path.len();
            path.push('\\');
            path.push_str(&s.name);
            walk(s, path, out);
            path.truncate(len);
        }
    }
    let mut out = Vec::new();
    walk(&hive.root, &mut String::new(), &mut out);
    out.sort();
    out.join("\n")
}

/// dissect.regf reads a hive we build with the cases real hives do not all cover exactly as our
/// model holds it: names stored compressed with bytes >= 0x80 (keys and values), names above
/// U+00FF and beyond the BMP, values of 0 to 5 bytes, at the single-cell limit and past it
/// (big data), class names, a subkey list long enough for an ri; in format 1.5 and 1.3.
#[test]
fn dissect_regf_reads_an_edge_case_hive_like_our_model() {
    let Some(python) = python_with("dissect.regf") else {
        return;
    };
    let mut hive = regf::Hive::new();
    for name in ["Café", "ÿkey", "Жук", "𐐐x", "plain"] {
        let k = hive.create_key(&format!("Edge\\{name}"));
        k.class = Some("Clаss".encode_utf16().flat_map(u16::to_le_bytes).collect());
        for (i, len) in [0usize, 1, 2, 3, 4, 5, 16344, 16345, 40000]
            .into_iter()
            .enumerate()
        {
            let data = (0..len).map(|b| (b * 7 + i) as u8).collect();
            k.set_value(&format!("v{i}é"), regf::REG_BINARY, data);
        }
        k.set_value("", regf::REG_SZ, regf::encode_sz("default"));
        k.set_value("Жval", regf::REG_SZ, Vec::new());
    }
    for i in 0..600 {
        hive.create_key(&format!("Many\\k{i:04}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for minor in [5u32, 3] {
        hive.minor_version = minor;
        let path = dir.path().join(format!("edge-1.{minor}"));
        hive.save(&path).expect("save");
        let back = regf::Hive::open(&path).expect("reopen");
        let out = Command::new(&python)
            .args(["-c", DISSECT_MODEL])
            .arg(&path)
            .output()
            .expect("start python");
        assert!(
            out.status.success(),
            "1.{minor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = String::from_utf8(out.stdout).expect("utf-8");
        let ours = model_lines(&back);
        assert_eq!(model_lines(&hive), ours, "1.{minor}: our own reader");
        if theirs != ours {
            let t: std::collections::BTreeSet<&str> = theirs.lines().collect();
            let o: std::collections::BTreeSet<&str> = ours.lines().collect();
            let only_theirs: Vec<_> = t.difference(&o).take(8).collect();
            let only_ours: Vec<_> = o.difference(&t).take(8).collect();
            panic!("1.{minor}: dissect.regf only {only_theirs:#?}\nours only {only_ours:#?}");
        }
    }
}
