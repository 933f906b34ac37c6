//! A target's destination: parsing it as written by the operator
//! (`user@host::module/sub`, `rsync://user@host:port/module/sub`, `user@host:/path`,
//! `/local/path`) into a [`TargetKind`], and what each kind means to rsync and to a
//! reload: its transport options ([`TargetKind::transport_args`]), its destination
//! argument ([`TargetKind::dest_arg`]) and its identity ([`TargetKind::location`]).
//! Parsing follows rsync's own rule: a `:` before the first `/` means a remote host.
//!
//! The one place that knows how each kind is reached: the push planner (`rsync::args`)
//! and `syncd check`'s `--list-only` both take their transport words from here. Pure:
//! never touches the filesystem or the network; paths stay bytes (never lossy).

use std::ffi::OsString;
use std::ops::Range;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::model::TargetKind;

/// Parse `s` into a target. Options that are not part of the text (password file, ssh
/// arguments, a port for `host::module`) are left empty for the caller to fill in.
/// The error says what was expected.
/// A message names the destination as [`redacted`]: never with a password in it.
pub fn parse_dest(s: &str) -> Result<TargetKind, String> {
    parse_dest_raw(s).map_err(|e| e.replace(&format!("{s:?}"), &format!("{:?}", redacted(s))))
}

fn parse_dest_raw(s: &str) -> Result<TargetKind, String> {
    // First: whatever else is wrong, this is what must change.
    if password_span(s).is_some() {
        return Err(format!(
            "destination {s:?} holds a password (user:password@host); give it in a file with `password_file`"
        ));
    }
    if s.trim() != s || s.is_empty() {
        return Err(format!(
            "destination {s:?} is empty or has spaces around it"
        ));
    }
    if let Some(rest) = s.strip_prefix("rsync://") {
        return parse_url(s, rest);
    }
    let first_slash = s.find('/').unwrap_or(s.len());
    match s[..first_slash].find(':') {
        None if s.starts_with('/') => Ok(TargetKind::Local {
            path: PathBuf::from(trim_trailing_slashes(s)),
        }),
        None => Err(format!(
            "destination {s:?} is neither remote nor an absolute local path{EXPECTED}"
        )),
        Some(_) => parse_remote(s),
    }
}

const EXPECTED: &str = "; expected \"user@host::module\", \"rsync://user@host:port/module/dir\", \
     \"user@host:/path\" or \"/local/path\"";

/// `[user@]host::module[/sub]` or `[user@]host:path`.
fn parse_remote(s: &str) -> Result<TargetKind, String> {
    let (user, rest) = split_user(s, s)?;
    let (host, after) = split_host(s, rest)?;
    let Some(after) = after.strip_prefix(':') else {
        return Err(format!(
            "destination {s:?}: expected ':' after the host{EXPECTED}"
        ));
    };
    if let Some(module) = after.strip_prefix(':') {
        return Ok(TargetKind::Daemon {
            user,
            host,
            module: parse_module(s, module)?,
            port: None,
            password_file: None,
        });
    }
    if after.is_empty() {
        return Err(format!(
            "destination {s:?} has no remote path after ':'; write e.g. \"{}:/backup\"",
            &s[..s.len() - 1]
        ));
    }
    Ok(TargetKind::Ssh {
        user,
        host,
        path: after.to_string(),
        port: None,
        ssh_args: Vec::new(),
    })
}

/// The part after `rsync://`: `[user@]host[:port]/module[/sub]`.
fn parse_url(s: &str, rest: &str) -> Result<TargetKind, String> {
    let (user, rest) = split_user(s, rest)?;
    let (host, after) = split_host(s, rest)?;
    let (port, module) = match after.strip_prefix(':') {
        Some(p) => {
            let end = p.find('/').unwrap_or(p.len());
            let port = p[..end]
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    // Not repeated: it may be part of a password (`u:p/w@h`).
                    format!("destination {s:?}: what follows the host's ':' is not a port number (1-65535)")
                })?;
            (Some(port), &p[end..])
        }
        None => (None, after),
    };
    let Some(module) = module.strip_prefix('/') else {
        return Err(format!(
            "destination {s:?} names no module; write e.g. \"rsync://user@host/module\""
        ));
    };
    Ok(TargetKind::Daemon {
        user,
        host,
        module: parse_module(s, module)?,
        port,
        password_file: None,
    })
}

/// Split an optional `user@` off the front.
fn split_user<'a>(s: &str, rest: &'a str) -> Result<(Option<String>, &'a str), String> {
    let host_end = rest.find(['/', ':']).unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        None => Ok((None, rest)),
        Some(0) => Err(format!("destination {s:?}: empty user name before '@'")),
        Some(i) => {
            let user = &rest[..i];
            if user.contains(char::is_whitespace) {
                return Err(format!("destination {s:?}: user name {user:?} has spaces"));
            }
            Ok((Some(user.to_string()), &rest[i + 1..]))
        }
    }
}

/// Split the host (a name, an IPv4 address or a bracketed IPv6 address) off the front.
fn split_host<'a>(s: &str, rest: &'a str) -> Result<(String, &'a str), String> {
    let (host, after) = if let Some(v6) = rest.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| format!("destination {s:?}: '[' without ']' around the address"))?;
        (&v6[..end], &v6[end + 1..])
    } else {
        let end = rest.find([':', '/']).unwrap_or(rest.len());
        (&rest[..end], &rest[end..])
    };
    if host.is_empty() {
        return Err(format!("destination {s:?} has no host{EXPECTED}"));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '@') {
        // The host is not repeated: `[user:password@host]` would show the password.
        return Err(format!(
            "destination {s:?}: the host is not a host name or address"
        ));
    }
    Ok((host.to_string(), after))
}

/// `module[/sub/dir]`: no leading slash, trailing slashes dropped, not empty.
fn parse_module(s: &str, module: &str) -> Result<String, String> {
    let module = trim_trailing_slashes(module);
    if module.is_empty() || module.starts_with('/') {
        return Err(format!(
            "destination {s:?} names no module; write e.g. \"user@host::module\""
        ));
    }
    Ok(module.to_string())
}

/// The byte range of a password written into a destination, the way a URL or an ssh
/// login carries one (`user:password@host`): `rsync://u:pw@h/m`, `rsync://u:pw@h:873/m`
/// (the authority, up to the first `/`, has a `:` before its last `@`), or `u:pw@h::m`,
/// `u:pw@h:/path` (rsync would take these for an ssh login to host `u` with the path
/// `pw@h::m`: the first `:` follows a plain host, and the "path" has an `@` before any
/// `/`, or its last `@` is followed by a host and a `:`, as in `u:p/w@h:/path`, and the
/// "path" does not start with `/`, `.` or `~`). An ssh path with an `@` in its first
/// component is caught too: written `host:./dir@x`, it is not. None when there is none.
pub fn password_span(s: &str) -> Option<Range<usize>> {
    if let Some(rest) = s.strip_prefix("rsync://") {
        let base = s.len() - rest.len();
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let at = authority.rfind('@')?;
        let colon = authority[..at].find(':')?;
        return Some(base + colon + 1..base + at);
    }
    let colon = s.find(':')?;
    let host = &s[..colon];
    if host.contains(['/', '@', '[']) {
        return None;
    }
    let path = &s[colon + 1..];
    if path.starts_with(':') {
        return None;
    }
    let at = path.find('@')?;
    if !path[..at].contains('/') {
        return Some(colon + 1..colon + 1 + at);
    }
    // `u:pa/ss@h::m`, `u:pa/ss@h:/path`: an `@` followed by a host and a `:` (no `/`
    // between them) reads as `user:password@host:`, whatever the password holds — unless
    // the "path" reads as one (`h:/srv/a@b:c`, `h:./a@b:c`, `h:~/a@b:c`).
    if path.starts_with(['/', '.', '~']) {
        return None;
    }
    let at = path.rfind('@')?;
    let after = &path[at + 1..];
    let host_end = after.find(':')?;
    (host_end > 0 && !after[..host_end].contains('/')).then(|| colon + 1..colon + 1 + at)
}

/// Does `s` hold a password (see [`password_span`])?
pub fn has_password(s: &str) -> bool {
    password_span(s).is_some()
}

/// `s` fit for a message: whatever could be a password (after the first `:` that comes
/// before the last `@`, past a `scheme://`) replaced by `***`. Broader than
/// [`password_span`] on purpose: a message may hide a harmless part, never a secret.
pub fn redacted(s: &str) -> String {
    let base = s.find("://").map_or(0, |i| i + 3);
    let t = &s[base..];
    let span = t
        .rfind('@')
        .and_then(|at| t[..at].find(':').map(|colon| base + colon + 1..base + at));
    match span {
        Some(r) => format!("{}***{}", &s[..r.start], &s[r.end..]),
        None => s.to_string(),
    }
}

fn trim_trailing_slashes(s: &str) -> &str {
    let t = s.trim_end_matches('/');
    if t.is_empty() && s.starts_with('/') {
        "/"
    } else {
        t
    }
}

/// Where a target's files land: what decides whether its content is still known (a
/// reload that changes it pushes the whole tree). The user, password file and ssh
/// arguments are how rsync logs in, not where the files go, and are not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    Daemon {
        host: String,
        port: Option<u16>,
        module: String,
    },
    Ssh {
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// The path as given, byte for byte (not necessarily UTF-8).
    Local(PathBuf),
}

/// The socket options of every connection to a daemon (see [`TargetKind::transport_args`]).
pub const DAEMON_SOCKOPTS: &str = "--sockopts=TCP_NODELAY";

/// Connect timeouts in whole seconds for [`TargetKind::transport_args`]: `daemon` as
/// rsync's `--contimeout`, `ssh` as ssh's `-o ConnectTimeout`. None leaves the default.
/// Pushes set only `daemon` (from `rsync.timeout`); `syncd check` sets both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectTimeouts {
    pub daemon: Option<u64>,
    pub ssh: Option<u64>,
}

impl TargetKind {
    /// The rsync options that say how to reach this kind of target, in rsync's order:
    /// `--sockopts=TCP_NODELAY --contimeout=S --port=P --password-file=F` for a daemon,
    /// `-e "ssh ..."` for ssh (see [`ssh_command`]), nothing for a local directory. The
    /// password file's *name* only, never its content.
    ///
    /// `TCP_NODELAY` on the client's socket: the daemon protocol's small messages
    /// otherwise meet Nagle's algorithm and the peer's delayed ACK, and a run to a daemon
    /// stalled 40 ms (the kernel's delayed-ACK minimum) three times, most of its fixed
    /// cost: one path to a daemon on 127.0.0.1 took 140 ms, 50 ms with it (rsync 3.5.0;
    /// the remaining stall is the daemon's own socket, `socket options` in its
    /// rsyncd.conf). A `--sockopts` in `extra` comes later and wins.
    pub fn transport_args(&self, connect: ConnectTimeouts) -> Vec<OsString> {
        let mut args = Vec::new();
        match self {
            TargetKind::Daemon {
                port,
                password_file,
                ..
            } => {
                args.push(DAEMON_SOCKOPTS.into());
                if let Some(secs) = connect.daemon {
                    args.push(format!("--contimeout={secs}").into());
                }
                if let Some(port) = port {
                    args.push(format!("--port={port}").into());
                }
                if let Some(pw) = password_file {
                    let mut a = OsString::from("--password-file=");
                    a.push(pw);
                    args.push(a);
                }
            }
            TargetKind::Ssh { port, ssh_args, .. } => {
                args.push("-e".into());
                args.push(ssh_command(*port, connect.ssh, ssh_args).into());
            }
            TargetKind::Local { .. } => {}
        }
        args
    }

    /// The destination argument: `[user@]host::module/` (daemon), `[user@]host:path/`
    /// (ssh) or `path/` (local). The trailing slash makes rsync treat it as a directory.
    pub fn dest_arg(&self) -> OsString {
        match self {
            TargetKind::Daemon {
                user, host, module, ..
            } => OsString::from(format!("{}{}::{module}/", user_at(user), host_arg(host))),
            TargetKind::Ssh {
                user, host, path, ..
            } => {
                let mut path = path.clone();
                if !path.is_empty() && !path.ends_with('/') {
                    path.push('/');
                }
                OsString::from(format!("{}{}:{path}", user_at(user), host_arg(host)))
            }
            TargetKind::Local { path } => {
                let mut bytes = path.as_os_str().as_bytes().to_vec();
                // A relative local path with a colon before its first slash would be
                // taken for `host:path`.
                let colon = bytes.iter().position(|b| *b == b':');
                let slash = bytes.iter().position(|b| *b == b'/');
                if bytes.first() != Some(&b'/')
                    && colon.is_some_and(|c| slash.is_none_or(|s| c < s))
                {
                    bytes.splice(0..0, *b"./");
                }
                if bytes.last() != Some(&b'/') {
                    bytes.push(b'/');
                }
                OsString::from_vec(bytes)
            }
        }
    }

    /// Where this target's files land (see [`Location`]).
    pub fn location(&self) -> Location {
        match self {
            TargetKind::Daemon {
                host, port, module, ..
            } => Location::Daemon {
                host: host.clone(),
                port: *port,
                module: module.clone(),
            },
            TargetKind::Ssh {
                host, port, path, ..
            } => Location::Ssh {
                host: host.clone(),
                port: *port,
                path: path.clone(),
            },
            TargetKind::Local { path } => Location::Local(path.clone()),
        }
    }

    /// The directory the receiving rsync names files under in its messages, when it
    /// names them absolutely: a local target's absolute path, an ssh target's absolute
    /// path, or `/sub` for a daemon destination `mod/sub` (a daemon prints paths
    /// relative to its module, `"/sub/a/b" (in mod)`; measured, rsync 3.5.0). None when
    /// the messages name files relative to the destination itself.
    pub fn receiver_root(&self) -> Option<Vec<u8>> {
        match self {
            TargetKind::Daemon { module, .. } => module
                .split_once('/')
                .map(|(_, sub)| format!("/{sub}").into_bytes()),
            TargetKind::Local { path } if path.is_absolute() => {
                Some(path.as_os_str().as_bytes().to_vec())
            }
            TargetKind::Ssh { path, .. } if path.starts_with('/') => Some(path.as_bytes().to_vec()),
            TargetKind::Local { .. } | TargetKind::Ssh { .. } => None,
        }
    }

    /// The host and TCP port a remote target is reached on (the daemon's 873, ssh's 22
    /// when none is set), for messages about reaching it; None for a local target.
    pub fn endpoint(&self) -> Option<(&str, u16)> {
        match self {
            TargetKind::Daemon { host, port, .. } => Some((host, port.unwrap_or(873))),
            TargetKind::Ssh { host, port, .. } => Some((host, port.unwrap_or(22))),
            TargetKind::Local { .. } => None,
        }
    }

    /// For an ssh target, the command that logs in the way syncd's rsync does, for an
    /// operator to try by hand (`ssh -p 2222 -o BatchMode=yes -i /root/.ssh/key
    /// root@backup true`), each word quoted for a POSIX shell. None for other kinds.
    pub fn ssh_by_hand(&self) -> Option<String> {
        let TargetKind::Ssh {
            user,
            host,
            port,
            ssh_args,
            ..
        } = self
        else {
            return None;
        };
        let mut words = ssh_words(*port, None, ssh_args);
        words.push(format!("{}{host}", user_at(user)));
        words.push("true".to_string());
        Some(
            words
                .iter()
                .map(|w| quote_shell_word(w))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// The daemon's `--password-file`, if this is a daemon target with one.
    pub fn password_file(&self) -> Option<&Path> {
        match self {
            TargetKind::Daemon {
                password_file: Some(pw),
                ..
            } => Some(pw),
            _ => None,
        }
    }
}

/// The `-e` value: `ssh [-p PORT] -o BatchMode=yes [-o ConnectTimeout=S] ARGS...`, each
/// word quoted the way rsync splits this string (see [`quote_rsh_word`]).
fn ssh_command(port: Option<u16>, connect_timeout: Option<u64>, ssh_args: &[String]) -> String {
    ssh_words(port, connect_timeout, ssh_args)
        .iter()
        .map(|w| quote_rsh_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ssh [-p PORT] -o BatchMode=yes [-o ConnectTimeout=S] ARGS...`, unquoted. syncd's
/// options come first: ssh takes the first value it is given for an option, so
/// `ssh_args` cannot turn BatchMode off (a prompt would hang a push).
fn ssh_words(port: Option<u16>, connect_timeout: Option<u64>, ssh_args: &[String]) -> Vec<String> {
    let mut words = vec!["ssh".to_string()];
    if let Some(p) = port {
        words.extend(["-p".to_string(), p.to_string()]);
    }
    words.extend(["-o".to_string(), "BatchMode=yes".to_string()]);
    if let Some(secs) = connect_timeout {
        words.extend(["-o".to_string(), format!("ConnectTimeout={secs}")]);
    }
    words.extend(ssh_args.iter().cloned());
    words
}

/// Do `ssh_args` switch off what protects an ssh target from a server that is not the
/// one recorded: `StrictHostKeyChecking=no` (ssh then logs in to a server whose host key
/// changed, with only a warning on stderr), or `accept-new` with `UserKnownHostsFile` set
/// to `/dev/null` (every key is new, so any is taken). ssh uses the first value given
/// for an option; names are case-insensitive; `-o K=V`, `-o "K V"` and `-oK=V` count.
/// The warning to give, if so.
pub fn host_key_checks_off(ssh_args: &[String]) -> Option<String> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut words = ssh_args.iter();
    while let Some(w) = words.next() {
        let option = match w.strip_prefix("-o") {
            Some("") => words.next().map(String::as_str),
            Some(rest) => Some(rest),
            None => None,
        };
        let Some((key, value)) = option.and_then(|o| o.split_once(['=', ' '])) else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if !options.iter().any(|(k, _)| *k == key) {
            options.push((key, value.trim().to_ascii_lowercase()));
        }
    }
    let value = |k: &str| {
        options
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let why = match (value("stricthostkeychecking"), value("userknownhostsfile")) {
        (Some("no" | "off"), _) => "StrictHostKeyChecking=no: ssh logs in to a server whose host key changed",
        (Some("accept-new"), Some("/dev/null")) => {
            "accept-new with UserKnownHostsFile=/dev/null: every host key is new to ssh, so any is taken"
        }
        _ => return None,
    };
    Some(format!(
        "ssh_args switch host key checking off ({why}; someone in the middle gets the data); \
         record the target's host key in known_hosts and remove the option"
    ))
}

/// One word for a POSIX shell: as it is when it holds only characters no shell treats
/// specially, else in single quotes (a quote inside as `'\''`).
pub fn quote_shell_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        return w.to_string();
    }
    format!("'{}'", w.replace('\'', "'\\''"))
}

/// One word of rsync's `-e` string: rsync splits it at spaces; single or double quotes
/// keep spaces, a doubled quote inside quotes is a literal quote, backslashes are not
/// special.
fn quote_rsh_word(w: &str) -> String {
    if !w.is_empty() && !w.contains([' ', '\'', '"']) {
        return w.to_string();
    }
    format!("'{}'", w.replace('\'', "''"))
}

fn user_at(user: &Option<String>) -> String {
    user.as_ref().map(|u| format!("{u}@")).unwrap_or_default()
}

/// IPv6 literals need brackets in `host::module` and `host:path`.
fn host_arg(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(user: Option<&str>, host: &str, module: &str, port: Option<u16>) -> TargetKind {
        TargetKind::Daemon {
            user: user.map(String::from),
            host: host.into(),
            module: module.into(),
            port,
            password_file: None,
        }
    }

    fn ssh(user: Option<&str>, host: &str, path: &str) -> TargetKind {
        TargetKind::Ssh {
            user: user.map(String::from),
            host: host.into(),
            path: path.into(),
            port: None,
            ssh_args: Vec::new(),
        }
    }

    fn local(path: &str) -> TargetKind {
        TargetKind::Local { path: path.into() }
    }

    #[test]
    fn good_destinations() {
        let cases = [
            (
                "rsync_backup@172.16.1.41::nfsbackup",
                daemon(Some("rsync_backup"), "172.16.1.41", "nfsbackup", None),
            ),
            (
                "backup::mod/sub/dir/",
                daemon(None, "backup", "mod/sub/dir", None),
            ),
            ("u@[::1]::mod", daemon(Some("u"), "::1", "mod", None)),
            (
                "rsync://u@host:8873/mod/sub",
                daemon(Some("u"), "host", "mod/sub", Some(8873)),
            ),
            ("rsync://host/mod", daemon(None, "host", "mod", None)),
            (
                "rsync://[fe80::1]:873/mod/",
                daemon(None, "fe80::1", "mod", Some(873)),
            ),
            (
                "root@backup.example:/srv/data",
                ssh(Some("root"), "backup.example", "/srv/data"),
            ),
            ("backup:/srv/data", ssh(None, "backup", "/srv/data")),
            ("backup:relative/dir", ssh(None, "backup", "relative/dir")),
            ("/backup/data/", local("/backup/data")),
            ("/backup/a:b", local("/backup/a:b")),
            ("/", local("/")),
            // An '@' that is no `user:password@`.
            ("h::mod@x", daemon(None, "h", "mod@x", None)),
            (
                "rsync://u@h:873/m@x",
                daemon(Some("u"), "h", "m@x", Some(873)),
            ),
            ("h:./dir@x", ssh(None, "h", "./dir@x")),
            ("h:/srv/a@b:c", ssh(None, "h", "/srv/a@b:c")),
            ("u@h:dir@x", ssh(Some("u"), "h", "dir@x")),
            ("/backup/a:b@c", local("/backup/a:b@c")),
        ];
        for (text, want) in cases {
            assert!(!has_password(text), "{text}");
            assert_eq!(parse_dest(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            (" /x", "spaces"),
            ("backup", "neither remote nor an absolute local path"),
            ("relative/dir", "neither remote nor an absolute local path"),
            ("host::", "names no module"),
            ("host::/mod", "names no module"),
            ("::mod", "has no host"),
            ("@host::mod", "empty user"),
            ("host:", "no remote path"),
            ("rsync://host", "names no module"),
            ("rsync://host:port/mod", "not a port number"),
            ("rsync://host:0/mod", "not a port number"),
            ("rsync://u@/mod", "has no host"),
            ("u@[::1::mod", "without ']'"),
        ];
        for (text, want) in cases {
            let err = parse_dest(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_password_in_the_destination_is_refused_without_repeating_it() {
        // (destination, the secret in it, recognised as a password form: else refused
        // for another reason, the message still hiding what lies between ':' and '@')
        let cases = [
            ("rsync://u:S3cr3t@h/m", "S3cr3t", true),
            ("rsync://u:S3cr3t@h:873/m", "S3cr3t", true),
            ("rsync://u:S3:cr@3t@h/m/sub", "S3:cr@3t", true),
            ("u:S3cr3t@h::m", "S3cr3t", true),
            ("u:S3cr3t@h::m/sub", "S3cr3t", true),
            ("u:S3cr3t@h:/path", "S3cr3t", true),
            ("u:S3cr3t@h:rel", "S3cr3t", true),
            ("u:S3/cr3t@h::m", "S3/cr3t", true),
            ("u:S3/cr3t@h:/path", "S3/cr3t", true),
            ("u:S3/cr3t@h:", "S3/cr3t", true),
            ("u:S3cr3t@[::1]::m", "S3cr3t", true),
            ("u:S3cr3t@h:", "S3cr3t", true),
            ("rsync://u:S3/cr3t@h/m", "S3", false),
            ("[u:S3cr3t@h]::m", "S3cr3t", false),
            (" u:S3cr3t@h::m", "S3cr3t", true),
        ];
        for (text, secret, recognised) in cases {
            assert_eq!(has_password(text), recognised, "{text}");
            let err = parse_dest(text).expect_err(text);
            assert_eq!(err.contains("password_file"), recognised, "{text}: {err}");
            assert!(!err.contains(secret), "{text}: {err}");
        }
    }

    #[test]
    fn an_ssh_path_with_an_at_sign_is_not_taken_for_a_password() {
        for text in [
            "h:dir/a@b",
            "h:./dir@x",
            "h:dir/mail@x/y:z",
            "u@h:/srv/a@b",
            "h:/a@:b",
            "h:/srv/a@b:c",
            "h:~/a/b@c:d",
        ] {
            assert!(!has_password(text), "{text}");
        }
    }

    #[test]
    fn redacted_hides_what_could_be_a_password() {
        let cases = [
            ("rsync://u:pw@h/m", "rsync://u:***@h/m"),
            ("u:pw@h::m", "u:***@h::m"),
            ("[u:pw@h]::m", "[u:***@h]::m"),
            ("http://u:p@w@h/x", "http://u:***@h/x"),
            ("u@h::m", "u@h::m"),
            ("h:/path", "h:/path"),
            ("rsync://h:873/m", "rsync://h:873/m"),
        ];
        for (text, want) in cases {
            assert_eq!(redacted(text), want, "{text}");
        }
    }

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn dest_arg_per_kind() {
        let cases: Vec<(TargetKind, OsString)> = vec![
            (
                daemon(Some("rsync_backup"), "127.0.0.1", "nfsbackup", Some(18873)),
                os("rsync_backup@127.0.0.1::nfsbackup/"),
            ),
            (daemon(None, "::1", "mod/sub", None), os("[::1]::mod/sub/")),
            (
                ssh(Some("root"), "backup.example", "/srv/data"),
                os("root@backup.example:/srv/data/"),
            ),
            (ssh(None, "h", "rel/"), os("h:rel/")),
            (ssh(None, "h", ""), os("h:")),
            (local("/backup/data"), os("/backup/data/")),
            (local("/backup/"), os("/backup/")),
            (local("/b/x:y"), os("/b/x:y/")),
            (local("x:y/z"), os("./x:y/z/")),
            (
                TargetKind::Local {
                    path: PathBuf::from(OsString::from_vec(b"/tmp/caf\xe9".to_vec())),
                },
                OsString::from_vec(b"/tmp/caf\xe9/".to_vec()),
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(kind.dest_arg(), want, "{kind:?}");
        }
    }

    #[test]
    fn transport_args_per_kind() {
        let push = |secs| ConnectTimeouts {
            daemon: secs,
            ssh: None,
        };
        let check = ConnectTimeouts {
            daemon: Some(7),
            ssh: Some(7),
        };
        let daemon_pw = |port: Option<u16>, pw: &[u8]| TargetKind::Daemon {
            user: Some("u".into()),
            host: "h".into(),
            module: "m/sub".into(),
            port,
            password_file: Some(PathBuf::from(OsString::from_vec(pw.to_vec()))),
        };
        let full_daemon = daemon_pw(Some(8873), b"/etc/rsync.password");
        let odd_password = daemon_pw(None, b"/etc/p\xff");
        let ssh_with = |port: Option<u16>, extra: &[&str]| TargetKind::Ssh {
            user: Some("root".into()),
            host: "h".into(),
            path: "/srv".into(),
            port,
            ssh_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        let cases: Vec<(TargetKind, ConnectTimeouts, Vec<OsString>)> = vec![
            // Daemon: no Nagle, contimeout (when given), port, password file, in that
            // order.
            (
                full_daemon.clone(),
                push(Some(300)),
                vec![
                    os(DAEMON_SOCKOPTS),
                    os("--contimeout=300"),
                    os("--port=8873"),
                    os("--password-file=/etc/rsync.password"),
                ],
            ),
            (
                full_daemon.clone(),
                push(None),
                vec![
                    os(DAEMON_SOCKOPTS),
                    os("--port=8873"),
                    os("--password-file=/etc/rsync.password"),
                ],
            ),
            (
                full_daemon,
                check,
                vec![
                    os(DAEMON_SOCKOPTS),
                    os("--contimeout=7"),
                    os("--port=8873"),
                    os("--password-file=/etc/rsync.password"),
                ],
            ),
            (
                daemon(None, "h", "m", None),
                push(None),
                vec![os(DAEMON_SOCKOPTS)],
            ),
            (
                odd_password,
                push(None),
                vec![
                    os(DAEMON_SOCKOPTS),
                    OsString::from_vec(b"--password-file=/etc/p\xff".to_vec()),
                ],
            ),
            // Ssh: one -e word; ConnectTimeout only when asked (check), never from a push.
            (
                ssh_with(None, &[]),
                push(Some(300)),
                vec![os("-e"), os("ssh -o BatchMode=yes")],
            ),
            (
                ssh_with(Some(2222), &["-i", "/root/.ssh/backup_key"]),
                push(Some(300)),
                vec![
                    os("-e"),
                    os("ssh -p 2222 -o BatchMode=yes -i /root/.ssh/backup_key"),
                ],
            ),
            (
                ssh_with(Some(2222), &["-i", "/root/my key"]),
                check,
                vec![
                    os("-e"),
                    os("ssh -p 2222 -o BatchMode=yes -o ConnectTimeout=7 -i '/root/my key'"),
                ],
            ),
            (
                ssh_with(
                    None,
                    &["-o", "ProxyCommand=nc -X 5 %h %p", "it's", "", "a\\b"],
                ),
                push(None),
                vec![
                    os("-e"),
                    os("ssh -o BatchMode=yes -o 'ProxyCommand=nc -X 5 %h %p' 'it''s' '' a\\b"),
                ],
            ),
            // Local: nothing.
            (local("/backup"), push(Some(300)), vec![]),
            (local("/backup"), check, vec![]),
        ];
        for (kind, connect, want) in cases {
            assert_eq!(kind.transport_args(connect), want, "{kind:?} {connect:?}");
        }
    }

    #[test]
    fn location_is_where_the_files_land() {
        let bytes = |b: &[u8]| TargetKind::Local {
            path: PathBuf::from(OsString::from_vec(b.to_vec())),
        };
        let with_login = TargetKind::Daemon {
            user: Some("other".into()),
            host: "h".into(),
            module: "m".into(),
            port: None,
            password_file: Some("/etc/pw".into()),
        };
        // (a, b, same location)
        let cases: Vec<(TargetKind, TargetKind, bool)> = vec![
            (daemon(Some("u"), "h", "m", None), with_login, true),
            (
                daemon(None, "h", "m", None),
                daemon(None, "h", "m", Some(873)),
                false,
            ),
            (
                daemon(None, "h", "m", None),
                daemon(None, "h2", "m", None),
                false,
            ),
            (
                daemon(None, "h", "m", None),
                daemon(None, "h", "m/sub", None),
                false,
            ),
            (daemon(None, "h", "m", None), ssh(None, "h", "m"), false),
            (ssh(Some("a"), "h", "/p"), ssh(Some("b"), "h", "/p"), true),
            (ssh(None, "h", "/p"), ssh(None, "h", "/q"), false),
            (local("/b"), local("/b"), true),
            (local("/b"), local("/c"), false),
            (bytes(b"/tmp/x\xff"), bytes(b"/tmp/x\xfe"), false),
            (bytes(b"/tmp/x\xff"), bytes(b"/tmp/x\xff"), true),
        ];
        for (a, b, same) in cases {
            assert_eq!(a.location() == b.location(), same, "{a:?} {b:?}");
        }
    }

    #[test]
    fn receiver_root_per_kind() {
        let cases: Vec<(TargetKind, Option<&[u8]>)> = vec![
            (daemon(None, "h", "mod", None), None),
            (daemon(None, "h", "mod/sub", None), Some(b"/sub")),
            (daemon(None, "h", "mod/sub/dir", None), Some(b"/sub/dir")),
            (ssh(None, "h", "/srv/data"), Some(b"/srv/data")),
            (ssh(None, "h", "rel/dir"), None),
            (ssh(None, "h", ""), None),
            (local("/backup"), Some(b"/backup")),
            (local("x:y/z"), None),
            (
                TargetKind::Local {
                    path: PathBuf::from(OsString::from_vec(b"/b\xff".to_vec())),
                },
                Some(b"/b\xff"),
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(kind.receiver_root().as_deref(), want, "{kind:?}");
        }
    }

    #[test]
    fn endpoint_per_kind() {
        assert_eq!(daemon(None, "h", "m", None).endpoint(), Some(("h", 873)));
        assert_eq!(
            daemon(None, "h", "m", Some(8873)).endpoint(),
            Some(("h", 8873))
        );
        let ssh = parse_dest("u@backup:/srv").expect("valid");
        assert_eq!(ssh.endpoint(), Some(("backup", 22)));
        assert_eq!(parse_dest("/srv/backup").expect("valid").endpoint(), None);
    }

    #[test]
    fn ssh_by_hand_is_the_login_of_a_push_quoted_for_a_shell() {
        let mut t = ssh(Some("root"), "127.0.0.1", "/srv");
        if let TargetKind::Ssh { port, ssh_args, .. } = &mut t {
            *port = Some(2222);
            *ssh_args = vec![
                "-i".into(),
                "/root/my keys/it's".into(),
                "-o".into(),
                "UserKnownHostsFile=/k/known_hosts".into(),
            ];
        }
        assert_eq!(
            t.ssh_by_hand().as_deref(),
            Some(
                "ssh -p 2222 -o BatchMode=yes -i '/root/my keys/it'\\''s' -o \
                 UserKnownHostsFile=/k/known_hosts root@127.0.0.1 true"
            )
        );
        assert_eq!(
            ssh(None, "b", "/x").ssh_by_hand().as_deref(),
            Some("ssh -o BatchMode=yes b true")
        );
        assert_eq!(local("/x").ssh_by_hand(), None);
        assert_eq!(daemon(None, "h", "m", None).ssh_by_hand(), None);
    }

    #[test]
    fn host_key_checks_off_only_when_ssh_would_take_any_key() {
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["-i", "/k"], false),
            (&["-o", "StrictHostKeyChecking=no"], true),
            (&["-oStrictHostKeyChecking=off"], true),
            (&["-o", "stricthostkeychecking no"], true),
            (&["-o", "StrictHostKeyChecking=yes"], false),
            (&["-o", "StrictHostKeyChecking=accept-new"], false),
            // ssh takes the first value.
            (
                &[
                    "-o",
                    "StrictHostKeyChecking=yes",
                    "-o",
                    "StrictHostKeyChecking=no",
                ],
                false,
            ),
            (
                &[
                    "-o",
                    "StrictHostKeyChecking=accept-new",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ],
                true,
            ),
            (&["-o", "UserKnownHostsFile=/dev/null"], false),
            (&["-o"], false),
        ];
        for (args, off) in cases {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let got = host_key_checks_off(&args);
            assert_eq!(got.is_some(), *off, "{args:?}: {got:?}");
        }
    }

    #[test]
    fn password_file_only_of_a_daemon() {
        let mut d = daemon(None, "h", "m", None);
        assert_eq!(d.password_file(), None);
        if let TargetKind::Daemon { password_file, .. } = &mut d {
            *password_file = Some("/etc/pw".into());
        }
        assert_eq!(d.password_file(), Some(Path::new("/etc/pw")));
        assert_eq!(ssh(None, "h", "/p").password_file(), None);
        assert_eq!(local("/b").password_file(), None);
    }
}
