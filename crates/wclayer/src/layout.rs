//! Where a CIM layer lives on disk, as containerd's cimfs snapshotter lays it out: the layer
//! folder `SNAPSHOTS/<id>` and its image `SNAPSHOTS/cim-layers/<id>.cim` (layer-tar.md §B12-B13),
//! plus the fixed names inside a Windows layer (hcsshim `legacy.go`, `cim/LayerWriter.go`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Folder next to the layer folders that holds every layer's CIM, regions and object IDs.
pub const CIM_LAYERS_DIR: &str = "cim-layers";
/// Marker file of a base layer: the hives are part of the root filesystem.
pub const LAYOUT_FILE: &str = "layout";
/// Contents of the layout file (hcsshim `processLayoutFile`).
pub const LAYOUT_CONTENTS: &[u8] = b"vhd-with-hives\n";
/// Host file holding the utility VM's build number (decimal, no newline).
pub const UVM_BUILD_VERSION_FILE: &str = "uvmbuildversion";
/// Layer folder holding the `<X>_BASE` and `<X>_DELTA` registry hives.
pub const HIVES_DIR: &str = "Hives";
/// Where the container's registry hives live inside a layer.
pub const REG_FILES_DIR: &str = r"Files\Windows\System32\config";
/// Layer folder holding the utility VM's files.
pub const UTILITY_VM_DIR: &str = "UtilityVM";
/// Where the utility VM's registry hives live inside a layer.
pub const UVM_REG_FILES_DIR: &str = r"UtilityVM\Files\Windows\System32\config";
/// The utility VM's BCD store inside a layer.
pub const UVM_BCD: &str = r"UtilityVM\Files\EFI\Microsoft\Boot\BCD";
/// The utility VM's boot manager inside a layer.
pub const UVM_BOOTMGR: &str = r"UtilityVM\Files\EFI\Microsoft\Boot\bootmgfw.efi";

/// A registry hive of a container layer: its name under `config` and under `Hives`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiveNames {
    /// File name under [`REG_FILES_DIR`], e.g. `SYSTEM`.
    pub name: &'static str,
    /// File name of the full hive under [`HIVES_DIR`], e.g. `SYSTEM_BASE`.
    pub base: &'static str,
    /// File name of a child layer's differencing hive under [`HIVES_DIR`], e.g. `SYSTEM_DELTA`.
    pub delta: &'static str,
}

/// The five container hives (hcsshim `cim/LayerWriter.go` `hives`).
pub const HIVES: [HiveNames; 5] = [
    HiveNames {
        name: "SYSTEM",
        base: "SYSTEM_BASE",
        delta: "SYSTEM_DELTA",
    },
    HiveNames {
        name: "SOFTWARE",
        base: "SOFTWARE_BASE",
        delta: "SOFTWARE_DELTA",
    },
    HiveNames {
        name: "SAM",
        base: "SAM_BASE",
        delta: "SAM_DELTA",
    },
    HiveNames {
        name: "SECURITY",
        base: "SECURITY_BASE",
        delta: "SECURITY_DELTA",
    },
    HiveNames {
        name: "DEFAULT",
        base: "DEFAULTUSER_BASE",
        delta: "DEFAULTUSER_DELTA",
    },
];

/// Joins a layer-relative Windows path onto a host folder, one component at a time.
pub fn host_path(layer: &Path, rel: &str) -> PathBuf {
    let mut p = layer.to_path_buf();
    p.extend(rel.split('\\'));
    p
}

/// Files written to the layer folder first and added to the CIM only after layer processing
/// (hcsshim `isStdFile`). Returns the canonical spelling used for the host copy: hives match
/// case-insensitively, utility VM files exactly, as in hcsshim.
pub fn std_file_canonical(path: &str) -> Option<String> {
    for h in &HIVES {
        let config = format!(r"{REG_FILES_DIR}\{}", h.name);
        if path.eq_ignore_ascii_case(&config) {
            return Some(config);
        }
        let delta = format!(r"{HIVES_DIR}\{}", h.delta);
        if path.eq_ignore_ascii_case(&delta) {
            return Some(delta);
        }
    }
    let uvm = [
        format!(r"{UVM_REG_FILES_DIR}\SYSTEM"),
        format!(r"{UVM_REG_FILES_DIR}\SOFTWARE"),
        UVM_BCD.to_string(),
        UVM_BOOTMGR.to_string(),
    ];
    uvm.into_iter().find(|u| u == path)
}

/// `SNAPSHOTS/<id>` → `SNAPSHOTS/cim-layers/<id>.cim`.
pub fn cim_path_for_layer(layer: &Path) -> PathBuf {
    let parent = layer.parent().unwrap_or_else(|| Path::new(""));
    let id = layer
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent.join(CIM_LAYERS_DIR).join(format!("{id}.cim"))
}

/// True when the layer's CIM exists.
pub fn is_cim_layer(layer: &Path) -> bool {
    cim_path_for_layer(layer).is_file()
}

pub(crate) fn layer_id(layer: &Path) -> Result<String> {
    let id = layer
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| Error::Layer {
            layer: layer.into(),
            reason: "the layer path has no usable last component".into(),
        })?;
    if id.eq_ignore_ascii_case(CIM_LAYERS_DIR) {
        return Err(Error::Layer {
            layer: layer.into(),
            reason: format!("{CIM_LAYERS_DIR} is the folder of the CIMs, not a layer"),
        });
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cim_path_follows_the_snapshotter_layout() {
        assert_eq!(
            cim_path_for_layer(Path::new("/var/lib/snap/snapshots/12")),
            PathBuf::from("/var/lib/snap/snapshots/cim-layers/12.cim")
        );
        assert_eq!(
            host_path(Path::new("/l"), r"Hives\SYSTEM_BASE"),
            PathBuf::from("/l/Hives/SYSTEM_BASE")
        );
    }

    #[test]
    fn layer_ids() {
        assert_eq!(layer_id(Path::new("/s/12")).unwrap(), "12");
        assert!(layer_id(Path::new("/s/cim-layers")).is_err());
        assert!(layer_id(Path::new("/s/CIM-Layers")).is_err());
        assert!(layer_id(Path::new("/")).is_err());
    }

    #[test]
    fn std_files() {
        assert_eq!(
            std_file_canonical(r"files\windows\system32\CONFIG\system").as_deref(),
            Some(r"Files\Windows\System32\config\SYSTEM")
        );
        assert_eq!(
            std_file_canonical(r"Hives\System_Delta").as_deref(),
            Some(r"Hives\SYSTEM_DELTA")
        );
        assert_eq!(
            std_file_canonical(r"Hives\DefaultUser_Delta").as_deref(),
            Some(r"Hives\DEFAULTUSER_DELTA")
        );
        assert_eq!(std_file_canonical(UVM_BCD).as_deref(), Some(UVM_BCD));
        assert_eq!(
            std_file_canonical(r"utilityvm\Files\EFI\Microsoft\Boot\BCD"),
            None
        );
        assert_eq!(std_file_canonical(r"Hives\SYSTEM_BASE"), None);
        assert_eq!(
            std_file_canonical(r"Files\Windows\System32\config\SYSTEM.LOG1"),
            None
        );
    }
}
