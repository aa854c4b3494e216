//! Changes to the IPVS table as values, so that many can be sent at once.

use std::net::SocketAddr;

use super::codec;
use super::consts::{IPVS_GENL_VERSION, cmd, cmd_attr};
use super::model::{Destination, Service, ServiceKey};
use crate::error::{Error, Subject};
use crate::netlink::message::{Header, MessageWriter, NLM_F_ACK, NLM_F_REQUEST};

/// One change to the kernel's IPVS table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add a virtual service (fails with `Exists` if it is there).
    AddService(Service),
    /// Change a virtual service's scheduler, flags, timeout or netmask.
    UpdateService(Service),
    /// Remove a virtual service and its real servers.
    DeleteService(ServiceKey),
    /// Add a real server to a virtual service.
    AddDestination(ServiceKey, Destination),
    /// Change a real server's forwarding, weight or thresholds.
    UpdateDestination(ServiceKey, Destination),
    /// Remove a real server (identified by address and port).
    DeleteDestination(ServiceKey, SocketAddr),
    /// Remove every virtual service.
    Flush,
    /// Zero the statistics of one service, or of all when `None`.
    Zero(Option<ServiceKey>),
}

impl Op {
    /// A description for error messages, e.g. `add service TCP 10.0.0.1:80`.
    pub fn describe(&self) -> String {
        match self {
            Self::AddService(s) => format!("add service {}", s.key),
            Self::UpdateService(s) => format!("update service {}", s.key),
            Self::DeleteService(k) => format!("delete service {k}"),
            Self::AddDestination(k, d) => format!("add real server {} to {k}", d.addr),
            Self::UpdateDestination(k, d) => format!("update real server {} of {k}", d.addr),
            Self::DeleteDestination(k, a) => format!("delete real server {a} from {k}"),
            Self::Flush => "flush all services".into(),
            Self::Zero(Some(k)) => format!("zero counters of {k}"),
            Self::Zero(None) => "zero all counters".into(),
        }
    }

    pub(crate) fn subject(&self) -> Subject {
        match self {
            Self::AddDestination(..)
            | Self::UpdateDestination(..)
            | Self::DeleteDestination(..) => Subject::Destination,
            _ => Subject::Service,
        }
    }

    /// Checks what the kernel would reject with a bare EINVAL, so the error
    /// can say what is wrong. [`crate::IpvsClient::apply`] calls it.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Self::AddService(s) | Self::UpdateService(s) => s.validate(),
            Self::AddDestination(_, d) | Self::UpdateDestination(_, d) => d.validate(),
            _ => Ok(()),
        }
    }

    /// Appends the request for this op (asking for an acknowledgement) to
    /// `buf` as message type `family` (the IPVS generic netlink family id)
    /// with sequence number `seq`. Call [`Op::validate`] first.
    pub fn encode(&self, buf: &mut Vec<u8>, family: u16, seq: u32) {
        let command = match self {
            Self::AddService(_) => cmd::NEW_SERVICE,
            Self::UpdateService(_) => cmd::SET_SERVICE,
            Self::DeleteService(_) => cmd::DEL_SERVICE,
            Self::AddDestination(..) => cmd::NEW_DEST,
            Self::UpdateDestination(..) => cmd::SET_DEST,
            Self::DeleteDestination(..) => cmd::DEL_DEST,
            Self::Flush => cmd::FLUSH,
            Self::Zero(_) => cmd::ZERO,
        };
        let header = Header {
            ty: family,
            flags: NLM_F_REQUEST | NLM_F_ACK,
            seq,
        };
        let mut msg = MessageWriter::begin_genl(buf, header, command, IPVS_GENL_VERSION);
        let mut w = msg.attrs();
        match self {
            Self::AddService(s) | Self::UpdateService(s) => {
                let n = w.begin_nested(cmd_attr::SERVICE);
                codec::put_service(&mut w, s);
                w.end_nested(n);
            }
            Self::DeleteService(k) | Self::Zero(Some(k)) => {
                codec::put_nested_service_key(&mut w, k)
            }
            Self::AddDestination(k, d) | Self::UpdateDestination(k, d) => {
                codec::put_nested_service_key(&mut w, k);
                let n = w.begin_nested(cmd_attr::DEST);
                codec::put_destination(&mut w, d);
                w.end_nested(n);
            }
            Self::DeleteDestination(k, a) => {
                codec::put_nested_service_key(&mut w, k);
                let n = w.begin_nested(cmd_attr::DEST);
                codec::put_destination_key(&mut w, a);
                w.end_nested(n);
            }
            Self::Flush | Self::Zero(None) => {}
        }
        msg.finish();
    }
}
