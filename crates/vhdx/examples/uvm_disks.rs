//! Prepares the utility-VM disks in a directory and prints what was made with timings:
//! `cargo run --release -p vhdx --example uvm_disks -- <dir> [<windows path of the base>]`.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: uvm_disks <dir> [<windows base path>]")?,
    );
    let opts = vhdx::UtilityVmDiskOptions {
        base_windows_path: args.next().map(|s| s.to_string_lossy().into_owned()),
    };
    let t = Instant::now();
    let base = vhdx::create_utility_vm_base(&dir)?;
    let t_base = t.elapsed();
    let t = Instant::now();
    let notes = vhdx::create_utility_vm_differencing(&dir, &opts)?;
    let t_diff = t.elapsed();
    println!(
        "disk GUID {}  partition GUID {}",
        base.disk_guid, base.partition_guid
    );
    println!(
        "steps 1-3 (create, GPT+NTFS, read back): {:.3} s",
        t_base.as_secs_f64()
    );
    println!("step 6 (differencing child): {:.3} s", t_diff.as_secs_f64());
    for n in notes {
        println!("note: {n}");
    }
    for name in [vhdx::UTILITY_VM_BASE_VHD, vhdx::UTILITY_VM_VHD] {
        let p = dir.join(name);
        let meta = std::fs::metadata(&p)?;
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        println!(
            "{name}: {} bytes apparent, {} bytes allocated",
            meta.len(),
            allocated
        );
        print!("{}", vhdx::info(&p)?);
    }
    Ok(())
}
