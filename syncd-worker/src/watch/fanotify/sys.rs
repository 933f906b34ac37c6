//! The fanotify system calls syncd uses, in safe wrappers: a notification group that
//! reports directory file handles and entry names (`FAN_REPORT_DFID_NAME`, with the
//! entry's own handle: `FAN_REPORT_FID | FAN_REPORT_TARGET_FID`), one mark for a whole
//! file system, reads of raw event bytes, and `open_by_handle_at` / `name_to_handle_at`.
//! glibc has had every wrapper used here since 2.14 (the packages' floor is 2.17); `nix`
//! has no flags for the reporting modes, so the calls go through `libc`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Events asked of the file system mark: entries created, deleted, renamed (one event
/// with both names, 5.17+), attributes changed, files closed after writing, for
/// directories too (`FAN_ONDIR`). `FAN_MODIFY` is added when `[sync.events] modify` is.
pub const MARK_MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_RENAME
    | libc::FAN_ATTRIB
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_ONDIR;

/// The reporting mode: the directory's handle and the entry's name, and the entry's own
/// handle (which tells the source's root apart when it is deleted or renamed).
const REPORT: libc::c_uint = libc::FAN_REPORT_DFID_NAME_TARGET;

/// A notification group in the reporting mode syncd needs, non-blocking, close-on-exec.
/// `EINVAL`: a kernel older than 5.17 (no `FAN_REPORT_TARGET_FID`); `EPERM`: no
/// `CAP_SYS_ADMIN`.
pub fn init() -> io::Result<OwnedFd> {
    let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | REPORT;
    let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
    // SAFETY: fanotify_init takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::fanotify_init(flags, event_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel has just created `fd` for this call; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Mark the whole file system that holds `path` with `mask`. `EXDEV`: `path` is in a
/// btrfs subvolume (or another file system whose objects do not share one fsid);
/// `ENODEV` / `EOPNOTSUPP`: the file system cannot encode file handles (some network and
/// pseudo file systems).
pub fn mark_filesystem(group: BorrowedFd<'_>, path: &Path, mask: u64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    let flags = libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; the other
    // arguments are integers.
    let rc =
        unsafe { libc::fanotify_mark(group.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read queued events into `buf`: the number of bytes (0: none queued now).
pub fn read(group: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(group, buf) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EAGAIN) => return Ok(0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The largest file handle the kernel encodes (`MAX_HANDLE_SZ`).
const MAX_HANDLE: usize = 128;

/// A file handle as the kernel reports it: its type, then its opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    pub kind: i32,
    pub bytes: Vec<u8>,
}

/// `struct file_handle` with room for any handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE],
}

impl RawHandle {
    fn of(h: &Handle) -> io::Result<RawHandle> {
        if h.bytes.len() > MAX_HANDLE {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut raw = RawHandle {
            handle_bytes: h.bytes.len() as libc::c_uint,
            handle_type: h.kind,
            f_handle: [0; MAX_HANDLE],
        };
        raw.f_handle[..h.bytes.len()].copy_from_slice(&h.bytes);
        Ok(raw)
    }
}

/// Open the object `handle` names on the file system of `mount` (a descriptor opened
/// for reading, not `O_PATH`: the kernel refuses those with `EBADF`), as an `O_PATH`
/// descriptor. `ESTALE`: it no longer exists. Needs `CAP_DAC_READ_SEARCH`.
pub fn open_by_handle(mount: BorrowedFd<'_>, handle: &Handle) -> io::Result<OwnedFd> {
    let mut raw = RawHandle::of(handle)?;
    let flags = libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `raw` is a `struct file_handle` whose `handle_bytes` fits its buffer; it
    // lives for the call. The kernel returns a new descriptor or -1.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            std::ptr::from_mut(&mut raw).cast::<libc::file_handle>(),
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel has just made for this call.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The handle of the object at `path` (not following a final symbolic link).
pub fn handle_of(path: &Path) -> io::Result<Handle> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `c` is NUL-terminated; `raw` has room for MAX_HANDLE bytes as its
    // `handle_bytes` says; both outlive the call.
    let rc = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            c.as_ptr(),
            std::ptr::from_mut(&mut raw).cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (raw.handle_bytes as usize).min(MAX_HANDLE);
    Ok(Handle {
        kind: raw.handle_type,
        bytes: raw.f_handle[..n].to_vec(),
    })
}

/// Where the descriptor `fd` leads now, as the kernel names it (`/proc/self/fd/N`).
/// A deleted directory's name ends in " (deleted)".
pub fn path_of(fd: BorrowedFd<'_>) -> io::Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}
