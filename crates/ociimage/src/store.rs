//! Where the image's members live: a folder on disk, or a tar archive read in place (one pass over
//! the headers builds an index of member offsets; nothing is extracted). A gzip or zstd compressed
//! archive is read in two streaming passes, never decompressed whole into memory or onto disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};

/// Symlink chains longer than this are treated as loops (docker save links each shared layer once).
const MAX_LINK_HOPS: usize = 16;
/// Members of a compressed archive up to this size are kept in memory by the first pass: the
/// manifests, indexes and configs the image is opened from (Windows image configs are a few KiB).
const SMALL_MEMBER: u64 = 1 << 20;
/// Total bytes the first pass keeps; small members past it are streamed again when asked for.
const KEPT_BUDGET: u64 = 64 << 20;
/// How many leading bytes of a member [`Store::head`] returns.
const HEAD_LEN: usize = 8;

/// The decompressor a compressed archive's members are read from, with its position in the
/// decompressed stream; empty while a member reader holds it (or before the first read).
type SharedCursor = Rc<RefCell<Option<(Box<dyn Read>, u64)>>>;

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
        /// Set when the archive itself is gzip or zstd compressed; offsets are then positions in
        /// the decompressed stream.
        compressed: Option<Compressed>,
    },
}

/// What reading a compressed archive needs besides the member index.
///
/// Two streaming passes rather than spooling layers to temporary files: the first pass (in
/// [`Store::open`]) indexes every member and keeps the small ones (the JSON documents), the second
/// decompresses again and hands out each layer blob as it streams past. Spooling would need as much
/// free disk as the largest layer (gigabytes for a Windows base layer) plus a second write of it;
/// streaming costs only decompression time. The decompressor is kept between members, so blobs
/// read in archive order cost one pass in all; a blob lying before the previous one restarts from
/// the archive's start (docker save orders members by name, not by layer).
pub(crate) struct Compressed {
    /// Small members' bytes, by their offset in the decompressed stream.
    kept: HashMap<u64, Vec<u8>>,
    /// The first [`HEAD_LEN`] bytes of the other members (enough to tell their compression).
    heads: HashMap<u64, Vec<u8>>,
    /// The decompressor left by the last member read, and its position in the decompressed stream.
    cursor: SharedCursor,
}

impl fmt::Debug for Compressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressed")
            .field("kept_members", &self.kept.len())
            .finish()
    }
}

/// One member of a compressed archive, read from the shared decompressor; gives the decompressor
/// back (with its position) when dropped so the next member can continue from there.
struct CompressedMember {
    stream: Option<Box<dyn Read>>,
    position: u64,
    remaining: u64,
    cursor: SharedCursor,
}

impl Read for CompressedMember {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let Some(dest) = buf.get_mut(..want) else {
            return Ok(0);
        };
        if dest.is_empty() {
            return Ok(0);
        }
        // A decompressor that failed is not handed on: the next member starts a fresh pass.
        let n = match stream.read(dest) {
            Ok(n) => n,
            Err(e) => {
                self.stream = None;
                return Err(e);
            }
        };
        if n == 0 {
            self.stream = None;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "compressed archive ends {} bytes before the end of the member",
                    self.remaining
                ),
            ));
        }
        self.position += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

impl Drop for CompressedMember {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            *self.cursor.borrow_mut() = Some((stream, self.position));
        }
    }
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

/// Opens `path` through the decompressor its first bytes call for (the layer importer's detection,
/// so an archive and a layer are told apart the same way).
fn decompress_file(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|error| Error::Io {
        source_path: path.to_path_buf(),
        member: String::new(),
        error,
    })?;
    wclayer::decompressed_archive(file).map_err(|e| Error::Invalid {
        source_path: path.to_path_buf(),
        member: String::new(),
        message: e.to_string(),
    })
}

/// Indexes one tar entry; `None` for entries that are not members we can read (devices, fifos,
/// names that climb out of the root).
fn index_entry<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Option<(String, Member)>> {
    let raw_name = entry.path()?;
    let Some(name) = normalize(&raw_name.to_string_lossy()) else {
        return Ok(None);
    };
    let kind = entry.header().entry_type();
    let member = if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name()?
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
        return Ok(None);
    };
    Ok(Some((name, member)))
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
        let mut magic = [0u8; 8];
        let got = read_up_to(&mut file, &mut magic).map_err(io_err)?;
        let magic = magic.get(..got).unwrap_or_default();
        let compression = wclayer::detect_compression(magic).map_err(|e| Error::Invalid {
            source_path: path.to_path_buf(),
            member: String::new(),
            message: e.to_string(),
        })?;
        if compression != crate::Compression::None {
            return Store::open_compressed(path);
        }
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive.entries_with_seek().map_err(io_err)?;
        for entry in entries {
            let entry = entry.map_err(io_err)?;
            if let Some((name, member)) = index_entry(&entry).map_err(io_err)? {
                // Entries are found by seeking past their data, which reading would have
                // refused: a member cut short by the end of the file is a truncated archive.
                // (A block device reports no length: not checked there.)
                if let Member::File { offset, size } = member {
                    if meta.is_file() && offset.saturating_add(size) > meta.len() {
                        return Err(Error::Invalid {
                            source_path: path.to_path_buf(),
                            member: name,
                            message: format!(
                                "the archive is truncated: this member's {size} bytes at offset \
                                 {offset} run past its end ({} bytes)",
                                meta.len()
                            ),
                        });
                    }
                }
                members.insert(name, member);
            }
        }
        Ok(Store::Tar {
            path: path.to_path_buf(),
            members,
            compressed: None,
        })
    }

    /// First pass over a compressed archive: index every member, keep the small ones.
    fn open_compressed(path: &Path) -> Result<Store> {
        let io_err = |error| Error::Io {
            source_path: path.to_path_buf(),
            member: String::new(),
            error,
        };
        let mut archive = tar::Archive::new(decompress_file(path)?);
        let mut members = HashMap::new();
        let mut kept = HashMap::new();
        let mut heads = HashMap::new();
        let mut kept_bytes = 0u64;
        for entry in archive.entries().map_err(io_err)? {
            let mut entry = entry.map_err(io_err)?;
            let Some((name, member)) = index_entry(&entry).map_err(io_err)? else {
                continue;
            };
            if let Member::File { offset, size } = member {
                if size <= SMALL_MEMBER && kept_bytes + size <= KEPT_BUDGET {
                    let mut bytes = Vec::new();
                    (&mut entry)
                        .take(size)
                        .read_to_end(&mut bytes)
                        .map_err(|error| Error::Io {
                            source_path: path.to_path_buf(),
                            member: name.clone(),
                            error,
                        })?;
                    kept_bytes += size;
                    kept.insert(offset, bytes);
                } else {
                    let mut head = Vec::with_capacity(HEAD_LEN);
                    (&mut entry)
                        .take(HEAD_LEN as u64)
                        .read_to_end(&mut head)
                        .map_err(|error| Error::Io {
                            source_path: path.to_path_buf(),
                            member: name.clone(),
                            error,
                        })?;
                    heads.insert(offset, head);
                }
            }
            members.insert(name, member);
        }
        // Read the compressed stream to its end, so that its checksum is checked and bytes after
        // it that are not another gzip member / zstd frame are refused, as for a layer.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| Error::Invalid {
            source_path: path.to_path_buf(),
            member: String::new(),
            message: format!("after the archive's end-of-archive blocks: {e}"),
        })?;
        Ok(Store::Tar {
            path: path.to_path_buf(),
            members,
            compressed: Some(Compressed {
                kept,
                heads,
                cursor: Rc::new(RefCell::new(None)),
            }),
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
        self.member_size(name).is_some()
    }

    /// The size of a regular member (file, or link to one) of that name, if there is one.
    pub(crate) fn member_size(&self, name: &str) -> Option<u64> {
        match self {
            Store::Dir(root) => {
                let meta = std::fs::metadata(root.join(normalize(name)?)).ok()?;
                meta.is_file().then_some(meta.len())
            }
            Store::Tar { members, .. } => self.resolve(name, members).ok().map(|(_, size)| size),
        }
    }

    /// Opens a member for streaming; returns the reader and the member's size.
    pub(crate) fn open_member(&self, name: &str) -> Result<(Box<dyn Read>, u64)> {
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
            Store::Tar {
                path,
                members,
                compressed: None,
            } => {
                let (offset, size) = self.resolve(name, members)?;
                let mut file = File::open(path).map_err(io_err)?;
                file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
                Ok((Box::new(file.take(size)), size))
            }
            Store::Tar {
                path,
                members,
                compressed: Some(c),
            } => {
                let (offset, size) = self.resolve(name, members)?;
                if let Some(bytes) = c.kept.get(&offset) {
                    return Ok((Box::new(io::Cursor::new(bytes.clone())), size));
                }
                // Continue from where the last member left the decompressor, or start over
                // when this member lies behind it.
                let (mut stream, mut position) = match c.cursor.borrow_mut().take() {
                    Some((s, p)) if p <= offset => (s, p),
                    _ => (decompress_file(path)?, 0),
                };
                let skipped = io::copy(&mut (&mut stream).take(offset - position), &mut io::sink())
                    .map_err(io_err)?;
                position += skipped;
                if position != offset {
                    return Err(io_err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "compressed archive ends at {position}, before the member at {offset}"
                        ),
                    )));
                }
                let member = CompressedMember {
                    stream: Some(stream),
                    position,
                    remaining: size,
                    cursor: Rc::clone(&c.cursor),
                };
                Ok((Box::new(member), size))
            }
        }
    }

    /// The first bytes of a member (up to [`HEAD_LEN`]) and its size, without streaming a
    /// compressed archive again.
    pub(crate) fn head(&self, name: &str) -> Result<(Vec<u8>, u64)> {
        if let Store::Tar {
            members,
            compressed: Some(c),
            ..
        } = self
        {
            let (offset, size) = self.resolve(name, members)?;
            if let Some(bytes) = c.heads.get(&offset).or_else(|| c.kept.get(&offset)) {
                return Ok((bytes.iter().take(HEAD_LEN).copied().collect(), size));
            }
        }
        let (reader, size) = self.open_member(name)?;
        let mut head = Vec::with_capacity(HEAD_LEN);
        reader
            .take(HEAD_LEN as u64)
            .read_to_end(&mut head)
            .map_err(|error| Error::Io {
                source_path: self.path().to_path_buf(),
                member: name.to_string(),
                error,
            })?;
        Ok((head, size))
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
