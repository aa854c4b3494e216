//! A small, dependency-light netlink layer: attribute and message codecs
//! that never trust a length, and a socket that pipelines requests.
//!
//! It is hand-written rather than taken from neli or netlink-packet-* because
//! the IPVS client needs two things those crates do not offer together: many
//! requests per `sendmsg` with one verdict each (a 100,000-rule sync must not
//! be 100,000 round trips), and decoders we can fuzz directly.

pub mod attr;
pub mod message;
pub mod socket;

use crate::error::{Error, Subject};
use message::{Header, MessageWriter, NLM_F_ACK, NLM_F_REQUEST};
use socket::{Connection, TransportError};

/// `GENL_ID_CTRL`: the generic netlink controller's message type.
const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID` (u16).
const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME` (string).
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// Converts a transport failure into a crate error about `context`.
pub(crate) fn transport_error(context: &str, e: TransportError) -> Error {
    match e {
        TransportError::Io(e) => Error::io(context, e),
        TransportError::Decode(e) => Error::decode(context, e),
    }
}

/// Looks up the id of the generic netlink family `name`.
pub(crate) fn resolve_family(conn: &mut Connection, name: &str) -> Result<u16, Error> {
    let context = format!("resolve generic netlink family {name:?}");
    let seq = conn.next_seq(1);
    let mut buf = Vec::with_capacity(64);
    let mut w = MessageWriter::begin_genl(
        &mut buf,
        Header {
            ty: GENL_ID_CTRL,
            flags: NLM_F_REQUEST | NLM_F_ACK,
            seq,
        },
        CTRL_CMD_GETFAMILY,
        1,
    );
    w.attrs().cstr(CTRL_ATTR_FAMILY_NAME, name);
    w.finish();
    let mut id = None;
    let verdict = conn
        .transact(&buf, seq, |msg| {
            let (_, attrs) = msg.genl()?;
            for a in attrs {
                let a = a?;
                if a.ty == CTRL_ATTR_FAMILY_ID {
                    id = Some(a.u16()?);
                }
            }
            Ok(())
        })
        .map_err(|e| transport_error(&context, e))?;
    if let Err(ack) = verdict {
        return Err(Error::from_kernel(
            ack.errno,
            Subject::Family,
            context,
            ack.message,
        ));
    }
    id.ok_or_else(|| {
        Error::decode(
            context,
            crate::error::DecodeError::new("controller reply without a family id"),
        )
    })
}
