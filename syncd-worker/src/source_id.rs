//! Which directory a sync's source really is, and whether the path still names it.
//!
//! A backup daemon that pushes `--delete` from the wrong directory empties the backup:
//! the source's file system unmounted (the mount point left behind is empty), the root
//! moved away and replaced (`mv /data /data.old && mkdir /data`), or a boot that did not
//! mount the source before syncd started. So every sync records the identity of its
//! source when its watches are added — the file system's id (`statvfs` `f_fsid`, which
//! follows the file system across remounts, unlike `st_dev` for NFS or a loop device),
//! the directory's inode, and whether it is a mount point — and every push first checks
//! that the path still names that directory ([`SourceId::check`]).
//!
//! The identities are also kept on disk ([`Record`], `<state_dir>/sources.json`, written
//! when a sync's watches are in place), so a worker started after a crash or a reboot
//! knows what its source was before it pushes anything.
//!
//! A source written as a symbolic link (a release link, `/var/www/current`) is watched
//! at the directory it led to when the config was loaded, and checked through the link
//! ([`SourceId::check_job`]): the link repointed ([`link_moved`]) is a source swapped,
//! held until `syncd reload` resolves it again. The record keeps the path as written.
//!
//! The comparison ([`SourceId::differs`]) is pure; [`SourceId::of`] and the record are the
//! adapters (a few system calls, no walk).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::SyncJob;
use crate::state_dir::StateDir;

const VERSION: u32 = 1;

/// The identity of a source directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    /// The file system's id (`statvfs` `f_fsid`): the same after a remount of the same
    /// file system (ext4, xfs: from its UUID; NFS: from the server's), a new one for a
    /// new tmpfs.
    pub fsid: u64,
    /// `st_dev`, for the log only: it can change across a remount.
    pub dev: u64,
    pub ino: u64,
    /// The directory is the root of a mounted file system.
    pub mount_point: bool,
}

impl SourceId {
    /// The identity of the directory `path` names now. `NotFound` when there is none,
    /// `NotADirectory`-like errors (`Other`) when it is not a directory.
    pub fn of(path: &Path) -> io::Result<SourceId> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        let parent = std::fs::metadata(path.join(".."))?;
        // "/" is its own parent: a mount point all the same.
        let mount_point = parent.dev() != meta.dev() || parent.ino() == meta.ino();
        Ok(SourceId {
            fsid: fsid(path)?,
            dev: meta.dev(),
            ino: meta.ino(),
            mount_point,
        })
    }

    /// Why `now` (the directory the path names today; None: nothing there) is not the
    /// directory `self` identifies, in words for the log and the status; None when it is.
    pub fn differs(&self, now: Option<&SourceId>) -> Option<String> {
        let Some(now) = now else {
            return Some(
                "the source directory is gone (deleted, moved away, or its file system unmounted)"
                    .into(),
            );
        };
        if self.mount_point && !now.mount_point {
            return Some(
                "the source is no longer a mount point: its file system was unmounted (or never mounted)"
                    .into(),
            );
        }
        if self.fsid != now.fsid {
            return Some(format!(
                "the source is now on another file system (fsid {:016x}, watched: {:016x}): unmounted, or replaced by another mount",
                now.fsid, self.fsid
            ));
        }
        if self.ino != now.ino {
            return Some(format!(
                "the source path names another directory (inode {}, watched: {}): moved away and replaced",
                now.ino, self.ino
            ));
        }
        None
    }

    /// Does the source of `job` still name this directory: for a symlinked source, does
    /// the link still lead to the directory watched ([`link_moved`]), and does the path
    /// as written name this directory? Err with the reason when not.
    pub fn check_job(&self, job: &SyncJob) -> Result<(), String> {
        match link_moved(job) {
            Some(why) => Err(why),
            None => self.check(job.source_path()),
        }
    }

    /// Does `path` still name this directory? Err with the reason when it does not.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let now = match SourceId::of(path) {
            Ok(id) => Some(id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot look at the source {}: {e}", path.display())),
        };
        match self.differs(now.as_ref()) {
            Some(why) => Err(format!("{}: {why}", path.display())),
            None => Ok(()),
        }
    }
}

/// For a sync whose source is a symbolic link: why the link no longer leads to the
/// directory watched ([`SyncJob::source`], resolved when the config was loaded), naming
/// both and the fix; None when it still does, when the source is no link, or when the
/// link leads nowhere now (then the identity check says the source is gone).
pub fn link_moved(job: &SyncJob) -> Option<String> {
    let link = job.source_link.as_deref()?;
    let now = link.canonicalize().ok()?;
    (now != job.source).then(|| {
        format!(
            "{}: the symlink was repointed to {} (this sync watches {}); run `syncd reload` to sync the new directory",
            link.display(),
            now.display(),
            job.source.display()
        )
    })
}

/// `statvfs(path).f_fsid`.
fn fsid(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path)?;
    #[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
    Ok(u64::from(st.filesystem_id()))
}

/// Why the record could not be read.
enum Unread {
    Io(io::Error),
    Damaged(serde_json::Error),
}

/// The record at `path`; a missing file is an empty record.
fn read(path: &Path) -> Result<Record, Unread> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map_err(Unread::Damaged),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Record::default()),
        Err(e) => Err(Unread::Io(e)),
    }
}

/// One sync in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSync {
    pub name: String,
    pub source: String,
    pub id: SourceId,
}

/// `<state_dir>/sources.json`: the source identities of the last run, per sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub syncs: Vec<RecordSync>,
}

impl Record {
    /// Read the record; a missing file is an empty record, a damaged one is set aside
    /// (`sources.json.corrupt-<time>`) with a warning and counts as empty: syncd never refuses
    /// to start over its own state. For the worker, the record's one writer.
    pub fn load(state_dir: &Path) -> Record {
        let path = StateDir::at(state_dir).sources_file();
        match read(&path) {
            Ok(r) => r,
            Err(Unread::Io(e)) => {
                log::warn!(
                    "cannot read {}: {e}; the sources' identities from the last run are unknown",
                    path.display()
                );
                Record::default()
            }
            Err(Unread::Damaged(e)) => {
                let moved = crate::durable::set_aside(&path);
                log::warn!(
                    "{} is damaged ({e}){}; the sources' identities from the last run are unknown",
                    path.display(),
                    match moved {
                        Ok(aside) => format!(", moved aside to {}", aside.display()),
                        Err(_) => String::new(),
                    }
                );
                Record::default()
            }
        }
    }

    /// The record as it is, touching nothing (for readers such as `syncd check`): empty
    /// when missing, unreadable or damaged.
    pub fn peek(state_dir: &Path) -> Record {
        read(&StateDir::at(state_dir).sources_file()).unwrap_or_default()
    }

    /// The identity recorded for the sync `name` watching `source`; None when the sync
    /// is new or its source path changed in the config since.
    pub fn expected(&self, name: &str, source: &Path) -> Option<SourceId> {
        let source = source.to_string_lossy();
        self.syncs
            .iter()
            .find(|s| s.name == name && s.source == source)
            .map(|s| s.id)
    }

    /// Record `id` for the sync `name`; true when that changed the record.
    pub fn set(&mut self, name: &str, source: &Path, id: SourceId) -> bool {
        let entry = RecordSync {
            name: name.to_string(),
            source: source.to_string_lossy().into_owned(),
            id,
        };
        self.version = VERSION;
        match self.syncs.iter_mut().find(|s| s.name == name) {
            Some(s) if *s == entry => false,
            Some(s) => {
                *s = entry;
                true
            }
            None => {
                self.syncs.push(entry);
                true
            }
        }
    }

    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        let path = StateDir::at(state_dir).sources_file();
        crate::durable::replace_json(&path, self, 0o644, crate::durable::Flush::Durable)
            .with_context(|| {
                format!(
                    "failed to write the source identities to {}",
                    path.display()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: SourceId = SourceId {
        fsid: 7,
        dev: 40,
        ino: 100,
        mount_point: false,
    };
    const MOUNT: SourceId = SourceId {
        fsid: 9,
        dev: 41,
        ino: 2,
        mount_point: true,
    };

    #[test]
    fn differs_names_what_happened() {
        let remounted = SourceId { dev: 99, ..MOUNT };
        let empty_mount_point = SourceId {
            fsid: 7,
            dev: 40,
            ino: 555,
            mount_point: false,
        };
        let other_tmpfs = SourceId { fsid: 10, ..MOUNT };
        let swapped = SourceId { ino: 101, ..DIR };
        // (watched, now, None = same directory / Some(word in the reason))
        let cases: [(SourceId, Option<SourceId>, Option<&str>); 7] = [
            (DIR, Some(DIR), None),
            // A remount of the same file system: st_dev may change, fsid does not.
            (MOUNT, Some(remounted), None),
            (DIR, None, Some("gone")),
            (
                MOUNT,
                Some(empty_mount_point),
                Some("no longer a mount point"),
            ),
            (MOUNT, Some(other_tmpfs), Some("another file system")),
            (DIR, Some(swapped), Some("moved away and replaced")),
            (MOUNT, None, Some("gone")),
        ];
        for (watched, now, want) in cases {
            let got = watched.differs(now.as_ref());
            match want {
                None => assert_eq!(got, None, "{watched:?} vs {now:?}"),
                Some(word) => {
                    let got = got.unwrap_or_else(|| panic!("{watched:?} vs {now:?}: same?"));
                    assert!(got.contains(word), "{got:?} lacks {word:?}");
                }
            }
        }
    }

    #[test]
    fn of_and_check_on_real_directories() {
        let top = tempfile::tempdir().expect("tempdir");
        let data = top.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let id = SourceId::of(&data).expect("identity");
        assert!(!id.mount_point);
        assert_eq!(id.check(&data), Ok(()));
        // The deploy swap: moved away, a new directory in its place.
        std::fs::rename(&data, top.path().join("data.old")).expect("mv");
        let gone = id.check(&data).expect_err("moved away");
        assert!(gone.contains("gone"), "{gone}");
        std::fs::create_dir(&data).expect("mkdir");
        let swapped = id.check(&data).expect_err("replaced");
        assert!(swapped.contains("replaced"), "{swapped}");
        // A file in its place is no directory either.
        std::fs::remove_dir(&data).expect("rmdir");
        std::fs::write(&data, b"x").expect("write");
        let file = id.check(&data).expect_err("a file");
        assert!(file.contains("not a directory"), "{file}");
        assert!(SourceId::of(Path::new("/")).expect("/").mount_point);
    }

    #[test]
    fn record_round_trip_and_damage() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut r = Record::load(state.path());
        assert_eq!(r, Record::default());
        assert!(r.set("a", Path::new("/data"), DIR));
        assert!(!r.set("a", Path::new("/data"), DIR));
        assert!(r.set("b", Path::new("/srv"), MOUNT));
        r.save(state.path()).expect("save");
        let back = Record::load(state.path());
        assert_eq!(back.expected("a", Path::new("/data")), Some(DIR));
        assert_eq!(back.expected("b", Path::new("/srv")), Some(MOUNT));
        // The source path changed in the config: nothing expected.
        assert_eq!(back.expected("a", Path::new("/data2")), None);
        assert_eq!(back.expected("c", Path::new("/data")), None);
        // A torn file after a power cut is set aside, not fatal; a reader leaves it.
        std::fs::write(
            StateDir::at(state.path()).sources_file(),
            b"{\"version\":1,\"sy",
        )
        .expect("tear");
        assert_eq!(Record::peek(state.path()), Record::default());
        assert!(
            StateDir::at(state.path()).sources_file().exists(),
            "peek moved nothing"
        );
        assert_eq!(Record::load(state.path()), Record::default());
        let aside = std::fs::read_dir(state.path())
            .expect("ls")
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("sources.json.corrupt")
            });
        assert!(aside, "the damaged record is kept aside");
        assert!(!StateDir::at(state.path()).sources_file().exists());
    }
}
