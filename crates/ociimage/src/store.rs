//! Where the image's members live: a folder on disk, or an uncompressed tar archive read in place
//! (one pass over the headers builds an index of member offsets; nothing is extracted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Symlink chains longer than this are treated as loops (docker save links each shared layer once).
const MAX_LINK_HOPS: usize = 16;

#[derive(Debug)]
pub(crate) enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink (target relative to the member's folder) or hard link (target from the root).
    Link {
        target: String,
    },
    Dir,
}

/// A folder or a tar archive holding an OCI layout or a docker-save image.
#[derive(Debug)]
pub(crate) enum Store {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, Member>,
    },
}

/// Normalises a member name: `/`-separated, no `.` or empty components; `None` for names that
/// climb out of the root (`..`) so a hostile manifest cannot make us read outside the image.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Store> {
        let io_err = |error| Error::Io {
            source_path: path.to_path_buf(),
            member: String::new(),
            error,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if meta.is_dir() {
            return Ok(Store::Dir(path.to_path_buf()));
        }
        let mut file = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut file, &mut magic).map_err(io_err)?;
        let magic = magic.get(..got).unwrap_or_default();
        if magic.starts_with(&[0x1f, 0x8b]) || magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(Error::Invalid {
                source_path: path.to_path_buf(),
                member: String::new(),
                message: "compressed archive: decompress it first (members are read in place, \
                          which needs an uncompressed tar)"
                    .into(),
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive.entries_with_seek().map_err(io_err)?;
        for entry in entries {
            let entry = entry.map_err(io_err)?;
            let raw_name = entry.path().map_err(io_err)?;
            let Some(name) = normalize(&raw_name.to_string_lossy()) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let member = if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(io_err)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = if kind.is_symlink() && !target.starts_with('/') {
                    match name.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                Member::Link { target }
            } else if kind.is_dir() {
                Member::Dir
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else {
                continue;
            };
            members.insert(name, member);
        }
        Ok(Store::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    /// The image source on disk (folder or archive).
    pub(crate) fn path(&self) -> &Path {
        match self {
            Store::Dir(p) => p,
            Store::Tar { path, .. } => path,
        }
    }

    fn missing(&self, name: &str) -> Error {
        Error::MissingMember {
            source_path: self.path().to_path_buf(),
            member: name.to_string(),
        }
    }

    /// Follows links inside a tar to the regular file a name stands for.
    fn resolve<'a>(
        &'a self,
        name: &str,
        members: &'a HashMap<String, Member>,
    ) -> Result<(u64, u64)> {
        let mut current = normalize(name).ok_or_else(|| self.missing(name))?;
        for _ in 0..MAX_LINK_HOPS {
            match members.get(&current) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link { target }) => {
                    current = normalize(target).ok_or_else(|| self.missing(name))?;
                }
                Some(Member::Dir) | None => return Err(self.missing(name)),
            }
        }
        Err(Error::Invalid {
            source_path: self.path().to_path_buf(),
            member: name.to_string(),
            message: format!("more than {MAX_LINK_HOPS} links in a chain (loop?)"),
        })
    }

    /// Whether a regular member (file, or link to one) of that name exists.
    pub(crate) fn exists(&self, name: &str) -> bool {
        match self {
            Store::Dir(root) => normalize(name).is_some_and(|n| root.join(n).is_file()),
            Store::Tar { members, .. } => self.resolve(name, members).is_ok(),
        }
    }

    /// Opens a member for streaming; returns the reader and the member's size.
    pub(crate) fn open_member(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        let io_err = |error| Error::Io {
            source_path: self.path().to_path_buf(),
            member: name.to_string(),
            error,
        };
        match self {
            Store::Dir(root) => {
                let rel = normalize(name).ok_or_else(|| self.missing(name))?;
                let full = root.join(rel);
                let file = match File::open(&full) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.missing(name)),
                    Err(e) => return Err(io_err(e)),
                };
                let meta = file.metadata().map_err(io_err)?;
                if !meta.is_file() {
                    return Err(self.missing(name));
                }
                Ok((Box::new(file), meta.len()))
            }
            Store::Tar { path, members } => {
                let (offset, size) = self.resolve(name, members)?;
                let mut file = File::open(path).map_err(io_err)?;
                file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
                Ok((Box::new(file.take(size)), size))
            }
        }
    }

    /// Reads a small member (a JSON document) whole, refusing anything over `limit` bytes.
    pub(crate) fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (reader, size) = self.open_member(name)?;
        if size > limit {
            return Err(Error::TooLarge {
                source_path: self.path().to_path_buf(),
                member: name.to_string(),
                size,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|error| Error::Io {
                source_path: self.path().to_path_buf(),
                member: name.to_string(),
                error,
            })?;
        Ok(buf)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("a/../../b"), None);
        assert_eq!(normalize("/abs/x").as_deref(), Some("abs/x"));
    }
}
