//! The test cluster's keys and certificates, generated on the spot with
//! rcgen: one CA for serving and client certificates (as kubeadm's `ca.crt`),
//! the API server's serving certificate, client certificates for each
//! identity (admin, controller manager, scheduler, nodes), and the
//! service-account signing key pair. Nothing is reused between clusters.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A PEM certificate and its PEM private key, written to files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Who a client certificate says its holder is: Kubernetes takes the user
/// from the subject's CN and the groups from its O entries.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user name (CN), e.g. `system:node:node-1`.
    pub user: String,
    /// The group (O), e.g. `system:nodes`. One at most: rcgen's
    /// distinguished name holds one value per attribute type.
    pub group: Option<String>,
}

impl Identity {
    /// A cluster administrator (`system:masters`, which RBAC never denies).
    pub fn admin() -> Self {
        Self::new("sluice-test-admin", Some("system:masters"))
    }

    /// The identity a kubelet has on node `name` (what the Node authorizer
    /// and the NodeRestriction admission plugin key on).
    pub fn node(name: &str) -> Self {
        Self::new(&format!("system:node:{name}"), Some("system:nodes"))
    }

    /// A user, in at most one group.
    pub fn new(user: &str, group: Option<&str>) -> Self {
        Self {
            user: user.to_owned(),
            group: group.map(str::to_owned),
        }
    }
}

/// The cluster's CA, able to sign more client certificates later (for
/// nodes added during a test).
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM file), trusted for serving and client certs.
    pub ca: PathBuf,
    /// The CA certificate, PEM text.
    pub ca_pem: String,
    /// The API server's serving certificate.
    pub serving: CertFiles,
    /// The service-account token signing key (private, PEM).
    pub sa_key: PathBuf,
    /// Its public half (PEM), for `--service-account-key-file`.
    pub sa_pub: PathBuf,
}

/// Key or certificate generation failed, or a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf, PkiError> {
    std::fs::write(&path, text).map_err(|source| PkiError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

impl Pki {
    /// Generates the CA, the API server's serving certificate (valid for
    /// `serving_ips` and the usual in-cluster names) and the service-account
    /// keys into `dir`.
    pub fn generate(dir: &Path, serving_ips: &[std::net::IpAddr]) -> Result<Self, PkiError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice-test-cluster-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let ca = write(dir.join("ca.crt"), &ca_pem)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .extend(serving_ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let serving = CertFiles {
            cert: write(dir.join("apiserver.crt"), &cert.pem())?,
            key: write(dir.join("apiserver.key"), &key.serialize_pem())?,
        };

        let sa = KeyPair::generate()?;
        let sa_key = write(dir.join("sa.key"), &sa.serialize_pem())?;
        let sa_pub = write(dir.join("sa.pub"), &sa.public_key_pem())?;
        Ok(Self {
            dir: dir.to_owned(),
            issuer,
            ca,
            ca_pem,
            serving,
            sa_key,
            sa_pub,
        })
    }

    /// Signs a client certificate for `who`, written as `<file_stem>.crt`
    /// and `<file_stem>.key` in the cluster's directory.
    pub fn client_cert(&self, who: &Identity, file_stem: &str) -> Result<CertFiles, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, who.user.as_str());
        if let Some(g) = &who.group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, g.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertFiles {
            cert: write(self.dir.join(format!("{file_stem}.crt")), &cert.pem())?,
            key: write(
                self.dir.join(format!("{file_stem}.key")),
                &key.serialize_pem(),
            )?,
        })
    }
}
