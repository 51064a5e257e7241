//! Positional file I/O (read or write at an offset without a shared cursor) and the data
//! ranges of a sparse file, on every platform the toolkit builds for.

use std::fs::File;
use std::io;

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], at)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match std::os::windows::fs::FileExt::seek_write(file, &buf[done..], at)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// The next range `[start, end)` at or after `pos` that may hold data, or None past the last
/// one. On Unix the holes of a sparse file are skipped with SEEK_DATA/SEEK_HOLE; elsewhere the
/// rest of the file is one range (callers skip all-zero blocks themselves).
pub(crate) fn next_data_range(file: &File, pos: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    if pos >= len {
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use rustix::fs::{seek, SeekFrom};
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let hole = seek(file, SeekFrom::Hole(data))?;
        Ok(Some((data, hole.min(len))))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(Some((pos, len)))
    }
}
