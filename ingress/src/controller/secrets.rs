//! The Secrets access-control annotations name, read into the gateway's
//! [`AccessSecrets`]: `auth-secret` (htpasswd in key `auth`, or with
//! `auth-secret-type: auth-map` one user per key) and `auth-tls-secret`
//! (`ca.crt`).
//!
//! A Secret that is missing or unusable is an [`Issue`] on the Ingress and
//! stays out of the store, so the access stage answers 503 for its routes
//! (ingress-nginx denies such a location too). A Secret with some unusable
//! lines keeps the usable ones; each skipped line is an Issue naming the
//! user, never the hash.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;

use crate::annotations::access::AuthSecretType;
use crate::annotations::values::ObjectName;
use crate::gateway::AccessSecrets;
use crate::gateway::client_cert::ClientCa;
use crate::gateway::htpasswd::Htpasswd;
use crate::routes::{IngressRef, RouteTable, SecretRef};

use super::compute::Issue;
use super::snapshot::{ObjectKey, Snapshot};

/// What a Secret is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Use {
    /// Basic-auth users.
    Users(AuthSecretTypeKey),
    /// A client-certificate CA bundle.
    ClientCa,
}

/// [`AuthSecretType`] with an order, for the map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AuthSecretTypeKey {
    File,
    Map,
}

/// The access Secrets of a table.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The parsed Secrets.
    pub secrets: AccessSecrets,
    /// Every Secret named, loaded or not (the API source watches these).
    pub referenced: BTreeSet<ObjectKey<Secret>>,
}

fn secret_ref(o: &ObjectName) -> SecretRef {
    SecretRef {
        namespace: o.namespace.clone(),
        name: o.name.clone(),
    }
}

/// Reads every Secret the table's policies name, reporting problems into
/// `issues` against the first Ingress that names each.
pub fn load(table: &RouteTable, snapshot: &Snapshot, issues: &mut BTreeSet<Issue>) -> Loaded {
    let mut wanted: BTreeMap<(SecretRef, Use), IngressRef> = BTreeMap::new();
    for route in table.routes() {
        let access = &route.policy.access;
        if let Some(b) = &access.basic {
            let t = match b.secret_type {
                AuthSecretType::AuthFile => AuthSecretTypeKey::File,
                AuthSecretType::AuthMap => AuthSecretTypeKey::Map,
            };
            wanted
                .entry((secret_ref(&b.secret), Use::Users(t)))
                .or_insert_with(|| route.ingress.clone());
        }
        if let Some(c) = &access.client_cert {
            wanted
                .entry((secret_ref(&c.secret), Use::ClientCa))
                .or_insert_with(|| route.ingress.clone());
        }
    }
    let mut out = Loaded::default();
    for ((secret, how), ingress) in wanted {
        let key = ObjectKey::new(&secret.namespace, &secret.name);
        out.referenced.insert(key.clone());
        let mut issue = |message: String| {
            issues.insert(Issue {
                ingress: Some(ingress.clone()),
                message,
            });
        };
        let Some(s) = snapshot.secret(&key) else {
            issue(format!(
                "secret {key} not found; the routes that need it answer 503"
            ));
            continue;
        };
        match how {
            Use::Users(t) => {
                let (users, skipped) = read_users(s, t);
                for line in skipped {
                    issue(format!(
                        "secret {key}: user {:?} skipped: {}",
                        line.user, line.error
                    ));
                }
                match users {
                    Some(u) if !u.is_empty() => out.secrets.insert_htpasswd(secret, u),
                    _ => issue(format!(
                        "secret {key} holds no usable user{}; the routes that need it answer 503",
                        if t == AuthSecretTypeKey::File {
                            " (key \"auth\")"
                        } else {
                            ""
                        }
                    )),
                }
            }
            Use::ClientCa => {
                let ca = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get("ca.crt"))
                    .ok_or(crate::gateway::client_cert::CaError::MissingKey)
                    .and_then(|pem| ClientCa::from_pem(&pem.0));
                match ca {
                    Ok(ca) => out.secrets.insert_client_ca(secret, ca),
                    Err(e) => issue(format!("secret {key}: {e}; the host's requests answer 503")),
                }
            }
        }
    }
    out
}

fn read_users(
    s: &Secret,
    t: AuthSecretTypeKey,
) -> (Option<Htpasswd>, Vec<crate::gateway::htpasswd::SkippedLine>) {
    let Some(data) = s.data.as_ref() else {
        return (None, Vec::new());
    };
    match t {
        AuthSecretTypeKey::File => match data.get("auth") {
            Some(b) => {
                let (u, skipped) = Htpasswd::parse_file(&String::from_utf8_lossy(&b.0));
                (Some(u), skipped)
            }
            None => (None, Vec::new()),
        },
        AuthSecretTypeKey::Map => {
            let (u, skipped) = Htpasswd::from_pairs(
                data.iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())),
            );
            (Some(u), skipped)
        }
    }
}
