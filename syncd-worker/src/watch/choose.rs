//! Which watcher a sync gets (`watcher = "auto" | "inotify" | "fanotify"`), and the one
//! interface the watcher thread drives either through ([`Tree`]). `auto` tries fanotify
//! ([`FanWatcher::new`] says what is missing: kernel, privileges, file system, a mount
//! below the source) and takes inotify otherwise; the reason goes to the log and to
//! `syncd status`. Decided each time the source is (re)watched.

use std::time::Duration;

use nix::poll::{PollFd, PollFlags};

use super::fanotify::FanWatcher;
use super::{WatchStats, Watcher};
use crate::config::{SyncJob, WatcherChoice};
use crate::queue::Change;

/// The watcher kind, as the status file says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Inotify,
    Fanotify,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Inotify => "inotify",
            Kind::Fanotify => "fanotify",
        }
    }
}

/// What watches a sync, and why (one sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub kind: Kind,
    pub reason: String,
}

/// The decision before any inotify watch is added: a fanotify watcher ready to use, or
/// inotify with why.
pub enum Decision {
    Fanotify(Box<FanWatcher>, Chosen),
    Inotify(Chosen),
}

/// Decide for `job`. Err: `watcher = "fanotify"` and fanotify cannot watch this source
/// (the message says why and what to set instead).
pub fn decide(job: &SyncJob) -> Result<Decision, String> {
    match job.watcher {
        WatcherChoice::Inotify => Ok(Decision::Inotify(Chosen {
            kind: Kind::Inotify,
            reason: "watcher = \"inotify\" in the config".into(),
        })),
        WatcherChoice::Fanotify => match FanWatcher::new(job) {
            Ok(w) => {
                let reason = format!("watcher = \"fanotify\" in the config: {}", w.about());
                Ok(Decision::Fanotify(Box::new(w), Chosen { kind: Kind::Fanotify, reason }))
            }
            Err(why) => Err(format!(
                "watcher = \"fanotify\" cannot watch {}: {why}; set watcher = \"auto\" (or \"inotify\") to watch it with inotify",
                job.source.display()
            )),
        },
        WatcherChoice::Auto => Ok(match FanWatcher::new(job) {
            Ok(w) => {
                let reason = format!("watcher = \"auto\": {}", w.about());
                Decision::Fanotify(Box::new(w), Chosen { kind: Kind::Fanotify, reason })
            }
            Err(why) => Decision::Inotify(Chosen {
                kind: Kind::Inotify,
                reason: format!("watcher = \"auto\", and fanotify is not available: {why}"),
            }),
        }),
    }
}

/// A sync's watcher, of either kind.
pub enum Tree {
    Inotify(Watcher),
    Fanotify(FanWatcher),
}

impl Tree {
    pub fn stats(&self) -> WatchStats {
        match self {
            Tree::Inotify(w) => w.stats(),
            Tree::Fanotify(w) => w.stats(),
        }
    }

    pub fn root_lost(&self) -> Option<String> {
        match self {
            Tree::Inotify(w) => w.root_lost(),
            Tree::Fanotify(w) => w.root_lost(),
        }
    }

    pub fn caught_up(&self) -> bool {
        match self {
            Tree::Inotify(w) => w.caught_up(),
            Tree::Fanotify(w) => w.caught_up(),
        }
    }

    pub fn poll_or_woken(
        &mut self,
        timeout: Duration,
        also: &[PollFd<'_>],
        out: &mut Vec<Change>,
    ) -> anyhow::Result<Vec<PollFlags>> {
        match self {
            Tree::Inotify(w) => w.poll_or_woken(timeout, also, out),
            Tree::Fanotify(w) => w.poll_or_woken(timeout, also, out),
        }
    }

    /// Did directories go unwatched for lack of watches since the last call (inotify
    /// only; see [`Watcher::new_shortage`]).
    pub fn new_shortage(&mut self) -> bool {
        match self {
            Tree::Inotify(w) => w.new_shortage(),
            Tree::Fanotify(_) => false,
        }
    }

    /// The inotify watcher, for what only it has (watch shortages).
    pub fn inotify(&mut self) -> Option<&mut Watcher> {
        match self {
            Tree::Inotify(w) => Some(w),
            Tree::Fanotify(_) => None,
        }
    }
}
