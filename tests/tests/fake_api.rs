//! The fake Kubernetes API server, driven through the real kube-rs client.

use std::collections::BTreeMap;
use std::future::ready;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeStatus, ObjectReference, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressSpec, IngressStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sluice_tests::fake_api::{FakeApiConfig, FakeApiServer, Verb};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

fn svc(name: &str, labels: &[(&str, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn names<K: kube::Resource>(items: impl IntoIterator<Item = K>) -> Vec<String> {
    let mut v: Vec<String> = items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    v.sort();
    v
}

fn api_code<T: std::fmt::Debug>(r: kube::Result<T>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a reflector over all Services with the default backoff.
fn reflect(
    client: kube::Client,
    cfg: watcher::Config,
) -> (reflector::Store<Service>, JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(Api::<Service>::all(client), cfg))
        .default_backoff()
        .for_each(|_| ready(()));
    (reader, tokio::spawn(stream))
}

fn port_of(store: &reflector::Store<Service>, ns: &str, name: &str) -> Option<i32> {
    store
        .get(&ObjectRef::new(name).within(ns))
        .and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first().map(|p| p.port))
}

#[tokio::test]
async fn service_round_trips() {
    let server = FakeApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();

    let created = api
        .create(&pp, &svc("web", &[("app", "web")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.as_deref().unwrap().starts_with("10.96."));
    assert_eq!(
        spec.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    assert_eq!(
        api_code(api.create(&pp, &svc("web", &[])).await),
        (409, "AlreadyExists".into())
    );

    let got = api.get("web").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        names(api.list(&ListParams::default()).await.unwrap()),
        ["web"]
    );
    assert_eq!(api_code(api.get("nope").await), (404, "NotFound".into()));

    let mut changed = got.clone();
    changed.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 8080;
    let replaced = api.replace("web", &pp, &changed).await.unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.spec.as_ref().unwrap().cluster_ip, spec.cluster_ip);
    // `changed` still carries the old resourceVersion.
    assert_eq!(
        api_code(api.replace("web", &pp, &changed).await),
        (409, "Conflict".into())
    );

    let merged = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["tier"], "front");
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(
        merged.metadata.generation,
        Some(2),
        "labels do not bump generation"
    );
    let strategic = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"port": 8080, "name": "http"}]}})),
        )
        .await
        .unwrap();
    let ports = strategic.spec.unwrap().ports.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    let (code, patched) = raw(
        &server,
        "PATCH",
        "/api/v1/namespaces/default/services/web",
        Some("application/json-patch+json"),
        r#"[{"op": "replace", "path": "/metadata/labels/tier", "value": "back"}]"#,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(patched["metadata"]["labels"]["tier"], "back");
    let applied = api
        .patch(
            "api",
            &PatchParams::apply("sluice-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                                 "metadata": {"name": "api"}, "spec": {"ports": [{"port": 443}]}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("api"));

    let gone = api.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_right(), "immediate deletion answers a Status");
    assert_eq!(api_code(api.get("web").await), (404, "NotFound".into()));
    assert_eq!(
        api_code(api.delete("web", &DeleteParams::default()).await),
        (404, "NotFound".into())
    );
    assert_eq!(
        server
            .get::<Service>(Some("default"), "api")
            .unwrap()
            .metadata
            .name
            .as_deref(),
        Some("api")
    );
    assert_eq!(server.count(Verb::Create, "services"), 2);
}

/// Sends a request through the kube client and returns the status code and
/// the decoded body (a `Status` for errors).
async fn raw(
    server: &FakeApiServer,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    raw_with(&server.client(), method, path, content_type, body).await
}

/// [`raw`] with a given client.
async fn raw_with(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = hyper::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(body.as_bytes().to_vec()).unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    // Watch bodies are JSON lines (possibly none): take the first.
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let v = if first.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(first)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON: {e}"))
    };
    (code, v)
}

#[tokio::test]
async fn selectors_and_pagination() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    for (ns, name, labels) in [
        ("default", "a", vec![("app", "web"), ("tier", "front")]),
        ("default", "b", vec![("app", "db")]),
        ("default", "c", vec![]),
        ("other", "d", vec![("app", "web")]),
    ] {
        Api::<Service>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &svc(name, &labels))
            .await
            .unwrap();
    }
    let all: Api<Service> = Api::all(client.clone());
    let default: Api<Service> = Api::namespaced(client.clone(), "default");
    let sel = |s: &str| ListParams::default().labels(s);
    let list = |api: &Api<Service>, lp: ListParams| {
        let api = api.clone();
        async move { names(api.list(&lp).await.unwrap()) }
    };
    assert_eq!(
        list(&all, ListParams::default()).await,
        ["a", "b", "c", "d"]
    );
    assert_eq!(list(&default, ListParams::default()).await, ["a", "b", "c"]);
    assert_eq!(list(&all, sel("app=web")).await, ["a", "d"]);
    assert_eq!(list(&all, sel("app==web,tier")).await, ["a"]);
    assert_eq!(list(&all, sel("app!=web")).await, ["b", "c"]);
    assert_eq!(list(&all, sel("app in (web,db)")).await, ["a", "b", "d"]);
    assert_eq!(list(&all, sel("app notin (web)")).await, ["b", "c"]);
    assert_eq!(list(&all, sel("!app")).await, ["c"]);
    let fields = |s: &str| ListParams::default().fields(s);
    assert_eq!(list(&all, fields("metadata.name=b")).await, ["b"]);
    assert_eq!(list(&all, fields("metadata.namespace=other")).await, ["d"]);
    assert_eq!(
        list(&all, fields("metadata.name!=a,metadata.namespace=default")).await,
        ["b", "c"]
    );
    assert_eq!(api_code(all.list(&sel("app in web")).await).0, 400);
    assert_eq!(api_code(all.list(&fields("spec.bogus=1")).await).0, 400);

    // Pagination: two pages of two, then none.
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(first.items.clone()), ["a", "b"]);
    let token = first.metadata.continue_.clone().unwrap();
    assert_eq!(first.metadata.remaining_item_count, Some(2));
    let second = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(second.items), ["c", "d"]);
    assert!(second.metadata.continue_.is_none());
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    // The watcher pages through lists too: one object per page.
    let lists = server.count(Verb::List, "services");
    let (store, task) = reflect(client.clone(), watcher::Config::default().page_size(1));
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 4);
    assert_eq!(server.count(Verb::List, "services") - lists, 4);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_and_reflector() {
    let server = FakeApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let (store, task) = reflect(server.client(), watcher::Config::default());
    store.wait_until_ready().await.unwrap();

    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut raw = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let created = api
        .create(&PostParams::default(), &svc("web", &[]))
        .await
        .unwrap();
    let mut upd = created.clone();
    upd.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 81;
    api.replace("web", &PostParams::default(), &upd)
        .await
        .unwrap();
    until(|| port_of(&store, "default", "web") == Some(81)).await;
    api.delete("web", &DeleteParams::default()).await.unwrap();

    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match raw.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(s) => kinds.push(("ADDED", s.metadata.resource_version)),
            WatchEvent::Modified(s) => kinds.push(("MODIFIED", s.metadata.resource_version)),
            WatchEvent::Deleted(s) => kinds.push(("DELETED", s.metadata.resource_version)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    let types: Vec<_> = kinds.iter().map(|k| k.0).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    let rvs: Vec<u64> = kinds
        .iter()
        .map(|k| k.1.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    until(|| store.state().is_empty()).await;

    // Changes through the test handle reach watchers too.
    server.apply(&svc("side", &[]));
    until(|| port_of(&store, "default", "side") == Some(80)).await;
    server.delete::<Service>(Some("default"), "side").unwrap();
    until(|| store.state().is_empty()).await;

    // A label-selected watch sees an object leave the selection as DELETED.
    api.create(&PostParams::default(), &svc("sel", &[("app", "web")]))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = api
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    match w.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.labels.unwrap()["app"], "web"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    assert_eq!(server.count(Verb::List, "services"), 3);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_forces_relist() {
    let server = FakeApiServer::start().await;
    server.apply(&svc("one", &[]));
    let (store, task) = reflect(server.client(), watcher::Config::default());
    store.wait_until_ready().await.unwrap();
    assert!(server.wait_for(WAIT, |s| s.open_watches() == 1).await);
    assert_eq!(server.count(Verb::List, "services"), 1);

    // Expiring watches alone: the watcher resumes from its resourceVersion.
    server.expire_watches();
    server.apply(&svc("two", &[]));
    until(|| store.state().len() == 2).await;
    assert!(
        server
            .wait_for(WAIT, |s| s.count(Verb::Watch, "services") == 2)
            .await
    );
    assert_eq!(server.count(Verb::List, "services"), 1);

    // Compaction + expiry: the resumed watch gets 410 and the watcher
    // lists again; changes made meanwhile converge.
    server.compact();
    server.expire_watches();
    server.delete::<Service>(Some("default"), "one");
    server.apply(&svc("three", &[]));
    until(|| {
        let mut n = names(store.state().iter().map(|s| (**s).clone()));
        n.sort();
        n == ["three", "two"]
    })
    .await;
    assert!(
        server
            .wait_for(WAIT, |s| s.count(Verb::List, "services") == 2)
            .await
    );
    assert!(server.count(Verb::Watch, "services") >= 3);

    // A watch from a compacted version gets the 410 ERROR event itself.
    let api: Api<Service> = Api::all(server.client());
    let mut w = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match w.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR, got {other:?}"),
    }
    assert!(
        w.try_next().await.unwrap().is_none(),
        "the stream ends after the error"
    );
    task.abort();

    // A short history window expires old versions without compact().
    let small = FakeApiServer::start_with(FakeApiConfig {
        history_limit: 2,
        ..Default::default()
    })
    .await;
    let api: Api<Service> = Api::all(small.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for n in ["a", "b", "c"] {
        small.apply(&svc(n, &[]));
    }
    let mut w = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(w.try_next().await.unwrap(), Some(WatchEvent::Error(e)) if e.code == 410));
    let recent = (small.resource_version() - 2).to_string();
    let mut w = api
        .watch(&WatchParams::default(), &recent)
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(w.try_next().await.unwrap(), Some(WatchEvent::Added(s)) if s.metadata.name.as_deref() == Some("b"))
    );
    let list = api
        .list(
            &ListParams::default()
                .at(&rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await;
    assert_eq!(api_code(list), (410, "Expired".into()));
}

#[tokio::test]
async fn bookmarks_and_streaming_lists() {
    let server = FakeApiServer::start_with(FakeApiConfig {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    server.apply(&svc("one", &[]));
    let api: Api<Service> = Api::all(server.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    server.apply(&svc("two", &[]));
    let mut w = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    let bookmark_rv = loop {
        match w.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => break b.metadata.resource_version,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(added, 1);
    assert_eq!(bookmark_rv, server.resource_version().to_string());
    assert!(server.bookmarks_sent() >= 1);

    // Without allowWatchBookmarks, none arrive (the stream just times out).
    let mut quiet = api
        .watch(
            &WatchParams::default().disable_bookmarks().timeout(1),
            &bookmark_rv,
        )
        .await
        .unwrap()
        .boxed();
    assert!(quiet.try_next().await.unwrap().is_none());

    // Streaming lists: initial ADDED events, then the initial-events-end
    // bookmark; no LIST call.
    let lists = server.count(Verb::List, "services");
    let (store, task) = reflect(
        server.client(),
        watcher::Config::default().streaming_lists(),
    );
    store.wait_until_ready().await.unwrap();
    assert_eq!(store.state().len(), 2);
    assert_eq!(server.count(Verb::List, "services"), lists);
    let streaming = server
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Watch && r.param("sendInitialEvents") == Some("true"));
    assert!(streaming.is_some());
    task.abort();
}

#[tokio::test]
async fn watcher_survives_outage() {
    let server = FakeApiServer::start().await;
    server.apply(&svc("one", &[]));
    let (store, task) = reflect(server.client(), watcher::Config::default());
    store.wait_until_ready().await.unwrap();
    assert!(server.wait_for(WAIT, |s| s.open_watches() == 1).await);

    server.set_down(true).await;
    assert!(server.is_down());
    assert_eq!(server.open_watches(), 0);
    let refused = tokio::net::TcpStream::connect(server.addr()).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert!(
        Api::<Service>::all(server.client())
            .list(&ListParams::default())
            .await
            .is_err()
    );
    // Changes while the API server is down.
    let mut changed = svc("one", &[]);
    changed.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 9090;
    server.apply(&changed);
    server.apply(&svc("two", &[]));
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.set_down(false).await;
    until(|| port_of(&store, "default", "one") == Some(9090) && store.state().len() == 2).await;
    // It resumed the watch from its resourceVersion instead of re-listing.
    assert_eq!(server.count(Verb::List, "services"), 1);
    assert!(server.count(Verb::Watch, "services") >= 2);

    // 503 mode: kube's client retries (honouring Retry-After) until the
    // server is available again.
    server.set_unavailable(true);
    let api: Api<Service> = Api::all(server.client());
    let pending = tokio::spawn(async move { api.list(&ListParams::default()).await });
    assert!(
        server
            .wait_for(WAIT, |s| s.requests().iter().any(|r| r.status == 503))
            .await
    );
    server.set_unavailable(false);
    assert_eq!(pending.await.unwrap().unwrap().items.len(), 2);
    task.abort();
}

#[tokio::test]
async fn status_subresources() {
    let server = FakeApiServer::start().await;
    let client = server.client();

    // nodes/status merge patch: status changes, spec does not. Metadata
    // does: the real nodes/status strategy only resets the spec (client-go's
    // PatchNodeStatus relies on it; flannel writes its annotations so).
    server.apply(&Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let before = nodes.get("n1").await.unwrap();
    let patched = nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"sneaky": "yes"}},
                "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        patched
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("sneaky")),
        Some(&"yes".to_owned())
    );
    assert!(
        patched
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .is_none()
    );
    let conds = patched
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap();
    assert_eq!(conds.len(), 1, "merge patch replaces lists");
    assert_eq!(conds[0].type_, "NetworkUnavailable");
    assert_eq!(patched.metadata.generation, before.metadata.generation);
    // A strategic merge patch merges conditions by type, as the real server does.
    let strategic = nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        )
        .await
        .unwrap();
    let types: Vec<_> = strategic
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["NetworkUnavailable", "Ready"]);

    // ingresses/status replace: status changes; the main resource ignores status.
    let ings: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let ing = ings
        .create(
            &PostParams::default(),
            &Ingress {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    ..Default::default()
                },
                spec: Some(IngressSpec {
                    ingress_class_name: Some("sluice".into()),
                    ..Default::default()
                }),
                status: Some(IngressStatus {
                    load_balancer: Some(IngressLoadBalancerStatus {
                        ingress: Some(vec![IngressLoadBalancerIngress {
                            ip: Some("6.6.6.6".into()),
                            ..Default::default()
                        }]),
                    }),
                }),
            },
        )
        .await
        .unwrap();
    let lb = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .and_then(|v| v.first())
            .and_then(|x| x.ip.clone())
    };
    assert_eq!(lb(&ing), None, "create resets status");
    let mut want = ing.clone();
    want.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
    want.status = Some(IngressStatus {
        load_balancer: Some(IngressLoadBalancerStatus {
            ingress: Some(vec![IngressLoadBalancerIngress {
                ip: Some("192.0.2.10".into()),
                ..Default::default()
            }]),
        }),
    });
    let updated = ings
        .replace_status("web", &PostParams::default(), &want)
        .await
        .unwrap();
    assert_eq!(lb(&updated).as_deref(), Some("192.0.2.10"));
    assert_eq!(
        updated.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("sluice")
    );
    // Stale resourceVersion on /status conflicts too.
    assert_eq!(
        api_code(
            ings.replace_status("web", &PostParams::default(), &want)
                .await
        )
        .0,
        409
    );
    let mut main = updated.clone();
    main.status = None;
    main.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
    let replaced = ings
        .replace("web", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(lb(&replaced).as_deref(), Some("192.0.2.10"), "status kept");
    assert_eq!(
        replaced.spec.unwrap().ingress_class_name.as_deref(),
        Some("other")
    );

    let writes = server.writes();
    let status_writes: Vec<_> = writes
        .iter()
        .filter(|w| w.subresource.as_deref() == Some("status"))
        .map(|w| (w.verb, w.resource.as_str(), w.status))
        .collect();
    assert_eq!(
        status_writes,
        [
            (Verb::Patch, "nodes", 200),
            (Verb::Patch, "nodes", 200),
            (Verb::Update, "ingresses", 200),
            (Verb::Update, "ingresses", 409)
        ]
    );
    let body = writes[0].body.as_ref().unwrap();
    assert_eq!(
        body["spec"]["unschedulable"], true,
        "the request body is recorded"
    );
}

#[tokio::test]
async fn events_are_recorded() {
    let server = FakeApiServer::start().await;
    let reporter = Reporter {
        controller: "sluice-proxy".into(),
        instance: Some("node-1".into()),
    };
    let recorder = Recorder::new(server.client(), reporter);
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some("node-1".into()),
        ..Default::default()
    };
    let ev = KubeEvent {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("ipvs rules programmed".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(events[0]["reason"], "Synced");
    assert_eq!(events[0]["regarding"]["name"], "node-1");
    assert_eq!(events[0]["series"]["count"], 2);
    let verbs: Vec<_> = server
        .writes()
        .iter()
        .map(|w| (w.verb, w.resource.clone()))
        .collect();
    assert_eq!(
        verbs,
        [
            (Verb::Create, "events".into()),
            (Verb::Patch, "events".into())
        ]
    );

    // core/v1 events through the plain API.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(server.client(), "default");
    core.create(
        &PostParams::default(),
        &k8s_openapi::api::core::v1::Event {
            metadata: ObjectMeta {
                generate_name: Some("n1.".into()),
                ..Default::default()
            },
            involved_object: reference.clone(),
            reason: Some("Hello".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let hello = core
        .list(&ListParams::default().fields("involvedObject.name=node-1,reason=Hello"))
        .await
        .unwrap();
    assert_eq!(hello.items.len(), 1);
    assert!(
        hello.items[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("n1.")
    );
    assert_eq!(server.events().len(), 2);
}

#[tokio::test]
async fn lease_optimistic_concurrency() {
    let server = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "kube-system");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("sluice-ingress".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        api_code(leases.create(&PostParams::default(), &lease).await),
        (409, "AlreadyExists".into())
    );
    // Both candidates read the same version; the first write wins.
    let mut by_b = held.clone();
    by_b.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut by_c = held.clone();
    by_c.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let won = leases
        .replace("sluice-ingress", &PostParams::default(), &by_b)
        .await
        .unwrap();
    assert_eq!(won.spec.unwrap().holder_identity.as_deref(), Some("b"));
    match leases
        .replace("sluice-ingress", &PostParams::default(), &by_c)
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message
                    .contains("leases.coordination.k8s.io \"sluice-ingress\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A merge patch carrying a stale resourceVersion conflicts as well.
    let stale = json!({"metadata": {"resourceVersion": held.metadata.resource_version}, "spec": {"holderIdentity": "c"}});
    assert_eq!(
        api_code(
            leases
                .patch(
                    "sluice-ingress",
                    &PatchParams::default(),
                    &Patch::Merge(stale)
                )
                .await
        )
        .0,
        409
    );
    let stored: Lease = server.get(Some("kube-system"), "sluice-ingress").unwrap();
    assert_eq!(stored.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn finalizers_and_dry_run() {
    let server = FakeApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let mut s = svc("fin", &[]);
    s.metadata.finalizers = Some(vec!["sluice.dev/cleanup".into()]);
    api.create(&PostParams::default(), &s).await.unwrap();
    let pending = api.delete("fin", &DeleteParams::default()).await.unwrap();
    let obj = pending.left().expect("deletion waits for finalizers");
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert!(api.get("fin").await.is_ok());
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_code(api.get("fin").await).0, 404);

    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &svc("dry", &[]),
        )
        .await
        .unwrap();
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert_eq!(api_code(api.get("dry").await).0, 404);

    let mut gone = svc("pre", &[]);
    gone = api.create(&PostParams::default(), &gone).await.unwrap();
    let dp = DeleteParams::default().preconditions(kube::api::Preconditions {
        uid: Some("wrong".into()),
        resource_version: None,
    });
    assert_eq!(api_code(api.delete("pre", &dp).await).0, 409);
    let dp = DeleteParams::default().preconditions(kube::api::Preconditions {
        uid: gone.metadata.uid.clone(),
        resource_version: gone.metadata.resource_version.clone(),
    });
    assert!(api.delete("pre", &dp).await.unwrap().is_right());
    let mut labels = BTreeMap::new();
    labels.insert("x".to_string(), "y".to_string());
    for n in ["c1", "c2"] {
        let mut s = svc(n, &[]);
        s.metadata.labels = Some(labels.clone());
        api.create(&PostParams::default(), &s).await.unwrap();
    }
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("x=y"),
        )
        .await
        .unwrap();
    assert_eq!(names(deleted.left().unwrap().items), ["c1", "c2"]);
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn bad_requests_get_status_errors() {
    let server = FakeApiServer::start().await;
    let cases = [
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            "{not json",
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            "[1,2]",
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            r#"{"kind":"Pod","metadata":{"name":"x"}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            r#"{"metadata":{}}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            r#"{"metadata":"x"}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            r#"{"metadata":{"name":"x"},"spec":{"type":5}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            r#"{"metadata":{"name":"x"},"spec":{"type":"NodePort","ports":[5]}}"#,
            400,
        ),
        ("GET", "/api/v1/namespaces/default/widgets", None, "", 404),
        (
            "GET",
            "/api/v1/services?labelSelector=a%20in%20b",
            None,
            "",
            400,
        ),
        ("GET", "/api/v1/services?limit=-1", None, "", 400),
        (
            "GET",
            "/api/v1/services?watch=true&resourceVersion=abc",
            None,
            "",
            400,
        ),
        ("GET", "/api/v1/services?continue=garbage", None, "", 400),
        (
            "PATCH",
            "/api/v1/namespaces/default/services/x",
            Some("text/plain"),
            "{}",
            415,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/services/x",
            Some("application/apply-patch+yaml"),
            "{}",
            400,
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/services",
            Some("application/json"),
            "{}",
            405,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/services/x/status",
            None,
            "",
            405,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/x/status",
            None,
            "",
            404,
        ),
    ];
    for (method, path, ct, body, want) in cases {
        let (code, status) = raw(&server, method, path, ct, body).await;
        assert_eq!(code, want, "{method} {path} {body}: {status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["status"], "Failure");
    }
    // Garbage on the wire: hyper answers 400 and the server keeps serving.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    sock.write_all(b"\x00\x01 NOT HTTP\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf).await;
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 400"));
    let (code, v) = raw(&server, "GET", "/api/v1/namespaces", None, "").await;
    assert_eq!((code, v["kind"].as_str()), (200, Some("NamespaceList")));
    let (code, v) = raw(&server, "GET", "/apis/networking.k8s.io/v1", None, "").await;
    assert_eq!((code, v["kind"].as_str()), (200, Some("APIResourceList")));
    assert!(server.client().apiserver_version().await.is_ok());
}

#[tokio::test]
async fn dropping_the_handle_stops_everything() {
    let server = FakeApiServer::start().await;
    let addr = server.addr();
    let api: Api<Service> = Api::all(server.client());
    let mut w = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    // The namespaces' ADDED events are not services; nothing arrives yet.
    assert!(server.wait_for(WAIT, |s| s.open_watches() == 1).await);
    drop(server);
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match w.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch stream ends with the server");
    until(|| std::net::TcpStream::connect(addr).is_err()).await;
}

#[tokio::test]
async fn ingress_controller_types() {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
    use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
    use kube::runtime::wait::await_condition;

    let server = FakeApiServer::start().await;
    let client = server.client();

    // Cluster-scoped IngressClasses through a reflector.
    let classes: Api<IngressClass> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let task = tokio::spawn(
        reflector::reflector(writer, watcher(classes.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| ready(())),
    );
    reader.wait_until_ready().await.unwrap();
    let class = IngressClass {
        metadata: ObjectMeta {
            name: Some("sluice".into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some("sluice.dev/ingress".into()),
            ..Default::default()
        }),
    };
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    until(|| reader.get(&ObjectRef::new("sluice")).is_some()).await;
    let (code, _) = raw(
        &server,
        "GET",
        "/apis/networking.k8s.io/v1/namespaces/default/ingressclasses",
        None,
        "",
    )
    .await;
    assert_eq!(code, 404, "cluster-scoped types have no namespaced paths");
    task.abort();

    // EndpointSlices: selected by the service-name label, ports defaulted.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/service-name".to_string(), "web".to_string());
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some("web-".into()),
            labels: Some(labels),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec!["10.1.0.5".into()],
            ..Default::default()
        }],
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            ..Default::default()
        }]),
    };
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let found = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        found.items[0].ports.as_ref().unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );

    // Secrets: the `type` field selector; await_condition watches one
    // object through a metadata.name field selector.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let waiter = tokio::spawn(await_condition(
        secrets.clone(),
        "tls",
        |s: Option<&Secret>| {
            s.is_some_and(|s| s.data.as_ref().is_some_and(|d| d.contains_key("tls.crt")))
        },
    ));
    assert!(server.wait_for(WAIT, |s| s.open_watches() == 1).await);
    server.apply(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "default"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}
    }));
    server.apply(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "other", "namespace": "default"},
        "type": "Opaque"
    }));
    let got = tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap().type_.as_deref(), Some("kubernetes.io/tls"));
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(names(tls.items), ["tls"]);
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.verb == Verb::Watch && r.resource == "secrets")
        .unwrap();
    assert_eq!(watch.param("fieldSelector"), Some("metadata.name=tls"));
}

/// Throws a deterministic mix of odd requests at the server: every one must
/// get an HTTP answer (a panic in a handler would cut the connection), and
/// errors must be `Status` objects.
#[tokio::test]
async fn odd_requests_never_break_the_server() {
    let server = FakeApiServer::start_with(FakeApiConfig {
        max_watch_timeout: Some(Duration::from_millis(20)),
        ..Default::default()
    })
    .await;
    server.apply(&svc("web", &[("app", "web")]));
    let client = server.client();
    let paths = [
        "/api/v1/namespaces/default/services",
        "/api/v1/namespaces/default/services/web",
        "/api/v1/namespaces/default/services/web/status",
        "/api/v1/nodes/n1/status",
        "/api/v1/services?watch=1&timeoutSeconds=18446744073709551615&resourceVersion=99999",
        "/api/v1/services?labelSelector=%ff%fe&fieldSelector=metadata.name%3D%3D",
        "/api/v1/services?limit=1&continue=1:default:",
        "/api/v1/services?resourceVersion=1&resourceVersionMatch=Exact",
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses/x",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/l",
        "/api/v1/namespaces/default",
        "/api/v1/watch/namespaces/default/services?timeoutSeconds=1",
        "/api//v1///namespaces/default/services/",
        "/apis/events.k8s.io/v1/namespaces/default/events",
    ];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let types = [
        None,
        Some("application/json"),
        Some("application/merge-patch+json"),
        Some("application/strategic-merge-patch+json"),
        Some("application/json-patch+json"),
        Some("application/apply-patch+yaml"),
    ];
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "\"x\"",
        "{\"metadata\": null, \"spec\": [1]}",
        "{\"metadata\": {\"name\": \"web\", \"resourceVersion\": \"x\"}, \"status\": 7}",
        "{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"web\"}, \"spec\": {\"ports\": [{\"port\": \"eighty\"}]}}",
        "[{\"op\": \"move\", \"from\": \"/spec\", \"path\": \"/spec/x\"}]",
        "[{\"op\": \"add\", \"path\": \"/metadata/labels/a~1b\", \"value\": {}}]",
        "[{\"op\": \"remove\", \"path\": \"\"}]",
        "{\"preconditions\": {\"uid\": 5}}",
        "{\"metadata\": {\"finalizers\": [\"a\"], \"labels\": {\"$patch\": \"delete\"}}, \"$patch\": \"replace\"}",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..400 {
        let path = paths[next(paths.len())];
        let method = methods[next(methods.len())];
        let ct = types[next(types.len())];
        let body = bodies[next(bodies.len())];
        let (code, v) = raw_with(&client, method, path, ct, body).await;
        if code >= 400 {
            assert_eq!(v["kind"], "Status", "{method} {path} {ct:?} {body}: {v}");
        }
    }
    let (code, _) = raw(&server, "GET", "/api/v1/namespaces", None, "").await;
    assert_eq!(code, 200);
}
