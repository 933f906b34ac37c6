//! The rsync process adapter: runs one [`Invocation`] to the end and reports how it ended.
//! No shell: argv as planned, the path list on stdin (a memory file, so a large list
//! cannot deadlock against rsync's stderr and no thread feeds it: see
//! [`crate::process::runner`]), stderr drained and kept bounded, stdout discarded — or,
//! when the caller asks for progress ([`run_observed`]), read on a thread and parsed into
//! the caller's [`SharedProgress`]. It does not interpret the
//! result; that is [`super::exit::classify`].
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGTERM)`, so an rsync never outlives a worker that
//! was SIGKILLed. The kernel sends it when the *thread* that forked the child exits, so
//! the thread that spawns a child here is the one that waits for it ([`Spawn::run`]).
//! rsync stays in the worker's process group, has no deadline here (its own `--timeout`
//! bounds a stalled transfer) and its outputs are read to their end.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use super::args::Invocation;
use crate::parents::look::recheck;
use crate::process::{Drain, Group, How, Input, OnChunk, Output, Spawn};
use crate::progress::{ProgressParser, SharedProgress};

/// How much of rsync's stderr is kept (the end of it).
const STDERR_KEEP: usize = 64 * 1024;

/// How one rsync run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The exit code, or None when a signal ended the process.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The last 64 KiB of stderr, lossily decoded.
    pub stderr: String,
    /// rsync wrote more than that: earlier lines were dropped (so its per-file errors
    /// cannot all be named).
    pub stderr_truncated: bool,
    pub elapsed: Duration,
}

/// Run `inv` and wait for it. An `Err` means rsync could not be started or waited for;
/// every way rsync itself can fail is in the `RunResult`.
pub fn run(inv: &Invocation) -> anyhow::Result<RunResult> {
    run_observed(inv, None)
}

/// [`run`], and when `progress` is given, read rsync's stdout as it comes and keep the
/// latest `--info=progress2` record in it (the invocation must ask rsync for it: see
/// [`Invocation::with_progress`]). Blocks the calling thread until rsync has exited.
pub fn run_observed(
    inv: &Invocation,
    progress: Option<&SharedProgress>,
) -> anyhow::Result<RunResult> {
    let stdout = match progress {
        Some(slot) => Output::Each(publish_progress(slot.clone())),
        None => Output::Null,
    };
    run_inner(inv, stdout).map(|(r, _)| r)
}

/// [`run`], handing rsync's stdout to `on_chunk` as it comes (chunks do not end on
/// lines): how `syncd verify` reads the itemized changes of a dry run of any size.
pub fn run_each(inv: &Invocation, on_chunk: OnChunk) -> anyhow::Result<RunResult> {
    run_inner(inv, Output::Each(on_chunk)).map(|(r, _)| r)
}

/// [`run`], keeping the end of rsync's stdout too (the last 64 KiB: enough for the
/// `--stats` block, which comes last).
pub fn run_capture(inv: &Invocation) -> anyhow::Result<(RunResult, String)> {
    run_inner(inv, Output::Tail(STDERR_KEEP))
        .map(|(r, out)| (r, String::from_utf8_lossy(&out).into_owned()))
}

fn run_inner(inv: &Invocation, stdout: Output) -> anyhow::Result<(RunResult, Vec<u8>)> {
    // The last look before rsync resolves the listed names itself.
    if let Some(why) = inv.listed.as_ref().and_then(recheck) {
        anyhow::bail!("rsync {} not started: {why}", inv.summary);
    }
    let ended = Spawn::new(&inv.program)
        .args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Input::Bytes(inv.stdin.clone()))
        .stdout(stdout)
        .stderr(Output::Tail(STDERR_KEEP))
        .group(Group::Inherit)
        .parent_death(Some(Signal::SIGTERM))
        .deadline(None)
        .drain(Drain::ToEnd)
        .run();
    let status = match ended.how {
        How::FailedToStart(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot run the rsync binary {:?}: install rsync (apt-get install rsync / \
                     yum install rsync) or set rsync.binary to its full path",
                    inv.program
                )
            })
        }
        How::WaitFailed(e) => {
            return Err(e).with_context(|| format!("waiting for rsync ({:?}) failed", inv.program))
        }
        // No deadline and no cancel here: rsync's own --timeout bounds a stalled run.
        How::Exited(s) | How::TimedOut(s) | How::Cancelled(s) => s,
    };

    let mut stderr = ended.stderr.lossy();
    if let Some(e) = ended.stdin_error {
        // rsync closing its stdin early (it failed before reading the list) is not news:
        // its exit code says why. Anything else is worth a line.
        if e.kind() != io::ErrorKind::BrokenPipe {
            stderr.push_str(&format!(
                "\nsyncd: writing the list to rsync's stdin failed: {e}\n"
            ));
        }
    }
    Ok((
        RunResult {
            code: status.code(),
            signal: status.signal(),
            stderr,
            stderr_truncated: ended.stderr.truncated,
            elapsed: ended.elapsed,
        },
        ended.stdout.bytes,
    ))
}

/// A stdout callback that parses rsync's progress records, publishing each new one in
/// `slot`.
fn publish_progress(slot: SharedProgress) -> OnChunk {
    let mut parser = ProgressParser::new();
    Box::new(move |chunk| {
        if parser.feed(chunk) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = parser.latest().cloned();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sh(script: &str, stdin: &[u8]) -> Invocation {
        Invocation {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("SYNCD_TEST_VAR".into(), "yes".into())],
            stdin: stdin.to_vec(),
            entries: 0,
            summary: String::new(),
            listed: None,
        }
    }

    #[test]
    fn a_run_listing_a_path_below_a_symlink_is_not_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, ran) = (dir.path().join("src"), dir.path().join("ran"));
        std::fs::create_dir_all(src.join("a")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", src.join("d")).expect("symlink");
        let script = format!("touch '{}'", ran.display());
        let listing = |paths: &[&str]| Invocation {
            listed: Some(super::super::args::Listed {
                source: src.clone(),
                paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
            }),
            ..sh(&script, b"")
        };
        let err = run(&listing(&["a/f", "d/shadow"])).expect_err("not started");
        assert!(
            format!("{err:#}").contains("d became a symlink (to /etc)"),
            "{err:#}"
        );
        assert!(!ran.exists(), "rsync was started");
        let ok = run(&listing(&["a/f", "d"])).expect("started");
        assert_eq!(ok.code, Some(0));
        assert!(ran.exists());
    }

    #[test]
    fn missing_binary_names_it_and_says_install_rsync() {
        let inv = Invocation {
            program: PathBuf::from("/nonexistent/bin/rsync-x"),
            ..sh("", b"")
        };
        let err = format!("{:#}", run(&inv).expect_err("must fail to spawn"));
        assert!(err.contains("/nonexistent/bin/rsync-x"), "{err}");
        assert!(err.contains("install rsync"), "{err}");
    }

    #[test]
    fn stdin_is_delivered_and_env_set_and_code_reported() {
        // A large stdin (4 MiB) written while the child also fills stderr: neither blocks.
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let inv = sh(
            "n=$(wc -c); echo \"got $n $SYNCD_TEST_VAR\" >&2; exit 23",
            &data,
        );
        let r = run(&inv).expect("sh runs");
        assert_eq!(r.code, Some(23));
        assert_eq!(r.signal, None);
        assert_eq!(r.stderr.trim(), format!("got {} yes", data.len()));
    }

    #[test]
    fn stderr_keeps_the_last_64k() {
        // 20 000 lines of "lineN" (~190 KB): more than 64 KiB; the last line must survive.
        let inv = sh(
            "i=0; while [ $i -lt 20000 ]; do echo line$i; i=$((i+1)); done >&2; echo LAST >&2",
            b"",
        );
        let r = run(&inv).expect("sh runs");
        assert_eq!(r.code, Some(0));
        assert!(r.stderr.len() <= STDERR_KEEP);
        assert!(r.stderr.len() > STDERR_KEEP / 2);
        assert!(r.stderr.ends_with("LAST\n"));
        assert!(!r.stderr.contains("line0\n"));
    }

    #[test]
    fn killed_by_signal_is_reported_as_signal() {
        let r = run(&sh("kill -KILL $$", b"")).expect("sh runs");
        assert_eq!(r.code, None);
        assert_eq!(r.signal, Some(9));
    }

    #[test]
    fn child_that_ignores_stdin_is_not_an_error() {
        let data = vec![b'x'; 1024 * 1024];
        let r = run(&sh("exit 5", &data)).expect("sh runs");
        assert_eq!(r.code, Some(5));
        assert!(!r.stderr.contains("syncd:"), "{}", r.stderr);
    }

    #[test]
    fn non_utf8_stderr_is_decoded_lossily() {
        let r = run(&sh("printf 'caf\\351\\n' >&2", b"")).expect("sh runs");
        assert_eq!(r.stderr, "caf\u{fffd}\n");
    }

    #[test]
    fn progress_on_stdout_reaches_the_shared_slot() {
        let slot = crate::progress::shared();
        let script = "printf 'sending incremental file list\\n\\r  1,000  10%%    1.00kB/s    0:00:09  \\r  2,000 100%%    1.00kB/s    0:00:00 (xfr#1, to-chk=0/1)\\n'; echo oops >&2; exit 24";
        let r = run_observed(&sh(script, b""), Some(&slot)).expect("sh runs");
        assert_eq!(r.code, Some(24));
        assert_eq!(r.stderr, "oops\n", "stderr is still captured");
        let p = crate::progress::snapshot(&slot).expect("progress was parsed");
        assert_eq!((p.bytes, p.percent), (2000, 100));
        assert_eq!((p.files_done, p.files_total), (1, Some(1)));
    }

    #[test]
    fn without_a_slot_stdout_is_not_read() {
        // A child writing a lot to stdout must not block when nobody reads it.
        let r = run(&sh("yes | head -c 1000000; exit 0", b"")).expect("sh runs");
        assert_eq!(r.code, Some(0));
    }
}
