//! Problems with Kubernetes objects become Warning Events on the object.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter as KubeReporter};

use crate::model::{ObjectKind, Problem};

/// Publishes Events for problems found while planning.
pub struct Reporter {
    recorder: Recorder,
}

impl Reporter {
    /// Events from `sluice-proxy` on `node`.
    pub fn new(client: kube::Client, node: &str) -> Self {
        let reporter = KubeReporter {
            controller: "sluice-proxy".into(),
            instance: Some(node.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
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
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidInput".into(),
            note: Some(p.reason.chars().take(1000).collect()),
            action: "Skipped".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
}
