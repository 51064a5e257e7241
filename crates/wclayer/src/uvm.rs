//! Utility VM processing of a layer that carries `UtilityVM\` (hcsshim c767380d6
//! `processUtilityVMLayer`, `enableCimBoot`, `getOsBuildNumberFromRegistry`): the build number
//! file, and for builds after 20348 the UVM disks (vhdx crate) and the boot-from-CIM edits of the
//! UVM's BCD (bcd crate) and SYSTEM hive (here).

use std::path::Path;

use crate::cimlayer::write_atomically;
use crate::error::{Error, Result};
use crate::layout::{
    host_path, UTILITY_VM_DIR, UVM_BCD, UVM_BUILD_VERSION_FILE, UVM_REG_FILES_DIR,
};

/// Last build whose utility VM boots from VHDs without CIM edits (hcsshim compares `> 20348`).
pub const LAST_BUILD_WITHOUT_CIM_BOOT: u32 = 20348;
/// BCD boot container ID hcsshim writes into the UVM SYSTEM hive (`bcd.go` `bootContainerID`).
pub const BOOT_CONTAINER_GUID: &str = "{b890454c-80de-4e98-a7ab-56b74b4fbd0c}";

/// Reads `Microsoft\Windows NT\CurrentVersion\CurrentBuild` (REG_SZ) from a SOFTWARE hive.
pub fn current_build(software: &regf::Hive) -> Option<u32> {
    let value = software
        .key(r"Microsoft\Windows NT\CurrentVersion")?
        .value("CurrentBuild")?;
    if value.kind != regf::REG_SZ {
        return None;
    }
    value.as_string()?.trim().parse().ok()
}

/// The SYSTEM hive edits that let a utility VM boot from a CIM (hcsshim `enableCimBoot`).
pub fn enable_cim_boot(system: &mut regf::Hive) {
    let dword = |v: u32| v.to_le_bytes().to_vec();
    system.create_key(r"ControlSet001\Control").set_value(
        "BootContainerGuid",
        regf::REG_SZ,
        regf::encode_sz(BOOT_CONTAINER_GUID),
    );
    system
        .create_key(r"ControlSet001\Services\UnionFS")
        .set_value("Start", regf::REG_DWORD, dword(0));
    system
        .create_key(r"ControlSet001\Services\wcifs")
        .set_value("Start", regf::REG_DWORD, dword(4));
    // bootmgr loads the UVM from `UtilityVM\Files` inside the CIM; once UnionFS has merged that
    // folder, the kernel must use `\Windows\` instead of the BCD path.
    system.create_key("Setup").set_value(
        "BootPathOverride",
        regf::REG_SZ,
        regf::encode_sz(r"\Windows\"),
    );
}

/// Utility VM processing (hcsshim c767380d6 `processUtilityVMLayer`): writes `uvmbuildversion`
/// from the UVM SOFTWARE hive; for builds after 20348 also, in hcsshim's order, (1-3) creates and
/// formats `UtilityVM\SystemTemplateBase.vhdx` and reads its GUIDs back, (4) edits the UVM BCD to
/// boot from this layer's CIM, (5) applies `enable_cim_boot` to the UVM SYSTEM hive, (6) creates
/// the differencing `SystemTemplate.vhdx`. The edited BCD and SYSTEM reach the CIM afterwards as
/// std files. On error both disks are removed and the error names the step. Returns notes.
pub(crate) fn process_utility_vm(
    layer: &Path,
    relative_cim_path: &str,
    host_layer_path: Option<&str>,
) -> Result<Vec<String>> {
    let uvm_err = |step, reason: String| Error::UtilityVm {
        layer: layer.to_path_buf(),
        step,
        reason,
    };
    let software_path = host_path(layer, &format!(r"{UVM_REG_FILES_DIR}\SOFTWARE"));
    if !software_path.is_file() {
        return Err(uvm_err(
            "read build number",
            format!(r"the layer has UtilityVM but no {UVM_REG_FILES_DIR}\SOFTWARE"),
        ));
    }
    let software = regf::Hive::open(&software_path).map_err(|source| Error::Hive {
        path: software_path.clone(),
        source: Box::new(source),
    })?;
    let build = current_build(&software).ok_or_else(|| {
        uvm_err(
            "read build number",
            r"no REG_SZ Microsoft\Windows NT\CurrentVersion\CurrentBuild in the UVM SOFTWARE hive"
                .into(),
        )
    })?;
    write_atomically(
        &host_path(layer, UVM_BUILD_VERSION_FILE),
        build.to_string().as_bytes(),
    )?;
    let mut notes = vec![format!("utility VM build {build}")];
    if build <= LAST_BUILD_WITHOUT_CIM_BOOT {
        notes.push(format!("utility VM build {build} <= {LAST_BUILD_WITHOUT_CIM_BOOT}: no boot-from-CIM processing"));
        return Ok(notes);
    }
    let uvm_dir = host_path(layer, UTILITY_VM_DIR);
    let bcd_path = host_path(layer, UVM_BCD);
    let system_path = host_path(layer, &format!(r"{UVM_REG_FILES_DIR}\SYSTEM"));
    for (step, p, what) in [
        ("edit BCD", &bcd_path, UVM_BCD),
        (
            "edit SYSTEM hive",
            &system_path,
            r"UtilityVM\...\config\SYSTEM",
        ),
    ] {
        if !p.is_file() {
            return Err(uvm_err(step, format!("the layer has no {what}")));
        }
    }
    let disk_err = |e: vhdx::Error| uvm_err("utility VM disks", e.to_string());
    let partition = vhdx::create_utility_vm_base(&uvm_dir).map_err(disk_err)?;
    let edits = (|| {
        let params = bcd::CimBootParams {
            disk_guid: partition.disk_guid,
            partition_guid: partition.partition_guid,
            cim_root: format!(r"\{relative_cim_path}"),
        };
        bcd::edit_store_file(&bcd_path, &params).map_err(|e| uvm_err("edit BCD", e.to_string()))?;
        let mut system = regf::Hive::open(&system_path).map_err(|e| {
            uvm_err(
                "edit SYSTEM hive",
                format!("{}: {e}", system_path.display()),
            )
        })?;
        enable_cim_boot(&mut system);
        let bytes = system
            .to_bytes()
            .map_err(|e| uvm_err("edit SYSTEM hive", e.to_string()))?;
        write_atomically(&system_path, &bytes)
    })();
    if let Err(e) = edits {
        vhdx::remove_utility_vm_disks(&uvm_dir);
        return Err(e);
    }
    let opts = vhdx::UtilityVmDiskOptions {
        base_windows_path: host_layer_path.map(|p| {
            format!(
                r"{}\{UTILITY_VM_DIR}\{}",
                p.trim_end_matches(['\\', '/']),
                vhdx::UTILITY_VM_BASE_VHD
            )
        }),
    };
    notes.extend(vhdx::create_utility_vm_differencing(&uvm_dir, &opts).map_err(disk_err)?);
    notes.push(format!(
        "utility VM build {build}: SystemTemplateBase.vhdx (disk {}, partition {}), SystemTemplate.vhdx, \
         BCD and SYSTEM edited to boot from \\{relative_cim_path}",
        partition.disk_guid, partition.partition_guid
    ));
    Ok(notes)
}
