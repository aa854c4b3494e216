//! Problems with Kubernetes objects become a log line and a Warning Event on
//! the object, once each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_kube::events::{EventPublisher, Regarding, Reported, Warning, WarningEvents};

use crate::model::{Admission, MAX_PROBLEMS_PER_OBJECT, ObjectKind, Problem, quote};
use k8s_openapi::api::core::v1::Service;

use crate::source::{ObjectKey, Snapshot};

/// The Warning Event of a problem: on its Service or EndpointSlice,
/// reason `InvalidInput`, action `Skipped`.
pub fn warning(p: &Problem) -> Warning {
    let regarding = match p.kind {
        ObjectKind::Service => Regarding::named::<Service>(&p.namespace, &p.name),
        ObjectKind::EndpointSlice => Regarding::named::<EndpointSlice>(&p.namespace, &p.name),
    };
    Warning {
        regarding,
        reason: "InvalidInput".into(),
        action: "Skipped".into(),
        note: p.reason.clone(),
    }
}

/// Events from `sluice-proxy` on `node`.
pub fn publisher(client: kube::Client, node: &str) -> EventPublisher {
    EventPublisher::new(client, "sluice-proxy", Some(node.to_owned()))
}

/// Which problems were reported, so each is logged and published once
/// while it lasts (and again if it goes away and comes back); a publish
/// that failed is tried again at the next report.
#[derive(Debug, Default)]
pub struct ProblemLog {
    logged: Reported<Problem>,
    events: WarningEvents,
}

impl ProblemLog {
    /// Logs (and publishes through `publisher`, if any) every problem in
    /// `current` not reported yet, and forgets those no longer current.
    /// Returns how many were new.
    pub async fn publish(
        &mut self,
        current: Vec<Problem>,
        publisher: Option<&EventPublisher>,
    ) -> usize {
        let current: BTreeSet<Problem> = current.into_iter().collect();
        let new = self.logged.pending(&current);
        let count = new.len();
        for p in new {
            tracing::warn!(kind = %p.kind, namespace = %p.namespace, name = %p.name, reason = %p.reason, "skipped invalid input");
        }
        for p in &current {
            self.logged.mark(p.clone());
        }
        if let Some(publisher) = publisher {
            let warnings = current.iter().map(warning).collect();
            self.events.report(&warnings, publisher).await;
        }
        count
    }
}

/// How long a slice must have named a missing Service before it is
/// reported: the Service and EndpointSlice watchers resync independently
/// (after an API outage one may lag the other by a backoff of up to 30 s),
/// so a slice can briefly arrive before its Service.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// EndpointSlices that name a Service which does not exist: kube-proxy
/// ignores them silently, Sluice reports them once they have been orphans
/// for a grace period. Slices owned by a Service (the EndpointSlice
/// controller's) are not reported: their Service was just deleted and the
/// garbage collector removes them; a slice nobody owns that keeps naming a
/// missing Service is a mistake (a typo in `kubernetes.io/service-name`, a
/// mirroring controller gone wrong).
#[derive(Debug, Default)]
pub struct OrphanSlices {
    /// Since when, and the problems.
    by_service: BTreeMap<ObjectKey<Service>, (Instant, Vec<Problem>)>,
}

impl OrphanSlices {
    /// Re-checks the Services in `keys` (those whose object or slices
    /// changed; the rest cannot have changed). Another proxy's slices are
    /// not ours to report (the snapshot admitted them as ignored).
    pub fn update<'a>(
        &mut self,
        snap: &Snapshot,
        keys: impl IntoIterator<Item = &'a ObjectKey<Service>>,
        now: Instant,
    ) {
        for key in keys {
            let since = self.by_service.remove(key).map_or(now, |(t, _)| t);
            if snap.services.contains_key(key) {
                continue;
            }
            let problems: Vec<Problem> = snap
                .slices_of(key)
                .filter(|s| !s.owned_by_service)
                .filter_map(|s| match &s.admission {
                    Admission::Accepted(v) => Some(Problem::endpoint_slice(
                        &v.namespace,
                        &v.name,
                        format!(
                            "its Service {} does not exist; the slice is ignored",
                            quote(&key.name)
                        ),
                    )),
                    _ => None,
                })
                .take(MAX_PROBLEMS_PER_OBJECT)
                .collect();
            if !problems.is_empty() {
                self.by_service.insert(key.clone(), (since, problems));
            }
        }
    }

    /// The problems of slices orphaned for at least `grace` at `now`
    /// ([`ORPHAN_GRACE`] in the proxy).
    pub fn problems(&self, now: Instant, grace: Duration) -> impl Iterator<Item = &Problem> {
        self.by_service
            .values()
            .filter(move |(since, _)| now.saturating_duration_since(*since) >= grace)
            .flat_map(|(_, p)| p)
    }
}
