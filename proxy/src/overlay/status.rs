//! What the overlay publishes about this node: flannel's annotations and
//! the NetworkUnavailable condition (one strategic-merge patch of
//! `nodes/status`), and Warning Events for skipped remote nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use sluice_kube::events::{Regarding, Warning};

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

/// The Warning Event of a remote node the overlay skipped.
pub(super) fn skipped_warning(node: &str, reason: &str) -> Warning {
    Warning {
        regarding: Regarding::named::<Node>("", node),
        reason: "OverlayNodeSkipped".into(),
        action: "Skipped".into(),
        note: reason.to_owned(),
    }
}
