//! Simulated nodes whose pods are real processes (the kwok idea, with
//! processes instead of fake status): what a kubelet does that a networking
//! data plane can observe, and nothing more.
//!
//! A [`NodeAgent`] registers a Node (Ready, capacity, addresses) with a
//! kubelet's own credentials (`system:node:<name>`, so the Node authorizer
//! and NodeRestriction judge it as they judge a kubelet), renews its Lease
//! in `kube-node-lease` so the node lifecycle controller keeps it Ready,
//! waits for node IPAM to give it a podCIDR, and makes a bridge for it
//! ([`network`]). Then it watches the Pods the scheduler binds to it:
//!
//! * each pod gets a network namespace with the next address of the podCIDR
//!   and runs its containers as local programs chosen by image
//!   ([`registry`]);
//! * readiness probes (httpGet, tcpSocket) run as the kubelet runs them, and
//!   the pod's status (podIP/podIPs, phase, the Ready and ContainersReady
//!   conditions, container states) is written back, so the real
//!   EndpointSlice controller publishes real EndpointSlices;
//! * a deleted pod gets SIGTERM and keeps running (and being probed, so it
//!   stays `serving` and `terminating`) until its grace period ends; then it
//!   is killed and deleted with grace 0, as a kubelet does.
//!
//! The agent runs on its own thread with its own runtime, so it outlives the
//! test's runtimes; dropping it stops its pods, removes their namespaces and
//! the bridge, and deletes the Node (so the scheduler stops placing pods on
//! it; tests share one cluster).

pub mod network;
mod node;
mod pods;
mod probe;
pub mod registry;
mod status;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::cluster::pki::Identity;

/// A simulated node's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Its InternalIP (default: this namespace's first global IPv4
    /// address, else 127.0.0.1).
    pub address: Option<Ipv4Addr>,
    /// Extra labels on the Node.
    pub labels: Vec<(String, String)>,
    /// Run the node's pods (a bridge and process-backed pods). Off for a
    /// node whose pod network the test builds itself (the overlay's
    /// `cni0`): then the agent only registers the Node and keeps it Ready.
    pub pods: bool,
}

impl NodeConfig {
    /// A node called `name` with default settings.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            address: None,
            labels: Vec::new(),
            pods: true,
        }
    }
}

/// Why a node agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The cluster refused or failed a request.
    #[error("node {node}: {what}")]
    Api {
        /// The node.
        node: String,
        /// What went wrong.
        what: String,
    },
    /// The pod network could not be set up.
    #[error("node {node}: {source}")]
    Network {
        /// The node.
        node: String,
        /// The failed command.
        source: network::NetError,
    },
    /// A required program is missing.
    #[error("node {node}: {what}")]
    Missing {
        /// The node.
        node: String,
        /// What is missing.
        what: String,
    },
}

/// A running simulated node (see the module docs).
pub struct NodeAgent {
    name: String,
    address: Ipv4Addr,
    pod_cidr: Ipv4Net,
    heartbeat: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    admin: PathBuf,
}

/// What the agent's thread needs.
struct Setup {
    config: NodeConfig,
    address: Ipv4Addr,
    kubeconfig: PathBuf,
    testpod: PathBuf,
    busybox: PathBuf,
}

impl NodeAgent {
    /// Starts a node called `name` in `cluster`; returns once the Node is
    /// registered and has its podCIDR.
    pub fn start(cluster: &Cluster, name: &str) -> Result<NodeAgent, AgentError> {
        Self::start_with(cluster, NodeConfig::new(name))
    }

    /// Starts a node with `config`.
    pub fn start_with(cluster: &Cluster, config: NodeConfig) -> Result<NodeAgent, AgentError> {
        let node = config.name.clone();
        let missing = |what: String| AgentError::Missing {
            node: node.clone(),
            what,
        };
        let testpod = registry::testpod_binary().map_err(&missing)?;
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| missing("busybox (apt-get install busybox-static)".into()))?;
        let kubeconfig = cluster
            .kubeconfig_for(&Identity::node(&node), &format!("node-{node}"))
            .map_err(|e| AgentError::Api {
                node: node.clone(),
                what: e.to_string(),
            })?;
        let address = config.address.unwrap_or_else(default_address);
        let setup = Setup {
            config,
            address,
            kubeconfig,
            testpod,
            busybox,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stop_rx) = watch::channel(false);
        let (heartbeat, heartbeat_rx) = watch::channel(true);
        let thread = std::thread::Builder::new()
            .name(format!("node-{node}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(node::run(setup, ready_tx, stop_rx, heartbeat_rx));
            })
            .map_err(|e| missing(format!("a thread: {e}")))?;
        let pod_cidr = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| AgentError::Api {
                node: node.clone(),
                what: "no podCIDR from node IPAM within 60 s".into(),
            })??;
        Ok(NodeAgent {
            name: node,
            address,
            pod_cidr,
            heartbeat,
            stop,
            thread: Some(thread),
            admin: cluster.admin_kubeconfig().to_owned(),
        })
    }

    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Node's InternalIP.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The podCIDR node IPAM gave the node.
    pub fn pod_cidr(&self) -> Ipv4Net {
        self.pod_cidr
    }

    /// Stops (or resumes) renewing the node's Lease and Ready condition, as
    /// a kubelet that lost the API server would; the pods keep running.
    pub fn set_heartbeat(&self, on: bool) {
        let _ = self.heartbeat.send(on);
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        crate::cluster::block_on(async move {
            if let Ok(client) = crate::cluster::client_from(&admin).await {
                let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
                let _ = nodes.delete(&name, &Default::default()).await;
            }
        });
    }
}

/// This namespace's first global-scope IPv4 address that is not one of
/// the agents' bridges, or 127.0.0.1.
fn default_address() -> Ipv4Addr {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            !l.split_whitespace()
                .nth(1)
                .is_some_and(|d| d.starts_with("skb"))
        })
        .filter_map(|l| {
            let cidr = l.split_whitespace().nth(3)?;
            cidr.split('/').next()?.parse().ok()
        })
        .next()
        .unwrap_or(Ipv4Addr::LOCALHOST)
}
