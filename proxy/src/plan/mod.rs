//! The pure planner: Kubernetes objects + node facts + configuration →
//! [`DesiredState`]. No I/O; tested without root.

mod desired;

pub use desired::*;
