//! The table of resource types the fake API server serves.

/// One served resource type (a group/version/plural with its kind).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Kind of a single object.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the type has a `/status` subresource (status is then ignored
    /// by writes to the main resource, and only status is taken from writes
    /// to `/status`).
    pub has_status: bool,
    /// Field selector keys supported besides `metadata.name` and
    /// `metadata.namespace`.
    pub fields: &'static [&'static str],
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const EVENTS_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
];

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    fields: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
        has_status,
        fields,
    }
}

/// Every resource type served. Indexes into this table identify a type.
pub(crate) static RESOURCES: &[ResourceType] = &[
    rt(
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        true,
        &["status.phase"],
    ),
    rt(
        "",
        "v1",
        "nodes",
        "Node",
        false,
        true,
        &["spec.unschedulable"],
    ),
    rt(
        "",
        "v1",
        "services",
        "Service",
        true,
        true,
        &["spec.clusterIP", "spec.type"],
    ),
    rt("", "v1", "endpoints", "Endpoints", true, false, &[]),
    rt("", "v1", "secrets", "Secret", true, false, &["type"]),
    rt("", "v1", "configmaps", "ConfigMap", true, false, &[]),
    rt("", "v1", "events", "Event", true, false, EVENT_FIELDS),
    rt(
        "",
        "v1",
        "pods",
        "Pod",
        true,
        true,
        &["spec.nodeName", "status.phase"],
    ),
    rt(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
        &[],
    ),
    rt(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        true,
        &[],
    ),
    rt(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
        false,
        &[],
    ),
    rt(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        false,
        &[],
    ),
    rt(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        false,
        EVENTS_V1_FIELDS,
    ),
];

/// Index of a resource type in [`RESOURCES`].
pub(crate) type ResourceId = usize;

impl ResourceType {
    /// `apiVersion` of objects of this type (`v1`, `networking.k8s.io/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The "group resource" used in API error messages (`services`,
    /// `ingresses.networking.k8s.io`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Kind of the list type (`ServiceList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `field` is a supported field selector key for this type.
    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || (field == "metadata.namespace" && self.namespaced)
            || self.fields.contains(&field)
    }
}

/// Looks a type up by URL components.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a type up by the `apiVersion` and `kind` of an object.
pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<ResourceId> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Splits `group/version` (or a bare core `version`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// All served group/versions as (group, version) pairs, core first.
pub(crate) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let ing = by_path("networking.k8s.io", "v1", "ingresses").unwrap();
        assert_eq!(RESOURCES[ing].kind, "Ingress");
        assert_eq!(by_kind("networking.k8s.io/v1", "Ingress"), Some(ing));
        assert_eq!(
            RESOURCES[ing].group_resource(),
            "ingresses.networking.k8s.io"
        );
        let core_ev = by_kind("v1", "Event").unwrap();
        let new_ev = by_kind("events.k8s.io/v1", "Event").unwrap();
        assert_ne!(core_ev, new_ev);
        assert!(by_path("", "v1", "nosuch").is_none());
        assert!(RESOURCES[by_kind("v1", "Node").unwrap()].supports_field("metadata.name"));
        assert!(!RESOURCES[by_kind("v1", "Node").unwrap()].supports_field("metadata.namespace"));
    }
}
