//! Problems with Kubernetes objects become a log line and a Warning Event on
//! the object, once each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter as KubeReporter};

use crate::model::{Admission, MAX_PROBLEMS_PER_OBJECT, ObjectKind, Problem, quote};
use crate::source::{ObjectKey, Snapshot};
use k8s_openapi::api::core::v1::Service;

/// The Event API's limit on `note` (bytes).
const MAX_NOTE_BYTES: usize = 1024;

/// Publishes Events for problems found while planning.
pub struct Reporter {
    client: kube::Client,
    reporter: KubeReporter,
}

impl Reporter {
    /// Events from `sluice-proxy` on `node`.
    pub fn new(client: kube::Client, node: &str) -> Self {
        let reporter = KubeReporter {
            controller: "sluice-proxy".into(),
            instance: Some(node.to_owned()),
        };
        Self { client, reporter }
    }

    /// Publishes one problem; failures are logged, never fatal.
    pub async fn report(&self, p: &Problem) {
        let (api_version, kind) = match p.kind {
            ObjectKind::Service => ("v1", "Service"),
            ObjectKind::EndpointSlice => ("discovery.k8s.io/v1", "EndpointSlice"),
        };
        let reference = ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            namespace: Some(p.namespace.clone()),
            name: Some(p.name.clone()),
            ..ObjectReference::default()
        };
        // The API rejects a longer note; cut on a character boundary.
        let mut end = p.reason.len().min(MAX_NOTE_BYTES);
        while !p.reason.is_char_boundary(end) {
            end -= 1;
        }
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidInput".into(),
            note: Some(p.reason[..end].to_owned()),
            action: "Skipped".into(),
            secondary: None,
        };
        // A fresh recorder per problem: kube's recorder folds every Event
        // with the same object, reason and action into one series that
        // keeps the first note, which would hide every later problem of the
        // object. ProblemLog already publishes each problem once.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
}

/// Which problems were reported, so each is logged and published once while
/// it lasts (and again if it goes away and comes back).
#[derive(Debug, Default)]
pub struct ProblemLog {
    reported: BTreeSet<Problem>,
}

impl ProblemLog {
    /// Logs (and publishes through `reporter`, if any) every problem in
    /// `current` not reported yet, and forgets those no longer current.
    /// Returns how many were new.
    pub async fn publish(&mut self, current: Vec<Problem>, reporter: Option<&Reporter>) -> usize {
        let current: BTreeSet<Problem> = current.into_iter().collect();
        let mut new = 0;
        for p in current.difference(&self.reported) {
            new += 1;
            tracing::warn!(kind = ?p.kind, namespace = %p.namespace, name = %p.name, reason = %p.reason, "skipped invalid input");
            if let Some(rep) = reporter {
                rep.report(p).await;
            }
        }
        self.reported = current;
        new
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
