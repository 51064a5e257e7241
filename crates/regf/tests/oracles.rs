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
    let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import dissect.regf"])
        .output();
    if !matches!(probe, Ok(o) if o.status.success()) {
        eprintln!("skipping: {python} has no dissect.regf (set CIMKIT_PYTHON to a venv with it)");
        return;
    }
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
    let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import regipy"]).output();
    if !matches!(probe, Ok(o) if o.status.success()) {
        eprintln!("skipping: {python} has no regipy (set CIMKIT_PYTHON to a venv with it)");
        return;
    }
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
