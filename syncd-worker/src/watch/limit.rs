//! How many inotify watches to ask for: the one rule behind both the controller's
//! `fs.inotify.max_user_watches` plan (`syncd/src/sysctl.rs`) and the worker's
//! out-of-watches message, so the number the worker suggests is the number the
//! controller would set. Pure: no `/proc`, no walks; the counts are passed in.

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
    let in_use_and_missing = limit.map_or(dirs, |l| l.saturating_add(missing));
    watches_for(in_use_and_missing.max(dirs))
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
    }
}
