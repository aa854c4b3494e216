//! Endpoint selection: kube-proxy's `pkg/proxy/topology.go`
//! (`CategorizeEndpoints`) and the EndpointSlice cache's join.

use std::net::SocketAddr;

use ipvs_sys::{AddressFamily, Protocol};

use super::NodeFacts;
use crate::model::EndpointSliceView;

/// One endpoint of one Service port, joined over the Service's slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ep<'a> {
    pub addr: SocketAddr,
    pub local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub zone_hints: &'a [String],
    pub node_hints: &'a [String],
}

/// The endpoints of Service port (`name`, `protocol`) in `family`, over all
/// `slices` (which the caller sorted by name): slice ports match on name and
/// protocol; endpoints are deduplicated by address and port, a local copy
/// winning over a remote one, as in kube-proxy's `addEndpoints`. Sorted by
/// address.
pub(crate) fn gather<'a>(
    slices: &[&'a EndpointSliceView],
    family: AddressFamily,
    name: &str,
    protocol: Protocol,
    node: &NodeFacts,
) -> Vec<Ep<'a>> {
    let mut out: Vec<Ep<'a>> = Vec::new();
    for slice in slices.iter().filter(|s| s.family == family) {
        for sp in slice
            .ports
            .iter()
            .filter(|p| p.name == name && p.protocol == protocol)
        {
            out.reserve(slice.endpoints.len());
            out.extend(slice.endpoints.iter().map(|e| Ep {
                addr: SocketAddr::new(e.ip, sp.port),
                local: node.is_local(e.node_name.as_deref()),
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                zone_hints: &e.zone_hints,
                node_hints: &e.node_hints,
            }));
        }
    }
    // Stable sort, local copies first: dedup keeps the first local copy, or
    // the first copy when none is local.
    out.sort_by_key(|e| (e.addr, !e.local));
    out.dedup_by_key(|e| e.addr);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    SameNode,
    SameZone,
}

/// `topologyModeFromHints`: node hints if every ready endpoint has some and
/// one names this node (under the gate); else zone hints if every ready
/// endpoint has some and one names this zone; else no filtering.
fn topology_mode(eps: &[Ep<'_>], node: &NodeFacts, node_hints_gate: bool) -> Mode {
    let zone = node.zone.as_deref().unwrap_or("");
    let (mut all_node, mut for_node, mut all_zone, mut for_zone) = (true, false, true, false);
    for ep in eps.iter().filter(|e| e.ready) {
        if ep.zone_hints.is_empty() {
            all_zone = false;
        } else if ep.zone_hints.iter().any(|z| z == zone) {
            for_zone = true;
        }
        if ep.node_hints.is_empty() {
            all_node = false;
        } else if ep.node_hints.contains(&node.name) {
            for_node = true;
        }
    }
    if node_hints_gate && all_node && for_node {
        Mode::SameNode
    } else if all_zone && for_zone {
        Mode::SameZone
    } else {
        Mode::All
    }
}

/// The endpoints a Service port may use.
#[derive(Debug, Default)]
pub(crate) struct Categorized {
    /// For Cluster traffic policy (empty if the port uses no Cluster policy).
    pub cluster: Vec<SocketAddr>,
    /// For Local traffic policy (empty if the port uses no Local policy).
    pub local: Vec<SocketAddr>,
}

impl Categorized {
    /// What a virtual server uses: with a Local policy the local endpoints,
    /// or, if there are none, the cluster endpoints (kubernetes PR #97081:
    /// pods on this node can still reach the Service; empty when the port
    /// uses no Cluster policy).
    pub fn pick(&self, only_local: bool) -> &[SocketAddr] {
        if only_local && !self.local.is_empty() {
            &self.local
        } else {
            &self.cluster
        }
    }
}

/// `CategorizeEndpoints`.
pub(crate) fn categorize(
    eps: &[Ep<'_>],
    uses_cluster: bool,
    uses_local: bool,
    node: &NodeFacts,
    node_hints_gate: bool,
) -> Categorized {
    let mut out = Categorized::default();
    if uses_cluster {
        let mode = topology_mode(eps, node, node_hints_gate);
        out.cluster = eps
            .iter()
            .filter(|e| {
                e.ready
                    && match mode {
                        Mode::All => true,
                        Mode::SameNode => e.node_hints.contains(&node.name),
                        Mode::SameZone => {
                            let zone = node.zone.as_deref().unwrap_or("");
                            e.zone_hints.iter().any(|z| z == zone)
                        }
                    }
            })
            .map(|e| e.addr)
            .collect();
        if out.cluster.is_empty() {
            out.cluster = eps
                .iter()
                .filter(|e| e.serving && e.terminating)
                .map(|e| e.addr)
                .collect();
        }
    }
    if uses_local {
        let local = eps.iter().filter(|e| e.local);
        out.local = local.clone().filter(|e| e.ready).map(|e| e.addr).collect();
        if out.local.is_empty() {
            out.local = local
                .filter(|e| e.serving && e.terminating)
                .map(|e| e.addr)
                .collect();
        }
    }
    out
}
