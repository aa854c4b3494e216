//! The Secrets access control reads, parsed when the snapshot is built:
//! htpasswd tables for basic auth (`auth-secret`) and CA bundles for
//! client certificates (`auth-tls-secret`), by Secret.
//!
//! A route whose Secret is not here (missing, unreadable, no usable line)
//! is answered 503 by the access stage: as in ingress-nginx, an auth
//! annotation whose Secret cannot be used denies the location, it never
//! opens it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::routes::SecretRef;

use super::client_cert::ClientCa;
use super::htpasswd::Htpasswd;

/// Parsed access-control Secrets. A value: built by the controller, put
/// into the [`crate::gateway::Routing`].
#[derive(Clone, Default)]
pub struct AccessSecrets {
    htpasswd: HashMap<SecretRef, Arc<Htpasswd>>,
    client_ca: HashMap<SecretRef, Arc<ClientCa>>,
}

impl fmt::Debug for AccessSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessSecrets")
            .field("htpasswd", &self.htpasswd.keys().collect::<Vec<_>>())
            .field("client_ca", &self.client_ca.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AccessSecrets {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the users of a basic-auth Secret.
    pub fn insert_htpasswd(&mut self, secret: SecretRef, users: Htpasswd) {
        self.htpasswd.insert(secret, Arc::new(users));
    }

    /// The users of a basic-auth Secret.
    pub fn htpasswd(&self, secret: &SecretRef) -> Option<&Arc<Htpasswd>> {
        self.htpasswd.get(secret)
    }

    /// Puts the CA bundle of a client-certificate Secret.
    pub fn insert_client_ca(&mut self, secret: SecretRef, ca: ClientCa) {
        self.client_ca.insert(secret, Arc::new(ca));
    }

    /// The CA bundle of a client-certificate Secret.
    pub fn client_ca(&self, secret: &SecretRef) -> Option<&Arc<ClientCa>> {
        self.client_ca.get(secret)
    }
}
