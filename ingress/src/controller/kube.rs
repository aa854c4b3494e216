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

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

use super::compute::TLS_SECRET_TYPE;
use super::snapshot::{Kind, Object, SourceEvent};

async fn forward<K, S>(kind: Kind, stream: S, wrap: fn(K) -> Object, tx: mpsc::Sender<SourceEvent>)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut listing: Vec<Object> = Vec::new();
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                listing.push(wrap(o));
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                SourceEvent::Replace(kind, std::mem::take(&mut listing))
            }
            Ok(watcher::Event::Apply(o)) => SourceEvent::Apply(wrap(o)),
            Ok(watcher::Event::Delete(o)) => SourceEvent::Delete(wrap(o)),
            Err(e) => {
                tracing::warn!(?kind, error = %e, "watch failed; retrying with backoff");
                continue;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Runs the five watchers until the receiver is dropped.
pub async fn run(client: Client, tx: mpsc::Sender<SourceEvent>) {
    let cfg = watcher::Config::default();
    let secret_cfg = watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
    let classes = watcher(Api::<IngressClass>::all(client.clone()), cfg.clone()).default_backoff();
    let ingresses = watcher(Api::<Ingress>::all(client.clone()), cfg.clone()).default_backoff();
    let services = watcher(Api::<Service>::all(client.clone()), cfg.clone()).default_backoff();
    let slices = watcher(Api::<EndpointSlice>::all(client.clone()), cfg).default_backoff();
    let secrets = watcher(Api::<Secret>::all(client), secret_cfg).default_backoff();
    tokio::join!(
        forward(
            Kind::IngressClass,
            classes,
            Object::IngressClass,
            tx.clone()
        ),
        forward(Kind::Ingress, ingresses, Object::Ingress, tx.clone()),
        forward(Kind::Service, services, Object::Service, tx.clone()),
        forward(
            Kind::EndpointSlice,
            slices,
            Object::EndpointSlice,
            tx.clone()
        ),
        forward(Kind::Secret, secrets, Object::Secret, tx),
    );
}
