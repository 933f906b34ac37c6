//! The look at one ancestor of a listed path, for [`super::Screen`]: one `lstat` (and a
//! `readlink` for a symlink) of `source/rel`; and [`recheck`], the last look at a run's
//! listed paths before its rsync starts. The screen looks at ancestors from the
//! top and stops at the first that is not a real directory, so the kernel's walk to
//! `rel` passes only through directories this push has just seen as such.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Found, Screen};
use crate::rsync::args::Listed;
use crate::walk::abs;

/// What `rel` (relative to `source`) is now, without following it.
pub fn look(source: &Path, rel: &[u8]) -> Found {
    let path = abs(source, rel);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Found::Dir,
        Ok(meta) if meta.is_symlink() => Found::Symlink(
            std::fs::read_link(&path)
                .map(|to| to.as_os_str().as_bytes().to_vec())
                .unwrap_or_else(|e| format!("(unreadable: {e})").into_bytes()),
        ),
        // A file, nothing, or unreadable: rsync deletes or reports what is listed
        // below it, as it always did; it cannot follow it.
        _ => Found::Other,
    }
}

/// Why a run listing `listed` must not start now: a directory on the way to one of its
/// paths became a symlink since the push screened them (the push is retried, and its
/// next screen leaves those paths out). None when every parent is still a directory.
pub fn recheck(listed: &Listed) -> Option<String> {
    let mut screen = Screen::new(|rel: &[u8]| look(&listed.source, rel));
    let (_, below) = screen.split(&listed.paths);
    let first = below.first()?;
    Some(format!(
        "{} became a symlink (to {}) after the push was planned, above {} listed path{}; the push is planned again",
        String::from_utf8_lossy(&first.link),
        String::from_utf8_lossy(&first.points_to),
        below.len(),
        if below.len() == 1 { "" } else { "s" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_tree_says_what_each_entry_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = dir.path();
        std::fs::create_dir_all(s.join("a/b")).expect("mkdir");
        std::fs::write(s.join("a/f"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc", s.join("a/l")).expect("symlink");
        std::os::unix::fs::symlink("b", s.join("a/rel")).expect("symlink");
        let rows: &[(&str, Found)] = &[
            ("a", Found::Dir),
            ("a/b", Found::Dir),
            ("a/f", Found::Other),
            ("a/l", Found::Symlink(b"/etc".to_vec())),
            ("a/rel", Found::Symlink(b"b".to_vec())),
            ("missing", Found::Other),
        ];
        for (rel, want) in rows {
            assert_eq!(look(s, rel.as_bytes()), *want, "{rel}");
        }
    }
}
