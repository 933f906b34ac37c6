//! `syncd-worker`: the sync engine in the foreground. Parses flags, loads the config,
//! runs the engine (or, with `--once`, one push of what is pending); exit 0 on a clean
//! stop (`--once`: everything pushed), 1 on a runtime failure (`--once`: something was
//! not pushed), 2 on a bad config ([`WorkerExit`], the codes the controller acts on).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use syncd_worker::contract::WorkerExit;
use syncd_worker::engine::Overrides;

/// syncd's sync engine: watches the configured trees with inotify and pushes every change
/// to the rsync targets in batches. Normally started by the `syncd` controller; run it by
/// hand to debug or under a supervisor. Logs go to stderr (with sd-daemon(3) priority
/// prefixes instead of timestamps when stderr is systemd's journal: $JOURNAL_STREAM); SIGTERM or Ctrl-C finishes the
/// push in flight, saves what is pending to the fail log, and exits 0. SIGHUP re-reads the
/// config file (with these flags applied again, except --initial-sync) and adjusts to it;
/// an invalid file is logged and the running configuration kept. SIGUSR1 pushes
/// everything pending at once; SIGUSR2 pushes every tree whole.
#[derive(Parser, Debug)]
#[command(
    name = "syncd-worker",
    version,
    // The man page's NAME line and `-h`; `--help` shows the whole comment above.
    about = "syncd's sync engine: inotify watch + batched rsync pushes"
)]
struct Cli {
    /// Config file: syncd TOML, or sersync's confxml.xml (detected by `.xml` or a leading `<`).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/syncd/syncd.toml"
    )]
    config: PathBuf,
    /// Only validate the config: print warnings, exit 0 if it is usable, 2 if not.
    #[arg(long)]
    check: bool,
    /// Push every tree whole once the watches are in place (sersync's -r).
    #[arg(long)]
    initial_sync: bool,
    /// Parallel rsync runs per target for split batches (sersync's -n), 1 to 64.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: Option<u16>,
    /// Directory for the fail log and status file (overrides `state_dir`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Push once and exit, without watching: what the fail logs hold (every tree whole
    /// with --full), with a progress bar on a terminal. Exit 0 when everything was
    /// pushed, 1 when something failed (it stays in the fail log). Refuses to run beside
    /// a worker that uses the same state directory.
    #[arg(long)]
    once: bool,
    /// With --once: push every tree whole, not just the fail logs' entries.
    #[arg(long, requires = "once")]
    full: bool,
    /// With --full: push past the deletion guard (`max_delete`) and from the source as it
    /// is now, even when it is not the directory the daemon watched. Check the source
    /// first.
    #[arg(long, requires = "full")]
    force: bool,
    /// Private copies of the password files, put here (named by the path they copy) by
    /// the `syncd` controller when the worker runs as `user` and may not read the
    /// originals: a target's `password_file` is read from its copy when there is one.
    #[arg(long, value_name = "DIR")]
    password_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// Internal, set by the `syncd` controller: stdin is a socket on which it sends a
    /// new log descriptor after `syncd reopen-logs`; it replaces stdout and stderr.
    #[arg(long, hide = true, conflicts_with = "once")]
    log_channel: bool,
    /// Packaging: write the man page syncd-worker.1 into DIR and exit.
    #[arg(long, value_name = "DIR", hide = true)]
    gen_man: Option<PathBuf>,
}

/// Write `dir/syncd-worker.1` from the clap definition above (for `packaging/build`).
fn gen_man(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}: check the path and its permissions",
            dir.display()
        )
    })?;
    let path = dir.join("syncd-worker.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the syncd-worker man page")?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn main() -> ExitCode {
    // A hook's guard is this binary too: it must not parse the worker's flags.
    if let Some(code) = syncd_worker::hooks::guard::run_if_asked() {
        return code;
    }
    syncd_worker::hooks::guard::enable();
    let cli = Cli::parse();
    if let Some(dir) = &cli.gen_man {
        return match gen_man(dir) {
            Ok(path) => {
                println!("{}", path.display());
                WorkerExit::Clean.into()
            }
            Err(e) => {
                eprintln!("syncd-worker: {e:#}");
                WorkerExit::Failed.into()
            }
        };
    }
    let level = match syncd_worker::logger::parse_level(&cli.log_level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("syncd-worker: {e}");
            return WorkerExit::BadConfig.into();
        }
    };
    if let Err(e) = syncd_worker::logger::init(level) {
        eprintln!("syncd-worker: {e:#}");
        return WorkerExit::Failed.into();
    }
    let mut config = match syncd_worker::config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            syncd_worker::logger::last_word(
                log::Level::Error,
                &format!("syncd-worker: invalid configuration:\n{e}"),
            );
            return WorkerExit::BadConfig.into();
        }
    };
    let overrides = Overrides {
        state_dir: cli.state_dir,
        threads: cli.threads.map(usize::from),
        password_dir: cli.password_dir,
    };
    overrides.apply(&mut config);
    for job in &mut config.syncs {
        job.initial_sync |= cli.initial_sync;
    }
    if cli.check {
        for w in &config.warnings {
            println!("warning: {w}");
        }
        let targets: usize = config.syncs.iter().map(|s| s.targets.len()).sum();
        println!(
            "{}: OK ({} sync{}, {} target{})",
            cli.config.display(),
            config.syncs.len(),
            if config.syncs.len() == 1 { "" } else { "s" },
            targets,
            if targets == 1 { "" } else { "s" }
        );
        return WorkerExit::Clean.into();
    }
    if cli.once {
        return match syncd_worker::once::run(&config, cli.full, cli.force) {
            Ok(true) => WorkerExit::Clean.into(),
            Ok(false) => WorkerExit::Failed.into(),
            Err(e) => {
                log::error!("{e:#}");
                WorkerExit::Failed.into()
            }
        };
    }
    match syncd_worker::engine::run(config, overrides, cli.log_channel) {
        Ok(()) => WorkerExit::Clean.into(),
        Err(e) => {
            log::error!("{e:#}");
            WorkerExit::Failed.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller builds the worker's command line with `contract::WorkerCommandLine`: every
    /// field must reach the same field here.
    #[test]
    fn parses_the_command_line_the_controller_builds() {
        use syncd_worker::contract::{Once, WorkerCommandLine};
        let cases = [
            WorkerCommandLine {
                config: "/etc/syncd/syncd.toml".into(),
                log_level: "debug".into(),
                ..WorkerCommandLine::default()
            },
            WorkerCommandLine {
                config: "/c.xml".into(),
                log_level: "warn".into(),
                state_dir: Some("/tmp/state dir".into()),
                initial_sync: true,
                threads: Some(64),
                once: None,
                password_dir: Some("/var/lib/syncd/secrets".into()),
                log_channel: true,
            },
            WorkerCommandLine {
                config: "c.toml".into(),
                log_level: "info".into(),
                once: Some(Once::default()),
                ..WorkerCommandLine::default()
            },
            WorkerCommandLine {
                config: "c.toml".into(),
                log_level: "info".into(),
                once: Some(Once {
                    full: true,
                    force: true,
                }),
                ..WorkerCommandLine::default()
            },
        ];
        for want in cases {
            let argv = std::iter::once("syncd-worker".into()).chain(want.to_args());
            let cli = Cli::try_parse_from(argv).expect("the worker accepts it");
            let got = WorkerCommandLine {
                config: cli.config,
                log_level: cli.log_level,
                state_dir: cli.state_dir,
                initial_sync: cli.initial_sync,
                threads: cli.threads,
                once: cli.once.then_some(Once {
                    full: cli.full,
                    force: cli.force,
                }),
                password_dir: cli.password_dir,
                log_channel: cli.log_channel,
            };
            assert_eq!(got, want);
            assert!(!cli.check && cli.gen_man.is_none());
        }
    }

    #[test]
    fn gen_man_writes_one_page_with_the_visible_flags_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = gen_man(&dir.path().join("dist")).expect("gen_man");
        assert_eq!(path, dir.path().join("dist/syncd-worker.1"));
        let page = std::fs::read_to_string(&path).expect("read page");
        assert!(page.starts_with(".ie"), "not roff");
        assert!(page.contains("syncd\\-worker"), "no NAME:\n{page}");
        assert!(page.contains("\\-\\-once"), "no --once:\n{page}");
        assert!(!page.contains("gen\\-man"), "hidden flag leaked:\n{page}");
        // NAME is one short line (what whatis/apropos show), not the whole description.
        let name: Vec<&str> = page
            .lines()
            .skip_while(|l| *l != ".SH NAME")
            .skip(1)
            .take_while(|l| !l.starts_with(".SH"))
            .collect();
        assert_eq!(name.len(), 1, "NAME: {name:?}");
        assert!(
            name[0].starts_with("syncd\\-worker \\- ") && name[0].len() <= 80,
            "NAME line: {:?}",
            name[0]
        );
    }
}
