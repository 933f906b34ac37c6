//! Reaching a target with `rsync --list-only`: the argv (password file, ssh in batch
//! mode with a connect timeout), a run in its own session killed at a deadline, and the
//! classification of how it ended into a [`Finding`].

use super::*;

/// The argv of the `rsync --list-only` that tests a daemon or ssh target: the push's
/// transport options (see [`TargetKind::transport_args`]) with a connect timeout for
/// ssh as well as for the daemon.
pub(super) fn list_only_args(target: &Target, timeout: Duration) -> Vec<OsString> {
    let secs = timeout.as_secs().max(1);
    let mut args: Vec<OsString> = vec!["--list-only".into(), format!("--timeout={secs}").into()];
    args.extend(target.kind.transport_args(ConnectTimeouts {
        daemon: Some(secs),
        ssh: Some(secs),
    }));
    args.push(target.kind.dest_arg());
    args
}

/// How a `--list-only` run ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ran {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr: String,
    /// Killed after the deadline.
    pub timed_out: bool,
}

pub(super) fn reach(job: &SyncJob, target: &Target, subject: &str, timeout: Duration) -> Finding {
    let rsync = Spawn::new(&job.rsync.binary)
        .args(list_only_args(target, timeout))
        .env("LC_ALL", "C");
    match run_bounded(rsync, timeout + REACH_GRACE) {
        Ok(ran) => reach_finding(subject, target, &ran, timeout),
        Err(e) => Finding::new(
            Status::Problem,
            subject,
            format!("cannot run {}: {e}", job.rsync.binary.display()),
        )
        .fix("install rsync, or set rsync.binary to its full path"),
    }
}

/// Run `child` in a session of its own (no terminal: rsync and ssh cannot stop to ask
/// for a password), stdout discarded, the end of stderr kept; SIGKILL its process group
/// when it (with whatever still holds its stderr, like its ssh) is not done after
/// `limit`.
pub(super) fn run_bounded(child: Spawn, limit: Duration) -> io::Result<Ran> {
    let ended = child
        .stdin(Input::Null)
        .stdout(Output::Null)
        .stderr(Output::Tail(64 * 1024))
        .group(Group::Session)
        .parent_death(None)
        .deadline(Some(limit))
        .kill_grace(Duration::ZERO)
        .drain(Drain::ToEnd)
        .run();
    let timed_out = matches!(ended.how, How::TimedOut(_));
    let (code, signal) = (ended.code(), ended.signal());
    match ended.how {
        How::FailedToStart(e) | How::WaitFailed(e) => Err(e),
        How::Exited(_) | How::TimedOut(_) | How::Cancelled(_) => Ok(Ran {
            code,
            signal,
            stderr: ended.stderr.lossy(),
            timed_out,
        }),
    }
}

/// What a `--list-only` result means for this target, and what to do about it.
pub(super) fn reach_finding(
    subject: &str,
    target: &Target,
    ran: &Ran,
    timeout: Duration,
) -> Finding {
    let (host, port) = target.kind.endpoint().unwrap_or(("localhost", 0));
    if ran.timed_out {
        return Finding::new(
            Status::Problem,
            subject,
            format!(
                "no answer from {host}:{port} within {}s",
                timeout.as_secs() + REACH_GRACE.as_secs()
            ),
        )
        .fix(format!(
            "check that {host} is up and that a firewall lets port {port} through"
        ));
    }
    if ran.code == Some(0) && ran.signal.is_none() {
        let how = match target.kind {
            TargetKind::Ssh { .. } => "reachable over ssh (rsync --list-only works)",
            _ => "reachable, login and module ok (rsync --list-only works)",
        };
        return Finding::ok(subject, how);
    }
    let outcome = classify(ran.code, ran.signal, &ran.stderr);
    let err = &ran.stderr;
    let (status, fix) = if err.contains("auth failed") {
        let fix = match &target.kind {
            TargetKind::Daemon {
                user,
                password_file: Some(pw),
                ..
            } => format!(
                "the first line of {} must be the password of {} in the daemon's secrets file, \
                 and that user must be in the module's `auth users`",
                pw.display(),
                user.as_deref().unwrap_or("the user")
            ),
            _ => "the module wants a password: set password_file".to_string(),
        };
        (Status::Problem, fix)
    } else if err.contains("Unknown module") {
        let module = match &target.kind {
            TargetKind::Daemon { module, .. } => module.split('/').next().unwrap_or(module),
            _ => "",
        };
        (
            Status::Problem,
            format!(
                "the daemon on {host}:{port} has no module {module:?}; `rsync --port={port} \
                 {host}::` lists the modules it offers"
            ),
        )
    } else if err.contains("max connections") {
        (
            Status::Warning,
            "the daemon is busy; syncd waits for a free connection and then pushes one run \
             at a time, but raise `max connections` (0 = unlimited) if it stays busy"
                .to_string(),
        )
    } else if err.contains("Connection refused") {
        (
            Status::Problem,
            match target.kind {
                TargetKind::Ssh { .. } => {
                    format!("nothing listens on {host}:{port}: start sshd, or fix the host or port")
                }
                _ => format!(
                    "no rsync daemon listens on {host}:{port}: start it (`systemctl start rsync` \
                     or `rsync --daemon`), or fix the host or port"
                ),
            },
        )
    } else if let (true, Some(cmd)) = (outcome.is_ssh_refusal(), target.kind.ssh_by_hand()) {
        // What ssh refused and what to do is in the message (rsync::ssh_refusal).
        (
            Status::Problem,
            format!("as the user syncd runs as, this must work without a prompt: {cmd}"),
        )
    } else if err.contains("Name or service not known")
        || err.contains("Could not resolve")
        || err.contains("failed to resolve")
        || err.contains("Temporary failure in name resolution")
    {
        (
            Status::Problem,
            format!("the host name {host} does not resolve: fix it or use an IP address"),
        )
    } else if matches!(ran.code, Some(30 | 35)) || err.contains("timed out") {
        (
            Status::Problem,
            format!("check that {host} is up and that a firewall lets port {port} through"),
        )
    } else if err.contains("No such file or directory") || err.contains("chdir failed") {
        (
            Status::Problem,
            "the directory on the target does not exist: create it, or fix dest".to_string(),
        )
    } else {
        (
            Status::Problem,
            "run the same rsync --list-only by hand to see more".to_string(),
        )
    };
    Finding::new(status, subject, outcome.message).fix(fix)
}
