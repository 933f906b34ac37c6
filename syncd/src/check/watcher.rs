//! `syncd check`'s line on each sync's `watcher`: what the worker would run now, found
//! the way the worker finds it (`watch::choose::decide`: a fanotify group made and the
//! source's file system marked, then dropped), and why. A worker that runs as `user`
//! has no CAP_SYS_ADMIN: `auto` then means inotify whatever this (root) check could do.

use std::path::Path;

use syncd_worker::config::{RunAs, SyncJob, WatcherChoice};
use syncd_worker::watch::choose::{decide, Decision};

use super::{Finding, Status};

/// The watcher line of `job`, and whether the worker would use fanotify (then no
/// directory needs an inotify watch).
pub(super) fn watcher_finding(job: &SyncJob, run_as: Option<&RunAs>) -> (Finding, bool) {
    let subject = format!("watcher (sync {})", job.name);
    if let Some(user) = run_as.filter(|u| u.uid != 0) {
        if job.watcher != WatcherChoice::Fanotify {
            // (fanotify with `user` is refused when the config is loaded.)
            let why = format!(
                "inotify: watcher = \"{}\" and the worker runs as {} (`user`), without the CAP_SYS_ADMIN fanotify needs",
                job.watcher, user.user
            );
            return (Finding::ok(subject, why), false);
        }
    }
    match decide(job) {
        Ok(Decision::Fanotify(_, chosen)) => (
            Finding::ok(
                subject,
                format!(
                    "fanotify: {}; no directory watch needed{}",
                    chosen.reason,
                    if Path::new("/run/systemd/system").is_dir() {
                        " (as this check runs; the packaged systemd unit leaves CAP_SYS_ADMIN out, so the service uses inotify unless a drop-in adds it: `syncd status` says which)"
                    } else {
                        ""
                    }
                ),
            ),
            true,
        ),
        Ok(Decision::Inotify(chosen)) => (
            Finding::ok(subject, format!("inotify: {}", chosen.reason)),
            false,
        ),
        Err(why) => (
            Finding::new(Status::Problem, subject, why).fix(
                "fix what the message names, or set watcher = \"auto\" to fall back to inotify",
            ),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::render;

    fn job(watcher: WatcherChoice, source: &std::path::Path) -> SyncJob {
        let text = format!(
            "[[sync]]\nsource = \"{}\"\nname = \"web\"\nwatcher = \"{watcher}\"\n\
             [[sync.target]]\ndest = \"/nonexistent-check-target\"\n",
            source.display()
        );
        let config =
            syncd_worker::config::parse(text.as_bytes(), std::path::Path::new("/etc/syncd/t.toml"))
                .expect("config");
        config.syncs.into_iter().next().expect("one sync")
    }

    /// As root on this kernel and file system (the test suite's machine), auto and
    /// fanotify find fanotify; inotify is inotify.
    #[test]
    fn the_line_says_what_the_worker_would_run_and_why() {
        let src = tempfile::tempdir().expect("tempdir");
        let (f, fan) = watcher_finding(&job(WatcherChoice::Auto, src.path()), None);
        assert!(fan, "{}", render(&f));
        assert!(
            render(&f).starts_with(
                "ok       watcher (sync web): fanotify: watcher = \"auto\": one mark on the"
            ),
            "{}",
            render(&f)
        );
        let (f, fan) = watcher_finding(&job(WatcherChoice::Fanotify, src.path()), None);
        assert!(fan && f.status == Status::Ok, "{}", render(&f));
        let (f, fan) = watcher_finding(&job(WatcherChoice::Inotify, src.path()), None);
        assert!(!fan);
        assert_eq!(
            render(&f),
            "ok       watcher (sync web): inotify: watcher = \"inotify\" in the config"
        );
    }

    #[test]
    fn fanotify_that_cannot_watch_is_a_problem_and_auto_falls_back() {
        // A file system mounted below the source: one mark would not cover it.
        let src = tempfile::tempdir().expect("tempdir");
        let below = src.path().join("mnt");
        std::fs::create_dir(&below).expect("mkdir");
        // The harness's mount: unmounted on Drop, also when an assertion fails.
        let mounted = syncd_tests::mount::Tmpfs::mount(&below, "1m");
        let forced = watcher_finding(&job(WatcherChoice::Fanotify, src.path()), None);
        let auto = watcher_finding(&job(WatcherChoice::Auto, src.path()), None);
        drop(mounted);
        let (f, fan) = forced;
        assert!(!fan && f.status == Status::Problem, "{}", render(&f));
        assert!(
            render(&f).contains("mounted below the source"),
            "{}",
            render(&f)
        );
        let (f, fan) = auto;
        assert!(!fan && f.status == Status::Ok, "{}", render(&f));
        assert!(
            render(&f).contains("inotify: watcher = \"auto\", and fanotify is not available"),
            "{}",
            render(&f)
        );
    }

    #[test]
    fn a_worker_running_as_user_gets_inotify() {
        let src = tempfile::tempdir().expect("tempdir");
        let nobody = RunAs {
            user: "nobody".into(),
            uid: 65534,
            group: "nogroup".into(),
            gid: 65534,
            home: "/nonexistent".into(),
        };
        let (f, fan) = watcher_finding(&job(WatcherChoice::Auto, src.path()), Some(&nobody));
        assert!(!fan);
        assert!(render(&f).contains("runs as nobody"), "{}", render(&f));
    }
}
