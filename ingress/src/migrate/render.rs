//! The report as a table for people and as JSON for scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Report, Status};

/// Cuts `s` to `max` characters (with `…`), for table cells.
fn cell(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

impl Report {
    /// A table for people: per Ingress, its annotations and changed rules,
    /// then the ConfigMap, then a summary line.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let strip = |k: &str| {
            k.strip_prefix(&format!("{}/", self.prefix))
                .unwrap_or(k)
                .to_owned()
        };
        for r in &self.ingresses {
            let verdict = match (&r.refused, r.changes()) {
                (Some(_), _) => "REFUSED: its routes answer 503",
                (None, true) => "changes",
                (None, false) => "moves unchanged",
            };
            writeln!(out, "Ingress {} ({verdict})", r.ingress).unwrap();
            if let Some(why) = &r.refused {
                writeln!(out, "  {why}").unwrap();
            }
            for a in &r.annotations {
                writeln!(
                    out,
                    "  {:<38} {:<24} {:<27} {}",
                    cell(&strip(&a.key), 38),
                    cell(&format!("{:?}", a.value), 24),
                    a.status.label(),
                    a.note
                )
                .unwrap();
            }
            for b in &r.behaviours {
                let what = if b.host.is_empty() {
                    b.path.clone()
                } else {
                    format!("{}{}", b.host, b.path)
                };
                writeln!(
                    out,
                    "  {:<38} {:<24} {:<27} {}",
                    "(path)",
                    cell(&what, 24),
                    b.behaviour.label(),
                    b.note
                )
                .unwrap();
            }
        }
        if !self.settings.is_empty() {
            writeln!(out, "ConfigMap").unwrap();
            for s in &self.settings {
                writeln!(
                    out,
                    "  {:<38} {:<24} {:<27} {}",
                    cell(&s.key, 38),
                    cell(&format!("{:?}", s.value), 24),
                    s.status.label(),
                    s.note
                )
                .unwrap();
            }
        }
        let changing = self.ingresses.iter().filter(|r| r.changes()).count();
        let refused = self
            .ingresses
            .iter()
            .filter(|r| r.refused.is_some())
            .count();
        writeln!(
            out,
            "{} Ingresses: {} unchanged, {} with changes ({} refused); path behaviours are \
             ingress-nginx's and reproduced.",
            self.ingresses.len(),
            self.ingresses.len() - changing,
            changing,
            refused
        )
        .unwrap();
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let status = |s: Status| Value::from(s.label());
        json!({
            "prefix": self.prefix,
            "changes": self.changes(),
            "ingresses": self.ingresses.iter().map(|r| json!({
                "namespace": r.ingress.namespace,
                "name": r.ingress.name,
                "changes": r.changes(),
                "refused": r.refused,
                "annotations": r.annotations.iter().map(|a| json!({
                    "key": a.key,
                    "value": a.value,
                    "status": status(a.status),
                    "refuses": a.refuses,
                    "note": a.note,
                })).collect::<Vec<_>>(),
                "behaviours": r.behaviours.iter().map(|b| json!({
                    "host": b.host,
                    "path": b.path,
                    "behaviour": b.behaviour.label(),
                    "differs_from_ingress_nginx": b.behaviour.differs_from_ingress_nginx(),
                    "note": b.note,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "configmap": self.settings.iter().map(|s| json!({
                "key": s.key,
                "value": s.value,
                "status": status(s.status),
                "note": s.note,
            })).collect::<Vec<_>>(),
        })
    }
}
