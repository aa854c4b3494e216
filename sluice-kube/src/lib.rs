//! `sluice-kube`: what `sluice-proxy`, its overlay and `sluice-ingress` all
//! do with Kubernetes, in one place.
//!
//! * [`key`]: [`ObjectKey<K>`], a namespace/name typed by the kind it names;
//! * [`source`]: [`SourceEvent`] (Replace / Apply / Delete) and the
//!   [`Watched`] trait a binary's closed enum of objects implements;
//! * [`watch`]: [`SourceStreamExt`], kube-runtime watcher events → source
//!   events;
//! * [`manifests`]: a polled `--manifests` directory, generic over the
//!   kinds a binary decodes;
//! * [`client`]: the API client (kubeconfig, in-cluster, `--master`,
//!   QPS/burst) and the host name;
//! * [`admin`]: the admin HTTP server (health, metrics), whose accept loop
//!   backs off when file descriptors run out ([`accept`]);
//! * [`events`]: Warning Events, one per distinct problem, none lost;
//! * [`endpoint_slice`]: EndpointSlices read with the API's semantics;
//! * [`logging`]: the log subscriber both binaries install;
//! * [`ip`]: IP addresses parsed as kube-proxy parses them; [`text`]:
//!   untrusted text quoted in messages.

pub mod accept;
pub mod admin;
pub mod client;
pub mod endpoint_slice;
pub mod events;
pub mod ip;
pub mod key;
pub mod logging;
pub mod manifests;
pub mod source;
pub mod text;
pub mod watch;

pub use key::ObjectKey;
pub use source::{SourceEvent, Watched};
pub use watch::SourceStreamExt;
