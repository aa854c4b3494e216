//! sluice-ingress while its control plane fails (a cluster of its own, as
//! components are killed): the gateway keeps routing with what it has
//! throughout — a prober (a keep-alive connection and a new connection per
//! request, in turn) sees not one failed request while the API server is
//! SIGKILLed and restarted, or etcd is — and changes made after each
//! recovery are picked up (the time it took is printed). Then a forced
//! 410 Gone: the binary is SIGSTOPped, objects change, etcd is compacted
//! and the API server restarted (its watch cache now starts after the
//! binary's resourceVersions), the binary is SIGCONTed; its watches get
//! 410, re-list, and routing converges on the changes it slept through
//! (an added Ingress routed, a deleted one gone, a scaled Deployment's new
//! pod served).

mod cluster_support;
mod gateway_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::*;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use sluice_tests::cluster::{Cluster, Component, available_or_skip};
use sluice_tests::node_agent::NodeAgent;

const NS: &str = "faults";
const NODE: &str = "faults-node";
const CLASS: &str = "faults";
const CONTROLLER: &str = "sluice.dev/faults";
/// How long each component stays down.
const OUTAGE: Duration = Duration::from_secs(5);
/// Watch back-off tops out at 30 s (kube-runtime's default), so a change
/// after recovery may take that long plus a re-list.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Requests through the gateway, until stopped; every failure kept.
struct Prober {
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(addr: SocketAddr, host: &'static str) -> Self {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, p, s) = (ok.clone(), failed.clone(), paused.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client = gateway_support::h1_client();
            let started = Instant::now();
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                if p.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                n += 1;
                let r = if n.is_multiple_of(2) {
                    pooled_get(&client, addr, host).await
                } else {
                    match http_get(addr, host, "/").await {
                        (200, _) => Ok(()),
                        (code, body) => Err(format!("new connection: {code} {body}")),
                    }
                };
                match r {
                    Ok(()) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => f
                        .lock()
                        .unwrap()
                        .push(format!("at {:.1} s: {e}", started.elapsed().as_secs_f64())),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self {
            ok,
            failed,
            paused,
            stop,
            task,
        }
    }

    /// (successes, failures) so far.
    fn tally(&self) -> (usize, Vec<String>) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.lock().unwrap().clone(),
        )
    }

    fn assert_clean(&self, phase: &str) {
        let (ok, failed) = self.tally();
        assert!(ok > 0, "{phase}: the prober sent nothing");
        assert!(
            failed.is_empty(),
            "{phase}: {} failed requests ({ok} ok): {:?}",
            failed.len(),
            &failed[..failed.len().min(10)]
        );
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.ok.load(Ordering::Relaxed)
    }
}

async fn pooled_get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        gateway_support::TestBody,
    >,
    addr: SocketAddr,
    host: &str,
) -> Result<(), String> {
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", host)
        .body(gateway_support::empty())
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(status)
    })
    .await
    .map_err(|_| "keep-alive: timed out".to_owned())??;
    if r == 200 {
        Ok(())
    } else {
        Err(format!("keep-alive: {r}"))
    }
}

/// Kills `c`, keeps it down for [`OUTAGE`] while the gateway is checked
/// to stay ready, then starts it again.
async fn outage(cluster: &Cluster, c: Component, gw: &Gateway) {
    blocking(|| cluster.kill_component(c).unwrap());
    let down = Instant::now();
    while down.elapsed() < OUTAGE {
        assert_eq!(admin_get(gw.admin, "/readyz").await.0, 200, "{c:?} down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    blocking(|| {
        cluster.start_component(c).unwrap();
        // The API server answers again (a no-op start that waits for
        // /readyz).
        cluster.start_component(Component::ApiServer).unwrap();
    });
}

/// Runs a blocking cluster operation without stalling the prober's
/// runtime thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Applies a new Ingress for `host` and returns how long it took the
/// gateway to route it.
async fn picked_up(
    client: &kube::Client,
    gw: &Gateway,
    name: &str,
    host: &'static str,
) -> Duration {
    // The API server may refuse writes for a moment after it is ready
    // again (its etcd connection settling); retry like a user would.
    let obj = ingress(NS, name, Some(CLASS), host, "web");
    let start = Instant::now();
    wait_until(
        &format!("Ingress {name} accepted"),
        CATCH_UP,
        || async { apply(client, &obj).await.is_ok() },
        String::new,
    )
    .await;
    wait_until(
        &format!("{host} routed after recovery"),
        CATCH_UP,
        || async { echo_pod(gw.http, host, "/").await.is_some() },
        || gw.log_text(),
    )
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_routing_through_control_plane_outages_and_a_forced_410() {
    if !available_or_skip("sluice-ingress under control-plane faults") {
        return;
    }
    let cluster = Cluster::start().expect("a cluster of our own");
    let client = cluster.client().await;
    let node = NodeAgent::start(&cluster, NODE).unwrap();
    let dir = temp_dir("faults");
    must_apply(&client, &namespace(NS)).await;
    must_apply(&client, &ingress_class(CLASS, CONTROLLER, false)).await;
    for o in echo_app(NS, "web", NODE, 2) {
        must_apply(&client, &o).await;
    }
    must_apply(&client, &ingress(NS, "app", Some(CLASS), "app.test", "web")).await;
    let gw = Gateway::start(
        cluster.admin_kubeconfig(),
        &dir,
        NS,
        "gw",
        &args(CONTROLLER, STATUS_ADDRESS, &["--access-log=off"]),
    )
    .await;
    wait_until(
        "both pods answering",
        Duration::from_secs(60),
        || async { pods_answering(gw.http, "app.test", 6).await.len() == 2 },
        || gw.log_text(),
    )
    .await;
    let prober = Prober::start(gw.http, "app.test");

    // The API server crashes and comes back.
    outage(&cluster, Component::ApiServer, &gw).await;
    prober.assert_clean("API server down");
    let api_catch_up = picked_up(&client, &gw, "after-api", "after-api.test").await;
    prober.assert_clean("after the API server's restart");

    // etcd crashes and comes back (the API server stays up, failing).
    outage(&cluster, Component::Etcd, &gw).await;
    prober.assert_clean("etcd down");
    let etcd_catch_up = picked_up(&client, &gw, "after-etcd", "after-etcd.test").await;
    prober.assert_clean("after etcd's restart");

    // A forced 410: the binary sleeps through changes, a compaction and an
    // API server restart.
    prober.paused.store(true, Ordering::Relaxed);
    gw.signal("STOP");
    must_apply(
        &client,
        &ingress(NS, "while-stopped", Some(CLASS), "stopped.test", "web"),
    )
    .await;
    let ings: Api<Ingress> = Api::namespaced(client.clone(), NS);
    ings.delete("after-api", &DeleteParams::default())
        .await
        .unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    // Wait for the third pod's endpoint before compacting past it.
    let ready = wait_for(
        "three ready pods",
        Duration::from_secs(60),
        || async { ready_pods(&client).await.filter(|p| p.len() == 3) },
        String::new,
    )
    .await
    .0;
    let revision = blocking(|| {
        let r = cluster.compact_etcd().unwrap();
        cluster.restart_component(Component::ApiServer).unwrap();
        r
    });
    let before_cont = gw.log_text().len();
    gw.signal("CONT");
    let resumed = Instant::now();
    prober.paused.store(false, Ordering::Relaxed);
    wait_until(
        "the changes slept through routed",
        CATCH_UP,
        || async {
            echo_pod(gw.http, "stopped.test", "/").await.is_some()
                && http_get(gw.http, "after-api.test", "/").await.0 == 404
                && pods_answering(gw.http, "app.test", 9).await == ready
        },
        || gw.log_text(),
    )
    .await;
    let converged = resumed.elapsed();
    // The watches were refused with 410 Gone ("too old resource version",
    // reason Expired) after SIGCONT, and re-listed.
    let log = gw.log_text();
    let gone: Vec<&str> = log[before_cont..]
        .lines()
        .filter(|l| l.contains("watch failed") && l.contains("too old resource version"))
        .collect();
    assert!(
        !gone.is_empty(),
        "no 410 in the log after compacting to {revision}: {log}"
    );
    eprintln!("{}", gone[0]);
    prober.assert_clean("after the forced 410");
    let probes = prober.stop().await;
    eprintln!(
        "{probes} probes, 0 failed; API server down {OUTAGE:?}: a new Ingress routed {:.1} s \
         after its restart; etcd down {OUTAGE:?}: {:.1} s after; forced 410 (compacted to \
         revision {revision}): converged {:.1} s after SIGCONT",
        api_catch_up.as_secs_f64(),
        etcd_catch_up.as_secs_f64(),
        converged.as_secs_f64()
    );
    drop(gw);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Ready, not terminating pods of `web`.
async fn ready_pods(client: &kube::Client) -> Option<BTreeSet<String>> {
    use k8s_openapi::api::core::v1::Pod;
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = api
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .ok()?;
    Some(
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect(),
    )
}
