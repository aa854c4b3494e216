//! Client certificates (`auth-tls-*`): the CA bundle of a Secret, parsed
//! once per snapshot.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::tls::provider;

/// Why a CA bundle is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The Secret has no `ca.crt`.
    #[error("secret has no \"ca.crt\" key")]
    MissingKey,
    /// `ca.crt` holds no PEM certificate.
    #[error("ca.crt contains no PEM certificate")]
    NoCertificate,
    /// A certificate is not a usable trust anchor.
    #[error("ca.crt is not usable: {0}")]
    Invalid(String),
}

/// The trust anchors client certificates of a host are checked against.
pub struct ClientCa {
    #[allow(
        dead_code,
        reason = "read by the TLS listener once client certificates are enforced"
    )]
    pub(crate) verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCa").finish_non_exhaustive()
    }
}

impl ClientCa {
    /// Parses `ca.crt` (one or more PEM certificates).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CaError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        if certs.is_empty() {
            return Err(CaError::NoCertificate);
        }
        let mut roots = RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| CaError::Invalid(e.to_string()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        Ok(Self { verifier })
    }
}
