//! The VHDX part of hcsshim's processUtilityVMLayer (2feaacb46..e0c52cd23, vhdx.md §0): the
//! formatted base disk, its partition GUIDs, and the differencing child created only after the
//! base is final. Any failure removes both disks and names the step.

use std::path::{Path, PathBuf};

use crate::create::{create_differencing, create_dynamic, ParentLocator};
use crate::error::{Error, Result};
use crate::gpt::PartitionInfo;
use crate::ntfs::{format_gpt_ntfs, read_partition_info};

/// `wclayer.UtilityVMBaseVhd`.
pub const UTILITY_VM_BASE_VHD: &str = "SystemTemplateBase.vhdx";
/// `wclayer.UtilityVMScratchVhd`.
pub const UTILITY_VM_VHD: &str = "SystemTemplate.vhdx";
/// hcsshim passes MaximumSize = 10 GiB.
pub const UTILITY_VM_DISK_SIZE: u64 = 10 << 30;
/// hcsshim passes BlockSizeInBytes = 1 MiB.
pub const UTILITY_VM_BLOCK_SIZE: u32 = 1 << 20;
/// SectorSizeInBytes = 0 gives the default 512.
pub const UTILITY_VM_SECTOR_SIZE: u32 = 512;

/// The step of the utility-VM disk preparation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvmStep {
    /// 1: create the dynamic base VHDX.
    CreateBase,
    /// 2: GPT + MSR + NTFS (HcsFormatWritableLayerVhd).
    Format,
    /// 3: read disk and partition GUIDs back (GetScratchVhdPartitionInfo).
    ReadPartitionInfo,
    /// 6: create the differencing child.
    CreateDifferencing,
}

impl std::fmt::Display for UvmStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UvmStep::CreateBase => "1 (create SystemTemplateBase.vhdx)",
            UvmStep::Format => "2 (format GPT + NTFS)",
            UvmStep::ReadPartitionInfo => "3 (read disk and partition GUIDs)",
            UvmStep::CreateDifferencing => "6 (create differencing SystemTemplate.vhdx)",
        })
    }
}

/// Choices the Linux side cannot make on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UtilityVmDiskOptions {
    /// Where `SystemTemplateBase.vhdx` will live on the Windows host (e.g.
    /// `C:\...\snapshots\12\UtilityVM\SystemTemplateBase.vhdx`): written as the child's
    /// `absolute_win32_path`, which is what finds the parent once hcsshim copies the child
    /// elsewhere as sandbox.vhdx (vhdx.md §4.4).
    pub base_windows_path: Option<String>,
}

/// What [`create_utility_vm_disks`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtilityVmDisks {
    /// Path of `SystemTemplateBase.vhdx`, the formatted base disk.
    pub base: PathBuf,
    /// Path of `SystemTemplate.vhdx`, the base's differencing child.
    pub differencing: PathBuf,
    /// Read back from the base file (for the BCD `gpt_partition=` device).
    pub partition: PartitionInfo,
    /// Things the caller should tell the user (e.g. which parent paths were written).
    pub notes: Vec<String>,
}

/// Steps 1-3 and 6 in hcsshim's order: `<utility_vm_dir>\SystemTemplateBase.vhdx` created and
/// formatted, its GUIDs read back from the file, then `SystemTemplate.vhdx` as its child.
/// On error both files are removed and the error names the step.
pub fn create_utility_vm_disks(
    utility_vm_dir: &Path,
    opts: &UtilityVmDiskOptions,
) -> Result<UtilityVmDisks> {
    let partition = create_utility_vm_base(utility_vm_dir)?;
    let notes = create_utility_vm_differencing(utility_vm_dir, opts)?;
    Ok(UtilityVmDisks {
        base: utility_vm_dir.join(UTILITY_VM_BASE_VHD),
        differencing: utility_vm_dir.join(UTILITY_VM_VHD),
        partition,
        notes,
    })
}

/// Steps 1-3 only (for callers that edit the BCD between step 3 and step 6, as hcsshim does).
/// On error the base is removed.
pub fn create_utility_vm_base(utility_vm_dir: &Path) -> Result<PartitionInfo> {
    let base = utility_vm_dir.join(UTILITY_VM_BASE_VHD);
    let fail = |step, e: Error| {
        remove_utility_vm_disks(utility_vm_dir);
        Error::UtilityVm {
            step,
            source: Box::new(e),
        }
    };
    create_dynamic(
        &base,
        UTILITY_VM_DISK_SIZE,
        UTILITY_VM_BLOCK_SIZE,
        UTILITY_VM_SECTOR_SIZE,
    )
    .map_err(|e| fail(UvmStep::CreateBase, e))?;
    format_gpt_ntfs(&base).map_err(|e| fail(UvmStep::Format, e))?;
    read_partition_info(&base).map_err(|e| fail(UvmStep::ReadPartitionInfo, e))
}

/// Step 6: the differencing child of the (final) base. Returns notes on what the parent
/// locator holds. On error both disks are removed.
pub fn create_utility_vm_differencing(
    utility_vm_dir: &Path,
    opts: &UtilityVmDiskOptions,
) -> Result<Vec<String>> {
    let base = utility_vm_dir.join(UTILITY_VM_BASE_VHD);
    let child = utility_vm_dir.join(UTILITY_VM_VHD);
    let mut locator = ParentLocator::sibling(UTILITY_VM_BASE_VHD);
    let mut notes = Vec::new();
    match &opts.base_windows_path {
        Some(p) => {
            locator.absolute_win32_path = Some(p.clone());
            notes.push(format!(
                "{UTILITY_VM_VHD}: parent locator holds relative_path {} and absolute_win32_path {p}",
                locator.relative_path
            ));
        }
        None => notes.push(format!(
            "{UTILITY_VM_VHD}: parent locator holds parent_linkage and relative_path {} only; \
             absolute_win32_path was not written because the base's Windows path is unknown, so a \
             copy of the child in another directory will not find its parent",
            locator.relative_path
        )),
    }
    match create_differencing(&child, &base, &locator) {
        Ok(()) => Ok(notes),
        Err(e) => {
            remove_utility_vm_disks(utility_vm_dir);
            Err(Error::UtilityVm {
                step: UvmStep::CreateDifferencing,
                source: Box::new(e),
            })
        }
    }
}

/// Removes both utility-VM disks if present (what hcsshim's deferred cleanup does on failure).
/// Missing files are not an error; other removal failures are ignored so the original error
/// stays the one reported.
pub fn remove_utility_vm_disks(utility_vm_dir: &Path) {
    for name in [UTILITY_VM_VHD, UTILITY_VM_BASE_VHD] {
        let _ = std::fs::remove_file(utility_vm_dir.join(name));
    }
}
