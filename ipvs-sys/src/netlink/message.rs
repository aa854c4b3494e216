//! Netlink message framing (`struct nlmsghdr`, `struct genlmsghdr`,
//! `struct nlmsgerr`): building requests into a buffer and splitting a
//! received datagram into messages without trusting any length in it.

use super::attr::{AttrWriter, Attrs, align};
use crate::error::DecodeError;

/// `struct nlmsghdr` length.
pub const NLMSG_HDRLEN: usize = 16;
/// `struct genlmsghdr` length.
pub const GENL_HDRLEN: usize = 4;

/// `NLMSG_NOOP`: nothing.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or an acknowledgement (error 0).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a multipart dump.
pub const NLMSG_DONE: u16 = 3;

/// `NLM_F_REQUEST`: the message is a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multipart reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: reply with an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`): return every object.
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`: replace an existing object (new requests).
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL`: fail if the object exists (new requests).
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`: create the object if missing (new requests).
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_ACK_TLVS` on an error message: extended-ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLM_F_CAPPED` on an error message: the request payload is not echoed.
pub const NLM_F_CAPPED: u16 = 0x100;

/// `NLMSGERR_ATTR_MSG`: a human-readable error message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The header fields of a request to write.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Message type (a generic netlink family id, or an `RTM_*` value).
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number, echoed in replies.
    pub seq: u32,
}

/// Appends one netlink message to a buffer and patches its length on finish.
pub struct MessageWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> MessageWriter<'a> {
    /// Starts a message at the end of `buf` (which may already hold others,
    /// for a batch).
    pub fn begin(buf: &'a mut Vec<u8>, header: Header) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish
        buf.extend_from_slice(&header.ty.to_ne_bytes());
        buf.extend_from_slice(&header.flags.to_ne_bytes());
        buf.extend_from_slice(&header.seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Self { buf, start }
    }

    /// Starts a generic netlink message with `cmd` and `version`.
    pub fn begin_genl(buf: &'a mut Vec<u8>, header: Header, cmd: u8, version: u8) -> Self {
        let w = Self::begin(buf, header);
        w.buf.extend_from_slice(&[cmd, version, 0, 0]);
        w
    }

    /// Appends raw fixed-size payload bytes (e.g. `struct ifinfomsg`).
    pub fn fixed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }

    /// An attribute writer appending to this message.
    pub fn attrs(&mut self) -> AttrWriter<'_> {
        AttrWriter::new(self.buf)
    }

    /// Writes the final length; returns the message's size in bytes.
    pub fn finish(self) -> usize {
        let len = self.buf.len() - self.start;
        self.buf[self.start..self.start + 4].copy_from_slice(&(len as u32).to_ne_bytes());
        len
    }
}

/// One message read from a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

/// Splits a received datagram into messages; yields an error (once) when a
/// length field does not fit the buffer.
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Messages<'a> {
    /// Reads the messages in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < NLMSG_HDRLEN {
            self.failed = true;
            return Some(Err(DecodeError::new(format!(
                "{} trailing bytes are too short for a message header",
                self.rest.len()
            ))));
        }
        let r = self.rest;
        let len = u32::from_ne_bytes([r[0], r[1], r[2], r[3]]) as usize;
        if len < NLMSG_HDRLEN || len > r.len() {
            self.failed = true;
            return Some(Err(DecodeError::new(format!(
                "message claims length {len} with {} bytes left",
                r.len()
            ))));
        }
        let msg = Message {
            ty: u16::from_ne_bytes([r[4], r[5]]),
            flags: u16::from_ne_bytes([r[6], r[7]]),
            seq: u32::from_ne_bytes([r[8], r[9], r[10], r[11]]),
            payload: &r[NLMSG_HDRLEN..len],
        };
        self.rest = &r[align(len).min(r.len())..];
        Some(Ok(msg))
    }
}

/// The content of an `NLMSG_ERROR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// 0 for an acknowledgement, a positive errno for an error.
    pub errno: i32,
    /// The sequence number of the request this answers.
    pub request_seq: u32,
    /// The extended-ack message, when the kernel gave one.
    pub message: Option<String>,
}

impl<'a> Message<'a> {
    /// Decodes an `NLMSG_ERROR` (or `NLMSG_DONE`) payload.
    pub fn ack(&self) -> Result<Ack, DecodeError> {
        let p = self.payload;
        if p.len() < 4 {
            return Err(DecodeError::new(
                "error message shorter than its error code",
            ));
        }
        let error = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
        let errno = error
            .checked_neg()
            .ok_or_else(|| DecodeError::new("error code out of range"))?;
        if self.ty == NLMSG_DONE {
            return Ok(Ack {
                errno,
                request_seq: self.seq,
                message: None,
            });
        }
        if p.len() < 4 + NLMSG_HDRLEN {
            return Err(DecodeError::new("error message without the request header"));
        }
        let orig = &p[4..4 + NLMSG_HDRLEN];
        let orig_len = u32::from_ne_bytes([orig[0], orig[1], orig[2], orig[3]]) as usize;
        let request_seq = u32::from_ne_bytes([orig[8], orig[9], orig[10], orig[11]]);
        let mut message = None;
        if self.flags & NLM_F_ACK_TLVS != 0 {
            // Extended-ack TLVs follow the echoed request: only its header
            // when capped, the whole request otherwise.
            let echoed = if self.flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                align(orig_len.max(NLMSG_HDRLEN))
            };
            let tlvs = p.get(4 + echoed..).unwrap_or(&[]);
            for attr in Attrs::new(tlvs) {
                let attr = attr?;
                if attr.ty == NLMSGERR_ATTR_MSG {
                    message = Some(attr.cstr()?.to_owned());
                }
            }
        }
        Ok(Ack {
            errno,
            request_seq,
            message,
        })
    }

    /// Splits a generic netlink payload into (command, attributes).
    pub fn genl(&self) -> Result<(u8, Attrs<'a>), DecodeError> {
        if self.payload.len() < GENL_HDRLEN {
            return Err(DecodeError::new(
                "generic netlink message shorter than its header",
            ));
        }
        Ok((self.payload[0], Attrs::new(&self.payload[GENL_HDRLEN..])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_struct_nlmsghdr() {
        let mut buf = Vec::new();
        let mut w = MessageWriter::begin_genl(
            &mut buf,
            Header {
                ty: 0x20,
                flags: NLM_F_REQUEST | NLM_F_ACK,
                seq: 7,
            },
            15,
            1,
        );
        w.attrs().u32(4, 900);
        assert_eq!(w.finish(), 28);
        #[rustfmt::skip]
        let want: [u8; 28] = [
            28, 0, 0, 0,   0x20, 0,   5, 0,   7, 0, 0, 0,   0, 0, 0, 0,
            15, 1, 0, 0,
            8, 0, 4, 0,   0x84, 3, 0, 0,
        ];
        assert_eq!(buf, want);
        let msgs: Vec<_> = Messages::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].seq, 7);
        let (cmd, attrs) = msgs[0].genl().unwrap();
        assert_eq!(cmd, 15);
        assert_eq!(attrs.count(), 1);
    }

    #[test]
    fn decodes_capped_ack_with_extack_message() {
        #[rustfmt::skip]
        let mut payload = vec![
            0xea, 0xff, 0xff, 0xff, // -22
            40, 0, 0, 0,  0x20, 0,  5, 0,  9, 0, 0, 0,  0, 0, 0, 0, // echoed header
        ];
        payload.extend_from_slice(&[8, 0, 1, 0, b'b', b'a', b'd', 0]);
        let msg = Message {
            ty: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 9,
            payload: &payload,
        };
        let ack = msg.ack().unwrap();
        assert_eq!(ack.errno, libc::EINVAL);
        assert_eq!(ack.request_seq, 9);
        assert_eq!(ack.message.as_deref(), Some("bad"));
    }

    #[test]
    fn truncated_messages_are_errors() {
        assert!(Messages::new(&[1, 2, 3]).next().unwrap().is_err());
        let lying = [64u8, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert!(Messages::new(&lying).next().unwrap().is_err());
        let short_err = Message {
            ty: NLMSG_ERROR,
            flags: 0,
            seq: 0,
            payload: &[0, 0],
        };
        assert!(short_err.ack().is_err());
        let min = i32::MIN.to_ne_bytes();
        let overflow = Message {
            ty: NLMSG_DONE,
            flags: 0,
            seq: 0,
            payload: &min,
        };
        assert!(overflow.ack().is_err());
    }
}
