//! The whole Metal3 workflow end to end on bmc-sim, through the same code `metal3-demo`
//! runs: 20 hosts both ways (disk image by the agent, live ISO), with 10% of BMC requests
//! failing, with the operator killed and restarted mid-provisioning, and with bad input
//! beside good hosts. Each scenario runs twice: hosts handed to the operator directly
//! (embedded mode), and as BareMetalHost objects reconciled through the `kube`
//! controller's reconcile function (finalizers, status writes, requeues).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use metal3_demo::demo::{DemoConfig, DemoReport, run};

fn examples_manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn assert_ok(report: &DemoReport) {
    assert!(report.ok(), "\n{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_through_the_whole_lifecycle_both_ways() {
    twenty_hosts_through_the_whole_lifecycle_both_ways_in(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_through_the_whole_lifecycle_both_ways_through_the_kube_controller() {
    twenty_hosts_through_the_whole_lifecycle_both_ways_in(true).await;
}

async fn twenty_hosts_through_the_whole_lifecycle_both_ways_in(kube_mode: bool) {
    let report = run(DemoConfig {
        hosts: Some(20),
        timeout: Duration::from_secs(180),
        kube_mode,
        ..DemoConfig::default()
    })
    .await
    .unwrap();
    assert_ok(&report);
    assert_eq!(report.hosts.len(), 20);
    let live = report.hosts.iter().filter(|h| h.way == "live-iso").count();
    let disk = report
        .hosts
        .iter()
        .filter(|h| h.way == "disk image")
        .count();
    assert!(live >= 8 && disk >= 8, "{live} live-iso, {disk} disk image");
    for vendor in ["dell", "hpe", "lenovo", "supermicro", "dmtf"] {
        assert!(report.hosts.iter().any(|h| h.vendor == vendor), "{vendor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_with_ten_percent_of_bmc_requests_failing() {
    twenty_hosts_with_ten_percent_of_bmc_requests_failing_in(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_with_ten_percent_of_bmc_requests_failing_through_the_kube_controller() {
    twenty_hosts_with_ten_percent_of_bmc_requests_failing_in(true).await;
}

async fn twenty_hosts_with_ten_percent_of_bmc_requests_failing_in(kube_mode: bool) {
    let report = run(DemoConfig {
        hosts: Some(20),
        fault_rate: 0.1,
        timeout: Duration::from_secs(240),
        kube_mode,
        ..DemoConfig::default()
    })
    .await
    .unwrap();
    assert_ok(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_provisioning_repeats_nothing() {
    an_operator_restarted_mid_provisioning_repeats_nothing_in(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_provisioning_repeats_nothing_through_the_kube_controller() {
    an_operator_restarted_mid_provisioning_repeats_nothing_in(true).await;
}

async fn an_operator_restarted_mid_provisioning_repeats_nothing_in(kube_mode: bool) {
    let report = run(DemoConfig {
        hosts: Some(20),
        // Slower power so several hosts are mid-provisioning at the restart.
        power_delay: Duration::from_millis(150),
        restart_operator_at: Some(6),
        timeout: Duration::from_secs(240),
        kube_mode,
        ..DemoConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(report.operator_restarts, 1);
    // ok() includes: one deploy per host, no address given twice, every host provisioned,
    // deprovisioned and deleted.
    assert_ok(&report);
}

const BAD_HOSTS: &str = r#"
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: bad-address
  namespace: metal3
  annotations: {metal3-demo/vendor: dmtf, metal3-demo/keep-address: "true", metal3-demo/expect-error: registration error}
spec:
  online: true
  bmc: {address: "redfish-virtualmedia://[fe80::1%eth0/redfish/v1", credentialsName: bmc-credentials}
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: no-secret
  namespace: metal3
  annotations: {metal3-demo/vendor: dmtf, metal3-demo/expect-error: registration error}
spec:
  online: true
  bmc: {address: "redfish-virtualmedia://192.0.2.1/redfish/v1/Systems/437XR1138R2", credentialsName: does-not-exist}
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: wrong-password
  namespace: metal3
  annotations: {metal3-demo/vendor: lenovo, metal3-demo/bmc-password: another-one, metal3-demo/expect-error: registration error}
spec:
  online: true
  bmc: {address: "redfish-virtualmedia://192.0.2.1/redfish/v1/Systems/1", credentialsName: bmc-credentials}
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: unreachable
  namespace: metal3
  annotations: {metal3-demo/vendor: dmtf, metal3-demo/keep-address: "true", metal3-demo/expect-error: registration error}
spec:
  online: true
  bmc: {address: "redfish-virtualmedia+http://127.0.0.1:1/redfish/v1/Systems/437XR1138R2", credentialsName: bmc-credentials}
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: image-404
  namespace: metal3
  annotations: {metal3-demo/vendor: hpe, metal3-demo/expect-error: provisioning error}
spec:
  online: true
  bmc: {address: "ilo5-virtualmedia://192.0.2.1/redfish/v1/Systems/1", credentialsName: bmc-credentials}
  image: {url: "http://images.example/images/missing.qcow2", checksum: d30eb241f95e7c37c033251a78eae1610ac9b02dc99625442158180d35818c1b, checksumType: sha256, format: qcow2}
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: bad-checksum
  namespace: metal3
  annotations: {metal3-demo/vendor: dell, metal3-demo/expect-error: provisioning error}
spec:
  online: true
  bmc: {address: "idrac-virtualmedia://192.0.2.1/redfish/v1/Systems/System.Embedded.1", credentialsName: bmc-credentials}
  image: {url: "http://images.example/images/os.qcow2", checksum: 0000000000000000000000000000000000000000000000000000000000000000, checksumType: sha256, format: qcow2}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_ends_in_metal3_error_states_while_the_others_carry_on() {
    bad_input_ends_in_metal3_error_states_while_the_others_carry_on_in(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_ends_in_metal3_error_states_while_the_others_carry_on_through_the_kube_controller()
 {
    bad_input_ends_in_metal3_error_states_while_the_others_carry_on_in(true).await;
}

async fn bad_input_ends_in_metal3_error_states_while_the_others_carry_on_in(kube_mode: bool) {
    let dir = std::env::temp_dir().join(format!(
        "metal3-demo-bad-{}-{kube_mode}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["00-secrets.yaml", "10-ippool.yaml", "20-hosts.yaml"] {
        std::fs::copy(examples_manifests().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("30-bad.yaml"), BAD_HOSTS).unwrap();
    let report = run(DemoConfig {
        manifests: dir.clone(),
        timeout: Duration::from_secs(180),
        kube_mode,
        ..DemoConfig::default()
    })
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ok(&report);
    let error_of = |name: &str| {
        report
            .hosts
            .iter()
            .find(|h| h.key == format!("metal3/{name}"))
            .and_then(|h| h.error.clone())
            .unwrap_or_default()
    };
    for (name, says) in [
        ("bad-address", "failed to parse bmc address"),
        ("no-secret", "secret"),
        ("wrong-password", "authentication"),
        ("unreachable", "unreachable"),
        ("image-404", "404"),
        ("bad-checksum", "checksum mismatch"),
    ] {
        let e = error_of(name);
        assert!(
            e.to_lowercase().contains(says),
            "{name}: {e:?}\n{}",
            report.table()
        );
    }
    // The wrong password was tried once, and the host says it waits for new credentials.
    let wrong = report
        .hosts
        .iter()
        .find(|h| h.key == "metal3/wrong-password")
        .unwrap();
    assert_eq!(wrong.refused_logins, Some(1), "{}", report.table());
    assert!(
        error_of("wrong-password").contains("not tried again until the credentials secret changes"),
        "{}",
        error_of("wrong-password")
    );
    let good = report.hosts.iter().filter(|h| h.way != "bad input").count();
    assert_eq!(good, 5);
    // Through the controller each error raised is a Warning Event named by its type (a
    // registration retried and failed again raises it again), and a host that never
    // registered has no Registered event.
    if kube_mode {
        for (name, reason) in [
            ("bad-address", "RegistrationError"),
            ("wrong-password", "RegistrationError"),
            ("image-404", "ProvisioningError"),
        ] {
            let host = report
                .hosts
                .iter()
                .find(|h| h.key == format!("metal3/{name}"))
                .unwrap();
            assert!(
                host.events.iter().any(|e| e == reason),
                "{name}: {:?}",
                host.events
            );
            if reason == "RegistrationError" {
                assert!(
                    !host.events.iter().any(|e| e == "Registered"),
                    "{name}: {:?}",
                    host.events
                );
            }
        }
    }
}

/// A host whose agent never comes up, beside the good ones: its node waits in
/// `inspect wait` until the demo's in-process conductor times it out (the node machine's
/// own deadline, no polling loop), and the host reports an inspection error naming the
/// timeout.
const SILENT_HOST: &str = r#"
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: silent-agent
  namespace: metal3
  annotations: {metal3-demo/vendor: supermicro, metal3-demo/silent-agent: "true", metal3-demo/expect-error: inspection error}
spec:
  online: true
  bmc: {address: "redfish-virtualmedia://192.0.2.1/redfish/v1/Systems/1", credentialsName: bmc-credentials}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_agent_never_calls_back_times_out_in_the_demos_conductor() {
    let dir = std::env::temp_dir().join(format!("metal3-demo-silent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["00-secrets.yaml", "10-ippool.yaml", "20-hosts.yaml"] {
        std::fs::copy(examples_manifests().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("30-silent.yaml"), SILENT_HOST).unwrap();
    let wait = Duration::from_secs(3);
    let report = run(DemoConfig {
        manifests: dir.clone(),
        timeout: Duration::from_secs(180),
        node_timeouts: Some(provision_fsm::NodeTimeouts {
            inspect_wait: wait,
            // The good hosts' agents call back within this.
            deploy_callback: Duration::from_secs(60),
            clean_callback: Duration::from_secs(60),
        }),
        ..DemoConfig::default()
    })
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ok(&report);
    let silent = report
        .hosts
        .iter()
        .find(|h| h.key == "metal3/silent-agent")
        .unwrap();
    let error = silent.error.clone().unwrap_or_default();
    // The error names the hop that failed, with the wait the node was given (its own
    // deadline, not a polling interval), and what the BMC showed at that moment.
    assert!(
        error.starts_with("inspection error")
            && error.contains(&format!(
                "the agent ISO was booted by virtual media, no agent look-up within {} s (inspect wait timed out)",
                wait.as_secs()
            )),
        "{error}\n{}",
        report.table()
    );
    assert!(
        error.contains("the BMC read back power on") && error.contains("media inserted: "),
        "{error}"
    );
    assert_eq!(
        report.hosts.iter().filter(|h| h.way != "bad input").count(),
        5
    );
}
