//! Deadline arithmetic that never panics. `Instant + Duration` (and `SystemTime +
//! Duration`) panic on overflow; a duration from a config file, a flag or a doubling
//! backoff must never crash the worker or the controller that way. The config bounds
//! every duration key (see `config::spec`), and these helpers are the second line: a sum
//! that does not fit becomes the farthest instant that does, at most [`FAR`] ahead —
//! "never, as far as this process is concerned". Pure: no clocks read here.

use std::time::{Duration, Instant, SystemTime};

/// The farthest a saturated deadline lies ahead: a century. No process waits that long,
/// and `Instant` can represent it on every platform syncd runs on.
pub const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, or the farthest instant up to `FAR` ahead when that overflows.
pub fn after(now: Instant, d: Duration) -> Instant {
    saturating(now, d, Instant::checked_add)
}

/// `now + d` on the wall clock, saturating the same way (for times shown in the status).
pub fn wall_after(now: SystemTime, d: Duration) -> SystemTime {
    saturating(now, d, SystemTime::checked_add)
}

/// `add(now, d)`, else the largest step towards it (at most `FAR`, halved until it
/// fits), else `now`.
fn saturating<T: Copy>(now: T, d: Duration, add: impl Fn(&T, Duration) -> Option<T>) -> T {
    if let Some(t) = add(&now, d) {
        return t;
    }
    let mut step = d.min(FAR);
    while !step.is_zero() {
        if let Some(t) = add(&now, step) {
            return t;
        }
        step /= 2;
    }
    now
}

/// The next backoff: `min` after none, then doubling, never past `max` (and never
/// overflowing, whatever the config said).
pub fn double(current: Duration, min: Duration, max: Duration) -> Duration {
    if current.is_zero() {
        min.min(max)
    } else {
        current.saturating_mul(2).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = Duration::from_secs(31_557_600);

    #[test]
    fn after_adds_when_it_fits_and_saturates_when_not() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(after(now, YEAR), now + YEAR);
        for huge in [
            Duration::MAX,
            Duration::from_secs(500_000_000_000 * 31_557_600),
        ] {
            let t = after(now, huge);
            assert!(t > now + YEAR, "{huge:?}: saturates far ahead");
            assert!(t <= now + FAR, "{huge:?}: at most FAR ahead");
        }
        // Near the end of what Instant can hold, still no panic and no going back.
        let late = after(now, FAR);
        assert!(after(late, Duration::MAX) >= late);
    }

    #[test]
    fn wall_after_saturates_too() {
        let now = SystemTime::now();
        assert_eq!(wall_after(now, YEAR), now + YEAR);
        let t = wall_after(now, Duration::MAX);
        assert!(t > now + YEAR && t <= now + FAR);
    }

    #[test]
    fn double_table() {
        let s = Duration::from_secs;
        let cases = [
            // (current, min, max, want)
            (s(0), s(1), s(300), s(1)),
            (s(1), s(1), s(300), s(2)),
            (s(200), s(1), s(300), s(300)),
            (s(300), s(1), s(300), s(300)),
            (Duration::MAX, s(1), Duration::MAX, Duration::MAX),
            (Duration::MAX / 2 + s(1), s(1), Duration::MAX, Duration::MAX),
            (s(0), s(10), s(5), s(5)),
        ];
        for (cur, min, max, want) in cases {
            assert_eq!(double(cur, min, max), want, "{cur:?} {min:?} {max:?}");
        }
    }
}
