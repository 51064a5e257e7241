//! `cimkit mount`: serve a CIM read-only through FUSE (Linux, via fusermount3) until Ctrl-C or
//! an external unmount. Directories, files, sizes, times and symlinks map to POSIX; Windows
//! metadata is exposed as xattrs: `user.cimfs.attributes` (decimal), `user.cimfs.sd`,
//! `user.cimfs.ea`, `user.cimfs.reparse` (raw bytes) and `user.cimfs.stream.<name>` (ADS data).
//! Symlinks have no xattrs (Linux allows `user.*` only on files and directories). Hard links
//! share an inode and report how many names they have.

use std::path::PathBuf;

use anyhow::Result;

use super::Outcome;

#[derive(clap::Args)]
#[command(
    after_help = "Needs /dev/fuse and fusermount3 (Debian package fuse3). Files are mode \
0444, directories 0555, owned by the mount point's owner. xattrs: user.cimfs.attributes \
(decimal FILE_ATTRIBUTE_* bits), user.cimfs.sd (self-relative security descriptor), \
user.cimfs.ea (FILE_FULL_EA_INFORMATION chain), user.cimfs.reparse (REPARSE_DATA_BUFFER), \
user.cimfs.stream.<name> (alternate data stream bytes, up to 64 KiB). Symlinks and mount \
points are symlinks: readlink gives the target, and they have no xattrs because Linux allows \
user.* xattrs only on files and directories; `cimkit stat --json CIM PATH` prints their SD, EA \
and reparse bytes. Hard links share an inode and their link count is their number of names; a \
directory's link count is 2 + its subdirectories. Stop with Ctrl-C or `fusermount3 -u \
MOUNTPOINT`."
)]
pub struct Args {
    /// The .cim file.
    pub cim: PathBuf,
    /// An existing empty folder (a non-empty one is refused).
    pub mountpoint: PathBuf,
}

#[cfg(not(target_os = "linux"))]
pub fn run(_args: Args) -> Result<Outcome> {
    anyhow::bail!("cimkit mount uses FUSE and is only available on Linux")
}

#[cfg(target_os = "linux")]
pub fn run(args: Args) -> Result<Outcome> {
    linux::run(args)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{HashMap, HashSet};
    use std::ffi::OsStr;
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Mutex};
    use std::time::{Duration, SystemTime};

    use anyhow::{bail, Context as _, Result};
    use fuser::{
        Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
        LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
        ReplyOpen, ReplyXattr, Request,
    };

    use super::{Args, Outcome};
    use crate::cmd::open_cim;
    use crate::output;

    /// How long the kernel may cache attributes and names: the image never changes.
    const TTL: Duration = Duration::from_secs(3600);
    /// Linux refuses xattr values larger than this (XATTR_SIZE_MAX).
    const XATTR_MAX: usize = 65536;
    const XATTR_PREFIX: &str = "user.cimfs.";
    const STREAM_PREFIX: &str = "user.cimfs.stream.";

    /// An open directory's entries: (inode, kind, name), "." and ".." first.
    type DirListing = Vec<(INodeNo, FileType, String)>;

    struct CimFs {
        cim: cimfs::Cim,
        uid: u32,
        gid: u32,
        /// Open directory listings: handle -> (ino, kind, name).
        dirs: Mutex<HashMap<u64, DirListing>>,
        next_handle: AtomicU64,
        /// Link counts above 1 by file id (see [`count_links`]).
        links: HashMap<cimfs::FileId, u32>,
    }

    /// What [`count_links`] found.
    struct LinkCounts {
        /// Link counts above 1 by file id; an id that is missing has 1 (a file) or 2 (a directory).
        links: HashMap<cimfs::FileId, u32>,
        /// Directories and entries that could not be read.
        unreadable: usize,
        first_error: Option<cimfs::Error>,
    }

    /// Link counts as the mount shows them, from one walk of the whole tree. A file's count is its
    /// number of names. A directory's is 2 + its subdirectories (its name, its "." and each
    /// child's ".."), the Unix convention tools such as find rely on; junctions and directory
    /// symlinks show as symlinks, so they count as names, not as subdirectories. Unreadable
    /// entries are counted in `unreadable` and skipped: the mount reports them as I/O errors.
    fn count_links(cim: &cimfs::Cim) -> LinkCounts {
        let root = cim.root();
        let mut links: HashMap<cimfs::FileId, u32> = HashMap::from([(root, 2)]);
        let mut seen_dirs: HashSet<cimfs::FileId> = HashSet::from([root]);
        let mut todo = vec![root];
        let mut unreadable = 0;
        let mut first_error = None;
        while let Some(dir) = todo.pop() {
            let entries = match cim.read_dir_id(dir) {
                Ok(entries) => entries,
                Err(e) => {
                    unreadable += 1;
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for entry in entries {
                let info = match cim.file(entry.file_id) {
                    Ok(info) => info,
                    Err(e) => {
                        unreadable += 1;
                        first_error.get_or_insert(e);
                        continue;
                    }
                };
                if CimFs::kind(&info) == FileType::Directory {
                    let n = links.entry(dir).or_insert(2);
                    *n = n.saturating_add(1);
                    links.entry(entry.file_id).or_insert(2);
                    // A directory listed twice (a damaged image) is walked once.
                    if seen_dirs.insert(entry.file_id) {
                        todo.push(entry.file_id);
                    }
                } else {
                    let n = links.entry(entry.file_id).or_insert(0);
                    *n = n.saturating_add(1);
                }
            }
        }
        // Most files have one name: keeping only the others keeps the map small.
        links.retain(|_, n| *n > 1);
        LinkCounts {
            links,
            unreadable,
            first_error,
        }
    }

    /// A FILETIME as a SystemTime; 0 ("not set") shows as the Unix epoch rather than 1601.
    fn to_system(ft: u64) -> SystemTime {
        const UNIX_EPOCH_FILETIME: u64 = 116_444_736_000_000_000;
        if ft == 0 {
            return SystemTime::UNIX_EPOCH;
        }
        let ticks = i128::from(ft) - i128::from(UNIX_EPOCH_FILETIME);
        let nanos = ticks.saturating_mul(100);
        let d = Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).unwrap_or(u64::MAX));
        if nanos >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(d)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(d)
        }
        .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn errno(e: &cimfs::Error) -> Errno {
        match e {
            cimfs::Error::NotFound { .. } => Errno::ENOENT,
            cimfs::Error::NotADirectory { .. } => Errno::ENOTDIR,
            cimfs::Error::IsADirectory { .. } => Errno::EISDIR,
            _ => Errno::EIO,
        }
    }

    impl CimFs {
        /// FUSE's root inode is 1; every other file id f is inode f + 1.
        fn file_id(&self, ino: INodeNo) -> cimfs::FileId {
            let ino = u64::from(ino);
            if ino == 1 {
                self.cim.root()
            } else {
                cimfs::FileId::try_from(ino - 1).unwrap_or(0)
            }
        }

        fn ino(&self, id: cimfs::FileId) -> INodeNo {
            if id == self.cim.root() {
                INodeNo(1)
            } else {
                INodeNo(u64::from(id) + 1)
            }
        }

        fn kind(info: &cimfs::FileInfo) -> FileType {
            if output::link_target(info).is_some() {
                FileType::Symlink
            } else if info.is_directory {
                FileType::Directory
            } else {
                FileType::RegularFile
            }
        }

        fn attr(&self, info: &cimfs::FileInfo) -> FileAttr {
            let kind = Self::kind(info);
            let size = match kind {
                FileType::Symlink => output::link_target(info).map_or(0, |t| t.len() as u64),
                FileType::Directory => 0,
                _ => info.size,
            };
            FileAttr {
                ino: self.ino(info.file_id),
                size,
                blocks: size.div_ceil(512),
                atime: to_system(info.last_access_time),
                mtime: to_system(info.last_write_time),
                ctime: to_system(info.change_time),
                crtime: to_system(info.creation_time),
                kind,
                perm: match kind {
                    FileType::Directory => 0o555,
                    FileType::Symlink => 0o777,
                    _ => 0o444,
                },
                nlink: self
                    .links
                    .get(&info.file_id)
                    .copied()
                    .unwrap_or(if kind == FileType::Directory { 2 } else { 1 }),
                uid: self.uid,
                gid: self.gid,
                rdev: 0,
                blksize: 4096,
                flags: 0,
            }
        }

        fn info(&self, ino: INodeNo) -> Result<cimfs::FileInfo, Errno> {
            self.cim.file(self.file_id(ino)).map_err(|e| errno(&e))
        }

        /// The value of xattr `name` of one entry.
        fn xattr(&self, info: &cimfs::FileInfo, name: &str) -> Result<Vec<u8>, Errno> {
            if Self::kind(info) == FileType::Symlink {
                return Err(Errno::NO_XATTR);
            }
            match name.strip_prefix(XATTR_PREFIX) {
                Some("attributes") => Ok(info.attributes.to_string().into_bytes()),
                Some("sd") if !info.security_descriptor.is_empty() => {
                    Ok(info.security_descriptor.clone())
                }
                Some("ea") if !info.extended_attributes.is_empty() => {
                    Ok(info.extended_attributes.clone())
                }
                Some("reparse") if !info.reparse_data.is_empty() => Ok(info.reparse_data.clone()),
                _ => {
                    let Some(stream) = name.strip_prefix(STREAM_PREFIX) else {
                        return Err(Errno::NO_XATTR);
                    };
                    let streams = self.cim.streams_id(info.file_id).map_err(|e| errno(&e))?;
                    let Some(s) = streams.iter().find(|s| s.name.eq_ignore_ascii_case(stream))
                    else {
                        return Err(Errno::NO_XATTR);
                    };
                    if s.size > XATTR_MAX as u64 {
                        return Err(Errno::E2BIG);
                    }
                    let mut buf = vec![0u8; usize::try_from(s.size).unwrap_or(0)];
                    let mut got = 0;
                    while got < buf.len() {
                        let rest = buf.get_mut(got..).unwrap_or_default();
                        let n = self
                            .cim
                            .read_at(info.file_id, Some(&s.name), got as u64, rest)
                            .map_err(|e| errno(&e))?;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    buf.truncate(got);
                    Ok(buf)
                }
            }
        }

        /// The names of the xattrs of one entry, each NUL-terminated. Symlinks have none: Linux
        /// refuses to read user.* xattrs of anything but files and directories.
        fn xattr_names(&self, info: &cimfs::FileInfo) -> Result<Vec<u8>, Errno> {
            if Self::kind(info) == FileType::Symlink {
                return Ok(Vec::new());
            }
            let mut names = vec![format!("{XATTR_PREFIX}attributes")];
            if !info.security_descriptor.is_empty() {
                names.push(format!("{XATTR_PREFIX}sd"));
            }
            if !info.extended_attributes.is_empty() {
                names.push(format!("{XATTR_PREFIX}ea"));
            }
            if !info.reparse_data.is_empty() {
                names.push(format!("{XATTR_PREFIX}reparse"));
            }
            for s in self.cim.streams_id(info.file_id).map_err(|e| errno(&e))? {
                names.push(format!("{STREAM_PREFIX}{}", s.name));
            }
            let mut out = Vec::new();
            for n in names {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
            Ok(out)
        }
    }

    fn reply_sized(reply: ReplyXattr, size: u32, value: &[u8]) {
        if size == 0 {
            reply.size(u32::try_from(value.len()).unwrap_or(u32::MAX));
        } else if value.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(value);
        }
    }

    impl Filesystem for CimFs {
        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            let Some(name) = name.to_str() else {
                return reply.error(Errno::ENOENT);
            };
            let dir = self.file_id(parent);
            let found = self.cim.child(dir, name, name).map_err(|e| errno(&e));
            match found {
                Ok(Some(id)) => match self.cim.file(id) {
                    Ok(info) => reply.entry(&TTL, &self.attr(&info), Generation(0)),
                    Err(e) => reply.error(errno(&e)),
                },
                Ok(None) => reply.error(Errno::ENOENT),
                Err(e) => reply.error(e),
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            match self.info(ino) {
                Ok(info) => reply.attr(&TTL, &self.attr(&info)),
                Err(e) => reply.error(e),
            }
        }

        fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
            match self.info(ino) {
                Ok(info) => match output::link_target(&info) {
                    Some(t) => reply.data(t.replace('\\', "/").as_bytes()),
                    None => reply.error(Errno::EINVAL),
                },
                Err(e) => reply.error(e),
            }
        }

        fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            match self.info(ino) {
                Ok(info) if info.is_directory => reply.error(Errno::EISDIR),
                Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            }
        }

        fn read(
            &self,
            _req: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyData,
        ) {
            let id = self.file_id(ino);
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                let rest = buf.get_mut(got..).unwrap_or_default();
                match self.cim.read_at(id, None, offset + got as u64, rest) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return reply.error(errno(&e)),
                }
            }
            reply.data(buf.get(..got).unwrap_or_default());
        }

        fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            let id = self.file_id(ino);
            let entries = match self.cim.read_dir_id(id) {
                Ok(e) => e,
                Err(e) => return reply.error(errno(&e)),
            };
            let mut list = vec![
                (ino, FileType::Directory, ".".to_string()),
                (ino, FileType::Directory, "..".to_string()),
            ];
            for e in entries {
                let kind = match self.cim.file(e.file_id) {
                    Ok(info) => Self::kind(&info),
                    Err(err) => return reply.error(errno(&err)),
                };
                list.push((self.ino(e.file_id), kind, e.name));
            }
            let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut dirs) = self.dirs.lock() {
                dirs.insert(handle, list);
            }
            reply.opened(FileHandle(handle), FopenFlags::empty());
        }

        fn readdir(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            offset: u64,
            mut reply: ReplyDirectory,
        ) {
            let Ok(dirs) = self.dirs.lock() else {
                return reply.error(Errno::EIO);
            };
            let Some(list) = dirs.get(&u64::from(fh)) else {
                return reply.error(Errno::EINVAL);
            };
            for (i, (ino, kind, name)) in list
                .iter()
                .enumerate()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            {
                if reply.add(*ino, i as u64 + 1, *kind, name) {
                    break;
                }
            }
            reply.ok();
        }

        fn releasedir(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            _flags: OpenFlags,
            reply: fuser::ReplyEmpty,
        ) {
            if let Ok(mut dirs) = self.dirs.lock() {
                dirs.remove(&u64::from(fh));
            }
            reply.ok();
        }

        fn getxattr(
            &self,
            _req: &Request,
            ino: INodeNo,
            name: &OsStr,
            size: u32,
            reply: ReplyXattr,
        ) {
            let info = match self.info(ino) {
                Ok(i) => i,
                Err(e) => return reply.error(e),
            };
            match self.xattr(&info, &name.to_string_lossy()) {
                Ok(v) => reply_sized(reply, size, &v),
                Err(e) => reply.error(e),
            }
        }

        fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
            match self.info(ino).and_then(|info| self.xattr_names(&info)) {
                Ok(v) => reply_sized(reply, size, &v),
                Err(e) => reply.error(e),
            }
        }
    }

    pub fn run(args: Args) -> Result<Outcome> {
        let cim = open_cim(&args.cim)?;
        let meta = std::fs::metadata(&args.mountpoint)
            .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
        if !meta.is_dir() {
            bail!("mount point {} is not a folder", args.mountpoint.display());
        }
        let first = std::fs::read_dir(&args.mountpoint)
            .with_context(|| format!("cannot list mount point {}", args.mountpoint.display()))?
            .next();
        if let Some(entry) = first {
            let entry = entry.with_context(|| {
                format!("cannot list mount point {}", args.mountpoint.display())
            })?;
            bail!(
                "mount point {} is not empty (it holds {}); mount on an empty folder",
                args.mountpoint.display(),
                crate::output::quote(&entry.file_name().to_string_lossy())
            );
        }
        if !std::path::Path::new("/dev/fuse").exists() {
            bail!("FUSE is not available here: /dev/fuse does not exist (load the fuse module or run where FUSE is allowed)");
        }
        let counted = count_links(&cim);
        if let Some(e) = counted.first_error {
            eprintln!(
                "cimkit: {}: {} could not be read while counting links (first: {}); \
                 they show as I/O errors and link counts near them may be too low",
                args.cim.display(),
                crate::output::count_as(counted.unreadable, "entry", "entries"),
                e
            );
        }
        let fs = CimFs {
            links: counted.links,
            cim,
            uid: meta.uid(),
            gid: meta.gid(),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::RO,
            MountOption::FSName(format!("cimkit:{}", args.cim.display())),
            MountOption::Subtype("cimfs".into()),
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        let session = fuser::spawn_mount(fs, &args.mountpoint, &config).with_context(|| {
            format!(
                "cannot mount {} on {} (FUSE needs /dev/fuse and fusermount3 from the fuse3 package)",
                args.cim.display(),
                args.mountpoint.display()
            )
        })?;
        let (tx, rx) = mpsc::channel();
        ctrlc::set_handler(move || {
            let _ = tx.send(());
        })
        .context("cannot install the Ctrl-C handler")?;
        eprintln!(
            "mounted {} on {} (read-only); Ctrl-C to unmount",
            args.cim.display(),
            args.mountpoint.display()
        );
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(()) => match fusermount_unmount(&args.mountpoint) {
                    // The session thread ends once the kernel lets go of the mount.
                    Some(Ok(())) => {
                        session.join().context("FUSE session ended with an error")?;
                        break;
                    }
                    // In use (an open file, a shell inside): keep serving rather than leave
                    // a mount nobody answers.
                    Some(Err(why)) if why.contains("busy") => eprintln!(
                        "cimkit: cannot unmount {}: {why}; still mounted: close what uses it, \
                         then Ctrl-C again",
                        args.mountpoint.display()
                    ),
                    // Refused for another reason (no permission to run it, …): unmount from here.
                    Some(Err(_)) | None => {
                        session.umount_and_join().with_context(|| {
                            format!("cannot unmount {}", args.mountpoint.display())
                        })?;
                        break;
                    }
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    session
                        .umount_and_join()
                        .with_context(|| format!("cannot unmount {}", args.mountpoint.display()))?;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if session.guard.is_finished() => {
                    // Unmounted from outside (fusermount3 -u): the session thread has ended.
                    session.join().context("FUSE session ended with an error")?;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        eprintln!("unmounted {}", args.mountpoint.display());
        Ok(Outcome::Ok)
    }

    /// Unmounts with `fusermount3 -u` (or `fusermount -u`), which leaves the mount in place when it
    /// is busy; None when neither tool can be run, Some(Err(what it said)) when it refused.
    fn fusermount_unmount(mountpoint: &std::path::Path) -> Option<std::result::Result<(), String>> {
        for tool in ["fusermount3", "fusermount"] {
            let Ok(out) = std::process::Command::new(tool)
                .arg("-u")
                .arg(mountpoint)
                // Its reason in English, which tells "busy" apart.
                .env("LC_ALL", "C")
                .stdin(std::process::Stdio::null())
                .output()
            else {
                continue;
            };
            if out.status.success() {
                return Some(Ok(()));
            }
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.trim();
            // "fusermount3: failed to unmount /mnt: Device or resource busy": the reason only.
            let why = said.rsplit(": ").next().unwrap_or(said);
            return Some(Err(if why.is_empty() {
                format!("{tool} -u failed ({})", out.status)
            } else {
                why.to_string()
            }));
        }
        None
    }
}
