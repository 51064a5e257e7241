//! Shared helpers for the cimkit integration tests: run the built binary, and build Windows
//! layer tars (backuptar dialect) in memory.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A real self-relative SD (owner, group, DACL) as Windows layers carry them.
pub const SD_B64: &str = "AQAElBQAAAA0AAAAAAAAAFQAAAABBgAAAAAABVAAAAC1ifs4GYTCy1xsI21XAHduwAJkhwEGAAAAAAAFUAAAALWJ+zgZhMLLXGwjbVcAd27AAmSHAgB0AAQAAAAAACgA/wEfAAEGAAAAAAAFUAAAALWJ+zgZhMLLXGwjbVcAd27AAmSHAAsUAAAAAKABAQAAAAAABQsAAAAAEBwAqQASAAEDAAAAAAAFXQAAAAIAAAACAAAAAAsUAAAAABABAQAAAAAABRIAAAA=";

pub fn cimkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimkit"))
        .args(args)
        .output()
        .expect("run cimkit")
}

/// Runs cimkit and asserts the exit code, returning stdout as text.
pub fn cimkit_ok(args: &[&str], code: i32) -> String {
    let out = cimkit(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "cimkit {args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len.to_string().len() + body > len {
        len += 1;
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// Builds a layer tar entry by entry, with PAX records like go-winio writes them.
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn pax(&mut self, records: &[(&str, String)]) {
        let mut data = Vec::new();
        for (k, v) in records {
            data.extend_from_slice(&pax_record(k, v));
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeader").expect("pax name");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.b.append(&h, &data[..]).expect("pax header");
    }

    fn times(secs: i64) -> Vec<(&'static str, String)> {
        vec![
            ("mtime", format!("{secs}.1234567")),
            ("atime", format!("{}.5", secs + 10)),
            ("ctime", format!("{}", secs + 20)),
            ("LIBARCHIVE.creationtime", format!("{}", secs - 1000)),
        ]
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        let mut rec = Self::times(1_600_000_000);
        rec.push(("MSWINDOWS.fileattr", "16".into()));
        rec.push(("MSWINDOWS.rawsd", SD_B64.into()));
        self.pax(&rec);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        self.b.append_data(&mut h, name, &[][..]).expect("dir");
        self
    }

    pub fn file_with(
        &mut self,
        name: &str,
        data: &[u8],
        attrs: u32,
        extra: &[(&str, String)],
    ) -> &mut Self {
        let mut rec = Self::times(1_650_000_000);
        rec.push(("MSWINDOWS.fileattr", attrs.to_string()));
        rec.push(("MSWINDOWS.rawsd", SD_B64.into()));
        rec.extend(extra.iter().cloned());
        self.pax(&rec);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_650_000_000);
        self.b.append_data(&mut h, name, data).expect("file");
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_with(name, data, 0x20, &[])
    }

    /// An alternate data stream entry `<file>:<stream>` right after its file.
    pub fn stream(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_650_000_000);
        self.b.append_data(&mut h, name, data).expect("stream");
        self
    }

    pub fn symlink(&mut self, name: &str, target: &str, mount_point: bool) -> &mut Self {
        let mut rec = Self::times(1_660_000_000);
        rec.push((
            "MSWINDOWS.fileattr",
            if mount_point { "1040" } else { "1056" }.into(),
        ));
        rec.push(("MSWINDOWS.rawsd", SD_B64.into()));
        if mount_point {
            rec.push(("MSWINDOWS.mountpoint", "1".into()));
        }
        self.pax(&rec);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(1_660_000_000);
        self.b.append_link(&mut h, name, target).expect("symlink");
        self
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        self.b.append_link(&mut h, name, target).expect("hardlink");
        self
    }

    pub fn whiteout(&mut self, name: &str) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        self.b.append_data(&mut h, name, &[][..]).expect("whiteout");
        self
    }

    /// The five hive files a base layer must carry (random bytes are enough for a base layer).
    pub fn base_hives(&mut self) -> &mut Self {
        self.dir("Files/Windows")
            .dir("Files/Windows/System32")
            .dir("Files/Windows/System32/config");
        for h in ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
            self.file(
                &format!("Files/Windows/System32/config/{h}"),
                format!("hive {h}").as_bytes(),
            );
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

/// Deterministic bytes for a "big" file.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

pub const LONG_NAME: &str = "a-very-long-file-name-that-does-not-fit-in-the-hundred-byte-ustar-name-field-of-a-tar-header-so-it-goes-elsewhere.txt";

/// A base layer with every kind of entry: dirs, files with times/attributes/SD, an EA, ADS (on a
/// file and a directory),
/// a hard link, a relative symlink, a junction, a Unicode and a long name, an empty and a big file.
pub fn sample_base_layer() -> Vec<u8> {
    let mut t = LayerTar::new();
    t.dir("Files").base_hives();
    t.file("Files/hello.txt", b"hello world\n");
    t.stream("Files/hello.txt:zone", b"[ZoneTransfer]\r\nZoneId=3\r\n");
    t.dir("Files/dir");
    t.stream("Files/dir:tag", b"a directory's stream");
    t.file_with(
        "Files/dir/\u{fc}nic\u{f6}de.txt",
        b"unicode",
        0x21,
        &[("MSWINDOWS.xattr.user.test", "AQID".into())],
    );
    t.file(&format!("Files/dir/{LONG_NAME}"), b"long");
    t.file("Files/dir/empty", b"");
    t.file("Files/big.bin", &pattern(300_000, 7));
    t.hardlink("Files/hello-link.txt", "Files/hello.txt");
    t.symlink("Files/link", "hello.txt", false);
    t.symlink("Files/junction", "C:\\ProgramData", true);
    t.finish()
}

/// Imports the layer tar at `tar` into `layer` on top of `parents` (nearest first), quietly,
/// and fails the test unless that succeeds.
pub fn import_tar(tar: &Path, layer: &Path, parents: &[&Path]) {
    let mut args = vec!["import", "-q", s(tar), "--layer", s(layer)];
    for p in parents {
        args.extend(["--parent", s(p)]);
    }
    cimkit_ok(&args, 0);
}

/// Writes the sample layer, imports it into `dir/snap/1`, returns (tar path, cim path).
pub fn import_sample(dir: &Path) -> (PathBuf, PathBuf) {
    let tar = dir.join("base.tar");
    std::fs::write(&tar, sample_base_layer()).expect("write tar");
    let layer = dir.join("snap/1");
    import_tar(&tar, &layer, &[]);
    (tar, dir.join("snap/cim-layers/1.cim"))
}
