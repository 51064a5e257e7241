//! Benchmark: imports a generated Windows base layer (default 60,000 files, ~3 GiB) as a CIM
//! layer and, in the same run, extracts the same tar with `tar -xf`; prints throughput, peak
//! memory (VmHWM) and the ratio between the two.
//!
//! cargo run --release -p wclayer --example bench_import -- [--tar PATH] [--files N] [--size 3G]
//!     [--compress gzip|zstd] [--workdir DIR] [--keep]
//!
//! With `--compress`, both sides read a compressed copy of the tar (made once, at the fastest
//! level): the import decompresses on its own thread, `tar` through its gzip / zstd filter.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Args {
    tar: Option<PathBuf>,
    files: String,
    size: String,
    compress: Option<String>,
    workdir: PathBuf,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        tar: None,
        files: "60000".into(),
        size: "3G".into(),
        compress: None,
        workdir: std::env::temp_dir().join("wclayer-bench"),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--tar" => a.tar = Some(val()?.into()),
            "--files" => a.files = val()?,
            "--size" => a.size = val()?,
            "--compress" => match val()?.as_str() {
                c @ ("gzip" | "zstd") => a.compress = Some(c.to_string()),
                c => bail!("--compress takes gzip or zstd, not {c}"),
            },
            "--workdir" => a.workdir = val()?.into(),
            "--keep" => a.keep = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// VmHWM of a process in KiB, from /proc/<pid>/status.
fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `tar -xf` and samples its VmHWM until it exits (VmHWM only grows, so the last sample
/// is the peak up to a few milliseconds before exit).
fn run_tar_extract(
    tar: &Path,
    compress: Option<&str>,
    dest: &Path,
) -> anyhow::Result<(Duration, u64)> {
    fs::create_dir_all(dest)?;
    let start = Instant::now();
    let filter = match compress {
        Some("gzip") => Some("--gzip"),
        Some(_) => Some("--zstd"),
        None => None,
    };
    // stderr dropped: GNU tar warns once per unknown PAX keyword (MSWINDOWS.*); the exit status
    // still says whether it worked.
    let mut child = Command::new("tar")
        .args(filter)
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(dest)
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running tar")?;
    let pid = child.id().to_string();
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("tar -xf failed: {status}");
            }
            break;
        }
        if let Some(h) = vm_hwm_kib(&pid) {
            peak = peak.max(h);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((start.elapsed(), peak))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    fs::create_dir_all(&args.workdir)?;
    let tar = match &args.tar {
        Some(t) => t.clone(),
        None => {
            let out = args
                .workdir
                .join(format!("layer-{}-{}.tar", args.files, args.size));
            if !out.exists() {
                let gen = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/tools/gen_layer.py");
                let python = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
                eprintln!("generating {} with {}", out.display(), gen.display());
                let st = Command::new(python)
                    .arg(&gen)
                    .args([
                        "--files",
                        &args.files,
                        "--size",
                        &args.size,
                        "--seed",
                        "1",
                        "-o",
                    ])
                    .arg(&out)
                    .status()?;
                if !st.success() {
                    bail!("gen_layer.py failed");
                }
            }
            out
        }
    };
    // Rates are given in bytes of the uncompressed tar, with or without --compress.
    let tar_bytes = fs::metadata(&tar)?.len();
    let tar = match args.compress.as_deref() {
        None => tar,
        Some(kind) => {
            let out = tar.with_extension(if kind == "gzip" { "tar.gz" } else { "tar.zst" });
            if !out.exists() {
                eprintln!("compressing {} to {}", tar.display(), out.display());
                let tmp = out.with_extension("partial");
                let mut input = fs::File::open(&tar)?;
                let file = fs::File::create(&tmp)?;
                if kind == "gzip" {
                    let mut e = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                    std::io::copy(&mut input, &mut e)?;
                    e.finish()?;
                } else {
                    let mut e = zstd::stream::write::Encoder::new(file, 1)?;
                    std::io::copy(&mut input, &mut e)?;
                    e.finish()?;
                }
                fs::rename(&tmp, &out)?;
            }
            out
        }
    };

    // Warm the page cache so both runs read the tar from memory.
    let mut f = fs::File::open(&tar)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    drop(buf);

    let extract_dir = args.workdir.join("tar-xf");
    let snapshots = args.workdir.join("snapshots");
    let _ = fs::remove_dir_all(&extract_dir);
    let _ = fs::remove_dir_all(&snapshots);

    let (tar_time, tar_hwm) = run_tar_extract(&tar, args.compress.as_deref(), &extract_dir)?;
    // What tar -xf leaves in the page cache, written out: the fair comparison with an import
    // that fsyncs its regions before it commits.
    let sync_start = Instant::now();
    let synced = Command::new("sync")
        .arg("-f")
        .arg(&extract_dir)
        .status()
        .is_ok_and(|s| s.success());
    let tar_sync_time = tar_time + sync_start.elapsed();

    let hwm_before = vm_hwm_kib("self").unwrap_or(0);
    let opts = wclayer::ImportOptions {
        layer: snapshots.join("1"),
        parents: vec![],
        host_layer_path: None,
        skip_utility_vm_processing: false,
        uncompressed_digest: None,
    };
    let start = Instant::now();
    let summary = wclayer::import_layer(fs::File::open(&tar)?, &opts, &mut |_| {})?;
    let import_time = start.elapsed();
    let hwm = vm_hwm_kib("self").unwrap_or(0);
    let usage = wclayer::layer_disk_usage(&opts.layer)?;

    let rate = |d: Duration| mib(tar_bytes) / d.as_secs_f64();
    println!(
        "layer tar: {} ({:.1} MiB, uncompressed {:.1} MiB, {} entries, {:.1} MiB of file data)",
        tar.display(),
        mib(fs::metadata(&tar)?.len()),
        mib(tar_bytes),
        summary.entries,
        mib(summary.size)
    );
    println!(
        "wclayer import_layer: {:>7.2} s  {:>7.1} MiB/s  peak RSS (VmHWM) {:>7.1} MiB (before import {:.1} MiB)  image+layer on disk {:.1} MiB",
        import_time.as_secs_f64(),
        rate(import_time),
        hwm as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        mib(usage)
    );
    println!(
        "tar -xf (same tar):   {:>7.2} s  {:>7.1} MiB/s  peak RSS (VmHWM) {:>7.1} MiB",
        tar_time.as_secs_f64(),
        rate(tar_time),
        tar_hwm as f64 / 1024.0
    );
    if synced {
        println!(
            "tar -xf && sync -f:   {:>7.2} s  {:>7.1} MiB/s",
            tar_sync_time.as_secs_f64(),
            rate(tar_sync_time)
        );
    }
    println!(
        "ratio import/tar-xf: throughput {:.2}x, time {:.2}x (import fsyncs its regions at commit; tar -xf does not sync)",
        rate(import_time) / rate(tar_time),
        import_time.as_secs_f64() / tar_time.as_secs_f64()
    );
    if synced {
        println!(
            "ratio import/(tar-xf + sync): throughput {:.2}x, time {:.2}x",
            rate(import_time) / rate(tar_sync_time),
            import_time.as_secs_f64() / tar_sync_time.as_secs_f64()
        );
    }
    for n in &summary.notes {
        println!("note: {n}");
    }
    if !args.keep {
        let _ = fs::remove_dir_all(&extract_dir);
        let _ = fs::remove_dir_all(&snapshots);
    }
    Ok(())
}
