//! CIM → Windows layer tar in go-winio's backuptar dialect: the inverse of layer import.
//! Owns what goes in (a whole tree, or a fork's changes against its parent image with OCI
//! whiteouts), the entry order (whiteouts, then parents before children with ADS right after
//! their file, then hard links) and the tar framing (PAX `x` headers for the Windows metadata,
//! long names and big sizes); record names and value encoders come from [`crate::backuptar`].

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::backuptar::{self, DialectError, WHITEOUT_PREFIX};
use crate::layout::{std_file_canonical, HIVES, HIVES_DIR, LAYOUT_CONTENTS, LAYOUT_FILE};
use crate::treediff::{
    compare_entries, parent_key, path_key, Change, CompareError, CompareOptions, Tree,
};

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the image failed (the cimfs error names the image, object and offset).
    #[error(transparent)]
    Cim(#[from] cimfs::Error),
    /// Reading a stream of the image or writing the tar failed.
    #[error("{image}: {path}: {source}")]
    Io {
        /// The `.cim` file exported.
        image: String,
        /// The tar entry being read or written (empty when finishing the archive).
        path: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The entry's metadata cannot be expressed in the backuptar dialect.
    #[error("{image}: {path}: {source}")]
    Dialect {
        /// The `.cim` file exported.
        image: String,
        /// The tar entry name of the path.
        path: String,
        /// What cannot be expressed.
        #[source]
        source: DialectError,
    },
    /// A name or hard-link group that cannot go in a tar, or cannot be imported from one.
    #[error("{image}: {path}: {reason}")]
    Unsupported {
        /// The `.cim` file exported.
        image: String,
        /// The path inside the image.
        path: String,
        /// Why it cannot be exported.
        reason: String,
    },
    /// Reading or comparing the trees failed (also: a directory reached twice).
    #[error(transparent)]
    Compare(#[from] CompareError),
    /// The parent image of a fork is missing or is not its nearest parent.
    #[error("{image}: {reason}")]
    Parent {
        /// The fork's `.cim` file (or the parent's, when that is the one at fault).
        image: String,
        /// What is wrong.
        reason: String,
    },
}

/// Choices for [`export_layer`] and [`export_layer_changes`].
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Also write the entries import generates itself: for a whole tree, `Hives\` and `layout`
    /// (present when the root has `layout` = "vhd-with-hives"); for a fork's changes, each
    /// `Hives\<X>_BASE` rebuilt from a `Hives\<X>_DELTA`. Off, so that importing the tar again
    /// reproduces the image (instead of failing on an existing `Hives` in a base layer).
    pub include_generated: bool,
}

/// What [`export_layer`] or [`export_layer_changes`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Tar entries written (PAX headers not counted).
    pub entries: u64,
    /// Regular file entries written (not directories, symlinks or hard links: each file once).
    pub files: u64,
    /// Directory entries written.
    pub directories: u64,
    /// Symbolic link and junction entries written.
    pub symlinks: u64,
    /// Hard link entries written (a file's second and later names).
    pub hard_links: u64,
    /// Alternate data stream entries written.
    pub alternate_streams: u64,
    /// Bytes of file and stream data written.
    pub data_bytes: u64,
    /// Of `data_bytes`, those of the files' own (default stream) data.
    pub file_bytes: u64,
    /// OCI whiteouts (`.wh.<name>`) written for paths the fork removed.
    pub whiteouts: u64,
    /// Paths left out because import generates them (see [`ExportOptions::include_generated`]).
    pub skipped: Vec<String>,
}

/// Largest size the octal size field of a ustar header holds (11 octal digits).
const USTAR_MAX_SIZE: u64 = 0o77777777777;
/// Bytes of the ustar name and linkname fields.
const USTAR_NAME_LEN: usize = 100;

struct TarOut<'a, W: Write> {
    out: W,
    image: &'a str,
    summary: ExportSummary,
}

/// One PAX record: `"<len> <key>=<value>\n"`, where len counts the whole record (its own digits too).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len.to_string().len() + body > len {
        len += 1;
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// The ustar name field value: the name when it fits and is ASCII, else a truncated stand-in
/// (the real name then rides in a PAX record).
fn ustar_name(name: &str) -> (Vec<u8>, bool) {
    if name.len() <= USTAR_NAME_LEN && name.is_ascii() {
        (name.as_bytes().to_vec(), true)
    } else {
        let short: String = name
            .chars()
            .map(|c| if c.is_ascii() { c } else { '_' })
            .take(USTAR_NAME_LEN)
            .collect();
        (short.into_bytes(), false)
    }
}

enum Kind<'l> {
    File(u64),
    Dir,
    Symlink(&'l str),
    HardLink(&'l str),
}

impl<W: Write> TarOut<'_, W> {
    fn io(&self, path: &str, source: io::Error) -> ExportError {
        ExportError::Io {
            image: self.image.to_string(),
            path: path.to_string(),
            source,
        }
    }

    fn write_raw(&mut self, path: &str, bytes: &[u8]) -> Result<(), ExportError> {
        self.out.write_all(bytes).map_err(|e| self.io(path, e))
    }

    fn pad(&mut self, path: &str, len: u64) -> Result<(), ExportError> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            let zeros = [0u8; 512];
            let pad = zeros.get(..512 - rem).unwrap_or_default();
            self.write_raw(path, pad)?;
        }
        Ok(())
    }

    /// Writes a PAX `x` header (when there are records) and the entry header for `name`.
    fn header(
        &mut self,
        name: &str,
        kind: Kind<'_>,
        mtime: i64,
        mut pax: BTreeMap<String, String>,
    ) -> Result<(), ExportError> {
        let (name_field, name_fits) = ustar_name(name);
        if !name_fits {
            pax.insert("path".into(), name.to_string());
        }
        let link = match kind {
            Kind::Symlink(t) | Kind::HardLink(t) => Some(t),
            _ => None,
        };
        let mut link_field = Vec::new();
        if let Some(target) = link {
            let (field, fits) = ustar_name(target);
            if !fits {
                pax.insert("linkpath".into(), target.to_string());
            }
            link_field = field;
        }
        let size = match kind {
            Kind::File(size) => size,
            _ => 0,
        };
        if size > USTAR_MAX_SIZE {
            pax.insert("size".into(), size.to_string());
        }
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (k, v) in &pax {
                records.extend_from_slice(&pax_record(k, v.as_bytes()));
            }
            let mut h = tar::Header::new_ustar();
            let (short, _) = ustar_name(&format!("PaxHeaders/{name}"));
            h.as_old_mut()
                .name
                .get_mut(..short.len())
                .unwrap_or_default()
                .copy_from_slice(&short);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(records.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            self.write_raw(name, h.as_bytes())?;
            self.write_raw(name, &records)?;
            self.pad(name, records.len() as u64)?;
        }
        let mut h = tar::Header::new_ustar();
        h.as_old_mut()
            .name
            .get_mut(..name_field.len())
            .unwrap_or_default()
            .copy_from_slice(&name_field);
        h.as_old_mut()
            .linkname
            .get_mut(..link_field.len())
            .unwrap_or_default()
            .copy_from_slice(&link_field);
        let (entry_type, mode) = match kind {
            Kind::File(_) => (tar::EntryType::Regular, 0o644),
            Kind::Dir => (tar::EntryType::Directory, 0o755),
            Kind::Symlink(_) => (tar::EntryType::Symlink, 0o777),
            Kind::HardLink(_) => (tar::EntryType::Link, 0o644),
        };
        h.set_entry_type(entry_type);
        h.set_mode(mode);
        h.set_size(size.min(USTAR_MAX_SIZE));
        h.set_mtime(u64::try_from(mtime).unwrap_or(0));
        h.set_cksum();
        self.write_raw(name, h.as_bytes())?;
        self.summary.entries += 1;
        Ok(())
    }

    /// Copies exactly `size` bytes of a stream into the tar, then pads to a 512-byte block.
    fn data(&mut self, name: &str, mut r: impl Read, size: u64) -> Result<(), ExportError> {
        let copied =
            io::copy(&mut (&mut r).take(size), &mut self.out).map_err(|e| self.io(name, e))?;
        if copied != size {
            return Err(self.io(
                name,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended after {copied} of {size} bytes"),
                ),
            ));
        }
        self.summary.data_bytes += size;
        self.pad(name, size)
    }
}

/// Whole seconds of a FILETIME as a Unix time (the ustar mtime field; PAX carries the rest).
fn unix_secs(ft: u64) -> i64 {
    backuptar::filetime_to_unix(ft).secs
}

fn dialect(image: &str, path: &str) -> impl FnOnce(DialectError) -> ExportError {
    let (image, path) = (image.to_string(), path.replace('/', "\\"));
    move |source| ExportError::Dialect {
        image,
        path,
        source,
    }
}

/// True when the image holds what base-layer import generates (`layout` = "vhd-with-hives").
fn has_generated_entries(cim: &cimfs::Cim) -> bool {
    let Ok(mut r) = cim.open_file(LAYOUT_FILE) else {
        return false;
    };
    let mut buf = Vec::new();
    (&mut r).take(64).read_to_end(&mut buf).is_ok() && buf == LAYOUT_CONTENTS
}

/// How one path of the exported image relates to the parent image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not in the parent (or no parent: a whole-tree export).
    New,
    /// In the parent with the same name, type, data, metadata and streams (hard links aside).
    Same,
    /// In the parent but different; `dir_type` when both are directories of different types
    /// (a directory and a directory reparse point), which import cannot turn into each other.
    Changed { dir_type: bool },
}

/// What the tar holds for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Skip,
    /// The entry itself: directory, file with data and streams, or symlink / mount point.
    Full,
    /// A hard link to the entry at this index (of the exported image's tree).
    Link(usize),
}

/// Everything the tar will say, decided before the first byte is written.
struct Plan {
    /// Parent-image paths to white out, in the parent's order.
    whiteouts: Vec<String>,
    /// One action per entry of the exported image's tree.
    actions: Vec<Action>,
    skipped: Vec<String>,
}

fn unsupported(image: &str, path: &str, reason: impl Into<String>) -> ExportError {
    ExportError::Unsupported {
        image: image.to_string(),
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// The last component of a backslash path.
fn base_name(path: &str) -> &str {
    path.rsplit_once('\\').map_or(path, |(_, b)| b)
}

/// Decides every path's fate: [`Planner::new`] compares with the parent, then generated
/// entries are left out, then links and whiteouts are planned.
///
/// Hard links: the files of one link group either keep an "anchor" that the parent already has
/// unchanged, and the members the parent did not link to it become links to it; or the group is
/// written again (one full entry, the rest links to it). An anchor is used only when every other
/// name it has in the parent is rewritten, removed or regenerated by this tar, so that after
/// import it has exactly the names it has here. Import refuses a hive or boot file as a link, so
/// such a file is always the full entry of its group.
struct Planner<'a> {
    image: &'a cimfs::Cim,
    tree: &'a Tree,
    parent: Option<(&'a cimfs::Cim, &'a Tree)>,
    /// Per entry of `tree`.
    state: Vec<State>,
    /// Per entry: left out because import generates it.
    skip: Vec<bool>,
    /// Per entry: written although the parent has it as it is (a DELTA whose BASE import must
    /// rebuild); its link group is written again too.
    forced: Vec<bool>,
    skipped: Vec<String>,
}

impl<'a> Planner<'a> {
    /// Compares every entry with the parent's (all new without a parent).
    fn new(
        image: &'a cimfs::Cim,
        tree: &'a Tree,
        parent: Option<(&'a cimfs::Cim, &'a Tree)>,
    ) -> Result<Self, ExportError> {
        let n = tree.entries().len();
        let mut state = vec![State::New; n];
        if let Some((pimg, ptree)) = parent {
            // Links are planned separately: a group's names are compared as a whole.
            let compare = CompareOptions {
                ignore_times: false,
                ignore_links: true,
            };
            for (i, e) in tree.entries().iter().enumerate() {
                let Some(pe) = ptree.get(&e.key) else {
                    continue;
                };
                let what = compare_entries(image, e, pimg, pe, &compare)?;
                state[i] = if what.is_empty() && base_name(&e.path) == base_name(&pe.path) {
                    State::Same
                } else {
                    State::Changed {
                        dir_type: what.contains(&Change::Type)
                            && e.info.is_directory
                            && pe.info.is_directory,
                    }
                };
            }
        }
        Ok(Planner {
            image,
            tree,
            parent,
            state,
            skip: vec![false; n],
            forced: vec![false; n],
            skipped: Vec::new(),
        })
    }

    /// Leaves out what lies under a directory reparse point: the tar carries the link itself
    /// (as go-winio does), and import could not put anything under it.
    fn leave_out_under_reparse_points(&mut self) {
        let entries = self.tree.entries();
        let mut hidden = vec![false; entries.len()];
        for (i, e) in entries.iter().enumerate() {
            let Some(p) = self.tree.position(parent_key(&e.key)) else {
                continue;
            };
            // Parents come before children, so the parent's flag is already final.
            let reparse_dir = entries
                .get(p)
                .is_some_and(|d| d.info.is_directory && !d.info.reparse_data.is_empty());
            if reparse_dir || hidden.get(p).copied().unwrap_or(false) {
                hidden[i] = true;
                self.skip[i] = true;
            }
        }
    }

    /// Leaves out what import generates (cimlayer.rs `process_base_layer` and
    /// `process_child_layer`; utility-VM processing only writes to the layer folder).
    fn leave_out_generated(&mut self) {
        let entries = self.tree.entries();
        let key = |p: &str| path_key(self.image, p);
        if self.parent.is_some() {
            // A child layer's Hives\<X>_BASE is its parent's merged with Hives\<X>_DELTA: a
            // changed BASE goes out as its DELTA.
            for h in &HIVES {
                let base = self
                    .tree
                    .position(&key(&format!(r"{HIVES_DIR}\{}", h.base)));
                let delta = self
                    .tree
                    .position(&key(&format!(r"{HIVES_DIR}\{}", h.delta)));
                if let (Some(b), Some(d)) = (base, delta) {
                    if self.state[b] != State::Same {
                        self.skip[b] = true;
                        if let Some(e) = entries.get(b) {
                            self.skipped.push(e.path.clone());
                        }
                        self.forced[d] = self.state[d] == State::Same;
                    }
                }
            }
        } else if has_generated_entries(self.image) {
            // A base layer gets Hives\ (with its links to the config hives) and layout.
            let (hives, layout) = (key(HIVES_DIR), key(LAYOUT_FILE));
            let under = format!("{hives}\\");
            for (i, e) in entries.iter().enumerate() {
                let top = e.key == hives || e.key == layout;
                if top || e.key.starts_with(&under) {
                    self.skip[i] = true;
                    if top {
                        self.skipped.push(e.path.clone());
                    }
                }
            }
        }
    }

    fn is_std(&self, m: usize) -> bool {
        self.tree
            .entries()
            .get(m)
            .is_some_and(|x| std_file_canonical(&x.path).is_some())
    }

    /// The anchor of link group `members` and the members to link to it, when the parent has
    /// an anchor that can stay (see [`Planner`]).
    fn anchor(&self, members: &[usize]) -> Option<(usize, Vec<usize>)> {
        let (_, ptree) = self.parent?;
        if members.iter().any(|&m| self.forced[m]) {
            return None;
        }
        let entries = self.tree.entries();
        let group: HashSet<&str> = members
            .iter()
            .filter_map(|&m| entries.get(m).map(|x| x.key.as_str()))
            .collect();
        for &a in members.iter().filter(|&&m| self.state[m] == State::Same) {
            let Some(pa) = entries.get(a).and_then(|x| ptree.get(&x.key)) else {
                continue;
            };
            let parent_names: HashSet<&str> = ptree.names_of(pa).into_iter().collect();
            // Every other name the anchor has in the parent must be rewritten, removed or
            // regenerated, or it would stay linked to the anchor after import.
            let others_leave = parent_names.iter().all(|k| {
                group.contains(k)
                    || self.tree.position(k).is_none_or(|b| {
                        self.skip[b] || self.forced[b] || self.state[b] != State::Same
                    })
            });
            let to_link: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| {
                    entries
                        .get(m)
                        .is_some_and(|x| !parent_names.contains(x.key.as_str()))
                })
                .collect();
            if others_leave && !to_link.iter().any(|&m| self.is_std(m)) {
                return Some((a, to_link));
            }
        }
        None
    }

    /// One action per entry: directories written when new or changed, files by link group.
    fn actions(&self) -> Result<Vec<Action>, ExportError> {
        let entries = self.tree.entries();
        let mut actions = vec![Action::Skip; entries.len()];
        let mut done_groups: HashSet<cimfs::FileId> = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            if self.skip[i] {
                continue;
            }
            if e.info.is_directory {
                if self.state[i] != State::Same {
                    actions[i] = Action::Full;
                }
                continue;
            }
            if !done_groups.insert(e.info.file_id) {
                continue;
            }
            let mut members: Vec<usize> = self
                .tree
                .names_of(e)
                .into_iter()
                .filter_map(|k| self.tree.position(k))
                .filter(|&m| !self.skip[m])
                .collect();
            members.sort_unstable();
            if let Some((anchor, to_link)) = self.anchor(&members) {
                for m in to_link {
                    actions[m] = Action::Link(anchor);
                }
                continue;
            }
            let stds: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| self.is_std(m))
                .collect();
            if stds.len() > 1 {
                let paths: Vec<&str> = stds
                    .iter()
                    .filter_map(|&m| entries.get(m).map(|x| x.path.as_str()))
                    .collect();
                return Err(unsupported(
                    &self.image.path().display().to_string(),
                    &e.path,
                    format!(
                        "hive or boot files {} are hard links to each other, which import refuses",
                        paths.join(", ")
                    ),
                ));
            }
            let Some(&primary) = stds.first().or(members.first()) else {
                continue;
            };
            for &m in &members {
                actions[m] = if m == primary {
                    Action::Full
                } else {
                    Action::Link(primary)
                };
            }
        }
        Ok(actions)
    }

    /// Parent paths to white out: each removed path whose directory is still the same
    /// directory here (one whiteout per removed subtree; a replaced directory took its children
    /// with it), and directories replaced by a directory of another type (a directory reparse
    /// point or back), which import would otherwise only update.
    fn whiteouts(&self) -> Vec<String> {
        let Some((_, ptree)) = self.parent else {
            return Vec::new();
        };
        let retyped_dir =
            |i: usize| matches!(self.state.get(i), Some(State::Changed { dir_type: true }));
        let mut out = Vec::new();
        for pe in ptree.entries() {
            if let Some(i) = self.tree.position(&pe.key) {
                if !retyped_dir(i) {
                    continue;
                }
            }
            let dir = parent_key(&pe.key);
            let dir_kept = dir.is_empty()
                || match (self.tree.position(dir), ptree.get(dir)) {
                    (Some(d), Some(pd)) => {
                        self.tree
                            .entries()
                            .get(d)
                            .is_some_and(|x| x.info.is_directory)
                            && pd.info.is_directory
                            && !retyped_dir(d)
                    }
                    _ => false,
                };
            if dir_kept {
                out.push(pe.path.clone());
            }
        }
        out
    }
}

/// The plan for exporting `tree` of `image`, against `parent` when given.
fn plan(
    image: &cimfs::Cim,
    tree: &Tree,
    parent: Option<(&cimfs::Cim, &Tree)>,
    opts: &ExportOptions,
) -> Result<Plan, ExportError> {
    let mut planner = Planner::new(image, tree, parent)?;
    planner.leave_out_under_reparse_points();
    if !opts.include_generated {
        planner.leave_out_generated();
    }
    let actions = planner.actions()?;
    Ok(Plan {
        whiteouts: planner.whiteouts(),
        actions,
        skipped: planner.skipped,
    })
}

/// The tar name of an image path (`/` separators), refusing what a tar cannot carry back.
fn tar_name(image: &str, path: &str) -> Result<String, ExportError> {
    for c in path.split('\\') {
        if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\0']) {
            return Err(unsupported(image, path, "name cannot be written to a tar"));
        }
        if c.starts_with(WHITEOUT_PREFIX) {
            return Err(unsupported(
                image,
                path,
                "a name starting with .wh. would be read back as a whiteout",
            ));
        }
    }
    Ok(path.replace('\\', "/"))
}

/// Writes one entry in full: directory, symlink / mount point, or file with its data; then its
/// alternate streams.
fn write_full<W: Write>(
    tar: &mut TarOut<'_, W>,
    cim: &cimfs::Cim,
    e: &crate::treediff::TreeEntry,
) -> Result<(), ExportError> {
    let image = tar.image.to_string();
    let name = tar_name(&image, &e.path)?;
    let info = &e.info;
    let meta = cimfs::FileMetadata::from(info);
    let pax = backuptar::pax_records_for(&meta).map_err(dialect(&image, &name))?;
    let mtime = unix_secs(info.last_write_time);
    if !info.reparse_data.is_empty() {
        let rp =
            backuptar::decode_reparse_point(&info.reparse_data).map_err(dialect(&image, &name))?;
        tar.header(&name, Kind::Symlink(&rp.target), mtime, pax)?;
        tar.summary.symlinks += 1;
    } else if info.is_directory {
        tar.header(&name, Kind::Dir, mtime, pax)?;
        tar.summary.directories += 1;
    } else {
        tar.header(&name, Kind::File(info.size), mtime, pax)?;
        let reader = cim.open_id(info.file_id, None)?;
        tar.data(&name, reader, info.size)?;
        tar.summary.files += 1;
        tar.summary.file_bytes += info.size;
    }
    // Directories and reparse points can have alternate streams too; the importer takes a
    // stream entry right after any file, directory or symlink entry.
    for stream in cim.streams_id(info.file_id)? {
        let stream_name = format!("{name}:{}", stream.name);
        let mut pax = BTreeMap::new();
        // go-winio gives ADS entries the file's times; keep them so a re-import matches.
        pax.insert(
            backuptar::PAX_MTIME.to_string(),
            backuptar::filetime_to_pax_time(info.last_write_time),
        );
        tar.header(&stream_name, Kind::File(stream.size), mtime, pax)?;
        let reader = cim.open_id(info.file_id, Some(&stream.name))?;
        tar.data(&stream_name, reader, stream.size)?;
        tar.summary.alternate_streams += 1;
    }
    Ok(())
}

/// Writes the planned tar: whiteouts, full entries in tree order, then hard links (last, so
/// every target, hives included, is already in the tar or the parent).
fn write_plan(
    cim: &cimfs::Cim,
    tree: &Tree,
    plan: Plan,
    out: impl Write,
) -> Result<ExportSummary, ExportError> {
    let image = cim.path().display().to_string();
    let mut tar = TarOut {
        out,
        image: &image,
        summary: ExportSummary {
            skipped: plan.skipped,
            ..ExportSummary::default()
        },
    };
    for path in &plan.whiteouts {
        let (dir, base) = path.rsplit_once('\\').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!("{WHITEOUT_PREFIX}{base}")
        } else {
            format!("{}/{WHITEOUT_PREFIX}{base}", tar_name(&image, dir)?)
        };
        if base.contains(['/', '\0']) {
            return Err(unsupported(&image, path, "name cannot be written to a tar"));
        }
        tar.header(&wh, Kind::File(0), 0, BTreeMap::new())?;
        tar.summary.whiteouts += 1;
    }
    let entries = tree.entries();
    for (e, action) in entries.iter().zip(&plan.actions) {
        if *action == Action::Full {
            write_full(&mut tar, cim, e)?;
        }
    }
    for (e, action) in entries.iter().zip(&plan.actions) {
        if let Action::Link(t) = *action {
            let Some(target) = entries.get(t) else {
                continue;
            };
            let name = tar_name(&image, &e.path)?;
            let target = tar_name(&image, &target.path)?;
            tar.header(
                &name,
                Kind::HardLink(&target),
                unix_secs(e.info.last_write_time),
                BTreeMap::new(),
            )?;
            tar.summary.hard_links += 1;
        }
    }
    // End of archive: two zero blocks.
    tar.write_raw("", &[0u8; 1024])?;
    tar.out.flush().map_err(|e| tar.io("", e))?;
    Ok(tar.summary)
}

/// Writes the whole tree of `cim` (its merged view, parents included) as a layer tar to `out`:
/// every directory, file, symlink / mount point and hard link with its times, attributes, SD
/// and EAs in PAX records, and each alternate data stream as a `<file>:<stream>` entry after
/// its file. Directory names carry no trailing `/` (as go-winio writes them). Other reparse
/// tags have no backuptar form and fail the export. The tar imports as a base layer.
pub fn export_layer(
    cim: &cimfs::Cim,
    out: impl Write,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    let tree = Tree::read(cim)?;
    let plan = plan(cim, &tree, None, opts)?;
    write_plan(cim, &tree, plan, out)
}

/// Writes what fork `cim` changed against its nearest parent image `parent` as a child layer
/// tar: added and changed entries (in full, like [`export_layer`]), hard links, and an OCI
/// whiteout (`.wh.<name>`) for each removed path (one per removed directory); nothing for
/// unchanged entries. Importing it with the parent's layer as parent reproduces `cim`.
/// `parent` must be `cim`'s nearest parent ([`check_parent_image`]).
pub fn export_layer_changes(
    cim: &cimfs::Cim,
    parent: &cimfs::Cim,
    out: impl Write,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    check_parent_image(cim, parent)?;
    let tree = Tree::read(cim)?;
    let parent_tree = Tree::read(parent)?;
    let plan = plan(cim, &tree, Some((parent, &parent_tree)), opts)?;
    write_plan(cim, &tree, plan, out)
}

/// The region sets an image reads: its parents' then its own, as (id, count).
fn region_chain(cim: &cimfs::Cim) -> Vec<(cimfs::format::Guid, u16)> {
    cim.parents()
        .iter()
        .chain(std::iter::once(cim.own_regions()))
        .map(|s| (s.id, s.count))
        .collect()
}

/// A region set's GUID as its region file names spell it.
fn guid_text(g: &cimfs::format::Guid) -> String {
    g.to_file_string()
}

/// Checks that `parent` is the nearest parent image of fork `cim`: its region sets (its
/// parents' and its own) are exactly the parent region sets `cim` lists.
pub fn check_parent_image(cim: &cimfs::Cim, parent: &cimfs::Cim) -> Result<(), ExportError> {
    let wanted: Vec<_> = cim.parents().iter().map(|s| (s.id, s.count)).collect();
    if wanted.is_empty() {
        return Err(ExportError::Parent {
            image: cim.path().display().to_string(),
            reason: "not a fork: the image has no parent region sets".into(),
        });
    }
    if region_chain(parent) != wanted {
        return Err(ExportError::Parent {
            image: cim.path().display().to_string(),
            reason: format!(
                "{} is not its nearest parent image (its region sets are not the ones the fork \
                 lists, nearest {})",
                parent.path().display(),
                wanted.last().map(|w| guid_text(&w.0)).unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// Finds the nearest parent image of fork `cim` among the other `.cim` files of its folder
/// (where a fork's parents live, sharing their region files): the one whose region sets are
/// the parent region sets `cim` lists. Images that do not open are passed over; when several
/// match (copies), the first by file name is taken.
pub fn find_parent_image(cim: &cimfs::Cim) -> Result<PathBuf, ExportError> {
    let image = cim.path().display().to_string();
    let wanted: Vec<_> = cim.parents().iter().map(|s| (s.id, s.count)).collect();
    let Some(nearest) = wanted.last() else {
        return Err(ExportError::Parent {
            image,
            reason: "not a fork: the image has no parent region sets".into(),
        });
    };
    let dir = cim.dir();
    let listing = std::fs::read_dir(dir).map_err(|source| ExportError::Io {
        image: image.clone(),
        path: dir.display().to_string(),
        source,
    })?;
    let mut candidates: Vec<PathBuf> = Vec::new();
    for ent in listing {
        let ent = ent.map_err(|source| ExportError::Io {
            image: image.clone(),
            path: dir.display().to_string(),
            source,
        })?;
        let p = ent.path();
        let is_cim = p.extension().is_some_and(|x| x.eq_ignore_ascii_case("cim"));
        if is_cim && p.file_name() != cim.path().file_name() && p.is_file() {
            candidates.push(p);
        }
    }
    candidates.sort();
    for p in candidates {
        let Ok(other) = cimfs::Cim::open(&p) else {
            continue;
        };
        if region_chain(&other) == wanted {
            return Ok(p);
        }
    }
    Err(ExportError::Parent {
        image,
        reason: format!(
            "no image in {} has the region sets of its nearest parent (own region set {}); \
             name the parent image explicitly",
            dir.display(),
            guid_text(&nearest.0)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", b"a"), b"9 path=a\n");
        // 94 value bytes: the record is 101 bytes, its length needs 3 digits.
        let r = pax_record("k", &[b'x'; 94]);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 k="));
        let r = pax_record("k", &[b'x'; 95]);
        assert_eq!(r.len(), 102);
        assert!(r.starts_with(b"102 k="));
    }

    #[test]
    fn long_or_unicode_names_go_to_pax() {
        assert_eq!(ustar_name("Files/a.txt"), (b"Files/a.txt".to_vec(), true));
        let (field, fits) = ustar_name("Files/\u{e9}t\u{e9}.txt");
        assert!(!fits);
        assert_eq!(field, b"Files/_t_.txt");
        let long = "d/".repeat(80);
        let (field, fits) = ustar_name(&long);
        assert!(!fits);
        assert_eq!(field.len(), USTAR_NAME_LEN);
    }
}
