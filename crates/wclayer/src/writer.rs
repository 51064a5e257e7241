//! The seam between reading a layer tar and writing an image (hcsshim's LayerWriter): the tar
//! reader calls these in tar order; implementations write a CIM or record the calls for tests.

use cimfs::FileMetadata;

use crate::backuptar::is_directory;
use crate::error::{Error, Result};

/// Receives a layer's entries in tar order. Paths are layer-relative Windows paths
/// (`Files\Windows\x.dll`).
pub trait LayerWriter {
    /// Adds (or replaces) a file or directory; for a file, `info.size` bytes follow via `write`.
    fn add(&mut self, name: &str, info: &FileMetadata) -> Result<()>;
    /// Adds a hard link `name` to the existing file `target`.
    fn add_link(&mut self, name: &str, target: &str) -> Result<()>;
    /// Adds an alternate data stream (`file:stream`) of `size` bytes to the file added last.
    fn add_alternate_stream(&mut self, name: &str, size: u64) -> Result<()>;
    /// Removes a file, directory (recursively) or link inherited from a parent layer.
    fn remove(&mut self, name: &str) -> Result<()>;
    /// Makes directory `dir` opaque (OCI `.wh..wh..opq`): everything under it that came from a
    /// parent layer is hidden, while what this layer adds under it, before or after this call,
    /// stays. A directory no parent has is not an error.
    fn opaque(&mut self, dir: &str) -> Result<()>;
    /// Appends bytes to the stream opened by the last `add`/`add_alternate_stream`.
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Finishes the layer (layer processing, then commit). Not called after an error.
    fn close(&mut self) -> Result<()>;
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedOp {
    /// [`LayerWriter::add`] and the bytes written after it.
    Add {
        /// The path added.
        name: String,
        /// Its metadata.
        info: FileMetadata,
        /// The data written to it.
        data: Vec<u8>,
    },
    /// [`LayerWriter::add_link`].
    AddLink {
        /// The new name.
        name: String,
        /// The existing file it names.
        target: String,
    },
    /// [`LayerWriter::add_alternate_stream`] and the bytes written after it.
    AddStream {
        /// The stream's `file:stream` name.
        name: String,
        /// The announced size.
        size: u64,
        /// The data written to it.
        data: Vec<u8>,
    },
    /// [`LayerWriter::remove`].
    Remove {
        /// The path removed.
        name: String,
    },
    /// [`LayerWriter::opaque`].
    Opaque {
        /// The directory made opaque.
        dir: String,
    },
    /// [`LayerWriter::close`].
    Close,
}

/// A LayerWriter that keeps every call in memory, checking that stream writes match the sizes
/// announced (for tests and dry runs of the tar reader).
#[derive(Debug, Default)]
pub struct RecordingLayerWriter {
    /// The calls so far, in order.
    pub ops: Vec<RecordedOp>,
}

impl RecordingLayerWriter {
    /// A writer that has recorded nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_previous_complete(&self) -> Result<()> {
        let (name, want, got) = match self.ops.last() {
            Some(RecordedOp::Add { name, info, data }) if !is_directory(info) => {
                (name, info.size, data.len())
            }
            Some(RecordedOp::AddStream { name, size, data }) => (name, *size, data.len()),
            _ => return Ok(()),
        };
        if want != got as u64 {
            return Err(Error::Sequence(format!(
                "{name}: {got} of {want} bytes written"
            )));
        }
        Ok(())
    }
}

impl LayerWriter for RecordingLayerWriter {
    fn add(&mut self, name: &str, info: &FileMetadata) -> Result<()> {
        self.check_previous_complete()?;
        self.ops.push(RecordedOp::Add {
            name: name.into(),
            info: info.clone(),
            data: Vec::new(),
        });
        Ok(())
    }

    fn add_link(&mut self, name: &str, target: &str) -> Result<()> {
        self.check_previous_complete()?;
        self.ops.push(RecordedOp::AddLink {
            name: name.into(),
            target: target.into(),
        });
        Ok(())
    }

    fn add_alternate_stream(&mut self, name: &str, size: u64) -> Result<()> {
        self.check_previous_complete()?;
        self.ops.push(RecordedOp::AddStream {
            name: name.into(),
            size,
            data: Vec::new(),
        });
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.check_previous_complete()?;
        self.ops.push(RecordedOp::Remove { name: name.into() });
        Ok(())
    }

    fn opaque(&mut self, dir: &str) -> Result<()> {
        self.check_previous_complete()?;
        self.ops.push(RecordedOp::Opaque { dir: dir.into() });
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let (limit, data) = match self.ops.last_mut() {
            Some(RecordedOp::Add { info, data, .. }) if !is_directory(info) => (info.size, data),
            Some(RecordedOp::AddStream { size, data, .. }) => (*size, data),
            _ => return Err(Error::Sequence("write without an open stream".into())),
        };
        if data.len() as u64 + bytes.len() as u64 > limit {
            return Err(Error::Sequence("write past the announced size".into()));
        }
        data.extend_from_slice(bytes);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.check_previous_complete()?;
        self.ops.push(RecordedOp::Close);
        Ok(())
    }
}
