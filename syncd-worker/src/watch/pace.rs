//! What both watchers (inotify and fanotify) do the same way around the kernel's queue:
//! the pacing of reads ([`READ_GAP`](super::READ_GAP)), the wait for their descriptor
//! or one of the thread's other descriptors, and the no-sleep look that says the queue
//! is empty.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::translate::Translator;
use super::READ_GAP;
use crate::deadline::after;
use crate::queue::Change;

/// What a watcher (inotify's, fanotify's) gives the read loop both share.
pub trait Adapter {
    /// What its descriptor is called in an error ("inotify descriptor").
    const QUEUE: &'static str;
    /// The kernel's queue of events.
    fn queue_fd(&self) -> BorrowedFd<'_>;
    fn pace(&mut self) -> &mut Pace;
    fn core(&self) -> &Translator;
    /// Read and translate every event queued now; how many there were.
    fn read_available(&mut self, out: &mut Vec<Change>) -> anyhow::Result<usize>;
    /// Let the translator release what is due (held moves, new files past their wait).
    fn tick(&mut self, out: &mut Vec<Change>);
}

/// Wait up to `timeout` for events (paced, see [`Pace::before_wait`]) and translate them
/// into `out`, also returning early when one of `also` is ready (the thread's wake-up
/// pipe, the source path's watch). Returns the `revents` of `also`, in order.
pub fn poll_or_woken<A: Adapter>(
    a: &mut A,
    timeout: Duration,
    also: &[PollFd<'_>],
    out: &mut Vec<Change>,
) -> anyhow::Result<Vec<PollFlags>> {
    let deadline = a.core().next_deadline();
    let wait = match a.pace().before_wait(deadline, timeout, also)? {
        Ok(wait) => wait,
        Err(woken) => return Ok(woken),
    };
    let (readable, woken) = readable(a.queue_fd(), wait, also, A::QUEUE)?;
    let read = if readable { a.read_available(out)? } else { 0 };
    a.pace().read(read);
    a.tick(out);
    Ok(woken)
}

/// True when every event the kernel queued before this call has already come out as
/// changes: the queue is empty and the translator holds nothing back (no half of a move,
/// no new file waiting for its close). With a zero timeout `poll(2)` does not sleep, so
/// a signal cannot make an unread queue look empty.
pub fn caught_up<A: Adapter>(a: &A) -> bool {
    a.core().settled()
        && matches!(
            readable(a.queue_fd(), Duration::ZERO, &[], A::QUEUE),
            Ok((false, _))
        )
}

/// When the last read that found events ended.
#[derive(Debug, Default)]
pub struct Pace {
    last_read: Option<Instant>,
}

impl Pace {
    /// How long to wait for events: `timeout`, cut to the translator's next `deadline`,
    /// after first waiting out the gap since the last read that found events (unless one
    /// of `also` wants the thread first: then `Err` with their `revents`, in order).
    pub fn before_wait(
        &self,
        deadline: Option<Instant>,
        timeout: Duration,
        also: &[PollFd<'_>],
    ) -> anyhow::Result<Result<Duration, Vec<PollFlags>>> {
        let now = Instant::now();
        let mut wait = match deadline {
            Some(at) => timeout.min(at.saturating_duration_since(now)),
            None => timeout,
        };
        let gap = self.last_read.map_or(Duration::ZERO, |r| {
            after(r, READ_GAP).saturating_duration_since(now)
        });
        if !gap.is_zero() {
            // Let the events of a stream gather: wait out the gap, unless one of `also`
            // (a wake-up to stop, the source path's watch) wants the thread first.
            let pause = gap.min(wait);
            if let Some(woken) = poll_also(pause, also)? {
                return Ok(Err(woken));
            }
            wait -= pause;
        }
        Ok(Ok(wait))
    }

    /// A read found `events` events (0: none).
    pub fn read(&mut self, events: usize) {
        self.last_read = (events > 0).then(Instant::now);
    }
}

/// Is `fd` readable within `timeout`; and the `revents` of `also`. `what` names the
/// descriptor in an error.
pub fn readable(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    also: &[PollFd<'_>],
    what: &str,
) -> anyhow::Result<(bool, Vec<PollFlags>)> {
    let mut fds = vec![PollFd::new(fd, PollFlags::POLLIN)];
    fds.extend(also.iter().cloned());
    // Too long for poll(2) (Duration::MAX: nothing due): block until an event.
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::NONE);
    match nix::poll::poll(&mut fds, timeout) {
        Ok(_) => Ok((
            fds[0].any().unwrap_or(false),
            fds[1..]
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect(),
        )),
        Err(Errno::EINTR) => Ok((false, vec![PollFlags::empty(); also.len()])),
        Err(e) => Err(io::Error::from(e)).with_context(|| format!("poll on the {what} failed")),
    }
}

/// Wait up to `timeout` for one of `also`: Some(their `revents`, in order) when one
/// became ready, None when the time ran out (with nothing to wait on, a plain sleep).
fn poll_also(timeout: Duration, also: &[PollFd<'_>]) -> anyhow::Result<Option<Vec<PollFlags>>> {
    if also.is_empty() {
        std::thread::sleep(timeout);
        return Ok(None);
    }
    let mut fds = also.to_vec();
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::NONE);
    match nix::poll::poll(&mut fds, timeout) {
        Ok(0) | Err(Errno::EINTR) => Ok(None),
        Ok(_) => Ok(Some(
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect(),
        )),
        Err(e) => Err(io::Error::from(e)).context("poll while pacing event reads failed"),
    }
}
