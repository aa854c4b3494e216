//! URL routing and query-string parsing.

use serde_json::{Value, json};

use super::resources::{self, RESOURCES, ResourceId};
use super::status::ApiError;

/// What a resource URL names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// Resource type.
    pub rt: ResourceId,
    /// Namespace in the path (none: cluster-scoped, or all namespaces).
    pub ns: Option<String>,
    /// Object name (none: the collection).
    pub name: Option<String>,
    /// Subresource (`status`).
    pub sub: Option<String>,
    /// Legacy `/watch/` path prefix.
    pub legacy_watch: bool,
}

/// What a path names.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    /// A resource collection, object or subresource.
    Resource(Target),
    /// A non-resource path answered with a fixed document.
    Doc(Value),
    /// `/healthz` and friends.
    Ok,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a query string into ordered key/value pairs.
pub(crate) fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub(crate) fn flag(q: &[(String, String)], key: &str) -> bool {
    matches!(param(q, key), Some("true" | "1"))
}

fn api_resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources })
}

fn discovery_root(group_prefix: bool) -> Value {
    if !group_prefix {
        return json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] });
    }
    let groups: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
            json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// Maps a URL path to what it names.
pub(crate) fn route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => return Ok(Route::Ok),
        ["version"] => {
            return Ok(Route::Doc(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-sluice-fake",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
                "goVersion": "", "compiler": "", "platform": "linux/amd64"
            })));
        }
        ["api"] => return Ok(Route::Doc(discovery_root(false))),
        ["apis"] => return Ok(Route::Doc(discovery_root(true))),
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    if !resources::group_versions().contains(&(group, version)) {
        return Err(ApiError::no_route());
    }
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    if rest.is_empty() && !legacy_watch {
        return Ok(Route::Doc(api_resource_list(group, version)));
    }
    let namespaced_in = |plural: &str| {
        resources::by_path(group, version, plural).filter(|id| RESOURCES[*id].namespaced)
    };
    let (rt, ns, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if namespaced_in(plural).is_some() => {
            (namespaced_in(plural), Some(ns.to_string()), tail)
        }
        [plural, tail @ ..] => (resources::by_path(group, version, plural), None, tail),
        [] => (None, None, rest),
    };
    let rt = rt.ok_or_else(ApiError::no_route)?;
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    let r = &RESOURCES[rt];
    // Namespaced objects are addressed inside a namespace; cluster-scoped
    // ones never are. (A namespaced collection without one lists all.)
    if (r.namespaced && ns.is_none() && name.is_some()) || (!r.namespaced && ns.is_some()) {
        return Err(ApiError::no_route());
    }
    if sub
        .as_deref()
        .is_some_and(|s| s != "status" || !r.has_status)
    {
        return Err(ApiError::no_route());
    }
    if legacy_watch && name.is_some() {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource(Target {
        rt,
        ns,
        name,
        sub,
        legacy_watch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let svc = resources::by_path("", "v1", "services").unwrap();
        let node = resources::by_path("", "v1", "nodes").unwrap();
        let ns = resources::by_path("", "v1", "namespaces").unwrap();
        let ing = resources::by_path("networking.k8s.io", "v1", "ingresses").unwrap();
        let t = |rt, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
            Route::Resource(Target {
                rt,
                ns: ns.map(str::to_string),
                name: name.map(str::to_string),
                sub: sub.map(str::to_string),
                legacy_watch: false,
            })
        };
        assert_eq!(route("/api/v1/services").unwrap(), t(svc, None, None, None));
        assert_eq!(
            route("/api/v1/namespaces/d/services/x/status").unwrap(),
            t(svc, Some("d"), Some("x"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/nodes/n1/status").unwrap(),
            t(node, None, Some("n1"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/namespaces/d").unwrap(),
            t(ns, None, Some("d"), None)
        );
        assert_eq!(
            route("/api/v1/namespaces").unwrap(),
            t(ns, None, None, None)
        );
        assert_eq!(
            route("/apis/networking.k8s.io/v1/namespaces/d/ingresses").unwrap(),
            t(ing, Some("d"), None, None)
        );
        for bad in [
            "/api/v1/services/x",
            "/api/v1/namespaces/d/nodes",
            "/api/v1/namespaces/d/configmaps/x/status",
            "/api/v2/services",
            "/apis/nope/v1/x",
            "/api/v1/namespaces/d/services/x/status/y",
            "/nonsense",
        ] {
            assert!(route(bad).is_err(), "{bad}");
        }
        assert!(matches!(route("/api/v1").unwrap(), Route::Doc(_)));
        assert!(matches!(route("/apis").unwrap(), Route::Doc(_)));
    }

    #[test]
    fn query() {
        let q = parse_query(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x&bad=%zz%4",
        ));
        assert_eq!(param(&q, "labelSelector"), Some("app=web,tier in (a)"));
        assert!(flag(&q, "watch"));
        assert_eq!(param(&q, "x"), Some(""));
        assert_eq!(param(&q, "bad"), Some("%zz%4"));
    }
}
