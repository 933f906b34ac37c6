//! The directory walk behind the watches and the directory count: every directory of a
//! tree (symlinks never followed, excluded directories not entered), each handed to a
//! visitor *before* it is read, so a watch added by the visitor sees every entry created
//! after the read began (nothing is missed between the two).
//!
//! What one directory costs, measured on 100,000 directories (see the README): the
//! visitor's call, then one `fstatat` relative to the parent's open descriptor (a
//! one-component lookup instead of the whole path). A directory whose link count is 2 has
//! no subdirectory, so on a file system that keeps that rule ([`nlink_counts_subdirs`]:
//! ext2/3/4, XFS, tmpfs) it is not opened or read at all; the stat comes after the visit,
//! so a subdirectory made after the watch raises an event and one made before is counted
//! in the link count. Any other directory is opened (`openat`, `O_NOFOLLOW`), read in
//! `getdents` batches using `d_type` (an `lstat` only for `DT_UNKNOWN`), and its
//! descriptor is kept open while its subdirectories wait, down to [`KEEP_OPEN_DEPTH`]
//! levels (deeper ones are looked up by their whole path, so a deep tree cannot run the
//! process out of descriptors).
//!
//! With `threads` > 1 the walk runs on that many threads, each with a stack of its own
//! and handing half of it to a thread that ran out of work; each thread has its own
//! visitor state, returned at the end. Entries that vanish while being walked are
//! skipped: a concurrent delete is normal, not an error.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::statfs::{self, FsType};

use super::{abs, child, vanished};
use crate::batch::RelPath;
use crate::exclude::ExcludeSet;

/// Directories below this depth (from the walk's top) are looked up by their whole path
/// instead of through a kept-open parent: a thread's walk holds at most this many
/// descriptors open (one per level), far below the usual limit of 1024 per process.
pub const KEEP_OPEN_DEPTH: usize = 32;

/// Most threads a whole-tree walk uses (see [`threads`]): past a few, the walk waits on
/// the kernel's per-instance lock of `inotify_add_watch` rather than on lookups.
pub const MAX_THREADS: usize = 4;

/// What the visitor says about the directory it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read it and walk its subdirectories.
    Read,
    /// Leave it (and everything below it) alone: it vanished, or is not wanted.
    Skip,
}

/// May a link count of 2 be taken to mean "no subdirectory"?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaves {
    /// Where the file system keeps the rule ([`nlink_counts_subdirs`]).
    Trusted,
    /// Never: every directory is read (tests, to walk both ways).
    Read,
}

/// Does this file system give a directory a link count of 2 + its subdirectories? (The
/// rule `find` relies on; gnulib's fts trusts it on these too.) Btrfs gives 1, which is
/// never taken as a leaf anyway; NFS, CIFS, FUSE, overlayfs, /proc and unknown file
/// systems are not trusted.
pub fn nlink_counts_subdirs(fs: FsType) -> bool {
    [
        statfs::EXT4_SUPER_MAGIC, // ext2 and ext3 share it
        statfs::XFS_SUPER_MAGIC,
        statfs::TMPFS_MAGIC,
    ]
    .contains(&fs)
}

/// A directory that could not be read: its subdirectories are not walked.
#[derive(Debug)]
pub struct Unreadable {
    pub rel: RelPath,
    pub error: io::Error,
}

/// One walk over `source`.
#[derive(Debug, Clone, Copy)]
pub struct DirWalk<'a> {
    pub source: &'a Path,
    pub exclude: &'a ExcludeSet,
    /// Threads to walk on (1: the calling thread only, nothing spawned).
    pub threads: usize,
    pub leaves: Leaves,
}

/// What each thread of a walk ends with.
#[derive(Debug)]
pub struct Walked<S> {
    /// The visitor's state.
    pub state: S,
    pub unreadable: Vec<Unreadable>,
}

/// A directory waiting to be visited.
struct Pending {
    rel: RelPath,
    /// Where its name starts in `rel`.
    name_at: usize,
    /// Its parent, open (None: the walk's top, or deeper than [`KEEP_OPEN_DEPTH`]).
    parent: Option<Arc<OwnedFd>>,
    depth: usize,
}

impl Pending {
    fn name(&self) -> &[u8] {
        &self.rel[self.name_at..]
    }
}

/// One thread's working set.
struct Local<S> {
    state: S,
    unreadable: Vec<Unreadable>,
    /// File systems met so far: device → does it keep the link-count rule.
    devices: Vec<(u64, bool)>,
}

impl DirWalk<'_> {
    /// Walk `top` (a relative path; empty for the root) and every directory below it,
    /// `visit` first, then (on [`Step::Read`]) the read. `top` itself is not checked
    /// against the excludes (the caller knows why it walks it); every directory below it
    /// is. One [`Walked`] per thread, in no particular order.
    pub fn run<S: Send>(
        &self,
        top: RelPath,
        init: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, &[u8]) -> Step + Sync,
    ) -> Vec<Walked<S>> {
        self.run_all(vec![top], init, visit)
    }

    /// [`DirWalk::run`] from each of `tops` (none below another), in one walk on one pool
    /// of threads: the directories a watch shortage left out, say.
    pub fn run_all<S: Send>(
        &self,
        tops: Vec<RelPath>,
        init: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, &[u8]) -> Step + Sync,
    ) -> Vec<Walked<S>> {
        let seeds = tops
            .into_iter()
            .map(|rel| Pending {
                name_at: 0,
                rel,
                parent: None,
                depth: 0,
            })
            .collect();
        let start = || Local {
            state: init(),
            unreadable: Vec::new(),
            devices: Vec::new(),
        };
        let work = |local: &mut Local<S>, p: Pending, out: &mut Vec<Pending>| {
            if visit(&mut local.state, &p.rel) == Step::Read {
                self.read(local, p, out);
            }
        };
        let locals = pool(self.threads.max(1), seeds, start, work);
        locals
            .into_iter()
            .map(|l| Walked {
                state: l.state,
                unreadable: l.unreadable,
            })
            .collect()
    }

    /// Find the subdirectories of `p` (visited already) and push them on `out`.
    fn read<S>(&self, local: &mut Local<S>, p: Pending, out: &mut Vec<Pending>) {
        let fail = |local: &mut Local<S>, p: &Pending, e: Errno| {
            let error = io::Error::from(e);
            if !vanished(&error) {
                local.unreadable.push(Unreadable {
                    rel: p.rel.clone(),
                    error,
                });
            }
        };
        // After the visit: a subdirectory made since raises an event, one made before is
        // in the link count.
        let st = match self.stat(&p) {
            Ok(st) => st,
            Err(e) => return fail(local, &p, e),
        };
        if !is_dir(&st) {
            return; // replaced by something else: gone, as far as the walk goes
        }
        let known = local
            .devices
            .iter()
            .find(|(dev, _)| *dev == st.st_dev)
            .map(|&(_, trusted)| trusted);
        if known == Some(true) && st.st_nlink == 2 {
            return;
        }
        let fd = match self.open(&p) {
            Ok(fd) => fd,
            Err(e) => return fail(local, &p, e),
        };
        if known.is_none() {
            // A file system not met yet (the top, or a mount point): ask it, through the
            // descriptor, so the answer is about the directory read.
            let trusted = self.leaves == Leaves::Trusted
                && statfs::fstatfs(&fd).is_ok_and(|s| nlink_counts_subdirs(s.filesystem_type()));
            if let Ok(st) = nix::sys::stat::fstat(&fd) {
                local.devices.push((st.st_dev, trusted));
            }
        }
        let found = match self.entries(&fd, &p) {
            Ok(found) => found,
            Err(e) => return fail(local, &p, e),
        };
        if found.is_empty() {
            return;
        }
        let depth = p.depth + 1;
        let parent = (depth <= KEEP_OPEN_DEPTH).then(|| Arc::new(fd));
        // `child` puts a '/' between a non-empty parent and the name.
        let name_at = if p.rel.is_empty() { 0 } else { p.rel.len() + 1 };
        for rel in found {
            out.push(Pending {
                name_at,
                rel,
                parent: parent.clone(),
                depth,
            });
        }
    }

    /// The subdirectories of the open directory `fd` (at `p`), excludes left out.
    fn entries(&self, fd: &OwnedFd, p: &Pending) -> Result<Vec<RelPath>, Errno> {
        // fdopendir takes a descriptor of its own: `fd` stays open for the children's
        // lookups (the offset the two share is of no use to those).
        let dir = Dir::from_fd(nix::unistd::dup(fd)?)?;
        let mut found = Vec::new();
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                Some(t) => t == Type::Directory,
                None => nix::sys::stat::fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| is_dir(&st)),
            };
            if !is_dir {
                continue;
            }
            let rel = child(&p.rel, name);
            if !self.exclude.matches_self(&rel) {
                found.push(rel);
            }
        }
        Ok(found)
    }

    fn stat(&self, p: &Pending) -> Result<FileStat, Errno> {
        match &p.parent {
            Some(fd) => nix::sys::stat::fstatat(fd.as_fd(), p.name(), AtFlags::AT_SYMLINK_NOFOLLOW),
            None => nix::sys::stat::lstat(&abs(self.source, &p.rel)),
        }
    }

    fn open(&self, p: &Pending) -> Result<OwnedFd, Errno> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match &p.parent {
            Some(fd) => nix::fcntl::openat(fd.as_fd(), p.name(), flags, Mode::empty()),
            None => nix::fcntl::open(&abs(self.source, &p.rel), flags, Mode::empty()),
        }
    }
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// The queue the threads of a pool share.
struct Shared<T> {
    queue: Mutex<Queue<T>>,
    more: Condvar,
    /// Threads waiting for work (read without the lock, to decide whether to share).
    hungry: AtomicUsize,
}

struct Queue<T> {
    items: Vec<T>,
    idle: usize,
    done: bool,
}

/// Run `work` on `seeds` and on everything it pushes, on `threads` threads (the calling
/// one alone when 1), each with its own state from `start`; the states at the end.
fn pool<T: Send, L: Send>(
    threads: usize,
    seeds: Vec<T>,
    start: impl Fn() -> L + Sync,
    work: impl Fn(&mut L, T, &mut Vec<T>) + Sync,
) -> Vec<L> {
    if threads <= 1 {
        let mut local = start();
        let mut stack = seeds;
        while let Some(t) = stack.pop() {
            work(&mut local, t, &mut stack);
        }
        return vec![local];
    }
    let shared = Shared {
        queue: Mutex::new(Queue {
            items: seeds,
            idle: 0,
            done: false,
        }),
        more: Condvar::new(),
        hungry: AtomicUsize::new(0),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| pool_thread(threads, &shared, &start, &work)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn pool_thread<T, L>(
    threads: usize,
    shared: &Shared<T>,
    start: &impl Fn() -> L,
    work: &impl Fn(&mut L, T, &mut Vec<T>),
) -> L {
    let mut local = start();
    let mut stack: Vec<T> = Vec::new();
    loop {
        while let Some(t) = stack.pop() {
            work(&mut local, t, &mut stack);
            if stack.len() > 1 && shared.hungry.load(Ordering::Relaxed) > 0 {
                // The oldest half: nearest the top of the tree, the biggest subtrees.
                let give: Vec<T> = stack.drain(..stack.len() / 2).collect();
                let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
                q.items.extend(give);
                shared.more.notify_all();
            }
        }
        let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(t) = q.items.pop() {
                stack.push(t);
                break;
            }
            if q.done {
                return local;
            }
            q.idle += 1;
            if q.idle == threads {
                // Nobody holds work and nothing is queued: the walk is over.
                q.done = true;
                shared.more.notify_all();
                return local;
            }
            shared.hungry.fetch_add(1, Ordering::Relaxed);
            q = shared.more.wait(q).unwrap_or_else(PoisonError::into_inner);
            shared.hungry.fetch_sub(1, Ordering::Relaxed);
            q.idle -= 1;
        }
    }
}

/// Threads for a walk of a whole tree: the cores there are, at most [`MAX_THREADS`]
/// (1 when the number cannot be read).
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;

    fn s(p: &str) -> RelPath {
        p.as_bytes().to_vec()
    }

    /// Every directory the walk visits, from all its threads.
    fn visited(source: &Path, exclude: &ExcludeSet, threads: usize, leaves: Leaves) -> Vec<String> {
        let walk = DirWalk {
            source,
            exclude,
            threads,
            leaves,
        };
        let walked = walk.run(Vec::new(), Vec::new, |seen: &mut Vec<RelPath>, rel| {
            seen.push(rel.to_vec());
            Step::Read
        });
        assert_eq!(walked.len(), threads);
        let mut all: Vec<String> = walked
            .into_iter()
            .flat_map(|w| {
                assert!(w.unreadable.is_empty(), "{:?}", w.unreadable);
                w.state
            })
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect();
        all.sort();
        all
    }

    /// The directories below `source` by std's walk (the reference), root as "".
    fn reference(source: &Path, exclude: &ExcludeSet) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut stack = vec![Vec::new()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(abs(source, &dir)).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    let rel = child(&dir, e.file_name().as_encoded_bytes());
                    if !exclude.matches_self(&rel) {
                        out.push(String::from_utf8_lossy(&rel).into_owned());
                        stack.push(rel);
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn finds_every_directory_either_way_on_any_number_of_threads() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path();
        for d in ["a/b/c", "a/leaf", "a/full", "x/y", "cache/inner", "empty"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        for i in 0..50 {
            fs::create_dir_all(src.join(format!("wide/d{i}/e"))).unwrap();
        }
        fs::write(src.join("a/full/f"), "f").unwrap();
        fs::write(src.join("a/file"), "f").unwrap();
        std::os::unix::fs::symlink(src.join("a"), src.join("x/link")).unwrap();
        let exclude = ExcludeSet::new(&["^cache$"]).unwrap();
        let want = reference(src, &exclude);
        assert!(want.contains(&"a/leaf".to_string()) && !want.contains(&"cache".to_string()));
        assert_eq!(want.len(), 10 + 100, "{want:?}");
        for threads in [1, 2, 3] {
            for leaves in [Leaves::Trusted, Leaves::Read] {
                assert_eq!(
                    visited(src, &exclude, threads, leaves),
                    want,
                    "{threads} threads, {leaves:?}"
                );
            }
        }
    }

    #[test]
    fn a_directory_made_after_the_visit_is_found() {
        // The visitor stands for the watch: what is created once it returns must be
        // found by the read (the link count of a leaf is read after the visit).
        let t = tempfile::tempdir().unwrap();
        let src = t.path();
        fs::create_dir_all(src.join("p/leaf")).unwrap();
        for leaves in [Leaves::Trusted, Leaves::Read] {
            let _ = fs::remove_dir_all(src.join("p/leaf/new"));
            let walk = DirWalk {
                source: src,
                exclude: &ExcludeSet::default(),
                threads: 1,
                leaves,
            };
            let walked = walk.run(Vec::new(), Vec::new, |seen: &mut Vec<RelPath>, rel| {
                if rel == b"p/leaf" {
                    fs::create_dir(src.join("p/leaf/new")).unwrap();
                }
                seen.push(rel.to_vec());
                Step::Read
            });
            assert!(
                walked[0].state.contains(&s("p/leaf/new")),
                "{leaves:?}: {:?}",
                walked[0].state
            );
        }
    }

    #[test]
    fn skip_leaves_a_subtree_alone_and_the_top_may_be_any_directory() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path();
        for d in ["a/b/c", "a/d", "e"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        let walk = DirWalk {
            source: src,
            exclude: &ExcludeSet::default(),
            threads: 1,
            leaves: Leaves::Trusted,
        };
        let walked = walk.run(
            s("a"),
            BTreeSet::new,
            |seen: &mut BTreeSet<RelPath>, rel| {
                seen.insert(rel.to_vec());
                if rel == b"a/b" {
                    Step::Skip
                } else {
                    Step::Read
                }
            },
        );
        let want: BTreeSet<RelPath> = [s("a"), s("a/b"), s("a/d")].into();
        assert_eq!(walked[0].state, want);
        // A top that is gone is visited (the visitor decides) and read as nothing.
        let gone = walk.run(
            s("nope"),
            || 0,
            |n: &mut i32, _| {
                *n += 1;
                Step::Read
            },
        );
        assert_eq!(gone[0].state, 1);
        assert!(gone[0].unreadable.is_empty(), "vanished is not unreadable");
    }

    #[test]
    fn one_walk_from_several_tops_visits_each_subtree_once() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path();
        for d in ["a/b/c", "a/d", "e/f", "g"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        for threads in [1, 2] {
            let walk = DirWalk {
                source: src,
                exclude: &ExcludeSet::default(),
                threads,
                leaves: Leaves::Trusted,
            };
            let walked = walk.run_all(vec![s("a/b"), s("e")], Vec::new, |seen, rel| {
                seen.push(rel.to_vec());
                Step::Read
            });
            let mut all: Vec<RelPath> = walked.into_iter().flat_map(|w| w.state).collect();
            all.sort();
            assert_eq!(all, [s("a/b"), s("a/b/c"), s("e"), s("e/f")], "{threads}");
        }
    }

    #[test]
    fn a_tree_deeper_than_the_descriptors_kept_open_is_walked_whole() {
        let t = tempfile::tempdir().unwrap();
        let mut deep = t.path().to_path_buf();
        for i in 0..KEEP_OPEN_DEPTH + 10 {
            deep.push(format!("{}", i % 10));
        }
        fs::create_dir_all(&deep).unwrap();
        let none = ExcludeSet::default();
        for threads in [1, 2] {
            assert_eq!(
                visited(t.path(), &none, threads, Leaves::Trusted).len(),
                KEEP_OPEN_DEPTH + 11
            );
        }
    }

    #[test]
    fn nlink_is_trusted_on_known_file_systems_only() {
        let cases = [
            (statfs::EXT4_SUPER_MAGIC, true),
            (statfs::XFS_SUPER_MAGIC, true),
            (statfs::TMPFS_MAGIC, true),
            (statfs::BTRFS_SUPER_MAGIC, false),
            (statfs::NFS_SUPER_MAGIC, false),
            (statfs::OVERLAYFS_SUPER_MAGIC, false),
            (statfs::PROC_SUPER_MAGIC, false),
        ];
        for (fs, want) in cases {
            assert_eq!(nlink_counts_subdirs(fs), want, "{fs:?}");
        }
    }

    #[test]
    fn pool_does_every_item_once_on_any_number_of_threads() {
        // A tree of work: item n (below 4000) makes items 2n+1 and 2n+2.
        for threads in [1, 2, 4, 8] {
            let done = pool(
                threads,
                vec![0u32],
                Vec::new,
                |seen: &mut Vec<u32>, n, out: &mut Vec<u32>| {
                    seen.push(n);
                    if n < 4000 {
                        out.extend([2 * n + 1, 2 * n + 2]);
                    }
                },
            );
            assert_eq!(done.len(), threads);
            let mut all: Vec<u32> = done.into_iter().flatten().collect();
            all.sort_unstable();
            assert_eq!(all, (0..=8000).collect::<Vec<u32>>(), "{threads} threads");
        }
    }
}
