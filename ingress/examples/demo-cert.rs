//! Writes a throwaway certificate authority and a TLS Secret for the demo
//! (`scripts/demo.sh`), so the demo needs no OpenSSL tooling and no private
//! key ever lives in the repository.
//!
//! ```text
//! cargo run -p sluice-ingress --example demo-cert -- OUT_DIR NAMESPACE/NAME HOST...
//! ```
//!
//! Writes `OUT_DIR/ca.crt` (the CA, for `curl --cacert`) and
//! `OUT_DIR/tls-secret.json` (a `kubernetes.io/tls` Secret whose `tls.crt`
//! holds a leaf for every HOST followed by the CA, and whose `tls.key` holds
//! the leaf's key). Both are new on every run.

use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-cert: {e}");
            eprintln!("usage: demo-cert OUT_DIR NAMESPACE/NAME HOST...");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [out, secret, hosts @ ..] = args else {
        return Err("missing arguments".into());
    };
    if hosts.is_empty() {
        return Err("name at least one HOST".into());
    }
    let (namespace, name) = secret
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .ok_or_else(|| format!("want NAMESPACE/NAME, got {secret:?}"))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    let err = |e: rcgen::Error| e.to_string();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sluice demo CA (throwaway)");
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut leaf_params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(err)?;
    leaf_params.distinguished_name = rcgen::DistinguishedName::new();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hosts[0].as_str());
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.metadata.namespace = Some(namespace.to_owned());
    s.type_ = Some("kubernetes.io/tls".into());
    s.data = Some(
        [
            (
                "tls.crt".to_owned(),
                ByteString(format!("{}{}", leaf.pem(), ca.pem()).into_bytes()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(leaf_key.serialize_pem().into_bytes()),
            ),
        ]
        .into(),
    );
    let mut json = serde_json::to_value(&s).map_err(|e| e.to_string())?;
    json["apiVersion"] = "v1".into();
    json["kind"] = "Secret".into();

    let write = |file: &str, text: String| {
        let path = out.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("ca.crt", ca.pem())?;
    write("tls-secret.json", format!("{json:#}\n"))?;
    Ok(())
}
