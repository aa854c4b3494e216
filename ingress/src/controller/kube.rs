//! The API-server source: kube-rs watchers on IngressClasses, Ingresses,
//! Services, EndpointSlices and Secrets, cluster-wide. A watcher's initial
//! list (and every re-list) becomes one [`SourceEvent::Replace`]; later
//! changes are applies and deletes. Errors back off and retry inside the
//! watcher; the gateway keeps routing with what it has.
//!
//! Secrets are watched with the field selector `type=kubernetes.io/tls`:
//! only certificate Secrets are ever held in memory (the controller has no
//! use for the others, and should not read them: least privilege), at the
//! price of watching every TLS Secret in the cluster rather than only the
//! referenced ones.

use kube::runtime::watcher;
use kube::{Api, Client};
use sluice_kube::source::send_all;
use sluice_kube::watch::watch;
use tokio::sync::mpsc;

use super::compute::TLS_SECRET_TYPE;
use super::snapshot::{Kind, Object, SourceEvent};

/// Runs the five watchers until the receiver is dropped.
pub async fn run(client: Client, tx: mpsc::Sender<SourceEvent>) {
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
    );
}
