//! The daemon password file check, run before the first push so the operator gets a
//! message that names the file and the fix instead of rsync's exit 1 on every batch.
//!
//! It is rsync's own rule, no stricter (rsync 3.x `authenticate.c`, `getpassf`, the
//! client side: no "strict modes" option applies there): the file is refused when others
//! may read or write it (`st_mode & 006`; group access and the others' execute bit are
//! allowed), and, when rsync runs as root (effective uid 0), when it is not owned by
//! root. rsync `stat`s the name (a symlink is followed) and reads the password from the
//! first 511 bytes, skipping leading line breaks. A refusal names the bit and the
//! `chmod`/`chown` that fixes it. The file is read but its content never reaches a
//! message.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The others' read and write bits: rsync refuses a password file with either.
const OTHERS_RW: u32 = 0o006;
/// How much of the file rsync reads for the password.
const READ_MAX: u64 = 511;

/// `Ok` when rsync will accept `path` as its `--password-file`; otherwise one sentence
/// saying what is wrong with which file and what to run ("what; what to do").
pub fn check_password_file(path: &Path) -> Result<(), String> {
    check_as(path, effective_uid())
}

/// [`check_password_file`] for a process whose effective uid is `euid`.
fn check_as(path: &Path, euid: u32) -> Result<(), String> {
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
    if let Some(why) = mode_problem(mode) {
        return Err(format!(
            "password file {shown} has mode {mode:04o}: {why}, and rsync refuses a password file others may read or write; run `chmod o-rw {shown}` (or `chmod 600 {shown}`)"
        ));
    }
    if euid == 0 && meta.uid() != 0 {
        return Err(format!(
            "password file {shown} is owned by uid {}: rsync running as root refuses a password file not owned by root; run `chown root {shown}`",
            meta.uid()
        ));
    }
    let file = File::open(path)
        .map_err(|e| format!("password file {shown} cannot be read: {e}; check its permissions"))?;
    let mut head = Vec::new();
    file.take(READ_MAX)
        .read_to_end(&mut head)
        .map_err(|e| format!("password file {shown} cannot be read: {e}; check the file"))?;
    if head.iter().all(|b| matches!(b, b'\n' | b'\r')) {
        return Err(format!(
            "password file {shown} holds no password (it is empty or only line breaks); put the password on its first line"
        ));
    }
    Ok(())
}

/// Which of the others' bits rsync refuses is set in `mode`, in words; None when rsync
/// accepts the mode.
fn mode_problem(mode: u32) -> Option<&'static str> {
    match mode & OTHERS_RW {
        0 => None,
        0o004 => Some("others may read it (o+r)"),
        0o002 => Some("others may write it (o+w)"),
        _ => Some("others may read and write it (o+rw)"),
    }
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
    fn modes_rsync_accepts_are_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Group access and the others' execute bit: rsync checks `st_mode & 006` only.
        for mode in [0o600, 0o400, 0o640, 0o660, 0o670, 0o601, 0o4600] {
            let p = file_with(dir.path(), &format!("{mode:o}"), b"s3cret\n", mode);
            assert_eq!(check_as(&p, 0), Ok(()), "{mode:04o}");
            assert_eq!(check_as(&p, 1000), Ok(()), "{mode:04o}");
        }
        // rsync skips leading line breaks and reads no further than the first one after.
        let p = file_with(dir.path(), "lead", b"\r\n\ns3cret\nmore\n", 0o600);
        assert_eq!(check_as(&p, 0), Ok(()));
    }

    #[test]
    fn modes_rsync_refuses_name_the_bit_and_the_chmod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (0o604, "others may read it (o+r)"),
            (0o602, "others may write it (o+w)"),
            (0o644, "others may read it (o+r)"),
            (0o606, "others may read and write it (o+rw)"),
            (0o666, "others may read and write it (o+rw)"),
            (0o777, "others may read and write it (o+rw)"),
        ];
        for (mode, why) in cases {
            let p = file_with(dir.path(), &format!("{mode:o}"), b"s3cret\n", mode);
            let shown = p.display().to_string();
            for euid in [0, 1000] {
                let err = check_as(&p, euid).expect_err("must be refused");
                assert!(
                    err.contains(&format!("has mode {mode:04o}: {why},")),
                    "{err}"
                );
                assert!(
                    err.ends_with(&format!(
                        "; run `chmod o-rw {shown}` (or `chmod 600 {shown}`)"
                    )),
                    "{err}"
                );
                assert!(!err.contains("s3cret"), "{err}");
            }
        }
    }

    #[test]
    fn other_rejections_name_the_file_and_the_fix_but_not_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let cases: Vec<(std::path::PathBuf, &str)> = vec![
            (d.join("missing"), "No such file"),
            (file_with(d, "empty", b"", 0o600), "holds no password"),
            (file_with(d, "blank", b"\n\r\n", 0o600), "holds no password"),
            (d.to_path_buf(), "is a directory"),
        ];
        for (path, want) in cases {
            let err = check_as(&path, 0).expect_err("must be rejected");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(want), "{err:?} lacks {want:?}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn as_root_only_a_file_owned_by_root_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = file_with(dir.path(), "pw", b"s3cret\n", 0o600);
        let owner = fs::metadata(&p).expect("stat").uid();
        if owner == 0 {
            assert_eq!(check_as(&p, 0), Ok(()));
            // Only root can give a file away.
            std::os::unix::fs::chown(&p, Some(1), None).expect("chown as root");
        }
        let err = check_as(&p, 0).expect_err("not owned by root");
        let shown = p.display();
        let uid = if owner == 0 { 1 } else { owner };
        assert!(
            err.contains(&format!(
                "is owned by uid {uid}: rsync running as root refuses a password file not owned by root"
            )),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("; run `chown root {shown}`")),
            "{err}"
        );
        // rsync not running as root checks no owner.
        assert_eq!(check_as(&p, 1000), Ok(()));
    }
}
