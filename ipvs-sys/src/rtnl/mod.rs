//! rtnetlink: the dummy link that holds service addresses (`kube-ipvs0`) and
//! its addresses, the overlay's VXLAN link, neighbours, forwarding entries
//! and routes, with the same typed errors and batching as the IPVS client.
//! The product never shells out to `ip`.

mod addr;
mod change;
mod link;
mod neigh;
mod route;
mod vxlan;

pub use addr::{AddrOp, Address};
pub use change::Change;
pub use link::Link;
pub use neigh::{FdbEntry, FdbRecord, NTF_SELF, NUD_PERMANENT, Neighbour, NeighbourRecord};
pub use route::{RT_TABLE_MAIN, RTPROT_KERNEL, Route, RouteRecord};
pub use vxlan::{VxlanConfig, VxlanLink, VxlanSpec};

use crate::error::{DecodeError, Error, Subject};
use crate::netlink::attr::AttrWriter;
use crate::netlink::message::{Header, Message, MessageWriter, NLM_F_ACK, NLM_F_REQUEST};
use crate::netlink::socket::Connection;
use crate::netlink::transport_error;

/// A connection to the kernel's routing netlink (`NETLINK_ROUTE`).
pub struct RtnlClient {
    conn: Connection,
    buf: Vec<u8>,
    counters: Counters,
}

/// What a client has sent so far: how many requests and in how many
/// `sendmsg` calls (a batch of many requests is one call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Netlink requests sent (dumps, queries and changes).
    pub requests: u64,
    /// `sendmsg` calls made.
    pub sendmsgs: u64,
}

impl RtnlClient {
    /// Opens the socket.
    pub fn open() -> Result<Self, Error> {
        let conn = Connection::open(netlink_sys::protocols::NETLINK_ROUTE)
            .map_err(|e| Error::io("open rtnetlink socket", e))?;
        Ok(Self {
            conn,
            buf: Vec::with_capacity(1024),
            counters: Counters::default(),
        })
    }

    /// How many requests and `sendmsg` calls this client has made.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Counts one `sendmsg` carrying `requests` requests.
    fn count(&mut self, requests: usize) {
        self.counters.requests += requests as u64;
        self.counters.sendmsgs += 1;
    }

    /// Sends one request with a fixed header `fixed` and attributes from
    /// `fill`; feeds each reply to `on_reply`.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        ty: u16,
        flags: u16,
        fixed: &[u8],
        subject: Subject,
        context: impl FnOnce() -> String,
        fill: impl FnOnce(&mut AttrWriter<'_>),
        on_reply: impl FnMut(&Message<'_>) -> Result<(), DecodeError>,
    ) -> Result<(), Error> {
        let seq = self.conn.next_seq(1);
        self.buf.clear();
        let header = Header {
            ty,
            flags: NLM_F_REQUEST | flags,
            seq,
        };
        let mut msg = MessageWriter::begin(&mut self.buf, header);
        msg.fixed(fixed);
        fill(&mut msg.attrs());
        msg.finish();
        let buf = std::mem::take(&mut self.buf);
        self.count(1);
        let result = self.conn.transact(&buf, seq, on_reply);
        self.buf = buf;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ack)) => Err(Error::from_kernel(
                ack.errno,
                subject,
                context(),
                ack.message,
            )),
            Err(e) => Err(transport_error(&context(), e)),
        }
    }
}

/// `ACK` flag re-exported for the submodules.
const ACK: u16 = NLM_F_ACK;
