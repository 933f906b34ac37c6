//! The one way syncd replaces a file it owns ([`replace`], and [`replace_json`] for the
//! JSON ones) and sets a damaged one aside ([`set_aside`]). Every state file (fail logs,
//! `catchup.json`, `sources.json`, `controller.json`, the pidfile,
//! `/etc/sysctl.d/90-syncd.conf`) and the status report go through it, so a reader — or
//! the next start after a power cut — sees the old file or the new one, never half of one.
//!
//! Steps: create a temp file in the destination's directory with an unpredictable name
//! (`.<name>.<16 hex digits>.tmp`), opened `O_CREAT|O_EXCL|O_NOFOLLOW` so a planted file
//! or symlink of that name is refused rather than written through; set the caller's mode
//! exactly (umask does not narrow it); write; fsync the file; rename it over the
//! destination; fsync the directory so the rename itself survives a power cut. On any
//! error before the rename the temp file is removed.
//!
//! [`Flush::Durable`] does all of that. [`Flush::Atomic`] skips the two fsyncs: it is for
//! the status file, a report rewritten up to five times a second, which no start ever
//! trusts as state (the next worker rewrites it within 200 ms; a lost or empty one after
//! a power cut only means `syncd status` has nothing to show until then), so paying two
//! fsyncs per rewrite would buy nothing. It still gets the exclusive temp and the cleanup.
//!
//! A directory fsync that the file system does not support (`EINVAL`, `EOPNOTSUPP`) is
//! not an error: there is nothing more to do there. A temp file left by a writer killed
//! before its rename is removed by the file's next writer ([`remove_leftover_temps`]).
//! Must not: follow a symlink for the temp file, leave a temp file behind on an error it
//! can see, or create directories (callers decide where their files may go).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether [`replace`] waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// fsync the file and its directory: for state a start relies on.
    Durable,
    /// Atomic for readers, not flushed: for reports rewritten often (the status file).
    Atomic,
}

/// What failed, on which path. [`Error::io`] gives the OS error to branch on.
#[derive(Debug)]
pub struct Error {
    step: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl Error {
    /// The underlying OS error (e.g. to tell "permission denied" from other failures).
    pub fn io(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.step,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<Error> for io::Error {
    /// An `io::Error` of the same kind whose message names the step and the path; the OS
    /// code stays reachable through [`Error::of`].
    fn from(e: Error) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

impl Error {
    /// The [`Error`] inside an `io::Error` made by `From<Error>`, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&Error> {
        e.get_ref()?.downcast_ref::<Error>()
    }
}

/// Tries at a fresh temp name when one is taken (only by a planted or leftover file).
const NAME_TRIES: u32 = 4;

/// Replace `path` with `data` (mode `mode`), atomically; with [`Flush::Durable`], also
/// durably. See the module doc for the steps.
pub fn replace(path: &Path, data: &[u8], mode: u32, flush: Flush) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| Error {
        step: "replace",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
    })?;
    let (tmp, file) = create_temp(dir, &name.to_string_lossy(), mode)?;
    let written = write_and_rename(file, &tmp, path, data, mode, flush);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if flush == Flush::Durable {
        sync_dir(dir).map_err(|source| Error {
            step: "fsync the directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Encode `value` as pretty-printed JSON and [`replace`] `path` with it: the write of
/// every JSON file syncd keeps (the status report, `catchup.json`, `sources.json`,
/// `controller.json`). Callers add what the file is and what to do to the error.
pub fn replace_json<T: serde::Serialize + ?Sized>(
    path: &Path,
    value: &T,
    mode: u32,
    flush: Flush,
) -> anyhow::Result<()> {
    let data = serde_json::to_vec_pretty(value)
        .map_err(|e| anyhow::anyhow!("cannot encode {} as JSON: {e}", path.display()))?;
    replace(path, &data, mode, flush)?;
    Ok(())
}

/// Rename a damaged state file to `<name>.corrupt-<unix seconds>` beside it (`-2`, `-3`…
/// appended if that exists), so the operator can look at it and the next write starts
/// afresh. Returns the new path. The caller says what syncd does about the loss.
pub fn set_aside(path: &Path) -> Result<PathBuf, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{secs}"));
    let base = PathBuf::from(name);
    let mut aside = base.clone();
    let mut n = 1;
    while fs::symlink_metadata(&aside).is_ok() {
        n += 1;
        let mut s = base.as_os_str().to_owned();
        s.push(format!("-{n}"));
        aside = PathBuf::from(s);
    }
    fs::rename(path, &aside).map_err(|source| Error {
        step: "move aside",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(aside)
}

/// Remove the temp files that writes of `path` killed between creating and renaming them
/// (SIGKILL, OOM, power cut) left beside it: `.<name>.<16 hex digits>.tmp`, regular files
/// only. No start reads them, but each interrupted write would leave one more (as big as
/// the file: a fail log can be megabytes). Only for the file's one writer, before it
/// writes (it holds the state directory's lock): a write in progress would lose its temp
/// file. Returns the names removed; a failure to list or remove is logged and skipped
/// (housekeeping is never a reason not to start).
pub fn remove_leftover_temps(path: &Path) -> Vec<String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::warn!(
                "cannot list {} for temp files of interrupted writes: {e}",
                dir.display()
            );
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let is_temp = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_temp || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed.push(file.to_string()),
            Err(e) => log::warn!(
                "cannot remove {} (left by an interrupted write): {e}",
                entry.path().display()
            ),
        }
    }
    if !removed.is_empty() {
        log::info!(
            "removed {} temp file{} of {} left by an interrupted write",
            removed.len(),
            if removed.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    removed
}

/// A new temp file beside the destination, created exclusively, never through a symlink.
fn create_temp(dir: &Path, name: &str, mode: u32) -> Result<(PathBuf, File), Error> {
    let mut last = None;
    for _ in 0..NAME_TRIES {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", random_u64()));
        match open_exclusive(&tmp, mode) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(source) => {
                return Err(Error {
                    step: "create the temp file",
                    path: tmp,
                    source,
                })
            }
        }
    }
    let (path, source) = last.expect("NAME_TRIES > 0, so at least one try failed");
    Err(Error {
        step: "create the temp file (every name tried exists)",
        path,
        source,
    })
}

/// `O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`: fails on anything already there,
/// a symlink included (dangling or not).
fn open_exclusive(tmp: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
}

fn write_and_rename(
    mut file: File,
    tmp: &Path,
    path: &Path,
    data: &[u8],
    mode: u32,
    flush: Flush,
) -> Result<(), Error> {
    let err = |step| {
        let p = tmp.to_path_buf();
        move |source| Error {
            step,
            path: p,
            source,
        }
    };
    // Exactly the caller's mode: `open` applied the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err("set the mode of"))?;
    file.write_all(data).map_err(err("write"))?;
    if flush == Flush::Durable {
        file.sync_all().map_err(err("fsync"))?;
    }
    drop(file);
    fs::rename(tmp, path).map_err(|source| Error {
        step: "rename the temp file over",
        path: path.to_path_buf(),
        source,
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => Ok(()),
        r => r,
    }
}

/// 64 bits another user cannot guess: std seeds `RandomState` from the OS's random
/// source (once per thread, then varied per call), and SipHash over the clock makes
/// successive names differ.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn content_and_exact_mode_right_after_write() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        for flush in [Flush::Durable, Flush::Atomic] {
            replace(&p, b"one", 0o600, flush).unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"one");
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
                0o600
            );
            replace(&p, b"two, longer", 0o644, flush).unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"two, longer");
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
                0o644
            );
            assert_eq!(entries(d.path()), vec!["state.json"], "no temp left");
        }
    }

    #[test]
    fn json_is_written_pretty_and_errors_keep_their_os_code() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        replace_json(&p, &serde_json::json!({"a": [1, 2]}), 0o640, Flush::Durable).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, serde_json::json!({"a": [1, 2]}));
        assert!(fs::read_to_string(&p).unwrap().contains('\n'), "pretty");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        // Into io::Error: same kind, message with the path, OS code behind Error::of.
        let missing = d.path().join("no/such/dir/f");
        let e: io::Error = replace(&missing, b"x", 0o644, Flush::Atomic)
            .unwrap_err()
            .into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        let inner = Error::of(&e).expect("a durable::Error inside");
        assert_eq!(inner.io().raw_os_error(), Some(libc::ENOENT));
        assert!(Error::of(&io::Error::other("x")).is_none());
    }

    #[test]
    fn set_aside_keeps_every_damaged_copy() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("catchup.json");
        fs::write(&p, "one").unwrap();
        let a = set_aside(&p).unwrap();
        fs::write(&p, "two").unwrap();
        let b = set_aside(&p).unwrap();
        assert_ne!(a, b);
        assert!(!p.exists());
        let a_name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(a_name.starts_with("catchup.json.corrupt-"), "{a_name}");
        assert_eq!(fs::read(&a).unwrap(), b"one");
        assert_eq!(fs::read(&b).unwrap(), b"two");
        assert!(set_aside(&p).is_err(), "nothing left to move");
    }

    #[test]
    fn leftover_temps_of_the_file_are_removed_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.faillog");
        replace(&p, b"kept", 0o600, Flush::Durable).unwrap();
        for name in [
            ".x.faillog.0123456789abcdef.tmp", // left by a killed write: removed
            ".x.faillog.0123456789abcde.tmp",  // 15 digits: not ours
            ".x.faillog.0123456789abcdeg.tmp", // not hex
            ".y.faillog.0123456789abcdef.tmp", // another file's
            "x.faillog.0123456789abcdef.tmp",  // no leading dot
        ] {
            fs::write(d.path().join(name), b"partial").unwrap();
        }
        fs::create_dir(d.path().join(".x.faillog.fedcba9876543210.tmp")).unwrap();
        let removed = remove_leftover_temps(&p);
        assert_eq!(removed, vec![".x.faillog.0123456789abcdef.tmp".to_string()]);
        assert_eq!(
            entries(d.path()),
            vec![
                ".x.faillog.0123456789abcde.tmp",
                ".x.faillog.0123456789abcdeg.tmp",
                ".x.faillog.fedcba9876543210.tmp",
                ".y.faillog.0123456789abcdef.tmp",
                "x.faillog",
                "x.faillog.0123456789abcdef.tmp",
            ]
        );
        assert_eq!(fs::read(&p).unwrap(), b"kept");
        assert!(remove_leftover_temps(&d.path().join("missing/none")).is_empty());
    }

    #[test]
    fn temp_names_are_unpredictable() {
        let a: Vec<u64> = (0..100).map(|_| random_u64()).collect();
        let mut b = a.clone();
        b.sort();
        b.dedup();
        assert_eq!(a.len(), b.len(), "100 names, all different");
    }

    #[test]
    fn temp_is_removed_when_rename_fails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("target");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), "x").unwrap(); // a non-empty directory: rename fails
        let e = replace(&p, b"data", 0o644, Flush::Durable).unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert_eq!(entries(d.path()), vec!["target"], "temp removed");
    }

    #[test]
    fn read_only_directory_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let ro = d.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let p = ro.join("f");
        let r = replace(&p, b"data", 0o644, Flush::Durable);
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
        if is_root() {
            return; // root writes anyway; the rename test covers cleanup
        }
        let e = r.unwrap_err();
        assert_eq!(e.io().kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("temp file"), "{e}");
        assert!(entries(&ro).is_empty(), "nothing left: {:?}", entries(&ro));
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn planted_symlink_or_file_at_the_temp_name_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let (tmp, f) = create_temp(d.path(), "state", 0o600).unwrap();
        drop(f);
        fs::remove_file(&tmp).unwrap();
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        // Opening that very name again, as `create_temp` does, is refused.
        let opened = open_exclusive(&tmp, 0o600);
        assert_eq!(opened.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        // A dangling symlink too (O_CREAT alone would create its target).
        let gone = d.path().join("gone");
        let tmp2 = d.path().join(".state.dangling.tmp");
        std::os::unix::fs::symlink(&gone, &tmp2).unwrap();
        assert_eq!(
            open_exclusive(&tmp2, 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(!gone.exists(), "nothing created through the link");
        assert_eq!(fs::read(&victim).unwrap(), b"keep", "not written through");
        // A plain file there is refused the same way.
        fs::remove_file(&tmp).unwrap();
        fs::write(&tmp, "planted").unwrap();
        let opened = open_exclusive(&tmp, 0o600);
        assert_eq!(opened.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&tmp).unwrap(), b"planted");
    }

    #[test]
    fn destination_symlink_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let p = d.path().join("state");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        replace(&p, b"new", 0o600, Flush::Durable).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_file());
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }
}
