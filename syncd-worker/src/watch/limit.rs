//! How many inotify watches to ask for: the one rule behind both the controller's
//! `fs.inotify.max_user_watches` plan (`syncd/src/sysctl.rs`) and the worker's
//! out-of-watches request and message, so the number the worker suggests is the number
//! the controller sets when the worker asks it ([`watches_needed`] is what it sends). And
//! when to ask ([`should_ask`]). Pure: no `/proc`, no walks; the counts are passed in.

/// Watches left for everything else of the same user, at least.
pub const WATCH_HEADROOM: u64 = 8192;

/// `max_user_watches` wanted for `dirs` directories (one watch each): doubled (room for
/// the tree to grow), at least [`WATCH_HEADROOM`] more (other programs of the same user
/// hold watches too), rounded up to a power of two so the value only moves when the tree
/// doubles. Saturates at `u64::MAX`.
pub fn watches_for(dirs: u64) -> u64 {
    let with_room = dirs
        .saturating_mul(2)
        .max(dirs.saturating_add(WATCH_HEADROOM));
    with_room.checked_next_power_of_two().unwrap_or(u64::MAX)
}

/// The `max_user_watches` to suggest when adding a watch failed for lack of them
/// (`ENOSPC`): at that moment all of `limit` is in use, so what the user needs is `limit`
/// plus the `missing` directories of this tree, given the same room as [`watches_for`].
/// When the limit cannot be read, this tree's `dirs` alone. Never less than
/// [`watches_for`]`(dirs)`.
pub fn watches_to_suggest(limit: Option<u64>, dirs: u64, missing: u64) -> u64 {
    watches_for(watches_needed(limit, dirs, missing))
}

/// The watches the user needs when adding one failed for lack of them (`ENOSPC`): all of
/// `limit` in use, plus the `missing` directories of this tree (a tree of `dirs`); this
/// tree's `dirs` alone when the limit cannot be read. What the worker asks its controller
/// for: the controller's plan gives it the room of [`watches_for`].
pub fn watches_needed(limit: Option<u64>, dirs: u64, missing: u64) -> u64 {
    limit.map_or(dirs, |l| l.saturating_add(missing)).max(dirs)
}

/// Ask the controller for more watches now? Not when it was already asked while the
/// limit was this same value: its answer then (refused, not allowed, no controller) still
/// stands; asked again only once the limit moved (raised but still short, or changed by
/// an operator). `asked_at`: the limit at the last ask (None: never asked; `Some(None)`:
/// asked while the limit could not be read).
pub fn should_ask(asked_at: Option<Option<u64>>, limit: Option<u64>) -> bool {
    asked_at != Some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_for_table() {
        let cases = [
            (0, 8192),
            (1, 16384),
            (10, 16384),
            (8192, 16384),
            (8193, 32768),
            (16384, 32768),
            (16385, 65536),
            (100_000, 262_144),
            (600_000, 2_097_152),
            (u64::MAX / 2, u64::MAX),
            (u64::MAX, u64::MAX),
        ];
        for (dirs, want) in cases {
            assert_eq!(watches_for(dirs), want, "dirs {dirs}");
            assert!(watches_for(dirs) >= dirs);
        }
    }

    #[test]
    fn watches_to_suggest_table() {
        // (case, limit, dirs of this tree, missing, suggested)
        let cases = [
            ("old default, small tree", Some(8192), 9000, 900, 32768),
            ("limit unknown: this tree alone", None, 9000, 900, 32768),
            ("others hold most watches", Some(65536), 1000, 1000, 262_144),
            ("nothing missing any more", Some(8192), 100, 0, 16384),
            (
                "limit below what is watched (race)",
                Some(10),
                50_000,
                1,
                131_072,
            ),
            ("saturates", Some(u64::MAX), 1, 1, u64::MAX),
        ];
        for (name, limit, dirs, missing, want) in cases {
            let got = watches_to_suggest(limit, dirs, missing);
            assert_eq!(got, want, "{name}");
            assert!(
                got > limit.unwrap_or(0) || got == u64::MAX,
                "{name}: not a raise"
            );
        }
        // The number the worker suggests is the controller's for the same count.
        assert_eq!(watches_to_suggest(Some(8192), 9000, 900), watches_for(9092));
        assert_eq!(watches_needed(Some(8192), 9000, 900), 9092);
        assert_eq!(watches_needed(None, 9000, 900), 9000);
        assert_eq!(watches_needed(Some(10), 50_000, 1), 50_000);
    }

    #[test]
    fn ask_once_per_limit() {
        // (asked at, limit now, ask?)
        let cases = [
            (None, Some(8192), true),
            (None, None, true),
            (Some(Some(8192)), Some(8192), false), // refused at this limit: stands
            (Some(Some(8192)), Some(32768), true), // raised, still short: ask again
            (Some(Some(32768)), Some(8192), true), // lowered by an operator
            (Some(None), None, false),
            (Some(None), Some(8192), true),
        ];
        for (asked_at, limit, want) in cases {
            assert_eq!(should_ask(asked_at, limit), want, "{asked_at:?} {limit:?}");
        }
    }
}
