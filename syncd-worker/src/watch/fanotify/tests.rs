//! The fanotify adapter on real file systems: the machine's own (ext4 here) through a
//! tempdir, and a tmpfs through `/dev/shm`. Needs root (CAP_SYS_ADMIN): the test suite
//! runs as root; elsewhere these tests fail with the reason.

use super::*;
use crate::batch::RelPath;
use crate::exclude::ExcludeSet;
use crate::wait;
use std::fs;

fn job(source: &Path) -> SyncJob {
    crate::rsync::tests::job(source, vec![])
}

fn s(p: &str) -> RelPath {
    p.as_bytes().to_vec()
}

const DELIVERY: Duration = Duration::from_secs(5);

fn until(w: &mut FanWatcher, seen: &mut Vec<Change>, want: impl Fn(&[Change]) -> bool) {
    wait::until_every("the changes awaited", DELIVERY, wait::SPIN, || {
        if want(seen) {
            return Ok(());
        }
        w.poll_or_woken(Duration::from_millis(50), &[], seen)
            .unwrap();
        Err(format!("changes seen: {seen:?}"))
    })
    .unwrap_or_else(|timeout| panic!("{timeout}"));
}

/// A tempdir on each file system the tests cover: the machine's root file system
/// ($TMPDIR) and a tmpfs (/dev/shm).
fn sources() -> Vec<tempfile::TempDir> {
    let mut v = vec![tempfile::tempdir().unwrap()];
    if Path::new("/dev/shm").is_dir() {
        v.push(tempfile::tempdir_in("/dev/shm").unwrap());
    }
    v
}

fn watcher(j: &SyncJob) -> FanWatcher {
    FanWatcher::new(j).unwrap_or_else(|e| panic!("fanotify unavailable: {e}"))
}

#[test]
fn creates_writes_renames_deletes_and_chmods_become_the_inotify_changes() {
    use std::os::unix::fs::PermissionsExt;
    for t in sources() {
        let p = t.path();
        fs::create_dir_all(p.join("old/sub")).unwrap();
        fs::write(p.join("f"), "x").unwrap();
        let mut w = watcher(&job(p));
        assert!(w.about().contains(&fs_name(p)), "{}", w.about());
        fs::write(p.join("new.txt"), "hello").unwrap();
        fs::create_dir_all(p.join("a/b/c")).unwrap();
        fs::write(p.join("a/b/c/deep"), "x").unwrap();
        fs::rename(p.join("old"), p.join("renamed")).unwrap();
        fs::set_permissions(p.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("new.txt")))
                && c.contains(&Change::Tree(s("a")))
                && c.contains(&Change::Moved {
                    from: s("old"),
                    to: s("renamed"),
                })
                && c.contains(&Change::Path(s("f")))
        });
        // After the rename, events inside are named by the new path.
        fs::write(p.join("renamed/sub/g"), "y").unwrap();
        fs::remove_file(p.join("new.txt")).unwrap();
        fs::remove_dir_all(p.join("a")).unwrap();
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("renamed/sub/g")))
                && c.contains(&Change::Gone(s("new.txt")))
                && c.contains(&Change::Gone(s("a")))
        });
        assert!(
            !seen.iter().any(|c| c == &Change::Path(s("old/sub/g"))),
            "{seen:?}"
        );
    }
}

#[test]
fn moves_in_and_out_and_the_rest_of_the_file_system_are_told_apart() {
    for t in sources() {
        let p = t.path();
        // A sibling on the same file system: its events reach the group and must go.
        let outside = tempfile::tempdir_in(p.parent().unwrap()).unwrap();
        fs::create_dir_all(outside.path().join("in/deep")).unwrap();
        fs::create_dir_all(p.join("out/deep")).unwrap();
        let mut w = watcher(&job(p));
        fs::write(outside.path().join("noise"), "x").unwrap();
        fs::rename(outside.path().join("in"), p.join("in")).unwrap();
        fs::rename(p.join("out"), outside.path().join("out")).unwrap();
        let mut seen = vec![];
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Tree(s("in"))) && c.contains(&Change::Gone(s("out")))
        });
        // The moved-in tree is watched; the moved-out one is not the source's any more.
        fs::write(p.join("in/deep/f"), "x").unwrap();
        fs::write(outside.path().join("out/deep/f"), "x").unwrap();
        until(&mut w, &mut seen, |c| {
            c.contains(&Change::Path(s("in/deep/f")))
        });
        w.poll_or_woken(Duration::from_millis(100), &[], &mut seen)
            .unwrap();
        assert!(
            !seen.iter().any(|c| match c {
                Change::Path(x) | Change::Tree(x) | Change::Gone(x) =>
                    x.starts_with(b"out/") || x.ends_with(b"noise"),
                _ => false,
            }),
            "{seen:?}"
        );
    }
}

#[test]
fn a_new_file_waits_for_its_close_and_excludes_raise_nothing() {
    use std::io::Write;
    for t in sources() {
        let p = t.path();
        let mut j = job(p);
        j.exclude = ExcludeSet::new(&["^cache", r"\.tmp$"]).unwrap();
        let mut w = watcher(&j);
        fs::create_dir(p.join("cache")).unwrap();
        fs::write(p.join("cache/x"), "x").unwrap();
        fs::write(p.join("a.tmp"), "x").unwrap();
        let mut open = fs::File::create(p.join("slow")).unwrap();
        open.write_all(b"part").unwrap();
        let mut seen = vec![];
        // Not pushed while open (within the close wait)...
        fs::write(p.join("ok"), "x").unwrap();
        until(&mut w, &mut seen, |c| c.contains(&Change::Path(s("ok"))));
        assert!(!seen.contains(&Change::Path(s("slow"))), "{seen:?}");
        // ...but at its close.
        open.write_all(b" rest").unwrap();
        drop(open);
        until(&mut w, &mut seen, |c| c.contains(&Change::Path(s("slow"))));
        assert!(
            !seen.iter().any(|c| match c {
                Change::Path(x) | Change::Tree(x) =>
                    x.starts_with(b"cache") || x.ends_with(b".tmp"),
                _ => false,
            }),
            "{seen:?}"
        );
    }
}

#[test]
fn the_root_deleted_or_moved_away_is_the_source_lost() {
    for moved in [false, true] {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path().join("src");
        fs::create_dir(&p).unwrap();
        let mut w = watcher(&job(&p));
        if moved {
            fs::rename(&p, parent.path().join("elsewhere")).unwrap();
        } else {
            fs::remove_dir(&p).unwrap();
        }
        let mut seen = vec![];
        wait::until_every("the root lost", DELIVERY, wait::SPIN, || {
            if let Some(why) = w.root_lost() {
                return Ok(why);
            }
            w.poll_or_woken(Duration::from_millis(50), &[], &mut seen)
                .unwrap();
            Err(format!("changes seen: {seen:?}"))
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
        let why = w.root_lost().unwrap();
        assert!(
            why.contains(if moved { "moved away" } else { "deleted" }),
            "{why}"
        );
    }
}

#[test]
fn a_mount_below_the_source_is_refused_with_where() {
    let t = tempfile::tempdir().unwrap();
    let below = t.path().join("mnt");
    fs::create_dir(&below).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &below,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount a tmpfs (needs root)");
    let made = FanWatcher::new(&job(t.path()));
    nix::mount::umount(&below).unwrap();
    let why = made.err().expect("refused").0;
    assert!(
        why.contains("mounted below the source") && why.contains(&below.display().to_string()),
        "{why}"
    );
}

#[test]
fn places_relative_to_the_source() {
    assert_eq!(place(b"/src", b"/src"), Look::Inside(vec![]));
    assert_eq!(place(b"/src", b"/src/a/b"), Look::Inside(s("a/b")));
    assert_eq!(place(b"/src", b"/srcx/a"), Look::Outside);
    assert_eq!(place(b"/src", b"/"), Look::Outside);
    assert_eq!(place(b"/src", b"/src/a (deleted)"), Look::Gone);
    assert_eq!(place(b"/", b"/etc"), Look::Inside(s("etc")));
}

#[test]
fn mounts_below_reads_mountinfo_with_its_escapes() {
    let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:5 / /data rw - ext4 /dev/vdb rw
31 30 0:6 / /data/a\\040b rw - tmpfs tmpfs rw
32 22 0:7 / /database rw - tmpfs tmpfs rw
33 30 0:8 / /data/x/y rw - nfs srv:/x rw
";
    assert_eq!(mounts_below(info, b"/data"), vec!["/data/a b", "/data/x/y"]);
    assert_eq!(mounts_below(info, b"/data/x/y"), Vec::<String>::new());
    assert_eq!(mounts_below(info, b"/").len(), 4);
}
