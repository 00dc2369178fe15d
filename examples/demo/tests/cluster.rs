//! The cluster flow end to end on bmc-sim, through the same code `metal3-demo --cluster`
//! runs: a control plane and three workers choose hosts by label, get their data rendered
//! with addresses from the IPPools, are provisioned, and the workers scale down by one and
//! up again; as written, with 10 % of BMC requests failing, and with the operator and the
//! provider stopped and started again mid-flow.
#![allow(clippy::unwrap_used, clippy::panic)]

use metal3_demo::cluster::{ClusterDemoConfig, ClusterReport, run};

fn assert_cluster(report: &ClusterReport) {
    assert!(report.ok(), "{:?}\n{}", report.failures, report.table());
    // One control plane and three workers at the end, each on its own host.
    assert_eq!(report.rows.len(), 4, "{}", report.table());
    let hosts: std::collections::BTreeSet<_> =
        report.rows.iter().filter_map(|r| r.host.clone()).collect();
    assert_eq!(hosts.len(), 4);
    assert!(
        hosts
            .iter()
            .all(|h| h.starts_with("metal3/cp-") || h.starts_with("metal3/worker-")),
        "{hosts:?}"
    );
    // The control plane's claim is preallocated in its pool.
    let cp = report
        .rows
        .iter()
        .find(|r| r.metal3_machine == "metal3/c1-controlplane-0")
        .unwrap();
    assert_eq!(
        cp.addresses
            .get("c1-baremetal")
            .map(ToString::to_string)
            .as_deref(),
        Some("192.168.111.150")
    );
    // The storage host matches no selector: never chosen, still available.
    assert_eq!(
        report.hosts.get("metal3/storage-0").map(String::as_str),
        Some("available")
    );
    // The scaled-down machine is gone and the new one took its place.
    let names: Vec<&str> = report
        .rows
        .iter()
        .map(|r| r.metal3_machine.as_str())
        .collect();
    assert!(!names.contains(&"metal3/c1-md-0-2") && names.contains(&"metal3/c1-md-0-3"));
    let scaled = report
        .phases
        .iter()
        .filter(|p| p.name.starts_with("scaled"))
        .count();
    assert_eq!(scaled, 2, "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_chooses_its_hosts_by_label_and_scales_down_and_up() {
    let report = run(ClusterDemoConfig::default()).await.unwrap();
    assert_cluster(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_flow_rides_out_failing_bmc_requests() {
    let report = run(ClusterDemoConfig {
        fault_rate: 0.1,
        ..ClusterDemoConfig::default()
    })
    .await
    .unwrap();
    assert_cluster(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_flow_loses_nothing_and_deploys_nothing_twice() {
    // Stopped once the first host is provisioning: some machines have hosts and data,
    // some are still choosing. The run checks every host was deployed exactly once.
    let report = run(ClusterDemoConfig {
        restart: true,
        ..ClusterDemoConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(report.restarts, 1);
    assert_cluster(&report);
}
