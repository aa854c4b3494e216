//! Body types shared by the gateway modules.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// The error type bodies carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the gateway sends, to clients and to upstreams: streamed,
/// never buffered whole.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete small body.
pub(crate) fn full(data: impl Into<Bytes>) -> GatewayBody {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}
