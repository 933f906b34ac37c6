//! `sd-notify-send SOCKET MESSAGE`: send one sd_notify datagram (`@name` = abstract) from
//! an unbound socket, as any process may — the stranger of the tests that check who
//! syncd takes notifications from (run under `setpriv` to send as another user). Exit 0
//! once sent, 1 with the reason otherwise. Not a test.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [socket, message] = args.as_slice() else {
        eprintln!("usage: sd-notify-send SOCKET MESSAGE");
        return ExitCode::from(2);
    };
    let message = message.to_string_lossy().replace("\\n", "\n");
    match syncd_worker::notify::send_to(socket, &message) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "sd-notify-send: cannot send to {}: {e}",
                socket.to_string_lossy()
            );
            ExitCode::FAILURE
        }
    }
}
