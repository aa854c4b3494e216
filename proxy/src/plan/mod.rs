//! The pure planner: Kubernetes objects + node facts + configuration →
//! [`DesiredState`]. No I/O; tested without root.
//!
//! The unit of planning is one Service: [`plan_service`] turns a
//! [`ServiceView`](crate::model::ServiceView) and its EndpointSlices into a
//! [`ServicePlan`], that Service's contribution; the node's state is the
//! union of all contributions ([`DesiredState::from_plans`]). A shell can
//! therefore cache plans and re-plan only the Services whose Service or
//! EndpointSlices changed (and every Service when [`NodeFacts`] or
//! [`PlannerConfig`] change). [`plan`] does everything at once.
//!
//! Behaviour follows kube-proxy's IPVS proxier (`pkg/proxy/ipvs/proxier.go`,
//! `pkg/proxy/topology.go`, the EndpointSlice cache); where Sluice differs
//! on purpose, the item's documentation says so.

mod config;
mod desired;
mod merge;
mod service;
mod topology;

pub use config::*;
pub use desired::*;
pub use merge::*;
pub use service::*;
