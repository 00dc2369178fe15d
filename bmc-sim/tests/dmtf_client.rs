//! A client we did not write drives bmc-sim: DMTF's `redfish` library through its
//! utilities (`rf_power_reset.py`, `rf_boot_override.py`, `rf_virtual_media.py`, from
//! PyPI) power the system on and off, set a one-time UEFI boot from CD and insert and
//! eject an ISO, on the built-in tree and on a recorded one; each change is read back by
//! the same tools and in the simulator.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};
use serde_json::Value;
use test_peers::DmtfTools;

const USER: &str = "admin";
const PASSWORD: &str = "client-pw-1";
const ISO: &str = "http://127.0.0.1:9/images/agent.iso";

fn tools() -> DmtfTools {
    DmtfTools::install(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmtf-tools"))
}

/// Runs a DMTF utility against the simulator: its output, after checking it succeeded.
async fn run(tools: &DmtfTools, sim: &RedfishSim, program: &str, args: &[&str]) -> String {
    let mut command = tools.command(program);
    command
        .args(["-u", USER, "-p", PASSWORD, "-r", &sim.url()])
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

async fn drive(tree: Option<&str>, system: &str, slot: &str) {
    let tools = tokio::task::spawn_blocking(tools).await.unwrap();
    let sim = RedfishSim::start(SimConfig {
        tree: tree.map(|t| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/redfish")
                .join(t)
        }),
        credentials: Some((USER.into(), PASSWORD.into())),
        power_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let power = |sim: &RedfishSim| sim.resource(system).unwrap()["PowerState"].clone();

    // A power cycle: on, then off, each seen by the tool and at the BMC.
    for (reset, state) in [("On", "On"), ("ForceOff", "Off")] {
        run(&tools, &sim, "rf_power_reset.py", &["-t", reset]).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(power(&sim), state, "{tree:?} after {reset}");
        let info = run(&tools, &sim, "rf_power_reset.py", &["-info"]).await;
        assert!(
            info.contains(&format!("Current power state: {state}")),
            "{info}"
        );
    }

    // A one-time UEFI boot from CD.
    run(
        &tools,
        &sim,
        "rf_boot_override.py",
        &["-t", "Cd", "-m", "UEFI"],
    )
    .await;
    let boot = sim.resource(system).unwrap()["Boot"].clone();
    assert_eq!(boot["BootSourceOverrideTarget"], "Cd", "{tree:?}: {boot}");
    assert_eq!(
        boot["BootSourceOverrideEnabled"], "Once",
        "{tree:?}: {boot}"
    );
    assert_eq!(boot["BootSourceOverrideMode"], "UEFI", "{tree:?}: {boot}");
    let shown = run(&tools, &sim, "rf_boot_override.py", &[]).await;
    assert!(
        shown.contains("Target: Cd") && shown.contains("Enabled: Once"),
        "{shown}"
    );

    // Virtual media: insert an ISO into a CD slot, read it back, eject it.
    run(
        &tools,
        &sim,
        "rf_virtual_media.py",
        &["insert", "--image", ISO, "--mediatypes", "CD"],
    )
    .await;
    let media = sim.resource(slot).unwrap();
    assert_eq!(media["Image"], ISO, "{tree:?}: {media}");
    assert_eq!(media["Inserted"], true, "{tree:?}: {media}");
    let info = run(&tools, &sim, "rf_virtual_media.py", &["info"]).await;
    assert!(info.contains(ISO), "{info}");
    let id = media["Id"].as_str().unwrap().to_string();
    run(&tools, &sim, "rf_virtual_media.py", &["eject", "--id", &id]).await;
    let media = sim.resource(slot).unwrap();
    assert_eq!(media["Inserted"], false, "{tree:?}: {media}");
    assert_eq!(media["Image"], Value::Null, "{tree:?}: {media}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmtf_utilities_drive_the_builtin_tree() {
    drive(
        None,
        "/redfish/v1/Systems/1",
        "/redfish/v1/Systems/1/VirtualMedia/Cd",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmtf_utilities_drive_a_recorded_supermicro() {
    drive(
        Some("supermicro-sys-821ge-tnhr-x13-bmc-fw11.01.01"),
        "/redfish/v1/Systems/1",
        "/redfish/v1/Managers/1/VirtualMedia/VirtualMedia1",
    )
    .await
}
