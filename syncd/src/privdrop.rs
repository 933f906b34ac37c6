//! Running the worker as `user` (the config's [`RunAs`]): everything the controller, still
//! root, does so that the worker can work without root, and nothing else. The controller
//! keeps what needs root (sysctls, pidfile, lock, log file: the worker writes its log
//! lines to the descriptor it inherits); this module
//!
//! * resolves the account's groups before any fork ([`Credentials::of`]) — the drop
//!   itself (groups, gid, uid, no capabilities, `no_new_privs`) happens in the child,
//!   in the process runner;
//! * gives the state directory to the user: the directory and everything in it,
//!   walked through descriptors (each entry pinned with `openat(O_PATH|O_NOFOLLOW)` and
//!   chowned through it), so a symlink planted in it is chowned itself, never what it
//!   points to, and a file with other hard links is left alone; only `controller.json`
//!   stays root's;
//! * hands the worker private copies of the password files in `<state_dir>/secrets`
//!   (the user's, 0700; each copy the user's, 0600), written at start and at every
//!   reload, removed at stop. Why a copy and not a descriptor: rsync opens
//!   `--password-file` by name and checks the file it names — not other-accessible,
//!   and owned by root when rsync runs as root (authenticate.c, `getpassf`) — and a
//!   `/proc/self/fd/N` name of an inherited root-only file is opened again with the
//!   caller's permissions, which the user does not have; every push runs a new rsync
//!   that reads the file again, which a pipe cannot serve. A copy owned by the user
//!   with mode 0600 is what rsync accepts from a non-root user, the secret never
//!   appears in an argv or environment (`RSYNC_PASSWORD` is not used), and the
//!   directory is written through descriptors too (a temp file created with
//!   `O_EXCL|O_NOFOLLOW`, renamed into place), so the user cannot turn a write by root
//!   into one elsewhere.
//!
//! Must not: follow a symlink inside the state directory, or put a password's bytes
//! anywhere but the copy.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode};
use nix::unistd::{fchown, fchownat, unlinkat, Gid, Uid, UnlinkatFlags};
use syncd_worker::config::{Config, RunAs, TargetKind};
use syncd_worker::contract;
use syncd_worker::process::{Credentials, Spawn};
use syncd_worker::rsync::check_password_file;
use syncd_worker::state_dir::StateDir;

/// How deep the state directory's tree is walked (it is two levels deep: `faillog/`).
const MAX_DEPTH: usize = 8;
/// The largest password file copied (rsync reads at most 511 bytes of it).
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

/// The worker runs as `user`: its credentials and its private password copies.
#[derive(Debug)]
pub struct Unprivileged {
    run_as: RunAs,
    creds: Credentials,
    state: StateDir,
}

/// What the worker runs as under `config`: None when `user` is not set (or is the
/// account the controller already runs as). Makes the state directory the user's and
/// writes the password copies; an error says what to do.
pub fn prepare(config: &Config, state_dir: &Path) -> anyhow::Result<Option<Unprivileged>> {
    let Some(run_as) = config.daemon.run_as.clone() else {
        // Copies a run as `user` left (a controller killed before its stop): not needed
        // by a worker that reads the files itself, so not kept.
        if clear_copies(state_dir) {
            log::info!(
                "removed the password copies a run as another user left in {}",
                state_dir.join(contract::SECRETS_DIR).display()
            );
        }
        return Ok(None);
    };
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        if euid.as_raw() == run_as.uid {
            return Ok(None);
        }
        bail!(
            "{}: user = {:?}: only root can start the worker as another user; run syncd as root, or remove `user`",
            config.path.display(),
            run_as.user
        );
    }
    let creds = Credentials::of(&run_as.user, run_as.uid, run_as.gid)
        .with_context(|| format!("cannot look up the groups of user {:?}", run_as.user))?;
    let state = StateDir::at(state_dir);
    give_state_dir(state.path(), &run_as)?;
    let u = Unprivileged {
        run_as,
        creds,
        state,
    };
    u.write_copies(config)?;
    log::info!(
        "the worker runs as user {} (uid {}), group {} (gid {}), with no capabilities",
        u.run_as.user,
        u.run_as.uid,
        u.run_as.group,
        u.run_as.gid
    );
    Ok(Some(u))
}

/// Why a reload from `old` to `new` cannot happen here: a change of `user` or `group`
/// needs a new worker (a running process cannot take its root back).
pub fn reload_refusal(old: &Config, new: &Config) -> Option<String> {
    let who = |c: &Config| match &c.daemon.run_as {
        Some(r) => format!("user {} group {}", r.user, r.group),
        None => "root".to_string(),
    };
    (old.daemon.run_as != new.daemon.run_as).then(|| {
        format!(
            "the worker runs as {}, and the config now says {}: that takes a restart (`syncd restart`)",
            who(old),
            who(new)
        )
    })
}

/// Why `syncd reload` refuses `new` for a controller running with the ids `controller`
/// whose worker runs with the ids `running` (uid, gid): the same rule as
/// [`reload_refusal`], seen from outside, so the command says so and fails instead of
/// leaving it to the controller's log. Without `user` the worker has the controller's ids.
pub fn refusal_for_running(
    running: (u32, u32),
    controller: (u32, u32),
    new: &Config,
) -> Option<String> {
    let wanted = new
        .daemon
        .run_as
        .as_ref()
        .map_or(controller, |r| (r.uid, r.gid));
    (running != wanted).then(|| {
        let said = match &new.daemon.run_as {
            Some(r) => format!("user {} group {} ({}:{})", r.user, r.group, r.uid, r.gid),
            None => "no `user` (the controller's own)".to_string(),
        };
        format!(
            "the worker runs as uid {} gid {}, and the config now says {said}: that takes a restart (`syncd restart`)",
            running.0, running.1
        )
    })
}

/// The worker's spawn, as `u`'s user when there is one: in `/` (the controller's own
/// directory may be closed to the user), with the user's `HOME`, `USER` and `LOGNAME`
/// (hooks and ssh look there, not in root's), dropping root before exec.
pub fn as_user(spawn: Spawn, u: Option<&Unprivileged>) -> Spawn {
    match u {
        Some(u) => spawn
            .current_dir("/")
            .env("HOME", &u.run_as.home)
            .env("USER", &u.run_as.user)
            .env("LOGNAME", &u.run_as.user)
            .as_user(Some(u.creds.clone())),
        None => spawn,
    }
}

/// What to say when the worker at `bin` could not be started (as `u`'s user, if any).
pub fn start_failure(bin: &Path, u: Option<&Unprivileged>) -> String {
    match u {
        None => format!(
            "failed to start the worker {}; install syncd-worker beside syncd or pass --worker PATH",
            bin.display()
        ),
        Some(u) => format!(
            "failed to start the worker {} as user {}: syncd must run as root with CAP_SETUID, \
             CAP_SETGID and CAP_SETPCAP (a unit's CapabilityBoundingSet= must keep them), and \
             the user must be able to run the worker (install syncd-worker beside syncd or pass \
             --worker PATH)",
            bin.display(),
            u.run_as.user
        ),
    }
}

impl Unprivileged {
    /// The worker's `--password-dir`.
    pub fn password_dir(&self) -> PathBuf {
        self.state.secrets_dir()
    }

    /// Make the copies of `config`'s password files (and only those): at start and at a
    /// reload, before the worker reads the config. Only files rsync would take from
    /// root are copied (`check_password_file` as root); the worker reads any other as it
    /// is and reports it by its own name.
    pub fn write_copies(&self, config: &Config) -> anyhow::Result<()> {
        let files: BTreeSet<&Path> = config
            .syncs
            .iter()
            .flat_map(|j| &j.targets)
            .filter_map(|t| match &t.kind {
                TargetKind::Daemon {
                    password_file: Some(p),
                    ..
                } => Some(p.as_path()),
                _ => None,
            })
            .collect();
        let dir = self.secrets_dir_fd()?;
        let shown = self.password_dir();
        let mut wanted = BTreeSet::new();
        for file in files {
            // Not a root-only file rsync would take: the worker uses it as it is (one
            // the user owns works so), and reports it by its own name if it cannot.
            if let Err(why) = check_password_file(file) {
                log::info!(
                    "no private copy for user {}: {why}; the worker reads the file itself",
                    self.run_as.user
                );
                continue;
            }
            let name = OsString::from(contract::password_copy_name(file));
            self.write_copy(dir.as_fd(), file, &name).with_context(|| {
                format!(
                    "cannot give user {} a copy of the password file {} in {}",
                    self.run_as.user,
                    file.display(),
                    shown.display()
                )
            })?;
            wanted.insert(name);
        }
        for name in entries(&dir)? {
            if !wanted.contains(&name) {
                let _ = unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
        Ok(())
    }

    /// At stop: the copies and their directory go.
    pub fn remove_copies(&self) {
        clear_copies(self.state.path());
    }

    /// `<state_dir>/secrets`, opened without following a symlink, created (0700, the
    /// user's) when missing; anything else found under that name is removed first.
    fn secrets_dir_fd(&self) -> anyhow::Result<OwnedFd> {
        let state = self.state.path();
        let parent = open_dir(state)
            .with_context(|| format!("cannot open the state directory {}", state.display()))?;
        let name = OsStr::new(contract::SECRETS_DIR);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let shown = self.password_dir();
        for _ in 0..3 {
            match openat(parent.as_fd(), name, flags, Mode::empty()) {
                Ok(fd) => {
                    fchown(fd.as_fd(), Some(self.uid()), Some(self.gid()))?;
                    fchmod(fd.as_fd(), Mode::from_bits_truncate(0o700))?;
                    return Ok(fd);
                }
                Err(Errno::ENOENT) => {
                    match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot create {}", shown.display()))
                        }
                    }
                }
                // A symlink or a file in its place (the user owns the state directory).
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir).with_context(
                        || {
                            format!(
                                "cannot remove {}, which is not a directory",
                                shown.display()
                            )
                        },
                    )?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot open {}", shown.display()))
                }
            }
        }
        bail!(
            "{} keeps changing under syncd; is another process writing there?",
            shown.display()
        )
    }

    fn write_copy(&self, dir: BorrowedFd, file: &Path, name: &OsStr) -> anyhow::Result<()> {
        let mut secret = Vec::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_PASSWORD_FILE).read_to_end(&mut secret))
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(".tmp");
        match unlinkat(dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = openat(
            dir,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(0o600))?;
        fchown(fd.as_fd(), Some(self.uid()), Some(self.gid()))?;
        let mut out = std::fs::File::from(fd);
        std::io::Write::write_all(&mut out, &secret)?;
        secret.fill(0);
        drop(out);
        renameat(dir, tmp.as_os_str(), dir, name)?;
        Ok(())
    }

    fn uid(&self) -> Uid {
        Uid::from_raw(self.run_as.uid)
    }

    fn gid(&self) -> Gid {
        Gid::from_raw(self.run_as.gid)
    }
}

/// Open a directory the operator named (following symlinks in `path` itself).
/// Remove `<state_dir>/secrets` and the copies in it, never following a symlink (a
/// symlink or file in its place is left to [`Unprivileged::secrets_dir_fd`]). True when
/// there was a directory to remove.
fn clear_copies(state_dir: &Path) -> bool {
    let Ok(parent) = open_dir(state_dir) else {
        return false;
    };
    let name = OsStr::new(contract::SECRETS_DIR);
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(fd) = openat(parent.as_fd(), name, flags, Mode::empty()) else {
        return false;
    };
    for entry in entries(&fd).unwrap_or_default() {
        let _ = unlinkat(fd.as_fd(), entry.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    if let Err(e) = unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir) {
        log::warn!(
            "cannot remove {}: {e}",
            state_dir.join(contract::SECRETS_DIR).display()
        );
    }
    true
}

fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The names in the directory open at `fd`, without `.` and `..` (read once: the
/// duplicate read through shares `fd`'s position).
fn entries(fd: &OwnedFd) -> anyhow::Result<Vec<OsString>> {
    let mut dir = Dir::from_fd(fd.try_clone()?)?;
    let mut names = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Give the state directory (created by the caller) and everything in it to the user,
/// except the controller's own file.
fn give_state_dir(path: &Path, run_as: &RunAs) -> anyhow::Result<()> {
    let fd = open_dir(path)
        .with_context(|| format!("cannot open the state directory {}", path.display()))?;
    let (uid, gid) = (Uid::from_raw(run_as.uid), Gid::from_raw(run_as.gid));
    fchown(fd.as_fd(), Some(uid), Some(gid)).with_context(|| {
        format!(
            "cannot give the state directory {} to user {}",
            path.display(),
            run_as.user
        )
    })?;
    give_tree(fd, path, uid, gid, 0).with_context(|| {
        format!(
            "cannot give the files in {} to user {}",
            path.display(),
            run_as.user
        )
    })
}

/// chown every entry below the directory open at `fd` that is not the user's yet. Each
/// entry is pinned first (`O_PATH|O_NOFOLLOW`) and chowned through that descriptor, so
/// the entry looked at is the one chowned: a symlink is chowned itself, never its
/// target; a file with other hard links (one the user could have linked in from
/// elsewhere) is left alone and named. Subdirectories are entered the same way.
fn give_tree(fd: OwnedFd, path: &Path, uid: Uid, gid: Gid, depth: usize) -> anyhow::Result<()> {
    let mut dir = Dir::from_fd(fd)?;
    let raw = dir.as_fd().try_clone_to_owned()?;
    let mut subdirs = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let name = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        if name == "." || name == ".." || (depth == 0 && name == contract::CONTROLLER_FILE) {
            continue;
        }
        let shown = || path.join(&name).display().to_string();
        let pinned = match openat(
            raw.as_fd(),
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).with_context(shown),
        };
        let st = fstat(pinned.as_fd()).with_context(shown)?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if !is_dir && st.st_nlink > 1 {
            log::warn!(
                "{} has {} hard links: not giving it to the worker's user (remove it if it is not syncd's)",
                shown(),
                st.st_nlink
            );
            continue;
        }
        if (st.st_uid, st.st_gid) != (uid.as_raw(), gid.as_raw()) {
            fchownat(
                pinned.as_fd(),
                "",
                Some(uid),
                Some(gid),
                AtFlags::AT_EMPTY_PATH,
            )
            .with_context(shown)?;
        }
        if is_dir {
            subdirs.push(name);
        }
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for name in subdirs {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(raw.as_fd(), name.as_os_str(), flags, Mode::empty()) {
            Ok(sub) => give_tree(sub, &path.join(&name), uid, gid, depth + 1)?,
            // Replaced or gone since it was looked at.
            Err(Errno::ENOTDIR | Errno::ELOOP | Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| path.join(&name).display().to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncd_worker::config::DaemonSettings;

    fn config(run_as: Option<RunAs>) -> Config {
        Config {
            path: "/etc/syncd/syncd.toml".into(),
            state_dir: "/var/lib/syncd".into(),
            status_file: "/var/lib/syncd/status.json".into(),
            metrics_file: None,
            syncs: Vec::new(),
            daemon: DaemonSettings {
                run_as,
                ..DaemonSettings::default()
            },
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_run_without_user_removes_the_copies_a_killed_run_left() {
        let state = tempfile::tempdir().unwrap();
        let secrets = state.path().join(contract::SECRETS_DIR);
        std::fs::create_dir(&secrets).unwrap();
        std::fs::write(secrets.join("rsync.password.0123"), "s3cret\n").unwrap();
        assert!(prepare(&config(None), state.path()).unwrap().is_none());
        assert!(!secrets.exists(), "the copies stayed");

        // A symlink in its place is not followed (nothing behind it is removed).
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &secrets).unwrap();
        assert!(prepare(&config(None), state.path()).unwrap().is_none());
        assert!(elsewhere.path().join("keep").exists());
    }

    #[test]
    fn reload_compares_the_running_workers_ids_with_the_new_config() {
        let syncd = Some(RunAs {
            user: "syncd".into(),
            uid: 990,
            group: "syncd".into(),
            gid: 991,
            home: "/var/lib/syncd".into(),
        });
        let root = (0, 0);
        // (worker's ids, controller's ids, the new config's user, refused?)
        let cases = [
            ((0, 0), root, None, false),
            ((990, 991), root, syncd.clone(), false),
            ((990, 991), root, None, true),
            ((0, 0), root, syncd.clone(), true),
            ((990, 0), root, syncd.clone(), true),
            // A controller run by a user without `user`: its worker has its ids.
            ((1000, 1000), (1000, 1000), None, false),
        ];
        for (worker, controller, run_as, refused) in cases {
            let got = refusal_for_running(worker, controller, &config(run_as.clone()));
            assert_eq!(got.is_some(), refused, "{worker:?} {run_as:?}: {got:?}");
            if let Some(why) = got {
                assert!(why.contains("syncd restart"), "{why}");
            }
        }
    }

    #[test]
    fn a_reload_that_changes_the_account_is_refused() {
        let syncd = |gid: u32, group: &str| {
            Some(RunAs {
                user: "syncd".into(),
                uid: 990,
                group: group.into(),
                gid,
                home: "/var/lib/syncd".into(),
            })
        };
        let cases = [
            (None, None, None),
            (syncd(990, "syncd"), syncd(990, "syncd"), None),
            (
                None,
                syncd(990, "syncd"),
                Some("runs as root, and the config now says user syncd group syncd"),
            ),
            (
                syncd(990, "syncd"),
                None,
                Some("runs as user syncd group syncd, and the config now says root"),
            ),
            (
                syncd(990, "syncd"),
                syncd(4, "adm"),
                Some("now says user syncd group adm"),
            ),
        ];
        for (old, new, want) in cases {
            let got = reload_refusal(&config(old.clone()), &config(new.clone()));
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => {
                    assert!(g.contains(w) && g.contains("syncd restart"), "{g}")
                }
                (g, w) => panic!("{old:?} -> {new:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
