//! The demo's workflow against the real sushy-tools emulator instead of bmc-sim: three
//! systems behind one emulator, registered, inspected, provisioned by live ISO (the
//! emulator downloads the image from the demo's image server), deprovisioned and
//! deleted. The emulator's power changes land seconds late, like hardware.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use metal3_demo::demo::{DemoConfig, run};

const USER: &str = "admin";
const PASSWORD: &str = "sushy-workflow-pw";

use test_peers::SushyPeer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sushy_systems_through_the_live_iso_lifecycle() {
    let work = std::env::temp_dir().join(format!("workflow-sushy-{}", std::process::id()));
    let peer_dir = work.join("peer");
    let manifests = work.join("manifests");
    std::fs::create_dir_all(&peer_dir).unwrap();
    std::fs::create_dir_all(&manifests).unwrap();
    let peer = SushyPeer::start(&peer_dir, 3, false, USER, PASSWORD);
    let host = peer.host();
    let systems = peer.systems();
    assert_eq!(systems.len(), 3, "{:?}", peer.env);
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: sushy, namespace: lab}}\n\
         stringData: {{username: {USER}, password: {PASSWORD}}}\n"
    );
    for (i, system) in systems.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: metal3.io/v1alpha1\nkind: BareMetalHost\n\
             metadata: {{name: sushy-{i}, namespace: lab}}\nspec:\n  online: true\n\
             \x20 bmc: {{address: \"redfish-virtualmedia+http://{host}/redfish/v1/Systems/{system}\", credentialsName: sushy}}\n\
             \x20 image: {{url: \"http://images.example/images/live.iso\", format: live-iso}}\n\
             \x20 automatedCleaningMode: disabled\n"
        ));
    }
    std::fs::write(manifests.join("hosts.yaml"), yaml).unwrap();
    let report = run(DemoConfig {
        manifests: manifests.clone(),
        external_bmcs: true,
        // No agent can boot on the emulator: inspect out of band, clean without it.
        inspection: provision_fsm::InspectionMode::Fast,
        timeout: Duration::from_secs(420),
        ..DemoConfig::default()
    })
    .await
    .unwrap();
    drop(peer);
    let _ = std::fs::remove_dir_all(&work);
    assert!(report.ok(), "\n{}", report.table());
    assert_eq!(report.hosts.len(), 3);
    for h in &report.hosts {
        for phase in ["registering", "inspecting", "provisioning", "provisioned"] {
            assert!(
                h.phases.iter().any(|(p, _)| p == phase),
                "{}: {:?}",
                h.key,
                h.phases
            );
        }
    }
}
