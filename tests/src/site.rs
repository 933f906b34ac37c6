//! `Site`: the usual arrangement of one test — a source tree, a state dir and an rsync
//! daemon target, each cleaned up on Drop — and the worker config that connects them.
//!
//! Must not: start the worker itself (tests decide when, and with what config).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tree::{source_dir, SyncCheck};
use crate::{Diagnose, RsyncDaemon, Worker, WorkerConfig};

pub struct Site {
    pub src: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub daemon: RsyncDaemon,
}

impl Site {
    /// A source tree, a state dir and a running rsync daemon. Not `Default`: it starts a
    /// process.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Site {
        Site::with_daemon(RsyncDaemon::start())
    }

    /// A site pushing to `daemon` (e.g. one started with module settings).
    pub fn with_daemon(daemon: RsyncDaemon) -> Site {
        Site {
            src: source_dir(),
            state: tempfile::Builder::new()
                .prefix("syncd-e2e-state.")
                .tempdir()
                .expect("create a state tempdir"),
            daemon,
        }
    }

    pub fn src(&self) -> &Path {
        self.src.path()
    }

    /// The daemon module's directory (the target tree).
    pub fn dst(&self) -> PathBuf {
        self.daemon.path()
    }

    /// Wait for the target to equal the source, showing `fixture`'s diagnostics and the
    /// daemon's on failure (refine with `ignore`, `within`, then `wait`).
    pub fn check<'a>(&'a self, fixture: &'a dyn Diagnose) -> SyncCheck<'a> {
        SyncCheck::new(self.src(), &self.dst())
            .with(fixture)
            .with(&self.daemon)
    }

    /// Wait (up to `timeout` each) until `w` has nothing queued or in flight, then until
    /// every session the daemon began has ended; how many sessions there were.
    pub fn settled(&self, w: &mut Worker, timeout: Duration) -> usize {
        w.wait_status(
            "nothing queued or in flight",
            timeout,
            &[&self.daemon],
            |s| {
                s.syncs
                    .iter()
                    .flat_map(|s| &s.targets)
                    .all(|t| t.queue_depth == 0 && t.in_flight == 0)
            },
        );
        self.daemon.received_after(0, timeout, &[&*w]);
        self.daemon.sessions().len()
    }

    /// A config watching `src` and pushing to the daemon.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig::new(self.state.path(), self.src()).daemon(&self.daemon)
    }

    /// sersync's own `confxml.xml` for this site: watch `src`, push to the daemon's module
    /// with its user, password file and port. `filter`: the `<filter>` excludes (none =
    /// the filter switched off); `crontab_filter`: the excludes of the (switched off)
    /// `<crontab>`, which the loader still reads.
    pub fn sersync_confxml(&self, filter: &[&str], crontab_filter: &[&str]) -> String {
        let excludes = |list: &[&str], indent: &str| -> String {
            list.iter()
                .map(|e| format!("{indent}<exclude expression=\"{e}\"></exclude>\n"))
                .collect()
        };
        let crontab = if crontab_filter.is_empty() {
            "<crontab start=\"false\" schedule=\"600\"></crontab>".to_string()
        } else {
            format!(
                "<crontab start=\"false\" schedule=\"600\">\n            <crontabfilter start=\"false\">\n{}            </crontabfilter>\n        </crontab>",
                excludes(crontab_filter, "                ")
            )
        };
        format!(
            r#"<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <host hostip="localhost" port="8008"></host>
    <debug start="false"/>
    <fileSystem xfs="false"/>
    <filter start="{filter_on}">
{filter}    </filter>
    <inotify>
        <delete start="true"/>
        <createFolder start="true"/>
        <createFile start="true"/>
        <closeWrite start="true"/>
        <moveFrom start="true"/>
        <moveTo start="true"/>
        <attrib start="false"/>
        <modify start="false"/>
    </inotify>
    <sersync>
        <localpath watch="{src}">
            <remote ip="127.0.0.1" name="backup"/>
        </localpath>
        <rsync>
            <commonParams params="-artuz"/>
            <auth start="true" users="rsync_backup" passwordfile="{pw}"/>
            <userDefinedPort start="true" port="{port}"/>
            <timeout start="false" time="100"/>
            <ssh start="false"/>
        </rsync>
        <failLog path="{faillog}" timeToExecute="60"/>
        {crontab}
        <plugin start="false" name="command"/>
    </sersync>
</head>
"#,
            filter_on = !filter.is_empty(),
            filter = excludes(filter, "        "),
            src = self.src().display(),
            pw = self.daemon.password_file().display(),
            port = self.daemon.port(),
            faillog = self.state.path().join("rsync_fail_log.sh").display(),
        )
    }
}
