//! The chart's RBAC for sluice-ingress, judged by the real API server: the
//! ServiceAccounts, ClusterRoles, Roles and bindings the chart renders with
//! its default values are applied, and two replicas of the real binary run
//! on the `kube-system/sluice-ingress` token with the chart's own flags
//! (plus `--publish-status-address` and `--default-ssl-certificate`, the
//! documented ways to get status and a default certificate) through every
//! code path that talks to the API server: the watches, Lease election in
//! the release namespace, status writes, Warning Events (the same problem
//! twice), TLS Secrets, a follower's and a leader's shutdown with another
//! replica running, and the last replica's status cleanup. The audit log
//! then says, both ways, whether the chart grants exactly what the code
//! uses: no request refused (401/403), no grant unused.

mod cluster_support;
mod gateway_support;

use std::time::Duration;

use cluster_support::*;
use gateway_support::{TestCa, tls_connect};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use sluice_tests::cluster::{self, chart};
use sluice_tests::node_agent::NodeAgent;

const RELEASE_NS: &str = "kube-system";
const SA: &str = "sluice-ingress";
const USER: &str = "system:serviceaccount:kube-system:sluice-ingress";
const APP: &str = "rbac-app";
const NODE: &str = "rbac-node";
const WAIT: Duration = Duration::from_secs(30);
const TERM: Duration = Duration::from_secs(20);

/// The container args of the chart's sluice-ingress Deployment, listeners
/// left out (the test gives each replica loopback ports).
fn chart_args(rendered: &str) -> Vec<String> {
    let objects = chart::objects(rendered).unwrap();
    let deploy = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the chart renders the ingress Deployment");
    deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .filter(|a| !a.ends_with("-addr") && !a.contains("-addr="))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_scenario_on_the_chart_s_service_account_uses_every_grant_and_is_refused_nothing() {
    if !cluster::available_or_skip("sluice-ingress on the chart's RBAC")
        || !chart::available_or_skip("sluice-ingress on the chart's RBAC")
    {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = cluster::shared();
    let client = c.client().await;
    let rendered = chart::render_variant("defaults").unwrap();
    c.apply_yaml(&chart::rbac_only(&rendered).unwrap()).unwrap();
    // The chart's IngressClass too (cluster-scoped, applied by the admin).
    let class = chart::objects(&rendered)
        .unwrap()
        .into_iter()
        .find(|o| o["kind"] == "IngressClass")
        .unwrap();
    let class_name = class["metadata"]["name"].as_str().unwrap().to_owned();
    must_apply(&client, &class).await;
    let kubeconfig = c.kubeconfig_for_service_account(RELEASE_NS, SA).unwrap();
    let dir = temp_dir("rbac");
    let node = NodeAgent::start(c, NODE).unwrap();

    // The workload: an echo Deployment, a TLS Secret, our Ingresses.
    must_apply(&client, &namespace(APP)).await;
    for o in echo_app(APP, "web", NODE, 1) {
        must_apply(&client, &o).await;
    }
    let ca = TestCa::new();
    let (s1, fallback) = (ca.leaf(&["s.test"]), ca.leaf(&["fallback.test"]));
    must_apply(
        &client,
        &tls_secret(APP, "s-cert", &s1.chain_pem, &s1.key_pem),
    )
    .await;
    must_apply(
        &client,
        &tls_secret(APP, "fallback", &fallback.chain_pem, &fallback.key_pem),
    )
    .await;
    let ours = |name: &str, host: &str| ingress(APP, name, Some(&class_name), host, "web");
    must_apply(&client, &ours("app", "app.test")).await;
    let mut secure = ours("secure", "s.test");
    secure["spec"]["tls"] = serde_json::json!([{"hosts": ["s.test"], "secretName": "s-cert"}]);
    must_apply(&client, &secure).await;
    // The replicas' Pods in the release namespace.
    for p in ["sluice-ingress-a", "sluice-ingress-b"] {
        must_apply(&client, &replica_pod(RELEASE_NS, p, NODE)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NS);
    wait_until(
        "the replicas' Pods Running",
        Duration::from_secs(60),
        || async {
            let mut n = 0;
            for p in ["sluice-ingress-a", "sluice-ingress-b"] {
                let phase = pods.get(p).await.ok().and_then(|p| p.status?.phase);
                n += usize::from(phase.as_deref() == Some("Running"));
            }
            n == 2
        },
        String::new,
    )
    .await;

    let mut flags = chart_args(&rendered);
    flags.push(format!("--publish-status-address={STATUS_ADDRESS}"));
    flags.push(format!("--default-ssl-certificate={APP}/fallback"));
    let start = |pod: &'static str| {
        let (kubeconfig, dir, flags) = (kubeconfig.clone(), dir.clone(), flags.clone());
        async move { Gateway::start(&kubeconfig, &dir, RELEASE_NS, pod, &flags).await }
    };
    let holder = || lease_holder(&client, RELEASE_NS, LEASE);

    // Two replicas: a creates the Lease and writes status; b follows.
    let a = start("sluice-ingress-a").await;
    wait_until(
        "a leads and writes status",
        WAIT,
        || async {
            holder().await.as_deref() == Some("sluice-ingress-a")
                && lb_ips(&client, APP, "app").await == [STATUS_ADDRESS]
                && lb_ips(&client, APP, "secure").await == [STATUS_ADDRESS]
        },
        || a.log_text(),
    )
    .await;
    let b = start("sluice-ingress-b").await;
    for gw in [&a, &b] {
        wait_until(
            "routing and TLS from the watches",
            WAIT,
            || async {
                echo_pod(gw.http, "app.test", "/").await.is_some()
                    && tls_connect(gw.https, Some("s.test"), &[], Some(&ca))
                        .await
                        .is_ok_and(|(_, leaf)| leaf == s1.der)
                    && tls_connect(gw.https, Some("fallback.test"), &[], Some(&ca))
                        .await
                        .is_ok_and(|(_, leaf)| leaf == fallback.der)
            },
            || gw.log_text(),
        )
        .await;
    }

    // The same conflict twice (it goes away in between): an Event from
    // each replica each time.
    for round in 1..=2 {
        must_apply(&client, &ours("dup", "app.test")).await;
        wait_until(
            &format!("Conflict Events of round {round} on dup"),
            WAIT,
            || async { warnings(&client, APP, "dup", "Conflict").await.len() >= 2 * round },
            || a.log_text(),
        )
        .await;
        must_apply(&client, &ours("dup", "dup.test")).await;
        for gw in [&a, &b] {
            wait_until(
                "dup on a host of its own",
                WAIT,
                || async { echo_pod(gw.http, "dup.test", "/").await.is_some() },
                || gw.log_text(),
            )
            .await;
        }
    }
    // A broken TLS Secret: an Event, the previous certificate kept.
    must_apply(
        &client,
        &tls_secret(APP, "s-cert", "not a certificate", &s1.key_pem),
    )
    .await;
    wait_until(
        "an Event for the broken Secret",
        WAIT,
        || async {
            warnings(&client, APP, "secure", "Unresolved")
                .await
                .iter()
                .any(|w| w.0.contains("keeping the previously loaded certificate"))
        },
        || a.log_text(),
    )
    .await;

    // The follower leaves: nothing changes. The leader leaves while b's Pod
    // runs: status stays, the Lease is released, b takes over.
    b.terminate(TERM).await;
    assert_eq!(holder().await.as_deref(), Some("sluice-ingress-a"));
    let b = start("sluice-ingress-b").await;
    let log = a.terminate(TERM).await;
    assert!(log.contains("another replica is running"), "{log}");
    assert_eq!(lb_ips(&client, APP, "app").await, [STATUS_ADDRESS]);
    wait_until(
        "b takes the released Lease",
        Duration::from_secs(10),
        || async { holder().await.as_deref() == Some("sluice-ingress-b") },
        || b.log_text(),
    )
    .await;
    // The last replica leaves: its status is cleaned up.
    pods.delete("sluice-ingress-a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_until(
        "a's Pod gone",
        WAIT,
        || async { pods.get_opt("sluice-ingress-a").await.unwrap().is_none() },
        String::new,
    )
    .await;
    let log = b.terminate(TERM).await;
    assert!(log.contains("removed status on shutdown"), "{log}");
    assert!(lb_ips(&client, APP, "app").await.is_empty());
    assert!(lb_ips(&client, APP, "secure").await.is_empty());
    assert_eq!(holder().await, None);

    // The audit log judges the chart.
    let grants = chart::grants_for(&rendered, RELEASE_NS, SA).unwrap();
    let events = c.audit_events().unwrap();
    // Secrets are only ever read through the TLS type's field selector (a
    // controller that has no use for other Secrets must not hold them).
    let secret_reads: Vec<&str> = events
        .iter()
        .filter(|e| e.user.username == USER)
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.resource == "secrets")
        })
        .map(|e| e.request_uri.as_str())
        .collect();
    assert!(!secret_reads.is_empty());
    for uri in &secret_reads {
        assert!(
            uri.contains("fieldSelector=type%3Dkubernetes.io%2Ftls"),
            "a Secret read without the TLS field selector: {uri}"
        );
    }
    let report = chart::check_privilege(&grants, &events, USER);
    assert!(report.refused.is_empty(), "refused: {:#?}", report.refused);
    let unused: Vec<String> = report.unused.iter().map(ToString::to_string).collect();
    assert!(
        unused.is_empty(),
        "the chart grants what sluice-ingress never used: {unused:#?}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
