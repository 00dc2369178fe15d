//! The cold virtual-media boot and the power poll against a running sushy-emulator, by
//! `RedfishDriver`: HTTP requests and client CPU per flow. Run by `benches/vs-sushy.sh`,
//! which starts the emulator, runs the same flows with sushy (the Python client Ironic
//! uses) and prints both side by side; on its own it needs:
//!
//! `SUSHY_BENCH_URL` (`http://127.0.0.1:PORT`), `SUSHY_BENCH_SYSTEM` (the system's path),
//! `SUSHY_BENCH_USER`, `SUSHY_BENCH_PASSWORD`, `SUSHY_BENCH_IMAGE` (an ISO URL),
//! optionally `SUSHY_BENCH_FLOWS` (default 10) and `SUSHY_BENCH_POLLS` (default 200).
//!
//! Client CPU is this thread's CPU time (`/proc/thread-self/schedstat`) around each
//! measured part; the client runs on a current-thread runtime, so that is all of it.
//! Prints one line `rust <what> <requests per flow> <CPU µs per flow>` per measurement;
//! the requests are the client's own count (the script counts them again in the emulator's
//! log, up to and including the power request, the same way for both clients). Each cold
//! flow ends with an eject (not measured) and the polls come last: the script cuts the
//! log at the ejects.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bmc_core::verified::{Deadline, PollPolicy, boot_from_virtual_media_with};
use bmc_core::{
    BmcDriver, BootMode, BootOverride, BootOverrideState, Capabilities, ConnectOptions,
    Credentials, HardwareInventory, MediaKind, PowerAction, PowerState, Result as BmcResult,
    VirtualMediaSlot,
};
use bmc_redfish::RedfishDriver;
use bmc_redfish::client::{AuthMode, ClientSettings, RedfishClient};

/// CPU time of this thread in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The driver, noting the thread's CPU time and the requests sent when the power request
/// returns: the flow up to and including it, without the verification polls after it.
struct AtPowerRequest {
    inner: RedfishDriver,
    noted: Mutex<Option<(u64, u64)>>,
}

#[async_trait]
impl BmcDriver for AtPowerRequest {
    fn driver_name(&self) -> &str {
        self.inner.driver_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn power_state(&self) -> BmcResult<PowerState> {
        self.inner.power_state().await
    }
    async fn power(&self, action: PowerAction) -> BmcResult<()> {
        let result = self.inner.power(action).await;
        if let Ok(mut noted) = self.noted.lock() {
            noted.get_or_insert((thread_cpu_ns(), self.inner.client().request_count()));
        }
        result
    }
    async fn boot_override(&self) -> BmcResult<BootOverrideState> {
        self.inner.boot_override().await
    }
    async fn set_boot_override(&self, boot: &BootOverride) -> BmcResult<()> {
        self.inner.set_boot_override(boot).await
    }
    async fn virtual_media(&self) -> BmcResult<Vec<VirtualMediaSlot>> {
        self.inner.virtual_media().await
    }
    async fn insert_media(&self, kind: &MediaKind, image_url: &str) -> BmcResult<()> {
        self.inner.insert_media(kind, image_url).await
    }
    async fn eject_media(&self, kind: &MediaKind) -> BmcResult<()> {
        self.inner.eject_media(kind).await
    }
    async fn inventory(&self) -> BmcResult<HardwareInventory> {
        self.inner.inventory().await
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run benches/vs-sushy.sh)"))
}

async fn run() -> Result<(), String> {
    let url = env("SUSHY_BENCH_URL")?;
    let system = env("SUSHY_BENCH_SYSTEM")?;
    let credentials = Credentials::new(env("SUSHY_BENCH_USER")?, env("SUSHY_BENCH_PASSWORD")?)
        .map_err(|e| e.to_string())?;
    let image = env("SUSHY_BENCH_IMAGE")?;
    let number = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let flows = number("SUSHY_BENCH_FLOWS", 10).max(1);
    let polls = number("SUSHY_BENCH_POLLS", 200).max(1);
    let policy = PollPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };

    // The process-wide HTTP client (its CA store loaded once) is built before measuring,
    // as a conductor builds it once for all its BMCs.
    let client = RedfishClient::new(&url, credentials.clone(), ClientSettings::default())
        .map_err(|e| e.to_string())?;
    // The host is on before the flows (not measured), so each flow's power request is a
    // reset whose result shows at once: the flows measure the client, not the emulator's
    // power-on delay (which the verified flow would otherwise poll through).
    let warm = RedfishDriver::with_client(client, Some(system.as_str()))
        .await
        .map_err(|e| format!("discovery: {e}"))?;
    bmc_core::verified::ensure_power(
        &warm,
        bmc_core::PowerAction::On,
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .map_err(|e| format!("power on: {e}"))?;
    // An insert and an eject end the warm-up, so that the script, which cuts the
    // emulator's log at ejects, can tell it from the flows.
    warm.insert_media(&MediaKind::Cd, &image)
        .await
        .map_err(|e| format!("insert: {e}"))?;
    warm.eject_media(&MediaKind::Cd)
        .await
        .map_err(|e| format!("eject: {e}"))?;

    for (label, auth) in [
        ("default-auth", AuthMode::Auto),
        ("basic-auth", AuthMode::Basic),
    ] {
        let (mut requests, mut cpu_ns, mut poll_requests, mut verify_polls) =
            (0u64, 0u64, 0u64, 0u64);
        let mut last = None;
        for _ in 0..flows {
            let settings = ClientSettings {
                connect: ConnectOptions::default(),
                auth,
                ..ClientSettings::default()
            };
            let started = thread_cpu_ns();
            let client = RedfishClient::new(&url, credentials.clone(), settings)
                .map_err(|e| e.to_string())?;
            let driver = AtPowerRequest {
                inner: RedfishDriver::with_client(client, Some(system.as_str()))
                    .await
                    .map_err(|e| format!("discovery: {e}"))?,
                noted: Mutex::new(None),
            };
            let boot = boot_from_virtual_media_with(
                &driver,
                &image,
                BootMode::Uefi,
                Deadline::after(Duration::from_secs(60)),
                policy,
            )
            .await
            .map_err(|e| format!("virtual-media boot: {e}"))?;
            let (at_power, sent) = driver
                .noted
                .lock()
                .ok()
                .and_then(|n| *n)
                .ok_or("the flow sent no power request")?;
            cpu_ns += at_power - started;
            requests += sent;
            poll_requests += driver.inner.client().request_count() - sent;
            verify_polls += u64::from(boot.power_polls);
            // Back to an empty slot for the next cold flow (not measured).
            driver
                .eject_media(&MediaKind::Cd)
                .await
                .map_err(|e| format!("eject: {e}"))?;
            let driver = driver.inner;
            last = Some(driver);
        }
        println!(
            "rust cold-flow-{label} {:.1} {:.0}",
            requests as f64 / flows as f64,
            cpu_ns as f64 / flows as f64 / 1000.0
        );
        eprintln!(
            "  ({verify_polls} power-state polls, {poll_requests} requests, after the power requests of {flows} flows; not counted)"
        );
        if let (Some(driver), AuthMode::Basic) = (last, auth) {
            // Power polls on a connected driver, its cache dropped so each is a GET.
            let before = driver.client().request_count();
            let started = thread_cpu_ns();
            for _ in 0..polls {
                driver.invalidate();
                driver
                    .power_state()
                    .await
                    .map_err(|e| format!("power poll: {e}"))?;
            }
            let cpu = thread_cpu_ns() - started;
            println!(
                "rust power-poll {:.1} {:.0}",
                (driver.client().request_count() - before) as f64 / polls as f64,
                cpu as f64 / polls as f64 / 1000.0
            );
        }
    }
    Ok(())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        eprintln!("vs_sushy: {e}");
        std::process::exit(1);
    }
}
