//! Stage, access: who may reach the route's backend (ingress-nginx's
//! `allowlist-source-range`/`whitelist-source-range`,
//! `denylist-source-range`, `auth-type: basic` with `auth-secret` and
//! `auth-realm`, external auth `auth-url`, and `satisfy`).
//!
//! In nginx's access-phase order:
//!
//! 1. **Source ranges.** The client address is the TCP peer, or, when the
//!    peer is a trusted proxy ([`GatewayConfig::trusted_proxies`]), the
//!    nearest untrusted address of `X-Forwarded-For` (what the gateway
//!    forwards as `X-Real-IP`). In the deny-list, or outside a configured
//!    allow-list: 403.
//! 2. **Basic auth.** `Authorization: Basic` checked against the Secret's
//!    users ([`crate::gateway::htpasswd`]); missing or wrong: 401 with
//!    `WWW-Authenticate: Basic realm="<auth-realm>"`. A Secret that is not
//!    loaded: 503 (never open).
//! 3. **External auth** ([`super::external_auth`]): 2xx allows, 401 and
//!    403 deny (or 401 redirects to `auth-signin`), anything else is 500.
//!
//! With `satisfy: any`, a client address the allow-list admits skips the
//! authentication checks (nginx's `satisfy any`: one granting access
//! module suffices); otherwise every check must pass.

use std::net::IpAddr;

use base64::Engine as _;
use http::HeaderMap;
use http::request::Parts;

use crate::annotations::access::{AccessPolicy, BasicAuth, Satisfy};
use crate::gateway::Snapshot;
use crate::gateway::config::{GatewayConfig, TrustedProxies, canonical_ip};
use crate::gateway::errors::LocalError;
use crate::gateway::service::ConnCtx;
use crate::routes::SecretRef;

use super::Resolved;
use super::external_auth::{self, AuthOutcome};

/// What the access stage decided.
pub(crate) enum Access {
    /// Go on; these headers (from the auth service) replace the request's
    /// own of the same names upstream.
    Allowed(external_auth::Granted),
    /// Answer this instead (a redirect to `auth-signin`).
    Answer(http::Response<crate::gateway::body::GatewayBody>),
}

/// Runs the checks of the route's policy (see the module docs).
pub(crate) async fn check(
    snapshot: &Snapshot,
    config: &GatewayConfig,
    conn: &ConnCtx,
    route: &Resolved<'_>,
    head: &Parts,
) -> Result<Access, LocalError> {
    let Some(policy) = route.policy else {
        return Ok(Access::Allowed(external_auth::Granted::default()));
    };
    let access = &policy.access;
    if access.allow.is_none()
        && access.deny.is_none()
        && access.basic.is_none()
        && access.external.is_none()
    {
        return Ok(Access::Allowed(external_auth::Granted::default()));
    }
    let client = client_address(&head.headers, conn.peer.ip(), &config.trusted_proxies);
    let ranges = source_ranges(access, client);
    if access.satisfy == Satisfy::Any && ranges == Ranges::Granted {
        return Ok(Access::Allowed(external_auth::Granted::default()));
    }
    if ranges == Ranges::Refused {
        let no_auth = access.basic.is_none() && access.external.is_none();
        if access.satisfy == Satisfy::All || no_auth {
            return Err(LocalError::Forbidden);
        }
    }
    if let Some(basic) = &access.basic {
        check_basic(snapshot, basic, &head.headers).await?;
    }
    match &access.external {
        None => Ok(Access::Allowed(external_auth::Granted::default())),
        Some(ext) => match external_auth::ask(ext, policy, conn, route, head, client).await? {
            AuthOutcome::Granted(g) => Ok(Access::Allowed(g)),
            AuthOutcome::Redirect(r) => Ok(Access::Answer(r)),
        },
    }
}

/// The outcome of the source-range check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranges {
    /// No range is configured: grants nothing, refuses nothing.
    NotConfigured,
    /// The allow-list admits the client (and the deny-list does not hold
    /// it).
    Granted,
    /// The deny-list holds the client, or the allow-list does not.
    Refused,
    /// Only a deny-list, which does not hold the client.
    NotDenied,
}

fn source_ranges(access: &AccessPolicy, client: IpAddr) -> Ranges {
    if access.deny.as_ref().is_some_and(|d| d.contains(client)) {
        return Ranges::Refused;
    }
    match &access.allow {
        Some(a) if a.contains(client) => Ranges::Granted,
        Some(_) => Ranges::Refused,
        None if access.deny.is_some() => Ranges::NotDenied,
        None => Ranges::NotConfigured,
    }
}

/// The client's address: the peer, or behind trusted proxies the nearest
/// untrusted `X-Forwarded-For` entry (the one the gateway forwards as
/// `X-Real-IP`).
pub(crate) fn client_address(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = canonical_ip(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    chain
        .iter()
        .rev()
        .map(|a| canonical_ip(*a))
        .find(|a| !trusted.contains(*a))
        .or_else(|| chain.first().map(|a| canonical_ip(*a)))
        .unwrap_or(peer)
}

/// `Authorization: Basic <base64(user:password)>`, decoded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

async fn check_basic(
    snapshot: &Snapshot,
    basic: &BasicAuth,
    headers: &HeaderMap,
) -> Result<(), LocalError> {
    let secret = SecretRef {
        namespace: basic.secret.namespace.clone(),
        name: basic.secret.name.clone(),
    };
    let Some(users) = snapshot.routing.secrets.htpasswd(&secret) else {
        return Err(LocalError::Denied(format!(
            "basic-auth secret {}/{} is not loaded",
            secret.namespace, secret.name
        )));
    };
    let refuse = || LocalError::Unauthorized {
        realm: basic.realm.clone(),
    };
    let (user, password) = basic_credentials(headers).ok_or_else(refuse)?;
    let Some(hash) = users.get(&user) else {
        return Err(refuse());
    };
    let ok = if hash.is_slow() {
        let users = users.clone();
        tokio::task::spawn_blocking(move || users.get(&user).is_some_and(|h| h.verify(&password)))
            .await
            .unwrap_or(false)
    } else {
        hash.verify(&password)
    };
    if ok { Ok(()) } else { Err(refuse()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(allow: Option<&str>, deny: Option<&str>) -> AccessPolicy {
        AccessPolicy {
            allow: allow.map(|a| a.parse().unwrap()),
            deny: deny.map(|d| d.parse().unwrap()),
            ..AccessPolicy::default()
        }
    }

    #[test]
    fn ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = policy(Some("10.0.0.0/8"), Some("10.1.0.0/16"));
        assert_eq!(source_ranges(&p, ip("10.2.3.4")), Ranges::Granted);
        assert_eq!(source_ranges(&p, ip("10.1.3.4")), Ranges::Refused);
        assert_eq!(source_ranges(&p, ip("192.168.0.1")), Ranges::Refused);
        assert_eq!(
            source_ranges(&p, ip("::ffff:10.2.3.4")),
            Ranges::Granted,
            "v4-mapped"
        );
        let p = policy(None, Some("127.0.0.1"));
        assert_eq!(source_ranges(&p, ip("127.0.0.1")), Ranges::Refused);
        assert_eq!(source_ranges(&p, ip("127.0.0.2")), Ranges::NotDenied);
        assert_eq!(
            source_ranges(&policy(None, None), ip("1.2.3.4")),
            Ranges::NotConfigured
        );
    }

    #[test]
    fn client_behind_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.2"),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let none = TrustedProxies::default();
        assert_eq!(client_address(&h, peer, &none), peer, "untrusted peer");
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            client_address(&h, peer, &t),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn credentials() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cGE6c3M="),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x"),
        );
        assert_eq!(basic_credentials(&h), None);
    }
}
