//! Network-namespace helpers for tests that need "pods" and "clients": a
//! namespace behind a veth pair, and small TCP servers running inside one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Runs a shell command, panicking with its stderr if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A "pod": namespace `pod{n}` behind veth `vh{n}`/`vp{n}`, address
/// `10.244.{n}.2/24`, default route via the host side `10.244.{n}.1`.
/// Returns the namespace name.
pub fn pod(n: u8) -> String {
    let ns = format!("pod{n}");
    sh(&format!(
        "ip netns add {ns} && ip link add vh{n} type veth peer name vp{n} netns {ns} && \
         ip addr add 10.244.{n}.1/24 dev vh{n} && ip link set vh{n} up && \
         ip -n {ns} addr add 10.244.{n}.2/24 dev vp{n} && ip -n {ns} link set vp{n} up && \
         ip -n {ns} link set lo up && ip -n {ns} route add default via 10.244.{n}.1"
    ));
    ns
}

/// Runs `f` on a new thread whose network namespace is `ns`.
pub fn spawn_in_netns<F>(ns: &str, f: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns affects only this thread; the fd is valid for the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f();
    })
}

/// Starts a TCP server on `port` in namespace `ns`: each line it receives is
/// answered with `NAME PEER-IP LINE` (so a test sees which backend answered
/// and which source address it saw). Returns once it is listening.
pub fn echo_server(ns: &str, port: u16, name: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = name.to_owned();
    spawn_in_netns(ns, move || {
        let l = TcpListener::bind(("::", port))
            .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            .unwrap();
        tx.send(()).unwrap();
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let peer = c
                    .peer_addr()
                    .map(|a| a.ip().to_canonical().to_string())
                    .unwrap_or_default();
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let line = String::from_utf8_lossy(&buf[..n]);
                    let reply = format!("{name} {peer} {}\n", line.trim_end());
                    if c.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv().unwrap();
}

/// Sends one line on `conn` and returns the server's reply line.
pub fn ask(conn: &mut std::net::TcpStream, line: &str) -> String {
    conn.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while conn.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
        if byte[0] == b'\n' {
            break;
        }
        out.push(byte[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A network namespace made for one test and deleted when dropped, so a
/// failing test does not leave it behind. A stale namespace of the same name
/// (from an earlier, killed run) is deleted first.
pub struct Netns {
    /// The namespace's name (`ip netns` name).
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Self {
            name: name.to_owned(),
        }
    }

    /// Runs `f` on a thread inside this namespace and returns its result.
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        run_in_netns(&self.name, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `f` on a new thread whose network namespace is `ns` and returns its
/// result; a panic inside `f` is re-raised on the caller's thread.
pub fn run_in_netns<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = slot.clone();
    let handle = spawn_in_netns(ns, move || {
        let v = f();
        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    });
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
    let v = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    v.expect("the namespace thread returned")
}

/// A client namespace `ns` on its own "node network": veth `host_if` on the
/// host with `host_ip/24`, `eth0` in `ns` with `client_ip/24`, default route
/// via the host. Returns the namespace name.
pub fn client(ns: &str, host_if: &str, host_ip: &str, client_ip: &str) -> String {
    sh(&format!(
        "ip netns add {ns} && ip link add {host_if} type veth peer name eth0 netns {ns} && \
         ip addr add {host_ip}/24 dev {host_if} && ip link set {host_if} up && \
         ip -n {ns} addr add {client_ip}/24 dev eth0 && ip -n {ns} link set eth0 up && \
         ip -n {ns} link set lo up && ip -n {ns} route add default via {host_ip}"
    ));
    ns.to_owned()
}

/// Gives the [`pod`] `n` an IPv6 address too: `fd00:244:{n}::2/64` in the
/// pod, `fd00:244:{n}::1/64` on the host side as its default route (no
/// duplicate address detection, so both are usable at once). Returns the
/// pod's address.
pub fn pod_ipv6(n: u8) -> std::net::Ipv6Addr {
    sh(&format!(
        "ip addr add fd00:244:{n}::1/64 dev vh{n} nodad && \
         ip -n pod{n} addr add fd00:244:{n}::2/64 dev vp{n} nodad && \
         ip -n pod{n} -6 route add default via fd00:244:{n}::1"
    ));
    format!("fd00:244:{n}::2").parse().unwrap()
}

/// Connects to `addr` (from namespace `ns`, or from the current one for
/// `None`), sends `line` and returns the reply line of an [`echo_server`].
/// Connecting, sending and reading each wait at most `timeout`; a refused
/// or silent connection is an error, never a panic.
pub fn ask_from(
    ns: Option<&str>,
    addr: std::net::SocketAddr,
    line: &str,
    timeout: std::time::Duration,
) -> std::io::Result<String> {
    let line = line.to_owned();
    let go = move || -> std::io::Result<String> {
        let mut c = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        c.set_read_timeout(Some(timeout))?;
        c.set_write_timeout(Some(timeout))?;
        c.write_all(format!("{line}\n").as_bytes())?;
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match c.read(&mut byte)? {
                0 => break,
                _ if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                _ => out.push(byte[0]),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("no reply line from {addr}"),
        ))
    };
    match ns {
        None => go(),
        Some(ns) => {
            let (tx, rx) = std::sync::mpsc::channel();
            spawn_in_netns(ns, move || {
                let _ = tx.send(go());
            })
            .join()
            .map_err(|_| std::io::Error::other("client thread panicked"))?;
            rx.recv().map_err(std::io::Error::other)?
        }
    }
}
