//! The end of an output stream, kept bounded: a chatty child must not grow memory, and
//! the last lines (rsync's summary, a hook's error) are the ones worth showing. Pure.

/// The last bytes of a stream and whether anything before them was dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    pub bytes: Vec<u8>,
    /// More was written than was kept: the earlier part is gone.
    pub truncated: bool,
}

impl Tail {
    /// The kept bytes, decoded lossily (a non-UTF-8 byte becomes U+FFFD).
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Collects a stream chunk by chunk, keeping at most `keep` bytes once finished.
#[derive(Debug)]
pub(super) struct TailBuf {
    keep: usize,
    bytes: Vec<u8>,
    dropped: bool,
}

impl TailBuf {
    pub(super) fn new(keep: usize) -> TailBuf {
        TailBuf {
            keep,
            bytes: Vec::new(),
            dropped: false,
        }
    }

    /// Append a chunk; the buffer is trimmed once it holds twice the bound, so trimming
    /// costs amortised O(1) per byte.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * self.keep {
            self.trim();
        }
    }

    /// The last `keep` bytes so far (the buffer itself stays usable).
    pub(super) fn tail(&self) -> Tail {
        let cut = self.bytes.len().saturating_sub(self.keep);
        Tail {
            bytes: self.bytes[cut..].to_vec(),
            truncated: self.dropped || cut > 0,
        }
    }

    fn trim(&mut self) {
        let cut = self.bytes.len().saturating_sub(self.keep);
        if cut > 0 {
            self.bytes.drain(..cut);
            self.dropped = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_table() {
        // (chunks, keep, kept, truncated)
        type Case<'a> = (&'a [&'a [u8]], usize, &'a [u8], bool);
        let cases: &[Case] = &[
            (&[], 4, b"", false),
            (&[b"abc"], 4, b"abc", false),
            (&[b"abcd"], 4, b"abcd", false),
            (&[b"abcdef"], 4, b"cdef", true),
            (&[b"ab", b"cd", b"ef"], 4, b"cdef", true),
            // Past twice the bound the buffer trims as it goes; the end still survives.
            (&[b"abcdefghij", b"k"], 4, b"hijk", true),
            (&[b"abc"], 0, b"", true),
            (&[], 0, b"", false),
        ];
        for (chunks, keep, want, truncated) in cases {
            let mut buf = TailBuf::new(*keep);
            for c in *chunks {
                buf.push(c);
            }
            let got = buf.tail();
            assert_eq!(
                (got.bytes.as_slice(), got.truncated),
                (*want, *truncated),
                "{chunks:?} keep {keep}"
            );
        }
    }

    #[test]
    fn lossy_decoding() {
        let t = Tail {
            bytes: b"caf\xe9\n".to_vec(),
            truncated: false,
        };
        assert_eq!(t.lossy(), "caf\u{fffd}\n");
    }
}
