//! Reads a layer tar as a stream and turns each entry into LayerWriter calls (hcsshim
//! `writeCimLayerFromTar`): whiteouts, hard links, files with their backuptar metadata, and the
//! alternate data streams that follow a file.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tar::EntryType;

use crate::backuptar::{self, HeaderFacts, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::error::{Error, Result};
use crate::paths::{parse_entry_name, parse_link_target, split_parent, EntryName};
use crate::writer::LayerWriter;

/// How far the import has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes consumed from the (possibly compressed) input.
    pub bytes_read: u64,
    /// Tar entries processed.
    pub entries: u64,
}

/// What the tar contained, as counted while streaming it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Sum of regular-file sizes (hcsshim's return value; streams not counted).
    pub size: u64,
    /// Tar entries processed.
    pub entries: u64,
    /// Global PAX headers skipped.
    pub global_headers: u64,
    /// Entries for the layer root itself (`./`, as `tar -C DIR -c .` writes) skipped.
    pub root_entries: u64,
    /// AUFS hard-link entries (`.wh..wh.plnk` and what is under it) skipped.
    pub aufs_link_entries: u64,
}

/// The AUFS hard-link directory: docker's aufs storage driver kept hard-link targets there, and
/// old layers may carry it. It has no meaning in an image layer (docker skips AUFS metadata
/// when applying a layer), so its entries are skipped rather than refused.
const AUFS_LINK_DIR: &str = ".wh..wh.plnk";

const COPY_CHUNK: usize = 1 << 20;

/// Counts bytes read through it, for progress reports.
pub(crate) struct CountingReader<R> {
    pub(crate) inner: R,
    pub(crate) count: std::rc::Rc<std::cell::Cell<u64>>,
}

/// A gzip stream of one or more members (what `gzip` and `pigz` write, and `cat a.gz b.gz`),
/// decoded in turn. Unlike flate2's `MultiGzDecoder`, bytes after the last member that do not
/// start another one are reported as trailing data, not as a damaged gzip header.
struct GzipMembers<R: io::BufRead> {
    state: GzipState<R>,
    members: u64,
    /// Zero bytes after the last member are padding (`gzip -d` ignores them), not trailing data.
    zero_padding: bool,
}

enum GzipState<R: io::BufRead> {
    Member(flate2::bufread::GzDecoder<R>),
    Between(R),
    /// Inside zero padding after the last member: only zeros (or the end) may follow.
    Padding(R),
    Done,
}

impl<R: io::BufRead> GzipMembers<R> {
    fn new(input: R, zero_padding: bool) -> Self {
        GzipMembers {
            state: GzipState::Member(flate2::bufread::GzDecoder::new(input)),
            members: 0,
            zero_padding,
        }
    }
}

impl<R: io::BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, GzipState::Done) {
                GzipState::Member(mut d) => {
                    let n = d.read(buf)?;
                    if n > 0 {
                        self.state = GzipState::Member(d);
                        return Ok(n);
                    }
                    self.members += 1;
                    self.state = GzipState::Between(d.into_inner());
                }
                GzipState::Between(mut r) => {
                    let next = r.fill_buf()?;
                    match next.first() {
                        None => return Ok(0),
                        Some(0x1f) => {
                            self.state = GzipState::Member(flate2::bufread::GzDecoder::new(r));
                        }
                        Some(0) if self.zero_padding => self.state = GzipState::Padding(r),
                        Some(_) => {
                            let members = self.members;
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "trailing data after the gzip stream (after {members} \
                                     complete gzip member{})",
                                    if members == 1 { "" } else { "s" }
                                ),
                            ));
                        }
                    }
                }
                GzipState::Padding(mut r) => {
                    let next = r.fill_buf()?;
                    if next.is_empty() {
                        return Ok(0);
                    }
                    let zeros = next.iter().take_while(|&&b| b == 0).count();
                    if zeros < next.len() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "trailing data after the gzip stream's zero padding",
                        ));
                    }
                    r.consume(zeros);
                    self.state = GzipState::Padding(r);
                }
                GzipState::Done => return Ok(0),
            }
        }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::Interrupted => e,
            kind => io::Error::new(kind, InputError(e)),
        })?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// An error of the layer input itself (a failing disk, a blob whose digest or size is wrong),
/// marked so that it is not blamed on the tar or the decompressor that passed it on.
#[derive(Debug)]
pub(crate) struct InputError(io::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The input's own error, when `e` is (or carries) one.
pub(crate) fn input_error(e: &io::Error) -> Option<&io::Error> {
    let mut inner: &(dyn std::error::Error + 'static) = e.get_ref()?;
    loop {
        if let Some(InputError(original)) = inner.downcast_ref::<InputError>() {
            return Some(original);
        }
        inner = match inner.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref()?,
            None => inner.source()?,
        };
    }
}

/// `e` as an [`Error::Input`] when the input itself failed, after `entries` tar entries and
/// `offset` bytes of input.
pub(crate) fn blame_input(
    e: io::Error,
    entries: u64,
    offset: u64,
) -> std::result::Result<Error, io::Error> {
    match input_error(&e) {
        Some(original) => Ok(Error::Input {
            entries,
            offset,
            error: io::Error::new(original.kind(), original.to_string()),
        }),
        None => Err(e),
    }
}

/// The compression of a layer stream, told from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// A gzip stream.
    Gzip,
    /// A zstd stream.
    Zstd,
}

impl Compression {
    /// The name used in messages ("gzip", "zstd", "none").
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `head` starts with a zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F, little
/// endian), as pzstd and other multi-frame writers put before the data frames.
fn is_zstd_skippable_frame(head: &[u8]) -> bool {
    matches!(head, [lo, 0x2a, 0x4d, 0x18, ..] if lo & 0xf0 == 0x50)
}

/// Detects compression from magic bytes: gzip `1f 8b`, zstd `28 b5 2f fd` or a zstd skippable
/// frame (`5X 2a 4d 18`); xz and bzip2 are recognised only to refuse them clearly.
pub fn detect_compression(head: &[u8]) -> Result<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || is_zstd_skippable_frame(head) {
        Ok(Compression::Zstd)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(Error::UnsupportedCompression("xz"))
    } else if head.starts_with(b"BZh") {
        Err(Error::UnsupportedCompression("bzip2"))
    } else {
        Ok(Compression::None)
    }
}

/// Wraps `input` in the decompressor its first bytes call for.
pub fn decompressed<'a, R: Read + 'a>(input: R) -> Result<Box<dyn Read + 'a>> {
    decompressed_kind(input).map(|(_, r)| r)
}

/// [`decompressed`] for a whole image archive: zero bytes after a gzip stream are taken as
/// padding (block-oriented copies add it, and `gzip -d` accepts it); other trailing bytes are
/// still refused.
pub fn decompressed_archive<'a, R: Read + 'a>(input: R) -> Result<Box<dyn Read + 'a>> {
    decompressed_with(input, true).map(|(_, r)| r)
}

/// [`decompressed`], also saying which compression was found.
pub(crate) fn decompressed_kind<'a, R: Read + 'a>(
    input: R,
) -> Result<(Compression, Box<dyn Read + 'a>)> {
    decompressed_with(input, false)
}

fn decompressed_with<'a, R: Read + 'a>(
    mut input: R,
    zero_padding: bool,
) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = Vec::with_capacity(8);
    (&mut input)
        .take(6)
        .read_to_end(&mut head)
        .map_err(|source| {
            blame_input(source, 0, head.len() as u64).unwrap_or_else(|error| Error::TarRead {
                entries: 0,
                offset: None,
                error,
            })
        })?;
    let kind = detect_compression(&head)?;
    let whole = Cursor::new(head).chain(input);
    let reader: Box<dyn Read + 'a> = match kind {
        // Buffered: tar headers are read 512 bytes at a time; large data reads bypass the buffer.
        Compression::None => Box::new(io::BufReader::with_capacity(1 << 16, whole)),
        Compression::Gzip => Box::new(GzipMembers::new(
            io::BufReader::with_capacity(1 << 16, whole),
            zero_padding,
        )),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(|error| {
                Error::Decompress {
                    compression: kind.name(),
                    decompressed: 0,
                    offset: 0,
                    error,
                }
            })?)
        }
    };
    Ok((kind, reader))
}

/// Decompressed bytes handed from the reading thread to the importing one at a time.
const PIPE_CHUNK: usize = 256 << 10;
/// Chunks that may wait in the pipe: bounds the memory the pipe holds to a few MiB.
const PIPE_DEPTH: usize = 8;

/// The importing side of the pipe: reads the chunks the decompressing thread sends, and hands
/// emptied buffers back for reuse.
struct PipeReader {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    spent: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.chunks.recv() {
                Ok(Ok(next)) => {
                    let old = std::mem::replace(&mut self.current, next);
                    let _ = self.spent.send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The sender is gone: the input ended.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// [`write_layer_counted`] with decompression on this thread and the import on a second one,
/// so that the two overlap on a multi-core machine. Progress is reported from this thread.
/// A read error from `input` (the `compression` decompressor) is reported as such, whatever the
/// importer made of the stream before it.
pub(crate) fn write_layer_pipelined<W: LayerWriter + Send>(
    mut input: impl Read,
    compression: Compression,
    w: &mut W,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<TarStats> {
    let entries = AtomicU64::new(0);
    // Compressed bytes read so far, for the importer's messages.
    let consumed = AtomicU64::new(0);
    let (chunk_tx, chunk_rx) = mpsc::sync_channel(PIPE_DEPTH);
    let (spent_tx, spent_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let entries = &entries;
        let consumed = &consumed;
        let worker = std::thread::Builder::new()
            .name("layer-import".into())
            // The main thread's usual size: deep trees must not fail here sooner than there.
            .stack_size(8 << 20)
            .spawn_scoped(scope, move || {
                let reader = PipeReader {
                    chunks: chunk_rx,
                    spent: spent_tx,
                    current: Vec::new(),
                    pos: 0,
                };
                write_layer_counted(
                    reader,
                    w,
                    &mut || consumed.load(Ordering::Relaxed),
                    &mut |p| entries.store(p.entries, Ordering::Relaxed),
                )
            })
            .map_err(|source| Error::TarRead {
                entries: 0,
                offset: None,
                error: source,
            })?;
        // A read error met here, kept whole: the importer gets a copy, and may have finished
        // (and so not report it) before it reads that far.
        let mut read_error = None;
        let mut importer_stopped = false;
        // Tar bytes the decompressor has produced.
        let produced = std::cell::Cell::new(0u64);
        loop {
            let mut buf = spent_rx.try_recv().unwrap_or_default();
            buf.resize(PIPE_CHUNK, 0);
            let got = input.read(&mut buf);
            consumed.store(bytes_read(), Ordering::Relaxed);
            let item = match got {
                Ok(0) => break,
                Ok(n) => {
                    produced.set(produced.get() + n as u64);
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    read_error = Some(e);
                    Err(copy)
                }
            };
            // A closed pipe means the importer stopped (done, or failed): its result says which.
            if chunk_tx.send(item).is_err() {
                importer_stopped = true;
                break;
            }
            if read_error.is_some() {
                break;
            }
            progress(Progress {
                bytes_read: bytes_read(),
                entries: entries.load(Ordering::Relaxed),
            });
        }
        drop(chunk_tx);
        let result = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let entries_done = match &result {
            Ok(stats) => stats.entries,
            Err(_) => entries.load(Ordering::Relaxed),
        };
        // The input's own failure, or else the decompressor's.
        let mut damaged = |error, entries_done| {
            let offset = bytes_read();
            blame_input(error, entries_done, offset).unwrap_or_else(|error| Error::Decompress {
                compression: compression.name(),
                decompressed: produced.get(),
                offset,
                error,
            })
        };
        // The importer saw the stream only up to the damage: whatever it said (a tar it cannot
        // read, an entry cut short) follows from it.
        if let Some(e) = read_error {
            return Err(damaged(e, entries_done));
        }
        // Reads the rest of the stream, so that damage past the importer's stop (up to the gzip
        // CRC or zstd checksum at the end) is found.
        let mut drain = |entries_done: u64| -> Result<()> {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => produced.set(produced.get() + n as u64),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(damaged(e, entries_done)),
                }
            }
        };
        let stats = match result {
            // A tar the importer cannot read may be damaged compressed data that decompressed
            // to garbage before the decompressor noticed: its error, when it finds one, is the
            // cause, and reporting it makes the message the same however the threads raced.
            Err(tar_error @ Error::TarRead { .. }) if importer_stopped => {
                drain(entries_done)?;
                return Err(tar_error);
            }
            other => other?,
        };
        if importer_stopped {
            // The tar ended before its stream did: the rest is checked before the import
            // counts as good.
            drain(stats.entries)?;
        }
        progress(Progress {
            bytes_read: bytes_read(),
            entries: stats.entries,
        });
        Ok(stats)
    })
}

fn utf8<'b>(bytes: &'b [u8], what: &str) -> Result<&'b str> {
    std::str::from_utf8(bytes).map_err(|_| {
        Error::entry(
            &String::from_utf8_lossy(bytes),
            format!("{what} is not UTF-8"),
        )
    })
}

fn header_facts(
    h: &tar::Header,
    entry: &str,
    kind: EntryType,
    size: u64,
    link_name: String,
) -> Result<HeaderFacts> {
    // Go reads GNU atime/ctime only when the field is non-empty (archive/tar reader.go).
    let gnu_time = |field: &[u8; 12], what: &str| -> Result<Option<i64>> {
        if field[0] == 0 {
            return Ok(None);
        }
        let s = std::str::from_utf8(field)
            .ok()
            .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
            .and_then(|s| i64::from_str_radix(s, 8).ok())
            .ok_or_else(|| Error::entry(entry, format!("bad GNU {what} field")))?;
        Ok(Some(s))
    };
    let (gnu_atime_secs, gnu_ctime_secs) = match h.as_gnu() {
        Some(g) => (gnu_time(&g.atime, "atime")?, gnu_time(&g.ctime, "ctime")?),
        None => (None, None),
    };
    let mtime_secs = h
        .mtime()
        .ok()
        .and_then(|t| i64::try_from(t).ok())
        .ok_or_else(|| Error::entry(entry, "bad mtime field"))?;
    Ok(HeaderFacts {
        mtime_secs,
        gnu_atime_secs,
        gnu_ctime_secs,
        is_dir: kind == EntryType::Directory,
        is_symlink: kind == EntryType::Symlink,
        link_name,
        size,
    })
}

/// Streams the uncompressed tar `input` into `w` in tar order (see `decompressed` for compressed
/// input), calling `progress` after each entry with the bytes read from `input` so far. Does not
/// call `w.close()`: the caller decides whether the layer is finished.
pub fn write_layer_from_tar(
    input: impl Read,
    w: &mut dyn LayerWriter,
    progress: &mut dyn FnMut(Progress),
) -> Result<TarStats> {
    let count = std::rc::Rc::new(std::cell::Cell::new(0));
    let reader = CountingReader {
        inner: input,
        count: count.clone(),
    };
    write_layer_counted(reader, w, &mut || count.get(), progress)
}

/// `write_layer_from_tar` with progress counted by the caller (on the compressed input).
pub(crate) fn write_layer_counted(
    input: impl Read,
    w: &mut dyn LayerWriter,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<TarStats> {
    let result = write_entries(input, w, bytes_read, progress);
    // A tar that cannot be read says how far into the input it went wrong.
    result.map_err(|e| match e {
        Error::TarRead {
            entries,
            offset: None,
            error,
        } => blame_input(error, entries, bytes_read()).unwrap_or_else(|error| Error::TarRead {
            entries,
            offset: Some(bytes_read()),
            error,
        }),
        other => other,
    })
}

fn write_entries(
    input: impl Read,
    w: &mut dyn LayerWriter,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<TarStats> {
    let mut stats = TarStats::default();
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(|source| Error::TarRead {
        entries: 0,
        offset: None,
        error: source,
    })?;
    // Windows path of the last file or directory added: following `<it>:<stream>` entries are
    // its alternate data streams.
    let mut last_added: Option<String> = None;
    let mut buf = vec![0u8; COPY_CHUNK];
    for entry in entries {
        let mut entry = entry.map_err(|source| Error::TarRead {
            entries: stats.entries,
            offset: None,
            error: source,
        })?;
        let kind = go_entry_type(entry.header(), &entry.path_bytes());
        if kind == EntryType::XGlobalHeader {
            // Go hands these to hcsshim, which would create an empty file named after the
            // header (GO-QUIRK, layer-tar.md §B1); they carry no file, so skip them.
            stats.global_headers += 1;
            continue;
        }
        let raw_name = utf8(&entry.path_bytes(), "entry name")?.to_string();
        if kind == EntryType::Directory && raw_name.trim_end_matches('/') == "." {
            // The root of a CIM has no entry of its own to give metadata to (hcsshim would
            // hand cimfs.dll a file named "."): a tar made with `tar -C DIR -c .` starts so.
            stats.root_entries += 1;
            continue;
        }
        let name = parse_entry_name(&raw_name).map_err(|r| Error::entry(&raw_name, r))?;
        let entry_path = match &name {
            EntryName::Path(p) => p.as_str(),
            EntryName::Stream { file, .. } => file.as_str(),
        };
        if entry_path.split('\\').any(|c| c == AUFS_LINK_DIR) {
            stats.aufs_link_entries += 1;
            continue;
        }
        let mut pax = BTreeMap::new();
        if let Some(exts) = entry.pax_extensions().map_err(|source| Error::TarRead {
            entries: stats.entries,
            offset: None,
            error: source,
        })? {
            for ext in exts {
                let ext = ext.map_err(|source| Error::TarRead {
                    entries: stats.entries,
                    offset: None,
                    error: source,
                })?;
                let key = ext
                    .key()
                    .map_err(|_| Error::entry(&raw_name, "PAX key is not UTF-8"))?;
                let value = ext.value().map_err(|_| {
                    Error::entry(&raw_name, format!("PAX record {key} is not UTF-8"))
                })?;
                pax.insert(key.to_string(), value.to_string());
            }
        }
        if let Some(key) = pax.keys().find(|k| k.starts_with("GNU.sparse.")) {
            // GNU tar's PAX sparse formats (0.0-1.0) keep the real name and a hole map in these
            // records; the tar reader would hand the encoded form on as if it were the file.
            return Err(Error::entry(
                &raw_name,
                format!(
                    "GNU sparse file in PAX format (record {key}) is not supported; \
                     pack the layer without --sparse"
                ),
            ));
        }
        if let Some(v) = pax.get("size") {
            // tar-rs uses a PAX size only when it parses, and silently keeps the header's
            // otherwise; Go's archive/tar refuses the entry, and so do we.
            if !v.parse::<i64>().is_ok_and(|n| n >= 0) {
                return Err(Error::entry(
                    &raw_name,
                    format!("PAX record size={} is not a size", crate::error::quoted(v)),
                ));
            }
        }
        let size = if kind == EntryType::GNUSparse {
            entry
                .header()
                .as_gnu()
                .and_then(|g| g.real_size().ok())
                .unwrap_or(entry.size())
        } else {
            entry.size()
        };
        let is_data = matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        );

        match name {
            EntryName::Stream { file, stream } => {
                if !is_data {
                    return Err(Error::entry(
                        &raw_name,
                        "a stream entry must be a regular file",
                    ));
                }
                if last_added.as_deref() != Some(file.as_str()) {
                    return Err(Error::entry(
                        &raw_name,
                        "alternate data stream does not follow its file",
                    ));
                }
                w.add_alternate_stream(&format!("{file}:{stream}"), size)?;
                copy_data(&mut entry, size, w, &mut buf, &raw_name)?;
            }
            EntryName::Path(path) => {
                let (dir, base) = split_parent(&path);
                if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
                    last_added = None;
                    if base == OPAQUE_WHITEOUT {
                        // OCI meaning: `dir` keeps only what this layer puts in it. hcsshim has
                        // no case for it (layer-tar.md §B5): it removes a literal `dir\.wh..opq`,
                        // which no layer has, and the "not found" is ignored, so the files the
                        // layer meant to hide stay visible. We follow the image spec instead,
                        // since OCI tools write this marker precisely to hide them.
                        if dir.is_empty() {
                            // Hiding the whole parent image (Files, Hives, UtilityVM) leaves no
                            // usable Windows layer; refuse it rather than build one.
                            return Err(Error::entry(
                                &raw_name,
                                "an opaque whiteout at the layer root is not supported",
                            ));
                        }
                        w.opaque(dir)?;
                    } else if hidden.starts_with(WHITEOUT_PREFIX) {
                        // `.wh..wh.` names are reserved for whiteout metadata; only the opaque
                        // marker has a meaning in an image layer (`.wh..wh.plnk` was skipped
                        // above).
                        return Err(Error::entry(
                            &raw_name,
                            "reserved whiteout metadata name (only .wh..wh..opq is defined)",
                        ));
                    } else if hidden.is_empty() {
                        return Err(Error::entry(&raw_name, "whiteout names nothing"));
                    } else {
                        let target = if dir.is_empty() {
                            hidden.to_string()
                        } else {
                            format!("{dir}\\{hidden}")
                        };
                        w.remove(&target)?;
                    }
                } else if kind == EntryType::Link {
                    last_added = None;
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| Error::entry(&raw_name, "hard link without a target"))?;
                    let link = utf8(&link, "link target")?;
                    let target = parse_link_target(link).map_err(|r| {
                        Error::entry(
                            &raw_name,
                            format!("link target {}: {r}", crate::error::quoted(link)),
                        )
                    })?;
                    w.add_link(&path, &target)?;
                } else {
                    let link_name = match kind {
                        EntryType::Symlink => {
                            let l = entry.link_name_bytes().ok_or_else(|| {
                                Error::entry(&raw_name, "symlink without a target")
                            })?;
                            utf8(&l, "symlink target")?.to_string()
                        }
                        _ => String::new(),
                    };
                    let facts = header_facts(
                        entry.header(),
                        &raw_name,
                        kind,
                        if is_data { size } else { 0 },
                        link_name,
                    )?;
                    let info =
                        backuptar::file_info_from_header(&facts, &pax).map_err(|source| {
                            Error::Dialect {
                                entry: raw_name.clone(),
                                source,
                            }
                        })?;
                    w.add(&path, &info)?;
                    if is_data {
                        copy_data(&mut entry, size, w, &mut buf, &raw_name)?;
                        stats.size += size;
                    }
                    last_added = Some(path);
                }
            }
        }
        stats.entries += 1;
        progress(Progress {
            bytes_read: bytes_read(),
            entries: stats.entries,
        });
    }
    Ok(stats)
}

/// The entry's type as Go's archive/tar (hcsshim's tar reader) reports it: the legacy `'\0'`
/// typeflag of pre-POSIX tars is a directory when the name ends in `/` and a regular file
/// otherwise (layer-tar.md §B1), where the tar crate calls both a regular file.
fn go_entry_type(header: &tar::Header, name: &[u8]) -> EntryType {
    if header.as_old().linkflag[0] == 0 && name.ends_with(b"/") {
        EntryType::Directory
    } else {
        header.entry_type()
    }
}

fn copy_data(
    r: &mut impl Read,
    size: u64,
    w: &mut dyn LayerWriter,
    buf: &mut [u8],
    entry: &str,
) -> Result<()> {
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = r.read(&mut buf[..want]).map_err(|source| Error::TarData {
            entry: entry.into(),
            source,
        })?;
        if n == 0 {
            return Err(Error::entry(entry, format!("data ends {left} bytes early")));
        }
        w.write(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}
