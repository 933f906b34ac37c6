//! What the controller will do, decided once from the flags and the config: the paths
//! of the pidfile, lock, log, state and status files, the worker binary, the config
//! file. Nothing below this module looks at clap types; this module does no I/O beyond
//! loading the config and finding the worker binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use syncd_worker::config::{Config, ConfigPaths};
use syncd_worker::state_dir::StateDir;

use crate::cli::GlobalArgs;

pub const DEFAULT_CONFIG: &str = "/etc/syncd/syncd.toml";
pub const DEFAULT_PIDFILE: &str = "/run/syncd/syncd.pid";
pub const DEFAULT_LOG_FILE: &str = "/var/log/syncd/syncd.log";
pub use syncd_worker::config::DEFAULT_STATE_DIR;

/// The resolved paths and options every command works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Absolute path of the config file.
    pub config: PathBuf,
    pub pidfile: PathBuf,
    /// Beside the pidfile: `syncd.pid` → `syncd.lock`.
    pub lockfile: PathBuf,
    pub log_file: PathBuf,
    pub state_dir: PathBuf,
    /// `--state-dir` was given: passed on to the worker.
    pub state_dir_flag: bool,
    /// The worker's status file.
    pub status_file: PathBuf,
    /// The controller's own state file (`<state_dir>/controller.json`).
    pub controller_file: PathBuf,
    pub worker_bin: PathBuf,
    pub log_level: String,
}

impl Settings {
    /// Flags first, then the config (when it could be loaded), then the defaults.
    pub fn resolve(global: &GlobalArgs, config: Option<&Config>) -> anyhow::Result<Settings> {
        let paths = config.map(|c| ConfigPaths {
            pid_file: c.daemon.pid_file.clone(),
            log_file: c.daemon.log_file.clone(),
            state_dir: Some(c.state_dir.clone()),
            status_file: None,
        });
        Self::resolve_paths(global, paths.as_ref(), config)
    }

    /// [`Settings::resolve`] for a config that does not load: the paths it names
    /// ([`syncd_worker::config::paths_only`]), so `stop` and `status` find the syncd it
    /// started.
    pub fn resolve_lenient(global: &GlobalArgs, paths: &ConfigPaths) -> anyhow::Result<Settings> {
        Self::resolve_paths(global, Some(paths), None)
    }

    fn resolve_paths(
        global: &GlobalArgs,
        paths: Option<&ConfigPaths>,
        config: Option<&Config>,
    ) -> anyhow::Result<Settings> {
        let cwd = std::env::current_dir().context("failed to read the current directory")?;
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                cwd.join(p)
            }
        };
        let config_path = abs(config_path(global).as_path());
        let pidfile = abs(global
            .pidfile
            .as_deref()
            .or(paths.and_then(|p| p.pid_file.as_deref()))
            .unwrap_or(Path::new(DEFAULT_PIDFILE)));
        let log_file = abs(global
            .log_file
            .as_deref()
            .or(paths.and_then(|p| p.log_file.as_deref()))
            .unwrap_or(Path::new(DEFAULT_LOG_FILE)));
        let state_dir = abs(global
            .state_dir
            .as_deref()
            .or(paths.and_then(|p| p.state_dir.as_deref()))
            .unwrap_or(Path::new(DEFAULT_STATE_DIR)));
        let state = StateDir::at(&state_dir);
        // The worker's own rule for --state-dir.
        let status_file = match (config, paths.and_then(|p| p.status_file.as_ref())) {
            (Some(c), _) => c.status_file_in(&state_dir),
            (None, Some(named)) => named.clone(),
            (None, None) => state.status_file(),
        };
        Ok(Settings {
            config: config_path,
            lockfile: lockfile_for(&pidfile),
            pidfile,
            log_file,
            controller_file: state.controller_file(),
            state_dir_flag: global.state_dir.is_some(),
            state_dir,
            status_file,
            worker_bin: worker_bin(global.worker.as_deref())?,
            log_level: global.log_level.clone(),
        })
    }
}

impl Settings {
    /// The global flags that make another `syncd` (the daemon `start` launches, `verify`
    /// run again as `user`) resolve these same settings.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--config".into(),
            self.config.clone().into(),
            "--pidfile".into(),
            self.pidfile.clone().into(),
            "--log-file".into(),
            self.log_file.clone().into(),
            "--worker".into(),
            self.worker_bin.clone().into(),
            "--log-level".into(),
            self.log_level.clone().into(),
        ];
        if self.state_dir_flag {
            args.extend(["--state-dir".into(), self.state_dir.clone().into()]);
        }
        args
    }
}

/// `--config`, else the default.
pub fn config_path(global: &GlobalArgs) -> PathBuf {
    global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// The lock file beside a pidfile: same name, extension `.lock`.
pub fn lockfile_for(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("lock")
}

/// `--worker`, else `$SYNCD_WORKER`, else `syncd-worker` beside our own executable, else
/// the bare name (found on PATH when spawned).
fn worker_bin(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SYNCD_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("syncd-worker")));
    Ok(match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("syncd-worker"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile_sits_beside_the_pidfile() {
        assert_eq!(
            lockfile_for(Path::new("/run/syncd/syncd.pid")),
            Path::new("/run/syncd/syncd.lock")
        );
        assert_eq!(lockfile_for(Path::new("/tmp/x")), Path::new("/tmp/x.lock"));
    }

    #[test]
    fn flags_beat_defaults_and_relative_paths_become_absolute() {
        let g = GlobalArgs {
            pidfile: Some(PathBuf::from("rel/p.pid")),
            worker: Some(PathBuf::from("/opt/w")),
            ..GlobalArgs::default()
        };
        let s = Settings::resolve(&g, None).expect("resolve");
        assert!(s.pidfile.is_absolute() && s.pidfile.ends_with("rel/p.pid"));
        assert!(s.lockfile.ends_with("rel/p.lock"));
        assert_eq!(s.log_file, Path::new(DEFAULT_LOG_FILE));
        assert_eq!(s.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(s.status_file, Path::new("/var/lib/syncd/status.json"));
        assert_eq!(
            s.controller_file,
            Path::new("/var/lib/syncd/controller.json")
        );
        assert_eq!(s.worker_bin, Path::new("/opt/w"));
        assert_eq!(s.config, Path::new(DEFAULT_CONFIG));
        assert!(!s.state_dir_flag);
    }
}
