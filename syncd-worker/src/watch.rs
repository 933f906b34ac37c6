//! The inotify adapter of one sync: owns the inotify instance, one watch per directory of
//! the source (symlinks never followed, excluded directories not watched) and the map
//! between watch descriptors and relative paths. It reads raw events, turns each into a
//! [`translate::Event`] (directory path instead of watch descriptor), and lets the pure
//! [`Translator`] decide the queue [`Change`]s and the watch [`Command`]s, which it
//! carries out before the next event is read:
//!
//! * watching a tree: watch first, then read the directory, then each directory found in
//!   it (nothing created in between is missed): [`crate::walk::dirs`], on several threads
//!   for the whole tree (each adds its watches to the one inotify instance; the table
//!   below is filled once the walk is done), on the watcher's own thread for a directory
//!   that appeared;
//! * a rename inside the tree keeps the kernel's watches and updates the paths of the
//!   whole subtree; a move out removes them; a delete forgets them;
//! * `IN_IGNORED` drops a watch; events of unknown watches are dropped (they may still be
//!   queued after a removal);
//! * the root unmounted, moved away (`IN_MOVE_SELF`, the root's mask only), deleted or
//!   unwatched makes the watcher lost ([`Watcher::root_lost`]);
//! * a directory that cannot be watched for lack of watches (`ENOSPC`) is kept in a set of
//!   its own and the walk goes on (reading it, so the directories below it are met and
//!   counted: the count of what is missing costs no walk of its own). The watcher thread
//!   then asks the controller for more ([`ask`], [`Watcher::shortage`]) and, the limit
//!   raised, watches what is missing ([`Watcher::retry_short`]: watch-then-read walks
//!   again from the highest missing directories); otherwise it is reported with the
//!   sysctl and the number to set ([`limit::watches_to_suggest`], the controller's own
//!   rule, [`Watcher::explain_shortage`]) and the tree is covered by periodic whole-tree
//!   pushes and a retry of the missing watches.
//!
//! What each event means (move pairing, holding new files until their close, excludes,
//! overflow, root loss) is decided in [`translate`]; this module only does the I/O and
//! reads the clock. It never pushes anything and never decides when to push.
//!
//! Reads are paced: after a read that found events, the next one waits [`READ_GAP`]
//! (returning at once when woken to stop), so a stream of events is read in batches.
//! Without it each file written woke the watcher thread twice (its create, its close) and
//! the engine once: measured at 1,000 files/s, 1.8 context switches per file on the
//! watcher and 1.1 on the engine, over half of the worker's CPU. The gap adds at most
//! 10 ms to a change in a stream, nothing to the first change after a quiet spell.

pub mod ask;
pub mod choose;
pub mod fanotify;
pub mod limit;
pub mod pace;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};

use crate::batch::RelPath;
use crate::config::SyncJob;
use crate::exclude::ExcludeSet;
use crate::queue::Change;
use crate::status::WatchesAsked;
use crate::walk::dirs::{self, DirWalk, Leaves, Step};
use crate::walk::{abs, vanished};
use pace::Pace;
use translate::{Command, DirOp, EntryOp, Event, FileMeta, Output, Timing, Translator};

/// Counters the status file shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    pub watched: u64,
    pub unwatched: u64,
    pub overflows: u64,
    /// The last request for more watches to the controller, and how it went.
    pub asked: Option<WatchesAsked>,
}

/// Out of watches: what this tree misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    /// Directories not watched for lack of watches.
    pub missing: u64,
    /// Directories of the tree (watched, missing, and those that failed otherwise).
    pub dirs: u64,
}

/// The least time between two reads of events while they keep coming (see the module
/// doc).
pub const READ_GAP: Duration = Duration::from_millis(10);

pub struct Watcher {
    inotify: Inotify,
    root: PathBuf,
    exclude: ExcludeSet,
    mask: WatchMask,
    /// What the events mean.
    core: Translator,
    /// wd id → (descriptor, relative path; empty for the root).
    by_wd: HashMap<i32, (WatchDescriptor, RelPath)>,
    /// relative path → wd id, ordered so a subtree is a range.
    by_path: BTreeMap<RelPath, i32>,
    /// Directories that could not be watched at the last attempt, for another reason than
    /// a lack of watches (EACCES, say).
    failed: u64,
    /// Directories not watched for lack of watches (`ENOSPC`), kept up to date through
    /// renames and deletes, so they can be watched once the limit is raised.
    short: BTreeSet<RelPath>,
    /// `short` grew since the watcher thread last looked ([`Watcher::new_shortage`]).
    short_grew: bool,
    /// Set once ENOSPC was explained, so the log says it once per shortage, not per dir.
    enospc_reported: bool,
    /// The last request for watches ([`WatchStats::asked`]) and the limit it was made at.
    asked: Option<WatchesAsked>,
    asked_at: Option<Option<u64>>,
    buffer: Vec<u8>,
    /// Reads paced, see [`READ_GAP`].
    pace: Pace,
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
            exclude: job.exclude.clone(),
            mask,
            core: Translator::new(job.events, job.exclude.clone(), Timing::default()),
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            failed: 0,
            short: BTreeSet::new(),
            short_grew: false,
            enospc_reported: false,
            asked: None,
            asked_at: None,
            buffer: vec![0; 64 * 1024],
            pace: Pace::default(),
        };
        w.add_one(&[]).with_context(|| {
            format!(
                "cannot watch source directory {}: check that it exists, is a directory and is readable",
                job.source.display()
            )
        })?;
        w.add_tree(vec![Vec::new()], dirs::threads());
        Ok(w)
    }

    pub fn stats(&self) -> WatchStats {
        WatchStats {
            watched: self.by_wd.len() as u64,
            unwatched: self.failed + self.short.len() as u64,
            overflows: self.core.overflows(),
            asked: self.asked,
        }
    }

    /// What the tree misses for lack of watches; None when nothing.
    pub fn shortage(&self) -> Option<Shortage> {
        (!self.short.is_empty()).then(|| Shortage {
            missing: self.short.len() as u64,
            dirs: self.by_wd.len() as u64 + self.failed + self.short.len() as u64,
        })
    }

    /// Did directories go unwatched for lack of watches since the last call? (So the
    /// watcher thread looks at a shortage once, not at every event.)
    pub fn new_shortage(&mut self) -> bool {
        std::mem::take(&mut self.short_grew) && !self.short.is_empty()
    }

    /// The limit at the last request for watches (None: never asked; see
    /// [`limit::should_ask`]).
    pub fn asked_at(&self) -> Option<Option<u64>> {
        self.asked_at
    }

    /// A request for watches was made at `limit`, with this outcome.
    pub fn note_ask(&mut self, limit: Option<u64>, asked: WatchesAsked) {
        self.asked_at = Some(limit);
        self.asked = Some(asked);
    }

    /// Watch the directories missing for lack of watches (the limit was raised): a
    /// watch-then-read walk from each of the highest of them, so what was created in them
    /// meanwhile is found. Returns those tops: what changed in them before their watches
    /// is not known, so they are to be pushed as trees.
    pub fn retry_short(&mut self) -> Vec<RelPath> {
        let short = std::mem::take(&mut self.short);
        self.enospc_reported = false;
        let tops: Vec<RelPath> = short
            .iter()
            .filter(|p| !ancestors(p).any(|a| short.contains(a)))
            .cloned()
            .collect();
        self.add_tree(tops.clone(), dirs::threads());
        tops
    }

    /// True when every event the kernel queued before this call has already come out of
    /// `poll` as changes: the inotify queue is empty, no half of a move is held back and
    /// no new file waits for its close.
    /// With a zero timeout `poll(2)` does not sleep, so a signal cannot make an unread
    /// queue look empty.
    pub fn caught_up(&self) -> bool {
        pace::caught_up(self)
    }

    /// Why the source directory itself is no longer watched (deleted, moved away, its
    /// file system unmounted), with the source path; None while it is. Once set, the
    /// watcher is of no further use: its events no longer describe the source path.
    pub fn root_lost(&self) -> Option<String> {
        self.core
            .root_lost()
            .map(|loss| format!("{}: {}", self.root.display(), loss.why()))
    }

    /// Walk the whole tree again and add every missing watch (after an overflow, or to
    /// retry after a watch shortage). Returns the number of directories still unwatched.
    pub fn rewatch_all(&mut self) -> u64 {
        self.failed = 0;
        self.short.clear();
        self.enospc_reported = false;
        self.add_tree(vec![Vec::new()], dirs::threads());
        self.stats().unwatched
    }

    /// Wait up to `timeout` for events and translate them into `out`. Returns when events
    /// were handled or the time ran out.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<Change>) -> anyhow::Result<()> {
        self.poll_or_woken(timeout, &[], out).map(drop)
    }

    /// [`Watcher::poll`], also returning early when one of `also` is ready (the thread's
    /// wake-up pipe, the source path's watch). Returns the `revents` of `also`, in order.
    pub fn poll_or_woken(
        &mut self,
        timeout: Duration,
        also: &[PollFd<'_>],
        out: &mut Vec<Change>,
    ) -> anyhow::Result<Vec<PollFlags>> {
        pace::poll_or_woken(self, timeout, also, out)
    }

    /// Read every event queued now (non-blocking) and handle it. Returns how many there
    /// were.
    fn read_events(&mut self, out: &mut Vec<Change>) -> anyhow::Result<usize> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut read = 0;
        let result = loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(ev) => ev,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(read),
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
                break Ok(read);
            }
            read += raw.len();
            let now = Instant::now();
            for (wd, mask, cookie, name) in raw {
                self.handle(wd, mask, cookie, name, now, out);
            }
        };
        self.buffer = buffer;
        result
    }

    /// One raw event: find its directory, translate it, carry out what it asks for.
    fn handle(
        &mut self,
        wd: i32,
        mask: EventMask,
        cookie: u32,
        name: Option<RelPath>,
        now: Instant,
        out: &mut Vec<Change>,
    ) {
        let event = if mask.contains(EventMask::Q_OVERFLOW) {
            Some(Event::Overflow)
        } else {
            let Some((_, dir)) = self.by_wd.get(&wd) else {
                return; // a watch already removed; its last events are stale
            };
            let dir = dir.clone();
            if mask.contains(EventMask::IGNORED) && self.core.root_lost().is_none() {
                self.forget_wd(wd);
            }
            event_of(dir, mask, cookie, name)
        };
        let Some(event) = event else {
            return;
        };
        let mut step = Output::default();
        let root = &self.root;
        self.core
            .event(event, now, |rel| lstat(root, rel), &mut step);
        self.carry_out(step, out);
    }

    /// Carry out the translator's commands (in order), then hand on its changes.
    fn carry_out(&mut self, step: Output, out: &mut Vec<Change>) {
        for command in step.commands {
            match command {
                // A directory that appeared: walked on this thread.
                Command::WatchTree(dir) => self.add_tree(vec![dir], 1),
                Command::Unwatch(dir) => self.forget_subtree(&dir, true),
                Command::Forget(dir) => self.forget_subtree(&dir, false),
                Command::Rename { from, to } => self.rename_subtree(&from, &to),
                Command::RewatchAll => {
                    log::warn!(
                        "{}: inotify queue overflowed (fs.inotify.max_queued_events is too low for this burst): events were lost; re-watching the tree and pushing it whole",
                        self.root.display()
                    );
                    self.rewatch_all();
                }
            }
        }
        out.extend(step.changes);
    }

    /// Watch each of `tops` and every directory below them, reading each after its watch
    /// is in place ([`DirWalk`]: on `threads` threads, each adding watches to the one
    /// inotify instance; the watch table is filled once the walk is done). A directory
    /// left unwatched for lack of watches goes to `short`.
    fn add_tree(&mut self, tops: Vec<RelPath>, threads: usize) {
        let tops: Vec<RelPath> = tops
            .into_iter()
            .filter(|top| top.is_empty() || !self.exclude.is_excluded(top))
            .collect();
        if tops.is_empty() {
            return;
        }
        let walk = DirWalk {
            source: &self.root,
            exclude: &self.exclude,
            threads,
            leaves: Leaves::Trusted,
        };
        let (inotify, root, mask) = (&self.inotify, &self.root, self.mask);
        let walked = walk.run_all(
            tops,
            || Added {
                watches: inotify.watches(),
                found: Vec::new(),
                failed: Vec::new(),
                short: Vec::new(),
            },
            |added, rel| added.add(root, rel, mask),
        );
        let found: usize = walked.iter().map(|w| w.state.found.len()).sum();
        self.by_wd.reserve(found);
        let mut failed = Vec::new();
        for w in walked {
            for (rel, wd) in w.state.found {
                self.record(rel, wd);
            }
            failed.extend(w.state.failed);
            if !w.state.short.is_empty() {
                self.short_grew = true;
                self.short.extend(w.state.short);
            }
            for u in w.unreadable {
                log::warn!(
                    "cannot read directory {}: {}; its subdirectories are not watched",
                    abs(&self.root, &u.rel).display(),
                    u.error
                );
            }
        }
        // Keep walking past a failed watch (done above): directories below may still be
        // watchable (EACCES), and the count of what is missing must be right.
        self.failed += failed.len() as u64;
        for (rel, e) in failed {
            log::warn!(
                "cannot watch {}: {e}; changes below it are only caught by whole-tree pushes",
                abs(&self.root, &rel).display()
            );
        }
    }

    fn add_one(&mut self, rel: &[u8]) -> io::Result<()> {
        let mask = root_mask(rel, self.mask);
        let wd = self.inotify.watches().add(abs(&self.root, rel), mask)?;
        self.record(rel.to_vec(), wd);
        Ok(())
    }

    /// `rel` is watched by `wd`.
    fn record(&mut self, rel: RelPath, wd: WatchDescriptor) {
        let id = wd.get_watch_descriptor_id();
        // The same directory reached under a new name (an unpaired rename) keeps its wd:
        // point the wd at the new path.
        if let Some((_, old)) = self.by_wd.get(&id) {
            if *old != rel {
                let old = old.clone();
                self.by_path.remove(&old);
            }
        }
        if !self.short.is_empty() {
            self.short.remove(&rel);
        }
        self.by_path.insert(rel.clone(), id);
        self.by_wd.insert(id, (wd, rel));
    }

    /// Out of inotify watches (`ENOSPC`) and the limit not raised: said once per shortage,
    /// with the sysctl and the value to set.
    pub fn explain_shortage(&mut self) {
        let (Some(short), Some(rel)) = (self.shortage(), self.short.first()) else {
            return;
        };
        if self.enospc_reported {
            return;
        }
        self.enospc_reported = true;
        let limit = ask::limit_now();
        let (needed, missing) = (short.dirs, short.missing);
        let suggest = limit::watches_to_suggest(limit, needed, missing);
        log::error!(
            "cannot watch {}: out of inotify watches (fs.inotify.max_user_watches = {}); {} has {} directories, {} unwatched. Raise the limit: `sysctl -w fs.inotify.max_user_watches={}` (persist it in /etc/sysctl.d/90-syncd.conf). Until then the unwatched part is covered by periodic whole-tree pushes.",
            abs(&self.root, rel).display(),
            limit.map_or_else(|| "unknown".to_string(), |l| l.to_string()),
            self.root.display(),
            needed,
            missing,
            suggest
        );
    }

    /// Drop the bookkeeping of `rel` and everything below it; with `remove`, also tell
    /// the kernel to stop watching (the directory still exists elsewhere).
    fn forget_subtree(&mut self, rel: &[u8], remove: bool) {
        for gone in short_subtree(&self.short, rel) {
            self.short.remove(&gone);
        }
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
        for old in short_subtree(&self.short, from) {
            self.short.remove(&old);
            let mut new = to.to_vec();
            new.extend_from_slice(&old[from.len()..]);
            self.short.insert(new);
        }
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

impl pace::Adapter for Watcher {
    const QUEUE: &'static str = "inotify descriptor";

    fn queue_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
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
            .tick(Instant::now(), |rel| lstat(root, rel), &mut step);
        self.carry_out(step, out);
    }
}

/// The mask of the watch on `rel`: the root also reports being moved away
/// (`IN_MOVE_SELF`; its `IN_DELETE_SELF`, `IN_UNMOUNT` and `IN_IGNORED` come with every
/// mask).
fn root_mask(rel: &[u8], mask: WatchMask) -> WatchMask {
    if rel.is_empty() {
        mask | WatchMask::MOVE_SELF
    } else {
        mask
    }
}

/// What one thread of a tree walk added.
struct Added {
    watches: Watches,
    found: Vec<(RelPath, WatchDescriptor)>,
    /// Directories that could not be watched, and why (not for lack of watches).
    failed: Vec<(RelPath, io::Error)>,
    /// Directories not watched for lack of watches (`ENOSPC`).
    short: Vec<RelPath>,
}

impl Added {
    /// The walk's visitor: watch `rel` before it is read.
    fn add(&mut self, root: &std::path::Path, rel: &[u8], mask: WatchMask) -> Step {
        match self.watches.add(abs(root, rel), root_mask(rel, mask)) {
            Ok(wd) => self.found.push((rel.to_vec(), wd)),
            Err(e) if vanished(&e) => return Step::Skip,
            Err(e) if e.raw_os_error() == Some(Errno::ENOSPC as i32) => {
                self.short.push(rel.to_vec());
            }
            Err(e) => self.failed.push((rel.to_vec(), e)),
        }
        Step::Read
    }
}

/// The paths of `set` at or below `rel`.
fn short_subtree(set: &BTreeSet<RelPath>, rel: &[u8]) -> Vec<RelPath> {
    if set.is_empty() {
        return Vec::new();
    }
    let mut hi = rel.to_vec();
    hi.push(b'/' + 1);
    set.range(rel.to_vec()..hi)
        .filter(|p| p.len() == rel.len() || p.get(rel.len()) == Some(&b'/'))
        .cloned()
        .collect()
}

/// The directories above `rel` (a relative path), nearest first, the root (empty) last.
fn ancestors(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    let cuts = rel
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| i);
    cuts.chain((!rel.is_empty()).then_some(0))
        .map(move |i| &rel[..i])
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

/// The translator's view of one raw inotify event in the watched directory `dir`; None
/// for what it has no use for. One event carries one of these bits (with `IN_ISDIR`);
/// they are looked at in the order the kernel's meaning needs.
fn event_of(dir: RelPath, mask: EventMask, cookie: u32, name: Option<RelPath>) -> Option<Event> {
    let Some(name) = name else {
        let op = if mask.contains(EventMask::UNMOUNT) {
            DirOp::Unmounted
        } else if mask.contains(EventMask::MOVE_SELF) {
            DirOp::Moved
        } else if mask.contains(EventMask::DELETE_SELF) {
            DirOp::Deleted
        } else if mask.contains(EventMask::IGNORED) {
            DirOp::WatchGone
        } else if mask.contains(EventMask::ATTRIB) {
            DirOp::Attrib
        } else {
            return None;
        };
        return Some(Event::Dir { dir, op });
    };
    let op = if mask.contains(EventMask::MOVED_FROM) {
        EntryOp::MovedFrom { cookie }
    } else if mask.contains(EventMask::MOVED_TO) {
        EntryOp::MovedTo { cookie }
    } else if mask.contains(EventMask::CREATE) {
        EntryOp::Create
    } else if mask.contains(EventMask::DELETE) {
        EntryOp::Delete
    } else if mask.contains(EventMask::CLOSE_WRITE) {
        EntryOp::CloseWrite
    } else if mask.contains(EventMask::MODIFY) {
        EntryOp::Modify
    } else if mask.contains(EventMask::ATTRIB) {
        EntryOp::Attrib
    } else {
        return None;
    };
    Some(Event::Entry {
        dir,
        name,
        is_dir: mask.contains(EventMask::ISDIR),
        op,
    })
}

/// What the translator needs to know of an entry: its lstat (symlinks not followed);
/// None when it is gone or cannot be read.
pub(crate) fn lstat(root: &std::path::Path, rel: &[u8]) -> Option<FileMeta> {
    let meta = std::fs::symlink_metadata(abs(root, rel)).ok()?;
    Some(FileMeta {
        regular: meta.file_type().is_file(),
        links: meta.nlink(),
        written: (
            meta.size(),
            i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ),
    })
}

/// Read a number from a /proc/sys file.
pub fn read_sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use crate::wait;
    use std::fs;

    /// The rsync tests' job builder: the documented defaults, no targets.
    fn job(source: &std::path::Path) -> SyncJob {
        crate::rsync::tests::job(source, vec![])
    }

    fn s(p: &str) -> RelPath {
        p.as_bytes().to_vec()
    }

    /// How long the watcher gets to deliver what the kernel queued.
    const DELIVERY: Duration = Duration::from_secs(5);

    /// Poll until `want` holds for the changes seen so far, or fail after [`DELIVERY`].
    fn until(w: &mut Watcher, seen: &mut Vec<Change>, want: impl Fn(&[Change]) -> bool) {
        // `poll` blocks for the next event: no pause between looks.
        wait::until_every("the changes awaited", DELIVERY, wait::SPIN, || {
            if want(seen) {
                return Ok(());
            }
            w.poll(Duration::from_millis(50), seen).unwrap();
            Err(format!("changes seen: {seen:?}"))
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
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
            c.contains(&Change::Moved {
                from: s("old"),
                to: s("new"),
            })
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
        wait::until_every("only the root watched", DELIVERY, wait::SPIN, || {
            if w.stats().watched == 1 {
                return Ok(());
            }
            w.poll(Duration::from_millis(50), &mut seen).unwrap();
            Err(format!("watches leaked: {:?}", w.stats()))
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
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
    fn raw_events_in_the_translators_terms() {
        use EventMask as M;
        let entry = |is_dir, op| {
            Some(Event::Entry {
                dir: s("d"),
                name: s("n"),
                is_dir,
                op,
            })
        };
        let itself = |op| Some(Event::Dir { dir: s("d"), op });
        // (mask, named, translated)
        let cases = [
            (M::CREATE, true, entry(false, EntryOp::Create)),
            (M::CREATE | M::ISDIR, true, entry(true, EntryOp::Create)),
            (M::DELETE | M::ISDIR, true, entry(true, EntryOp::Delete)),
            (
                M::MOVED_FROM,
                true,
                entry(false, EntryOp::MovedFrom { cookie: 9 }),
            ),
            (
                M::MOVED_TO | M::ISDIR,
                true,
                entry(true, EntryOp::MovedTo { cookie: 9 }),
            ),
            (M::CLOSE_WRITE, true, entry(false, EntryOp::CloseWrite)),
            (M::MODIFY, true, entry(false, EntryOp::Modify)),
            (M::ATTRIB, true, entry(false, EntryOp::Attrib)),
            (M::ACCESS, true, None),
            (M::ATTRIB | M::ISDIR, false, itself(DirOp::Attrib)),
            (M::DELETE_SELF, false, itself(DirOp::Deleted)),
            (M::MOVE_SELF, false, itself(DirOp::Moved)),
            (M::UNMOUNT, false, itself(DirOp::Unmounted)),
            (M::IGNORED, false, itself(DirOp::WatchGone)),
            (M::CLOSE_WRITE, false, None),
        ];
        for (mask, named, want) in cases {
            let name = named.then(|| s("n"));
            assert_eq!(event_of(s("d"), mask, 9, name), want, "{mask:?}");
        }
    }

    /// As if `dirs` had met ENOSPC: their watches removed, the paths in `short`.
    fn make_short(w: &mut Watcher, dirs: &[&str]) {
        for d in dirs {
            w.forget_subtree(d.as_bytes(), true);
        }
        for d in dirs {
            w.short.insert(s(d));
        }
        w.short_grew = true;
    }

    #[test]
    fn missing_watches_are_added_from_the_highest_missing_directory_down() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a/b/c", "x/y", "keep"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let mut w = Watcher::new(&job(t.path())).unwrap();
        assert_eq!(w.shortage(), None);
        make_short(&mut w, &["a", "a/b", "a/b/c", "x/y"]);
        assert!(w.new_shortage() && !w.new_shortage(), "said once");
        assert_eq!(
            w.shortage(),
            Some(Shortage {
                missing: 4,
                dirs: 7
            })
        );
        assert_eq!(w.stats().unwatched, 4);
        // Made while unwatched: no event, found by the retry's read.
        fs::create_dir_all(t.path().join("a/b/new/deeper")).unwrap();
        let tops = w.retry_short();
        assert_eq!(tops, [s("a"), s("x/y")]);
        for d in [
            "a",
            "a/b",
            "a/b/c",
            "a/b/new",
            "a/b/new/deeper",
            "x/y",
            "keep",
        ] {
            assert!(w.is_watched(d.as_bytes()), "{d} not watched");
        }
        assert_eq!(w.shortage(), None);
        assert_eq!(w.stats().unwatched, 0);
        // The new watches carry changes.
        fs::write(t.path().join("a/b/new/deeper/f"), "x").unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("a/b/new/deeper/f")))
        });
    }

    #[test]
    fn missing_directories_follow_renames_and_deletes_in_the_tree() {
        let t = tempfile::tempdir().unwrap();
        for d in ["p/q", "gone/sub"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let mut w = Watcher::new(&job(t.path())).unwrap();
        make_short(&mut w, &["p/q", "gone/sub"]);
        fs::rename(t.path().join("p"), t.path().join("r")).unwrap();
        fs::remove_dir_all(t.path().join("gone")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| c.contains(&Change::Gone(s("gone"))));
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Moved {
                from: s("p"),
                to: s("r"),
            })
        });
        let missing: Vec<RelPath> = w.short.iter().cloned().collect();
        assert_eq!(missing, [s("r/q")], "renamed, and the deleted one dropped");
        assert_eq!(w.retry_short(), [s("r/q")]);
        assert!(w.is_watched(b"r/q"));
    }

    #[test]
    fn ancestors_nearest_first_root_last() {
        let got: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(got, [&b"a/b"[..], b"a", b""]);
        assert_eq!(ancestors(b"a").collect::<Vec<_>>(), [&b""[..]]);
        assert_eq!(ancestors(b"").count(), 0);
    }

    #[test]
    fn short_subtree_is_the_dir_and_below_only() {
        let set: BTreeSet<RelPath> = ["a", "a/b", "a-x", "a/b/c", "ab", "b"]
            .iter()
            .map(|p| s(p))
            .collect();
        assert_eq!(short_subtree(&set, b"a"), [s("a"), s("a/b"), s("a/b/c")]);
        assert_eq!(short_subtree(&set, b"a/b/c"), [s("a/b/c")]);
        assert!(short_subtree(&set, b"c").is_empty());
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
