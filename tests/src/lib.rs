//! Shared test support for Sluice.
//!
//! * [`vm`]: boots Debian's stock kernel under qemu (the host kernel has no
//!   IPVS) and runs test binaries inside it with the host filesystem visible.
//! * [`netns`]: "pods" and "clients" as network namespaces behind veth pairs,
//!   and small servers inside them.
//! * [`readme`]: the README's flag tables checked against `--help`.
//! * `cluster` (feature `cluster`, on by default): the real control plane
//!   (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, built
//!   from `tests/cluster/go`) on loopback, and `node_agent`: simulated
//!   nodes whose pods are real processes in network namespaces.
//! * `fake_api` (feature `fake-api`, on by default): a fake Kubernetes API
//!   server with list/watch semantics for the real kube-rs client, kept for
//!   faults the real API server cannot produce on demand.
//! * `fixtures` (feature `fixtures`, on by default): Service, EndpointSlice,
//!   Node and Ingress builders, an HTTP GET, a test CA.

#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "fake-api")]
pub mod fake_api;
#[cfg(feature = "fixtures")]
pub mod fixtures;
#[cfg(feature = "cluster")]
pub mod node_agent;

pub mod netns;
pub mod readme;
pub mod vm;
pub mod wait;
