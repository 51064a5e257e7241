//! The CIM layer writer (hcsshim `CimLayerWriter`): entries go straight into a new or forked CIM,
//! except "std files" (hives, UVM boot files) which go to the layer folder first and enter the
//! CIM after layer processing; plus `import_layer`, which ties tar reading, writing and commit.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cimfs::{CimWriter, FileMetadata};
use sha2::{Digest as _, Sha256};

use crate::backuptar::{is_directory, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_NORMAL};
use crate::error::{Error, Result};
use crate::importlock::ImportLock;
use crate::layout::{
    cim_path_for_layer, host_path, is_cim_layer, layer_id, std_file_canonical, HIVES, HIVES_DIR,
    LAYOUT_CONTENTS, LAYOUT_FILE, REG_FILES_DIR, UTILITY_VM_DIR,
};
use crate::tarstream::{
    blame_input, decompressed_kind, write_layer_counted, write_layer_pipelined, Compression,
    CountingReader, Progress,
};
use crate::uvm;
use crate::writer::LayerWriter;

/// What to import and where.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The layer folder `SNAPSHOTS/<id>`; must be absent or empty.
    pub layer: PathBuf,
    /// Parent layer folders, nearest first; empty for a base layer.
    pub parents: Vec<PathBuf>,
    /// The layer folder as the Windows host will see it (e.g. `C:\ProgramData\containerd\...\12`).
    /// Used for utility VM layers: its last component names the CIM in the UVM's BCD (when it
    /// differs from the local folder name), and it gives SystemTemplate.vhdx the absolute
    /// Windows path of its parent disk.
    pub host_layer_path: Option<String>,
    /// Store a `UtilityVM` tree exactly as the tar has it: no `uvmbuildversion`, no VHDX disks,
    /// no BCD or SYSTEM edits. hcsshim has done so since its utility-VM processing was removed
    /// (commit e0c52cd23, March 2024); the default follows the earlier seed, which processes it.
    pub skip_utility_vm_processing: bool,
    /// `sha256:<hex>` the uncompressed tar must hash to (an OCI layer's `diff_id`): checked over
    /// every byte of it, and the import fails (leaving nothing) when it differs.
    pub uncompressed_digest: Option<String>,
}

/// The result of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Sum of regular-file sizes (hcsshim's return value).
    pub size: u64,
    /// Tar entries processed.
    pub entries: u64,
    /// The committed CIM.
    pub cim_path: PathBuf,
    /// Things worth telling the user (skipped headers, whiteouts of missing files...).
    pub notes: Vec<String>,
}

/// A layer operation replayed into the CIM after processing, in tar order.
#[derive(Debug)]
enum PendingOp {
    /// Add the host copy of a std file with its tar metadata.
    AddHostFile {
        cim_path: String,
        host: PathBuf,
        info: FileMetadata,
    },
    AddDir {
        cim_path: String,
    },
    Link {
        name: String,
        target: String,
    },
}

impl PendingOp {
    /// Add a file that layer processing wrote to the layer folder: it has no tar metadata, so
    /// it enters the CIM as FILE_ATTRIBUTE_NORMAL with zero times and an empty SD.
    fn generated_file(cim_path: String, host: PathBuf) -> PendingOp {
        PendingOp::AddHostFile {
            cim_path,
            host,
            info: FileMetadata {
                attributes: FILE_ATTRIBUTE_NORMAL,
                ..FileMetadata::default()
            },
        }
    }
}

/// The stream `write` goes to.
enum Active {
    None,
    Cim {
        name: String,
        left: u64,
    },
    Host {
        name: String,
        tmp: PathBuf,
        dest: PathBuf,
        out: BufWriter<File>,
        left: u64,
    },
}

/// Writes one layer: a CIM (forked from the nearest parent's) plus the std files in the layer
/// folder. Dropping it without `close` commits nothing.
pub struct CimLayerWriter {
    layer: PathBuf,
    parents: Vec<PathBuf>,
    cim_path: PathBuf,
    relative_cim_path: String,
    host_layer_path: Option<String>,
    cim: Option<CimWriter>,
    active: Active,
    pending: Vec<PendingOp>,
    has_utility_vm: bool,
    skip_utility_vm_processing: bool,
    missing_whiteouts: u64,
    /// Opaque markers whose directory no parent layer has.
    missing_opaque_dirs: u64,
    /// Paths this child layer added (files, directories, links, std files) since the last
    /// opaque marker, for opaque directories: what the layer itself put under one stays.
    added: Vec<String>,
    /// The paths of `added` folded in at earlier opaque markers, and their ancestors, as keys
    /// upcased with the parent image's table; so each marker costs what it hides, not the
    /// number of entries before it.
    kept: HashSet<Vec<u16>>,
    /// The nearest parent's CIM, opened at the first opaque marker to list inherited children.
    parent_image: Option<cimfs::Cim>,
    /// The last parent directory found to have no directory symlink or junction at or above
    /// it: entries come grouped by directory, so most need no walk of their path.
    clear_dir: Option<String>,
    notes: Vec<String>,
    /// Held until the import ends (declared last: released after the CIM writer cleaned up).
    lock: Option<ImportLock>,
}

fn is_std_file(path: &str) -> bool {
    std_file_canonical(path).is_some()
}

impl CimLayerWriter {
    /// Creates the layer folder and starts the CIM (a fork of `parents[0]`'s CIM if any).
    pub fn new(opts: &ImportOptions) -> Result<Self> {
        let layer = opts.layer.clone();
        // The layer folder's name on the host names the CIM the utility VM boots from.
        let host_name = match opts
            .host_layer_path
            .as_deref()
            .map(uvm::windows_folder_name)
        {
            None => None,
            Some(Ok(name)) => Some(name),
            Some(Err(why)) => {
                let p = opts.host_layer_path.as_deref().unwrap_or_default();
                return Err(Error::Layer {
                    layer,
                    reason: format!("host layer path {} {why}", crate::error::quoted(p)),
                });
            }
        };
        for (i, parent) in opts.parents.iter().enumerate() {
            let reason = if opts.parents[..i].contains(parent) {
                format!("parent layer {} is given twice", parent.display())
            } else if !is_cim_layer(parent) {
                format!(
                    "parent layer {} has no CIM ({} does not exist)",
                    parent.display(),
                    cim_path_for_layer(parent).display()
                )
            } else {
                continue;
            };
            return Err(Error::Layer { layer, reason });
        }
        let id = layer_id(&layer)?;
        let cim_path = cim_path_for_layer(&layer);
        let cim_dir = cim_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let cim_dir_existed = cim_dir.exists();
        fs::create_dir_all(&cim_dir).map_err(|e| Error::io(&cim_dir, e))?;
        let started = Self::start(opts, &layer, &id, &cim_path, &cim_dir);
        if started.is_err() && !cim_dir_existed {
            // Made for this import, and empty again now that the lock is gone.
            let _ = fs::remove_dir(&cim_dir);
        }
        let (lock, cim, notes) = started?;
        let host_id = host_name.unwrap_or(id);
        Ok(CimLayerWriter {
            layer,
            parents: opts.parents.clone(),
            cim_path,
            // One separator on the host: Windows paths written into the disks use `\`.
            host_layer_path: opts.host_layer_path.as_ref().map(|p| p.replace('/', "\\")),
            relative_cim_path: format!(r"{}\{host_id}.cim", crate::layout::CIM_LAYERS_DIR),
            cim: Some(cim),
            active: Active::None,
            pending: Vec::new(),
            has_utility_vm: false,
            skip_utility_vm_processing: opts.skip_utility_vm_processing,
            missing_whiteouts: 0,
            missing_opaque_dirs: 0,
            added: Vec::new(),
            kept: HashSet::new(),
            parent_image: None,
            clear_dir: None,
            notes,
            lock: Some(lock),
        })
    }

    /// Takes the layer's import lock (cleaning up after a killed import of it), checks the
    /// layer folder and starts the CIM writer; notes say what was cleaned up.
    fn start(
        opts: &ImportOptions,
        layer: &Path,
        id: &str,
        cim_path: &Path,
        cim_dir: &Path,
    ) -> Result<(ImportLock, CimWriter, Vec<String>)> {
        let layer_err = |reason: String| Error::Layer {
            layer: layer.to_path_buf(),
            reason,
        };
        let (mut lock, stale) = ImportLock::acquire(layer, cim_dir, id)?;
        if cim_path.exists() {
            // Also what a run killed after its commit leaves: the lock goes with this error.
            return Err(layer_err(format!("{} already exists", cim_path.display())));
        }
        let mut notes = Vec::new();
        if !stale.is_empty() {
            // A killed import of this layer: the .cim was never published, so the files its
            // writer made are garbage, and so is what it put in the (then empty) layer folder.
            for name in &stale {
                let f = cim_dir.join(name);
                match fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&f, e))
                    }
                    _ => {}
                }
            }
            if layer.is_dir() {
                fs::remove_dir_all(layer)
                    .and_then(|()| fs::create_dir(layer))
                    .map_err(|e| Error::io(layer, e))?;
            }
            notes.push(format!(
                "an earlier import of this layer was killed: its files were removed first ({} \
                 in {})",
                crate::error::count(stale.len() as u64, "file", "files"),
                cim_dir.display()
            ));
        }
        let create_folder = match fs::read_dir(layer) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(layer_err("the layer folder is not empty".into()));
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io(layer, e)),
        };
        let name = format!("{id}.cim");
        let cim = match opts.parents.first() {
            None => CimWriter::create(cim_dir, &name),
            Some(parent) => {
                let parent_cim = cim_path_for_layer(parent);
                if !same_folder(cimfs::folder_of(&parent_cim), cim_dir) {
                    return Err(layer_err(format!(
                        "parent CIM {} is not in {} (a fork must share its parent's folder)",
                        parent_cim.display(),
                        cim_dir.display()
                    )));
                }
                let parent_name = format!("{}.cim", layer_id(parent)?);
                CimWriter::fork(cim_dir, &parent_name, &name)
            }
        }
        .map_err(|source| Error::Cim {
            image: cim_path.to_path_buf(),
            op: "create",
            path: String::new(),
            source: Box::new(source),
        })?;
        lock.record(&cim.own_files())?;
        // Created only now, so an argument error above leaves no folder behind (the CIM writer
        // removes its own files when dropped on the error path).
        if create_folder {
            fs::create_dir_all(layer).map_err(|e| Error::io(layer, e))?;
        }
        Ok((lock, cim, notes))
    }

    /// The CIM this writer commits to.
    pub fn cim_path(&self) -> &Path {
        &self.cim_path
    }

    /// Notes gathered so far.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    fn cim(&mut self) -> Result<&mut CimWriter> {
        self.cim
            .as_mut()
            .ok_or_else(|| Error::Sequence("the layer is already closed".into()))
    }

    fn cim_err(&self, op: &'static str, path: &str, source: cimfs::Error) -> Error {
        Error::Cim {
            image: self.cim_path.clone(),
            op,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Ends the current stream, checking it got all its bytes; a std file is renamed into place
    /// only when complete, so a failed import never leaves a truncated hive under its real name.
    fn finish_active(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.active, Active::None) {
            Active::None => Ok(()),
            Active::Cim { name, left } => {
                if left != 0 {
                    return Err(Error::entry(&name, format!("{left} bytes missing")));
                }
                Ok(())
            }
            Active::Host {
                name,
                tmp,
                dest,
                out,
                left,
            } => {
                if left != 0 {
                    return Err(Error::entry(&name, format!("{left} bytes missing")));
                }
                let f = out
                    .into_inner()
                    .map_err(|e| Error::io(&tmp, e.into_error()))?;
                f.sync_all().map_err(|e| Error::io(&tmp, e))?;
                drop(f);
                fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))
            }
        }
    }

    fn add_cim_file(
        &mut self,
        cim_path: &str,
        info: &FileMetadata,
        data: &mut dyn Read,
    ) -> Result<()> {
        self.cim()?
            .add(cim_path, info)
            .map_err(|e| self.cim_err("add", cim_path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = info.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = data
                .read(&mut buf[..want])
                .map_err(|e| Error::io(cim_path, e))?;
            if n == 0 {
                return Err(Error::entry(
                    cim_path,
                    format!("host copy is {left} bytes short"),
                ));
            }
            self.cim()?
                .write(&buf[..n])
                .map_err(|e| self.cim_err("write", cim_path, e))?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Base layer (hcsshim `processBaseLayerHives` + `processLayoutFile`): `Hives\<X>_BASE` hard
    /// links to the config hives, on the host and in the CIM, and the `layout` marker.
    fn process_base_layer(&mut self) -> Result<Vec<PendingOp>> {
        let mut ops = Vec::new();
        let hives_dir = host_path(&self.layer, HIVES_DIR);
        fs::create_dir(&hives_dir).map_err(|e| Error::Layer {
            layer: self.layer.clone(),
            reason: format!(
                "creating {}: {e} (a base layer must not carry Hives)",
                hives_dir.display()
            ),
        })?;
        ops.push(PendingOp::AddDir {
            cim_path: HIVES_DIR.to_string(),
        });
        for h in &HIVES {
            let config = format!(r"{REG_FILES_DIR}\{}", h.name);
            let base = format!(r"{HIVES_DIR}\{}", h.base);
            let src = host_path(&self.layer, &config);
            if !src.is_file() {
                return Err(Error::Layer {
                    layer: self.layer.clone(),
                    reason: format!("a base layer needs {config}, the tar has none"),
                });
            }
            let dst = host_path(&self.layer, &base);
            fs::hard_link(&src, &dst).map_err(|e| Error::io(&dst, e))?;
            ops.push(PendingOp::Link {
                name: base,
                target: config,
            });
        }
        let layout = host_path(&self.layer, LAYOUT_FILE);
        write_atomically(&layout, LAYOUT_CONTENTS)?;
        ops.push(PendingOp::generated_file(LAYOUT_FILE.to_string(), layout));
        Ok(ops)
    }

    /// Child layer (hcsshim `processNonBaseLayer`): every `Hives\<X>_DELTA` merged onto the
    /// parent's `Hives\<X>_BASE` becomes this layer's `Hives\<X>_BASE`. The parent hive is read
    /// from the nearest parent folder that has one: a parent without a delta for a hive has no
    /// `_BASE` of its own, and its content is then its parent's (hcsshim reads only
    /// `parentLayerPaths[0]` and fails there).
    fn process_child_layer(&mut self) -> Result<Vec<PendingOp>> {
        let mut ops = Vec::new();
        for h in &HIVES {
            let delta_rel = format!(r"{HIVES_DIR}\{}", h.delta);
            let delta = host_path(&self.layer, &delta_rel);
            if !delta.is_file() {
                continue;
            }
            let base_rel = format!(r"{HIVES_DIR}\{}", h.base);
            let parent_base = self
                .parents
                .iter()
                .map(|p| host_path(p, &base_rel))
                .find(|p| p.is_file())
                .ok_or_else(|| Error::Layer {
                    layer: self.layer.clone(),
                    reason: format!(
                        "{delta_rel} present but no parent layer folder has {base_rel}"
                    ),
                })?;
            let base = open_hive_to_rewrite(&parent_base)?;
            let delta_hive = open_hive_to_rewrite(&delta)?;
            let merged = regf::merge(&base, &delta_hive).map_err(|source| Error::Hive {
                path: delta.clone(),
                source: Box::new(source),
            })?;
            let bytes = merged.to_bytes().map_err(|source| Error::Hive {
                path: delta.clone(),
                source: Box::new(source),
            })?;
            let out = host_path(&self.layer, &base_rel);
            write_atomically(&out, &bytes)?;
            ops.push(PendingOp::generated_file(base_rel, out));
        }
        Ok(ops)
    }

    fn apply(&mut self, op: PendingOp) -> Result<()> {
        match op {
            PendingOp::AddHostFile {
                cim_path,
                host,
                mut info,
            } => {
                let mut f = File::open(&host).map_err(|e| Error::io(&host, e))?;
                info.size = f.metadata().map_err(|e| Error::io(&host, e))?.len();
                self.add_cim_file(&cim_path, &info, &mut f)
            }
            PendingOp::AddDir { cim_path } => {
                let meta = FileMetadata {
                    attributes: FILE_ATTRIBUTE_DIRECTORY,
                    ..FileMetadata::default()
                };
                self.cim()?
                    .add(&cim_path, &meta)
                    .map_err(|e| self.cim_err("add", &cim_path, e))
            }
            PendingOp::Link { name, target } => match self.cim()?.add_link(&name, &target) {
                Ok(()) => Ok(()),
                // Its target was a hive or boot file this tar added and then removed again.
                Err(cimfs::Error::NotFound { .. }) => Err(Error::entry(
                    &name,
                    format!(
                        "hard link to {}, which this tar removed later: a hive or boot file \
                         reaches the image only at the end of the import, so a link cannot keep \
                         its content",
                        crate::error::quoted(&target)
                    ),
                )),
                Err(e) => Err(self.cim_err("link", &name, e)),
            },
        }
    }

    /// Layer processing, then the pending operations, then the CIM commit.
    fn finish(&mut self) -> Result<()> {
        self.finish_active()?;
        if self.has_utility_vm && self.skip_utility_vm_processing {
            self.notes.push(
                "UtilityVM stored as the tar has it (utility-VM processing skipped: no \
                 uvmbuildversion, disks, BCD or SYSTEM edits)"
                    .to_string(),
            );
        } else if self.has_utility_vm {
            let report = uvm::process_utility_vm(
                &self.layer,
                &self.relative_cim_path,
                self.host_layer_path.as_deref(),
            )?;
            self.notes.extend(report);
        }
        let ops = if self.parents.is_empty() {
            self.process_base_layer()?
        } else {
            self.process_child_layer()?
        };
        let pending = std::mem::take(&mut self.pending);
        for op in pending.into_iter().chain(ops) {
            self.apply(op)?;
        }
        if self.missing_whiteouts > 0 {
            self.notes.push(format!(
                "{} named {} that no parent layer has",
                crate::error::count(self.missing_whiteouts, "whiteout", "whiteouts"),
                if self.missing_whiteouts == 1 {
                    "a file"
                } else {
                    "files"
                }
            ));
        }
        if self.missing_opaque_dirs > 0 {
            self.notes.push(format!(
                "{} named {} that no parent layer has",
                crate::error::count(
                    self.missing_opaque_dirs,
                    "opaque whiteout",
                    "opaque whiteouts"
                ),
                if self.missing_opaque_dirs == 1 {
                    "a directory"
                } else {
                    "directories"
                }
            ));
        }
        let cim = self
            .cim
            .take()
            .ok_or_else(|| Error::Sequence("the layer is already closed".into()))?;
        cim.commit().map_err(|source| Error::Cim {
            image: self.cim_path.clone(),
            op: "commit",
            path: String::new(),
            source: Box::new(source),
        })?;
        // Published: nothing is left for a later import to clean up.
        drop(self.lock.take());
        Ok(())
    }
}

/// A path's case-folded key, upcased through `table` (one entry per UTF-16 unit), as cimfs
/// compares names.
fn folded_key(path: &str, table: &[u16]) -> Vec<u16> {
    path.encode_utf16()
        .map(|c| table.get(usize::from(c)).copied().unwrap_or(c))
        .collect()
}

/// Adds the keys of `paths` and of all their ancestors to `kept`.
fn fold_added(kept: &mut HashSet<Vec<u16>>, table: &[u16], paths: impl Iterator<Item = String>) {
    let sep = u16::from(b'\\');
    for p in paths {
        let k = folded_key(&p, table);
        let mut end = k.len();
        // An ancestor already present was folded in with all of its own ancestors.
        while kept.insert(k[..end].to_vec()) {
            match k[..end].iter().rposition(|&c| c == sep) {
                Some(i) => end = i,
                None => break,
            }
        }
    }
}

/// What an opaque `dir` hides: every path under it in the `parent` image that this layer did
/// not add (paths in `kept`, the keys of the added paths and of their ancestors, are kept and
/// looked into), with whether its name was decoded lossily. None when the parent has no
/// directory `dir`. Names are compared with the parent image's upcase table, as cimfs does.
fn inherited_to_hide(
    parent: &cimfs::Cim,
    dir: &str,
    kept: &HashSet<Vec<u16>>,
) -> Result<Option<Vec<(String, bool)>>> {
    let table = parent.upcase_table();
    let parent_err = |path: &str, source: cimfs::Error| Error::Cim {
        image: parent.path().to_path_buf(),
        op: "list",
        path: path.to_string(),
        source: Box::new(source),
    };
    let mut hide = Vec::new();
    let mut stack = vec![dir.to_string()];
    while let Some(d) = stack.pop() {
        let entries = match parent.read_dir(&d) {
            Ok(e) => e,
            Err(cimfs::Error::NotFound { .. } | cimfs::Error::NotADirectory { .. }) if d == dir => {
                return Ok(None)
            }
            Err(e) => return Err(parent_err(&d, e)),
        };
        for e in entries {
            if e.name.is_empty() || e.name.contains(['\\', '/']) {
                return Err(parent_err(
                    &d,
                    cimfs::Error::InvalidArgument {
                        image: parent.path().to_path_buf(),
                        path: d.clone(),
                        reason: format!("unusable child name {}", crate::error::quoted(&e.name)),
                    },
                ));
            }
            let path = format!("{d}\\{}", e.name);
            if kept.contains(&folded_key(&path, table)) {
                let info = parent.file(e.file_id).map_err(|x| parent_err(&path, x))?;
                if info.kind() == cimfs::FileKind::Directory {
                    stack.push(path);
                }
            } else {
                let lossy = e.name.contains('\u{FFFD}');
                hide.push((path, lossy));
            }
        }
    }
    Ok(Some(hide))
}

/// Whether `a` and `b` name the same folder, however spelled (`cim-layers`, `./cim-layers`,
/// an absolute path); compared as written when either cannot be resolved.
fn same_folder(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Reads a hive the import will rewrite (merge or edit); a dirty one is refused, since the
/// clean hive written from it would drop what its logs hold without a word.
pub(crate) fn open_hive_to_rewrite(path: &Path) -> Result<regf::Hive> {
    let hive = regf::Hive::open(path).map_err(|source| Error::Hive {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    match hive.dirty_notes() {
        None => Ok(hive),
        Some(notes) => Err(Error::DirtyHive {
            path: path.to_path_buf(),
            detail: notes
                .replace(regf::DIRTY_NOTE, "")
                .replace(" (read without logs)", ""),
        }),
    }
}

/// Writes `bytes` to `path` through a temporary name, so the real name only ever holds complete
/// contents.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".importing");
    path.with_file_name(name)
}

impl CimLayerWriter {
    /// Whether `path` names something this tar added that only reaches the CIM at close: a hive
    /// or boot file, or a hard link to one (a link to it must wait for it too).
    fn is_pending(&self, path: &str) -> bool {
        let lower = path.to_lowercase();
        self.pending.iter().any(|op| match op {
            PendingOp::AddHostFile { cim_path: p, .. } | PendingOp::Link { name: p, .. } => {
                p.to_lowercase() == lower
            }
            PendingOp::AddDir { .. } => false,
        })
    }

    /// Records a path this layer added, for later opaque markers (a base layer has none).
    fn note_added(&mut self, name: &str) {
        if !self.parents.is_empty() {
            self.added.push(name.to_string());
        }
    }

    /// A later entry at the name of a pending hard link replaces that link.
    fn forget_pending_link(&mut self, path: &str) {
        // Called for every entry: most layers have no pending link, so no lower-casing then.
        if !self
            .pending
            .iter()
            .any(|op| matches!(op, PendingOp::Link { .. }))
        {
            return;
        }
        let lower = path.to_lowercase();
        self.pending.retain(
            |op| !matches!(op, PendingOp::Link { name, .. } if name.to_lowercase() == lower),
        );
    }
}

impl CimLayerWriter {
    /// Refuses `name` when a directory above it, in this layer or a parent's, is a directory
    /// symlink or junction: NTFS cannot hold entries beneath one, so extract would fail on it
    /// and export would drop it.
    fn refuse_under_reparse_point(&mut self, name: &str) -> Result<()> {
        let (dir, _) = crate::paths::split_parent(name);
        if dir.is_empty() || self.clear_dir.as_deref() == Some(dir) {
            return Ok(());
        }
        if let Some(above) = self.cim()?.reparse_point_above(name) {
            return Err(Error::entry(
                name,
                format!(
                    "{} is a directory symlink or junction: Windows cannot hold entries \
                     beneath one",
                    crate::error::quoted(&above)
                ),
            ));
        }
        self.clear_dir = Some(dir.to_string());
        Ok(())
    }
}

impl LayerWriter for CimLayerWriter {
    fn add(&mut self, name: &str, info: &FileMetadata) -> Result<()> {
        self.finish_active()?;
        self.refuse_under_reparse_point(name)?;
        if !info.reparse_data.is_empty() {
            // It may turn the directory last found clear (or one above it) into a reparse point.
            self.clear_dir = None;
        }
        self.forget_pending_link(name);
        if name == UTILITY_VM_DIR {
            self.has_utility_vm = true;
        }
        self.note_added(name);
        if let Some(canonical) = std_file_canonical(name) {
            if is_directory(info) || !info.reparse_data.is_empty() {
                return Err(Error::entry(
                    name,
                    "a hive or boot file must be a regular file",
                ));
            }
            let dest = host_path(&self.layer, &canonical);
            if let Some(dir) = dest.parent() {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let tmp = temp_name(&dest);
            let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            self.pending.push(PendingOp::AddHostFile {
                cim_path: name.to_string(),
                host: dest.clone(),
                info: info.clone(),
            });
            self.active = Active::Host {
                name: name.to_string(),
                tmp,
                dest,
                out: BufWriter::new(f),
                left: info.size,
            };
            return Ok(());
        }
        // A junction or directory symlink has no entries of its own: it replaces a directory
        // (adding a directory over one would only update it and keep the entries beneath).
        if is_directory(info)
            && !info.reparse_data.is_empty()
            && self.cim()?.kind(name) == Some(cimfs::FileKind::Directory)
        {
            self.cim()?
                .remove(name)
                .map_err(|e| self.cim_err("replace", name, e))?;
        }
        self.cim()?
            .add(name, info)
            .map_err(|e| self.cim_err("add", name, e))?;
        let left = if is_directory(info) { 0 } else { info.size };
        self.active = Active::Cim {
            name: name.to_string(),
            left,
        };
        Ok(())
    }

    fn add_link(&mut self, name: &str, target: &str) -> Result<()> {
        self.finish_active()?;
        if is_std_file(name) {
            return Err(Error::entry(
                name,
                "a hive or boot file cannot be a hard link",
            ));
        }
        self.refuse_under_reparse_point(name)?;
        self.forget_pending_link(name);
        self.note_added(name);
        // Deferred only when the target itself is: a hive already in a parent image is linked now,
        // so a whiteout or replacement of it later in this tar leaves the link as tar order says.
        if self.is_pending(target) {
            self.pending.push(PendingOp::Link {
                name: name.to_string(),
                target: target.to_string(),
            });
            return Ok(());
        }
        self.cim()?
            .add_link(name, target)
            .map_err(|e| self.cim_err("link", name, e))
    }

    fn add_alternate_stream(&mut self, name: &str, size: u64) -> Result<()> {
        if matches!(self.active, Active::Host { .. }) {
            return Err(Error::entry(
                name,
                "a hive or boot file cannot have alternate data streams",
            ));
        }
        self.finish_active()?;
        self.cim()?
            .add_alternate_stream(name, size)
            .map_err(|e| self.cim_err("add stream", name, e))?;
        self.active = Active::Cim {
            name: name.to_string(),
            left: size,
        };
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.finish_active()?;
        // A std file (or a link to one) added earlier in this tar is still pending: drop it, and
        // its host copy, so the removal is not undone when the pending operations are replayed.
        let lower = name.to_lowercase();
        let under = |p: &str| {
            let p = p.to_lowercase();
            p == lower || p.starts_with(&format!("{lower}\\"))
        };
        let before = self.pending.len();
        let mut dropped_hosts = Vec::new();
        self.pending.retain(|op| match op {
            PendingOp::AddHostFile { cim_path, host, .. } if under(cim_path) => {
                dropped_hosts.push(host.clone());
                false
            }
            PendingOp::Link { name: n, .. } => !under(n),
            _ => true,
        });
        for host in dropped_hosts {
            match fs::remove_file(&host) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&host, e))
                }
                _ => {}
            }
        }
        let dropped_pending = self.pending.len() != before;
        // hcsshim HEAD ignores "not found" here: a whiteout may name a file no parent has.
        match self.cim()?.remove(name) {
            Ok(()) => Ok(()),
            Err(cimfs::Error::NotFound { .. }) => {
                if !dropped_pending {
                    self.missing_whiteouts += 1;
                }
                Ok(())
            }
            Err(e) => Err(self.cim_err("remove", name, e)),
        }
    }

    fn opaque(&mut self, dir: &str) -> Result<()> {
        self.finish_active()?;
        // A base layer inherits nothing, so there is nothing to hide.
        let Some(parent) = self.parents.first() else {
            return Ok(());
        };
        if self.parent_image.is_none() {
            let image = cim_path_for_layer(parent);
            let cim = cimfs::Cim::open(&image).map_err(|source| Error::Cim {
                image: image.clone(),
                op: "open parent image of",
                path: dir.to_string(),
                source: Box::new(source),
            })?;
            self.parent_image = Some(cim);
        }
        let Some(parent) = self.parent_image.as_ref() else {
            return Err(Error::Sequence("parent image not open".into()));
        };
        fold_added(&mut self.kept, parent.upcase_table(), self.added.drain(..));
        let Some(hide) = inherited_to_hide(parent, dir, &self.kept)? else {
            // OCI allows a marker for a directory the lower layers do not have.
            self.missing_opaque_dirs += 1;
            return Ok(());
        };
        for (path, lossy) in hide {
            match self.cim()?.remove(&path) {
                Ok(()) => {}
                // Gone already: a whiteout earlier in this layer removed it (or its directory
                // was replaced by a file).
                Err(cimfs::Error::NotFound { .. }) if !lossy => {}
                Err(cimfs::Error::NotFound { .. }) => {
                    return Err(Error::entry(
                        &path,
                        "cannot hide it for an opaque whiteout: its name in the parent image \
                         is not valid UTF-16",
                    ))
                }
                Err(e) => return Err(self.cim_err("remove", &path, e)),
            }
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        match &mut self.active {
            Active::None => Err(Error::Sequence("write without an open stream".into())),
            Active::Cim { name, left } => {
                if len > *left {
                    return Err(Error::entry(name, "more data than the header announced"));
                }
                *left -= len;
                let name = name.clone();
                self.cim()?
                    .write(data)
                    .map_err(|e| self.cim_err("write", &name, e))
            }
            Active::Host {
                name,
                tmp,
                out,
                left,
                ..
            } => {
                if len > *left {
                    return Err(Error::entry(name, "more data than the header announced"));
                }
                *left -= len;
                out.write_all(data).map_err(|e| Error::io(tmp.as_path(), e))
            }
        }
    }

    fn close(&mut self) -> Result<()> {
        self.finish()
    }
}

/// Imports a layer tar (plain, gzip or zstd, told from its bytes) as a CIM layer: the layer
/// folder `opts.layer` with its std files, and `cim-layers/<id>.cim` next to it. On error nothing
/// is committed and the layer folder is removed again.
pub fn import_layer(
    tar: impl Read,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportSummary> {
    let count = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let counted = CountingReader {
        inner: tar,
        count: count.clone(),
    };
    let existed = opts.layer.exists();
    let (compression, input) = decompressed_kind(counted)?;
    // Only after `new` succeeded does the layer folder hold anything of ours to clean up.
    let cim_dir = cim_path_for_layer(&opts.layer)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cim_dir_existed = cim_dir.exists();
    let snapshots_existed = cim_dir.parent().is_none_or(Path::exists);
    let mut w = CimLayerWriter::new(opts).inspect_err(|_| {
        // `new` removed the cim-layers folder it made; the snapshots folder above it too, if
        // this import made it (remove_dir keeps it when anything is in it).
        if let Some(snapshots) = cim_dir.parent().filter(|_| !snapshots_existed) {
            let _ = fs::remove_dir(snapshots);
        }
    })?;
    let mut input = HashingReader {
        inner: input,
        hasher: opts.uncompressed_digest.as_ref().map(|_| Sha256::new()),
    };
    let result = (|| {
        let stats = match compression {
            // Decompression costs more CPU than the import itself: give it its own thread.
            Compression::Gzip | Compression::Zstd => write_layer_pipelined(
                &mut input,
                compression,
                &mut w,
                &mut || count.get(),
                progress,
            )?,
            Compression::None => {
                write_layer_counted(&mut input, &mut w, &mut || count.get(), progress)?
            }
        };
        if let Some(expected) = &opts.uncompressed_digest {
            // The tar reader stops at the end-of-archive blocks; the digest covers what follows.
            std::io::copy(&mut input, &mut std::io::sink()).map_err(|error| {
                blame_input(error, stats.entries, count.get()).unwrap_or_else(|error| {
                    Error::TarRead {
                        entries: stats.entries,
                        offset: Some(count.get()),
                        error,
                    }
                })
            })?;
            let digest: String = input
                .hasher
                .take()
                .map(|h| h.finalize().iter().map(|b| format!("{b:02x}")).collect())
                .unwrap_or_default();
            let want = expected.strip_prefix("sha256:").unwrap_or(expected);
            if !digest.eq_ignore_ascii_case(want) {
                return Err(Error::Layer {
                    layer: opts.layer.clone(),
                    reason: format!(
                        "the uncompressed layer tar has digest sha256:{digest}, not {expected} \
                         (the image's diff_id)"
                    ),
                });
            }
        }
        w.close()?;
        let mut notes = std::mem::take(&mut w.notes);
        if stats.global_headers > 0 {
            notes.push(format!(
                "{} skipped",
                crate::error::count(
                    stats.global_headers,
                    "global PAX header",
                    "global PAX headers"
                )
            ));
        }
        if stats.root_entries > 0 {
            notes.push("the tar's entry for the layer root (\"./\") was skipped".to_string());
        }
        if stats.entries == 0 {
            // Valid (Go's tar reader takes an empty input as an empty archive too), but also
            // what a failed download piped in leaves.
            notes.push(
                "the layer tar holds no entries (an empty input, or only the end-of-archive \
                 blocks): the layer adds nothing"
                    .to_string(),
            );
        }
        if stats.aufs_link_entries > 0 {
            notes.push(format!(
                "{} (.wh..wh.plnk) skipped",
                crate::error::count(
                    stats.aufs_link_entries,
                    "AUFS hard-link entry",
                    "AUFS hard-link entries"
                )
            ));
        }
        Ok(ImportSummary {
            size: stats.size,
            entries: stats.entries,
            cim_path: w.cim_path.clone(),
            notes,
        })
    })();
    if result.is_err() {
        // Drop the CIM writer first: it removes its partial region/objectid files. The import
        // lock is held until the layer folder is cleaned up too.
        let lock = w.lock.take();
        drop(w);
        cleanup_failed_layer(&opts.layer, existed);
        drop(lock);
        if !cim_dir_existed {
            // Made for this import and, the writer's files gone, empty (remove_dir keeps it
            // otherwise).
            let _ = fs::remove_dir(&cim_dir);
            if let Some(snapshots) = cim_dir.parent().filter(|_| !snapshots_existed) {
                let _ = fs::remove_dir(snapshots);
            }
        }
    }
    result
}

/// Hashes what it reads when it has a hasher.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Removes what a failed import wrote to the layer folder (the CIM writer has already discarded
/// its own files when dropped).
fn cleanup_failed_layer(layer: &Path, existed: bool) {
    if !layer.exists() {
        return;
    }
    // A folder that was there before the import was checked to be empty: empty it again.
    let _ = fs::remove_dir_all(layer);
    if existed {
        let _ = fs::create_dir(layer);
    }
}

/// What [`destroy_layer`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestroyReport {
    /// Files removed: the `.cim` first, then its region and objectid files.
    pub removed: Vec<PathBuf>,
    /// Region or objectid files left because another `.cim` in the folder lists them as its own
    /// (a copy of the image shares its region set).
    pub kept: Vec<PathBuf>,
}

/// Removes a layer's CIM and its own region/objectid files (not its parents', nor any that
/// another `.cim` in the same folder also lists as its own); a layer that has no CIM is left
/// alone (hcsshim `DestroyCimLayer`). The layer folder itself is the caller's.
pub fn destroy_layer(layer: &Path) -> Result<DestroyReport> {
    let mut report = DestroyReport::default();
    let Some(files) = layer_image_files(layer)? else {
        return Ok(report);
    };
    let owned_elsewhere = files_owned_by_other_images(&files.cim)?;
    // The .cim goes first: a failure after it leaves unused region files, never an image that
    // names regions it no longer has.
    fs::remove_file(&files.cim).map_err(|e| Error::io(&files.cim, e))?;
    for f in files.regions.iter().chain(&files.objectids) {
        if owned_elsewhere.contains(f) {
            report.kept.push(f.clone());
            continue;
        }
        match fs::remove_file(f) {
            Ok(()) => report.removed.push(f.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(f, e)),
        }
    }
    report.removed.insert(0, files.cim);
    Ok(report)
}

/// The region and objectid files that the other `.cim` files beside `cim` list as their own.
/// A neighbour that cannot be read names nothing (it cannot be checked).
fn files_owned_by_other_images(cim: &Path) -> Result<std::collections::HashSet<PathBuf>> {
    let mut owned = std::collections::HashSet::new();
    let dir = cimfs::folder_of(cim);
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path == cim || path.extension().and_then(|e| e.to_str()) != Some("cim") {
            continue;
        }
        if let Ok(other) = cimfs::image_files(&path) {
            owned.extend(other.regions.into_iter().chain(other.objectids));
        }
    }
    Ok(owned)
}

/// The files of a layer's CIM, or None when the layer has no CIM.
fn layer_image_files(layer: &Path) -> Result<Option<cimfs::ImageFiles>> {
    let cim = cim_path_for_layer(layer);
    if !cim.is_file() {
        return Ok(None);
    }
    cimfs::image_files(&cim)
        .map(Some)
        .map_err(|source| Error::Cim {
            image: cim,
            op: "list files of",
            path: String::new(),
            source: Box::new(source),
        })
}

#[cfg(unix)]
fn first_link(md: &fs::Metadata, seen: &mut std::collections::HashSet<(u64, u64)>) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.nlink() < 2 || seen.insert((md.dev(), md.ino()))
}

#[cfg(not(unix))]
fn first_link(_: &fs::Metadata, _: &mut std::collections::HashSet<(u64, u64)>) -> bool {
    true
}

/// Bytes on disk that belong to this layer: its CIM, its own region/objectid files and the
/// files in its layer folder (a hard-linked file counted once on Unix).
pub fn layer_disk_usage(layer: &Path) -> Result<u64> {
    let mut total = 0;
    if let Some(files) = layer_image_files(layer)? {
        for f in std::iter::once(&files.cim)
            .chain(&files.regions)
            .chain(&files.objectids)
        {
            total += fs::metadata(f).map_err(|e| Error::io(f, e))?.len();
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![layer.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let md = ent.metadata().map_err(|e| Error::io(ent.path(), e))?;
            if md.is_dir() {
                stack.push(ent.path());
            } else if first_link(&md, &mut seen) {
                total += md.len();
            }
        }
    }
    Ok(total)
}
