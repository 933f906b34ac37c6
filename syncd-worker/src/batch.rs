//! What one push to one target must do: the queue's output and the rsync planner's input.
//! Paths are relative to the sync's source, as bytes (Linux names need not be UTF-8),
//! without a leading or trailing slash, `/`-separated. Pure data.

/// A path relative to the source root, e.g. `b"a/b/c.txt"`. Never empty: the root itself
/// is only ever pushed by a full push.
pub type RelPath = Vec<u8>;

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

    /// The periodic whole-tree push, with nothing else queued.
    pub fn periodic() -> Batch {
        Batch {
            full: true,
            periodic: true,
            ..Batch::default()
        }
    }
}
