//! One region file being written: appends objects at the alignment their region type needs,
//! can cut the file back (to drop data that turned out to be a duplicate), and records the
//! object ids that go into the matching `objectid_*` file.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::format::{self, RegionOffset};

const BUFFER: usize = 1 << 20;
const ZEROS: [u8; 4096] = [0; 4096];
/// Bytes written between two background writeback requests.
const SYNC_EVERY: u64 = 32 << 20;

/// Flushes a region's data to disk on its own thread while the writer goes on, so that the
/// fsync at commit finds little left to write. The thread's first writeback error is its result
/// and is reported at commit: the thread syncs through a clone of the same open file, and the
/// kernel reports an error to only one of the syncs of that file.
struct Syncer {
    requests: Option<SyncSender<()>>,
    thread: Option<JoinHandle<Option<std::io::Error>>>,
}

impl Syncer {
    fn start(file: &File) -> Option<Syncer> {
        let clone = file.try_clone().ok()?;
        // Capacity 1: while a sync runs, one more may wait; further requests are dropped, as
        // the waiting one will cover their bytes too.
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("cim-region-sync".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = clone.sync_data() {
                        return Some(e);
                    }
                }
                None
            })
            .ok()?;
        Some(Syncer {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    fn request(&self) {
        if let Some(tx) = &self.requests {
            // Full: a queued request covers these bytes too. Disconnected: the thread stopped
            // on an error, which commit reports.
            let _ = tx.try_send(());
        }
    }

    /// Stops the thread and returns the first writeback error it met.
    fn stop(&mut self) -> Option<std::io::Error> {
        self.requests = None;
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

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
    syncer: Option<Syncer>,
    /// Position at which the next background writeback is requested.
    next_sync: u64,
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
        let syncer = Syncer::start(&file);
        let mut w = RegionWriter {
            path,
            file: BufWriter::with_capacity(BUFFER, file),
            pos: 0,
            index,
            combined,
            region_type,
            objects: Vec::new(),
            syncer,
            next_sync: SYNC_EVERY,
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
        if end >= self.next_sync {
            self.next_sync = end + SYNC_EVERY;
            if let Some(s) = &self.syncer {
                s.request();
            }
        }
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
        self.next_sync = self.next_sync.min(pos + SYNC_EVERY);
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
        if let Some(e) = self.syncer.take().and_then(|mut s| s.stop()) {
            return Err(Error::io(&self.path, e));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A region larger than several writeback periods, cut back once, comes out whole and in
    /// order after `finish`, with the background thread stopped.
    #[test]
    fn background_writeback_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region_test_0");
        let mut w = RegionWriter::create(path.clone(), 0, 0, 0).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for _ in 0..80 {
            w.write_all(&chunk).unwrap();
        }
        let keep = w.pos() - (10 << 20);
        w.truncate(keep).unwrap();
        for _ in 0..40 {
            w.write_all(&chunk).unwrap();
        }
        let end = w.pos();
        w.finish(&dir.path().join("objectid_test_0")).unwrap();
        assert!(w.syncer.is_none());
        let data = fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, end);
        let body = &data[0x28..];
        for (i, c) in body.chunks(chunk.len()).enumerate() {
            assert_eq!(c, &chunk[..c.len()], "chunk {i}");
        }
    }
}
