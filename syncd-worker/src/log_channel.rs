//! How the controller replaces the running worker's log file (`syncd reopen-logs`): the
//! worker's stdin is one end of a Unix socket pair whose other end the controller keeps
//! ([`pair`]); after it has opened the log file again (it is root, the worker may not be
//! allowed to open it), it sends the new descriptor over it (`SCM_RIGHTS`,
//! [`Sender::send`]) and the worker's thread ([`serve_stdin`]) makes it its stdout and
//! stderr (`dup2`, atomic: a line goes wholly to the old file or wholly to the new one).
//! Children started after that inherit the new file. The thread blocks in `recvmsg`
//! without a timeout and ends when the controller's end closes. Owns no other state.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::Context;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::{fstat, SFlag};

/// The controller's end.
#[derive(Debug)]
pub struct Sender(UnixStream);

/// A new channel: the controller's end, and the worker's end as a file for its stdin.
pub fn pair() -> std::io::Result<(Sender, File)> {
    let (ours, theirs) = UnixStream::pair()?;
    Ok((Sender(ours), File::from(OwnedFd::from(theirs))))
}

impl Sender {
    /// Hand `log` to the worker (a copy of the descriptor: the caller keeps its own).
    /// Never blocks: a worker that does not read its end (stuck, or not ours to trust)
    /// cannot hold the controller up; its full buffer is an error here.
    pub fn send(&self, log: impl AsFd) -> std::io::Result<()> {
        let fds = [log.as_fd().as_raw_fd()];
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(b"L")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        Ok(())
    }
}

/// The worker's side: stdin must be the controller's socket (`--log-channel`); start
/// the thread that puts each descriptor received in place of stdout and stderr.
pub fn serve_stdin() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let st = fstat(stdin.as_fd()).context("--log-channel: cannot look at stdin")?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        anyhow::bail!(
            "--log-channel: stdin is not a socket; the flag is for the syncd controller, which passes its end of a socket pair"
        );
    }
    std::thread::Builder::new()
        .name("log-channel".into())
        .spawn(move || {
            while let Some(fd) = receive(stdin.as_fd().as_raw_fd()) {
                let placed =
                    nix::unistd::dup2_stdout(&fd).and_then(|()| nix::unistd::dup2_stderr(&fd));
                match placed {
                    Ok(()) => log::info!("log file reopened: this worker writes to the new one"),
                    Err(e) => log::error!("cannot switch to the reopened log file: {e}"),
                }
            }
        })
        .context("failed to start the log channel thread")?;
    Ok(())
}

/// The next descriptor sent on `sock`; None when the controller's end is closed (or the
/// socket fails: there is nothing else to do with it).
fn receive(sock: RawFd) -> Option<OwnedFd> {
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        };
        if msg.bytes == 0 {
            return None;
        }
        let mut got = None;
        for cmsg in msg.cmsgs().ok()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel has just installed `fd` in this process's table
                    // for this message (SCM_RIGHTS); nothing else knows the number, so
                    // this OwnedFd is its one owner. Extra ones are closed on drop.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    got.get_or_insert(owned);
                }
            }
        }
        if got.is_some() {
            return got;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_descriptor_arrives_as_the_same_open_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.log");
        let log = File::create(&path).expect("create");
        let (tx, rx) = pair().expect("pair");
        tx.send(&log).expect("send");
        let got = receive(rx.as_raw_fd()).expect("a descriptor");
        let (a, b) = (fstat(&log).expect("fstat"), fstat(&got).expect("fstat"));
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        drop(tx);
        assert!(receive(rx.as_raw_fd()).is_none(), "closed end: no more");
    }

    #[test]
    fn a_worker_that_does_not_read_never_blocks_the_sender() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = File::create(dir.path().join("l.log")).expect("create");
        let (tx, unread) = pair().expect("pair");
        // On a thread: a blocking send would hang it, and the test fails at the deadline.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let refused = (0..100_000).find_map(|_| tx.send(&log).err());
            let _ = done.send(refused.map(|e| e.kind()));
        });
        let got = result.recv_timeout(std::time::Duration::from_secs(10));
        drop(unread);
        assert_eq!(
            got,
            Ok(Some(std::io::ErrorKind::WouldBlock)),
            "a full buffer must be an error at once, not a wait"
        );
    }
}
