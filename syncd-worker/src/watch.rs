//! The inotify adapter of one sync: owns the inotify instance, one watch per directory of
//! the source (symlinks never followed, excluded directories not watched) and the map
//! between watch descriptors and relative paths. It turns raw events into queue
//! [`Change`]s and keeps the watches in step with the tree:
//!
//! * a new regular file (`IN_CREATE`) is held back until its `IN_CLOSE_WRITE` when that
//!   event is on: pushing it at creation would push it half-written and then again. Only
//!   a file that will get a close can wait — one with a single link (a hard link gets no
//!   close) — and none waits longer than [`CREATE_CLOSE_WAIT`] (a file created without
//!   write access, or a link whose other name was removed before we looked);
//! * a directory created or moved in gets its watch, then is read, and so is every
//!   directory found in it (watch first, then read: nothing created in between is
//!   missed), and is pushed whole;
//! * a directory renamed inside the tree keeps its watches (moves are paired by cookie)
//!   and the paths of its whole subtree are updated; moved out, its watches are removed;
//! * `IN_IGNORED` drops a watch (deleted directory); events of unknown watches are
//!   dropped (they may still be queued after a removal);
//! * the root unmounted (`IN_UNMOUNT`), moved away (`IN_MOVE_SELF`, the root's mask
//!   only), deleted or unwatched makes the watcher lost ([`Watcher::root_lost`]): its
//!   later events no longer describe the source path and are ignored;
//! * `IN_Q_OVERFLOW` means events were lost: every directory is walked again to add any
//!   missing watch, and a whole-tree push is asked for;
//! * a watch that cannot be added for lack of watches (`ENOSPC`) is reported with the
//!   sysctl and the number to set
//!   ([`limit::watches_to_suggest`], the controller's own rule); the tree is then covered by periodic whole-tree pushes
//!   and a retry of the missing watches.
//!
//! It never pushes anything and never decides when to push.

pub mod limit;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::batch::RelPath;
use crate::config::{EventSet, SyncJob};
use crate::exclude::ExcludeSet;
use crate::queue::Change;
use crate::walk::{abs, child, count_dirs, vanished};

/// How long an unpaired `IN_MOVED_FROM` waits for its `IN_MOVED_TO` before it is taken
/// as a move out of the tree. The kernel queues both halves of one rename back to back,
/// so this only has to cover a pair split across two reads.
const MOVE_PAIR_WAIT: Duration = Duration::from_millis(20);

/// How long a new regular file waits for its `IN_CLOSE_WRITE` before it is pushed anyway
/// (still open, or created in a way that never closes it for writing). Nothing is lost
/// either way: its close, if it comes later, pushes it again.
const CREATE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Should a new entry seen by `IN_CREATE` wait for its `IN_CLOSE_WRITE` instead of being
/// pushed now? Only a regular file with one link, and only when closes are watched and
/// writes are not (with `modify` on, the operator wants files pushed while written);
/// `meta` is its lstat: (regular file, link count), None when it is gone already or
/// cannot be read (pushed now: rsync sees what is there).
fn create_waits_for_close(events: &EventSet, meta: Option<(bool, u64)>) -> bool {
    events.close_write && !events.modify && matches!(meta, Some((true, 1)))
}

/// Counters the status file shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    pub watched: u64,
    pub unwatched: u64,
    pub overflows: u64,
}

struct PendingMove {
    cookie: u32,
    from: RelPath,
    is_dir: bool,
    at: Instant,
}

pub struct Watcher {
    inotify: Inotify,
    root: PathBuf,
    events: EventSet,
    exclude: ExcludeSet,
    mask: WatchMask,
    /// wd id → (descriptor, relative path; empty for the root).
    by_wd: HashMap<i32, (WatchDescriptor, RelPath)>,
    /// relative path → wd id, ordered so a subtree is a range.
    by_path: BTreeMap<RelPath, i32>,
    pending_moves: Vec<PendingMove>,
    /// New regular files waiting for their `IN_CLOSE_WRITE`, with when they were created.
    open_creates: BTreeMap<RelPath, Instant>,
    /// [`CREATE_CLOSE_WAIT`] (shorter in tests).
    create_close_wait: Duration,
    /// Directories that could not be watched at the last attempt.
    unwatched: u64,
    overflows: u64,
    /// Set once ENOSPC was explained, so the log says it once per shortage, not per dir.
    enospc_reported: bool,
    /// Why the root stopped being watchable (deleted, moved away, unmounted).
    root_lost: Option<String>,
    buffer: Vec<u8>,
}

impl Watcher {
    /// Create the inotify instance and watch the whole tree. Fails only when the root
    /// itself cannot be watched (that ends the worker: there is nothing to sync).
    pub fn new(job: &SyncJob) -> anyhow::Result<Watcher> {
        let inotify = Inotify::init().context(
            "failed to create an inotify instance (is fs.inotify.max_user_instances too low?)",
        )?;
        let mut mask = WatchMask::CREATE
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ATTRIB
            | WatchMask::DONT_FOLLOW
            | WatchMask::ONLYDIR
            | WatchMask::EXCL_UNLINK;
        if job.events.modify {
            mask |= WatchMask::MODIFY;
        }
        let mut w = Watcher {
            inotify,
            root: job.source.clone(),
            events: job.events,
            exclude: job.exclude.clone(),
            mask,
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            pending_moves: Vec::new(),
            open_creates: BTreeMap::new(),
            create_close_wait: CREATE_CLOSE_WAIT,
            unwatched: 0,
            overflows: 0,
            enospc_reported: false,
            root_lost: None,
            buffer: vec![0; 64 * 1024],
        };
        w.add_one(&[]).with_context(|| {
            format!(
                "cannot watch source directory {}: check that it exists, is a directory and is readable",
                job.source.display()
            )
        })?;
        w.unwatched = 0;
        w.add_tree(Vec::new());
        Ok(w)
    }

    pub fn stats(&self) -> WatchStats {
        WatchStats {
            watched: self.by_wd.len() as u64,
            unwatched: self.unwatched,
            overflows: self.overflows,
        }
    }

    /// True when every event the kernel queued before this call has already come out of
    /// `poll` as changes: the inotify queue is empty, no half of a move is held back and
    /// no new file waits for its close.
    /// With a zero timeout `poll(2)` does not sleep, so a signal cannot make an unread
    /// queue look empty.
    pub fn caught_up(&self) -> bool {
        self.pending_moves.is_empty()
            && self.open_creates.is_empty()
            && matches!(self.readable(Duration::ZERO), Ok(false))
    }

    /// Why the source directory itself is no longer watched (deleted, moved away, its
    /// file system unmounted); None while it is. Once set, the watcher is of no further
    /// use: its events no longer describe the source path.
    pub fn root_lost(&self) -> Option<&str> {
        self.root_lost.as_deref()
    }

    /// Walk the whole tree again and add every missing watch (after an overflow, or to
    /// retry after a watch shortage). Returns the number of directories still unwatched.
    pub fn rewatch_all(&mut self) -> u64 {
        self.unwatched = 0;
        self.enospc_reported = false;
        self.add_tree(Vec::new());
        self.unwatched
    }

    /// Wait up to `timeout` for events and translate them into `out`. Returns when events
    /// were handled or the time ran out.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Change>) -> anyhow::Result<()> {
        let next = self
            .pending_moves
            .first()
            .map(|m| m.at + MOVE_PAIR_WAIT)
            .into_iter()
            .chain(
                self.open_creates
                    .values()
                    .map(|at| *at + self.create_close_wait),
            )
            .min();
        let wait = match next {
            Some(at) => timeout.min(at.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        if self.readable(wait)? {
            self.read_available(out)?;
        }
        // Moves whose other half did not come in time went out of the tree.
        let now = Instant::now();
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_moves)
            .into_iter()
            .partition(|m| now >= m.at + MOVE_PAIR_WAIT);
        self.pending_moves = kept;
        for m in expired {
            self.moved_out(m, out);
        }
        // New files still not closed: push what is there now.
        let waited: Vec<RelPath> = self
            .open_creates
            .iter()
            .filter(|(_, at)| now >= **at + self.create_close_wait)
            .map(|(p, _)| p.clone())
            .collect();
        for p in waited {
            self.open_creates.remove(&p);
            out.push(Change::Path(p));
        }
        Ok(())
    }

    fn readable(&self, timeout: Duration) -> anyhow::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e).context("poll on the inotify descriptor failed");
        }
        Ok(n > 0)
    }

    /// Read every event queued now (non-blocking) and handle it.
    fn read_available(&mut self, out: &mut Vec<Change>) -> anyhow::Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(ev) => ev,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e).context("failed to read inotify events"),
            };
            let raw: Vec<(i32, EventMask, u32, Option<RelPath>)> = events
                .map(|e| {
                    (
                        e.wd.get_watch_descriptor_id(),
                        e.mask,
                        e.cookie,
                        e.name.map(|n| n.as_bytes().to_vec()),
                    )
                })
                .collect();
            if raw.is_empty() {
                break Ok(());
            }
            for (wd, mask, cookie, name) in raw {
                self.handle(wd, mask, cookie, name, out);
            }
        };
        self.buffer = buffer;
        result
    }

    fn handle(
        &mut self,
        wd: i32,
        mask: EventMask,
        cookie: u32,
        name: Option<RelPath>,
        out: &mut Vec<Change>,
    ) {
        if self.root_lost.is_some() {
            // Events from a tree that is no longer the source (moved away, unmounted).
            return;
        }
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.overflows += 1;
            log::warn!(
                "{}: inotify queue overflowed (fs.inotify.max_queued_events is too low for this burst): events were lost; re-watching the tree and pushing it whole",
                self.root.display()
            );
            self.rewatch_all();
            // The whole-tree push reads every file, and closes still to come push again.
            self.open_creates.clear();
            out.push(Change::Full);
            return;
        }
        let Some((_, dir)) = self.by_wd.get(&wd) else {
            return; // a watch already removed; its last events are stale
        };
        let dir = dir.clone();
        if dir.is_empty() {
            let lost = if mask.contains(EventMask::UNMOUNT) {
                Some("its file system was unmounted")
            } else if mask.contains(EventMask::MOVE_SELF) {
                Some("it was moved away")
            } else if mask.contains(EventMask::DELETE_SELF) {
                Some("it was deleted")
            } else if mask.contains(EventMask::IGNORED) {
                Some("its watch was removed")
            } else {
                None
            };
            if let Some(why) = lost {
                if self.root_lost.is_none() {
                    self.root_lost = Some(format!("{}: {why}", self.root.display()));
                }
                if mask.contains(EventMask::IGNORED) {
                    self.forget_wd(wd);
                }
                return;
            }
        }
        if mask.contains(EventMask::IGNORED) {
            self.forget_wd(wd);
            return;
        }
        let Some(name) = name else {
            // An event about a watched directory itself.
            if mask.contains(EventMask::ATTRIB) && self.events.attrib && !dir.is_empty() {
                out.push(Change::Path(dir));
            }
            return;
        };
        let rel = child(&dir, &name);
        let is_dir = mask.contains(EventMask::ISDIR);
        let excluded = self.exclude.is_excluded(&rel);

        if mask.contains(EventMask::MOVED_FROM) {
            if excluded {
                return;
            }
            // Its close (if any) comes under the new name, which the move pushes.
            self.open_creates.remove(&rel);
            self.pending_moves.push(PendingMove {
                cookie,
                from: rel,
                is_dir,
                at: Instant::now(),
            });
            return;
        }
        if mask.contains(EventMask::MOVED_TO) {
            let paired = self
                .pending_moves
                .iter()
                .position(|m| m.cookie == cookie)
                .map(|i| self.pending_moves.remove(i));
            if excluded {
                // Moved to an excluded name: for the target it is gone.
                if let Some(m) = paired {
                    self.moved_out(m, out);
                }
                return;
            }
            match paired {
                Some(m) => {
                    if m.is_dir {
                        self.rename_subtree(&m.from, &rel);
                    }
                    if self.events.move_from {
                        out.push(Change::Gone(m.from));
                    }
                }
                None if is_dir => {
                    self.add_tree(rel.clone());
                }
                None => {}
            }
            if self.events.move_to {
                out.push(if is_dir {
                    Change::Tree(rel)
                } else {
                    Change::Path(rel)
                });
            }
            return;
        }
        if excluded {
            return;
        }
        if mask.contains(EventMask::CREATE) {
            if is_dir {
                self.add_tree(rel.clone());
                if self.events.create_folder {
                    out.push(Change::Tree(rel));
                }
            } else if self.events.create_file {
                let meta = std::fs::symlink_metadata(abs(&self.root, &rel))
                    .ok()
                    .map(|m| (m.file_type().is_file(), m.nlink()));
                if create_waits_for_close(&self.events, meta) {
                    self.open_creates.insert(rel, Instant::now());
                } else {
                    out.push(Change::Path(rel));
                }
            }
            return;
        }
        if mask.contains(EventMask::DELETE) {
            if is_dir {
                self.forget_subtree(&rel, false);
            }
            self.open_creates.remove(&rel);
            if self.events.delete {
                out.push(Change::Gone(rel));
            }
            return;
        }
        if mask.contains(EventMask::CLOSE_WRITE) {
            self.open_creates.remove(&rel);
        } else if self.open_creates.contains_key(&rel) {
            // Written or chmod-ed before its close: the close (or the wait) pushes it.
            return;
        }
        let wanted = (mask.contains(EventMask::CLOSE_WRITE) && self.events.close_write)
            || (mask.contains(EventMask::MODIFY) && self.events.modify)
            || (mask.contains(EventMask::ATTRIB) && self.events.attrib);
        if wanted {
            out.push(Change::Path(rel));
        }
    }

    /// A MOVED_FROM whose MOVED_TO never came: the entry left the tree.
    fn moved_out(&mut self, m: PendingMove, out: &mut Vec<Change>) {
        if m.is_dir {
            self.forget_subtree(&m.from, true);
        }
        self.open_creates.remove(&m.from);
        if self.events.move_from {
            out.push(Change::Gone(m.from));
        }
    }

    /// Watch `top` and every directory below it, reading each after its watch is in place.
    fn add_tree(&mut self, top: RelPath) {
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            if !dir.is_empty() && self.exclude.is_excluded(&dir) {
                continue;
            }
            match self.add_one(&dir) {
                Ok(()) => {}
                Err(e) if vanished(&e) => continue,
                Err(e) => {
                    self.unwatched += 1;
                    self.report_add_error(&dir, &e);
                    // Keep walking: directories below may still be watchable (EACCES), and
                    // the count of what is missing must be right.
                }
            }
            let rd = match std::fs::read_dir(abs(&self.root, &dir)) {
                Ok(rd) => rd,
                Err(e) if vanished(&e) => continue,
                Err(e) => {
                    log::warn!(
                        "cannot read directory {}: {e}; its subdirectories are not watched",
                        abs(&self.root, &dir).display()
                    );
                    continue;
                }
            };
            for entry in rd.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(child(&dir, entry.file_name().as_bytes()));
                }
            }
        }
    }

    fn add_one(&mut self, rel: &[u8]) -> io::Result<()> {
        let path = abs(&self.root, rel);
        // The root also reports being moved away (IN_MOVE_SELF; its IN_DELETE_SELF,
        // IN_UNMOUNT and IN_IGNORED come with every mask).
        let mask = if rel.is_empty() {
            self.mask | WatchMask::MOVE_SELF
        } else {
            self.mask
        };
        let wd = self.inotify.watches().add(&path, mask)?;
        let id = wd.get_watch_descriptor_id();
        // The same directory reached under a new name (an unpaired rename) keeps its wd:
        // point the wd at the new path.
        if let Some((_, old)) = self.by_wd.get(&id) {
            if old.as_slice() != rel {
                let old = old.clone();
                self.by_path.remove(&old);
            }
        }
        self.by_wd.insert(id, (wd, rel.to_vec()));
        self.by_path.insert(rel.to_vec(), id);
        Ok(())
    }

    fn report_add_error(&mut self, rel: &[u8], e: &io::Error) {
        let path = abs(&self.root, rel);
        if e.raw_os_error() == Some(libc::ENOSPC) {
            if self.enospc_reported {
                return;
            }
            self.enospc_reported = true;
            let limit = read_sysctl("/proc/sys/fs/inotify/max_user_watches");
            let needed = count_dirs(&self.root, &self.exclude);
            let missing = needed.saturating_sub(self.by_wd.len() as u64);
            let suggest = limit::watches_to_suggest(limit, needed, missing);
            log::error!(
                "cannot watch {}: out of inotify watches (fs.inotify.max_user_watches = {}); {} has {} directories, {} unwatched. Raise the limit: `sysctl -w fs.inotify.max_user_watches={}` (persist it in /etc/sysctl.d/90-syncd.conf). Until then the unwatched part is covered by periodic whole-tree pushes.",
                path.display(),
                limit.map_or_else(|| "unknown".to_string(), |l| l.to_string()),
                self.root.display(),
                needed,
                missing,
                suggest
            );
        } else {
            log::warn!(
                "cannot watch {}: {e}; changes below it are only caught by whole-tree pushes",
                path.display()
            );
        }
    }

    /// Drop the bookkeeping of `rel` and everything below it; with `remove`, also tell
    /// the kernel to stop watching (the directory still exists elsewhere).
    fn forget_subtree(&mut self, rel: &[u8], remove: bool) {
        let ids: Vec<i32> = subtree(&self.by_path, rel).map(|(_, id)| *id).collect();
        for id in ids {
            if let Some((wd, path)) = self.by_wd.remove(&id) {
                self.by_path.remove(&path);
                if remove {
                    // It may already be gone; nothing to do about an error here.
                    let _ = self.inotify.watches().remove(wd);
                }
            }
        }
    }

    fn forget_wd(&mut self, id: i32) {
        if let Some((_, path)) = self.by_wd.remove(&id) {
            if self.by_path.get(&path) == Some(&id) {
                self.by_path.remove(&path);
            }
        }
    }

    /// A directory moved from `from` to `to` inside the tree: its watches stay, their
    /// paths change.
    fn rename_subtree(&mut self, from: &[u8], to: &[u8]) {
        let moved: Vec<(RelPath, i32)> = subtree(&self.by_path, from)
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        for (old, id) in moved {
            self.by_path.remove(&old);
            let mut new = to.to_vec();
            new.extend_from_slice(&old[from.len()..]);
            if let Some(entry) = self.by_wd.get_mut(&id) {
                entry.1 = new.clone();
            }
            self.by_path.insert(new, id);
        }
    }

    /// Is the directory at this relative path watched?
    pub fn is_watched(&self, rel_dir: &[u8]) -> bool {
        self.by_path.contains_key(rel_dir)
    }
}

/// `rel` itself and every path below it in an ordered map.
fn subtree<'a>(
    map: &'a BTreeMap<RelPath, i32>,
    rel: &[u8],
) -> impl Iterator<Item = (&'a RelPath, &'a i32)> {
    let lo = rel.to_vec();
    let mut hi = rel.to_vec();
    hi.push(b'/' + 1);
    let rel = rel.to_vec();
    map.range(lo..hi)
        .filter(move |(p, _)| p.len() == rel.len() || p.get(rel.len()) == Some(&b'/'))
}

/// Read a number from a /proc/sys file.
pub fn read_sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use std::fs;

    /// The rsync tests' job builder: the documented defaults, no targets.
    fn job(source: &std::path::Path) -> SyncJob {
        crate::rsync::tests::job(source, vec![])
    }

    fn s(p: &str) -> RelPath {
        p.as_bytes().to_vec()
    }

    /// Poll until `want` holds for the changes seen so far, or fail after 5 s.
    fn until(w: &mut Watcher, seen: &mut Vec<Change>, want: impl Fn(&[Change]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !want(seen) {
            assert!(
                Instant::now() < deadline,
                "timed out; changes seen: {seen:?}"
            );
            w.poll(Duration::from_millis(50), seen).unwrap();
        }
    }

    #[test]
    fn new_dir_filled_before_its_watch_is_watched_and_pushed_whole() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        fs::write(t.path().join("a/b/c/f"), "x").unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| c.contains(&Change::Tree(s("a"))));
        assert!(w.is_watched(b"a/b/c"), "deep dir not watched");
        // Later changes deep inside are seen through the new watches.
        fs::write(t.path().join("a/b/c/g"), "y").unwrap();
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("a/b/c/g")))
        });
    }

    #[test]
    fn dir_renamed_inside_keeps_watches_under_the_new_name() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("old/sub")).unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        let watched = w.stats().watched;
        fs::rename(t.path().join("old"), t.path().join("new")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Gone(s("old"))) && c.contains(&Change::Tree(s("new")))
        });
        assert!(w.is_watched(b"new/sub") && !w.is_watched(b"old/sub"));
        assert_eq!(w.stats().watched, watched, "watches were re-added or lost");
        fs::write(t.path().join("new/sub/f"), "x").unwrap();
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("new/sub/f")))
        });
    }

    #[test]
    fn dir_moved_out_loses_its_watches_and_is_gone() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("d/sub")).unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        fs::rename(t.path().join("d"), outside.path().join("d")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| c.contains(&Change::Gone(s("d"))));
        assert_eq!(w.stats().watched, 1, "only the root stays watched");
        // Writes in the moved-out tree are not attributed to the source any more.
        fs::write(outside.path().join("d/sub/f"), "x").unwrap();
        w.poll(Duration::from_millis(100), &mut seen).unwrap();
        assert!(
            !seen
                .iter()
                .any(|c| matches!(c, Change::Path(p) if p.ends_with(b"f"))),
            "{seen:?}"
        );
    }

    #[test]
    fn deleted_dirs_drop_their_watches() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("d/e")).unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        assert_eq!(w.stats().watched, 3);
        fs::remove_dir_all(t.path().join("d")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| c.contains(&Change::Gone(s("d"))));
        let deadline = Instant::now() + Duration::from_secs(5);
        while w.stats().watched != 1 {
            assert!(Instant::now() < deadline, "watches leaked: {:?}", w.stats());
            w.poll(Duration::from_millis(50), &mut seen).unwrap();
        }
    }

    #[test]
    fn create_only_events_and_chmod_are_pushed_by_default() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), "x").unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        std::os::unix::fs::symlink("f", t.path().join("link")).unwrap();
        fs::hard_link(t.path().join("f"), t.path().join("hard")).unwrap();
        fs::set_permissions(t.path().join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| {
            ["link", "hard", "f"]
                .iter()
                .all(|n| c.contains(&Change::Path(s(n))))
        });
    }

    #[test]
    fn excluded_paths_raise_nothing_and_are_not_watched() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("cache/x")).unwrap();
        let mut j = job(t.path());
        j.exclude = ExcludeSet::new(&["^cache", r"\.tmp$"]).unwrap();
        let mut w = Watcher::new(&j).unwrap();
        assert!(!w.is_watched(b"cache"));
        fs::write(t.path().join("a.tmp"), "x").unwrap();
        fs::write(t.path().join("ok"), "x").unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| c.contains(&Change::Path(s("ok"))));
        assert!(!seen.contains(&Change::Path(s("a.tmp"))), "{seen:?}");
    }

    #[test]
    fn which_new_entries_wait_for_their_close() {
        let on = EventSet::default();
        let no_close = EventSet {
            close_write: false,
            ..on
        };
        let modify = EventSet { modify: true, ..on };
        // (case, events, lstat as (regular file, links), waits)
        type Case = (&'static str, EventSet, Option<(bool, u64)>, bool);
        let cases: Vec<Case> = vec![
            ("new regular file", on, Some((true, 1)), true),
            ("hard link: no close will come", on, Some((true, 2)), false),
            ("symlink, fifo, socket, device", on, Some((false, 1)), false),
            ("gone already", on, None, false),
            ("closes not watched", no_close, Some((true, 1)), false),
            (
                "writes watched: push while written",
                modify,
                Some((true, 1)),
                false,
            ),
        ];
        for (name, events, meta, want) in cases {
            assert_eq!(create_waits_for_close(&events, meta), want, "{name}");
        }
    }

    #[test]
    fn new_file_is_pushed_once_closed_not_at_creation() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        let mut f = fs::File::create(t.path().join("big")).unwrap();
        f.write_all(&[b'x'; 100_000]).unwrap();
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // A symlink is pushed at creation; its event comes after the file's create, write
        // and chmod, so once it is seen those were handled.
        std::os::unix::fs::symlink("big", t.path().join("marker")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("marker")))
        });
        assert!(
            !seen.contains(&Change::Path(s("big"))),
            "pushed while open: {seen:?}"
        );
        assert!(
            !w.caught_up(),
            "a file waiting for its close is not caught up"
        );
        drop(f);
        until(&mut w, &mut seen, |c| c.contains(&Change::Path(s("big"))));
        assert_eq!(
            seen.iter()
                .filter(|c| **c == Change::Path(s("big")))
                .count(),
            1,
            "{seen:?}"
        );
    }

    #[test]
    fn new_file_never_closed_is_pushed_after_the_wait() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(&job(t.path())).unwrap();
        w.create_close_wait = Duration::from_millis(100);
        let f = fs::File::create(t.path().join("held")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| c.contains(&Change::Path(s("held"))));
        assert!(w.open_creates.is_empty());
        drop(f);
        // Its close later pushes it again (harmless), and nothing is left waiting.
        until(&mut w, &mut seen, |c| {
            c.iter().filter(|x| **x == Change::Path(s("held"))).count() == 2
        });
    }

    #[test]
    fn subtree_is_the_dir_and_below_only() {
        let mut m = BTreeMap::new();
        for (i, p) in ["a", "a/b", "a/b/c", "a.txt", "a0", "ab", "b"]
            .iter()
            .enumerate()
        {
            m.insert(p.as_bytes().to_vec(), i as i32);
        }
        let got: Vec<String> = subtree(&m, b"a")
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(got, vec!["a", "a/b", "a/b/c"]);
    }
}
