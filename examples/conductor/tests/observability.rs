//! What the conductor tells about its nodes, on a bmc-sim Redfish BMC over the real HTTP
//! admin API: each node's history (transitions, actions with the caller's correlation
//! id, every BMC request with method, path, status and latency) and the Prometheus
//! metrics, scraped and parsed as the OpenMetrics text format.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};
use metal3_conductor::history::HistoryEvent;
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use metal3_conductor::{ConductorApi, HttpConductor, NodeSpec, Verb};
use provision_fsm::NodeState;

/// One sample of an exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the OpenMetrics text format strictly enough to catch a malformed line: every
/// line is a comment (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) or `name{labels} value`, and
/// the exposition ends with `# EOF`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end:\n{text}");
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT", "EOF"].contains(&kind), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label in {line}"));
                    labels.insert(k.to_string(), v.to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        samples.push((name, labels, value));
    }
    samples
}

fn value(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && wanted
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_metrics_tell_what_a_node_went_through() {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/redfish/dmtf-public-rackmount1"),
        ),
        credentials: Some(("admin".into(), "s3cret-never-shown".into())),
        power_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap();
    let admin = HttpConductor::new(&service.admin_url());
    let address = format!(
        "redfish-virtualmedia+{}/redfish/v1/Systems/437XR1138R2",
        sim.url()
    );
    admin
        .create_node(NodeSpec {
            name: "lab/node-0".into(),
            address: address.parse().unwrap(),
            credentials: bmc_core::Credentials::new("admin", "s3cret-never-shown").unwrap(),
            disable_certificate_verification: false,
            boot_mac: None,
            automated_clean: false,
            preprovisioning_network_data: None,
            legacy_boot: false,
        })
        .await
        .unwrap();
    admin
        .provision("lab/node-0", Verb::Manage, Some("step-42"))
        .await
        .unwrap();
    for _ in 0..500 {
        if admin.node("lab/node-0").await.unwrap().state == NodeState::Manageable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        admin.node("lab/node-0").await.unwrap().state,
        NodeState::Manageable
    );

    // The history, as the admin API serves it.
    let history = admin.history("lab/node-0").await.unwrap();
    let events: Vec<&HistoryEvent> = history.entries.iter().map(|e| &e.event).collect();
    assert!(
        events.iter().any(|e| matches!(e,
            HistoryEvent::Action { action, correlation_id: Some(id) } if action == "verify BMC" && id == "step-42")),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            HistoryEvent::Transition { from: NodeState::Verifying, to: NodeState::Manageable, event } if event == "done")),
        "{events:#?}"
    );
    let calls: Vec<(&str, &str, Option<u16>)> = events
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::BmcCall {
                method,
                target,
                status,
                latency_ms,
                ..
            } => {
                assert!(*latency_ms >= 0.0);
                Some((method.as_ref(), target.as_str(), *status))
            }
            _ => None,
        })
        .collect();
    assert!(
        calls.contains(&("GET", "/redfish/v1/Systems/437XR1138R2", Some(200))),
        "{calls:#?}"
    );
    assert!(
        calls.iter().all(|(_, t, _)| t.starts_with("/redfish/v1")),
        "{calls:#?}"
    );
    // Timestamps in order, oldest first.
    assert!(history.entries.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));

    // The metrics, scraped as Prometheus would.
    let response = reqwest::get(format!("{}/metrics", service.admin_url()))
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    let samples = parse_exposition(&text);
    assert_eq!(
        value(&samples, "conductor_nodes", &[("state", "manageable")]),
        1.0
    );
    assert_eq!(
        value(&samples, "conductor_nodes", &[("state", "enroll")]),
        0.0
    );
    let gets = value(
        &samples,
        "bmc_requests_total",
        &[
            ("protocol", "redfish"),
            ("driver", "redfish"),
            ("method", "GET"),
            ("status", "200"),
        ],
    );
    assert!(
        gets >= calls
            .iter()
            .filter(|c| c.0 == "GET" && c.2 == Some(200))
            .count() as f64
    );
    assert!(
        value(
            &samples,
            "bmc_request_duration_seconds_count",
            &[("method", "GET")]
        ) >= gets
    );
    assert_eq!(
        value(
            &samples,
            "conductor_actions_total",
            &[("action", "verify BMC"), ("outcome", "success")]
        ),
        1.0
    );
    // The history holds no secret either.
    let raw = reqwest::get(format!(
        "{}/v1/nodes/lab%2Fnode-0/history",
        service.admin_url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(!raw.contains("s3cret") && raw.contains("bmc_call"), "{raw}");
    sim.stop().await;
}
