//! Fuzz target: opening an image archive (OCI layout or docker save in a tar) and streaming its
//! layers. The first byte is a mode: bit 0 gzips the rest before writing it to the archive file
//! (so the compressed two-pass reader sees structured tars), bit 1 asks for linux/arm64 instead
//! of windows/amd64. The archive is written to /tmp/fuzz-ociimage-<pid>/image; `Image::open`
//! must give a typed error or an image whose every layer opens or fails cleanly, and streams
//! (up to 8 MiB each here) to its end or to an error.
#![no_main]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ociimage::{Image, Platform};

const READ_CAP: u64 = 8 << 20;

fn archive_path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(format!("/tmp/fuzz-ociimage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fuzz dir");
        dir.join("image")
    })
}

fn drain(mut r: impl Read) {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    while total < READ_CAP {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let path = archive_path();
    if mode & 1 == 1 {
        let f = std::fs::File::create(path).expect("create archive");
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(rest).expect("write archive");
        gz.finish().expect("finish archive");
    } else {
        std::fs::write(path, rest).expect("write archive");
    }
    let platform = if mode & 2 == 2 {
        Platform::parse("linux/arm64").expect("platform")
    } else {
        Platform::windows_amd64()
    };
    let Ok(image) = Image::open(path, &platform) else {
        return;
    };
    let _ = (
        image.format(),
        image.manifest_digest(),
        image.config_digest(),
        image.platform(),
        image.source(),
    );
    let count = image.layers().len();
    for (i, layer) in image.layers().iter().enumerate().take(16) {
        assert_eq!(layer.index, i);
        let _ = (layer.digest.to_string(), &layer.diff_id, layer.compression);
        if let Ok(r) = image.open_layer(i) {
            drain(r);
        }
    }
    assert!(image.open_layer(count).is_err());
});
