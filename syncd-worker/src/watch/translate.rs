//! The pure half of the watcher: turns file-system events, in syncd's own terms (a
//! directory as a path relative to the source, an entry's name, a move cookie — no
//! inotify types, so a fanotify watcher can feed it too), into queue [`Change`]s and into
//! [`Command`]s for the watch table that the I/O half carries out.
//!
//! State it keeps: the `MOVED_FROM` halves waiting for their `MOVED_TO` (paired by
//! cookie), the new regular files waiting for their close, each with when it was seen,
//! and whether the root was lost. It never touches the file system and never reads a
//! clock: `now` is passed in, and the one file fact it needs (the lstat of a new entry)
//! comes from a lookup the caller passes. [`Translator::next_deadline`] says when
//! [`Translator::tick`] must be called next.
//!
//! Rules (what the watcher guarantees):
//! * a new regular file is held until its close when closes are watched and writes are
//!   not, if it has one link (a hard link gets no close). When no close came within
//!   [`Timing::create_close_wait`], its size and mtime are looked at: while they keep
//!   changing from one look to the next it is still being written and stays held, for
//!   at most [`CREATE_HOLD_MAX`] in all; otherwise (or then) it is pushed as it is (its
//!   close, if it comes later, pushes it again). A file written for longer than the wait
//!   (a 500 MiB copy to a slow disk) is so pushed once, not half-written and then again.
//!   Its writes and attribute changes meanwhile raise nothing;
//!   its delete or move forgets it; an overflow forgets all (the full push reads them);
//! * a directory created or moved in unpaired is watched and read ([`Command::WatchTree`])
//!   and pushed whole;
//! * a move is paired by cookie: inside the tree, a directory's watches are renamed
//!   ([`Command::Rename`]) and the old path is gone, the new one pushed (for a directory
//!   one [`Change::Moved`], which the queue keeps as a hint that the target's old copy
//!   can seed the new path); a `MOVED_FROM`
//!   whose other half does not come within [`Timing::move_pair_wait`] moved out
//!   (watches removed, path gone); a move to an excluded name is a move out;
//! * excluded paths raise nothing;
//! * a deleted directory's watches are forgotten ([`Command::Forget`]; the kernel drops
//!   them);
//! * events were lost (overflow): rewatch everything and push the whole tree;
//! * the root unmounted, moved away, deleted or unwatched: the root is lost, and every
//!   later event is ignored (it no longer describes the source path). Deadlines still
//!   expire on [`Translator::tick`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::batch::RelPath;
use crate::config::EventSet;
use crate::deadline::after;
use crate::exclude::ExcludeSet;
use crate::queue::Change;
use crate::walk::child;

/// How long an unpaired `MOVED_FROM` waits for its `MOVED_TO` before it is taken as a
/// move out of the tree. The kernel queues both halves of one rename back to back, so
/// this only has to cover a pair split across two reads.
pub const MOVE_PAIR_WAIT: Duration = Duration::from_millis(20);

/// How long a new regular file waits for its close before it is pushed anyway (still
/// open, or created in a way that never closes it for writing). Nothing is lost either
/// way: its close, if it comes later, pushes it again.
pub const CREATE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What happened to an entry (`name`) of a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOp {
    Create,
    Delete,
    /// First half of a rename; `cookie` pairs it with its [`EntryOp::MovedTo`].
    MovedFrom {
        cookie: u32,
    },
    MovedTo {
        cookie: u32,
    },
    /// Closed after being opened for writing.
    CloseWrite,
    Modify,
    Attrib,
}

/// What happened to a watched directory itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirOp {
    Attrib,
    Deleted,
    /// Moved away (only the root's watch asks for this).
    Moved,
    /// Its file system was unmounted.
    Unmounted,
    /// Its watch is gone (deleted, or removed); the caller has already dropped it.
    WatchGone,
}

/// One event, in the translator's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `op` happened to `name` in the watched directory `dir` (empty: the root).
    Entry {
        dir: RelPath,
        name: Vec<u8>,
        is_dir: bool,
        op: EntryOp,
    },
    /// `op` happened to the watched directory `dir` itself.
    Dir { dir: RelPath, op: DirOp },
    /// Events were lost.
    Overflow,
}

/// What the watch table must do, in order, before the next event is translated (later
/// events name directories by their paths after these commands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Watch this directory and every (not excluded) directory below it, reading each
    /// after its watch is in place.
    WatchTree(RelPath),
    /// This directory moved out of the tree: remove its watches and those below it.
    Unwatch(RelPath),
    /// This directory was deleted: forget its watches and those below it (the kernel
    /// removes them itself).
    Forget(RelPath),
    /// This directory was renamed inside the tree: its watches and those below it stay,
    /// their paths change.
    Rename { from: RelPath, to: RelPath },
    /// Events were lost: walk the whole tree again and add every missing watch.
    RewatchAll,
}

/// Why the root stopped being watchable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLoss {
    Unmounted,
    Moved,
    Deleted,
    Unwatched,
}

impl RootLoss {
    /// As the log and the status say it, after the source path.
    pub fn why(self) -> &'static str {
        match self {
            RootLoss::Unmounted => "its file system was unmounted",
            RootLoss::Moved => "it was moved away",
            RootLoss::Deleted => "it was deleted",
            RootLoss::Unwatched => "its watch was removed",
        }
    }
}

/// The most a new file that is still being written is held back, in all (see the
/// module doc): a file kept open and written for longer (a log, a slow download) is
/// pushed as it is then, and again at its close.
pub const CREATE_HOLD_MAX: Duration = Duration::from_secs(60);

/// What the lstat of a new entry says, as far as holding it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub regular: bool,
    pub links: u64,
    /// Size and mtime (ns since the epoch): a change between two looks means the file
    /// is still being written.
    pub written: (u64, i128),
}

/// A new file waiting for its close.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// When it was created.
    since: Instant,
    /// When to look at it again.
    due: Instant,
    /// Its size and mtime at the last look (None: not known).
    written: Option<(u64, i128)>,
}

/// The translator's waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub move_pair_wait: Duration,
    pub create_close_wait: Duration,
    pub create_hold_max: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            move_pair_wait: MOVE_PAIR_WAIT,
            create_close_wait: CREATE_CLOSE_WAIT,
            create_hold_max: CREATE_HOLD_MAX,
        }
    }
}

/// What one call produced: changes for the queue, commands for the watch table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub changes: Vec<Change>,
    pub commands: Vec<Command>,
}

#[derive(Debug)]
struct PendingMove {
    cookie: u32,
    from: RelPath,
    is_dir: bool,
    at: Instant,
}

/// Should a new entry seen by a create wait for its close instead of being pushed now?
/// Only a regular file with one link, and only when closes are watched and writes are
/// not (with `modify` on, the operator wants files pushed while written); `meta` is its
/// lstat, None when it is gone already or cannot be read (pushed now: rsync sees what
/// is there).
fn create_waits_for_close(events: &EventSet, meta: Option<FileMeta>) -> bool {
    events.close_write
        && !events.modify
        && matches!(
            meta,
            Some(FileMeta {
                regular: true,
                links: 1,
                ..
            })
        )
}

/// The event translator of one sync. See the module doc for its rules.
#[derive(Debug)]
pub struct Translator {
    events: EventSet,
    exclude: ExcludeSet,
    timing: Timing,
    /// In arrival order, so the first expires first.
    pending_moves: Vec<PendingMove>,
    /// New regular files waiting for their close.
    open_creates: BTreeMap<RelPath, Held>,
    root_lost: Option<RootLoss>,
    overflows: u64,
}

impl Translator {
    pub fn new(events: EventSet, exclude: ExcludeSet, timing: Timing) -> Translator {
        Translator {
            events,
            exclude,
            timing,
            pending_moves: Vec::new(),
            open_creates: BTreeMap::new(),
            root_lost: None,
            overflows: 0,
        }
    }

    /// Why the root is no longer watched; None while it is.
    pub fn root_lost(&self) -> Option<RootLoss> {
        self.root_lost
    }

    /// Overflows seen while the root was watched.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// True when nothing is held back: no half of a move, no new file waiting for its
    /// close.
    pub fn settled(&self) -> bool {
        self.pending_moves.is_empty() && self.open_creates.is_empty()
    }

    /// When [`Translator::tick`] has something to release; None while nothing is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        let moves = self
            .pending_moves
            .first()
            .map(|m| after(m.at, self.timing.move_pair_wait));
        let creates = self.open_creates.values().map(|held| held.due);
        moves.into_iter().chain(creates).min()
    }

    /// Translate one event seen at `now`. `lstat` gives the facts of an entry (by its
    /// relative path) when they are needed: only for a new non-directory entry that
    /// might be held until its close.
    pub fn event(
        &mut self,
        event: Event,
        now: Instant,
        lstat: impl FnOnce(&[u8]) -> Option<FileMeta>,
        out: &mut Output,
    ) {
        if self.root_lost.is_some() {
            // Events from a tree that is no longer the source (moved away, unmounted).
            return;
        }
        match event {
            Event::Overflow => {
                self.overflows += 1;
                // The whole-tree push reads every file, and closes still to come push
                // again.
                self.open_creates.clear();
                out.commands.push(Command::RewatchAll);
                out.changes.push(Change::Full);
            }
            Event::Dir { dir, op } => self.dir_event(dir, op, out),
            Event::Entry {
                dir,
                name,
                is_dir,
                op,
            } => self.entry_event(child(&dir, &name), is_dir, op, now, lstat, out),
        }
    }

    /// Release what waited long enough at `now`: moves whose other half did not come
    /// went out of the tree; new files still not closed are looked at (`lstat`, by
    /// relative path) and pushed as they are unless still being written.
    pub fn tick(
        &mut self,
        now: Instant,
        mut lstat: impl FnMut(&[u8]) -> Option<FileMeta>,
        out: &mut Output,
    ) {
        let wait = self.timing.move_pair_wait;
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_moves)
            .into_iter()
            .partition(|m| now >= after(m.at, wait));
        self.pending_moves = kept;
        for m in expired {
            self.moved_out(m, out);
        }
        let (wait, max) = (self.timing.create_close_wait, self.timing.create_hold_max);
        let waited: Vec<RelPath> = self
            .open_creates
            .iter()
            .filter(|(_, held)| now >= held.due)
            .map(|(p, _)| p.clone())
            .collect();
        for p in waited {
            let Some(held) = self.open_creates.get_mut(&p) else {
                continue;
            };
            let last = after(held.since, max);
            let written = lstat(&p).map(|m| m.written);
            if now < last && written.is_some() && written != held.written {
                // Still being written: look again after another wait.
                held.written = written;
                held.due = after(now, wait).min(last);
                continue;
            }
            self.open_creates.remove(&p);
            out.changes.push(Change::Path(p));
        }
    }

    fn dir_event(&mut self, dir: RelPath, op: DirOp, out: &mut Output) {
        if dir.is_empty() {
            self.root_lost = match op {
                DirOp::Unmounted => Some(RootLoss::Unmounted),
                DirOp::Moved => Some(RootLoss::Moved),
                DirOp::Deleted => Some(RootLoss::Deleted),
                DirOp::WatchGone => Some(RootLoss::Unwatched),
                // The root's own attributes are not pushed (rsync pushes the tree's
                // contents, not the source directory itself).
                DirOp::Attrib => None,
            };
            return;
        }
        if op == DirOp::Attrib && self.events.attrib {
            out.changes.push(Change::Path(dir));
        }
    }

    /// One event on an entry of a watched directory, by kind. An excluded name is
    /// ignored, except as the target of a move (then the entry left the tree).
    fn entry_event(
        &mut self,
        rel: RelPath,
        is_dir: bool,
        op: EntryOp,
        now: Instant,
        lstat: impl FnOnce(&[u8]) -> Option<FileMeta>,
        out: &mut Output,
    ) {
        let excluded = self.exclude.is_excluded(&rel);
        match op {
            EntryOp::MovedTo { cookie } => self.moved_to(rel, is_dir, cookie, excluded, out),
            _ if excluded => {}
            EntryOp::MovedFrom { cookie } => self.moved_from(rel, is_dir, cookie, now),
            EntryOp::Create if is_dir => self.dir_created(rel, out),
            EntryOp::Create => self.file_created(rel, now, lstat, out),
            EntryOp::Delete => self.deleted(rel, is_dir, out),
            EntryOp::CloseWrite => self.closed_after_write(rel, out),
            EntryOp::Modify => self.changed_in_place(rel, self.events.modify, out),
            EntryOp::Attrib => self.changed_in_place(rel, self.events.attrib, out),
        }
    }

    /// The first half of a rename: held until its `MOVED_TO` (or the pairing wait) ends.
    fn moved_from(&mut self, rel: RelPath, is_dir: bool, cookie: u32, now: Instant) {
        // Its close (if any) comes under the new name, which the move pushes.
        self.open_creates.remove(&rel);
        self.pending_moves.push(PendingMove {
            cookie,
            from: rel,
            is_dir,
            at: now,
        });
    }

    /// The second half of a rename, paired with its first half when that was seen.
    fn moved_to(
        &mut self,
        rel: RelPath,
        is_dir: bool,
        cookie: u32,
        excluded: bool,
        out: &mut Output,
    ) {
        let paired = self.take_pending_move(cookie);
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
                    out.commands.push(Command::Rename {
                        from: m.from.clone(),
                        to: rel.clone(),
                    });
                }
                if m.is_dir && is_dir && self.events.move_from && self.events.move_to {
                    // One change: the queue keeps the pair as a hint for the push.
                    out.changes.push(Change::Moved {
                        from: m.from,
                        to: rel,
                    });
                    return;
                }
                if self.events.move_from {
                    out.changes.push(Change::Gone(m.from));
                }
            }
            None if is_dir => out.commands.push(Command::WatchTree(rel.clone())),
            None => {}
        }
        if self.events.move_to {
            out.changes.push(if is_dir {
                Change::Tree(rel)
            } else {
                Change::Path(rel)
            });
        }
    }

    /// The pending first half of the rename with this cookie, if any, taken out.
    fn take_pending_move(&mut self, cookie: u32) -> Option<PendingMove> {
        self.pending_moves
            .iter()
            .position(|m| m.cookie == cookie)
            .map(|i| self.pending_moves.remove(i))
    }

    /// A new directory: watch it, and push it whole (entries may arrive before the watch).
    fn dir_created(&mut self, rel: RelPath, out: &mut Output) {
        out.commands.push(Command::WatchTree(rel.clone()));
        if self.events.create_folder {
            out.changes.push(Change::Tree(rel));
        }
    }

    /// A new file: pushed now, or held until its close when it is still being written.
    fn file_created(
        &mut self,
        rel: RelPath,
        now: Instant,
        lstat: impl FnOnce(&[u8]) -> Option<FileMeta>,
        out: &mut Output,
    ) {
        if !self.events.create_file {
            return;
        }
        let meta = lstat(&rel);
        if create_waits_for_close(&self.events, meta) {
            let held = Held {
                since: now,
                due: after(now, self.timing.create_close_wait),
                written: meta.map(|m| m.written),
            };
            self.open_creates.insert(rel, held);
        } else {
            out.changes.push(Change::Path(rel));
        }
    }

    fn deleted(&mut self, rel: RelPath, is_dir: bool, out: &mut Output) {
        if is_dir {
            out.commands.push(Command::Forget(rel.clone()));
        }
        self.open_creates.remove(&rel);
        if self.events.delete {
            out.changes.push(Change::Gone(rel));
        }
    }

    fn closed_after_write(&mut self, rel: RelPath, out: &mut Output) {
        self.open_creates.remove(&rel);
        if self.events.close_write {
            out.changes.push(Change::Path(rel));
        }
    }

    /// Written or chmod-ed (`wanted`: that kind of event is watched).
    fn changed_in_place(&self, rel: RelPath, wanted: bool, out: &mut Output) {
        if self.open_creates.contains_key(&rel) {
            // Written or chmod-ed before its close: the close (or the wait) pushes it.
            return;
        }
        if wanted {
            out.changes.push(Change::Path(rel));
        }
    }

    /// A `MOVED_FROM` whose `MOVED_TO` never came (or came under an excluded name): the
    /// entry left the tree.
    fn moved_out(&mut self, m: PendingMove, out: &mut Output) {
        if m.is_dir {
            out.commands.push(Command::Unwatch(m.from.clone()));
        }
        self.open_creates.remove(&m.from);
        if self.events.move_from {
            out.changes.push(Change::Gone(m.from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Change::{Full, Gone, Moved, Path, Tree};

    fn p(s: &str) -> RelPath {
        s.as_bytes().to_vec()
    }

    /// `op` on the entry at `path` (split into its directory and name).
    fn entry(path: &str, is_dir: bool, op: EntryOp) -> Event {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        Event::Entry {
            dir: p(dir),
            name: p(name),
            is_dir,
            op,
        }
    }
    fn file(path: &str, op: EntryOp) -> Event {
        entry(path, false, op)
    }
    fn dir(path: &str, op: EntryOp) -> Event {
        entry(path, true, op)
    }
    fn itself(path: &str, op: DirOp) -> Event {
        Event::Dir { dir: p(path), op }
    }

    fn moved_from(cookie: u32) -> EntryOp {
        EntryOp::MovedFrom { cookie }
    }
    fn moved_to(cookie: u32) -> EntryOp {
        EntryOp::MovedTo { cookie }
    }
    use EntryOp::{Attrib, CloseWrite, Create, Delete, Modify};

    const NEW_FILE: FileMeta = FileMeta {
        regular: true,
        links: 1,
        written: (0, 0),
    };

    /// One input at a time in milliseconds from the start.
    enum Step {
        At(u64, Event),
        Tick(u64),
    }
    use Step::{At, Tick};

    /// A scenario: the steps, and everything they must produce, in order.
    struct Case {
        name: &'static str,
        events: EventSet,
        exclude: &'static [&'static str],
        /// lstat results; any other path is a new regular file with one link.
        files: &'static [(&'static str, Option<FileMeta>)],
        steps: Vec<Step>,
        changes: Vec<Change>,
        commands: Vec<Command>,
        /// Nothing held back at the end.
        settled: bool,
    }

    impl Default for Case {
        fn default() -> Case {
            Case {
                name: "",
                events: EventSet::default(),
                exclude: &[],
                files: &[],
                steps: vec![],
                changes: vec![],
                commands: vec![],
                settled: true,
            }
        }
    }

    fn run(case: &Case) -> (Translator, Output) {
        let t0 = Instant::now();
        let exclude = ExcludeSet::new(case.exclude).expect("valid patterns");
        let mut tr = Translator::new(case.events, exclude, Timing::default());
        let mut out = Output::default();
        for step in &case.steps {
            let lstat = |rel: &[u8]| {
                case.files
                    .iter()
                    .find(|(f, _)| f.as_bytes() == rel)
                    .map_or(Some(NEW_FILE), |(_, m)| *m)
            };
            match step {
                At(ms, ev) => {
                    let now = t0 + Duration::from_millis(*ms);
                    tr.event(ev.clone(), now, lstat, &mut out);
                }
                Tick(ms) => tr.tick(t0 + Duration::from_millis(*ms), lstat, &mut out),
            }
        }
        (tr, out)
    }

    #[test]
    fn translation_table() {
        let modify_on = EventSet {
            modify: true,
            ..EventSet::default()
        };
        let cases = vec![
            Case {
                name: "file created, written, chmod-ed, closed: pushed once, at its close",
                steps: vec![
                    At(0, file("f", Create)),
                    At(1, file("f", Modify)),
                    At(2, file("f", Attrib)),
                    Tick(3),
                    At(4, file("f", CloseWrite)),
                ],
                changes: vec![Path(p("f"))],
                ..Case::default()
            },
            Case {
                name:
                    "file created and never closed: released after the limit, again at a late close",
                steps: vec![
                    At(0, file("f", Create)),
                    Tick(1999),
                    At(1999, file("f", Modify)),
                    Tick(2000),
                    At(3000, file("f", CloseWrite)),
                ],
                changes: vec![Path(p("f")), Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "entries that get no close are pushed at creation",
                files: &[
                    (
                        "hard",
                        Some(FileMeta {
                            regular: true,
                            links: 2,
                            written: (0, 0),
                        }),
                    ),
                    (
                        "link",
                        Some(FileMeta {
                            regular: false,
                            links: 1,
                            written: (0, 0),
                        }),
                    ),
                    ("gone", None),
                ],
                steps: vec![
                    At(0, file("hard", Create)),
                    At(0, file("link", Create)),
                    At(0, file("gone", Create)),
                ],
                changes: vec![Path(p("hard")), Path(p("link")), Path(p("gone"))],
                ..Case::default()
            },
            Case {
                name: "writes watched: pushed at creation and while written",
                events: modify_on,
                steps: vec![At(0, file("f", Create)), At(1, file("f", Modify))],
                changes: vec![Path(p("f")), Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "closes not watched: pushed at creation, not at the close",
                events: EventSet {
                    close_write: false,
                    ..EventSet::default()
                },
                steps: vec![At(0, file("f", Create)), At(1, file("f", CloseWrite))],
                changes: vec![Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "file creation not watched: only its close",
                events: EventSet {
                    create_file: false,
                    ..EventSet::default()
                },
                steps: vec![At(0, file("f", Create)), At(1, file("f", CloseWrite))],
                changes: vec![Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "held file deleted before its close: gone, never released",
                steps: vec![
                    At(0, file("f", Create)),
                    At(1, file("f", Delete)),
                    Tick(5000),
                ],
                changes: vec![Gone(p("f"))],
                ..Case::default()
            },
            Case {
                name: "held file renamed: pushed under its new name only",
                steps: vec![
                    At(0, file("f", Create)),
                    At(1, file("f", moved_from(2))),
                    At(1, file("g", moved_to(2))),
                    Tick(5000),
                ],
                changes: vec![Gone(p("f")), Path(p("g"))],
                ..Case::default()
            },
            Case {
                name: "directory created: watched, read and pushed whole",
                steps: vec![At(0, dir("a/d", Create))],
                changes: vec![Tree(p("a/d"))],
                commands: vec![Command::WatchTree(p("a/d"))],
                ..Case::default()
            },
            Case {
                name: "directory creation not pushed: still watched",
                events: EventSet {
                    create_folder: false,
                    ..EventSet::default()
                },
                steps: vec![At(0, dir("d", Create))],
                commands: vec![Command::WatchTree(p("d"))],
                ..Case::default()
            },
            Case {
                name: "file renamed inside the tree",
                steps: vec![
                    At(0, file("a", moved_from(7))),
                    At(0, file("b/c", moved_to(7))),
                ],
                changes: vec![Gone(p("a")), Path(p("b/c"))],
                ..Case::default()
            },
            Case {
                name: "directory renamed inside the tree: watches renamed",
                steps: vec![
                    At(0, dir("old", moved_from(7))),
                    At(0, dir("x/new", moved_to(7))),
                ],
                changes: vec![Moved {
                    from: p("old"),
                    to: p("x/new"),
                }],
                commands: vec![Command::Rename {
                    from: p("old"),
                    to: p("x/new"),
                }],
                ..Case::default()
            },
            Case {
                name: "halves of a rename split across two reads still pair",
                steps: vec![
                    At(0, dir("old", moved_from(7))),
                    Tick(19),
                    At(19, dir("new", moved_to(7))),
                    Tick(100),
                ],
                changes: vec![Moved {
                    from: p("old"),
                    to: p("new"),
                }],
                commands: vec![Command::Rename {
                    from: p("old"),
                    to: p("new"),
                }],
                ..Case::default()
            },
            Case {
                name: "interleaved renames pair by cookie",
                steps: vec![
                    At(0, file("a", moved_from(1))),
                    At(0, file("b", moved_from(2))),
                    At(0, file("b2", moved_to(2))),
                    At(0, file("a2", moved_to(1))),
                ],
                changes: vec![Gone(p("b")), Path(p("b2")), Gone(p("a")), Path(p("a2"))],
                ..Case::default()
            },
            Case {
                name: "file moved out: gone once its pair is overdue",
                steps: vec![At(0, file("f", moved_from(3))), Tick(19), Tick(20)],
                changes: vec![Gone(p("f"))],
                ..Case::default()
            },
            Case {
                name: "directory moved out: unwatched and gone",
                steps: vec![At(0, dir("d", moved_from(3))), Tick(20)],
                changes: vec![Gone(p("d"))],
                commands: vec![Command::Unwatch(p("d"))],
                ..Case::default()
            },
            Case {
                name: "directory moved in: watched, read and pushed whole",
                steps: vec![At(0, dir("d", moved_to(4)))],
                changes: vec![Tree(p("d"))],
                commands: vec![Command::WatchTree(p("d"))],
                ..Case::default()
            },
            Case {
                name: "file moved in: pushed",
                steps: vec![At(0, file("f", moved_to(4)))],
                changes: vec![Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "moves not watched: watch tables still follow",
                events: EventSet {
                    move_from: false,
                    move_to: false,
                    ..EventSet::default()
                },
                steps: vec![
                    At(0, dir("a", moved_from(1))),
                    At(0, dir("b", moved_to(1))),
                    At(0, dir("c", moved_from(2))),
                    At(0, dir("in", moved_to(3))),
                    Tick(20),
                ],
                commands: vec![
                    Command::Rename {
                        from: p("a"),
                        to: p("b"),
                    },
                    Command::WatchTree(p("in")),
                    Command::Unwatch(p("c")),
                ],
                ..Case::default()
            },
            Case {
                name: "moved to an excluded name: a move out",
                exclude: &[r"\.tmp$"],
                steps: vec![
                    At(0, file("f", moved_from(1))),
                    At(0, file("f.tmp", moved_to(1))),
                    At(0, dir("d", moved_from(2))),
                    At(0, dir("d.tmp", moved_to(2))),
                ],
                changes: vec![Gone(p("f")), Gone(p("d"))],
                commands: vec![Command::Unwatch(p("d"))],
                ..Case::default()
            },
            Case {
                name: "moved from an excluded name: a move in",
                exclude: &[r"\.tmp$"],
                steps: vec![
                    At(0, file("f.tmp", moved_from(1))),
                    At(0, file("f", moved_to(1))),
                    Tick(100),
                ],
                changes: vec![Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "excluded entries raise nothing and are not watched",
                exclude: &["^cache", r"\.tmp$"],
                steps: vec![
                    At(0, file("x.tmp", Create)),
                    At(0, file("x.tmp", Modify)),
                    At(0, file("x.tmp", CloseWrite)),
                    At(0, file("x.tmp", Attrib)),
                    At(0, file("x.tmp", Delete)),
                    At(0, dir("cache", Create)),
                    At(0, file("cache/f", CloseWrite)),
                    At(0, dir("cache", Delete)),
                ],
                ..Case::default()
            },
            Case {
                name: "directory deleted: forgotten and gone",
                steps: vec![At(0, dir("d", Delete)), At(0, file("f", Delete))],
                changes: vec![Gone(p("d")), Gone(p("f"))],
                commands: vec![Command::Forget(p("d"))],
                ..Case::default()
            },
            Case {
                name: "deletes not watched: still forgotten",
                events: EventSet {
                    delete: false,
                    ..EventSet::default()
                },
                steps: vec![At(0, dir("d", Delete)), At(0, file("f", Delete))],
                commands: vec![Command::Forget(p("d"))],
                ..Case::default()
            },
            Case {
                name: "attributes: of entries and of watched directories, not of the root",
                steps: vec![
                    At(0, file("a/f", Attrib)),
                    At(0, itself("a", DirOp::Attrib)),
                    At(0, itself("", DirOp::Attrib)),
                ],
                changes: vec![Path(p("a/f")), Path(p("a"))],
                ..Case::default()
            },
            Case {
                name: "attributes not watched",
                events: EventSet {
                    attrib: false,
                    ..EventSet::default()
                },
                steps: vec![At(0, file("f", Attrib)), At(0, itself("a", DirOp::Attrib))],
                ..Case::default()
            },
            Case {
                name: "a subdirectory deleted, unmounted or unwatched is not the root",
                steps: vec![
                    At(0, itself("a", DirOp::Deleted)),
                    At(0, itself("a", DirOp::Unmounted)),
                    At(0, itself("a", DirOp::WatchGone)),
                    At(0, file("f", CloseWrite)),
                ],
                changes: vec![Path(p("f"))],
                ..Case::default()
            },
            Case {
                name: "overflow: rewatch, push whole, forget held files",
                steps: vec![At(0, file("f", Create)), At(1, Event::Overflow), Tick(5000)],
                changes: vec![Full],
                commands: vec![Command::RewatchAll],
                ..Case::default()
            },
            Case {
                name: "unpaired move still held at the end",
                steps: vec![At(0, file("f", moved_from(1))), Tick(19)],
                settled: false,
                ..Case::default()
            },
            Case {
                name: "new file still held at the end",
                steps: vec![At(0, file("f", Create)), Tick(1999)],
                settled: false,
                ..Case::default()
            },
        ];
        for case in &cases {
            let (tr, out) = run(case);
            assert_eq!(out.changes, case.changes, "{}: changes", case.name);
            assert_eq!(out.commands, case.commands, "{}: commands", case.name);
            assert_eq!(tr.settled(), case.settled, "{}: settled", case.name);
            assert_eq!(tr.root_lost(), None, "{}", case.name);
        }
    }

    #[test]
    fn root_events_lose_the_root_and_silence_the_rest() {
        let cases = [
            (DirOp::Unmounted, RootLoss::Unmounted),
            (DirOp::Moved, RootLoss::Moved),
            (DirOp::Deleted, RootLoss::Deleted),
            (DirOp::WatchGone, RootLoss::Unwatched),
        ];
        for (op, loss) in cases {
            let case = Case {
                steps: vec![
                    At(0, file("before", CloseWrite)),
                    At(0, file("moving", moved_from(1))),
                    At(1, itself("", op)),
                    // Later events, and later losses, change nothing.
                    At(2, itself("", DirOp::Unmounted)),
                    At(2, file("after", CloseWrite)),
                    At(2, dir("d", Create)),
                    At(2, Event::Overflow),
                    At(2, file("moved", moved_to(1))),
                    // What was held still expires.
                    Tick(100),
                ],
                ..Case::default()
            };
            let (tr, out) = run(&case);
            assert_eq!(tr.root_lost(), Some(loss), "{op:?}");
            assert_eq!(
                out.changes,
                vec![Path(p("before")), Gone(p("moving"))],
                "{op:?}"
            );
            assert!(out.commands.is_empty(), "{op:?}: {:?}", out.commands);
            assert_eq!(tr.overflows(), 0, "{op:?}");
        }
    }

    #[test]
    fn next_deadline_is_the_earliest_release() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut tr = Translator::new(
            EventSet::default(),
            ExcludeSet::default(),
            Timing::default(),
        );
        let mut out = Output::default();
        let new_file = |_: &[u8]| Some(NEW_FILE);
        assert_eq!(tr.next_deadline(), None, "nothing held");
        tr.event(file("f", Create), ms(0), new_file, &mut out);
        assert_eq!(tr.next_deadline(), Some(ms(2000)), "the held file");
        tr.event(file("a", moved_from(1)), ms(5), new_file, &mut out);
        assert_eq!(tr.next_deadline(), Some(ms(25)), "the move half first");
        tr.event(file("g", Create), ms(6), new_file, &mut out);
        tr.tick(ms(25), new_file, &mut out);
        assert_eq!(out.changes, vec![Gone(p("a"))]);
        assert_eq!(tr.next_deadline(), Some(ms(2000)), "the older held file");
        tr.event(file("f", CloseWrite), ms(30), new_file, &mut out);
        assert_eq!(tr.next_deadline(), Some(ms(2006)), "the other held file");
        tr.tick(ms(2006), new_file, &mut out);
        assert_eq!(tr.next_deadline(), None);
        assert_eq!(out.changes, vec![Gone(p("a")), Path(p("f")), Path(p("g"))]);
    }

    /// A new file still growing when its close-wait ends stays held (one push at its
    /// close instead of a half-written one first), at most `create_hold_max` in all; one
    /// that stopped changing, or is gone, goes as it is.
    #[test]
    fn a_new_file_still_being_written_stays_held() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let timing = Timing::default();
        let mut tr = Translator::new(EventSet::default(), ExcludeSet::default(), timing);
        let mut out = Output::default();
        let written = |size: u64| {
            move |_: &[u8]| {
                Some(FileMeta {
                    written: (size, i128::from(size)),
                    ..NEW_FILE
                })
            }
        };
        tr.event(file("big", Create), ms(0), written(0), &mut out);
        tr.tick(ms(2000), written(100), &mut out);
        assert!(out.changes.is_empty(), "grew since the create: held");
        assert_eq!(
            tr.next_deadline(),
            Some(ms(4000)),
            "looked at again a wait later"
        );
        tr.tick(ms(4000), written(200), &mut out);
        assert!(out.changes.is_empty(), "still growing: held");
        tr.event(file("big", CloseWrite), ms(4500), written(250), &mut out);
        assert_eq!(
            out.changes,
            vec![Path(p("big"))],
            "pushed once, at its close"
        );
        assert!(tr.settled());

        // Written once, then left open: pushed as it is after one more wait.
        let mut out = Output::default();
        tr.event(file("open", Create), ms(10_000), written(0), &mut out);
        tr.tick(ms(12_000), written(7), &mut out);
        tr.tick(ms(14_000), written(7), &mut out);
        assert_eq!(
            out.changes,
            vec![Path(p("open"))],
            "unchanged since the last look"
        );

        // Gone by the look: released (the push finds it missing).
        let mut out = Output::default();
        tr.event(file("gone", Create), ms(20_000), written(0), &mut out);
        tr.tick(ms(22_000), |_: &[u8]| None, &mut out);
        assert_eq!(out.changes, vec![Path(p("gone"))]);

        // Written for ever: pushed when the hold ends, not a look later.
        let mut out = Output::default();
        let start = 100_000;
        tr.event(file("log", Create), ms(start), written(0), &mut out);
        let end = start + u64::try_from(timing.create_hold_max.as_millis()).expect("ms fit");
        let mut size = 0;
        while out.changes.is_empty() {
            let due = tr.next_deadline().expect("held until released");
            assert!(due <= ms(end), "held past the hold's end");
            size += 1;
            tr.tick(due, written(size), &mut out);
        }
        assert_eq!(out.changes, vec![Path(p("log"))]);
        assert_eq!(tr.next_deadline(), None);
        assert_eq!(size, 30, "a look every 2 s for 60 s");
    }

    #[test]
    fn which_new_entries_wait_for_their_close() {
        let on = EventSet::default();
        let no_close = EventSet {
            close_write: false,
            ..on
        };
        let modify = EventSet { modify: true, ..on };
        let meta = |regular, links| {
            Some(FileMeta {
                regular,
                links,
                written: (0, 0),
            })
        };
        // (case, events, lstat, waits)
        type Case = (&'static str, EventSet, Option<FileMeta>, bool);
        let cases: Vec<Case> = vec![
            ("new regular file", on, meta(true, 1), true),
            ("hard link: no close will come", on, meta(true, 2), false),
            ("symlink, fifo, socket, device", on, meta(false, 1), false),
            ("gone already", on, None, false),
            ("closes not watched", no_close, meta(true, 1), false),
            (
                "writes watched: push while written",
                modify,
                meta(true, 1),
                false,
            ),
        ];
        for (name, events, meta, want) in cases {
            assert_eq!(create_waits_for_close(&events, meta), want, "{name}");
        }
    }
}
