//! The API-server source: kube-rs watchers on IngressClasses, Ingresses,
//! Services, EndpointSlices and Secrets, cluster-wide, plus the
//! `--configmap` ConfigMap and, one by one, the Secrets access-control
//! annotations name. A watcher's initial list (and every re-list) becomes
//! one [`SourceEvent::Replace`]; later changes are applies and deletes.
//! Errors back off and retry inside the watcher; the gateway keeps routing
//! with what it has.
//!
//! Secrets are watched with the field selector `type=kubernetes.io/tls`:
//! only certificate Secrets are held in memory, at the price of watching
//! every TLS Secret in the cluster rather than only the referenced ones.
//! Basic-auth and CA Secrets (`auth-secret`, `auth-tls-secret`) are of any
//! type, usually `Opaque`, like most Secrets holding application
//! credentials: rather than hold all of those, the controller watches each
//! named one by itself (a namespaced watch with the field selector
//! `metadata.name=NAME`), started when an Ingress first names it and
//! stopped when none does ([`referenced_secrets`]). RBAC cannot narrow a
//! cluster-wide `list`/`watch` on Secrets by type or name, so the
//! ClusterRole is unchanged (get, list, watch on secrets); what changes is
//! only what the controller reads. The ConfigMap is one namespaced watch
//! by name too, which a Role with `resourceNames` allows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client};
use sluice_kube::source::send_all;
use sluice_kube::watch::watch;
use tokio::sync::{mpsc, watch as channel};

use super::compute::TLS_SECRET_TYPE;
use super::run::Update;
use super::snapshot::{Kind, Object, ObjectKey, SourceEvent};

/// Runs the watchers until the receiver is dropped. `configmap` is the
/// `--configmap`; `updates` tell which Secrets annotations name.
pub async fn run(
    client: Client,
    tx: mpsc::Sender<SourceEvent>,
    configmap: Option<ObjectKey<ConfigMap>>,
    updates: channel::Receiver<Option<Arc<Update>>>,
) {
    let cfg = watcher::Config::default();
    let secret_cfg = watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
    let classes = watch(
        Api::all(client.clone()),
        cfg.clone(),
        Kind::IngressClass,
        Object::IngressClass,
    );
    let ingresses = watch(
        Api::all(client.clone()),
        cfg.clone(),
        Kind::Ingress,
        Object::Ingress,
    );
    let services = watch(
        Api::all(client.clone()),
        cfg.clone(),
        Kind::Service,
        Object::Service,
    );
    let slices = watch(
        Api::all(client.clone()),
        cfg,
        Kind::EndpointSlice,
        Object::EndpointSlice,
    );
    let secrets = watch(
        Api::all(client.clone()),
        secret_cfg,
        Kind::Secret,
        Object::Secret,
    );
    tokio::join!(
        send_all(classes, &tx),
        send_all(ingresses, &tx),
        send_all(services, &tx),
        send_all(slices, &tx),
        send_all(secrets, &tx),
        configmap_source(client.clone(), configmap, &tx),
        referenced_secrets(client, tx.clone(), updates),
    );
}

/// A watch on one object by name: the field selector.
fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// The `--configmap` ConfigMap; without one the kind is synced empty.
async fn configmap_source(
    client: Client,
    key: Option<ObjectKey<ConfigMap>>,
    tx: &mpsc::Sender<SourceEvent>,
) {
    let Some(key) = key else {
        let _ = tx
            .send(SourceEvent::Replace(Kind::ConfigMap, Vec::new()))
            .await;
        return;
    };
    let events = watch(
        Api::<ConfigMap>::namespaced(client, &key.namespace),
        by_name(&key.name),
        Kind::ConfigMap,
        Object::ConfigMap,
    );
    send_all(events, tx).await;
}

/// A Secret object carrying only its key: what a delete needs.
fn stub(key: &ObjectKey<Secret>) -> Object {
    Object::ReferencedSecret(Secret {
        metadata: ObjectMeta {
            namespace: Some(key.namespace.clone()),
            name: Some(key.name.clone()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    })
}

/// Keeps one watch per Secret the latest update names (see the module
/// docs). The kind is synced at once: nothing is named before the first
/// update.
async fn referenced_secrets(
    client: Client,
    tx: mpsc::Sender<SourceEvent>,
    mut updates: channel::Receiver<Option<Arc<Update>>>,
) {
    if tx
        .send(SourceEvent::Replace(Kind::ReferencedSecret, Vec::new()))
        .await
        .is_err()
    {
        return;
    }
    let mut running: BTreeMap<ObjectKey<Secret>, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted: BTreeSet<ObjectKey<Secret>> = updates
            .borrow_and_update()
            .as_ref()
            .map(|u| u.computed.referenced_secrets.clone())
            .unwrap_or_default();
        let gone: Vec<ObjectKey<Secret>> = running
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(task) = running.remove(&key) {
                task.abort();
            }
            tracing::debug!(secret = %key, "no Ingress names this Secret any more; unwatched");
            if tx.send(SourceEvent::Delete(stub(&key))).await.is_err() {
                return;
            }
        }
        for key in wanted {
            if running.contains_key(&key) {
                continue;
            }
            tracing::debug!(secret = %key, "watching a Secret an Ingress names");
            let task = tokio::spawn(watch_secret(client.clone(), key.clone(), tx.clone()));
            running.insert(key, task);
        }
        if updates.changed().await.is_err() {
            break;
        }
    }
    for task in running.into_values() {
        task.abort();
    }
}

/// One named Secret: its list becomes an apply (or a delete when it does
/// not exist), so the watches of other Secrets are not disturbed.
async fn watch_secret(client: Client, key: ObjectKey<Secret>, tx: mpsc::Sender<SourceEvent>) {
    let events = watch(
        Api::<Secret>::namespaced(client, &key.namespace),
        by_name(&key.name),
        Kind::ReferencedSecret,
        Object::ReferencedSecret,
    )
    .map(move |ev| match ev {
        SourceEvent::Replace(_, objs) => match objs.into_iter().next() {
            Some(o) => SourceEvent::Apply(o),
            None => SourceEvent::Delete(stub(&key)),
        },
        other => other,
    });
    send_all(events, &tx).await;
}
