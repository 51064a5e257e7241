//! One region file being written: appends objects at the alignment their region type needs,
//! can cut the file back (to drop data that turned out to be a duplicate), and records the
//! object ids that go into the matching `objectid_*` file.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::format::{self, RegionOffset};

const BUFFER: usize = 1 << 20;
const ZEROS: [u8; 4096] = [0; 4096];

pub(crate) struct RegionWriter {
    pub(crate) path: PathBuf,
    file: BufWriter<File>,
    pos: u64,
    /// Index of this region inside its own region set.
    pub(crate) index: u16,
    /// Index of this region in the image's combined region list (parents first).
    pub(crate) combined: u16,
    pub(crate) region_type: u8,
    pub(crate) objects: Vec<format::ObjectIdEntry>,
}

impl RegionWriter {
    /// Creates the region file (failing if it exists) and writes its header.
    pub(crate) fn create(
        path: PathBuf,
        index: u16,
        combined: u16,
        region_type: u8,
    ) -> Result<RegionWriter> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut w = RegionWriter {
            path,
            file: BufWriter::with_capacity(BUFFER, file),
            pos: 0,
            index,
            combined,
            region_type,
            objects: Vec::new(),
        };
        let header = format::RegionHeader {
            common: format::CommonHeader::new(format::FILE_TYPE_REGION, 0x28),
            index: index.into(),
            region_type,
            reserved: 0,
            reserved2: 0.into(),
        };
        w.write_all(header.as_bytes())?;
        Ok(w)
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn offset(&self) -> RegionOffset {
        RegionOffset::new(self.combined, self.pos)
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len() as u64;
        if end >= 1 << 48 {
            return Err(Error::io(
                &self.path,
                std::io::Error::other("region file would exceed 2^48 bytes"),
            ));
        }
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos = end;
        Ok(())
    }

    pub(crate) fn write_zeros(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.write_all(&ZEROS[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Pads with zeros to a multiple of `align`.
    pub(crate) fn align(&mut self, align: u64) -> Result<()> {
        let target = format::align_up(self.pos, align);
        self.write_zeros(target - self.pos)
    }

    /// Appends `bytes` at the next `align` boundary and returns where they went.
    pub(crate) fn put(&mut self, bytes: &[u8], align: u64) -> Result<RegionOffset> {
        self.align(align)?;
        let at = self.offset();
        self.write_all(bytes)?;
        Ok(at)
    }

    /// Cuts the file back to `pos` (everything written after it is dropped).
    pub(crate) fn truncate(&mut self, pos: u64) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        let f = self.file.get_mut();
        f.set_len(pos).map_err(|e| Error::io(&self.path, e))?;
        f.seek(SeekFrom::Start(pos))
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos = pos;
        Ok(())
    }

    /// Flushes and fsyncs the region, then writes and fsyncs its objectid file at `objectid_path`.
    pub(crate) fn finish(&mut self, objectid_path: &Path) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))?;
        // Readers refuse objectid tables over the shared limit, so none is written.
        let count = u32::try_from(self.objects.len())
            .ok()
            .filter(|&n| n <= format::MAX_OBJECT_IDS)
            .ok_or_else(|| {
                Error::io(
                    objectid_path,
                    std::io::Error::other(format!(
                        "{} stored objects, over the {} an objectid file may list",
                        self.objects.len(),
                        format::MAX_OBJECT_IDS
                    )),
                )
            })?;
        let header = format::ObjectIdHeader {
            common: format::CommonHeader::new(format::FILE_TYPE_OBJECT_ID, 0x30),
            index: self.index.into(),
            region_type: self.region_type,
            reserved: 0,
            reserved2: 0.into(),
            table_offset: 0x30.into(),
            count: count.into(),
        };
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(objectid_path)
            .map_err(|e| Error::io(objectid_path, e))?;
        let mut w = BufWriter::with_capacity(BUFFER, f);
        let io = |e| Error::io(objectid_path, e);
        w.write_all(header.as_bytes()).map_err(io)?;
        w.write_all(self.objects.as_bytes()).map_err(io)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        Ok(())
    }

    /// Removes the region file (used when a writer is dropped without commit).
    pub(crate) fn discard(&self) {
        // Best effort: a failed removal leaves an orphan region, never a .cim that opens.
        let _ = fs::remove_file(&self.path);
    }
}
