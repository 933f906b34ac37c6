//! `syncd`: the controller. Parses the command line and dispatches; see `syncd --help`.

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{signal, SigHandler, Signal};

fn main() -> ExitCode {
    let cli = syncd::cli::Cli::parse();
    if !matches!(cli.command, Some(syncd::cli::Command::Run(_))) {
        // A command whose output is piped into `head` or `grep -q` should end quietly when
        // the reader goes away, as other Unix tools do, not panic in println!. The daemon
        // (`run`) keeps Rust's default (SIGPIPE ignored, EPIPE as an error).
        // SAFETY: SIG_DFL installs no handler (no code runs in signal context); called
        // before any thread exists. nix has no safe wrapper for signal(2).
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }
    match syncd::dispatch::run(cli) {
        Ok(code) => code,
        Err(e) => {
            syncd_worker::logger::last_word(log::Level::Error, &format!("syncd: {e:#}"));
            log::debug!("{e:?}");
            ExitCode::FAILURE
        }
    }
}
