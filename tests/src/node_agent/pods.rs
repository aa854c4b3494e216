//! The pods bound to one simulated node: started as processes in their own
//! network namespaces, probed, reported, and terminated with their grace
//! period (see the module docs of [`super`]).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use super::Setup;
use super::network::{NodeNetwork, tag};
use super::probe::Readiness;
use super::registry::{self, ImageError, Launch};
use super::status::{self, ContainerState, ContainerView, PodView};
use crate::cluster::process;

const TICK: Duration = Duration::from_millis(200);
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

pub(super) struct Pods {
    client: kube::Client,
    node: String,
    host_ip: Ipv4Addr,
    testpod: PathBuf,
    busybox: PathBuf,
    network: NodeNetwork,
    running: HashMap<String, PodRun>,
}

struct PodRun {
    namespace: String,
    name: String,
    uid: String,
    ip: Ipv4Addr,
    netns: String,
    workdir: PathBuf,
    containers: Vec<ContainerRun>,
    start_time: String,
    /// Set once the pod is being deleted: when to kill it.
    deadline: Option<Instant>,
    finished: bool,
    last_sent: Option<PodView>,
    since: String,
}

struct ContainerRun {
    spec: Container,
    launch: Result<Launch, ImageError>,
    child: Option<Child>,
    started_at: String,
    restarts: u32,
    readiness: Option<Readiness>,
    ready: bool,
    exited: Option<(i32, String)>,
    restart_at: Option<Instant>,
}

impl Pods {
    pub(super) fn new(client: kube::Client, setup: &Setup, network: NodeNetwork) -> Self {
        Self {
            client,
            node: setup.config.name.clone(),
            host_ip: setup.address,
            testpod: setup.testpod.clone(),
            busybox: setup.busybox.clone(),
            network,
            running: HashMap::new(),
        }
    }

    /// Watches this node's pods and keeps them going until `stop`.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut events = watcher(api, cfg).default_backoff().boxed();
        let mut tick = tokio::time::interval(TICK);
        let mut listing: Option<HashSet<String>> = None;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(watcher::Event::Init)) => listing = Some(HashSet::new()),
                    Some(Ok(watcher::Event::InitApply(p))) => {
                        if let Some(l) = listing.as_mut() {
                            l.insert(uid(&p));
                        }
                        self.on_pod(p).await;
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        let seen = listing.take().unwrap_or_default();
                        let gone: Vec<String> =
                            self.running.keys().filter(|u| !seen.contains(*u)).cloned().collect();
                        for u in gone {
                            self.forget(&u);
                        }
                    }
                    Some(Ok(watcher::Event::Apply(p))) => self.on_pod(p).await,
                    Some(Ok(watcher::Event::Delete(p))) => self.forget(&uid(&p)),
                    Some(Err(e)) => eprintln!("node agent {}: pod watch: {e}", self.node),
                    None => return,
                },
                _ = tick.tick() => self.tick().await,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn on_pod(&mut self, pod: Pod) {
        let u = uid(&pod);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let done = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        match self.running.get_mut(&u) {
            Some(run) if deleting && run.deadline.is_none() => {
                let grace = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .unwrap_or(30)
                    .max(0);
                run.begin_termination(Duration::from_secs(grace as u64));
            }
            // Someone else changed the status (the node lifecycle
            // controller marks pods NotReady when the node's heartbeat
            // lapses): write ours again, as the kubelet's status manager
            // does.
            Some(run) => {
                if run
                    .last_sent
                    .as_ref()
                    .is_some_and(|v| !reported_matches(&pod, v))
                {
                    run.last_sent = None;
                }
            }
            None if deleting => self.delete_now(&pod).await,
            None if done => {}
            None => self.start(pod).await,
        }
    }

    async fn start(&mut self, pod: Pod) {
        let (namespace, name, u) = (namespace(&pod), name(&pod), uid(&pod));
        let Some(ip) = self.network.allocate() else {
            eprintln!(
                "node agent {}: podCIDR exhausted; {namespace}/{name} not started",
                self.node
            );
            return;
        };
        let netns = format!("skp{}", tag(&u));
        if let Err(e) = self.network.add_pod(&netns, ip) {
            eprintln!("node agent {}: {namespace}/{name}: {e}", self.node);
            self.network.release(ip);
            return;
        }
        let workdir =
            std::env::temp_dir().join(format!("sluice-pod-{}-{}", std::process::id(), tag(&u)));
        let _ = std::fs::create_dir_all(&workdir);
        let _ = std::fs::write(workdir.join("index.html"), format!("{name}\n"));
        let specs = pod.spec.map(|s| s.containers).unwrap_or_default();
        let containers = specs
            .into_iter()
            .map(|spec| ContainerRun {
                launch: registry::resolve(&spec, &self.testpod, &self.busybox),
                readiness: Readiness::of(&spec),
                spec,
                child: None,
                started_at: String::new(),
                restarts: 0,
                ready: false,
                exited: None,
                restart_at: Some(Instant::now()),
            })
            .collect();
        let now = status::now();
        let run = PodRun {
            namespace,
            name,
            uid: u.clone(),
            ip,
            netns,
            workdir,
            containers,
            start_time: now.clone(),
            deadline: None,
            finished: false,
            last_sent: None,
            since: now,
        };
        self.running.insert(u, run);
    }

    /// A pod deleted before it ever ran here: nothing to stop.
    async fn delete_now(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace(pod));
        let _ = api.delete(&name(pod), &final_delete(&uid(pod))).await;
    }

    /// The pod is gone from the API: stop everything of it.
    fn forget(&mut self, uid: &str) {
        if let Some(mut run) = self.running.remove(uid) {
            run.kill();
            self.network.remove_pod(&run.netns);
            self.network.release(run.ip);
            let _ = std::fs::remove_dir_all(&run.workdir);
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let mut finished = Vec::new();
        for run in self.running.values_mut() {
            run.supervise(now);
            run.probe(now).await;
            if run.deadline.is_some_and(|d| now >= d) || run.all_exited_while_terminating() {
                run.kill();
                run.finished = true;
                finished.push(run.uid.clone());
            }
            run.report(&self.client, self.host_ip).await;
        }
        for u in finished {
            if let Some(run) = self.running.get(&u) {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &run.namespace);
                let _ = api.delete(&run.name, &final_delete(&u)).await;
            }
            self.forget(&u);
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        let uids: Vec<String> = self.running.keys().cloned().collect();
        for u in uids {
            self.forget(&u);
        }
    }
}

impl PodRun {
    fn begin_termination(&mut self, grace: Duration) {
        self.deadline = Some(Instant::now() + grace);
        for c in &mut self.containers {
            if let Some(child) = &c.child {
                process::signal(child, libc::SIGTERM);
            }
            c.restart_at = None;
        }
    }

    fn all_exited_while_terminating(&self) -> bool {
        self.deadline.is_some() && self.containers.iter().all(|c| c.child.is_none())
    }

    /// Reaps exited processes and (re)starts containers that are due.
    fn supervise(&mut self, now: Instant) {
        for c in &mut self.containers {
            if let Some(child) = &mut c.child
                && let Ok(Some(st)) = child.try_wait()
            {
                c.child = None;
                c.ready = false;
                c.exited = Some((st.code().unwrap_or(137), status::now()));
                if self.deadline.is_none() {
                    c.restart_at = Some(now + RESTART_BACKOFF);
                }
            }
            if c.child.is_none()
                && c.restart_at.is_some_and(|t| now >= t)
                && self.deadline.is_none()
            {
                c.restart_at = None;
                if let Ok(launch) = &c.launch {
                    match spawn(
                        launch,
                        &self.netns,
                        &self.workdir,
                        &self.namespace,
                        &self.name,
                        self.ip,
                        &c.spec.name,
                    ) {
                        Ok(child) => {
                            if c.exited.is_some() {
                                c.restarts += 1;
                            }
                            c.child = Some(child);
                            c.started_at = status::now();
                            if let Some(r) = &mut c.readiness {
                                r.reset(now);
                            }
                        }
                        Err(e) => {
                            eprintln!(
                                "pod {}/{}: starting {}: {e}",
                                self.namespace, self.name, c.spec.name
                            );
                            c.restart_at = Some(now + RESTART_BACKOFF);
                        }
                    }
                }
            }
        }
    }

    async fn probe(&mut self, now: Instant) {
        let ip = IpAddr::V4(self.ip);
        for c in &mut self.containers {
            if c.child.is_none() {
                c.ready = false;
                continue;
            }
            c.ready = match &mut c.readiness {
                None => true,
                Some(r) => r.tick(ip, now, c.ready).await.unwrap_or(c.ready),
            };
        }
    }

    fn view(&self, host_ip: Ipv4Addr) -> PodView {
        let containers = self
            .containers
            .iter()
            .map(|c| ContainerView {
                name: c.spec.name.clone(),
                image: c.spec.image.clone().unwrap_or_default(),
                ready: c.ready,
                restarts: c.restarts,
                state: match (&c.child, &c.launch, &c.exited) {
                    (Some(child), _, _) => {
                        ContainerState::Running(child.id(), c.started_at.clone())
                    }
                    (None, Err(e), _) => {
                        ContainerState::Waiting("ErrImagePull".into(), e.to_string())
                    }
                    (None, Ok(_), Some((code, at))) => {
                        ContainerState::Terminated(*code, at.clone())
                    }
                    (None, Ok(_), None) => {
                        ContainerState::Waiting("ContainerCreating".into(), String::new())
                    }
                },
            })
            .collect();
        PodView {
            host_ip,
            pod_ip: self.ip,
            start_time: self.start_time.clone(),
            containers,
            finished: self.finished,
        }
    }

    /// Writes the status if it changed since the last write.
    async fn report(&mut self, client: &kube::Client, host_ip: Ipv4Addr) {
        let view = self.view(host_ip);
        if self.last_sent.as_ref() == Some(&view) {
            return;
        }
        let readiness = |v: &PodView| v.containers.iter().map(|c| c.ready).collect::<Vec<_>>();
        if self
            .last_sent
            .as_ref()
            .is_none_or(|old| readiness(old) != readiness(&view))
        {
            self.since = status::now();
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let body = view.to_status(&self.since);
        match api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Strategic(&body),
            )
            .await
        {
            Ok(_) => self.last_sent = Some(view),
            Err(kube::Error::Api(s)) if s.code == 404 => self.last_sent = Some(view),
            Err(e) => eprintln!("pod {}/{}: writing status: {e}", self.namespace, self.name),
        }
    }

    fn kill(&mut self) {
        for c in &mut self.containers {
            if let Some(mut child) = c.child.take() {
                let _ = child.kill();
                let _ = child.wait();
                c.exited = Some((137, status::now()));
            }
            c.ready = false;
            c.restart_at = None;
        }
    }
}

/// Runs one container's program in the pod's namespace; its output goes to
/// `<workdir>/<container>.log`.
fn spawn(
    launch: &Launch,
    netns: &str,
    workdir: &std::path::Path,
    namespace: &str,
    pod: &str,
    ip: Ipv4Addr,
    container: &str,
) -> std::io::Result<Child> {
    let log = std::fs::File::create(workdir.join(format!("{container}.log")))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .args(&launch.argv)
        .current_dir(workdir)
        .env("POD_NAME", pod)
        .env("NAMESPACE", namespace)
        .env("POD_IP", ip.to_string())
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    process::spawn(cmd)
}

/// True if the pod's status in the API says what `view` says about
/// readiness and addresses.
fn reported_matches(pod: &Pod, view: &PodView) -> bool {
    let Some(st) = pod.status.as_ref() else {
        return false;
    };
    let ready = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .is_some_and(|c| c.status == "True");
    let want_ready =
        !view.finished && !view.containers.is_empty() && view.containers.iter().all(|c| c.ready);
    ready == want_ready && st.pod_ip.as_deref() == Some(view.pod_ip.to_string().as_str())
}

fn final_delete(uid: &str) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn namespace(p: &Pod) -> String {
    p.metadata.namespace.clone().unwrap_or_default()
}
