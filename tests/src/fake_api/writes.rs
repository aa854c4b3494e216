//! Writes with the API server's rules: create, update (main resource or
//! status), patch, delete, and the test handle's create-or-replace.

use serde_json::{Value, json};

use super::defaults;
use super::meta::{
    finalizers, meta_mut, meta_str, now_rfc3339, same_ignoring_rv, set_meta, spec_part, valid_name,
};
use super::patch::{self, PatchKind};
use super::resources::{RESOURCES, ResourceId, ResourceType};
use super::schema;
use super::status::ApiError;
use super::store::{Deleted, Origin, Part, Store, resolve};

impl Store {
    /// Fills or checks `apiVersion`/`kind` and the namespace.
    fn check_type_and_ns(rt: &ResourceType, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let want_av = rt.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => obj["apiVersion"] = json!(want_av),
            Some(av) if av == want_av => {}
            Some(av) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
        }
        match obj.get("kind").and_then(Value::as_str) {
            None | Some("") => obj["kind"] = json!(rt.kind),
            Some(k) if k == rt.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
        }
        if obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        if rt.namespaced {
            let body_ns = meta_str(obj, "namespace");
            if body_ns.is_empty() {
                set_meta(obj, "namespace", ns);
            } else if body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        } else {
            meta_mut(obj).remove("namespace");
        }
        Ok(())
    }

    fn apply_defaults(&mut self, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
        match (rt.group, rt.kind) {
            ("", "Service") => defaults::service(obj, old, &mut self.alloc),
            ("discovery.k8s.io", "EndpointSlice") => defaults::endpoint_slice(obj),
            _ => {}
        }
    }

    /// POST: creates an object in namespace `ns` ("" for cluster-scoped).
    pub fn create(
        &mut self,
        rt_id: ResourceId,
        ns: &str,
        mut obj: Value,
        origin: Origin,
    ) -> Result<Value, ApiError> {
        let rt = &RESOURCES[rt_id];
        Self::check_type_and_ns(rt, ns, &mut obj)?;
        schema::check(rt, &obj)?;
        let ns = if rt.namespaced { ns } else { "" };
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = self.generate_name(rt_id, ns, &prefix);
            set_meta(&mut obj, "name", name.clone());
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
        }
        if self.get(rt_id, ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if origin == Origin::Api {
            if !meta_str(&obj, "resourceVersion").is_empty() {
                return Err(ApiError {
                    code: 500,
                    reason: "InternalError",
                    message: "resourceVersion should not be set on objects to be created".into(),
                    details: None,
                });
            }
            match (rt.group, rt.kind) {
                ("", "Service") | ("networking.k8s.io", "Ingress") => {
                    obj["status"] = json!({ "loadBalancer": {} });
                }
                ("", "Namespace") => obj["status"] = json!({ "phase": "Active" }),
                _ => {}
            }
        }
        let uid = self.new_uid();
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        self.apply_defaults(rt, &mut obj, None);
        Ok(self.commit(rt_id, (ns.to_string(), name), Some(obj)))
    }

    /// Shared tail of PUT and PATCH: `body` is the full new object.
    fn update_from(
        &mut self,
        rt_id: ResourceId,
        ns: &str,
        name: &str,
        mut body: Value,
        part: Part,
        origin: Origin,
    ) -> Result<Value, ApiError> {
        let rt = &RESOURCES[rt_id];
        let Some(old) = self.get(rt_id, ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        Self::check_type_and_ns(rt, ns, &mut body)?;
        let body_name = meta_str(&body, "name");
        if body_name.is_empty() {
            set_meta(&mut body, "name", name);
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_rv = meta_str(&body, "resourceVersion");
        if origin == Origin::Api
            && !body_rv.is_empty()
            && body_rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(rt, name));
        }
        let mut new = match part {
            Part::Status => {
                let mut new = old.clone();
                match body.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Value::Object(m) = &mut new {
                            m.remove("status");
                        }
                    }
                }
                // The real nodes/status strategy only resets the spec:
                // labels and annotations written through it stick (flannel
                // publishes its node annotations this way).
                if rt.kind == "Node" {
                    for key in ["labels", "annotations"] {
                        match body.get("metadata").and_then(|m| m.get(key)) {
                            Some(v) => {
                                meta_mut(&mut new).insert(key.into(), v.clone());
                            }
                            None => {
                                meta_mut(&mut new).remove(key);
                            }
                        }
                    }
                }
                new
            }
            Part::Main => {
                let mut new = body;
                if rt.has_status && origin == Origin::Api {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Value::Object(m) = &mut new {
                                m.remove("status");
                            }
                        }
                    }
                }
                let keep = [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                ];
                let old_meta = old.get("metadata").cloned().unwrap_or_default();
                let m = meta_mut(&mut new);
                for k in keep {
                    match old_meta.get(k) {
                        Some(v) => m.insert(k.to_string(), v.clone()),
                        None => m.remove(k),
                    };
                }
                let generation = old_meta
                    .get("generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let generation = if spec_part(&new) != spec_part(&old) {
                    generation + 1
                } else {
                    generation
                };
                meta_mut(&mut new).insert("generation".into(), json!(generation));
                new
            }
        };
        schema::check(rt, &new)?;
        self.apply_defaults(rt, &mut new, Some(&old));
        set_meta(
            &mut new,
            "resourceVersion",
            meta_str(&old, "resourceVersion"),
        );
        let key = (ns.to_string(), name.to_string());
        if !meta_str(&new, "deletionTimestamp").is_empty() && finalizers(&new) == 0 {
            // The last finalizer is gone: the pending deletion completes.
            self.objects[rt_id].insert(key.clone(), new);
            return Ok(self.commit(rt_id, key, None));
        }
        if same_ignoring_rv(&new, &old) {
            return Ok(old);
        }
        Ok(self.commit(rt_id, key, Some(new)))
    }

    /// PUT: replaces an object (or its status). A non-empty
    /// `metadata.resourceVersion` in the body must match the stored one.
    pub fn update(
        &mut self,
        rt: ResourceId,
        ns: &str,
        name: &str,
        body: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        self.update_from(rt, ns, name, body, part, Origin::Api)
    }

    /// PATCH. Returns the object and whether it was created (server-side
    /// apply of a missing object).
    pub fn patch(
        &mut self,
        rt_id: ResourceId,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        part: Part,
    ) -> Result<(Value, bool), ApiError> {
        let rt = &RESOURCES[rt_id];
        let Some(old) = self.get(rt_id, ns, name).cloned() else {
            if kind == PatchKind::Apply && part == Part::Main {
                let mut obj = body.clone();
                if !obj.is_object() {
                    return Err(ApiError::bad_request("apply patch must be a JSON object"));
                }
                if meta_str(&obj, "name").is_empty() {
                    set_meta(&mut obj, "name", name);
                } else if meta_str(&obj, "name") != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta_str(&obj, "name")
                    )));
                }
                return Ok((self.create(rt_id, ns, obj, Origin::Api)?, true));
            }
            return Err(ApiError::not_found(rt, name));
        };
        let patched = patch::apply(kind, &old, body)?;
        if !patched.is_object() {
            return Err(ApiError::invalid(
                rt,
                name,
                "patched object is not a JSON object",
            ));
        }
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(rt, name));
        }
        Ok((
            self.update_from(rt_id, ns, name, patched, part, Origin::Api)?,
            false,
        ))
    }

    /// DELETE with optional uid / resourceVersion preconditions. Objects
    /// with finalizers get a deletionTimestamp instead (unless `force`).
    pub fn delete(
        &mut self,
        rt_id: ResourceId,
        ns: &str,
        name: &str,
        pre_uid: Option<&str>,
        pre_rv: Option<&str>,
        force: bool,
    ) -> Result<Deleted, ApiError> {
        let rt = &RESOURCES[rt_id];
        let Some(old) = self.get(rt_id, ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(u) = pre_uid.filter(|u| *u != meta_str(&old, "uid")) {
            return Err(ApiError::precondition_failed(
                rt,
                name,
                &format!(
                    "UID in precondition: {u}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(r) = pre_rv.filter(|r| *r != meta_str(&old, "resourceVersion")) {
            return Err(ApiError::precondition_failed(
                rt,
                name,
                &format!(
                    "ResourceVersion in precondition: {r}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        let key = (ns.to_string(), name.to_string());
        if !force && finalizers(&old) > 0 {
            if !meta_str(&old, "deletionTimestamp").is_empty() {
                return Ok(Deleted::Pending(old));
            }
            let mut new = old;
            set_meta(&mut new, "deletionTimestamp", now_rfc3339());
            meta_mut(&mut new).insert("deletionGracePeriodSeconds".into(), json!(0));
            return Ok(Deleted::Pending(self.commit(rt_id, key, Some(new))));
        }
        Ok(Deleted::Gone(self.commit(rt_id, key, None)))
    }

    /// Test control: creates or replaces an object as given (status
    /// included, resourceVersion ignored), with defaulting. Namespaced
    /// objects without a namespace go to `default`.
    pub fn backdoor_apply(&mut self, mut obj: Value) -> Result<Value, ApiError> {
        let rt_id = resolve(&obj)?;
        let rt = &RESOURCES[rt_id];
        let ns = if rt.namespaced {
            match meta_str(&obj, "namespace") {
                "" => "default".to_string(),
                ns => ns.to_string(),
            }
        } else {
            String::new()
        };
        let name = meta_str(&obj, "name").to_string();
        if !name.is_empty() && self.get(rt_id, &ns, &name).is_some() {
            meta_mut(&mut obj).remove("resourceVersion");
            self.update_from(rt_id, &ns, &name, obj, Part::Main, Origin::Backdoor)
        } else {
            meta_mut(&mut obj).remove("resourceVersion");
            self.create(rt_id, &ns, obj, Origin::Backdoor)
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::resources::by_kind;
    use crate::fake_api::store::EventType;

    fn svc(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
    }

    #[test]
    fn crud_and_history() {
        let mut s = Store::new(3);
        let rt = by_kind("v1", "Service").unwrap();
        let a = s.create(rt, "ns", svc("a"), Origin::Api).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        assert_eq!(a["metadata"]["namespace"], "ns");
        assert_eq!(a["status"], json!({"loadBalancer": {}}));
        assert_eq!(
            s.create(rt, "ns", svc("a"), Origin::Api).unwrap_err().code,
            409
        );
        let mut stale = a.clone();
        stale["spec"]["ports"][0]["port"] = json!(81);
        let b = s.update(rt, "ns", "a", stale.clone(), Part::Main).unwrap();
        assert_eq!(b["metadata"]["generation"], 2);
        assert_eq!(
            s.update(rt, "ns", "a", stale, Part::Main).unwrap_err().code,
            409
        );
        // no-op write: no new version
        let same = s.update(rt, "ns", "a", b.clone(), Part::Main).unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            b["metadata"]["resourceVersion"]
        );
        let (p, _) = s
            .patch(
                rt,
                "ns",
                "a",
                PatchKind::Merge,
                &json!({"status": {"x": 1}, "spec": {"type": "NodePort"}}),
                Part::Status,
            )
            .unwrap();
        assert_eq!(p["status"]["x"], 1);
        assert_eq!(p["spec"]["type"], "ClusterIP");
        assert!(matches!(
            s.delete(rt, "ns", "a", None, None, false),
            Ok(Deleted::Gone(_))
        ));
        assert_eq!(s.rv(), 4);
        assert_eq!(s.history_since(0).count(), 3);
        assert_eq!(s.floor(), 1);
        assert_eq!(
            s.history_since(2).map(|e| e.kind).collect::<Vec<_>>(),
            vec![EventType::Modified, EventType::Deleted]
        );
        assert!(s.missed(0));
        assert!(!s.missed(1));
        s.compact();
        assert_eq!((s.rv(), s.floor()), (5, 5));
        assert!(!s.missed(4));
        assert!(s.missed(3));
        assert_eq!(s.history_since(0).count(), 0);
    }

    #[test]
    fn finalizers_delay_deletion() {
        let mut s = Store::new(100);
        let rt = by_kind("v1", "ConfigMap").unwrap();
        let cm = json!({"metadata": {"name": "c", "finalizers": ["x"]}});
        s.create(rt, "ns", cm, Origin::Api).unwrap();
        let Ok(Deleted::Pending(p)) = s.delete(rt, "ns", "c", None, None, false) else {
            panic!("expected pending deletion");
        };
        assert!(!meta_str(&p, "deletionTimestamp").is_empty());
        let (gone, _) = s
            .patch(
                rt,
                "ns",
                "c",
                PatchKind::Merge,
                &json!({"metadata": {"finalizers": null}}),
                Part::Main,
            )
            .unwrap();
        assert_eq!(gone["metadata"]["name"], "c");
        assert!(s.get(rt, "ns", "c").is_none());
    }

    #[test]
    fn generate_name_and_validation() {
        let mut s = Store::new(100);
        let rt = by_kind("v1", "Event").unwrap();
        let e = s
            .create(
                rt,
                "ns",
                json!({"metadata": {"generateName": "ev-"}}),
                Origin::Api,
            )
            .unwrap();
        assert!(meta_str(&e, "name").starts_with("ev-"));
        assert_eq!(meta_str(&e, "name").len(), 8);
        assert_eq!(
            s.create(rt, "ns", json!({"metadata": {}}), Origin::Api)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            s.create(rt, "ns", json!({"metadata": {"name": "Bad"}}), Origin::Api)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            s.create(
                rt,
                "ns",
                json!({"metadata": {"name": "x", "namespace": "other"}}),
                Origin::Api
            )
            .unwrap_err()
            .code,
            400
        );
        assert_eq!(
            s.create(
                rt,
                "ns",
                json!({"kind": "Pod", "metadata": {"name": "x"}}),
                Origin::Api
            )
            .unwrap_err()
            .code,
            400
        );
    }

    #[test]
    fn node_status_writes_keep_metadata_other_status_writes_do_not() {
        let mut s = Store::new(100);
        let node = by_kind("v1", "Node").unwrap();
        s.create(node, "", json!({"metadata": {"name": "n"}}), Origin::Api)
            .unwrap();
        let patch = json!({"metadata": {"annotations": {"a": "1"}}, "status": {"phase": "x"}});
        let (p, _) = s
            .patch(node, "", "n", PatchKind::Strategic, &patch, Part::Status)
            .unwrap();
        assert_eq!(p["metadata"]["annotations"]["a"], "1");
        assert_eq!(p["status"]["phase"], "x");
        let svc_rt = by_kind("v1", "Service").unwrap();
        s.create(svc_rt, "ns", svc("b"), Origin::Api).unwrap();
        let (p, _) = s
            .patch(svc_rt, "ns", "b", PatchKind::Merge, &patch, Part::Status)
            .unwrap();
        assert!(p["metadata"].get("annotations").is_none());
    }
}
