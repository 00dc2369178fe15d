//! The `conductor` and `operator` binaries as separate processes, talking over the admin
//! API: a live-ISO host on bmc-sim goes to provisioned; an operator restarted on the same
//! state file finds it provisioned and deploys nothing again. `metal3-demo` with its
//! simulated fleet in a process of its own.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bmc_sim::vendor::BootSource;
use bmc_sim::{RedfishSim, SimConfig};
use serde_json::Value;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
async fn conductor_and_operator_processes_provision_a_host_once() {
    let system = "/redfish/v1/Systems/437XR1138R2";
    let sim = RedfishSim::start(SimConfig {
        tree: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/redfish/dmtf-public-rackmount1"),
        ),
        credentials: Some(("admin".into(), "s3cret".into())),
        power_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let conductor_process = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let admin = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("admin API ")
        .to_string();
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");

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
    drop(conductor_process);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `metal3-demo --separate-simulator`: the simulated fleet runs in a child process, every
/// host still ends where it should (what each simulated host booted is read back from the
/// fleet process), and both processes' peak memory is reported.
#[test]
fn demo_with_the_fleet_in_its_own_process() {
    let out = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .args([
            "--hosts",
            "7",
            "--power-delay-ms",
            "0",
            "--separate-simulator",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every host ended where it should"),
        "{stdout}"
    );
    let memory = stdout
        .lines()
        .find(|l| l.starts_with("peak memory: operator+conductor"))
        .unwrap_or_else(|| panic!("no memory line in {stdout}"));
    // `… operator+conductor 20.0 MiB (2925.7 KiB per host), simulated fleet 51.7 MiB`
    let mib: Vec<f64> = memory
        .split_whitespace()
        .filter_map(|w| w.trim_start_matches('(').parse::<f64>().ok())
        .collect();
    assert_eq!(mib.len(), 3, "{memory}");
    assert!(mib[0] > 1.0 && mib[2] > 1.0, "{memory}");
    // Seven hosts' worth of simulated BMCs served requests through the child.
    let requests: u64 = stdout
        .lines()
        .find(|l| l.starts_with("7 hosts:"))
        .and_then(|l| l.split("; ").find(|p| p.ends_with("per host)")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 7 * 20, "{stdout}");
}
