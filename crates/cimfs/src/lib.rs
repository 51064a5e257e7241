//! CimFS images: the on-disk format, a writer and a reader.
//! `format` holds every on-disk struct, `writer` builds images (and forks), `reader` opens them,
//! `verify` checks one thoroughly, `image_files` lists the files an image is made of.
//! Choices made where the format is undocumented are listed in FORMAT-CHOICES.md.
//!
//! ```
//! use std::io::Read;
//! use cimfs::{format, Cim, CimWriter, FileMetadata};
//!
//! let dir = tempfile::tempdir()?;
//! let mut w = CimWriter::create(dir.path(), "layer.cim")?;
//! w.add("Files", &FileMetadata { attributes: format::FILE_ATTRIBUTE_DIRECTORY, ..Default::default() })?;
//! w.add("Files\\hello.txt", &FileMetadata { size: 5, ..Default::default() })?;
//! w.write(b"hello")?;
//! w.commit()?;
//!
//! let cim = Cim::open(&dir.path().join("layer.cim"))?;
//! let mut text = String::new();
//! cim.open_file("FILES\\HELLO.TXT")?.read_to_string(&mut text)?;
//! assert_eq!(text, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod blobs;
pub mod error;
pub mod format;
mod names;
mod objectid;
pub mod reader;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use reader::{
    Cim, DirEntry, FileId, FileInfo, FileKind, FileReader, RegionSetInfo, StreamInfo,
};
pub use writer::{CimWriter, CommitStats, FileMetadata};

/// The files that make up an image on disk, split into its own and its parents'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFiles {
    /// The `.cim` file.
    pub cim: PathBuf,
    /// The image's own region files.
    pub regions: Vec<PathBuf>,
    /// The image's own objectid files that exist.
    pub objectids: Vec<PathBuf>,
    /// Region files of the parent images it depends on (shared, not owned).
    pub parent_regions: Vec<PathBuf>,
}

/// The folder holding `path`: its parent, or `.` for a bare file name (whose parent is empty,
/// which names no folder to list).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Lists the files of the image at `cim_path` (found case-insensitively in its folder).
/// Missing region files are an error; missing objectid files are skipped (they are only a write-side hint).
pub fn image_files(cim_path: &Path) -> Result<ImageFiles> {
    let h = reader::read_image_header(cim_path)?;
    let dir = folder_of(cim_path);
    let mut listing = None;
    let mut find = |name: String| {
        reader::find_in_dir(dir, &name, &mut listing).ok_or_else(|| Error::MissingRegion {
            image: cim_path.to_path_buf(),
            file: dir.join(&name),
        })
    };
    let own = &h.header.regions;
    let mut regions = Vec::new();
    let mut objectids = Vec::new();
    for i in 0..own.count.get() {
        regions.push(find(format::region_file_name(&own.id, i))?);
        if let Ok(p) = find(format::objectid_file_name(&own.id, i)) {
            objectids.push(p);
        }
    }
    let mut parent_regions = Vec::new();
    for set in &h.parents {
        for i in 0..set.count.get() {
            parent_regions.push(find(format::region_file_name(&set.id, i))?);
        }
    }
    Ok(ImageFiles {
        cim: cim_path.to_path_buf(),
        regions,
        objectids,
        parent_regions,
    })
}
