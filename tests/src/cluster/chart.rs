//! The Helm chart against the real API server: rendered by Helm's own SDK
//! (`tests/chart/render.py` in `.venv-chart/`, which `scripts/test.sh`
//! installs), its RBAC read back as typed grants, and compared with what
//! the audit log says our programs did — least privilege both ways.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::audit::Event;

/// Why the chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The chart venv is missing (run `scripts/test.sh`, or create
    /// `.venv-chart/` from `tests/chart/requirements.txt`).
    #[error("no chart renderer: {0}")]
    Unavailable(String),
    /// Helm refused, or the output is not YAML.
    #[error("rendering: {0}")]
    Render(String),
}

fn python() -> Result<PathBuf, ChartError> {
    let p = super::repo_root().join(".venv-chart/bin/python");
    if p.is_file() {
        Ok(p)
    } else {
        Err(ChartError::Unavailable(format!(
            "{} missing (scripts/test.sh creates it)",
            p.display()
        )))
    }
}

fn run(args: &[&str]) -> Result<String, ChartError> {
    let out = Command::new(python()?)
        .arg(super::repo_root().join("tests/chart/render.py"))
        .args(args)
        .output()
        .map_err(|e| ChartError::Render(e.to_string()))?;
    if !out.status.success() {
        return Err(ChartError::Render(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True if the chart can be rendered here; otherwise prints `SKIPPED` —
/// except under `CI=true`, where it panics.
pub fn available_or_skip(what: &str) -> bool {
    match python() {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{what}: {e}");
            }
            eprintln!("SKIPPED: {what}: {e}");
            false
        }
    }
}

/// The documented value combinations (`COMBINATIONS` in render.py).
pub fn variants() -> Result<Vec<String>, ChartError> {
    Ok(run(&[])?.lines().map(str::to_owned).collect())
}

/// A variant's rendered objects, as multi-document YAML.
pub fn render_variant(name: &str) -> Result<String, ChartError> {
    run(&[name])
}

/// The objects for `values` (chart values as JSON).
pub fn render_values(values: &Value) -> Result<String, ChartError> {
    run(&["--values", &values.to_string()])
}

/// The rendered objects of `yaml`, parsed.
pub fn objects(yaml: &str) -> Result<Vec<Value>, ChartError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| ChartError::Render(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The rendered objects of the kinds RBAC needs (and the ServiceAccounts),
/// as YAML to apply.
pub fn rbac_only(yaml: &str) -> Result<String, ChartError> {
    const KINDS: [&str; 5] = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let keep: Vec<String> = objects(yaml)?
        .into_iter()
        .filter(|o| KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .map(|o| o.to_string())
        .collect();
    Ok(keep.join("\n---\n"))
}

/// One (apiGroup, resource, verb) a Role or ClusterRole grants a subject,
/// with its resourceNames and, for a Role, its namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// `""` for the core group.
    pub api_group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// The verb.
    pub verb: String,
    /// Empty: any name.
    pub resource_names: Vec<String>,
    /// `Some` for a Role (only that namespace).
    pub namespace: Option<String>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = if self.api_group.is_empty() {
            "core"
        } else {
            &self.api_group
        };
        write!(f, "{} {g}/{}", self.verb, self.resource)?;
        if !self.resource_names.is_empty() {
            write!(f, " {:?}", self.resource_names)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        Ok(())
    }
}

/// Every grant the rendered objects give ServiceAccount
/// `namespace/name`, through its (Cluster)RoleBindings.
pub fn grants_for(yaml: &str, namespace: &str, name: &str) -> Result<Vec<Grant>, ChartError> {
    let objs = objects(yaml)?;
    let role = |kind: &str, role_name: &str, ns: Option<&str>| {
        objs.iter().find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == role_name
                && ns.is_none_or(|ns| o["metadata"]["namespace"] == ns)
        })
    };
    let mut out = Vec::new();
    for b in &objs {
        let kind = b["kind"].as_str().unwrap_or_default();
        if kind != "ClusterRoleBinding" && kind != "RoleBinding" {
            continue;
        }
        let ours = b["subjects"].as_array().into_iter().flatten().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == name && s["namespace"] == namespace
        });
        if !ours {
            continue;
        }
        let bound_ns = (kind == "RoleBinding")
            .then(|| b["metadata"]["namespace"].as_str().unwrap_or_default());
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = b["roleRef"]["name"].as_str().unwrap_or_default();
        let Some(r) = role(
            role_kind,
            role_name,
            bound_ns.filter(|_| role_kind == "Role"),
        ) else {
            return Err(ChartError::Render(format!(
                "{kind} refers to a missing {role_kind} {role_name}"
            )));
        };
        for rule in r["rules"].as_array().into_iter().flatten() {
            let strs = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            for g in strs("apiGroups") {
                for res in strs("resources") {
                    for verb in strs("verbs") {
                        out.push(Grant {
                            api_group: g.clone(),
                            resource: res.clone(),
                            verb,
                            resource_names: strs("resourceNames"),
                            namespace: bound_ns.map(str::to_owned),
                        });
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// True if `grant` covers the audited request `e`.
pub fn covers(grant: &Grant, e: &Event) -> bool {
    let Some(o) = &e.object_ref else {
        return false;
    };
    let resource = match o.subresource.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{}/{sub}", o.resource),
        None => o.resource.clone(),
    };
    grant.verb == e.verb
        && grant.api_group == o.api_group.clone().unwrap_or_default()
        && grant.resource == resource
        && (grant.resource_names.is_empty()
            || o.name
                .as_ref()
                .is_some_and(|n| grant.resource_names.contains(n)))
        && grant
            .namespace
            .as_ref()
            .is_none_or(|ns| o.namespace.as_ref() == Some(ns))
}

/// What the audit log says about one ServiceAccount against its grants.
#[derive(Debug, Default)]
pub struct Privilege {
    /// Requests refused (401/403): the chart grants too little.
    pub refused: Vec<String>,
    /// Grants no request used: the chart grants too much (or the scenario
    /// missed a code path).
    pub unused: Vec<Grant>,
}

/// Compares the requests `user` made (audit `events`) with `grants`.
pub fn check_privilege(grants: &[Grant], events: &[Event], user: &str) -> Privilege {
    let mine: Vec<&Event> = events.iter().filter(|e| e.user.username == user).collect();
    let refused = mine
        .iter()
        .filter(|e| e.code() == 401 || e.code() == 403)
        .map(|e| format!("{} {} -> {}", e.verb, e.request_uri, e.code()))
        .collect();
    let unused = grants
        .iter()
        .filter(|g| !mine.iter().any(|e| covers(g, e)))
        .cloned()
        .collect();
    Privilege { refused, unused }
}
