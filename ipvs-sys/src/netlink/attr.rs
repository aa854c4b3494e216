//! Netlink attributes (`struct nlattr`): a writer that nests and pads, and a
//! bounds-checked reader that never panics on hostile input.

use crate::error::DecodeError;

/// Attribute header length (`struct nlattr`: u16 len, u16 type).
pub const NLA_HDRLEN: usize = 4;
/// Set in `nla_type` on attributes that contain attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Set in `nla_type` on attributes whose payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// Mask that strips the two flag bits from `nla_type`.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Rounds `len` up to the 4-byte netlink alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Appends attributes to a message buffer.
///
/// Nesting is explicit: [`AttrWriter::begin_nested`] returns a token that
/// [`AttrWriter::end_nested`] uses to patch the nested attribute's length.
pub struct AttrWriter<'a> {
    buf: &'a mut Vec<u8>,
}

/// Marks the start of an open nested attribute.
#[must_use = "a nested attribute must be closed with end_nested"]
pub struct Nest(usize);

impl<'a> AttrWriter<'a> {
    /// Writes attributes at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    /// Appends one attribute with a raw payload, padded to 4 bytes.
    pub fn bytes(&mut self, ty: u16, payload: &[u8]) {
        let len = NLA_HDRLEN + payload.len();
        debug_assert!(len <= u16::MAX as usize);
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// Appends a u8 attribute.
    pub fn u8(&mut self, ty: u16, v: u8) {
        self.bytes(ty, &[v]);
    }

    /// Appends a u16 attribute in host byte order.
    pub fn u16(&mut self, ty: u16, v: u16) {
        self.bytes(ty, &v.to_ne_bytes());
    }

    /// Appends a u16 attribute in network byte order (ports).
    pub fn be16(&mut self, ty: u16, v: u16) {
        self.bytes(ty, &v.to_be_bytes());
    }

    /// Appends a u32 attribute in host byte order.
    pub fn u32(&mut self, ty: u16, v: u32) {
        self.bytes(ty, &v.to_ne_bytes());
    }

    /// Appends a NUL-terminated string attribute.
    pub fn cstr(&mut self, ty: u16, s: &str) {
        let len = NLA_HDRLEN + s.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// Opens a nested attribute; close it with [`AttrWriter::end_nested`].
    pub fn begin_nested(&mut self, ty: u16) -> Nest {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        Nest(start)
    }

    /// Closes a nested attribute, writing its final length.
    pub fn end_nested(&mut self, nest: Nest) {
        let len = (self.buf.len() - nest.0) as u16;
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// One attribute read from a buffer: its type (flags stripped) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The attribute type with `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` removed.
    pub ty: u16,
    /// The payload, without header or padding.
    pub payload: &'a [u8],
}

/// Iterates the attributes in a buffer; yields an error (once) on malformed data.
#[derive(Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Attrs<'a> {
    /// Reads attributes from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.len() < NLA_HDRLEN {
            // Fewer than 4 trailing bytes can only be padding; the kernel
            // never emits them, but they carry no attribute either.
            return None;
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let ty = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.failed = true;
            return Some(Err(DecodeError::new(format!(
                "attribute type {ty} claims length {len} with {} bytes left",
                self.rest.len()
            ))));
        }
        let payload = &self.rest[NLA_HDRLEN..len];
        let next = align(len).min(self.rest.len());
        self.rest = &self.rest[next..];
        Some(Ok(Attr { ty, payload }))
    }
}

impl<'a> Attr<'a> {
    /// The payload as a u8.
    pub fn u8(&self) -> Result<u8, DecodeError> {
        Ok(self.fixed::<1>()?[0])
    }

    /// The payload as a host-order u16.
    pub fn u16(&self) -> Result<u16, DecodeError> {
        Ok(u16::from_ne_bytes(self.fixed()?))
    }

    /// The payload as a network-order u16.
    pub fn be16(&self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.fixed()?))
    }

    /// The payload as a host-order u32.
    pub fn u32(&self) -> Result<u32, DecodeError> {
        Ok(u32::from_ne_bytes(self.fixed()?))
    }

    /// The payload as a host-order u64.
    pub fn u64(&self) -> Result<u64, DecodeError> {
        Ok(u64::from_ne_bytes(self.fixed()?))
    }

    /// The payload as a string, up to the first NUL.
    pub fn cstr(&self) -> Result<&'a str, DecodeError> {
        let end = self
            .payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.payload.len());
        std::str::from_utf8(&self.payload[..end])
            .map_err(|_| DecodeError::new(format!("attribute type {} is not UTF-8", self.ty)))
    }

    /// The payload read as nested attributes.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }

    fn fixed<const N: usize>(&self) -> Result<[u8; N], DecodeError> {
        self.payload.try_into().map_err(|_| {
            DecodeError::new(format!(
                "attribute type {} has {} bytes, expected {N}",
                self.ty,
                self.payload.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_padded_and_nested_attributes() {
        let mut buf = Vec::new();
        let mut w = AttrWriter::new(&mut buf);
        let n = w.begin_nested(1);
        w.u16(1, 2);
        w.cstr(6, "rr");
        w.end_nested(n);
        assert_eq!(
            buf,
            [
                20, 0, 1, 0x80, // nested len 20, type 1|NESTED
                6, 0, 1, 0, 2, 0, 0, 0, // u16 2 + 2 pad
                7, 0, 6, 0, b'r', b'r', 0, 0, // "rr\0" + 1 pad
            ]
        );
        let outer: Vec<_> = Attrs::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(outer.len(), 1);
        let inner: Vec<_> = outer[0].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].u16().unwrap(), 2);
        assert_eq!(inner[1].cstr().unwrap(), "rr");
    }

    #[test]
    fn rejects_overlong_and_short_lengths() {
        let bad = [200u8, 0, 1, 0, 0, 0, 0, 0];
        assert!(Attrs::new(&bad).next().unwrap().is_err());
        let short = [2u8, 0, 1, 0];
        assert!(Attrs::new(&short).next().unwrap().is_err());
        let wrong_width = Attr {
            ty: 1,
            payload: &[1, 2, 3],
        };
        assert!(wrong_width.u32().is_err());
    }
}
