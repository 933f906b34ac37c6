//! The deletion guard of whole-tree pushes (`max_delete`): how much of the target one
//! push may delete. A whole-tree push (`-r --delete SRC/ DEST`) of a source that was
//! emptied, restored wrongly, or is an empty mount point deletes the backup; lsyncd and
//! sersync have no guard. syncd's push first asks rsync for a dry run with `--stats`
//! (the same file-list exchange, nothing transferred or deleted; rsync 3.1+ reports the
//! receiver's deletions to the client, also from a daemon), then decides here whether
//! the push may run. `--max-delete` alone cannot do it: it deletes up to its limit before
//! stopping, and a daemon receiver reports hitting it only in its own log (the client
//! exits 0, measured with rsync 3.5.0). Pure: no I/O.

use std::fmt;

/// `max_delete`: the most a whole-tree push may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteGuard {
    /// No guard (`"off"`).
    Off,
    /// At most this percentage (1–99) of the target's entries after the push (`"50%"`).
    Share(u8),
    /// At most this many entries (`1000`).
    Count(u64),
}

impl Default for DeleteGuard {
    fn default() -> Self {
        DeleteGuard::Share(50)
    }
}

impl fmt::Display for DeleteGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteGuard::Off => f.write_str("off"),
            DeleteGuard::Share(p) => write!(f, "{p}%"),
            DeleteGuard::Count(n) => write!(f, "{n}"),
        }
    }
}

impl DeleteGuard {
    /// Read `"off"`, `"50%"` or `"1000"`; Err says what is accepted.
    pub fn parse(text: &str) -> Result<DeleteGuard, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "max_delete is {text:?}; it must be a share of the target such as \"50%\" (1% to 99%), a number of entries such as 1000, or \"off\""
            )
        };
        if t.eq_ignore_ascii_case("off") {
            return Ok(DeleteGuard::Off);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<u8>() {
                Ok(p @ 1..=99) => Ok(DeleteGuard::Share(p)),
                Ok(100) => Ok(DeleteGuard::Off),
                _ => Err(bad()),
            };
        }
        t.parse::<u64>().map(DeleteGuard::Count).map_err(|_| bad())
    }

    /// The most deletions allowed when the source holds `source_entries` entries (the
    /// top directory not counted): the `--max-delete` of the run that deletes. None: no
    /// limit.
    pub fn allowed(&self, source_entries: u64) -> Option<u64> {
        match *self {
            DeleteGuard::Off => None,
            _ if source_entries == 0 => Some(0),
            // d ≤ p% of (kept + d)  ⇔  d·(100 − p) ≤ p·kept
            DeleteGuard::Share(p) => {
                let p = u128::from(p);
                let d = p * u128::from(source_entries) / (100 - p);
                Some(u64::try_from(d).unwrap_or(u64::MAX))
            }
            DeleteGuard::Count(n) => Some(n),
        }
    }

    /// Why `deletions` may not go ahead when the source holds `source_entries`; None
    /// when they may.
    pub fn verdict(&self, deletions: u64, source_entries: u64) -> Option<String> {
        let allowed = self.allowed(source_entries)?;
        if deletions <= allowed {
            return None;
        }
        Some(if source_entries == 0 {
            format!(
                "the source is empty and the push would delete the target's {deletions} entries"
            )
        } else {
            format!(
                "the push would delete {deletions} entries of the target, more than max_delete = {self} allows ({allowed}, with {source_entries} entries in the source)"
            )
        })
    }
}

/// From rsync's `--stats` block: (entries sent, the top directory not counted; entries
/// the receiver deleted or would delete). None when the block lacks either line (rsync
/// before 3.1 does not report deletions).
pub fn stats_counts(stdout: &str) -> Option<(u64, u64)> {
    let number = |label: &str| -> Option<u64> {
        let line = stdout.lines().find(|l| l.starts_with(label))?;
        let digits: String = line[label.len()..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let files = number("Number of files:")?;
    let deleted = number("Number of deleted files:")?;
    Some((files.saturating_sub(1), deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: [(&str, Result<DeleteGuard, &str>); 9] = [
            ("50%", Ok(DeleteGuard::Share(50))),
            (" 10 % ", Ok(DeleteGuard::Share(10))),
            ("100%", Ok(DeleteGuard::Off)),
            ("off", Ok(DeleteGuard::Off)),
            ("OFF", Ok(DeleteGuard::Off)),
            ("1000", Ok(DeleteGuard::Count(1000))),
            ("0", Ok(DeleteGuard::Count(0))),
            ("0%", Err("1% to 99%")),
            ("half", Err("\"off\"")),
        ];
        for (text, want) in cases {
            match (DeleteGuard::parse(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
                (Err(got), Err(word)) => assert!(got.contains(word), "{text:?}: {got}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn verdict_table() {
        use DeleteGuard::*;
        // (guard, deletions, source entries, trips?)
        let cases = [
            (Share(50), 0, 0, false),
            (Share(50), 1, 0, true), // an empty source never empties the target
            (Count(1000), 1, 0, true),
            (Off, 5000, 0, false),
            (Share(50), 100, 100, false), // half of the target
            (Share(50), 101, 100, true),
            (Share(90), 900, 100, false),
            (Share(90), 901, 100, true),
            (Share(10), 11, 100, false), // 11 of 111 is under 10%
            (Share(10), 12, 100, true),
            (Count(1000), 1000, 5, false),
            (Count(1000), 1001, 5_000_000, true),
            (Share(99), u64::MAX, u64::MAX, false),
        ];
        for (g, d, s, trips) in cases {
            assert_eq!(g.verdict(d, s).is_some(), trips, "{g} d={d} s={s}");
        }
        let why = Share(50).verdict(9, 1).expect("trips");
        assert!(why.contains("max_delete = 50%"), "{why}");
        assert!(Share(50).verdict(3, 0).expect("trips").contains("empty"));
    }

    #[test]
    fn counts_from_rsync_stats() {
        let out = "\nNumber of files: 1,234 (reg: 1,000, dir: 234)\nNumber of created files: 0\nNumber of deleted files: 5 (reg: 3, dir: 2)\nNumber of regular files transferred: 0\n";
        assert_eq!(stats_counts(out), Some((1233, 5)));
        let none = "Number of files: 3 (reg: 1, dir: 2)\nNumber of deleted files: 0\n";
        assert_eq!(stats_counts(none), Some((2, 0)));
        // rsync 3.0 has no deleted-files line.
        assert_eq!(
            stats_counts("Number of files: 3\nTotal file size: 2 bytes\n"),
            None
        );
    }
}
