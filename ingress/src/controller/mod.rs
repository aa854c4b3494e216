//! The controller: Kubernetes objects in, gateway [`Routing`] out.
//!
//! * [`snapshot`]: the objects known so far ([`Snapshot`]), updated by
//!   [`SourceEvent`]s;
//! * [`compute()`]: snapshot → [`Computed`] (routing, conflicts, problems,
//!   unresolved backends and certificates), pure and unit-tested; the
//!   Secrets access-control annotations name are read by [`secrets`];
//! * sources: [`manifests`] (a polled directory of YAML) and [`kube`]
//!   (watchers on the API server);
//! * [`run()`]: the debounced loop publishing [`Update`]s;
//! * [`api`]: Ingress status and Warning Events (API server only);
//! * [`leader`]: Lease-based leader election for the status writer.
//!
//! [`Routing`]: crate::gateway::Routing

pub mod api;
pub mod compute;
pub mod flags;
pub mod kube;
pub mod leader;
pub mod manifests;
pub mod run;
pub mod secrets;
pub mod snapshot;

pub use compute::{Computed, ControllerConfig, Issue, NginxMode, TLS_SECRET_TYPE, compute};
pub use run::{DEBOUNCE, Update, run};
pub use snapshot::{Kind, Object, ObjectKey, SERVICE_NAME_LABEL, Snapshot, SourceEvent};
