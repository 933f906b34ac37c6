//! Who a child runs as ([`Spawn::as_user`](super::Spawn::as_user)): an account's uid, gid
//! and supplementary groups, looked up before the fork ([`Credentials::of`]) and applied
//! in the child between fork and exec ([`Credentials::apply`]), where only
//! async-signal-safe calls are allowed (no allocation, no lock, no name lookup).
//!
//! What `apply` leaves: the account's groups (as `initgroups` would set them), its gid
//! and uid as real, effective and saved ids, no capability in any set (the bounding set
//! emptied while still root, the ambient set cleared; a uid change from root without
//! `PR_SET_KEEPCAPS` empties the permitted and effective sets), and `no_new_privs`, so
//! neither a set-uid program nor file capabilities give anything back. It refuses to go
//! on (the child does not start) if any step fails or root can still be regained.
//! Whatever the child starts (rsync, ssh, hooks) inherits all of it.

use std::ffi::CString;
use std::io;

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

/// An account to run a child as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    uid: Uid,
    gid: Gid,
    /// Supplementary groups, `gid` among them.
    groups: Vec<Gid>,
}

impl Credentials {
    /// `user` (named, for its supplementary groups) with `uid` and primary group `gid`.
    /// Looks the groups up now, in the parent.
    pub fn of(user: &str, uid: u32, gid: u32) -> io::Result<Credentials> {
        let name = CString::new(user)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the user name"))?;
        let gid = Gid::from_raw(gid);
        let groups = nix::unistd::getgrouplist(&name, gid)?;
        Ok(Credentials {
            uid: Uid::from_raw(uid),
            gid,
            groups,
        })
    }

    pub fn uid(&self) -> u32 {
        self.uid.as_raw()
    }

    pub fn gid(&self) -> u32 {
        self.gid.as_raw()
    }

    pub fn groups(&self) -> Vec<u32> {
        self.groups.iter().map(|g| g.as_raw()).collect()
    }

    /// In the child, between fork and exec: become the account with no way back (see
    /// the module doc). Async-signal-safe: system calls only, no allocation.
    pub(super) fn apply(&self) -> io::Result<()> {
        clear_capability_bounds()?;
        nix::unistd::setgroups(&self.groups)?;
        nix::unistd::setresgid(self.gid, self.gid, self.gid)?;
        nix::unistd::setresuid(self.uid, self.uid, self.uid)?;
        if !self.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(Errno::EPERM.into());
        }
        nix::sys::prctl::set_no_new_privs()?;
        Ok(())
    }
}

/// Empty the capability bounding set and the ambient set (needs CAP_SETPCAP: do it
/// before giving up root).
fn clear_capability_bounds() -> io::Result<()> {
    // SAFETY: prctl(2) with integer arguments only; no memory is passed or kept.
    // PR_CAP_AMBIENT exists since Linux 4.3: EINVAL before that, when there is no ambient
    // set to clear.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r != 0 && Errno::last() != Errno::EINVAL {
        return Err(Errno::last().into());
    }
    // Capability numbers run from 0 to the kernel's last (40 on 6.x); past it, EINVAL.
    // One already out of the set (a unit's CapabilityBoundingSet=) is left alone; one in
    // it that cannot be dropped (no CAP_SETPCAP) stops the start: EPERM.
    for cap in 0..64 as libc::c_ulong {
        // SAFETY: as above, integers only.
        let held = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_READ,
                cap,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        match held {
            0 => continue,
            1 => {}
            _ if Errno::last() == Errno::EINVAL => break,
            _ => return Err(Errno::last().into()),
        }
        // SAFETY: as above, integers only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                cap,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if r != 0 {
            return Err(Errno::last().into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{Output, Spawn};

    #[test]
    fn a_child_runs_as_the_account_with_nothing_left_of_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: only root can change its uid");
            return;
        }
        let who = nix::unistd::User::from_name("nobody")
            .expect("look up nobody")
            .expect("an account named nobody");
        let creds = Credentials::of("nobody", who.uid.as_raw(), who.gid.as_raw())
            .expect("groups of nobody");
        let ended = Spawn::new("cat")
            .arg("/proc/self/status")
            .stdout(Output::Tail(64 * 1024))
            .stderr(Output::Tail(4096))
            .as_user(Some(creds.clone()))
            .run();
        assert_eq!(ended.code(), Some(0), "{ended:?}");
        // The lines of /proc/self/status about ids and privileges, as the kernel prints
        // them (tabs between values; Groups ends with a space).
        let status = ended.stdout.lossy();
        let got: Vec<&str> = status
            .lines()
            .filter(|l| {
                ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(str::trim_end)
            .collect();
        let (u, g) = (who.uid, who.gid);
        let groups: Vec<String> = creds.groups().iter().map(u32::to_string).collect();
        let mut want = vec![
            format!("Uid:\t{u}\t{u}\t{u}\t{u}"),
            format!("Gid:\t{g}\t{g}\t{g}\t{g}"),
            format!("Groups:\t{}", groups.join(" ")),
            "NoNewPrivs:\t1".to_string(),
        ];
        want.extend(
            ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
                .iter()
                .map(|c| format!("{c}:\t0000000000000000")),
        );
        let mut got_sorted = got.clone();
        got_sorted.sort_unstable();
        want.sort_unstable();
        assert_eq!(got_sorted, want, "{status}");
    }

    #[test]
    fn a_child_that_cannot_drop_does_not_start() {
        if nix::unistd::geteuid().is_root() {
            return; // root can become anyone
        }
        let creds = Credentials {
            uid: Uid::from_raw(0),
            gid: Gid::from_raw(0),
            groups: vec![Gid::from_raw(0)],
        };
        let ended = Spawn::new("true").as_user(Some(creds)).run();
        assert!(
            matches!(ended.how, crate::process::How::FailedToStart(_)),
            "{ended:?}"
        );
    }
}
