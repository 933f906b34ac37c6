//! The restart policy: when a worker that died is started again, and when to give up.
//! Pure: time comes in as an argument, nothing here touches a process or a clock.
//!
//! A worker that ran for at least `fast_run` before dying resets the count and the
//! backoff (first restart after `min_backoff`). Each quicker death doubles the backoff
//! up to `max_backoff`; `max_fast_crashes` quick deaths in a row end supervision. A
//! worker that exits with code 2 rejected the configuration: restarting cannot help.

use std::time::{Duration, Instant};

use syncd_worker::contract::WorkerExit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A worker dying sooner than this after its start counts as a fast crash.
    pub fast_run: Duration,
    pub max_fast_crashes: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            fast_run: Duration::from_secs(30),
            max_fast_crashes: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    RestartAt(Instant),
    GiveUp(String),
}

/// The policy plus what it remembers between deaths.
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: RestartPolicy,
    fast_crashes: u32,
    backoff: Duration,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Restarts {
        Restarts {
            policy,
            fast_crashes: 0,
            backoff: policy.min_backoff,
        }
    }

    /// A worker died at `now` after running `ran_for`; `code` is its exit code (None when
    /// killed by a signal).
    pub fn on_exit(&mut self, now: Instant, ran_for: Duration, code: Option<i32>) -> Decision {
        if let Some(exit) = WorkerExit::of(code).filter(|e| !e.restart_helps()) {
            return Decision::GiveUp(format!(
                "the worker rejected the configuration (exit code {}); fix it (syncd check) and start again",
                exit.code()
            ));
        }
        if ran_for >= self.policy.fast_run {
            self.fast_crashes = 0;
            self.backoff = self.policy.min_backoff;
        }
        self.fast_crashes += 1;
        if self.fast_crashes >= self.policy.max_fast_crashes {
            return Decision::GiveUp(format!(
                "the worker died {} times in a row, each within {}s of its start; giving up",
                self.fast_crashes,
                self.policy.fast_run.as_secs()
            ));
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.policy.max_backoff);
        Decision::RestartAt(syncd_worker::deadline::after(now, delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_table() {
        let t0 = Instant::now();
        let mut r = Restarts::new(RestartPolicy::default());
        // (ran_for, code, expected delay or None = give up)
        let rows: [(u64, Option<i32>, Option<u64>); 7] = [
            (100, None, Some(1)),  // long run: first restart after min_backoff
            (2, Some(1), Some(2)), // fast crash 2 → doubled
            (2, None, Some(4)),    // 3
            (40, None, Some(1)),   // ran long again: reset
            (1, None, Some(2)),    // 2
            (1, None, Some(4)),    // 3
            (1, None, Some(8)),    // 4
        ];
        for (i, (ran, code, want)) in rows.into_iter().enumerate() {
            let d = r.on_exit(t0, s(ran), code);
            match want {
                Some(w) => assert_eq!(d, Decision::RestartAt(t0 + s(w)), "row {i}"),
                None => assert!(matches!(d, Decision::GiveUp(_)), "row {i}"),
            }
        }
        // Fifth fast crash in a row: give up, saying why.
        match r.on_exit(t0, s(1), Some(101)) {
            Decision::GiveUp(why) => assert!(why.contains("5 times"), "{why}"),
            d => panic!("expected to give up, got {d:?}"),
        }
    }

    #[test]
    fn backoff_is_capped() {
        let p = RestartPolicy {
            max_fast_crashes: 100,
            ..RestartPolicy::default()
        };
        let t0 = Instant::now();
        let mut r = Restarts::new(p);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            if let Decision::RestartAt(at) = r.on_exit(t0, s(0), None) {
                last = at - t0;
            }
        }
        assert_eq!(last, p.max_backoff);
    }

    #[test]
    fn bad_config_gives_up_at_once() {
        let mut r = Restarts::new(RestartPolicy::default());
        let d = r.on_exit(
            Instant::now(),
            s(500),
            Some(i32::from(WorkerExit::BadConfig.code())),
        );
        assert!(
            matches!(d, Decision::GiveUp(ref w) if w.contains("configuration")),
            "{d:?}"
        );
    }
}
