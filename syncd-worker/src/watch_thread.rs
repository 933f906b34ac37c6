//! The watcher thread of one sync: makes sure the source path names the directory it
//! should, watches it ([`Watcher`]), and reports to the engine through a callback. It
//! owns the source's lifecycle as seen from inotify:
//!
//! * before adding watches, the directory at the source path is compared with the one
//!   expected ([`SourceId`]: from the last run's record, or the one watched until it was
//!   lost). A different or missing directory is reported as [`Report::Lost`], and the
//!   path is looked at again each time something happens to it ([`PathWatch`]: a
//!   directory on the path moved or deleted, an entry on it created or swapped, the
//!   mount table changed) until the expected directory is back. A source written as a
//!   symbolic link is looked at through the link, and the link leading elsewhere than the
//!   directory watched (`source_id::link_moved`) is such a loss, whatever is expected;
//! * while watching, the root being unmounted, moved away or deleted (the tree's own
//!   inotify events), or the path naming another directory (a [`PathWatch`] event, then a
//!   look: a moved parent, a file system mounted over the source, a lazy unmount give
//!   the root no event), ends the watches and reports `Lost`; then the same wait;
//! * when the expected directory is back, its watches are added again and
//!   [`Report::Ready`] says so with `resumed` set;
//! * out of inotify watches (at the start, or later when the tree grows), it asks the
//!   controller for more ([`relieve_shortage`], `watch::ask`), once per value of the
//!   limit, and the limit raised, watches what was missing (before `Ready` at a start, so
//!   the start waits for at most one answer; later, the directories watched late are
//!   pushed as trees). Not raised: the shortage is explained in the log, the sync is
//!   degraded, and every [`UNWATCHED_RESCAN`] the missing watches are retried and the
//!   whole tree pushed.
//!
//! Idle, the thread blocks in one `poll(2)` on the tree's inotify descriptor, the path's,
//! the mount table and its wake-up pipe: no timer. It wakes on a timer only while a
//! change is settling ([`SETTLE`]), while directories are unwatched ([`UNWATCHED_RESCAN`]),
//! without a wake-up pipe ([`TICK`]), or when the path's events cannot be set up
//! ([`LOST_POLL`]).
//!
//! It never pushes and never decides what to push: the engine holds a lost sync's pushes.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFlags, PollTimeout};

use crate::catchup::{Watermark, SLACK};
use crate::config::{SyncJob, WatcherChoice};
use crate::deadline::after;
use crate::path_watch::PathWatch;
use crate::queue::Change;
use crate::source_id::{link_moved, SourceId};
use crate::watch::choose::{self, Chosen, Decision, Tree};
use crate::watch::fanotify::FanWatcher;
use crate::watch::{ask, limit, WatchStats, Watcher};

/// How often the source path is looked at when its events cannot be set up
/// ([`PathWatch::degraded`]: no inotify instance or watch left, no `/proc`).
pub const LOST_POLL: Duration = Duration::from_secs(2);
/// While directories are unwatched (watch shortage), how often the watcher retries the
/// missing watches and asks for a whole-tree push.
const UNWATCHED_RESCAN: Duration = Duration::from_secs(60);
/// How long one wait for events lasts while the watermark must keep moving (see
/// [`SETTLE`]), or when there is no [`Wake`] to end a longer one.
const TICK: Duration = Duration::from_millis(200);
/// After the last change (and after the watches are placed), how long the watermark is
/// moved every [`TICK`]: past the catch-up's slack, so the engine's quiet mark passes the
/// changes it received. Later, with nothing held, the wait lasts until something happens:
/// an idle watcher does not wake for nothing.
const SETTLE: Duration = Duration::from_secs(SLACK.as_secs() + 1);

/// Wakes a watcher thread blocked waiting for events, once its stop flag is set: the read
/// end of a pipe sits in its poll set. Single use: the thread ends.
#[derive(Debug)]
pub struct Wake {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Wake {
    /// None when no pipe can be made (out of descriptors): the watcher then waits in
    /// [`TICK`]s and looks at its stop flag in between, as a fallback.
    pub fn new() -> Option<Wake> {
        match nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC) {
            Ok((rx, tx)) => Some(Wake { rx, tx }),
            Err(e) => {
                log::warn!("cannot make the watcher's wake-up pipe ({e}); it looks at its stop flag every {TICK:?} instead");
                None
            }
        }
    }

    /// Wake the thread (its stop flag is already set). A full pipe already wakes it.
    pub fn wake(&self) {
        let _ = nix::unistd::write(&self.tx, &[1]);
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

/// What the thread tells the engine.
#[derive(Debug)]
pub enum Report {
    /// Every watch is in place on `source`. `resumed`: after a [`Report::Lost`].
    Ready {
        stats: WatchStats,
        source: SourceId,
        resumed: bool,
        /// Which watcher, and why.
        watcher: Chosen,
    },
    Changes(Vec<Change>),
    Stats(WatchStats),
    /// The source path does not name the expected directory (the reason, with the path).
    Lost(String),
    /// The thread cannot go on (the source cannot be watched at all).
    Fatal(String),
}

/// What the source path must name before watches are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// This directory (known from before).
    Exactly(SourceId),
    /// Whatever directory is there: a first start (a missing one is fatal, as a bad
    /// config is), or an operator accepting a new source (a missing one is waited for).
    Any { wait_if_missing: bool },
}

impl Expect {
    /// `Exactly` the directory known from before, else `Any`.
    pub fn known(id: Option<SourceId>, wait_if_missing: bool) -> Expect {
        match id {
            Some(id) => Expect::Exactly(id),
            None => Expect::Any { wait_if_missing },
        }
    }
}

/// Run until `stop` is set (and `wake` woken) or `send` returns false (the engine is gone).
pub fn run(
    job: &SyncJob,
    mut expect: Expect,
    stop: &AtomicBool,
    wake: Option<&Wake>,
    watermark: &Watermark,
    mut send: impl FnMut(Report) -> bool,
) {
    let mut resumed = false;
    // Why the source was just lost, as inotify told it: said instead of what the first
    // look at the path finds (less precise: "gone" for an unmount).
    let mut lost: Option<String> = None;
    let mut path = PathWatch::new(job.source_path());
    loop {
        // Armed before its last look: what happens to the path from then on is an event.
        let Some(source) =
            wait_for_source(job, expect, (stop, wake), &mut path, lost.take(), &mut send)
        else {
            return;
        };
        let decision = match choose::decide(job) {
            Ok(d) => d,
            Err(why) => {
                send(Report::Fatal(why));
                return;
            }
        };
        let (made, chosen) = match decision {
            Decision::Fanotify(w, chosen) => (Ok(Tree::Fanotify(*w)), chosen),
            Decision::Inotify(chosen) => (
                inotify_watcher(job, &mut path, (stop, wake)).map(Tree::Inotify),
                chosen,
            ),
        };
        let mut w = match made {
            Ok(w) => w,
            Err(e) => {
                if source.check_job(job).is_err() {
                    // Replaced while the watches were being added: wait again.
                    expect = Expect::Exactly(source);
                    continue;
                }
                send(Report::Fatal(format!("{e:#}")));
                return;
            }
        };
        if w.new_shortage() {
            if let Some(w) = w.inotify() {
                // Watched late, before Ready: the catch-up (or the initial push) covers them.
                relieve_shortage(job, w, (stop, wake));
            }
        }
        // The path may have changed while the watches were added (their events would
        // not say so if the change came before the root's watch).
        if let Err(why) = source.check_job(job) {
            drop(w);
            lost = Some(why);
            expect = Expect::Exactly(source);
            resumed = true;
            continue;
        }
        if !send(Report::Ready {
            stats: w.stats(),
            source,
            resumed,
            watcher: chosen,
        }) {
            return;
        }
        match watch(
            job,
            (&mut w, &mut path),
            source,
            (stop, wake),
            watermark,
            &mut send,
        ) {
            Ended::Stopped => return,
            Ended::Lost(why) => {
                drop(w);
                lost = Some(why);
                expect = Expect::Exactly(source);
                resumed = true;
            }
            Ended::Rewatch => {
                // The same source, watched again (the watcher decided anew).
                drop(w);
                expect = Expect::Exactly(source);
                resumed = true;
            }
        }
    }
}

/// The inotify watcher of `job`: when even the root finds no watch left, the path's own
/// watches are given up first, then the controller is asked for room.
fn inotify_watcher(
    job: &SyncJob,
    path: &mut PathWatch,
    (stop, wake): (&AtomicBool, Option<&Wake>),
) -> anyhow::Result<Watcher> {
    Watcher::new(job)
        .or_else(|e| {
            // Out of watches for the tree's root while the path's own watches hold some:
            // the tree comes first (the path is then looked at on a timer).
            if out_of_watches(&e)
                && path.release("its path watches given to the source tree (no inotify watch left)")
            {
                Watcher::new(job)
            } else {
                Err(e)
            }
        })
        // Still none for the root: ask the controller for room (the walk that follows
        // asks for the rest once it knows how much).
        .or_else(|e| {
            if out_of_watches(&e) && root_watch_granted(job, (stop, wake)) {
                Watcher::new(job)
            } else {
                Err(e)
            }
        })
}

/// Out of watches: ask the controller for more (unless it was asked at this limit
/// already, see [`limit::should_ask`]) and, the limit raised, watch what is missing; again
/// while still short and the limit moved. Not raised (refused, not allowed, no controller,
/// no answer): the shortage is explained in the log. Returns the directories watched late
/// (the tops of what was missing).
fn relieve_shortage(
    job: &SyncJob,
    w: &mut Watcher,
    (stop, wake): (&AtomicBool, Option<&Wake>),
) -> Vec<crate::batch::RelPath> {
    let mut late = Vec::new();
    while let Some(short) = w.shortage() {
        let Some(controller) = ask::controller() else {
            break;
        };
        let before = ask::limit_now();
        if stop.load(Ordering::Relaxed) || !limit::should_ask(w.asked_at(), before) {
            break;
        }
        let needed = limit::watches_needed(before, short.dirs, short.missing);
        log::warn!(
            "{}: out of inotify watches (fs.inotify.max_user_watches = {}): {} of {} directories unwatched; asking the controller for {needed} watches",
            job.name,
            before.map_or_else(|| "unknown".to_string(), |l| l.to_string()),
            short.missing,
            short.dirs
        );
        let Some(asked) = ask::ask(&controller, needed, before, wake.map(Wake::fd)) else {
            break;
        };
        w.note_ask(before, asked);
        let after = asked
            .limit_after
            .map_or_else(|| "unknown".to_string(), |l| l.to_string());
        if !asked.raised() {
            log::warn!(
                "{}: asked the controller for {needed} inotify watches; {}: fs.inotify.max_user_watches stays {after}",
                job.name,
                if asked.answered { "not raised" } else { "no answer" }
            );
            break;
        }
        log::info!(
            "{}: asked the controller for {needed} inotify watches; raised to {after}: watching the {} missing directories",
            job.name,
            short.missing
        );
        late.extend(w.retry_short());
    }
    if w.shortage().is_some() {
        w.explain_shortage();
    } else if !late.is_empty() {
        log::info!(
            "{}: every directory watched ({})",
            job.name,
            w.stats().watched
        );
    }
    late
}

/// Not even the source's root could be watched for lack of watches: ask the controller
/// for room for it. True when the limit was raised.
fn root_watch_granted(job: &SyncJob, (stop, wake): (&AtomicBool, Option<&Wake>)) -> bool {
    let Some(controller) = ask::controller() else {
        return false;
    };
    if stop.load(Ordering::Relaxed) {
        return false;
    }
    let before = ask::limit_now();
    let needed = limit::watches_needed(before, 1, 1);
    log::warn!(
        "{}: no inotify watch left for the source itself; asking the controller for {needed} watches",
        job.name
    );
    let raised = ask::ask(&controller, needed, before, wake.map(Wake::fd))
        .is_some_and(|asked| asked.raised());
    if !raised {
        log::warn!("{}: the controller did not raise the limit", job.name);
    }
    raised
}

/// Whether `e` is the kernel's "no watch left" (`ENOSPC` from `inotify_add_watch`).
fn out_of_watches(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(nix::errno::Errno::ENOSPC as i32)
    })
}

enum Ended {
    Stopped,
    Lost(String),
    /// The watcher no longer covers the source (a file system mounted below it under
    /// fanotify's mark): watch it again, deciding anew.
    Rewatch,
}

/// The next look at the path on a timer: only when its events are not set up.
fn timed_look(path: &PathWatch, now: Instant) -> Option<Instant> {
    path.degraded().map(|_| after(now, LOST_POLL))
}

/// Poll `w` and report its changes until stop or until the source is lost.
fn watch(
    job: &SyncJob,
    (w, path): (&mut Tree, &mut PathWatch),
    source: SourceId,
    (stop, wake): (&AtomicBool, Option<&Wake>),
    watermark: &Watermark,
    send: &mut impl FnMut(Report) -> bool,
) -> Ended {
    let mut last = w.stats();
    let mut next_rescan = Instant::now() + UNWATCHED_RESCAN;
    let mut next_look = timed_look(path, Instant::now());
    // The watches were just placed: the watermark must be set and moved like after a change.
    let mut last_change = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut out = Vec::new();
        let now = Instant::now();
        // Nothing due: block until an event (a timeout poll(2) cannot express blocks).
        let mut wait = Duration::MAX;
        if let Some(at) = next_look {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if wake.is_none() || now < after(last_change, SETTLE) {
            wait = wait.min(TICK);
        }
        if last.unwatched > 0 {
            wait = wait.min(next_rescan.saturating_duration_since(now));
        }
        let fds = path.poll_set(wake.map(Wake::fd));
        let woken = match w.poll_or_woken(wait, &fds, &mut out) {
            Ok(revents) => path.woken(&fds, &revents),
            Err(e) => {
                send(Report::Fatal(format!("{e:#}")));
                return Ended::Stopped;
            }
        };
        drop(fds);
        if let Some(why) = w.root_lost() {
            // What the same read brought before the loss is real: the engine keeps it
            // and pushes it once the source is back.
            if !out.is_empty() && !send(Report::Changes(out)) {
                return Ended::Stopped;
            }
            return Ended::Lost(why);
        }
        let now = Instant::now();
        let timed = next_look.is_some_and(|at| now >= at);
        if timed {
            // Degraded: try the events again (a shortage may be over).
            path.arm();
        }
        if path.changed(woken) || timed {
            next_look = timed_look(path, now);
            if let Err(why) = source.check_job(job) {
                if !out.is_empty() && !send(Report::Changes(out)) {
                    return Ended::Stopped;
                }
                return Ended::Lost(why);
            }
            if let Tree::Fanotify(f) = w {
                if mounted_below(job, f, &mut out) {
                    if !send(Report::Changes(out)) {
                        return Ended::Stopped;
                    }
                    return Ended::Rewatch;
                }
            }
        }
        let st = w.stats();
        if let Some(w) = w
            .inotify()
            .filter(|_| st.unwatched > 0 && now >= next_rescan)
        {
            next_rescan = now + UNWATCHED_RESCAN;
            let left = w.rewatch_all();
            log::warn!(
                "{}: {left} directories still unwatched; pushing the whole tree",
                job.name
            );
            out.push(Change::Full);
        }
        let short = w.new_shortage();
        if let Some(w) = w.inotify().filter(|_| short) {
            // Watched late: what changed in them before is pushed whole.
            for top in relieve_shortage(job, w, (stop, wake)) {
                out.push(if top.is_empty() {
                    Change::Full
                } else {
                    Change::Tree(top)
                });
            }
        }
        if !out.is_empty() {
            log::trace!("{}: {} changes from the watcher", job.name, out.len());
            last_change = now;
        }
        if !out.is_empty() && !send(Report::Changes(out)) {
            return Ended::Stopped;
        }
        watermark.advance_if(|| w.caught_up());
        let st = w.stats();
        if st != last {
            last = st;
            if !send(Report::Stats(st)) {
                return Ended::Stopped;
            }
        }
    }
    Ended::Stopped
}

/// File systems mounted below the source since `f` marked it (the mount table changed):
/// their trees go to `out` whole, nothing in them having been seen. True when the sync
/// must be watched again (`auto`: inotify walks into them); with `watcher = "fanotify"`
/// they are only said.
fn mounted_below(job: &SyncJob, f: &mut FanWatcher, out: &mut Vec<Change>) -> bool {
    let below = f.new_mounts_below();
    if below.is_empty() {
        return false;
    }
    let shown: Vec<String> = below
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    out.extend(below.into_iter().map(Change::Tree));
    if job.watcher == WatcherChoice::Auto {
        log::warn!(
            "{}: a file system was mounted below the source ({}); fanotify's mark does not cover it: watching with inotify instead, and pushing it whole",
            job.name,
            shown.join(", ")
        );
        return true;
    }
    log::warn!(
        "{}: a file system was mounted below the source ({}); watcher = \"fanotify\" does not see changes in it (pushed whole now, then only by a full sync); set watcher = \"auto\" to watch it with inotify",
        job.name,
        shown.join(", ")
    );
    false
}

/// Wait until the source path names a directory `expect` accepts, reporting `Lost` once
/// (and again when what the path names changes) while it does not; `first` is said
/// instead of the first finding. The path is looked at again each time `path` says
/// something happened to it. None: stop, or the engine is gone, or nothing to watch (a
/// fatal error was sent). On success `path` is armed, from before the look.
fn wait_for_source(
    job: &SyncJob,
    expect: Expect,
    (stop, wake): (&AtomicBool, Option<&Wake>),
    path: &mut PathWatch,
    mut first: Option<String>,
    send: &mut impl FnMut(Report) -> bool,
) -> Option<SourceId> {
    // The last finding reported (or replaced by `first`).
    let mut seen: Option<String> = None;
    path.arm();
    let mut look = true;
    let mut next_look = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        if look {
            next_look = timed_look(path, Instant::now());
            let shown = job.source_path().display();
            let why = match (expect, link_moved(job), SourceId::of(job.source_path())) {
                // A repointed link waits for a reload, whatever is expected.
                (_, Some(moved), _) => moved,
                (Expect::Exactly(want), None, now) => match want.differs(now.as_ref().ok()) {
                    None => return now.ok(),
                    Some(why) => format!("{shown}: {why}"),
                },
                (Expect::Any { .. }, None, Ok(now)) => return Some(now),
                (Expect::Any { wait_if_missing }, None, Err(e)) => {
                    if !wait_if_missing {
                        send(Report::Fatal(format!(
                            "cannot watch source directory {shown}: {e}; check that it exists, is a directory and is readable"
                        )));
                        return None;
                    }
                    format!("{shown}: {e}")
                }
            };
            if seen.as_deref() != Some(why.as_str()) {
                seen = Some(why.clone());
                let why = first.take().unwrap_or(why);
                log::warn!(
                    "{}: {why}; holding every push of this sync until {}",
                    job.name,
                    match expect {
                        Expect::Exactly(_) =>
                            "the directory that was watched is back (or an operator accepts the new one with `syncd reload` or `syncd sync --full`)",
                        Expect::Any { .. } => "a directory is there",
                    }
                );
                if !send(Report::Lost(why)) {
                    return None;
                }
            }
        }
        let now = Instant::now();
        let mut wait = next_look.map_or(Duration::MAX, |at: Instant| {
            at.saturating_duration_since(now)
        });
        if wake.is_none() {
            wait = wait.min(TICK);
        }
        let woken = {
            let mut fds = path.poll_set(wake.map(Wake::fd));
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::NONE);
            let revents: Vec<PollFlags> = match nix::poll::poll(&mut fds, timeout) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                    .collect(),
                // Nothing happened; the flags are looked at again.
                Err(Errno::EINTR) => Vec::new(),
                Err(e) => {
                    send(Report::Fatal(format!(
                        "cannot wait for the source {} to come back: poll failed: {e}",
                        job.source_path().display()
                    )));
                    return None;
                }
            };
            path.woken(&fds, &revents)
        };
        let timed = next_look.is_some_and(|at| Instant::now() >= at);
        if timed {
            path.arm();
        }
        look = path.changed(woken) || timed;
    }
}
