//! The API-server source: kube-rs watchers on Services, EndpointSlices and
//! this node's Node, with kube-proxy's label selectors. A watcher's initial
//! list (and every re-list after 410 Gone) becomes one
//! [`SourceEvent::Replace`]; later changes are applies and deletes. Errors
//! back off and retry inside the watcher; the data plane is never touched
//! because the API server is unreachable.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

use super::{Kind, Object, SourceEvent};

/// Label a Service (and its slices) carries when another proxy owns it.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label on EndpointSlices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// kube-proxy's label selector: objects without a service-proxy-name (or
/// with ours, when one is configured), and no headless slices.
pub fn label_selector(service_proxy_name: Option<&str>) -> String {
    match service_proxy_name {
        Some(name) => format!("{SERVICE_PROXY_NAME_LABEL}={name},!{HEADLESS_LABEL}"),
        None => format!("!{SERVICE_PROXY_NAME_LABEL},!{HEADLESS_LABEL}"),
    }
}

async fn forward<K, S, W>(kind: Kind, stream: S, wrap: W, tx: mpsc::Sender<SourceEvent>)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    W: Fn(K) -> Object,
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

/// Runs the three watchers until the receiver is dropped.
pub async fn run(
    client: Client,
    node_name: String,
    service_proxy_name: Option<String>,
    tx: mpsc::Sender<SourceEvent>,
) {
    let selector = label_selector(service_proxy_name.as_deref());
    let cfg = watcher::Config::default().labels(&selector);
    let services = watcher(Api::<Service>::all(client.clone()), cfg.clone()).default_backoff();
    let slices = watcher(Api::<EndpointSlice>::all(client.clone()), cfg).default_backoff();
    let node_cfg = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let nodes = watcher(Api::<Node>::all(client), node_cfg).default_backoff();
    // Objects are normalized as they arrive, so neither an initial list of
    // 10,000 Services nor the snapshot holds whole API objects.
    let name = service_proxy_name.as_deref();
    tokio::join!(
        forward(
            Kind::Service,
            services,
            |s: Service| Object::service(&s, name),
            tx.clone()
        ),
        forward(
            Kind::EndpointSlice,
            slices,
            |s: EndpointSlice| Object::endpoint_slice(&s, name),
            tx.clone()
        ),
        forward(Kind::Node, nodes, Object::node, tx),
    );
}
