//! The daemon's log file: whether this controller writes to it (`syncd start` points the
//! daemon's stdout and stderr at `log_file`), and reopening it after logrotate moved it
//! away (`syncd reopen-logs`, [`syncd_worker::contract::REOPEN_LOGS`]).
//!
//! The controller, root, opens the file — the worker may run as `user` and not be
//! allowed to — and puts it in place of its own stdout and stderr (`dup2`: each line goes
//! wholly to the old file or the new one, nothing is lost); the supervisor then hands it
//! to the worker ([`syncd_worker::log_channel`]). When logrotate's `create` has not
//! made the new file, it is created with the owner and mode of the one being left. The
//! path is opened with `O_NOFOLLOW`: a symlink planted in the log directory is refused.
//! Under systemd stderr is the journal and there is nothing to reopen.

use std::fs::{File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{fchown, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::stat::{fstat, stat, FileStat, SFlag};

/// The log file this controller writes to, named by its configured path.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
}

/// What a reopen did.
#[derive(Debug)]
pub enum Reopened {
    /// The path still names the file written to: nothing changed.
    Unchanged,
    /// Stdout and stderr are now this file (`created`: by us, not by logrotate).
    New { file: File, created: bool },
}

impl LogFile {
    /// Some when stderr is the regular file `path` names now (the daemon `syncd start`
    /// launched); None when it is the journal, a terminal, a pipe or another file.
    pub fn of_stderr(path: &Path) -> Option<LogFile> {
        let ours = fstat(std::io::stderr()).ok()?;
        let named = stat(path).ok()?;
        (is_regular(&ours) && same_file(&ours, &named)).then(|| LogFile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the path again and make it stdout and stderr, unless it still names the file
    /// written to. A failure leaves stdout and stderr as they were.
    pub fn reopen(&self) -> anyhow::Result<Reopened> {
        let old = fstat(std::io::stderr()).context("cannot look at the current log (stderr)")?;
        if stat(&self.path).is_ok_and(|now| same_file(&old, &now)) {
            return Ok(Reopened::Unchanged);
        }
        let (file, created) = open_or_create(&self.path, &old)?;
        nix::unistd::dup2_stdout(&file)
            .and_then(|()| nix::unistd::dup2_stderr(&file))
            .with_context(|| format!("cannot switch to {}", self.path.display()))?;
        Ok(Reopened::New { file, created })
    }
}

fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

fn same_file(a: &FileStat, b: &FileStat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// The file at `path` opened for appending; created like `like` (owner, mode) when
/// missing. Whether it was created here.
fn open_or_create(path: &Path, like: &FileStat) -> anyhow::Result<(File, bool)> {
    let open = |create: bool| {
        let mut o = OpenOptions::new();
        o.append(true).custom_flags(nofollow());
        if create {
            o.create_new(true).mode(like.st_mode & 0o7777);
        }
        o.open(path)
    };
    let fail = |e: std::io::Error| {
        anyhow::Error::new(e).context(format!(
            "cannot open the log file {} again (its directory must exist and not be a symlink's target); the daemon keeps writing to the moved file",
            path.display()
        ))
    };
    match open(false) {
        Ok(f) => return Ok((f, false)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let file = match open(true) {
        Ok(f) => f,
        // logrotate's `create` made it in between.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return open(false).map(|f| (f, false)).map_err(fail)
        }
        Err(e) => return Err(fail(e)),
    };
    // The umask may have narrowed the mode; an owner other than ours is given back.
    file.set_permissions(Permissions::from_mode(like.st_mode & 0o7777))
        .and_then(|()| fchown(&file, Some(like.st_uid), Some(like.st_gid)))
        .with_context(|| {
            format!(
                "created {} but cannot give it the old log's mode {:o} and owner {}:{}",
                path.display(),
                like.st_mode & 0o7777,
                like.st_uid,
                like.st_gid
            )
        })?;
    Ok((file, true))
}

/// `O_NOFOLLOW`, from nix's flag set (std has no name for it).
fn nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn like(mode: u32, uid: u32, gid: u32) -> FileStat {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("old");
        std::fs::write(&f, b"").expect("write");
        let mut st = stat(&f).expect("stat");
        st.st_mode = (st.st_mode & !0o7777) | mode;
        st.st_uid = uid;
        st.st_gid = gid;
        st
    }

    #[test]
    fn a_missing_file_is_created_like_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("syncd.log");
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        // Root may give the file away; anyone else can give it only to themselves.
        let owner = if me.0 == 0 { (1, 4) } else { me };
        let (_, created) = open_or_create(&path, &like(0o640, owner.0, owner.1)).expect("open");
        assert!(created);
        let m = std::fs::metadata(&path).expect("metadata");
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (owner.0, owner.1, 0o640)
        );
    }

    #[test]
    fn an_existing_file_is_appended_to_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("syncd.log");
        std::fs::write(&path, b"made by logrotate\n").expect("write");
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).expect("chmod");
        let (mut f, created) = open_or_create(&path, &like(0o644, 0, 0)).expect("open");
        assert!(!created);
        std::io::Write::write_all(&mut f, b"ours\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "made by logrotate\nours\n"
        );
        let m = std::fs::metadata(&path).expect("metadata");
        assert_eq!(m.mode() & 0o7777, 0o600, "left as logrotate made it");
    }

    #[test]
    fn a_symlink_at_the_path_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"not a log").expect("write");
        let path = dir.path().join("syncd.log");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let err = open_or_create(&path, &like(0o644, 0, 0)).expect_err("refused");
        assert!(format!("{err:#}").contains("syncd.log"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "not a log");
    }
}
