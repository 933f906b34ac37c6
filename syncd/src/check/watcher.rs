//! `syncd check`'s line on each sync's `watcher`: the choice as configured. What `auto`
//! becomes is decided by the worker when the sync starts, and `syncd status` shows it.
//! Pure: reads the config only.

use syncd_worker::config::{SyncJob, WatcherChoice};

use super::Finding;

/// `ok  watcher (sync NAME): watcher = auto (…)`.
pub(super) fn watcher_finding(job: &SyncJob) -> Finding {
    let message = match job.watcher {
        WatcherChoice::Auto => {
            "watcher = auto (decided when the sync starts: fanotify where the kernel, the \
             file system and the privileges allow it, else inotify; see syncd status)"
        }
        WatcherChoice::Inotify => {
            "watcher = inotify (one watch per directory; see the fs.inotify lines below)"
        }
        WatcherChoice::Fanotify => {
            "watcher = fanotify (one mark for the source's file system, no directory \
             watches; the sync does not start if fanotify cannot be used, and the log \
             says why)"
        }
    };
    Finding::ok(format!("watcher (sync {})", job.name), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{render, Status};

    fn job(watcher: WatcherChoice) -> SyncJob {
        let src = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[[sync]]\nsource = \"{}\"\nname = \"web\"\nwatcher = \"{watcher}\"\n\
             [[sync.target]]\ndest = \"/nonexistent-check-target\"\n",
            src.path().display()
        );
        let config =
            syncd_worker::config::parse(text.as_bytes(), std::path::Path::new("/etc/syncd/t.toml"))
                .expect("config");
        config.syncs.into_iter().next().expect("one sync")
    }

    #[test]
    fn the_line_names_the_configured_choice() {
        let cases = [
            (
                WatcherChoice::Auto,
                "ok       watcher (sync web): watcher = auto (decided when the sync starts: \
                 fanotify where the kernel, the file system and the privileges allow it, else \
                 inotify; see syncd status)",
            ),
            (
                WatcherChoice::Inotify,
                "ok       watcher (sync web): watcher = inotify (one watch per directory; see \
                 the fs.inotify lines below)",
            ),
            (
                WatcherChoice::Fanotify,
                "ok       watcher (sync web): watcher = fanotify (one mark for the source's \
                 file system, no directory watches; the sync does not start if fanotify \
                 cannot be used, and the log says why)",
            ),
        ];
        for (choice, want) in cases {
            let f = watcher_finding(&job(choice));
            assert_eq!(f.status, Status::Ok);
            assert_eq!(f.fix, None);
            assert_eq!(render(&f), want);
        }
    }
}
