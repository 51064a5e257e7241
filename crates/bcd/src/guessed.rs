//! The device-record layouts nobody has published a real sample of (bcd.md §4.6-4.8, §7):
//! VMBus, CimFS and composite devices. Every guessed number lives here, so one run of real
//! bcdedit can settle them by editing this file and the golden test in tests/golden.rs.

use uuid::Uuid;

/// On-disk device type of a VMBus device (RE-H, BH25: `[H]`).
pub const DEVICE_TYPE_VMBUS: u32 = 7;
/// On-disk device type of a composite device (BH25, DU-C: `[H]`).
pub const DEVICE_TYPE_COMPOSITE: u32 = 10;
/// On-disk device type of a CimFS device (BH25, DU-C: `[H]`).
pub const DEVICE_TYPE_CIMFS: u32 = 11;

/// VMBus record size: 0x48 like the other fixed-size kinds (bcd.md §4.6, `[L]`; 0x30 possible).
pub const VMBUS_RECORD_SIZE: u32 = 0x48;
/// The interface type written beside `vmbus={instance}`: the VmbFs class GUID from OpenVMM's
/// vmbfs protocol (bcd.md §4.6, `[L/M]`; bcdedit may write zeros instead).
pub const VMBUS_INTERFACE_TYPE: Uuid = uuid::uuid!("c376c1c3-d276-48d2-90a9-c04748072c60");
/// Record offset of the VMBus interface type GUID (RE-H: the identifier is
/// {InterfaceType, InterfaceInstance}).
pub const VMBUS_INTERFACE_TYPE_AT: usize = 0x10;
/// Record offset of the VMBus interface instance GUID.
pub const VMBUS_INSTANCE_AT: usize = 0x20;

/// CimFS record size: header 16 + 4 × u32 + GUID, as DU-C computes it (bcd.md §4.7, `[L]`).
pub const CIMFS_RECORD_SIZE: u32 = 0x30;
/// The only CimFS record version DU-C writes fields for (bcd.md §4.7).
pub const CIMFS_VERSION: u32 = 2;
/// Record offset of the CimFS record version (u32). The CimFS field offsets follow DU-C
/// `CimfsDeviceRecord` (`[M]`).
pub const CIMFS_VERSION_AT: usize = 0x10;
/// Record offset of the CimFS inline parent device offset (u32, 0 = none).
pub const CIMFS_PARENT_OFFSET_AT: usize = 0x14;
/// Record offset of the CimFS inline root path offset (u32, 0 = none).
pub const CIMFS_ROOT_PATH_OFFSET_AT: usize = 0x18;
/// Record offset of the CimFS root path length in bytes (u32, 0 = none).
pub const CIMFS_ROOT_PATH_LENGTH_AT: usize = 0x1C;
/// Record offset of the CimFS target mount volume GUID.
pub const CIMFS_TARGET_VOLUME_AT: usize = 0x20;

/// Composite record size: header 16 + GUID + 3 × u32, as DU-C computes it (bcd.md §4.8, `[L]`).
pub const COMPOSITE_RECORD_SIZE: u32 = 0x2C;
/// Record offset of the composite "Signature" GUID. The composite field offsets follow DU-C
/// `CompositeDeviceRecord` (`[M]`).
pub const COMPOSITE_SIGNATURE_AT: usize = 0x10;
/// Record offset of the composite version (u32).
pub const COMPOSITE_VERSION_AT: usize = 0x20;
/// Record offset of the composite inline primary device offset (u32, 0 = none).
pub const COMPOSITE_PRIMARY_OFFSET_AT: usize = 0x24;
/// Record offset of the composite inline secondary device offset (u32, 0 = none).
pub const COMPOSITE_SECONDARY_OFFSET_AT: usize = 0x28;
/// The composite "Signature" GUID is of unknown meaning; written as zero (bcd.md §4.8, `[?]`).
pub const COMPOSITE_SIGNATURE: Uuid = Uuid::nil();

/// Flags word of all three records: 0 as DU-C leaves it (bcd.md §7, `[L]`).
pub const GUESSED_RECORD_FLAGS: u32 = 0;
