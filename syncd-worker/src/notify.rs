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
//!
//! Any local user can send to an abstract socket, so a receiver takes a datagram only
//! from the one process it expects ([`SenderGate`]: the controller from its worker,
//! `syncd start` from the daemon it launched) and says once per other sender that it
//! dropped its datagrams. The names also end in 128 random bits (from `/dev/urandom`),
//! so they cannot be guessed in advance — defence in depth only: `/proc/net/unix` lists
//! them to every local user; the sender check is what keeps others out.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{self, IoSliceMut, Read};
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
    /// Bind `@syncd-<purpose>-<pid>-<32 random hex digits>`: abstract, so nothing to
    /// clean up on disk; the pid in it is for people reading `/proc/net/unix`.
    pub fn bind(purpose: &str) -> io::Result<Listener> {
        let name = format!("@syncd-{purpose}-{}-{}", std::process::id(), random_hex()?);
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
        let cred = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred),
                _ => None,
            })
        });
        let pid = cred.and_then(|c| u32::try_from(c.pid()).ok());
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
        m.uid = cred.map(|c| c.uid());
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
    /// The sending process's user id, as the kernel tells it.
    pub uid: Option<u32>,
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
            uid: None,
            from: None,
        }
    }

    /// The keys, in order, without repeats: what a message was about, for a log line
    /// (`READY, STATUS`); never the values, which a stranger chose.
    pub fn keys(&self) -> String {
        let mut seen = Vec::new();
        for (k, _) in &self.fields {
            if !seen.contains(&k.as_str()) {
                seen.push(k.as_str());
            }
        }
        let shown: Vec<String> = seen
            .iter()
            .take(8)
            .map(|k| k.escape_debug().to_string())
            .collect();
        if shown.is_empty() {
            "nothing".to_string()
        } else {
            shown.join(", ")
        }
    }

    /// The sender for a log line: "pid 42 (uid 65534)", "an unknown process".
    pub fn sender(&self) -> String {
        match (self.pid, self.uid) {
            (Some(p), Some(u)) => format!("pid {p} (uid {u})"),
            (Some(p), None) => format!("pid {p}"),
            (None, Some(u)) => format!("an unknown process (uid {u})"),
            (None, None) => "an unknown process".to_string(),
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

/// 128 bits from the kernel's random source, as hex.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Lets through the datagrams of one process (the kernel names each sender) and drops
/// the others, telling the caller to log the first one of each sender; it names at most
/// [`SenderGate::NAMED`] senders, then once that later ones are not named. Pure: the
/// caller logs.
#[derive(Debug, Default)]
pub struct SenderGate {
    expected: Option<u32>,
    named: BTreeSet<Option<u32>>,
    silenced: bool,
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// From the expected process: handle it.
    Take,
    /// From another: drop it, and log it (its first).
    DropAndLog,
    /// From another: drop it and log it, adding that later new senders are not logged.
    DropAndLogLast,
    /// From another already logged (or past the limit): drop it quietly.
    Drop,
}

impl SenderGate {
    /// How many foreign senders are named in the log.
    pub const NAMED: usize = 16;

    /// A gate for `expected` (None: nothing is taken until [`SenderGate::expect`]).
    pub fn new(expected: Option<u32>) -> SenderGate {
        SenderGate {
            expected,
            ..SenderGate::default()
        }
    }

    /// From now on take the datagrams of `pid` (a new worker), and no one else's.
    pub fn expect(&mut self, pid: Option<u32>) {
        self.expected = pid;
    }

    /// Whether a datagram from `sender` is taken.
    pub fn admit(&mut self, sender: Option<u32>) -> Admission {
        if sender.is_some() && sender == self.expected {
            return Admission::Take;
        }
        if self.silenced || self.named.contains(&sender) {
            return Admission::Drop;
        }
        self.named.insert(sender);
        if self.named.len() >= Self::NAMED {
            self.silenced = true;
            return Admission::DropAndLogLast;
        }
        Admission::DropAndLog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_takes_only_the_expected_sender_and_names_each_other_once() {
        let mut g = SenderGate::new(Some(10));
        assert_eq!(g.admit(Some(10)), Admission::Take);
        assert_eq!(g.admit(Some(11)), Admission::DropAndLog);
        assert_eq!(g.admit(Some(11)), Admission::Drop, "once per sender");
        assert_eq!(g.admit(None), Admission::DropAndLog, "an unknown sender");
        assert_eq!(g.admit(None), Admission::Drop);
        assert_eq!(g.admit(Some(10)), Admission::Take);
        // A new worker: the old one's late datagrams are someone else's now.
        g.expect(Some(12));
        assert_eq!(g.admit(Some(10)), Admission::DropAndLog);
        assert_eq!(g.admit(Some(12)), Admission::Take);
        // Nothing expected (between two workers): nothing taken, not even pid-less ones.
        g.expect(None);
        assert_eq!(g.admit(Some(12)), Admission::DropAndLog);
        assert_eq!(g.admit(None), Admission::Drop);
    }

    #[test]
    fn the_gate_stops_naming_senders_past_its_limit() {
        let mut g = SenderGate::new(Some(1));
        let mut logged = 0;
        let mut last = 0;
        for pid in 100..200 {
            match g.admit(Some(pid)) {
                Admission::DropAndLog => logged += 1,
                Admission::DropAndLogLast => last += 1,
                Admission::Drop => {}
                Admission::Take => panic!("pid {pid} taken"),
            }
        }
        assert_eq!((logged, last), (SenderGate::NAMED - 1, 1));
        assert_eq!(
            g.admit(Some(1)),
            Admission::Take,
            "the expected one still is"
        );
    }

    #[test]
    fn keys_and_sender_for_log_lines_never_show_values() {
        let mut m = Message::parse("READY=1\nSTATUS=evil\x1b[2J\nSTATUS=x\nMAINPID=1");
        assert_eq!(m.keys(), "READY, STATUS, MAINPID");
        assert_eq!(Message::parse("").keys(), "nothing");
        assert_eq!(Message::parse("A\u{1b}B=1").keys(), "A\\u{1b}B");
        assert_eq!(m.sender(), "an unknown process");
        m.pid = Some(7);
        m.uid = Some(65534);
        assert_eq!(m.sender(), "pid 7 (uid 65534)");
    }

    #[test]
    fn names_are_unguessable_and_unique() {
        let a = Listener::bind("test-name").expect("bind");
        let b = Listener::bind("test-name").expect("bind");
        let prefix = format!("@syncd-test-name-{}-", std::process::id());
        for l in [&a, &b] {
            let tail = l
                .name()
                .strip_prefix(&prefix)
                .expect("the documented prefix");
            assert!(
                tail.len() == 32 && tail.bytes().all(|c| c.is_ascii_hexdigit()),
                "{}",
                l.name()
            );
        }
        assert_ne!(a.name(), b.name());
    }

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
        assert_eq!(m.uid, Some(nix::unistd::geteuid().as_raw()));
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
