//! syncd's end-to-end tests: a real `rsync --daemon` on 127.0.0.1, the real `syncd-worker`
//! and `syncd` binaries, real files. One test binary; the table of contents is below. Build
//! the workspace first (`cargo build --workspace`), then `cargo test -p syncd-tests`.

/// The harness proves itself with plain rsync, no syncd.
mod harness_selftest;

/// A daemon module with `max connections = 1`: parallel runs, busy from the start.
mod busy;
/// Restart after a clean stop, or after SIGKILL once a running checkpoint vouches,
/// catches up by ctime, not by a full sync; after SIGKILL before any checkpoint, full.
mod catchup;
/// Bursts, deletes, renames, the new-dir race, hard names, tree mode.
mod changes;
/// The controller `syncd`: start/stop/status, stale pidfiles, reload and SIGHUP, bad
/// configs, sersync's flags, `syncd run` with `$NOTIFY_SOCKET`.
mod controller;
/// Damaged state files (fail log, clean-stop record) are set aside and answered by a
/// whole-tree push; the worker still starts.
mod damaged_state;
/// New symlinks, hard links, empty files, chmod — each alone.
mod events;
/// Excluded paths never reach the target and are not deleted there.
mod excludes;
/// A path that keeps failing is retried on its own; the target's other changes go on.
mod failing;
/// Fault injection, one test per fault ("Never destroy the backup"): kill -9 of the
/// worker, of both processes, `syncd stop` mid-burst, the daemon down, busy or full, an
/// inotify overflow and the watch limit (sysctls changed under the exclusive lock), the
/// source unmounted, swapped, unreadable, changing under a push, the deletion guard.
/// Each records a row for `scripts/faults` (`SYNCD_FAULTS_REPORT`).
mod faults;
/// fanotify on xfs and btrfs (one mark), a btrfs subvolume (inotify under auto, why).
mod filesystems;
/// No hook outlives the worker (SIGKILL, two stop signals) or its timeout, nor does
/// anything it started, in its process group or not.
mod hooks;
/// `init/syncd.init` with the real controller: LSB codes, the subsys lock, function
/// libraries, a removed binary, the chkconfig/LSB header; the example configs load.
mod initscript;
/// Logs: sd-daemon priority prefixes when stderr is the journal, timestamps elsewhere;
/// `syncd reopen-logs` after a rotation (nothing lost, the new file's owner and mode).
mod logs;
/// `metrics_file`: Prometheus text read back with a strict parser — pushes, a target
/// down (failures, lag, degraded), and no rewrite while the worker is idle.
mod metrics;
/// Directories moved in from outside and out of the tree.
mod moves;
/// Push now: `syncd-worker --once [--full]` (fail-log replay, whole-tree push with
/// progress, no rsync left behind by a SIGKILLed worker) and SIGUSR1/SIGUSR2.
mod oneshot;
/// A directory swapped for a symlink out of the source while a path below it waits (for
/// its retry, or in the fail log for `--once`): nothing is read through it, the symlink is pushed.
mod parents;
/// Periodic full sync and the command hook.
mod periodic;
/// A second push beside a slow one: a small file overtakes a big push, a file changed
/// during its own push goes again after it, a one-connection daemon gets it all in order.
mod pipeline;
/// `syncd status --check` (Nagios/Icinga plugin): exit 2 stopped, 0 in step, 1 then 2
/// while the target's daemon is down and the lag grows, 0 when it is back.
mod plugin;
/// SIGHUP: exclude, target and source changed in place; an invalid new config is refused.
mod reload;
/// A directory renamed in the source is seeded from the target's old copy, not sent
/// again (bytes from the daemon's log); no basis, another parent, a local target.
mod renames;
/// Never destroy the backup: excludes mean the same in every push, `-u` dropped.
mod safety;
/// No secret in any process the worker starts (command line, environment), nor in the
/// status or log; a password written into a destination is refused without showing it.
mod secrets;
/// The source not mounted at a restart: nothing pushed from the wrong directory, status
/// degraded, resumes when it is back.
mod source;
/// ssh targets against a real sshd: burst, deletes, renames, hostile names, no key
/// material in argv, a refused key and a changed or unknown host key.
mod ssh;
/// Initial sync, sersync confxml.xml, bad configs.
mod startup;
/// Other local users against the lock and the notify sockets: `nobody` cannot hold the
/// lock, a stranger holding it is not a running syncd, a stranger's READY=1 is dropped.
mod strangers;
/// Supervision: worker or controller killed with SIGKILL, stop during a burst, inotify
/// sysctls raised at start (changes a sysctl under the exclusive lock).
mod supervision;
/// `syncd sync [--full]`: the worker run once without a daemon, a push now through one.
mod sync_now;
/// Target down and up, several targets, restart with pending changes.
mod targets;
/// `user = "nobody"`: the worker and its rsync without root, the state directory and
/// password file handed over, reload in place, a changed `user` refused.
mod unprivileged;
/// `syncd verify [--deep] [--fix]`: drift made on purpose (deleted, same-size change,
/// added) found by the right mode and fixed; a local target; exit 2 for a stopped
/// daemon; a file written while syncd runs is "changing", not drift.
mod verify;
/// The worker out of inotify watches asks the controller, which raises the limit (at the
/// start, when the tree grows); with `SYNCD_NO_SYSCTL`, degraded as before (changes a
/// sysctl under the exclusive lock).
mod watch_limit;
