//! The daemon password file check, run before the first push so the operator gets a
//! message that names the file and the fix instead of rsync's exit 1 on every batch.
//! rsync itself refuses an other-accessible file and, when run as root, one not owned by
//! root; this check is a little stricter (no group access, owned by the effective user).
//! It reads the file but never puts its content in a message.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// `Ok` when rsync will accept `path` as its `--password-file`; otherwise one sentence
/// saying what is wrong with which file and what to run.
pub fn check_password_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| {
        format!("password file {shown}: {e}; create it with the password on its first line and chmod 600 it")
    })?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "password file {shown} is {what}; it must be a regular file holding the password on its first line"
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "password file {shown} has mode {mode:04o}: rsync refuses a password file others can read; run `chmod 600 {shown}`"
        ));
    }
    let euid = effective_uid();
    if meta.uid() != euid {
        let fix = if euid == 0 {
            "root".to_string()
        } else {
            euid.to_string()
        };
        let why = if euid == 0 {
            "rsync running as root requires a password file owned by root"
        } else {
            "it must be owned by the user syncd runs as"
        };
        return Err(format!(
            "password file {shown} is owned by uid {}: {why}; run `chown {fix} {shown}`",
            meta.uid()
        ));
    }
    let file = File::open(path)
        .map_err(|e| format!("password file {shown} cannot be read: {e}; check its permissions"))?;
    let mut first = Vec::new();
    BufReader::new(file)
        .read_until(b'\n', &mut first)
        .map_err(|e| format!("password file {shown} cannot be read: {e}"))?;
    if first.iter().all(|b| matches!(b, b'\n' | b'\r')) {
        return Err(format!(
            "password file {shown} has an empty first line; put the password on the first line"
        ));
    }
    Ok(())
}

fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).expect("write test file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod test file");
        p
    }

    #[test]
    fn mode_600_with_a_password_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file_with(dir.path(), "pw", b"s3cret\n", 0o600);
        assert_eq!(check_password_file(&p), Ok(()));
        let p = file_with(dir.path(), "pw2", b"s3cret", 0o400);
        assert_eq!(check_password_file(&p), Ok(()));
    }

    #[test]
    fn rejections_name_the_file_and_the_fix_but_not_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let cases: Vec<(std::path::PathBuf, &str)> = vec![
            (file_with(d, "644", b"s3cret\n", 0o644), "chmod 600"),
            (file_with(d, "640", b"s3cret\n", 0o640), "chmod 600"),
            (d.join("missing"), "No such file"),
            (file_with(d, "empty", b"", 0o600), "empty first line"),
            (
                file_with(d, "blank", b"\ns3cret\n", 0o600),
                "empty first line",
            ),
            (d.to_path_buf(), "is a directory"),
        ];
        for (path, want) in cases {
            let err = check_password_file(&path).expect_err("must be rejected");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(want), "{err:?} lacks {want:?}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn owner_other_than_the_effective_user_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file_with(dir.path(), "pw", b"s3cret\n", 0o600);
        if effective_uid() != 0 {
            // Only root can give a file away; as a normal user our own file must pass.
            assert_eq!(check_password_file(&p), Ok(()));
            return;
        }
        std::os::unix::fs::chown(&p, Some(1), None).expect("chown as root");
        let err = check_password_file(&p).expect_err("must be rejected");
        assert!(err.contains("chown root"), "{err}");
        assert!(err.contains("uid 1"), "{err}");
    }
}
