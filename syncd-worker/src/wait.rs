//! The one wait loop of the tests: look at a condition until it holds or a deadline
//! passes, and on a timeout say what was awaited and the last state seen. Used by this
//! crate's unit tests and, through the `test-util` feature, by the end-to-end harness
//! (`syncd_tests::wait`, which adds the failure that shows every fixture's log).
//!
//! Owns: the poll intervals (the one place that says a condition has no event to wait
//! on, so it is looked at again after a pause). Must not: sleep in place of a condition,
//! wait without a deadline, or be compiled into the shipped binaries (test code only).

use std::fmt;
use std::time::{Duration, Instant};

use crate::deadline::after;

/// How often a condition is looked at again: files, status documents, logs and ports
/// give the tests no event to wait on.
pub const POLL: Duration = Duration::from_millis(50);

/// For a state that lasts moments: a process's exit after its signal, the first files
/// of a push in flight.
pub const SHORT_POLL: Duration = Duration::from_millis(10);

/// For a moment that passes quickly (a worker between its inotify instance and its
/// first watch): a short pause so the test acts inside it.
pub const FAST_POLL: Duration = Duration::from_millis(1);

/// For a moment of microseconds (a temp file between its write and its rename): look
/// again at once.
pub const SPIN: Duration = Duration::ZERO;

/// What a look at a condition found: done with a value, or not yet (with what was seen).
pub trait Probe<T> {
    /// `Ok(value)` when the condition holds, else `Err(what was seen)`.
    fn seen(self) -> Result<T, String>;
}

impl<T> Probe<T> for Option<T> {
    fn seen(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

impl<T, S: fmt::Display> Probe<T> for Result<T, S> {
    fn seen(self) -> Result<T, String> {
        self.map_err(|s| s.to_string())
    }
}

impl Probe<()> for bool {
    fn seen(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_string())
        }
    }
}

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// What was awaited.
    pub what: String,
    /// The timeout it had.
    pub after: Duration,
    /// The state the last look found.
    pub last: String,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}; last seen: {}",
            self.after, self.what, self.last
        )
    }
}

/// Look at `probe` every [`POLL`] until it holds; its value, or the [`Timeout`] after
/// `timeout` naming `what` and the last state `probe` saw. `probe` may panic itself
/// (e.g. when the process it waits for has exited).
pub fn until<T, P: Probe<T>>(
    what: impl fmt::Display,
    timeout: Duration,
    probe: impl FnMut() -> P,
) -> Result<T, Timeout> {
    until_every(what, timeout, POLL, probe)
}

/// [`until`] with another interval ([`SHORT_POLL`], [`FAST_POLL`]).
pub fn until_every<T, P: Probe<T>>(
    what: impl fmt::Display,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> P,
) -> Result<T, Timeout> {
    let deadline = after(Instant::now(), timeout);
    loop {
        let last = match probe().seen() {
            Ok(v) => return Ok(v),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(Timeout {
                what: what.to_string(),
                after: timeout,
                last,
            });
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_probe_holds() {
        let mut looks = 0;
        let got = until("the third look", Duration::from_secs(5), || {
            looks += 1;
            (looks == 3).then_some(looks)
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn a_timeout_names_what_was_awaited_and_the_last_state() {
        let mut n = 0;
        let err = until_every("n to reach 1000", Duration::ZERO, FAST_POLL, || {
            n += 1;
            if n >= 1000 {
                Ok(())
            } else {
                Err(format!("n = {n}"))
            }
        })
        .expect_err("a zero timeout ends after one look");
        assert_eq!(
            err,
            Timeout {
                what: "n to reach 1000".into(),
                after: Duration::ZERO,
                last: "n = 1".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "timed out after 0ns waiting for n to reach 1000; last seen: n = 1"
        );
    }

    #[test]
    fn probes_of_each_kind() {
        let table: [(Result<(), String>, Result<(), String>); 4] = [
            (Some(()).seen(), Ok(())),
            (None::<()>.seen(), Err("not yet".into())),
            (true.seen(), Ok(())),
            (false.seen(), Err("false".into())),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }
}
