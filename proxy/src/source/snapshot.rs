//! The immutable-by-value snapshot of the objects the proxy cares about, and
//! the change events that update it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Namespace and name of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The kinds of object a source delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// core/v1 Node.
    Node,
}

/// One object of a kind the proxy watches.
// Objects are moved once from a source into the snapshot; boxing the larger
// variants would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Object {
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A Node.
    Node(Node),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::Node(_) => Kind::Node,
        }
    }
}

/// A change from a source.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// An object was created or updated.
    Apply(Object),
    /// An object was deleted.
    Delete(Object),
    /// The complete current set of one kind (an initial list, a re-list
    /// after 410 Gone, or a reloaded manifest directory). Marks the kind
    /// synced.
    Replace(Kind, Vec<Object>),
}

/// What a batch of events changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Services whose Service object or EndpointSlices changed.
    pub services: BTreeSet<ObjectKey>,
    /// A Node changed (every Service must be re-planned).
    pub nodes: bool,
    /// Number of Service object changes (for metrics).
    pub service_changes: u64,
    /// Number of EndpointSlice changes (for metrics).
    pub endpoint_changes: u64,
}

impl Dirty {
    /// Adds another batch's changes.
    pub fn absorb(&mut self, other: Dirty) {
        self.services.extend(other.services);
        self.nodes |= other.nodes;
        self.service_changes += other.service_changes;
        self.endpoint_changes += other.endpoint_changes;
    }

    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && !self.nodes
    }
}

/// The objects currently known, shared cheaply (`Arc` per object).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Services by namespace/name.
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// EndpointSlices by namespace/name.
    pub slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Arc<Node>>,
    /// EndpointSlice keys by the Service they belong to, so a Service's
    /// slices are found without scanning every slice.
    by_service: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    synced: BTreeSet<Kind>,
}

fn slice_service(s: &EndpointSlice) -> Option<ObjectKey> {
    let name = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: name.clone(),
    })
}

impl Snapshot {
    /// Whether the initial lists of Services and EndpointSlices (and the
    /// Node) are complete: nothing is programmed before.
    pub fn synced(&self) -> bool {
        [Kind::Service, Kind::EndpointSlice, Kind::Node]
            .iter()
            .all(|k| self.synced.contains(k))
    }

    /// Marks a kind synced without objects (e.g. no Node source).
    pub fn mark_synced(&mut self, kind: Kind) {
        self.synced.insert(kind);
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of<'a>(
        &'a self,
        svc: &'a ObjectKey,
    ) -> impl Iterator<Item = &'a Arc<EndpointSlice>> + 'a {
        self.by_service
            .get(svc)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.get(k))
    }

    fn index_slice(&mut self, slice: &ObjectKey, svc: Option<ObjectKey>, add: bool) {
        let Some(svc) = svc else { return };
        if add {
            self.by_service
                .entry(svc)
                .or_default()
                .insert(slice.clone());
        } else if let Some(set) = self.by_service.get_mut(&svc) {
            set.remove(slice);
            if set.is_empty() {
                self.by_service.remove(&svc);
            }
        }
    }

    /// Applies one event and reports what it changed.
    pub fn apply(&mut self, event: SourceEvent) -> Dirty {
        let mut d = Dirty::default();
        match event {
            SourceEvent::Apply(obj) => self.put(obj, &mut d),
            SourceEvent::Delete(obj) => self.remove(&obj, &mut d),
            SourceEvent::Replace(kind, objs) => {
                let keep: BTreeSet<(String, String)> = objs
                    .iter()
                    .map(|o| {
                        let m = match o {
                            Object::Service(s) => &s.metadata,
                            Object::EndpointSlice(s) => &s.metadata,
                            Object::Node(n) => &n.metadata,
                        };
                        (
                            m.namespace.clone().unwrap_or_default(),
                            m.name.clone().unwrap_or_default(),
                        )
                    })
                    .collect();
                let gone: Vec<Object> = match kind {
                    Kind::Service => self
                        .services
                        .iter()
                        .filter(|(k, _)| !keep.contains(&(k.namespace.clone(), k.name.clone())))
                        .map(|(_, v)| Object::Service((**v).clone()))
                        .collect(),
                    Kind::EndpointSlice => self
                        .slices
                        .iter()
                        .filter(|(k, _)| !keep.contains(&(k.namespace.clone(), k.name.clone())))
                        .map(|(_, v)| Object::EndpointSlice((**v).clone()))
                        .collect(),
                    Kind::Node => self
                        .nodes
                        .iter()
                        .filter(|(k, _)| !keep.contains(&(String::new(), (*k).clone())))
                        .map(|(_, v)| Object::Node((**v).clone()))
                        .collect(),
                };
                for g in gone {
                    self.remove(&g, &mut d);
                }
                for o in objs {
                    self.put(o, &mut d);
                }
                self.synced.insert(kind);
            }
        }
        d
    }

    fn put(&mut self, obj: Object, d: &mut Dirty) {
        match obj {
            Object::Service(s) => {
                let key = ObjectKey::of(&s.metadata);
                if self.services.get(&key).is_none_or(|old| **old != s) {
                    d.services.insert(key.clone());
                    d.service_changes += 1;
                    self.services.insert(key, Arc::new(s));
                }
            }
            Object::EndpointSlice(s) => {
                let key = ObjectKey::of(&s.metadata);
                if let Some(old) = self.slices.get(&key) {
                    if **old == s {
                        return;
                    }
                    // A slice that moved between Services dirties both.
                    let prev = slice_service(old);
                    if let Some(prev) = &prev {
                        d.services.insert(prev.clone());
                    }
                    self.index_slice(&key, prev, false);
                }
                if let Some(svc) = slice_service(&s) {
                    d.services.insert(svc.clone());
                    self.index_slice(&key, Some(svc), true);
                }
                d.endpoint_changes += 1;
                self.slices.insert(key, Arc::new(s));
            }
            Object::Node(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                if self.nodes.get(&name).is_none_or(|old| **old != n) {
                    d.nodes = true;
                    self.nodes.insert(name, Arc::new(n));
                }
            }
        }
    }

    fn remove(&mut self, obj: &Object, d: &mut Dirty) {
        match obj {
            Object::Service(s) => {
                let key = ObjectKey::of(&s.metadata);
                if self.services.remove(&key).is_some() {
                    d.services.insert(key);
                    d.service_changes += 1;
                }
            }
            Object::EndpointSlice(s) => {
                let key = ObjectKey::of(&s.metadata);
                if let Some(old) = self.slices.remove(&key) {
                    if let Some(svc) = slice_service(&old) {
                        d.services.insert(svc.clone());
                        self.index_slice(&key, Some(svc), false);
                    }
                    d.endpoint_changes += 1;
                }
            }
            Object::Node(n) => {
                if self
                    .nodes
                    .remove(n.metadata.name.as_deref().unwrap_or_default())
                    .is_some()
                {
                    d.nodes = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str) -> Object {
        Object::Service(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"clusterIP": ip, "ports": [{"port": 80}]}
            }))
            .unwrap(),
        )
    }

    fn slice(ns: &str, name: &str, svc: &str, ip: &str) -> Object {
        Object::EndpointSlice(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip]}]
            }))
            .unwrap(),
        )
    }

    fn key(ns: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn changes_dirty_only_their_service() {
        let mut s = Snapshot::default();
        assert!(!s.synced());
        let d = s.apply(SourceEvent::Replace(
            Kind::Service,
            vec![svc("a", "web", "10.96.0.1"), svc("a", "db", "10.96.0.2")],
        ));
        assert_eq!(d.services.len(), 2);
        s.apply(SourceEvent::Replace(
            Kind::EndpointSlice,
            vec![slice("a", "web-1", "web", "10.244.0.1")],
        ));
        s.apply(SourceEvent::Replace(Kind::Node, vec![]));
        assert!(s.synced());
        // Re-applying an identical object changes nothing.
        assert!(
            s.apply(SourceEvent::Apply(svc("a", "web", "10.96.0.1")))
                .is_empty()
        );
        let d = s.apply(SourceEvent::Apply(slice("a", "web-1", "web", "10.244.0.9")));
        assert_eq!(d.services, [key("a", "web")].into());
        assert_eq!(d.endpoint_changes, 1);
        assert_eq!(s.slices_of(&key("a", "web")).count(), 1);
        // A re-list without db deletes it.
        let d = s.apply(SourceEvent::Replace(
            Kind::Service,
            vec![svc("a", "web", "10.96.0.1")],
        ));
        assert_eq!(d.services, [key("a", "db")].into());
        assert!(!s.services.contains_key(&key("a", "db")));
        let d = s.apply(SourceEvent::Delete(slice(
            "a",
            "web-1",
            "web",
            "10.244.0.9",
        )));
        assert_eq!(d.services, [key("a", "web")].into());
    }
}
