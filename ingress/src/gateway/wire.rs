//! What the gateway reads from a client connection's raw bytes beside
//! hyper, which parses them: two small scanners fed by
//! [`super::server`]'s IO wrapper.
//!
//! * [`RequestLineScan`] (HTTP/1): whether a request target carries a `#`.
//!   hyper (through the `http` crate) silently cuts a fragment off the
//!   target, so `GET /a#/../admin` would be routed, and forwarded, as
//!   `/a`: consistent, but a target with a `#` is malformed (RFC 9112 §3.2
//!   has no fragment) and the gateway refuses it with 400, as its path
//!   hygiene promises. The scan covers a request line that starts on an
//!   idle connection (no request in flight), which is every request of a
//!   client that does not pipeline; it remembers a fingerprint of the
//!   method and the target up to the `#`, and the request handler refuses
//!   the request whose method and target match it. A pipelined request
//!   whose head arrives while another is in flight is not scanned and
//!   keeps hyper's behaviour (fragment cut, routed and forwarded
//!   consistently). On HTTP/2 the `h2` crate cuts the fragment from
//!   `:path` inside HPACK-decoded headers, where nothing can see it.
//! * [`H2Frames`] (HTTP/2): where the frames the gateway writes begin and
//!   end, so that a GOAWAY of the gateway's own (ENHANCE_YOUR_CALM, for a
//!   client over its stream-reset budget) is written between two of
//!   hyper's frames, never inside one. hyper offers no way to send that
//!   GOAWAY itself.

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// FNV-1a, 64 bit: a fingerprint, not a defence against collisions (a
/// collision only lets a `#` through, which hyper then cuts off).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    const START: Self = Self(0xcbf2_9ce4_8422_2325);

    fn add(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// The fingerprint of a request line's method and target (up to a
    /// `#`); never 0.
    pub(crate) fn of(method: &[u8], target: &[u8]) -> u64 {
        Self::START.add(method).add(b" ").add(target).0 | 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinePhase {
    /// Not in a request line.
    Off,
    Method,
    Target,
    /// In the fragment, up to the space before the version.
    Fragment,
}

/// Scans HTTP/1 request lines for a `#` in the target (see the module
/// docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLineScan {
    phase: LinePhase,
    len: u16,
    hash: Fingerprint,
}

impl Default for RequestLineScan {
    fn default() -> Self {
        Self {
            phase: LinePhase::Off,
            len: 0,
            hash: Fingerprint::START,
        }
    }
}

/// Longest method and target scanned; a longer line is left to hyper.
const MAX_SCANNED: u16 = 8 * 1024;

impl RequestLineScan {
    /// A request line starts with the next byte.
    pub(crate) fn start(&mut self) {
        *self = Self {
            phase: LinePhase::Method,
            ..Self::default()
        };
    }

    /// Feeds read bytes; returns the fingerprint of a request line whose
    /// target had a `#`, when one ends in `bytes`.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Option<u64> {
        if self.phase == LinePhase::Off {
            return None;
        }
        let mut found = None;
        for &b in bytes {
            self.len = self.len.saturating_add(1);
            if b == b'\n' || self.len > MAX_SCANNED {
                self.phase = LinePhase::Off;
                break;
            }
            match (self.phase, b) {
                (LinePhase::Method, b' ') => {
                    self.hash = self.hash.add(b" ");
                    self.phase = LinePhase::Target;
                }
                (LinePhase::Method | LinePhase::Target, _) if b != b'#' && b != b' ' => {
                    self.hash = self.hash.add(&[b]);
                }
                (LinePhase::Target, b'#') => self.phase = LinePhase::Fragment,
                (LinePhase::Target, _) => {
                    // The space before the version: no fragment.
                    self.phase = LinePhase::Off;
                    break;
                }
                (LinePhase::Fragment, b' ') => {
                    found = Some(self.hash.0 | 1);
                    self.phase = LinePhase::Off;
                    break;
                }
                (LinePhase::Fragment, _) => {}
                _ => {
                    self.phase = LinePhase::Off;
                    break;
                }
            }
        }
        found
    }
}

/// Frame boundaries of one direction of an HTTP/2 connection.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct H2Frames {
    /// Bytes of the current frame header seen (0..9).
    header_len: u8,
    header: [u8; 9],
    /// Payload bytes of the current frame still to come.
    payload_left: u32,
}

impl H2Frames {
    /// Feeds bytes written to the peer.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = bytes.len().min(self.payload_left as usize);
                self.payload_left -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            let want = 9 - usize::from(self.header_len);
            let n = bytes.len().min(want);
            let at = usize::from(self.header_len);
            self.header[at..at + n].copy_from_slice(&bytes[..n]);
            self.header_len += n as u8;
            bytes = &bytes[n..];
            if self.header_len == 9 {
                self.header_len = 0;
                self.payload_left =
                    u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]]);
            }
        }
    }

    /// Whether the bytes fed so far end exactly after a frame.
    pub(crate) fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0
    }

    /// How many of the next bytes may be written before the boundary
    /// must be checked again: to the end of the current payload, or of
    /// the current header (after which the payload length is known).
    pub(crate) fn until_boundary(&self) -> usize {
        if self.header_len > 0 {
            9 - usize::from(self.header_len)
        } else {
            self.payload_left as usize
        }
    }

    /// A GOAWAY frame with `reason`, naming every stream as possibly
    /// processed (last stream id 2^31 - 1), so that the client retries
    /// nothing it sent on this connection.
    pub(crate) fn goaway(reason: u32) -> [u8; 17] {
        let mut f = [0u8; 17];
        f[2] = 8; // length
        f[3] = 0x7; // GOAWAY
        f[9..13].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        f[13..17].copy_from_slice(&reason.to_be_bytes());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<u64> {
        let mut s = RequestLineScan::default();
        s.start();
        chunks.iter().find_map(|c| s.feed(c))
    }

    #[test]
    fn fragments_found_across_reads() {
        let want = Some(Fingerprint::of(b"GET", b"/a?b"));
        assert_eq!(scan(&[b"GET /a?b#c/../x HTTP/1.1\r\n"]), want);
        assert_eq!(
            scan(&[b"GE", b"T /a", b"?b#", b"c HT", b"TP/1.1\r\n"]),
            want
        );
        assert_eq!(
            scan(&[b"GET http://h/a#x HTTP/1.1\r\n"]),
            Some(Fingerprint::of(b"GET", b"http://h/a"))
        );
        assert_eq!(scan(&[b"GET /a HTTP/1.1\r\nX: #\r\n"]), None);
        assert_eq!(scan(&[b"GET /a#\n"]), None, "no version: hyper refuses it");
        let mut s = RequestLineScan::default();
        assert_eq!(s.feed(b"GET /a#b HTTP/1.1\r\n"), None, "not started");
    }

    #[test]
    fn frame_boundaries() {
        let mut f = H2Frames::default();
        assert!(f.at_boundary());
        // SETTINGS, empty; then a DATA frame of 5 bytes written in pieces.
        f.feed(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert!(f.at_boundary());
        f.feed(&[0, 0, 5, 0]);
        assert_eq!(f.until_boundary(), 5);
        f.feed(&[1, 0, 0, 0, 1, b'h', b'e']);
        assert!(!f.at_boundary());
        assert_eq!(f.until_boundary(), 3);
        f.feed(b"llo");
        assert!(f.at_boundary());
        let g = H2Frames::goaway(0xb);
        let mut f = H2Frames::default();
        f.feed(&g);
        assert!(f.at_boundary());
        assert_eq!(&g[13..], &[0, 0, 0, 0xb]);
    }
}
