//! End-to-end checks of the VHDX files this crate writes against independent tools: qemu-img
//! (check, info, convert), sgdisk, ntfsinfo, vhdiinfo and dissect.hypervisor. A test whose tool
//! is not installed says so and skips.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vhdx::{
    create_differencing, create_dynamic, create_utility_vm_disks, format_gpt_ntfs,
    read_partition_info, DiskType, ParentLocator, UtilityVmDiskOptions, VhdxFile,
};

const MIB: u64 = 1 << 20;
const GIB10: u64 = 10 << 30;

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        tool.display()
    );
    text
}

fn require(tools: &[&str]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    for t in tools {
        match tool(t) {
            Some(p) => found.push(p),
            None => {
                eprintln!("skipping: {t} not found");
                return None;
            }
        }
    }
    Some(found)
}

/// Offsets of the 1 MiB windows of a sparse file that hold data (SEEK_DATA/SEEK_HOLE).
fn data_windows(path: &Path) -> Vec<u64> {
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let Ok(d) = rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(pos)) else {
            break;
        };
        let h = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(d)).unwrap();
        let mut w = d / MIB * MIB;
        while w < h {
            if out.last() != Some(&w) {
                out.push(w);
            }
            w += MIB;
        }
        pos = w.max(h);
    }
    out
}

/// Our reader and the raw image agree on every window that is data in either.
fn assert_reader_matches_raw(disk: &VhdxFile, raw: &Path, extra: &[u64]) {
    let f = File::open(raw).unwrap();
    assert_eq!(f.metadata().unwrap().len(), disk.virtual_size());
    let mut windows = data_windows(raw);
    windows.extend_from_slice(extra);
    windows.sort_unstable();
    windows.dedup();
    let mut a = vec![0u8; MIB as usize];
    let mut b = vec![0u8; MIB as usize];
    for w in &windows {
        let n = (disk.virtual_size() - w).min(MIB) as usize;
        disk.read_at(*w, &mut a[..n]).unwrap();
        f.read_exact_at(&mut b[..n], *w).unwrap();
        assert!(a[..n] == b[..n], "window at {w:#x} differs");
    }
    assert!(!windows.is_empty());
}

#[test]
fn dynamic_disk_passes_qemu_img_and_reads_back() {
    let Some(t) = require(&["qemu-img"]) else {
        return;
    };
    let qemu = &t[0];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");
    create_dynamic(&path, GIB10, MIB as u32, 512).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * MIB);
    let p = path.to_str().unwrap();
    let check = run(qemu, &["check", "-f", "vhdx", p]);
    assert!(check.contains("No errors were found"), "{check}");
    let info = run(qemu, &["info", "--output=json", "-f", "vhdx", p]);
    assert!(info.contains("\"virtual-size\": 10737418240"), "{info}");

    // Writes: unaligned, across a block boundary, in the last block, and an all-zero one.
    let mut disk = VhdxFile::open_rw(&path).unwrap();
    let pattern: Vec<u8> = (0..3 * MIB as usize / 2)
        .map(|i| (i % 251) as u8 + 1)
        .collect();
    disk.write_at(5 * MIB - 1000, &pattern).unwrap();
    disk.write_at(GIB10 - 512, &[0xAB; 512]).unwrap();
    disk.write_at(7000 * MIB, &[0u8; 4096]).unwrap();
    disk.flush().unwrap();
    // Blocks 4, 5, 6 and 10239; the all-zero write allocates nothing.
    assert_eq!(disk.info().blocks_present, 4);
    drop(disk);
    // 4 MiB skeleton + 4 payload blocks.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * MIB);

    let disk = VhdxFile::open(&path).unwrap();
    let mut back = vec![0u8; pattern.len()];
    disk.read_at(5 * MIB - 1000, &mut back).unwrap();
    assert!(back == pattern);
    let check = run(qemu, &["check", "-f", "vhdx", p]);
    assert!(check.contains("No errors were found"), "{check}");
    let raw = dir.path().join("d.raw");
    run(
        qemu,
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "raw",
            p,
            raw.to_str().unwrap(),
        ],
    );
    assert_reader_matches_raw(&disk, &raw, &[0, 7000 * MIB, GIB10 - MIB]);
    let mut tail = [0u8; 512];
    File::open(&raw)
        .unwrap()
        .read_exact_at(&mut tail, GIB10 - 512)
        .unwrap();
    assert_eq!(tail, [0xAB; 512]);
}

#[test]
fn utility_vm_disks_pass_every_oracle() {
    let Some(t) = require(&["mkntfs", "qemu-img", "sgdisk", "ntfsinfo"]) else {
        return;
    };
    let (qemu, sgdisk, ntfsinfo) = (&t[1], &t[2], &t[3]);
    let dir = tempfile::tempdir().unwrap();
    let uvm = dir.path().join("UtilityVM");
    std::fs::create_dir(&uvm).unwrap();
    let disks = create_utility_vm_disks(&uvm, &UtilityVmDiskOptions::default()).unwrap();
    assert!(disks.notes[0].contains("absolute_win32_path was not written"));
    let base = disks.base.to_str().unwrap();

    // qemu-img accepts the base and sees 10 GiB.
    let check = run(qemu, &["check", "-f", "vhdx", base]);
    assert!(check.contains("No errors were found"), "{check}");
    let info = run(qemu, &["info", "--output=json", "-f", "vhdx", base]);
    assert!(info.contains("\"virtual-size\": 10737418240"), "{info}");

    // The GPT read back through qemu-img convert + sgdisk.
    let raw = dir.path().join("base.raw");
    run(
        qemu,
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "raw",
            base,
            raw.to_str().unwrap(),
        ],
    );
    let p = run(sgdisk, &["-p", raw.to_str().unwrap()]);
    let disk_guid = disks.partition.disk_guid.to_string().to_uppercase();
    assert!(
        p.contains(&format!("Disk identifier (GUID): {disk_guid}")),
        "{p}"
    );
    assert!(p.contains("Microsoft reserved"), "{p}");
    assert!(p.contains("Basic data partition"), "{p}");
    assert!(p.contains("34           32767"), "{p}");
    assert!(p.contains("32768        20971486"), "{p}");
    let i2 = run(sgdisk, &["-i", "2", raw.to_str().unwrap()]);
    let part_guid = disks.partition.partition_guid.to_string().to_uppercase();
    assert!(
        i2.contains(&format!("Partition unique GUID: {part_guid}")),
        "{i2}"
    );
    assert!(i2.contains("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"), "{i2}");
    let v = run(sgdisk, &["-v", raw.to_str().unwrap()]);
    assert!(v.contains("No problems found"), "{v}");

    // The NTFS volume, extracted from the VHDX by qemu-img, is accepted by ntfsinfo.
    let part_len = (20_971_486u64 - 32768 + 1) * 512;
    let p2 = dir.path().join("p2.raw");
    let opts = format!(
        "driver=raw,offset={},size={part_len},file.driver=vhdx,file.file.filename={base}",
        16 * MIB
    );
    run(
        qemu,
        &[
            "convert",
            "--image-opts",
            &opts,
            "-O",
            "raw",
            p2.to_str().unwrap(),
        ],
    );
    let n = run(ntfsinfo, &["-m", p2.to_str().unwrap()]);
    assert!(n.contains("Cluster Size: 4096"), "{n}");
    assert!(n.contains("Sector Size: 512"), "{n}");

    // Our reader agrees with qemu-img's conversion, for the base and through the child.
    let base_disk = VhdxFile::open(&disks.base).unwrap();
    assert_reader_matches_raw(&base_disk, &raw, &[GIB10 - MIB, 5000 * MIB]);
    let child = VhdxFile::open(&disks.differencing).unwrap();
    assert_eq!(child.disk_type(), DiskType::Differencing);
    assert_eq!(child.virtual_disk_id(), base_disk.virtual_disk_id());
    assert_reader_matches_raw(&child, &raw, &[GIB10 - MIB]);
    assert_eq!(
        std::fs::metadata(&disks.differencing).unwrap().len(),
        4 * MIB
    );
    assert_eq!(
        read_partition_info(&disks.differencing).unwrap(),
        disks.partition
    );

    // Sparse: allocated bytes stay far below the 10 GiB virtual size (about 53 MiB).
    let info = base_disk.info();
    assert!(
        info.blocks_present > 3 && info.blocks_present < 100,
        "{info}"
    );

    vhdiinfo_reads_child(&disks.differencing, &base_disk);
    dissect_reads_child(&disks.differencing, &disks.partition);
}

fn vhdiinfo_reads_child(child: &Path, base: &VhdxFile) {
    let Some(t) = require(&["vhdiinfo"]) else {
        return;
    };
    let out = run(&t[0], &[child.to_str().unwrap()]);
    assert!(out.contains("Differential"), "{out}");
    let linkage = base.data_write_guid().to_string();
    assert!(
        out.contains(&format!("Parent identifier\t: {linkage}")),
        "{out}"
    );
    assert!(
        out.contains("10737418240") || out.contains("10 GiB"),
        "{out}"
    );
}

fn dissect_reads_child(child: &Path, want: &vhdx::PartitionInfo) {
    let py = std::env::var("CIMKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&py)
        .args(["-c", "import dissect.hypervisor"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        eprintln!("skipping: dissect.hypervisor not importable by {py}");
        return;
    }
    // Reads the GPT header and NTFS boot sector through the differencing chain.
    let script = r#"
import sys, uuid
from pathlib import Path
from dissect.hypervisor.disk.vhdx import VHDX
v = VHDX(Path(sys.argv[1]))
fh = v.open() if hasattr(v, "open") else v
fh.seek(512); h = fh.read(512)
assert h[:8] == b"EFI PART", h[:8]
disk = uuid.UUID(bytes_le=h[56:72])
fh.seek(1024); e = fh.read(256)
part = uuid.UUID(bytes_le=e[128+16:128+32])
fh.seek(16*1024*1024); boot = fh.read(512)
assert boot[3:11] == b"NTFS    ", boot[3:11]
print(disk, part)
"#;
    let out = Command::new(&py)
        .args(["-c", script, child.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dissect failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.trim(),
        format!("{} {}", want.disk_guid, want.partition_guid)
    );
}

#[test]
fn failure_at_a_step_removes_both_disks_and_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let e = create_utility_vm_disks(&missing, &UtilityVmDiskOptions::default()).unwrap_err();
    assert!(e.to_string().contains("step 1"), "{e}");

    if tool("mkntfs").is_none() {
        eprintln!("skipping the step-6 case: mkntfs not found");
        return;
    }
    // A directory where the child should go makes step 6 fail after the base was made.
    let uvm = dir.path().join("UtilityVM");
    std::fs::create_dir_all(uvm.join(vhdx::UTILITY_VM_VHD)).unwrap();
    let e = create_utility_vm_disks(&uvm, &UtilityVmDiskOptions::default()).unwrap_err();
    assert!(e.to_string().contains("step 6"), "{e}");
    assert!(!uvm.join(vhdx::UTILITY_VM_BASE_VHD).exists());
}

#[test]
fn differencing_child_reads_partially_present_blocks() {
    // Builds a child by hand-patching its BAT: block 2 PARTIALLY_PRESENT with sectors 1 and 3
    // in the child, block 3 FULLY_PRESENT, everything else from the parent.
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("p.vhdx");
    create_dynamic(&parent, 64 * MIB, MIB as u32, 512).unwrap();
    let mut p = VhdxFile::open_rw(&parent).unwrap();
    p.write_at(0, &vec![0x11u8; 8 * MIB as usize]).unwrap();
    p.flush().unwrap();
    drop(p);
    let child = dir.path().join("c.vhdx");
    create_differencing(&child, &parent, &ParentLocator::sibling("p.vhdx")).unwrap();

    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&child)
        .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 4 * MIB);
    f.set_len(7 * MIB).unwrap();
    // Sector bitmap at 4 MiB (bits 1 and 3 of chunk 0's block 2 = sectors 2*2048+1, +3).
    let first = 2 * 2048u64;
    let mut byte = [0u8; 1];
    byte[0] = 0b0000_1010;
    f.write_all_at(&byte, 4 * MIB + first / 8).unwrap();
    f.write_all_at(&vec![0x22u8; MIB as usize], 5 * MIB)
        .unwrap();
    f.write_all_at(&vec![0x33u8; MIB as usize], 6 * MIB)
        .unwrap();
    let bat = 3 * MIB;
    let entry = |state: u64, mb: u64| (state | (mb << 20)).to_le_bytes();
    f.write_all_at(&entry(7, 5), bat + 2 * 8).unwrap();
    f.write_all_at(&entry(6, 6), bat + 3 * 8).unwrap();
    // Sector bitmap entry of chunk 0 at index chunk_ratio = 4096.
    f.write_all_at(&entry(6, 4), bat + 4096 * 8).unwrap();
    drop(f);

    let c = VhdxFile::open(&child).unwrap();
    // Partially present blocks and a present sector bitmap are what a child may hold.
    let info = c.info();
    assert_eq!(info.problems_total, 0, "{info}");
    let mut buf = vec![0u8; 4 * MIB as usize];
    c.read_at(MIB, &mut buf).unwrap();
    let (b1, rest) = buf.split_at(MIB as usize);
    let (b2, b3) = rest.split_at(MIB as usize);
    assert!(b1.iter().all(|&x| x == 0x11));
    for (s, sector) in b2.chunks(512).enumerate() {
        let want = if s == 1 || s == 3 { 0x22 } else { 0x11 };
        assert!(sector.iter().all(|&x| x == want), "sector {s}");
    }
    assert!(b3[..MIB as usize].iter().all(|&x| x == 0x33));
    assert!(b3[MIB as usize..].iter().all(|&x| x == 0x11));
    // An unaligned read across the partial sectors.
    let mut small = [0u8; 600];
    c.read_at(2 * MIB + 500, &mut small).unwrap();
    assert!(small[..12].iter().all(|&x| x == 0x11));
    assert!(small[12..524].iter().all(|&x| x == 0x22));
    assert!(small[524..].iter().all(|&x| x == 0x11));
    // A changed parent is refused (parent_linkage no longer matches).
    let mut p = VhdxFile::open_rw(&parent).unwrap();
    p.write_at(0, &[1]).unwrap();
    drop(p);
    let e = VhdxFile::open(&child).unwrap_err();
    assert!(e.to_string().contains("parent_linkage"), "{e}");
    // And formatting is refused on a differencing disk.
    assert!(format_gpt_ntfs(&child).is_err());
}

#[test]
fn small_4k_sector_disk_formats_and_reads_back() {
    let Some(t) = require(&["mkntfs", "ntfsinfo"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.vhdx");
    create_dynamic(&path, 64 * MIB, MIB as u32, 4096).unwrap();
    let made = format_gpt_ntfs(&path).unwrap();
    assert_eq!(read_partition_info(&path).unwrap(), made);
    // Extract the data partition with our own reader and let ntfsinfo check it.
    let disk = VhdxFile::open(&path).unwrap();
    let first = 16 * MIB;
    // Last usable LBA (inclusive) = sectors - 2 - 4 entry sectors.
    let end = (64 * MIB / 4096 - 5) * 4096;
    let mut part = vec![0u8; (end - first) as usize];
    disk.read_at(first, &mut part).unwrap();
    let p = dir.path().join("p.raw");
    std::fs::write(&p, &part).unwrap();
    let n = run(&t[1], &["-m", p.to_str().unwrap()]);
    assert!(n.contains("Sector Size: 4096"), "{n}");
    // The backup boot sector (last sector of the partition) equals the boot sector.
    assert_eq!(part[..4096], part[part.len() - 4096..]);
    // The boot sector's hidden-sectors field is the partition start in 4 KiB sectors.
    assert_eq!(
        u32::from_le_bytes([part[28], part[29], part[30], part[31]]),
        4096
    );
}
