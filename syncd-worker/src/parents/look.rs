//! The look at one ancestor of a listed path, for [`super::Screen`]: one `lstat` (and a
//! `readlink` for a symlink) of `source/rel`. The screen looks at ancestors from the
//! top and stops at the first that is not a real directory, so the kernel's walk to
//! `rel` passes only through directories this push has just seen as such.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Found;
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
