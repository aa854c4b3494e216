//! The controller's ingress-nginx flags, with ingress-nginx's names.

use k8s_openapi::api::core::v1::ConfigMap;

use crate::annotations::{AnnotationPrefix, DEFAULT_PREFIX};

use super::compute::NginxMode;
use super::snapshot::ObjectKey;

/// ingress-nginx mode on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct NginxFlags {
    /// ingress-nginx mode: read `nginx.ingress.kubernetes.io/*`
    /// annotations and ingress-nginx's ConfigMap, and match paths as its
    /// nginx locations do (docs/migrating-from-ingress-nginx.md). false:
    /// the Ingress specification's path semantics and only `sluice.dev/`
    /// annotations.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub ingress_nginx: bool,
    /// The annotation prefix read in ingress-nginx mode (ingress-nginx's
    /// --annotations-prefix).
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub annotations_prefix: AnnotationPrefix,
    /// ingress-nginx's controller ConfigMap (NAMESPACE/NAME), watched: its
    /// keys (proxy-body-size, timeouts, ssl-redirect, hsts, ...) are the
    /// defaults of every Ingress. With --manifests it is read from the
    /// directory.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_configmap)]
    pub configmap: Option<ObjectKey<ConfigMap>>,
}

impl NginxFlags {
    /// The controller's ingress-nginx mode, `None` when off.
    pub fn mode(&self) -> Option<NginxMode> {
        self.ingress_nginx.then(|| NginxMode {
            prefix: self.annotations_prefix.clone(),
            configmap: self.configmap.clone(),
        })
    }
}

fn parse_prefix(s: &str) -> Result<AnnotationPrefix, String> {
    AnnotationPrefix::new(s).map_err(|e| e.to_string())
}

fn parse_configmap(s: &str) -> Result<ObjectKey<ConfigMap>, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(format!("want NAMESPACE/NAME, got {s:?}")),
    }
}
