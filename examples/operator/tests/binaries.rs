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
    serde_json::from_str(&output[start..]).unwrap_or_else(|e| panic!("{e}: {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_provisions_a_host_once_across_a_restart() {
    let system = "/redfish/v1/Systems/437XR1138R2";
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
    let admin = service.admin_url();

    let dir = std::env::temp_dir().join(format!("operator-bin-{}", std::process::id()));
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
