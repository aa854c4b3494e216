//! What can go wrong in the proxy's shell, as types: a failed sync step
//! ([`SyncError`], counted by [`SyncStep`] in
//! `kubeproxy_sluice_sync_failures_total`), a kernel that could not be
//! opened or prepared ([`OpenError`], [`PrepareProblem`]), a failed
//! `--cleanup` step ([`CleanupError`]), and what stops the proxy
//! ([`RunError`]). Each is logged with its Display, which says what failed
//! and with what.

use std::net::SocketAddr;

use ipvs_sys::ServiceKey;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::netfilter::iptables::InvalidInterfaceName;
use crate::netfilter::sysctl::{Sysctl, SysctlError};
use crate::netfilter::{ExecError, NetfilterError, RejectedEntry, rules};

/// A step of a sync: the label of `kubeproxy_sluice_sync_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncStep {
    /// Reading the node's local addresses.
    NodeAddresses,
    /// Binding service addresses on kube-ipvs0.
    BindAddresses,
    /// Bringing IPVS to the plan.
    Ipvs,
    /// ipset entries that cannot be stored.
    IpsetEntries,
    /// ipsets and iptables rules.
    Netfilter,
    /// Unbinding stale addresses from kube-ipvs0.
    UnbindAddresses,
    /// Deleting conntrack entries of removed UDP real servers.
    Conntrack,
    /// Deleting drained real servers.
    Drain,
    /// Rendering local-traffic detection (NodeCIDR).
    LocalDetector,
    /// Serving a healthCheckNodePort.
    HealthCheck,
}

impl SyncStep {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeAddresses => "node_addresses",
            Self::BindAddresses => "bind_addresses",
            Self::Ipvs => "ipvs",
            Self::IpsetEntries => "ipset_entries",
            Self::Netfilter => "netfilter",
            Self::UnbindAddresses => "unbind_addresses",
            Self::Conntrack => "conntrack",
            Self::Drain => "drain",
            Self::LocalDetector => "local_detector",
            Self::HealthCheck => "health_check",
        }
    }
}

impl std::fmt::Display for SyncStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for SyncStep {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A sync step that failed; the sync went on past it and the next one
/// retries.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The node's addresses could not be read.
    #[error("reading the node's addresses: {0}")]
    NodeAddresses(#[source] ipvs_sys::Error),
    /// A service address could not be bound on kube-ipvs0.
    #[error("binding service addresses on kube-ipvs0: {0}")]
    BindAddresses(#[source] ipvs_sys::Error),
    /// An IPVS change (or the IPVS read before it) failed.
    #[error("IPVS: {0}")]
    Ipvs(#[source] ipvs_sys::Error),
    /// A desired ipset entry does not fit its set and was left out.
    #[error("ipset entry {} left out of {}", .0.entry, .0.set.name())]
    IpsetEntry(RejectedEntry),
    /// Writing ipsets or iptables rules failed.
    #[error("netfilter: {0}")]
    Netfilter(#[source] Box<NetfilterError>),
    /// A stale address could not be unbound from kube-ipvs0.
    #[error("unbinding stale addresses from kube-ipvs0: {0}")]
    UnbindAddresses(#[source] ipvs_sys::Error),
    /// Conntrack entries of a removed UDP real server could not be deleted.
    #[error("conntrack cleanup for {service} -> {endpoint}: {source}")]
    Conntrack {
        /// The virtual server.
        service: ServiceKey,
        /// The removed real server.
        endpoint: SocketAddr,
        /// The failure.
        #[source]
        source: Box<ExecError>,
    },
    /// A drained real server could not be deleted.
    #[error("deleting drained real servers: {0}")]
    Drain(#[source] ipvs_sys::Error),
    /// The node's pod CIDRs cannot be rendered as local-traffic detection.
    #[error("NodeCIDR local-traffic detection: {0}")]
    LocalDetector(#[source] rules::ConfigError),
    /// A healthCheckNodePort could not be served.
    #[error("health check port {port} for {namespace}/{name}: {source}")]
    HealthCheck {
        /// The port.
        port: u16,
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// Why it could not be bound.
        #[source]
        source: std::io::Error,
    },
}

impl SyncError {
    /// The step that failed.
    pub fn step(&self) -> SyncStep {
        match self {
            Self::NodeAddresses(_) => SyncStep::NodeAddresses,
            Self::BindAddresses(_) => SyncStep::BindAddresses,
            Self::Ipvs(_) => SyncStep::Ipvs,
            Self::IpsetEntry(_) => SyncStep::IpsetEntries,
            Self::Netfilter(_) => SyncStep::Netfilter,
            Self::UnbindAddresses(_) => SyncStep::UnbindAddresses,
            Self::Conntrack { .. } => SyncStep::Conntrack,
            Self::Drain(_) => SyncStep::Drain,
            Self::LocalDetector(_) => SyncStep::LocalDetector,
            Self::HealthCheck { .. } => SyncStep::HealthCheck,
        }
    }
}

/// The kernel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// IPVS (generic netlink) could not be opened: no `ip_vs` module?
    #[error("opening IPVS: {0}")]
    Ipvs(#[source] ipvs_sys::Error),
    /// rtnetlink could not be opened.
    #[error("opening rtnetlink: {0}")]
    Rtnl(#[source] ipvs_sys::Error),
    /// The local-traffic detection interface is not a valid name.
    #[error("detect-local-mode: {0}")]
    Interface(#[source] InvalidInterfaceName),
    /// The netfilter configuration cannot be rendered.
    #[error("netfilter configuration: {0}")]
    Netfilter(#[source] rules::ConfigError),
}

/// Something kernel preparation could not do; the proxy starts anyway.
#[derive(Debug, thiserror::Error)]
pub enum PrepareProblem {
    /// The kernel version could not be read (sysctls left alone).
    #[error("reading the kernel version: {0}")]
    KernelVersion(#[source] std::io::Error),
    /// A sysctl could not be set.
    #[error("sysctl {} = {}: {source}", .sysctl.path, .sysctl.value)]
    Sysctl {
        /// The sysctl.
        sysctl: Sysctl,
        /// Why.
        #[source]
        source: SysctlError,
    },
    /// The IPVS timeouts could not be set.
    #[error("IPVS timeouts: {0}")]
    Timeouts(#[source] ipvs_sys::Error),
}

/// A `--cleanup` step that failed (cleanup goes on past each).
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The kernel could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Our virtual servers could not be removed.
    #[error("removing our IPVS virtual servers: {0}")]
    Ipvs(#[source] ipvs_sys::Error),
    /// Our chains or sets could not be removed.
    #[error("removing our chains and sets: {0}")]
    Netfilter(#[source] NetfilterError),
    /// kube-ipvs0 could not be removed.
    #[error("removing kube-ipvs0: {0}")]
    Link(#[source] ipvs_sys::Error),
    /// An overlay cleanup step failed.
    #[error("overlay: {0}")]
    Overlay(#[source] crate::overlay::OverlayError),
}

/// What stops the proxy.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No API client.
    #[error(transparent)]
    Client(#[from] sluice_kube::client::ClientError),
    /// The kernel could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A server address could not be bound.
    #[error("{what} server on {addr}: {source}")]
    Listen {
        /// `healthz` or `metrics`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The overlay could not start.
    #[error("overlay: {0}")]
    Overlay(#[source] crate::overlay::OverlayError),
    /// The thread owning the kernel handles stopped (it panicked).
    #[error("the kernel worker stopped")]
    WorkerGone,
    /// Some `--cleanup` steps failed.
    #[error("cleanup: {}", join(.0))]
    Cleanup(Vec<CleanupError>),
}

fn join(errors: &[CleanupError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
