//! Stage 3, backend: the Service port a route goes to and its endpoints.
//!
//! A route with a canary (ingress-nginx mode, `canary: "true"` on another
//! Ingress of the same host, path and `pathType`) sends the requests its
//! [`CanaryPolicy`] picks to the canary's Service: the `canary-by-header`
//! header, then the `canary-by-cookie` cookie, then `canary-weight` out of
//! `canary-weight-total` (ingress-nginx's `route_to_alternative_balancer`).
//! A canary whose Service has no ready endpoint leaves the request to the
//! primary.
//!
//! A resource backend (`backend.resource`) cannot be served by the
//! gateway, and a Service port without ready endpoints has nobody to
//! answer: both are 503 before anything else is done with the request.

use std::sync::Arc;

use http::HeaderMap;

use crate::annotations::canary::{CanaryInput, CanaryPolicy};
use crate::gateway::proxy::request_cookie;
use crate::routes::Backend;

use crate::gateway::Snapshot;
use crate::gateway::access_log::AccessRecord;
use crate::gateway::errors::LocalError;
use crate::gateway::routing::ServiceKey;
use crate::gateway::upstream::Pool;

use super::Resolved;

/// Where a request is forwarded.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// The Service port, as `namespace/name:port` (metrics label).
    pub(crate) service: String,
    /// Its endpoints.
    pub(crate) pool: Arc<Pool>,
}

/// The upstream of `route` for a request with `headers` (its canary's
/// when the canary takes it), recording the Service in `record`.
pub(crate) fn select(
    snapshot: &Snapshot,
    route: &Resolved<'_>,
    headers: &HeaderMap,
    record: &mut AccessRecord,
) -> Result<Upstream, LocalError> {
    if let Some(c) = route.forward.as_ref().and_then(|f| f.route.canary.as_ref())
        && let Some(policy) = &c.policy.canary
        && to_canary(policy, headers)
        && let Some(upstream) = pool_of(snapshot, &c.backend)
            .ok()
            .filter(|u| !u.pool.is_empty())
    {
        record.service.clone_from(&upstream.service);
        return Ok(upstream);
    }
    let upstream = pool_of(snapshot, route.backend).inspect_err(|e| {
        if let LocalError::NoEndpoints(s) = e {
            record.service.clone_from(s);
        }
    })?;
    record.service.clone_from(&upstream.service);
    if upstream.pool.is_empty() {
        return Err(LocalError::NoEndpoints(upstream.service));
    }
    Ok(upstream)
}

/// Whether `policy` sends a request with `headers` to the canary.
fn to_canary(policy: &CanaryPolicy, headers: &HeaderMap) -> bool {
    let input = CanaryInput {
        header: policy
            .by_header
            .as_ref()
            .and_then(|h| headers.get(&h.name))
            .and_then(|v| v.to_str().ok()),
        cookie: policy
            .by_cookie
            .as_ref()
            .and_then(|c| request_cookie(headers, c.as_str())),
    };
    policy.routes_to_canary(input, |total| fastrand::u32(1..=total))
}

/// The Service port of `backend` and its endpoints (possibly none).
fn pool_of(snapshot: &Snapshot, backend: &Backend) -> Result<Upstream, LocalError> {
    let key = match backend {
        Backend::Resource { .. } => {
            return Err(LocalError::ResourceBackend(backend.to_string()));
        }
        Backend::Service { .. } => ServiceKey::of(backend).expect("service backend"),
    };
    let service = key.to_string();
    match snapshot.pools.get(&key) {
        Some(p) => Ok(Upstream {
            service,
            pool: p.clone(),
        }),
        None => Err(LocalError::NoEndpoints(service)),
    }
}
