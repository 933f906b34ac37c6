//! The parents of the paths a push lists must be real directories of the source.
//!
//! A paths run gives rsync `--files-from`, which implies `--relative`: rsync resolves
//! each listed name from the source root and follows any symlink on the way. With
//! `src/d -> /etc`, a listed `d/shadow` is read from `/etc/shadow` and lands on the
//! target as the file `d/shadow` (and `d` as a directory) — also when `d` itself is
//! listed too (rsync 3.5.0, tried). No rsync option stops the sender from following it
//! (`--no-implied-dirs`, `--safe-links`, `--munge-links`, `--copy-unsafe-links` only
//! change how symlinks *listed* are sent; tried with 3.5.0: the secret arrives with each).
//! A user who may write in the source can swap a directory for a symlink between the
//! event and the push, or while the path waits in the fail log or a saved queue.
//!
//! So before each push, every listed path and tree is screened: its ancestors are
//! looked at from the top, each distinct one once per push ([`Screen`] keeps what it
//! saw), and a path below a symlink is left out of the push. The symlink itself is a
//! real change of the source: it is pushed as a path (as a symlink, as `rsync -a` would),
//! so the target's directory there becomes the symlink. A path left out is neither a
//! failure (it is not retried) nor a deletion (it is not listed at all).
//!
//! Each run that lists paths (a paths run, the prepare and seed runs of renamed
//! directories: [`crate::rsync::args::Invocation::listed`]) looks again just before its
//! rsync starts ([`look::recheck`]): a later run of a split push, or one tried again
//! after a busy daemon's pause, may start long after the push's screen. A symlink found
//! then stops that run (a retry: the next push screens it out), it is never run.
//!
//! Residual window: between that last look and rsync's own resolution of the names
//! (rsync's start-up and connection, then its file list: milliseconds to a local or LAN
//! target, longer over a slow link), a swap still reaches the target. Closing it would
//! need rsync itself to refuse symlinks on the sending side of `--relative` paths, which
//! no rsync option does.
//!
//! Pure: the look at one ancestor is a function passed in ([`Screen::new`]); the
//! lstat-based one and the last look before a run are in [`look`]. Nothing else here
//! touches the file system.

pub mod look;

use std::collections::HashMap;

use crate::batch::{is_within, Batch, RelPath};

/// What an ancestor of a listed path is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A real directory: the paths below it may be pushed.
    Dir,
    /// A symlink, and where it points (its target as written).
    Symlink(Vec<u8>),
    /// Anything else (a file, nothing, unreadable): no symlink can be followed below
    /// it, and rsync reports or deletes what is listed there as it always did.
    Other,
}

/// A listed path left out of a push: the symlink on its way and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Below {
    pub path: RelPath,
    pub link: RelPath,
    pub points_to: Vec<u8>,
}

/// The screen of one push: the look at an ancestor, and what it said for each ancestor
/// seen so far (each is looked at once).
pub struct Screen<L> {
    look: L,
    seen: HashMap<RelPath, Found>,
}

impl<L: FnMut(&[u8]) -> Found> Screen<L> {
    pub fn new(look: L) -> Screen<L> {
        Screen {
            look,
            seen: HashMap::new(),
        }
    }

    /// The first ancestor of `path` (from the top) that is a symlink, with where it
    /// points; None when every ancestor is a real directory, or the first that is not
    /// is no symlink. `path` itself is not looked at.
    pub fn link_above(&mut self, path: &[u8]) -> Option<(RelPath, Vec<u8>)> {
        for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            let anc = &path[..i];
            if anc.is_empty() {
                continue;
            }
            let found = match self.seen.get(anc) {
                Some(found) => found.clone(),
                None => {
                    let found = (self.look)(anc);
                    self.seen.insert(anc.to_vec(), found.clone());
                    found
                }
            };
            match found {
                Found::Dir => continue,
                Found::Symlink(to) => return Some((anc.to_vec(), to)),
                Found::Other => return None,
            }
        }
        None
    }

    /// `list` without the paths below a symlink (in order), and those left out.
    pub fn split(&mut self, list: &[RelPath]) -> (Vec<RelPath>, Vec<Below>) {
        let mut kept = Vec::with_capacity(list.len());
        let mut below = Vec::new();
        for p in list {
            match self.link_above(p) {
                None => kept.push(p.clone()),
                Some((link, points_to)) => below.push(Below {
                    path: p.clone(),
                    link,
                    points_to,
                }),
            }
        }
        (kept, below)
    }
}

/// `batch` with every path and tree below a symlink left out, each such symlink pushed
/// as a path instead, and the moves into a tree left out dropped (nothing to seed); and
/// what was left out. A whole-tree run lists nothing (rsync walks it from the root and
/// sends a symlink as a symlink); what a periodic one carries beside it is screened.
pub fn screen_batch<L: FnMut(&[u8]) -> Found>(
    batch: &Batch,
    screen: &mut Screen<L>,
) -> (Batch, Vec<Below>) {
    let (mut paths, mut below) = screen.split(&batch.paths);
    let (trees, trees_below) = screen.split(&batch.trees);
    below.extend(trees_below);
    if below.is_empty() {
        return (batch.clone(), below);
    }
    paths.extend(below.iter().map(|b| b.link.clone()));
    paths.sort();
    paths.dedup();
    let moves = batch
        .moves
        .iter()
        .filter(|m| !below.iter().any(|b| is_within(&m.to, &b.link)))
        .cloned()
        .collect();
    let out = Batch {
        paths,
        trees,
        moves,
        ..batch.clone()
    };
    (out, below)
}

/// One line per symlink for the log: the paths left out below it (the first few named)
/// and where it points.
pub fn describe(below: &[Below]) -> Vec<String> {
    const NAMED: usize = 3;
    let mut by_link: Vec<(&RelPath, &Vec<u8>, Vec<&RelPath>)> = Vec::new();
    for b in below {
        match by_link.iter_mut().find(|(link, _, _)| **link == b.link) {
            Some((_, _, paths)) => paths.push(&b.path),
            None => by_link.push((&b.link, &b.points_to, vec![&b.path])),
        }
    }
    by_link
        .into_iter()
        .map(|(link, to, paths)| {
            let mut names: Vec<String> = paths
                .iter()
                .take(NAMED)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if paths.len() > NAMED {
                names.push(format!("and {} more", paths.len() - NAMED));
            }
            format!(
                "{} is a symlink to {}, not a directory: pushed as a symlink; not pushed below it: {}",
                String::from_utf8_lossy(link),
                String::from_utf8_lossy(to),
                names.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Move;

    /// A fake source: the ancestors named here are what they say, everything else a
    /// real directory. Counts the looks.
    fn fake<'a>(
        entries: &'a [(&'a str, Found)],
        looks: &'a mut Vec<String>,
    ) -> impl FnMut(&[u8]) -> Found + 'a {
        move |rel: &[u8]| {
            let rel = String::from_utf8_lossy(rel).into_owned();
            looks.push(rel.clone());
            entries
                .iter()
                .find(|(name, _)| *name == rel)
                .map(|(_, f)| f.clone())
                .unwrap_or(Found::Dir)
        }
    }

    fn link(to: &str) -> Found {
        Found::Symlink(to.as_bytes().to_vec())
    }

    fn rel(s: &str) -> RelPath {
        s.as_bytes().to_vec()
    }

    #[test]
    fn the_first_ancestor_that_is_not_a_directory_decides() {
        let entries = [
            ("d", link("/etc")),
            ("a/b", link("../elsewhere")),
            ("f", Found::Other),
            ("gone", Found::Other),
        ];
        // (path, the symlink found above it)
        let rows: &[(&str, Option<(&str, &str)>)] = &[
            ("top", None),
            ("d", None),
            ("d/shadow", Some(("d", "/etc"))),
            // A seed run's `SOURCE/d/`: `d` itself is looked at.
            ("d/", Some(("d", "/etc"))),
            ("d/x/y", Some(("d", "/etc"))),
            ("a/b", None),
            ("a/b/c", Some(("a/b", "../elsewhere"))),
            ("a/c/b/x", None),
            ("f/x", None),
            ("gone/a/b", None),
            ("ok/deep/er/file", None),
        ];
        for (path, want) in rows {
            let mut looks = Vec::new();
            let mut screen = Screen::new(fake(&entries, &mut looks));
            let got = screen.link_above(path.as_bytes());
            let want = want.map(|(l, to)| (rel(l), rel(to)));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn each_ancestor_is_looked_at_once_per_push() {
        let entries = [("d", link("/etc"))];
        let mut looks = Vec::new();
        let list: Vec<RelPath> = ["a/b/1", "a/b/2", "a/c/3", "d/1", "d/2", "e"]
            .iter()
            .map(|s| rel(s))
            .collect();
        let (kept, below) = Screen::new(fake(&entries, &mut looks)).split(&list);
        assert_eq!(kept, [rel("a/b/1"), rel("a/b/2"), rel("a/c/3"), rel("e")]);
        assert_eq!(
            below.iter().map(|b| b.path.clone()).collect::<Vec<_>>(),
            [rel("d/1"), rel("d/2")]
        );
        assert_eq!(looks, ["a", "a/b", "a/c", "d"]);
    }

    #[test]
    fn a_screened_batch_pushes_the_symlink_and_nothing_below_it() {
        let entries = [("d", link("/etc")), ("m", link("/srv"))];
        let batch = Batch {
            paths: vec![rel("a"), rel("d/shadow"), rel("d/x/y"), rel("z")],
            trees: vec![rel("d/sub"), rel("t"), rel("m/n")],
            moves: vec![
                Move {
                    from: rel("old"),
                    to: rel("d/sub"),
                },
                Move {
                    from: rel("t0"),
                    to: rel("t"),
                },
            ],
            ..Batch::default()
        };
        let mut looks = Vec::new();
        let (out, below) = screen_batch(&batch, &mut Screen::new(fake(&entries, &mut looks)));
        assert_eq!(out.paths, [rel("a"), rel("d"), rel("m"), rel("z")]);
        assert_eq!(out.trees, [rel("t")]);
        assert_eq!(
            out.moves,
            [Move {
                from: rel("t0"),
                to: rel("t"),
            }]
        );
        assert_eq!(below.len(), 4);
        assert_eq!(
            describe(&below),
            [
                "d is a symlink to /etc, not a directory: pushed as a symlink; not pushed below it: d/shadow, d/x/y, d/sub",
                "m is a symlink to /srv, not a directory: pushed as a symlink; not pushed below it: m/n",
            ]
        );
    }

    #[test]
    fn a_batch_with_nothing_below_a_symlink_is_unchanged() {
        let mut looks = Vec::new();
        let batch = Batch {
            paths: vec![rel("a/b"), rel("c")],
            trees: vec![rel("a/t")],
            ..Batch::default()
        };
        let (out, below) = screen_batch(&batch, &mut Screen::new(fake(&[], &mut looks)));
        assert_eq!(out, batch);
        assert!(below.is_empty());
        let (full, below) = screen_batch(&Batch::full(), &mut Screen::new(|_: &[u8]| link("/")));
        assert_eq!(full, Batch::full());
        assert!(below.is_empty());
    }

    #[test]
    fn many_paths_below_one_symlink_make_one_line() {
        let below: Vec<Below> = (0..5)
            .map(|i| Below {
                path: rel(&format!("d/{i}")),
                link: rel("d"),
                points_to: rel("/x"),
            })
            .collect();
        assert_eq!(
            describe(&below),
            ["d is a symlink to /x, not a directory: pushed as a symlink; not pushed below it: d/0, d/1, d/2, and 2 more"]
        );
    }
}
