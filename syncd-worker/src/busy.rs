//! A daemon with no connection free (`@ERROR: max connections (N) reached`, the class
//! [`crate::rsync::Class::Busy`]): when to try again. It means "try again shortly, one run
//! at a time", not "the batch failed". Pure: `now` is passed in; nothing here sleeps or
//! runs rsync (the push executor and the engine do).
//!
//! * Inside one push ([`Pauses`]): a refused run is tried again after 100 ms, the pause
//!   doubling to 2 s, until the daemon has been busy for [`patience`] (15 s, less when
//!   the rsync timeout is shorter) in a row; a run that gets through ends the episode.
//!   A daemon that refuses a run when the previous one has only just ended (its child
//!   still exiting) costs one short pause, not a failed batch.
//! * In the engine ([`retry_after`]): a push or probe still refused after that is tried
//!   again after at most [`RETRY`], never doubled towards `max_interval`: the backlog
//!   goes the moment a connection is free.
//!
//! The patience is short on purpose: a stop waits for the push in flight, and the
//! engine's own retry keeps trying anyway.

use std::time::{Duration, Instant};

/// The first pause after a refusal.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Pauses double up to this.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(2);
/// How long one push keeps trying a busy daemon before it reports [`crate::rsync::Class::Busy`].
pub const PATIENCE: Duration = Duration::from_secs(15);
/// The engine's longest wait before trying a busy target again.
pub const RETRY: Duration = Duration::from_secs(2);

/// How long a push keeps trying a busy daemon: [`PATIENCE`], or the rsync timeout when
/// that is shorter.
pub fn patience(rsync_timeout: Option<Duration>) -> Duration {
    rsync_timeout.map_or(PATIENCE, |t| t.min(PATIENCE))
}

/// The engine's wait before trying a busy target again: [`RETRY`], or the sync's
/// `min_interval` when that is shorter. The same every time (not doubled).
pub fn retry_after(min_interval: Duration) -> Duration {
    RETRY.min(min_interval)
}

/// The pauses of one push between runs the daemon refused as busy.
#[derive(Debug, Clone)]
pub struct Pauses {
    patience: Duration,
    /// The first refusal of the current episode (None: the last run got through).
    since: Option<Instant>,
    next: Duration,
}

impl Pauses {
    pub fn new(patience: Duration) -> Pauses {
        Pauses {
            patience,
            since: None,
            next: FIRST_PAUSE,
        }
    }

    /// A run was refused at `now`: the pause before trying it again, or None when the
    /// daemon has been busy for the whole patience (the push reports Busy). A pause never
    /// ends past the patience.
    pub fn refused(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        let left = (since + self.patience).saturating_duration_since(now);
        if left.is_zero() {
            return None;
        }
        let pause = self.next.min(left);
        self.next = (self.next * 2).min(LONGEST_PAUSE);
        Some(pause)
    }

    /// A run got through: the next refusal starts a new episode, with short pauses again.
    pub fn accepted(&mut self) {
        self.since = None;
        self.next = FIRST_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pauses_grow_to_two_seconds_and_stop_at_the_patience() {
        let t0 = Instant::now();
        let mut p = Pauses::new(Duration::from_secs(10));
        let mut now = t0;
        let mut seen = Vec::new();
        while let Some(pause) = p.refused(now) {
            seen.push(pause);
            // The run itself takes 10 ms before the daemon refuses it again.
            now += pause + ms(10);
        }
        let want: Vec<Duration> = [100, 200, 400, 800, 1600, 2000, 2000, 2000]
            .into_iter()
            .map(ms)
            .chain([ms(820)]) // cut to end at the patience: 10 s after the first refusal
            .collect();
        assert_eq!(seen, want);
        assert_eq!(now - t0, ms(10_010), "{seen:?}");
        // Still busy: no more pauses until a run gets through.
        assert_eq!(p.refused(now + ms(1)), None);
    }

    #[test]
    fn a_run_that_gets_through_starts_a_new_episode() {
        let t0 = Instant::now();
        let mut p = Pauses::new(Duration::from_secs(1));
        assert_eq!(p.refused(t0), Some(ms(100)));
        assert_eq!(p.refused(t0 + ms(100)), Some(ms(200)));
        assert_eq!(p.refused(t0 + ms(300)), Some(ms(400)));
        assert_eq!(p.refused(t0 + ms(700)), Some(ms(300)));
        p.accepted();
        // Long after the first episode's patience: a fresh one, short pauses again.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(p.refused(t1), Some(ms(100)));
        assert_eq!(p.refused(t1 + ms(999)), Some(ms(1)));
        assert_eq!(p.refused(t1 + ms(1000)), None);
    }

    #[test]
    fn zero_patience_never_pauses() {
        let mut p = Pauses::new(Duration::ZERO);
        assert_eq!(p.refused(Instant::now()), None);
    }

    #[test]
    fn patience_and_engine_retry_table() {
        // (rsync timeout, patience)
        let patiences = [
            (None, PATIENCE),
            (Some(Duration::from_secs(300)), PATIENCE),
            (Some(Duration::from_secs(5)), Duration::from_secs(5)),
        ];
        for (timeout, want) in patiences {
            assert_eq!(patience(timeout), want, "{timeout:?}");
        }
        // (min_interval, retry): never above RETRY, never doubled.
        let retries = [
            (Duration::from_secs(1), Duration::from_secs(1)),
            (ms(200), ms(200)),
            (Duration::from_secs(30), RETRY),
        ];
        for (min, want) in retries {
            assert_eq!(retry_after(min), want, "{min:?}");
        }
    }
}
