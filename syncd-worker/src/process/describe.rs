//! Words for how a child process ended, for log lines and status files: "exited with
//! code 1", "was killed by signal 9 (SIGKILL)". Pure.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// "exited with code 1", "was killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => format!("was killed by signal {sig}{}", signal_name(sig)),
        None => format!("ended ({status})"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match Signal::try_from(sig) {
        Ok(Signal::SIGKILL) => " (SIGKILL)",
        Ok(Signal::SIGTERM) => " (SIGTERM)",
        Ok(Signal::SIGSEGV) => " (SIGSEGV)",
        Ok(Signal::SIGABRT) => " (SIGABRT)",
        Ok(Signal::SIGINT) => " (SIGINT)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(1 << 8)),
            "exited with code 1"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(10)),
            "was killed by signal 10"
        );
    }
}
