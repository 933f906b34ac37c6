//! The rsync process adapter: runs one [`Invocation`] to the end and reports how it ended.
//! No shell: argv as planned, the path list on stdin (written on a thread so a large list
//! cannot deadlock against rsync's stderr), stderr drained on a thread and kept bounded,
//! stdout discarded — or, when the caller asks for progress ([`run_observed`]), read on a
//! thread and parsed into the caller's [`SharedProgress`]. It does not interpret the
//! result; that is [`super::exit::classify`].
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGTERM)`, so an rsync never outlives a worker that
//! was SIGKILLed. The kernel sends it when the *thread* that forked the child exits, so
//! the thread that spawns a child here is the one that waits for it.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::args::Invocation;
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
    run_inner(inv, progress, false).map(|(r, _)| r)
}

/// [`run`], keeping the end of rsync's stdout too (the last 64 KiB: enough for the
/// `--stats` block, which comes last).
pub fn run_capture(inv: &Invocation) -> anyhow::Result<(RunResult, String)> {
    run_inner(inv, None, true).map(|(r, out)| (r, String::from_utf8_lossy(&out).into_owned()))
}

fn run_inner(
    inv: &Invocation,
    progress: Option<&SharedProgress>,
    capture: bool,
) -> anyhow::Result<(RunResult, Vec<u8>)> {
    let started = Instant::now();
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(if progress.is_some() || capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, so it may only make
    // async-signal-safe calls: prctl(2) and getppid(2) are plain system calls, and it
    // neither allocates nor takes locks (the io::Error is built from an errno value).
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot run the rsync binary {:?}: install rsync (apt-get install rsync / \
                 yum install rsync) or set rsync.binary to its full path",
            inv.program
        )
    })?;

    let stdin = child.stdin.take().expect("stdin was piped");
    let data = inv.stdin.clone();
    let writer = thread::spawn(move || write_all_then_close(stdin, &data));
    let stderr = child.stderr.take().expect("stderr was piped");
    let reader = thread::spawn(move || read_tail(stderr, STDERR_KEEP));
    let watcher = match (progress, child.stdout.take()) {
        (Some(slot), Some(stdout)) => {
            let slot = slot.clone();
            Some(thread::spawn(move || {
                read_progress(stdout, &slot);
                Vec::new()
            }))
        }
        (None, Some(stdout)) => Some(thread::spawn(move || read_tail(stdout, STDERR_KEEP).0)),
        _ => None,
    };

    let status = child
        .wait()
        .with_context(|| format!("waiting for rsync ({:?}) failed", inv.program))?;
    let tail = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the rsync stderr reader thread panicked"))?;
    let write_result = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the rsync stdin writer thread panicked"))?;
    let stdout = match watcher {
        Some(w) => w
            .join()
            .map_err(|_| anyhow::anyhow!("the rsync stdout reader thread panicked"))?,
        None => Vec::new(),
    };

    let (tail, stderr_truncated) = tail;
    let mut stderr = String::from_utf8_lossy(&tail).into_owned();
    if let Err(e) = write_result {
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
            stderr_truncated,
            elapsed: started.elapsed(),
        },
        stdout,
    ))
}

/// In the child, before exec: ask for SIGTERM when the spawning thread ends, then make
/// sure the parent did not already die before that request took effect.
fn die_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid(2) has no preconditions and cannot fail.
    let ppid = unsafe { libc::getppid() };
    if u32::try_from(ppid).ok() != Some(parent) {
        // Orphaned between fork and prctl: the signal will never come, so do not start.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Read rsync's stdout to its end, publishing each new progress record in `slot`.
fn read_progress(mut r: impl Read, slot: &SharedProgress) {
    let mut parser = ProgressParser::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if parser.feed(&buf[..n]) {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = parser.latest().cloned();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

fn write_all_then_close(mut stdin: std::process::ChildStdin, data: &[u8]) -> io::Result<()> {
    stdin.write_all(data)?;
    stdin.flush()
    // dropping `stdin` closes the pipe: rsync sees the end of the list
}

/// Read `r` to its end, keeping only the last `keep` bytes.
/// The last `keep` bytes `r` gives, and whether anything before them was dropped.
fn read_tail(mut r: impl Read, keep: usize) -> (Vec<u8>, bool) {
    let mut kept: Vec<u8> = Vec::new();
    let mut dropped = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                    dropped = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
        dropped = true;
    }
    (kept, dropped)
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
        }
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

    #[test]
    fn read_tail_table() {
        let cases: &[(&[u8], usize, &[u8], bool)] = &[
            (b"", 4, b"", false),
            (b"abc", 4, b"abc", false),
            (b"abcd", 4, b"abcd", false),
            (b"abcdef", 4, b"cdef", true),
        ];
        for (input, keep, want, dropped) in cases {
            assert_eq!(read_tail(*input, *keep), (want.to_vec(), *dropped));
        }
    }
}
