//! Where Kubernetes objects come from: the API server ([`kube`]) or a
//! directory of YAML files ([`manifests`]). Both send [`SourceEvent`]s
//! (`sluice_kube`'s, over this binary's [`Object`]s) into one [`Snapshot`],
//! which tells the sync loop what changed.

pub mod kube;
pub mod manifests;
mod snapshot;

pub use sluice_kube::ObjectKey;
pub use snapshot::{
    Dirty, Kind, Object, SERVICE_NAME_LABEL, ServiceEntry, SliceEntry, Snapshot, SourceEvent,
};
