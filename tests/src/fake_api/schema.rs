//! Shape checks: an object must decode as its k8s-openapi type, as the
//! real server rejects bodies that do not unmarshal into the Go type.

use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::api::networking::v1 as networking;

use super::resources::ResourceType;
use super::status::ApiError;

fn decodes<T: DeserializeOwned>(obj: &Value) -> Result<(), String> {
    T::deserialize(obj).map(drop).map_err(|e| e.to_string())
}

/// Checks that `obj` decodes as the k8s-openapi type of `rt`.
pub(crate) fn check(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let res = match (rt.group, rt.kind) {
        ("", "Namespace") => decodes::<core::Namespace>(obj),
        ("", "Node") => decodes::<core::Node>(obj),
        ("", "Service") => decodes::<core::Service>(obj),
        ("", "Endpoints") => decodes::<core::Endpoints>(obj),
        ("", "Secret") => decodes::<core::Secret>(obj),
        ("", "ConfigMap") => decodes::<core::ConfigMap>(obj),
        ("", "Event") => decodes::<core::Event>(obj),
        ("", "Pod") => decodes::<core::Pod>(obj),
        ("discovery.k8s.io", "EndpointSlice") => decodes::<discovery::EndpointSlice>(obj),
        ("networking.k8s.io", "Ingress") => decodes::<networking::Ingress>(obj),
        ("networking.k8s.io", "IngressClass") => decodes::<networking::IngressClass>(obj),
        ("coordination.k8s.io", "Lease") => decodes::<coordination::Lease>(obj),
        ("events.k8s.io", "Event") => decodes::<events::Event>(obj),
        _ => Ok(()),
    };
    res.map_err(|e| {
        ApiError::bad_request(format!("the body does not decode as a {}: {e}", rt.kind))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::resources::{RESOURCES, by_kind};
    use serde_json::json;

    #[test]
    fn every_type_is_checked() {
        for rt in RESOURCES {
            let bad =
                json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": 5}});
            assert!(check(rt, &bad).is_err(), "{}", rt.kind);
            let good =
                json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": "x"}});
            // Some types have required fields; at least the metadata is fine.
            let _ = check(rt, &good);
        }
        let svc = &RESOURCES[by_kind("v1", "Service").unwrap()];
        assert!(check(svc, &json!({"spec": {"type": 5}})).is_err());
        assert!(check(svc, &json!({"spec": {"ports": [{"port": 80}]}, "extra": 1})).is_ok());
    }
}
