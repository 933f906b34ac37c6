//! `metrics_file`: the worker's Prometheus text file, read back with a strict parser
//! (`syncd_worker::metrics::parsed`) as node_exporter's textfile collector would read it:
//! the pushes show up, a stopped daemon shows as failures and degraded, and an idle
//! worker leaves the file alone (no timer rewrites it).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use syncd_tests::tree::write_file;
use syncd_tests::{toml_str, wait, Diagnose, Site, Worker, WorkerConfig};
use syncd_worker::metrics::parsed::{parse, Parsed};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `name{sync="data",target="backup"}` (with `result` first for syncd_pushes_total).
fn key(name: &str, result: Option<&str>) -> String {
    let result = result
        .map(|r| format!("result=\"{r}\","))
        .unwrap_or_default();
    format!("{name}{{{result}sync=\"data\",target=\"backup\"}}")
}

/// The file parsed, or why not (missing, refused by the parser).
fn read(file: &Path) -> Result<Parsed, String> {
    let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    parse(&text).map_err(|e| format!("the parser refused it: {e}\n{text}"))
}

/// Wait until the file parses and `holds` says yes; the file parsed.
fn wait_metrics(
    what: &str,
    file: &Path,
    fixtures: &[&dyn Diagnose],
    holds: impl Fn(&Parsed) -> bool,
) -> Parsed {
    wait::must(
        format_args!("the metrics file: {what}"),
        TIMEOUT,
        fixtures,
        || {
            let m = read(file)?;
            if holds(&m) {
                Ok(m)
            } else {
                Err(format!("{:?}", m.samples))
            }
        },
    )
}

/// A site, a directory for the metrics file (node_exporter's textfile directory) and the
/// file's path in it.
fn setup() -> (Site, tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("syncd-e2e-metrics.")
        .tempdir()
        .expect("tempdir");
    let file = dir.path().join("syncd.prom");
    (Site::new(), dir, file)
}

/// Sync "data" pushing to the site's daemon as target "backup" (no metrics file yet).
fn config(site: &Site) -> WorkerConfig {
    WorkerConfig::new(site.state.path(), site.src())
        .daemon_named(&site.daemon, "backup")
        .name("data")
}

/// The file's identity: each write renames a new inode over it.
fn identity(file: &Path) -> Option<(u64, i64, i64)> {
    let m = fs::metadata(file).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec()))
}

#[test]
fn the_metrics_file_shows_pushes_and_failures_and_an_idle_worker_leaves_it_alone() {
    let (mut site, dir, file) = setup();
    let cfg = config(&site)
        .retry(Some(("1s", "2s")))
        .top_key("metrics_file", &toml_str(&file.to_string_lossy()));
    let mut w = Worker::start(&cfg);
    for i in 0..5 {
        write_file(&site.src().join(format!("f{i}.txt")), b"some bytes");
    }
    site.check(&w).within(TIMEOUT).wait();

    // The pushes, once the worker is in step again.
    let pushed = key("syncd_pushed_paths_total", None);
    let m = wait_metrics("5 paths pushed, in step", &file, &[&w, &site.daemon], |m| {
        m.get(&pushed).is_some_and(|n| n >= 5.0)
            && m.get(&key("syncd_queue_depth", None)) == Some(0.0)
            && m.get(&key("syncd_in_flight_paths", None)) == Some(0.0)
    });
    let status = w.status().expect("status");
    let (s, t) = (&status.syncs[0], &status.syncs[0].targets[0]);
    let want = [
        (
            key("syncd_pushes_total", Some("ok")),
            Some(t.pushes_ok as f64),
        ),
        (key("syncd_pushes_total", Some("failed")), Some(0.0)),
        (key("syncd_lag_seconds", None), Some(0.0)),
        (key("syncd_retry_backlog", None), Some(0.0)),
        (key("syncd_degraded", None), Some(0.0)),
        (
            "syncd_watched_directories{sync=\"data\"}".into(),
            Some(s.watched_dirs as f64),
        ),
        (
            "syncd_inotify_overflows_total{sync=\"data\"}".into(),
            Some(0.0),
        ),
        ("syncd_source_lost{sync=\"data\"}".into(), Some(0.0)),
        ("syncd_worker_state{state=\"watching\"}".into(), Some(1.0)),
        (
            key("syncd_last_success_timestamp_seconds", None),
            t.last_success,
        ),
    ];
    for (k, v) in &want {
        assert_eq!(m.get(k), *v, "{k}\n{:?}", m.samples);
    }
    assert!(t.pushes_ok >= 1 && t.last_success.is_some(), "{t:?}");
    let meta = fs::metadata(&file).expect("metrics file");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o644,
        "node_exporter reads it"
    );
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["syncd.prom"], "no temp file left beside it");

    // Idle: the file stays as it is (an idle worker makes no system call).
    let quiet = wait::quiet(
        "the metrics file",
        Duration::from_secs(5),
        TIMEOUT,
        &[&w, &site.daemon],
        || identity(&file),
    );

    // The daemon down: a change fails, the target shows failures, lag and degraded.
    site.daemon.stop();
    write_file(&site.src().join("late.txt"), b"late");
    wait_metrics(
        "failed pushes, lag, degraded",
        &file,
        &[&w, &site.daemon],
        |m| {
            m.get(&key("syncd_pushes_total", Some("failed")))
                .is_some_and(|n| n >= 1.0)
                && m.get(&key("syncd_degraded", None)) == Some(1.0)
                && m.get(&key("syncd_consecutive_failures", None))
                    .is_some_and(|n| n >= 1.0)
                && m.get(&key("syncd_lag_seconds", None))
                    .is_some_and(|l| l > 0.0)
                && m.get("syncd_worker_state{state=\"degraded\"}") == Some(1.0)
        },
    );
    assert_ne!(identity(&file), Some(quiet), "rewritten for the change");

    // Back up: the change arrives and the file says so.
    site.daemon.restart();
    site.check(&w).within(TIMEOUT).wait();
    wait_metrics("back in step", &file, &[&w, &site.daemon], |m| {
        m.get(&pushed).is_some_and(|n| n >= 6.0)
            && m.get(&key("syncd_degraded", None)) == Some(0.0)
            && m.get(&key("syncd_lag_seconds", None)) == Some(0.0)
    });
    w.stop();
}

/// A reload that sets `metrics_file` starts the file at once, with what the worker did
/// before; one that turns it off leaves the file as it was.
#[test]
fn a_reload_turns_the_metrics_file_on_and_off() {
    let (site, _dir, file) = setup();
    let cfg = config(&site);
    let mut w = Worker::start(&cfg);
    write_file(&site.src().join("a.txt"), b"a");
    site.check(&w).within(TIMEOUT).wait();
    w.wait_status("the push counted", TIMEOUT, &[&site.daemon], |s| {
        s.syncs[0].targets[0].paths_pushed >= 1
    });
    assert!(!file.exists());

    let on = cfg.top_key("metrics_file", &toml_str(&file.to_string_lossy()));
    w.rewrite_config(&on.to_toml());
    w.reload();
    wait_metrics(
        "the push made before the reload",
        &file,
        &[&w, &site.daemon],
        |m| {
            m.get(&key("syncd_pushed_paths_total", None))
                .is_some_and(|n| n >= 1.0)
        },
    );

    w.rewrite_config(&config(&site).to_toml());
    w.reload();
    w.wait_log("metrics_file changed", TIMEOUT);
    let before = identity(&file);
    write_file(&site.src().join("b.txt"), b"b");
    site.check(&w).within(TIMEOUT).wait();
    w.wait_status("the second push counted", TIMEOUT, &[&site.daemon], |s| {
        s.syncs[0].targets[0].paths_pushed >= 2
    });
    assert_eq!(identity(&file), before, "no longer written");
    w.stop();
    assert_eq!(identity(&file), before, "not written at the stop either");
}
