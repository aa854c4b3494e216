//! Stage 3, backend: the Service port a route goes to and its endpoints.
//!
//! A resource backend (`backend.resource`) cannot be served by the
//! gateway, and a Service port without ready endpoints has nobody to
//! answer: both are 503 before anything else is done with the request.

use std::sync::Arc;

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

/// The upstream of `route`, recording the Service in `record`.
pub(crate) fn select(
    snapshot: &Snapshot,
    route: &Resolved<'_>,
    record: &mut AccessRecord,
) -> Result<Upstream, LocalError> {
    let key = match route.backend {
        Backend::Resource { .. } => {
            return Err(LocalError::ResourceBackend(route.backend.to_string()));
        }
        Backend::Service { .. } => ServiceKey::of(route.backend).expect("service backend"),
    };
    let service = key.to_string();
    record.service.clone_from(&service);
    match snapshot.pools.get(&key) {
        Some(p) if !p.is_empty() => Ok(Upstream {
            service,
            pool: p.clone(),
        }),
        _ => Err(LocalError::NoEndpoints(service)),
    }
}
