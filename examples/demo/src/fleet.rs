//! A simulated fleet for the demo and the end-to-end tests: one bmc-sim BMC per host
//! (serving a recorded vendor tree), an HTTP server for the OS and agent images, the
//! conductor's agent API, and a simulated agent started on every host that boots the
//! agent ISO.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use bmc_sim::vendor::BootSource;
use bmc_sim::{BootEvent, BootHook, RedfishSim, SimConfig};

use metal3_conductor::agent_protocol::checksum;
use provision_fsm::ChecksumType;

/// A recorded tree a simulated host can serve, with the address scheme Metal3 users
/// give that vendor and the system's path.
#[derive(Debug, Clone, Copy)]
pub struct Vendor {
    /// Short name (`dell`, `hpe`, …).
    pub name: &'static str,
    /// The tree under `shared/fixtures/redfish`.
    pub tree: &'static str,
    /// The Metal3 scheme.
    pub scheme: &'static str,
    /// The system's path in the tree.
    pub system: &'static str,
}

/// The vendor trees the demo simulates.
pub const VENDORS: &[Vendor] = &[
    Vendor {
        name: "dell",
        tree: "dell-poweredge-r750-idrac9-fw6.00.30.00",
        scheme: "idrac-virtualmedia+http",
        system: "/redfish/v1/Systems/System.Embedded.1",
    },
    Vendor {
        name: "hpe",
        tree: "hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72",
        scheme: "ilo5-virtualmedia+http",
        system: "/redfish/v1/Systems/1",
    },
    Vendor {
        name: "lenovo",
        tree: "lenovo-thinksystem-sr670v2-xcc-fw2.83",
        scheme: "redfish-virtualmedia+http",
        system: "/redfish/v1/Systems/1",
    },
    Vendor {
        name: "supermicro",
        tree: "supermicro-sys-821ge-tnhr-x13-bmc-fw11.01.01",
        scheme: "redfish-virtualmedia+http",
        system: "/redfish/v1/Systems/1",
    },
    Vendor {
        name: "dmtf",
        tree: "dmtf-public-rackmount1",
        scheme: "redfish-virtualmedia+http",
        system: "/redfish/v1/Systems/437XR1138R2",
    },
];

/// The vendor named `name`.
pub fn vendor(name: &str) -> Option<&'static Vendor> {
    VENDORS.iter().find(|v| v.name == name)
}

/// The images the image server holds: name → bytes, made up and deterministic.
#[derive(Debug, Clone, Default)]
pub struct Images {
    files: Arc<HashMap<String, Bytes>>,
}

impl Images {
    /// An OS disk image (`os.qcow2`), a live ISO (`live.iso`) and the agent ISO
    /// (`agent.iso`).
    pub fn demo() -> Images {
        let make = |size: usize, seed: u8| -> Bytes {
            (0..size)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<u8>>()
                .into()
        };
        let files = [
            ("os.qcow2", make(256 * 1024, 7)),
            ("live.iso", make(64 * 1024, 3)),
            ("agent.iso", make(32 * 1024, 5)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Images {
            files: Arc::new(files),
        }
    }

    /// These images and one more, `name` holding `data`.
    pub fn with(mut self, name: &str, data: Vec<u8>) -> Images {
        Arc::make_mut(&mut self.files).insert(name.to_string(), data.into());
        self
    }

    /// The hex checksum of an image.
    pub fn checksum(&self, name: &str, kind: &str) -> Option<String> {
        let data = self.files.get(name)?;
        checksum(data, &ChecksumType::from(kind.to_string()), "").ok()
    }
}

async fn serve_image(
    State(images): State<Images>,
    UrlPath(name): UrlPath<String>,
) -> impl IntoResponse {
    match images.files.get(&name) {
        Some(data) => (StatusCode::OK, data.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such image").into_response(),
    }
}

/// A running HTTP server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    /// Its address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves a router on 127.0.0.1 (any free port).
pub async fn serve(router: Router) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "server stopped");
        }
    });
    Ok(Server { addr, task })
}

/// The images at `/images/<name>`, to serve beside other routes.
pub fn images_router(images: Images) -> Router {
    Router::new()
        .route("/images/{name}", get(serve_image))
        .with_state(images)
}

/// Serves the images at `/images/<name>`.
pub async fn serve_images(images: Images) -> std::io::Result<Server> {
    serve(images_router(images)).await
}

/// One simulated host.
pub struct SimHost {
    /// The simulated BMC.
    pub sim: RedfishSim,
    /// Its vendor.
    pub vendor: &'static Vendor,
    /// The BMC address to put in the host's manifest.
    pub address: String,
    /// Its NICs' MAC addresses (the first is the boot MAC).
    pub macs: Vec<String>,
    /// Disk images its simulated agents wrote: the count of deploys at the host itself.
    pub images_written: Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost")
            .field("vendor", &self.vendor.name)
            .field("address", &self.address)
            .finish()
    }
}

/// How to simulate a host.
#[derive(Debug, Clone)]
pub struct HostSimConfig {
    /// The fixtures directory (`shared/fixtures/redfish`).
    pub fixtures: PathBuf,
    /// BMC credentials.
    pub credentials: (String, String),
    /// How long power changes take.
    pub power_delay: Duration,
    /// Share of requests answered 503.
    pub fault_rate: f64,
    /// Seed of the fault generator.
    pub seed: u64,
    /// The agent ISO's URL: a host booting it starts a simulated agent.
    pub agent_image_url: String,
    /// The agent API's base URL.
    pub agent_api: String,
    /// The HTTP client the simulated agents use (one for the fleet: building a client
    /// loads the CA store, too costly to do per host).
    pub agent_http: reqwest::Client,
    /// The host's agent never calls back (a host whose agent does not come up: its node
    /// waits until it times out).
    pub silent_agent: bool,
}

/// Starts a simulated BMC for host number `index`, of `vendor`, with its own MACs.
pub async fn start_host(
    vendor: &'static Vendor,
    index: u32,
    config: &HostSimConfig,
) -> std::io::Result<SimHost> {
    let (overrides, macs) = unique_nics(&config.fixtures, vendor, index);
    let agent_image = config.agent_image_url.clone();
    let api = config.agent_api.clone();
    let http = config.agent_http.clone();
    let silent = config.silent_agent;
    let images_written = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let written = images_written.clone();
    let hook = BootHook(Arc::new(move |event: BootEvent| {
        if let BootSource::VirtualCd { image, .. } = &event.source {
            if *image == agent_image && !silent {
                let api = api.clone();
                let http = http.clone();
                tokio::spawn(crate::sim_agent::run_simulated_agent(
                    api,
                    event.macs,
                    event.hardware,
                    http,
                    written.clone(),
                ));
            }
        }
    }));
    let sim = RedfishSim::start(SimConfig {
        tree: Some(config.fixtures.join(vendor.tree)),
        credentials: Some(config.credentials.clone()),
        power_delay: config.power_delay,
        fault_rate: config.fault_rate,
        seed: config.seed,
        on_boot: Some(hook),
        overrides,
        ..SimConfig::default()
    })
    .await?;
    let address = format!("{}://{}{}", vendor.scheme, sim.addr(), vendor.system);
    Ok(SimHost {
        sim,
        vendor,
        address,
        macs,
        images_written,
    })
}

/// The fixtures directory as seen from this crate (`../../../shared/fixtures/redfish`), or
/// from the working directory (`../shared/fixtures/redfish`, the CI layout).
pub fn default_fixtures() -> PathBuf {
    let from_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/redfish");
    if from_crate.is_dir() {
        return from_crate;
    }
    PathBuf::from("../shared/fixtures/redfish")
}

/// Resource overrides that give host number `index` its own MAC addresses (the recorded
/// tree's, rewritten to locally administered `02:…` addresses), so agents on hosts cloned
/// from one tree find their own node. Returns the overrides and the MACs, in NIC order.
pub fn unique_nics(
    fixtures: &Path,
    vendor: &Vendor,
    index: u32,
) -> (Vec<(String, serde_json::Value)>, Vec<String>) {
    let read = |path: &str| -> Option<serde_json::Value> {
        let file = fixtures
            .join(vendor.tree)
            .join(path.trim_start_matches('/'))
            .join("index.json");
        serde_json::from_slice(&std::fs::read(file).ok()?).ok()
    };
    let mut overrides = Vec::new();
    let mut macs = Vec::new();
    let members: Vec<String> = read(&format!("{}/EthernetInterfaces", vendor.system))
        .and_then(|c| c["Members"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["@odata.id"].as_str().map(str::to_string))
        .collect();
    for (n, path) in members.iter().enumerate() {
        let Some(mut nic) = read(path) else { continue };
        let [a, b, c, d] = index.to_be_bytes();
        let mac = format!("02:{a:02x}:{b:02x}:{c:02x}:{d:02x}:{:02x}", n as u8);
        nic["MACAddress"] = serde_json::json!(mac);
        if nic.get("PermanentMACAddress").is_some() {
            nic["PermanentMACAddress"] = serde_json::json!(mac);
        }
        macs.push(mac);
        overrides.push((path.clone(), nic));
    }
    (overrides, macs)
}
