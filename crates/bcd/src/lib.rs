//! Boot Configuration Data stores (BCD) on top of regf: objects, elements and device
//! records; the offline edits hcsshim made with bcdedit for CimFS-booted utility VMs; and a
//! `bcdedit /enum all /v`-style listing.

#![warn(missing_docs)]

pub mod device;
mod edits;
pub mod element;
mod error;
pub mod guessed;
mod show;
mod store;

pub use device::{Device, DeviceElement};
pub use edits::{
    apply_cim_boot_edits, edit_store_file, CimBootParams, BOOT_CONTAINER_ID, CIMFS_OPTIONS,
    CIMFS_OPTIONS_DESCRIPTION, COMPOSITE_OPTIONS, COMPOSITE_OPTIONS_DESCRIPTION,
    COMPOSITE_SYNTAX_NUMBER, UVM_SYSTEM_ROOT, UVM_WINLOAD_PATH, VMBFS_BOOT_INSTANCE,
};
pub use element::{element_format, element_name, ids, ElementValue};
pub use error::{Error, Result};
pub use show::show;
pub use store::{
    create_object, delete_object, element_key_name, object_key_name, set_element, Element, Object,
    Store, BOOTMGR, OBJECT_TYPE_DEVICE_OPTIONS,
};
pub use uuid::Uuid;
