//! `syncd`: the controller. Parses the command line and dispatches; see `syncd --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = syncd::cli::Cli::parse();
    match syncd::dispatch::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("syncd: {e:#}");
            log::debug!("{e:?}");
            ExitCode::FAILURE
        }
    }
}
