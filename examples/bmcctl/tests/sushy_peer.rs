//! Against the real sushy-tools Redfish emulator (`shared/peers/sushy-emulator.sh`), with
//! basic auth over HTTP and then over TLS with its CA: the whole verified virtual-media
//! boot (eject, insert a served image, boot once from CD, power on, wait until On), power
//! off, and `bmcctl` doing the same from the command line. The emulator's power changes
//! land 1–11 s after the request, like slow hardware.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bmc_core::verified::{Deadline, boot_from_virtual_media, ensure_power};
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootMode, ConnectOptions, Credentials, MediaKind,
    PowerAction, PowerState,
};
use bmc_redfish::RedfishDriver;
use bmc_redfish::client::{AuthMode, ClientSettings, RedfishClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "admin";
const PASSWORD: &str = "sushy-peer-pw";

use test_peers::SushyPeer as Peer;

/// Serves a small ISO-like file over HTTP on 127.0.0.1 for the emulator to download.
async fn image_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = vec![0x43u8; 32 * 1024];
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    (format!("http://{addr}/images/agent.iso"), task)
}

fn options(peer: &Peer) -> ConnectOptions {
    let mut o = ConnectOptions::default()
        .with_request_timeout(Duration::from_secs(15))
        .with_operation_timeout(Duration::from_secs(60));
    if let Some(ca) = peer.ca() {
        o = o.with_extra_ca_cert_pem(std::fs::read(ca).unwrap());
    }
    o
}

async fn driver_flow(peer: &Peer, image: &str) {
    let address = BmcAddress::parse(&peer.address()).unwrap();
    let creds = Credentials::new(USER, PASSWORD).unwrap();
    let d = RedfishDriver::connect(&address, &creds, &options(peer))
        .await
        .unwrap();
    assert!(d.capabilities().can_insert(&MediaKind::Cd));

    let minute = || Deadline::after(Duration::from_secs(60));
    ensure_power(&d, PowerAction::Off, minute()).await.unwrap();
    let boot = boot_from_virtual_media(&d, image, BootMode::Uefi, minute())
        .await
        .unwrap();
    assert_eq!(boot.power_action, PowerAction::On);
    assert_eq!(d.power_state().await.unwrap(), PowerState::On);
    let slots = d.virtual_media().await.unwrap();
    let cd = slots
        .iter()
        .find(|s| s.kinds.contains(&MediaKind::Cd))
        .unwrap();
    assert!(cd.inserted);
    assert_eq!(cd.image.as_deref(), Some(image));
    let override_state = d.boot_override().await.unwrap();
    assert_eq!(override_state.device, Some(BootDevice::Cd));
    // The emulator keeps every override continuous (its libvirt heritage); one-time boot
    // is still satisfied for the next boot.
    assert!(override_state.persistence.is_some());

    // Booting again ejects the image first and resets the running host.
    let again = boot_from_virtual_media(&d, image, BootMode::Uefi, minute())
        .await
        .unwrap();
    assert!(again.ejected);
    assert_eq!(again.power_action, PowerAction::Reset);

    let off = ensure_power(&d, PowerAction::Off, minute()).await.unwrap();
    assert_eq!(off.final_state, PowerState::Off);
    d.eject_media(&MediaKind::Cd).await.unwrap();
    d.close().await.unwrap();

    // Request economy of the cold flow: a fresh driver, discovery included, up to and
    // including the power-on request, read-back verification included.
    for (mode, limit) in [(AuthMode::Auto, 9), (AuthMode::Basic, 8)] {
        let endpoint = address.redfish_endpoint().unwrap();
        let settings = ClientSettings {
            connect: options(peer),
            auth: mode,
            ..ClientSettings::default()
        };
        let client = RedfishClient::new(&endpoint, creds.clone(), settings).unwrap();
        let cold = RedfishDriver::with_client(client, address.redfish_system_id().as_deref())
            .await
            .unwrap();
        let boot = boot_from_virtual_media(&cold, image, BootMode::Uefi, minute())
            .await
            .unwrap();
        assert_eq!(boot.power_action, PowerAction::On, "the host was off");
        let cold_requests = cold.client().request_count() - u64::from(boot.power_polls);
        println!(
            "cold virtual-media boot ({mode:?} auth): {cold_requests} requests up to the reset, then {} polls",
            boot.power_polls
        );
        assert!(
            cold_requests <= limit,
            "{mode:?}: {cold_requests} requests, limit {limit}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = cold.client().request_count();
        cold.power_state().await.unwrap();
        assert_eq!(
            cold.client().request_count() - before,
            1,
            "a power poll is one request"
        );
        ensure_power(&cold, PowerAction::Off, minute())
            .await
            .unwrap();
        cold.eject_media(&MediaKind::Cd).await.unwrap();
        cold.close().await.unwrap();
    }

    // A wrong password is refused once, as an authentication error.
    let wrong = Credentials::new(USER, "not-the-password").unwrap();
    let err = RedfishDriver::connect(&address, &wrong, &options(peer))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BmcError::AuthenticationFailed { .. }),
        "{err:?}"
    );
}

fn bmcctl(peer: &Peer, flags: &[&str], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmcctl"));
    cmd.args([
        "--user",
        USER,
        "--password-env",
        "SUSHY_TEST_PASSWORD",
        "--timeout",
        "60",
    ]);
    if let Some(ca) = peer.ca() {
        cmd.args(["--ca", ca.to_str().unwrap()]);
    }
    cmd.args(flags)
        .arg(peer.address())
        .args(args)
        .env("SUSHY_TEST_PASSWORD", PASSWORD);
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Requests the emulator has logged so far.
fn logged_requests(peer: &Peer) -> usize {
    std::fs::read_to_string(peer.dir.join("emulator.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" /redfish") && l.contains(" HTTP/1.1"))
        .count()
}

fn cli_flow(peer: &Peer, image: &str) {
    // `media boot` from the command line, counted on the emulator's side: at most 8
    // requests up to and including the power-on, read-backs included; then one per poll.
    let before = logged_requests(peer);
    let (ok, out) = bmcctl(peer, &["--json"], &["media", "boot", image]);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let total = logged_requests(peer) - before;
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["power"], "On", "{out}");
    let polls = usize::try_from(result["power_polls"].as_u64().unwrap()).unwrap();
    println!(
        "bmcctl media boot: {} requests up to the power-on, then {polls} polls",
        total - polls
    );
    assert!(
        total - polls <= 8,
        "{} requests before polling",
        total - polls
    );

    let (ok, out) = bmcctl(peer, &[], &["media", "status"]);
    assert!(ok && out.contains(image), "{out}");
    let (ok, out) = bmcctl(peer, &[], &["power", "off"]);
    assert!(ok && out.contains("Off"), "{out}");
    let (ok, out) = bmcctl(peer, &["--session"], &["power", "status"]);
    assert!(ok && out.contains("power Off"), "{out}");
    let (ok, out) = bmcctl(peer, &[], &["media", "eject"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_emulator_with_basic_auth_then_tls() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sushy-peer");
    let (image, server) = image_server().await;

    let plain = Peer::start(&dir, 1, false, USER, PASSWORD);
    driver_flow(&plain, &image).await;
    let plain = tokio::task::spawn_blocking({
        let image = image.clone();
        move || {
            cli_flow(&plain, &image);
            plain
        }
    })
    .await
    .unwrap();
    drop(plain);

    let tls = Peer::start(&dir, 1, true, USER, PASSWORD);
    assert!(tls.ca().is_some());
    driver_flow(&tls, &image).await;
    // Without its CA the certificate is refused: verification is on by default.
    let address = BmcAddress::parse(&tls.address()).unwrap();
    let err = RedfishDriver::connect(
        &address,
        &Credentials::new(USER, PASSWORD).unwrap(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BmcError::Unreachable { .. }), "{err:?}");
    // With verification turned off (Metal3's disableCertificateVerification) it connects.
    let insecure = ConnectOptions::default().with_certificate_verification_disabled();
    let d = RedfishDriver::connect(
        &address,
        &Credentials::new(USER, PASSWORD).unwrap(),
        &insecure,
    )
    .await
    .unwrap();
    d.close().await.unwrap();
    let tls = tokio::task::spawn_blocking({
        let image = image.clone();
        move || {
            cli_flow(&tls, &image);
            tls
        }
    })
    .await
    .unwrap();
    drop(tls);
    server.abort();
}
