//! The coalescing queue of one target: changes in, batches out. Pure — no I/O, no clock:
//! every call that needs the time takes `now` as an argument, so the behaviour is tested
//! with plain values.
//!
//! What it keeps: one entry per path (the latest thing to do with it), whether a
//! whole-tree push is pending, and when the oldest and newest pending changes arrived.
//! Rules:
//! * a directory pushed whole (`Tree`) covers everything below it: children already queued
//!   are dropped and later ones are not added;
//! * a path that is gone (`Gone`) drops everything queued below it (all of it is gone too);
//! * a pending full push covers everything — except the periodic one (`PeriodicFull`),
//!   which skips `full_sync.exclude` too: changes queued with it are kept and pushed
//!   beside it, and a periodic full merged with any other full push becomes an ordinary
//!   one (the other needs the sync's own excludes only);
//! * past `max_queue` entries the queue collapses into one (ordinary) full push (bounded
//!   memory).
//!
//! Moves (`Moved`): a directory renamed inside the source is its old path gone and its
//! new one pushed whole, plus a hint kept beside the entries: `to` was at `from`, so the
//! target's copy of `from` can seed `to` (see [`crate::batch::Move`], used by the push).
//! A hint lives only while `to` is queued as a tree and no full push covers everything:
//! `Gone` of `to` or above it, a `Tree` above it, a full push and a collapse drop it. A
//! move of a path inside a hinted `to` takes its basis from that hint's `from` (`mv a b;
//! mv b c` seeds `c` from the target's `a`). Hints are never needed for correctness:
//! dropping one only means the data is sent again.
//!
//! A push reads the tree as it is at push time, so the queue only has to remember *which*
//! paths changed, never what they contained: over-listing is harmless, missing one is not.
//!
//! When: [`ENOUGH_PATHS`] written paths (a `Path` change each, not a deletion) are due at
//! once when `delay` is at most [`BURST_DELAY_MAX`] (the default; a longer `delay` is an
//! operator's choice to batch: kept, without the stretch): a copy of many files starts
//! moving while it runs instead of after it (a run's fixed cost is well shared out by
//! then; `bench/run`'s burst row, 2,000 files of 10–100 KiB: 1.07 → 0.88× the one-rsync
//! floor, median of 8 A/B pairs, with the two halves of [`crate::pipeline::share`]).
//! Deletions do not count: they send no data, and an `rm -r` goes best in one run once it
//! ended. Otherwise pending paths are due once the oldest of them is `delay` old (leading
//! edge), however many arrive after it, the window stretched by [`PER_PATH`] for each path
//! pending, by at most [`STRETCH_MAX`] (and never past `max_delay`): under a stream of
//! r paths/s it settles at `delay / (1 − r·PER_PATH)` — with the default 50 ms, 59 ms at
//! 200 paths/s, 80 ms at 500/s, 200 ms from 1,000/s on — only while the stream flows
//! (once no change came for [`STREAM_GAP`] the batch goes at `delay`: an `rm` of 1,000
//! files that took 40 ms went at 200 ms, measured, for nothing), and by no more than leaves the
//! last push's time within [`LATENCY_AIM`] (280 ms): a change's wait is about the window
//! plus the push that carries it, and a push's time is measured, not guessed (rsync to
//! a daemon on 127.0.0.1, 200 paths: 110–170 ms on a loaded 2-core box, ~40 ms of it the
//! daemon's Nagle meeting our delayed ACK, which only the daemon's `socket options =
//! TCP_NODELAY` removes). So a fast target gets the whole stretch (fewer runs, less
//! CPU) and a slow one keeps its latency. Every rsync run costs a fixed
//! ~10 ms of CPU (exec, dynamic linking, OpenSSL start-up, the daemon handshake:
//! measured with perf, rsync 3.5.0) besides ~40 µs per path, so a busy stream is pushed
//! in fewer, larger runs while a trickle still goes at once: measured at 1,000 files/s,
//! runs went from 6.7/s to ~4.5/s. A target starts a second push beside one in flight
//! only once that one has run longer than the longest window (see [`crate::pipeline`]),
//! so during a stream of short pushes what arrives while a push runs becomes the next
//! batch, due once its window is over (at once when the push took longer): batches grow
//! with the push time instead of waiting for the stream to pause. (A settle window counted from the newest change would hold the first
//! push back for `max_delay` during any burst longer than `delay`, measured: 1 s lost on
//! a 2,000-file copy that took 1.1 s.) A batch holding a directory pushed whole or a
//! full push keeps the settle window (due once no change arrived for `delay`, at the
//! latest `max_delay` after the oldest): rsync recurses into it with the excluded paths
//! found by a walk just before, so a file created between that walk and rsync's scan
//! under an excluded name would leak to the target; pushing a tree still being filled
//! widens that window.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::batch::{is_within, Batch, Move, RelPath};
use crate::deadline::after;

/// How much each pending path stretches the batching window of a paths-only batch (see
/// the module doc).
pub const PER_PATH: Duration = Duration::from_micros(750);

/// The most the window of a paths-only batch is stretched past `delay`.
pub const STRETCH_MAX: Duration = Duration::from_millis(150);

/// A pause in the changes this long ends a stream: the stretch stops (see the module
/// doc). Three times the watcher's read pacing (`watch::READ_GAP`), so a stream read in
/// paced clumps is still one stream.
pub const STREAM_GAP: Duration = Duration::from_millis(30);

/// What a change in a stream should take at most, its wait in the queue and the push
/// that carries it together: the stretch gives way to it (see the module doc).
pub const LATENCY_AIM: Duration = Duration::from_millis(280);

/// This many written paths (deletions not counted) in a paths-only batch make it due at
/// once (where `delay` ≤ [`BURST_DELAY_MAX`]) and let it start beside a push in flight;
/// a push carrying this many counts as a long one (see [`crate::pipeline`]): its run's
/// fixed cost is shared out enough (see the module doc).
pub const ENOUGH_PATHS: usize = 256;

/// The longest `delay` that [`ENOUGH_PATHS`] written paths make due at once (the
/// default's): a longer one is an operator's choice to batch, and is kept.
pub const BURST_DELAY_MAX: Duration = Duration::from_millis(50);

/// The batching window of `n` pending paths: `delay` stretched by [`PER_PATH`] each, by
/// at most [`STRETCH_MAX`], and by no more than leaves the last push's time (`push`)
/// within [`LATENCY_AIM`].
fn window(delay: Duration, n: usize, push: Duration) -> Duration {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    let room = LATENCY_AIM.saturating_sub(delay.saturating_add(push));
    delay.saturating_add(PER_PATH.saturating_mul(n).min(STRETCH_MAX).min(room))
}

/// One thing that happened in the source tree, as the watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Push this path's current state, not recursively (file written, attributes changed,
    /// symlink or empty file created). If it no longer exists it is deleted on the target.
    Path(RelPath),
    /// Push this directory with everything below it (created, moved in, rescanned).
    Tree(RelPath),
    /// This path (and all below it) was deleted or moved away.
    Gone(RelPath),
    /// A directory renamed inside the tree: `from` is gone, `to` is pushed whole, and the
    /// target's copy of `from` may seed `to` (a hint, see the module doc).
    Moved { from: RelPath, to: RelPath },
    /// Push the whole tree (events were lost, a queue collapsed, a catch-up, an operator's
    /// `sync --full`, the initial sync): the sync's `exclude` applies.
    Full,
    /// The periodic whole-tree push (`full_sync.interval`): `full_sync.exclude` applies
    /// on top of `exclude`.
    PeriodicFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Path,
    Tree,
}

/// Timing and size limits of a queue (from the sync's config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Batching window: due once the oldest pending change is this old (a paths-only
    /// batch's stretched by its size, see the module doc).
    pub delay: Duration,
    /// Due at the latest this long after the oldest pending change (only bites when it
    /// is shorter than `delay`).
    pub max_delay: Duration,
    /// Most entries before collapsing into a full push.
    pub max_queue: usize,
}

#[derive(Debug, Clone)]
pub struct Queue {
    limits: Limits,
    entries: BTreeMap<RelPath, Kind>,
    full: bool,
    /// The pending full push is the periodic one only (`full` is set; `entries` may hold
    /// changes it would leave out).
    periodic: bool,
    /// Arrival of the oldest change not yet taken (for `max_delay` and lag).
    oldest: Option<Instant>,
    /// Arrival of the newest change not yet taken (for logs).
    newest: Option<Instant>,
    /// How many times the queue collapsed into a full push because it was too large.
    collapses: u64,
    /// Asked to push what is pending without waiting for the settle window.
    urgent: bool,
    /// A `Tree` was queued since the last take (it may have been dropped since: then the
    /// settle window applies needlessly, never wrongly).
    has_tree: bool,
    /// Move hints: a queued tree (`to`) → where the target may still hold its content.
    moves: BTreeMap<RelPath, RelPath>,
    /// How long the last push that went took (it bounds the stretch: [`LATENCY_AIM`]).
    push_time: Duration,
    /// Entries added by a `Path` change (something written, not deleted) since the last
    /// take: at most, as one can be deleted or covered since (see [`Queue::enough`]).
    written: usize,
}

impl Queue {
    pub fn new(limits: Limits) -> Queue {
        Queue {
            limits,
            entries: BTreeMap::new(),
            full: false,
            periodic: false,
            oldest: None,
            newest: None,
            collapses: 0,
            urgent: false,
            has_tree: false,
            moves: BTreeMap::new(),
            push_time: Duration::ZERO,
            written: 0,
        }
    }

    /// A push of this queue's changes went and took `took` (rsync runs included): the
    /// next windows leave room for one as long.
    pub fn note_push_time(&mut self, took: Duration) {
        self.push_time = took;
    }

    /// Take new limits (a configuration reload), keeping everything pending. A smaller
    /// `max_queue` than the entries held collapses the queue into a full push at once.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        if self.entries.len() > self.limits.max_queue {
            self.collapse();
        }
    }

    /// Too many entries: one ordinary full push instead.
    fn collapse(&mut self) {
        self.entries.clear();
        self.moves.clear();
        self.full = true;
        self.periodic = false;
        self.collapses += 1;
    }

    /// Record one change that happened at `now`.
    pub fn push(&mut self, change: Change, now: Instant) {
        self.touch(now, now);
        self.apply(change);
    }

    /// Put back the work of a push that failed, whose oldest change arrived at `since`.
    /// Newer changes queued meanwhile are kept; the result covers both.
    pub fn restore(&mut self, batch: Batch, since: Instant) {
        if batch.is_empty() {
            return;
        }
        let newest = self.newest.unwrap_or(since).max(since);
        self.touch(since, newest);
        if batch.full {
            self.apply(if batch.periodic {
                Change::PeriodicFull
            } else {
                Change::Full
            });
        }
        for p in batch.trees {
            self.apply(Change::Tree(p));
        }
        for p in batch.paths {
            // Not `Gone`: a restored path must not drop newer entries below it.
            self.apply(Change::Path(p));
        }
        for m in batch.moves {
            // A newer hint for the same tree wins; a tree no longer queued takes none.
            if self.entries.get(&m.to) == Some(&Kind::Tree) {
                self.moves.entry(m.to).or_insert(m.from);
            }
        }
    }

    fn touch(&mut self, oldest: Instant, newest: Instant) {
        self.oldest = Some(self.oldest.map_or(oldest, |o| o.min(oldest)));
        self.newest = Some(self.newest.map_or(newest, |n| n.max(newest)));
    }

    fn apply(&mut self, change: Change) {
        if self.full && !self.periodic {
            return;
        }
        match change {
            Change::Full => {
                self.entries.clear();
                self.moves.clear();
                self.full = true;
                self.periodic = false;
            }
            Change::PeriodicFull => {
                // Entries stay: the periodic push may leave them out.
                if !self.full {
                    self.full = true;
                    self.periodic = true;
                }
            }
            Change::Path(p) => {
                if !self.covered(&p) {
                    if let Entry::Vacant(new) = self.entries.entry(p) {
                        new.insert(Kind::Path);
                        self.written += 1;
                    }
                }
            }
            Change::Tree(p) => {
                if !self.covered(&p) {
                    self.drop_below(&p);
                    self.entries.insert(p, Kind::Tree);
                    self.has_tree = true;
                }
            }
            Change::Gone(p) => {
                self.moves.retain(|to, _| !is_within(to, &p));
                if !self.covered(&p) {
                    self.drop_below(&p);
                    // A pending Tree for p stays a Tree: the push looks at p again and
                    // pushes what it is then (deleted when missing, see push.rs).
                    self.entries.entry(p).or_insert(Kind::Path);
                }
            }
            Change::Moved { from, to } => {
                let basis = self.basis_of(&from);
                self.apply(Change::Gone(from));
                self.apply(Change::Tree(to.clone()));
                if self.entries.get(&to) == Some(&Kind::Tree) && !self.full {
                    self.moves.insert(to, basis);
                }
                return;
            }
        }
        if self.entries.len() > self.limits.max_queue {
            self.collapse();
        }
    }

    /// Where the target holds what is at `from` now: inside a hinted tree, the same
    /// place under that tree's old path; otherwise `from` itself.
    fn basis_of(&self, from: &[u8]) -> RelPath {
        for (to, old) in &self.moves {
            if let Some(rest) = from.strip_prefix(to.as_slice()) {
                if rest.is_empty() || rest.first() == Some(&b'/') {
                    return [old.as_slice(), rest].concat();
                }
            }
        }
        from.to_vec()
    }

    /// Is `p` inside a directory already queued to be pushed whole?
    fn covered(&self, p: &[u8]) -> bool {
        p.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.entries.get(&p[..i]) == Some(&Kind::Tree))
    }

    /// Remove every entry strictly below `p` (`p/...`).
    fn drop_below(&mut self, p: &[u8]) {
        let mut lo = p.to_vec();
        lo.push(b'/');
        // '0' is the byte after '/', so [p/, p0) is exactly the paths below p.
        let mut hi = p.to_vec();
        hi.push(b'/' + 1);
        let below: Vec<RelPath> = self
            .entries
            .range(lo.clone()..hi.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.entries.remove(&k);
        }
        let hinted: Vec<RelPath> = self.moves.range(lo..hi).map(|(k, _)| k.clone()).collect();
        for k in hinted {
            self.moves.remove(&k);
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.full && self.entries.is_empty()
    }

    /// Pending entries (a pending full push counts as 1).
    pub fn len(&self) -> usize {
        usize::from(self.full) + self.entries.len()
    }

    /// A paths-only batch of at least [`ENOUGH_PATHS`] paths written (not deleted: a
    /// deletion sends no data, and an `rm -r` is best one run once it ended) is pending.
    pub fn enough(&self) -> bool {
        !self.full && !self.has_tree && self.written.min(self.entries.len()) >= ENOUGH_PATHS
    }

    pub fn full_pending(&self) -> bool {
        self.full
    }

    /// The pending full push is the periodic one (and nothing asked for an ordinary one).
    pub fn periodic_pending(&self) -> bool {
        self.full && self.periodic
    }

    pub fn collapses(&self) -> u64 {
        self.collapses
    }

    /// When the newest pending change arrived (for logs).
    pub fn newest(&self) -> Option<Instant> {
        if self.is_empty() {
            None
        } else {
            self.newest
        }
    }

    /// When the oldest pending change arrived (for lag).
    pub fn oldest(&self) -> Option<Instant> {
        if self.is_empty() {
            None
        } else {
            self.oldest
        }
    }

    /// Make what is pending due at once (an operator asked to push now). Changes that
    /// arrive later, before the next `take`, are due at once too. Nothing pending: no-op.
    pub fn flush_now(&mut self) {
        self.urgent = !self.is_empty();
    }

    /// When the pending changes become due, or None when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        if self.urgent {
            return self.oldest;
        }
        let oldest = self.oldest?;
        if self.full || self.has_tree {
            let settle = after(self.newest?, self.limits.delay);
            return Some(settle.min(after(oldest, self.limits.max_delay)));
        }
        if self.enough() {
            // A window meant for latency gives way to a burst; a longer one was asked
            // for to batch, and is kept (without the stretch).
            let wait = if self.limits.delay <= BURST_DELAY_MAX {
                Duration::ZERO
            } else {
                self.limits.delay.min(self.limits.max_delay)
            };
            return Some(after(oldest, wait));
        }
        let window = window(self.limits.delay, self.entries.len(), self.push_time);
        let stretched = after(oldest, window.min(self.limits.max_delay));
        // The stretch is for a stream still flowing: once no change came for
        // STREAM_GAP, the batch is as big as it gets and goes after `delay`.
        let ended = after(self.newest?, STREAM_GAP)
            .max(after(oldest, self.limits.delay.min(self.limits.max_delay)));
        Some(stretched.min(ended))
    }

    /// Are the pending changes due at `now`?
    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// A copy of everything pending, left in place (to save it to the fail log).
    pub fn snapshot(&self) -> Batch {
        let mut batch = Batch {
            full: self.full,
            periodic: self.full && self.periodic,
            ..Batch::default()
        };
        for (path, kind) in &self.entries {
            match kind {
                Kind::Path => batch.paths.push(path.clone()),
                Kind::Tree => batch.trees.push(path.clone()),
            }
        }
        batch.moves = self.hints();
        batch
    }

    /// The move hints whose tree is still queued as one, sorted by `to`.
    fn hints(&self) -> Vec<Move> {
        self.moves
            .iter()
            .filter(|(to, _)| self.entries.get(*to) == Some(&Kind::Tree))
            .map(|(to, from)| Move {
                from: from.clone(),
                to: to.clone(),
            })
            .collect()
    }

    /// Take everything pending as one batch (empty when nothing is pending), with the
    /// arrival time of its oldest change.
    pub fn take(&mut self) -> (Batch, Option<Instant>) {
        let since = self.oldest();
        let mut batch = Batch {
            full: self.full,
            periodic: self.full && self.periodic,
            moves: self.hints(),
            ..Batch::default()
        };
        self.moves.clear();
        for (path, kind) in std::mem::take(&mut self.entries) {
            match kind {
                Kind::Path => batch.paths.push(path),
                Kind::Tree => batch.trees.push(path),
            }
        }
        self.full = false;
        self.periodic = false;
        self.oldest = None;
        self.newest = None;
        self.urgent = false;
        self.has_tree = false;
        self.written = 0;
        (batch, since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(1000),
            max_queue: 100,
        }
    }

    fn p(s: &str) -> RelPath {
        s.as_bytes().to_vec()
    }

    fn strs(v: &[RelPath]) -> Vec<String> {
        v.iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect()
    }

    /// Apply changes at one instant and return (paths, trees, full).
    fn run(changes: Vec<Change>) -> (Vec<String>, Vec<String>, bool) {
        let mut q = Queue::new(limits());
        let t = Instant::now();
        for c in changes {
            q.push(c, t);
        }
        let (b, _) = q.take();
        (strs(&b.paths), strs(&b.trees), b.full)
    }

    #[test]
    fn coalescing_rules() {
        use Change::*;
        type Case = (
            &'static str,
            Vec<Change>,
            Vec<&'static str>,
            Vec<&'static str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "one entry per path",
                vec![Path(p("a")), Path(p("a")), Path(p("b"))],
                vec!["a", "b"],
                vec![],
                false,
            ),
            (
                "tree drops queued children",
                vec![Path(p("d/x")), Path(p("d/y/z")), Tree(p("d"))],
                vec![],
                vec!["d"],
                false,
            ),
            (
                "tree covers later children",
                vec![Tree(p("d")), Path(p("d/x")), Tree(p("d/sub"))],
                vec![],
                vec!["d"],
                false,
            ),
            (
                "tree does not cover siblings with a common prefix",
                vec![Tree(p("d")), Path(p("d2/x")), Path(p("d.txt"))],
                vec!["d.txt", "d2/x"],
                vec!["d"],
                false,
            ),
            (
                "gone drops queued children",
                vec![Path(p("d/x")), Tree(p("d/s")), Gone(p("d"))],
                vec!["d"],
                vec![],
                false,
            ),
            (
                "gone keeps a pending tree of itself",
                vec![Tree(p("d")), Gone(p("d"))],
                vec![],
                vec!["d"],
                false,
            ),
            (
                "path upgrades to tree",
                vec![Path(p("d")), Tree(p("d"))],
                vec![],
                vec!["d"],
                false,
            ),
            (
                "tree is not downgraded by path",
                vec![Tree(p("d")), Path(p("d"))],
                vec![],
                vec!["d"],
                false,
            ),
            (
                "move: old gone, new whole",
                vec![Path(p("old/f")), Gone(p("old")), Tree(p("new"))],
                vec!["old"],
                vec!["new"],
                false,
            ),
            (
                "full covers everything",
                vec![Path(p("a")), Full, Path(p("b")), Tree(p("c"))],
                vec![],
                vec![],
                true,
            ),
            (
                "non-utf8 and newline names",
                vec![Path(b"x\xff".to_vec()), Path(p("a\nb"))],
                vec!["a\nb", "x\u{fffd}"],
                vec![],
                false,
            ),
        ];
        for (name, changes, paths, trees, full) in cases {
            let got = run(changes);
            assert_eq!(
                got,
                (
                    paths.iter().map(|s| s.to_string()).collect(),
                    trees.iter().map(|s| s.to_string()).collect(),
                    full
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn periodic_full_merges_into_an_ordinary_one_and_keeps_changes_beside_it() {
        use Change::*;
        // (case, changes, paths, trees, full, periodic)
        type Case = (
            &'static str,
            Vec<Change>,
            Vec<&'static str>,
            Vec<&'static str>,
            bool,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "periodic alone",
                vec![PeriodicFull],
                vec![],
                vec![],
                true,
                true,
            ),
            (
                "two periodic stay periodic",
                vec![PeriodicFull, PeriodicFull],
                vec![],
                vec![],
                true,
                true,
            ),
            (
                "periodic then full: ordinary",
                vec![PeriodicFull, Full],
                vec![],
                vec![],
                true,
                false,
            ),
            (
                "full then periodic: ordinary",
                vec![Full, PeriodicFull],
                vec![],
                vec![],
                true,
                false,
            ),
            (
                "changes after a periodic are kept beside it",
                vec![PeriodicFull, Path(p("a")), Tree(p("d")), Path(p("d/x"))],
                vec!["a"],
                vec!["d"],
                true,
                true,
            ),
            (
                "changes before a periodic are kept beside it",
                vec![Path(p("a")), Gone(p("g")), PeriodicFull],
                vec!["a", "g"],
                vec![],
                true,
                true,
            ),
            (
                "an ordinary full drops them",
                vec![Path(p("a")), PeriodicFull, Tree(p("d")), Full, Path(p("b"))],
                vec![],
                vec![],
                true,
                false,
            ),
        ];
        for (name, changes, paths, trees, full, periodic) in cases {
            let mut q = Queue::new(limits());
            let t = Instant::now();
            for c in changes {
                q.push(c, t);
            }
            assert_eq!(q.periodic_pending(), periodic, "{name}");
            assert_eq!(q.snapshot(), q.clone().take().0, "{name}");
            let (b, _) = q.take();
            assert_eq!(
                (strs(&b.paths), strs(&b.trees), b.full, b.periodic),
                (
                    paths.iter().map(|s| s.to_string()).collect(),
                    trees.iter().map(|s| s.to_string()).collect(),
                    full,
                    periodic
                ),
                "{name}"
            );
            assert!(!q.periodic_pending() && q.is_empty(), "{name}: taken");
        }
    }

    #[test]
    fn a_periodic_full_collapses_and_restores_as_it_should() {
        let t = Instant::now();
        // Past the cap: an ordinary full push (the kept changes need the real excludes).
        let mut q = Queue::new(Limits {
            max_queue: 2,
            ..limits()
        });
        q.push(Change::PeriodicFull, t);
        for name in ["a", "b", "c"] {
            q.push(Change::Path(p(name)), t);
        }
        assert_eq!(q.take().0, Batch::full());
        assert_eq!(q.collapses(), 1);
        // A failed periodic push comes back periodic, with what was queued beside it...
        let mut q = Queue::new(limits());
        let failed = Batch {
            paths: vec![p("x")],
            ..Batch::periodic()
        };
        q.restore(failed.clone(), t);
        q.push(Change::Path(p("y")), t);
        let (b, _) = q.take();
        assert_eq!(
            (b.periodic, strs(&b.paths)),
            (true, vec!["x".into(), "y".into()])
        );
        // ...unless an ordinary full push was queued meanwhile.
        q.push(Change::Full, t);
        q.restore(failed, t);
        assert_eq!(q.take().0, Batch::full());
    }

    #[test]
    fn huge_delays_saturate_instead_of_panicking() {
        let mut q = Queue::new(Limits {
            delay: Duration::MAX,
            max_delay: Duration::MAX,
            max_queue: 100,
        });
        let t = Instant::now();
        q.push(Change::Path(p("a")), t);
        let d = q.deadline().expect("pending");
        assert!(d > t + Duration::from_secs(3600 * 24 * 365), "far ahead");
        assert!(!q.is_due(t + Duration::from_secs(3600)));
        q.push(Change::Tree(p("dir")), t);
        assert!(q.deadline().expect("pending") > t);
    }

    #[test]
    fn collapses_to_full_past_the_cap() {
        let mut q = Queue::new(Limits {
            max_queue: 3,
            ..limits()
        });
        let t = Instant::now();
        for name in ["a", "b", "c"] {
            q.push(Change::Path(p(name)), t);
        }
        assert!(!q.full_pending());
        q.push(Change::Path(p("d")), t);
        assert!(q.full_pending());
        assert_eq!(q.len(), 1);
        assert_eq!(q.collapses(), 1);
        let (b, _) = q.take();
        assert_eq!(b, Batch::full());
    }

    #[test]
    fn due_once_the_oldest_change_is_delay_old_stretched_by_the_batch() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // (case, limits (delay, max_delay) in ms, arrival times of changes in ms,
        // deadline in µs); each pending path adds 750 µs, at most 150 ms.
        type Case = (&'static str, (u64, u64), Vec<u64>, Option<u64>);
        let cases: Vec<Case> = vec![
            ("nothing pending", (50, 1000), vec![], None),
            (
                "one change: no stream, no stretch",
                (50, 1000),
                vec![0],
                Some(50_000),
            ),
            (
                "a stream 40 ms apart does not hold the push back",
                (50, 1000),
                (0..30).map(|i| i * 40).collect(),
                Some(72_500),
            ),
            (
                "a later first change",
                (50, 1000),
                vec![300, 310],
                Some(350_000),
            ),
            (
                "max_delay shorter than delay caps it",
                (500, 200),
                vec![0, 100],
                Some(200_000),
            ),
            (
                "a stream of 255 in 200 ms: stretched by 150 ms at most",
                (50, 1000),
                (0..255).map(|i| i * 200 / 255).collect(),
                Some(200_000),
            ),
            (
                "a stream of 255 in 1 s: never past max_delay",
                (50, 120),
                (0..255).map(|i| i * 4).collect(),
                Some(120_000),
            ),
            (
                "a burst of 255 that ended: no stretch, delay",
                (50, 1000),
                vec![0; 255],
                Some(50_000),
            ),
            (
                "ENOUGH_PATHS written: due at once",
                (50, 1000),
                (0..256).map(|i| i / 20).collect(),
                Some(0),
            ),
            (
                "a stream of 1,000 in 200 ms: due at once",
                (50, 1000),
                (0..1000).map(|i| i / 5).collect(),
                Some(0),
            ),
            (
                "ENOUGH_PATHS written, a delay longer than 50 ms: the delay, no stretch",
                (500, 5000),
                (0..1000).map(|i| i / 5).collect(),
                Some(500_000),
            ),
            (
                "a burst that ended 30 ms before delay is over: delay",
                (50, 1000),
                (0..100).map(|i| i / 5).collect(),
                Some(50_000),
            ),
            (
                "a burst still flowing at delay: goes 30 ms after its last change",
                (50, 1000),
                (0..100).map(|i| i * 3 / 5).collect(),
                Some(89_000),
            ),
            (
                "delay 0: a burst goes once it ended",
                (0, 1000),
                vec![0; 100],
                Some(30_000),
            ),
        ];
        for (name, (delay, max_delay), arrivals, want) in cases {
            let mut q = Queue::new(Limits {
                delay: ms(delay),
                max_delay: ms(max_delay),
                max_queue: 100_000,
            });
            let t0 = Instant::now();
            for (i, a) in arrivals.iter().enumerate() {
                q.push(Change::Path(p(&format!("f{i}"))), t0 + ms(*a));
            }
            assert_eq!(q.deadline(), want.map(|w| t0 + us(w)), "{name}");
            if let Some(w) = want.filter(|w| *w > 0) {
                assert!(!q.is_due(t0 + us(w - 1)), "{name}: due too early");
                assert!(q.is_due(t0 + us(w)), "{name}: not due");
            }
        }
    }

    #[test]
    fn the_stretch_settles_with_the_stream_rate() {
        // A stream of r paths/s, the batch taken when due: the window it settles at is
        // delay / (1 - r * 750 µs), at most delay + 150 ms; but ENOUGH_PATHS written paths
        // are due at once (at 5,000/s they arrive in 51 ms).
        let us = Duration::from_micros;
        for (rate, want_ms) in [(200u64, 59), (500, 80), (1000, 200), (5000, 51)] {
            let mut q = Queue::new(Limits {
                max_queue: 100_000,
                ..limits()
            });
            let t0 = Instant::now();
            let gap = 1_000_000 / rate;
            let mut i = 0;
            let taken_at = loop {
                let at = t0 + us(i * gap);
                if q.is_due(at) {
                    break at;
                }
                q.push(Change::Path(p(&format!("f{i}"))), at);
                i += 1;
            };
            let waited = taken_at.duration_since(t0).as_millis();
            assert!(
                waited.abs_diff(want_ms) <= 1 + 1000 / u128::from(rate),
                "{rate}/s: due after {waited} ms, want ~{want_ms}"
            );
        }
    }

    #[test]
    fn a_slow_push_leaves_the_stretch_less_room() {
        // 255 paths pending (a 150 ms stretch wanted, one short of ENOUGH_PATHS), delay
        // 50 ms: the window leaves the last push's time within 280 ms, never shrinking
        // below `delay`.
        let ms = Duration::from_millis;
        for (push_ms, want_ms) in [
            (0u64, 200u64),
            (80, 200),
            (130, 150),
            (200, 80),
            (230, 50),
            (5000, 50),
        ] {
            let mut q = Queue::new(Limits {
                max_queue: 100_000,
                ..limits()
            });
            q.note_push_time(ms(push_ms));
            let t0 = Instant::now();
            // A stream still flowing: one path every 784 µs for 200 ms.
            for i in 0..255u32 {
                let at = t0 + Duration::from_micros(784) * i;
                q.push(Change::Path(p(&format!("f{i}"))), at);
            }
            assert_eq!(
                q.deadline(),
                Some(t0 + ms(want_ms)),
                "last push {push_ms} ms"
            );
        }
        // A trickle's window is the plain delay either way (no stream to stretch for).
        let mut q = Queue::new(limits());
        q.note_push_time(ms(200));
        let t0 = Instant::now();
        q.push(Change::Path(p("a")), t0);
        assert_eq!(q.deadline(), Some(t0 + ms(50)));
    }

    #[test]
    fn enough_written_paths_are_due_at_once_deletions_are_not() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let big = || {
            Queue::new(Limits {
                max_queue: 100_000,
                ..limits()
            })
        };
        let t0 = Instant::now();
        // A copy: 256 files written in 10 ms.
        let mut q = big();
        for i in 0..ENOUGH_PATHS as u32 {
            q.push(Change::Path(p(&format!("f{i}"))), t0 + us(40) * i);
        }
        assert!(q.enough());
        assert_eq!(q.deadline(), Some(t0));
        // What a push gives back (the second half of a shared batch) is still enough.
        let (b, since) = q.take();
        assert!(!q.enough());
        q.restore(b, since.unwrap_or(t0));
        assert!(q.enough());
        assert_eq!(q.deadline(), Some(t0));
        // An `rm` of 1,000 files in 40 ms: deletions send no data, one run once it ended.
        let mut q = big();
        for i in 0..1000u32 {
            q.push(Change::Gone(p(&format!("f{i}"))), t0 + us(40) * i);
        }
        assert!(!q.enough());
        assert_eq!(q.deadline(), Some(t0 + us(40) * 999 + STREAM_GAP));
        // Written paths gone again before the push do not count.
        let mut q = big();
        for i in 0..ENOUGH_PATHS as u32 {
            q.push(Change::Path(p(&format!("d/f{i}"))), t0);
        }
        q.push(Change::Gone(p("d")), t0);
        assert!(!q.enough());
        // Beside a tree the settle window stays (see trees_and_full_pushes_keep_...).
        let mut q = big();
        for i in 0..ENOUGH_PATHS as u32 {
            q.push(Change::Path(p(&format!("f{i}"))), t0);
        }
        q.push(Change::Tree(p("t")), t0 + ms(5));
        assert!(!q.enough());
        assert_eq!(q.deadline(), Some(t0 + ms(55)));
    }

    #[test]
    fn trees_and_full_pushes_keep_the_settle_window() {
        let ms = Duration::from_millis;
        // (case, changes with arrival in ms, deadline in ms); delay 50, max_delay 1000
        type Case = (&'static str, Vec<(Change, u64)>, u64);
        let stream = |first: Change| -> Vec<(Change, u64)> {
            std::iter::once((first, 0))
                .chain((1..30).map(|i| (Change::Path(p(&format!("f{i}"))), i * 40)))
                .collect()
        };
        let cases: Vec<Case> = vec![
            ("a tree alone: settle", vec![(Change::Tree(p("d")), 0)], 50),
            (
                "a tree, then a quiet spell",
                vec![(Change::Tree(p("d")), 0), (Change::Path(p("x")), 30)],
                80,
            ),
            (
                "a tree in a stream: max_delay",
                stream(Change::Tree(p("d"))),
                1000,
            ),
            (
                "a full push in a stream: max_delay",
                stream(Change::Full),
                1000,
            ),
            (
                "paths only in a stream: leading edge, stretched by 30 paths",
                stream(Change::Path(p("a"))),
                72,
            ),
        ];
        for (name, changes, want) in cases {
            let mut q = Queue::new(limits());
            let t0 = Instant::now();
            for (c, at) in changes {
                q.push(c, t0 + ms(at));
            }
            // Whole milliseconds (the stretch of a paths-only batch adds 750 µs a path).
            let got = q.deadline().map(|d| d.duration_since(t0).as_millis());
            assert_eq!(got, Some(u128::from(want)), "{name}");
        }
        // Taken: the next batch of paths is back to the leading edge.
        let mut q = Queue::new(limits());
        let t0 = Instant::now();
        q.push(Change::Tree(p("d")), t0);
        q.take();
        q.push(Change::Path(p("a")), t0 + ms(100));
        q.push(Change::Path(p("b")), t0 + ms(140));
        assert_eq!(q.deadline(), Some(t0 + Duration::from_micros(151_500)));
    }

    #[test]
    fn changes_during_a_push_are_due_when_their_first_is_delay_old() {
        let ms = Duration::from_millis;
        let mut q = Queue::new(limits());
        let t0 = Instant::now();
        q.push(Change::Path(p("a")), t0);
        q.push(Change::Path(p("b")), t0 + ms(30));
        let (b, since) = q.take();
        assert_eq!((b.paths.len(), since), (2, Some(t0)));
        assert_eq!(q.deadline(), None);
        assert!(q.is_empty());
        // Changes keep arriving while that push runs: the first of them starts the clock.
        for i in 0..10 {
            q.push(Change::Path(p(&format!("c{i}"))), t0 + ms(60 + i * 10));
        }
        assert_eq!(q.deadline(), Some(t0 + Duration::from_micros(117_500)));
        let (b, since) = q.take();
        assert_eq!((b.paths.len(), since), (10, Some(t0 + ms(60))));
    }

    #[test]
    fn restore_keeps_newer_changes_and_the_old_age() {
        let mut q = Queue::new(limits());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        q.push(Change::Path(p("d/old")), t0);
        q.push(Change::Tree(p("t")), t0);
        let (failed, since) = q.take();
        // While the push was failing: d was deleted and t/x written.
        q.push(Change::Gone(p("d")), t0 + ms(500));
        q.push(Change::Path(p("t/x")), t0 + ms(500));
        q.restore(failed, since.expect("pending"));
        assert_eq!(q.oldest(), Some(t0));
        let (b, _) = q.take();
        // d/old is listed again (harmless: it is missing, so deleted), t stays whole and
        // covers t/x.
        assert_eq!(strs(&b.paths), vec!["d", "d/old"]);
        assert_eq!(strs(&b.trees), vec!["t"]);
    }

    #[test]
    fn set_limits_keeps_pending_and_moves_the_deadline() {
        let mut q = Queue::new(limits());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        q.push(Change::Path(p("a")), t0);
        q.push(Change::Tree(p("d")), t0);
        q.set_limits(Limits {
            delay: ms(500),
            max_delay: ms(2000),
            max_queue: 2,
        });
        assert_eq!(q.deadline(), Some(t0 + ms(500)));
        assert_eq!(q.len(), 2);
        assert!(!q.full_pending());
        // A cap below what is held collapses at once, like a push past the cap.
        q.set_limits(Limits {
            max_queue: 1,
            ..limits()
        });
        assert_eq!(q.snapshot(), Batch::full());
        assert_eq!(q.collapses(), 1);
        assert_eq!(q.oldest(), Some(t0));
    }

    #[test]
    fn flush_now_makes_pending_changes_due_until_taken() {
        let mut q = Queue::new(limits());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        q.flush_now(); // nothing pending: nothing to flush, and no lasting effect
        q.push(Change::Path(p("a")), t0 + ms(10));
        assert!(!q.is_due(t0 + ms(10)));
        q.flush_now();
        assert_eq!(q.deadline(), Some(t0 + ms(10)));
        assert!(q.is_due(t0 + ms(10)));
        // A change arriving after the request does not push the deadline back.
        q.push(Change::Path(p("b")), t0 + ms(20));
        assert!(q.is_due(t0 + ms(20)));
        let (b, _) = q.take();
        assert_eq!(strs(&b.paths), vec!["a", "b"]);
        // Taken: the next change waits for its delay again.
        q.push(Change::Path(p("c")), t0 + ms(30));
        assert!(!q.is_due(t0 + ms(30)));
        assert_eq!(q.deadline(), Some(t0 + ms(80)));
    }

    #[test]
    fn restore_of_full_batch() {
        let mut q = Queue::new(limits());
        let t0 = Instant::now();
        q.push(Change::Path(p("a")), t0);
        q.restore(Batch::full(), t0);
        assert_eq!(q.snapshot(), Batch::full());
        let (b, _) = q.take();
        assert_eq!(b, Batch::full());
    }

    #[test]
    fn move_hints_live_while_their_tree_is_queued() {
        use Change::*;
        let mv = |from: &str, to: &str| Moved {
            from: p(from),
            to: p(to),
        };
        // (case, changes, (paths, trees), hints as "from>to")
        type Case = (
            &'static str,
            Vec<Change>,
            (Vec<&'static str>, Vec<&'static str>),
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a rename: old gone, new whole, a hint",
                vec![Path(p("d1/f")), mv("d1", "d2")],
                (vec!["d1"], vec!["d2"]),
                vec!["d1>d2"],
            ),
            (
                "into another parent",
                vec![mv("a/d1", "b/d2")],
                (vec!["a/d1"], vec!["b/d2"]),
                vec!["a/d1>b/d2"],
            ),
            (
                "renamed twice: seeded from the first name",
                vec![mv("d1", "d2"), mv("d2", "d3")],
                (vec!["d1"], vec!["d2", "d3"]),
                vec!["d1>d3"],
            ),
            (
                "a directory moved out of a renamed one: its old place",
                vec![mv("a", "b"), mv("b/x", "c")],
                (vec!["a"], vec!["b", "c"]),
                vec!["a>b", "a/x>c"],
            ),
            (
                "to deleted: no hint",
                vec![mv("d1", "d2"), Gone(p("d2"))],
                (vec!["d1"], vec!["d2"]),
                vec![],
            ),
            (
                "to deleted and made again: no hint",
                vec![mv("d1", "d2"), Gone(p("d2")), Tree(p("d2"))],
                (vec!["d1"], vec!["d2"]),
                vec![],
            ),
            (
                "an ancestor of to deleted: no hint",
                vec![mv("d1", "x/d2"), Gone(p("x"))],
                (vec!["d1", "x"], vec![]),
                vec![],
            ),
            (
                "an ancestor of to pushed whole: no hint",
                vec![mv("d1", "x/d2"), Tree(p("x"))],
                (vec!["d1"], vec!["x"]),
                vec![],
            ),
            (
                "moved into a tree already queued whole: no hint",
                vec![Tree(p("x")), mv("d1", "x/d2")],
                (vec!["d1"], vec!["x"]),
                vec![],
            ),
            (
                "changes inside to and at from keep the hint",
                vec![
                    mv("d1", "d2"),
                    Path(p("d2/f")),
                    Tree(p("d1")),
                    Path(p("d2")),
                ],
                (vec![], vec!["d1", "d2"]),
                vec!["d1>d2"],
            ),
            (
                "a full push drops every hint",
                vec![mv("d1", "d2"), Full, mv("d3", "d4")],
                (vec![], vec![]),
                vec![],
            ),
        ];
        for (name, changes, (paths, trees), hints) in cases {
            let mut q = Queue::new(limits());
            let t = Instant::now();
            for c in changes {
                q.push(c, t);
            }
            let snap = q.snapshot();
            let (b, _) = q.take();
            assert_eq!(snap, b, "{name}: snapshot");
            let got: Vec<String> = b
                .moves
                .iter()
                .map(|m| {
                    format!(
                        "{}>{}",
                        String::from_utf8_lossy(&m.from),
                        String::from_utf8_lossy(&m.to)
                    )
                })
                .collect();
            assert_eq!(
                (strs(&b.paths), strs(&b.trees), got),
                (
                    paths.iter().map(|s| s.to_string()).collect(),
                    trees.iter().map(|s| s.to_string()).collect(),
                    hints.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                ),
                "{name}"
            );
            assert!(q.take().0.moves.is_empty(), "{name}: taken");
        }
    }

    #[test]
    fn move_hints_go_with_a_collapse_and_come_back_with_a_restore() {
        let t = Instant::now();
        let mv = Change::Moved {
            from: p("d1"),
            to: p("d2"),
        };
        let mut q = Queue::new(Limits {
            max_queue: 3,
            ..limits()
        });
        q.push(mv.clone(), t);
        for name in ["a", "b"] {
            q.push(Change::Path(p(name)), t);
        }
        assert_eq!(q.take().0, Batch::full(), "collapsed: no hint left");
        // A failed push's hints come back with it, and only for trees still queued.
        let mut q = Queue::new(limits());
        q.push(mv, t);
        let (failed, since) = q.take();
        assert_eq!(failed.moves.len(), 1);
        q.restore(failed.clone(), since.expect("pending"));
        assert_eq!(q.snapshot(), failed);
        q.push(Change::Gone(p("d2")), t);
        assert!(q.take().0.moves.is_empty());
        q.push(Change::Full, t);
        q.restore(failed, t);
        assert_eq!(q.take().0, Batch::full());
    }
}
