//! Against both IPMI LAN simulators of `shared/peers/ipmi-sim.sh`: pyghmi (cipher suites 3
//! and 17) and OpenIPMI's `ipmi_sim` (suite 3; suite 17 refused, so the driver falls back):
//! power on/off/cycle/reset/soft with status read back, boot device set and read back
//! (ipmitool agrees), device id and GUID (ipmitool agrees), a wrong password, and a BMC
//! that stops answering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootMode, BootOverride, BootPersistence,
    ConnectOptions, Credentials, PowerAction, PowerState,
};
use bmc_ipmi::IpmiDriver;
use bmc_ipmi::codec::rakp::CipherSuite;
use bmc_ipmi::session::{IpmiSession, SessionConfig, privilege};
use bmc_ipmi::transport::IpmiTransport;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ipmi-sim.sh")
}

struct Peer {
    dir: PathBuf,
    port: u16,
}

impl Peer {
    fn start(kind: &str) -> Peer {
        Peer::start_in(kind, kind)
    }

    fn start_in(kind: &str, name: &str) -> Peer {
        Peer::start_with(kind, name, &[])
    }

    fn start_with(kind: &str, name: &str, env: &[(&str, &str)]) -> Peer {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ipmi-{name}"));
        let out = Command::new("bash")
            .arg(script())
            .args([
                "start",
                "--kind",
                kind,
                "--dir",
                dir.to_str().unwrap(),
                "--port",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .output()
            .expect("bash runs the peer script");
        assert!(
            out.status.success(),
            "ipmi-sim did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Peer { dir, port }
    }

    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", "--dir", self.dir.to_str().unwrap()])
            .output();
    }

    fn ipmitool(&self, args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-P",
                "password",
            ])
            .args(args)
            .output()
            .expect("ipmitool runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connect(peer: &Peer, password: &str) -> Result<IpmiDriver, BmcError> {
    let address = BmcAddress::parse(&format!("ipmi://127.0.0.1:{}", peer.port)).unwrap();
    let options = ConnectOptions::default().with_request_timeout(Duration::from_millis(500));
    IpmiDriver::connect(
        &address,
        &Credentials::new("admin", password).unwrap(),
        &options,
    )
    .await
}

#[tokio::test]
async fn pyghmi_power_boot_inventory_and_failures() {
    let peer = Peer::start("pyghmi");
    let d = connect(&peer, "password").await.unwrap();

    power_actions_read_back(&d, &peer).await;

    d.set_boot_override(&BootOverride::persistent(BootDevice::Pxe).with_mode(BootMode::Uefi))
        .await
        .unwrap();
    let b = d.boot_override().await.unwrap();
    assert_eq!(
        (b.device, b.persistence, b.mode),
        (
            Some(BootDevice::Pxe),
            Some(BootPersistence::Persistent),
            Some(BootMode::Uefi)
        )
    );
    let param = peer.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(
        param.contains("Force PXE") && param.contains("all future boots") && param.contains("EFI"),
        "{param}"
    );
    d.set_boot_override(&BootOverride::once(BootDevice::Disk).with_mode(BootMode::Legacy))
        .await
        .unwrap();
    let b = d.boot_override().await.unwrap();
    assert_eq!(
        (b.device, b.persistence, b.mode),
        (
            Some(BootDevice::Disk),
            Some(BootPersistence::Once),
            Some(BootMode::Legacy)
        )
    );
    assert!(
        peer.ipmitool(&["chassis", "bootparam", "get", "5"])
            .contains("Force Boot from default Hard-Drive")
    );

    let inv = d.inventory().await.unwrap();
    let guid = peer.ipmitool(&["mc", "guid"]);
    assert!(
        guid.contains(inv.system.uuid.as_deref().unwrap()),
        "{guid} vs {:?}",
        inv.system.uuid
    );
    let info = peer.ipmitool(&["mc", "info"]);
    let fw = &inv.firmware[0].version;
    assert!(
        info.contains(&format!("Firmware Revision         : {fw}")),
        "{info} vs {fw}"
    );
    assert!(
        d.virtual_media().await.is_err(),
        "IPMI has no virtual media"
    );
    d.close().await.unwrap();

    // Suite 3 forced.
    let s3 = IpmiSession::open(SessionConfig {
        addr: format!("127.0.0.1:{}", peer.port).parse().unwrap(),
        user: "admin".into(),
        password: "password".into(),
        kg: None,
        privilege: privilege::ADMINISTRATOR,
        suite: Some(CipherSuite::Suite3),
        attempt_timeout: Duration::from_millis(500),
        attempts: 2,
        transport: None,
        observer: Default::default(),
    })
    .await
    .unwrap();
    let r = s3.command(0x00, 0x01, &[]).await.unwrap();
    assert_eq!(r.completion, 0);
    // Keep-alive: an idle session sends Get Device ID on its own.
    let s3 = std::sync::Arc::new(s3);
    let before = s3.packets_sent().await;
    let keep_alive = s3.spawn_keep_alive(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert!(s3.packets_sent().await >= before + 4, "keep-alives sent");
    assert_eq!(s3.command(0x00, 0x01, &[]).await.unwrap().completion, 0);
    s3.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        keep_alive.is_finished(),
        "keep-alive stops with the session"
    );

    // A wrong password is an authentication error, found at RAKP 2.
    let err = connect(&peer, "wrong-password").await.unwrap_err();
    assert!(
        matches!(err, BmcError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    // A BMC that stops answering: a clear timeout, quickly, no hang.
    let d = connect(&peer, "password").await.unwrap();
    peer.stop();
    let started = Instant::now();
    let err = d.power_state().await.unwrap_err();
    assert!(
        matches!(err, BmcError::Timeout { .. } | BmcError::Unreachable { .. }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn openipmi_power_boot_inventory_and_failures() {
    let peer = Peer::start("openipmi");
    let d = connect(&peer, "password").await.unwrap();
    power_actions_read_back(&d, &peer).await;

    // ipmi_sim keeps the device selector but reads the flag bits back as 0: the override
    // is reported as not valid, exactly as ipmitool reports it.
    d.set_boot_override(&BootOverride::persistent(BootDevice::Pxe).with_mode(BootMode::Uefi))
        .await
        .unwrap();
    let param = peer.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(param.contains("Force PXE"), "{param}");
    let b = d.boot_override().await.unwrap();
    assert_eq!(
        b.device.is_none(),
        param.contains("Boot Flag Invalid"),
        "{param} vs {b:?}"
    );

    let inv = d.inventory().await.unwrap();
    let guid = peer.ipmitool(&["mc", "guid"]);
    assert!(
        guid.contains(inv.system.uuid.as_deref().unwrap()),
        "{guid} vs {:?}",
        inv.system.uuid
    );
    d.close().await.unwrap();

    let err = connect(&peer, "wrong-password").await.unwrap_err();
    assert!(
        matches!(err, BmcError::AuthenticationFailed { .. }),
        "{err:?}"
    );

    // Suite 17 is refused by ipmi_sim: forcing it is a clear rejection.
    let forced = IpmiSession::open(SessionConfig {
        addr: format!("127.0.0.1:{}", peer.port).parse().unwrap(),
        user: "admin".into(),
        password: "password".into(),
        kg: None,
        privilege: privilege::ADMINISTRATOR,
        suite: Some(CipherSuite::Suite17),
        attempt_timeout: Duration::from_millis(500),
        attempts: 2,
        transport: None,
        observer: Default::default(),
    })
    .await;
    assert!(
        matches!(forced, Err(BmcError::Rejected { .. })),
        "{:?}",
        forced.err()
    );
}

#[tokio::test]
async fn one_socket_serves_sessions_to_both_simulators_at_once() {
    let a = Peer::start_in("pyghmi", "shared-pyghmi");
    let b = Peer::start_in("openipmi", "shared-openipmi");
    let transport = IpmiTransport::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = |port: u16| SessionConfig {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        user: "admin".into(),
        password: "password".into(),
        kg: None,
        privilege: privilege::ADMINISTRATOR,
        suite: None,
        attempt_timeout: Duration::from_millis(500),
        attempts: 3,
        transport: Some(transport.clone()),
        observer: Default::default(),
    };
    let (sa, sb) = tokio::join!(
        IpmiSession::open(config(a.port)),
        IpmiSession::open(config(b.port))
    );
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    // Suites negotiated from what each BMC offers (or, without an answer, tried 17 then 3).
    assert_eq!(
        sa.suite().await,
        Some(CipherSuite::Suite17),
        "pyghmi offers 3 and 17"
    );
    assert_eq!(
        sb.suite().await,
        Some(CipherSuite::Suite3),
        "ipmi_sim offers no 17"
    );
    assert_eq!(transport.sessions(), 2);
    let duplicate = IpmiSession::open(config(a.port)).await;
    assert!(
        matches!(duplicate, Err(BmcError::InvalidRequest(_))),
        "one session per BMC per transport"
    );
    tokio::join!(twenty_commands(&sa), twenty_commands(&sb));
    sa.close().await.unwrap();
    sb.close().await.unwrap();
    drop((sa, sb));
    assert_eq!(
        transport.sessions(),
        0,
        "routes are dropped with their sessions"
    );
}

async fn twenty_commands(s: &IpmiSession) {
    for _ in 0..20 {
        assert_eq!(s.command(0x00, 0x01, &[]).await.unwrap().completion, 0);
    }
}

#[tokio::test]
async fn a_bmc_key_kg_keys_the_session() {
    let peer = Peer::start_with("pyghmi", "kg", &[("IPMI_SIM_KG", "kg-secret-123")]);
    let config = |kg: Option<&str>| SessionConfig {
        addr: format!("127.0.0.1:{}", peer.port).parse().unwrap(),
        user: "admin".into(),
        password: "password".into(),
        kg: kg.map(|k| k.as_bytes().to_vec()),
        privilege: privilege::ADMINISTRATOR,
        suite: Some(CipherSuite::Suite17),
        attempt_timeout: Duration::from_millis(500),
        attempts: 2,
        transport: None,
        observer: Default::default(),
    };
    let s = IpmiSession::open(config(Some("kg-secret-123")))
        .await
        .unwrap();
    assert_eq!(s.command(0x00, 0x01, &[]).await.unwrap().completion, 0);
    s.close().await.unwrap();
    // Without the key the BMC's RAKP 4 does not verify: refused, not a hang.
    let err = IpmiSession::open(config(None)).await.err().unwrap();
    assert!(err.to_string().contains("RAKP 4"), "{err}");
}

/// Every power action, each read back, ending off as ipmitool also reports.
async fn power_actions_read_back(d: &IpmiDriver, peer: &Peer) {
    for (action, want) in [
        (PowerAction::On, PowerState::On),
        (PowerAction::Off, PowerState::Off),
        (PowerAction::PowerCycle, PowerState::On),
        (PowerAction::Reset, PowerState::On),
        (PowerAction::SoftOff, PowerState::Off),
    ] {
        d.power(action)
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(d.power_state().await.unwrap(), want, "{action}");
    }
    assert!(
        peer.ipmitool(&["chassis", "power", "status"])
            .contains("off")
    );
}
