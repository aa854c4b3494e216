//! The `migrate-check` subcommand: reads Ingresses (and optionally
//! ingress-nginx's ConfigMap) from the API server or a manifest directory,
//! prints the [`super::Report`], and exits 0 when nothing would change, 1
//! when something would, 2 on an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::Value;

use crate::annotations::{AnnotationPrefix, DEFAULT_PREFIX};
use crate::controller::{Object, manifests};
use crate::routes::class::LEGACY_CLASS_ANNOTATION;

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// `sluice-ingress migrate-check` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateCheckArgs {
    /// Read Ingresses (and the ConfigMap) from the YAML/JSON files in DIR
    /// instead of the API server.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig to reach the API server (default: in-cluster or
    /// $KUBECONFIG / ~/.kube/config).
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,
    /// ingress-nginx's --annotations-prefix.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub annotations_prefix: String,
    /// Only Ingresses of this class (`spec.ingressClassName`, or the legacy
    /// `kubernetes.io/ingress.class` annotation, which wins); default: all.
    #[arg(long, value_name = "CLASS")]
    pub ingress_class: Option<String>,
    /// ingress-nginx's ConfigMap (NAMESPACE/NAME), read from the API server
    /// or from the manifests.
    #[arg(long, value_name = "NS/NAME")]
    pub configmap: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

impl MigrateCheckArgs {
    /// Whether the objects come from the API server.
    pub fn needs_api(&self) -> bool {
        self.manifests.is_none()
    }
}

fn class_of(ing: &Ingress) -> Option<&str> {
    let legacy = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    legacy.or_else(|| {
        ing.spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .filter(|c| !c.is_empty())
    })
}

fn split_ref(s: &str) -> Result<(&str, &str), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns, name))
        }
        _ => Err(format!("--configmap: want NAMESPACE/NAME, got {s:?}")),
    }
}

/// The ConfigMap `ns/name` among the manifests in `dir`.
fn configmap_in(dir: &Path, ns: &str, name: &str) -> Result<BTreeMap<String, String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for path in entries.flatten().map(|e| e.path()) {
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(docs) = serde_saphyr::from_multiple::<Value>(&text) else {
            continue;
        };
        for doc in docs {
            if doc.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
                continue;
            }
            let Ok(cm) = serde_json::from_value::<ConfigMap>(doc) else {
                continue;
            };
            let cm_ns = cm.metadata.namespace.as_deref().unwrap_or("default");
            if cm_ns == ns && cm.metadata.name.as_deref() == Some(name) {
                return Ok(cm.data.unwrap_or_default());
            }
        }
    }
    Err(format!(
        "ConfigMap {ns}/{name} not found in {}",
        dir.display()
    ))
}

async fn load(
    args: &MigrateCheckArgs,
    client: Option<kube::Client>,
) -> Result<(Vec<Ingress>, Option<BTreeMap<String, String>>), String> {
    if let Some(dir) = &args.manifests {
        let loaded = sluice_kube::manifests::load_dir(dir, &manifests::IngressManifests);
        for e in &loaded.errors {
            eprintln!("migrate-check: skipping a document: {e}");
        }
        let ingresses = loaded
            .objects
            .into_iter()
            .filter_map(|o| match o {
                Object::Ingress(i) => Some(i),
                _ => None,
            })
            .collect();
        let cm = match &args.configmap {
            Some(r) => {
                let (ns, name) = split_ref(r)?;
                Some(configmap_in(dir, ns, name)?)
            }
            None => None,
        };
        return Ok((ingresses, cm));
    }
    let client = client.ok_or("no API server client")?;
    let list = kube::Api::<Ingress>::all(client.clone())
        .list(&Default::default())
        .await
        .map_err(|e| format!("listing Ingresses: {e}"))?;
    let cm = match &args.configmap {
        Some(r) => {
            let (ns, name) = split_ref(r)?;
            let cm = kube::Api::<ConfigMap>::namespaced(client, ns)
                .get(name)
                .await
                .map_err(|e| format!("ConfigMap {ns}/{name}: {e}"))?;
            Some(cm.data.unwrap_or_default())
        }
        None => None,
    };
    Ok((list.items, cm))
}

/// Runs the subcommand. `client` is needed unless `--manifests` is given.
pub async fn run(args: MigrateCheckArgs, client: Option<kube::Client>) -> ExitCode {
    let prefix = match AnnotationPrefix::new(&args.annotations_prefix) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("migrate-check: --annotations-prefix: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut ingresses, cm) = match load(&args, client).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("migrate-check: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(class) = &args.ingress_class {
        ingresses.retain(|i| class_of(i) == Some(class.as_str()));
    }
    let report = super::check(&ingresses, cm.as_ref(), &prefix);
    match args.output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        ),
    }
    if report.changes() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
