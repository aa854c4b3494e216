//! PATCH bodies: JSON merge patch (RFC 7386), a reduced strategic merge
//! patch, and JSON patch (RFC 6902).

use serde_json::{Map, Value};

use super::status::ApiError;

/// The patch flavours, by request `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml` (server-side apply, JSON bodies only)
    Apply,
}

impl PatchKind {
    /// Maps a `Content-Type` header (parameters ignored) to a patch kind.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Applies a patch of the given kind to `target`.
pub(crate) fn apply(kind: PatchKind, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Merge => Ok(merge_patch(target, patch)),
        PatchKind::Strategic | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch must be a JSON object",
                ));
            }
            Ok(strategic(target, patch, &mut Vec::new()))
        }
        PatchKind::Json => json_patch(target, patch),
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes,
/// anything else (arrays included) replaces.
pub(crate) fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// Lists that Kubernetes merges by key under strategic merge patch, for the
/// types this server serves (path from the object root → merge key).
/// Every other list is replaced wholesale, as JSON merge patch does.
const MERGE_KEYS: &[(&[&str], &str)] = &[
    (&["status", "conditions"], "type"),
    (&["status", "addresses"], "type"),
    (&["metadata", "ownerReferences"], "uid"),
    (&["spec", "ports"], "port"),
];

/// Lists of scalars that strategic merge patch merges as sets.
const SET_LISTS: &[&[&str]] = &[&["metadata", "finalizers"]];

fn strategic(target: &Value, patch: &Value, path: &mut Vec<String>) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = p.clone();
        p.remove("$patch");
        return Value::Object(p);
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if k.starts_with('$') {
            // Directives ($setElementOrder, $retainKeys, ...) are ignored.
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        path.push(k.clone());
        let cur = out.get(k).cloned().unwrap_or(Value::Null);
        let merged = match (cur, v) {
            (Value::Array(old), Value::Array(new)) => merge_list(&old, new, path),
            (cur, v) => strategic(&cur, v, path),
        };
        path.pop();
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn path_is(path: &[String], want: &[&str]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a == b)
}

fn merge_list(old: &[Value], new: &[Value], path: &mut Vec<String>) -> Value {
    if SET_LISTS.iter().any(|p| path_is(path, p)) {
        let mut out = old.to_vec();
        for v in new {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return Value::Array(out);
    }
    let Some(key) = MERGE_KEYS
        .iter()
        .find(|(p, _)| path_is(path, p))
        .map(|(_, k)| *k)
    else {
        return Value::Array(new.to_vec());
    };
    let mut out = old.to_vec();
    for item in new {
        let id = item.get(key);
        let pos = id.and_then(|id| out.iter().position(|o| o.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic(&out[i], item, path),
            (None, false) => out.push(strategic(&Value::Null, item, path)),
        }
    }
    Value::Array(out)
}

/// Splits a JSON pointer into unescaped tokens.
fn pointer_tokens(ptr: &str) -> Result<Vec<String>, ApiError> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = ptr.strip_prefix('/') else {
        return Err(ApiError::bad_request(format!(
            "invalid JSON pointer {ptr:?}"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| ApiError::bad_request(format!("path segment {t:?} not found")))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, ptr: &str, value: Value) -> Result<(), ApiError> {
    let toks = pointer_tokens(ptr)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| ApiError::bad_request(format!("bad array index {last:?}")))?
            };
            a.insert(i, value);
        }
        _ => return Err(ApiError::bad_request(format!("cannot add at {ptr:?}"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, ptr: &str) -> Result<Value, ApiError> {
    let toks = pointer_tokens(ptr)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err(ApiError::bad_request("cannot remove the document root"));
    };
    let missing = || ApiError::bad_request(format!("path {ptr:?} not found"));
    match parent_mut(doc, parents)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

fn get<'a>(doc: &'a Value, ptr: &str) -> Result<&'a Value, ApiError> {
    doc.pointer(ptr)
        .ok_or_else(|| ApiError::bad_request(format!("path {ptr:?} not found")))
}

/// RFC 6902 JSON patch.
pub(crate) fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    let mut doc = target.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("json patch operation without a path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| ApiError::bad_request(format!("{name} operation without a value")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request(format!("{name} operation without from")))
        };
        match name {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                get(&doc, path)?;
                remove(&mut doc, path).or_else(|e| {
                    if path.is_empty() {
                        Ok(Value::Null)
                    } else {
                        Err(e)
                    }
                })?;
                add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut doc, from()?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = get(&doc, from()?)?.clone();
                add(&mut doc, path, v)?;
            }
            "test" => {
                if *get(&doc, path)? != value()? {
                    return Err(ApiError::new_test_failed(path));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown json patch operation {other:?}"
                )));
            }
        }
    }
    Ok(doc)
}

impl ApiError {
    fn new_test_failed(path: &str) -> Self {
        // The real server answers a failed `test` with 422 Invalid.
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "the server rejected our request due to an error in our request: testing value {path} failed"
            ),
            details: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge() {
        let t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        let p = json!({"a": null, "b": {"c": 5}, "l": [3], "n": "x"});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"b": {"c": 5, "d": 3}, "l": [3], "n": "x"})
        );
    }

    #[test]
    fn strategic_conditions_merge_by_type() {
        let t = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "MemoryPressure", "status": "False"}
        ]}, "spec": {"taints": [{"key": "a"}]}});
        let p = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "Sluice", "status": "True"},
            {"type": "MemoryPressure", "$patch": "delete"}
        ]}, "spec": {"taints": [{"key": "b"}]}, "$setElementOrder/x": []});
        let out = apply(PatchKind::Strategic, &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "Sluice", "status": "True"}
            ]}, "spec": {"taints": [{"key": "b"}]}})
        );
        let f = apply(
            PatchKind::Strategic,
            &json!({"metadata": {"finalizers": ["a"]}}),
            &json!({"metadata": {"finalizers": ["b", "a"]}}),
        )
        .unwrap();
        assert_eq!(f, json!({"metadata": {"finalizers": ["a", "b"]}}));
    }

    #[test]
    fn json_patch_ops() {
        let t = json!({"a": {"b": [1, 2]}, "c": "x"});
        let p = json!([
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "test", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e~1f"},
            {"op": "remove", "path": "/a/b/1"}
        ]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"a": {"b": [0, 2, 3]}, "c": "y", "e/f": "y"})
        );
        assert_eq!(
            json_patch(&t, &json!([{"op": "test", "path": "/c", "value": "z"}]))
                .unwrap_err()
                .code,
            422
        );
        for bad in [
            json!({"op": "add"}),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
            json!([{"op": "remove", "path": "/nope"}]),
            json!([{"op": "frob", "path": "/c"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "add", "path": "/a/b/9", "value": 1}]),
        ] {
            assert!(json_patch(&t, &bad).is_err(), "{bad}");
        }
    }
}
