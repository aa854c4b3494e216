//! Warning Events through the real kube-rs client against the fake API
//! server: two different problems with the same reason on one object are
//! two Events, each with its own note.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::Ingress;
use sluice_kube::events::{EventPublisher, Regarding, Warning, WarningEvents};
use sluice_tests::fake_api::FakeApiServer;

fn warning(note: &str) -> Warning {
    Warning {
        regarding: Regarding::named::<Ingress>("default", "web"),
        reason: "Unresolved".into(),
        action: "Sync".into(),
        note: note.into(),
    }
}

fn notes(api: &FakeApiServer) -> Vec<String> {
    let mut n: Vec<String> = api
        .events()
        .iter()
        .filter_map(|e| e["note"].as_str().map(str::to_owned))
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn each_distinct_warning_is_one_event_published_once() {
    let api = FakeApiServer::start().await;
    let publisher = EventPublisher::new(api.client(), "sluice-test", Some("pod-1".into()));
    let mut events = WarningEvents::default();
    let first: BTreeSet<Warning> = [warning("service default/a not found")].into();
    assert_eq!(events.report(&first, &publisher).await, 1);
    let both: BTreeSet<Warning> = [
        warning("service default/a not found"),
        warning("TLS secret default/cert not found"),
    ]
    .into();
    assert_eq!(events.report(&both, &publisher).await, 1);
    assert_eq!(events.report(&both, &publisher).await, 0, "published once");
    assert_eq!(
        notes(&api),
        [
            "TLS secret default/cert not found",
            "service default/a not found"
        ]
    );
    let e = &api.events()[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "Ingress");
    assert_eq!(e["reportingController"], "sluice-test");
}

#[tokio::test]
async fn a_failed_publish_is_retried_with_the_next_report() {
    let api = FakeApiServer::start().await;
    let publisher = EventPublisher::new(api.client(), "sluice-test", None);
    let mut events = WarningEvents::default();
    let current: BTreeSet<Warning> = [warning("x")].into();
    api.set_down(true).await;
    assert_eq!(events.report(&current, &publisher).await, 0);
    api.set_down(false).await;
    assert_eq!(events.report(&current, &publisher).await, 1);
    assert_eq!(notes(&api), ["x"]);
}
