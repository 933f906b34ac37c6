//! The one wait loop of the tests, as the harness uses it: `syncd_worker::wait` (the loop,
//! [`Probe`], [`Timeout`], the poll intervals, shared with the worker's unit tests) plus
//! the failure that shows every fixture's log and status.
//!
//! Owns: turning a [`Timeout`] into a panic with the fixtures' diagnostics. Must not:
//! keep a wait loop or a poll interval of its own (they live in `syncd_worker::wait`).

use std::fmt;
use std::time::Duration;

pub use syncd_worker::wait::{
    until, until_every, Probe, Timeout, FAST_POLL, POLL, SHORT_POLL, SPIN,
};

use crate::{diagnostics, Diagnose};

/// Panic with `timeout` and the diagnostics of `fixtures` (their logs, status).
#[track_caller]
pub fn fail(timeout: Timeout, fixtures: &[&dyn Diagnose]) -> ! {
    panic!("{timeout}\n{}", diagnostics(fixtures))
}

/// [`until`], panicking on the timeout with the diagnostics of `fixtures`.
#[track_caller]
pub fn must<T, P: Probe<T>>(
    what: impl fmt::Display,
    timeout: Duration,
    fixtures: &[&dyn Diagnose],
    probe: impl FnMut() -> P,
) -> T {
    match until(what, timeout, probe) {
        Ok(v) => v,
        Err(t) => fail(t, fixtures),
    }
}

/// Wait until `look` has given the same value for `quiet_for` on end (a file no longer
/// rewritten, a status no longer updated); that value. Panics after `timeout` with the
/// fixtures' diagnostics. `look` giving None (nothing to see yet) restarts the count.
#[track_caller]
pub fn quiet<T: PartialEq + fmt::Debug + Clone>(
    what: impl fmt::Display,
    quiet_for: Duration,
    timeout: Duration,
    fixtures: &[&dyn Diagnose],
    mut look: impl FnMut() -> Option<T>,
) -> T {
    let mut last: Option<(T, std::time::Instant)> = None;
    must(
        format_args!("{what} unchanged for {quiet_for:?}"),
        timeout,
        fixtures,
        || {
            let now = look();
            match (&last, now) {
                (Some((seen, since)), Some(now)) if *seen == now => {
                    if since.elapsed() >= quiet_for {
                        Ok(now)
                    } else {
                        Err(format!("{now:?} for {:?}", since.elapsed()))
                    }
                }
                (_, now) => {
                    let seen = format!("{now:?}, changed");
                    last = now.map(|n| (n, std::time::Instant::now()));
                    Err(seen)
                }
            }
        },
    )
}
