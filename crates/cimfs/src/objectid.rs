//! Reading `objectid_*` files: the header, then the entries streamed in small chunks, with the
//! table checked against the file's length and [`format::MAX_OBJECT_IDS`] before any is read.

use std::fs;
use std::io;
use std::path::Path;

use zerocopy::FromBytes;

use crate::format;
use crate::reader::read_exact_at;

const HEADER_LEN: u64 = std::mem::size_of::<format::ObjectIdHeader>() as u64;
const ENTRY_LEN: u64 = std::mem::size_of::<format::ObjectIdEntry>() as u64;
/// Entries read per chunk (64 KiB of table): memory stays fixed however long the table is.
const CHUNK_ENTRIES: u64 = 1638;

/// Why an objectid file cannot be used.
#[derive(Debug)]
pub(crate) enum ObjectIdError {
    Io(io::Error),
    /// The bytes at `offset` of the file are wrong.
    Corrupt {
        offset: u64,
        reason: String,
    },
}

impl std::fmt::Display for ObjectIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectIdError::Io(e) => e.fmt(f),
            ObjectIdError::Corrupt { reason, .. } => f.write_str(reason),
        }
    }
}

impl ObjectIdError {
    /// Byte offset of the problem in the file, when there is one.
    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            ObjectIdError::Io(_) => None,
            ObjectIdError::Corrupt { offset, .. } => Some(*offset),
        }
    }
}

/// An opened objectid file whose header has the CIM magic.
pub(crate) struct ObjectIdFile {
    pub(crate) header: format::ObjectIdHeader,
    file: fs::File,
    len: u64,
}

impl ObjectIdFile {
    /// Opens `path` and reads its header.
    pub(crate) fn open(path: &Path) -> Result<ObjectIdFile, ObjectIdError> {
        let file = fs::File::open(path).map_err(ObjectIdError::Io)?;
        let len = file.metadata().map_err(ObjectIdError::Io)?.len();
        if len < HEADER_LEN {
            return Err(ObjectIdError::Corrupt {
                offset: 0,
                reason: format!("file is {len} bytes, shorter than an objectid header"),
            });
        }
        let mut hb = [0u8; HEADER_LEN as usize];
        read_exact_at(&file, &mut hb, 0).map_err(ObjectIdError::Io)?;
        let header =
            format::ObjectIdHeader::read_from_bytes(&hb).map_err(|_| ObjectIdError::Corrupt {
                offset: 0,
                reason: "short objectid header".into(),
            })?;
        if header.common.magic != format::MAGIC {
            return Err(ObjectIdError::Corrupt {
                offset: 0,
                reason: "bad magic".into(),
            });
        }
        Ok(ObjectIdFile { header, file, len })
    }

    /// Byte offset and entry count of the table, once both are checked: at most
    /// [`format::MAX_OBJECT_IDS`] entries, all inside the file.
    pub(crate) fn table(&self) -> Result<(u64, u64), ObjectIdError> {
        let start = u64::from(self.header.table_offset.get());
        let count = u64::from(self.header.count.get());
        if count > u64::from(format::MAX_OBJECT_IDS) {
            return Err(ObjectIdError::Corrupt {
                offset: 0x2c,
                reason: format!(
                    "{count} object ids is over the limit of {}",
                    format::MAX_OBJECT_IDS
                ),
            });
        }
        if start < HEADER_LEN || start + count * ENTRY_LEN > self.len {
            return Err(ObjectIdError::Corrupt {
                offset: 0x28,
                reason: format!(
                    "{count} entries at {start:#x} run past the file end ({} bytes) or into the header",
                    self.len
                ),
            });
        }
        Ok((start, count))
    }

    /// Calls `visit(index, byte offset in the file, entry)` for every entry, in order.
    pub(crate) fn for_each(
        &self,
        mut visit: impl FnMut(u64, u64, &format::ObjectIdEntry),
    ) -> Result<(), ObjectIdError> {
        let (start, count) = self.table()?;
        let mut buf = vec![0u8; (CHUNK_ENTRIES * ENTRY_LEN) as usize];
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(CHUNK_ENTRIES);
            let bytes = buf
                .get_mut(..(n * ENTRY_LEN) as usize)
                .ok_or_else(|| ObjectIdError::Io(io::Error::other("chunk larger than buffer")))?;
            read_exact_at(&self.file, bytes, start + done * ENTRY_LEN)
                .map_err(ObjectIdError::Io)?;
            let entries = <[format::ObjectIdEntry]>::ref_from_bytes(bytes).map_err(|_| {
                ObjectIdError::Corrupt {
                    offset: start + done * ENTRY_LEN,
                    reason: "misaligned entry chunk".into(),
                }
            })?;
            for (k, e) in entries.iter().enumerate() {
                let i = done + k as u64;
                visit(i, start + i * ENTRY_LEN, e);
            }
            done += n;
        }
        Ok(())
    }
}
