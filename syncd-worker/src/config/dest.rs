//! Parsing an rsync destination as written by the operator (`user@host::module/sub`,
//! `rsync://user@host:port/module/sub`, `user@host:/path`, `/local/path`) into a
//! [`TargetKind`]. Follows rsync's own rule: a `:` before the first `/` means a remote
//! host. Pure: never touches the filesystem or the network.

use std::path::PathBuf;

use super::model::TargetKind;

/// Parse `s` into a target. Options that are not part of the text (password file, ssh
/// arguments, a port for `host::module`) are left empty for the caller to fill in.
/// The error says what was expected.
pub fn parse_dest(s: &str) -> Result<TargetKind, String> {
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
    let (user, rest) = split_user(s)?;
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
    let (user, rest) = split_user(rest)?;
    let (host, after) = split_host(s, rest)?;
    let (port, module) = match after.strip_prefix(':') {
        Some(p) => {
            let end = p.find('/').unwrap_or(p.len());
            let port = p[..end]
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    format!(
                        "destination {s:?}: {:?} is not a port number (1-65535)",
                        &p[..end]
                    )
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
fn split_user(rest: &str) -> Result<(Option<String>, &str), String> {
    let host_end = rest.find(['/', ':']).unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        None => Ok((None, rest)),
        Some(0) => Err(format!("destination {rest:?}: empty user name before '@'")),
        Some(i) => {
            let user = &rest[..i];
            if user.contains(char::is_whitespace) {
                return Err(format!(
                    "destination {rest:?}: user name {user:?} has spaces"
                ));
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
        return Err(format!(
            "destination {s:?}: {host:?} is not a host name or address"
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

fn trim_trailing_slashes(s: &str) -> &str {
    let t = s.trim_end_matches('/');
    if t.is_empty() && s.starts_with('/') {
        "/"
    } else {
        t
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
        ];
        for (text, want) in cases {
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
}
