//! A blocking netlink socket that runs request/acknowledge exchanges, dumps,
//! and pipelined batches (many messages per `sendmsg`, acknowledgements
//! drained with `recvmmsg`).

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::{Socket, SocketAddr};

use super::message::{Ack, Message, Messages, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP};
use crate::error::DecodeError;

/// Size of the buffer for one received datagram. The kernel sizes dump
/// datagrams to the reader's largest buffer, capped at 32 KiB, so 64 KiB
/// always holds one.
const RX_BUF: usize = 64 * 1024;
/// Receive buffer requested for the socket. Every acknowledgement of a batch
/// is its own skb and is charged its full truesize, so a deep pipeline needs a
/// large receive buffer or acknowledgements are lost (ENOBUFS).
const RCVBUF: usize = 8 * 1024 * 1024;
/// Send buffer requested; a single `sendmsg` may not exceed it.
const SNDBUF: usize = 4 * 1024 * 1024;
/// Conservative receive-buffer charge of one acknowledgement skb.
const ACK_TRUESIZE: usize = 2048;
/// Slot size for one acknowledgement in `recvmmsg` (an ack is 36 bytes, plus
/// extended-ack text on errors).
const ACK_SLOT: usize = 512;
/// Acknowledgements drained per `recvmmsg` call.
const ACK_SLOTS: usize = 256;

const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_SNDBUFFORCE: libc::c_int = 32;

/// Why an exchange failed before any per-request verdict was known.
#[derive(Debug)]
pub enum TransportError {
    /// The socket call failed.
    Io(io::Error),
    /// The kernel's reply could not be decoded.
    Decode(DecodeError),
}

impl From<io::Error> for TransportError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<DecodeError> for TransportError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// The kernel's verdict on one request: `Ok` or its errno and message.
pub type Verdict = Result<(), Ack>;

/// A connected netlink socket with its own sequence numbers.
pub struct Connection {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
    window_ops: usize,
    window_bytes: usize,
}

impl Connection {
    /// Opens a socket for `protocol` (e.g. `NETLINK_GENERIC`) talking to the
    /// kernel.
    pub fn open(protocol: isize) -> io::Result<Self> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Acknowledgements carry only the request header, not the request,
        // and errors carry the kernel's text when it has one.
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_ext_ack(true);
        let fd = sock.as_raw_fd();
        let rcvbuf = force_buffer(fd, SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF);
        let sndbuf = force_buffer(fd, SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF);
        Ok(Self {
            sock,
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(1),
            rx: Vec::with_capacity(RX_BUF),
            window_ops: (rcvbuf / ACK_TRUESIZE).clamp(16, 4096),
            window_bytes: (sndbuf / 2).clamp(16 * 1024, 1024 * 1024),
        })
    }

    /// Reserves `n` consecutive sequence numbers and returns the first.
    pub fn next_seq(&mut self, n: u32) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        first
    }

    /// The sequence number the next [`Connection::next_seq`] will return.
    pub fn peek_seq(&self) -> u32 {
        self.seq.wrapping_add(1)
    }

    /// How many requests one pipelined `sendmsg` may carry.
    pub fn window_ops(&self) -> usize {
        self.window_ops
    }

    /// How many bytes one pipelined `sendmsg` may carry.
    pub fn window_bytes(&self) -> usize {
        self.window_bytes
    }

    fn send_all(&self, buf: &[u8]) -> io::Result<()> {
        loop {
            match self.sock.send(buf, 0) {
                Ok(n) if n == buf.len() => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::other(format!(
                        "netlink sendmsg took {n} of {} bytes",
                        buf.len()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn recv_one(&mut self) -> io::Result<()> {
        loop {
            self.rx.clear();
            match self.sock.recv(&mut self.rx, 0) {
                Ok(n) if n > RX_BUF => {
                    return Err(io::Error::other(format!(
                        "netlink datagram of {n} bytes exceeds the {RX_BUF}-byte buffer"
                    )));
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one request (which must ask for an acknowledgement or be a
    /// dump) and feeds every data message answering it to `on_reply`, until
    /// the acknowledgement or the end of the dump.
    pub fn transact(
        &mut self,
        request: &[u8],
        seq: u32,
        mut on_reply: impl FnMut(&Message<'_>) -> Result<(), DecodeError>,
    ) -> Result<Verdict, TransportError> {
        self.send_all(request)?;
        loop {
            self.recv_one()?;
            let rx = std::mem::take(&mut self.rx);
            let outcome = scan_replies(&rx, seq, &mut on_reply);
            self.rx = rx;
            if let Some(verdict) = outcome? {
                return Ok(verdict);
            }
        }
    }

    /// Sends `requests`, each asking for an acknowledgement and numbered
    /// `first_seq, first_seq + 1, ...`, in one `sendmsg`, then collects one
    /// verdict per request. `requests` must fit the window
    /// ([`Connection::window_ops`], [`Connection::window_bytes`]).
    pub fn pipeline(
        &mut self,
        requests: &[u8],
        first_seq: u32,
        count: usize,
    ) -> Result<Vec<Verdict>, TransportError> {
        self.send_all(requests)?;
        let mut verdicts: Vec<Option<Verdict>> = vec![None; count];
        let mut pending = count;
        let mut slots = vec![0u8; ACK_SLOT * ACK_SLOTS];
        while pending > 0 {
            let lens = recv_many(self.sock.as_raw_fd(), &mut slots)?;
            for (i, len) in lens.into_iter().enumerate() {
                let datagram = &slots[i * ACK_SLOT..i * ACK_SLOT + len];
                for msg in Messages::new(datagram) {
                    // A truncated datagram still starts with the error code
                    // and the echoed header; stop at the first bad message.
                    let Ok(msg) = msg else { break };
                    if msg.ty != NLMSG_ERROR {
                        continue;
                    }
                    let ack = match msg.ack() {
                        Ok(a) => a,
                        Err(_) if len == ACK_SLOT => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let idx = ack.request_seq.wrapping_sub(first_seq) as usize;
                    if idx < count && verdicts[idx].is_none() {
                        verdicts[idx] = Some(if ack.errno == 0 { Ok(()) } else { Err(ack) });
                        pending -= 1;
                    }
                }
            }
        }
        Ok(verdicts.into_iter().map(|v| v.unwrap_or(Ok(()))).collect())
    }
}

/// Scans one datagram for replies to `seq`: data messages go to `on_reply`;
/// returns the verdict once an acknowledgement, error or end of dump is seen.
fn scan_replies(
    datagram: &[u8],
    seq: u32,
    on_reply: &mut impl FnMut(&Message<'_>) -> Result<(), DecodeError>,
) -> Result<Option<Verdict>, DecodeError> {
    for msg in Messages::new(datagram) {
        let msg = msg?;
        if msg.seq != seq || msg.ty == NLMSG_NOOP {
            // A late reply to an earlier, abandoned exchange.
            continue;
        }
        match msg.ty {
            NLMSG_ERROR | NLMSG_DONE => {
                let ack = msg.ack()?;
                return Ok(Some(if ack.errno == 0 { Ok(()) } else { Err(ack) }));
            }
            _ => on_reply(&msg)?,
        }
    }
    Ok(None)
}

/// Receives as many datagrams as are queued (at least one, blocking) into
/// fixed slots of `slots`; returns each datagram's length within its slot.
fn recv_many(fd: libc::c_int, slots: &mut [u8]) -> io::Result<Vec<usize>> {
    let n = slots.len() / ACK_SLOT;
    let mut iovs: Vec<libc::iovec> = slots
        .chunks_mut(ACK_SLOT)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: c.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: every header points at one live iovec that points into
        // `slots`, which outlives the call; the count matches the vector.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(hdrs[..got as usize]
            .iter()
            .map(|h| (h.msg_len as usize).min(ACK_SLOT))
            .collect());
    }
}

/// Asks for a socket buffer of `size`, first past `rmem_max`/`wmem_max`
/// (needs CAP_NET_ADMIN, which netlink writers have anyway), then within
/// them; returns the size the kernel granted.
fn force_buffer(fd: libc::c_int, force: libc::c_int, plain: libc::c_int, size: usize) -> usize {
    let val = size as libc::c_int;
    let set = |opt| {
        // SAFETY: passes a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(force) != 0 {
        set(plain);
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            plain,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 && got > 0 {
        // The kernel reports twice the usable size (bookkeeping overhead).
        got as usize / 2
    } else {
        212_992 / 2
    }
}
