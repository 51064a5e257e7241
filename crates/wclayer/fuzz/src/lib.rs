//! Layer tars shared by the fuzz targets and `examples/make_seeds.rs`: a small base layer (the
//! five config hives, PAX metadata of every kind go-winio writes, a hard link, a junction and an
//! alternate data stream), the same with a utility VM, and a child layer for it (whiteouts, an
//! opaque directory, a hive delta).

use std::io::Write;

/// Writes layer tars the way go-winio does: PAX records in an `x` header before each entry.
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> Self {
        LayerTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// One entry with its PAX records; `link` is the hard-link or symlink target.
    pub fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        pax: &[(&str, &str)],
        link: &str,
        data: &[u8],
    ) {
        if !pax.is_empty() {
            self.b
                .append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_bytes())))
                .expect("pax header");
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mtime(1_650_000_000);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o40000
        } else {
            0o100000
        });
        h.set_path(name).expect("entry name");
        if !link.is_empty() {
            h.set_link_name(link).expect("link name");
        }
        h.set_cksum();
        self.b.append(&h, data).expect("append");
    }

    pub fn dir(&mut self, name: &str, pax: &[(&str, &str)]) {
        let mut p = vec![("MSWINDOWS.fileattr", "16")];
        p.extend_from_slice(pax);
        self.entry(name, tar::EntryType::Directory, &p, "", b"");
    }

    pub fn file(&mut self, name: &str, pax: &[(&str, &str)], data: &[u8]) {
        self.entry(name, tar::EntryType::Regular, pax, "", data);
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

/// A small hive with one key and value naming `what`.
pub fn hive(what: &str) -> Vec<u8> {
    let mut h = regf::Hive::new();
    let k = h.create_key(&format!("Fuzz\\{what}"));
    k.set_value("Name", regf::REG_SZ, regf::encode_sz(what));
    k.set_u32("Number", 7);
    h.to_bytes().expect("hive bytes")
}

const CONFIG: &str = "Files/Windows/System32/config";
const HIVE_NAMES: [&str; 5] = ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"];

/// A base layer that imports cleanly.
pub fn base_layer() -> Vec<u8> {
    let mut t = LayerTar::new();
    base_files(&mut t);
    t.finish()
}

/// A SOFTWARE hive whose CurrentBuild is `build`.
pub fn software_hive(build: &str) -> Vec<u8> {
    let mut h = regf::Hive::new();
    h.create_key(r"Microsoft\Windows NT\CurrentVersion")
        .set_value("CurrentBuild", regf::REG_SZ, regf::encode_sz(build));
    h.to_bytes().expect("hive bytes")
}

/// A BCD store like a utility VM's: a boot manager whose default is one loader.
pub fn uvm_bcd() -> Vec<u8> {
    use bcd::{ids, DeviceElement, ElementValue, Uuid, BOOTMGR};
    let loader = Uuid::from_u128(0x2a8f2b41_0e1c_11ef_9b6a_00155d000001);
    let boot = ElementValue::Device(DeviceElement {
        options: Uuid::nil(),
        device: bcd::Device::Boot,
    });
    let mut h = regf::Hive::new();
    h.create_key("Objects");
    bcd::create_object(&mut h, &BOOTMGR, 0x1010_0002, Some("Boot Manager")).expect("bootmgr");
    bcd::set_element(
        &mut h,
        &BOOTMGR,
        ids::DEFAULT_OBJECT,
        &ElementValue::Object(loader),
    )
    .expect("default");
    bcd::create_object(&mut h, &loader, 0x1020_0003, Some("Windows")).expect("loader");
    for id in [ids::APPLICATION_DEVICE, ids::OS_DEVICE] {
        bcd::set_element(&mut h, &loader, id, &boot).expect("device");
    }
    h.to_bytes().expect("BCD bytes")
}

/// A base layer with a utility VM of build `build` (after 20348, with the BCD and SYSTEM hive
/// that boot-from-CIM processing edits, and the UVM disks it creates).
pub fn base_layer_with_uvm(build: &str) -> Vec<u8> {
    let mut t = LayerTar::new();
    base_files(&mut t);
    t.dir("UtilityVM", &[]);
    t.dir("UtilityVM/Files", &[]);
    for d in ["EFI", "EFI/Microsoft", "EFI/Microsoft/Boot"] {
        t.dir(&format!("UtilityVM/Files/{d}"), &[]);
    }
    t.file("UtilityVM/Files/EFI/Microsoft/Boot/BCD", &[], &uvm_bcd());
    for d in ["Windows", "Windows/System32", "Windows/System32/config"] {
        t.dir(&format!("UtilityVM/Files/{d}"), &[]);
    }
    let config = "UtilityVM/Files/Windows/System32/config";
    t.file(&format!("{config}/SOFTWARE"), &[], &software_hive(build));
    t.file(&format!("{config}/SYSTEM"), &[], &hive("UVM SYSTEM"));
    t.finish()
}

fn base_files(t: &mut LayerTar) {
    let times = [
        ("LIBARCHIVE.creationtime", "1650000000.1234567"),
        ("atime", "1650000001"),
        ("ctime", "-1.5"),
        ("mtime", "1650000002.25"),
    ];
    let sd = wclayer::backuptar::sddl_to_security_descriptor("O:SYG:SYD:(A;OICI;FA;;;BA)")
        .expect("sddl");
    let rawsd = wclayer::backuptar::base64_encode(&sd);
    t.dir("Files", &[("MSWINDOWS.rawsd", &rawsd)]);
    t.dir("Files/Windows", &times);
    t.dir("Files/Windows/System32", &[]);
    t.dir(CONFIG, &[]);
    for name in HIVE_NAMES {
        t.file(
            &format!("{CONFIG}/{name}"),
            &[("MSWINDOWS.fileattr", "32")],
            &hive(name),
        );
    }
    let mut pax = vec![
        ("MSWINDOWS.fileattr", "33"),
        (
            "MSWINDOWS.sd",
            "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)",
        ),
        ("MSWINDOWS.xattr.fuzz.ea", "AQIDBA=="),
        ("MSWINDOWS.xattr.user", ""),
    ];
    pax.extend_from_slice(&times);
    t.file("Files/a.txt", &pax, b"hello from the base layer\n");
    t.file(
        "Files/a.txt:Zone.Identifier",
        &times,
        b"[ZoneTransfer]\r\nZoneId=3\r\n",
    );
    t.entry(
        "Files/hard.txt",
        tar::EntryType::Link,
        &times,
        "Files/a.txt",
        b"",
    );
    t.entry(
        "Files/junction",
        tar::EntryType::Symlink,
        &[("MSWINDOWS.mountpoint", "1")],
        "C:/ProgramData",
        b"",
    );
    t.entry("Files/rel", tar::EntryType::Symlink, &[], "a.txt", b"");
    t.dir("Files/sub", &[]);
    t.file("Files/sub/inner.bin", &[], &[7u8; 3000]);
    t.dir("Files/sub/deeper", &[]);
    t.file("Files/sub/deeper/x", &[], b"x");
}

/// A child layer of `base_layer`: adds, replaces, removes, hides a directory's content and
/// carries a delta for the SOFTWARE hive.
pub fn child_layer() -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("Files", &[]);
    t.file("Files/.wh.hard.txt", &[], b"");
    t.file("Files/a.txt", &[("mtime", "1700000000.5")], b"replaced\n");
    t.file("Files/new.txt", &[("MSWINDOWS.fileattr", "1")], b"new");
    t.dir("Files/sub", &[]);
    t.file("Files/sub/.wh..wh..opq", &[], b"");
    t.file("Files/sub/kept", &[], b"kept");
    t.dir("Hives", &[]);
    t.file("Hives/SOFTWARE_DELTA", &[], &hive("SOFTWARE-delta"));
    t.finish()
}

/// Writes one seed file: `prefix` (the target's mode bytes) followed by `data`.
pub fn write_seed(dir: &std::path::Path, name: &str, prefix: &[u8], data: &[u8]) {
    std::fs::create_dir_all(dir).expect("seed dir");
    let mut f = std::fs::File::create(dir.join(name)).expect("seed file");
    f.write_all(prefix).expect("write seed");
    f.write_all(data).expect("write seed");
}
