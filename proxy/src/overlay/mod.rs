//! The flannel-compatible VXLAN pod overlay (optional): a node running it
//! behaves as flannel's vxlan backend does, so Sluice and flannel nodes route
//! pod traffic to each other.

pub mod kernel;
pub mod model;
