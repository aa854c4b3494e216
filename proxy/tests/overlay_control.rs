//! The overlay's shell against the real API server (`sluice_tests::cluster`;
//! its audit log shows every request) with a recording kernel: our annotations patched onto
//! nodes/status in flannel's exact form, the MAC kept across a restart, a
//! remote annotated in flannel's form programmed, a malformed remote
//! skipped with an Event while the others keep working, incremental
//! changes for added, changed and deleted nodes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};
use sluice_proxy::netfilter::{CommandRunner, ExecError, ExecOutput};
use sluice_proxy::overlay::OverlayError;
use sluice_proxy::overlay::config::parse_net_conf;
use sluice_proxy::overlay::model::{DeviceSpec, DeviceState, MacAddr, RemoteNode, RemotePath};
use sluice_proxy::overlay::nodes::{NodeEvent, watch_nodes};
use sluice_proxy::overlay::plan::UnderlayFacts;
use sluice_proxy::overlay::run::{KernelReport, OverlayDataplane, OverlayOptions, run};
use sluice_tests::cluster;
use sluice_tests::fake_api::{FakeApiServer, Verb};
use tokio::sync::mpsc;

/// What the recording kernel holds; shared across "restarts".
#[derive(Debug, Default)]
struct KernelState {
    devices: BTreeMap<String, DeviceSpec>,
    remotes: BTreeMap<String, RemoteNode>,
    calls: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeKernel(Arc<Mutex<KernelState>>);

impl FakeKernel {
    fn state<T>(&self, f: impl FnOnce(&KernelState) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

impl OverlayDataplane for FakeKernel {
    fn underlay(
        &mut self,
        _iface: Option<&str>,
        _public_ip: Option<IpAddr>,
        _overlay: &[IpNet],
    ) -> Result<UnderlayFacts, OverlayError> {
        Ok(UnderlayFacts {
            index: 7,
            mtu: 1500,
            local_v4: Some("192.168.50.1".parse().unwrap()),
            connected: vec!["192.168.50.0/24".parse().unwrap()],
            ..UnderlayFacts::default()
        })
    }

    fn ensure_device(&mut self, spec: &DeviceSpec) -> Result<DeviceState, OverlayError> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(format!("ensure {}", spec.name));
        s.devices.insert(spec.name.clone(), spec.clone());
        Ok(DeviceState {
            name: spec.name.clone(),
            index: 100,
            mac: spec.mac,
            mtu: spec.mtu,
        })
    }

    fn sync(
        &mut self,
        _device: &DeviceState,
        _spec: &DeviceSpec,
        remotes: &[RemoteNode],
    ) -> Result<KernelReport, OverlayError> {
        let mut s = self.0.lock().unwrap();
        s.calls.push("sync".into());
        s.remotes = remotes
            .iter()
            .map(|r| (r.node.clone(), r.clone()))
            .collect();
        Ok(KernelReport::default())
    }

    fn apply_changes(
        &mut self,
        _device: &DeviceState,
        removed: &[RemoteNode],
        added: &[RemoteNode],
    ) -> Result<KernelReport, OverlayError> {
        let mut s = self.0.lock().unwrap();
        let names = |v: &[RemoteNode]| v.iter().map(|r| r.node.clone()).collect::<Vec<_>>();
        s.calls
            .push(format!("apply -{:?} +{:?}", names(removed), names(added)));
        for r in removed {
            s.remotes.remove(&r.node);
        }
        for r in added {
            s.remotes.insert(r.node.clone(), r.clone());
        }
        Ok(KernelReport {
            ops: removed.len() * 3 + added.len() * 3,
            failures: vec![],
        })
    }
}

/// iptables as seen by the overlay: nothing installed; restores recorded.
#[derive(Clone, Default)]
struct FakeIptables(Arc<Mutex<Vec<String>>>);

impl CommandRunner for FakeIptables {
    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, ExecError> {
        let stdout = match program {
            "iptables" | "ip6tables" if args == ["--version"] => {
                "iptables v1.8.9 (nf_tables)\n".into()
            }
            p if p.ends_with("-restore") => {
                self.0
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned());
                String::new()
            }
            _ => String::new(),
        };
        Ok(ExecOutput {
            stdout,
            stderr: String::new(),
        })
    }
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/flannel/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let node: Node = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut v = serde_json::to_value(node).unwrap();
    let m = v["metadata"].as_object_mut().unwrap();
    for k in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        m.remove(k);
    }
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Node");
    v
}

fn node(name: &str, cidr: &str, annotations: Value) -> Value {
    sluice_tests::fixtures::node(
        name,
        json!({"metadata": {"annotations": annotations},
               "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}),
    )
}

fn flannel(name: &str, cidr: &str, ip: &str, mac: &str) -> Value {
    node(
        name,
        cidr,
        json!({
            "flannel.alpha.coreos.com/backend-data": format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}"),
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            "flannel.alpha.coreos.com/public-ip": ip,
        }),
    )
}

fn options(dir: &std::path::Path) -> OverlayOptions {
    OverlayOptions {
        conf: parse_net_conf(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap(),
        node_name: "me".into(),
        iface: None,
        public_ip: None,
        subnet_file: dir.join("subnet.env"),
        cni_conflist: Some(dir.join("10-flannel.conflist")),
        ip_masq: true,
        masquerade_mark: 0x4000,
        resync_period: Duration::from_secs(300),
    }
}

fn start(
    client: kube::Client,
    opts: OverlayOptions,
    kernel: FakeKernel,
    ipt: FakeIptables,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, rx) = mpsc::channel::<NodeEvent>(256);
        tokio::spawn(watch_nodes(client.clone(), tx));
        run(opts, Some(client), rx, kernel, ipt).await.unwrap();
    })
}

fn annotations(api: &FakeApiServer, name: &str) -> BTreeMap<String, String> {
    annotations_of(api.get::<Node>(None, name))
}

fn annotations_of(node: Option<Node>) -> BTreeMap<String, String> {
    node.and_then(|n| n.metadata.annotations)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The shared real control plane, with blocking reads for the polled
/// conditions.
struct Real(&'static sluice_tests::cluster::Cluster);

impl Real {
    fn apply(&self, obj: &Value) {
        self.0.apply_yaml(&obj.to_string()).unwrap();
    }

    fn with_client<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(kube::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send,
    {
        let kc = self.0.admin_kubeconfig().to_owned();
        cluster::block_on(async move { f(cluster::client_from(&kc).await.unwrap()).await })
    }

    fn node(&self, name: &str) -> Option<Node> {
        let name = name.to_owned();
        self.with_client(
            move |c| async move { kube::Api::<Node>::all(c).get_opt(&name).await.unwrap() },
        )
    }

    fn delete_node(&self, name: &str) {
        let name = name.to_owned();
        self.with_client(move |c| async move {
            kube::Api::<Node>::all(c)
                .delete(&name, &Default::default())
                .await
                .unwrap();
        })
    }

    fn warned_about(&self, name: &str) -> bool {
        let name = name.to_owned();
        self.with_client(move |c| async move {
            kube::Api::<k8s_openapi::api::events::v1::Event>::all(c)
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                })
        })
    }

    /// The request URIs of every patch of a Node's status so far.
    fn status_patches(&self) -> Vec<String> {
        self.0
            .audit_events()
            .unwrap()
            .into_iter()
            .filter(|e| e.verb == "patch" && e.resource().as_deref() == Some("nodes/status"))
            // The path only: kube-rs ends a query-less URI with `?`.
            .map(|e| {
                e.request_uri
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_loop_against_the_api_server() {
    let dir = std::env::temp_dir().join(format!("sluice-overlay-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if !cluster::available_or_skip("the overlay's control loop") {
        return;
    }
    let api = Real(cluster::shared());
    api.apply(&node("me", "10.244.9.0/24", json!({"unrelated": "kept"})));
    // A remote written by flanneld itself (fixture), and a broken one.
    api.apply(&fixture("node-v4.yaml"));
    api.apply(&node(
        "broken",
        "10.244.3.0/24",
        json!({
            "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"not-a-mac\"}",
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            "flannel.alpha.coreos.com/public-ip": "192.168.50.3",
        }),
    ));
    let kernel = FakeKernel::default();
    let ipt = FakeIptables::default();
    let task = start(
        api.0.client().await,
        options(&dir),
        kernel.clone(),
        ipt.clone(),
    );

    // Our annotations, patched onto nodes/status in flannel's exact form.
    wait("our annotations", || {
        annotations_of(api.node("me")).len() == 5
    })
    .await;
    let a = annotations_of(api.node("me"));
    let mac = kernel.state(|s| s.devices["flannel.1"].mac);
    assert!(mac.is_local_unicast());
    assert_eq!(a["flannel.alpha.coreos.com/backend-type"], "vxlan");
    assert_eq!(
        a["flannel.alpha.coreos.com/backend-data"],
        format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}")
    );
    assert_eq!(a["flannel.alpha.coreos.com/public-ip"], "192.168.50.1");
    assert_eq!(a["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
    assert_eq!(a["unrelated"], "kept");
    // One patch, of nodes/status (the audit log); a strategic merge: the
    // unrelated annotation above and the other conditions are kept.
    assert_eq!(api.status_patches(), ["/api/v1/nodes/me/status"]);
    let me = api.node("me").unwrap();
    let cond = me
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "NetworkUnavailable")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("FlannelIsUp"))
    );

    // The device and the flannel-written remote; the broken node skipped
    // with a Warning Event naming it.
    let dev = kernel.state(|s| s.devices["flannel.1"].clone());
    assert_eq!((dev.vni, dev.mtu, dev.port), (1, 1450, None));
    assert_eq!(dev.address.to_string(), "10.244.9.0/32");
    let remotes = kernel.state(|s| s.remotes.clone());
    assert_eq!(remotes.keys().collect::<Vec<_>>(), ["worker0"]);
    assert_eq!(
        remotes["worker0"].path,
        RemotePath::Vxlan {
            vtep: "10.244.1.0".parse().unwrap(),
            mac: "ee:43:f0:12:f0:3f".parse().unwrap()
        }
    );
    assert_eq!(remotes["worker0"].public_ip.to_string(), "10.192.220.94");
    wait("a Warning Event for the broken node", || {
        api.warned_about("broken")
    })
    .await;

    // Files and rules.
    wait("subnet.env", || dir.join("subnet.env").exists()).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("subnet.env")).unwrap(),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    );
    wait("conflist", || dir.join("10-flannel.conflist").exists()).await;
    wait("masquerade restore", || !ipt.0.lock().unwrap().is_empty()).await;
    let restore = ipt.0.lock().unwrap()[0].clone();
    assert!(
        restore.contains("-A FLANNEL-POSTRTG -s 10.244.9.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN"),
        "{restore}"
    );

    // A node added, the broken one fixed, one with a new MAC, one deleted:
    // incremental changes only.
    kernel.0.lock().unwrap().calls.clear();
    api.apply(&flannel(
        "n2",
        "10.244.2.0/24",
        "192.168.50.2",
        "2a:00:00:00:00:02",
    ));
    wait("n2 programmed", || {
        kernel.state(|s| s.remotes.contains_key("n2"))
    })
    .await;
    api.apply(&flannel(
        "broken",
        "10.244.3.0/24",
        "192.168.50.3",
        "2a:00:00:00:00:03",
    ));
    wait("broken node fixed", || {
        kernel.state(|s| s.remotes.contains_key("broken"))
    })
    .await;
    api.apply(&flannel(
        "n2",
        "10.244.2.0/24",
        "192.168.50.2",
        "2a:00:00:00:00:22",
    ));
    wait("n2's new MAC", || {
        kernel.state(|s| {
            s.remotes.get("n2").is_some_and(|r| {
                matches!(r.path, RemotePath::Vxlan { mac, .. } if mac == "2a:00:00:00:00:22".parse::<MacAddr>().unwrap())
            })
        })
    })
    .await;
    api.delete_node("worker0");
    wait("worker0 removed", || {
        kernel.state(|s| !s.remotes.contains_key("worker0"))
    })
    .await;
    let calls = kernel.state(|s| s.calls.clone());
    assert_eq!(
        calls,
        [
            "apply -[] +[\"n2\"]",
            "apply -[] +[\"broken\"]",
            "apply -[\"n2\"] +[\"n2\"]",
            "apply -[\"worker0\"] +[]",
        ],
        "no full syncs, no device changes"
    );

    // Restart: the MAC comes back from our annotation; nothing to patch.
    task.abort();
    let _ = task.await;
    let patches_before = api.status_patches().len();
    kernel.0.lock().unwrap().devices.clear();
    let task = start(
        api.0.client().await,
        options(&dir),
        kernel.clone(),
        ipt.clone(),
    );
    wait("device re-ensured", || {
        kernel.state(|s| s.devices.contains_key("flannel.1"))
    })
    .await;
    assert_eq!(
        kernel.state(|s| s.devices["flannel.1"].mac),
        mac,
        "MAC kept across restart"
    );
    wait("full sync after restart", || {
        kernel.state(|s| s.calls.last().is_some_and(|c| c == "sync"))
    })
    .await;
    let names: Vec<String> = kernel.state(|s| s.remotes.keys().cloned().collect());
    assert_eq!(names, ["broken", "n2"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        api.status_patches().len(),
        patches_before,
        "annotations already current"
    );
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// On the fake API server: a Node's podCIDR changing (10.244.4.0/24 →
// 10.244.5.0/24) is refused by the real API server (spec.podCIDR is
// immutable once set), but the overlay must handle it (a node re-created
// under the same name while we were away looks the same to a watcher).
async fn own_node_without_pod_cidr_is_a_clear_error_and_recovers() {
    let dir = std::env::temp_dir().join(format!("sluice-overlay-control-b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let api = FakeApiServer::start().await;
    api.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "me"}}));
    let kernel = FakeKernel::default();
    let ipt = FakeIptables::default();
    let task = start(api.client(), options(&dir), kernel.clone(), ipt.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        kernel.state(|s| s.devices.is_empty()),
        "nothing programmed without a subnet"
    );
    assert_eq!(api.count(Verb::Patch, "nodes"), 0);
    api.apply(&node("me", "10.244.4.0/24", json!({})));
    wait("device once the podCIDR is assigned", || {
        kernel.state(|s| s.devices.contains_key("flannel.1"))
    })
    .await;
    wait("annotations", || annotations(&api, "me").len() == 4).await;
    // A new podCIDR moves the device address, subnet.env and the rules.
    api.apply(&node("me", "10.244.5.0/24", json!({})));
    wait("device moved to the new subnet", || {
        kernel.state(|s| s.devices["flannel.1"].address.to_string() == "10.244.5.0/32")
    })
    .await;
    wait("rules for the new subnet", || {
        ipt.0
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("-s 10.244.5.0/24 -d 10.244.0.0/16"))
    })
    .await;
    wait("subnet.env for the new subnet", || {
        std::fs::read_to_string(dir.join("subnet.env"))
            .is_ok_and(|t| t.contains("FLANNEL_SUBNET=10.244.5.1/24"))
    })
    .await;
    task.abort();
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
