//! Excluded paths (regexes on the path relative to the source) never reach the target, and
//! a file on the target that matches an exclude is not deleted.

use std::fs;
use std::path::Path;
use std::time::Duration;

use syncd_tests::tree::write_file;
use syncd_tests::{diagnostics, Site, SyncCheck, TreeWriter, Worker};

/// Mirrors the two excludes the test configures: `\.tmp$` and `^cache`.
fn excluded(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    s.ends_with(".tmp") || s.starts_with("cache")
}

#[test]
fn excluded_paths_never_reach_target_and_are_not_deleted_there() {
    let site = Site::new();
    // On the target before the worker starts: files matching the excludes, which the
    // worker must leave alone.
    write_file(&site.dst().join("stale.tmp"), b"keep me");
    write_file(&site.dst().join("cache/old"), b"keep me too");
    let preexisting = |rel: &Path| {
        ["stale.tmp", "cache", "cache/old"]
            .iter()
            .any(|p| rel == Path::new(p))
    };

    let mut w = Worker::start(&site.config().exclude(r"\.tmp$").exclude("^cache"));
    let mut tw = TreeWriter::new(6);
    let forbidden_on_target = |rel: &Path| excluded(rel) && !preexisting(rel);
    for round in 0..5 {
        tw.file(&site.src().join(format!("keep{round}.txt")), 2000);
        tw.file(&site.src().join(format!("skip{round}.tmp")), 2000);
        tw.file(&site.src().join(format!("sub/b{round}.tmp")), 2000);
        tw.file(&site.src().join(format!("cache/x{round}")), 2000);
        tw.file(&site.src().join(format!("cachefoo{round}.txt")), 2000);
        // Not excluded: `^cache` is anchored at the source root.
        tw.file(&site.src().join(format!("sub/cache/y{round}")), 2000);
        tw.file(&site.src().join(format!("sub/a{round}.tmpx")), 2000);
        // Poll the target between rounds too, not only at the end.
        SyncCheck::new(site.src(), &site.dst())
            .forbid_on_target(forbidden_on_target)
            .with(&w)
            .assert_nothing_forbidden();
    }
    // The source gets (and loses) a file of the same name as the protected one.
    write_file(&site.src().join("stale.tmp"), b"source copy");
    fs::remove_file(site.src().join("stale.tmp")).expect("rm stale.tmp");
    fs::remove_dir_all(site.src().join("cache")).expect("rm -r cache");

    site.check(&w)
        .ignore(excluded)
        .forbid_on_target(forbidden_on_target)
        .within(Duration::from_secs(30))
        .wait();
    assert!(site.dst().join("sub/cache/y0").is_file());
    assert_eq!(
        fs::read(site.dst().join("stale.tmp")).ok().as_deref(),
        Some(&b"keep me"[..]),
        "excluded file on the target was deleted or replaced\n{}",
        diagnostics(&[&w, &site.daemon])
    );
    assert_eq!(
        fs::read(site.dst().join("cache/old")).ok().as_deref(),
        Some(&b"keep me too"[..]),
        "file under an excluded dir on the target was deleted or replaced\n{}",
        diagnostics(&[&w, &site.daemon])
    );
    w.stop();
}
