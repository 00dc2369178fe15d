//! The whole Metal3 workflow on a simulated fleet: what `metal3-demo` runs, as a library
//! so the end-to-end tests run exactly the same thing.
//!
//! Every BareMetalHost of the manifests gets a simulated BMC (bmc-sim serving the vendor
//! tree named by its `metal3-demo/vendor` annotation) and its BMC address, boot MAC and
//! image URLs pointed at the simulation; `--hosts N` clones the manifests' hosts round
//! robin. The operator then takes every host through registering, inspecting,
//! available, provisioning and provisioned; the demo removes the images
//! (deprovisioning) and deletes the hosts, and checks that each one ended where it
//! should: provisioned with what it asked for (the simulated host really booted the live
//! ISO, or the agent and then its disk), deprovisioned, deleted, with an address of its
//! own.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bmc_core::sync::lock as locked;
use bmc_core::verified::PollPolicy;
use bmc_sim::vendor::BootSource;
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use metal3_conductor::{ConductorApi, ConductorConfig, HttpConductor, NodeView};
use metal3_operator::controller::{FINALIZER, HostObject, Write, reconcile};
use metal3_operator::manifests::{BareMetalHost, Manifests};
use metal3_operator::operator::{HostRecord, Operator, OperatorConfig};
use metal3_operator::progress::progress_line;
use metal3_operator::store::Store;
use provision_fsm::{HostStateKind, NodeTimeouts};

use crate::fleet::{self, HostSimConfig, Images, SimHost};
use crate::fleet_process::{FleetHost, FleetProcess, FleetRequest, HOSTS_PER_PROCESS, RemoteHost};

/// The annotation naming the vendor tree a host is simulated with.
pub const VENDOR_ANNOTATION: &str = "metal3-demo/vendor";
/// The annotation saying a host is bad input and must end in this Metal3 error type
/// (`registration error`, `provisioning error`, …) while the others carry on.
pub const EXPECT_ERROR: &str = "metal3-demo/expect-error";
/// The annotation giving the simulated BMC another password than the host's secret.
pub const BMC_PASSWORD: &str = "metal3-demo/bmc-password";
/// The annotation that leaves the host's BMC address as written (no simulation): a
/// malformed or unreachable address stays so.
pub const KEEP_ADDRESS: &str = "metal3-demo/keep-address";
/// The annotation that makes the host's simulated agent never call back, so its node
/// waits until the conductor times it out.
pub const SILENT_AGENT: &str = "metal3-demo/silent-agent";

fn expected_error(bmh: &BareMetalHost) -> Option<String> {
    bmh.metadata.annotations.get(EXPECT_ERROR).cloned()
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The manifests directory.
    pub manifests: PathBuf,
    /// The recorded Redfish trees.
    pub fixtures: PathBuf,
    /// Scale the fleet to this many hosts (cloning the manifests' hosts); `None` = the
    /// manifests as they are.
    pub hosts: Option<usize>,
    /// Share of BMC requests answered 503 by the simulators.
    pub fault_rate: f64,
    /// How long simulated power changes take.
    pub power_delay: Duration,
    /// Where the operator keeps its state (a temporary file when `None`).
    pub state: Option<PathBuf>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Print progress while running.
    pub progress: bool,
    /// Stop and restart the operator once this many hosts are provisioning (tests that
    /// a restart loses nothing and repeats nothing).
    pub restart_operator_at: Option<usize>,
    /// Use the BMC addresses of the manifests as they are (sushy-emulator, real BMCs)
    /// instead of simulating a BMC per host; only the image URLs are pointed at the local
    /// image server. What the hosts booted cannot be checked then.
    pub external_bmcs: bool,
    /// How hosts are inspected: by the agent (Metal3's default) or out of band.
    pub inspection: provision_fsm::InspectionMode,
    /// Drive the operator as the `kube` controller would: BareMetalHost objects in an
    /// emulated API server, each reconciled through [`metal3_operator::controller::reconcile`]
    /// (finalizers, status writes, requeues), instead of handing the hosts over directly.
    pub kube_mode: bool,
    /// Simulate the fleet (BMCs, image server, agents) in a child process, so that this
    /// process holds only the operator and the conductor and their memory can be told
    /// apart from the simulator's ([`crate::fleet_process`]).
    pub separate_simulator: bool,
    /// How long the conductor's nodes wait for an agent (Ironic's 30 minutes when
    /// `None`).
    pub node_timeouts: Option<NodeTimeouts>,
    /// Run the conductor in a child process and SIGKILL it this many times at random
    /// moments, each time starting it again on its store ([`crate::conductor_process`]);
    /// 0 keeps it in this process.
    pub conductor_kills: u32,
    /// Kill the operator this many times at random moments (its tasks stopped where they
    /// are, as a crash does) and open it again on its store.
    pub operator_kills: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            manifests: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests")),
            fixtures: fleet::default_fixtures(),
            hosts: None,
            fault_rate: 0.0,
            power_delay: Duration::from_millis(20),
            state: None,
            timeout: Duration::from_secs(300),
            progress: false,
            restart_operator_at: None,
            external_bmcs: false,
            inspection: provision_fsm::InspectionMode::Agent,
            kube_mode: false,
            separate_simulator: false,
            node_timeouts: None,
            conductor_kills: 0,
            operator_kills: 0,
        }
    }
}

/// How one host did.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// `namespace/name`.
    pub key: String,
    /// Vendor tree.
    pub vendor: String,
    /// `live-iso` or `disk image`.
    pub way: String,
    /// The address it was given.
    pub address: Option<String>,
    /// Seconds in each provisioning state.
    pub phases: Vec<(String, f64)>,
    /// The error the host reported (`errorType: errorMessage`), for bad input.
    pub error: Option<String>,
    /// What went wrong (empty when it ended where it should).
    pub problems: Vec<String>,
    /// Logins its simulated BMC refused for wrong credentials (hosts simulated in this
    /// process only).
    pub refused_logins: Option<u64>,
    /// Disk images its simulated agent wrote (hosts simulated in this process only).
    pub images_written: Option<u32>,
    /// The reasons of the Kubernetes Events recorded about it, oldest first (kube mode).
    pub events: Vec<String>,
}

/// The run's outcome.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Per host.
    pub hosts: Vec<HostReport>,
    /// From the manifests handed to the operator (the simulated fleet already up) to every
    /// host provisioned.
    pub provisioned_after: Duration,
    /// Starting the simulated fleet, the conductor and the operator.
    pub setup: Duration,
    /// The whole run.
    pub total: Duration,
    /// HTTP requests the simulated BMCs served.
    pub bmc_requests: u64,
    /// Times the operator was restarted.
    pub operator_restarts: u32,
    /// Times the conductor was killed with SIGKILL and started again.
    pub conductor_kills: u32,
    /// Peak resident memory of the fleet processes (KiB, the sum of each one's peak), with
    /// a separate simulator.
    pub simulator_peak_rss_kib: Option<u64>,
    /// Peak resident memory of this process (KiB): operator and conductor, plus the
    /// simulated fleet unless it ran in its own process.
    pub peak_rss_kib: u64,
}

impl DemoReport {
    /// Whether every host ended where it should.
    pub fn ok(&self) -> bool {
        self.hosts.iter().all(|h| h.problems.is_empty())
    }

    /// The final table.
    pub fn table(&self) -> String {
        let mut phases: Vec<String> = Vec::new();
        for h in &self.hosts {
            for (p, _) in &h.phases {
                if !p.is_empty() && !phases.contains(p) {
                    phases.push(p.clone());
                }
            }
        }
        let mut out = format!(
            "{:<26} {:<11} {:<10} {:<15} {:<7}",
            "host", "vendor", "way", "ip", "result"
        );
        for p in &phases {
            out.push_str(&format!(" {:>12}", short(p)));
        }
        out.push('\n');
        for h in &self.hosts {
            out.push_str(&format!(
                "{:<26} {:<11} {:<10} {:<15} {:<7}",
                h.key.trim_start_matches("default/"),
                h.vendor,
                h.way,
                h.address.as_deref().unwrap_or("-"),
                if h.problems.is_empty() {
                    "ok"
                } else {
                    "FAILED"
                }
            ));
            for p in &phases {
                match h.phases.iter().find(|(n, _)| n == p) {
                    Some((_, s)) => out.push_str(&format!(" {:>11.2}s", s)),
                    None => out.push_str(&format!(" {:>12}", "-")),
                }
            }
            out.push('\n');
            if let Some(e) = &h.error {
                out.push_str(&format!("    {e}\n"));
            }
            for problem in &h.problems {
                out.push_str(&format!("    {problem}\n"));
            }
        }
        out
    }
}

fn short(phase: &str) -> String {
    match phase {
        "powering off before delete" => "power-off".into(),
        "externally provisioned" => "external".into(),
        other => other.chars().take(12).collect(),
    }
}

/// Grows every IPv4 pool that holds fewer than `hosts` addresses, so a `--hosts N` fleet
/// larger than the manifests' network gets an address each: the range is extended from
/// its first address and the prefix shortened until one subnet holds it.
fn widen_pools(manifests: &mut Manifests, hosts: usize) {
    for pool in &mut manifests.pools {
        let spec = &mut pool.spec;
        let v4 = |a: Option<std::net::IpAddr>| match a {
            Some(std::net::IpAddr::V4(a)) => Some(u32::from(a)),
            _ => None,
        };
        let capacity: u64 = spec
            .pools
            .iter()
            .filter_map(|r| Some(u64::from(v4(r.end)?.checked_sub(v4(r.start)?)?) + 1))
            .sum();
        let Some(start) = spec.pools.first().and_then(|r| v4(r.start)) else {
            continue;
        };
        if capacity >= hosts as u64 {
            continue;
        }
        let Some(end) = start.checked_add(hosts as u32 + 16) else {
            continue;
        };
        let mut prefix = spec.prefix.unwrap_or(24).min(30);
        while prefix > 8 && (start >> (32 - prefix)) != (end >> (32 - prefix)) {
            prefix -= 1;
        }
        spec.pools = vec![ipam::PoolRange::from_to(
            std::net::Ipv4Addr::from(start).into(),
            std::net::Ipv4Addr::from(end).into(),
        )];
        spec.prefix = Some(prefix);
    }
}

/// Points a manifest host at the simulation and at the local image server.
pub(crate) fn localize(bmh: &mut BareMetalHost, sim: &RemoteHost, images: &str) {
    bmh.spec.bmc.address = sim.address.clone();
    bmh.spec.boot_mac_address = sim.macs.first().cloned();
    if let Some(image) = &mut bmh.spec.image {
        localize_image(image, images);
    }
}

/// Points an image URL at the local image server (the same file name under `/images/`).
pub(crate) fn localize_image(image: &mut provision_fsm::Image, images: &str) {
    if let Some(name) = image.url.rsplit('/').next() {
        image.url = format!("{images}/images/{name}");
    }
}

/// The BMC credentials a host's Secret holds (its simulated BMC takes them);
/// `admin`/`password` when the Secret is missing or incomplete.
pub(crate) fn bmc_credentials(manifests: &Manifests, bmh: &BareMetalHost) -> (String, String) {
    manifests
        .secret(bmh.metadata.namespace(), &bmh.spec.bmc.credentials_name)
        .and_then(|s| {
            Some((
                s.get("username").ok().flatten()?,
                s.get("password").ok().flatten()?,
            ))
        })
        .unwrap_or_else(|| ("admin".into(), "password".into()))
}

/// An API server's worth of BareMetalHost objects, reconciled as a controller would: each
/// object with the time its next reconcile is due and a generation that every change
/// bumps.
struct EmulatedApi {
    objects: BTreeMap<String, EmulatedObject>,
    secrets: Vec<metal3_operator::manifests::Secret>,
    /// The Events recorded about each host, oldest first (they outlive the object).
    events: BTreeMap<String, Vec<metal3_operator::controller::HostEvent>>,
}

struct EmulatedObject {
    object: HostObject,
    due: Instant,
    generation: u64,
    /// A reconcile of it runs (kube-runtime runs one per object at a time).
    running: bool,
}

type SharedOperator = Arc<std::sync::Mutex<Option<Arc<Operator>>>>;

/// How the demo hands hosts to the operator: directly, or through emulated API objects
/// and the controller's reconcile function.
#[derive(Clone)]
enum Front {
    Embedded(SharedOperator),
    Kube(Arc<std::sync::Mutex<EmulatedApi>>),
}

impl Front {
    fn put(&self, bmh: BareMetalHost) {
        match self {
            Front::Embedded(op) => {
                if let Some(op) = locked(op).as_ref() {
                    op.put_host(bmh);
                }
            }
            Front::Kube(api) => {
                let mut api = locked(api);
                let key = bmh.metadata.key();
                match api.objects.get_mut(&key) {
                    Some(o) => {
                        o.object.host = bmh;
                        o.due = Instant::now();
                        o.generation += 1;
                    }
                    None => {
                        api.objects.insert(
                            key,
                            EmulatedObject {
                                object: HostObject {
                                    host: bmh,
                                    deleting: false,
                                    finalizers: Vec::new(),
                                    status: None,
                                },
                                due: Instant::now(),
                                generation: 0,
                                running: false,
                            },
                        );
                    }
                }
            }
        }
    }

    fn delete(&self, key: &str) {
        match self {
            Front::Embedded(op) => {
                if let Some(op) = locked(op).as_ref() {
                    op.delete_host(key);
                }
            }
            Front::Kube(api) => {
                if let Some(o) = locked(api).objects.get_mut(key) {
                    o.object.deleting = true;
                    o.due = Instant::now();
                    o.generation += 1;
                }
            }
        }
    }

    /// The reasons of the Events recorded about a host, oldest first (kube mode).
    fn event_reasons(&self, key: &str) -> Vec<String> {
        match self {
            Front::Embedded(_) => Vec::new(),
            Front::Kube(api) => locked(api)
                .events
                .get(key)
                .map(|e| e.iter().map(|e| e.reason.clone()).collect())
                .unwrap_or_default(),
        }
    }

    /// The emulated objects' `status.provisioning.state`, by key (kube mode).
    fn object_states(&self) -> Option<BTreeMap<String, String>> {
        match self {
            Front::Embedded(_) => None,
            Front::Kube(api) => Some(
                locked(api)
                    .objects
                    .iter()
                    .map(|(k, o)| {
                        let state = o
                            .object
                            .status
                            .as_ref()
                            .and_then(|s| s["provisioning"]["state"].as_str())
                            .unwrap_or_default()
                            .to_string();
                        (k.clone(), state)
                    })
                    .collect(),
            ),
        }
    }
}

/// The controller loop over the emulated API: reconciles each due object (one reconcile
/// per object at a time, many objects at once) and applies the writes as an API server
/// would (an object marked deleted goes with its finalizer).
async fn run_controller(api: Arc<std::sync::Mutex<EmulatedApi>>, operator: SharedOperator) {
    let mut steps = tokio::task::JoinSet::new();
    loop {
        let Some(op) = locked(&operator).clone() else {
            // The operator is restarting: what ran with the old one is stopped first.
            steps.abort_all();
            while steps.join_next().await.is_some() {}
            for o in locked(&api).objects.values_mut() {
                if o.running {
                    o.running = false;
                    o.due = Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let now = Instant::now();
        let due: Vec<(String, HostObject, u64)> = {
            let mut api = locked(&api);
            api.objects
                .iter_mut()
                .filter(|(_, o)| o.due <= now && !o.running)
                .map(|(k, o)| {
                    o.running = true;
                    (k.clone(), o.object.clone(), o.generation)
                })
                .collect()
        };
        for (key, object, generation) in due {
            let (api, op) = (api.clone(), op.clone());
            steps.spawn(async move {
                let secrets = locked(&api).secrets.clone();
                let decision = reconcile(&op, &object, &secrets, Duration::from_millis(50)).await;
                let mut api = locked(&api);
                let Some(o) = api.objects.get_mut(&key) else {
                    return;
                };
                o.running = false;
                let mut gone = false;
                let mut events = Vec::new();
                for write in decision.writes {
                    match write {
                        Write::AddFinalizer => o.object.finalizers.push(FINALIZER.to_string()),
                        Write::RemoveFinalizer => {
                            o.object.finalizers.retain(|f| f != FINALIZER);
                            gone = o.object.deleting && o.object.finalizers.is_empty();
                        }
                        Write::Status(s) => o.object.status = Some(s),
                        Write::Event(e) => events.push(e),
                    }
                }
                // A write or a change while it ran is a watch event: reconcile again now.
                o.due = if o.generation != generation {
                    Instant::now()
                } else {
                    Instant::now() + decision.requeue_after.unwrap_or(Duration::from_secs(3600))
                };
                if gone {
                    api.objects.remove(&key);
                }
                if !events.is_empty() {
                    api.events.entry(key).or_default().extend(events);
                }
            });
        }
        while steps.try_join_next().is_some() {}
        // Not held while sleeping: a restart must be able to drop the operator.
        drop(op);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The conductor's node, read through its API; a conductor restarting meanwhile is
/// waited for (up to 20 s). `None` when it has no such node.
async fn read_node(admin: &dyn ConductorApi, key: &str) -> Option<NodeView> {
    for _ in 0..200 {
        match admin.node(key).await {
            Ok(n) => return Some(n),
            Err(metal3_conductor::ApiError::NotFound(_)) => return None,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// A random gap between kills: 200 ms to 1 s (xorshift64).
fn random_gap(state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_millis(200 + *state % 800)
}

/// Files removed when it is dropped, however the run ends.
pub(crate) struct RemoveOnDrop(pub(crate) Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Runs the demo.
pub async fn run(config: DemoConfig) -> Result<DemoReport, String> {
    let started = Instant::now();
    let mut manifests = Manifests::load_dir(&config.manifests)?;
    if let Some(n) = config.hosts {
        widen_pools(&mut manifests, n);
    }
    if manifests.hosts.is_empty() {
        return Err(format!(
            "no BareMetalHost in {}",
            config.manifests.display()
        ));
    }
    let mut hosts: Vec<BareMetalHost> = match config.hosts {
        None => manifests.hosts.clone(),
        Some(n) => (0..n)
            .map(|i| {
                let mut h = manifests.hosts[i % manifests.hosts.len()].clone();
                h.metadata.name = format!("{}-{i:05}", h.metadata.name);
                h
            })
            .collect(),
    };

    // With a separate simulator: one fleet process per HOSTS_PER_PROCESS hosts; the first
    // one's image server serves every host.
    let mut fleet_processes = Vec::new();
    if config.separate_simulator && !config.external_bmcs {
        for _ in 0..hosts.len().div_ceil(HOSTS_PER_PROCESS) {
            fleet_processes.push(FleetProcess::spawn().await?);
        }
    }
    let mut image_server = None;
    let images_base = match fleet_processes.first() {
        Some(f) => f.images.clone(),
        None => {
            let server = fleet::serve_images(Images::demo())
                .await
                .map_err(|e| format!("image server: {e}"))?;
            let base = format!("http://{}", server.addr);
            image_server = Some(server);
            base
        }
    };
    let agent_image_url = format!("{images_base}/images/agent.iso");

    // The conductor service as its binary assembles it, on free ports, with its node
    // store in a temporary file (removed when the run ends).
    let conductor_state = std::env::temp_dir().join(format!(
        "metal3-demo-{}-{}-conductor.redb",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    let conductor_key = metal3_conductor::persist::default_key_path(&conductor_state);
    let _remove_conductor_state = RemoveOnDrop(vec![conductor_state.clone(), conductor_key]);
    let max_heavy = 256;
    // With kills, an agent's answer lost with a killed conductor must not hold a host
    // for Ironic's 30 minutes: a minute, then the operator's retry.
    let timeouts = config.node_timeouts.unwrap_or_else(|| {
        if config.conductor_kills > 0 {
            let minute = Duration::from_secs(60);
            NodeTimeouts {
                inspect_wait: minute,
                deploy_callback: minute,
                clean_callback: minute,
            }
        } else {
            NodeTimeouts::default()
        }
    });
    let mut conductor_process = None;
    let mut service = None;
    let (admin_url, agent_api_url) = if config.conductor_kills > 0 {
        let process = crate::conductor_process::ConductorProcess::spawn(
            crate::conductor_process::ConductorChild {
                admin_listen: "127.0.0.1:0".into(),
                agent_listen: "127.0.0.1:0".into(),
                state: conductor_state,
                agent_image_url: agent_image_url.clone(),
                max_heavy,
                timeouts,
            },
        )
        .await?;
        let urls = (process.admin_url.clone(), process.agent_url.clone());
        conductor_process = Some(process);
        urls
    } else {
        let started = Service::start(
            ServiceConfig {
                admin_listen: "127.0.0.1:0".into(),
                agent_listen: "127.0.0.1:0".into(),
                state: Some(conductor_state),
                conductor: ConductorConfig {
                    // Ironic's default for concurrent deploys is 250: with thousands of
                    // hosts the heavy operations' waits (agent boots, callbacks) need that
                    // many in flight.
                    max_heavy,
                    per_bmc: 2,
                    agent_image_url: agent_image_url.clone(),
                    poll: PollPolicy {
                        initial: Duration::from_millis(10),
                        max: Duration::from_millis(200),
                    },
                    operation_timeout: Duration::from_secs(120),
                    timeouts,
                    ..ConductorConfig::default()
                },
                ..ServiceConfig::default()
            },
            drivers(),
        )
        .await?;
        let urls = (started.admin_url(), started.agent_url());
        service = Some(started);
        urls
    };
    // The operator talks to the conductor over its HTTP admin API, as the two binaries do.
    let admin: Arc<dyn ConductorApi> = Arc::new(HttpConductor::new(&admin_url));

    // One simulated BMC per host.
    let agent_http = reqwest::Client::new();
    let sim_config = |seed: u64, credentials: (String, String), silent_agent: bool| HostSimConfig {
        fixtures: config.fixtures.clone(),
        credentials,
        power_delay: config.power_delay,
        fault_rate: config.fault_rate,
        seed,
        agent_image_url: agent_image_url.clone(),
        agent_api: agent_api_url.clone(),
        agent_http: agent_http.clone(),
        silent_agent,
    };
    let mut sims: BTreeMap<String, SimHost> = BTreeMap::new();
    // Every simulated host (in this process or the fleet's): vendor, BMC address, MACs.
    let mut simulated: BTreeMap<String, (&'static fleet::Vendor, RemoteHost)> = BTreeMap::new();
    for bmh in hosts.iter_mut().filter(|_| config.external_bmcs) {
        if let Some(image) = &mut bmh.spec.image {
            localize_image(image, &images_base);
        }
    }
    let mut requested = Vec::new();
    for bmh in hosts.iter().filter(|_| !config.external_bmcs) {
        let name = bmh
            .metadata
            .annotations
            .get(VENDOR_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "dmtf".to_string());
        let vendor = fleet::vendor(&name)
            .ok_or_else(|| format!("{}: unknown vendor {name}", bmh.metadata.key()))?;
        let mut credentials = bmc_credentials(&manifests, bmh);
        if let Some(p) = bmh.metadata.annotations.get(BMC_PASSWORD) {
            credentials.1 = p.clone();
        }
        let silent = bmh.metadata.annotations.contains_key(SILENT_AGENT);
        requested.push((vendor, credentials, silent));
    }
    let started_hosts: Vec<RemoteHost> = if !fleet_processes.is_empty() {
        let mut out = Vec::new();
        for (n, (f, chunk)) in fleet_processes
            .iter_mut()
            .zip(requested.chunks(HOSTS_PER_PROCESS))
            .enumerate()
        {
            let request = FleetRequest {
                fixtures: config.fixtures.clone(),
                power_delay_ms: config.power_delay.as_millis() as u64,
                fault_rate: config.fault_rate,
                agent_api: agent_api_url.clone(),
                agent_image_url: agent_image_url.clone(),
                first: (n * HOSTS_PER_PROCESS) as u32 + 1,
                hosts: chunk
                    .iter()
                    .map(|(v, (user, pass), silent)| FleetHost {
                        vendor: v.name.to_string(),
                        username: user.clone(),
                        password: pass.clone(),
                        silent_agent: *silent,
                    })
                    .collect(),
            };
            out.extend(f.start_hosts(&request).await?);
        }
        out
    } else {
        let mut out = Vec::new();
        for (i, (vendor, credentials, silent)) in requested.iter().enumerate() {
            let key = hosts[i].metadata.key();
            let sim = fleet::start_host(
                vendor,
                i as u32 + 1,
                &sim_config(i as u64 + 1, credentials.clone(), *silent),
            )
            .await
            .map_err(|e| format!("simulated BMC: {e}"))?;
            out.push(RemoteHost {
                address: sim.address.clone(),
                macs: sim.macs.clone(),
            });
            sims.insert(key, sim);
        }
        out
    };
    if started_hosts.len() != requested.len() {
        return Err(format!(
            "asked for {} simulated hosts, got {}",
            requested.len(),
            started_hosts.len()
        ));
    }
    for ((bmh, sim), (vendor, _, _)) in hosts
        .iter_mut()
        .filter(|_| !config.external_bmcs)
        .zip(started_hosts)
        .zip(&requested)
    {
        let address = bmh.spec.bmc.address.clone();
        localize(bmh, &sim, &images_base);
        if bmh.metadata.annotations.contains_key(KEEP_ADDRESS) {
            bmh.spec.bmc.address = address;
        }
        simulated.insert(bmh.metadata.key(), (*vendor, sim));
    }
    let state_file = match &config.state {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!(
            "metal3-demo-{}-{}.redb",
            std::process::id(),
            started.elapsed().as_nanos()
        )),
    };
    let _ = std::fs::remove_file(&state_file);
    let operator_config = OperatorConfig {
        poll: Duration::from_millis(20),
        inspection: config.inspection,
        ..OperatorConfig::default()
    };
    let open = |conductor: Arc<dyn ConductorApi>| -> Result<Arc<Operator>, String> {
        let store = Store::open(&state_file).map_err(|e| e.to_string())?;
        Operator::open(conductor, store, operator_config).map_err(|e| e.to_string())
    };
    let mut operator = open(admin.clone())?;
    // The clock of `provisioned_after` starts here: the fleet is up, the manifests go in.
    let applied_at = Instant::now();
    // The conductor's killer: SIGKILLs at random moments, each followed by a restart.
    let kills_wanted = config.conductor_kills;
    let progress_lines = config.progress;
    let killer = conductor_process.take().map(|mut process| {
        tokio::spawn(async move {
            let mut rng = u64::from(std::process::id()).rotate_left(17) | 1;
            for _ in 0..kills_wanted {
                tokio::time::sleep(random_gap(&mut rng)).await;
                if let Err(e) = process.kill_and_restart().await {
                    return (process, Err(e));
                }
                if progress_lines {
                    println!(
                        "conductor killed ({}/{kills_wanted}) and started again",
                        process.kills
                    );
                }
            }
            (process, Ok(()))
        })
    });
    let mut applied = manifests.clone();
    applied.hosts = hosts.clone();
    // In kube mode the API server holds the hosts; the operator gets pools and claims.
    let mut infra = manifests.clone();
    infra.hosts.clear();
    let shared_operator: SharedOperator = Arc::new(std::sync::Mutex::new(Some(operator.clone())));
    let mut controller = None;
    let front = if config.kube_mode {
        operator.apply(&infra)?;
        let api = Arc::new(std::sync::Mutex::new(EmulatedApi {
            objects: BTreeMap::new(),
            secrets: manifests.secrets.values().cloned().collect(),
            events: BTreeMap::new(),
        }));
        controller = Some(tokio::spawn(run_controller(
            api.clone(),
            shared_operator.clone(),
        )));
        Front::Kube(api)
    } else {
        operator.apply(&applied)?;
        operator.run_embedded();
        Front::Embedded(shared_operator.clone())
    };
    for h in hosts.iter().filter(|_| config.kube_mode) {
        front.put(h.clone());
    }
    let keys: Vec<String> = hosts.iter().map(|h| h.metadata.key()).collect();
    let expected: Vec<Option<String>> = hosts.iter().map(expected_error).collect();
    let deadline = started + config.timeout;
    let mut restarts = 0;
    // Operator kills at random moments of the provisioning (100 to 500 ms apart).
    let mut kill_rng = u64::from(std::process::id()) | 1;
    let mut operator_kills_left = config.operator_kills;
    let mut next_operator_kill = Instant::now() + random_gap(&mut kill_rng) / 2;

    // 1. Everything provisioned; bad input in the error it should report, and then
    // deleted at once (before its retries back off for long).
    let mut progress = Progress::default();
    let mut errors_seen: BTreeMap<String, provision_fsm::HostError> = BTreeMap::new();
    loop {
        // Keys and expected errors are worked out once: this runs 20 times a second over
        // every host.
        let failed: Vec<(String, provision_fsm::HostError)> = operator.with_records(|records| {
            keys.iter()
                .zip(&expected)
                .filter_map(|(key, kind)| {
                    let kind = kind.as_deref()?;
                    let error = records.get(key)?.host.error.clone()?;
                    (error.kind.name() == kind && !errors_seen.contains_key(key))
                        .then(|| (key.clone(), error))
                })
                .collect()
        });
        for (key, error) in failed {
            errors_seen.insert(key.clone(), error);
            front.delete(&key);
        }
        let provisioned = operator.with_records(|records| {
            keys.iter()
                .zip(&expected)
                .filter(|(key, kind)| match kind {
                    Some(_) => errors_seen.contains_key(*key),
                    None => records
                        .get(*key)
                        .is_some_and(|r| r.host.state.kind() == HostStateKind::Provisioned),
                })
                .count()
        });
        if config.progress {
            progress.tick(&operator, &keys);
        }
        let provisioning = operator.count_in(HostStateKind::Provisioning);
        let restart_once = config
            .restart_operator_at
            .is_some_and(|at| restarts == 0 && provisioning >= at.min(keys.len()));
        let kill_now = operator_kills_left > 0 && Instant::now() >= next_operator_kill;
        if kill_now {
            operator_kills_left -= 1;
            next_operator_kill = Instant::now() + random_gap(&mut kill_rng) / 2;
        }
        {
            if restart_once || kill_now {
                // Kill the operator (its tasks with it) and start a new one on the store.
                *locked(&shared_operator) = None;
                // Let a controller pass in progress finish with the old operator.
                tokio::time::sleep(Duration::from_millis(50)).await;
                operator.clone().stop().await;
                drop(operator);
                operator = open(admin.clone())?;
                operator.apply(if config.kube_mode { &infra } else { &applied })?;
                if !config.kube_mode {
                    operator.run_embedded();
                }
                *locked(&shared_operator) = Some(operator.clone());
                restarts += 1;
                if config.progress {
                    println!("operator restarted with {provisioning} hosts provisioning");
                }
            }
        }
        // Every host provisioned, and every operator kill asked for done.
        if provisioned == keys.len() && operator_kills_left == 0 {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let provisioned_after = applied_at.elapsed();
    let at_provisioned = operator.records();
    // The controller writes status on its next pass: give it a moment to catch up.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle
        && front.object_states().is_some_and(|o| {
            hosts.iter().any(|h| {
                expected_error(h).is_none()
                    && o.get(&h.metadata.key()).map(String::as_str) != Some("provisioned")
            })
        })
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let objects_at_provisioned = front.object_states();
    // Deploys the conductor accepted per node: the truth about "provisioned twice".
    let mut nodes_at_provisioned: BTreeMap<String, NodeView> = BTreeMap::new();
    for key in &keys {
        if let Some(n) = read_node(admin.as_ref(), key).await {
            nodes_at_provisioned.insert(key.clone(), n);
        }
    }
    let deploys: BTreeMap<String, u32> = nodes_at_provisioned
        .iter()
        .map(|(k, n)| (k.clone(), n.deploy_attempts))
        .collect();

    // 2. Deprovision: the images go.
    let good: Vec<String> = hosts
        .iter()
        .filter(|h| expected_error(h).is_none())
        .map(|h| h.metadata.key())
        .collect();
    for bmh in hosts.iter().filter(|h| expected_error(h).is_none()) {
        let mut h = bmh.clone();
        h.spec.image = None;
        front.put(h);
    }
    wait_all(
        &operator,
        &good,
        deadline,
        config.progress.then_some(&mut progress),
        |r| r.is_some_and(|r| r.host.state.kind() == HostStateKind::Available),
    )
    .await;
    let at_available = operator.records();

    // 3. Delete.
    for key in &keys {
        front.delete(key);
    }
    wait_all(
        &operator,
        &keys,
        deadline,
        config.progress.then_some(&mut progress),
        |r| r.is_none(),
    )
    .await;
    progress.finish();
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle && front.object_states().is_some_and(|o| !o.is_empty()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What the simulated hosts booted, and the requests their BMCs served.
    let (mut boots_of, bmc_requests, simulator_peak_rss_kib) = match fleet_processes.is_empty() {
        false => {
            let mut report = crate::fleet_process::FleetReport::default();
            for f in &fleet_processes {
                let r = f.report().await?;
                report.requests += r.requests;
                report.boots.extend(r.boots);
                report.peak_rss_kib += r.peak_rss_kib;
            }
            // The fleets answer in the order the hosts were asked for.
            let boots: BTreeMap<String, Vec<BootSource>> = hosts
                .iter()
                .filter(|_| !config.external_bmcs)
                .map(|h| h.metadata.key())
                .zip(report.boots)
                .collect();
            (boots, report.requests, Some(report.peak_rss_kib))
        }
        true => (
            sims.iter()
                .map(|(k, s)| (k.clone(), s.sim.boots(s.vendor.system)))
                .collect(),
            sims.values().map(|s| s.sim.requests()).sum(),
            None,
        ),
    };

    // Every kill done before the checks read the conductor.
    let mut conductor_kills = 0;
    let mut conductor_process = None;
    if let Some(killer) = killer {
        let (process, result) = killer
            .await
            .map_err(|e| format!("the conductor's killer: {e}"))?;
        result?;
        conductor_kills = process.kills;
        conductor_process = Some(process);
    }

    // Checks.
    let mut addresses = HashSet::new();
    let mut reports = Vec::new();
    for bmh in &hosts {
        let key = bmh.metadata.key();
        let sim = simulated.get(&key);
        let vendor = sim.map_or("external", |(v, _)| v.name).to_string();
        let mut problems = Vec::new();
        let live = bmh.live_iso();
        let rec = at_provisioned.get(&key);
        if let Some(kind) = expected_error(bmh) {
            let error = errors_seen.get(&key).cloned();
            match &error {
                Some(e) if e.kind.name() == kind && !e.message.is_empty() => {}
                other => problems.push(format!("expected a {kind}, got {other:?}")),
            }
            if !operator.is_gone(&key) {
                problems.push("not deleted".into());
            }
            if front.object_states().is_some_and(|o| o.contains_key(&key)) {
                problems.push("its object is still in the API server".into());
            }
            reports.push(HostReport {
                events: front.event_reasons(&key),
                refused_logins: sims.get(&key).map(|s| s.sim.refused_logins()),
                images_written: sims
                    .get(&key)
                    .map(|s| s.images_written.load(Ordering::Relaxed)),
                key,
                vendor: vendor.clone(),
                way: "bad input".into(),
                address: None,
                error: error.map(|e| format!("{}: {}", e.kind.name(), e.message)),
                phases: rec.map(|r| r.phases.clone()).unwrap_or_default(),
                problems,
            });
            continue;
        }
        match rec.map(|r| r.host.state.kind()) {
            Some(HostStateKind::Provisioned) => {}
            other => problems.push(format!(
                "not provisioned: {}{}",
                other.map(|s| s.name()).unwrap_or("no record"),
                rec.and_then(|r| r.host.error.as_ref())
                    .map(|e| format!(" ({}: {})", e.kind.name(), e.message))
                    .unwrap_or_default()
            )),
        }
        let deployed = deploys.get(&key).copied().unwrap_or(0);
        // Under kills nothing may fail: exactly one deploy. Otherwise a provisioning that
        // failed (injected faults) may be retried.
        let allowed = if config.conductor_kills > 0 || config.operator_kills > 0 {
            1
        } else {
            1 + rec.map_or(0, |r| r.host.provisioning_fail_count)
        };
        if deployed > allowed {
            problems.push(format!("deployed {deployed} times"));
        }
        // Counted at the host itself: the images its agents wrote.
        let images_written = sims
            .get(&key)
            .map(|s| s.images_written.load(Ordering::Relaxed));
        if let Some(n) = images_written.filter(|n| !live && *n > allowed) {
            problems.push(format!("its agent wrote the image {n} times"));
        }
        let address = rec
            .and_then(|r| r.address.as_ref())
            .map(|held| held.address.address.to_string());
        if let Some(a) = &address {
            if !addresses.insert(a.clone()) {
                problems.push(format!("address {a} given twice"));
            }
        }
        if !live {
            // The agent wrote the config drive: the host's address in its network data,
            // its user data as the Secret holds it.
            let drive = nodes_at_provisioned
                .get(&key)
                .and_then(|n| n.config_drive.clone())
                .unwrap_or_default();
            let written_ip = drive
                .network_data
                .as_ref()
                .and_then(|n| n["networks"][0]["ip_address"].as_str());
            if address.is_some() && written_ip != address.as_deref() {
                problems.push(format!(
                    "config drive network data has {written_ip:?}, the host was given {address:?}"
                ));
            }
            if bmh.spec.user_data.is_some() && drive.user_data.is_none() {
                problems.push("config drive without the host's user data".into());
            }
            if drive.meta_data["name"] != bmh.metadata.name.as_str() {
                problems.push(format!("config drive metadata {:?}", drive.meta_data));
            }
            // Keys of the host's metaData Secret are in the written metadata.
            let wanted: Vec<String> = bmh
                .spec
                .meta_data
                .as_ref()
                .and_then(|r| manifests.secret(bmh.metadata.namespace(), &r.name))
                .and_then(|s| s.get("metaData").ok().flatten())
                .map(|text| {
                    text.lines()
                        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            for k in wanted {
                if drive.meta_data.get(&k).is_none() {
                    problems.push(format!("config drive metadata lacks {k} from its Secret"));
                }
            }
        }
        let boots = boots_of.remove(&key).unwrap_or_default();
        let image_url = bmh
            .spec
            .image
            .as_ref()
            .map(|i| i.url.clone())
            .unwrap_or_default();
        let booted = |image: &str| {
            boots
                .iter()
                .any(|b| matches!(b, BootSource::VirtualCd { image: i, .. } if i == image))
        };
        let boot_mac = sim.and_then(|(_, s)| s.macs.first());
        let inspected_macs: Vec<String> = rec
            .and_then(|r| r.hardware.as_ref())
            .map(|h| {
                h.nics
                    .iter()
                    .filter_map(|n| n.mac.as_ref().map(|m| m.to_string().to_ascii_lowercase()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(mac) = boot_mac {
            if !inspected_macs.contains(mac) {
                problems.push(format!(
                    "inspection did not find the boot NIC {mac} (found {inspected_macs:?})"
                ));
            }
        }
        let live_boots = boots
            .iter()
            .filter(|b| matches!(b, BootSource::VirtualCd { image: i, .. } if *i == image_url))
            .count();
        if sim.is_none() {
            // An external BMC: what it booted is not observable from here.
        } else if live && !booted(&image_url) {
            problems.push(format!("never booted the live ISO (boots: {boots:?})"));
        } else if live && live_boots > allowed as usize {
            problems.push(format!(
                "booted the live ISO {live_boots} times (boots: {boots:?})"
            ));
        }
        if sim.is_some() {
            // The agent boots for in-band inspection, for each cleaning by the agent (on
            // the first provide and on deprovision) and for a disk-image deploy.
            let cleans = bmh.spec.automated_cleaning_mode.as_deref() != Some("disabled");
            let expected = usize::from(config.inspection == provision_fsm::InspectionMode::Agent)
                + if cleans { 2 } else { 0 }
                + usize::from(!live);
            let agent_boots = boots
                .iter()
                .filter(|b| matches!(b, BootSource::VirtualCd { image, .. } if *image == agent_image_url))
                .count();
            if agent_boots < expected {
                problems.push(format!(
                    "booted the agent {agent_boots} times, expected at least {expected} (boots: {boots:?})"
                ));
            }
        }
        if !live && sim.is_some() {
            if !booted(&agent_image_url) {
                problems.push(format!("never booted the agent (boots: {boots:?})"));
            }
            if !boots.contains(&BootSource::Device("Hdd".into())) {
                problems.push(format!("never booted its disk (boots: {boots:?})"));
            }
        }
        if at_available
            .get(&key)
            .is_none_or(|r| r.host.state.kind() != HostStateKind::Available)
        {
            problems.push("not deprovisioned to available".into());
        }
        if !operator.is_gone(&key) {
            problems.push("not deleted".into());
        }
        if let Some(objects) = &objects_at_provisioned {
            if objects.get(&key).map(String::as_str) != Some("provisioned") {
                problems.push(format!(
                    "its object's status said {:?} when the host was provisioned",
                    objects.get(&key)
                ));
            }
        }
        if front.object_states().is_some_and(|o| o.contains_key(&key)) {
            problems.push("its object is still in the API server".into());
        }
        // In kube mode, the Events baremetal-operator records for each operation.
        let events = front.event_reasons(&key);
        if config.kube_mode {
            for reason in [
                "Registered",
                "ProvisioningStarted",
                "ProvisioningComplete",
                "DeprovisioningStarted",
                "DeprovisioningComplete",
            ] {
                if !events.iter().any(|e| e == reason) {
                    problems.push(format!("no {reason} event (events: {events:?})"));
                }
            }
        }
        if read_node(admin.as_ref(), &key).await.is_some() {
            problems.push("its conductor node is still there".into());
        }
        let phases = at_available
            .get(&key)
            .or(rec)
            .map(|r| r.phases.clone())
            .unwrap_or_default();
        reports.push(HostReport {
            refused_logins: sims.get(&key).map(|s| s.sim.refused_logins()),
            images_written,
            key,
            vendor,
            way: if live { "live-iso" } else { "disk image" }.to_string(),
            address,
            phases,
            error: None,
            problems,
            events,
        });
    }
    if let Some(c) = controller {
        c.abort();
    }
    let _ = std::fs::remove_file(&state_file);
    let peak_rss_kib = crate::fleet_process::peak_rss_kib();
    for f in fleet_processes {
        f.stop().await;
    }
    drop(image_server);
    drop(service);
    if let Some(p) = conductor_process {
        p.stop().await;
    }
    Ok(DemoReport {
        hosts: reports,
        provisioned_after,
        setup: applied_at - started,
        total: started.elapsed(),
        bmc_requests,
        operator_restarts: restarts,
        conductor_kills,
        simulator_peak_rss_kib,
        peak_rss_kib,
    })
}

async fn wait_all(
    operator: &Arc<Operator>,
    keys: &[String],
    deadline: Instant,
    mut progress: Option<&mut Progress>,
    done: impl Fn(Option<&HostRecord>) -> bool,
) {
    loop {
        let finished = operator.with_records(|records| keys.iter().all(|k| done(records.get(k))));
        if finished || Instant::now() > deadline {
            return;
        }
        if let Some(p) = progress.as_deref_mut() {
            p.tick(operator, keys);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Progress output: one line per host transition for small fleets; for large ones a
/// progress bar with the hosts per state when standard error is a terminal, else a
/// summary line at most every few seconds, and a line for each host that runs into an
/// error either way.
#[derive(Default)]
struct Progress {
    line: String,
    states: BTreeMap<String, String>,
    bar: Option<indicatif::ProgressBar>,
    printed_at: Option<Instant>,
    errors_told: std::collections::BTreeSet<String>,
}

/// Fleets up to this size get one line per host transition.
const PER_HOST_LINES: usize = 12;

/// Without a terminal, the summary line is printed at most this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

fn describe(r: &HostRecord) -> String {
    match &r.host.error {
        Some(e) => format!(
            "{} ({}: {})",
            r.host.state.kind().name(),
            e.kind.name(),
            e.message
        ),
        None => r.host.state.kind().name().to_string(),
    }
}

impl Progress {
    fn tick(&mut self, operator: &Operator, keys: &[String]) {
        if keys.len() <= PER_HOST_LINES {
            let records = operator.records();
            for k in keys {
                let now = match records.get(k) {
                    Some(r) => describe(r),
                    None if operator.is_gone(k) => "deleted".to_string(),
                    None => continue,
                };
                if self.states.get(k) != Some(&now) {
                    println!("{:<32} {now}", k.trim_start_matches("default/"));
                    self.states.insert(k.clone(), now);
                }
            }
            return;
        }
        let bar = self
            .bar
            .get_or_insert_with(|| {
                let bar = indicatif::ProgressBar::new(keys.len() as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{elapsed:>4} [{bar:30}] {pos}/{len} provisioned  {msg}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            })
            .clone();
        // Each host that runs into an error gets a line of its own, once.
        let (provisioned, new_errors) = operator.with_records(|records| {
            let provisioned = records
                .values()
                .filter(|r| r.host.state.kind() == provision_fsm::HostStateKind::Provisioned)
                .count();
            let errors: Vec<(String, String)> = records
                .iter()
                .filter(|(k, r)| r.host.error.is_some() && !self.errors_told.contains(*k))
                .map(|(k, r)| (k.clone(), describe(r)))
                .collect();
            (provisioned, errors)
        });
        for (key, state) in new_errors {
            let line = format!("{key:<32} {state}");
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
            self.errors_told.insert(key);
        }
        let line = progress_line(operator, keys);
        if line.ends_with("] ") {
            return;
        }
        if !bar.is_hidden() {
            bar.set_position(provisioned as u64);
            bar.set_message(
                line.split_once("] ")
                    .map_or(line.clone(), |(_, counts)| counts.to_string()),
            );
            return;
        }
        let due = self.printed_at.is_none_or(|t| t.elapsed() >= SUMMARY_EVERY);
        if line != self.line && due {
            println!("{line}");
            self.line = line;
            self.printed_at = Some(Instant::now());
        }
    }

    /// Clears the bar before the final table.
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_of(manifests: &Manifests) -> &ipam::IpPoolSpec {
        &manifests.pools[0].spec
    }

    #[test]
    fn pools_grow_to_hold_every_host_and_stay_one_subnet() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"));
        let mut manifests = Manifests::load_dir(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let before = pool_of(&manifests).clone();
        // Fewer hosts than the pool holds: unchanged.
        widen_pools(&mut manifests, 100);
        assert_eq!(pool_of(&manifests), &before);

        widen_pools(&mut manifests, 10_000);
        let spec = pool_of(&manifests);
        let range = &spec.pools[0];
        let (Some(std::net::IpAddr::V4(start)), Some(std::net::IpAddr::V4(end))) =
            (range.start, range.end)
        else {
            unreachable!("a v4 range: {range:?}")
        };
        assert_eq!(Some(range.start), before.pools.first().map(|r| r.start));
        assert!(u32::from(end) - u32::from(start) + 1 >= 10_000);
        let prefix = u32::from(spec.prefix.unwrap_or(0));
        assert!((16..24).contains(&prefix), "prefix {prefix}");
        let mask = u32::MAX << (32 - prefix);
        assert_eq!(u32::from(start) & mask, u32::from(end) & mask);
        // ipam takes it and hands out 10,000 distinct addresses.
        let mut pool = ipam::IpPool::new(spec).unwrap_or_else(|e| unreachable!("{e}"));
        for i in 0..10_000 {
            pool.claim(&format!("host-{i}"))
                .unwrap_or_else(|e| unreachable!("claim {i}: {e}"));
        }
    }
}
