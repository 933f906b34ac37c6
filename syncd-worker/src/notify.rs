//! The sd_notify protocol without libsystemd: one `AF_UNIX` datagram of `KEY=VALUE` lines
//! sent to the socket named by `$NOTIFY_SOCKET` (a leading `@` names the Linux abstract
//! namespace). The worker uses it to tell the controller "watches in place"; the
//! controller uses it to tell systemd (or the `syncd start` that launched it) the same.
//! [`Listener`] is the receiving end the controller binds for its worker; it receives each
//! datagram with its sender's pid (`SO_PASSCRED`, filled in by the kernel, so it cannot be
//! forged) and address, so the controller can tell its worker's messages from anyone
//! else's (an abstract socket has no permissions) and answer one (the worker asking for
//! inotify watches sends from a [`Listener`] of its own and waits for the answer there).
//! Sending never fails the caller: no socket, or a peer that went away, is not an error.

use std::ffi::OsStr;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, ControlMessageOwned, MsgFlags, SockaddrLike, UnixAddr, UnixCredentials,
};

/// The environment variable naming the socket ([`crate::contract::NOTIFY_SOCKET`]).
pub const ENV: &str = crate::contract::NOTIFY_SOCKET;

/// Send `msg` (e.g. `"READY=1\nSTATUS=watching"`) to `$NOTIFY_SOCKET`, if set.
/// Returns whether a datagram was sent.
pub fn send(msg: &str) -> bool {
    match std::env::var_os(ENV) {
        Some(path) => send_to(&path, msg).is_ok(),
        None => false,
    }
}

/// Send `msg` to the socket `path` (`@name` = abstract).
pub fn send_to(path: &OsStr, msg: &str) -> io::Result<()> {
    let addr = address(path)?;
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(msg.as_bytes(), &addr)?;
    Ok(())
}

fn address(path: &OsStr) -> io::Result<SocketAddr> {
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(path),
    }
}

/// A bound datagram socket in the abstract namespace, unique to this process; hand
/// [`Listener::name`] to a child as `$NOTIFY_SOCKET`.
pub struct Listener {
    sock: UnixDatagram,
    name: String,
}

impl Listener {
    /// Bind `@syncd-<purpose>-<pid>-<n>`: abstract, so nothing to clean up on disk.
    pub fn bind(purpose: &str) -> io::Result<Listener> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("@syncd-{purpose}-{}-{n}", std::process::id());
        let sock = UnixDatagram::bind_addr(&address(OsStr::new(&name))?)?;
        // Every datagram then comes with its sender's pid.
        socket::setsockopt(&sock, sockopt::PassCred, &true)?;
        Ok(Listener { sock, name })
    }

    /// Send `msg` to the socket `path` from this one (so the peer can answer).
    pub fn send_to(&self, path: &OsStr, msg: &str) -> io::Result<()> {
        self.sock.send_to_addr(msg.as_bytes(), &address(path)?)?;
        Ok(())
    }

    /// The `$NOTIFY_SOCKET` value for a child.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Wait up to `timeout` (None: until one comes) for one message. `Ok(None)` on
    /// timeout, and when the wait was interrupted: with a receive timeout set, a
    /// stop and continue of the process (SIGSTOP/SIGCONT, a debugger attaching) ends the
    /// wait with `EINTR` even though no handler ran; the caller waits again.
    pub fn recv(&self, timeout: Option<Duration>) -> io::Result<Option<Message>> {
        self.sock
            .set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
        let mut buf = vec![0u8; 4096];
        let mut space = nix::cmsg_space!(UnixCredentials);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = socket::recvmsg::<UnixAddr>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match got {
            Ok(msg) => msg,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let pid = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => u32::try_from(cred.pid()).ok(),
                _ => None,
            })
        });
        // An unbound sender has an empty address (length 0), which nix's accessors must
        // not be asked about (they assert on it).
        let from = msg
            .address
            .as_ref()
            .filter(|a| a.len() as usize > std::mem::size_of::<libc::sa_family_t>())
            .and_then(UnixAddr::as_abstract)
            .map(|name| format!("@{}", String::from_utf8_lossy(name)));
        let n = msg.bytes;
        let mut m = Message::parse(&String::from_utf8_lossy(&buf[..n]));
        m.pid = pid.filter(|&p| p != 0);
        m.from = from;
        Ok(Some(m))
    }

    /// A second handle on the same socket (for a receiving thread).
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(Listener {
            sock: self.sock.try_clone()?,
            name: self.name.clone(),
        })
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// One notification: its `KEY=VALUE` lines, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<(String, String)>,
    /// The sending process, as the kernel tells it (None: not known, e.g. another pid
    /// namespace).
    pub pid: Option<u32>,
    /// The sender's abstract address (`@name`), when it sent from a bound socket: where an
    /// answer goes.
    pub from: Option<String>,
}

impl Message {
    pub fn parse(text: &str) -> Message {
        let fields = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Message {
            fields,
            pid: None,
            from: None,
        }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_ready(&self) -> bool {
        self.get("READY") == Some("1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_order_and_last_value_wins() {
        let m = Message::parse("READY=1\nSTATUS=a=b\nSTATUS=c\nnoise\n");
        assert!(m.is_ready());
        assert_eq!(m.get("STATUS"), Some("c"));
        assert_eq!(m.fields.len(), 3);
        assert_eq!(m.fields[1], ("STATUS".into(), "a=b".into()));
        assert!(!Message::parse("READY=0").is_ready());
    }

    #[test]
    fn datagram_reaches_an_abstract_listener() {
        let l = Listener::bind("test").expect("bind");
        assert!(l.name().starts_with('@'));
        send_to(
            OsStr::new(l.name()),
            "READY=1\nSTATUS=watching 3 directories",
        )
        .expect("send");
        let m = l
            .recv(Some(Duration::from_secs(5)))
            .expect("recv")
            .expect("a message within 5 s");
        assert!(m.is_ready());
        assert_eq!(m.get("STATUS"), Some("watching 3 directories"));
        assert_eq!(
            m.pid,
            Some(std::process::id()),
            "the kernel names the sender"
        );
        assert_eq!(
            m.from, None,
            "sent from an unbound socket: no answer possible"
        );
        assert_eq!(l.recv(Some(Duration::from_millis(20))).expect("recv"), None);
    }

    #[test]
    fn a_listener_can_send_and_be_answered() {
        let controller = Listener::bind("test-ctl").expect("bind");
        let worker = Listener::bind("test-ask").expect("bind");
        worker
            .send_to(OsStr::new(controller.name()), "X_ASK=5")
            .expect("send");
        let ask = controller
            .recv(Some(Duration::from_secs(5)))
            .expect("recv")
            .expect("the ask within 5 s");
        assert_eq!(ask.get("X_ASK"), Some("5"));
        assert_eq!(ask.from.as_deref(), Some(worker.name()));
        let to = ask.from.expect("from");
        send_to(OsStr::new(&to), "X_ANSWER=6").expect("answer");
        let answer = worker
            .recv(Some(Duration::from_secs(5)))
            .expect("recv")
            .expect("the answer within 5 s");
        assert_eq!(answer.get("X_ANSWER"), Some("6"));
    }

    #[test]
    fn datagram_reaches_a_path_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        send_to(path.as_os_str(), "STOPPING=1").expect("send");
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn sending_to_nobody_is_an_error_not_a_panic() {
        assert!(send_to(OsStr::new("@syncd-nobody-listens-here"), "READY=1").is_err());
    }
}
