//! Changes made while the worker runs reach the daemon target, content included: bursts,
//! mass deletes, renames, the new-directory race, hard file names, tree mode.

use std::fs;
use std::time::Duration;

use syncd_tests::tree::{rename, write_file};
use syncd_tests::{assert_in_sync, Site, TreeWriter, Worker};

#[test]
fn burst_of_2000_files_of_10_to_100_kb_reaches_target_with_content() {
    let site = Site::new();
    let mut w = Worker::start(&site.config());
    TreeWriter::new(1).files(
        site.src(),
        &["d0", "d1", "d2/deep", "d3/deeper/still"],
        2000,
        10_000,
        100_000,
    );
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(60),
        &[&w, &site.daemon],
    );
    w.stop();
}

#[test]
fn deleting_1000_files_removes_them_from_target() {
    let site = Site::new();
    let mut tw = TreeWriter::new(2);
    let doomed = tw.files(site.src(), &["x", "y", "gone"], 1000, 0, 2000);
    tw.files(&site.src().join("kept"), &["a", "b"], 100, 0, 2000);
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start(&site.config());

    // 333 files in `gone/` go with their directory; the rest one by one.
    fs::remove_dir_all(site.src().join("gone")).expect("rm -r gone");
    for p in doomed.iter().filter(|p| p.exists()) {
        fs::remove_file(p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    }
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    assert!(!site.dst().join("gone").exists());
    w.stop();
}

#[test]
fn renaming_a_1000_file_dir_and_200_files_leaves_no_old_names_on_target() {
    let site = Site::new();
    let mut tw = TreeWriter::new(3);
    tw.files(&site.src().join("big"), &["", "sub"], 1000, 0, 4000);
    let singles = tw.files(site.src(), &["singles"], 200, 1, 4000);
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start(&site.config());

    rename(&site.src().join("big"), &site.src().join("big-renamed"));
    fs::create_dir(site.src().join("moved")).expect("mkdir moved");
    for (i, p) in singles.iter().enumerate() {
        let name = p
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        // Half renamed in place, half moved to another directory.
        let to = if i % 2 == 0 {
            p.with_file_name(format!("r-{name}"))
        } else {
            site.src().join("moved").join(&name)
        };
        rename(p, &to);
    }
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    assert!(
        !site.dst().join("big").exists(),
        "old dir name left on target"
    );
    assert!(
        !site.dst().join("singles/f00000").exists(),
        "old file name left on target"
    );
    w.stop();
}

#[test]
fn files_written_into_fresh_nested_dirs_without_pause_reach_target() {
    let site = Site::new();
    let mut w = Worker::start(&site.config());
    let mut tw = TreeWriter::new(4);
    let levels = ["a", "b", "c", "d", "e"];
    for chain in 0..20 {
        let top = site.src().join(format!("chain{chain:02}"));
        // `mkdir -p a/b/c/d/e`, then a file in every level at once: the directories exist
        // before the worker can have added watches on them.
        let mut deepest = top.clone();
        for l in levels {
            deepest.push(l);
        }
        fs::create_dir_all(&deepest).expect("mkdir -p");
        let mut dir = top.clone();
        for l in levels {
            dir.push(l);
            tw.file(&dir.join("file"), 100);
        }
        // And one level at a time: mkdir, write, mkdir, write...
        let mut dir = top.join("stepwise");
        for l in levels {
            dir.push(l);
            fs::create_dir_all(&dir).expect("mkdir");
            tw.file(&dir.join("file"), 100);
        }
    }
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.stop();
}

#[test]
fn hard_file_names_reach_target() {
    let site = Site::new();
    let mut w = Worker::start(&site.config());
    let long_ascii = "n".repeat(255);
    // 127 two-byte characters plus one byte: 255 bytes.
    let long_unicode = format!("{}x", "é".repeat(127));
    assert_eq!(long_unicode.len(), 255);
    let names = [
        "with space",
        "new\nline",
        "-leading-dash",
        "--delete",
        "ünïcødé-日本語-🚀",
        "star*",
        "[brackets]?",
        "back\\slash",
        "'quote\"",
        long_ascii.as_str(),
        long_unicode.as_str(),
    ];
    let mut tw = TreeWriter::new(5);
    for n in names {
        tw.file(&site.src().join(n), 300);
        tw.file(&site.src().join("dir with space").join(n), 300);
    }
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    // Renames and deletes of such names too.
    rename(
        &site.src().join("new\nline"),
        &site.src().join("new\nline 2"),
    );
    fs::remove_file(site.src().join("star*")).expect("rm star*");
    fs::remove_file(site.src().join("-leading-dash")).expect("rm -leading-dash");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.stop();
}

#[test]
fn tree_mode_sync_keeps_target_equal() {
    let site = Site::new();
    let mut w = Worker::start(&site.config().mode("tree"));
    let mut tw = TreeWriter::new(15);
    let files = tw.files(site.src(), &["t0", "t1/sub"], 300, 0, 20_000);
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    for p in files.iter().take(50) {
        fs::remove_file(p).expect("rm");
    }
    rename(&site.src().join("t1"), &site.src().join("t1-renamed"));
    write_file(&site.src().join("t0/late"), b"late");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.stop();
}
