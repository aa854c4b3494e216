//! [`IpvsClient`]: the blocking IPVS generic netlink client.

use super::codec::{self, find_nested};
use super::consts::*;
use super::model::*;
use super::op::Op;
use crate::error::{DecodeError, Error, ErrorKind, Subject};
use crate::netlink::attr::Attrs;
use crate::netlink::message::{Header, MessageWriter, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::netlink::socket::Connection;
use crate::netlink::{resolve_family, transport_error};

/// A connection to the kernel's IPVS.
///
/// Every call is synchronous. [`IpvsClient::apply`] pipelines many changes
/// per system call; the single-object methods are conveniences over it.
pub struct IpvsClient {
    conn: Connection,
    family: u16,
    buf: Vec<u8>,
}

/// A virtual service with its real servers, as dumped.
pub type ServiceEntry = (ServiceState, Vec<DestinationState>);

impl IpvsClient {
    /// Connects and resolves the IPVS family. Fails with
    /// [`ErrorKind::NotAvailable`] when the kernel has no IPVS.
    pub fn open() -> Result<Self, Error> {
        let mut conn = Connection::open(netlink_sys::protocols::NETLINK_GENERIC)
            .map_err(|e| Error::io("open generic netlink socket", e))?;
        let family = resolve_family(&mut conn, IPVS_GENL_NAME)?;
        Ok(Self {
            conn,
            family,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The generic netlink family id the kernel gave IPVS.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// Runs one request; `on_reply` sees the top-level attributes of each
    /// reply message.
    fn request(
        &mut self,
        command: u8,
        flags: u16,
        subject: Subject,
        context: impl FnOnce() -> String,
        fill: impl FnOnce(&mut crate::netlink::attr::AttrWriter<'_>),
        mut on_reply: impl FnMut(Attrs<'_>) -> Result<(), DecodeError>,
    ) -> Result<(), Error> {
        let seq = self.conn.next_seq(1);
        self.buf.clear();
        let header = Header {
            ty: self.family,
            flags: NLM_F_REQUEST | flags,
            seq,
        };
        let mut msg = MessageWriter::begin_genl(&mut self.buf, header, command, IPVS_GENL_VERSION);
        fill(&mut msg.attrs());
        msg.finish();
        let buf = std::mem::take(&mut self.buf);
        let result = self.conn.transact(&buf, seq, |m| {
            let (_, attrs) = m.genl()?;
            on_reply(attrs)
        });
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

    /// IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info, Error> {
        let (mut version, mut size) = (None, None);
        self.request(
            cmd::GET_INFO,
            NLM_F_ACK,
            Subject::Config,
            || "get IPVS info".into(),
            |_| {},
            |attrs| {
                for a in attrs {
                    let a = a?;
                    match a.ty {
                        info_attr::VERSION => version = Some(a.u32()?),
                        info_attr::CONN_TAB_SIZE => size = Some(a.u32()?),
                        _ => {}
                    }
                }
                Ok(())
            },
        )?;
        match (version, size) {
            (Some(v), Some(s)) => Ok(Info {
                version: Version::from_code(v),
                conn_tab_size: s,
            }),
            _ => Err(Error::decode(
                "get IPVS info",
                DecodeError::new("reply lacks version or size"),
            )),
        }
    }

    /// The TCP, TCP FIN and UDP connection timeouts.
    pub fn timeouts(&mut self) -> Result<Timeouts, Error> {
        let mut t = Timeouts::default();
        self.request(
            cmd::GET_CONFIG,
            NLM_F_ACK,
            Subject::Config,
            || "get IPVS timeouts".into(),
            |_| {},
            |attrs| {
                for a in attrs {
                    let a = a?;
                    match a.ty {
                        cmd_attr::TIMEOUT_TCP => t.tcp = a.u32()?,
                        cmd_attr::TIMEOUT_TCP_FIN => t.tcp_fin = a.u32()?,
                        cmd_attr::TIMEOUT_UDP => t.udp = a.u32()?,
                        _ => {}
                    }
                }
                Ok(())
            },
        )?;
        Ok(t)
    }

    /// Sets the timeouts that are non-zero in `t`; zero ones stay as they are.
    pub fn set_timeouts(&mut self, t: &Timeouts) -> Result<(), Error> {
        self.request(
            cmd::SET_CONFIG,
            NLM_F_ACK,
            Subject::Config,
            || format!("set IPVS timeouts {t:?}"),
            |w| {
                for (ty, v) in [
                    (cmd_attr::TIMEOUT_TCP, t.tcp),
                    (cmd_attr::TIMEOUT_TCP_FIN, t.tcp_fin),
                    (cmd_attr::TIMEOUT_UDP, t.udp),
                ] {
                    if v > 0 {
                        w.u32(ty, v);
                    }
                }
            },
            |_| Ok(()),
        )
    }

    /// Every virtual service (a multipart dump).
    pub fn services(&mut self) -> Result<Vec<ServiceState>, Error> {
        let mut out = Vec::new();
        self.request(
            cmd::GET_SERVICE,
            NLM_F_DUMP,
            Subject::Service,
            || "list services".into(),
            |_| {},
            |attrs| {
                let svc = find_nested(attrs, cmd_attr::SERVICE)?
                    .ok_or_else(|| DecodeError::new("service dump entry without a service"))?;
                out.push(codec::decode_service(svc)?);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// One virtual service; [`ErrorKind::NoSuchService`] if it is not there.
    pub fn service(&mut self, key: &ServiceKey) -> Result<ServiceState, Error> {
        let mut out = None;
        self.request(
            cmd::GET_SERVICE,
            NLM_F_ACK,
            Subject::Service,
            || format!("get service {key}"),
            |w| codec::put_nested_service_key(w, key),
            |attrs| {
                if let Some(svc) = find_nested(attrs, cmd_attr::SERVICE)? {
                    out = Some(codec::decode_service(svc)?);
                }
                Ok(())
            },
        )?;
        out.ok_or_else(|| Error::new(ErrorKind::NoSuchService, format!("get service {key}")))
    }

    /// The real servers of a virtual service (a multipart dump).
    pub fn destinations(&mut self, key: &ServiceKey) -> Result<Vec<DestinationState>, Error> {
        let mut out = Vec::new();
        let family = key.family();
        self.request(
            cmd::GET_DEST,
            NLM_F_DUMP,
            Subject::Destination,
            || format!("list real servers of {key}"),
            |w| codec::put_nested_service_key(w, key),
            |attrs| {
                let dest = find_nested(attrs, cmd_attr::DEST)?.ok_or_else(|| {
                    DecodeError::new("destination dump entry without a destination")
                })?;
                out.push(codec::decode_destination(dest, family)?);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Every virtual service with its real servers.
    pub fn dump(&mut self) -> Result<Vec<ServiceEntry>, Error> {
        let services = self.services()?;
        let mut out = Vec::with_capacity(services.len());
        for s in services {
            match self.destinations(&s.service.key) {
                Ok(d) => out.push((s, d)),
                // Deleted between the two dumps: it is simply gone.
                Err(e) if e.kind() == ErrorKind::NoSuchService => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Applies `ops` in order, pipelining as many per system call as the
    /// socket buffers allow, and returns one result per op. A failing op does
    /// not stop the others. The outer error is for failures of the socket
    /// itself, after which the state of the remaining ops is unknown.
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Result<(), Error>>, Error> {
        let mut results: Vec<Result<(), Error>> = Vec::with_capacity(ops.len());
        let mut start = 0;
        while start < ops.len() {
            // Fill one window with valid ops; invalid ones get their error
            // without being sent.
            self.buf.clear();
            let mut sent: Vec<usize> = Vec::new();
            let mut idx = start;
            let first_seq = self.conn.peek_seq();
            let mut seq = first_seq;
            let mut window_results: Vec<Option<Result<(), Error>>> = Vec::new();
            while idx < ops.len()
                && sent.len() < self.conn.window_ops()
                && self.buf.len() < self.conn.window_bytes()
            {
                let op = &ops[idx];
                match op.validate() {
                    Ok(()) => {
                        op.encode(&mut self.buf, self.family, seq);
                        seq = seq.wrapping_add(1);
                        sent.push(idx);
                        window_results.push(None);
                    }
                    Err(e) => window_results.push(Some(Err(e))),
                }
                idx += 1;
            }
            let count = sent.len();
            let reserved = self.conn.next_seq(count as u32);
            debug_assert!(count == 0 || reserved == first_seq);
            let verdicts = if count > 0 {
                let buf = std::mem::take(&mut self.buf);
                let v = self.conn.pipeline(&buf, first_seq, count);
                self.buf = buf;
                v.map_err(|e| transport_error("apply IPVS changes", e))?
            } else {
                Vec::new()
            };
            let mut verdicts = verdicts.into_iter().zip(sent);
            for slot in window_results {
                results.push(match slot {
                    Some(r) => r,
                    None => match verdicts.next() {
                        Some((Ok(()), _)) => Ok(()),
                        Some((Err(ack), i)) => Err(Error::from_kernel(
                            ack.errno,
                            ops[i].subject(),
                            ops[i].describe(),
                            ack.message,
                        )),
                        None => Ok(()),
                    },
                });
            }
            start = idx;
        }
        Ok(results)
    }

    fn apply_one(&mut self, op: Op) -> Result<(), Error> {
        self.apply(std::slice::from_ref(&op))?
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Adds a virtual service.
    pub fn add_service(&mut self, s: &Service) -> Result<(), Error> {
        self.apply_one(Op::AddService(s.clone()))
    }

    /// Changes a virtual service.
    pub fn update_service(&mut self, s: &Service) -> Result<(), Error> {
        self.apply_one(Op::UpdateService(s.clone()))
    }

    /// Removes a virtual service and its real servers.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Result<(), Error> {
        self.apply_one(Op::DeleteService(*key))
    }

    /// Adds a real server to a virtual service.
    pub fn add_destination(&mut self, key: &ServiceKey, d: &Destination) -> Result<(), Error> {
        self.apply_one(Op::AddDestination(*key, *d))
    }

    /// Changes a real server.
    pub fn update_destination(&mut self, key: &ServiceKey, d: &Destination) -> Result<(), Error> {
        self.apply_one(Op::UpdateDestination(*key, *d))
    }

    /// Removes a real server.
    pub fn delete_destination(
        &mut self,
        key: &ServiceKey,
        addr: &std::net::SocketAddr,
    ) -> Result<(), Error> {
        self.apply_one(Op::DeleteDestination(*key, *addr))
    }

    /// Removes every virtual service (`ipvsadm -C`).
    pub fn flush(&mut self) -> Result<(), Error> {
        self.apply_one(Op::Flush)
    }

    /// Zeroes counters of one service, or all (`ipvsadm -Z`).
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), Error> {
        self.apply_one(Op::Zero(key.copied()))
    }
}
