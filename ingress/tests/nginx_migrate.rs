//! `sluice-ingress migrate-check` on the realistic ingress-nginx Ingresses
//! of `examples/ingress-nginx`, through the built binary: statuses per
//! annotation (from the same catalog as the fail-closed check), refusals,
//! path behaviours, the ConfigMap, the class filter and the exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sluice_ingress::annotations::catalog;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ingress-nginx")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-ingress"))
        .arg("migrate-check")
        .args(args)
        .output()
        .expect("runs")
}

fn json_report(extra: &[&str]) -> (Value, Option<i32>) {
    let dir = examples();
    let mut args = vec!["--manifests", dir.to_str().unwrap(), "--output", "json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (v, out.status.code())
}

fn ingress<'a>(report: &'a Value, ns: &str, name: &str) -> &'a Value {
    report["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["namespace"] == ns && i["name"] == name)
        .unwrap_or_else(|| panic!("{ns}/{name} not in the report"))
}

fn annotation<'a>(ing: &'a Value, name: &str) -> &'a Value {
    let key = format!("nginx.ingress.kubernetes.io/{name}");
    ing["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key.as_str())
        .unwrap_or_else(|| panic!("{name} not reported"))
}

#[test]
fn the_examples_report_what_changes() {
    let (r, code) = json_report(&[
        "--configmap",
        "ingress-nginx/ingress-nginx-controller",
        "--ingress-class",
        "nginx",
    ]);
    assert_eq!(code, Some(1), "something changes: exit 1");
    assert_eq!(r["changes"], true);
    assert_eq!(
        r["ingresses"].as_array().unwrap().len(),
        10,
        "traefik's Ingress is filtered out"
    );

    let web = ingress(&r, "shop", "web");
    assert_eq!(web["changes"], false);
    assert!(web["annotations"].as_array().unwrap().is_empty());

    // Basic auth and allow-lists are enforced: served, not refused.
    let admin = ingress(&r, "ops", "admin");
    assert!(admin["refused"].is_null(), "{admin}");
    assert_eq!(
        annotation(admin, "whitelist-source-range")["refuses"],
        false
    );
    assert_eq!(
        annotation(admin, "auth-type")["status"],
        "honoured, with a difference"
    );
    // Rate limits are not enforced yet: refused.
    let dashboard = ingress(&r, "ops", "dashboard");
    let why = dashboard["refused"].as_str().expect("refused");
    assert!(
        why.contains("limit-rps") && !why.contains("auth-url"),
        "{why}"
    );

    let upload = ingress(&r, "media", "upload");
    assert!(upload["refused"].is_null());
    assert_eq!(
        annotation(upload, "proxy-connect-timeout")["status"],
        "invalid value"
    );
    assert_eq!(annotation(upload, "proxy-body-size")["status"], "honoured");
    assert!(
        upload["behaviours"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["behaviour"] == "trailing-slash 301")
    );

    let portal = ingress(&r, "web", "portal");
    assert_eq!(
        annotation(portal, "configuration-snippet")["status"],
        "never"
    );

    let neighbour = ingress(&r, "shop", "rewrite-neighbour");
    let b = &neighbour["behaviours"][0];
    assert_eq!(
        (b["path"].as_str(), b["behaviour"].as_str()),
        (Some("/healthz"), Some("Exact path becomes a regex"))
    );
    assert!(
        b["note"]
            .as_str()
            .unwrap()
            .contains("another Ingress of the host")
    );
    assert_eq!(neighbour["changes"], false, "reproduced, so not a change");

    let cm = r["configmap"].as_array().unwrap();
    let status = |k: &str| {
        cm.iter()
            .find(|s| s["key"] == k)
            .map(|s| s["status"].clone())
    };
    assert_eq!(status("worker-processes"), Some("unsupported".into()));
    assert_eq!(status("allow-snippet-annotations"), Some("never".into()));
    assert_eq!(status("proxy-body-size"), Some("honoured".into()));
    assert_eq!(
        status("compute-full-forwarded-for"),
        Some("parsed, not yet enforced".into())
    );
}

#[test]
fn statuses_come_from_the_catalog() {
    let (r, _) = json_report(&[]);
    assert_eq!(
        r["ingresses"].as_array().unwrap().len(),
        11,
        "no class filter"
    );
    for ing in r["ingresses"].as_array().unwrap() {
        for a in ing["annotations"].as_array().unwrap() {
            let key = a["key"].as_str().unwrap();
            let name = key.strip_prefix("nginx.ingress.kubernetes.io/").unwrap();
            let spec = catalog::lookup(name).expect("known");
            if a["status"] == "invalid value" || a["status"] == "ignored" {
                continue;
            }
            assert_eq!(a["status"], spec.support.label(), "{key}");
            assert_eq!(a["refuses"], spec.refuses(), "{key}");
        }
    }
}

#[test]
fn nothing_to_change_exits_zero_and_tables_read_well() {
    let dir = std::env::temp_dir().join(format!("sluice-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(examples().join("plain.yaml"), dir.join("plain.yaml")).unwrap();
    let out = run(&["--manifests", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Ingress shop/web (moves unchanged)"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let out = run(&["--manifests", examples().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("Ingress ops/dashboard (REFUSED: its routes answer 503)"),
        "{text}"
    );
    assert!(text.contains("11 Ingresses:"), "{text}");

    let bad = run(&["--manifests", "/nonexistent", "--configmap", "a/b"]);
    assert_eq!(bad.status.code(), Some(2), "an error exits 2");
}
