//! Benchmark: parse and write the 11 MiB regipy SYSTEM hive (or a hive given as argument),
//! print times, throughput and peak RSS, and the ratio against `hivexml` reading the same
//! file as a reference reader (when installed).
//!
//!     cargo run --release -p regf --example bench [HIVE]

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this process (user + system) in ms, from /proc/self/stat (USER_HZ = 100);
/// shown next to wall time because the build machine is shared.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after_name
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat (utime, stime) are items 11 and 12 after the ")".
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let default = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/hives/regipy-SYSTEM-offreg-compacted.xz"
    ));
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or(default);
    let raw = std::fs::read(&path)?;
    let bytes = if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        xz2::read::XzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        out
    } else {
        raw
    };
    let rss_before = peak_rss_kib().unwrap_or(0);
    let mib = bytes.len() as f64 / (1024.0 * 1024.0);

    let (t, c) = (Instant::now(), cpu_ms());
    let hive = regf::Hive::parse(&bytes)?;
    let (parse, parse_cpu) = (t.elapsed(), cpu_ms() - c);
    let (t, c) = (Instant::now(), cpu_ms());
    let written = hive.to_bytes()?;
    let (write, write_cpu) = (t.elapsed(), cpu_ms() - c);
    let t = Instant::now();
    let problems = regf::validate::validate(&written);
    let validate = t.elapsed();
    let rss_after = peak_rss_kib().unwrap_or(0);

    println!(
        "hive: {} ({:.1} MiB, {} keys)",
        path.display(),
        mib,
        hive.key_count()
    );
    println!(
        "parse:    {:>8.1} ms  {:>7.1} MiB/s  (cpu {parse_cpu} ms)",
        parse.as_secs_f64() * 1e3,
        mib / parse.as_secs_f64()
    );
    println!(
        "write:    {:>8.1} ms  {:>7.1} MiB/s  (cpu {write_cpu} ms; {} bytes written, {} validator problems)",
        write.as_secs_f64() * 1e3,
        mib / write.as_secs_f64(),
        written.len(),
        problems.len()
    );
    println!("validate: {:>8.1} ms", validate.as_secs_f64() * 1e3);
    println!(
        "peak RSS: {} KiB (VmHWM; {} KiB before parsing, input held in memory)",
        rss_after, rss_before
    );

    // Reference: hivexml reading the same file, in this run.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hive");
    std::fs::write(&file, &bytes)?;
    let t = Instant::now();
    match std::process::Command::new("hivexml")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {
            let r = t.elapsed();
            println!(
                "reference hivexml (read + XML out): {:.1} ms; regf parse+write is {:.2}x of it",
                r.as_secs_f64() * 1e3,
                (parse + write).as_secs_f64() / r.as_secs_f64()
            );
        }
        _ => println!("reference hivexml not available"),
    }
    Ok(())
}
