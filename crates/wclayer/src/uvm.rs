//! Utility VM processing of a layer that carries `UtilityVM\` (hcsshim c767380d6
//! `processUtilityVMLayer`, `enableCimBoot`, `getOsBuildNumberFromRegistry`): the build number
//! file, and for builds after 20348 the UVM disks (vhdx crate) and the boot-from-CIM edits of the
//! UVM's BCD (bcd crate) and SYSTEM hive (here).

use std::path::Path;

use crate::cimlayer::{open_hive_to_rewrite, write_atomically};
use crate::error::{quoted, Error, Result};
use crate::layout::{
    host_path, UTILITY_VM_DIR, UVM_BCD, UVM_BUILD_VERSION_FILE, UVM_REG_FILES_DIR,
};

/// Last build whose utility VM boots from VHDs without CIM edits (hcsshim compares `> 20348`).
pub const LAST_BUILD_WITHOUT_CIM_BOOT: u32 = 20348;
/// BCD boot container ID hcsshim writes into the UVM SYSTEM hive (`bcd.go` `bootContainerID`).
pub const BOOT_CONTAINER_GUID: &str = "{b890454c-80de-4e98-a7ab-56b74b4fbd0c}";
/// The Hyper-V "Virtual Machines" group (NT VIRTUAL MACHINE\Virtual Machines), which hcsshim's
/// `GrantVmGroupAccess` gives read access to the utility VM disks.
pub const VM_GROUP_SID: &str = "S-1-5-83-0";

/// Whether `p` is an absolute Windows path: `C:\...`, `\\server\share\...` or `\\?\C:\...`
/// (`/` is taken as `\`).
pub fn is_absolute_windows_path(p: &str) -> bool {
    split_windows_root(&p.replace('/', "\\")).is_some()
}

/// The name of the folder an absolute Windows path names (its last component below the drive
/// or share; `/` is taken as `\`), or why there is none: the path is not absolute, names a
/// drive or share itself, or ends in a name Windows cannot give a folder.
pub fn windows_folder_name(p: &str) -> std::result::Result<String, String> {
    let p = p.replace('/', "\\");
    let Some((_, rest)) = split_windows_root(&p) else {
        return Err("is not an absolute Windows path (C:\\... or \\\\server\\share\\...)".into());
    };
    let Some(name) = rest.split('\\').rfind(|c| !c.is_empty()) else {
        return Err("names a drive or share, not a layer folder".into());
    };
    if name == "." || name == ".." {
        return Err(format!("ends in {}, not a folder name", quoted(name)));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || "<>:\"|?*".contains(c))
    {
        return Err(format!(
            "ends in {}, which holds {c:?}: no Windows folder name can",
            quoted(name)
        ));
    }
    if name.ends_with(['.', ' ']) {
        return Err(format!(
            "ends in {}: Windows drops a trailing dot or space from a folder name",
            quoted(name)
        ));
    }
    // CON, NUL, COM1, LPT1.txt…: the part before the first dot names a device, not a folder.
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let device = ["CON", "PRN", "AUX", "NUL"]
        .iter()
        .any(|d| stem.eq_ignore_ascii_case(d))
        || (stem.len() == 4
            && stem
                .get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case("COM") || p.eq_ignore_ascii_case("LPT"))
            && matches!(stem.as_bytes()[3], b'1'..=b'9'));
    if device {
        return Err(format!(
            "ends in {}, a Windows device name, not a folder name",
            quoted(name)
        ));
    }
    Ok(name.to_string())
}

/// Splits an absolute Windows path (`\` separators only) into its root (`C:\`,
/// `\\server\share`, `\\?\C:\`, `\\?\UNC\server\share`) and the rest.
fn split_windows_root(p: &str) -> Option<(&str, &str)> {
    let drive = |s: &str| {
        let b = s.as_bytes();
        (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\').then_some(3)
    };
    // `server\share` at the start of `s`: the length of the two components.
    let unc = |s: &str| {
        let mut parts = s.splitn(3, '\\');
        match (parts.next(), parts.next()) {
            (Some(server), Some(share)) if !server.is_empty() && !share.is_empty() => {
                Some(server.len() + 1 + share.len())
            }
            _ => None,
        }
    };
    let root_len = if let Some(r) = p.strip_prefix(r"\\?\").or_else(|| p.strip_prefix(r"\\.\")) {
        match r.get(..4).filter(|u| u.eq_ignore_ascii_case("UNC\\")) {
            Some(_) => 8 + unc(&r[4..])?,
            None => 4 + drive(r)?,
        }
    } else if let Some(r) = p.strip_prefix(r"\\") {
        2 + unc(r)?
    } else {
        drive(p)?
    };
    Some(p.split_at(root_len))
}

/// Reads `Microsoft\Windows NT\CurrentVersion\CurrentBuild` (REG_SZ) from a SOFTWARE hive.
pub fn current_build(software: &regf::Hive) -> std::result::Result<u32, String> {
    const WHERE: &str =
        r"Microsoft\Windows NT\CurrentVersion\CurrentBuild in the UVM SOFTWARE hive";
    let value = software
        .key(r"Microsoft\Windows NT\CurrentVersion")
        .and_then(|k| k.value("CurrentBuild"))
        .ok_or_else(|| format!("no {WHERE}"))?;
    let text = match value.as_string() {
        Some(text) if value.kind == regf::REG_SZ => text,
        _ => {
            let kind = regf::format::type_name(value.kind).unwrap_or("an unknown type");
            return Err(format!("{WHERE} is {kind}, not REG_SZ"));
        }
    };
    text.trim()
        .parse()
        .map_err(|_| format!("{WHERE} is {}, not a build number", quoted(&text)))
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
    let build = current_build(&software).map_err(|e| uvm_err("read build number", e))?;
    write_atomically(
        &host_path(layer, UVM_BUILD_VERSION_FILE),
        build.to_string().as_bytes(),
    )?;
    let mut notes = Vec::new();
    if let Some(dirty) = software.dirty_notes() {
        notes.push(format!(
            "the utility VM's SOFTWARE hive is dirty (its .LOG1/.LOG2 logs hold changes the \
             file lacks), so the build number read from the file may be out of date: {dirty}"
        ));
    }
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
        let replaced = bcd::edit_store_file(&bcd_path, &params)
            .map_err(|e| uvm_err("edit BCD", e.to_string()))?;
        let system_err = |e: String| {
            uvm_err(
                "edit SYSTEM hive",
                format!("{}: {e}", system_path.display()),
            )
        };
        // The hive's and the file system's own errors name the file already.
        let mut system = open_hive_to_rewrite(&system_path)
            .map_err(|e| uvm_err("edit SYSTEM hive", e.to_string()))?;
        enable_cim_boot(&mut system);
        let bytes = system.to_bytes().map_err(|e| system_err(e.to_string()))?;
        write_atomically(&system_path, &bytes)
            .map_err(|e| uvm_err("edit SYSTEM hive", e.to_string()))?;
        Ok(replaced)
    })();
    match edits {
        Err(e) => {
            vhdx::remove_utility_vm_disks(&uvm_dir);
            return Err(e);
        }
        Ok(replaced) if !replaced.is_empty() => notes.push(
            "the BCD already held the device options of an earlier processing (a utility VM \
             exported after import): replaced with this layer's"
                .to_string(),
        ),
        Ok(_) => {}
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
    let local_cim = layer
        .file_name()
        .map(|n| format!("{}.cim", n.to_string_lossy()))
        .unwrap_or_default();
    if !relative_cim_path.ends_with(&format!(r"\{local_cim}")) {
        notes.push(format!(
            "the utility VM boots from \\{relative_cim_path} (named after the host layer path) \
             while the CIM written here is {local_cim}: the Windows host must hold it under that name"
        ));
    }
    // hcsshim calls GrantVmGroupAccess on both disks; file ACLs only exist on the Windows host.
    let disk = |name: &str| match host_layer_path {
        Some(p) => format!(
            r"{}\{UTILITY_VM_DIR}\{name}",
            p.trim_end_matches(['\\', '/'])
        ),
        None => format!(r"<layer folder>\{UTILITY_VM_DIR}\{name}"),
    };
    notes.push(format!(
        "on the Windows host, grant the Virtual Machines group ({VM_GROUP_SID}) read access to \
         both utility VM disks (hcsshim's GrantVmGroupAccess; not possible from here): \
         icacls \"{}\" /grant *{VM_GROUP_SID}:R and icacls \"{}\" /grant *{VM_GROUP_SID}:R",
        disk(vhdx::UTILITY_VM_BASE_VHD),
        disk(vhdx::UTILITY_VM_VHD)
    ));
    Ok(notes)
}
