//! The overlay through the real `sluice-proxy` binary, in the IPVS VM (the
//! proxy loop needs IPVS; the host has none): `--overlay-*` flags, Nodes
//! from `--manifests`, the device and a remote's entries read back with
//! `ip`/`bridge`, subnet.env and the conflist written, FLANNEL-* rules,
//! a removed node cleaned up, and `--cleanup` removing the device and our
//! chains.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_tests::netns::sh;

#[test]
fn overlay_binary_in_the_vm() {
    sluice_tests::vm::run_guest_tests("guest_");
}

const DIR: &str = "/tmp/sluice-overlay-vm";

fn write_nodes(with_remote: bool) {
    let mut text = String::from(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n\
         spec:\n  podCIDR: 10.244.1.0/24\n  podCIDRs: [10.244.1.0/24]\n",
    );
    if with_remote {
        text.push_str(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: node-2\n  annotations:\n\
             \x20   flannel.alpha.coreos.com/backend-data: '{\"VNI\":1,\"VtepMAC\":\"2a:00:00:00:00:02\"}'\n\
             \x20   flannel.alpha.coreos.com/backend-type: vxlan\n\
             \x20   flannel.alpha.coreos.com/kube-subnet-manager: \"true\"\n\
             \x20   flannel.alpha.coreos.com/public-ip: 192.168.88.2\n\
             spec:\n  podCIDR: 10.244.2.0/24\n  podCIDRs: [10.244.2.0/24]\n",
        );
    }
    let dir = format!("{DIR}/manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = format!("{dir}/.nodes.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, format!("{dir}/nodes.yaml")).unwrap();
}

fn overlay_args() -> Vec<String> {
    [
        "--overlay-config",
        &format!("{DIR}/net-conf.json"),
        "--overlay-iface",
        "ovl-u0",
        "--overlay-subnet-file",
        &format!("{DIR}/run/subnet.env"),
        "--overlay-cni-conflist",
        &format!("{DIR}/net.d/10-flannel.conflist"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_proxy() -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args([
            "--manifests",
            &format!("{DIR}/manifests"),
            "--hostname-override",
            "node-1",
        ])
        .args(["--healthz-bind-address", "", "--metrics-bind-address", ""])
        .args(overlay_args())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice-proxy")
}

fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    sluice_tests::wait::wait_until(what, limit, Duration::from_millis(100), cond, String::new);
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_overlay_through_the_binary() {
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR).unwrap();
    std::fs::write(
        format!("{DIR}/net-conf.json"),
        r#"{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}"#,
    )
    .unwrap();
    // The underlay: one end of a veth pair with the node's address.
    sh(
        "ip link add ovl-u0 type veth peer name ovl-u1 && ip addr add 192.168.88.1/24 dev ovl-u0 && \
        ip link set ovl-u0 up && ip link set ovl-u1 up",
    );
    write_nodes(true);
    let mut proxy = start_proxy();

    wait_until("the remote's route", Duration::from_secs(30), || {
        sh("ip route show").contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink")
    });
    let link = sh("ip -d link show flannel.1");
    assert!(
        link.contains("vxlan id 1") && link.contains("local 192.168.88.1"),
        "{link}"
    );
    assert!(
        link.contains("mtu 1450") && link.contains("nolearning"),
        "{link}"
    );
    assert!(sh("ip addr show dev flannel.1").contains("inet 10.244.1.0/32"));
    assert!(
        sh("ip neigh show dev flannel.1").contains("10.244.2.0 lladdr 2a:00:00:00:00:02 PERMANENT")
    );
    assert!(
        sh("bridge fdb show dev flannel.1")
            .contains("2a:00:00:00:00:02 dst 192.168.88.2 self permanent")
    );
    wait_until("subnet.env", Duration::from_secs(10), || {
        std::path::Path::new(&format!("{DIR}/run/subnet.env")).exists()
    });
    assert_eq!(
        std::fs::read_to_string(format!("{DIR}/run/subnet.env")).unwrap(),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
    );
    let conflist = std::fs::read_to_string(format!("{DIR}/net.d/10-flannel.conflist")).unwrap();
    assert!(conflist.contains("\"type\": \"flannel\""), "{conflist}");
    wait_until("masquerade rules", Duration::from_secs(10), || {
        sh("iptables-save -t nat")
            .contains("-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG")
    });

    // The remote leaves the manifests: its entries go.
    write_nodes(false);
    wait_until(
        "the remote's entries removed",
        Duration::from_secs(20),
        || {
            !sh("ip route show").contains("10.244.2.0/24")
                && !sh("bridge fdb show dev flannel.1").contains("2a:00:00:00:00:02")
                && !sh("ip neigh show dev flannel.1").contains("10.244.2.0")
        },
    );
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(proxy.id() as i32, libc::SIGTERM) };
    let _ = proxy.wait();

    // --cleanup with the overlay configured removes the device and our chains.
    let status = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--cleanup")
        .args(overlay_args())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!sh("ip -o link").contains("flannel.1"));
    let saved = sh("iptables-save");
    assert!(!saved.contains("FLANNEL-"), "{saved}");
    let _ = std::fs::remove_dir_all(DIR);
}
