//! HTTP: the request handler and one function per verb.

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
use super::resources::RESOURCES;
use super::routing::{Route, Target, flag, param, parse_query, route};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::{self, ApiError};
use super::store::{Deleted, Origin, Part, Store};
use super::watch::{self, Filter, WatchParams};

/// Response body: a full JSON document or a watch stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 16 << 20;

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
