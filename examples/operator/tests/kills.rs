//! The `operator` process killed with SIGKILL ten times at random moments while 20 hosts
//! provision on bmc-sim (10 live ISOs, 10 disk images written by an agent, every host
//! inspected by the agent, the disk-image hosts cleaned), each time started again on the
//! same state file. At the end every host is provisioned, each deployed once — counted
//! at the simulated BMC (live-ISO boots), at the agent (images written) and at the
//! conductor (deploys accepted) — and no address was given twice.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bmc_sim::RedfishSim;
use bmc_sim::vendor::BootSource;
use metal3_conductor::{ConductorApi, HttpConductor};
use metal3_operator::operator::HostRecord;
use metal3_operator::store::Store;
use provision_fsm::NodeState;
use serde_json::Value;

mod common;
use common::{Written, agent, conductor, sims};

const HOSTS: usize = 20;
const KILLS: usize = 10;
const SYSTEM: &str = "/redfish/v1/Systems/437XR1138R2";
const LIVE_ISO: &str = "http://127.0.0.1:9/live.iso";

fn mac(i: usize) -> String {
    format!("52:54:00:aa:00:{i:02x}")
}

fn live_iso(i: usize) -> bool {
    i % 2 == 0
}

/// The manifests: a Secret, the namespace's one IPPool, and the hosts.
fn manifests(sims: &[RedfishSim]) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bmc, namespace: lab}\n\
         stringData: {username: admin, password: s3cret}\n---\n\
         apiVersion: ipam.metal3.io/v1alpha1\nkind: IPPool\n\
         metadata: {name: site, namespace: lab}\n\
         spec: {namePrefix: site, pools: [{start: 192.0.2.10, end: 192.0.2.200}], prefix: 24, gateway: 192.0.2.1}\n",
    );
    for (i, sim) in sims.iter().enumerate() {
        let (image, cleaning) = if live_iso(i) {
            (
                format!("{{url: \"{LIVE_ISO}\", format: live-iso}}"),
                "disabled",
            )
        } else {
            (
                format!(
                    "{{url: \"http://127.0.0.1:9/os-{i}.qcow2\", format: qcow2, checksumType: sha256, \
                     checksum: \"{}\"}}",
                    "ab".repeat(32)
                ),
                "metadata",
            )
        };
        text.push_str(&format!(
            "---\napiVersion: metal3.io/v1alpha1\nkind: BareMetalHost\n\
             metadata: {{name: node-{i}, namespace: lab}}\n\
             spec:\n  online: true\n  bootMACAddress: \"{}\"\n\
             \x20 bmc: {{address: \"redfish-virtualmedia+http://{}{SYSTEM}\", credentialsName: bmc}}\n\
             \x20 image: {image}\n  automatedCleaningMode: {cleaning}\n",
            mac(i),
            sim.addr()
        ));
    }
    text
}

fn operator(admin: &str, dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_operator"));
    command
        .args(["--conductor", admin, "--manifests"])
        .arg(dir.join("manifests"))
        .arg("--state")
        .arg(dir.join("state.redb"))
        .args(["--poll-ms", "20", "--inspection", "agent"]);
    command
}

/// 100 to 800 ms, from a small generator seeded by the process id (printed on failure).
fn gap(seed: &mut u64) -> Duration {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    Duration::from_millis(100 + (*seed >> 33) % 700)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_killed_ten_times_provisions_every_host_once() {
    let sims = sims(HOSTS).await;
    let service = conductor().await;
    let admin = service.admin_url();
    let dir = std::env::temp_dir().join(format!("operator-kills-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/hosts.yaml"), manifests(&sims)).unwrap();
    let written = Written::default();
    let agents: Vec<_> = (0..HOSTS)
        .map(|i| tokio::spawn(agent(service.agent_url(), mac(i), written.clone())))
        .collect();

    let seed0 = u64::from(std::process::id()) | 1;
    let mut seed = seed0;
    let conductor = HttpConductor::new(&admin);
    let mut in_flight = Vec::new();
    let started = Instant::now();
    for _ in 0..KILLS {
        let mut child = operator(&admin, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(gap(&mut seed)).await;
        // SIGKILL: nothing of the operator's runs on after this, not even its store's
        // clean close.
        child.kill().unwrap();
        child.wait().unwrap();
        // Hosts whose node was somewhere between enrolled and active at the kill.
        let nodes = conductor.changes(0, Duration::ZERO).await.unwrap().changes;
        in_flight.push(
            nodes
                .iter()
                .filter(|n| !matches!(n.state, Some(NodeState::Active | NodeState::Enroll) | None))
                .count(),
        );
    }
    let out = tokio::task::spawn_blocking({
        let (admin, dir) = (admin.clone(), dir.clone());
        move || {
            operator(&admin, &dir)
                .arg("--until-settled")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let context = format!(
        "seed {seed0}, hosts in flight at each kill {in_flight:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{context}");
    // The kills came while the hosts were on their way, not before or after.
    assert!(
        in_flight.iter().filter(|&&n| n > 0).count() >= KILLS / 2,
        "{context}"
    );
    let json_at = stdout.find("\n{").map(|i| i + 1).unwrap_or(0);
    let statuses: Value = serde_json::from_str(&stdout[json_at..]).unwrap();

    let written = written.lock().unwrap().clone();
    for (i, sim) in sims.iter().enumerate() {
        let key = format!("lab/node-{i}");
        let status = &statuses[&key];
        assert_eq!(
            status["provisioning"]["state"], "provisioned",
            "{key}: {context}"
        );
        assert_eq!(status["operationalStatus"], "OK", "{key}: {context}");
        let node = conductor.node(&key).await.unwrap();
        assert_eq!(node.deploy_attempts, 1, "{key}: {node:?}\n{context}");
        let live_boots = sim
            .boots(SYSTEM)
            .iter()
            .filter(|b| matches!(b, BootSource::VirtualCd { image, .. } if image == LIVE_ISO))
            .count();
        let images = written.get(&key).copied().unwrap_or(0);
        if live_iso(i) {
            assert_eq!((live_boots, images), (1, 0), "{key}: {context}");
        } else {
            assert_eq!((live_boots, images), (0, 1), "{key}: {context}");
        }
    }
    // Every host holds an address of its own, in the state the last operator left.
    let store = Store::open(&dir.join("state.redb")).unwrap();
    let records: Vec<(String, HostRecord)> = store.hosts().unwrap();
    let addresses: BTreeSet<String> = records
        .iter()
        .filter_map(|(_, r)| r.address.as_ref())
        .map(|a| a.address.address.to_string())
        .collect();
    assert_eq!(records.len(), HOSTS);
    assert_eq!(addresses.len(), HOSTS, "{records:?}");
    println!(
        "operator SIGKILLed {KILLS} times (hosts in flight at each kill: {in_flight:?}), \
         {HOSTS} hosts provisioned, {HOSTS} deploys counted (live-ISO boots at the BMCs, \
         images the agents wrote, deploys the conductor accepted), in {:.1} s (seed {seed0})",
        elapsed.as_secs_f64()
    );

    for a in agents {
        a.abort();
    }
    drop(service);
    for sim in sims {
        sim.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
