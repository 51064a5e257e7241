//! VHDX virtual disks (MS-VHDX): create dynamic and differencing files, replay a dirty log,
//! read and write them through the BAT, lay down the GPT + NTFS of a Windows scratch disk, read
//! its GUIDs back, and prepare the utility-VM disks of hcsshim's processUtilityVMLayer.

#![warn(missing_docs)]

mod create;
mod error;
mod file;
pub mod format;
pub mod gpt;
mod log;
mod ntfs;
mod posio;
mod uvm;

pub use create::{
    create_differencing, create_dynamic, ParentLocator, DEFAULT_PHYSICAL_SECTOR_SIZE,
};
pub use error::{Error, Result};
pub use file::{info, DiskType, LogReplay, ReplayedLog, VhdxFile, VhdxInfo, MAX_LISTED_PROBLEMS};
pub use gpt::PartitionInfo;
pub use ntfs::{format_gpt_ntfs, read_partition_info, DATA_PARTITION_OFFSET, NTFS_CLUSTER_SIZE};
pub use uuid::Uuid;
pub use uvm::{
    create_utility_vm_base, create_utility_vm_differencing, create_utility_vm_disks,
    remove_utility_vm_disks, UtilityVmDiskOptions, UtilityVmDisks, UvmStep, UTILITY_VM_BASE_VHD,
    UTILITY_VM_BLOCK_SIZE, UTILITY_VM_DISK_SIZE, UTILITY_VM_SECTOR_SIZE, UTILITY_VM_VHD,
};
