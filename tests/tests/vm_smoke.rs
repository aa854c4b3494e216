//! Smoke tests of the IPVS VM harness (`tests/vm/sluice-vm`, `sluice_tests::vm`).
//!
//! On the host, [`smoke_batch_in_the_ipvs_vm`] boots the VM once and runs every
//! `guest_` test below inside it; the other host tests check that the harness
//! reports the guest command's exit status, output, environment and timeouts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::vm::{self, VmOptions};

// ---------------------------------------------------------------- host tests

#[test]
fn smoke_batch_in_the_ipvs_vm() {
    vm::run_guest_tests("guest_");
}

/// The script, run directly, exits with the guest command's status.
#[test]
fn failing_command_fails_the_script() {
    if !vm::available_or_skip("failing_command_fails_the_script") {
        return;
    }
    let _one_vm_at_a_time = vm::lock_vm();
    let out = Command::new(vm::script_path())
        .args(["--timeout", "300", "--", "false"])
        .stdin(Stdio::null())
        .output()
        .expect("run sluice-vm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(1), "sluice-vm -- false: {stderr}");
    assert!(
        stderr.contains("boot+run+poweroff took"),
        "no timing line: {stderr}"
    );
}

/// Through `vm::run`: status 7, stdout and stderr both captured, the working
/// directory and `--env` values (quoted safely) arrive in the guest.
#[test]
fn status_output_env_and_cwd_come_back() {
    if !vm::available_or_skip("status_output_env_and_cwd_come_back") {
        return;
    }
    let tricky = r#"a b'c "d" $HOME `id` \n;"#;
    let opts = VmOptions::default()
        .timeout(Duration::from_secs(300))
        .env("SMOKE_VALUE", tricky);
    let run = vm::run(
            &[
                "sh",
                "-c",
                r#"printf '[%s][%s][%s]\n' "$SLUICE_IN_VM" "$SMOKE_VALUE" "$(pwd)"; echo to-stderr >&2; exit 7"#,
            ],
            &opts,
        )
        .expect("run sluice-vm");
    assert_eq!(run.code(), Some(7), "{run:#?}");
    assert!(!run.harness_failed(), "{run:#?}");
    let cwd = std::env::current_dir().unwrap();
    let want = format!("[1][{tricky}][{}]", cwd.display());
    assert!(
        run.output.lines().any(|l| l == want),
        "want {want:?} in {:?}",
        run.output
    );
    assert!(
        run.output.lines().any(|l| l == "to-stderr"),
        "{:?}",
        run.output
    );
    assert!(!run.output.contains('\r'), "{:?}", run.output);
    assert!(
        !run.output.contains("SLUICE-VM-"),
        "markers leaked: {:?}",
        run.output
    );
    assert!(run.timing().is_some(), "{run:#?}");
}

/// A guest that outlives `--timeout` is killed and reported as a harness
/// failure (125), not as the command's status.
#[test]
fn timeout_is_a_harness_failure() {
    if !vm::available_or_skip("timeout_is_a_harness_failure") {
        return;
    }
    let _one_vm_at_a_time = vm::lock_vm();
    let out = Command::new(vm::script_path())
        .args(["--timeout", "2", "--", "sleep", "600"])
        .stdin(Stdio::null())
        .output()
        .expect("run sluice-vm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(vm::HARNESS_FAILURE), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
}

// ---------------------------------------------------------------- guest tests

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_runs_in_the_vm_kernel_with_ipvs() {
    vm::assert_in_vm();
    assert!(Path::new("/proc/net/ip_vs").exists());
    assert!(
        Path::new("/proc/sys/net/ipv4/vs/conntrack").exists(),
        "net.ipv4.vs sysctls appear once ip_vs is loaded"
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        release.trim().ends_with("-amd64"),
        "expected Debian's kernel, got {release}"
    );
    // The usual device nodes work in the chroot.
    std::fs::write("/dev/null", b"x").unwrap();
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ptmx")
        .expect("open /dev/ptmx (devpts)");
    // The root is writable (tmpfs overlay) and so is /tmp.
    let probe = std::env::temp_dir().join("sluice-vm-smoke-probe");
    std::fs::write(&probe, b"ok").unwrap();
    std::fs::remove_file(&probe).unwrap();
    let lo = sh("ip", &["-o", "link", "show", "lo"]);
    assert!(lo.contains("UP"), "lo is not up: {lo}");
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_dummy_link_reads_back() {
    vm::assert_in_vm();
    let _link = Link::dummy("kube-ipvs0");
    let shown = sh("ip", &["-o", "link", "show", "kube-ipvs0"]);
    assert!(shown.contains(": kube-ipvs0:"), "{shown}");
    let details = sh("ip", &["-d", "-o", "link", "show", "kube-ipvs0"]);
    assert!(details.contains("dummy"), "{details}");
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_ipvsadm_service_lists() {
    vm::assert_in_vm();
    let _ipvs = IpvsTable::clear();
    sh("ipvsadm", &["-A", "-t", "10.96.0.10:80", "-s", "rr"]);
    let listed = sh("ipvsadm", &["-Ln"]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["TCP", "10.96.0.10:80", "rr"]),
        "{listed}"
    );
    // Schedulers autoload on demand (ip_vs_mh is not preloaded).
    sh("ipvsadm", &["-A", "-t", "10.96.0.11:80", "-s", "mh"]);
    assert!(sh("ipvsadm", &["-Ln"]).contains("10.96.0.11:80 mh"));
}

#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_iptables_and_ipset_work() {
    vm::assert_in_vm();
    sh("ipset", &["create", "sluice-smoke", "hash:ip"]);
    sh("ipset", &["add", "sluice-smoke", "10.96.0.10"]);
    assert!(sh("ipset", &["list", "sluice-smoke"]).contains("10.96.0.10"));
    sh(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-m",
            "set",
            "--match-set",
            "sluice-smoke",
            "dst",
            "-j",
            "RETURN",
        ],
    );
    assert!(sh("iptables", &["-t", "nat", "-S", "OUTPUT"]).contains("sluice-smoke"));
    sh("iptables", &["-t", "nat", "-F", "OUTPUT"]);
    sh("ipset", &["destroy", "sluice-smoke"]);
}

/// kube-proxy's IPVS shape end to end: a ClusterIP on kube-ipvs0, an IPVS NAT
/// virtual server, and a backend in its own network namespace behind a veth
/// pair; a client in the root namespace reads what the backend wrote.
#[test]
#[ignore = "runs inside the IPVS VM"]
fn guest_nat_virtual_server_reaches_a_netns_backend() {
    vm::assert_in_vm();
    const NS: &str = "sluice-smoke-be";
    const BACKEND: &str = "10.244.1.2:8080";
    let _ipvs = IpvsTable::clear();
    let _ns = Netns::add(NS);
    let _veth = Link::veth("smoke-host", "smoke-be");
    sh("ip", &["link", "set", "smoke-be", "netns", NS]);
    sh("ip", &["addr", "add", "10.244.1.1/24", "dev", "smoke-host"]);
    sh("ip", &["link", "set", "smoke-host", "up"]);
    let in_ns = |args: &[&str]| {
        let mut all = vec!["netns", "exec", NS, "ip"];
        all.extend_from_slice(args);
        sh("ip", &all)
    };
    in_ns(&["link", "set", "lo", "up"]);
    in_ns(&["addr", "add", "10.244.1.2/24", "dev", "smoke-be"]);
    in_ns(&["link", "set", "smoke-be", "up"]);
    in_ns(&["route", "add", "default", "via", "10.244.1.1"]);

    let _server = BackendServer::start(NS, BACKEND);

    let _kube_ipvs0 = Link::dummy("kube-ipvs0");
    sh("ip", &["addr", "add", "10.96.0.10/32", "dev", "kube-ipvs0"]);
    sh("ipvsadm", &["-A", "-t", "10.96.0.10:80", "-s", "rr"]);
    sh(
        "ipvsadm",
        &["-a", "-t", "10.96.0.10:80", "-r", BACKEND, "-m", "-w", "1"],
    );

    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let mut conn = TcpStream::connect_timeout(&vip, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {vip}: {e}\n{}", sh("ipvsadm", &["-Lnc"])));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read from the VIP");
    assert!(
        got.starts_with(&format!("sluice backend {BACKEND} says hi to ")),
        "unexpected reply through the VIP: {got:?}"
    );
    // IPVS (not some other path) carried it: the connection table has the
    // entry VIP -> backend. (The --stats counters lag up to 2 s behind.)
    let conns = sh("ipvsadm", &["-Lnc"]);
    assert!(
        conns
            .lines()
            .any(|l| l.contains("10.96.0.10:80") && l.contains(BACKEND)),
        "no IPVS connection entry to {BACKEND}: {conns}"
    );
}

/// Not a test of its own: the backend process of
/// [`guest_nat_virtual_server_reaches_a_netns_backend`], started as
/// `ip netns exec NS <this binary> --ignored --exact backend_server_helper`.
/// Does nothing unless `SMOKE_BACKEND_ADDR` is set.
#[test]
#[ignore = "helper process of guest_nat_virtual_server_reaches_a_netns_backend"]
fn backend_server_helper() {
    let Ok(addr) = std::env::var("SMOKE_BACKEND_ADDR") else {
        return;
    };
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    println!("backend ready on {addr}");
    std::io::stdout().flush().unwrap();
    for _ in 0..8 {
        let (mut conn, peer) = listener.accept().expect("accept");
        let _ = writeln!(conn, "sluice backend {addr} says hi to {peer}");
    }
}

// ---------------------------------------------------------------- guest helpers

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Best-effort cleanup command (the VM is thrown away anyway, but guest tests
/// share it).
fn quietly(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A link deleted on drop.
struct Link(&'static str);

impl Link {
    fn dummy(name: &'static str) -> Self {
        quietly("ip", &["link", "del", name]);
        sh("ip", &["link", "add", name, "type", "dummy"]);
        sh("ip", &["link", "set", name, "up"]);
        Link(name)
    }

    fn veth(name: &'static str, peer: &str) -> Self {
        quietly("ip", &["link", "del", name]);
        sh(
            "ip",
            &["link", "add", name, "type", "veth", "peer", "name", peer],
        );
        Link(name)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        quietly("ip", &["link", "del", self.0]);
    }
}

/// A network namespace deleted on drop.
struct Netns(&'static str);

impl Netns {
    fn add(name: &'static str) -> Self {
        quietly("ip", &["netns", "del", name]);
        sh("ip", &["netns", "add", name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        quietly("ip", &["netns", "del", self.0]);
    }
}

/// An empty IPVS table, emptied again on drop.
struct IpvsTable;

impl IpvsTable {
    fn clear() -> Self {
        sh("ipvsadm", &["-C"]);
        IpvsTable
    }
}

impl Drop for IpvsTable {
    fn drop(&mut self) {
        quietly("ipvsadm", &["-C"]);
    }
}

/// [`backend_server_helper`] running in a netns, killed on drop.
struct BackendServer(Child);

impl BackendServer {
    fn start(ns: &str, addr: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--ignored",
                "--exact",
                "backend_server_helper",
                "--nocapture",
            ])
            .env("SMOKE_BACKEND_ADDR", addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the backend");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("backend ready") {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let server = BackendServer(child);
        rx.recv_timeout(deadline - Instant::now())
            .expect("the backend server did not come up");
        server
    }
}

impl Drop for BackendServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
