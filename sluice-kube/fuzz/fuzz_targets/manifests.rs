//! The manifest decoder (`sluice_kube::manifests`) on arbitrary file
//! contents, with a decoder for every kind either binary reads from
//! `--manifests` (sluice-proxy: Service, EndpointSlice, Node; sluice-ingress:
//! IngressClass, Ingress, Service, EndpointSlice, Secret), each through the
//! same `manifests::decode` the binaries' decoders call.
//!
//! Never a panic; and every decoded object, written back as YAML and as JSON
//! (what `kubectl get -o yaml|json` would give) and read again, decodes to
//! one object equal to it, without errors.
#![no_main]

use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice_kube::Watched;
use sluice_kube::manifests::{DecodeError, Decoder, Loaded, decode};

/// The kinds of both binaries.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Obj {
    Service(Service),
    EndpointSlice(EndpointSlice),
    Node(Node),
    IngressClass(IngressClass),
    Ingress(Ingress),
    Secret(Secret),
}

impl Watched for Obj {
    type Kind = &'static str;

    fn kind(&self) -> &'static str {
        match self {
            Obj::Service(_) => "Service",
            Obj::EndpointSlice(_) => "EndpointSlice",
            Obj::Node(_) => "Node",
            Obj::IngressClass(_) => "IngressClass",
            Obj::Ingress(_) => "Ingress",
            Obj::Secret(_) => "Secret",
        }
    }
}

struct BothBinaries;

impl Decoder for BothBinaries {
    type Object = Obj;

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "Service",
            "EndpointSlice",
            "Node",
            "IngressClass",
            "Ingress",
            "Secret",
        ]
    }

    fn decode(&self, kind: &str, doc: Value) -> Option<Result<Obj, DecodeError>> {
        Some(match kind {
            "Service" => decode(doc).map(Obj::Service),
            "EndpointSlice" => decode(doc).map(Obj::EndpointSlice),
            "Node" => decode(doc).map(Obj::Node),
            "IngressClass" => decode(doc).map(Obj::IngressClass),
            "Ingress" => decode(doc).map(Obj::Ingress),
            "Secret" => decode(doc).map(Obj::Secret),
            _ => return None,
        })
    }
}

fn load(text: &str) -> Loaded<Obj> {
    let mut l = Loaded::new();
    l.add_text(&BothBinaries, Path::new("fuzz.yaml"), text);
    l
}

/// The object as `kubectl get -o yaml` and `-o json` would write it.
fn encodings(o: &Obj) -> [String; 2] {
    fn both<T: serde::Serialize>(t: &T) -> [String; 2] {
        [
            serde_saphyr::to_string(t).expect("an object serializes to YAML"),
            serde_json::to_string_pretty(t).expect("an object serializes to JSON"),
        ]
    }
    match o {
        Obj::Service(x) => both(x),
        Obj::EndpointSlice(x) => both(x),
        Obj::Node(x) => both(x),
        Obj::IngressClass(x) => both(x),
        Obj::Ingress(x) => both(x),
        Obj::Secret(x) => both(x),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = load(text);
    for o in &loaded.objects {
        for enc in encodings(o) {
            let again = load(&enc);
            assert!(
                again.errors.is_empty() && again.skipped.is_empty(),
                "{o:?} written as\n{enc}\ndoes not load again: {:?} {:?}",
                again.errors,
                again.skipped
            );
            assert_eq!(
                again.objects.as_slice(),
                std::slice::from_ref(o),
                "written as\n{enc}"
            );
        }
    }
});
