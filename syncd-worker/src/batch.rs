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

    /// The periodic whole-tree push, with nothing else queued.
    pub fn periodic() -> Batch {
        Batch {
            full: true,
            periodic: true,
            ..Batch::default()
        }
    }
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
        ];
        for (batch, mode, whole, sent) in cases {
            assert_eq!(batch.whole_tree(mode), whole, "{batch:?} {mode:?}");
            assert_eq!(batch.clone().in_mode(mode), sent, "{batch:?} {mode:?}");
        }
    }
}
