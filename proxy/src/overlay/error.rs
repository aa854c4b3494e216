//! What can go wrong in the overlay's shell, as types; each is logged with
//! its Display and retried (or, at start, stops the overlay).

use std::path::PathBuf;

use super::kernel::OverlayKernelError;
use super::plan::PlanError;
use crate::netfilter::ExecError;
use crate::netfilter::iptables::SaveParseError;

/// A failed overlay step.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The network namespace could not be joined.
    #[error("network namespace {}: {source}", path.display())]
    Netns {
        /// Its path (`/run/netns/NAME`).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The thread that joins the namespace panicked.
    #[error("the network namespace thread panicked")]
    NetnsThread,
    /// The VXLAN device, neighbours, FDB entries or routes.
    #[error(transparent)]
    Kernel(#[from] OverlayKernelError),
    /// rtnetlink could not be opened.
    #[error("opening rtnetlink: {0}")]
    Rtnl(#[source] ipvs_sys::Error),
    /// The underlay interface or its facts.
    #[error("underlay: {0}")]
    Underlay(#[from] UnderlayError),
    /// This node cannot be planned (no pod CIDR yet, ...).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The device could not be created or adopted.
    #[error("device {name}: {source}")]
    Device {
        /// The device.
        name: String,
        /// Why.
        #[source]
        source: Box<OverlayError>,
    },
    /// One remote node's entries could not be written.
    #[error("{entry}: {reason}")]
    Entry {
        /// Which entry.
        entry: String,
        /// Why.
        reason: String,
    },
    /// subnet.env or the CNI conflist could not be written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The FLANNEL-* chains.
    #[error("masquerade rules: {0}")]
    Masq(#[from] MasqError),
    /// A device could not be removed (`--cleanup`).
    #[error("removing {name}: {source}")]
    RemoveDevice {
        /// The device.
        name: String,
        /// Why.
        #[source]
        source: OverlayKernelError,
    },
    /// Neither an API server nor `--manifests` to read Nodes from.
    #[error("the overlay needs an API server or --manifests")]
    NoNodeSource,
    /// A blocking step panicked.
    #[error("overlay task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Why the underlay could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    /// An interface name with a NUL byte.
    #[error("interface name {0:?} contains NUL")]
    NulInName(String),
    /// No interface of that name.
    #[error("interface {name:?}: {source}")]
    NoSuchInterface {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No interface of that index.
    #[error("interface index {index}: {source}")]
    NoSuchIndex {
        /// The index.
        index: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The MTU could not be read.
    #[error("interface {name:?} MTU: {source}")]
    Mtu {
        /// The interface.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The MTU read is negative.
    #[error("interface {name:?} reports MTU {mtu}")]
    BadMtu {
        /// The interface.
        name: String,
        /// What it said.
        mtu: i32,
    },
    /// The address dump failed.
    #[error("address dump: {0}")]
    AddressDump(#[source] ipvs_sys::Error),
    /// No default route to find the interface by.
    #[error("no default route: name the underlay with --overlay-iface")]
    NoDefaultRoute,
}

/// Why the masquerade chains could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    /// iptables-save or iptables-restore failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// iptables-save printed something unreadable.
    #[error(transparent)]
    Parse(#[from] SaveParseError),
}
