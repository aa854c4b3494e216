//! Stage, misdirected: over HTTPS, the request's host must be one the
//! connection's certificate covers.
//!
//! SNI picks the certificate, Host picks the route. A client that reuses
//! a connection for another host (HTTP/2 connection coalescing) may do so
//! only when the certificate covers that host too; a client that sends
//! `SNI a.test` and `Host: b.test` on purpose gets b.test's routes under
//! a.test's certificate, behind the back of whatever checked the name (a
//! TLS-terminating front, a client certificate rule, a log). The answer
//! is 421 Misdirected Request (RFC 9110 §15.5.20; Gateway API's HTTPS
//! listener tests expect it), which tells a client to retry on a
//! connection of its own for that host.
//!
//! Checked only when [`GatewayConfig::strict_sni_host`] is on, the
//! connection is TLS with an SNI name, the host differs from it after
//! normalization, and SNI chose an Ingress certificate (the default one
//! claims no host): then the leaf's subject names decide, as a client
//! would check them (rustls-webpki: exact names, one-label wildcards, IP
//! addresses).

use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use crate::gateway::Snapshot;
use crate::gateway::config::GatewayConfig;
use crate::gateway::errors::LocalError;
use crate::gateway::service::ConnCtx;
use crate::gateway::tls::select_certificate;
use crate::routes::host::normalize_request_host;

/// 421 when the connection's certificate does not cover `host`.
pub(crate) fn check(
    config: &GatewayConfig,
    conn: &ConnCtx,
    snapshot: &Snapshot,
    host: &str,
) -> Result<(), LocalError> {
    if !config.strict_sni_host || !conn.tls {
        return Ok(());
    }
    let (Some(sni), Some(host)) = (conn.sni.as_deref(), normalize_request_host(host)) else {
        return Ok(());
    };
    if host == sni {
        return Ok(());
    }
    let r = &snapshot.routing;
    match select_certificate(&r.table, &r.certs, Some(sni)) {
        Some(cert) if !covers(&cert, &host) => Err(LocalError::Misdirected),
        _ => Ok(()),
    }
}

/// Whether the leaf certificate of `cert` is valid for `host`.
fn covers(cert: &CertifiedKey, host: &str) -> bool {
    let Some(leaf) = cert.cert.first() else {
        return false;
    };
    let Ok(leaf) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let name = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name).is_ok_and(|n| leaf.verify_is_valid_for_subject_name(&n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::tls::self_signed_certificate;

    #[test]
    fn certificate_coverage() {
        let exact = self_signed_certificate(&["a.test", "10.0.0.1"]).unwrap();
        assert!(covers(&exact, "a.test"));
        assert!(covers(&exact, "10.0.0.1"));
        assert!(!covers(&exact, "b.test"));
        let wild = self_signed_certificate(&["*.example.com"]).unwrap();
        assert!(covers(&wild, "x.example.com"));
        assert!(!covers(&wild, "x.y.example.com"));
        assert!(!covers(&wild, "example.com"));
    }
}
