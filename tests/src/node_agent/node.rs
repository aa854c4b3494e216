//! The node's own objects: the Node (registered with its capacity,
//! addresses and a Ready condition) and its Lease in `kube-node-lease`,
//! renewed every 10 s as a kubelet does.

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use super::network::NodeNetwork;
use super::{AgentError, Setup};

const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// After a failed renewal (the API server is away) retry this often, so the
/// Lease is fresh again within a second of the server coming back.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The agent's main task: register, wait for the podCIDR, then serve pods
/// and heartbeats until `stop`.
pub(super) async fn run(
    setup: Setup,
    ready: mpsc::Sender<Result<Ipv4Net, AgentError>>,
    mut stop: watch::Receiver<bool>,
    heartbeat: watch::Receiver<bool>,
) {
    let name = setup.config.name.clone();
    let started = register(&setup).await;
    let (client, cidr) = match started {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if !setup.config.pods {
        let _ = ready.send(Ok(cidr));
        tokio::select! {
            () = heartbeats(client, name.clone(), setup.address, heartbeat) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        return;
    }
    let network = match NodeNetwork::create(&name, cidr) {
        Ok(n) => n,
        Err(source) => {
            let _ = ready.send(Err(AgentError::Network { node: name, source }));
            return;
        }
    };
    let _ = ready.send(Ok(cidr));
    let pods = super::pods::Pods::new(client.clone(), &setup, network);
    tokio::select! {
        () = heartbeats(client, name.clone(), setup.address, heartbeat) => {}
        () = pods.run(stop.clone()) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

async fn register(setup: &Setup) -> Result<(kube::Client, Ipv4Net), AgentError> {
    let name = &setup.config.name;
    let api_err = |what: String| AgentError::Api {
        node: name.clone(),
        what,
    };
    let client = crate::cluster::client_from(&setup.kubeconfig)
        .await
        .map_err(|e| api_err(e.to_string()))?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_object(setup);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(api_err(format!("registering the Node: {e}"))),
    }
    write_status(&nodes, name, setup.address)
        .await
        .map_err(|e| api_err(format!("writing the Node's status: {e}")))?;
    renew_lease(&client, name)
        .await
        .map_err(|e| api_err(format!("creating the Lease: {e}")))?;
    let cidr = wait_pod_cidr(&nodes, name).await.map_err(api_err)?;
    Ok((client, cidr))
}

fn node_object(setup: &Setup) -> Node {
    let name = &setup.config.name;
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ] {
        labels.insert(k.into(), v.into());
    }
    for (k, v) in &setup.config.labels {
        labels.insert(k.clone(), v.clone().into());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
    }))
    .expect("a valid Node")
}

/// Capacity, addresses, node info and a fresh Ready=True condition.
async fn write_status(nodes: &Api<Node>, name: &str, address: Ipv4Addr) -> kube::Result<()> {
    let now = super::status::now();
    let capacity =
        json!({"cpu": "16", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let status = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [
            {"type": "InternalIP", "address": address.to_string()},
            {"type": "Hostname", "address": name},
        ],
        "conditions": [
            condition("Ready", "True", "KubeletReady"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
            "containerRuntimeVersion": "sluice-node-agent://0", "osImage": "sluice test node",
            "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .map(|_| ())
}

async fn renew_lease(client: &kube::Client, name: &str) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": super::status::now_micro(),
        },
    });
    leases
        .patch(
            name,
            &PatchParams::apply("sluice-node-agent").force(),
            &Patch::Apply(&lease),
        )
        .await
        .map(|_| ())
}

async fn wait_pod_cidr(nodes: &Api<Node>, name: &str) -> Result<Ipv4Net, String> {
    for _ in 0..600 {
        let node = nodes
            .get(name)
            .await
            .map_err(|e| format!("reading the Node: {e}"))?;
        if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
            return cidr
                .parse()
                .map_err(|e| format!("podCIDR {cidr:?} is not an IPv4 CIDR: {e}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("node IPAM assigned no podCIDR within 60 s".into())
}

/// Renews the Lease every 10 s and the Ready condition every minute while
/// `on` says so; logs (and retries) failures.
async fn heartbeats(
    client: kube::Client,
    name: String,
    address: Ipv4Addr,
    mut on: watch::Receiver<bool>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut n: u64 = 0;
    let mut failing = false;
    loop {
        tokio::time::sleep(if failing { RETRY_EVERY } else { RENEW_EVERY }).await;
        if !*on.borrow_and_update() {
            let _ = on.changed().await;
            continue;
        }
        let was_failing = failing;
        failing = renew_lease(&client, &name).await.is_err();
        if failing && !was_failing {
            eprintln!("node agent {name}: cannot renew the Lease; retrying every second");
        }
        n += 1;
        // The Ready condition: every minute, and at once after an outage
        // (the node lifecycle controller may have marked it Unknown).
        if !failing
            && (was_failing || n.is_multiple_of(6))
            && let Err(e) = write_status(&nodes, &name, address).await
        {
            eprintln!("node agent {name}: writing the Node's status: {e}");
        }
    }
}
