//! `user` and `group`: the account the worker runs as, resolved to ids once, when the
//! config is loaded, so an unknown name is an error at its line (and so the controller
//! has the ids before it forks: a name lookup is not async-signal-safe). The only I/O is
//! the account lookup (`getpwnam`, `getgrnam`, `getgrgid` through NSS).

use nix::unistd::{Group, User};

use super::diag::{At, Diags};
use super::model::RunAs;

/// The account a `user = ...` key asks for; None when the key is absent, names root
/// (a warning: nothing changes), or is wrong (an error in `d`).
pub(super) fn resolve(
    user: Option<&At<String>>,
    group: Option<&At<String>>,
    d: &mut Diags,
) -> Option<RunAs> {
    let Some(user) = user else {
        if let Some(g) = group {
            d.error_with(
                g.at,
                format!("group = {:?} is set without user", g.value),
                &["add user = \"syncd\" (the account the worker runs as), or remove group"],
            );
        }
        return None;
    };
    let name = user.value.trim();
    if name.is_empty() {
        d.error(
            user.at,
            "user is empty; leave it out to run the worker as root",
        );
        return None;
    }
    let account = match User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => {
            let numeric = name.bytes().all(|b| b.is_ascii_digit());
            let mut fix = vec![
                format!(
                    "create it: useradd --system --no-create-home --shell /usr/sbin/nologin {name}"
                ),
                "or remove `user` to run the worker as root".to_string(),
            ];
            if numeric {
                fix.insert(0, "write the account's name, not its uid".to_string());
            }
            let fix: Vec<&str> = fix.iter().map(String::as_str).collect();
            d.error_with(
                user.at,
                format!("user {name:?} does not exist on this machine"),
                &fix,
            );
            return None;
        }
        Err(e) => {
            d.error_with(
                user.at,
                format!("cannot look up user {name:?}: {e}"),
                &["check /etc/passwd and /etc/nsswitch.conf"],
            );
            return None;
        }
    };
    let (group_name, gid) = match group {
        None => {
            let gid = account.gid;
            let shown = Group::from_gid(gid)
                .ok()
                .flatten()
                .map_or_else(|| gid.to_string(), |g| g.name);
            (shown, gid)
        }
        Some(g) => match Group::from_name(g.value.trim()) {
            Ok(Some(found)) => (found.name, found.gid),
            Ok(None) => {
                let fix = format!("create it: groupadd --system {}", g.value.trim());
                d.error_with(
                    g.at,
                    format!("group {:?} does not exist on this machine", g.value),
                    &[&fix, "or remove `group` to use the user's primary group"],
                );
                return None;
            }
            Err(e) => {
                d.error_with(
                    g.at,
                    format!("cannot look up group {:?}: {e}", g.value),
                    &["check /etc/group and /etc/nsswitch.conf"],
                );
                return None;
            }
        },
    };
    if account.uid.is_root() {
        d.warn(
            user.at,
            format!("user = {name:?} is root: the worker runs as root, as without `user`"),
        );
        return None;
    }
    Some(RunAs {
        user: account.name,
        uid: account.uid.as_raw(),
        group: group_name,
        gid: gid.as_raw(),
        home: account.dir,
    })
}
