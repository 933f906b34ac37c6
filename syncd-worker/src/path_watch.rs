//! Events that say a sync's source *path* may name another directory than before, so the
//! watcher thread looks at the path ([`crate::source_id::SourceId::check`]) only when
//! something happened to it, never on a timer. The tree's own watch on the source root
//! sees the root deleted, moved away or its file system unmounted; this module covers
//! the rest of the path:
//!
//! * every directory the path runs through, from `/` down to the source, is watched for
//!   being moved or deleted (`IN_MOVE_SELF`, `IN_DELETE_SELF`): a renamed ancestor
//!   (`mv /srv /srv.old`) leaves the source's own watch silent;
//! * where the path runs through a symbolic link, a missing component or something that
//!   is not a directory, the directory holding that entry is also watched for entries
//!   created, deleted or renamed (`IN_CREATE`, `IN_DELETE`, `IN_MOVED_FROM`,
//!   `IN_MOVED_TO`), and only events naming that entry count: a release symlink swapped
//!   (`ln -sfn v2 current.tmp && mv -T current.tmp current`), or a lost source's path
//!   coming back. A real directory on the path needs no such watch on its parent: it
//!   must be moved or deleted before another can take its name, and its own watch says
//!   so;
//! * `/proc/self/mountinfo` is polled for `POLLPRI`, which the kernel raises on any change
//!   of this mount namespace's table (also for mounts propagated into it, e.g. into a
//!   systemd service's private namespace): a file system mounted over the source or an
//!   ancestor, a lazy `umount -l` of a busy source, a bind mount removed — none of which
//!   gives an inotify event. Unrelated mounts wake the thread too; the look at the path
//!   that follows costs three system calls.
//!
//! Each time any of these fires, the watches are placed again from scratch along the path
//! as it resolves now ([`PathWatch::arm`], a fresh inotify instance), then the caller
//! looks at the path. Placing the watch on a directory before reading the entry below
//! it means a change after that moment is an event; the look that follows covers what
//! came before. Experiments (Linux 6.x) behind each signal: a renamed ancestor gives
//! `IN_MOVE_SELF` on it; an empty source replaced by `mv -T new src` gives `IN_DELETE_SELF`
//! on it; tmpfs mounted over the source or its parent, a busy tmpfs lazily unmounted,
//! a bind mount unmounted give only the mountinfo `POLLPRI`.
//!
//! What no event covers: an ancestor's permissions changed so that a worker without
//! `CAP_DAC_OVERRIDE` can no longer reach the source (`IN_ATTRIB` on a directory also
//! reports every attribute change of its entries, so ancestors are not asked for it),
//! and changes made on another machine to a network file system's directories. Both are
//! found by the identity check every push makes before it runs. When the events cannot
//! be set up at all (no inotify instance or watch left, no `/proc`), the watch is
//! [`PathWatch::degraded`] and the caller looks at the path on a timer, as before.
//!
//! It decides nothing about the source: it only says "look again".

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Component, Path, PathBuf};

use inotify::{EventMask, Inotify, WatchMask};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};

/// The file whose `POLLPRI` says the mount table changed.
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Symbolic links followed along the path before giving up (the kernel's own limit).
const MAX_LINKS: u32 = 40;
/// Components looked at in one placing, links included: a bound against a path whose
/// entries keep appearing and disappearing while it is placed.
const MAX_STEPS: u32 = 4096;

/// Events on a directory of the path about the directory itself.
fn self_mask() -> WatchMask {
    WatchMask::MOVE_SELF | WatchMask::DELETE_SELF
}

/// Events on a directory of the path about its entries (filtered by name).
fn entry_mask() -> WatchMask {
    WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_FROM | WatchMask::MOVED_TO
}

/// The watches on the directories a source path runs through, and the mount table.
pub struct PathWatch {
    path: PathBuf,
    /// None until armed, or when no instance could be made.
    inotify: Option<Inotify>,
    /// wd id → the entries of that directory whose changes count.
    guards: HashMap<i32, Vec<OsString>>,
    /// `/proc/self/mountinfo`, opened once; None when it cannot be (degraded).
    mounts: Option<File>,
    /// Why the events do not cover the path; None when they do.
    degraded: Option<String>,
    buffer: Vec<u8>,
}

/// What woke a wait, read from the poll set before it is dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Woken {
    inotify: bool,
    mounts: bool,
}

impl PathWatch {
    /// Not armed yet: call [`PathWatch::arm`] before the first look at the path.
    pub fn new(path: &Path) -> PathWatch {
        let mounts = File::open(MOUNTINFO);
        let degraded = mounts
            .as_ref()
            .err()
            .map(|e| format!("cannot open {MOUNTINFO} ({e})"));
        if let Some(why) = &degraded {
            warn_degraded(path, why);
        }
        PathWatch {
            path: path.to_path_buf(),
            inotify: None,
            guards: HashMap::new(),
            mounts: mounts.ok(),
            degraded,
            buffer: vec![0; 4096],
        }
    }

    /// Place the watches along the path as it resolves now, replacing the old ones. Look
    /// at the path after this, not before: a change after this call is an event.
    pub fn arm(&mut self) {
        // The old instance first: one per sync at a time against max_user_instances.
        self.inotify = None;
        self.guards.clear();
        let placed = Inotify::init()
            .map_err(|e| format!("cannot create an inotify instance ({e})"))
            .and_then(|mut inotify| match place(&mut inotify, &self.path) {
                Ok(guards) => Ok((inotify, guards)),
                Err(e) => Err(format!("cannot watch the directories leading to it ({e})")),
            });
        let degraded = match placed {
            Ok((inotify, guards)) => {
                self.inotify = Some(inotify);
                self.guards = guards;
                self.mounts
                    .is_none()
                    .then(|| format!("cannot open {MOUNTINFO}"))
            }
            Err(why) => Some(why),
        };
        match (&degraded, &self.degraded) {
            (Some(why), None) => warn_degraded(&self.path, why),
            (None, Some(_)) => log::info!(
                "{}: watching the directories leading to it again; no more looks on a timer",
                self.path.display()
            ),
            _ => {}
        }
        self.degraded = degraded;
    }

    /// Give back the watches along the path (the tree's root could not get one: the
    /// tree matters more) and fall back to looks on a timer until the next [`arm`].
    /// Whether there was anything to give back.
    ///
    /// [`arm`]: PathWatch::arm
    pub fn release(&mut self, why: &str) -> bool {
        if self.inotify.is_none() {
            return false;
        }
        self.inotify = None;
        self.guards.clear();
        if self.degraded.is_none() {
            warn_degraded(&self.path, why);
        }
        self.degraded = Some(why.to_owned());
        true
    }

    /// Why the events do not cover the path (the caller then looks on a timer); None
    /// when they do.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// The descriptors to add to the caller's poll set, `extra` (a wake-up pipe) first.
    pub fn poll_set<'a>(&'a self, extra: Option<BorrowedFd<'a>>) -> Vec<PollFd<'a>> {
        let mut fds: Vec<PollFd<'a>> = extra
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .into_iter()
            .collect();
        if let Some(i) = &self.inotify {
            fds.push(PollFd::new(i.as_fd(), PollFlags::POLLIN));
        }
        if let Some(m) = &self.mounts {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLPRI));
        }
        fds
    }

    /// What concerns this watch in `revents`, the result of polling `fds` (a set from
    /// [`PathWatch::poll_set`]), in order. The mount table's `POLLPRI` is seen only here:
    /// the poll that saw it reset it.
    pub fn woken(&self, fds: &[PollFd<'_>], revents: &[PollFlags]) -> Woken {
        let fired = |fd: Option<i32>, flags: PollFlags| {
            fd.is_some_and(|fd| {
                fds.iter()
                    .zip(revents)
                    .any(|(p, r)| p.as_fd().as_raw_fd() == fd && r.intersects(flags))
            })
        };
        Woken {
            inotify: fired(
                self.inotify.as_ref().map(|i| i.as_fd().as_raw_fd()),
                PollFlags::POLLIN,
            ),
            mounts: fired(
                self.mounts.as_ref().map(|m| m.as_raw_fd()),
                PollFlags::POLLPRI | PollFlags::POLLERR,
            ),
        }
    }

    /// Read what woke the wait; true when the path may name another directory now: the
    /// watches were placed again and the caller must look at the path.
    pub fn changed(&mut self, woken: Woken) -> bool {
        let mut changed = woken.mounts;
        if woken.inotify {
            changed |= self.read_events();
        }
        if changed {
            self.arm();
        }
        changed
    }

    /// Drain the inotify queue; true when an event concerned the path.
    fn read_events(&mut self) -> bool {
        let Some(inotify) = self.inotify.as_mut() else {
            return false;
        };
        let mut concerned = false;
        loop {
            let events = match inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return concerned,
                // Unreadable: say "look" and let arm() start over with a new instance.
                Err(_) => return true,
            };
            let mut any = false;
            for e in events {
                any = true;
                let guarded = self.guards.get(&e.wd.get_watch_descriptor_id());
                concerned |= concerns(guarded.map(Vec::as_slice), e.mask, e.name);
            }
            if !any {
                return concerned;
            }
        }
    }
}

/// Does an event (on a directory guarding `guarded`; None: a watch not placed by the
/// last arm) mean the path may resolve differently?
fn concerns(guarded: Option<&[OsString]>, mask: EventMask, name: Option<&OsStr>) -> bool {
    // The directory itself moved or deleted, its file system gone, its watch gone.
    let itself =
        EventMask::MOVE_SELF | EventMask::DELETE_SELF | EventMask::UNMOUNT | EventMask::IGNORED;
    if mask.contains(EventMask::Q_OVERFLOW) {
        return true;
    }
    let Some(guarded) = guarded else {
        return false;
    };
    match name {
        None => mask.intersects(itself),
        Some(name) => guarded.iter().any(|g| g == name),
    }
}

/// No such directory (missing, or not a directory), as opposed to a watch that cannot
/// be placed.
fn vanished(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT | Errno::ENOTDIR)
    )
}

fn warn_degraded(path: &Path, why: &str) {
    log::warn!(
        "{}: {why}; looking at the source path every {:?} instead of on events",
        path.display(),
        crate::watch_thread::LOST_POLL
    );
}

/// The parts of `path` to resolve, in order: names and `..` (`/` and `.` dropped).
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Watch the directories `path` runs through as the kernel resolves it (symbolic links
/// followed, `..` taken on the real directory), with the entry watches described in the
/// module doc. Stops at the first missing or non-directory component (its entry is
/// watched). Err only when a watch cannot be placed for another reason than the entry
/// not being a directory (out of watches, no permission).
fn place(inotify: &mut Inotify, path: &Path) -> io::Result<HashMap<i32, Vec<OsString>>> {
    let mut guards: HashMap<i32, Vec<OsString>> = HashMap::new();
    let mut cur = PathBuf::from("/");
    let root = inotify.watches().add(&cur, self_mask())?;
    guards.entry(root.get_watch_descriptor_id()).or_default();
    let mut todo = parts(path);
    let (mut links, mut steps) = (0, 0);
    while let Some(name) = todo.pop_front() {
        steps += 1;
        if steps > MAX_STEPS {
            break;
        }
        if name == ".." {
            // `cur` holds no symbolic link: its lexical parent is its real one.
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let dir = self_mask() | WatchMask::DONT_FOLLOW | WatchMask::ONLYDIR;
        match inotify.watches().add(&next, dir) {
            Ok(wd) => {
                guards.entry(wd.get_watch_descriptor_id()).or_default();
                cur = next;
                continue;
            }
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e),
        }
        // A symbolic link, not a directory, or nothing: from now on a change of this
        // entry is an event of `cur`; what it is now is read after that.
        let wd = match inotify
            .watches()
            .add(&cur, self_mask() | entry_mask() | WatchMask::MASK_ADD)
        {
            Ok(wd) => wd,
            // `cur` itself moved or deleted meanwhile: its watch has queued the event
            // that places everything again.
            Err(e) if vanished(&e) => break,
            Err(e) => return Err(e),
        };
        guards
            .entry(wd.get_watch_descriptor_id())
            .or_default()
            .push(name.clone());
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                let Ok(target) = std::fs::read_link(&next) else {
                    break; // gone meanwhile: its entry's watch has the event
                };
                if links > MAX_LINKS {
                    break;
                }
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                for part in parts(&target).into_iter().rev() {
                    todo.push_front(part);
                }
            }
            // A directory now (created meanwhile): place it.
            Ok(m) if m.is_dir() => todo.push_front(name),
            // Missing, or not a directory: the path ends here.
            _ => break,
        }
    }
    Ok(guards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait;
    use std::fs;
    use std::time::Duration;

    /// Poll the watch's own descriptors once.
    fn poll(pw: &PathWatch, timeout: nix::poll::PollTimeout) -> Woken {
        let mut fds = pw.poll_set(None);
        nix::poll::poll(&mut fds, timeout).expect("poll");
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        pw.woken(&fds, &revents)
    }

    /// Wait (polling the watch's own descriptors) until it says the path changed.
    fn until_changed(pw: &mut PathWatch, what: &str) {
        wait::until_every(what, Duration::from_secs(5), wait::SPIN, || {
            let woken = poll(pw, nix::poll::PollTimeout::from(100u16));
            if pw.changed(woken) {
                Ok(())
            } else {
                Err("no change said".to_string())
            }
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
    }

    /// Nothing concerning the path is queued now (what was queued is read).
    fn quiet(pw: &mut PathWatch) -> bool {
        let woken = poll(pw, nix::poll::PollTimeout::ZERO);
        !pw.changed(woken)
    }

    #[test]
    fn which_events_concern_the_path() {
        use EventMask as M;
        let name = OsString::from("current");
        let guarded = [name.clone()];
        let g = Some(&guarded[..]);
        let none: Option<&[OsString]> = Some(&[]);
        let other = OsString::from("other");
        // (guarded entries of the watch, mask, entry name, concerns)
        let cases = [
            (none, M::MOVE_SELF, None, true),
            (none, M::DELETE_SELF, None, true),
            (none, M::UNMOUNT | M::ISDIR, None, true),
            (none, M::IGNORED, None, true),
            (g, M::MOVED_TO, Some(name.as_os_str()), true),
            (g, M::CREATE | M::ISDIR, Some(name.as_os_str()), true),
            (g, M::DELETE, Some(name.as_os_str()), true),
            (g, M::CREATE, Some(other.as_os_str()), false),
            (none, M::CREATE, Some(name.as_os_str()), false),
            // A watch of an earlier placing: its events are old news.
            (None, M::MOVE_SELF, None, false),
            (None, M::Q_OVERFLOW, None, true),
        ];
        for (guarded, mask, entry, want) in cases {
            assert_eq!(concerns(guarded, mask, entry), want, "{mask:?} {entry:?}");
        }
    }

    #[test]
    fn parts_keep_names_and_dot_dot() {
        let got: Vec<OsString> = parts(Path::new("/a/./b/../c/")).into_iter().collect();
        assert_eq!(got, ["a", "b", "..", "c"].map(OsString::from));
    }

    #[test]
    fn a_renamed_ancestor_is_a_change_an_unrelated_entry_is_not() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("up/data");
        fs::create_dir_all(&src).unwrap();
        let mut pw = PathWatch::new(&src);
        pw.arm();
        assert_eq!(pw.degraded(), None);
        // Files beside the path's directories wake nothing that counts.
        fs::write(t.path().join("up/unrelated"), "x").unwrap();
        fs::create_dir(t.path().join("elsewhere")).unwrap();
        assert!(quiet(&mut pw), "an unrelated entry counted");
        fs::rename(t.path().join("up"), t.path().join("up.old")).unwrap();
        until_changed(&mut pw, "the renamed ancestor noticed");
        // Now `up` is missing: its coming back is a change too.
        assert!(quiet(&mut pw));
        fs::rename(t.path().join("up.old"), t.path().join("up")).unwrap();
        until_changed(&mut pw, "the ancestor's return noticed");
    }

    #[test]
    fn a_swapped_symlink_on_the_path_is_a_change() {
        let t = tempfile::tempdir().unwrap();
        for v in ["v1/data", "v2/data"] {
            fs::create_dir_all(t.path().join(v)).unwrap();
        }
        std::os::unix::fs::symlink("v1", t.path().join("current")).unwrap();
        let mut pw = PathWatch::new(&t.path().join("current/data"));
        pw.arm();
        // The directory the link leads to is watched: a rename of v1 counts.
        fs::write(t.path().join("v1/unrelated"), "x").unwrap();
        assert!(quiet(&mut pw));
        // The deploy swap: a new link renamed over the old one.
        std::os::unix::fs::symlink("v2", t.path().join("current.tmp")).unwrap();
        fs::rename(t.path().join("current.tmp"), t.path().join("current")).unwrap();
        until_changed(&mut pw, "the swapped link noticed");
        fs::rename(t.path().join("v2"), t.path().join("v3")).unwrap();
        until_changed(&mut pw, "the new link's target renamed");
    }

    #[test]
    fn a_missing_source_appearing_is_a_change() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a/b/data");
        let mut pw = PathWatch::new(&src);
        pw.arm();
        fs::create_dir(t.path().join("a")).unwrap();
        until_changed(&mut pw, "the first missing component created");
        fs::create_dir_all(&src).unwrap();
        until_changed(&mut pw, "the rest created");
        // The source itself replaced by a rename over it (it was empty).
        fs::create_dir(t.path().join("a/b/new")).unwrap();
        assert!(quiet(&mut pw));
        fs::rename(t.path().join("a/b/new"), &src).unwrap();
        until_changed(&mut pw, "the source replaced by a rename over it");
    }
}
