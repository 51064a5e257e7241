//! `cimkit mount` through FUSE: runs where /dev/fuse and fusermount3 are usable and says clearly
//! when it is skipped. Checks listing, data, sizes, times, symlinks, xattrs, link counts and
//! Ctrl-C unmount; the refusal of a non-empty mount point needs no FUSE and always runs.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn fuse_usable() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist".into());
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
    {
        return Err("/dev/fuse cannot be opened".into());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !found {
        return Err("fusermount3 is not installed (Debian package fuse3)".into());
    }
    Ok(())
}

/// Unmounts and kills the mount process if the test fails half-way.
struct MountGuard {
    child: Option<Child>,
    mountpoint: PathBuf,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("timed out waiting for {what}");
    false
}

/// Starts `cimkit mount CIM MNT` with stderr in `log`; the guard ends it if the test fails.
fn spawn_mount(cim: &Path, mnt: &Path, log: &Path) -> MountGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_cimkit"))
        .args(["mount", s(cim), s(mnt)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("spawn mount");
    MountGuard {
        child: Some(child),
        mountpoint: mnt.to_path_buf(),
    }
}

/// A mounted sample image.
struct Mounted {
    guard: MountGuard,
    cim: PathBuf,
    mnt: PathBuf,
    log: PathBuf,
}

/// Imports the sample layer under `dir` and mounts it on `dir/mnt`; None (after saying why on
/// stderr) when FUSE is not usable here, so the calling test skips.
fn mount_sample(test: &str, dir: &Path) -> Option<Mounted> {
    if let Err(why) = fuse_usable() {
        eprintln!("skipping {test}: {why}");
        return None;
    }
    let (_, cim) = import_sample(dir);
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let log = dir.join("mount.log");
    let mut guard = spawn_mount(&cim, &mnt, &log);
    let mounted = wait_for("the mount", || {
        if let Some(Ok(Some(_))) = guard.child.as_mut().map(|c| c.try_wait()) {
            return true; // exited early: reported below
        }
        mnt.join("Files").exists()
    });
    if let Some(Ok(Some(status))) = guard.child.as_mut().map(|c| c.try_wait()) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        guard.child = None;
        if text.contains("cannot mount") {
            eprintln!("skipping {test}: FUSE mount not permitted here: {text}");
            return None;
        }
        panic!("cimkit mount exited with {status}: {text}");
    }
    assert!(
        mounted,
        "mount did not appear: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Some(Mounted {
        guard,
        cim,
        mnt,
        log,
    })
}

/// Runs a Python snippet (CIMKIT_PYTHON or python3) and returns its stdout; None (after saying
/// why on stderr) when Python is missing or the snippet fails, so the caller skips those checks.
fn python(what: &str, script: &str) -> Option<String> {
    let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python).args(["-c", script]).output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        other => {
            eprintln!("skipping {what}: {python} unavailable or failed: {other:?}");
            None
        }
    }
}

#[test]
fn mount_serves_the_image_and_unmounts_on_ctrl_c() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(Mounted {
        mut guard,
        mnt,
        log,
        ..
    }) = mount_sample("mount_serves_the_image_and_unmounts_on_ctrl_c", tmp.path())
    else {
        return;
    };

    let mut names: Vec<String> = std::fs::read_dir(mnt.join("Files"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in [
        "hello.txt",
        "hello-link.txt",
        "big.bin",
        "dir",
        "link",
        "junction",
        "Windows",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    assert_eq!(
        std::fs::read(mnt.join("Files/hello.txt")).expect("read"),
        b"hello world\n"
    );
    // Case-insensitive lookup, like Windows.
    assert_eq!(
        std::fs::read(mnt.join("FILES/HELLO.TXT")).expect("read"),
        b"hello world\n"
    );
    assert_eq!(
        std::fs::read(mnt.join("Files/big.bin")).expect("read"),
        pattern(300_000, 7)
    );
    let meta = std::fs::metadata(mnt.join("Files/big.bin")).expect("stat");
    assert_eq!(meta.len(), 300_000);
    let mtime = meta
        .modified()
        .expect("mtime")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch");
    assert_eq!(mtime.as_secs(), 1_650_000_000);
    assert_eq!(
        std::fs::read_link(mnt.join("Files/link")).expect("readlink"),
        PathBuf::from("hello.txt")
    );
    assert_eq!(
        std::fs::read(mnt.join("Files/link")).expect("through link"),
        b"hello world\n"
    );
    assert!(
        std::fs::write(mnt.join("Files/new.txt"), b"x").is_err(),
        "read-only"
    );

    let script = format!(
        "import os\np={:?}\nprint(sorted(os.listxattr(p)))\nprint(os.getxattr(p,'user.cimfs.stream.zone').decode())\nprint(os.getxattr(p,'user.cimfs.attributes').decode())\nprint(len(os.getxattr(p,'user.cimfs.sd')))",
        s(&mnt.join("Files/hello.txt"))
    );
    if let Some(text) = python("xattr checks", &script) {
        assert!(
            text.contains("'user.cimfs.sd'") && text.contains("'user.cimfs.stream.zone'"),
            "{text}"
        );
        assert!(text.contains("ZoneId=3"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let n = lines.len();
        assert_eq!(lines[n - 2], "32", "attributes (ARCHIVE): {text}");
        let sd_len = (SD_B64.len() / 4) * 3 - SD_B64.matches('=').count();
        assert_eq!(lines[n - 1], sd_len.to_string(), "SD length: {text}");
    }

    let pid = guard.child.as_ref().map(|c| c.id()).expect("child");
    let interrupt = || {
        let status = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    // Busy (a file open on it): Ctrl-C says so and the mount keeps serving.
    let mut open = std::fs::File::open(mnt.join("Files/hello.txt")).expect("open");
    interrupt();
    assert!(wait_for("the busy note", || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("still mounted")));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut open, &mut text).expect("still served");
    assert_eq!(text, "hello world\n");
    drop(open);
    interrupt();
    let mut code = None;
    assert!(wait_for("the mount process to exit", || {
        code = guard
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        code.is_some()
    }));
    guard.child = None;
    assert_eq!(
        code.and_then(|c| c.code()),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!mnt.join("Files").exists(), "unmounted after Ctrl-C");
    assert!(std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("unmounted"));
}

#[test]
fn mount_symlinks_list_no_xattrs_and_stat_json_has_their_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(Mounted {
        guard, cim, mnt, ..
    }) = mount_sample(
        "mount_symlinks_list_no_xattrs_and_stat_json_has_their_bytes",
        tmp.path(),
    )
    else {
        return;
    };
    assert_eq!(
        std::fs::read_link(mnt.join("Files/link")).expect("readlink"),
        PathBuf::from("hello.txt")
    );
    assert_eq!(
        std::fs::read_link(mnt.join("Files/junction")).expect("readlink"),
        PathBuf::from("C:/ProgramData")
    );
    // Every listed name must be readable: the kernel refuses user.* on symlinks, so none is listed.
    let script = format!(
        "import os\n\
         for p in ({:?}, {:?}):\n\
         \x20   print(sorted(os.listxattr(p, follow_symlinks=False)))\n\
         \x20   try:\n\
         \x20       os.getxattr(p, 'user.cimfs.reparse', follow_symlinks=False)\n\
         \x20       print('readable')\n\
         \x20   except OSError as e:\n\
         \x20       print('refused', e.errno)\n\
         d = {:?}\n\
         print(sorted(os.listxattr(d)))\n\
         print(len(os.getxattr(d, 'user.cimfs.sd')))",
        s(&mnt.join("Files/link")),
        s(&mnt.join("Files/junction")),
        s(&mnt.join("Files/dir")),
    );
    if let Some(text) = python("symlink xattr checks", &script) {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        for i in [0, 2] {
            assert_eq!(lines[i], "[]", "a symlink lists no xattrs: {text}");
            assert!(lines[i + 1].starts_with("refused"), "{text}");
        }
        assert!(
            lines[4].contains("'user.cimfs.attributes'") && lines[4].contains("'user.cimfs.sd'"),
            "a directory still lists its xattrs: {text}"
        );
        let sd_len = (SD_B64.len() / 4) * 3 - SD_B64.matches('=').count();
        assert_eq!(lines[5], sd_len.to_string(), "{text}");
    }
    // What a symlink cannot expose as xattrs, `stat --json` prints.
    for path in ["Files/link", "Files/junction"] {
        let out = cimkit_ok(&["stat", "--json", s(&cim), path], 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert!(v["link_target"].is_string(), "{path}: {out}");
        assert_eq!(v["sd"], SD_B64, "{path}: {out}");
        assert!(
            v["reparse"].as_str().is_some_and(|r| !r.is_empty()),
            "{path}: {out}"
        );
    }
    drop(guard);
}

#[test]
fn mount_reports_link_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(Mounted { guard, mnt, .. }) = mount_sample("mount_reports_link_counts", tmp.path())
    else {
        return;
    };
    let files = mnt.join("Files");
    let hello = std::fs::metadata(files.join("hello.txt")).expect("stat");
    let link = std::fs::metadata(files.join("hello-link.txt")).expect("stat");
    assert_eq!(hello.ino(), link.ino(), "hard links share an inode");
    assert_eq!(hello.nlink(), 2, "hello.txt has two names");
    assert_eq!(link.nlink(), 2, "hello-link.txt has two names");
    assert_eq!(
        std::fs::metadata(files.join("big.bin"))
            .expect("stat")
            .nlink(),
        1
    );
    assert_eq!(
        std::fs::symlink_metadata(files.join("link"))
            .expect("lstat")
            .nlink(),
        1
    );
    // Directories: 2 + subdirectories. Files holds dir and Windows (the junction is a symlink).
    assert_eq!(std::fs::metadata(&files).expect("stat").nlink(), 4);
    assert_eq!(
        std::fs::metadata(files.join("dir")).expect("stat").nlink(),
        2
    );
    assert_eq!(
        std::fs::metadata(files.join("Windows"))
            .expect("stat")
            .nlink(),
        3,
        "Windows holds System32"
    );
    let root_subdirs = std::fs::read_dir(&mnt)
        .expect("readdir")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_type()
                .expect("type")
                .is_dir()
        })
        .count() as u64;
    assert!(root_subdirs >= 1, "the root holds Files");
    assert_eq!(
        std::fs::metadata(&mnt).expect("stat").nlink(),
        2 + root_subdirs
    );
    drop(guard);
}

#[test]
fn mount_refuses_a_non_empty_mountpoint() {
    // Runs without FUSE: the check comes before anything is mounted.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    std::fs::write(mnt.join("keep.txt"), b"mine").expect("write");
    let log = tmp.path().join("mount.log");
    let mut guard = spawn_mount(&cim, &mnt, &log);
    let mut status = None;
    let exited = wait_for("cimkit mount to refuse", || {
        status = guard
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        status.is_some()
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        exited,
        "cimkit mount did not exit on a non-empty folder: {text}"
    );
    guard.child = None;
    assert_eq!(status.and_then(|c| c.code()), Some(2), "{text}");
    assert!(
        text.contains("is not empty") && text.contains("keep.txt"),
        "{text}"
    );
    assert!(!mnt.join("Files").exists(), "nothing was mounted");
    assert_eq!(std::fs::read(mnt.join("keep.txt")).expect("read"), b"mine");
}
