//! Raw fanotify event bytes, in the reporting mode of [`super::sys`], into [`Raw`]
//! events: the mask, the directory handle and entry name (`DFID_NAME`), both of them for
//! a rename (`OLD_DFID_NAME`, `NEW_DFID_NAME`), and the entry's own handle (`FID`).
//! Pure: no system call. A record of a type it does not know is skipped (its length
//! says how far); a truncated or malformed event ends the parse of the buffer with an
//! error (the kernel never writes one; the caller treats it as lost events).

use super::sys::Handle;

/// `struct fanotify_event_metadata`: event_len u32, vers u8, reserved u8,
/// metadata_len u16, mask u64, fd i32, pid i32.
const METADATA_LEN: usize = 24;
/// `struct fanotify_event_info_header` (type u8, pad u8, len u16) and the fsid (2 × i32)
/// that starts every file handle record.
const RECORD_HEAD: usize = 4 + 8;
/// `struct file_handle`'s fixed part: handle_bytes u32, handle_type i32.
const HANDLE_HEAD: usize = 8;

/// A directory and an entry name in it. The name is empty when the kernel gave none (an
/// event on the directory itself: `.` in the kernel's terms, also mapped to empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirName {
    pub dir: Handle,
    pub name: Vec<u8>,
}

/// One event as the kernel queued it (several merged events share one mask).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Raw {
    pub mask: u64,
    /// Where the entry is (`DFID_NAME` / `DFID`).
    pub at: Option<DirName>,
    /// A rename's old and new places (`FAN_RENAME`).
    pub old: Option<DirName>,
    pub new: Option<DirName>,
    /// The entry itself (`FID`).
    pub object: Option<Handle>,
}

impl Raw {
    pub fn has(&self, bits: u64) -> bool {
        self.mask & bits != 0
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Append the events in `buf` (what one `read(2)` returned) to `out`.
pub fn parse(buf: &[u8], out: &mut Vec<Raw>) -> Result<(), String> {
    let mut at = 0;
    while at < buf.len() {
        let event_len = u32_at(buf, at).ok_or("truncated event header")? as usize;
        let vers = *buf.get(at + 4).ok_or("truncated event header")?;
        let meta_len = u16_at(buf, at + 6).ok_or("truncated event header")? as usize;
        if vers != libc::FANOTIFY_METADATA_VERSION {
            return Err(format!(
                "fanotify metadata version {vers}, expected {}",
                libc::FANOTIFY_METADATA_VERSION
            ));
        }
        if event_len < METADATA_LEN || meta_len < METADATA_LEN || meta_len > event_len {
            return Err(format!(
                "event of {event_len} bytes with {meta_len} bytes of metadata"
            ));
        }
        let event = buf
            .get(at..at + event_len)
            .ok_or_else(|| format!("event of {event_len} bytes past the end of the read"))?;
        let mut raw = Raw {
            mask: u64_at(event, 8).ok_or("truncated event header")?,
            ..Raw::default()
        };
        records(&event[meta_len..], &mut raw)?;
        out.push(raw);
        at += event_len;
    }
    Ok(())
}

/// The info records of one event, into `raw`.
fn records(mut b: &[u8], raw: &mut Raw) -> Result<(), String> {
    while !b.is_empty() {
        let kind = b[0];
        let len = u16_at(b, 2).ok_or("truncated info record")? as usize;
        if len < 4 || len > b.len() {
            return Err(format!("info record of {len} bytes in {} left", b.len()));
        }
        let rec = &b[..len];
        match kind {
            libc::FAN_EVENT_INFO_TYPE_FID => raw.object = Some(handle(rec)?.0),
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME | libc::FAN_EVENT_INFO_TYPE_DFID => {
                raw.at = Some(dir_name(rec)?);
            }
            libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME => raw.old = Some(dir_name(rec)?),
            libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => raw.new = Some(dir_name(rec)?),
            _ => {}
        }
        b = &b[len..];
    }
    Ok(())
}

/// The file handle of a record, and the bytes after it.
fn handle(rec: &[u8]) -> Result<(Handle, &[u8]), String> {
    let h = rec
        .get(RECORD_HEAD..)
        .ok_or("record without a file handle")?;
    let n = u32_at(h, 0).ok_or("truncated file handle")? as usize;
    let kind = u32_at(h, 4).ok_or("truncated file handle")? as i32;
    let bytes = h
        .get(HANDLE_HEAD..HANDLE_HEAD + n)
        .ok_or_else(|| format!("file handle of {n} bytes past its record"))?;
    Ok((
        Handle {
            kind,
            bytes: bytes.to_vec(),
        },
        &h[HANDLE_HEAD + n..],
    ))
}

/// A directory handle and the NUL-terminated name after it (padding follows).
fn dir_name(rec: &[u8]) -> Result<DirName, String> {
    let (dir, rest) = handle(rec)?;
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    let name = &rest[..end];
    Ok(DirName {
        dir,
        name: if name == b"." {
            Vec::new()
        } else {
            name.to_vec()
        },
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An info record as the kernel writes it (padded to 4 bytes).
    pub fn record(kind: u8, h: &Handle, name: Option<&[u8]>) -> Vec<u8> {
        let mut r = vec![kind, 0, 0, 0];
        r.extend_from_slice(&[7u8; 8]); // fsid
        r.extend_from_slice(&(h.bytes.len() as u32).to_ne_bytes());
        r.extend_from_slice(&h.kind.to_ne_bytes());
        r.extend_from_slice(&h.bytes);
        if let Some(n) = name {
            r.extend_from_slice(n);
            r.push(0);
        }
        while r.len() % 4 != 0 {
            r.push(0);
        }
        let len = r.len() as u16;
        r[2..4].copy_from_slice(&len.to_ne_bytes());
        r
    }

    /// An event: metadata then `records`.
    pub fn event(mask: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = records.concat();
        let mut e = Vec::new();
        e.extend_from_slice(&((METADATA_LEN + body.len()) as u32).to_ne_bytes());
        e.push(libc::FANOTIFY_METADATA_VERSION);
        e.push(0);
        e.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        e.extend_from_slice(&mask.to_ne_bytes());
        e.extend_from_slice(&(-1i32).to_ne_bytes()); // FAN_NOFD
        e.extend_from_slice(&42i32.to_ne_bytes());
        e.extend_from_slice(&body);
        e
    }

    pub fn h(b: &[u8]) -> Handle {
        Handle {
            kind: 1,
            bytes: b.to_vec(),
        }
    }

    #[test]
    fn events_with_each_kind_of_record() {
        let (d, d2, f) = (h(b"dir-1"), h(b"dir-2-longer"), h(b"file"));
        let mut buf = event(
            libc::FAN_CREATE | libc::FAN_CLOSE_WRITE,
            &[
                record(libc::FAN_EVENT_INFO_TYPE_DFID_NAME, &d, Some(b"a.txt")),
                record(libc::FAN_EVENT_INFO_TYPE_FID, &f, None),
            ],
        );
        buf.extend(event(
            libc::FAN_RENAME | libc::FAN_ONDIR,
            &[
                record(libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, &d, Some(b"old")),
                record(libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, &d2, Some(b"new")),
                record(99, &f, None), // unknown: skipped
            ],
        ));
        buf.extend(event(
            libc::FAN_ATTRIB | libc::FAN_ONDIR,
            &[record(libc::FAN_EVENT_INFO_TYPE_DFID_NAME, &d2, Some(b"."))],
        ));
        buf.extend(event(libc::FAN_Q_OVERFLOW, &[]));
        let mut out = Vec::new();
        parse(&buf, &mut out).unwrap();
        let dn = |dir: &Handle, name: &[u8]| {
            Some(DirName {
                dir: dir.clone(),
                name: name.to_vec(),
            })
        };
        assert_eq!(
            out,
            vec![
                Raw {
                    mask: libc::FAN_CREATE | libc::FAN_CLOSE_WRITE,
                    at: dn(&d, b"a.txt"),
                    object: Some(f.clone()),
                    ..Raw::default()
                },
                Raw {
                    mask: libc::FAN_RENAME | libc::FAN_ONDIR,
                    old: dn(&d, b"old"),
                    new: dn(&d2, b"new"),
                    ..Raw::default()
                },
                Raw {
                    mask: libc::FAN_ATTRIB | libc::FAN_ONDIR,
                    at: dn(&d2, b""),
                    ..Raw::default()
                },
                Raw {
                    mask: libc::FAN_Q_OVERFLOW,
                    ..Raw::default()
                },
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = event(
            libc::FAN_CREATE,
            &[record(
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                &h(b"d"),
                Some(b"x"),
            )],
        );
        // Every truncation of a valid event, and a few corruptions.
        for cut in 1..good.len() {
            let mut out = Vec::new();
            assert!(parse(&good[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        assert!(parse(&bad_version, &mut Vec::new()).is_err());
        let mut bad_record_len = good.clone();
        bad_record_len[METADATA_LEN + 2] = 2;
        assert!(parse(&bad_record_len, &mut Vec::new()).is_err());
        let mut bad_handle_len = good;
        bad_handle_len[METADATA_LEN + RECORD_HEAD] = 200;
        assert!(parse(&bad_handle_len, &mut Vec::new()).is_err());
    }
}
