//! Write benchmark: a generated tree (default 50,000 files, 2 GiB) written as a CIM, compared with
//! plain std::fs writing of the same bytes into a folder, in the same run. Prints MB/s, the ratio,
//! read-back speed and peak RSS (VmHWM).
//!
//! cargo run -p cimfs --release --example bench_write -- [files] [total_bytes] [work_dir]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cimfs::{format, Cim, CimWriter, FileMetadata};

const CHUNK: usize = 64 * 1024;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// File i: (directory path, file name, size, content seed).
fn plan(files: usize, total: u64) -> Vec<(String, String, u64, u64)> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut sizes: Vec<u64> = Vec::with_capacity(files);
    let mut large = Vec::new();
    let mut used = 0u64;
    for i in 0..files {
        let r = rng.next() % 100;
        let s = if r < 60 {
            rng.next() % 4096
        } else if r < 90 {
            4096 + rng.next() % (60 * 1024)
        } else {
            large.push(i);
            0
        };
        used += s;
        sizes.push(s);
    }
    let rest = total.saturating_sub(used);
    let each = rest / large.len().max(1) as u64;
    let mut given = 0;
    for (k, &i) in large.iter().enumerate() {
        let s = if k + 1 == large.len() {
            rest - given
        } else {
            each / 2 + rng.next() % each.max(1)
        };
        let s = s.min(rest - given);
        sizes[i] = s;
        given += s;
    }
    let mut out: Vec<(String, String, u64, u64)> = sizes
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let dir = format!("Files\\d{:02}\\s{:02}", i % 20, (i / 20) % 25);
            (dir, format!("file{i:06}.bin"), s, i as u64 | 1)
        })
        .collect();
    // 2% of files repeat an earlier file's content (size and bytes), as layers often do.
    for i in (57..out.len()).step_by(50) {
        out[i].2 = out[i - 50].2;
        out[i].3 = out[i - 50].3;
    }
    out
}

fn content(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (offset / CHUNK as u64 + 1));
    for c in buf.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}

fn vm_hwm_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn sync_all() {
    // Flush dirty pages so both writers pay for getting their bytes to disk.
    let _ = std::process::Command::new("sync").status();
}

fn write_cim(dir: &Path, plan: &[(String, String, u64, u64)]) -> cimfs::CommitStats {
    let mut w = CimWriter::create(dir, "bench.cim").expect("create");
    let dmeta = FileMetadata {
        attributes: format::FILE_ATTRIBUTE_DIRECTORY,
        ..Default::default()
    };
    let mut made = std::collections::HashSet::new();
    let mut buf = vec![0u8; CHUNK];
    for (d, name, size, seed) in plan {
        let mut p = String::new();
        for c in d.split('\\') {
            if !p.is_empty() {
                p.push('\\');
            }
            p.push_str(c);
            if made.insert(p.clone()) {
                w.add(&p, &dmeta).expect("add dir");
            }
        }
        w.add(
            &format!("{d}\\{name}"),
            &FileMetadata {
                attributes: format::FILE_ATTRIBUTE_ARCHIVE,
                size: *size,
                ..Default::default()
            },
        )
        .expect("add file");
        let mut off = 0;
        while off < *size {
            let n = (*size - off).min(CHUNK as u64) as usize;
            content(*seed, off, &mut buf[..n]);
            w.write(&buf[..n]).expect("write");
            off += n as u64;
        }
    }
    w.commit().expect("commit")
}

fn write_folder(dir: &Path, plan: &[(String, String, u64, u64)]) {
    let mut buf = vec![0u8; CHUNK];
    for (d, name, size, seed) in plan {
        let dp = dir.join(d.replace('\\', "/"));
        fs::create_dir_all(&dp).expect("mkdir");
        let mut f = fs::File::create(dp.join(name)).expect("create file");
        let mut off = 0;
        while off < *size {
            let n = (*size - off).min(CHUNK as u64) as usize;
            content(*seed, off, &mut buf[..n]);
            f.write_all(&buf[..n]).expect("write");
            off += n as u64;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let files: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let total: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2 << 30);
    let base: PathBuf = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = base.join(format!("cimfs-bench-{}", std::process::id()));
    let cim_dir = work.join("cim");
    let folder = work.join("folder");
    fs::create_dir_all(&cim_dir).expect("work dir");
    fs::create_dir_all(&folder).expect("work dir");

    let plan = plan(files, total);
    let bytes: u64 = plan.iter().map(|p| p.2).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "tree: {files} files, {bytes} bytes ({:.1} MiB)",
        bytes as f64 / (1 << 20) as f64
    );
    let hwm_start = vm_hwm_kib();

    let t = Instant::now();
    let stats = write_cim(&cim_dir, &plan);
    sync_all();
    let cim_secs = t.elapsed().as_secs_f64();
    let hwm_cim = vm_hwm_kib();

    let t = Instant::now();
    write_folder(&folder, &plan);
    sync_all();
    let fs_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let cim = Cim::open(&stats.cim_path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    for (d, name, _, _) in &plan {
        let mut r = cim.open_file(&format!("{d}\\{name}")).expect("open file");
        loop {
            let n = r.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            read += n as u64;
        }
    }
    let cim_read_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut fs_read = 0u64;
    for (d, name, _, _) in &plan {
        let mut f = fs::File::open(folder.join(d.replace('\\', "/")).join(name)).expect("open");
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            fs_read += n as u64;
        }
    }
    let fs_read_secs = t.elapsed().as_secs_f64();
    assert_eq!(read, bytes);
    assert_eq!(fs_read, bytes);

    println!(
        "cimfs write: {:.2} s, {:.0} MB/s (regions: data {} B, small {} B, metadata {} B; de-dup skipped {} B in {} streams)",
        cim_secs,
        mb / cim_secs,
        stats.data_region_bytes,
        stats.small_region_bytes,
        stats.metadata_region_bytes,
        stats.dedup_bytes,
        stats.dedup_hits
    );
    println!(
        "std::fs write (reference): {:.2} s, {:.0} MB/s",
        fs_secs,
        mb / fs_secs
    );
    println!(
        "write ratio cimfs/std::fs: {:.2}x throughput",
        fs_secs / cim_secs
    );
    println!(
        "read back (page cache): cimfs {:.0} MB/s, std::fs {:.0} MB/s, ratio {:.2}x",
        mb / cim_read_secs,
        mb / fs_read_secs,
        fs_read_secs / cim_read_secs
    );
    println!(
        "peak RSS (VmHWM): {} KiB at start, {} KiB after the CIM write",
        hwm_start, hwm_cim
    );
    let _ = fs::remove_dir_all(&work);
}
