//! Pipelining: when a target may start another push while one is still in flight, and
//! which part of the queue it may carry. Pure — no I/O, no clock (`now` is passed in).
//!
//! One push per target at a time is right for short runs: what arrives while a ~100 ms
//! run is in flight becomes the next batch (see [`crate::queue`]), and every run costs
//! ~10 ms of CPU. But one long push (a 10 GB file, a slow link) would hold every other
//! change back until it ends (lsyncd's `maxProcesses = 1`); sersync runs rsyncs in
//! parallel without any ordering rule. The rule here ([`gate`], [`split`]):
//!
//! * another push starts only beside pushes that have each been running longer than
//!   the longest batching window ([`after`]: `delay` + [`STRETCH_MAX`], 200 ms by
//!   default), so short runs never pipeline — except that a push of [`ENOUGH_PATHS`]
//!   paths or more counts as long from its start, and a queue holding that many written
//!   paths may start beside a young push (a burst: see [`share`]);
//! * never two pushes touching the same path, or one path and an ancestor or
//!   descendant of it: what conflicts with a push in flight waits for it (a path
//!   changed again during its own long run is pushed again after that run);
//! * a whole-tree push (full, periodic, catch-up, overflow rescan, every push of a
//!   tree-mode sync) runs alone: it neither starts beside a push nor lets one start
//!   beside it;
//! * at most `max_in_flight` pushes per target (config, default
//!   [`DEFAULT_MAX_IN_FLIGHT`]);
//! * none beside another while the daemon is known to refuse connections (`max
//!   connections` reached): the target goes back to one push at a time for
//!   [`SERIAL_FOR`] (see [`crate::target`]).
//!
//! A push's conflicts are its listed paths, its trees and the old paths of its move
//! hints (a seed reads the target's copy there, [`Batch::seeds`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::batch::{Batch, RelPath};
use crate::deadline;
use crate::queue::{ENOUGH_PATHS, STRETCH_MAX};

/// Pushes in flight per target at most, unless the config says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2;

/// How long a target pushes one batch at a time after its daemon refused a connection.
pub const SERIAL_FOR: Duration = Duration::from_secs(600);

/// How long every push in flight must have been running before another starts beside
/// it: the longest batching window of a paths batch (`delay` stretched by at most
/// [`STRETCH_MAX`]).
pub fn after(delay: Duration) -> Duration {
    delay.saturating_add(STRETCH_MAX)
}

/// A push in flight, as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Flight<'a> {
    pub batch: &'a Batch,
    pub started: Instant,
}

/// Whether another push may start now beside those in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Yes (perhaps with part of the queue only: [`split`]).
    Open,
    /// Not before this instant (a push in flight is still young).
    OpenAt(Instant),
    /// Not until a push in flight ends.
    Closed,
}

/// The settings of the rule for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub max_in_flight: usize,
    /// See [`after`].
    pub after: Duration,
    /// The daemon refused a connection lately: one push at a time.
    pub serial: bool,
}

/// May a push start now, beside `flights`? (`whole`: a push in flight sends the whole
/// tree.)
pub fn gate(flights: &[Flight], rule: Rule, enough: bool, now: Instant) -> Gate {
    if flights.is_empty() {
        return Gate::Open;
    }
    if rule.serial || flights.len() >= rule.max_in_flight || flights.iter().any(|f| f.batch.full) {
        return Gate::Closed;
    }
    if enough {
        return Gate::Open;
    }
    // A push of ENOUGH_PATHS or more is a long one from its start.
    let Some(youngest) = flights
        .iter()
        .filter(|f| f.batch.paths.len() < ENOUGH_PATHS)
        .map(|f| f.started)
        .max()
    else {
        return Gate::Open;
    };
    let at = deadline::after(youngest, rule.after);
    if now >= at {
        Gate::Open
    } else {
        Gate::OpenAt(at)
    }
}

/// Split `pending` into what may start beside `flights` and what waits for them (put
/// back in the queue). A whole-tree batch waits whole; otherwise every path or tree that
/// is, or lies above or below, a path of a push in flight waits, and a tree whose move
/// hint's old path does. Move hints go with their tree.
pub fn split(pending: Batch, flights: &[Flight]) -> (Batch, Batch) {
    if flights.is_empty() {
        return (pending, Batch::default());
    }
    if pending.full || flights.iter().any(|f| f.batch.full) {
        return (Batch::default(), pending);
    }
    let busy = Touched::of(flights.iter().map(|f| f.batch));
    let mut go = Batch::default();
    let mut wait = Batch::default();
    for p in pending.paths {
        if busy.overlaps(&p) {
            wait.paths.push(p);
        } else {
            go.paths.push(p);
        }
    }
    for t in pending.trees {
        let hint = pending.moves.iter().find(|m| m.to == t);
        if busy.overlaps(&t) || hint.is_some_and(|m| busy.overlaps(&m.from)) {
            wait.trees.push(t);
        } else {
            go.trees.push(t);
        }
    }
    for m in pending.moves {
        if go.trees.binary_search(&m.to).is_ok() {
            go.moves.push(m);
        } else {
            wait.moves.push(m);
        }
    }
    (go, wait)
}

/// A paths-only batch of at least twice [`ENOUGH_PATHS`] paths, taken while the queue held
/// enough written paths (`written`: deletions send no data and go in one run), where two
/// pushes may be in flight, goes in two halves (by path order): the first now, the second back to the
/// queue, where it is due at once and starts beside the first (or as soon as a push slot
/// frees), [`split`]'s rule applying to it as to any batch. One rsync run is a relay of
/// three processes handing buffers on and leaves the second core half idle; two runs
/// share the work out (measured in `bench/run`'s burst row: a backlog taken whole by one
/// push kept it on the critical path while the other slot stood empty).
pub fn share(batch: Batch, max_in_flight: usize, written: bool) -> (Batch, Batch) {
    let whole = batch.full || !batch.trees.is_empty() || !batch.moves.is_empty();
    if !written || max_in_flight < 2 || whole || batch.paths.len() < 2 * ENOUGH_PATHS {
        return (batch, Batch::default());
    }
    let mut now = batch;
    let later = Batch {
        paths: now.paths.split_off(now.paths.len().div_ceil(2)),
        ..Batch::default()
    };
    (now, later)
}

/// Every path pushes in flight touch, for ancestor/descendant look-ups.
struct Touched(BTreeSet<RelPath>);

impl Touched {
    fn of<'a>(batches: impl Iterator<Item = &'a Batch>) -> Touched {
        let mut all = BTreeSet::new();
        for b in batches {
            all.extend(b.paths.iter().cloned());
            all.extend(b.trees.iter().cloned());
            all.extend(b.moves.iter().map(|m| m.from.clone()));
        }
        Touched(all)
    }

    /// Is `p`, an ancestor of `p` or a path below `p` touched?
    fn overlaps(&self, p: &[u8]) -> bool {
        if self.0.contains(p) {
            return true;
        }
        let ancestor = p
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'/' && self.0.contains(&p[..i]));
        if ancestor {
            return true;
        }
        // [p/, p0) holds exactly the paths below p ('0' is the byte after '/').
        let lo = [p, b"/"].concat();
        let hi = [p, b"0"].concat();
        self.0.range(lo..hi).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Move;

    const MS: Duration = Duration::from_millis(1);

    fn v(l: &[&str]) -> Vec<RelPath> {
        l.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn batch(paths: &[&str], trees: &[&str]) -> Batch {
        Batch {
            paths: v(paths),
            trees: v(trees),
            ..Batch::default()
        }
    }

    fn strs(l: &[RelPath]) -> Vec<String> {
        l.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    const RULE: Rule = Rule {
        max_in_flight: 2,
        after: Duration::from_millis(200),
        serial: false,
    };

    #[test]
    fn a_push_starts_beside_others_only_when_they_run_long() {
        let t0 = Instant::now();
        let small = batch(&["a"], &[]);
        let full = Batch::full();
        let periodic = Batch::periodic();
        let at = |ms: u64| t0 + MS * ms as u32;
        // (case, flights (batch, started at ms), rule, now in ms, want)
        type Case<'a> = (&'static str, Vec<(&'a Batch, u64)>, Rule, u64, Gate);
        let cases: Vec<Case> = vec![
            ("nothing in flight", vec![], RULE, 0, Gate::Open),
            (
                "a young push: not yet",
                vec![(&small, 0)],
                RULE,
                150,
                Gate::OpenAt(at(200)),
            ),
            (
                "a push past the window",
                vec![(&small, 0)],
                RULE,
                200,
                Gate::Open,
            ),
            (
                "the youngest push decides",
                vec![(&small, 0), (&small, 900)],
                Rule {
                    max_in_flight: 3,
                    ..RULE
                },
                1000,
                Gate::OpenAt(at(1100)),
            ),
            (
                "at most max_in_flight",
                vec![(&small, 0), (&small, 100)],
                RULE,
                5000,
                Gate::Closed,
            ),
            (
                "max_in_flight 1: never",
                vec![(&small, 0)],
                Rule {
                    max_in_flight: 1,
                    ..RULE
                },
                5000,
                Gate::Closed,
            ),
            (
                "a whole-tree push runs alone",
                vec![(&full, 0)],
                RULE,
                5000,
                Gate::Closed,
            ),
            (
                "the periodic one too",
                vec![(&periodic, 0)],
                RULE,
                5000,
                Gate::Closed,
            ),
            (
                "a daemon that refused a connection: one at a time",
                vec![(&small, 0)],
                Rule {
                    serial: true,
                    ..RULE
                },
                5000,
                Gate::Closed,
            ),
        ];
        let cases = cases
            .into_iter()
            .map(|(name, flights, rule, now, want)| (name, flights, rule, false, now, want));
        check_gate(t0, cases);
    }

    /// (case, flights (batch, started at ms after `t0`), rule, enough written paths
    /// queued, now in ms, want)
    type GateCase<'a> = (&'static str, Vec<(&'a Batch, u64)>, Rule, bool, u64, Gate);

    fn check_gate<'a>(t0: Instant, cases: impl IntoIterator<Item = GateCase<'a>>) {
        let at = |ms: u64| t0 + MS * ms as u32;
        for (name, flights, rule, enough, now, want) in cases {
            let flights: Vec<Flight> = flights
                .into_iter()
                .map(|(batch, ms)| Flight {
                    batch,
                    started: at(ms),
                })
                .collect();
            assert_eq!(gate(&flights, rule, enough, at(now)), want, "{name}");
        }
    }

    #[test]
    fn a_big_backlog_or_a_big_push_opens_the_gate_at_once() {
        let t0 = Instant::now();
        let small = batch(&["a"], &[]);
        let names: Vec<String> = (0..ENOUGH_PATHS).map(|i| format!("f{i:04}")).collect();
        let big = Batch {
            paths: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
            ..Batch::default()
        };
        let full = Batch::full();
        let at = |ms: u64| t0 + MS * ms as u32;
        let three = Rule {
            max_in_flight: 3,
            ..RULE
        };
        let cases: Vec<GateCase> = vec![
            (
                "a young push, enough queued: at once",
                vec![(&small, 0)],
                RULE,
                true,
                10,
                Gate::Open,
            ),
            (
                "a young push, a small backlog: the window",
                vec![(&small, 0)],
                RULE,
                false,
                10,
                Gate::OpenAt(at(200)),
            ),
            (
                "a young push of ENOUGH paths is a long one",
                vec![(&big, 0)],
                RULE,
                false,
                10,
                Gate::Open,
            ),
            (
                "beside a big push, a young small one still decides",
                vec![(&big, 0), (&small, 100)],
                three,
                false,
                150,
                Gate::OpenAt(at(300)),
            ),
            (
                "enough queued: still at most max_in_flight",
                vec![(&small, 0), (&small, 0)],
                RULE,
                true,
                10,
                Gate::Closed,
            ),
            (
                "enough queued: a whole-tree push still runs alone",
                vec![(&full, 0)],
                RULE,
                true,
                10,
                Gate::Closed,
            ),
            (
                "enough queued: still one at a time after a refusal",
                vec![(&big, 0)],
                Rule {
                    serial: true,
                    ..RULE
                },
                true,
                10,
                Gate::Closed,
            ),
        ];
        check_gate(t0, cases);
    }

    #[test]
    fn a_big_paths_batch_goes_in_two_halves_where_two_may_run() {
        let names = |n: usize| -> Vec<RelPath> {
            (0..n).map(|i| format!("f{i:04}").into_bytes()).collect()
        };
        let paths = |n: usize| Batch {
            paths: names(n),
            ..Batch::default()
        };
        let n = 2 * ENOUGH_PATHS + 1;
        let (now, later) = share(paths(n), 2, true);
        assert_eq!(now.paths, names(n)[..ENOUGH_PATHS + 1].to_vec());
        assert_eq!(later.paths, names(n)[ENOUGH_PATHS + 1..].to_vec());
        assert!(!now.full && !later.full && later.trees.is_empty());
        // Kept whole: mostly deletions, too small to share, one push at a time, a tree, a
        // move, a full push.
        let mut with_tree = paths(n);
        with_tree.trees = v(&["t"]);
        let mut with_move = paths(n);
        with_move.moves = vec![Move {
            from: b"a".to_vec(),
            to: b"t".to_vec(),
        }];
        for (name, batch, max_in_flight, written) in [
            ("not enough written paths (an rm)", paths(n), 2, false),
            (
                "under twice ENOUGH_PATHS",
                paths(2 * ENOUGH_PATHS - 1),
                2,
                true,
            ),
            ("max_in_flight 1", paths(n), 1, true),
            ("a tree in it", with_tree, 2, true),
            ("a move hint in it", with_move, 2, true),
            ("a full push", Batch::full(), 2, true),
        ] {
            let (now, later) = share(batch.clone(), max_in_flight, written);
            assert_eq!(now, batch, "{name}");
            assert!(later.is_empty(), "{name}");
        }
    }

    #[test]
    fn the_longest_window_is_delay_and_the_stretch() {
        assert_eq!(after(MS * 50), MS * 200);
        assert_eq!(after(Duration::ZERO), MS * 150);
    }

    #[test]
    fn what_touches_a_push_in_flight_waits() {
        // (case, in flight (paths, trees), pending (paths, trees), want go, want wait)
        type Side = (&'static [&'static str], &'static [&'static str]);
        let cases: Vec<(&str, Side, Side, Side, Side)> = vec![
            (
                "disjoint: all goes",
                (&["big.iso"], &[]),
                (&["d/f", "small"], &["t"]),
                (&["d/f", "small"], &["t"]),
                (&[], &[]),
            ),
            (
                "the same path waits",
                (&["big.iso"], &[]),
                (&["big.iso", "small"], &[]),
                (&["small"], &[]),
                (&["big.iso"], &[]),
            ),
            (
                "below a tree in flight waits",
                (&[], &["d"]),
                (&["d/f", "d2/f", "e"], &["d/sub"]),
                (&["d2/f", "e"], &[]),
                (&["d/f"], &["d/sub"]),
            ),
            (
                "below a path in flight waits (it may be a directory being deleted)",
                (&["d"], &[]),
                (&["d/f", "dx"], &[]),
                (&["dx"], &[]),
                (&["d/f"], &[]),
            ),
            (
                "above a path in flight waits",
                (&["a/b/c"], &[]),
                (&["a", "a/b/x"], &["a/b"]),
                (&["a/b/x"], &[]),
                (&["a"], &["a/b"]),
            ),
            (
                "a common prefix is no ancestor",
                (&["ab", "a.txt"], &["a0"]),
                (&["a", "a/b"], &["abc"]),
                (&["a", "a/b"], &["abc"]),
                (&[], &[]),
            ),
        ];
        for (name, flying, pending, (go_p, go_t), (wait_p, wait_t)) in cases {
            let flying = batch(flying.0, flying.1);
            let flights = [Flight {
                batch: &flying,
                started: Instant::now(),
            }];
            let (go, wait) = split(batch(pending.0, pending.1), &flights);
            assert_eq!(
                (strs(&go.paths), strs(&go.trees)),
                (strs(&v(go_p)), strs(&v(go_t))),
                "{name}: go"
            );
            assert_eq!(
                (strs(&wait.paths), strs(&wait.trees)),
                (strs(&v(wait_p)), strs(&v(wait_t))),
                "{name}: wait"
            );
        }
    }

    #[test]
    fn whole_tree_pushes_neither_start_nor_let_start_beside() {
        let small = batch(&["a"], &[]);
        let full = Batch::full();
        let flight = |b| Flight {
            batch: b,
            started: Instant::now(),
        };
        let (go, wait) = split(Batch::full(), &[flight(&small)]);
        assert!(go.is_empty());
        assert_eq!(wait, Batch::full());
        let mut periodic = Batch::periodic();
        periodic.paths = v(&["x"]);
        let (go, wait) = split(periodic.clone(), &[flight(&small)]);
        assert!(go.is_empty());
        assert_eq!(wait, periodic);
        let (go, wait) = split(batch(&["b"], &[]), &[flight(&full)]);
        assert!(go.is_empty());
        assert_eq!(wait, batch(&["b"], &[]));
        // Nothing in flight: everything goes.
        let (go, wait) = split(Batch::full(), &[]);
        assert_eq!((go, wait), (Batch::full(), Batch::default()));
    }

    #[test]
    fn move_hints_go_with_their_tree_and_guard_their_old_path() {
        let mv = |from: &str, to: &str| Move {
            from: from.as_bytes().to_vec(),
            to: to.as_bytes().to_vec(),
        };
        let flight = |b| Flight {
            batch: b,
            started: Instant::now(),
        };
        // A tree whose seed would read the target's `old`, while a push touches old/f.
        let flying = batch(&["old/f"], &[]);
        let pending = Batch {
            moves: vec![mv("old", "new"), mv("x", "y")],
            ..batch(&["x"], &["new", "y"])
        };
        let (go, wait) = split(pending, &[flight(&flying)]);
        assert_eq!((strs(&go.paths), strs(&go.trees)), (v2(&["x"]), v2(&["y"])));
        assert_eq!(go.moves, vec![mv("x", "y")]);
        assert_eq!(strs(&wait.trees), v2(&["new"]));
        assert_eq!(wait.moves, vec![mv("old", "new")]);
        // A push in flight seeding `new` from `old`: a new change at `old` waits for it.
        let flying = Batch {
            moves: vec![mv("old", "new")],
            ..batch(&["old"], &["new"])
        };
        let (go, wait) = split(batch(&["new/h", "old/g", "z"], &[]), &[flight(&flying)]);
        assert_eq!(strs(&go.paths), v2(&["z"]));
        assert_eq!(strs(&wait.paths), v2(&["new/h", "old/g"]));
    }

    fn v2(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }
}
