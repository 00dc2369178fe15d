//! The `operator` binary as a process, talking to a conductor service over the admin API:
//! a live-ISO host on bmc-sim goes to provisioned; an operator restarted on the same
//! state file finds it provisioned and deploys nothing again.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bmc_sim::vendor::BootSource;
use bmc_sim::{RedfishSim, SimConfig};
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use serde_json::Value;

fn operator(conductor: &str, manifests: &Path, state: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--conductor", conductor, "--manifests"])
        .arg(manifests)
        .arg("--state")
        .arg(state)
        .args(["--poll-ms", "20", "--inspection", "fast", "--until-settled"])
        .arg("--status-dir")
        .arg(state.with_extension("status"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn statuses(output: &str) -> Value {
    let start = output.find("\n{").map(|i| i + 1).unwrap_or(0);
    // The JSON object, then perhaps the error log lines of standard error.
    serde_json::Deserializer::from_str(&output[start..])
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no status JSON in: {output}"))
}

const SYSTEM: &str = "/redfish/v1/Systems/437XR1138R2";

/// A bmc-sim BMC, a conductor service, and a folder with manifests for one live-ISO host
/// on that BMC.
struct Lab {
    sim: RedfishSim,
    service: Service,
    dir: std::path::PathBuf,
}

async fn lab(name: &str) -> Lab {
    let system = SYSTEM;
    let sim = RedfishSim::start(SimConfig {
        tree: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/redfish/dmtf-public-rackmount1"),
        ),
        credentials: Some(("admin".into(), "s3cret".into())),
        power_delay: Duration::from_millis(20),
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
    let dir = std::env::temp_dir().join(format!("operator-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: bmc, namespace: lab}}
stringData: {{username: admin, password: s3cret}}
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata: {{name: node-0, namespace: lab}}
spec:
  online: true
  bmc: {{address: "redfish-virtualmedia+http://{}{system}", credentialsName: bmc}}
  image: {{url: "http://127.0.0.1:9/live.iso", format: live-iso}}
  automatedCleaningMode: disabled
"#,
        sim.addr()
    );
    std::fs::write(dir.join("hosts.yaml"), manifest).unwrap();
    Lab { sim, service, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_provisions_a_host_once_across_a_restart() {
    let system = SYSTEM;
    let Lab { sim, service, dir } = lab("bin").await;
    let admin = service.admin_url();
    let state = dir.join("state.redb");

    let (ok, out) = tokio::task::spawn_blocking({
        let (admin, dir, state) = (admin.clone(), dir.clone(), state.clone());
        move || operator(&admin, &dir, &state)
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let status = &statuses(&out)["lab/node-0"];
    assert_eq!(status["provisioning"]["state"], "provisioned", "{out}");
    assert_eq!(status["operationalStatus"], "OK");
    assert_eq!(status["poweredOn"], true);
    // Metal3's operationHistory: each operation's start and end, none for what has not
    // happened.
    let history = &status["operationHistory"];
    for op in ["register", "inspect", "provision"] {
        let (start, end) = (history[op]["start"].as_str(), history[op]["end"].as_str());
        assert!(start.is_some_and(|s| s.ends_with('Z')), "{op}: {history}");
        assert!(end.is_some_and(|e| Some(e) >= start), "{op}: {history}");
    }
    assert!(history["deprovision"]["start"].is_null(), "{history}");
    // The object with its status, written back as a YAML file.
    let written =
        std::fs::read_to_string(state.with_extension("status").join("lab.node-0.yaml")).unwrap();
    let object: Value = serde_norway::from_str(&written).unwrap();
    assert_eq!(object["kind"], "BareMetalHost");
    assert_eq!(object["spec"]["image"]["format"], "live-iso");
    assert_eq!(object["status"]["provisioning"]["state"], "provisioned");
    assert!(
        status["hardware"]["nics"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
    );
    let boots = sim.boots(system);
    assert_eq!(
        boots,
        [BootSource::VirtualCd {
            slot: "/redfish/v1/systems/437xr1138r2/virtualmedia/cd1".into(),
            image: "http://127.0.0.1:9/live.iso".into()
        }]
    );

    // A second operator on the same state: still provisioned, nothing deployed again.
    let (ok, out) = tokio::task::spawn_blocking({
        let (admin, dir, state) = (admin.clone(), dir.clone(), state.clone());
        move || operator(&admin, &dir, &state)
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(
        statuses(&out)["lab/node-0"]["provisioning"]["state"],
        "provisioned"
    );
    assert_eq!(sim.boots(system).len(), 1, "{:?}", sim.boots(system));
    drop(service);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_serves_baremetal_operators_metrics() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let Lab { sim, service, dir } = lab("metrics").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--conductor", &service.admin_url(), "--manifests"])
        .arg(&dir)
        .arg("--state")
        .arg(dir.join("state.redb"))
        .args(["--poll-ms", "20", "--inspection", "fast"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("metrics ").unwrap().to_string();
    // Keep reading its progress lines so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in stdout.lines() {});

    let mut text = String::new();
    for _ in 0..500 {
        text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if text
            .contains(r#"metal3_hosts{provisioning_state="provisioned",operational_status="OK"} 1"#)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    drop(service);
    sim.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains(
            r#"metal3_hosts{provisioning_state="provisioned",operational_status="OK"} 1"#
        ),
        "{text}"
    );
    let sample = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert!(sample(r#"metal3_reconcile_total{namespace="lab",host="node-0"}"#) >= 4.0);
    assert_eq!(
        sample(
            r#"metal3_provisioning_state_change_total{prev_state="provisioning",new_state="provisioned"}"#
        ),
        1.0
    );
    assert_eq!(
        sample("metal3_operation_provision_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        sample("metal3_operation_inspect_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        sample("metal3_operation_deprovision_duration_seconds_count"),
        0.0
    );
}

#[test]
fn help_matches_its_snapshot() {
    test_peers::assert_help_snapshot(
        env!("CARGO_BIN_EXE_operator"),
        &[],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/operator-help.txt"),
    );
}

/// The manifests of one host booting the agent for in-band inspection, its agent network
/// named by `preprovisioningNetworkDataName` (a Secret holding YAML); `with_secret` false
/// leaves that Secret out.
fn agent_network_manifests(sim: &RedfishSim, with_secret: bool) -> String {
    let network = if with_secret {
        r#"---
apiVersion: v1
kind: Secret
metadata: {name: node-0-agent-network, namespace: lab}
stringData:
  networkData: |
    links: [{id: boot, type: phy, ethernet_mac_address: "52:54:00:00:00:01"}]
    networks: [{id: site, type: ipv4, link: boot, ip_address: 192.0.2.10, netmask: 255.255.255.0}]
    services: []
"#
    } else {
        ""
    };
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: bmc, namespace: lab}}
stringData: {{username: admin, password: s3cret}}
{network}---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata: {{name: node-0, namespace: lab}}
spec:
  online: true
  bmc: {{address: "redfish-virtualmedia+http://{}{SYSTEM}", credentialsName: bmc}}
  bootMACAddress: "52:54:00:00:00:01"
  preprovisioningNetworkDataName: node-0-agent-network
"#,
        sim.addr()
    )
}

/// The manifests of one host whose agent network comes from an IPPool (the
/// `metal3.io/preprovisioning-ippool` annotation): no Secret for it at all.
fn agent_pool_manifests(sim: &RedfishSim) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: bmc, namespace: lab}}
stringData: {{username: admin, password: s3cret}}
---
apiVersion: ipam.metal3.io/v1alpha1
kind: IPPool
metadata: {{name: site-agents, namespace: lab}}
spec:
  namePrefix: site-agents
  pools: [{{start: 192.0.2.50, end: 192.0.2.60}}]
  prefix: 24
  gateway: 192.0.2.1
---
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: node-0
  namespace: lab
  annotations: {{metal3.io/preprovisioning-ippool: site-agents}}
spec:
  online: true
  bmc: {{address: "redfish-virtualmedia+http://{}{SYSTEM}", credentialsName: bmc}}
  bootMACAddress: "52:54:00:00:00:01"
"#,
        sim.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preprovisioning_network_data_reaches_the_agents_config_image() {
    let network =
        agent_network_in_config_image("agent-network", |sim| agent_network_manifests(sim, true))
            .await;
    assert_eq!(
        network["networks"][0]["ip_address"], "192.0.2.10",
        "{network}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_network_from_a_pool_reaches_the_agents_config_image() {
    let network = agent_network_in_config_image("agent-pool", agent_pool_manifests).await;
    // The pool's first address, its netmask and gateway, on the boot NIC.
    assert_eq!(
        network["networks"][0]["ip_address"], "192.0.2.50",
        "{network}"
    );
    assert_eq!(
        network["networks"][0]["netmask"], "255.255.255.0",
        "{network}"
    );
    assert_eq!(
        network["networks"][0]["routes"][0]["gateway"], "192.0.2.1",
        "{network}"
    );
}

/// Runs the operator binary on the manifests `manifests` writes for the lab's BMC,
/// against a conductor that boots the agent with config images, and returns the
/// `network_data.json` of the first config image inserted.
#[allow(clippy::expect_used)]
async fn agent_network_in_config_image(
    name: &str,
    manifests: impl Fn(&RedfishSim) -> String,
) -> Value {
    use metal3_conductor::conductor::AgentConfigImages;
    use std::process::Stdio;

    let Lab {
        sim,
        service: _,
        dir,
    } = lab(name).await;
    // A conductor that boots the agent with config images.
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            conductor: metal3_conductor::ConductorConfig {
                agent_image_url: "http://127.0.0.1:9/agent.iso".into(),
                agent_config_images: Some(AgentConfigImages {
                    agent_api_url: String::new(),
                    ca_pem: None,
                    agent_iso_file: None,
                }),
                ..Default::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap();
    std::fs::write(dir.join("hosts.yaml"), manifests(&sim)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--conductor", &service.admin_url(), "--manifests"])
        .arg(&dir)
        .arg("--state")
        .arg(dir.join("state.redb"))
        .args(["--poll-ms", "20", "--inspection", "agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The agent ISO in the CD, the config image in the floppy/USB slot (where the
    // recording left an image of its own, ejected first).
    let mut image = None;
    for _ in 0..500 {
        let usb = sim.resource(&format!("{SYSTEM}/VirtualMedia/Floppy1"));
        let inserted = usb.as_ref().and_then(|v| v["Image"].as_str());
        if let Some(url) = inserted.filter(|u| u.starts_with(&service.agent_url())) {
            image = Some(url.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let url = image.expect("no config image was inserted");
    assert!(url.starts_with(&service.agent_url()), "{url}");
    let bytes = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let files = metal3_agent::configdrive::read_fat_image(&bytes).unwrap();
    let network: Value =
        serde_json::from_slice(&files["openstack/latest/network_data.json"]).unwrap();
    assert_eq!(
        network["links"][0]["ethernet_mac_address"],
        "52:54:00:00:00:01"
    );
    let section: Value = serde_json::from_slice(&files["metal3/agent.json"]).unwrap();
    assert_eq!(section["conductor_url"], service.agent_url());
    drop(service);
    std::fs::remove_dir_all(&dir).unwrap();
    network
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_preprovisioning_network_secret_is_a_registration_error() {
    let Lab { sim, service, dir } = lab("agent-network-missing").await;
    std::fs::write(dir.join("hosts.yaml"), agent_network_manifests(&sim, false)).unwrap();
    let state = dir.join("state.redb");
    let (ok, out) = tokio::task::spawn_blocking({
        let (admin, dir, state) = (service.admin_url(), dir.clone(), state.clone());
        move || operator(&admin, &dir, &state)
    })
    .await
    .unwrap();
    assert!(!ok, "{out}");
    let status = &statuses(&out)["lab/node-0"];
    assert_eq!(status["errorType"], "registration error", "{out}");
    let message = status["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("Secret lab/node-0-agent-network") && message.contains("networkData"),
        "{message}"
    );
    assert!(sim.boots(SYSTEM).is_empty());
    drop(service);
    std::fs::remove_dir_all(&dir).unwrap();
}
