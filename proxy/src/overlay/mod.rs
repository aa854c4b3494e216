//! The flannel-compatible VXLAN pod overlay (optional): a node running it
//! behaves as flannel's vxlan backend does, so Sluice and flannel nodes route
//! pod traffic to each other.
//!
//! * [`config`]: net-conf.json; [`annotations`]: flannel's Node annotations.
//! * [`plan`] (pure): Nodes + configuration + underlay facts → per family a
//!   [`model::DesiredOverlay`], our annotations, subnet.env, skipped nodes.
//! * [`kernel`]: the VXLAN device, neighbours, FDB entries and routes over
//!   rtnetlink; [`dataplane`] binds it (and [`underlay`] discovery) to a
//!   network namespace.
//! * [`run`]: the shell ([`nodes`] → plan → kernel → [`status`] → files →
//!   [`masq`] rules).

pub mod annotations;
pub mod cni;
pub mod config;
pub mod dataplane;
pub mod error;
pub mod kernel;
pub mod masq;
pub mod model;
pub mod nodes;
pub mod plan;
pub mod run;
pub mod status;
pub mod subnet_env;
pub mod underlay;

pub use error::{MasqError, OverlayError, UnderlayError};
