//! What one push to one target must do: the queue's output and the rsync planner's input.
//! Paths are relative to the sync's source, as bytes (Linux names need not be UTF-8),
//! without a leading or trailing slash, `/`-separated. Pure data.

use crate::config::Mode;

/// A path relative to the source root, e.g. `b"a/b/c.txt"`. Never empty: the root itself
/// is only ever pushed by a full push.
pub type RelPath = Vec<u8>;

/// Whether every push of a sync in `mode` sends the whole tree (tree mode: its changes
/// only say that the tree changed, so the queue keeps one full push for them).
pub fn always_whole(mode: Mode) -> bool {
    mode == Mode::Tree
}

/// The work of one push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Push the whole tree (`SRC/` recursively, deleting what the source no longer has).
    /// When set (and not `periodic`), `paths` and `trees` are empty: the full push covers
    /// them.
    pub full: bool,
    /// The full push is the periodic one: `full_sync.exclude` applies on top of the
    /// sync's `exclude`. `paths` and `trees` may then hold changes queued with it; those
    /// the periodic excludes leave out are pushed beside it. Only with `full`.
    pub periodic: bool,
    /// Paths pushed as they are at push time, not recursively: a file, a symlink, a
    /// directory's own attributes. A path that no longer exists is deleted on the target
    /// (a directory with everything below it). Sorted, no duplicates.
    pub paths: Vec<RelPath>,
    /// Directories pushed whole, recursively, deleting extraneous entries inside them (a
    /// directory created or moved in). No path in `paths` lies below one of these. Sorted.
    /// One that is no longer a directory at push time is pushed as a path instead.
    pub trees: Vec<RelPath>,
    /// Hints, not work: directories of `trees` that were renamed inside the source, each
    /// with where the target may still hold their content (see [`Move`]). A push may
    /// seed such a tree from that copy before it deletes the old path
    /// ([`Batch::seeds`]); without them it pushes the same, sending the data again.
    /// Sorted by `to`, at most one per `to`. Not kept in the fail log.
    pub moves: Vec<Move>,
}

/// A directory renamed inside the source: it is at `to` now, and the target's copy of
/// `from` (not yet deleted there) held its content at the last push. A basis for the
/// receiver, never a decision: rsync still checks every file against the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    pub from: RelPath,
    pub to: RelPath,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        !self.full && self.paths.is_empty() && self.trees.is_empty()
    }

    /// Number of entries, for logs and status (a full push counts as 1).
    pub fn len(&self) -> usize {
        usize::from(self.full) + self.paths.len() + self.trees.len()
    }

    /// A batch that pushes everything.
    pub fn full() -> Batch {
        Batch {
            full: true,
            ..Batch::default()
        }
    }

    /// Whether a push of this batch in `mode` sends the whole tree: a full batch, or any
    /// batch of a tree-mode sync (whose changes only say that the tree changed). The one
    /// place tree mode is decided: the engine, `--once`, the push and the planner ask here.
    pub fn whole_tree(&self, mode: Mode) -> bool {
        self.full || (always_whole(mode) && !self.is_empty())
    }

    /// What a push sends for this batch in `mode`: the whole tree in place of any batch of
    /// a tree-mode sync ([`Batch::whole_tree`]); any other batch as it is.
    pub fn in_mode(self, mode: Mode) -> Batch {
        if self.whole_tree(mode) && !self.full {
            Batch::full()
        } else {
            self
        }
    }

    /// The moves a push may seed from the target's old copy before its runs: those whose
    /// `to` this batch pushes whole (a tree) when it is not a whole-tree push, neither
    /// path inside the other, and whose `from` lies inside no other seeded `to` (a seed
    /// rewrites its `to`, so seeds never read what another one writes and may run in any
    /// order). Pure.
    pub fn seeds(&self) -> Vec<Move> {
        if self.full {
            return Vec::new();
        }
        let candidates: Vec<&Move> = self
            .moves
            .iter()
            .filter(|m| self.trees.binary_search(&m.to).is_ok())
            .filter(|m| !is_within(&m.from, &m.to) && !is_within(&m.to, &m.from))
            .collect();
        candidates
            .iter()
            .filter(|m| !candidates.iter().any(|o| is_within(&m.from, &o.to)))
            .map(|m| (*m).clone())
            .collect()
    }

    /// The periodic whole-tree push, with nothing else queued.
    pub fn periodic() -> Batch {
        Batch {
            full: true,
            periodic: true,
            ..Batch::default()
        }
    }
}

/// Is `path` equal to `dir` or below it?
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_mode_pushes_whole() {
        let paths = Batch {
            paths: vec![b"a".to_vec()],
            ..Batch::default()
        };
        // (batch, mode, whole tree?, what is sent)
        let cases = [
            (Batch::default(), Mode::Files, false, Batch::default()),
            (Batch::default(), Mode::Tree, false, Batch::default()),
            (paths.clone(), Mode::Files, false, paths.clone()),
            (paths.clone(), Mode::Tree, true, Batch::full()),
            (Batch::full(), Mode::Files, true, Batch::full()),
            (Batch::periodic(), Mode::Tree, true, Batch::periodic()),
            (
                moved(&[], &["d2"], &[("d1", "d2")]),
                Mode::Tree,
                true,
                Batch::full(),
            ),
        ];
        for (batch, mode, whole, sent) in cases {
            assert_eq!(batch.whole_tree(mode), whole, "{batch:?} {mode:?}");
            assert_eq!(batch.clone().in_mode(mode), sent, "{batch:?} {mode:?}");
        }
    }

    fn moved(paths: &[&str], trees: &[&str], moves: &[(&str, &str)]) -> Batch {
        let v = |l: &[&str]| -> Vec<RelPath> { l.iter().map(|s| s.as_bytes().to_vec()).collect() };
        Batch {
            paths: v(paths),
            trees: v(trees),
            moves: moves
                .iter()
                .map(|(f, t)| Move {
                    from: f.as_bytes().to_vec(),
                    to: t.as_bytes().to_vec(),
                })
                .collect(),
            ..Batch::default()
        }
    }

    #[test]
    fn which_moves_a_push_may_seed() {
        // (case, batch, the `to`s seeded)
        let cases: Vec<(&str, Batch, Vec<&str>)> = vec![
            (
                "a rename",
                moved(&["d1"], &["d2"], &[("d1", "d2")]),
                vec!["d2"],
            ),
            (
                "into another parent",
                moved(&["a/d1"], &["b/c/d2"], &[("a/d1", "b/c/d2")]),
                vec!["b/c/d2"],
            ),
            (
                "to is not pushed whole (held, or no longer a directory)",
                moved(&["d1", "d2"], &[], &[("d1", "d2")]),
                vec![],
            ),
            (
                "a whole-tree push seeds nothing",
                Batch {
                    full: true,
                    ..moved(&[], &["d2"], &[("d1", "d2")])
                },
                vec![],
            ),
            (
                "from inside to",
                moved(&[], &["d"], &[("d/x", "d")]),
                vec![],
            ),
            (
                "to inside from",
                moved(&[], &["d/x"], &[("d", "d/x")]),
                vec![],
            ),
            (
                "a from inside another seeded to is not seeded",
                moved(&["a"], &["b", "c"], &[("a", "b"), ("b/x", "c")]),
                vec!["b"],
            ),
            (
                "a common prefix is not a parent",
                moved(&["d"], &["d2", "e"], &[("d", "d2"), ("d2x", "e")]),
                vec!["d2", "e"],
            ),
        ];
        for (name, batch, want) in cases {
            let got: Vec<String> = batch
                .seeds()
                .iter()
                .map(|m| String::from_utf8_lossy(&m.to).into_owned())
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
