//! `syncd`: the controller. Parses the command line and dispatches; see `syncd --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::SUCCESS
}
