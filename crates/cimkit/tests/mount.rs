//! `cimkit mount` through FUSE: runs where /dev/fuse and fusermount3 are usable and says clearly
//! when it is skipped. Checks listing, data, sizes, times, symlinks, xattrs and Ctrl-C unmount.

mod common;

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

#[test]
fn mount_serves_the_image_and_unmounts_on_ctrl_c() {
    if let Err(why) = fuse_usable() {
        eprintln!("skipping mount test: {why}");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, cim) = import_sample(tmp.path());
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let log = tmp.path().join("mount.log");
    let child = Command::new(env!("CARGO_BIN_EXE_cimkit"))
        .args(["mount", s(&cim), s(&mnt)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn mount");
    let mut guard = MountGuard {
        child: Some(child),
        mountpoint: mnt.clone(),
    };
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
            eprintln!("skipping mount test: FUSE mount not permitted here: {text}");
            return;
        }
        panic!("cimkit mount exited with {status}: {text}");
    }
    assert!(
        mounted,
        "mount did not appear: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

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

    let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import os\np={:?}\nprint(sorted(os.listxattr(p)))\nprint(os.getxattr(p,'user.cimfs.stream.zone').decode())\nprint(os.getxattr(p,'user.cimfs.attributes').decode())\nprint(len(os.getxattr(p,'user.cimfs.sd')))",
        s(&mnt.join("Files/hello.txt"))
    );
    match Command::new(&python).args(["-c", &script]).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
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
        other => eprintln!("skipping xattr checks: {python} unavailable or failed: {other:?}"),
    }

    let pid = guard.child.as_ref().map(|c| c.id()).expect("child");
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
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
