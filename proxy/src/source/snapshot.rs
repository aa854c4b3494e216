//! The immutable-by-value snapshot of the objects the proxy cares about, and
//! the change events that update it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use sluice_kube::{ObjectKey, Watched};

use crate::model::{Admission, EndpointSliceView, ServiceView};

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

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

impl Kind {
    /// Every kind, in the order a manifest reload replaces them.
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::EndpointSlice, Kind::Node];
}

/// A change from a source.
pub type SourceEvent = sluice_kube::SourceEvent<Object>;

/// A Service as the planner needs it: its key and its normalized view (or
/// why it is not ours). Converted once, when it arrives, so the snapshot
/// holds a few hundred bytes per Service instead of the whole API object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Namespace/name.
    pub key: ObjectKey<Service>,
    /// The view, or why it is ignored or rejected.
    pub admission: Admission<ServiceView>,
}

impl ServiceEntry {
    /// Normalizes `svc` for a proxy named `service_proxy_name`.
    pub fn new(svc: &Service, service_proxy_name: Option<&str>) -> Self {
        Self {
            key: ObjectKey::of(&svc.metadata),
            admission: ServiceView::from_k8s(svc, service_proxy_name),
        }
    }
}

/// An EndpointSlice as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEntry {
    /// Namespace/name.
    pub key: ObjectKey<EndpointSlice>,
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: Option<ObjectKey<Service>>,
    /// Whether a Service owns it (the EndpointSlice controller's slices):
    /// such a slice outliving its Service is garbage about to be collected,
    /// not a mistake worth reporting.
    pub owned_by_service: bool,
    /// The view, or why it is ignored or rejected.
    pub admission: Admission<EndpointSliceView>,
}

impl SliceEntry {
    /// Normalizes `slice` for a proxy named `service_proxy_name`.
    pub fn new(slice: &EndpointSlice, service_proxy_name: Option<&str>) -> Self {
        Self {
            key: ObjectKey::of(&slice.metadata),
            service: slice_service(slice),
            owned_by_service: slice
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Service"),
            admission: EndpointSliceView::from_k8s(slice, service_proxy_name),
        }
    }
}

/// One object of a kind the proxy watches, as the snapshot keeps it.
#[derive(Debug, Clone)]
pub enum Object {
    /// A Service.
    Service(ServiceEntry),
    /// An EndpointSlice.
    EndpointSlice(SliceEntry),
    /// A Node (kept whole: there is one, or a few).
    Node(Box<Node>),
}

impl Object {
    /// A Service, normalized for a proxy named `service_proxy_name`.
    pub fn service(svc: &Service, service_proxy_name: Option<&str>) -> Self {
        Self::Service(ServiceEntry::new(svc, service_proxy_name))
    }

    /// An EndpointSlice, normalized for a proxy named `service_proxy_name`.
    pub fn endpoint_slice(slice: &EndpointSlice, service_proxy_name: Option<&str>) -> Self {
        Self::EndpointSlice(SliceEntry::new(slice, service_proxy_name))
    }

    /// A Node.
    pub fn node(node: Node) -> Self {
        Self::Node(Box::new(node))
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::Node(_) => Kind::Node,
        }
    }
}

impl Watched for Object {
    type Kind = Kind;

    fn kind(&self) -> Kind {
        Object::kind(self)
    }
}

/// What a batch of events changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Services whose Service object or EndpointSlices changed.
    pub services: BTreeSet<ObjectKey<Service>>,
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
    pub services: BTreeMap<ObjectKey<Service>, Arc<ServiceEntry>>,
    /// EndpointSlices by namespace/name.
    pub slices: BTreeMap<ObjectKey<EndpointSlice>, Arc<SliceEntry>>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Arc<Node>>,
    /// EndpointSlice keys by the Service they belong to, so a Service's
    /// slices are found without scanning every slice.
    by_service: BTreeMap<ObjectKey<Service>, BTreeSet<ObjectKey<EndpointSlice>>>,
    synced: BTreeSet<Kind>,
}

fn slice_service(s: &EndpointSlice) -> Option<ObjectKey<Service>> {
    let name = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(
        s.metadata.namespace.clone().unwrap_or_default(),
        name.clone(),
    ))
}

impl Snapshot {
    /// Whether the initial lists of Services and EndpointSlices (and the
    /// Node) are complete: nothing is programmed before.
    pub fn synced(&self) -> bool {
        Kind::ALL.iter().all(|k| self.synced.contains(k))
    }

    /// Marks a kind synced without objects (e.g. no Node source).
    pub fn mark_synced(&mut self, kind: Kind) {
        self.synced.insert(kind);
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of<'a>(
        &'a self,
        svc: &'a ObjectKey<Service>,
    ) -> impl Iterator<Item = &'a Arc<SliceEntry>> + 'a {
        self.by_service
            .get(svc)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.get(k))
    }

    fn index_slice(
        &mut self,
        slice: &ObjectKey<EndpointSlice>,
        svc: Option<ObjectKey<Service>>,
        add: bool,
    ) {
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
                self.remove_all_but(kind, &objs, &mut d);
                for o in objs {
                    self.put(o, &mut d);
                }
                self.synced.insert(kind);
            }
        }
        d
    }

    /// Removes the objects of `kind` that `keep` does not hold (a re-list
    /// without them: deleted while the watch was down).
    fn remove_all_but(&mut self, kind: Kind, keep: &[Object], d: &mut Dirty) {
        match kind {
            Kind::Service => {
                let keep: BTreeSet<&ObjectKey<Service>> = keep
                    .iter()
                    .filter_map(|o| match o {
                        Object::Service(s) => Some(&s.key),
                        _ => None,
                    })
                    .collect();
                let gone: Vec<_> = self
                    .services
                    .keys()
                    .filter(|k| !keep.contains(k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.remove_service(&key, d);
                }
            }
            Kind::EndpointSlice => {
                let keep: BTreeSet<&ObjectKey<EndpointSlice>> = keep
                    .iter()
                    .filter_map(|o| match o {
                        Object::EndpointSlice(s) => Some(&s.key),
                        _ => None,
                    })
                    .collect();
                let gone: Vec<_> = self
                    .slices
                    .keys()
                    .filter(|k| !keep.contains(k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.remove_slice(&key, d);
                }
            }
            Kind::Node => {
                let keep: BTreeSet<&str> = keep
                    .iter()
                    .filter_map(|o| match o {
                        Object::Node(n) => Some(n.metadata.name.as_deref().unwrap_or_default()),
                        _ => None,
                    })
                    .collect();
                let before = self.nodes.len();
                self.nodes.retain(|name, _| keep.contains(name.as_str()));
                d.nodes |= self.nodes.len() != before;
            }
        }
    }

    fn put(&mut self, obj: Object, d: &mut Dirty) {
        match obj {
            Object::Service(s) => {
                if self.services.get(&s.key).is_none_or(|old| **old != s) {
                    d.services.insert(s.key.clone());
                    d.service_changes += 1;
                    self.services.insert(s.key.clone(), Arc::new(s));
                }
            }
            Object::EndpointSlice(s) => {
                if let Some(old) = self.slices.get(&s.key) {
                    if **old == s {
                        return;
                    }
                    // A slice that moved between Services dirties both.
                    let prev = old.service.clone();
                    if let Some(prev) = &prev {
                        d.services.insert(prev.clone());
                    }
                    self.index_slice(&s.key, prev, false);
                }
                if let Some(svc) = &s.service {
                    d.services.insert(svc.clone());
                    self.index_slice(&s.key, Some(svc.clone()), true);
                }
                d.endpoint_changes += 1;
                self.slices.insert(s.key.clone(), Arc::new(s));
            }
            Object::Node(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                if self.nodes.get(&name).is_none_or(|old| **old != *n) {
                    d.nodes = true;
                    self.nodes.insert(name, Arc::new(*n));
                }
            }
        }
    }

    fn remove(&mut self, obj: &Object, d: &mut Dirty) {
        match obj {
            Object::Service(s) => self.remove_service(&s.key, d),
            Object::EndpointSlice(s) => self.remove_slice(&s.key, d),
            Object::Node(n) => {
                let name = n.metadata.name.as_deref().unwrap_or_default();
                if self.nodes.remove(name).is_some() {
                    d.nodes = true;
                }
            }
        }
    }

    fn remove_service(&mut self, key: &ObjectKey<Service>, d: &mut Dirty) {
        if self.services.remove(key).is_some() {
            d.services.insert(key.clone());
            d.service_changes += 1;
        }
    }

    fn remove_slice(&mut self, key: &ObjectKey<EndpointSlice>, d: &mut Dirty) {
        if let Some(old) = self.slices.remove(key) {
            if let Some(svc) = &old.service {
                d.services.insert(svc.clone());
                self.index_slice(key, Some(svc.clone()), false);
            }
            d.endpoint_changes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str) -> Object {
        Object::service(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"clusterIP": ip, "ports": [{"port": 80}]}
            }))
            .unwrap(),
            None,
        )
    }

    fn slice(ns: &str, name: &str, svc: &str, ip: &str) -> Object {
        Object::endpoint_slice(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip]}]
            }))
            .unwrap(),
            None,
        )
    }

    fn key(ns: &str, name: &str) -> ObjectKey<Service> {
        ObjectKey::new(ns, name)
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
