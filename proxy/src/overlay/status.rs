//! What the overlay publishes about this node: flannel's annotations and
//! the NetworkUnavailable condition (one strategic-merge patch of
//! `nodes/status`), and Warning Events for skipped remote nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::json;

/// The condition reason flannel sets (kept so tools that look for it work).
pub const CONDITION_REASON: &str = "FlannelIsUp";
/// The condition message.
pub const CONDITION_MESSAGE: &str =
    "Sluice overlay (flannel vxlan compatible) is running on this node";

/// The patch for our node: annotations and the NetworkUnavailable
/// condition (strategic merge: conditions merge by type).
pub fn status_patch(annotations: &BTreeMap<String, String>, now: &str) -> serde_json::Value {
    json!({
        "metadata": {"annotations": annotations},
        "status": {"conditions": [{
            "type": "NetworkUnavailable",
            "status": "False",
            "reason": CONDITION_REASON,
            "message": CONDITION_MESSAGE,
            "lastTransitionTime": now,
            "lastHeartbeatTime": now,
        }]}
    })
}

/// Whether `node` already carries `annotations` and a False
/// NetworkUnavailable condition.
pub fn status_current(node: &Node, annotations: &BTreeMap<String, String>) -> bool {
    let have = node.metadata.annotations.as_ref();
    let annotated = annotations
        .iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v));
    let condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "False")
        });
    annotated && condition
}

pub(super) fn rfc3339_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(super) async fn publish_skipped(recorder: &Recorder, node: &str, reason: &str) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_owned()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "OverlayNodeSkipped".into(),
        note: Some(reason.chars().take(1000).collect()),
        action: "Skipped".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, "overlay: could not publish event");
    }
}
