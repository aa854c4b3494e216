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
pub mod sets;
mod topology;

pub use config::{Limits, NodeFacts, NodePortAddresses, PlannerConfig, node_pod_cidrs};
pub use desired::{DesiredState, HealthCheck, LbOutFilter, ServicePortRef, VirtualServer};
pub use merge::{FullPlan, plan, plan_views, sort_problems};
pub use service::{Frontend, ServicePlan, plan_service};
pub use sets::{IpSets, SetEntry, SetKind, SetName};
