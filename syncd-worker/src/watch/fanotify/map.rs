//! From raw fanotify events to the translator's [`Event`]s: each directory handle is
//! resolved to a path relative to the source (through a lookup the adapter supplies:
//! `open_by_handle_at` and the descriptor's name), cached, and events outside the source
//! dropped. Pure but for that lookup, so the rules are tested with a table.
//!
//! * Cache: handle → relative path for directories inside the source (the root is known
//!   from the start), and a set of handles known to be outside, so the events of the rest
//!   of the file system cost a hash lookup after their first. A directory renamed or
//!   deleted forgets its cached paths and those below it, and any directory renamed
//!   empties the outside set (a directory moved in from outside is no longer outside).
//!   Both have a size bound; past it they are emptied and filled again as events come.
//! * Events queued before a rename are read after it resolved through the cache filled
//!   before it, so paths stay in event order; an uncached directory is resolved as it is
//!   when read (the queue then renames what it holds as the rename comes).
//! * The kernel merges events on one entry (same directory, name and entry handle) still
//!   queued into one mask; they are handed on in the one order they can have happened:
//!   create, modify, attrib, close-write, delete.
//! * A rename is one event with both places (`FAN_RENAME`): it becomes a
//!   `MovedFrom`/`MovedTo` pair with a cookie of its own; a half outside the source is
//!   left out (a move in, or out, as inotify would say it).
//! * A directory whose place cannot be read (not gone: an error such as no descriptor
//!   left) makes the event lost events (`Overflow`: the tree pushed whole), never a
//!   dropped one: dropping a rename's new half would delete the old path on the target
//!   and never push the new one.
//! * The source's root deleted or renamed (its own handle on a delete or rename) is the
//!   root lost.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::parse::{DirName, Raw};
use super::sys::Handle;
use crate::batch::RelPath;
use crate::watch::translate::{DirOp, EntryOp, Event};

/// Where a directory handle leads now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Inside the source, at this relative path (empty: the root).
    Inside(RelPath),
    Outside,
    /// No longer exists (`ESTALE`): what happened in it is gone with it.
    Gone,
    /// Its place could not be read (out of descriptors, say): where the event happened is
    /// unknown, so it is answered as lost events are (the tree pushed whole), never
    /// dropped: a rename whose new half is dropped would delete the old path on the
    /// target without pushing the new one.
    Unreadable,
}

/// A directory's place could not be read ([`Look::Unreadable`]).
struct Unknown;

/// Past this many cached directories (either kind), that cache is emptied. A cached
/// directory costs about 300 bytes (measured: 200,000 directories each given a new file
/// under fanotify grew the worker by 60 MB; with this bound, by 44 MB), so it stays near that; a
/// lookup past it costs a few microseconds again.
const CACHE_MAX: usize = 1 << 17;

/// The handle cache and the rename cookies.
#[derive(Debug)]
pub struct Dirs {
    root: Handle,
    inside: HashMap<Handle, RelPath>,
    by_path: BTreeMap<RelPath, Handle>,
    outside: HashSet<Handle>,
    cookie: u32,
    /// Lookups made (cache misses), for the tests and the bench.
    pub lookups: u64,
}

impl Dirs {
    pub fn new(root: Handle) -> Dirs {
        let mut d = Dirs {
            root: root.clone(),
            inside: HashMap::new(),
            by_path: BTreeMap::new(),
            outside: HashSet::new(),
            cookie: 0,
            lookups: 0,
        };
        d.remember(root, Vec::new());
        d
    }

    /// Directories cached as inside the source.
    pub fn known(&self) -> usize {
        self.inside.len()
    }

    fn remember(&mut self, h: Handle, rel: RelPath) {
        if self.inside.len() >= CACHE_MAX {
            self.inside.clear();
            self.by_path.clear();
            self.inside.insert(self.root.clone(), Vec::new());
            self.by_path.insert(Vec::new(), self.root.clone());
        }
        if let Some(old) = self.by_path.insert(rel.clone(), h.clone()) {
            if old != h {
                self.inside.remove(&old);
            }
        }
        self.inside.insert(h, rel);
    }

    /// The path of directory `h` inside the source, or None (outside, gone).
    fn resolve(
        &mut self,
        h: &Handle,
        look: &mut impl FnMut(&Handle) -> Look,
    ) -> Result<Option<RelPath>, Unknown> {
        if let Some(rel) = self.inside.get(h) {
            return Ok(Some(rel.clone()));
        }
        if self.outside.contains(h) {
            return Ok(None);
        }
        self.lookups += 1;
        match look(h) {
            Look::Inside(rel) => {
                self.remember(h.clone(), rel.clone());
                Ok(Some(rel))
            }
            Look::Outside => {
                if self.outside.len() >= CACHE_MAX {
                    self.outside.clear();
                }
                self.outside.insert(h.clone());
                Ok(None)
            }
            Look::Gone => Ok(None),
            Look::Unreadable => Err(Unknown),
        }
    }

    /// The directory path and entry name of `at` inside the source, or None.
    fn entry_of(
        &mut self,
        at: Option<&DirName>,
        look: &mut impl FnMut(&Handle) -> Look,
    ) -> Result<Option<(RelPath, Vec<u8>)>, Unknown> {
        let Some(at) = at else {
            return Ok(None);
        };
        Ok(self
            .resolve(&at.dir, look)?
            .map(|dir| (dir, at.name.clone())))
    }

    /// Forget the cached paths of `rel` and every directory below it (not the root's).
    fn forget_below(&mut self, rel: &[u8]) {
        if rel.is_empty() {
            return;
        }
        let below: Vec<RelPath> = self
            .by_path
            .range(rel.to_vec()..)
            .take_while(|(p, _)| p.starts_with(rel))
            .filter(|(p, _)| p.len() == rel.len() || p[rel.len()] == b'/')
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            if let Some(h) = self.by_path.remove(&p) {
                self.inside.remove(&h);
            }
        }
    }

    /// The translator's events for `raw`, appended to `out`.
    pub fn events(
        &mut self,
        raw: &Raw,
        mut look: impl FnMut(&Handle) -> Look,
        out: &mut Vec<Event>,
    ) {
        use libc::{
            FAN_ATTRIB, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_MODIFY, FAN_ONDIR,
            FAN_Q_OVERFLOW, FAN_RENAME,
        };
        if raw.has(FAN_Q_OVERFLOW) {
            out.push(Event::Overflow);
            return;
        }
        let is_dir = raw.has(FAN_ONDIR);
        if raw.object.as_ref() == Some(&self.root) && raw.has(FAN_DELETE | FAN_RENAME) {
            let op = if raw.has(FAN_RENAME) {
                DirOp::Moved
            } else {
                DirOp::Deleted
            };
            out.push(Event::Dir {
                dir: Vec::new(),
                op,
            });
            return;
        }
        if raw.has(FAN_RENAME) {
            self.cookie = self.cookie.wrapping_add(1);
            let cookie = self.cookie;
            let (Ok(from), Ok(to)) = (
                self.entry_of(raw.old.as_ref(), &mut look),
                self.entry_of(raw.new.as_ref(), &mut look),
            ) else {
                out.push(Event::Overflow);
                return;
            };
            if is_dir {
                if let Some((dir, name)) = &from {
                    self.forget_below(&crate::walk::child(dir, name));
                }
                self.outside.clear();
            }
            if let Some((dir, name)) = from {
                out.push(Event::Entry {
                    dir,
                    name,
                    is_dir,
                    op: EntryOp::MovedFrom { cookie },
                });
            }
            if let Some((dir, name)) = to {
                out.push(Event::Entry {
                    dir,
                    name,
                    is_dir,
                    op: EntryOp::MovedTo { cookie },
                });
            }
            return;
        }
        let (dir, name) = match self.entry_of(raw.at.as_ref(), &mut look) {
            Ok(Some(place)) => place,
            Ok(None) => return,
            Err(Unknown) => {
                out.push(Event::Overflow);
                return;
            }
        };
        if name.is_empty() {
            // The directory itself: only its attributes matter.
            if raw.has(FAN_ATTRIB) {
                out.push(Event::Dir {
                    dir,
                    op: DirOp::Attrib,
                });
            }
            return;
        }
        let order = [
            (FAN_CREATE, EntryOp::Create),
            (FAN_MODIFY, EntryOp::Modify),
            (FAN_ATTRIB, EntryOp::Attrib),
            (FAN_CLOSE_WRITE, EntryOp::CloseWrite),
            (FAN_DELETE, EntryOp::Delete),
        ];
        for (bit, op) in order {
            if raw.has(bit) {
                out.push(Event::Entry {
                    dir: dir.clone(),
                    name: name.clone(),
                    is_dir,
                    op,
                });
            }
        }
        if is_dir && raw.has(FAN_DELETE) {
            self.forget_below(&crate::walk::child(&dir, &name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::tests::h;
    use super::*;

    fn at(dir: &[u8], name: &[u8]) -> Option<DirName> {
        Some(DirName {
            dir: h(dir),
            name: name.to_vec(),
        })
    }

    /// The file system of the tests: handle bytes are the directory's path from `/`,
    /// the source is `/src`.
    fn look(hd: &Handle) -> Look {
        let p = hd.bytes.as_slice();
        if p == b"gone" {
            Look::Gone
        } else if p == b"unreadable" {
            Look::Unreadable
        } else if p == b"/src" {
            Look::Inside(Vec::new())
        } else if let Some(rel) = p.strip_prefix(b"/src/") {
            Look::Inside(rel.to_vec())
        } else {
            Look::Outside
        }
    }

    fn entry(dir: &str, name: &str, is_dir: bool, op: EntryOp) -> Event {
        Event::Entry {
            dir: dir.as_bytes().to_vec(),
            name: name.as_bytes().to_vec(),
            is_dir,
            op,
        }
    }

    fn run(d: &mut Dirs, raw: Raw) -> Vec<Event> {
        let mut out = Vec::new();
        d.events(&raw, look, &mut out);
        out
    }

    #[test]
    fn event_table() {
        use libc::*;
        let file = |mask: u64, dir: &[u8], name: &[u8]| Raw {
            mask,
            at: at(dir, name),
            object: Some(h(b"obj")),
            ..Raw::default()
        };
        let cases: Vec<(&str, Raw, Vec<Event>)> = vec![
            (
                "a file created in the root",
                file(FAN_CREATE, b"/src", b"a"),
                vec![entry("", "a", false, EntryOp::Create)],
            ),
            (
                "merged: created, written, chmod, closed, deleted: in that order",
                file(
                    FAN_DELETE | FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_MODIFY | FAN_CREATE,
                    b"/src/d",
                    b"f",
                ),
                vec![
                    entry("d", "f", false, EntryOp::Create),
                    entry("d", "f", false, EntryOp::Modify),
                    entry("d", "f", false, EntryOp::Attrib),
                    entry("d", "f", false, EntryOp::CloseWrite),
                    entry("d", "f", false, EntryOp::Delete),
                ],
            ),
            (
                "a directory created",
                file(FAN_CREATE | FAN_ONDIR, b"/src", b"d"),
                vec![entry("", "d", true, EntryOp::Create)],
            ),
            (
                "outside the source: nothing",
                file(FAN_CREATE, b"/srcx", b"a"),
                vec![],
            ),
            (
                "a directory that is gone: nothing",
                file(FAN_CREATE, b"gone", b"a"),
                vec![],
            ),
            (
                "a directory whose place cannot be read: lost events, not nothing",
                file(FAN_CREATE, b"unreadable", b"a"),
                vec![Event::Overflow],
            ),
            (
                "a rename whose new place cannot be read: lost events, not a move out",
                Raw {
                    mask: FAN_RENAME,
                    old: at(b"/src", b"x"),
                    new: at(b"unreadable", b"x"),
                    ..Raw::default()
                },
                vec![Event::Overflow],
            ),
            (
                "a directory's own attributes",
                Raw {
                    mask: FAN_ATTRIB | FAN_ONDIR,
                    at: at(b"/src/d", b""),
                    ..Raw::default()
                },
                vec![Event::Dir {
                    dir: b"d".to_vec(),
                    op: DirOp::Attrib,
                }],
            ),
            (
                "a rename inside: a pair with one cookie",
                Raw {
                    mask: FAN_RENAME,
                    old: at(b"/src/a", b"x"),
                    new: at(b"/src/b", b"y"),
                    ..Raw::default()
                },
                vec![
                    entry("a", "x", false, EntryOp::MovedFrom { cookie: 1 }),
                    entry("b", "y", false, EntryOp::MovedTo { cookie: 1 }),
                ],
            ),
            (
                "a move in: the new half only",
                Raw {
                    mask: FAN_RENAME | FAN_ONDIR,
                    old: at(b"/tmp", b"x"),
                    new: at(b"/src", b"x"),
                    ..Raw::default()
                },
                vec![entry("", "x", true, EntryOp::MovedTo { cookie: 1 })],
            ),
            (
                "a move out: the old half only",
                Raw {
                    mask: FAN_RENAME,
                    old: at(b"/src", b"x"),
                    new: at(b"/tmp", b"x"),
                    ..Raw::default()
                },
                vec![entry("", "x", false, EntryOp::MovedFrom { cookie: 1 })],
            ),
            (
                "the root deleted",
                Raw {
                    mask: FAN_DELETE | FAN_ONDIR,
                    at: at(b"/", b"src"),
                    object: Some(h(b"/src")),
                    ..Raw::default()
                },
                vec![Event::Dir {
                    dir: vec![],
                    op: DirOp::Deleted,
                }],
            ),
            (
                "the root renamed",
                Raw {
                    mask: FAN_RENAME | FAN_ONDIR,
                    old: at(b"/", b"src"),
                    new: at(b"/", b"old"),
                    object: Some(h(b"/src")),
                    ..Raw::default()
                },
                vec![Event::Dir {
                    dir: vec![],
                    op: DirOp::Moved,
                }],
            ),
            (
                "lost events",
                Raw {
                    mask: FAN_Q_OVERFLOW,
                    ..Raw::default()
                },
                vec![Event::Overflow],
            ),
        ];
        for (what, raw, want) in cases {
            let mut d = Dirs::new(h(b"/src"));
            assert_eq!(run(&mut d, raw), want, "{what}");
        }
    }

    #[test]
    fn each_directory_is_looked_up_once_and_outside_ones_too() {
        let mut d = Dirs::new(h(b"/src"));
        for _ in 0..3 {
            for dir in [&b"/src/a"[..], b"/elsewhere", b"/src"] {
                let raw = Raw {
                    mask: libc::FAN_CLOSE_WRITE,
                    at: at(dir, b"f"),
                    ..Raw::default()
                };
                run(&mut d, raw);
            }
        }
        // The root is known from the start; /src/a and /elsewhere once each.
        assert_eq!(d.lookups, 2);
        assert_eq!(d.known(), 2);
    }

    #[test]
    fn a_renamed_or_deleted_directory_forgets_its_subtree_and_renames_clear_outside() {
        // The cache says where a handle was; the lookup here says where it is now.
        let mut d = Dirs::new(h(b"/src"));
        d.remember(h(b"H-a"), b"a".to_vec());
        d.remember(h(b"H-a-b"), b"a/b".to_vec());
        d.remember(h(b"H-ab"), b"ab".to_vec());
        d.outside.insert(h(b"/tmp/x"));
        let rename = Raw {
            mask: libc::FAN_RENAME | libc::FAN_ONDIR,
            old: at(b"/src", b"a"),
            new: at(b"/src", b"z"),
            ..Raw::default()
        };
        run(&mut d, rename);
        assert_eq!(
            d.by_path.keys().cloned().collect::<Vec<_>>(),
            vec![b"".to_vec(), b"ab".to_vec()]
        );
        assert!(
            d.outside.is_empty(),
            "a directory moved in is no longer outside"
        );
        let rmdir = Raw {
            mask: libc::FAN_DELETE | libc::FAN_ONDIR,
            at: at(b"/src", b"ab"),
            ..Raw::default()
        };
        run(&mut d, rmdir);
        assert_eq!(d.known(), 1, "only the root is left");
    }
}
