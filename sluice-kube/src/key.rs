//! [`ObjectKey<K>`]: the namespace and name of an object of kind `K`, in the
//! style of kube-runtime's `ObjectRef<K>` but ordered (snapshots keep
//! objects in `BTreeMap`s and look up a namespace's objects by range) and
//! without the resource version: a key names an object across versions.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The namespace and name of an object of kind `K` (a k8s-openapi type such
/// as `Service`). The kind is in the type only: a Service's key cannot be
/// used where an EndpointSlice's is wanted. Cluster-scoped objects have an
/// empty namespace.
pub struct ObjectKey<K> {
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    kind: PhantomData<fn() -> K>,
}

impl<K> ObjectKey<K> {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            kind: PhantomData,
        }
    }

    /// The key an object's metadata names (missing fields are empty).
    pub fn of(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The same namespace/name as the key of another kind (an
    /// EndpointSlice's Service, say, is found by a label, not by type).
    pub fn cast<L>(self) -> ObjectKey<L> {
        ObjectKey::new(self.namespace, self.name)
    }
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta>> ObjectKey<K> {
    /// The key of `object`.
    pub fn from_object(object: &K) -> Self {
        Self::of(object.metadata())
    }
}

impl<K> Clone for ObjectKey<K> {
    fn clone(&self) -> Self {
        Self::new(self.namespace.clone(), self.name.clone())
    }
}

impl<K> PartialEq for ObjectKey<K> {
    fn eq(&self, other: &Self) -> bool {
        self.namespace == other.namespace && self.name == other.name
    }
}

impl<K> Eq for ObjectKey<K> {}

impl<K> PartialOrd for ObjectKey<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Namespace first, then name: a namespace's objects are one range.
impl<K> Ord for ObjectKey<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.namespace, &self.name).cmp(&(&other.namespace, &other.name))
    }
}

impl<K> Hash for ObjectKey<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.namespace.hash(state);
        self.name.hash(state);
    }
}

impl<K> fmt::Debug for ObjectKey<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({self})")
    }
}

/// `namespace/name` (`/name` for cluster-scoped objects, as before).
impl<K> fmt::Display for ObjectKey<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::core::v1::Service;

    use super::*;

    #[test]
    fn ordered_by_namespace_then_name_and_displayed_as_a_path() {
        let keys: BTreeSet<ObjectKey<Service>> = [
            ObjectKey::new("b", "a"),
            ObjectKey::new("a", "z"),
            ObjectKey::new("a", "b"),
        ]
        .into();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a/b", "a/z", "b/a"]);
        let svc = Service {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("web".into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        };
        assert_eq!(ObjectKey::from_object(&svc), ObjectKey::new("ns", "web"));
    }
}
