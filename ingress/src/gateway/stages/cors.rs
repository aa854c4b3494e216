//! CORS (`enable-cors`): the preflight answer, and the headers added to
//! the answer of a request from an allowed origin.
//!
//! Route resolution decides both ([`crate::annotations::cors::Cors::evaluate`]
//! with ingress-nginx's semantics); here they become a `204 No Content`
//! for an `OPTIONS` request, or are set on the upstream's answer (replacing
//! its own `Access-Control-*` headers, as ingress-nginx's
//! `more_set_headers` does).

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::gateway::body::{GatewayBody, full};

/// The preflight answer: 204 with `headers`.
pub(crate) fn preflight(headers: &[(HeaderName, String)]) -> Response<GatewayBody> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::NO_CONTENT;
    add(r.headers_mut(), headers);
    // hyper writes the length of a 204 itself (none).
    r.headers_mut().remove(http::header::CONTENT_LENGTH);
    r
}

/// Sets `headers` on an answer.
pub(crate) fn add(map: &mut HeaderMap, headers: &[(HeaderName, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.insert(name.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn preflight_is_204_with_the_headers() {
        let r = preflight(&[
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
            (header::ACCESS_CONTROL_MAX_AGE, "1728000".into()),
            (header::CONTENT_LENGTH, "0".into()),
        ]);
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!r.headers().contains_key(header::CONTENT_LENGTH));
        let mut m = HeaderMap::new();
        m.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("x"),
        );
        add(
            &mut m,
            &[(header::ACCESS_CONTROL_ALLOW_ORIGIN, "https://a.test".into())],
        );
        assert_eq!(m[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
    }
}
