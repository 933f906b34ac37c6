//! Pushing now, against the real rsync daemon. `syncd-worker --once [--full]`: a
//! whole-tree push that reports its progress and leaves the target equal to the source;
//! a replay of a fail log written by a worker that ran while the daemon was down (only
//! the logged changes go, the log is cleared); a failure that keeps the fail log and
//! exits 1; an rsync that does not outlive a SIGKILLed worker (parent-death signal).
//! A running worker: SIGUSR1 pushes what is pending now, SIGUSR2 the whole tree (what
//! `syncd sync` sends through the controller), and its status shows the progress of a
//! whole-tree push while it runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use syncd_tests::tree::write_file;
use syncd_tests::wait;
use syncd_tests::worker::{config_args as args, run_to_exit, worker_bin};
use syncd_tests::{assert_in_sync, tail, Diagnose, Site, TreeWriter, Worker};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The fail log files under `<state>/faillog/`.
fn faillogs(state: &Path) -> Vec<PathBuf> {
    match fs::read_dir(state.join("faillog")) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn once_full_pushes_the_whole_tree_with_progress_lines() {
    let site = Site::new();
    let mut tw = TreeWriter::new(41);
    tw.files(site.src(), &["a", "b/c", "."], 60, 0, 40_000);
    // Already on the target but not in the source: --full deletes it.
    write_file(&site.dst().join("stale/old.txt"), b"old");
    let dir = tempfile::tempdir().expect("tempdir");
    let argv = args(dir.path(), &site.config(), &["--once", "--full"]);
    let (st, out, err) = run_to_exit(&argv, RUN_TIMEOUT);
    assert!(
        st.success(),
        "--once --full exited {st}\nstderr:\n{err}\n{}",
        site.daemon.diagnose()
    );
    assert_eq!(out, "", "nothing on stdout");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(5),
        &[&site.daemon],
    );
    // Not a terminal: plain lines; the last one carries rsync's final figures:
    // 60 files, 3 directories and the top directory, all checked.
    let pushed = err
        .lines()
        .find(|l| l.contains("pushed the whole tree"))
        .unwrap_or_else(|| panic!("no 'pushed the whole tree' line:\n{err}"));
    assert!(pushed.contains("100%, 64/64 files"), "{pushed}");
    assert!(!err.contains('\r'), "no bar redraws off a terminal:\n{err}");
    assert!(faillogs(site.state.path()).is_empty(), "no fail log left");
}

#[test]
fn once_replays_the_fail_log_of_a_worker_that_ran_while_the_target_was_down() {
    let mut site = Site::new();
    write_file(&site.src().join("before.txt"), b"before the worker ran");
    site.daemon.stop();
    let mut w = Worker::start(&site.config());
    write_file(
        &site.src().join("dir/while-down.txt"),
        b"changed while down",
    );
    w.wait_status(
        "the change to be queued while the daemon is down",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].queue_depth > 0,
    );
    w.stop(); // saves what is pending to the fail log
    let logs = faillogs(site.state.path());
    assert_eq!(logs.len(), 1, "one fail log\n{}", w.log());
    site.daemon.restart();

    let dir = tempfile::tempdir().expect("tempdir");
    let (st, _, err) = run_to_exit(&args(dir.path(), &site.config(), &["--once"]), RUN_TIMEOUT);
    assert!(st.success(), "--once exited {st}\nstderr:\n{err}");
    let dst = site.dst();
    assert_eq!(
        fs::read(dst.join("dir/while-down.txt")).ok().as_deref(),
        Some(b"changed while down".as_slice()),
        "the logged change arrived\n{err}"
    );
    assert!(
        !dst.join("before.txt").exists(),
        "only the fail log's entries are pushed without --full\n{err}"
    );
    assert!(
        faillogs(site.state.path()).is_empty(),
        "the fail log is cleared"
    );

    // Nothing pending any more: a second run has nothing to do and says so.
    let (st, _, err) = run_to_exit(&args(dir.path(), &site.config(), &["--once"]), RUN_TIMEOUT);
    assert!(st.success(), "second --once exited {st}\nstderr:\n{err}");
    assert!(err.contains("nothing pending"), "{err}");
}

#[test]
fn once_full_against_a_stopped_daemon_exits_1_and_keeps_the_work() {
    let mut site = Site::new();
    write_file(&site.src().join("a.txt"), b"a");
    site.daemon.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let argv = args(dir.path(), &site.config(), &["--once", "--full"]);
    let (st, _, err) = run_to_exit(&argv, RUN_TIMEOUT);
    assert_eq!(st.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains("stay in the fail log"), "{err}");
    assert_eq!(faillogs(site.state.path()).len(), 1, "{err}");

    // Back up: the whole tree owed by the failed run goes with a plain --once.
    site.daemon.restart();
    let (st, _, err) = run_to_exit(&args(dir.path(), &site.config(), &["--once"]), RUN_TIMEOUT);
    assert!(st.success(), "stderr:\n{err}");
    assert!(err.contains("pushed the whole tree"), "{err}");
    assert!(site.dst().join("a.txt").is_file());
}

/// `(pid, comm)` of the live children of `parent`.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let (state, ppid) = (rest.next(), rest.next().and_then(|p| p.parse::<u32>().ok()));
        if ppid == Some(parent) && !matches!(state, Some("Z" | "X")) {
            out.push((pid, stat[open + 1..close].to_string()));
        }
    }
    out
}

/// Alive and not a zombie (an orphan may wait a while for init to reap it).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X"))
    })
}

#[test]
fn rsync_does_not_outlive_a_sigkilled_worker() {
    let site = Site::new();
    // 4 MB at 200 KiB/s: the push takes ~20 s, long enough to catch rsync running.
    TreeWriter::new(7).file(&site.src().join("big.bin"), 4_000_000);
    let cfg = site
        .config()
        .raw("[sync.rsync]\nextra = [\"--bwlimit=200\"]");
    let dir = tempfile::tempdir().expect("tempdir");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(worker_bin())
        .args(args(dir.path(), &cfg, &["--once", "--full"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run syncd-worker");
    let log = || tail(&fs::read_to_string(&err_path).unwrap_or_default(), 30);

    // The probe is a short rsync too; wait for the push's own run (with progress2).
    let rsync = wait::until(
        "an rsync child of the worker with --info=progress2",
        Duration::from_secs(20),
        || {
            let found = children(child.id()).into_iter().find(|(pid, comm)| {
                comm == "rsync"
                    && fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"--info=progress2"))
            });
            if let Ok(Some(st)) = child.try_wait() {
                panic!("worker exited ({st}) before its rsync was seen\n{}", log());
            }
            found.map(|(pid, _)| pid)
        },
    )
    .unwrap_or_else(|t| panic!("{t}\n{}", log()));
    child.kill().expect("SIGKILL the worker");
    child.wait().expect("reap the worker");

    let gone = wait::until(
        format_args!("rsync (pid {rsync}) gone after its worker was SIGKILLed"),
        Duration::from_secs(10),
        || !running(rsync),
    );
    if let Err(t) = gone {
        // Do not leave it behind, whatever the verdict.
        let raw = i32::try_from(rsync).expect("pid fits pid_t");
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        panic!("{t}\n{}", log());
    }
}

/// Send `sig` to the worker whose pid its status file names.
fn signal_worker(w: &Worker, sig: Signal) {
    let pid = w.status().expect("a status file").pid;
    let raw = i32::try_from(pid).expect("pid fits pid_t");
    kill(Pid::from_raw(raw), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

#[test]
fn sigusr1_pushes_what_is_pending_without_waiting_for_the_delay() {
    let site = Site::new();
    let cfg = site.config();
    let text = cfg
        .to_toml()
        .replace("delay = \"20ms\"", "delay = \"1h\"\nmax_delay = \"1h\"");
    assert!(text.contains("max_delay = \"1h\""), "{text}");
    let mut w = Worker::start_with(&text, "syncd.toml", cfg.state_dir(), &[]);
    write_file(&site.src().join("now.txt"), b"push me now");
    w.wait_status(
        "now.txt to be queued",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].queue_depth > 0,
    );
    assert!(
        !site.dst().join("now.txt").exists(),
        "not pushed before its hour"
    );
    signal_worker(&w, Signal::SIGUSR1);
    w.wait_status(
        "the queue to be pushed after SIGUSR1",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets[0];
            t.queue_depth == 0 && t.in_flight == 0 && t.pushes_ok >= 1
        },
    );
    assert_eq!(
        fs::read(site.dst().join("now.txt")).ok().as_deref(),
        Some(b"push me now".as_slice())
    );
    assert!(w.log().contains("SIGUSR1"), "{}", w.log());
    w.stop();
}

#[test]
fn sigusr2_pushes_the_whole_tree_and_repairs_the_target() {
    let site = Site::new();
    let mut w = Worker::start(&site.config());
    write_file(&site.src().join("keep.txt"), b"keep");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );
    // Behind syncd's back: inotify on the source sees nothing of this.
    fs::remove_file(site.dst().join("keep.txt")).expect("rm on the target");
    let before = w.status().expect("status").syncs[0].targets[0].full_syncs;
    signal_worker(&w, Signal::SIGUSR2);
    w.wait_status(
        "a whole-tree push after SIGUSR2",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs > before,
    );
    assert!(site.dst().join("keep.txt").is_file());
    assert!(w.log().contains("SIGUSR2"), "{}", w.log());
    w.stop();
}

#[test]
fn status_shows_the_progress_of_the_initial_full_sync() {
    let site = Site::new();
    // 3 MB at 1000 KiB/s: about 3 s of push, with a progress record about every second.
    TreeWriter::new(9).file(&site.src().join("big.bin"), 3_000_000);
    let cfg = site
        .config()
        .initial_sync(true)
        .raw("[sync.rsync]\nextra = [\"--bwlimit=1000\"]");
    let mut w = Worker::start(&cfg);
    let s = w.wait_status(
        "progress with bytes > 0 in the status during the initial sync",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| {
            s.syncs[0].targets[0]
                .progress
                .as_ref()
                .is_some_and(|p| p.bytes > 0)
        },
    );
    let p = s.syncs[0].targets[0].progress.clone().expect("progress");
    assert!(p.percent < 100 || p.bytes >= 3_000_000, "{p:?}");
    assert!(s.syncs[0].targets[0].in_flight > 0, "{s:#?}");
    // Once pushed, the progress is gone from the status.
    w.wait_status(
        "the full sync to end and its progress to leave the status",
        Duration::from_secs(30),
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets[0];
            t.full_syncs >= 1 && t.progress.is_none()
        },
    );
    w.stop();
}
