//! The API-server source: kube-rs watchers on Services, EndpointSlices and
//! this node's Node, with kube-proxy's label selectors. A watcher's initial
//! list (and every re-list after 410 Gone) becomes one
//! [`SourceEvent::Replace`]; later changes are applies and deletes. Errors
//! back off and retry inside the watcher; the data plane is never touched
//! because the API server is unreachable.

use kube::runtime::watcher;
use kube::{Api, Client};
use sluice_kube::source::send_all;
use sluice_kube::watch::watch;
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

/// Runs the three watchers until the receiver is dropped.
pub async fn run(
    client: Client,
    node_name: String,
    service_proxy_name: Option<String>,
    tx: mpsc::Sender<SourceEvent>,
) {
    let selector = label_selector(service_proxy_name.as_deref());
    let cfg = watcher::Config::default().labels(&selector);
    // Objects are normalized as they arrive, so neither an initial list of
    // 10,000 Services nor the snapshot holds whole API objects.
    let name = service_proxy_name.as_deref();
    let services = watch(Api::all(client.clone()), cfg.clone(), Kind::Service, |s| {
        Object::service(&s, name)
    });
    let slices = watch(Api::all(client.clone()), cfg, Kind::EndpointSlice, |s| {
        Object::endpoint_slice(&s, name)
    });
    let node_cfg = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let nodes = watch(Api::all(client), node_cfg, Kind::Node, Object::node);
    tokio::join!(
        send_all(services, &tx),
        send_all(slices, &tx),
        send_all(nodes, &tx),
    );
}
