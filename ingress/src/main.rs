//! `sluice-ingress`: Ingress controller and L7 gateway. See
//! `sluice-ingress --help`.
//!
//! Objects come from the API server (kube-rs watchers) or, with
//! `--manifests DIR`, from a polled directory of YAML files. Every change is
//! turned into a routing snapshot (debounced) and swapped into the gateway
//! without touching connections. The listeners open once the first snapshot
//! is computed; the admin listener serves `/healthz`, `/readyz` (ready after
//! the first snapshot) and `/metrics` from the start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hyper::StatusCode;
use prometheus_client::registry::Registry;
use sluice_ingress::controller::flags::NginxFlags;
use sluice_ingress::controller::leader::LeaseConfig;
use sluice_ingress::controller::{self, ControllerConfig, Update};
use sluice_ingress::gateway::access_log::{AccessLogWriter, LineStyle};
use sluice_ingress::gateway::{AccessLogFormat, Gateway, GatewayConfig, GatewayFlags, Metrics};
use sluice_ingress::routes::SecretRef;
use sluice_ingress::routes::class::DEFAULT_CONTROLLER;
use sluice_kube::admin::{self, AdminResponse};
use sluice_kube::client::ClientOptions;
use sluice_kube::events::Reported;
use tokio::sync::{mpsc, watch};

// mimalloc instead of glibc's malloc: a proxied request allocates and frees
// a few dozen small objects, and glibc's arenas (`_int_malloc`,
// `malloc_consolidate`) were 8 % of the gateway's CPU in a profile of the
// HTTP/1.1 benchmark (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Ingress/IngressClass controller and L7 gateway.
#[derive(Debug, Parser)]
#[command(name = "sluice-ingress", version)]
struct Flags {
    /// Read objects from YAML/JSON files in DIR (polled every second)
    /// instead of the API server.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// Kubeconfig to reach the API server (default: in-cluster or
    /// $KUBECONFIG / ~/.kube/config).
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    kubeconfig: Option<PathBuf>,
    /// The API server's URL, overriding the kubeconfig's (ingress-nginx's
    /// --apiserver-host).
    #[arg(long, value_name = "URL", conflicts_with = "manifests")]
    apiserver_host: Option<String>,
    /// Plain HTTP listener.
    #[arg(long, default_value = "0.0.0.0:80")]
    http_addr: SocketAddr,
    /// HTTPS listener.
    #[arg(long, default_value = "0.0.0.0:443")]
    https_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, default_value = "127.0.0.1:10254")]
    admin_addr: SocketAddr,
    /// The IngressClass `spec.controller` value handled.
    #[arg(long, default_value = DEFAULT_CONTROLLER)]
    controller_class: String,
    /// Also handle Ingresses without any class.
    #[arg(long)]
    watch_ingress_without_class: bool,
    /// Certificate Secret (NAMESPACE/NAME) served when SNI matches no
    /// Ingress certificate; reloaded whenever the Secret changes (a broken
    /// update keeps the previous certificate).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_secret_ref)]
    default_ssl_certificate: Option<SecretRef>,
    /// Address (IP or hostname) written into the status of our Ingresses
    /// (API server only).
    #[arg(long, value_name = "ADDRESS")]
    publish_status_address: Option<String>,
    /// On graceful shutdown (SIGTERM), the leader removes the
    /// --publish-status-address from the status of the Ingresses it owns,
    /// unless another replica (a Running Pod with this Pod's labels in
    /// --election-namespace) will take over.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    update_status_on_shutdown: bool,
    /// Name of the Lease electing the replica that writes status.
    #[arg(long, default_value = "sluice-ingress-leader")]
    election_id: String,
    /// Namespace of the election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    election_namespace: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Access log lines: `fields` (one event per request with typed
    /// fields, rendered by --log-format), `json` (one JSON object in the
    /// message) or `off`.
    #[arg(long, value_enum, default_value = "fields")]
    access_log: AccessLog,
    /// Tokio worker threads serving connections (default: one per CPU the
    /// process may run on). 1 runs everything on the main thread.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    #[command(flatten)]
    nginx: NginxFlags,
    #[command(flatten)]
    gateway: GatewayFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands (without one, the controller and gateway run).
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Reports what changes when ingress-nginx's Ingresses move to
    /// sluice-ingress: per Ingress and annotation (exit 1 if anything).
    MigrateCheck(sluice_ingress::migrate::cli::MigrateCheckArgs),
}

/// Access log choice on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AccessLog {
    /// One event per request with typed fields.
    Fields,
    /// One JSON object per request.
    Json,
    /// No access log.
    Off,
}

impl From<AccessLog> for AccessLogFormat {
    fn from(a: AccessLog) -> Self {
        match a {
            AccessLog::Fields => Self::Fields,
            AccessLog::Json => Self::Json,
            AccessLog::Off => Self::Off,
        }
    }
}

/// The access log's writer to stderr; `None` when it is off, by
/// `--access-log off` or by `RUST_LOG` filtering its target out (as
/// `tracing` did when it carried the lines).
fn access_log_writer(flags: &Flags) -> Result<Option<AccessLogWriter>, String> {
    let format = AccessLogFormat::from(flags.access_log);
    if format == AccessLogFormat::Off
        || !tracing::enabled!(target: "sluice_ingress::access", tracing::Level::INFO)
    {
        return Ok(None);
    }
    let style = LineStyle {
        format,
        json_envelope: flags.log_format == LogFormat::Json,
    };
    AccessLogWriter::stderr(style)
        .map(Some)
        .map_err(|e| format!("access log writer thread: {e}"))
}

fn parse_secret_ref(s: &str) -> Result<SecretRef, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(SecretRef {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => Err(format!("want NAMESPACE/NAME, got {s:?}")),
    }
}

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    sluice_kube::logging::init(flags.log_format == LogFormat::Json);
    if let Some(Command::MigrateCheck(args)) = flags.command {
        return migrate_check(args);
    }
    // One worker: the current-thread scheduler, which skips the work
    // stealing machinery (atomics, cross-thread wake-ups) that a single
    // worker cannot use.
    let mut builder = match flags.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-ingress: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(flags)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sluice-ingress: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn migrate_check(args: sluice_ingress::migrate::cli::MigrateCheckArgs) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-ingress: tokio runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    rt.block_on(async {
        let client = if args.needs_api() {
            let opts = ClientOptions {
                kubeconfig: args.kubeconfig.clone(),
                master: None,
                qps: 0.0,
                burst: 0,
            };
            match sluice_kube::client::client(&opts).await {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("sluice-ingress migrate-check: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        } else {
            None
        };
        sluice_ingress::migrate::cli::run(args, client).await
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// This replica's election identity: `$POD_NAME`, else the host name and
/// process id.
fn identity() -> String {
    if let Ok(p) = std::env::var("POD_NAME") {
        return p;
    }
    let host = sluice_kube::client::hostname().unwrap_or_else(|| "sluice-ingress".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Logs the warnings of an update that were not in the previous one.
fn log_warnings(update: &Update, logged: &mut Reported<String>) {
    let lines: BTreeSet<String> = update
        .computed
        .warnings()
        .into_iter()
        .map(|(ingress, reason, message)| match &ingress {
            Some(i) => format!("{reason}: ingress {i}: {message}"),
            None => format!("{reason}: {message}"),
        })
        .collect();
    for line in logged.pending(&lines) {
        tracing::warn!("{line}");
    }
    for line in lines {
        logged.mark(line);
    }
}

async fn run(flags: Flags) -> Result<(), String> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let access_log = access_log_writer(&flags)?;
    if let Some(w) = &access_log {
        w.register(&mut registry);
    }
    let registry = Arc::new(registry);
    let ready = Arc::new(AtomicBool::new(false));

    let admin = tokio::net::TcpListener::bind(flags.admin_addr)
        .await
        .map_err(|e| format!("admin listener {}: {e}", flags.admin_addr))?;
    tracing::info!(addr = %admin.local_addr().map_err(|e| e.to_string())?, "admin listening");
    let (reg, rdy) = (registry.clone(), ready.clone());
    tokio::spawn(admin::serve(admin, move |req| {
        admin_response(req.uri().path(), &reg, &rdy)
    }));

    let config = ControllerConfig {
        controller: flags.controller_class.clone(),
        watch_ingress_without_class: flags.watch_ingress_without_class,
        default_ssl_certificate: flags.default_ssl_certificate.clone(),
        ingress_nginx: flags.nginx.mode(),
    };
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let (up_tx, mut up_rx) = watch::channel(None::<Arc<Update>>);
    // The status writer and its election, for shutdown.
    let mut status_role = None;
    match &flags.manifests {
        Some(dir) => {
            if flags.publish_status_address.is_some() {
                tracing::warn!("--publish-status-address is ignored with --manifests");
            }
            tokio::spawn(controller::manifests::watch(
                dir.clone(),
                ev_tx,
                Duration::from_secs(1),
            ));
        }
        None => {
            let client = sluice_kube::client::client(&ClientOptions {
                kubeconfig: flags.kubeconfig.clone(),
                master: flags.apiserver_host.clone(),
                // ingress-nginx does not throttle its client either: status
                // on a thousand Ingresses must not take minutes.
                qps: 0.0,
                burst: 0,
            })
            .await
            .map_err(|e| e.to_string())?;
            tokio::spawn(controller::kube::run(
                client.clone(),
                ev_tx,
                flags.nginx.configmap.clone(),
                up_tx.subscribe(),
            ));
            tokio::spawn(controller::api::publish_events(
                client.clone(),
                up_tx.subscribe(),
            ));
            if let Some(addr) = flags.publish_status_address.clone() {
                let (leader_tx, leader_rx) = watch::channel(false);
                let lease = LeaseConfig {
                    namespace: flags.election_namespace.clone(),
                    name: flags.election_id.clone(),
                    identity: identity(),
                    lease_duration: Duration::from_secs(15),
                    retry: Duration::from_secs(5),
                };
                let election = tokio::spawn(controller::leader::run(
                    client.clone(),
                    lease.clone(),
                    leader_tx,
                ));
                let writer = tokio::spawn(controller::api::write_status(
                    client.clone(),
                    addr.clone(),
                    up_tx.subscribe(),
                    leader_rx.clone(),
                ));
                status_role = Some(StatusRole {
                    election,
                    writer,
                    client,
                    address: addr,
                    lease,
                    leader: leader_rx,
                    updates: up_tx.subscribe(),
                    update_status_on_shutdown: flags.update_status_on_shutdown,
                });
            }
        }
    }
    tokio::spawn(controller::run(config, ev_rx, up_tx, controller::DEBOUNCE));

    // The first snapshot.
    let first = tokio::select! {
        r = up_rx.wait_for(|u| u.is_some()) => match r {
            Ok(u) => u.clone().ok_or("no snapshot")?,
            Err(_) => return Err("controller stopped before the first snapshot".into()),
        },
        _ = shutdown_signal() => return Ok(()),
    };
    // The --default-ssl-certificate travels in every snapshot (so a Secret
    // update rotates it); until it loads, a self-signed one is served.
    if flags.default_ssl_certificate.is_some()
        && first.computed.routing.default_certificate.is_none()
    {
        tracing::warn!("--default-ssl-certificate not loaded; using a self-signed certificate");
    }
    let mut gw_config = GatewayConfig {
        http_addr: Some(flags.http_addr),
        https_addr: Some(flags.https_addr),
        https_redirect_port: Some(flags.https_addr.port()),
        access_log: access_log.clone(),
        ..GatewayConfig::default()
    };
    flags.gateway.apply(&mut gw_config);
    let gateway = Gateway::new(gw_config, metrics).map_err(|e| format!("gateway: {e}"))?;
    let mut seen = Reported::default();
    gateway.update(first.computed.routing.clone());
    log_warnings(&first, &mut seen);
    let server = gateway
        .bind()
        .await
        .map_err(|e| format!("listeners: {e}"))?;
    tracing::info!(
        http = ?server.http_addr(),
        https = ?server.https_addr(),
        routes = first.computed.routing.table.len(),
        "gateway listening"
    );
    ready.store(true, Ordering::SeqCst);

    let gw = gateway.clone();
    tokio::spawn(async move {
        while up_rx.changed().await.is_ok() {
            let update = up_rx.borrow_and_update().clone();
            if let Some(update) = update {
                gw.update(update.computed.routing.clone());
                tracing::info!(
                    generation = update.generation,
                    routes = update.computed.routing.table.len(),
                    "routing updated"
                );
                log_warnings(&update, &mut seen);
            }
        }
    });

    // On SIGTERM the listeners drain while the leader, at the same time,
    // takes our address out of Ingress status.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let readiness = ready.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        // Readiness fails first; the listeners drain after the grace
        // period, letting requests in flight finish.
        readiness.store(false, Ordering::SeqCst);
        stop_tx.send_replace(true);
    });
    let status = async {
        if let Some(role) = status_role {
            stopped(stop_rx.clone()).await;
            role.step_down().await;
        }
    };
    tokio::join!(server.serve(stopped(stop_rx.clone())), status);
    if let Some(w) = &access_log {
        w.flush(Duration::from_secs(2));
    }
    tracing::info!("stopped");
    Ok(())
}

/// The status writer, its election, and what stepping down needs.
struct StatusRole {
    election: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    client: kube::Client,
    address: String,
    lease: LeaseConfig,
    leader: watch::Receiver<bool>,
    updates: watch::Receiver<Option<Arc<Update>>>,
    update_status_on_shutdown: bool,
}

impl StatusRole {
    /// On shutdown: stop writing and campaigning; as the leader, take our
    /// address out of Ingress status (`--update-status-on-shutdown`)
    /// unless another replica is running and will take over, then release
    /// the Lease so that replica takes over at its next round.
    async fn step_down(self) {
        self.writer.abort();
        self.election.abort();
        if !*self.leader.borrow() {
            return;
        }
        let latest = self.updates.borrow().clone();
        if let (Some(update), true) = (latest, self.update_status_on_shutdown) {
            if self.other_replicas().await {
                tracing::info!(
                    "another replica is running; leaving Ingress status to the next leader"
                );
            } else {
                let removal =
                    controller::api::remove_status(self.client.clone(), &self.address, &update);
                if tokio::time::timeout(Duration::from_secs(10), removal)
                    .await
                    .is_err()
                {
                    tracing::warn!("removing Ingress status on shutdown timed out");
                }
            }
        }
        let api = kube::Api::namespaced(self.client.clone(), &self.lease.namespace);
        let release = controller::leader::release(&api, &self.lease);
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.lease.name, "released the Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the Lease failed"),
            Err(_) => tracing::warn!("releasing the Lease timed out"),
        }
    }

    /// Whether another replica (a Running Pod with this Pod's labels, in
    /// the election namespace) is up. Without `$POD_NAME`, or when the
    /// Pods cannot be listed, no.
    async fn other_replicas(&self) -> bool {
        let Ok(pod) = std::env::var("POD_NAME") else {
            return false;
        };
        let others = controller::api::other_replicas_running(
            self.client.clone(),
            &self.lease.namespace,
            &pod,
        );
        match tokio::time::timeout(Duration::from_secs(5), others).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list replicas; removing status anyway");
                false
            }
            Err(_) => {
                tracing::warn!("listing replicas timed out; removing status anyway");
                false
            }
        }
    }
}

/// `/healthz`, `/readyz` (ready once the first snapshot is served) and
/// `/metrics`.
fn admin_response(path: &str, registry: &Registry, ready: &AtomicBool) -> AdminResponse {
    let text =
        |status, body: &str| admin::response(status, "text/plain; charset=utf-8", body.into(), &[]);
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first routing snapshot, or shutting down\n",
        ),
        "/metrics" => admin::metrics(registry),
        _ => admin::not_found(),
    }
}
