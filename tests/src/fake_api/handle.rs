//! [`FakeApiServer`]: the handle tests hold to run, inspect and disturb the
//! fake API server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::FakeApiConfig;
use super::log::{RequestRecord, Verb};
use super::resources::{self, RESOURCES, ResourceId};
use super::server::{self, Listener, Shared};
use super::store::Origin;

/// A fake Kubernetes API server on `127.0.0.1`, serving real Kubernetes
/// JSON over plain HTTP with list/watch semantics. See the
/// [module documentation](super) for what it implements.
///
/// Dropping the handle stops the server: the listener, every connection and
/// every watch stream end.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    listener: Mutex<Option<Listener>>,
    client: OnceLock<kube::Client>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .field("down", &self.is_down())
            .field("resource_version", &self.resource_version())
            .finish_non_exhaustive()
    }
}

fn type_of<K: k8s_openapi::Resource>() -> ResourceId {
    resources::by_kind(K::API_VERSION, K::KIND).unwrap_or_else(|| {
        panic!(
            "the fake API server does not serve {}/{}",
            K::API_VERSION,
            K::KIND
        )
    })
}

fn type_by_kind(api_version: &str, kind: &str) -> ResourceId {
    resources::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve {api_version}/{kind}"))
}

fn decode<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("stored object does not decode as the requested type: {e}: {v}"))
}

impl FakeApiServer {
    /// Starts a server with [`FakeApiConfig::default`] on `127.0.0.1` and
    /// an ephemeral port. The namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease` exist from the start.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start() -> FakeApiServer {
        Self::start_with(FakeApiConfig::default()).await
    }

    /// Starts a server with the given settings (see [`FakeApiServer::start`]).
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start_with(config: FakeApiConfig) -> FakeApiServer {
        let shared = Shared::new(config);
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                             "status": {"phase": "Active"}});
            let rt = type_by_kind("v1", "Namespace");
            shared
                .write(|s| s.create(rt, "", obj, Origin::Backdoor))
                .unwrap_or_else(|e| panic!("seeding namespace {ns}: {}", e.message));
        }
        let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("fake API server cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake API server has no local address: {e}"));
        let running = server::serve(shared.clone(), listener);
        FakeApiServer {
            shared,
            addr,
            listener: Mutex::new(Some(running)),
            client: OnceLock::new(),
        }
    }

    /// The address the server listens on (kept across [`stop`](Self::stop)
    /// and [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client configuration pointing at this server (default
    /// namespace `default`), for tests that want to adjust timeouts.
    pub fn kube_config(&self) -> kube::Config {
        let url = self
            .url()
            .parse()
            .unwrap_or_else(|e| panic!("fake API server URL does not parse: {e}"));
        kube::Config::new(url)
    }

    /// A kube client talking to this server over plain HTTP. Built once
    /// (building one costs tens of milliseconds, mostly TLS setup kube does
    /// even for plain HTTP) and cloned, so clients share a connection pool;
    /// build one from [`kube_config`](Self::kube_config) for a separate one.
    ///
    /// # Panics
    /// If kube cannot build a client (it can for plain HTTP).
    pub fn client(&self) -> kube::Client {
        self.client
            .get_or_init(|| {
                kube::Client::try_from(self.kube_config()).unwrap_or_else(|e| {
                    panic!("building a kube client for the fake API server: {e}")
                })
            })
            .clone()
    }

    /// Creates the object, or replaces it if it exists, as given: status
    /// included, `resourceVersion` ignored, defaulting applied (Service
    /// cluster IPs are allocated), watchers notified. Accepts typed
    /// k8s-openapi objects or a `serde_json::Value` with `apiVersion` and
    /// `kind`. Namespaced objects without a namespace go to `default`.
    /// Returns the stored object.
    ///
    /// # Panics
    /// If the type is not served or the object is invalid (e.g. no name).
    pub fn apply<T: Serialize + DeserializeOwned>(&self, obj: &T) -> T {
        let v = serde_json::to_value(obj)
            .unwrap_or_else(|e| panic!("apply: object does not serialize: {e}"));
        let stored = self
            .shared
            .write(|s| s.backdoor_apply(v))
            .unwrap_or_else(|e| panic!("apply: {}", e.message));
        decode(stored)
    }

    /// One object, or `None`. `namespace` is ignored for cluster-scoped
    /// types and defaults to `default` for namespaced ones.
    pub fn get<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        self.get_rt(type_of::<K>(), namespace, name).map(decode)
    }

    /// Objects of a type in (namespace, name) order: in one namespace, or in
    /// all of them for `None`.
    pub fn list<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
    ) -> Vec<K> {
        self.list_rt(type_of::<K>(), namespace)
            .into_iter()
            .map(decode)
            .collect()
    }

    /// Removes an object at once (finalizers are ignored), sending DELETED
    /// to watchers. Returns its last state, or `None` if it did not exist.
    /// `namespace` as for [`get`](Self::get).
    pub fn delete<K: k8s_openapi::Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<K> {
        self.delete_rt(type_of::<K>(), namespace, name).map(decode)
    }

    /// [`get`](Self::get) by `apiVersion` and `kind`, as JSON.
    pub fn get_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.get_rt(type_by_kind(api_version, kind), namespace, name)
    }

    /// [`list`](Self::list) by `apiVersion` and `kind`, as JSON.
    pub fn list_value(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        self.list_rt(type_by_kind(api_version, kind), namespace)
    }

    /// [`delete`](Self::delete) by `apiVersion` and `kind`, as JSON.
    pub fn delete_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.delete_rt(type_by_kind(api_version, kind), namespace, name)
    }

    fn ns_of(rt: ResourceId, namespace: Option<&str>) -> String {
        if RESOURCES[rt].namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        }
    }

    fn get_rt(&self, rt: ResourceId, namespace: Option<&str>, name: &str) -> Option<Value> {
        let ns = Self::ns_of(rt, namespace);
        self.shared.store().get(rt, &ns, name).cloned()
    }

    fn list_rt(&self, rt: ResourceId, namespace: Option<&str>) -> Vec<Value> {
        let ns = namespace.filter(|_| RESOURCES[rt].namespaced);
        self.shared
            .store()
            .list(rt, ns, |_| true)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn delete_rt(&self, rt: ResourceId, namespace: Option<&str>, name: &str) -> Option<Value> {
        let ns = Self::ns_of(rt, namespace);
        match self
            .shared
            .write(|s| s.delete(rt, &ns, name, None, None, true))
        {
            Ok(super::store::Deleted::Gone(v) | super::store::Deleted::Pending(v)) => Some(v),
            Err(_) => None,
        }
    }

    /// Every Event created so far, `core/v1` and `events.k8s.io/v1` alike,
    /// as stored (with their `apiVersion` telling them apart).
    pub fn events(&self) -> Vec<Value> {
        let mut out = self.list_value("v1", "Event", None);
        out.extend(self.list_value("events.k8s.io/v1", "Event", None));
        out
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// Drops all watch history, expires every resourceVersion handed out
    /// so far, and ends every open watch (delivering nothing newer first):
    /// each watcher reconnects from an expired version, gets a
    /// `410 Expired` ERROR event, and must re-list, as after an etcd
    /// compaction that outran it. A list made afterwards can be watched from.
    pub fn compact(&self) {
        self.shared.compact();
    }

    /// Ends every open watch stream cleanly (as a server-side timeout
    /// does), so clients reconnect from their last resourceVersion.
    pub fn expire_watches(&self) {
        self.shared.expire_watches();
    }

    /// How many watch streams are open right now.
    pub fn open_watches(&self) -> usize {
        self.shared
            .open_watches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many BOOKMARK events (periodic ones, not the initial-events-end
    /// marker) have been sent.
    pub fn bookmarks_sent(&self) -> u64 {
        self.shared
            .bookmarks_sent
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes the server down like a crashed API server: the listening
    /// socket is closed (new connections are refused) and every open
    /// connection and watch is cut. State is kept. Waits until all of that
    /// has happened. Does nothing if already down.
    pub async fn stop(&self) {
        let running = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = running {
            l.stop().await;
        }
    }

    /// Brings a stopped server back on the same address with the same state
    /// and history (watchers resume from their resourceVersion). Does
    /// nothing if already running.
    ///
    /// # Panics
    /// If the port cannot be bound again within a few seconds.
    pub async fn restart(&self) {
        if !self.is_down() {
            return;
        }
        let mut last_err = None;
        for _ in 0..100 {
            match server::bind(self.addr) {
                Ok(l) => {
                    let running = server::serve(self.shared.clone(), l);
                    *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
                    return;
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!(
            "fake API server cannot bind {} again: {last_err:?}",
            self.addr
        );
    }

    /// [`stop`](Self::stop) for `true`, [`restart`](Self::restart) for
    /// `false`.
    pub async fn set_down(&self, down: bool) {
        if down {
            self.stop().await;
        } else {
            self.restart().await;
        }
    }

    /// Whether the server is stopped.
    pub fn is_down(&self) -> bool {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// While on, every request (health checks included) is answered
    /// `503 ServiceUnavailable` with a `Status` body and `Retry-After: 1`,
    /// as an overloaded or starting API server does; open watches carry on.
    /// Note that kube's client retries 429/503/504 by itself (honouring
    /// `Retry-After`), so callers see an error only once its retries run out.
    pub fn set_unavailable(&self, on: bool) {
        self.shared.set_unavailable(on);
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// How many requests with this verb were made for a resource (plural
    /// name, e.g. `"services"`; any API group).
    pub fn count(&self, verb: Verb, resource: &str) -> usize {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    /// Every write request (create, update, patch, delete), successful or
    /// not, with its decoded body: e.g. status patches and created events.
    pub fn writes(&self) -> Vec<RequestRecord> {
        self.shared
            .requests()
            .into_iter()
            .filter(|r| r.verb.is_write())
            .collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Polls `cond` every 10 ms until it holds or `timeout` passes; returns
    /// whether it held.
    pub async fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
