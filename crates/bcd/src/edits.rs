//! hcsshim's updateBcdStoreForBoot (internal/wclayer/cim/bcd.go, c767380d6): the eleven
//! `bcdedit /offline` calls that make a utility VM boot from a CimFS layer behind a composite
//! device, done as hive edits (bcd.md §5).

use std::path::Path;

use regf::Hive;
use uuid::Uuid;

use crate::device::DeviceElement;
use crate::element::{ids, ElementValue};
use crate::error::{Error, Result};
use crate::store::{create_object, delete_object, set_element, Store, OBJECT_TYPE_DEVICE_OPTIONS};

/// The CimFS device-options object hcsshim creates.
pub const CIMFS_OPTIONS: Uuid = uuid::uuid!("763e9fea-502d-434f-aad9-5fabe9c91a7b");
/// The composite device-options object hcsshim creates.
pub const COMPOSITE_OPTIONS: Uuid = uuid::uuid!("e1787220-d17f-49e7-977a-d8fe4c8537e2");
/// hcsshim's "bootContainerID": the CimFS device's target mount volume.
pub const BOOT_CONTAINER_ID: Uuid = uuid::uuid!("b890454c-80de-4e98-a7ab-56b74b4fbd0c");
/// VmbFs BOOT instance: the CimFS parent device `vmbus={...}`.
pub const VMBFS_BOOT_INSTANCE: Uuid = uuid::uuid!("c63c9bdf-5fa5-4208-b03f-6b458b365592");
/// Description given with `/create ... /d` to the CimFS device-options object.
pub const CIMFS_OPTIONS_DESCRIPTION: &str = "CimFS Device Options";
/// Description given with `/create ... /d` to the composite device-options object.
pub const COMPOSITE_OPTIONS_DESCRIPTION: &str = "Composite Device Options";
/// `{default}`'s new path: the utility VM's winload.efi.
pub const UVM_WINLOAD_PATH: &str = "\\UtilityVM\\Files\\Windows\\System32\\winload.efi";
/// `{default}`'s new systemroot: the utility VM's Windows directory.
pub const UVM_SYSTEM_ROOT: &str = "\\UtilityVM\\Files\\Windows";
/// The "0" of `composite=0,{...}`: stored as the record's version (bcd.md §4.8, [?]).
pub const COMPOSITE_SYNTAX_NUMBER: u32 = 0;

/// What the edits need: the scratch VHD's GUIDs and the layer CIM's path inside the boot
/// container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CimBootParams {
    /// GPT disk GUID of SystemTemplateBase.vhdx.
    pub disk_guid: Uuid,
    /// Unique GUID of its basic-data partition.
    pub partition_guid: Uuid,
    /// `\cim-layers\<id>.cim`: `\` + the CIM's directory name + `\` + its file name.
    pub cim_root: String,
}

impl CimBootParams {
    /// Params with `cim_root` made from a CIM path the way hcsshim does
    /// (`SNAPSHOTS/cim-layers/12.cim` → `\cim-layers\12.cim`).
    pub fn for_cim(disk_guid: Uuid, partition_guid: Uuid, cim_path: &Path) -> Result<Self> {
        let name = cim_path.file_name().and_then(|n| n.to_str());
        let dir = cim_path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        match (dir, name) {
            (Some(d), Some(n)) => Ok(CimBootParams {
                disk_guid,
                partition_guid,
                cim_root: format!("\\{d}\\{n}"),
            }),
            _ => Err(Error::InvalidArgument(format!(
                "{} has no directory and file name",
                cim_path.display()
            ))),
        }
    }
}

/// Applies hcsshim's eleven bcdedit edits to a BCD store. Checks everything that can fail
/// first ({default} resolves, the two options objects are new), so on error the hive is
/// unchanged.
pub fn apply_cim_boot_edits(hive: &mut Hive, p: &CimBootParams) -> Result<()> {
    if p.cim_root.is_empty() || p.cim_root.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "cim_root {} is empty or contains NUL",
            crate::error::quote(&p.cim_root)
        )));
    }
    let store = Store::open(hive)?;
    let default = store.default_object()?;
    if store.object(&default).is_none() {
        return Err(Error::NoDefault(format!(
            "{{default}} names {{{default}}}, which is not in the store"
        )));
    }
    for id in [CIMFS_OPTIONS, COMPOSITE_OPTIONS] {
        if store.object(&id).is_some() {
            return Err(Error::ObjectExists(id));
        }
    }
    let composite = ElementValue::Device(DeviceElement::composite(
        COMPOSITE_SYNTAX_NUMBER,
        COMPOSITE_OPTIONS,
    ));
    // 1. /set {default} restartonfailure yes
    set_element(
        hive,
        &default,
        ids::RESTART_ON_FAILURE,
        &ElementValue::Boolean(true),
    )?;
    // 2. /create {cimfs options} /d "CimFS Device Options" /device
    create_object(
        hive,
        &CIMFS_OPTIONS,
        OBJECT_TYPE_DEVICE_OPTIONS,
        Some(CIMFS_OPTIONS_DESCRIPTION),
    )?;
    // 3. /set {cimfs options} cimfsparentdevice vmbus={VmbFs boot instance}
    set_element(
        hive,
        &CIMFS_OPTIONS,
        ids::CIMFS_PARENT_DEVICE,
        &ElementValue::Device(DeviceElement::vmbus(VMBFS_BOOT_INSTANCE)),
    )?;
    // 4. /set {cimfs options} cimfsrootdirectory \cim-layers\<id>.cim
    set_element(
        hive,
        &CIMFS_OPTIONS,
        ids::CIMFS_ROOT_DIRECTORY,
        &ElementValue::String(p.cim_root.clone()),
    )?;
    // 5. /create {composite options} /d "Composite Device Options" /device
    create_object(
        hive,
        &COMPOSITE_OPTIONS,
        OBJECT_TYPE_DEVICE_OPTIONS,
        Some(COMPOSITE_OPTIONS_DESCRIPTION),
    )?;
    // 6. /set {composite options} primarydevice gpt_partition={disk};{partition}
    set_element(
        hive,
        &COMPOSITE_OPTIONS,
        ids::PRIMARY_DEVICE,
        &ElementValue::Device(DeviceElement::gpt_partition(p.disk_guid, p.partition_guid)),
    )?;
    // 7. /set {composite options} secondarydevice cimfs={boot container},{cimfs options}
    set_element(
        hive,
        &COMPOSITE_OPTIONS,
        ids::SECONDARY_DEVICE,
        &ElementValue::Device(DeviceElement::cimfs(BOOT_CONTAINER_ID, CIMFS_OPTIONS)),
    )?;
    // 8-9. /set {default} device|osdevice composite=0,{composite options}
    set_element(hive, &default, ids::APPLICATION_DEVICE, &composite)?;
    set_element(hive, &default, ids::OS_DEVICE, &composite)?;
    // 10-11. /set {default} path ... ; /set {default} systemroot ...
    set_element(
        hive,
        &default,
        ids::APPLICATION_PATH,
        &ElementValue::String(UVM_WINLOAD_PATH.into()),
    )?;
    set_element(
        hive,
        &default,
        ids::SYSTEM_ROOT,
        &ElementValue::String(UVM_SYSTEM_ROOT.into()),
    )
}

/// Applies [`apply_cim_boot_edits`] to the BCD file at `path` (e.g.
/// `<layer>\UtilityVM\Files\EFI\Microsoft\Boot\BCD`): refuses a dirty hive, replaces
/// the two device-options objects an earlier run of these edits left (a utility VM exported
/// after processing and imported again), and replaces the file's contents only once the
/// edited hive is written in full (as [`Hive::save`] does: mode, owner, symlink and hard
/// links kept). Returns the ids of the objects it replaced.
pub fn edit_store_file(path: &Path, p: &CimBootParams) -> Result<Vec<Uuid>> {
    let mut hive = Hive::open(path)?;
    if let Some(notes) = hive.dirty_notes() {
        return Err(Error::Dirty {
            path: path.to_path_buf(),
            notes,
        });
    }
    let earlier: Vec<Uuid> = {
        let store = Store::open(&hive)?;
        [CIMFS_OPTIONS, COMPOSITE_OPTIONS]
            .into_iter()
            .filter(|id| {
                store
                    .object(id)
                    .is_some_and(|o| o.object_type() == Some(OBJECT_TYPE_DEVICE_OPTIONS))
            })
            .collect()
    };
    for id in &earlier {
        delete_object(&mut hive, id);
    }
    apply_cim_boot_edits(&mut hive, p)?;
    hive.save(path)?;
    Ok(earlier)
}
