//! The progress bar of long work (bytes, files, MB/s, ETA) on stderr when it is a terminal, and
//! a reader / writer that count the bytes they hand on so the bar can follow them; they also
//! turn Ctrl-C into an I/O error, so the command stops and cleans up after itself.

use std::cell::Cell;
use std::io::{IsTerminal as _, Read};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the Ctrl-C handler that `catch_interrupt` installs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT/SIGTERM) fail the next read of every `CountingReader` instead of killing
/// the process, so a half-written layer is removed by the importer's own error path.
pub fn catch_interrupt() {
    // A second handler cannot be installed; the first one already does the job.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress display that is invisible when stderr is not a terminal or `--quiet` was given.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` input bytes (a spinner when the total is unknown).
    pub fn new(total: Option<u64>, quiet: bool, prefix: &str) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let template = if total.is_some() {
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}"
        } else {
            "{prefix} {spinner} [{elapsed_precise}] {bytes} {msg} {binary_bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(prefix.to_string());
        Progress { bar }
    }

    /// Records how far the input has been read and how many tar entries were handled.
    pub fn update(&self, bytes: u64, files: u64) {
        self.bar.set_position(bytes);
        self.bar.set_message(format!("{files} files"));
    }

    /// Records how many bytes have been written (no file count).
    pub fn set_bytes(&self, bytes: u64) {
        self.bar.set_position(bytes);
    }

    /// Removes the bar (the caller prints the summary).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Counts the bytes read through it into a shared cell.
pub struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R) -> (CountingReader<R>, Rc<Cell<u64>>) {
        let count = Rc::new(Cell::new(0));
        (
            CountingReader {
                inner,
                count: Rc::clone(&count),
            },
            count,
        )
    }
}

/// How an interruption is told: the handler catches Ctrl-C (SIGINT) and SIGTERM alike.
pub const INTERRUPTED_TEXT: &str = "interrupted (Ctrl-C or SIGTERM)";

/// Whether Ctrl-C was pressed since `catch_interrupt`.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with the error Ctrl-C leaves once it was pressed (see `catch_interrupt`).
pub fn check_interrupt() -> std::io::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        // Not ErrorKind::Interrupted: readers and writers retry that one.
        return Err(std::io::Error::other(INTERRUPTED_TEXT));
    }
    Ok(())
}

/// Passes writes on to `inner`, moving `progress` along and failing once Ctrl-C was pressed.
pub struct ProgressWriter<'a, W> {
    inner: W,
    progress: &'a Progress,
    written: u64,
}

impl<'a, W> ProgressWriter<'a, W> {
    pub fn new(inner: W, progress: &'a Progress) -> ProgressWriter<'a, W> {
        ProgressWriter {
            inner,
            progress,
            written: 0,
        }
    }
}

impl<W: std::io::Write> std::io::Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        check_interrupt()?;
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        self.progress.set_bytes(self.written);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        check_interrupt()?;
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}
