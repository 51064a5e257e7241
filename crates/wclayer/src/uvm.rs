//! Utility VM processing of a layer that carries `UtilityVM\` (hcsshim c767380d6
//! `processUtilityVMLayer`, `enableCimBoot`, `getOsBuildNumberFromRegistry`): the build number
//! file, and for builds after 20348 the boot-from-CIM edits of the UVM's SYSTEM hive and BCD.

use std::path::Path;

use crate::cimlayer::write_atomically;
use crate::error::{Error, Result};
use crate::layout::{host_path, UVM_BUILD_VERSION_FILE, UVM_REG_FILES_DIR};

/// Last build whose utility VM boots from VHDs without CIM edits (hcsshim compares `> 20348`).
pub const LAST_BUILD_WITHOUT_CIM_BOOT: u32 = 20348;
/// BCD boot container ID hcsshim writes into the UVM SYSTEM hive (`bcd.go` `bootContainerID`).
pub const BOOT_CONTAINER_GUID: &str = "{b890454c-80de-4e98-a7ab-56b74b4fbd0c}";

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

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
        utf16z(BOOT_CONTAINER_GUID),
    );
    system
        .create_key(r"ControlSet001\Services\UnionFS")
        .set_value("Start", regf::REG_DWORD, dword(0));
    system
        .create_key(r"ControlSet001\Services\wcifs")
        .set_value("Start", regf::REG_DWORD, dword(4));
    // bootmgr loads the UVM from `UtilityVM\Files` inside the CIM; once UnionFS has merged that
    // folder, the kernel must use `\Windows\` instead of the BCD path.
    system
        .create_key("Setup")
        .set_value("BootPathOverride", regf::REG_SZ, utf16z(r"\Windows\"));
}

/// Writes `uvmbuildversion` from the UVM SOFTWARE hive; returns notes. Builds after 20348 need
/// the boot-from-CIM disks and BCD edits, which this build cannot do yet: that is an error, never
/// a silent skip.
pub(crate) fn process_utility_vm(layer: &Path, relative_cim_path: &str) -> Result<Vec<String>> {
    let uvm_err = |step, reason: String| Error::UtilityVm {
        layer: layer.to_path_buf(),
        step,
        reason,
    };
    let software_path = host_path(layer, &format!(r"{UVM_REG_FILES_DIR}\SOFTWARE"));
    if !software_path.is_file() {
        return Err(uvm_err(
            "read build number",
            format!("the layer has UtilityVM but no {UVM_REG_FILES_DIR}\\SOFTWARE"),
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
    if build > LAST_BUILD_WITHOUT_CIM_BOOT {
        return Err(uvm_err(
            "boot from CIM",
            format!(
                "utility VM processing is not supported yet (build {build} > {LAST_BUILD_WITHOUT_CIM_BOOT} needs \
                 the UVM disks and BCD edits for {relative_cim_path})"
            ),
        ));
    }
    Ok(vec![format!(
        "utility VM build {build}: no boot-from-CIM processing needed"
    )])
}
