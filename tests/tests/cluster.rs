//! The real control plane and the node agent, checked by what the API
//! server and the pods' sockets say: the Deployment and EndpointSlice
//! controllers turn process-backed pods into real EndpointSlices (ready,
//! then serving and terminating while a deleted pod drains), tokens minted
//! for ServiceAccounts authenticate and show up in the audit log, RBAC
//! refuses what it should, and etcd compaction makes an old
//! resourceVersion 410 Gone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams};
use sluice_tests::cluster::{self, Component};
use sluice_tests::node_agent::NodeAgent;

const NS: &str = "smoke";

fn manifests(replicas: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo, namespace: {NS}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      terminationGracePeriodSeconds: 30
      nodeSelector: {{kubernetes.io/hostname: smoke-node}}
      containers:
      - name: echo
        image: sluice.dev/echo:1
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NS}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

/// (address, ready, serving, terminating) of every endpoint of the Service.
async fn endpoints(client: &kube::Client) -> Vec<(String, bool, bool, bool)> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels("kubernetes.io/service-name=echo");
    let mut out = Vec::new();
    for s in api.list(&lp).await.unwrap() {
        for e in s.endpoints {
            let c = e.conditions.unwrap_or_default();
            out.push((
                e.addresses[0].clone(),
                c.ready.unwrap_or(true),
                c.serving.unwrap_or(true),
                c.terminating.unwrap_or(false),
            ));
        }
    }
    out.sort();
    out
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET http://ADDR:8080/PATH straight to a pod; the JSON body.
fn get(addr: &str, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{addr}:8080").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_of_process_pods_become_real_endpoint_slices() {
    if !cluster::available_or_skip("the control-plane tier") {
        return;
    }
    let c = cluster::shared();
    let node = NodeAgent::start(c, "smoke-node").unwrap();
    let cidr = node.pod_cidr();
    c.apply_yaml(&manifests(2)).unwrap();
    let client = c.client().await;

    let ready = wait_for("two ready endpoints", Duration::from_secs(60), || async {
        let eps = endpoints(&client).await;
        (eps.len() == 2 && eps.iter().all(|e| e.1 && e.2 && !e.3)).then_some(eps)
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut names = BTreeSet::new();
    for (addr, ..) in &ready {
        let ip: std::net::Ipv4Addr = addr.parse().unwrap();
        assert!(
            cidr.contains(&ip),
            "{ip} is outside the node's podCIDR {cidr}"
        );
        let body = get(addr, "/hello?x=1").expect("the pod answers on its podIP");
        assert_eq!(body["path"], "/hello?x=1");
        assert_eq!(body["namespace"], NS);
        assert_eq!(body["host"], "echo.test");
        names.insert(body["pod"].as_str().unwrap().to_owned());
    }
    let listed: BTreeSet<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names, listed,
        "each endpoint is one of the Deployment's pods"
    );

    // Delete one pod: it drains (serving, terminating) for its grace period.
    let victim = names.iter().next().unwrap().clone();
    let victim_ip = pods
        .get(&victim)
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the deleted pod's endpoint serving and terminating",
        Duration::from_secs(30),
        || async {
            let eps = endpoints(&client).await;
            eps.iter()
                .any(|e| e.0 == victim_ip && !e.1 && e.2 && e.3)
                .then_some(())
        },
    )
    .await;
    assert!(
        get(&victim_ip, "/").is_some(),
        "a terminating pod keeps serving during its grace period"
    );
    // The ReplicaSet replaces it; three endpoints for a while, then the
    // new pod ready.
    wait_for(
        "a replacement pod ready",
        Duration::from_secs(60),
        || async {
            let eps = endpoints(&client).await;
            (eps.iter().filter(|e| e.1 && !e.3).count() == 2).then_some(())
        },
    )
    .await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_authenticate_and_are_audited() {
    if !cluster::available_or_skip("the control-plane tier") {
        return;
    }
    let c = cluster::shared();
    c.apply_yaml(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reader, namespace: default}\n",
    )
    .unwrap();
    let kc = c
        .kubeconfig_for_service_account("default", "reader")
        .unwrap();
    let client = cluster::client_from(&kc).await.unwrap();
    // No RBAC grants it anything: listing Services is refused with 403.
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::all(client);
    let err = svcs.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err}"
    );
    let events = c.audit_events().unwrap();
    assert!(
        events.iter().any(
            |e| e.user.username == "system:serviceaccount:default:reader"
                && e.verb == "list"
                && e.resource().as_deref() == Some("services")
                && e.code() == 403
        ),
        "the audit log records the refused list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_makes_old_resource_versions_gone_and_the_api_server_restarts() {
    if !cluster::available_or_skip("the control-plane tier") {
        return;
    }
    // Its own cluster: this test restarts the API server.
    let c = cluster::Cluster::start().unwrap();
    let client = c.client().await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    let old = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..5 {
        c.apply_yaml(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{i}, namespace: default}}\n"
        ))
        .unwrap();
    }
    let rev = c.compact_etcd().unwrap();
    assert!(rev > old.parse::<i64>().unwrap());
    c.restart_component(Component::ApiServer).unwrap();
    // A fresh client: the old one's connections went with the server.
    let client = c.client().await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    let wp = kube::api::WatchParams::default();
    let err = match cms.watch(&wp, &old).await {
        Ok(stream) => {
            use futures::StreamExt;
            let mut stream = std::pin::pin!(stream);
            match stream.next().await {
                Some(Ok(kube::api::WatchEvent::Error(e))) => e.code,
                other => panic!("expected 410 Gone, got {other:?}"),
            }
        }
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(err, 410, "a watch from a compacted resourceVersion is Gone");
}

#[test]
fn in_the_ipvs_vm() {
    cluster::run_guest_tests("guest_");
}

/// A node agent inside the IPVS VM: its pods are namespaces of the VM,
/// reachable from the VM, published by the host's controllers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the IPVS VM"]
async fn guest_a_node_in_the_vm_runs_pods_the_host_cluster_publishes() {
    sluice_tests::vm::assert_in_vm();
    let c = cluster::shared();
    assert!(c.is_remote());
    let node = NodeAgent::start(c, "vm-node").unwrap();
    c.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: vmsmoke}}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: vmsmoke, labels: {{app: echo}}}}
spec:
  nodeName: {}
  containers:
  - name: echo
    image: sluice.dev/echo
    ports: [{{containerPort: 8080}}]
"#,
        node.name()
    ))
    .unwrap();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client, "vmsmoke");
    let ip = wait_for(
        "the pod running with an address",
        Duration::from_secs(60),
        || async {
            let p = pods.get("echo").await.ok()?;
            let st = p.status?;
            (st.phase.as_deref() == Some("Running")).then_some(st.pod_ip?)
        },
    )
    .await;
    let body = wait_for(
        "the pod answering inside the VM",
        Duration::from_secs(30),
        || async { get(&ip, "/from-the-vm") },
    )
    .await;
    assert_eq!(body["pod"], "echo");
    // The host's control endpoint restarts the API server on request.
    c.restart_component(Component::ApiServer).unwrap();
    let client = c.client().await;
    let pods: Api<Pod> = Api::namespaced(client, "vmsmoke");
    assert!(pods.get("echo").await.is_ok());
}
