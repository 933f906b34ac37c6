//! Asking the controller for inotify watches: the worker that runs out (`ENOSPC` from
//! `inotify_add_watch`) may not write sysctls itself (it may run unprivileged), so it asks
//! the controller on the notify socket it already reports READY on
//! ([`crate::contract::WATCHES_REQUEST`]), sending from a socket of its own, and waits
//! there, at most [`ANSWER_WAIT`], for the answer ([`crate::contract::WATCHES_LIMIT`]);
//! only an answer from its parent (the controller: the kernel names the sender) counts.
//! Whatever the answer says, the limit is then read from `/proc` again: that is what
//! decides whether the missing watches are tried again.
//!
//! Without `$NOTIFY_SOCKET` (the worker run by hand or by a test) there is no one to ask.
//! Under a controller that does not know the request (an older one, or systemd itself) no
//! answer comes: the wait ends after [`ANSWER_WAIT`] and the worker goes on as it would
//! have without asking. A stop (the watcher's wake-up pipe) ends the wait at once.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::contract::{WATCHES_LIMIT, WATCHES_REQUEST};
use crate::notify::{self, Listener};
use crate::status::WatchesAsked;

/// Where the limit is read.
pub const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

/// The longest wait for the controller's answer (it writes two sysctls and, with
/// `persist`, one small file: milliseconds).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The controller's socket, if there is one to ask.
pub fn controller() -> Option<OsString> {
    std::env::var_os(notify::ENV).filter(|s| !s.is_empty())
}

/// The limit now (None: unreadable).
pub fn limit_now() -> Option<u64> {
    crate::watch::read_sysctl(MAX_USER_WATCHES)
}

/// Ask the controller at `to` for `needed` watches, the limit being `before`, and wait for
/// its answer (or [`ANSWER_WAIT`], or `wake`). None: the request could not be sent.
pub fn ask(
    to: &OsString,
    needed: u64,
    before: Option<u64>,
    wake: Option<BorrowedFd<'_>>,
) -> Option<WatchesAsked> {
    let socket = match Listener::bind("watches") {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot make a socket to ask the controller for inotify watches: {e}");
            return None;
        }
    };
    if let Err(e) = socket.send_to(to, &format!("{WATCHES_REQUEST}={needed}")) {
        log::warn!("cannot ask the controller for inotify watches: {e}");
        return None;
    }
    let parent = nix::unistd::getppid().as_raw();
    let answered = wait_for_answer(&socket, parent, wake, Instant::now() + ANSWER_WAIT);
    Some(WatchesAsked {
        asked_for: needed,
        limit_before: before,
        limit_after: limit_now(),
        answered,
    })
}

/// Wait until the process `from` (the controller) answers on `socket` (true), `wake` is
/// readable or `until` passed (false).
fn wait_for_answer(
    socket: &Listener,
    from: i32,
    wake: Option<BorrowedFd<'_>>,
    until: Instant,
) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = vec![PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        fds.extend(wake.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log::warn!("waiting for the controller's answer: poll failed: {e}");
                return false;
            }
        }
        let ready = |i: usize| fds.get(i).and_then(PollFd::any).unwrap_or(false);
        if ready(1) {
            return false; // stopping
        }
        if !ready(0) {
            continue;
        }
        match socket.recv(Some(Duration::from_millis(1))) {
            Ok(Some(m))
                if m.pid.and_then(|p| i32::try_from(p).ok()) == Some(from)
                    && m.get(WATCHES_LIMIT).is_some() =>
            {
                return true;
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!("waiting for the controller's answer: {e}");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn me() -> i32 {
        i32::try_from(std::process::id()).expect("pid")
    }

    #[test]
    fn only_the_controllers_answer_ends_the_wait() {
        let socket = Listener::bind("test-ask").expect("bind");
        let to = OsStr::new(socket.name());
        // From another process than the one asked (pid 1 here): not an answer.
        notify::send_to(to, &format!("{WATCHES_LIMIT}=65536")).expect("send");
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(!wait_for_answer(&socket, 1, None, soon));
        // From the one asked, but without the answer's key: not an answer either.
        notify::send_to(to, "STATUS=x").expect("send");
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(!wait_for_answer(&socket, me(), None, soon));
        notify::send_to(to, &format!("{WATCHES_LIMIT}=65536")).expect("send");
        let later = Instant::now() + Duration::from_secs(10);
        assert!(wait_for_answer(&socket, me(), None, later));
    }

    #[test]
    fn a_wake_up_ends_the_wait_at_once() {
        let socket = Listener::bind("test-ask").expect("bind");
        let (rx, tx) = nix::unistd::pipe().expect("pipe");
        nix::unistd::write(&tx, &[1]).expect("write");
        // Returns (false) rather than waiting out the ten minutes.
        let until = Instant::now() + Duration::from_secs(600);
        assert!(!wait_for_answer(&socket, me(), Some(rx.as_fd()), until));
    }
}
