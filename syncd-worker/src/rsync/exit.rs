//! rsync exit codes as classes: what the push executor does after a run. One table, one
//! `match`; every code has an answer and none is fatal to the worker (lsyncd terminates on
//! codes it does not know, taking every sync down). Pure: reads only its arguments.

use super::ssh_refusal::refusal;
use crate::config::model::TargetKind;

/// What to do after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The target has the batch (0; 24 = files vanished, their delete events follow).
    Success,
    /// Transient: try the same paths again with backoff.
    Retry,
    /// The daemon has no connection free (`@ERROR: max connections (N) reached`, exit 5):
    /// not a failure of the batch but "try again shortly, one run at a time".
    Busy,
    /// Needs the operator (bad password, unknown module, bad option, ssh refusing the key
    /// or the host key): keep the paths, alert, retry slowly.
    ConfigError,
    /// The target's rsync rejects `--delete-missing-args` with `--files-from` (rsync 3.4.3,
    /// RsyncProject/rsync#910): switch this target to the filter form and run again.
    DeleteMissingArgsUnsupported,
}

/// The class of one run and a one-line message for logs and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub class: Class,
    pub code: Option<i32>,
    /// What the code means, then rsync's `@ERROR` line or its most telling stderr line.
    pub message: String,
}

impl Outcome {
    /// Did ssh refuse the key or the host key ([`super::ssh_refusal`])? Codes 12 and 255
    /// are a [`Class::ConfigError`] for nothing else.
    pub fn is_ssh_refusal(&self) -> bool {
        self.class == Class::ConfigError && matches!(self.code, Some(12 | 255))
    }

    /// The message for the operator of a push to `kind`: for ssh's refusal, followed by
    /// the ssh command that logs in as the push does, to try by hand.
    pub fn message_for(&self, kind: &TargetKind) -> String {
        match kind.ssh_by_hand() {
            Some(cmd) if self.is_ssh_refusal() => format!(
                "{}; try it by hand as the user syncd runs as: {cmd}",
                self.message
            ),
            _ => self.message.clone(),
        }
    }
}

/// Classify a finished rsync run from its exit code (or the signal that killed it) and
/// its stderr (run with `LC_ALL=C`).
pub fn classify(code: Option<i32>, signal: Option<i32>, stderr: &str) -> Outcome {
    use Class::*;
    // ssh refused the key or the host key: the operator's to fix, however rsync exits.
    if let (Some(n @ (12 | 255)), None) = (code, signal) {
        if let Some(r) = refusal(stderr) {
            return Outcome {
                class: ConfigError,
                code,
                message: format!("{} (code {n})", r.explain()),
            };
        }
    }
    let (class, meaning): (Class, String) = match (code, signal) {
        (_, Some(sig)) => (Retry, format!("rsync was killed by signal {sig}")),
        (None, None) => (Retry, "rsync ended without an exit code".into()),
        (Some(code), None) => match code {
            0 => (Success, "success".into()),
            24 => (
                Success,
                "some source files vanished during the transfer".into(),
            ),
            1 => (ConfigError, "syntax or usage error (code 1)".into()),
            2 if stderr.contains("invalid file mode") => (
                DeleteMissingArgsUnsupported,
                "the target's rsync rejects --delete-missing-args with --files-from \
                 (rsync 3.4.3 bug, RsyncProject/rsync#910); switching to the filter form (code 2)"
                    .into(),
            ),
            2 => (ConfigError, "protocol incompatibility (code 2)".into()),
            3 => (
                ConfigError,
                "errors selecting input/output files or dirs (code 3)".into(),
            ),
            4 => (
                ConfigError,
                "requested action not supported by rsync (code 4)".into(),
            ),
            5 => {
                let class = daemon_error_class(stderr);
                let what = match class {
                    Busy => "the daemon is busy (max connections reached)",
                    ConfigError => "the daemon refused the session",
                    _ => "error starting the client-server protocol",
                };
                (class, format!("{what} (code 5)"))
            }
            6 => (
                Retry,
                "the daemon cannot append to its log file (code 6)".into(),
            ),
            10 => (Retry, "error in socket I/O (code 10)".into()),
            11 if stderr.contains("No space left on device") => (
                Retry,
                "error in file I/O: no space left on device on the target (code 11)".into(),
            ),
            11 => (Retry, "error in file I/O (code 11)".into()),
            12 => (
                Retry,
                "error in the rsync protocol data stream (code 12)".into(),
            ),
            13 => (Retry, "errors with program diagnostics (code 13)".into()),
            14 => (Retry, "error in IPC code (code 14)".into()),
            20 => (Retry, "rsync received SIGUSR1 or SIGINT (code 20)".into()),
            21 => (Retry, "some error returned by waitpid() (code 21)".into()),
            22 => (
                Retry,
                "error allocating core memory buffers (code 22)".into(),
            ),
            23 if source_unreadable(stderr) => (
                Retry,
                "rsync could not read a source path and deleted nothing on the target \
                 after that error (code 23; retried until it can: make the path readable \
                 for syncd, or exclude it)"
                    .into(),
            ),
            23 => (Retry, "partial transfer due to error (code 23)".into()),
            25 => (
                ConfigError,
                "the --max-delete limit stopped deletions (code 25)".into(),
            ),
            30 => (Retry, "timeout in data send/receive (code 30)".into()),
            35 => (
                Retry,
                "timeout waiting for the daemon connection (code 35)".into(),
            ),
            255 => (Retry, "the remote shell (ssh) failed (code 255)".into()),
            n => (Retry, format!("unknown rsync exit code {n}")),
        },
    };
    let line = match code {
        Some(23) => sender_read_error(stderr)
            .map(|l| truncate(l, 300))
            .or_else(|| telling_line(stderr)),
        _ => telling_line(stderr),
    };
    let message = match (class, line) {
        (Success, _) | (_, None) => meaning,
        (_, Some(line)) => format!("{meaning}: {line}"),
    };
    Outcome {
        class,
        code,
        message,
    }
}

/// Did the sending side fail to read something (`rsync: [sender] opendir "…" failed:
/// Permission denied (13)`, `read errors mapping …`)? rsync then skips the deletions that
/// follow the error ("IO error encountered -- skipping file deletion": we never pass
/// `--ignore-errors`), so the target keeps its copy of what could not be read.
fn source_unreadable(stderr: &str) -> bool {
    sender_read_error(stderr).is_some()
}

/// The first line saying what the sending side could not read (it names the path).
/// Not `send_files failed to open`: that file could not be opened while sending, after
/// the file list, and deletions went on (measured, rsync 3.5.0).
fn sender_read_error(stderr: &str) -> Option<&str> {
    stderr.lines().map(str::trim).find(|l| {
        l.contains("[sender]")
            && !l.contains("send_files failed to open")
            && (l.contains("failed:") || l.contains("read error"))
    })
}

/// Exit 5: a busy daemon waits for a free connection; a refused login or module needs the
/// operator; anything else is transient.
fn daemon_error_class(stderr: &str) -> Class {
    let Some(line) = stderr.lines().find(|l| l.contains("@ERROR")) else {
        return Class::Retry;
    };
    let config = [
        "auth failed",
        "Unknown module",
        "chdir failed",
        "access denied",
    ];
    if line.contains("max connections") {
        Class::Busy
    } else if config.iter().any(|c| line.contains(c)) {
        Class::ConfigError
    } else {
        Class::Retry
    }
}

/// The line that best says what went wrong: the daemon's `@ERROR` line, else a "No space
/// left" line, else the first line that is not one of rsync's generic follow-ups (`rsync
/// error: ... (code N) at main.c`, "connection unexpectedly closed": ssh's own complaint
/// comes before them), else the first line. At most 300 bytes.
fn telling_line(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let generic =
        |l: &&str| l.starts_with("rsync error:") || l.contains("connection unexpectedly closed");
    let line = lines
        .iter()
        .find(|l| l.contains("@ERROR"))
        .or_else(|| lines.iter().find(|l| l.contains("No space left on device")))
        .or_else(|| lines.iter().find(|l| !generic(l)))
        .or_else(|| lines.first())?;
    Some(truncate(line, 300))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use Class::*;

    /// (code, signal, stderr, class, text the message must contain)
    type Row = (Option<i32>, Option<i32>, &'static str, Class, &'static str);

    const GENERIC: &str = "rsync error: some error (code N) at main.c(1338) [sender=3.5.0]\n";

    #[test]
    fn one_row_per_code() {
        let rows: &[Row] = &[
            (Some(0), None, "", Success, "success"),
            (Some(24), None, "file has vanished: \"/d/x\"\n", Success, "vanished"),
            (
                Some(23),
                None,
                "rsync: [sender] link_stat \"/d/x\" failed: No such file or directory (2)\n\
                 rsync error: some files/attrs were not transferred (see previous errors) (code 23)\n",
                Retry,
                "could not read a source path and deleted nothing on the target after that \
                 error (code 23; retried until it can: make the path readable for syncd, or \
                 exclude it): rsync: [sender] link_stat",
            ),
            (
                Some(23),
                None,
                "rsync: [sender] opendir \"/d/locked\" failed: Permission denied (13)\n\
                 rsync error: some files/attrs were not transferred (see previous errors) (code 23)\n",
                Retry,
                "deleted nothing on the target after that error (code 23; retried until it \
                 can: make the path readable for syncd, or exclude it): rsync: [sender] opendir \
                 \"/d/locked\" failed: Permission denied (13)",
            ),
            (
                Some(23),
                None,
                "file has vanished: \"/d/tmp.1\"\n\
                 rsync: [sender] read errors mapping \"/d/bad\": Input/output error (5)\n",
                Retry,
                "exclude it): rsync: [sender] read errors mapping \"/d/bad\": Input/output error (5)",
            ),
            (
                // Could not open one file while sending: deletions went on.
                Some(23),
                None,
                "rsync: [sender] send_files failed to open \"/d/a/b.txt\": Permission denied (13)\n\
                 rsync error: some files/attrs were not transferred (see previous errors) (code 23)\n",
                Retry,
                "partial transfer due to error (code 23): rsync: [sender] send_files failed to open",
            ),
            (
                Some(23),
                None,
                "rsync: [receiver] mkstemp \"/b/.f.x\" failed: Permission denied (13)\n",
                Retry,
                "partial transfer due to error (code 23): rsync: [receiver] mkstemp",
            ),
            (
                Some(5),
                None,
                "@ERROR: max connections (1) reached -- try again later\n",
                Busy,
                "busy (max connections reached) (code 5): @ERROR: max connections (1)",
            ),
            (
                Some(5),
                None,
                "@ERROR: max connections (20) reached -- try again later\n\
                 rsync error: error starting client-server protocol (code 5) at main.c(1863) [sender=3.5.0]\n",
                Busy,
                "busy (max connections reached) (code 5): @ERROR: max connections (20)",
            ),
            (
                // Only the @ERROR line counts: a file named so in another message does not.
                Some(5),
                None,
                "rsync: max connections.txt\n@ERROR: Unknown module 'nope'\n",
                ConfigError,
                "refused the session",
            ),
            (
                // Busy is a code 5 answer only.
                Some(10),
                None,
                "@ERROR: max connections (1) reached -- try again later\n",
                Retry,
                "socket I/O (code 10)",
            ),
            (
                Some(5),
                None,
                "@ERROR: auth failed on module nfsbackup\nrsync error: error starting client-server protocol (code 5)\n",
                ConfigError,
                "refused the session (code 5): @ERROR: auth failed on module nfsbackup",
            ),
            (Some(5), None, "@ERROR: Unknown module 'nope'\n", ConfigError, "Unknown module 'nope'"),
            (
                Some(5),
                None,
                "@ERROR: chdir failed\n",
                ConfigError,
                "@ERROR: chdir failed",
            ),
            (
                Some(5),
                None,
                "@ERROR: access denied to mod from localhost (127.0.0.1)\n",
                ConfigError,
                "access denied",
            ),
            (
                Some(5),
                None,
                "@ERROR: something new\n",
                Retry,
                "error starting the client-server protocol (code 5): @ERROR: something new",
            ),
            (Some(5), None, "", Retry, "error starting the client-server protocol (code 5)"),
            (
                Some(1),
                None,
                "ERROR: password file must not be other-accessible\nrsync error: syntax or usage error (code 1)\n",
                ConfigError,
                "syntax or usage error (code 1): ERROR: password file must not be other-accessible",
            ),
            (
                Some(2),
                None,
                "rsync: [receiver] invalid file mode 00 for \".syncd-probe\"\nrsync error: protocol incompatibility (code 2)\n",
                DeleteMissingArgsUnsupported,
                "invalid file mode 00",
            ),
            (Some(2), None, "protocol version mismatch -- is your shell clean?\n", ConfigError, "protocol incompatibility (code 2): protocol version mismatch"),
            (Some(3), None, GENERIC, ConfigError, "errors selecting input/output files"),
            (Some(4), None, GENERIC, ConfigError, "not supported"),
            (Some(6), None, "", Retry, "log file (code 6)"),
            (
                Some(10),
                None,
                "rsync: [sender] failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)\n",
                Retry,
                "socket I/O (code 10): rsync: [sender] failed to connect",
            ),
            (
                Some(11),
                None,
                "rsync: [receiver] write failed on \"/b/f\": No space left on device (28)\n",
                Retry,
                "no space left on device on the target (code 11)",
            ),
            (Some(11), None, "", Retry, "error in file I/O (code 11)"),
            (Some(12), None, GENERIC, Retry, "protocol data stream (code 12): rsync error:"),
            (Some(13), None, "", Retry, "program diagnostics (code 13)"),
            (Some(14), None, "", Retry, "IPC code (code 14)"),
            (Some(20), None, "", Retry, "SIGUSR1 or SIGINT (code 20)"),
            (Some(21), None, "", Retry, "waitpid() (code 21)"),
            (Some(22), None, "", Retry, "memory buffers (code 22)"),
            (Some(25), None, "", ConfigError, "--max-delete limit stopped deletions (code 25)"),
            (Some(30), None, "", Retry, "timeout in data send/receive (code 30)"),
            (Some(35), None, "", Retry, "timeout waiting for the daemon connection (code 35)"),
            (
                Some(255),
                None,
                "ssh: connect to host b port 22: Connection refused\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\n",
                Retry,
                "remote shell (ssh) failed (code 255): ssh: connect to host b port 22: Connection refused",
            ),
            (
                Some(255),
                None,
                "root@b: Permission denied (publickey).\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\n",
                ConfigError,
                "ssh could not log in with a key (root@b: Permission denied (publickey).)",
            ),
            (
                Some(12),
                None,
                "Host key for b has changed and you have requested strict checking.\nHost key verification failed.\n",
                ConfigError,
                "the ssh host key for b has changed",
            ),
            (
                Some(255),
                None,
                "Host key verification failed.\n",
                ConfigError,
                "ssh host key is not known",
            ),
            (None, Some(9), "", Retry, "killed by signal 9"),
            (None, None, "", Retry, "without an exit code"),
            (Some(123), None, "", Retry, "unknown rsync exit code 123"),
            (Some(-1), None, "", Retry, "unknown rsync exit code -1"),
        ];
        for (code, signal, stderr, class, text) in rows {
            let o = classify(*code, *signal, stderr);
            assert_eq!(o.class, *class, "code {code:?}: {}", o.message);
            assert_eq!(o.code, *code);
            assert!(
                o.message.contains(text),
                "code {code:?}: {:?} lacks {text:?}",
                o.message
            );
            assert!(!o.message.contains('\n'), "one line: {:?}", o.message);
            assert_eq!(
                o.is_ssh_refusal(),
                o.message.contains("ssh") && o.class == ConfigError,
                "{o:?}"
            );
        }
    }

    #[test]
    fn an_ssh_refusal_tells_how_to_try_the_login_by_hand() {
        let ssh = TargetKind::Ssh {
            user: Some("root".into()),
            host: "b".into(),
            path: "/srv".into(),
            port: Some(2222),
            ssh_args: vec!["-i".into(), "/k".into()],
        };
        let local = TargetKind::Local {
            path: "/srv".into(),
        };
        let refused = classify(Some(255), None, "root@b: Permission denied (publickey).\n");
        let hand = "; try it by hand as the user syncd runs as: \
                    ssh -p 2222 -o BatchMode=yes -i /k root@b true";
        assert_eq!(
            refused.message_for(&ssh),
            format!("{}{hand}", refused.message)
        );
        assert_eq!(refused.message_for(&local), refused.message);
        let down = classify(
            Some(255),
            None,
            "ssh: connect to host b port 2222: Connection refused\n",
        );
        assert_eq!(down.message_for(&ssh), down.message);
    }

    #[test]
    fn telling_line_prefers_error_over_summary_and_is_bounded() {
        let long = format!("rsync: {}", "é".repeat(400));
        let o = classify(Some(23), None, &format!("{GENERIC}{long}\n"));
        assert!(o.message.contains("rsync: é"));
        assert!(o.message.len() < 400, "{}", o.message.len());
        assert!(o.message.ends_with("..."));
    }
}
