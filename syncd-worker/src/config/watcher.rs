//! `watcher = "auto" | "inotify" | "fanotify"`: which kernel interface a sync's changes
//! come from. The choice as configured; what `auto` becomes is decided when the sync
//! starts (by the watcher thread), and the status file says which and why. Pure data.

use std::fmt;

/// What `watcher` asks for (default [`WatcherChoice::Auto`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WatcherChoice {
    /// fanotify when the kernel, the source's file system and the privileges allow it
    /// and nothing else is mounted below the source; inotify otherwise.
    #[default]
    Auto,
    /// Always inotify: one watch per directory.
    Inotify,
    /// fanotify (one mark for the whole file system), or the sync does not start.
    Fanotify,
}

impl WatcherChoice {
    /// Every value, in the order the config documents them.
    pub const ALL: [WatcherChoice; 3] = [
        WatcherChoice::Auto,
        WatcherChoice::Inotify,
        WatcherChoice::Fanotify,
    ];

    /// The word the config writes.
    pub fn word(self) -> &'static str {
        match self {
            WatcherChoice::Auto => "auto",
            WatcherChoice::Inotify => "inotify",
            WatcherChoice::Fanotify => "fanotify",
        }
    }

    /// The choice a config word names; None for any other word (exact, lower case, as
    /// every other word of the config).
    pub fn from_word(word: &str) -> Option<WatcherChoice> {
        WatcherChoice::ALL.into_iter().find(|c| c.word() == word)
    }
}

impl fmt::Display for WatcherChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_nothing_else_is_a_choice() {
        for c in WatcherChoice::ALL {
            assert_eq!(WatcherChoice::from_word(c.word()), Some(c));
            assert_eq!(c.to_string(), c.word());
        }
        assert_eq!(WatcherChoice::default(), WatcherChoice::Auto);
        for bad in ["", "Auto", "FANOTIFY", "inotify ", "fan", "poll"] {
            assert_eq!(WatcherChoice::from_word(bad), None, "{bad:?}");
        }
    }
}
