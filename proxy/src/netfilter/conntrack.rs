//! Deleting stale UDP conntrack entries after an endpoint goes away, through
//! the `conntrack` CLI with typed arguments only.
//!
//! kube-proxy clears UDP flows of a service that still point at a removed
//! endpoint, or traffic keeps going to it until the entry times out
//! (`pkg/proxy/conntrack/cleanup.go`; kubernetes#71514, #105192).

use std::net::IpAddr;

use ipvs_sys::AddressFamily;

use super::exec::{CommandRunner, ExecError};

/// UDP flows to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UdpFlows {
    /// Flows to `vip:port` (a ClusterIP, external or LoadBalancer IP) that
    /// were translated to `endpoint`.
    ToServiceIp {
        /// Service address.
        vip: IpAddr,
        /// Service port.
        port: u16,
        /// The removed endpoint's address.
        endpoint: IpAddr,
    },
    /// Flows to node port `port` (any node address) that were translated to
    /// `endpoint`.
    ToNodePort {
        /// The NodePort.
        port: u16,
        /// The removed endpoint's address.
        endpoint: IpAddr,
    },
}

impl UdpFlows {
    /// The family of the flows.
    pub fn family(&self) -> AddressFamily {
        match self {
            Self::ToServiceIp { endpoint, .. } | Self::ToNodePort { endpoint, .. } => {
                AddressFamily::of(endpoint)
            }
        }
    }

    /// The `conntrack` arguments:
    /// `-D -p udp [--orig-dst VIP] --orig-port-dst PORT --reply-src EP -f ipv4|ipv6`.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
        let (port, endpoint) = match *self {
            Self::ToServiceIp {
                vip,
                port,
                endpoint,
            } => {
                a.extend(["--orig-dst".into(), vip.to_string()]);
                (port, endpoint)
            }
            Self::ToNodePort { port, endpoint } => (port, endpoint),
        };
        a.extend([
            "--orig-port-dst".into(),
            port.to_string(),
            "--reply-src".into(),
            endpoint.to_string(),
            "-f".into(),
            match self.family() {
                AddressFamily::Ipv4 => "ipv4".into(),
                AddressFamily::Ipv6 => "ipv6".into(),
            },
        ]);
        a
    }
}

/// Deletes the flows; returns how many entries the kernel removed. Finding
/// none is not an error (`conntrack` exits 1 then).
pub fn delete_udp_flows(runner: &dyn CommandRunner, flows: &UdpFlows) -> Result<u64, ExecError> {
    let args = flows.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match runner.run("conntrack", &args, None) {
        Ok(out) => Ok(deleted_count(&out.stderr)
            .or_else(|| deleted_count(&out.stdout))
            .unwrap_or(0)),
        Err(ExecError::Failed { stderr, .. }) if deleted_count(&stderr) == Some(0) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Reads `N flow entries have been deleted` from conntrack's summary.
pub fn deleted_count(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (head, _) = l.split_once(" flow entries have been deleted")?;
        head.rsplit(' ').next()?.parse().ok()
    })
}
