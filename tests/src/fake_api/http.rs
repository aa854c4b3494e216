//! HTTP: URL routing, query parsing, and the handlers for each verb.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use super::log::{RequestRecord, Verb};
use super::meta::meta_str;
use super::patch::PatchKind;
use super::resources::{self, RESOURCES, ResourceId};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::{self, ApiError};
use super::store::{Deleted, Origin, Part, Store};
use super::watch::{self, Filter, WatchParams};

/// Response body: a full JSON document or a watch stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 16 << 20;

/// What a resource URL names.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    rt: ResourceId,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    /// Legacy `/watch/` path prefix.
    legacy_watch: bool,
}

#[derive(Debug, PartialEq)]
enum Route {
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
fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn flag(q: &[(String, String)], key: &str) -> bool {
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
fn route(path: &str) -> Result<Route, ApiError> {
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

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Builds the record of a request, filled in as handling proceeds.
fn record_for(req: &Request<Incoming>, query: &[(String, String)]) -> RequestRecord {
    RequestRecord {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: query.to_vec(),
        verb: Verb::Other,
        group: String::new(),
        resource: String::new(),
        namespace: None,
        name: None,
        subresource: None,
        content_type: req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: None,
        status: 0,
    }
}

fn verb_of(method: &Method, t: &Target, query: &[(String, String)]) -> Verb {
    match (method.as_str(), t.name.is_some()) {
        ("GET", true) => Verb::Get,
        ("GET", false) if t.legacy_watch || flag(query, "watch") => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => Verb::Other,
    }
}

/// Answers one HTTP request. Never fails: errors become `Status` replies.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let query = parse_query(req.uri().query());
    let mut rec = record_for(&req, &query);
    let resp = if shared.is_unavailable() {
        let mut r = error_response(&ApiError::unavailable());
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        r
    } else {
        match route(req.uri().path()) {
            Err(e) => error_response(&e),
            Ok(Route::Ok) => {
                let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                r
            }
            Ok(Route::Doc(v)) => json_response(200, &v),
            Ok(Route::Resource(t)) => {
                let r = &RESOURCES[t.rt];
                rec.verb = verb_of(req.method(), &t, &query);
                rec.group = r.group.to_string();
                rec.resource = r.plural.to_string();
                rec.namespace = t.ns.clone();
                rec.name = t.name.clone();
                rec.subresource = t.sub.clone();
                let method = req.method().clone();
                match read_body(req).await {
                    Err(e) => error_response(&e),
                    Ok(body) => {
                        if !body.is_empty() {
                            rec.body = serde_json::from_slice(&body).ok();
                        }
                        match resource_request(&shared, &method, rec.verb, &t, &query, &rec, &body)
                        {
                            Ok(resp) => resp,
                            Err(e) => error_response(&e),
                        }
                    }
                }
            }
        }
    };
    rec.status = resp.status().as_u16();
    shared.record(rec);
    Ok(resp)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: json parse error: {e}"
        ))
    })
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version {s:?}")))
}

fn filter_for(t: &Target, query: &[(String, String)]) -> Result<Filter, ApiError> {
    Ok(Filter {
        rt: t.rt,
        ns: t.ns.clone(),
        labels: LabelSelector::parse(param(query, "labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(
            param(query, "fieldSelector").unwrap_or(""),
            &RESOURCES[t.rt],
        )?,
    })
}

/// Runs a write against the store (or a scratch copy of it for
/// `dryRun=All`), then wakes watchers.
fn write<T>(
    shared: &Shared,
    query: &[(String, String)],
    f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    if param(query, "dryRun") == Some("All") {
        let mut scratch = shared.store().clone();
        return f(&mut scratch);
    }
    shared.write(f)
}

fn resource_request(
    shared: &Arc<Shared>,
    method: &Method,
    verb: Verb,
    t: &Target,
    query: &[(String, String)],
    rec: &RequestRecord,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let r = &RESOURCES[t.rt];
    let ns = t.ns.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let part = if t.sub.is_some() {
        Part::Status
    } else {
        Part::Main
    };
    if t.sub.is_some() && !matches!(verb, Verb::Get | Verb::Update | Verb::Patch) {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    match verb {
        Verb::Get => {
            let store = shared.store();
            let obj = store
                .get(t.rt, &ns, &name)
                .ok_or_else(|| ApiError::not_found(r, &name))?;
            Ok(json_response(200, obj))
        }
        Verb::List => Ok(json_response(200, &list(shared, t, query)?)),
        Verb::Watch => watch_response(shared, t, query),
        Verb::Create => {
            if r.namespaced && t.ns.is_none() {
                return Err(ApiError::method_not_allowed(method.as_str()));
            }
            let obj = parse_json(body)?;
            let created = write(shared, query, |s| s.create(t.rt, &ns, obj, Origin::Api))?;
            Ok(json_response(201, &created))
        }
        Verb::Update => {
            let obj = parse_json(body)?;
            let updated = write(shared, query, |s| s.update(t.rt, &ns, &name, obj, part))?;
            Ok(json_response(200, &updated))
        }
        Verb::Patch => {
            let ct = rec.content_type.as_deref().unwrap_or("");
            let kind = PatchKind::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            if kind == PatchKind::Apply && param(query, "fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "PATCH /apply requires fieldManager to be set",
                ));
            }
            let patch = parse_json(body)?;
            let (obj, created) = write(shared, query, |s| {
                s.patch(t.rt, &ns, &name, kind, &patch, part)
            })?;
            Ok(json_response(if created { 201 } else { 200 }, &obj))
        }
        Verb::Delete => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                parse_json(body)?
            };
            let pre_uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let pre_rv = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str);
            let res = write(shared, query, |s| {
                s.delete(t.rt, &ns, &name, pre_uid, pre_rv, false)
            })?;
            Ok(match res {
                Deleted::Gone(last) => {
                    json_response(200, &status::success(r, &name, meta_str(&last, "uid")))
                }
                Deleted::Pending(obj) => json_response(200, &obj),
            })
        }
        Verb::DeleteCollection => {
            let filter = filter_for(t, query)?;
            let deleted = write(shared, query, |s| {
                let keys: Vec<_> = s
                    .list(t.rt, t.ns.as_deref(), |o| filter.matches(o))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut out = Vec::new();
                for (ns, name) in keys {
                    match s.delete(t.rt, &ns, &name, None, None, false)? {
                        Deleted::Gone(o) | Deleted::Pending(o) => out.push(o),
                    }
                }
                Ok((out, s.rv()))
            })?;
            let (items, rv) = deleted;
            Ok(json_response(
                200,
                &json!({
                    "kind": r.list_kind(), "apiVersion": r.api_version(),
                    "metadata": { "resourceVersion": rv.to_string() },
                    "items": items,
                }),
            ))
        }
        Verb::Other => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// LIST with selectors and `limit`/`continue` pagination. Continue tokens
/// carry the first page's resourceVersion and the last key served.
fn list(shared: &Shared, t: &Target, query: &[(String, String)]) -> Result<Value, ApiError> {
    let r = &RESOURCES[t.rt];
    let filter = filter_for(t, query)?;
    let limit = match param(query, "limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let store = shared.store();
    let rv_param = param(query, "resourceVersion").filter(|s| !s.is_empty());
    let rv_match = param(query, "resourceVersionMatch").filter(|s| !s.is_empty());
    if let Some(rv) = rv_param {
        let rv = parse_rv(rv)?;
        if rv_match == Some("Exact") && rv < store.floor() {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                store.floor()
            )));
        }
    } else if rv_match.is_some() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let (list_rv, after) = match param(query, "continue").filter(|s| !s.is_empty()) {
        None => (store.rv(), None),
        Some(tok) => {
            let bad = || ApiError::bad_request("continue key is not valid");
            let mut parts = tok.splitn(3, ':');
            let rv = parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(bad)?;
            let ns = parts.next().ok_or_else(bad)?.to_string();
            let name = parts.next().ok_or_else(bad)?.to_string();
            (rv, Some((ns, name)))
        }
    };
    let mut items = Vec::new();
    let mut remaining = 0usize;
    let mut last_key = None;
    for (key, obj) in store.list(t.rt, t.ns.as_deref(), |o| filter.matches(o)) {
        if after.as_ref().is_some_and(|a| key <= a) {
            continue;
        }
        if limit > 0 && items.len() >= limit {
            remaining += 1;
            continue;
        }
        let mut item = obj.clone();
        // Like the real server, list items carry no apiVersion/kind.
        if let Value::Object(m) = &mut item {
            m.remove("apiVersion");
            m.remove("kind");
        }
        items.push(item);
        last_key = Some(key.clone());
    }
    let mut meta = json!({ "resourceVersion": list_rv.to_string() });
    if remaining > 0
        && let Some((ns, name)) = last_key
    {
        meta["continue"] = json!(format!("{list_rv}:{ns}:{name}"));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(json!({
        "kind": r.list_kind(),
        "apiVersion": r.api_version(),
        "metadata": meta,
        "items": items,
    }))
}

fn watch_response(
    shared: &Arc<Shared>,
    t: &Target,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let filter = filter_for(t, query)?;
    let rv = match param(query, "resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(s) => Some(parse_rv(s)?),
    };
    let timeout = match param(query, "timeoutSeconds") {
        None | Some("") => shared.config.max_watch_timeout,
        Some(s) => {
            let secs: u64 = s
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?;
            let t = (secs > 0).then(|| Duration::from_secs(secs));
            match (t, shared.config.max_watch_timeout) {
                (Some(t), Some(max)) => Some(t.min(max)),
                (t, max) => t.or(max),
            }
        }
    };
    let params = WatchParams {
        rv,
        send_initial_events: flag(query, "sendInitialEvents"),
        bookmarks: flag(query, "allowWatchBookmarks"),
        timeout,
    };
    if params.send_initial_events && !params.bookmarks {
        return Err(ApiError::bad_request(
            "sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }
    let stream =
        watch::start(shared.clone(), filter, params).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
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
