//! Signals become messages (both binaries): one thread, registered before any other
//! thread exists, hands each of the signals the two processes act on — the contract's
//! stop, reload and push requests, SIGINT, and the controller's reopen-logs request — to a callback that sends it into the
//! process's one channel. Nothing happens inside a handler.

use anyhow::Context;
use nix::sys::signal::Signal;

use crate::contract;

/// The signals both binaries handle.
pub const HANDLED: [Signal; 5] = [
    contract::STOP,
    Signal::SIGINT,
    contract::RELOAD,
    contract::PUSH_PENDING,
    contract::PUSH_FULL,
];

/// Start the thread that passes each signal of `handled` ([`HANDLED`], and the
/// controller's [`contract::REOPEN_LOGS`]) to `send`, until `send` returns false (the
/// receiving loop is gone).
pub fn forward(
    handled: &[Signal],
    send: impl Fn(Signal) -> bool + Send + 'static,
) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(handled.iter().map(|&s| s as i32))
        .context("failed to install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                // Only the signals registered above arrive, each a valid number.
                let Ok(sig) = Signal::try_from(s) else {
                    continue;
                };
                if !send(sig) {
                    break;
                }
            }
        })
        .context("failed to start the signal thread")?;
    Ok(())
}
