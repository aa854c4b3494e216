//! The Pod status a kubelet would write, built from what the agent knows.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// Now, as a metav1.Time (RFC 3339, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// Now, as a metav1.MicroTime (RFC 3339, microseconds).
pub fn now_micro() -> String {
    let t = jiff::Timestamp::now();
    format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
}

/// One container as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// The container's name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Running since (metav1.Time), or why it is not running.
    pub state: ContainerState,
    /// Passing its readiness probe (or running, without one).
    pub ready: bool,
    /// Restarts so far.
    pub restarts: u32,
}

/// A container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Its process runs (pid, start time).
    Running(u32, String),
    /// It cannot start (reason, message).
    Waiting(String, String),
    /// Its process ended (exit code, time).
    Terminated(i32, String),
}

/// Everything the pod's status is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// The pod's address.
    pub pod_ip: Ipv4Addr,
    /// When the agent took the pod on.
    pub start_time: String,
    /// Its containers.
    pub containers: Vec<ContainerView>,
    /// True once the pod's processes were killed for good.
    pub finished: bool,
}

impl PodView {
    fn all_ready(&self) -> bool {
        !self.finished && !self.containers.is_empty() && self.containers.iter().all(|c| c.ready)
    }

    /// The `status` (for a strategic-merge patch of `pods/status`);
    /// `since` is the time of the last change of readiness.
    pub fn to_status(&self, since: &str) -> Value {
        let ready = if self.all_ready() { "True" } else { "False" };
        let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastTransitionTime": since});
        let phase = match (
            self.finished,
            self.containers
                .iter()
                .any(|c| matches!(c.state, ContainerState::Running(..))),
        ) {
            (true, _) => "Succeeded",
            (false, true) => "Running",
            (false, false) => "Pending",
        };
        json!({"status": {
            "phase": phase,
            "hostIP": self.host_ip.to_string(),
            "hostIPs": [{"ip": self.host_ip.to_string()}],
            "podIP": self.pod_ip.to_string(),
            "podIPs": [{"ip": self.pod_ip.to_string()}],
            "startTime": self.start_time,
            "conditions": [
                cond("PodReadyToStartContainers", "True"),
                cond("Initialized", "True"),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            "containerStatuses": self.containers.iter().map(container_status).collect::<Vec<_>>(),
        }})
    }
}

fn container_status(c: &ContainerView) -> Value {
    let (state, id) = match &c.state {
        ContainerState::Running(pid, at) => (
            json!({"running": {"startedAt": at}}),
            format!("sluice://{pid}"),
        ),
        ContainerState::Waiting(reason, message) => (
            json!({"waiting": {"reason": reason, "message": message}}),
            String::new(),
        ),
        ContainerState::Terminated(code, at) => (
            json!({"terminated": {"exitCode": code, "reason": if *code == 0 { "Completed" } else { "Error" }, "finishedAt": at}}),
            String::new(),
        ),
    };
    let mut v = json!({
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "ready": c.ready,
        "started": matches!(c.state, ContainerState::Running(..)),
        "restartCount": c.restarts,
        "state": state,
    });
    if !id.is_empty() {
        v["containerID"] = id.into();
    }
    v
}
