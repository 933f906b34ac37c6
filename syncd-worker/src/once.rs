//! One-shot mode (`syncd-worker --once [--full]`): push what the fail logs hold (every
//! tree whole with `--full`) to every target, in the foreground, and exit. No watches, no
//! queue, no status file. It takes the state directory's lock like the engine, so it
//! never runs beside a daemon's worker (`syncd sync` goes through the daemon when one
//! runs).
//!
//! Per (sync, target), in config order: the work is recorded in the fail log *before* the
//! push (so an interrupted `--full` is still owed) and cleared after a push that
//! succeeded; after a failure it stays there for the next start. Progress shows as a bar
//! on stderr when stderr is a terminal (redrawn in place at most 10 times a second) and
//! as plain log lines otherwise. Must not: touch the source tree, or retry in a loop
//! (the daemon retries; this reports and exits).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::config::{Config, SyncJob, Target};
use crate::faillog::FailLog;
use crate::progress::{self, Progress, SharedProgress};
use crate::push::{execute, Checks, PushReport};
use crate::rsync::args::Caps;
use crate::rsync::exit::{Class, Outcome};
use crate::rsync::probe::probe_target;
use crate::source_id::{Record, SourceId};
use crate::state_dir::StateDir;
use crate::target::fallback_caps;

/// How often the terminal bar is redrawn.
const BAR_TICK: Duration = Duration::from_millis(100);
/// How often a plain progress line is logged when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(2);

/// Push the fail logs' entries (with `full`, every tree whole) to every target once.
/// `Ok(true)` when everything was pushed, `Ok(false)` when something failed (each
/// failure was logged, and what it owes stays in its fail log); `Err` when the run could
/// not start (state directory, lock).
pub fn run(config: &Config, full: bool, force: bool) -> anyhow::Result<bool> {
    let state = StateDir::create(&config.state_dir)?;
    for w in &config.warnings {
        log::warn!("{w}");
    }
    let _lock = state.lock()?;
    // The directories the daemon watched: never push from another one.
    let sources = Record::load(&config.state_dir);
    let mut display = Display::new();
    let mut failed = Vec::new();
    let mut pushed = 0usize;
    for job in &config.syncs {
        for target in &job.targets {
            // --force: the source as it is now, whatever it was.
            let source = sources
                .expected(&job.name, job.source_path())
                .filter(|_| !force);
            match push_target(
                job,
                target,
                (full, force),
                source,
                &config.state_dir,
                &mut display,
            ) {
                Ok(true) => pushed += 1,
                Ok(false) => {}
                Err(e) => {
                    log::error!("{} → {}: {e:#}", job.name, target.name);
                    failed.push(format!("{} → {}", job.name, target.name));
                }
            }
        }
    }
    if failed.is_empty() {
        log::info!(
            "done: {}",
            if pushed == 0 {
                "nothing was pending".to_string()
            } else {
                format!(
                    "{pushed} target{} up to date",
                    if pushed == 1 { "" } else { "s" }
                )
            }
        );
        Ok(true)
    } else {
        log::error!(
            "not everything was pushed ({}); what failed stays in the fail log under {} and is pushed on the next start or `syncd sync`",
            failed.join(", "),
            state.faillog_dir().display()
        );
        Ok(false)
    }
}

/// One (sync, target): `Ok(true)` pushed, `Ok(false)` nothing to push, `Err` failed
/// (the message says what stays in the fail log).
fn push_target(
    job: &SyncJob,
    target: &Target,
    (full, force): (bool, bool),
    source: Option<SourceId>,
    state_dir: &Path,
    display: &mut Display,
) -> anyhow::Result<bool> {
    let faillog = FailLog::open(state_dir, &job.name, &target.name)?;
    let saved = faillog.load();
    let batch = if full {
        Batch::full()
    } else {
        saved.clone().in_mode(job.mode)
    };
    if batch.is_empty() {
        log::info!("{} → {}: nothing pending", job.name, target.name);
        return Ok(false);
    }
    if batch != saved {
        faillog.save(&batch)?;
    }
    let owed = || {
        format!(
            "{} stay{} in the fail log {}",
            describe(&batch),
            if batch.full || batch.len() != 1 {
                ""
            } else {
                "s"
            },
            faillog.path().display()
        )
    };
    let mut caps = match probe_target(job, target) {
        Ok(c) => c,
        Err(o) => anyhow::bail!("{}; {}", o.message_for(&target.kind), owed()),
    };
    log::info!(
        "{} → {}: pushing {}",
        job.name,
        target.name,
        describe(&batch)
    );
    let slot = progress::shared();
    let report = loop {
        let report = push_with_display(job, target, &batch, caps, (source, !force), &slot, display);
        if let Some(fallback) = fallback_caps(caps, &report.outcome) {
            log::warn!(
                "{} → {}: {}; retrying with the include-filter form",
                job.name,
                target.name,
                report.outcome.message
            );
            caps = fallback;
            continue;
        }
        break report;
    };
    if report.outcome.class != Class::Success {
        anyhow::bail!("{}; {}", report.outcome.message_for(&target.kind), owed());
    }
    faillog.save(&Batch::default())?;
    log::info!(
        "{} → {}: pushed {} in {:.2}s{}",
        job.name,
        target.name,
        describe(&batch),
        report.elapsed.as_secs_f64(),
        progress::snapshot(&slot)
            .map(|p| format!(" ({})", progress::line(&p)))
            .unwrap_or_default()
    );
    Ok(true)
}

/// Run the push on a thread and show its progress until it ends.
fn push_with_display(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    caps: Caps,
    (source, guard): (Option<SourceId>, bool),
    slot: &SharedProgress,
    display: &mut Display,
) -> PushReport {
    let (tx, rx) = mpsc::channel();
    let report = std::thread::scope(|scope| {
        // The push thread spawns and waits for its rsync children itself (see
        // `rsync::run`), so their parent-death signal is tied to it, not to this thread.
        scope.spawn(move || {
            let checks = Checks {
                source,
                guard,
                one_at_a_time: false,
                impatient: false,
            };
            let _ = tx.send(execute(job, target, batch, caps, checks, Some(slot), None));
        });
        loop {
            match rx.recv_timeout(display.tick()) {
                Ok(report) => break Some(report),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(p) = progress::snapshot(slot) {
                        display.show(&format!("{} → {}", job.name, target.name), &p);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        }
    });
    display.clear();
    report.unwrap_or_else(|| PushReport {
        outcome: Outcome {
            class: Class::Retry,
            code: None,
            message: "the push thread panicked (a bug in syncd; please report it)".into(),
        },
        runs: 0,
        refused_busy: false,
        elapsed: Duration::ZERO,
        source_lost: None,
        failed: None,
    })
}

fn describe(b: &Batch) -> String {
    if b.full {
        return "the whole tree".into();
    }
    let n = b.len();
    format!("{n} fail-log entr{}", if n == 1 { "y" } else { "ies" })
}

/// Where progress goes (shared with `syncd sync`): a bar redrawn in place on stderr when
/// stderr is a terminal, or `log::info!` lines at most every [`LINE_EVERY`] otherwise.
/// Call [`Display::clear`] before writing anything else to stderr.
pub struct Display {
    tty: bool,
    drawn: bool,
    last_line: Option<Instant>,
    last_text: Option<String>,
}

impl Default for Display {
    fn default() -> Self {
        Display::new()
    }
}

impl Display {
    pub fn new() -> Display {
        Display {
            tty: std::io::stderr().is_terminal(),
            drawn: false,
            last_line: None,
            last_text: None,
        }
    }

    /// Is the bar drawn on a terminal (or are plain lines logged)?
    pub fn is_terminal(&self) -> bool {
        self.tty
    }

    /// How long to wait between looks at the progress: 100 ms on a terminal.
    pub fn tick(&self) -> Duration {
        if self.tty {
            BAR_TICK
        } else {
            Duration::from_millis(500)
        }
    }

    /// Show `p` for `label` (e.g. "web → backup").
    pub fn show(&mut self, label: &str, p: &Progress) {
        if self.tty {
            let width = terminal_width()
                .saturating_sub(1)
                .saturating_sub(label.chars().count() + 1);
            self.draw(&format!("{label} {}", progress::bar(p, width)));
        } else {
            self.log(&format!("{label}: {}", progress::line(p)));
        }
    }

    /// Show a short text instead of a bar (e.g. "2 queued, 1 in flight").
    pub fn note(&mut self, text: &str) {
        if self.tty {
            let width = terminal_width().saturating_sub(1);
            self.draw(&text.chars().take(width).collect::<String>());
        } else {
            self.log(text);
        }
    }

    fn draw(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text}\x1b[K");
        let _ = err.flush();
        self.drawn = true;
    }

    fn log(&mut self, text: &str) {
        let due = self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY);
        if due && self.last_text.as_deref() != Some(text) {
            log::info!("{text}");
            self.last_line = Some(Instant::now());
            self.last_text = Some(text.to_string());
        }
    }

    /// Take the bar off its line, so that what is written next starts on a clean line.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
        self.last_line = None;
        self.last_text = None;
    }
}

/// Columns of the terminal on stderr; 80 when it cannot be told.
fn terminal_width() -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points to a
    // live, properly aligned `winsize` on our stack. No safe wrapper exists (nix's ioctl
    // macros generate unsafe functions too).
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsync::tests::{job, local};

    fn config(state: &Path, jobs: Vec<SyncJob>) -> Config {
        Config {
            path: state.join("syncd.toml"),
            state_dir: state.to_path_buf(),
            status_file: StateDir::at(state).status_file(),
            metrics_file: None,
            syncs: jobs,
            daemon: crate::config::DaemonSettings::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn describe_table() {
        let one = Batch {
            paths: vec![b"a".to_vec()],
            ..Batch::default()
        };
        let three = Batch {
            paths: vec![b"a".to_vec(), b"b".to_vec()],
            trees: vec![b"d".to_vec()],
            ..Batch::default()
        };
        assert_eq!(describe(&Batch::full()), "the whole tree");
        assert_eq!(describe(&one), "1 fail-log entry");
        assert_eq!(describe(&three), "3 fail-log entries");
    }

    #[test]
    fn replays_the_fail_log_and_full_pushes_everything_to_a_local_target() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        let state = tempfile::tempdir().expect("tempdir");
        std::fs::write(src.path().join("logged"), "1").expect("write");
        std::fs::write(src.path().join("other"), "2").expect("write");
        let target = local(dst.path());
        let j = job(src.path(), vec![target.clone()]);
        let cfg = config(state.path(), vec![j]);
        let log = FailLog::open(state.path(), "test", "local").expect("faillog");
        log.save(&Batch {
            paths: vec![b"logged".to_vec()],
            ..Batch::default()
        })
        .expect("save");

        assert!(run(&cfg, false, false).expect("runs"));
        assert!(dst.path().join("logged").is_file());
        assert!(
            !dst.path().join("other").exists(),
            "only the fail log's entry"
        );
        assert!(!log.path().exists(), "a pushed fail log is cleared");

        assert!(
            run(&cfg, false, false).expect("runs"),
            "nothing pending is success"
        );
        assert!(run(&cfg, true, false).expect("runs"));
        assert!(dst.path().join("other").is_file());
    }

    #[test]
    fn a_failed_push_keeps_its_work_in_the_fail_log() {
        let src = tempfile::tempdir().expect("tempdir");
        let state = tempfile::tempdir().expect("tempdir");
        std::fs::write(src.path().join("a"), "1").expect("write");
        // A local target whose parent does not exist: rsync cannot create it.
        let target = local(src.path().join("no/such/parent/dir"));
        let cfg = config(state.path(), vec![job(src.path(), vec![target.clone()])]);
        assert!(!run(&cfg, true, false).expect("runs"));
        let log = FailLog::open(state.path(), "test", "local").expect("faillog");
        assert_eq!(log.load(), Batch::full());
    }
}
