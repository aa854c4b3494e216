//! The API server's audit log: every request with its user, verb,
//! resource and response code. Least-privilege checks read it both ways:
//! nothing our ServiceAccounts asked for was refused, and everything the
//! chart grants was asked for by some code path.

use std::path::Path;

use serde::Deserialize;

/// The audit policy the test cluster runs with: metadata of every request
/// (no bodies), once the response is complete (or, for watches, started).
pub const POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

/// One audited request (the fields the tests use).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `ResponseStarted` (long-running requests such as watches) or
    /// `ResponseComplete`.
    pub stage: String,
    /// The request's path and query (`requestURI` in the log: not the
    /// camelCase of the field name).
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// Who asked.
    pub user: User,
    /// What it was about (absent for non-resource URLs such as `/version`).
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    /// The HTTP status answered.
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
}

/// The authenticated user of a request.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// e.g. `system:serviceaccount:kube-system:sluice-proxy`.
    #[serde(default)]
    pub username: String,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The object a request addressed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// e.g. `services`, `endpointslices`, `leases`.
    #[serde(default)]
    pub resource: String,
    /// e.g. `status`.
    #[serde(default)]
    pub subresource: Option<String>,
    /// Empty for cluster-scoped objects and all-namespace requests.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Empty for collection requests.
    #[serde(default)]
    pub name: Option<String>,
    /// Empty for the core group.
    #[serde(default)]
    pub api_group: Option<String>,
}

/// The response's status.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseStatus {
    /// The HTTP status code.
    #[serde(default)]
    pub code: u16,
}

impl Event {
    /// The HTTP status code (0 if none was recorded).
    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map_or(0, |s| s.code)
    }

    /// `resource` or `resource/subresource`, with `group/` in front for
    /// named API groups: the form RBAC rules are written in.
    pub fn resource(&self) -> Option<String> {
        let o = self.object_ref.as_ref()?;
        let mut r = match o.api_group.as_deref() {
            Some(g) if !g.is_empty() => format!("{g}/{}", o.resource),
            _ => o.resource.clone(),
        };
        if let Some(s) = o.subresource.as_deref().filter(|s| !s.is_empty()) {
            r = format!("{r}/{s}");
        }
        Some(r)
    }
}

/// Reads every event in the log at `path` (JSON lines; lines that do not
/// parse are skipped — the file may be mid-write).
pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_server_audit_line_parses_with_its_request_uri() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Ftls","verb":"list","user":{"username":"system:serviceaccount:kube-system:sluice-ingress","groups":["system:serviceaccounts"]},"objectRef":{"resource":"secrets","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200}}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(
            e.request_uri,
            "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Ftls"
        );
        assert_eq!(e.code(), 200);
        assert_eq!(e.resource().as_deref(), Some("secrets"));
    }
}
