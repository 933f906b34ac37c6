//! The worker's status file: its JSON model (shared with the controller, which reads it)
//! and its write ([`crate::durable::replace`] without fsync: a report, not state — see
//! the durable module).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::durable::{self, Flush};
use crate::progress::Progress;

/// Top-level status document. Times are Unix seconds (f64, millisecond precision).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub pid: u32,
    pub started_at: f64,
    /// When this document was written.
    pub updated_at: f64,
    pub state: State,
    pub syncs: Vec<SyncStatus>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Adding watches / probing targets.
    Starting,
    /// Watches in place, nothing pending.
    Watching,
    /// Watches in place, pushes pending or running.
    Syncing,
    /// Something is wrong that syncd works around (unwatched dirs, failing target).
    Degraded,
    /// Draining after SIGTERM.
    Stopping,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncStatus {
    pub name: String,
    /// The source as written in the config.
    pub source: String,
    /// The directory watched and pushed when `source` is a symbolic link (what it led
    /// to at start or at the last reload). Absent otherwise, and from older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_resolved: Option<String>,
    /// Why the source path does not name the watched directory (unmounted, moved away,
    /// replaced): nothing of this sync is pushed until it is back or accepted. Absent
    /// from status files of older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_problem: Option<String>,
    /// Which watcher delivers this sync's changes: "inotify" or "fanotify" (what `watcher
    /// = "auto"` became). Absent until the watcher is up, and from older workers' files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher: Option<String>,
    /// Why that watcher, in one sentence ("kernel 6.18, ext4, one mark for the file
    /// system"; for inotify under `auto`, why not fanotify). Absent with `watcher`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher_reason: Option<String>,
    /// Directories with an inotify watch (0 under fanotify, which watches none).
    pub watched_dirs: u64,
    /// Directories that could not be watched (e.g. max_user_watches too low).
    pub unwatched_dirs: u64,
    /// inotify queue overflows seen (each one schedules a full push).
    pub overflows: u64,
    /// The last time this sync's watcher ran out of inotify watches and asked the
    /// controller for more. Absent when it never asked (and from older workers' files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watches_asked: Option<WatchesAsked>,
    /// What the sync's catch-up decided and did (at start, or when a lost source came
    /// back). Absent from status files of older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup: Option<CatchUp>,
    pub targets: Vec<TargetStatus>,
}

impl SyncStatus {
    /// Record which watcher is up and why (from the watcher's ready report), or that
    /// none is (`None`: stopped, or being replaced).
    pub fn set_watcher(&mut self, watcher: Option<(&str, &str)>) {
        self.watcher = watcher.map(|(kind, _)| kind.to_string());
        self.watcher_reason = watcher.map(|(_, why)| why.to_string());
    }

    /// True when the sync's changes come from fanotify: no directory is watched one by
    /// one, so the directory counts mean nothing.
    pub fn is_fanotify(&self) -> bool {
        self.watcher.as_deref() == Some("fanotify")
    }
}

/// A request for inotify watches to the controller (see `crate::watch::ask`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatchesAsked {
    /// The watches asked for: those in use when the limit was hit, plus the directories
    /// still missing.
    pub asked_for: u64,
    /// `fs.inotify.max_user_watches` before and after (None: could not be read).
    pub limit_before: Option<u64>,
    pub limit_after: Option<u64>,
    /// Did the controller answer (false: none within the wait, e.g. an older controller).
    pub answered: bool,
}

impl WatchesAsked {
    /// The limit went up.
    pub fn raised(&self) -> bool {
        matches!((self.limit_before, self.limit_after), (Some(b), Some(a)) if a > b)
    }
}

/// A sync's catch-up (see the catchup module): what it decided, why, what its walk found,
/// and what its targets' fail logs gave back at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatchUp {
    pub decision: CatchUpDecision,
    /// Why a whole-tree push; for a walk, the time it looks back to (RFC 3339); empty
    /// when there is nothing to catch up.
    pub reason: String,
    /// The walk's progress and findings (decision "walk" only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkOutcome>,
    /// Entries replayed from the sync's fail logs (one per target) at start.
    pub replayed: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CatchUpDecision {
    /// Nothing to catch up: a first start, or a sync new in the config.
    None,
    /// Walk the source for what changed since the previous worker last vouched.
    Walk,
    /// Push the whole tree.
    Full,
}

/// What a catch-up walk found; the counts grow to their final values by `done`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WalkOutcome {
    pub state: WalkState,
    /// Entries looked at.
    pub entries: u64,
    /// Changed files, symlinks and the like, pushed as paths.
    pub paths: u64,
    /// Changed directories, pushed as trees.
    pub dirs: u64,
    /// The top directory itself changed: a whole-tree push instead of paths and trees.
    pub whole_tree: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WalkState {
    /// Not finished yet.
    #[default]
    Walking,
    /// Finished: everything it found is queued.
    Done,
    /// Stopped before the end (a stop, or the source lost); the next start walks again.
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetStatus {
    pub name: String,
    pub dest: String,
    /// Paths waiting to be pushed (a pending whole-tree push counts as 1).
    pub queue_depth: u64,
    /// True when a whole-tree push is pending.
    pub full_pending: bool,
    /// Paths in the run(s) now in flight.
    pub in_flight: u64,
    /// Last time a push to this target succeeded.
    pub last_success: Option<f64>,
    /// Age in seconds of the oldest change not yet pushed (0 when in step).
    pub lag_seconds: f64,
    pub pushes_ok: u64,
    pub pushes_failed: u64,
    /// Entries the successful pushes carried: paths, directories pushed whole, and a
    /// whole-tree push as 1 (bytes are not counted: an ordinary push runs rsync without
    /// `--stats`). Absent from status files of older workers.
    #[serde(default)]
    pub paths_pushed: u64,
    /// Something is wrong that the target works around: failures since the last success,
    /// failing paths, a busy daemon it waits for, never reached. Absent from status files
    /// of older workers.
    #[serde(default)]
    pub degraded: bool,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    /// Paths in the fail log waiting for a retry.
    pub retry_backlog: u64,
    /// When the next try is due after a failure.
    pub next_retry_at: Option<f64>,
    pub full_syncs: u64,
    /// How deletions are sent: "delete-missing-args" or "include-filter" (fallback).
    pub delete_method: String,
    /// rsync's progress of the push in flight, when it is a large one (whole tree,
    /// directories, many paths). Absent from status files of older workers.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// Paths that keep failing on their own (rsync named them, exit 23) while the rest of
    /// the target's changes go on; each is retried with its own backoff and leaves the
    /// list once pushed. Absent when none fails, and from status files of older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_paths: Option<FailingPaths>,
    /// The last periodic verify (`[sync.verify] interval`); absent until one ended, when
    /// periodic verify is off, and from status files of older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyStatus>,
}

/// How a target's last periodic verify ended ([`crate::verify`]). Read by `syncd status`
/// and by anything that turns the status file into metrics: keep the names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyStatus {
    /// When it ended (Unix seconds).
    pub finished_at: f64,
    /// "equal", "drift" or "failed" (the target could not be checked: `error` says why).
    pub outcome: String,
    /// Entries missing on the target, different there, and there but not in the source.
    pub missing: u64,
    pub different: u64,
    pub extra: u64,
    /// How long it took.
    pub seconds: f64,
    pub error: Option<String>,
}

/// A target's failing paths: how many, and a few of them with rsync's reason.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailingPaths {
    pub count: u64,
    /// The first few, in path order.
    pub examples: Vec<FailingPath>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailingPath {
    /// Relative to the sync's source (lossy UTF-8).
    pub path: String,
    /// "the target cannot create it: Permission denied (13)".
    pub reason: String,
}

/// A wall-clock time as the status files write it: Unix seconds (0.0 before 1970).
pub fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Status {
    /// Write `self` to `path` with [`durable::replace_json`]: atomic (a reader never sees
    /// half a file), mode 0644 (`syncd status` may run as another user), not fsynced.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        durable::replace_json(path, self, 0o644, Flush::Atomic)
            .with_context(|| format!("failed to write status file {}", path.display()))
    }

    /// Read a status file written by [`Status::write`].
    pub fn read(path: &Path) -> anyhow::Result<Status> {
        let data = std::fs::read(path)
            .with_context(|| format!("failed to read status file {}", path.display()))?;
        serde_json::from_slice(&data)
            .with_context(|| format!("status file {} is not valid JSON", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync's status as an older worker (before `watcher`) wrote it.
    const OLDER_SYNC: &str = r#"{"name":"web","source":"/srv/web","watched_dirs":12,
        "unwatched_dirs":0,"overflows":0,"targets":[]}"#;

    /// A timestamp read back from the status file is the one written: `syncd status`,
    /// the tests and the metrics file (written from the same value) must agree. Seen
    /// failing in CI: serde_json's default float parser read 1796412060.8236187 back as
    /// 1796412060.823619 (one ulp off), and e2e `metrics::` compared the two.
    #[test]
    fn timestamps_read_back_exactly() {
        for t in [1_796_412_060.823_618_7_f64, 1_764_806_455.125, 0.1, 1e-7] {
            let json = serde_json::to_string(&t).expect("json");
            let back: f64 = serde_json::from_str(&json).expect("read back");
            assert_eq!(
                back.to_bits(),
                t.to_bits(),
                "{t} written as {json}, read as {back}"
            );
        }
    }

    #[test]
    fn an_older_workers_sync_status_reads_without_a_watcher() {
        let s: SyncStatus = serde_json::from_str(OLDER_SYNC).expect("an older sync status");
        assert_eq!((&s.watcher, &s.watcher_reason), (&None, &None));
        assert!(!s.is_fanotify());
    }

    #[test]
    fn the_watcher_is_written_once_known_and_left_out_before() {
        let mut s: SyncStatus = serde_json::from_str(OLDER_SYNC).expect("a sync status");
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains("watcher"), "{json}");

        s.set_watcher(Some((
            "fanotify",
            "kernel 6.18, ext4, one mark for the file system",
        )));
        assert!(s.is_fanotify());
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["watcher"], "fanotify");
        assert_eq!(
            json["watcher_reason"],
            "kernel 6.18, ext4, one mark for the file system"
        );
        let back: SyncStatus = serde_json::from_value(json).expect("read back");
        assert_eq!(back, s);

        s.set_watcher(Some(("inotify", "watcher = \"inotify\" in the config")));
        assert!(!s.is_fanotify());
        s.set_watcher(None);
        assert_eq!(
            (s.watcher.as_deref(), s.watcher_reason.as_deref()),
            (None, None)
        );
    }
}
