//! CIM → Windows layer tar in go-winio's backuptar dialect: the inverse of layer import.
//! Owns the entry order (parents first, ADS right after their file, hard links for repeated file
//! ids) and the tar framing (PAX `x` headers for the Windows metadata, long names and big sizes);
//! the record names and value encoders come from [`crate::backuptar`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};

use crate::backuptar::{self, DialectError};

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the image failed (the cimfs error names the image, object and offset).
    #[error(transparent)]
    Cim(#[from] cimfs::Error),
    /// Reading a stream of the image or writing the tar failed.
    #[error("{image}: {path}: {source}")]
    Io {
        image: String,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The entry's metadata cannot be expressed in the backuptar dialect.
    #[error("{image}: {path}: {source}")]
    Dialect {
        image: String,
        path: String,
        #[source]
        source: DialectError,
    },
    /// The image's tree is not a tree (a directory reached twice) or a name cannot go in a tar.
    #[error("{image}: {path}: {reason}")]
    Unsupported {
        image: String,
        path: String,
        reason: String,
    },
}

/// Choices for [`export_layer`].
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Also write the entries base-layer import generates itself (`Hives\` and `layout`, present
    /// when the root has `layout` = "vhd-with-hives"); off, so that importing the tar again as a
    /// base layer reproduces the image instead of failing on an existing `Hives`.
    pub include_generated: bool,
}

/// What [`export_layer`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Tar entries written (PAX headers not counted).
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    pub alternate_streams: u64,
    /// Bytes of file and stream data written.
    pub data_bytes: u64,
    /// Paths left out because import generates them (see [`ExportOptions::include_generated`]).
    pub skipped: Vec<String>,
}

/// Content of the `layout` file base-layer import writes (layer-tar.md §B11).
const GENERATED_LAYOUT: &[u8] = b"vhd-with-hives\n";
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
    let Ok(mut r) = cim.open_file("layout") else {
        return false;
    };
    let mut buf = Vec::new();
    (&mut r).take(64).read_to_end(&mut buf).is_ok() && buf == GENERATED_LAYOUT
}

/// Writes the whole tree of `cim` (its merged view, parents included) as a layer tar to `out`:
/// every directory, file, symlink / mount point and hard link with its times, attributes, SD
/// and EAs in PAX records, and each alternate data stream as a `<file>:<stream>` entry after
/// its file. Directory names carry no trailing `/` (as go-winio writes them). Other reparse
/// tags have no backuptar form and fail the export.
pub fn export_layer(
    cim: &cimfs::Cim,
    out: impl Write,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    let image = cim.path().display().to_string();
    let skip_generated = !opts.include_generated && has_generated_entries(cim);
    let mut tar = TarOut {
        out,
        image: &image,
        summary: ExportSummary::default(),
    };
    // file id -> first tar name written for it (hard links point there).
    let mut first_name: HashMap<cimfs::FileId, String> = HashMap::new();
    let mut seen_dirs: HashSet<cimfs::FileId> = HashSet::new();
    seen_dirs.insert(cim.root());
    // Stack of (tar name of the directory, its entries in reverse order).
    let mut root_entries = cim.read_dir_id(cim.root())?;
    root_entries.reverse();
    let mut stack: Vec<(String, Vec<cimfs::DirEntry>)> = vec![(String::new(), root_entries)];
    while let Some((dir, entries)) = stack.last_mut() {
        let Some(child) = entries.pop() else {
            stack.pop();
            continue;
        };
        if child.name.contains(['/', '\0']) || child.name == "." || child.name == ".." {
            return Err(ExportError::Unsupported {
                image: image.clone(),
                path: format!("{dir}/{}", child.name),
                reason: "name cannot be written to a tar".into(),
            });
        }
        let name = if dir.is_empty() {
            child.name.clone()
        } else {
            format!("{dir}/{}", child.name)
        };
        if skip_generated
            && dir.is_empty()
            && (child.name.eq_ignore_ascii_case("Hives")
                || child.name.eq_ignore_ascii_case("layout"))
        {
            tar.summary.skipped.push(name.replace('/', "\\"));
            continue;
        }
        let info = cim.file(child.file_id)?;
        if let Some(target) = first_name.get(&info.file_id) {
            if !info.is_directory {
                let target = target.clone();
                tar.header(
                    &name,
                    Kind::HardLink(&target),
                    unix_secs(info.last_write_time),
                    BTreeMap::new(),
                )?;
                tar.summary.hard_links += 1;
                continue;
            }
        }
        let meta = cimfs::FileMetadata::from(&info);
        let pax = backuptar::pax_records_for(&meta).map_err(dialect(&image, &name))?;
        let mtime = unix_secs(info.last_write_time);
        if !info.reparse_data.is_empty() {
            let rp = backuptar::decode_reparse_point(&info.reparse_data)
                .map_err(dialect(&image, &name))?;
            tar.header(&name, Kind::Symlink(&rp.target), mtime, pax)?;
            tar.summary.symlinks += 1;
            first_name.insert(info.file_id, name.clone());
            if info.is_directory {
                // A directory reparse point is exported as the link itself, like go-winio does.
                seen_dirs.insert(info.file_id);
            }
            continue;
        }
        if info.is_directory {
            if !seen_dirs.insert(info.file_id) {
                return Err(ExportError::Unsupported {
                    image: image.clone(),
                    path: name.replace('/', "\\"),
                    reason: format!(
                        "directory (file id {}) appears twice in the tree",
                        info.file_id
                    ),
                });
            }
            tar.header(&name, Kind::Dir, mtime, pax)?;
            tar.summary.directories += 1;
            let mut sub = cim.read_dir_id(info.file_id)?;
            sub.reverse();
            stack.push((name, sub));
            continue;
        }
        tar.header(&name, Kind::File(info.size), mtime, pax)?;
        let reader = cim.open_id(info.file_id, None)?;
        tar.data(&name, reader, info.size)?;
        tar.summary.files += 1;
        first_name.insert(info.file_id, name.clone());
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
    }
    // End of archive: two zero blocks.
    tar.write_raw("", &[0u8; 1024])?;
    tar.out.flush().map_err(|e| tar.io("", e))?;
    Ok(tar.summary)
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
