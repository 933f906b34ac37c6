//! ssh's own refusals in an rsync run's stderr: the target's sshd would not take the key,
//! or ssh would not trust the host key. These need the operator, not a retry: trying again
//! changes nothing until a key or a known_hosts file is fixed, and a host key that changed
//! may be someone in the middle. rsync passes ssh's exit 255 on (`unexplained error (code
//! 255)`, rsync 3.5.0; older versions say code 12), with ssh's lines first (run with
//! `LC_ALL=C`, OpenSSH 9.2 measured):
//!
//! * `root@h: Permission denied (publickey).` — the key was refused (or none was found:
//!   then a `Warning: Identity file … not accessible` comes first);
//! * `Host key for [h]:2222 has changed and you have requested strict checking.`, with
//!   `Offending ED25519 key in /root/.ssh/known_hosts:3`, then `Host key verification
//!   failed.` — known_hosts holds another key for this host;
//! * `Host key verification failed.` alone — no key for this host in known_hosts, and
//!   `BatchMode=yes` (always set by syncd) cannot ask whether to trust the one offered.
//!
//! Pure: reads only its argument.

use crate::config::quote_shell_word;

/// What ssh refused, with what its message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The server refused every key offered (`Permission denied (publickey…)`).
    Login { line: String },
    /// known_hosts holds another key for `host` (`[h]:port` or `h`), in `file` (the
    /// "Offending … key in FILE:LINE" line), when ssh named it.
    HostKeyChanged { host: String, file: Option<String> },
    /// No known key for the host, and BatchMode cannot ask.
    HostKeyUnknown,
}

/// ssh's refusal in `stderr`, if it holds one.
pub fn refusal(stderr: &str) -> Option<Refusal> {
    let lines = || stderr.lines().map(str::trim);
    if let Some(host) = lines().find_map(|l| {
        l.strip_prefix("Host key for ")
            .and_then(|r| r.split_once(" has changed"))
            .map(|(host, _)| host.to_string())
    }) {
        let file = lines().find_map(|l| {
            let rest = l.strip_prefix("Offending ")?;
            let (_, file) = rest.split_once(" key in ")?;
            // `FILE:LINE`; a file name may hold ':' itself, the line number is last.
            Some(file.rsplit_once(':').map_or(file, |(f, _)| f).to_string())
        });
        return Some(Refusal::HostKeyChanged { host, file });
    }
    if lines().any(|l| l == "Host key verification failed.") {
        return Some(Refusal::HostKeyUnknown);
    }
    lines()
        .find(|l| l.contains(": Permission denied (") && l.contains("publickey"))
        .map(|l| Refusal::Login {
            line: l.to_string(),
        })
}

impl Refusal {
    /// One line for logs and status: what happened and what to do, without the target's
    /// own details (the target adds how to try it by hand: `TargetKind::ssh_by_hand`).
    pub fn explain(&self) -> String {
        match self {
            Refusal::Login { line } => format!(
                "ssh could not log in with a key ({line}): the public half of the key syncd's \
                 ssh uses (ssh_args' -i KEY, else the ~/.ssh/id_* of the user syncd runs as) \
                 must be in the target user's ~/.ssh/authorized_keys"
            ),
            Refusal::HostKeyChanged { host, file } => {
                let file = file
                    .as_deref()
                    .map_or("~/.ssh/known_hosts".to_string(), quote_shell_word);
                format!(
                    "the ssh host key for {host} has changed: nothing is pushed to it (this \
                     may be someone in the middle); if the change is expected (reinstalled \
                     server, new key), remove the old key with `ssh-keygen -R {} -f {file}` \
                     and record the new one after checking its fingerprint",
                    quote_shell_word(host)
                )
            }
            Refusal::HostKeyUnknown => "the target's ssh host key is not known (Host key \
                 verification failed): ssh runs with BatchMode=yes and never trusts a new \
                 host key by itself; check the key's fingerprint and record it in \
                 known_hosts (connect once by hand, or ssh-keyscan), or add \
                 `-o StrictHostKeyChecking=accept-new` to ssh_args to trust the first key seen"
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSED: &str =
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n\
                          rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]\n";

    #[test]
    fn each_refusal_as_openssh_9_prints_it() {
        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
            Add correct host key in /tmp/k:h/known_hosts to get rid of this message.\n\
            Offending ED25519 key in /tmp/k:h/known_hosts:1\n  remove with:\n\
            \x20 ssh-keygen -f \"/tmp/k:h/known_hosts\" -R \"[127.0.0.1]:45133\"\n\
            Host key for [127.0.0.1]:45133 has changed and you have requested strict checking.\n\
            Host key verification failed.\n";
        let rows: [(String, Option<Refusal>); 6] = [
            (
                format!("root@127.0.0.1: Permission denied (publickey).\n{CLOSED}"),
                Some(Refusal::Login {
                    line: "root@127.0.0.1: Permission denied (publickey).".into(),
                }),
            ),
            (
                format!(
                    "Warning: Identity file /k not accessible: No such file or directory.\n\
                     u@h: Permission denied (publickey,password).\n{CLOSED}"
                ),
                Some(Refusal::Login {
                    line: "u@h: Permission denied (publickey,password).".into(),
                }),
            ),
            (
                format!("{changed}{CLOSED}"),
                Some(Refusal::HostKeyChanged {
                    host: "[127.0.0.1]:45133".into(),
                    file: Some("/tmp/k:h/known_hosts".into()),
                }),
            ),
            (
                format!("Host key verification failed.\n{CLOSED}"),
                Some(Refusal::HostKeyUnknown),
            ),
            (
                "ssh: connect to host b port 22: Connection refused\n".into(),
                None,
            ),
            // A file named like ssh's message in rsync's own complaint is no refusal.
            (
                "rsync: [sender] link_stat \"/s/Host key verification failed.\" failed\n".into(),
                None,
            ),
        ];
        for (stderr, want) in rows {
            assert_eq!(refusal(&stderr), want, "{stderr}");
        }
    }

    #[test]
    fn explanations_say_what_to_do() {
        let changed = Refusal::HostKeyChanged {
            host: "[127.0.0.1]:2222".into(),
            file: Some("/k/known_hosts".into()),
        };
        assert!(changed
            .explain()
            .contains("ssh-keygen -R '[127.0.0.1]:2222' -f /k/known_hosts"));
        let spaced = Refusal::HostKeyChanged {
            host: "backup".into(),
            file: Some("/root/my hosts".into()),
        };
        assert!(spaced
            .explain()
            .contains("ssh-keygen -R backup -f '/root/my hosts'"));
        let login = Refusal::Login {
            line: "r@h: Permission denied (publickey).".into(),
        };
        assert!(login.explain().contains("authorized_keys"));
        assert!(Refusal::HostKeyUnknown
            .explain()
            .contains("StrictHostKeyChecking=accept-new"));
    }
}
