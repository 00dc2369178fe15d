//! The conductor's node store across crashes, and the agent token's rules. Each run of
//! the conductor gets a runtime of its own; a crash is that runtime shut down at once:
//! every task of the conductor stops at whatever await it was at, as under SIGKILL, and
//! only what was committed survives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bmc_core::memory::MemoryBmc;
use bmc_core::verified::PollPolicy;
use bmc_core::{BmcAddress, BmcScheme, Credentials, PowerState, Registry};
use metal3_conductor::agent_protocol::{AgentCommand, AgentResult, ConfigDrive};
use metal3_conductor::persist::{NodeStore, SealingKey};
use metal3_conductor::{ApiError, Conductor, ConductorConfig, DeployConfig, NodeSpec, Verb};
use provision_fsm::{Image, ImageFormat, NodeState};
use tokio::runtime::Runtime;

const MAC: &str = "52:54:00:00:00:01";
const PASSWORD: &str = "pa55-word-in-the-store";
const AGENT: &str = "http://192.0.2.1/agent.iso";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("durability-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> ConductorConfig {
    ConductorConfig {
        poll: PollPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        agent_image_url: AGENT.into(),
        ..ConductorConfig::default()
    }
}

fn open(dir: &Path, bmcs: &[&MemoryBmc]) -> Arc<Conductor> {
    let mut registry = Registry::new();
    // One memory BMC per scheme: the node's address picks it.
    let schemes = [BmcScheme::RedfishVirtualMedia, BmcScheme::Redfish];
    for (bmc, scheme) in bmcs.iter().zip(schemes) {
        registry.register(scheme, bmc.factory());
    }
    let key = SealingKey::load_or_create(&dir.join("state.key")).unwrap();
    let store = NodeStore::open(&dir.join("state.redb"), key).unwrap();
    Conductor::open(config(), registry, store).unwrap()
}

fn spec(name: &str, scheme: &str, mac: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        address: BmcAddress::parse(&format!("{scheme}://192.0.2.10/redfish/v1/Systems/1")).unwrap(),
        credentials: Credentials::new("admin", PASSWORD).unwrap(),
        disable_certificate_verification: false,
        boot_mac: Some(mac.into()),
        automated_clean: false,
        preprovisioning_network_data: None,
        legacy_boot: false,
    }
}

async fn until(c: &Conductor, name: &str, state: NodeState) {
    for _ in 0..4000 {
        let view = c.node(name).unwrap();
        if view.state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{name} never reached {state}: {:?}", c.node(name));
}

/// A crash: every task of the conductor stops where it is.
fn crash(rt: Runtime) {
    rt.shutdown_timeout(Duration::from_secs(5));
}

fn deploy(image: Image) -> Verb {
    Verb::Deploy(DeployConfig {
        image,
        config_drive: ConfigDrive::default(),
        legacy_boot: false,
        root_device_hints: None,
    })
}

async fn to_available(c: &Arc<Conductor>, name: &str) {
    c.provision(name, Verb::Manage, None).await.unwrap();
    until(c, name, NodeState::Manageable).await;
    c.provision(name, Verb::Provide, None).await.unwrap();
    until(c, name, NodeState::Available).await;
}

/// A node waiting for its agent when the conductor died keeps waiting after the
/// restart, its agent's token still good and given once; the command is given until
/// the result arrives (an answer lost with the conductor is not the agent's loss); the
/// agent's result deploys the node; the password is not in the state file.
#[test]
fn a_node_waiting_for_its_agent_survives_a_crash_with_its_token() {
    let dir = temp_dir("agent");
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
    let rt = Runtime::new().unwrap();
    let token = rt.block_on(async {
        let c = open(&dir, &[&bmc]);
        c.create_node(spec("lab/n0", "redfish-virtualmedia", MAC))
            .await
            .unwrap();
        to_available(&c, "lab/n0").await;
        c.provision(
            "lab/n0",
            deploy(Image::at("http://192.0.2.1/os.qcow2")),
            None,
        )
        .await
        .unwrap();
        until(&c, "lab/n0", NodeState::WaitCallBack).await;
        let token = c.agent_lookup(&[MAC.into()]).await.unwrap().agent_token;
        // The agent's first heartbeat: its token is in use from now on.
        let command = c.agent_heartbeat("lab/n0", &token).await.unwrap();
        assert!(matches!(command, Some(AgentCommand::InstallImage { .. })));
        token
    });
    crash(rt);
    let boots_before = bmc
        .calls()
        .iter()
        .filter(|c| c.starts_with("power on"))
        .count();

    let stored = std::fs::read(dir.join("state.redb")).unwrap();
    let clear = stored
        .windows(PASSWORD.len())
        .any(|w| w == PASSWORD.as_bytes());
    assert!(
        !clear,
        "the BMC password is in the state file in clear text"
    );
    let token_kept = stored.windows(token.len()).any(|w| w == token.as_bytes());
    assert!(!token_kept, "the agent token is in the state file");

    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let c = open(&dir, &[&bmc]);
        let view = c.node("lab/n0").unwrap();
        assert_eq!(view.state, NodeState::WaitCallBack);
        assert_eq!(view.deploy_attempts, 1);
        // The agent of this boot already has its token: a second look-up is refused.
        let again = c.agent_lookup(&[MAC.into()]).await;
        assert!(
            matches!(&again, Err(ApiError::InvalidState(m)) if m.contains("already gave")),
            "{again:?}"
        );
        // A guessed token is refused; the real one still gets its command.
        let guessed = c.agent_heartbeat("lab/n0", &"0".repeat(32)).await;
        assert!(guessed.is_err(), "{guessed:?}");
        let command = c.agent_heartbeat("lab/n0", &token).await.unwrap();
        assert!(
            matches!(command, Some(AgentCommand::InstallImage { .. })),
            "{command:?}"
        );
    });
    crash(rt);

    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let c = open(&dir, &[&bmc]);
        c.agent_report("lab/n0", &token, AgentResult::default())
            .await
            .unwrap();
        until(&c, "lab/n0", NodeState::Active).await;
        // The node left its wait: the token is void.
        let replayed = c.agent_heartbeat("lab/n0", &token).await;
        assert!(replayed.is_err(), "{replayed:?}");
    });
    crash(rt);
    let boots_after = bmc
        .calls()
        .iter()
        .filter(|c| c.starts_with("power on"))
        .count();
    // The agent was not booted again by the restarts: only the boot from disk after
    // the image was written powers the host (on, or a reset when it is on).
    let agent_inserts = bmc
        .calls()
        .iter()
        .filter(|c| c.as_str() == format!("insert_media cd {AGENT}"))
        .count();
    assert_eq!(agent_inserts, 1, "{:?}", bmc.calls());
    assert!(boots_after <= boots_before + 1, "{:?}", bmc.calls());

    // The key file is what opens the passwords: another key cannot.
    let other = dir.join("other.key");
    let key = SealingKey::load_or_create(&other).unwrap();
    let store = NodeStore::open(&dir.join("state.redb"), key).unwrap();
    let rt = Runtime::new().unwrap();
    let refused = rt.block_on(async { Conductor::open(config(), Registry::new(), store) });
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("does not open with this key"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A live ISO whose boot had begun when the conductor died is not booted again: the
/// restarted conductor reads the BMC back and finishes the deploy without a power cycle.
#[test]
fn a_live_iso_boot_under_way_at_a_crash_is_not_started_twice() {
    let dir = temp_dir("live");
    // Power changes take a while to show: the crash comes during one.
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
    let live = Image {
        format: Some(ImageFormat::LiveIso),
        ..Image::at("http://192.0.2.1/live.iso")
    };
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let c = open(&dir, &[&bmc]);
        c.create_node(spec("lab/n0", "redfish-virtualmedia", MAC))
            .await
            .unwrap();
        to_available(&c, "lab/n0").await;
        bmc.state.lock().unwrap().transition_reads = 1_000_000;
        c.provision("lab/n0", deploy(live.clone()), None)
            .await
            .unwrap();
        for _ in 0..4000 {
            if bmc.calls().iter().any(|c| c == "power power on") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    crash(rt);
    let calls = bmc.calls();
    let from = calls
        .iter()
        .position(|c| c == "power power on")
        .expect("the boot began before the crash");
    bmc.state.lock().unwrap().transition_reads = 0;

    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let c = open(&dir, &[&bmc]);
        assert_eq!(c.node("lab/n0").unwrap().state, NodeState::Deploying);
        until(&c, "lab/n0", NodeState::Active).await;
        let view = c.node("lab/n0").unwrap();
        assert_eq!(view.deployed_image.as_deref(), Some(live.url.as_str()));
        assert_eq!(view.deploy_attempts, 1);
    });
    crash(rt);
    let calls = bmc.calls();
    let after: Vec<&String> = calls[from + 1..].iter().collect();
    assert!(
        !after.iter().any(|c| c.starts_with("power power off")
            || c.starts_with("power reset")
            || c.starts_with("power power cycle")
            || c.starts_with("insert_media")
            || c.starts_with("eject_media")),
        "the host was booted again after the restart: {after:?}"
    );
    assert_eq!(bmc.power_now(), PowerState::On);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Another node's token, a token of an earlier boot, and a guess are refused; so is a
/// second look-up of one boot; a new boot gets a new token.
#[test]
fn agent_tokens_are_one_per_boot_and_good_only_for_their_node() {
    let dir = temp_dir("tokens");
    let a = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
    let b = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let c = open(&dir, &[&a, &b]);
        c.create_node(spec("lab/a", "redfish-virtualmedia", MAC))
            .await
            .unwrap();
        c.create_node(spec("lab/b", "redfish", "52:54:00:00:00:02"))
            .await
            .unwrap();
        for name in ["lab/a", "lab/b"] {
            c.provision(name, Verb::Manage, None).await.unwrap();
            until(&c, name, NodeState::Manageable).await;
            c.provision(name, Verb::Inspect { in_band: true }, None)
                .await
                .unwrap();
            until(&c, name, NodeState::InspectWait).await;
        }
        let token_a = c.agent_lookup(&[MAC.into()]).await.unwrap().agent_token;
        let token_b = c
            .agent_lookup(&["52:54:00:00:00:02".into()])
            .await
            .unwrap()
            .agent_token;
        assert_eq!(token_a.len(), 32, "128 bits, hex");
        assert_ne!(token_a, token_b);
        // A token not used yet may have been lost on its way: a second look-up replaces
        // it, and the first is void.
        let lost = token_a;
        let token_a = c.agent_lookup(&[MAC.into()]).await.unwrap().agent_token;
        assert_ne!(lost, token_a);
        assert!(c.agent_heartbeat("lab/a", &lost).await.is_err());
        // Once used, the token is the agent's: another look-up is refused.
        assert_eq!(
            c.agent_heartbeat("lab/a", &token_a).await.unwrap(),
            Some(AgentCommand::Inspect)
        );
        let second = c.agent_lookup(&[MAC.into()]).await;
        assert!(
            matches!(second, Err(ApiError::InvalidState(_))),
            "{second:?}"
        );
        // Another node's token.
        assert!(c.agent_heartbeat("lab/a", &token_b).await.is_err());
        assert!(c.agent_log("lab/a", &token_b, &["x".into()]).is_err());
        // A guess of the same length.
        let mut guess = token_a.clone().into_bytes();
        guess[0] = if guess[0] == b'0' { b'1' } else { b'0' };
        let guess = String::from_utf8(guess).unwrap();
        assert!(c.agent_heartbeat("lab/a", &guess).await.is_err());
        // The node stops waiting (aborted): its token is void, even for its own node.
        c.provision("lab/a", Verb::Abort, None).await.unwrap();
        until(&c, "lab/a", NodeState::InspectFailed).await;
        let replayed = c
            .agent_report("lab/a", &token_a, AgentResult::default())
            .await;
        assert!(replayed.is_err(), "{replayed:?}");
        // A new boot of the agent gets a new token.
        c.provision("lab/a", Verb::Inspect { in_band: true }, None)
            .await
            .unwrap();
        until(&c, "lab/a", NodeState::InspectWait).await;
        let fresh = c.agent_lookup(&[MAC.into()]).await.unwrap().agent_token;
        assert_ne!(fresh, token_a);
        assert_ne!(fresh, lost);
        assert!(c.agent_heartbeat("lab/a", &token_a).await.is_err());
        assert!(c.agent_heartbeat("lab/a", &fresh).await.is_ok());
    });
    crash(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Errors name the phase that failed: cleaning without an agent image says cleaning.
#[test]
fn a_failure_names_its_phase() {
    let dir = temp_dir("phase");
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let mut registry = Registry::new();
        registry.register(BmcScheme::RedfishVirtualMedia, bmc.factory());
        let c = Conductor::new(
            ConductorConfig {
                agent_image_url: String::new(),
                ..config()
            },
            registry,
        );
        let mut node = spec("lab/n0", "redfish-virtualmedia", MAC);
        node.automated_clean = true;
        c.create_node(node).await.unwrap();
        c.provision("lab/n0", Verb::Manage, None).await.unwrap();
        until(&c, "lab/n0", NodeState::Manageable).await;
        c.provision("lab/n0", Verb::Provide, None).await.unwrap();
        until(&c, "lab/n0", NodeState::CleanFailed).await;
        let error = c.node("lab/n0").unwrap().last_error.unwrap_or_default();
        assert!(
            error.starts_with("cleaning: ") && error.contains("no agent image configured"),
            "{error}"
        );
    });
    crash(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
