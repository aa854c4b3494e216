//! Errors and logs: `custom-http-errors`, `default-backend`,
//! `disable-proxy-intercept-errors`, `enable-access-log`.

use super::configmap::ControllerSettings;
use super::reader::Reader;
use super::values::{ValueError, is_dns_label, parse_bool, parse_int_in};

/// Headers ingress-nginx sends to the error backend with an intercepted
/// error (and Sluice will): the code, the client's `Accept`, the original
/// URI, and where the request was going.
pub const ERROR_BACKEND_HEADERS: [&str; 8] = [
    "X-Code",
    "X-Format",
    "X-Original-URI",
    "X-Namespace",
    "X-Ingress-Name",
    "X-Service-Name",
    "X-Service-Port",
    "X-Request-ID",
];

/// The error policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorPolicy {
    /// `custom-http-errors` (else the ConfigMap's): upstream answers with
    /// these codes are replaced by the error backend's answer.
    pub custom_http_errors: Vec<u16>,
    /// `default-backend`: a Service of the Ingress's namespace that serves
    /// the custom errors and requests whose Service has no endpoints.
    pub default_backend: Option<String>,
    /// `disable-proxy-intercept-errors`.
    pub disable_intercept: bool,
}

impl ErrorPolicy {
    /// Whether an upstream answer with `status` is replaced by the error
    /// backend's.
    pub fn intercepts(&self, status: u16) -> bool {
        !self.disable_intercept && self.custom_http_errors.contains(&status)
    }

    pub(crate) fn parse(r: &mut Reader<'_>, settings: &ControllerSettings) -> Self {
        Self {
            custom_http_errors: r
                .get("custom-http-errors", parse_codes)
                .unwrap_or_else(|| settings.custom_http_errors.clone()),
            default_backend: r.get("default-backend", |v| {
                let v = v.trim();
                if is_dns_label(v) {
                    Ok(v.to_owned())
                } else {
                    Err(ValueError::Invalid("want a Service name".into()))
                }
            }),
            disable_intercept: r.get_or("disable-proxy-intercept-errors", false, parse_bool),
        }
    }
}

/// Comma-separated status codes 400–599 (ingress-nginx's annotation
/// validator `^(?:[4,5]\d{2},?)*$`, spaces removed).
pub(crate) fn parse_codes(s: &str) -> Result<Vec<u16>, ValueError> {
    let mut out = Vec::new();
    for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let code = parse_int_in(c, 400, 599)? as u16;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    if out.is_empty() {
        return Err(ValueError::Empty);
    }
    Ok(out)
}

/// The log policy of an Ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// `enable-access-log` (default on); the ConfigMap's
    /// `disable-access-log` turns it off everywhere, as in ingress-nginx.
    pub access_log: bool,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self { access_log: true }
    }
}

impl LogPolicy {
    pub(crate) fn parse(r: &mut Reader<'_>, settings: &ControllerSettings) -> Self {
        Self {
            access_log: settings.access_log && r.get_or("enable-access-log", true, parse_bool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(parse_codes("404, 503,404"), Ok(vec![404, 503]));
        assert!(parse_codes("302").is_err());
        assert!(parse_codes("4o4").is_err());
        assert!(parse_codes(",").is_err());
        let p = ErrorPolicy {
            custom_http_errors: vec![503],
            ..ErrorPolicy::default()
        };
        assert!(p.intercepts(503) && !p.intercepts(502));
    }
}
