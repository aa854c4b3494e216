//! The controller: Kubernetes objects in, gateway [`Routing`] out.
//!
//! * [`snapshot`]: the objects known so far ([`Snapshot`]), updated by
//!   [`SourceEvent`]s;
//! * [`compute()`]: snapshot → [`Computed`] (routing, conflicts, problems,
//!   unresolved backends and certificates), pure and unit-tested.
//!
//! [`Routing`]: crate::gateway::Routing

pub mod compute;
pub mod snapshot;

pub use compute::{Computed, ControllerConfig, Issue, TLS_SECRET_TYPE, compute};
pub use snapshot::{Kind, Object, ObjectKey, SERVICE_NAME_LABEL, Snapshot, SourceEvent};
