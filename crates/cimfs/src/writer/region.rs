//! One region file being written: appends objects at the alignment their region type needs,
//! can cut the file back (to drop data that turned out to be a duplicate), and records the
//! object ids that go into the matching `objectid_*` file.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
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

/// What the writing thread is asked to do, in order.
enum Op {
    /// Append these bytes.
    Write(Vec<u8>),
    /// Cut the file back to this length and go on writing there.
    Truncate(u64),
}

/// Writes a region's bytes on a thread of its own, in order, so that copying them into the
/// kernel overlaps with reading and hashing the next ones. Bytes are gathered into buffers of
/// [`PIPE_BUFFER`] bytes; at most [`IN_FLIGHT`] of them wait for the thread. The thread's first
/// error ends it; the writer meets that error at its next hand-over, cut-back or finish.
struct Pipe {
    /// Bytes not yet handed over; they belong at file position `sent`.
    buf: Vec<u8>,
    /// File position up to which bytes have been handed to the thread.
    sent: u64,
    ops: Option<SyncSender<Op>>,
    /// Buffers the thread has written, handed back for reuse.
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<std::io::Result<File>>>,
}

/// Buffers handed over and not yet written, at most.
const IN_FLIGHT: usize = 4;
/// Size of one hand-over. Small enough to still be in the CPU's cache when the thread copies it
/// into the kernel: 1 MiB buffers made the 50,000-file write benchmark 1.5x slower than writing
/// on the same thread, 256 KiB ones 1.1x faster (bench_write, 2026-12-03).
const PIPE_BUFFER: usize = 256 << 10;

impl Pipe {
    fn start(file: File, at: u64) -> std::io::Result<Pipe> {
        let (ops, rx) = mpsc::sync_channel::<Op>(IN_FLIGHT);
        let (give_back, spare) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("cim-region-write".into())
            .spawn(move || {
                let mut file = file;
                while let Ok(op) = rx.recv() {
                    match op {
                        Op::Write(mut bytes) => {
                            file.write_all(&bytes)?;
                            bytes.clear();
                            // Full: enough spares already; this one is dropped.
                            let _ = give_back.try_send(bytes);
                        }
                        Op::Truncate(len) => {
                            file.set_len(len)?;
                            file.seek(SeekFrom::Start(len))?;
                        }
                    }
                }
                Ok(file)
            })?;
        Ok(Pipe {
            buf: Vec::with_capacity(PIPE_BUFFER),
            sent: at,
            ops: Some(ops),
            spare,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after it has written everything handed over) and returns the file,
    /// or the first error the thread met.
    fn join(&mut self) -> std::io::Result<File> {
        self.ops = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("region writing thread panicked"))),
            None => Err(std::io::Error::other(
                "region writing thread already stopped",
            )),
        }
    }

    fn send(&mut self, op: Op) -> std::io::Result<()> {
        let delivered = match &self.ops {
            Some(ops) => ops.send(op).is_ok(),
            None => false,
        };
        if delivered {
            return Ok(());
        }
        // The thread stopped: its error is the reason.
        Err(self
            .join()
            .err()
            .unwrap_or_else(|| std::io::Error::other("region writing thread stopped")))
    }

    /// Hands the gathered bytes to the thread.
    fn hand_over(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIPE_BUFFER));
        let full = std::mem::replace(&mut self.buf, next);
        self.sent += full.len() as u64;
        self.send(Op::Write(full))
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = PIPE_BUFFER.saturating_sub(self.buf.len()).max(1);
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            bytes = later;
            if self.buf.len() >= PIPE_BUFFER {
                self.hand_over()?;
            }
        }
        Ok(())
    }

    /// Drops everything from file position `len` on.
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        if len >= self.sent {
            // Still gathered here: nothing reached the file yet.
            let keep = usize::try_from(len - self.sent).unwrap_or(usize::MAX);
            self.buf.truncate(keep);
            return Ok(());
        }
        self.buf.clear();
        self.sent = len;
        self.send(Op::Truncate(len))
    }

    /// Writes everything handed over or gathered and returns the file.
    fn finish(&mut self) -> std::io::Result<File> {
        self.hand_over()?;
        self.join()
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Waits for the thread so no write lands after the file is removed.
        let _ = self.join();
    }
}

pub(crate) struct RegionWriter {
    pub(crate) path: PathBuf,
    file: Pipe,
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
        let file = match Pipe::start(file, 0) {
            Ok(pipe) => pipe,
            Err(e) => {
                // Not yet owned by a writer whose drop would remove it.
                let _ = fs::remove_file(&path);
                return Err(Error::io(&path, e));
            }
        };
        let mut w = RegionWriter {
            path,
            file,
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
        if pos > self.pos {
            return Err(Error::io(
                &self.path,
                std::io::Error::other(format!(
                    "cut back to {pos}, past the end of the region ({})",
                    self.pos
                )),
            ));
        }
        self.next_sync = self.next_sync.min(pos + SYNC_EVERY);
        self.file
            .truncate(pos)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos = pos;
        Ok(())
    }

    /// Flushes and fsyncs the region, then writes and fsyncs its objectid file at `objectid_path`.
    pub(crate) fn finish(&mut self, objectid_path: &Path) -> Result<()> {
        let file = self.file.finish().map_err(|e| Error::io(&self.path, e))?;
        if let Some(e) = self.syncer.take().and_then(|mut s| s.stop()) {
            return Err(Error::io(&self.path, e));
        }
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
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
    pub(crate) fn discard(&mut self) {
        // Queued bytes are written first, so none lands after the removal.
        let _ = self.file.join();
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

    /// Cutting back bytes still gathered in memory and bytes already handed to the writing
    /// thread both leave exactly the bytes kept, followed by what is written next.
    #[test]
    fn cut_back_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region_test_0");
        let mut w = RegionWriter::create(path.clone(), 0, 0, 0).unwrap();
        // The header's bytes are compared by other tests; here only their length counts.
        let mut model = vec![0u8; 0x28];
        let put = |w: &mut RegionWriter, model: &mut Vec<u8>, n: usize, b: u8| {
            let bytes = vec![b; n];
            w.write_all(&bytes).unwrap();
            model.extend_from_slice(&bytes);
        };
        put(&mut w, &mut model, 5000, 1);
        let small_cut = w.pos();
        put(&mut w, &mut model, 700, 2);
        w.truncate(small_cut).unwrap();
        model.truncate(small_cut as usize);
        put(&mut w, &mut model, 3 * BUFFER + 17, 3);
        let big_cut = small_cut + 100;
        w.truncate(big_cut).unwrap();
        model.truncate(big_cut as usize);
        put(&mut w, &mut model, 9, 4);
        w.finish(&dir.path().join("objectid_test_0")).unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(data.len(), model.len());
        assert_eq!(&data[0x28..], &model[0x28..]);
    }

    /// A cut-back can only shorten: one past the end is refused and changes nothing.
    #[test]
    fn cut_back_past_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region_test_0");
        let mut w = RegionWriter::create(path.clone(), 0, 0, 0).unwrap();
        w.write_all(&[5; 100]).unwrap();
        let end = w.pos();
        assert!(w.truncate(end + 1).is_err());
        assert_eq!(w.pos(), end);
        w.write_all(&[6; 3]).unwrap();
        w.finish(&dir.path().join("objectid_test_0")).unwrap();
        assert_eq!(fs::read(&path).unwrap().len() as u64, end + 3);
    }

    /// A write the file refuses is reported (by the next hand-over or by finish), never lost.
    #[test]
    fn write_errors_reach_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        fs::write(&path, b"x").unwrap();
        let read_only = File::open(&path).unwrap();
        let mut pipe = Pipe::start(read_only, 0).unwrap();
        let chunk = vec![7u8; BUFFER];
        let mut failed = false;
        for _ in 0..(IN_FLIGHT + 4) {
            if pipe.write_all(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(
            failed || pipe.finish().is_err(),
            "a refused write went unreported"
        );
        assert_eq!(fs::read(&path).unwrap(), b"x");
    }
}
