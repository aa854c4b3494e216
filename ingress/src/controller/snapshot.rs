//! The objects the controller knows, by kind, and the events that change
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
pub use sluice_kube::ObjectKey;
use sluice_kube::Watched;

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The kinds the controller watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// networking.k8s.io/v1 IngressClass.
    IngressClass,
    /// networking.k8s.io/v1 Ingress.
    Ingress,
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// core/v1 Secret (of type `kubernetes.io/tls`; every type from
    /// `--manifests`).
    Secret,
    /// core/v1 Secret named by an access-control annotation
    /// (`auth-secret`, `auth-tls-secret`), of any type: watched one by
    /// one, by name (see [`super::kube`]).
    ReferencedSecret,
    /// core/v1 ConfigMap: ingress-nginx's controller settings
    /// (`--configmap`).
    ConfigMap,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::IngressClass,
        Kind::Ingress,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ReferencedSecret,
        Kind::ConfigMap,
    ];
}

/// One object of a watched kind.
// Objects are moved once from a source into the snapshot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Object {
    /// An IngressClass.
    IngressClass(IngressClass),
    /// An Ingress.
    Ingress(Ingress),
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A Secret.
    Secret(Secret),
    /// A Secret an annotation names.
    ReferencedSecret(Secret),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::IngressClass(_) => Kind::IngressClass,
            Self::Ingress(_) => Kind::Ingress,
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::Secret(_) => Kind::Secret,
            Self::ReferencedSecret(_) => Kind::ReferencedSecret,
            Self::ConfigMap(_) => Kind::ConfigMap,
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::IngressClass(o) => &o.metadata,
            Self::Ingress(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::EndpointSlice(o) => &o.metadata,
            Self::Secret(o) | Self::ReferencedSecret(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
        }
    }

    /// Its namespace/name (the kind is in the object, not the key).
    pub fn key<K>(&self) -> ObjectKey<K> {
        ObjectKey::of(self.meta())
    }
}

impl Watched for Object {
    type Kind = Kind;

    fn kind(&self) -> Kind {
        Object::kind(self)
    }
}

/// A change from a source.
pub type SourceEvent = sluice_kube::SourceEvent<Object>;

/// The objects currently known, shared cheaply (`Arc` per object).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// IngressClasses by name (empty namespace).
    pub classes: BTreeMap<ObjectKey<IngressClass>, Arc<IngressClass>>,
    /// Ingresses.
    pub ingresses: BTreeMap<ObjectKey<Ingress>, Arc<Ingress>>,
    /// Services.
    pub services: BTreeMap<ObjectKey<Service>, Arc<Service>>,
    /// EndpointSlices.
    pub slices: BTreeMap<ObjectKey<EndpointSlice>, Arc<EndpointSlice>>,
    /// Secrets.
    pub secrets: BTreeMap<ObjectKey<Secret>, Arc<Secret>>,
    /// Secrets named by access-control annotations.
    pub referenced_secrets: BTreeMap<ObjectKey<Secret>, Arc<Secret>>,
    /// ConfigMaps (the `--configmap` one).
    pub configmaps: BTreeMap<ObjectKey<ConfigMap>, Arc<ConfigMap>>,
    synced: BTreeSet<Kind>,
}

impl Snapshot {
    /// An empty snapshot with no kind synced.
    pub fn new() -> Self {
        Self::default()
    }

    /// A snapshot holding `objects`, every kind synced (for tests and
    /// one-shot use).
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut s = Self::new();
        let mut by_kind: BTreeMap<Kind, Vec<Object>> =
            Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
        for o in objects {
            by_kind.entry(o.kind()).or_default().push(o);
        }
        for (k, objs) in by_kind {
            s.apply(SourceEvent::Replace(k, objs));
        }
        s
    }

    /// Whether every kind has had its initial list.
    pub fn is_synced(&self) -> bool {
        Kind::ALL.iter().all(|k| self.synced.contains(k))
    }

    fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::IngressClass => self.classes.clear(),
            Kind::Ingress => self.ingresses.clear(),
            Kind::Service => self.services.clear(),
            Kind::EndpointSlice => self.slices.clear(),
            Kind::Secret => self.secrets.clear(),
            Kind::ReferencedSecret => self.referenced_secrets.clear(),
            Kind::ConfigMap => self.configmaps.clear(),
        }
    }

    fn put(&mut self, o: Object) {
        match o {
            Object::IngressClass(o) => {
                self.classes.insert(ObjectKey::from_object(&o), Arc::new(o));
            }
            Object::Ingress(o) => {
                self.ingresses
                    .insert(ObjectKey::from_object(&o), Arc::new(o));
            }
            Object::Service(o) => {
                self.services
                    .insert(ObjectKey::from_object(&o), Arc::new(o));
            }
            Object::EndpointSlice(o) => {
                self.slices.insert(ObjectKey::from_object(&o), Arc::new(o));
            }
            Object::Secret(o) => {
                self.secrets.insert(ObjectKey::from_object(&o), Arc::new(o));
            }
            Object::ReferencedSecret(o) => {
                self.referenced_secrets
                    .insert(ObjectKey::from_object(&o), Arc::new(o));
            }
            Object::ConfigMap(o) => {
                self.configmaps
                    .insert(ObjectKey::from_object(&o), Arc::new(o));
            }
        }
    }

    fn remove(&mut self, o: &Object) {
        match o.kind() {
            Kind::IngressClass => drop(self.classes.remove(&o.key())),
            Kind::Ingress => drop(self.ingresses.remove(&o.key())),
            Kind::Service => drop(self.services.remove(&o.key())),
            Kind::EndpointSlice => drop(self.slices.remove(&o.key())),
            Kind::Secret => drop(self.secrets.remove(&o.key())),
            Kind::ReferencedSecret => drop(self.referenced_secrets.remove(&o.key())),
            Kind::ConfigMap => drop(self.configmaps.remove(&o.key())),
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Apply(o) => self.put(o),
            SourceEvent::Delete(o) => self.remove(&o),
            SourceEvent::Replace(kind, objs) => {
                self.clear(kind);
                for o in objs.into_iter().filter(|o| o.kind() == kind) {
                    self.put(o);
                }
                self.synced.insert(kind);
            }
        }
    }

    /// A Secret by key: the certificate watch's, else a referenced one.
    pub fn secret(&self, key: &ObjectKey<Secret>) -> Option<&Arc<Secret>> {
        self.secrets
            .get(key)
            .or_else(|| self.referenced_secrets.get(key))
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.slices
            .range(ObjectKey::new(namespace, "")..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, s)| s.as_ref())
            .filter(move |s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|n| n == service)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(ns: &str, name: &str, svc: &str) -> Object {
        Object::EndpointSlice(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name,
                             "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4", "endpoints": []
            }))
            .unwrap(),
        )
    }

    #[test]
    fn replace_apply_delete_and_sync() {
        let mut s = Snapshot::new();
        assert!(!s.is_synced());
        s.apply(SourceEvent::Replace(
            Kind::EndpointSlice,
            vec![slice("a", "web-1", "web"), slice("b", "web-2", "web")],
        ));
        s.apply(SourceEvent::Apply(slice("a", "web-3", "web")));
        s.apply(SourceEvent::Apply(slice("a", "api-1", "api")));
        assert_eq!(s.slices_of("a", "web").count(), 2);
        s.apply(SourceEvent::Delete(slice("a", "web-1", "web")));
        assert_eq!(s.slices_of("a", "web").count(), 1);
        assert_eq!(s.slices_of("b", "web").count(), 1);
        assert!(!s.is_synced());
        let s = Snapshot::from_objects([slice("a", "x", "y")]);
        assert!(s.is_synced());
    }
}
