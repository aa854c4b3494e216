//! kubeconfig files for the test cluster: one per identity (client
//! certificate or bearer token) and per place the client runs (the host
//! reaches the API server on loopback, the IPVS VM through qemu's user
//! network).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::pki::CertFiles;

/// How a kubeconfig's user authenticates.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client certificate and key.
    Cert(CertFiles),
    /// A bearer token (a ServiceAccount's, from the TokenRequest API).
    Token(String),
}

/// Writes a kubeconfig (JSON, which every kubeconfig reader accepts) for
/// `server`, trusting `ca`, authenticating with `cred`, to `path`.
pub fn write(path: &Path, server: &str, ca: &Path, cred: &Credential) -> std::io::Result<PathBuf> {
    let user = match cred {
        Credential::Cert(c) => json!({
            "client-certificate": c.cert,
            "client-key": c.key,
        }),
        Credential::Token(t) => json!({ "token": t }),
    };
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sluice-test", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{"name": "sluice-test", "user": user}],
        "contexts": [{"name": "sluice-test", "context": {
            "cluster": "sluice-test",
            "user": "sluice-test",
        }}],
        "current-context": "sluice-test",
    });
    std::fs::write(path, format!("{doc:#}\n"))?;
    Ok(path.to_owned())
}
