//! Limits and timeouts: `proxy-body-size`, `proxy-{connect,read,send}-timeout`,
//! `proxy-next-upstream` (+`-tries`, `-timeout`), and the per-client rate
//! limits `limit-rps`, `limit-rpm`, `limit-connections`,
//! `limit-burst-multiplier`, `limit-whitelist` (`limit-rate` and
//! `limit-rate-after` are bandwidth throttles Sluice does not implement:
//! see the catalog).

use std::num::NonZeroU32;
use std::str::FromStr;

use super::configmap::ControllerSettings;
use super::reader::Reader;
use super::values::{CidrList, NginxSize, Seconds, ValueError, parse_u32};

/// A condition under which nginx passes a request to the next endpoint
/// (`proxy_next_upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NextUpstreamOn {
    /// Connecting, sending or reading the header failed.
    Error,
    /// Connecting, sending or reading the header timed out.
    Timeout,
    /// The endpoint answered an invalid header.
    InvalidHeader,
    /// The endpoint answered this status code (403, 404, 429, 500, 502,
    /// 503 or 504).
    Status(u16),
    /// Also retry non-idempotent requests (POST, LOCK, PATCH).
    NonIdempotent,
}

/// `proxy-next-upstream`: when to retry on another endpoint. Empty is
/// `off`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextUpstream(Vec<NextUpstreamOn>);

impl NextUpstream {
    /// Never retry.
    pub fn off() -> Self {
        Self(Vec::new())
    }

    /// Whether `on` is one of the conditions.
    pub fn retries_on(&self, on: NextUpstreamOn) -> bool {
        self.0.contains(&on)
    }

    /// The conditions, sorted.
    pub fn conditions(&self) -> &[NextUpstreamOn] {
        &self.0
    }
}

impl Default for NextUpstream {
    /// nginx's and ingress-nginx's `error timeout`.
    fn default() -> Self {
        Self(vec![NextUpstreamOn::Error, NextUpstreamOn::Timeout])
    }
}

impl FromStr for NextUpstream {
    type Err = ValueError;

    /// Space-separated words from `error timeout invalid_header http_403
    /// http_404 http_429 http_500 http_502 http_503 http_504 non_idempotent
    /// off` (ingress-nginx's list); `off` anywhere means off.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let mut v = Vec::new();
        let mut off = false;
        for w in s.split_whitespace() {
            let on = match w {
                "off" => {
                    off = true;
                    continue;
                }
                "error" => NextUpstreamOn::Error,
                "timeout" => NextUpstreamOn::Timeout,
                "invalid_header" => NextUpstreamOn::InvalidHeader,
                "non_idempotent" => NextUpstreamOn::NonIdempotent,
                "http_403" => NextUpstreamOn::Status(403),
                "http_404" => NextUpstreamOn::Status(404),
                "http_429" => NextUpstreamOn::Status(429),
                "http_500" => NextUpstreamOn::Status(500),
                "http_502" => NextUpstreamOn::Status(502),
                "http_503" => NextUpstreamOn::Status(503),
                "http_504" => NextUpstreamOn::Status(504),
                _ => {
                    return Err(ValueError::NotOneOf(
                        "error, timeout, invalid_header, http_403, http_404, http_429, http_500, \
                         http_502, http_503, http_504, non_idempotent, off",
                    ));
                }
            };
            if !v.contains(&on) {
                v.push(on);
            }
        }
        if v.is_empty() && !off {
            return Err(ValueError::Empty);
        }
        if off {
            return Ok(Self::off());
        }
        v.sort();
        Ok(Self(v))
    }
}

/// Per-client-address limits (`limit-*`), keyed by the client address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// `limit-rps`: requests per second.
    pub rps: Option<NonZeroU32>,
    /// `limit-rpm`: requests per minute.
    pub rpm: Option<NonZeroU32>,
    /// `limit-connections`: concurrent connections.
    pub connections: Option<NonZeroU32>,
    /// `limit-burst-multiplier` (default 5): burst = limit × multiplier.
    pub burst_multiplier: u32,
    /// `limit-whitelist` / `limit-allowlist`: addresses exempt from the
    /// limits.
    pub exempt: Option<CidrList>,
    /// The status of a request over `limit-rps`/`limit-rpm` (the
    /// ConfigMap's `limit-req-status-code`, default 503).
    pub req_status: u16,
    /// The status of a request over `limit-connections` (the ConfigMap's
    /// `limit-conn-status-code`, default 503).
    pub conn_status: u16,
}

impl RateLimit {
    /// Whether any request or connection limit is set (ingress-nginx
    /// ignores the burst and exemptions otherwise).
    pub fn is_active(&self) -> bool {
        self.rps.is_some() || self.rpm.is_some() || self.connections.is_some()
    }
}

/// The limits-and-timeouts policy of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    /// `proxy-body-size`: over it, 413 (0 = no limit).
    pub body_size: NginxSize,
    /// `proxy-connect-timeout`.
    pub connect_timeout: Seconds,
    /// `proxy-read-timeout` (between two reads of the response; 504).
    pub read_timeout: Seconds,
    /// `proxy-send-timeout` (between two writes of the request).
    pub send_timeout: Seconds,
    /// `proxy-next-upstream`.
    pub next_upstream: NextUpstream,
    /// `proxy-next-upstream-tries` (0 = no limit).
    pub next_upstream_tries: u32,
    /// `proxy-next-upstream-timeout` (0 = no limit).
    pub next_upstream_timeout: Seconds,
    /// The `limit-*` annotations.
    pub rate: RateLimit,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        Self::defaults(&ControllerSettings::default())
    }
}

fn positive(s: &str) -> Result<Option<NonZeroU32>, ValueError> {
    parse_u32(s).map(NonZeroU32::new)
}

impl LimitPolicy {
    fn defaults(s: &ControllerSettings) -> Self {
        Self {
            body_size: s.proxy_body_size,
            connect_timeout: s.proxy_connect_timeout,
            read_timeout: s.proxy_read_timeout,
            send_timeout: s.proxy_send_timeout,
            next_upstream: s.proxy_next_upstream.clone(),
            next_upstream_tries: s.proxy_next_upstream_tries,
            next_upstream_timeout: s.proxy_next_upstream_timeout,
            rate: RateLimit {
                burst_multiplier: 5,
                req_status: s.limit_req_status_code,
                conn_status: s.limit_conn_status_code,
                ..RateLimit::default()
            },
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>, settings: &ControllerSettings) -> Self {
        let d = Self::defaults(settings);
        let rate = RateLimit {
            // An unusable limit denies the Ingress rather than serve it
            // unlimited (fail closed).
            rps: r.get_guarded("limit-rps", positive).flatten(),
            rpm: r.get_guarded("limit-rpm", positive).flatten(),
            connections: r.get_guarded("limit-connections", positive).flatten(),
            burst_multiplier: r.get_or(
                "limit-burst-multiplier",
                d.rate.burst_multiplier,
                parse_u32,
            ),
            exempt: r.get_guarded("limit-allowlist", str::parse),
            req_status: d.rate.req_status,
            conn_status: d.rate.conn_status,
        };
        Self {
            body_size: r.get_or("proxy-body-size", d.body_size, str::parse),
            connect_timeout: r.get_or("proxy-connect-timeout", d.connect_timeout, str::parse),
            read_timeout: r.get_or("proxy-read-timeout", d.read_timeout, str::parse),
            send_timeout: r.get_or("proxy-send-timeout", d.send_timeout, str::parse),
            next_upstream: r.get_or("proxy-next-upstream", d.next_upstream, str::parse),
            next_upstream_tries: r.get_or(
                "proxy-next-upstream-tries",
                d.next_upstream_tries,
                parse_u32,
            ),
            next_upstream_timeout: r.get_or(
                "proxy-next-upstream-timeout",
                d.next_upstream_timeout,
                str::parse,
            ),
            rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_upstream_words() {
        let n: NextUpstream = "error timeout http_502 http_502".parse().unwrap();
        assert_eq!(
            n.conditions(),
            &[
                NextUpstreamOn::Error,
                NextUpstreamOn::Timeout,
                NextUpstreamOn::Status(502)
            ]
        );
        assert!(n.retries_on(NextUpstreamOn::Status(502)));
        assert!(!n.retries_on(NextUpstreamOn::Status(503)));
        assert_eq!("off".parse::<NextUpstream>(), Ok(NextUpstream::off()));
        assert!("error http_418".parse::<NextUpstream>().is_err());
        assert!("".parse::<NextUpstream>().is_err());
        assert_eq!(NextUpstream::default().conditions().len(), 2);
    }
}
