//! The fanotify adapter of one sync: one notification group, one mark on the source's
//! whole file system (`FAN_MARK_FILESYSTEM`), no watch per directory. Events name a
//! directory by its file handle and the entry by its name ([`sys`], [`parse`]); [`map`]
//! turns the handle into a path relative to the source (through `open_by_handle_at` on a
//! descriptor of the source's root and the name the kernel gives the descriptor,
//! cached) and drops what happens elsewhere on the file system. The translator's
//! [`Event`]s are the inotify adapter's: the same [`Translator`] decides the queue's
//! changes, so the queue, batching, pushes, catch-up and status do not know which
//! watcher runs.
//!
//! What it does not do that inotify's adapter does: walk the tree (there is nothing to
//! add: directories created later are covered by the mark), run out of watches, or see
//! the source's file system unmounted (the watcher thread's path watch does). What it
//! needs that inotify does not: Linux 5.17+ (`FAN_REPORT_TARGET_FID`, `FAN_RENAME`),
//! `CAP_SYS_ADMIN` (a file system mark) and `CAP_DAC_READ_SEARCH` (`open_by_handle_at`),
//! a file system that encodes file handles with one fsid, and no other file system
//! mounted below the source (its events would not come): [`FanWatcher::new`] says which
//! is missing, and `watcher = "auto"` then takes inotify.

pub mod map;
pub mod parse;
pub mod sys;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::poll::{PollFd, PollFlags};

use super::pace::{self, Pace};
use super::translate::{Command, Event, Output, Timing, Translator};
use super::WatchStats;
use crate::config::SyncJob;
use crate::queue::Change;
use map::{Dirs, Look};
use parse::Raw;
use sys::Handle;

/// Most 64 KiB reads of events in one poll (see [`FanWatcher::read_events`]).
const READS_PER_POLL: usize = 64;

/// The fanotify watcher of one source tree.
pub struct FanWatcher {
    group: OwnedFd,
    root: PathBuf,
    /// The root's absolute path as the kernel names it (`/proc/self/fd`).
    prefix: Vec<u8>,
    core: Translator,
    dirs: Dirs,
    buffer: Vec<u8>,
    raws: Vec<Raw>,
    events: Vec<Event>,
    pace: Pace,
    /// What the watcher is, for the log and the status: kernel, file system.
    about: String,
    /// Mount points below the source already reported by [`FanWatcher::new_mounts_below`].
    mounts_seen: Vec<String>,
}

/// Why fanotify cannot watch a source, as one sentence for the log, `syncd status` and
/// `syncd check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

impl FanWatcher {
    /// A group with the source's file system marked. Fails with what is missing (see the
    /// module doc).
    pub fn new(job: &SyncJob) -> Result<FanWatcher, Unavailable> {
        let root = job.source.clone();
        let group = sys::init().map_err(|e| {
            Unavailable(match e.raw_os_error() {
                Some(libc::EPERM) => "fanotify needs CAP_SYS_ADMIN (root), which this worker does not have".into(),
                Some(libc::EINVAL) => format!(
                    "this kernel ({}) has no fanotify with file handles and names (FAN_REPORT_TARGET_FID: Linux 5.17 or later)",
                    kernel_release()
                ),
                Some(libc::ENOSYS) => "this kernel has no fanotify (CONFIG_FANOTIFY)".into(),
                _ => format!("fanotify_init failed: {e}"),
            })
        })?;
        let mut mask = sys::MARK_MASK;
        if job.events.modify {
            mask |= libc::FAN_MODIFY;
        }
        let fs = fs_name(&root);
        sys::mark_filesystem(group.as_fd(), &root, mask).map_err(|e| {
            Unavailable(match e.raw_os_error() {
                Some(libc::EXDEV) => format!(
                    "{}: {fs} gives this directory another fsid than its file system's (a btrfs subvolume?): fanotify cannot mark it",
                    root.display()
                ),
                Some(libc::ENODEV | libc::EOPNOTSUPP) => format!(
                    "{}: {fs} cannot encode file handles, which fanotify needs",
                    root.display()
                ),
                Some(libc::EPERM) => "fanotify needs CAP_SYS_ADMIN (root) to mark a file system".into(),
                _ => format!("{}: cannot mark its file system ({fs}): {e}", root.display()),
            })
        })?;
        // Opened for this check only: a descriptor kept open would keep the source's file
        // system from being unmounted (inotify does not), so each lookup opens its own.
        let root_fd: OwnedFd = std::fs::File::open(&root)
            .map_err(|e| Unavailable(format!("{}: cannot open the source: {e}", root.display())))?
            .into();
        let handle = sys::handle_of(&root)
            .map_err(|e| Unavailable(format!("{}: no file handle: {e}", root.display())))?;
        // The root must open through its handle: that needs CAP_DAC_READ_SEARCH, and a
        // file system whose handles can be opened again.
        let reopened = sys::open_by_handle(root_fd.as_fd(), &handle).map_err(|e| {
            Unavailable(match e.raw_os_error() {
                Some(libc::EPERM) => "fanotify needs CAP_DAC_READ_SEARCH (open_by_handle_at), which this worker does not have".into(),
                _ => format!("{}: its file handle does not open again ({fs}): {e}", root.display()),
            })
        })?;
        let prefix = sys::path_of(reopened.as_fd())
            .map_err(|e| Unavailable(format!("{}: {e}", root.display())))?
            .into_os_string()
            .into_vec();
        let below = mounts_below(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            &prefix,
        );
        if !below.is_empty() {
            return Err(Unavailable(format!(
                "{}: other file systems are mounted below the source ({}); one fanotify mark covers only the source's own",
                root.display(),
                below.join(", ")
            )));
        }
        Ok(FanWatcher {
            group,
            about: format!(
                "one mark on the {fs} file system of {} (kernel {})",
                root.display(),
                kernel_release()
            ),
            root,
            prefix,
            core: Translator::new(job.events, job.exclude.clone(), Timing::default()),
            dirs: Dirs::new(handle),
            buffer: vec![0; 64 * 1024],
            raws: Vec::new(),
            events: Vec::new(),
            pace: Pace::default(),
            mounts_seen: Vec::new(),
        })
    }

    /// File systems mounted below the source since the mark was made (or the last call),
    /// as paths relative to the source: the mark does not cover them. Called when the
    /// mount table changed.
    pub fn new_mounts_below(&mut self) -> Vec<crate::batch::RelPath> {
        let now = mounts_below(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            &self.prefix,
        );
        let mut new = Vec::new();
        for m in &now {
            if !self.mounts_seen.contains(m) {
                if let Look::Inside(rel) = place(&self.prefix, m.as_bytes()) {
                    new.push(rel);
                }
            }
        }
        self.mounts_seen = now;
        new
    }

    /// What watches the source, for the log and the status.
    pub fn about(&self) -> &str {
        &self.about
    }

    pub fn stats(&self) -> WatchStats {
        WatchStats {
            watched: 0,
            unwatched: 0,
            overflows: self.core.overflows(),
            asked: None,
        }
    }

    /// Directories whose paths are cached (resolved once, known since).
    pub fn dirs_known(&self) -> usize {
        self.dirs.known()
    }

    /// See [`super::Watcher::caught_up`].
    pub fn caught_up(&self) -> bool {
        pace::caught_up(self)
    }

    /// See [`super::Watcher::root_lost`].
    pub fn root_lost(&self) -> Option<String> {
        self.core
            .root_lost()
            .map(|loss| format!("{}: {}", self.root.display(), loss.why()))
    }

    /// See [`super::Watcher::poll_or_woken`].
    pub fn poll_or_woken(
        &mut self,
        timeout: Duration,
        also: &[PollFd<'_>],
        out: &mut Vec<Change>,
    ) -> anyhow::Result<Vec<PollFlags>> {
        pace::poll_or_woken(self, timeout, also, out)
    }

    /// Read and translate every event queued now. Returns how many were read (those of
    /// the rest of the file system included).
    fn read_events(&mut self, out: &mut Vec<Change>) -> anyhow::Result<usize> {
        let mut read = 0;
        // The mark is the whole file system's: under a flood of writes elsewhere the
        // queue may never run dry. After this many buffers the loop hands back, so held
        // moves and new files are released on time; the descriptor stays readable.
        for _ in 0..READS_PER_POLL {
            let n = sys::read(self.group.as_fd(), &mut self.buffer)
                .context("failed to read fanotify events")?;
            if n == 0 {
                return Ok(read);
            }
            self.raws.clear();
            if let Err(e) = parse::parse(&self.buffer[..n], &mut self.raws) {
                // Never seen: the kernel's own format. What it held is lost: say so and
                // answer as to lost events.
                log::warn!("{}: unreadable fanotify events ({e})", self.root.display());
                self.raws.push(Raw {
                    mask: libc::FAN_Q_OVERFLOW,
                    ..Raw::default()
                });
            }
            read += self.raws.len();
            let now = Instant::now();
            let raws = std::mem::take(&mut self.raws);
            for raw in &raws {
                self.events.clear();
                let (root, prefix) = (&self.root, &self.prefix);
                self.dirs
                    .events(raw, |h| look(root, prefix, h), &mut self.events);
                for event in std::mem::take(&mut self.events) {
                    let mut step = Output::default();
                    let root = &self.root;
                    self.core
                        .event(event, now, |rel| super::lstat(root, rel), &mut step);
                    self.carry_out(step, out);
                }
            }
            self.raws = raws;
        }
        Ok(read)
    }

    /// The translator's commands need nothing from a file system mark (new directories
    /// are covered, moved and deleted ones forgotten by [`map`]) but the word on lost
    /// events; its changes are handed on.
    fn carry_out(&mut self, step: Output, out: &mut Vec<Change>) {
        for command in step.commands {
            if command == Command::RewatchAll {
                log::warn!(
                    "{}: fanotify queue overflowed (fs.fanotify.max_queued_events is too low for this burst), or an event's directory could not be placed (logged above): events were lost; pushing the tree whole",
                    self.root.display()
                );
            }
        }
        out.extend(step.changes);
    }
}

impl pace::Adapter for FanWatcher {
    const QUEUE: &'static str = "fanotify descriptor";

    fn queue_fd(&self) -> BorrowedFd<'_> {
        self.group.as_fd()
    }

    fn pace(&mut self) -> &mut Pace {
        &mut self.pace
    }

    fn core(&self) -> &Translator {
        &self.core
    }

    fn read_available(&mut self, out: &mut Vec<Change>) -> anyhow::Result<usize> {
        self.read_events(out)
    }

    fn tick(&mut self, out: &mut Vec<Change>) {
        let mut step = Output::default();
        let root = &self.root;
        self.core
            .tick(Instant::now(), |rel| super::lstat(root, rel), &mut step);
        self.carry_out(step, out);
    }
}

/// Where the directory `h` is now: open it through its handle (on the file system and
/// mount of the source's root, opened for the call) and read the name the kernel gives
/// the descriptor.
/// The directory itself gone (`ESTALE`), or the source's root (the path watch reports
/// that loss) is [`Look::Gone`]; any other failure is [`Look::Unreadable`], logged.
fn look(root: &Path, prefix: &[u8], h: &Handle) -> Look {
    let unreadable = |what: &str, e: std::io::Error| {
        log::warn!(
            "{}: cannot tell where a directory of a fanotify event is ({what}: {e}); answering as to lost events",
            root.display()
        );
        Look::Unreadable
    };
    let gone = |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ESTALE | libc::ENOENT));
    let root_fd = match std::fs::File::open(root) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Look::Gone,
        Err(e) => return unreadable("opening the source", e),
    };
    let fd = match sys::open_by_handle(root_fd.as_fd(), h) {
        Ok(fd) => fd,
        Err(e) if gone(&e) => return Look::Gone,
        Err(e) => return unreadable("open_by_handle_at", e),
    };
    match sys::path_of(fd.as_fd()) {
        Ok(path) => place(prefix, path.as_os_str().as_bytes()),
        Err(e) => unreadable("its name in /proc/self/fd", e),
    }
}

/// Where `path` (a directory's name as the kernel gives it) is with respect to the
/// source at `prefix`.
fn place(prefix: &[u8], path: &[u8]) -> Look {
    if path.ends_with(b" (deleted)") {
        return Look::Gone;
    }
    if path == prefix {
        return Look::Inside(Vec::new());
    }
    match path.strip_prefix(prefix) {
        Some(rest) if prefix == b"/" => Look::Inside(rest.to_vec()),
        Some(rest) if rest.first() == Some(&b'/') => Look::Inside(rest[1..].to_vec()),
        _ => Look::Outside,
    }
}

/// Mount points strictly below `root` in a `/proc/self/mountinfo` text (field 5, with
/// the kernel's octal escapes undone).
fn mounts_below(mountinfo: &str, root: &[u8]) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| {
            let m = m.as_bytes();
            m.len() > root.len() && m.starts_with(root) && (root == b"/" || m[root.len()] == b'/')
        })
        .collect()
}

/// Undo mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The name of the file system type holding `path` (ext4, xfs, btrfs, tmpfs, nfs...).
pub fn fs_name(path: &Path) -> String {
    let Ok(st) = nix::sys::statfs::statfs(path) else {
        return "unknown file system".into();
    };
    let magic = st.filesystem_type().0 as u64;
    match magic {
        // ext2, ext3 and ext4 share the magic number.
        0xEF53 => "ext2/3/4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x6969 => "nfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6573_5546 => "fuse".into(),
        0xFF53_4D42 | 0xFE53_4D42 => "cifs/smb".into(),
        other => format!("file system type {other:#x}"),
    }
}

#[cfg(test)]
mod tests;
