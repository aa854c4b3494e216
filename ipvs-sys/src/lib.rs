//! # ipvs-sys
//!
//! A typed client for Linux IPVS (the kernel's L4 load balancer) over
//! generic netlink, and the few rtnetlink calls an IPVS service proxy needs
//! (a dummy link and its addresses).
//!
//! * [`IpvsClient`] covers every IPVS command: services and real servers
//!   (add, update, delete, get, dump), flush, zero, info and timeouts.
//! * [`IpvsClient::apply`] pipelines many [`Op`]s per `sendmsg` and returns
//!   one result per op, so a sync of 100,000 changes costs a few hundred
//!   system calls, not 100,000 round trips.
//! * [`rtnl::RtnlClient`] ensures a dummy link and lists, adds and removes
//!   its addresses, also batched.
//! * [`ipvsadm`] renders and parses `ipvsadm -S` rule lines, to compare with
//!   the classic tool and to export state.
//!
//! Kernel errors become an [`Error`] with an [`ErrorKind`] to match on.
//! Replies are decoded defensively: truncated or garbage input is a
//! [`DecodeError`], never a panic.
//!
//! ```no_run
//! use ipvs_sys::{Destination, IpvsClient, Op, Scheduler, Service, ServiceKey};
//! let mut ipvs = IpvsClient::open()?;
//! let key = ServiceKey::tcp("10.96.0.10:80".parse().unwrap());
//! let results = ipvs.apply(&[
//!     Op::AddService(Service::new(key, Scheduler::RoundRobin)),
//!     Op::AddDestination(key, Destination::masq("10.244.1.5:8080".parse().unwrap())),
//! ])?;
//! assert!(results.iter().all(|r| r.is_ok()));
//! # Ok::<(), ipvs_sys::Error>(())
//! ```

pub mod error;
pub mod ipvs;
pub mod ipvsadm;
pub mod netlink;
pub mod rtnl;

pub use error::{DecodeError, Error, ErrorKind, Result};
pub use ipvs::client::{IpvsClient, ServiceEntry};
pub use ipvs::model::{
    AddressFamily, Destination, DestinationState, Forwarding, Info, ModuleName, Netmask, Protocol,
    Scheduler, Service, ServiceFlags, ServiceKey, ServiceState, Stats, Timeouts, Tunnel,
    TunnelChecksum, Version,
};
pub use ipvs::op::Op;
