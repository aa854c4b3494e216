//! Shared test support for Sluice.
//!
//! * [`vm`]: boots Debian's stock kernel under qemu (the host kernel has no
//!   IPVS) and runs test binaries inside it with the host filesystem visible.
//! * [`netns`]: "pods" and "clients" as network namespaces behind veth pairs,
//!   and small servers inside them.
//! * [`readme`]: the README's flag tables checked against `--help`.
//! * `fake_api` (feature `fake-api`, on by default): a fake Kubernetes API
//!   server with list/watch semantics for the real kube-rs client.
//! * `fixtures` (feature `fixtures`, on by default): Service, EndpointSlice,
//!   Node and Ingress builders, an HTTP GET, a test CA.

#[cfg(feature = "fake-api")]
pub mod fake_api;
#[cfg(feature = "fixtures")]
pub mod fixtures;

pub mod netns;
pub mod readme;
pub mod vm;
pub mod wait;
