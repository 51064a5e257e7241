//! Commit-time layout of the metadata region (upcase table, security descriptors, EAs, reparse
//! buffers, stream and directory link tables, file tables, file table directory, filesystem
//! object) and the atomic publication of the `.cim` file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use zerocopy::IntoBytes;

use super::region::RegionWriter;
use super::tree::{Kind, ROOT};
use super::{CimWriter, REGION_METADATA};
use crate::error::{Error, Result};
use crate::format::{self, RegionOffset};

/// Serializes a link table: header, entries, name offsets (from the table start), then
/// u16-counted UTF-16LE names. `Length` is the full table size including the header. A table
/// over [`format::MAX_LINK_TABLE_BYTES`] (which readers refuse) is returned as `Err(its size)`.
pub(crate) fn encode_link_table(
    names: &[&[u16]],
    entries: &[&[u8]],
) -> std::result::Result<Vec<u8>, u64> {
    let n = names.len();
    let entry_size = entries.first().map_or(0, |e| e.len());
    let names_at = 8 + n * (entry_size + format::LINK_NAME_OFFSET_SIZE);
    let total = names_at + names.iter().map(|s| 2 + 2 * s.len()).sum::<usize>();
    if total as u64 > format::MAX_LINK_TABLE_BYTES {
        return Err(total as u64);
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(e);
    }
    let mut at = names_at;
    for s in names {
        out.extend_from_slice(&(at as u32).to_le_bytes());
        at += 2 + 2 * s.len();
    }
    for s in names {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        for u in s.iter() {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
    Ok(out)
}

/// The path of node `n` (for errors), from the parent links `assign_ids` made.
fn node_path(tree: &super::tree::Tree, parent: &[usize], mut n: usize) -> String {
    let mut parts = Vec::new();
    while n != ROOT {
        let Some(&p) = parent.get(n) else { break };
        if let Some(Kind::Dir(children)) = tree.nodes.get(p).map(|node| &node.kind) {
            if let Some(e) = children.values().find(|e| e.node == n) {
                parts.push(String::from_utf16_lossy(&e.name));
            }
        }
        n = p;
    }
    parts.reverse();
    format!("\\{}", parts.join("\\"))
}

/// The error for a link table the readers would refuse.
fn table_too_large(image: &Path, what: &str, path: String, size: u64) -> Error {
    Error::InvalidArgument {
        image: image.to_path_buf(),
        path,
        reason: format!(
            "its {what} would take {size} bytes, over the {}-byte link table limit",
            format::MAX_LINK_TABLE_BYTES
        ),
    }
}

fn counted(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 2);
    v.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

/// Writes all metadata objects; stores the filesystem object offset in `w.stats`-adjacent state.
pub(super) fn write_metadata(w: &mut CimWriter) -> Result<()> {
    let align = format::METADATA_ALIGN;
    let own_base = w.regions[REGION_METADATA].combined;
    let meta = &mut w.regions[REGION_METADATA];

    // A fork whose parent stored the same upcase table points at the parent's copy.
    let upcase_at = match w.parent_upcase {
        Some(o) => o,
        None => meta.put(upcase::table().as_bytes(), align)?,
    };

    let mut sd_at = Vec::with_capacity(w.tree.sds.list.len());
    for sd in &w.tree.sds.list {
        sd_at.push(meta.put(&counted(sd), align)?);
    }

    let (ids, order, parent) = w.tree.assign_ids();
    if order.len() > format::MAX_FILES as usize {
        return Err(Error::InvalidArgument {
            image: w.cim_path.clone(),
            path: "\\".into(),
            reason: format!(
                "{} files and directories, over the {} an image may hold",
                order.len(),
                format::MAX_FILES
            ),
        });
    }
    // File tables are written as each fills (1024 entries), so only one is held at a time.
    let per_table = format::FILES_PER_TABLE as usize;
    let mut entries: Vec<format::File> = Vec::with_capacity(per_table.min(order.len()));
    let mut ftd = Vec::new();
    let mut files = 0u64;
    let flush = |meta: &mut RegionWriter,
                 entries: &mut Vec<format::File>,
                 ftd: &mut Vec<format::FileTableDirectoryEntry>|
     -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let at = meta.put(entries.as_bytes(), align)?;
        ftd.push(format::FileTableDirectoryEntry {
            offset: at.0.into(),
            count: (entries.len() as u16).into(),
            entry_size: format::FILE_ENTRY_SIZE.into(),
            reserved: 0.into(),
        });
        entries.clear();
        Ok(())
    };
    for &n in &order {
        let node = &w.tree.nodes[n];
        let ea_at = if node.ea().is_empty() {
            RegionOffset::NULL
        } else {
            meta.put(node.ea(), align)?
        };
        let (rp_at, tag) = if node.reparse().is_empty() {
            (RegionOffset::NULL, 0)
        } else {
            let r = node.reparse();
            (
                meta.put(&counted(r), align)?,
                // add() and fork() refuse buffers shorter than the 8-byte header.
                r.get(..4)
                    .and_then(|t| t.try_into().ok())
                    .map_or(0, u32::from_le_bytes),
            )
        };
        let st_at = if node.streams().is_empty() {
            RegionOffset::NULL
        } else {
            let mut s: Vec<_> = node.streams().iter().collect();
            s.sort_by(|a, b| a.key.cmp(&b.key));
            let names: Vec<&[u16]> = s.iter().map(|a| a.name.as_slice()).collect();
            let ents: Vec<&[u8]> = s.iter().map(|a| a.stream.as_bytes()).collect();
            let table = encode_link_table(&names, &ents).map_err(|size| {
                table_too_large(
                    &w.cim_path,
                    "stream table",
                    node_path(&w.tree, &parent, n),
                    size,
                )
            })?;
            meta.put(&table, align)?
        };
        let default_stream = match &node.kind {
            Kind::File(s) => *s,
            Kind::Dir(children) => {
                let idb: Vec<[u8; 4]> = children
                    .values()
                    .map(|e| ids[e.node].to_le_bytes())
                    .collect();
                let names: Vec<&[u16]> = children.values().map(|e| e.name.as_slice()).collect();
                let ents: Vec<&[u8]> = idb.iter().map(|b| b.as_slice()).collect();
                // Empty directories get an 8-byte empty table rather than a null stream (A16: the safer guess).
                let table = encode_link_table(&names, &ents).map_err(|size| {
                    table_too_large(
                        &w.cim_path,
                        "directory table",
                        node_path(&w.tree, &parent, n),
                        size,
                    )
                })?;
                let at = meta.put(&table, align)?;
                format::Stream::new(
                    at,
                    table.len() as u64,
                    format::STREAM_TYPE_LINK_TABLE,
                    false,
                )
            }
        };
        let sd_off = sd_at
            .get(node.sd as usize)
            .copied()
            .unwrap_or(RegionOffset::NULL);
        // ParentFileId/BaseRegionIndex semantics are unknown (cim-format.md §A6): we store the
        // containing directory (the root names itself, as on NTFS) and the own region set's base index.
        let parent_id = if n == ROOT { 1 } else { ids[parent[n]] };
        entries.push(format::File {
            flags: node.flags.into(),
            ea_length: (node.ea().len() as u16).into(),
            reparse_tag: tag.into(),
            creation_time: node.times[0].into(),
            last_write_time: node.times[1].into(),
            change_time: node.times[2].into(),
            last_access_time: node.times[3].into(),
            default_stream,
            sd_offset: sd_off.0.into(),
            ea_offset: ea_at.0.into(),
            reparse_offset: rp_at.0.into(),
            stream_table_offset: st_at.0.into(),
            parent_file_id: parent_id.into(),
            base_region_index: own_base.into(),
            reserved: 0.into(),
        });
        files += 1;
        if entries.len() == per_table {
            flush(meta, &mut entries, &mut ftd)?;
        }
    }
    flush(meta, &mut entries, &mut ftd)?;
    let ftd_at = meta.put(ftd.as_bytes(), align)?;
    let fs = format::Filesystem {
        upcase_table_offset: upcase_at.0.into(),
        file_table_directory_offset: ftd_at.0.into(),
        file_table_directory_length: (ftd.len() as u32).into(),
        root_directory: 1.into(),
    };
    w.filesystem_offset = meta.put(fs.as_bytes(), align)?;
    meta.align(align)?;
    w.stats.files = files;
    Ok(())
}

pub(super) fn tmp_path(cim_path: &Path) -> PathBuf {
    let mut s = cim_path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Encodes the `.cim` file: header then parent region sets.
pub(crate) fn encode_cim_header(
    set: &format::RegionSet,
    parents: &[format::RegionSet],
    filesystem_offset: RegionOffset,
) -> Vec<u8> {
    // HeaderLength's meaning is unknown (cim-format.md §A3.1); we store the byte length of the
    // whole type-specific header, parents included.
    let total = 0x48 + parents.len() * 0x18;
    let h = format::FilesystemHeader {
        common: format::CommonHeader::new(format::FILE_TYPE_IMAGE, total as u32),
        regions: *set,
        filesystem_offset: filesystem_offset.0.into(),
        reserved: 0.into(),
        reserved1: 0.into(),
        parent_count: (parents.len() as u16).into(),
    };
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(parents.as_bytes());
    out
}

/// Writes `<name>.tmp` and fsyncs it and the folder (so the region and objectid files it names are
/// durable before it can appear), then publishes it as the `.cim` without ever replacing one.
pub(super) fn publish(w: &CimWriter) -> Result<()> {
    let bytes = encode_cim_header(&w.set, &w.parents, w.filesystem_offset);
    let tmp = tmp_path(&w.cim_path);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    let published = sync_dir(&w.dir).and_then(|()| link_no_replace(&tmp, &w.cim_path));
    let _ = fs::remove_file(&tmp);
    published
}

/// Makes `from` appear at `to`, failing with `AlreadyExists` rather than replacing `to`: a hard
/// link (atomic and never replaces), or a rename on filesystems without hard links.
fn link_no_replace(from: &Path, to: &Path) -> Result<()> {
    let exists = || Error::AlreadyExists {
        file: to.to_path_buf(),
    };
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(_) if to.exists() => Err(exists()),
        Err(_) => fs::rename(from, to).map_err(|e| Error::io(to, e)),
    }
}

/// Fsyncs the folder so the rename is durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a folder as a file for fsync; the rename is durable once NTFS logs it.
        let _ = dir;
        Ok(())
    }
}
