//! What a configuration reload (SIGHUP) must change: the pure comparison of the running
//! configuration with the newly loaded one. Syncs are matched by name, and targets by name
//! within a sync; each is classified as unchanged, updated in place, re-watched, added or
//! removed, and [`Plan::summary`] renders the one-line log of the result.
//!
//! Pure: no I/O, no threads, no clock. It decides *what* differs; the engine owns the
//! queues, watchers and push threads and applies the plan. It must never decide to drop a
//! queue that could be kept.

use crate::config::{CommandHook, Config, Hooks, SyncJob, Target};
use crate::exclude::ExcludeSet;

/// What happens to one sync of the new configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncChange {
    /// Same settings and same targets: left exactly as it runs.
    Unchanged,
    /// Settings that do not touch the watches (delays, limits, threads, rsync options,
    /// retry, full sync, hooks, mode) or its targets changed: updated in place.
    Updated,
    /// `source`, `exclude`, `events` or `watcher` changed: its watcher is replaced and a
    /// whole-tree push follows once the new watches are in place. Targets as for `Updated`.
    Rewatched,
    /// A sync that was not running: set up as at start, with a whole-tree push.
    Added,
}

/// What happens to one target of a sync of the new configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetChange {
    Unchanged,
    /// Same destination, other options (user, password file, ssh arguments): new
    /// settings, capabilities probed again, queue kept.
    Updated,
    /// The destination itself differs (kind, host, port, module or path): as `Updated`,
    /// plus a whole-tree push, since what the new destination holds is unknown.
    Moved,
    /// A new target: a new queue with a whole-tree push.
    Added,
}

/// The decision for one sync of the new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    pub name: String,
    pub change: SyncChange,
    /// One entry per target of the new sync, in the new order.
    pub targets: Vec<TargetChange>,
    /// Names of the running targets of this sync that the new configuration drops.
    pub removed_targets: Vec<String>,
    /// The hooks differ: the hook runner must be restarted with the new ones.
    pub hooks_changed: bool,
}

/// Everything a reload changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One entry per sync of the new configuration, in the new order.
    pub syncs: Vec<SyncPlan>,
    /// Names of the running syncs that the new configuration drops.
    pub removed_syncs: Vec<String>,
    /// `state_dir` differs: cannot apply while running (the lock and fail logs live there).
    pub state_dir_changed: bool,
    /// `status_file` differs: cannot apply while running (the controller reads it).
    pub status_file_changed: bool,
    /// `metrics_file` differs (set, moved or turned off): applied at once.
    pub metrics_file_changed: bool,
}

/// Compare the running configuration with the new one.
pub fn diff(old: &Config, new: &Config) -> Plan {
    let syncs = new
        .syncs
        .iter()
        .map(|n| match old.syncs.iter().find(|o| o.name == n.name) {
            Some(o) => diff_sync(o, n),
            None => SyncPlan {
                name: n.name.clone(),
                change: SyncChange::Added,
                targets: vec![TargetChange::Added; n.targets.len()],
                removed_targets: Vec::new(),
                hooks_changed: false,
            },
        })
        .collect();
    let removed_syncs = old
        .syncs
        .iter()
        .filter(|o| !new.syncs.iter().any(|n| n.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    Plan {
        syncs,
        removed_syncs,
        state_dir_changed: old.state_dir != new.state_dir,
        status_file_changed: old.status_file != new.status_file,
        metrics_file_changed: old.metrics_file != new.metrics_file,
    }
}

fn diff_sync(old: &SyncJob, new: &SyncJob) -> SyncPlan {
    let targets: Vec<TargetChange> = new
        .targets
        .iter()
        .map(|n| match old.targets.iter().find(|o| o.name == n.name) {
            Some(o) => diff_target(o, n),
            None => TargetChange::Added,
        })
        .collect();
    let removed_targets: Vec<String> = old
        .targets
        .iter()
        .filter(|o| !new.targets.iter().any(|n| n.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    let hooks_changed = !same_hooks(&old.hooks, &new.hooks);
    let change = if !same_watch(old, new) {
        SyncChange::Rewatched
    } else if hooks_changed
        || !same_settings(old, new)
        || !removed_targets.is_empty()
        || targets.iter().any(|t| *t != TargetChange::Unchanged)
        // Same targets, other order: the status lists them in the new order.
        || old.targets.iter().map(|t| &t.name).ne(new.targets.iter().map(|t| &t.name))
    {
        SyncChange::Updated
    } else {
        SyncChange::Unchanged
    };
    SyncPlan {
        name: new.name.clone(),
        change,
        targets,
        removed_targets,
        hooks_changed,
    }
}

/// The settings the watcher is built from, and which watcher (`watcher`: inotify and
/// fanotify are different threads with different kernel objects).
fn same_watch(old: &SyncJob, new: &SyncJob) -> bool {
    old.source == new.source
        && old.events == new.events
        && old.watcher == new.watcher
        && same_set(&old.exclude, &new.exclude)
}

/// Every other setting of a sync except its name, targets and hooks. `initial_sync` is
/// left out: it only means something at start.
fn same_settings(old: &SyncJob, new: &SyncJob) -> bool {
    old.delay == new.delay
        && old.max_delay == new.max_delay
        && old.max_batch == new.max_batch
        && old.max_queue == new.max_queue
        && old.threads == new.threads
        && old.max_in_flight == new.max_in_flight
        && old.mode == new.mode
        && old.rsync == new.rsync
        && old.retry == new.retry
        && old.full_sync.interval == new.full_sync.interval
        && old.verify == new.verify
        && same_opt_set(&old.full_sync.exclude, &new.full_sync.exclude)
}

fn same_hooks(old: &Hooks, new: &Hooks) -> bool {
    let same_command = match (&old.command, &new.command) {
        (None, None) => true,
        (Some(a), Some(b)) => same_command(a, b),
        _ => false,
    };
    same_command && old.http == new.http
}

fn same_command(a: &CommandHook, b: &CommandHook) -> bool {
    a.argv == b.argv && a.timeout == b.timeout && same_opt_set(&a.include, &b.include)
}

fn same_set(a: &ExcludeSet, b: &ExcludeSet) -> bool {
    a.patterns().eq(b.patterns())
}

fn same_opt_set(a: &Option<ExcludeSet>, b: &Option<ExcludeSet>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_set(a, b),
        _ => false,
    }
}

fn diff_target(old: &Target, new: &Target) -> TargetChange {
    if old == new {
        TargetChange::Unchanged
    } else if old.kind.location() != new.kind.location() {
        TargetChange::Moved
    } else {
        TargetChange::Updated
    }
}

impl Plan {
    /// True when nothing at all differs.
    pub fn is_noop(&self) -> bool {
        self.removed_syncs.is_empty()
            && self.syncs.iter().all(|s| s.change == SyncChange::Unchanged)
            && !self.state_dir_changed
            && !self.status_file_changed
            && !self.metrics_file_changed
    }

    fn count(&self, c: SyncChange) -> usize {
        self.syncs.iter().filter(|s| s.change == c).count()
    }

    fn count_targets(&self, c: TargetChange) -> usize {
        self.syncs
            .iter()
            .filter(|s| s.change != SyncChange::Added)
            .flat_map(|s| &s.targets)
            .filter(|t| **t == c)
            .count()
    }

    /// One line for the log, e.g. `reloaded /etc/syncd/syncd.toml: 1 sync unchanged, 1
    /// updated, 0 rewatched, 1 target added`. Added and removed syncs and targets are
    /// named only when there are some; targets of added or removed syncs are not counted.
    pub fn summary(&self, path: &std::path::Path) -> String {
        let unchanged = self.count(SyncChange::Unchanged);
        let mut out = format!(
            "reloaded {}: {unchanged} {} unchanged, {} updated, {} rewatched",
            path.display(),
            plural(unchanged, "sync", "syncs"),
            self.count(SyncChange::Updated),
            self.count(SyncChange::Rewatched),
        );
        let removed_targets: usize = self.syncs.iter().map(|s| s.removed_targets.len()).sum();
        let extra = [
            (self.count(SyncChange::Added), "sync", "syncs", "added"),
            (self.removed_syncs.len(), "sync", "syncs", "removed"),
            (
                self.count_targets(TargetChange::Added),
                "target",
                "targets",
                "added",
            ),
            (
                self.count_targets(TargetChange::Updated) + self.count_targets(TargetChange::Moved),
                "target",
                "targets",
                "updated",
            ),
            (removed_targets, "target", "targets", "removed"),
        ];
        for (n, one, many, what) in extra {
            if n > 0 {
                out.push_str(&format!(", {n} {} {what}", plural(n, one, many)));
            }
        }
        if self.metrics_file_changed {
            out.push_str(", metrics_file changed");
        }
        out
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::config::{DaemonSettings, HttpHook, Mode, TargetKind, WatcherChoice};
    use crate::rsync::tests::{job, local};

    fn named(name: &str, job: SyncJob) -> SyncJob {
        SyncJob {
            name: name.into(),
            ..job
        }
    }

    fn target(name: &str, kind: TargetKind) -> Target {
        Target {
            name: name.into(),
            kind,
        }
    }

    fn daemon(host: &str, module: &str, password_file: Option<&str>) -> TargetKind {
        TargetKind::Daemon {
            user: Some("backup".into()),
            host: host.into(),
            module: module.into(),
            port: None,
            password_file: password_file.map(PathBuf::from),
        }
    }

    fn config(syncs: Vec<SyncJob>) -> Config {
        Config {
            path: "/etc/syncd/syncd.toml".into(),
            state_dir: "/var/lib/syncd".into(),
            status_file: "/var/lib/syncd/status.json".into(),
            metrics_file: None,
            syncs,
            daemon: DaemonSettings::default(),
            warnings: Vec::new(),
        }
    }

    /// The running config of most cases: sync "web" with targets "a" (daemon) and "b"
    /// (local), sync "logs" with one local target.
    fn base() -> Config {
        let web = named(
            "web",
            job(
                "/srv/web",
                vec![
                    target("a", daemon("10.0.0.1", "web", Some("/etc/pw"))),
                    target("b", local("/backup/web").kind),
                ],
            ),
        );
        let logs = named("logs", job("/srv/logs", vec![local("/backup/logs")]));
        config(vec![web, logs])
    }

    fn edit(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = base();
        f(&mut c);
        c
    }

    fn web(c: &mut Config) -> &mut SyncJob {
        &mut c.syncs[0]
    }

    #[test]
    fn classifies_syncs_and_targets() {
        use SyncChange as S;
        use TargetChange as T;
        type Case = (&'static str, Config, Vec<(S, Vec<T>)>);
        let cases: Vec<Case> = vec![
            (
                "same file",
                base(),
                vec![
                    (S::Unchanged, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "initial_sync alone is not a change",
                edit(|c| web(c).initial_sync = true),
                vec![
                    (S::Unchanged, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "delay",
                edit(|c| web(c).delay = Duration::from_millis(10)),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "threads, max_in_flight, max_queue, mode",
                edit(|c| {
                    web(c).threads = 8;
                    web(c).max_in_flight = 3;
                    web(c).max_queue = 10;
                    web(c).mode = Mode::Tree;
                }),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "rsync options",
                edit(|c| web(c).rsync.extra = vec!["--bwlimit=1m".into()]),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "periodic verify",
                edit(|c| web(c).verify.interval = Some(Duration::from_secs(3600))),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "full sync exclude",
                edit(|c| {
                    web(c).full_sync.exclude = Some(ExcludeSet::new(&["^tmp$"]).expect("regex"))
                }),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "exclude added",
                edit(|c| web(c).exclude = ExcludeSet::new(&[r"\.log$"]).expect("regex")),
                vec![
                    (S::Rewatched, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "events",
                edit(|c| web(c).events.modify = true),
                vec![
                    (S::Rewatched, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "watcher",
                edit(|c| web(c).watcher = WatcherChoice::Fanotify),
                vec![
                    (S::Rewatched, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "watcher and delay: rewatch wins",
                edit(|c| {
                    web(c).watcher = WatcherChoice::Inotify;
                    web(c).delay = Duration::from_secs(1);
                }),
                vec![
                    (S::Rewatched, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "source and delay: rewatch wins",
                edit(|c| {
                    web(c).source = "/srv/web2".into();
                    web(c).delay = Duration::from_secs(1);
                }),
                vec![
                    (S::Rewatched, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "password file: target updated, sync updated",
                edit(|c| web(c).targets[0].kind = daemon("10.0.0.1", "web", Some("/etc/pw2"))),
                vec![
                    (S::Updated, vec![T::Updated, T::Unchanged]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "other module: target moved",
                edit(|c| web(c).targets[0].kind = daemon("10.0.0.1", "web2", Some("/etc/pw"))),
                vec![
                    (S::Updated, vec![T::Moved, T::Unchanged]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "daemon target becomes local under the same name: moved",
                edit(|c| web(c).targets[0].kind = local("/backup/a").kind),
                vec![
                    (S::Updated, vec![T::Moved, T::Unchanged]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "target added at the front",
                edit(|c| {
                    web(c)
                        .targets
                        .insert(0, target("c", local("/backup/c").kind))
                }),
                vec![
                    (S::Updated, vec![T::Added, T::Unchanged, T::Unchanged]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "target renamed: one added, one removed",
                edit(|c| web(c).targets[1].name = "b2".into()),
                vec![
                    (S::Updated, vec![T::Unchanged, T::Added]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "targets reordered",
                edit(|c| web(c).targets.reverse()),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "hook added",
                edit(|c| {
                    web(c).hooks.http = Some(HttpHook {
                        url: "http://127.0.0.1:1/x".into(),
                        timeout: Duration::from_secs(1),
                    })
                }),
                vec![
                    (S::Updated, vec![T::Unchanged; 2]),
                    (S::Unchanged, vec![T::Unchanged]),
                ],
            ),
            (
                "sync added, syncs reordered",
                edit(|c| {
                    c.syncs.reverse();
                    c.syncs
                        .push(named("new", job("/srv/new", vec![local("/backup/new")])));
                }),
                vec![
                    (S::Unchanged, vec![T::Unchanged]),
                    (S::Unchanged, vec![T::Unchanged; 2]),
                    (S::Added, vec![T::Added]),
                ],
            ),
        ];
        for (name, new, want) in cases {
            let plan = diff(&base(), &new);
            let got: Vec<(S, Vec<T>)> = plan
                .syncs
                .iter()
                .map(|s| (s.change, s.targets.clone()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn local_target_moved_between_non_utf8_paths_is_moved() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let at = |bytes: &[u8]| {
            edit(|c| {
                web(c).targets[1].kind = TargetKind::Local {
                    path: PathBuf::from(OsString::from_vec(bytes.to_vec())),
                }
            })
        };
        let cases: [(&[u8], &[u8], TargetChange); 3] = [
            (b"/tmp/x\xff", b"/tmp/x\xfe", TargetChange::Moved),
            (b"/tmp/x\xff", b"/tmp/x\xff", TargetChange::Unchanged),
            (b"/tmp/x\xff", b"/tmp/x", TargetChange::Moved),
        ];
        for (old, new, want) in cases {
            let plan = diff(&at(old), &at(new));
            assert_eq!(
                plan.syncs[0].targets,
                [TargetChange::Unchanged, want],
                "{old:?} -> {new:?}"
            );
        }
    }

    #[test]
    fn a_metrics_file_set_or_moved_is_a_change_applied_in_place() {
        let on = edit(|c| c.metrics_file = Some("/var/lib/node-exporter/syncd.prom".into()));
        let plan = diff(&base(), &on);
        assert!(plan.metrics_file_changed && !plan.is_noop());
        assert!(plan
            .summary(std::path::Path::new("/etc/syncd/syncd.toml"))
            .ends_with(", metrics_file changed"));
        assert!(diff(&on, &on).is_noop());
        assert!(diff(&on, &base()).metrics_file_changed, "turned off");
    }

    #[test]
    fn removals_and_flags() {
        let new = edit(|c| {
            c.syncs.remove(1);
            web(c).targets.remove(0);
            c.state_dir = "/tmp/other".into();
        });
        let plan = diff(&base(), &new);
        assert_eq!(plan.removed_syncs, vec!["logs".to_string()]);
        assert_eq!(plan.syncs[0].removed_targets, vec!["a".to_string()]);
        assert_eq!(plan.syncs[0].change, SyncChange::Updated);
        assert!(plan.state_dir_changed);
        assert!(!plan.status_file_changed);
        assert!(!plan.is_noop());
        assert!(diff(&base(), &base()).is_noop());
    }

    #[test]
    fn hooks_compared_by_value_and_include_patterns() {
        let hook = |include: &[&str]| CommandHook {
            argv: vec!["/bin/true".into()],
            include: Some(ExcludeSet::new(include).expect("regex")),
            timeout: Duration::from_secs(5),
        };
        let with = |h: CommandHook| edit(|c| web(c).hooks.command = Some(h));
        let a = with(hook(&[r"\.php$"]));
        assert!(!diff(&a, &with(hook(&[r"\.php$"]))).syncs[0].hooks_changed);
        assert!(diff(&a, &with(hook(&[r"\.html$"]))).syncs[0].hooks_changed);
        assert!(diff(&a, &base()).syncs[0].hooks_changed);
        assert!(!diff(&base(), &base()).syncs[0].hooks_changed);
    }

    #[test]
    fn summary_lines() {
        let path = Path::new("/etc/syncd/syncd.toml");
        let cases = [
            (
                base(),
                "reloaded /etc/syncd/syncd.toml: 2 syncs unchanged, 0 updated, 0 rewatched",
            ),
            (
                edit(|c| web(c).targets.push(target("c", local("/backup/c").kind))),
                "reloaded /etc/syncd/syncd.toml: 1 sync unchanged, 1 updated, 0 rewatched, 1 target added",
            ),
            (
                edit(|c| {
                    c.syncs.remove(1);
                    web(c).exclude = ExcludeSet::new(&["x"]).expect("regex");
                    web(c).targets[0].kind = daemon("10.0.0.2", "web", None);
                    web(c).targets.remove(1);
                    c.syncs.push(named("n1", job("/n1", vec![local("/b/n1")])));
                    c.syncs.push(named("n2", job("/n2", vec![local("/b/n2")])));
                }),
                "reloaded /etc/syncd/syncd.toml: 0 syncs unchanged, 0 updated, 1 rewatched, \
                 2 syncs added, 1 sync removed, 1 target updated, 1 target removed",
            ),
        ];
        for (new, want) in cases {
            assert_eq!(diff(&base(), &new).summary(path), want);
        }
    }
}
