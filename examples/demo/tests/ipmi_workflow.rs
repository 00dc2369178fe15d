//! The conductor with an IPMI host (the pyghmi simulator from
//! `shared/peers/ipmi-sim.sh`): no virtual media, so the agent is booted by PXE. The test
//! stands in for the network boot: once the node waits for its agent, a simulated agent
//! with the host's boot MAC calls the agent API, writes the image, and the conductor sets
//! the disk as the boot device and restarts the host, all checked with ipmitool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::Path;
use std::time::Duration;

use bmc_core::verified::PollPolicy;
use bmc_core::{Credentials, Registry};
use metal3_conductor::agent_protocol::ConfigDrive;
use metal3_conductor::service::{Service, ServiceConfig};
use metal3_conductor::{Conductor, ConductorConfig, DeployConfig, NodeSpec, Verb};
use metal3_demo::fleet::{self, Images};
use provision_fsm::{ChecksumType, Image, ImageFormat, NodeState};
use serde_json::json;
use test_peers::IpmiPeer;

const MAC: &str = "52:54:00:12:34:56";

async fn wait_for(c: &Conductor, name: &str, state: NodeState) {
    common::wait_for_node(c, name, state, Duration::from_secs(60), &String::new).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipmi_host_deploys_a_disk_image_through_a_pxe_booted_agent() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ipmi-workflow");
    let peer = IpmiPeer::start("pyghmi", &dir);
    let port = peer.port;
    let ipmitool = |args: &[&str]| peer.ipmitool(args);

    let images = Images::demo();
    let image_server = fleet::serve_images(images.clone()).await.unwrap();
    let mut registry = Registry::new();
    bmc_ipmi::register(&mut registry);
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            conductor: ConductorConfig {
                poll: PollPolicy {
                    initial: Duration::from_millis(50),
                    max: Duration::from_millis(200),
                },
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        registry,
    )
    .await
    .unwrap();
    let conductor = service.conductor.clone();

    let name = "lab/ipmi-0";
    conductor
        .create_node(NodeSpec {
            name: name.into(),
            address: format!("ipmi://127.0.0.1:{port}").parse().unwrap(),
            credentials: Credentials::new("admin", "password").unwrap(),
            disable_certificate_verification: false,
            boot_mac: Some(MAC.into()),
            // Cleaning by the agent would need a second network boot here.
            automated_clean: false,
            preprovisioning_network_data: None,
            legacy_boot: false,
        })
        .await
        .unwrap();
    conductor.provision(name, Verb::Manage, None).await.unwrap();
    wait_for(&conductor, name, NodeState::Manageable).await;
    conductor
        .provision(name, Verb::Inspect { in_band: false }, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Manageable).await;
    assert!(conductor.node(name).unwrap().inspected);
    assert!(!conductor.inventory(name).unwrap().firmware.is_empty());
    conductor
        .provision(name, Verb::Provide, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Available).await;

    // A live ISO cannot go to a BMC without virtual media: a clear failure.
    conductor
        .provision(
            name,
            Verb::Deploy(DeployConfig {
                image: Image {
                    format: Some(ImageFormat::LiveIso),
                    ..Image::at(format!("http://{}/images/live.iso", image_server.addr))
                },
                config_drive: ConfigDrive::default(),
                legacy_boot: false,
                root_device_hints: None,
            }),
            None,
        )
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::DeployFailed).await;
    let error = conductor.node(name).unwrap().last_error.unwrap_or_default();
    assert!(error.contains("needs virtual media"), "{error}");

    conductor
        .provision(
            name,
            Verb::Deploy(DeployConfig {
                image: Image {
                    url: format!("http://{}/images/os.qcow2", image_server.addr),
                    checksum: images.checksum("os.qcow2", "sha256"),
                    checksum_type: Some(ChecksumType::Sha256),
                    format: Some(ImageFormat::Qcow2),
                },
                config_drive: ConfigDrive {
                    user_data: Some("#cloud-config\n".into()),
                    network_data: None,
                    meta_data: json!({"uuid": name}),
                },
                legacy_boot: false,
                root_device_hints: None,
            }),
            None,
        )
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::WaitCallBack).await;
    // The host was set to boot from the network once and powered on.
    assert!(ipmitool(&["chassis", "power", "status"]).contains("Chassis Power is on"));
    // The network boot brings up the agent.
    tokio::spawn(metal3_demo::sim_agent::run_simulated_agent(
        service.agent_url(),
        vec![MAC.into()],
        json!({}),
        reqwest::Client::new(),
        std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0)),
    ));
    wait_for(&conductor, name, NodeState::Active).await;
    let boot = ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(
        boot.contains("Force Boot from default Hard-Drive"),
        "{boot}"
    );
    assert!(boot.contains("Options apply to all future boots"), "{boot}");
    assert!(ipmitool(&["chassis", "power", "status"]).contains("Chassis Power is on"));
    assert_eq!(conductor.node(name).unwrap().deploy_attempts, 2);

    conductor
        .provision(name, Verb::Undeploy, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Available).await;
    assert!(ipmitool(&["chassis", "power", "status"]).contains("Chassis Power is off"));
    conductor.delete_node(name).await.unwrap();
}
