//! A real Kubernetes control plane for tests: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built from the Go module in
//! `tests/cluster/go` (pinned release; `tests/cluster/build.sh` builds and
//! caches them) and run as local processes on loopback.
//!
//! * The API server runs with `--authorization-mode=Node,RBAC`, the default
//!   admission plugins plus NodeRestriction, service-account tokens signed
//!   by a key generated on the spot, and an audit log of every request
//!   ([`Cluster::audit_events`]) for least-privilege checks.
//! * The controller manager runs the controllers a networking data plane
//!   depends on (EndpointSlices and their mirroring, Deployments,
//!   ReplicaSets, namespaces, garbage collection, ServiceAccounts and their
//!   tokens, node IPAM with `--allocate-node-cidrs`, node lifecycle, pod
//!   GC), each with its own ServiceAccount credentials as in a real cluster.
//! * There are no kubelets: nodes and their pods are simulated by
//!   [`crate::node_agent`], which runs each pod as a real process in a
//!   network namespace.
//!
//! One cluster per test binary is the norm ([`shared`]); tests isolate
//! themselves by namespace. Tests that stop or restart components start
//! their own ([`Cluster::start`]).
//!
//! The IPVS VM reaches the host's loopback through qemu's user network
//! (`sluice_tests::vm::VmOptions::host_network`): inside the VM the API
//! server is `https://172.30.255.2:PORT`, and [`Cluster::from_env`] gives
//! a guest test a handle whose component operations (stop, restart, etcd
//! compaction) are carried out by the host test through a small control
//! endpoint ([`control`]).

mod apply;
pub mod audit;
pub mod chart;
pub mod control;
pub mod kubeconfig;
pub mod pki;
pub mod process;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use apply::ApplyError;
use kubeconfig::Credential;
use pki::{Identity, Pki};
use process::Supervised;

/// Overrides where the control plane's binaries are (a directory holding
/// `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`,
/// `kube-proxy` and `etcd`); by default `tests/cluster/build.sh --bin-dir`
/// says.
pub const BIN_ENV: &str = "SLUICE_CLUSTER_BIN";

/// Set (non-empty) to report the cluster tier as unavailable, e.g. for a
/// quick host-only `cargo test`. Under `CI=true` that is still a failure.
pub const DISABLE_ENV: &str = "SLUICE_CLUSTER_DISABLE";

/// Set by [`Cluster::vm_env`] for a guest test: a JSON description of the
/// host's cluster ([`control::Remote`]).
pub const REMOTE_ENV: &str = "SLUICE_CLUSTER_REMOTE";

/// The address the IPVS VM uses for the host's loopback (qemu's user
/// network, configured by `sluice-vm --host-net`).
pub const VM_HOST_ADDR: Ipv4Addr = Ipv4Addr::new(172, 30, 255, 2);

/// The control plane's programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The etcd server.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
}

impl Component {
    /// All of them, in start order.
    pub const ALL: [Component; 4] = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The program's file name.
    pub fn program(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
}

/// Address ranges and extra flags of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `--service-cluster-ip-range`.
    pub service_cidr: String,
    /// `--cluster-cidr` of node IPAM (each Node gets a /`node_cidr_mask`).
    pub cluster_cidr: String,
    /// `--node-cidr-mask-size`.
    pub node_cidr_mask: u8,
    /// Extra kube-apiserver flags.
    pub apiserver_args: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            service_cidr: "10.96.0.0/16".into(),
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask: 24,
            apiserver_args: Vec::new(),
        }
    }
}

/// The controllers kube-controller-manager runs (`--controllers`).
pub const CONTROLLERS: &[&str] = &[
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "node-ipam-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "service-cidr-controller",
];

/// Why a cluster could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The binaries are not built (or the tier is disabled).
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
    /// Keys or certificates could not be made.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A component did not become ready in time.
    #[error("{component} not ready after {waited:?}; last log lines:\n{log}")]
    NotReady {
        /// Which program.
        component: &'static str,
        /// How long we waited.
        waited: Duration,
        /// The tail of its log.
        log: String,
    },
    /// A request to the cluster failed.
    #[error("{0}")]
    Api(String),
    /// The host's control endpoint (for a guest's handle) failed.
    #[error("cluster control: {0}")]
    Control(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// Where the binaries are, or why they are not there.
pub fn bin_dir() -> Result<PathBuf, String> {
    if std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty()) {
        return Err(format!("{DISABLE_ENV} is set"));
    }
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("tests/cluster/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--bin-dir")
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The repository's root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// True if a cluster can be started here (or, in the VM, if the host passed
/// one in); otherwise prints `SKIPPED: <reason>` for `what` and returns
/// false — except under `CI=true`, where it panics: CI must run every tier.
pub fn available_or_skip(what: &str) -> bool {
    if std::env::var_os(REMOTE_ENV).is_some() {
        return true;
    }
    match bin_dir() {
        Ok(_) => true,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{what}: the control-plane tier cannot run under CI=true: {why}");
            }
            eprintln!("SKIPPED: {what}: {why}");
            false
        }
    }
}

/// Runs this test binary's ignored tests matching `filter` inside the IPVS
/// VM (one boot for the batch, as [`crate::vm::run_guest_tests`]) with the
/// [`shared`] cluster reachable from inside: the guest gets qemu's user
/// network, [`REMOTE_ENV`] and the `sluice-testpod` path, so its
/// [`shared`] is a handle on the host's cluster and its node agents can run
/// pods in the VM.
pub fn run_guest_tests(filter: &str) {
    if crate::vm::in_vm() {
        return;
    }
    if !available_or_skip(&format!(
        "guest tests matching {filter:?} (control-plane tier)"
    )) {
        return;
    }
    let cluster = shared();
    let mut opts = crate::vm::VmOptions::default().host_network(true);
    opts.env = cluster
        .vm_env()
        .unwrap_or_else(|e| panic!("passing the cluster to the VM: {e}"));
    match crate::node_agent::registry::testpod_binary() {
        Ok(p) => opts
            .env
            .push(("SLUICE_TESTPOD".into(), p.display().to_string())),
        Err(e) => panic!("{e}"),
    }
    crate::vm::run_guest_tests_with(filter, opts);
}

/// The cluster shared by every test of this test binary, started on first
/// use. It lives until the process exits (its processes die with it).
///
/// # Panics
///
/// If the cluster cannot be started; call [`available_or_skip`] first.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        if std::env::var_os(REMOTE_ENV).is_some() {
            return Cluster::from_env().unwrap_or_else(|e| panic!("{e}"));
        }
        Cluster::start().unwrap_or_else(|e| panic!("starting the test cluster: {e}"))
    })
}

/// A running (or, from inside the VM, a remote) test cluster.
pub struct Cluster {
    dir: PathBuf,
    /// The API server's port on the host's loopback.
    api_port: u16,
    etcd_port: u16,
    ca: PathBuf,
    admin: PathBuf,
    backend: Backend,
    config: ClusterConfig,
}

enum Backend {
    /// The processes run here.
    Local(Box<Local>),
    /// The processes run on the host; operations go through its control
    /// endpoint.
    Remote(control::Remote),
}

struct Local {
    pki: Pki,
    bin: PathBuf,
    procs: Mutex<Vec<Supervised>>,
    owns_dir: bool,
    control: OnceLock<control::Server>,
    health_ports: [u16; 2],
}

impl Cluster {
    /// Starts a new cluster with the default address ranges.
    pub fn start() -> Result<Cluster, ClusterError> {
        Self::start_with(ClusterConfig::default())
    }

    /// Starts a new cluster: writes keys, certificates, kubeconfigs and the
    /// audit policy to a fresh directory, starts etcd, then the API server,
    /// then the controller manager and scheduler, and returns once all are
    /// ready and the `default` ServiceAccount exists (so pods can be
    /// created).
    pub fn start_with(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let started = Instant::now();
        let bin = bin_dir().map_err(ClusterError::Unavailable)?;
        remove_stale_dirs();
        let dir = new_dir()?;
        let serving_ips = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(VM_HOST_ADDR),
            first_service_ip(&config.service_cidr),
        ];
        let pki = Pki::generate(&dir, &serving_ips)?;
        let [etcd_port, etcd_peer, api_port, kcm_port, sched_port] = free_ports();
        let api = format!("https://127.0.0.1:{api_port}");
        let admin_cert = pki.client_cert(&Identity::admin(), "admin")?;
        let admin = kubeconfig::write(
            &dir.join("admin.kubeconfig"),
            &api,
            &pki.ca,
            &Credential::Cert(admin_cert),
        )
        .map_err(io_err("writing the admin kubeconfig"))?;
        let kcm_cert = pki.client_cert(
            &Identity::new("system:kube-controller-manager", None),
            "controller-manager",
        )?;
        let kcm_kubeconfig = kubeconfig::write(
            &dir.join("controller-manager.kubeconfig"),
            &api,
            &pki.ca,
            &Credential::Cert(kcm_cert),
        )
        .map_err(io_err("writing a kubeconfig"))?;
        let sched_cert =
            pki.client_cert(&Identity::new("system:kube-scheduler", None), "scheduler")?;
        let sched_kubeconfig = kubeconfig::write(
            &dir.join("scheduler.kubeconfig"),
            &api,
            &pki.ca,
            &Credential::Cert(sched_cert),
        )
        .map_err(io_err("writing a kubeconfig"))?;
        std::fs::write(dir.join("audit-policy.yaml"), audit::POLICY)
            .map_err(io_err("writing the audit policy"))?;

        let args = Args {
            dir: &dir,
            pki: &pki,
            config: &config,
            etcd_port,
            etcd_peer,
            api_port,
        };
        let procs = vec![
            Supervised::new("etcd", bin.join("etcd"), args.etcd(), dir.join("etcd.log")),
            Supervised::new(
                "kube-apiserver",
                bin.join("kube-apiserver"),
                args.apiserver(),
                dir.join("kube-apiserver.log"),
            ),
            Supervised::new(
                "kube-controller-manager",
                bin.join("kube-controller-manager"),
                args.controller_manager(&kcm_kubeconfig, kcm_port),
                dir.join("kube-controller-manager.log"),
            ),
            Supervised::new(
                "kube-scheduler",
                bin.join("kube-scheduler"),
                args.scheduler(&sched_kubeconfig, sched_port),
                dir.join("kube-scheduler.log"),
            ),
        ];
        let cluster = Cluster {
            ca: pki.ca.clone(),
            dir,
            api_port,
            etcd_port,
            admin,
            config,
            backend: Backend::Local(Box::new(Local {
                pki,
                bin,
                procs: Mutex::new(procs),
                owns_dir: true,
                control: OnceLock::new(),
                health_ports: [kcm_port, sched_port],
            })),
        };
        for c in Component::ALL {
            cluster.start_component(c)?;
        }
        cluster.wait_default_service_account(Duration::from_secs(30))?;
        eprintln!(
            "cluster: ready in {:.1} s ({}, API server {api})",
            started.elapsed().as_secs_f64(),
            cluster.dir.display()
        );
        Ok(cluster)
    }

    /// The handle a guest test in the IPVS VM gets for the host's cluster
    /// (from [`REMOTE_ENV`], set by [`Cluster::vm_env`]).
    pub fn from_env() -> Result<Cluster, ClusterError> {
        let text = std::env::var(REMOTE_ENV)
            .map_err(|_| ClusterError::Unavailable(format!("{REMOTE_ENV} is not set")))?;
        let remote: control::Remote = serde_json::from_str(&text)
            .map_err(|e| ClusterError::Control(format!("bad {REMOTE_ENV}: {e}")))?;
        Ok(Cluster {
            dir: remote.dir.clone(),
            api_port: remote.api_port,
            etcd_port: remote.etcd_port,
            ca: remote.ca.clone(),
            admin: remote.admin_kubeconfig.clone(),
            config: ClusterConfig {
                service_cidr: remote.service_cidr.clone(),
                cluster_cidr: remote.cluster_cidr.clone(),
                ..ClusterConfig::default()
            },
            backend: Backend::Remote(remote),
        })
    }

    /// The environment a guest test needs to reach this cluster from the
    /// IPVS VM (pass it with `VmOptions::env`, and boot the VM with
    /// `host_network`). Starts the control endpoint on first use; the
    /// endpoint serves the cluster until the process exits, hence
    /// `'static` (a [`shared`] cluster, or a leaked one).
    pub fn vm_env(&'static self) -> Result<Vec<(String, String)>, ClusterError> {
        let Backend::Local(local) = &self.backend else {
            return Err(ClusterError::Control(
                "a remote cluster cannot be passed on".into(),
            ));
        };
        let server = match local.control.get() {
            Some(s) => s,
            None => {
                let s = control::Server::start(self)?;
                let _ = local.control.set(s);
                local.control.get().expect("just set")
            }
        };
        let admin_vm = kubeconfig::write(
            &self.dir.join("admin-vm.kubeconfig"),
            &self.server_url_for_vm(),
            &self.ca,
            &Credential::Cert(pki::CertFiles {
                cert: self.dir.join("admin.crt"),
                key: self.dir.join("admin.key"),
            }),
        )
        .map_err(io_err("writing the VM's admin kubeconfig"))?;
        let remote = control::Remote {
            dir: self.dir.clone(),
            api_port: self.api_port,
            etcd_port: self.etcd_port,
            ca: self.ca.clone(),
            admin_kubeconfig: admin_vm,
            control_port: server.port(),
            service_cidr: self.config.service_cidr.clone(),
            cluster_cidr: self.config.cluster_cidr.clone(),
            bin: local.bin.clone(),
        };
        let json = serde_json::to_string(&remote)
            .map_err(|e| ClusterError::Control(format!("encoding: {e}")))?;
        Ok(vec![(REMOTE_ENV.to_owned(), json)])
    }

    /// A program of the pinned Kubernetes release (`kube-proxy`, say), as
    /// built by `tests/cluster/build.sh`.
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.backend {
            Backend::Local(l) => l.bin.join(name),
            Backend::Remote(r) => r.bin.join(name),
        }
    }

    /// True for the handle a guest test holds.
    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }

    /// The cluster's working directory (certificates, kubeconfigs, logs, the
    /// audit log, etcd's data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's URL as seen from here (the host's loopback, or the
    /// host's address on the VM's user network).
    pub fn server_url(&self) -> String {
        if self.is_remote() {
            self.server_url_for_vm()
        } else {
            format!("https://127.0.0.1:{}", self.api_port)
        }
    }

    fn server_url_for_vm(&self) -> String {
        format!("https://{VM_HOST_ADDR}:{}", self.api_port)
    }

    /// The API server's port.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The CA that signed the serving and client certificates (PEM file).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The cluster's address ranges.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// A kubeconfig of a cluster administrator (`system:masters`), for the
    /// place this handle lives (host or VM).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }

    /// A new kube client as the administrator. Make one per test runtime:
    /// a client's connections belong to the runtime that made them.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("admin client: {e}"))
    }

    /// Signs a client certificate for `who` with the cluster's CA, as
    /// `<stem>.crt`/`<stem>.key` in the cluster's directory.
    pub fn client_cert(&self, who: &Identity, stem: &str) -> Result<pki::CertFiles, ClusterError> {
        match &self.backend {
            Backend::Local(l) => Ok(l.pki.client_cert(who, stem)?),
            Backend::Remote(r) => r.client_cert(who, stem),
        }
    }

    /// Writes a kubeconfig that authenticates with a client certificate for
    /// `who` (signed by the cluster's CA), as `<stem>.kubeconfig`.
    pub fn kubeconfig_for(&self, who: &Identity, stem: &str) -> Result<PathBuf, ClusterError> {
        let cert = self.client_cert(who, stem)?;
        kubeconfig::write(
            &self.dir.join(format!("{stem}.kubeconfig")),
            &self.server_url(),
            &self.ca,
            &Credential::Cert(cert),
        )
        .map_err(io_err("writing a kubeconfig"))
    }

    /// Mints a token for ServiceAccount `namespace/name` (TokenRequest, one
    /// hour) and writes a kubeconfig that uses it, as
    /// `sa-<namespace>-<name>.kubeconfig`, for the place this handle lives.
    pub fn kubeconfig_for_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, ClusterError> {
        let token = self.service_account_token(namespace, name)?;
        let path = self.dir.join(format!(
            "sa-{namespace}-{name}-{}.kubeconfig",
            std::process::id()
        ));
        kubeconfig::write(
            &path,
            &self.server_url(),
            &self.ca,
            &Credential::Token(token),
        )
        .map_err(io_err("writing a kubeconfig"))
    }

    /// A one-hour token for ServiceAccount `namespace/name`, from the
    /// TokenRequest API (as the kubelet gets projected tokens).
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, ClusterError> {
        let admin = self.admin.clone();
        let (ns, name) = (namespace.to_owned(), name.to_owned());
        block_on(async move {
            use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
            use k8s_openapi::api::core::v1::ServiceAccount;
            let client = client_from(&admin).await?;
            let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client, &ns);
            let req = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: Vec::new(),
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            };
            let out = api
                .create_token_request(&name, &Default::default(), &req)
                .await
                .map_err(|e| ClusterError::Api(format!("TokenRequest for {ns}/{name}: {e}")))?;
            out.status.map(|s| s.token).ok_or_else(|| {
                ClusterError::Api(format!("TokenRequest for {ns}/{name}: no status"))
            })
        })
    }

    /// Server-side applies every object in `yaml` (one or more documents,
    /// field manager `sluice-tests`), discovering each kind's resource.
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<String>, ApplyError> {
        let admin = self.admin.clone();
        let yaml = yaml.to_owned();
        block_on(async move { apply::apply_all(&admin, &yaml).await })
    }

    /// Starts a component (no-op if it runs) and waits until it is ready.
    pub fn start_component(&self, c: Component) -> Result<(), ClusterError> {
        match &self.backend {
            Backend::Remote(r) => r.call("start", c),
            Backend::Local(local) => {
                let started = Instant::now();
                {
                    let mut procs = local.procs.lock().unwrap_or_else(|e| e.into_inner());
                    procs[c.index()]
                        .start()
                        .map_err(io_err(format!("starting {}", c.program())))?;
                }
                self.wait_component(local, c, started)
            }
        }
    }

    /// Stops a component with SIGTERM (SIGKILL after 10 s).
    pub fn stop_component(&self, c: Component) -> Result<(), ClusterError> {
        match &self.backend {
            Backend::Remote(r) => r.call("stop", c),
            Backend::Local(local) => {
                let mut procs = local.procs.lock().unwrap_or_else(|e| e.into_inner());
                procs[c.index()].stop(Duration::from_secs(10));
                Ok(())
            }
        }
    }

    /// Kills a component with SIGKILL (a crash).
    pub fn kill_component(&self, c: Component) -> Result<(), ClusterError> {
        match &self.backend {
            Backend::Remote(r) => r.call("kill", c),
            Backend::Local(local) => {
                let mut procs = local.procs.lock().unwrap_or_else(|e| e.into_inner());
                procs[c.index()].kill();
                Ok(())
            }
        }
    }

    /// Stops then starts a component, waiting until it is ready again.
    pub fn restart_component(&self, c: Component) -> Result<(), ClusterError> {
        self.stop_component(c)?;
        self.start_component(c)
    }

    /// Compacts etcd's history up to its current revision (physically), so
    /// that a watch resumed from any older resourceVersion gets 410 Gone.
    /// Returns the revision compacted to.
    pub fn compact_etcd(&self) -> Result<i64, ClusterError> {
        match &self.backend {
            Backend::Remote(r) => r.compact(),
            Backend::Local(_) => etcd_compact(self.etcd_port),
        }
    }

    /// Every request the API server has handled so far, from its audit log.
    pub fn audit_events(&self) -> Result<Vec<audit::Event>, ClusterError> {
        audit::read(&self.dir.join("audit.log")).map_err(io_err("reading the audit log"))
    }

    /// The last `lines` lines of a component's log (host only).
    pub fn log_tail(&self, c: Component, lines: usize) -> String {
        process::tail(&self.dir.join(format!("{}.log", c.program())), lines)
    }

    fn wait_component(
        &self,
        local: &Local,
        c: Component,
        started: Instant,
    ) -> Result<(), ClusterError> {
        let timeout = Duration::from_secs(40);
        let ready = || match c {
            Component::Etcd => http_ok(&format!("http://127.0.0.1:{}/health", self.etcd_port), &[]),
            Component::ApiServer => http_ok(
                &format!("https://127.0.0.1:{}/readyz", self.api_port),
                &[
                    "--cacert",
                    path_str(&self.ca),
                    "--cert",
                    path_str(&self.dir.join("admin.crt")),
                    "--key",
                    path_str(&self.dir.join("admin.key")),
                ],
            ),
            Component::ControllerManager => http_ok(
                &format!("https://127.0.0.1:{}/healthz", local.health_ports[0]),
                &["-k"],
            ),
            Component::Scheduler => http_ok(
                &format!("https://127.0.0.1:{}/healthz", local.health_ports[1]),
                &["-k"],
            ),
        };
        loop {
            if ready() {
                return Ok(());
            }
            let exited = {
                let mut procs = local.procs.lock().unwrap_or_else(|e| e.into_inner());
                !procs[c.index()].running()
            };
            if exited || started.elapsed() > timeout {
                return Err(ClusterError::NotReady {
                    component: c.program(),
                    waited: started.elapsed(),
                    log: self.log_tail(c, 30),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_default_service_account(&self, timeout: Duration) -> Result<(), ClusterError> {
        let admin = self.admin.clone();
        block_on(async move {
            use k8s_openapi::api::core::v1::ServiceAccount;
            let client = client_from(&admin).await?;
            let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client, "default");
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = api.get_opt("default").await {
                    return Ok(());
                }
                if start.elapsed() > timeout {
                    return Err(ClusterError::Api(
                        "the controller manager created no `default` ServiceAccount".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Backend::Local(local) = &self.backend {
            let mut procs = local.procs.lock().unwrap_or_else(|e| e.into_inner());
            // Reverse start order: clients before the API server before etcd.
            for p in procs.iter_mut().rev() {
                p.stop(Duration::from_secs(5));
            }
            if local.owns_dir && std::env::var_os("SLUICE_CLUSTER_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client, ClusterError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| ClusterError::Api(format!("{}: {e}", kubeconfig.display())))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| ClusterError::Api(format!("{}: {e}", kubeconfig.display())))?;
    kube::Client::try_from(cfg).map_err(|e| ClusterError::Api(format!("client: {e}")))
}

/// Runs a future to completion on a fresh thread with its own runtime, so
/// it can be called from synchronous code and from inside another runtime
/// alike.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(f)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

struct Args<'a> {
    dir: &'a Path,
    pki: &'a Pki,
    config: &'a ClusterConfig,
    etcd_port: u16,
    etcd_peer: u16,
    api_port: u16,
}

impl Args<'_> {
    fn etcd(&self) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer);
        vec![
            format!("--name=sluice-test"),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=sluice-test={peer}"),
            // A test cluster's etcd does not need to survive power loss.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ]
    }

    fn apiserver(&self) -> Vec<String> {
        let d = |f: &str| self.dir.join(f).display().to_string();
        let p = |f: &Path| f.display().to_string();
        let mut args = vec![
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // The lease reconciler refuses a loopback address for the
            // `kubernetes` Service's endpoints. No client here goes through
            // that Service (every one has a kubeconfig), so it keeps none.
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={}", self.api_port),
            format!("--tls-cert-file={}", p(&self.pki.serving.cert)),
            format!("--tls-private-key-file={}", p(&self.pki.serving.key)),
            format!("--client-ca-file={}", p(&self.pki.ca)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p(&self.pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&self.pki.sa_key)),
            format!("--service-cluster-ip-range={}", self.config.service_cidr),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!("--audit-policy-file={}", d("audit-policy.yaml")),
            format!("--audit-log-path={}", d("audit.log")),
            "--audit-log-format=json".into(),
            // Every event is on disk when the request returns, so a test
            // can read the log right after its scenario.
            "--audit-log-mode=blocking".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        args.extend(self.config.apiserver_args.iter().cloned());
        args
    }

    fn controller_manager(&self, kubeconfig: &Path, port: u16) -> Vec<String> {
        let p = |f: &Path| f.display().to_string();
        vec![
            format!("--kubeconfig={}", p(kubeconfig)),
            format!("--authentication-kubeconfig={}", p(kubeconfig)),
            format!("--authorization-kubeconfig={}", p(kubeconfig)),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--controllers={}", CONTROLLERS.join(",")),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={}", self.config.cluster_cidr),
            format!("--node-cidr-mask-size={}", self.config.node_cidr_mask),
            format!("--service-cluster-ip-range={}", self.config.service_cidr),
            format!("--service-account-private-key-file={}", p(&self.pki.sa_key)),
            format!("--root-ca-file={}", p(&self.pki.ca)),
            "--use-service-account-credentials=true".into(),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }

    fn scheduler(&self, kubeconfig: &Path, port: u16) -> Vec<String> {
        let p = |f: &Path| f.display().to_string();
        vec![
            format!("--kubeconfig={}", p(kubeconfig)),
            format!("--authentication-kubeconfig={}", p(kubeconfig)),
            format!("--authorization-kubeconfig={}", p(kubeconfig)),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// True if `curl` gets a 2xx from `url`.
fn http_ok(url: &str, extra: &[&str]) -> bool {
    Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--max-time", "2"])
        .args(extra)
        .arg(url)
        .status()
        .is_ok_and(|s| s.success())
}

/// Compacts etcd at its current revision through etcd's JSON gateway
/// (`/v3/kv/range` for the revision, `/v3/kv/compaction` to compact).
fn etcd_compact(port: u16) -> Result<i64, ClusterError> {
    let post = |path: &str, body: &str| -> Result<serde_json::Value, ClusterError> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "10", "-X", "POST", "-d", body])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .map_err(io_err("running curl"))?;
        if !out.status.success() {
            return Err(ClusterError::Api(format!(
                "etcd {path}: curl exit {}",
                out.status
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| ClusterError::Api(format!("etcd {path}: {e}")))
    };
    // key "\0" (base64 AA==) with range_end "\0" reads nothing but the header.
    let head = post("/v3/kv/range", r#"{"key":"AA==","limit":1}"#)?;
    let rev: i64 = head["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| ClusterError::Api(format!("etcd range: no revision in {head}")))?;
    post(
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{rev}","physical":true}}"#),
    )?;
    Ok(rev)
}

fn first_service_ip(cidr: &str) -> IpAddr {
    let base: Ipv4Addr = cidr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Ipv4Addr::new(10, 96, 0, 0));
    IpAddr::V4(Ipv4Addr::from(u32::from(base) + 1))
}

fn free_ports<const N: usize>() -> [u16; N] {
    // Hold every listener until all are chosen so none repeats.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

const DIR_PREFIX: &str = "sluice-cluster-";

fn new_dir() -> Result<PathBuf, ClusterError> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Removes the directories of clusters whose test process is gone (a shared
/// cluster's directory outlives its process: statics are never dropped).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
