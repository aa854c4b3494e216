//! Links: look one up, ensure a dummy link exists, set it up or down, delete it.

use super::{ACK, RtnlClient};
use crate::error::{DecodeError, Error, ErrorKind, Subject};
use crate::netlink::attr::{Attr, Attrs};
use crate::netlink::message::{Message, NLM_F_CREATE, NLM_F_EXCL};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
pub(super) const IFLA_IFNAME: u16 = 3;
pub(super) const IFLA_LINKINFO: u16 = 18;
pub(super) const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFF_UP: u32 = 1;
/// `IFNAMSIZ`, including the NUL.
const IFNAMSIZ: usize = 16;
/// `struct ifinfomsg` length.
pub(super) const IFINFOMSG_LEN: usize = 16;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind (`dummy`, `veth`, `vxlan`, ...) when it has one.
    pub kind: Option<String>,
    /// Whether it is administratively up.
    pub up: bool,
}

pub(super) fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    // family AF_UNSPEC, pad, type 0
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

pub(super) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() >= IFNAMSIZ
        || name.contains(['/', '\0'])
        || name.contains(char::is_whitespace)
    {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("interface name {name:?} must be 1 to 15 characters without '/' or spaces"),
        ));
    }
    Ok(())
}

/// Decodes an `RTM_NEWLINK` message.
pub(crate) fn decode_link(msg: &Message<'_>) -> Result<Link, DecodeError> {
    decode_link_with(msg, |_| Ok(()), |_| {})
}

/// Decodes the parts of an `RTM_NEWLINK` message every link has (index,
/// flags, name, kind). Every other top-level attribute goes to `other`,
/// and the `IFLA_INFO_DATA` nest (the kind's own attributes) to
/// `info_data`, for decoders of richer link types.
pub(super) fn decode_link_with<'a>(
    msg: &Message<'a>,
    mut other: impl FnMut(&Attr<'a>) -> Result<(), DecodeError>,
    mut info_data: impl FnMut(Attrs<'a>),
) -> Result<Link, DecodeError> {
    let p = msg.payload;
    if p.len() < IFINFOMSG_LEN {
        return Err(DecodeError::new(
            "link message shorter than struct ifinfomsg",
        ));
    }
    let index = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
    let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
    let mut link = Link {
        index,
        name: String::new(),
        kind: None,
        up: flags & IFF_UP != 0,
    };
    for a in Attrs::new(&p[IFINFOMSG_LEN..]) {
        let a = a?;
        match a.ty {
            IFLA_IFNAME => link.name = a.cstr()?.to_owned(),
            IFLA_LINKINFO => {
                for i in a.nested() {
                    let i = i?;
                    match i.ty {
                        IFLA_INFO_KIND => link.kind = Some(i.cstr()?.to_owned()),
                        IFLA_INFO_DATA => info_data(i.nested()),
                        _ => {}
                    }
                }
            }
            _ => other(&a)?,
        }
    }
    Ok(link)
}

impl RtnlClient {
    /// The link called `name`, or `None`.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, Error> {
        self.link_by_name(name, decode_link)
    }

    /// Gets the link called `name` (one RTM_GETLINK) and decodes the reply
    /// with `decode`; `None` if there is no such link.
    pub(super) fn link_by_name<T>(
        &mut self,
        name: &str,
        decode: impl Fn(&Message<'_>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, Error> {
        check_name(name)?;
        let mut out = None;
        let r = self.request(
            RTM_GETLINK,
            ACK,
            &ifinfomsg(0, 0, 0),
            Subject::Link,
            || format!("get link {name}"),
            |w| w.cstr(IFLA_IFNAME, name),
            |m| {
                out = Some(decode(m)?);
                Ok(())
            },
        );
        match r {
            Ok(()) => Ok(out),
            Err(e) if e.kind() == ErrorKind::NoSuchLink => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes sure a dummy link called `name` exists and returns it. An
    /// existing dummy link is kept as it is (never recreated); a link of that
    /// name of another kind is an [`ErrorKind::Exists`] error.
    pub fn ensure_dummy(&mut self, name: &str) -> Result<Link, Error> {
        if let Some(link) = self.link(name)? {
            return match link.kind.as_deref() {
                Some("dummy") => Ok(link),
                other => Err(Error::new(
                    ErrorKind::Exists,
                    format!("link {name} exists but is of kind {other:?}, not dummy"),
                )),
            };
        }
        let created = self.request(
            RTM_NEWLINK,
            ACK | NLM_F_CREATE | NLM_F_EXCL,
            &ifinfomsg(0, 0, 0),
            Subject::Link,
            || format!("create dummy link {name}"),
            |w| {
                w.cstr(IFLA_IFNAME, name);
                let n = w.begin_nested(IFLA_LINKINFO);
                w.cstr(IFLA_INFO_KIND, "dummy");
                w.end_nested(n);
            },
            |_| Ok(()),
        );
        match created {
            // EEXIST: created concurrently by someone else; checked below.
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "create dummy link {name}: this kernel has no dummy links \
                         (needs CONFIG_DUMMY, or `modprobe dummy`)"
                    ),
                ));
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        match self.link(name)? {
            Some(link) if link.kind.as_deref() == Some("dummy") => Ok(link),
            Some(link) => Err(Error::new(
                ErrorKind::Exists,
                format!(
                    "link {name} exists but is of kind {:?}, not dummy",
                    link.kind
                ),
            )),
            None => Err(Error::new(
                ErrorKind::NoSuchLink,
                format!("link {name} vanished right after it was created"),
            )),
        }
    }

    /// Sets a link administratively up or down.
    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), Error> {
        self.request(
            RTM_NEWLINK,
            ACK,
            &ifinfomsg(index, if up { IFF_UP } else { 0 }, IFF_UP),
            Subject::Link,
            || format!("set link {index} {}", if up { "up" } else { "down" }),
            |_| {},
            |_| Ok(()),
        )
    }

    /// Deletes a link (and with it its addresses).
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        self.request(
            RTM_DELLINK,
            ACK,
            &ifinfomsg(index, 0, 0),
            Subject::Link,
            || format!("delete link {index}"),
            |_| {},
            |_| Ok(()),
        )
    }
}
