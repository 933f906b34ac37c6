//! The paths of one target that keep failing on their own (safety rule "a failure stays
//! local"). Pure: no I/O, no clock — `now` is passed in.
//!
//! A push that ends in rsync exit 23 with every failing path named
//! ([`crate::rsync::failures`]) and each of them part of the batch (any path is part of
//! a whole-tree push) is split by [`split`]: the rest of the batch counts as pushed, the
//! failing paths are kept here, each with its own backoff (`retry.min_interval`
//! doubling to `retry.max_interval`) and the reason rsync gave. The target's own backoff
//! is not touched: its other changes go out on their normal schedule. A failing path
//! waits here, not in the queue: when its time comes, [`Failing::due`] hands it back to
//! the queue (marked as handed back) and it goes with the next batch; until then
//! [`Failing::hold`] takes it (and what lies below a directory that could not be
//! created) out of any batch a new change put it in. A push that carries it removes it
//! from the list when it succeeds ([`Failing::pushed`]), or doubles its backoff when it
//! fails again.
//!
//! What is kept here is owed to the target: the fail log holds it too
//! ([`Failing::owed`]), and the status shows it ([`Failing::summary`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::batch::{Batch, RelPath};
use crate::deadline::{after, double};
use crate::queue::Change;
use crate::status::{FailingPath, FailingPaths};

/// A path that failed in a push, relative to the source root, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPath {
    pub path: RelPath,
    /// Everything below it failed too (a directory the target could not create).
    pub below_too: bool,
    /// rsync's reason in words: "the target cannot create it: Permission denied (13)".
    pub reason: String,
}

/// A failed push split into what went and what did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The part of the batch the target has (hooks fire for it).
    pub pushed: Batch,
    /// The failing paths: (path, push it whole, reason).
    pub failed: Vec<(RelPath, bool, String)>,
}

/// Split `batch` by the paths that failed in it, or None when it cannot be split: no
/// failure, or a failure that is not part of the batch (neither a listed path, nor inside
/// a directory pushed whole, nor a parent rsync created for one). A whole-tree push holds
/// every path: it went, but for the failing paths (rsync deleted and sent everything
/// else: measured, rsync 3.5.0, with a receiver's failed mkdir and a sender's failed
/// open in one `-r --delete` run), so it counts as done and they wait on their own. Were
/// it retried whole instead, the full push pending in the queue would cover every later
/// change, and the whole target would wait for the failing path's backoff.
pub fn split(batch: &Batch, failed: &[FailedPath]) -> Option<Split> {
    if failed.is_empty() {
        return None;
    }
    if batch.full {
        let mut out: BTreeMap<RelPath, (bool, String)> = BTreeMap::new();
        for f in failed {
            let e = out
                .entry(f.path.clone())
                .or_insert_with(|| (f.below_too, f.reason.clone()));
            e.0 |= f.below_too;
        }
        return Some(Split {
            pushed: batch.clone(),
            failed: out.into_iter().map(|(p, (w, r))| (p, w, r)).collect(),
        });
    }
    let listed = |p: &[u8]| {
        batch
            .paths
            .binary_search_by(|x| x.as_slice().cmp(p))
            .is_ok()
    };
    let in_tree = |p: &[u8]| batch.trees.iter().any(|t| t == p || is_below(p, t));
    let parent = |p: &[u8]| {
        batch
            .paths
            .iter()
            .chain(&batch.trees)
            .any(|x| is_below(x, p))
    };
    let mut out: BTreeMap<RelPath, (bool, String)> = BTreeMap::new();
    for f in failed {
        if !(listed(&f.path) || in_tree(&f.path) || parent(&f.path)) {
            return None;
        }
        let whole = f.below_too || in_tree(&f.path);
        let e = out
            .entry(f.path.clone())
            .or_insert_with(|| (whole, f.reason.clone()));
        e.0 |= whole;
    }
    // Below a directory that could not be created, nothing went either.
    let blocked = |p: &[u8]| {
        out.contains_key(p) || parents(p).any(|d| out.get(d).is_some_and(|(whole, _)| *whole))
    };
    let pushed = Batch {
        full: false,
        periodic: false,
        paths: batch
            .paths
            .iter()
            .filter(|p| !blocked(p))
            .cloned()
            .collect(),
        trees: batch
            .trees
            .iter()
            .filter(|p| !blocked(p))
            .cloned()
            .collect(),
        moves: Vec::new(),
    };
    Some(Split {
        pushed,
        failed: out.into_iter().map(|(p, (w, r))| (p, w, r)).collect(),
    })
}

/// The parent directories of `p`: `a/b/c` → `a`, `a/b`.
fn parents(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &p[..i])
}

/// Is `p` strictly below `dir`?
fn is_below(p: &[u8], dir: &[u8]) -> bool {
    p.len() > dir.len() + 1 && p.starts_with(dir) && p[dir.len()] == b'/'
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Push it whole when it is tried again.
    tree: bool,
    reason: String,
    backoff: Duration,
    retry_at: Instant,
    /// Handed back to the queue for its retry, not yet reported on.
    requeued: bool,
}

/// The failing paths of one target.
#[derive(Debug, Clone, Default)]
pub struct Failing {
    entries: BTreeMap<RelPath, Entry>,
}

impl Failing {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// These paths failed again (or for the first time) at `now`: each waits its own
    /// backoff, `min` doubling to `max`.
    pub fn record(
        &mut self,
        failed: Vec<(RelPath, bool, String)>,
        now: Instant,
        min: Duration,
        max: Duration,
    ) {
        for (path, tree, reason) in failed {
            let e = self.entries.entry(path).or_insert(Entry {
                tree,
                reason: String::new(),
                backoff: Duration::ZERO,
                retry_at: now,
                requeued: false,
            });
            e.tree |= tree;
            e.reason = reason;
            e.backoff = double(e.backoff, min, max);
            e.retry_at = after(now, e.backoff);
            e.requeued = false;
        }
    }

    /// `batch` reached the target at `now`: what it carried leaves the list (all of it,
    /// for a whole-tree push). Returns whether any path left. A path handed back for its
    /// retry that the batch did not carry was absorbed by the queue (a parent deleted,
    /// `Gone`, dropped it): it is due again at once, so it never stays listed unpushed.
    pub fn pushed(&mut self, batch: &Batch, now: Instant) -> bool {
        let before = self.entries.len();
        if batch.full {
            self.entries.clear();
        } else {
            self.entries.retain(|p, _| {
                !(batch.paths.binary_search(p).is_ok()
                    || batch.trees.iter().any(|t| t == p || is_below(p, t)))
            });
        }
        for e in self.entries.values_mut().filter(|e| e.requeued) {
            e.requeued = false;
            e.retry_at = now;
        }
        self.entries.len() != before
    }

    /// The failing paths whose retry time has come, as changes for the queue; they are
    /// marked as handed back until a push reports on them.
    pub fn due(&mut self, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        for (p, e) in &mut self.entries {
            if !e.requeued && e.retry_at <= now {
                e.requeued = true;
                out.push(if e.tree {
                    Change::Tree(p.clone())
                } else {
                    Change::Path(p.clone())
                });
            }
        }
        out
    }

    /// When the next failing path is due, if any waits.
    pub fn deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.requeued)
            .map(|e| e.retry_at)
            .min()
    }

    /// Every waiting path is due now (an operator asked to push now).
    pub fn retry_now(&mut self, now: Instant) {
        for e in self.entries.values_mut().filter(|e| !e.requeued) {
            e.retry_at = e.retry_at.min(now);
        }
    }

    /// `batch` without what waits here for its own retry: a waiting path, and whatever
    /// lies below a waiting directory pushed whole. A waiting path queued now as a
    /// directory to push whole is tried again whole.
    pub fn hold(&mut self, mut batch: Batch) -> Batch {
        if batch.full {
            return batch;
        }
        let waiting = |entries: &BTreeMap<RelPath, Entry>, p: &[u8]| {
            entries.get(p).is_some_and(|e| !e.requeued)
                || parents(p).any(|d| entries.get(d).is_some_and(|e| !e.requeued && e.tree))
        };
        batch.paths.retain(|p| !waiting(&self.entries, p));
        let mut trees = Vec::with_capacity(batch.trees.len());
        for t in std::mem::take(&mut batch.trees) {
            if waiting(&self.entries, &t) {
                if let Some(e) = self.entries.get_mut(&t) {
                    e.tree = true;
                }
            } else {
                trees.push(t);
            }
        }
        batch.trees = trees;
        batch
    }

    /// What is owed to the target for the fail log: every failing path.
    pub fn owed(&self) -> Batch {
        let mut b = Batch::default();
        for (p, e) in &self.entries {
            if e.tree {
                b.trees.push(p.clone());
            } else {
                b.paths.push(p.clone());
            }
        }
        b
    }

    /// For the status: how many paths fail, and the first `n` (in path order) with their
    /// reasons; None when none fails.
    pub fn summary(&self, n: usize) -> Option<FailingPaths> {
        (!self.is_empty()).then(|| FailingPaths {
            count: self.entries.len() as u64,
            examples: self
                .entries
                .iter()
                .take(n)
                .map(|(p, e)| FailingPath {
                    path: String::from_utf8_lossy(p).into_owned(),
                    reason: e.reason.clone(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        s.as_bytes().to_vec()
    }

    fn batch(paths: &[&str], trees: &[&str]) -> Batch {
        Batch {
            paths: paths.iter().map(|s| p(s)).collect(),
            trees: trees.iter().map(|s| p(s)).collect(),
            ..Batch::default()
        }
    }

    fn failed(path: &str, below_too: bool) -> FailedPath {
        FailedPath {
            path: p(path),
            below_too,
            reason: format!("why {path}"),
        }
    }

    fn strs(v: &[RelPath]) -> Vec<String> {
        v.iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect()
    }

    #[test]
    fn which_paths_go_back() {
        type Want = Option<(
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<(&'static str, bool)>,
        )>;
        // (batch paths, batch trees, failures, want (pushed paths, pushed trees, failed))
        let rows: Vec<(&str, Batch, Vec<FailedPath>, Want)> = vec![
            (
                "one listed path fails, the rest went",
                batch(&["a/b.txt", "a/ok.txt", "c"], &[]),
                vec![failed("a/b.txt", false)],
                Some((vec!["a/ok.txt", "c"], vec![], vec![("a/b.txt", false)])),
            ),
            (
                "a file inside a tree is tried again whole (a file becomes a path at push time)",
                batch(&["x"], &["d"]),
                vec![failed("d/sub/f", false)],
                Some((vec!["x"], vec!["d"], vec![("d/sub/f", true)])),
            ),
            (
                "a parent rsync created for a listed path belongs to the batch",
                batch(&["imm/f", "z"], &[]),
                vec![failed("imm", false), failed("imm/f", false)],
                Some((vec!["z"], vec![], vec![("imm", false), ("imm/f", false)])),
            ),
            (
                "below a directory that could not be created nothing went",
                batch(&["n", "n/w", "n/x/y", "o"], &["n/t"]),
                vec![failed("n", true)],
                Some((vec!["o"], vec![], vec![("n", true)])),
            ),
            (
                "a path the batch does not hold: not split",
                batch(&["a"], &[]),
                vec![failed("b", false)],
                None,
            ),
            (
                "a sibling with a common prefix is not inside",
                batch(&["x"], &["d"]),
                vec![failed("d2/f", false)],
                None,
            ),
            (
                "a whole-tree push went but for what failed in it",
                Batch::full(),
                vec![failed("a", false), failed("d", true)],
                Some((vec![], vec![], vec![("a", false), ("d", true)])),
            ),
            ("nothing named: not split", batch(&["a"], &[]), vec![], None),
        ];
        for (name, b, f, want) in rows {
            let got = split(&b, &f).map(|s| {
                (
                    strs(&s.pushed.paths),
                    strs(&s.pushed.trees),
                    s.failed
                        .iter()
                        .map(|(p, w, _)| (String::from_utf8_lossy(p).into_owned(), *w))
                        .collect::<Vec<_>>(),
                )
            });
            let want = want.map(|(ps, ts, fs)| {
                (
                    ps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    ts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    fs.iter()
                        .map(|(s, w)| (s.to_string(), *w))
                        .collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn each_path_has_its_own_backoff() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut f = Failing::default();
        f.record(vec![(p("a"), false, "r".into())], t0, min, max);
        // (at, what happens, want due at that moment, want next deadline)
        assert_eq!(f.deadline(), Some(s(1)));
        assert!(f.due(t0).is_empty());
        assert_eq!(f.due(s(1)), vec![Change::Path(p("a"))]);
        assert_eq!(f.deadline(), None, "handed back: no deadline of its own");
        // It failed again: 2 s; a second path fails for the first time: 1 s.
        f.record(
            vec![(p("a"), false, "r".into()), (p("b"), true, "r".into())],
            s(2),
            min,
            max,
        );
        assert_eq!(f.deadline(), Some(s(3)));
        assert_eq!(f.due(s(3)), vec![Change::Tree(p("b"))]);
        assert_eq!(f.deadline(), Some(s(4)));
        // Doubling stops at max: a fails at 4 (4 s), at 8 (5 s, not 8), at 13 (5 s).
        for (at, want_next) in [(4, 8), (8, 13), (13, 18)] {
            assert_eq!(f.due(s(at)), vec![Change::Path(p("a"))]);
            f.record(vec![(p("a"), false, "r".into())], s(at), min, max);
            assert_eq!(
                f.deadline(),
                Some(s(want_next)),
                "after the failure at {at}"
            );
        }
        f.retry_now(s(14));
        assert_eq!(f.deadline(), Some(s(14)));
    }

    #[test]
    fn a_path_that_succeeds_leaves_the_list() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let t0 = Instant::now();
        let mut f = Failing::default();
        f.record(
            vec![
                (p("a"), false, "r".into()),
                (p("d/x"), false, "r".into()),
                (p("e"), false, "r".into()),
            ],
            t0,
            min,
            max,
        );
        f.pushed(&batch(&["a"], &["d"]), t0);
        assert_eq!(strs(&f.owed().paths), ["e"]);
        // Handed back, but the queue dropped it (its parent was deleted, `Gone`): the
        // push that went without it leaves it due again at once, not listed forever.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(f.due(later), vec![Change::Path(p("e"))]);
        assert_eq!(f.deadline(), None);
        f.pushed(&batch(&["d"], &[]), later);
        assert_eq!(f.deadline(), Some(later));
        assert_eq!(f.due(later), vec![Change::Path(p("e"))]);
        let summary = f.summary(3).expect("e fails");
        assert_eq!((summary.count, summary.examples[0].path.as_str()), (1, "e"));
        f.pushed(&Batch::full(), later);
        assert!(f.is_empty());
        assert_eq!(f.summary(3), None);
    }

    #[test]
    fn waiting_paths_are_held_out_of_other_batches() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let t0 = Instant::now();
        let mut f = Failing::default();
        f.record(
            vec![(p("a"), false, "r".into()), (p("n"), true, "r".into())],
            t0,
            min,
            max,
        );
        let held = f.hold(batch(&["a", "b", "n/w", "nn"], &["a2", "n/t"]));
        assert_eq!(strs(&held.paths), ["b", "nn"]);
        assert_eq!(strs(&held.trees), ["a2"]);
        // A waiting path queued again as a directory is tried again whole.
        let held = f.hold(batch(&[], &["a"]));
        assert!(held.trees.is_empty());
        assert_eq!(strs(&f.owed().trees), ["a", "n"]);
        // Once handed back for its retry, it goes.
        f.due(t0 + min);
        let held = f.hold(batch(&["a", "n/w"], &[]));
        assert_eq!(strs(&held.paths), ["a", "n/w"]);
        assert_eq!(f.hold(Batch::full()), Batch::full());
    }
}
