//! Where Kubernetes objects come from: the API server ([`kube`]) or a
//! directory of YAML files ([`manifests`]). Both send [`SourceEvent`]s into
//! one [`Snapshot`], which tells the sync loop what changed.

pub mod kube;
pub mod manifests;
mod snapshot;

pub use snapshot::{
    Dirty, Kind, Object, ObjectKey, ServiceEntry, SliceEntry, Snapshot, SourceEvent,
};
