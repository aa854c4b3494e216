//! The host side and the guest side of a cluster shared with the IPVS VM.
//!
//! The control plane runs on the host; a test inside the VM reaches the API
//! server through qemu's user network, but stopping or restarting a
//! component, compacting etcd or signing a client certificate needs the
//! host. [`Server`] is a tiny line protocol on the host's loopback (the VM
//! reaches it the same way it reaches the API server); [`Remote`] is what a
//! guest's [`super::Cluster`] holds to call it.
//!
//! Requests are one line, `OP ARG...`; answers one line, `ok [TEXT]` or
//! `err TEXT`, with PEM text base64-free but newline-escaped as `\n`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pki::{CertFiles, Identity};
use super::{Cluster, ClusterError, Component, VM_HOST_ADDR};

/// The host's control endpoint for one cluster.
#[derive(Debug)]
pub struct Server {
    port: u16,
}

impl Server {
    /// Listens on the host's loopback and serves `cluster` until the
    /// process exits.
    pub fn start(cluster: &'static Cluster) -> Result<Server, ClusterError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(super::io_err("binding the control port"))?;
        let port = listener
            .local_addr()
            .map_err(super::io_err("the control port"))?
            .port();
        std::thread::Builder::new()
            .name("sluice-cluster-control".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    std::thread::spawn(move || serve(cluster, conn));
                }
            })
            .map_err(super::io_err("spawning the control thread"))?;
        Ok(Server { port })
    }

    /// The port (on the host's loopback; the VM uses [`VM_HOST_ADDR`]).
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn serve(cluster: &Cluster, conn: TcpStream) {
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let answer = match handle(cluster, &words) {
        Ok(text) => format!("ok {}\n", text.replace('\n', "\\n")),
        Err(e) => format!("err {}\n", e.to_string().replace('\n', "\\n")),
    };
    let _ = (&conn).write_all(answer.as_bytes());
}

fn component(word: Option<&&str>) -> Result<Component, ClusterError> {
    let w = word.ok_or_else(|| ClusterError::Control("no component".into()))?;
    serde_json::from_value(serde_json::Value::String((*w).to_owned()))
        .map_err(|_| ClusterError::Control(format!("no component {w:?}")))
}

fn handle(cluster: &Cluster, words: &[&str]) -> Result<String, ClusterError> {
    match words.first().copied() {
        Some("start") => cluster
            .start_component(component(words.get(1))?)
            .map(|()| String::new()),
        Some("stop") => cluster
            .stop_component(component(words.get(1))?)
            .map(|()| String::new()),
        Some("kill") => cluster
            .kill_component(component(words.get(1))?)
            .map(|()| String::new()),
        Some("compact") => cluster.compact_etcd().map(|r| r.to_string()),
        Some("client-cert") => {
            let (user, stem) = match (words.get(1), words.get(3)) {
                (Some(u), Some(s)) => (*u, *s),
                _ => {
                    return Err(ClusterError::Control(
                        "client-cert USER GROUP|- STEM".into(),
                    ));
                }
            };
            let group = words.get(2).copied().filter(|g| *g != "-");
            let files = cluster.client_cert(&Identity::new(user, group), stem)?;
            let cert = std::fs::read_to_string(&files.cert)
                .map_err(super::io_err("reading the new certificate"))?;
            let key = std::fs::read_to_string(&files.key)
                .map_err(super::io_err("reading the new key"))?;
            Ok(format!("{cert}\u{1}{key}"))
        }
        _ => Err(ClusterError::Control(format!("unknown request {words:?}"))),
    }
}

/// What a guest needs to know about the host's cluster (passed as JSON in
/// [`super::REMOTE_ENV`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remote {
    /// The cluster's directory on the host (visible read-only in the VM).
    pub dir: PathBuf,
    /// The API server's port.
    pub api_port: u16,
    /// etcd's client port (for reference; the VM cannot reach it).
    pub etcd_port: u16,
    /// The CA certificate.
    pub ca: PathBuf,
    /// An admin kubeconfig whose server is the host as the VM sees it.
    pub admin_kubeconfig: PathBuf,
    /// The control endpoint's port.
    pub control_port: u16,
    /// `--service-cluster-ip-range`.
    pub service_cidr: String,
    /// node IPAM's `--cluster-cidr`.
    pub cluster_cidr: String,
    /// Where the control plane's programs are (visible in the VM).
    pub bin: PathBuf,
}

impl Remote {
    fn request(&self, line: &str) -> Result<String, ClusterError> {
        let err = |e: std::io::Error| ClusterError::Control(format!("{line}: {e}"));
        let mut conn = TcpStream::connect((VM_HOST_ADDR, self.control_port)).map_err(err)?;
        // Restarting the API server can take a while under TCG.
        conn.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(err)?;
        conn.write_all(format!("{line}\n").as_bytes())
            .map_err(err)?;
        let mut answer = String::new();
        BufReader::new(&conn).read_line(&mut answer).map_err(err)?;
        let answer = answer.trim_end().replace("\\n", "\n");
        match answer.split_once(' ').unwrap_or((answer.as_str(), "")) {
            ("ok", text) => Ok(text.to_owned()),
            ("err", text) => Err(ClusterError::Control(format!("{line}: {text}"))),
            _ => Err(ClusterError::Control(format!(
                "{line}: odd answer {answer:?}"
            ))),
        }
    }

    /// Asks the host to start, stop or kill a component.
    pub fn call(&self, op: &str, c: Component) -> Result<(), ClusterError> {
        let name = serde_json::to_value(c).map_err(|e| ClusterError::Control(e.to_string()))?;
        self.request(&format!("{op} {}", name.as_str().unwrap_or_default()))
            .map(|_| ())
    }

    /// Asks the host to compact etcd.
    pub fn compact(&self) -> Result<i64, ClusterError> {
        let rev = self.request("compact")?;
        rev.trim()
            .parse()
            .map_err(|_| ClusterError::Control(format!("compact: odd revision {rev:?}")))
    }

    /// Asks the host to sign a client certificate; writes it (and its key)
    /// as `<stem>.crt`/`<stem>.key` in the guest's view of the cluster dir.
    pub fn client_cert(&self, who: &Identity, stem: &str) -> Result<CertFiles, ClusterError> {
        if who.user.contains(char::is_whitespace) || stem.contains(char::is_whitespace) {
            return Err(ClusterError::Control("names with spaces".into()));
        }
        let group = who.group.as_deref().unwrap_or("-");
        let text = self.request(&format!("client-cert {} {group} {stem}", who.user))?;
        let (cert, key) = text
            .split_once('\u{1}')
            .ok_or_else(|| ClusterError::Control("client-cert: odd answer".into()))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert).map_err(super::io_err("writing a certificate"))?;
        std::fs::write(&files.key, key).map_err(super::io_err("writing a key"))?;
        Ok(files)
    }
}
