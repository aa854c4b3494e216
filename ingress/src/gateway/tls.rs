//! TLS: the certificate store (Secret → parsed key), SNI certificate
//! selection and the rustls server configuration.
//!
//! **SNI picks the certificate, Host picks the route.** At handshake time
//! the SNI name is looked up in the current route table's TLS hosts
//! ([`RouteTable::tls_for`]: the precise `spec.tls` host, else the
//! wildcard `*.parent` covering exactly one extra label); the entry's
//! Secret is looked up in the [`CertStore`]. No entry, an entry without
//! `secretName`, a Secret not (or not validly) loaded, or no SNI at all:
//! the snapshot's default certificate (the `--default-ssl-certificate`
//! Secret, so it reloads like any other), else the gateway's configured
//! one, else one self-signed at start.
//!
//! Loading a Secret ([`CertStore::load_pem`]) parses the PEM chain and the
//! private key and checks that the key belongs to the leaf certificate;
//! any failure is a typed [`CertError`] and leaves the store as it was, so
//! a broken Secret update keeps serving the previous certificate.
//!
//! Only TLS 1.3 and 1.2 are offered, with *ring*'s cipher suites (all
//! ECDHE + AEAD), and ALPN `h2` then `http/1.1`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::routes::{RouteTable, SecretRef};

use super::Snapshot;

/// Why a certificate Secret was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The Secret has no `tls.crt` or `tls.key` (or no `data`).
    #[error("secret has no {0:?} key")]
    MissingKey(&'static str),
    /// `tls.crt` holds no PEM `CERTIFICATE` block.
    #[error("tls.crt contains no PEM certificate")]
    NoCertificate,
    /// `tls.crt` is not valid PEM.
    #[error("tls.crt is not valid PEM: {0}")]
    CertificatePem(rustls_pki_types::pem::Error),
    /// `tls.key` holds no usable PEM private key.
    #[error("tls.key is not a valid PEM private key: {0}")]
    KeyPem(rustls_pki_types::pem::Error),
    /// The private key is of a kind rustls cannot sign with.
    #[error("tls.key cannot be used: {0}")]
    UnsupportedKey(rustls::Error),
    /// The leaf certificate does not parse.
    #[error("tls.crt leaf certificate is invalid: {0}")]
    InvalidCertificate(rustls::Error),
    /// The private key does not belong to the leaf certificate.
    #[error("tls.key does not match the tls.crt leaf certificate")]
    KeyMismatch,
    /// Generating the self-signed default certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The *ring* crypto provider the gateway uses (no global install needed).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1) and checks that they belong together.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => CertError::NoCertificate,
            e => CertError::CertificatePem(e),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(CertError::KeyPem)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(CertError::UnsupportedKey)?;
    let ck = CertifiedKey::new(chain, signing_key);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::KeyMismatch),
        Err(e) => Err(CertError::InvalidCertificate(e)),
    }
}

/// A self-signed certificate for the given names (the default certificate
/// when none is configured, like ingress-nginx's "Fake Certificate").
pub fn self_signed_certificate(names: &[&str]) -> Result<CertifiedKey, CertError> {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)?;
    certified_key_from_pem(
        cert.pem().as_bytes(),
        signing_key.serialize_pem().as_bytes(),
    )
}

/// Parsed certificates by Secret. A value: clone, change, and put into the
/// next [`crate::gateway::Routing`].
#[derive(Clone, Default)]
pub struct CertStore {
    certs: HashMap<SecretRef, Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.certs.keys()).finish()
    }
}

impl CertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads (or replaces) a Secret's certificate from PEM. On error the
    /// store is unchanged: a previous certificate of the Secret stays.
    pub fn load_pem(
        &mut self,
        secret: SecretRef,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<(), CertError> {
        let ck = certified_key_from_pem(cert_pem, key_pem)?;
        self.certs.insert(secret, Arc::new(ck));
        Ok(())
    }

    /// Loads a `kubernetes.io/tls` Secret (`data` keys `tls.crt` and
    /// `tls.key`); see [`CertStore::load_pem`].
    pub fn load_secret(&mut self, secret: &Secret) -> Result<(), CertError> {
        let data = secret.data.as_ref();
        let get = |k: &'static str| {
            data.and_then(|d| d.get(k))
                .map(|b| b.0.as_slice())
                .ok_or(CertError::MissingKey(k))
        };
        let (crt, key) = (get("tls.crt")?, get("tls.key")?);
        let r = SecretRef {
            namespace: secret
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: secret.metadata.name.clone().unwrap_or_default(),
        };
        self.load_pem(r, crt, key)
    }

    /// Puts an already parsed certificate.
    pub fn insert(&mut self, secret: SecretRef, key: Arc<CertifiedKey>) {
        self.certs.insert(secret, key);
    }

    /// Forgets a Secret (it was deleted); whether it was there.
    pub fn remove(&mut self, secret: &SecretRef) -> bool {
        self.certs.remove(secret).is_some()
    }

    /// A Secret's certificate.
    pub fn get(&self, secret: &SecretRef) -> Option<&Arc<CertifiedKey>> {
        self.certs.get(secret)
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// The certificate for an SNI name, if the route table has a TLS entry for
/// it whose Secret is loaded; `None` means "use the default certificate".
pub fn select_certificate(
    table: &RouteTable,
    certs: &CertStore,
    sni: Option<&str>,
) -> Option<Arc<CertifiedKey>> {
    let tls = table.tls_for(sni?)?;
    certs.get(tls.secret.as_ref()?).cloned()
}

/// rustls certificate resolver over the live routing snapshot.
pub(crate) struct SniResolver {
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(crate) default: Arc<CertifiedKey>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snap = self.snapshot.load();
        let r = &snap.routing;
        Some(
            select_certificate(&r.table, &r.certs, hello.server_name())
                .or_else(|| r.default_certificate.clone())
                .unwrap_or_else(|| self.default.clone()),
        )
    }
}

/// The server configuration: TLS 1.3 + 1.2, SNI resolver, ALPN h2 then
/// http/1.1.
pub(crate) fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn load_validates_and_keeps_previous_on_error() {
        let (crt, key) = pem_pair(&["a.test"]);
        let (crt2, key2) = pem_pair(&["b.test"]);
        let mut store = CertStore::new();
        store
            .load_pem(secret("s"), crt.as_bytes(), key.as_bytes())
            .unwrap();
        let before = store.get(&secret("s")).unwrap().cert.clone();

        let e = store.load_pem(secret("s"), crt2.as_bytes(), key.as_bytes());
        assert!(matches!(e, Err(CertError::KeyMismatch)), "{e:?}");
        let e = store.load_pem(secret("s"), b"garbage", key2.as_bytes());
        assert!(matches!(e, Err(CertError::NoCertificate)), "{e:?}");
        let e = store.load_pem(secret("s"), crt2.as_bytes(), b"");
        assert!(matches!(e, Err(CertError::KeyPem(_))), "{e:?}");
        let bad_leaf = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = store.load_pem(secret("s"), bad_leaf.as_bytes(), key.as_bytes());
        assert!(matches!(e, Err(CertError::InvalidCertificate(_))), "{e:?}");
        assert_eq!(store.get(&secret("s")).unwrap().cert, before);

        store
            .load_pem(secret("s"), crt2.as_bytes(), key2.as_bytes())
            .unwrap();
        assert_ne!(store.get(&secret("s")).unwrap().cert, before);
        assert!(store.remove(&secret("s")));
        assert!(store.is_empty());
    }

    #[test]
    fn load_secret_reads_tls_keys() {
        let (crt, key) = pem_pair(&["a.test"]);
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "s"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64(crt.as_bytes()),
                "tls.key": base64(key.as_bytes()),
            }
        }))
        .unwrap();
        let mut store = CertStore::new();
        store.load_secret(&s).unwrap();
        assert!(store.get(&secret("s")).is_some());
        let empty: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "t"}
        }))
        .unwrap();
        assert!(matches!(
            store.load_secret(&empty),
            Err(CertError::MissingKey("tls.crt"))
        ));
    }

    fn base64(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in data.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= c.len() {
                    out.push(char::from(T[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
