//! Neighbour, forwarding-entry and route changes as values, applied in
//! pipelined batches with one verdict per change.

use std::fmt;

use super::neigh::{FdbEntry, Neighbour, RTM_DELNEIGH, RTM_NEWNEIGH, write_fdb, write_neighbour};
use super::route::{RTM_DELROUTE, RTM_NEWROUTE, Route, write_route};
use super::{ACK, RtnlClient};
use crate::error::{Error, Subject};
use crate::netlink::message::{Header, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use crate::netlink::transport_error;

/// One change for [`RtnlClient::apply`]. Replacements create or overwrite
/// (`NLM_F_CREATE | NLM_F_REPLACE`), so applying one twice is harmless;
/// deleting what is not there is an [`crate::ErrorKind::NoSuchEntry`] error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// `ip neigh replace IP lladdr MAC dev LINK nud permanent`.
    ReplaceNeighbour(Neighbour),
    /// `ip neigh del IP dev LINK`.
    DeleteNeighbour(Neighbour),
    /// `bridge fdb replace MAC dev LINK dst DST self permanent`.
    ReplaceFdb(FdbEntry),
    /// `bridge fdb del MAC dev LINK dst DST self`: removes that remote only.
    DeleteFdb(FdbEntry),
    /// `ip route replace ...` in the main table.
    ReplaceRoute(Route),
    /// `ip route del ...` in the main table.
    DeleteRoute(Route),
}

struct Mac<'a>(&'a [u8; 6]);

impl fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

fn describe_route(r: &Route) -> String {
    let mut s = format!("{}/{}", r.dst, r.prefix_len);
    if let Some(gw) = r.gateway {
        s += &format!(" via {gw}");
    }
    if let Some(oif) = r.oif {
        s += &format!(" dev {oif}");
    }
    if r.onlink {
        s += " onlink";
    }
    s
}

impl Change {
    /// What the change does, for error messages and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::ReplaceNeighbour(n) => format!(
                "replace neighbour {} lladdr {} on link {}",
                n.ip,
                Mac(&n.mac),
                n.index
            ),
            Self::DeleteNeighbour(n) => {
                format!("delete neighbour {} on link {}", n.ip, n.index)
            }
            Self::ReplaceFdb(e) => format!(
                "replace forwarding entry {} dst {} on link {}",
                Mac(&e.mac),
                e.dst,
                e.index
            ),
            Self::DeleteFdb(e) => format!(
                "delete forwarding entry {} dst {} on link {}",
                Mac(&e.mac),
                e.dst,
                e.index
            ),
            Self::ReplaceRoute(r) => format!("replace route {}", describe_route(r)),
            Self::DeleteRoute(r) => format!("delete route {}", describe_route(r)),
        }
    }

    fn subject(&self) -> Subject {
        match self {
            Self::ReplaceRoute(_) | Self::DeleteRoute(_) => Subject::Route,
            _ => Subject::Neighbour,
        }
    }

    /// Appends this change as one request numbered `seq`.
    fn write(&self, buf: &mut Vec<u8>, seq: u32) {
        let replace = ACK | NLM_F_CREATE | NLM_F_REPLACE;
        let header = |ty, flags| Header {
            ty,
            flags: NLM_F_REQUEST | flags,
            seq,
        };
        match self {
            Self::ReplaceNeighbour(n) => write_neighbour(buf, header(RTM_NEWNEIGH, replace), n),
            Self::DeleteNeighbour(n) => write_neighbour(buf, header(RTM_DELNEIGH, ACK), n),
            Self::ReplaceFdb(e) => write_fdb(buf, header(RTM_NEWNEIGH, replace), e),
            Self::DeleteFdb(e) => write_fdb(buf, header(RTM_DELNEIGH, ACK), e),
            Self::ReplaceRoute(r) => write_route(buf, header(RTM_NEWROUTE, replace), r, false),
            Self::DeleteRoute(r) => write_route(buf, header(RTM_DELROUTE, ACK), r, true),
        }
    }
}

impl RtnlClient {
    /// Applies changes in order, pipelined like [`crate::IpvsClient::apply`]:
    /// as many requests per `sendmsg` as the socket buffers allow, one result
    /// per change, and a failing change does not stop the others.
    pub fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<(), Error>>, Error> {
        let window = self.conn.window_ops();
        self.apply_windowed(changes, window)
    }

    /// Applies changes one request per `sendmsg`, waiting for each
    /// acknowledgement, as a classic netlink library does (for comparisons).
    pub fn apply_unbatched(&mut self, changes: &[Change]) -> Result<Vec<Result<(), Error>>, Error> {
        self.apply_windowed(changes, 1)
    }

    fn apply_windowed(
        &mut self,
        changes: &[Change],
        window: usize,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let mut results = Vec::with_capacity(changes.len());
        let max_bytes = self.conn.window_bytes();
        let mut rest = changes;
        while !rest.is_empty() {
            self.buf.clear();
            let first = self.conn.peek_seq();
            let mut n = 0;
            // Fill the window by count and by bytes (each request is far
            // smaller than the byte window, so at least one always fits).
            while n < rest.len() && n < window && (n == 0 || self.buf.len() < max_bytes - 256) {
                rest[n].write(&mut self.buf, first.wrapping_add(n as u32));
                n += 1;
            }
            let reserved = self.conn.next_seq(n as u32);
            debug_assert_eq!(reserved, first);
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let buf = std::mem::take(&mut self.buf);
            self.count(n);
            let verdicts = self.conn.pipeline(&buf, first, n);
            self.buf = buf;
            let verdicts = verdicts.map_err(|e| transport_error("apply rtnetlink changes", e))?;
            for (change, v) in batch.iter().zip(verdicts) {
                results.push(v.map_err(|ack| {
                    Error::from_kernel(ack.errno, change.subject(), change.describe(), ack.message)
                }));
            }
        }
        Ok(results)
    }
}
