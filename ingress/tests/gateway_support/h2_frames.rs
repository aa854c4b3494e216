//! A raw HTTP/2 client for attacks no well-behaved client library sends:
//! frames written byte by byte (RFC 9113 §4), header blocks in plain HPACK
//! (RFC 7541: literal fields without Huffman coding, static and dynamic
//! table references), and a reader that only looks at frame headers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame.
pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(ty);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A literal field without indexing, new name.
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_str(out, name.as_bytes());
    hpack_str(out, value);
}

/// A literal field with incremental indexing, new name (it enters the
/// dynamic table, at index 62 when it is the latest).
pub fn literal_indexed(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x40);
    hpack_str(out, name.as_bytes());
    hpack_str(out, value);
}

/// A reference to table entry `index`.
pub fn indexed(out: &mut Vec<u8>, index: usize) {
    hpack_int(out, 0x80, 7, index);
}

/// The pseudo-header fields of a request to `authority` for `path`.
pub fn request_block(method: &str, authority: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", method.as_bytes());
    indexed(&mut b, 6); // :scheme http
    literal(&mut b, ":authority", authority.as_bytes());
    literal(&mut b, ":path", path.as_bytes());
    b
}

/// What the reader saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// The GOAWAY's error code, if one came.
    pub goaway: Option<u32>,
    /// Whether the connection ended (EOF or reset).
    pub closed: bool,
    /// HEADERS frames received.
    pub headers: usize,
    /// RST_STREAM frames received.
    pub resets: usize,
}

/// A raw client connection.
pub struct RawH2 {
    pub stream: TcpStream,
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        Self { stream }
    }

    /// Writes bytes; false when the server closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads frames until a GOAWAY, the end of the connection or `limit`.
    pub async fn read_until_goaway(&mut self, limit: Duration) -> Seen {
        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + limit;
        let mut head = [0u8; 9];
        loop {
            let read = tokio::time::timeout_at(deadline, self.stream.read_exact(&mut head)).await;
            match read {
                Err(_) => return seen,
                Ok(Err(_)) => {
                    seen.closed = true;
                    return seen;
                }
                Ok(Ok(_)) => {}
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if tokio::time::timeout_at(deadline, self.stream.read_exact(&mut payload))
                .await
                .map_or(true, |r| r.is_err())
            {
                seen.closed = true;
                return seen;
            }
            match head[3] {
                HEADERS => seen.headers += 1,
                RST_STREAM => seen.resets += 1,
                GOAWAY if payload.len() >= 8 => {
                    seen.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                    return seen;
                }
                _ => {}
            }
        }
    }
}
