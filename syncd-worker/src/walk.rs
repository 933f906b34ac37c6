//! Local directory walks that never follow symlinks: finding the concrete excluded paths
//! under the directories a push recurses into (so rsync can be told to leave exactly those
//! alone), and counting directories (`syncd check`) with the same walk the watches are
//! added with ([`dirs`]; the worker counts what it misses for lack of watches with its
//! watch walk itself). Entries that vanish while being walked are skipped: a concurrent delete is
//! normal, not an error.

pub mod dirs;

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::batch::RelPath;
use crate::exclude::ExcludeSet;

/// `source` joined with a relative path (the root itself for an empty one).
pub fn abs(source: &Path, rel: &[u8]) -> std::path::PathBuf {
    if rel.is_empty() {
        source.to_path_buf()
    } else {
        source.join(std::ffi::OsStr::from_bytes(rel))
    }
}

/// `parent/name` as a relative path (just `name` under the root).
pub fn child(parent: &[u8], name: &[u8]) -> RelPath {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The excluded paths at or below each of `roots` (the whole tree when `roots` is empty),
/// highest excluded path only (nothing below an excluded directory is listed). Sorted.
pub fn excluded_paths(
    source: &Path,
    roots: &[RelPath],
    set: &ExcludeSet,
) -> io::Result<Vec<RelPath>> {
    let mut out = Vec::new();
    if set.is_empty() {
        return Ok(out);
    }
    let mut stack: Vec<RelPath> = Vec::new();
    if roots.is_empty() {
        stack.push(Vec::new());
    }
    for r in roots {
        if set.is_excluded(r) {
            out.push(r.clone());
        } else {
            stack.push(r.clone());
        }
    }
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(abs(source, &dir)) {
            Ok(rd) => rd,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err(e),
            };
            let rel = child(&dir, entry.file_name().as_bytes());
            if set.matches_self(&rel) {
                out.push(rel);
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Number of directories in the tree (the root included), not descending into excluded
/// ones: the number of inotify watches the tree needs. Walked as the watches are
/// ([`dirs::DirWalk`], on [`dirs::threads`] threads), without reading leaf directories.
pub fn count_dirs(source: &Path, set: &ExcludeSet) -> u64 {
    let walk = dirs::DirWalk {
        source,
        exclude: set,
        threads: dirs::threads(),
        leaves: dirs::Leaves::Trusted,
    };
    walk.run(Vec::new(), || 0u64, count_one)
        .iter()
        .map(|w| w.state)
        .sum()
}

fn count_one(n: &mut u64, _dir: &[u8]) -> dirs::Step {
    *n += 1;
    dirs::Step::Read
}

/// Did the thing we were reading disappear under us (deleted, or replaced by a file)?
pub fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn excluded_paths_lists_highest_match_only() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path();
        fs::create_dir_all(s.join("a/cache/deep")).unwrap();
        fs::write(s.join("a/cache/deep/x"), "x").unwrap();
        fs::write(s.join("a/keep.txt"), "k").unwrap();
        fs::write(s.join("a/junk.tmp"), "j").unwrap();
        fs::create_dir_all(s.join("b")).unwrap();
        fs::write(s.join("b/other.tmp"), "j").unwrap();
        std::os::unix::fs::symlink("/etc", s.join("a/link")).unwrap();
        let set = ExcludeSet::new(&["cache$", r"\.tmp$"]).unwrap();

        let all = excluded_paths(s, &[], &set).unwrap();
        let all: Vec<_> = all.iter().map(|p| String::from_utf8_lossy(p)).collect();
        assert_eq!(all, vec!["a/cache", "a/junk.tmp", "b/other.tmp"]);

        let under_b = excluded_paths(s, &[b"b".to_vec()], &set).unwrap();
        assert_eq!(under_b, vec![b"b/other.tmp".to_vec()]);

        let missing = excluded_paths(s, &[b"gone".to_vec()], &set).unwrap();
        assert!(missing.is_empty());
        assert_eq!(count_dirs(s, &set), 3); // root, a, b (cache pruned; link not followed)
    }
}
