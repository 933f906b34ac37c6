//! From the parsed command line to the command that runs: turns sersync's flags into a
//! command, loads the config where the command needs it (an invalid one is exit 6,
//! LSB "not configured", with the loader's message naming file, line and fix), resolves
//! the settings and calls the module that owns the command.

use std::path::Path;
use std::process::ExitCode;

use syncd_worker::config::{Config, ConfigError};

use crate::cli::{Cli, Command, GlobalArgs, StartArgs, WorkerArgs};
use crate::settings::{config_path, Settings, DEFAULT_CONFIG};

/// LSB: program is not configured.
pub const EXIT_BAD_CONFIG: u8 = 6;
/// Bad usage.
pub const EXIT_USAGE: u8 = 2;
/// LSB: program is not running (`reload` with no daemon).
pub const EXIT_NOT_RUNNING: u8 = 7;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let level = match syncd_worker::logger::parse_level(&cli.global.log_level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("syncd: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    syncd_worker::logger::init(level)?;
    let mut global = cli.global.clone();
    let s = &cli.sersync;
    let sersync_used = s.sersync_daemon
        || s.sersync_initial_sync
        || s.sersync_threads.is_some()
        || s.sersync_config.is_some();
    let command = match cli.command {
        Some(c) => {
            if sersync_used {
                eprintln!("syncd: sersync's flags -d -r -n -o go without a command, e.g. `syncd -d -r -o /etc/confxml.xml`; with a command use --config, --initial-sync, --threads");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            c
        }
        None if sersync_used => {
            if let Some(c) = &s.sersync_config {
                if global.config.as_ref().is_some_and(|g| g != c) {
                    eprintln!("syncd: -o and --config name different files; give one");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
                global.config = Some(c.clone());
            }
            let worker = WorkerArgs {
                initial_sync: s.sersync_initial_sync,
                threads: s.sersync_threads,
                lock_fd: None,
            };
            if s.sersync_daemon {
                Command::Start(StartArgs {
                    worker,
                    wait: std::time::Duration::from_secs(300),
                })
            } else {
                Command::Run(worker)
            }
        }
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    match command {
        Command::Start(args) => {
            let Some((settings, _)) = with_config(&global)? else {
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            crate::start::start(&settings, &args)
        }
        Command::Run(args) => {
            let Some((settings, config)) = with_config(&global)? else {
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            crate::supervise::run(&settings, config, &args)
        }
        Command::Restart(args) => {
            let Some((settings, _)) = with_config(&global)? else {
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            let code = crate::stop::stop(&settings, args.timeout)?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            crate::start::start(&settings, &args.start)
        }
        Command::Reload => {
            let Some((settings, config)) = with_config(&global)? else {
                eprintln!("reload refused: the running syncd keeps its current configuration");
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            crate::stop::reload(&settings, &config)
        }
        Command::ReopenLogs => crate::stop::reopen_logs(&without_config(&global)?),
        Command::Stop(args) => crate::stop::stop(&without_config(&global)?, args.timeout),
        Command::Status(args) if args.check => Ok(crate::report::check(
            without_config(&global),
            crate::plugin::Limits {
                warn_lag: args.warn_lag,
                crit_lag: args.crit_lag,
            },
        )),
        Command::Status(args) => crate::report::status(&without_config(&global)?, args.json),
        Command::Check => {
            let Some((settings, config)) = with_config(&global)? else {
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            crate::check::run(&settings, &config)
        }
        Command::Sync(args) => {
            let Some((settings, config)) = with_config(&global)? else {
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            crate::sync::run(&settings, &config, args.full, args.force)
        }
        Command::Verify(args) => {
            let Some((settings, config)) = with_config(&global)? else {
                return Ok(ExitCode::from(EXIT_BAD_CONFIG));
            };
            crate::verify::run(
                &settings,
                &config,
                crate::verify::Request {
                    deep: args.deep,
                    fix: args.fix,
                    json: args.json,
                    show: args.show,
                },
                args.password_dir.as_deref(),
            )
        }
        Command::ProbeAccess => crate::check::as_user::serve(),
        Command::GenAssets(args) => {
            for path in crate::assets::generate(&args.dir)? {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Load the config at `path`; `given`: the user named it (`--config`, `-o`), else it is
/// the default, and a missing one gets the default's name and where a template is.
fn load_config(path: &Path, given: bool) -> Result<Config, ConfigError> {
    if given {
        return syncd_worker::config::load(path);
    }
    syncd_worker::config::load_with_hint(
        path,
        vec![
            format!("no --config was given, so syncd read the default {DEFAULT_CONFIG}"),
            format!(
                "write it from the template init/syncd.toml of the source tree (every key \
                 explained; the packages install it as {DEFAULT_CONFIG}, and an example for \
                 an NFS server as {NFS_EXAMPLE}), or name another file: syncd --config FILE"
            ),
        ],
    )
}

/// Where the packages put the example config for an NFS server (packaging/build).
const NFS_EXAMPLE: &str = "/usr/share/doc/syncd/examples/syncd-nfs.toml";

/// Load the config; print the loader's message and return None when it is invalid.
fn with_config(global: &GlobalArgs) -> anyhow::Result<Option<(Settings, Config)>> {
    let path = config_path(global);
    match load_config(&path, global.config.is_some()) {
        Ok(config) => {
            let settings = Settings::resolve(global, Some(&config))?;
            Ok(Some((settings, config)))
        }
        Err(e) => {
            syncd_worker::logger::last_word(
                log::Level::Error,
                &format!("syncd: invalid configuration:\n{e}"),
            );
            Ok(None)
        }
    }
}

/// `stop` and `status` must work with a broken or missing config: use it for the paths
/// when it loads, else the flags and defaults (and say so).
fn without_config(global: &GlobalArgs) -> anyhow::Result<Settings> {
    let path = config_path(global);
    match load_config(&path, global.config.is_some()) {
        Ok(config) => Settings::resolve(global, Some(&config)),
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("");
            // The paths it names still count: the syncd running was started with them.
            let paths = std::fs::read(&path)
                .ok()
                .and_then(|text| syncd_worker::config::paths_only(&text));
            let from = if paths.is_some() {
                "the paths it names, then flags and defaults"
            } else {
                "the pidfile and state paths from flags and defaults"
            };
            eprintln!(
                "syncd: note: cannot use {} ({first}); using {from}",
                path.display()
            );
            match paths {
                Some(p) => Settings::resolve_lenient(global, &p),
                None => Settings::resolve(global, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_config_says_whether_it_was_given_or_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("syncd.toml");
        let given = load_config(&path, true)
            .expect_err("no such file")
            .to_string();
        assert!(
            given.contains(&path.display().to_string())
                && given.contains("check the path given with --config"),
            "{given}"
        );
        let default = load_config(&path, false)
            .expect_err("no such file")
            .to_string();
        assert!(
            !default.contains("the path given with --config")
                && default.contains(&format!(
                    "no --config was given, so syncd read the default {DEFAULT_CONFIG}"
                ))
                && default.contains("template init/syncd.toml")
                && default.contains(NFS_EXAMPLE),
            "{default}"
        );
    }
}
