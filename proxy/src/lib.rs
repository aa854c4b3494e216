//! `sluice-proxy`: a drop-in replacement for kube-proxy's IPVS mode.
//!
//! Functional core, imperative shell: sources (the API server or a manifest
//! directory) feed an immutable snapshot; [`plan`] turns snapshot + node
//! facts into a [`plan::DesiredState`]; reconcilers diff that against the
//! kernel and apply the minimal operations (IPVS over netlink, addresses on
//! `kube-ipvs0`, ipsets and iptables rules in [`netfilter`]).

pub mod app;
pub mod config;
pub mod health;
pub mod metrics;
pub mod model;
pub mod netfilter;
pub mod overlay;
pub mod plan;
pub mod reconcile;
pub mod source;
