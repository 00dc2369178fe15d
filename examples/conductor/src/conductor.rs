//! The conductor (Ironic's role): keeps nodes and drives each through provision-fsm's node
//! states, carrying out the actions the node machine asks for with the [`executor`]'s
//! steps over the drivers of a bmc-core [`Registry`].
//!
//! Work runs on one task per operation, bounded by a fleet-wide limit on heavy operations
//! (inspect, deploy, clean) and a per-BMC limit, so a slow or dead BMC holds only its own
//! permits. Waiting states time out when the node machine's own deadline (`wake_at`)
//! passes: one timer task sleeps until the earliest and wakes only the nodes that are due.
//! Deploys go two ways, as Metal3's: a `live-iso` image is booted by virtual media as it
//! is; a disk image is written by the agent, booted by virtual media, which calls back
//! through the agent API ([`Conductor::agent_lookup`], [`Conductor::agent_heartbeat`],
//! [`Conductor::agent_report`]).
//!
//! [`executor`]: crate::executor

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use tokio::sync::{Notify, Semaphore};

use bmc_core::sync::lock;
use bmc_core::verified::{Deadline, PollPolicy, ensure_power_with};
use bmc_core::{
    BmcDriver, BmcError, BootMode, ConnectOptions, HardwareInventory, PowerAction, PowerState,
    Registry,
};
use provision_fsm::{Node, NodeAction, NodeEvent, NodeState, NodeStep, NodeTimeouts};

use crate::agent_protocol::{AgentCommand, AgentResult, ConfigDrive, Lookup};
use crate::contract::{ApiError, DeployConfig, NodeSpec, NodeView, PowerRequest, Verb};
use crate::executor::{self, DeployStarted, StepSettings};
use crate::feed::{Changes, Feed, NodeChange};
use crate::history::{History, HistoryEvent, NodeHistory};
use crate::metrics::ConductorMetrics;
use crate::persist::{NodeStore, NodeWrite, StoreError, random_bytes};
use bmc_core::observe::{BmcCall, BmcCallObserver};
use bmc_core::{BmcAddress, Credentials};

/// How the conductor runs.
#[derive(Debug, Clone)]
pub struct ConductorConfig {
    /// Heavy operations (inspect, deploy, clean) running at once, fleet-wide.
    pub max_heavy: usize,
    /// Operations running at once against one BMC endpoint (host and port).
    pub per_bmc: usize,
    /// The agent ISO booted for in-band inspection, cleaning and disk-image deploys.
    pub agent_image_url: String,
    /// Power and boot waits.
    pub poll: PollPolicy,
    /// How long one power change or virtual-media boot may take.
    pub operation_timeout: Duration,
    /// Waiting-state timeouts.
    pub timeouts: NodeTimeouts,
    /// Per-host config images for booted agents; `None`: agents boot the shared ISO
    /// alone and find the conductor on their kernel command line.
    pub agent_config_images: Option<AgentConfigImages>,
}

/// What goes into every host's config image besides its network data, and where it is
/// served: the conductor builds a host's image when its BMC fetches it (a few KiB, the
/// agent ISO itself shared by every host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfigImages {
    /// The agent API's URL as hosts and their BMCs reach it (`https://10.0.0.1:6386`):
    /// agents call it, BMCs fetch the images from it. Empty: the [`crate::service`]
    /// fills in the address it bound the agent API to.
    pub agent_api_url: String,
    /// The CA (PEM) agents trust for the agent API and image servers.
    pub ca_pem: Option<String>,
    /// The shared agent ISO on this machine's disk: for BMCs with one virtual-media slot
    /// the conductor streams it with the host's config image in its slot
    /// ([`crate::agent_iso`]); `None`: those hosts boot the shared ISO alone.
    pub agent_iso_file: Option<std::path::PathBuf>,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        ConductorConfig {
            max_heavy: 50,
            per_bmc: 2,
            agent_image_url: String::new(),
            poll: PollPolicy::default(),
            operation_timeout: Duration::from_secs(600),
            timeouts: NodeTimeouts::default(),
            agent_config_images: None,
        }
    }
}

/// The agent booted for a node: whether its ISO was booted, the digest of the token its
/// look-up was given (one per boot; the token itself is never kept), whether its command
/// was given, and whether its result arrived (the finishing BMC work then runs).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AgentSession {
    booted: bool,
    token_sha256: Option<[u8; 32]>,
    /// The agent called with its token: a later look-up is refused.
    #[serde(default)]
    token_used: bool,
    command_sent: bool,
    #[serde(default)]
    result_received: bool,
    /// The random name of the config image this boot's BMC was given (served while the
    /// node waits for its agent).
    #[serde(default)]
    config_image: Option<String>,
}

impl AgentSession {
    /// How far the wait for the agent got, as a timeout names the hop that failed.
    fn missing(&self) -> &'static str {
        match (self.booted, &self.token_sha256, self.command_sent) {
            (_, _, true) => "the agent was given its command, no result",
            (_, Some(_), false) => {
                "the agent looked up its node, no heartbeat asked for its command"
            }
            (true, None, false) => "the agent ISO was booted by virtual media, no agent look-up",
            (false, None, false) => "the agent ISO was never booted",
        }
    }
}

/// Tells a node's history and the conductor's metrics of each exchange with its BMC.
struct NodeObserver {
    history: Arc<Mutex<History>>,
    metrics: Arc<ConductorMetrics>,
    /// The driver that serves the node, once connected (the scheme's family until then).
    driver: std::sync::OnceLock<String>,
    scheme_family: &'static str,
}

impl BmcCallObserver for NodeObserver {
    fn observe(&self, call: &BmcCall<'_>) {
        let driver = self.driver.get().map_or(self.scheme_family, String::as_str);
        self.metrics.bmc_call(driver, call);
        lock(&self.history).push(HistoryEvent::BmcCall {
            protocol: call.protocol.into(),
            method: call.method.into(),
            target: call.target.to_string(),
            status: call.status,
            latency_ms: (call.latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            failure: call.failure.map(str::to_string),
        });
    }
}

struct NodeRecord {
    spec: NodeSpec,
    fsm: Node,
    power_on: Option<bool>,
    target_power: Option<PowerRequest>,
    power_error: Option<String>,
    power_requests: u64,
    inventory: Option<HardwareInventory>,
    deploy: Option<DeployConfig>,
    deployed_image: Option<String>,
    deploy_attempts: u32,
    config_drive: Option<ConfigDrive>,
    driver: Option<Arc<dyn BmcDriver>>,
    agent: AgentSession,
    inspect_in_band: bool,
    history: Arc<Mutex<History>>,
    /// The correlation id of the request that started the node's current work.
    correlation: Option<String>,
    /// The BMC refused the credentials at the last verification.
    credentials_refused: bool,
    /// The BMC password as sealed for the store (sealed once per credentials change).
    sealed_password: Option<String>,
    /// A digest of what was last committed for the node: an unchanged record is not
    /// written again.
    saved: Option<[u8; 32]>,
    /// The inventory is in the store as it is here.
    inventory_saved: bool,
    /// Held by whatever works on the node's BMC (actions, the work after an agent's
    /// result, power changes): one at a time, in the order they were asked for, so an
    /// abort's tear-down ends before the next operation boots anything.
    work: Arc<tokio::sync::Mutex<()>>,
}

/// A node as the store keeps it (the BMC password sealed).
#[derive(Serialize, Deserialize)]
struct StoredNode {
    address: String,
    username: String,
    sealed_password: String,
    disable_certificate_verification: bool,
    boot_mac: Option<String>,
    automated_clean: bool,
    fsm: Node,
    power_on: Option<bool>,
    power_requests: u64,
    deploy: Option<DeployConfig>,
    deployed_image: Option<String>,
    deploy_attempts: u32,
    config_drive: Option<ConfigDrive>,
    inspect_in_band: bool,
    agent: AgentSession,
    correlation: Option<String>,
    #[serde(default)]
    credentials_refused: bool,
    #[serde(default)]
    target_power: Option<PowerRequest>,
    #[serde(default)]
    preprovisioning_network_data: Option<serde_json::Value>,
    #[serde(default)]
    legacy_boot: bool,
}

/// The agent's token for its calls: 128 random bits from the OS's generator, hex.
fn new_agent_token() -> Result<String, StoreError> {
    Ok(crate::persist::hex(&random_bytes::<16>()?))
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The path of a config image under the agent API.
fn config_image_path(node: &str, id: &str) -> String {
    format!("/v1/config-images/{}/{id}.img", crate::http::escape(node))
}

/// The name and URLs of a config image made for an agent boot (`None` without config
/// images).
#[derive(Debug, Default)]
struct NewConfigImage {
    id: Option<String>,
    urls: Option<executor::ConfigUrls>,
}

impl NewConfigImage {
    fn url(&self) -> Option<&executor::ConfigUrls> {
        self.urls.as_ref()
    }
}

/// The path of a per-host agent ISO under the agent API.
fn agent_iso_path(node: &str, id: &str) -> String {
    format!("/v1/agent-isos/{}/{id}.iso", crate::http::escape(node))
}

/// The waiting states, in which an agent's token is good.
fn waits_for_agent(state: NodeState) -> bool {
    matches!(
        state,
        NodeState::WaitCallBack | NodeState::InspectWait | NodeState::CleanWait
    )
}

/// The phase an action belongs to, as its errors name it.
fn phase(action: &NodeAction) -> &'static str {
    match action {
        NodeAction::VerifyBmc => "verifying the BMC",
        NodeAction::StartInspection => "inspection",
        NodeAction::StartDeployment => "deploy",
        NodeAction::StartCleaning => "cleaning",
        NodeAction::TearDown => "tearing down",
        NodeAction::AbortOperation => "abort",
        NodeAction::RecordFailure { .. } => "failure",
    }
}

impl NodeRecord {
    /// The node's MAC addresses in lower case: the boot MAC and the inventory's NICs.
    fn macs(&self) -> Vec<String> {
        let boot_mac = self.spec.boot_mac.as_deref().map(str::to_ascii_lowercase);
        self.inventory
            .iter()
            .flat_map(|i| i.nics.iter())
            .filter_map(|n| n.mac.as_ref().map(|m| m.to_string().to_ascii_lowercase()))
            .chain(boot_mac)
            .collect()
    }

    fn view(&self) -> NodeView {
        NodeView {
            name: self.spec.name.clone(),
            state: self.fsm.state,
            last_error: self.fsm.last_error.clone(),
            power_on: self.power_on,
            target_power: self.target_power,
            power_error: self.power_error.clone(),
            power_requests: self.power_requests,
            driver: self.driver.as_ref().map(|d| d.driver_name().to_string()),
            inspected: self.inventory.is_some(),
            deployed_image: self.deployed_image.clone(),
            deploy_attempts: self.deploy_attempts,
            config_drive: self.config_drive.clone(),
            credentials_refused: self.credentials_refused,
        }
    }

    /// The record as the store keeps it; `None` before its password was sealed.
    fn stored(&self) -> Option<StoredNode> {
        Some(StoredNode {
            address: self.spec.address.to_string(),
            username: self.spec.credentials.username().to_string(),
            sealed_password: self.sealed_password.clone()?,
            disable_certificate_verification: self.spec.disable_certificate_verification,
            boot_mac: self.spec.boot_mac.clone(),
            automated_clean: self.spec.automated_clean,
            fsm: self.fsm.clone(),
            power_on: self.power_on,
            power_requests: self.power_requests,
            deploy: self.deploy.clone(),
            deployed_image: self.deployed_image.clone(),
            deploy_attempts: self.deploy_attempts,
            config_drive: self.config_drive.clone(),
            inspect_in_band: self.inspect_in_band,
            agent: self.agent.clone(),
            correlation: self.correlation.clone(),
            credentials_refused: self.credentials_refused,
            target_power: self.target_power,
            preprovisioning_network_data: self.spec.preprovisioning_network_data.clone(),
            legacy_boot: self.spec.legacy_boot,
        })
    }

    /// A record from the store.
    fn restore(
        name: &str,
        stored: StoredNode,
        inventory: Option<HardwareInventory>,
        store: &NodeStore,
    ) -> Result<NodeRecord, String> {
        let address = BmcAddress::parse(&stored.address)
            .map_err(|e| format!("node {name}: stored address: {e}"))?;
        let password = store
            .key()
            .open(name, &stored.sealed_password)
            .map_err(|e| e.to_string())?;
        let credentials = Credentials::new(stored.username, password)
            .map_err(|e| format!("node {name}: stored credentials: {e}"))?;
        Ok(NodeRecord {
            spec: NodeSpec {
                name: name.to_string(),
                address,
                credentials,
                disable_certificate_verification: stored.disable_certificate_verification,
                boot_mac: stored.boot_mac,
                automated_clean: stored.automated_clean,
                preprovisioning_network_data: stored.preprovisioning_network_data,
                legacy_boot: stored.legacy_boot,
            },
            fsm: stored.fsm,
            power_on: stored.power_on,
            target_power: stored.target_power,
            power_error: None,
            power_requests: stored.power_requests,
            inventory,
            deploy: stored.deploy,
            deployed_image: stored.deployed_image,
            deploy_attempts: stored.deploy_attempts,
            config_drive: stored.config_drive,
            driver: None,
            agent: stored.agent,
            inspect_in_band: stored.inspect_in_band,
            history: Arc::new(Mutex::new(History::default())),
            correlation: stored.correlation,
            credentials_refused: stored.credentials_refused,
            sealed_password: Some(stored.sealed_password),
            saved: None,
            inventory_saved: true,
            work: Arc::default(),
        })
    }
}

type Shared = Arc<Mutex<NodeRecord>>;

/// The conductor.
pub struct Conductor {
    config: ConductorConfig,
    steps: StepSettings,
    registry: Registry,
    nodes: Mutex<HashMap<String, Shared>>,
    /// MAC address (lower case) → nodes with a NIC of that address: an agent's lookup is
    /// one probe per MAC, not a scan of every node. Entries may be stale; a lookup checks
    /// the node.
    nodes_by_mac: Mutex<HashMap<String, Vec<String>>>,
    feed: Feed,
    /// Waiting nodes by deadline (the node machine's `wake_at`); entries of nodes that
    /// moved on are dropped when they come due.
    timers: Mutex<BTreeSet<(Duration, String)>>,
    timers_changed: Arc<Notify>,
    heavy: Arc<Semaphore>,
    per_bmc: Mutex<HashMap<String, Arc<Semaphore>>>,
    started: tokio::time::Instant,
    /// The conductor's clock at `started`: zero without a store, else the time since
    /// the store's epoch, so deadlines hold across restarts.
    clock_offset: Duration,
    /// Where nodes are kept; `None` keeps them in memory only.
    store: Option<NodeStore>,
    metrics: Arc<ConductorMetrics>,
    /// The shared agent ISO, for per-host ISOs (see [`AgentConfigImages::agent_iso_file`]).
    shared_iso: Option<crate::agent_iso::SharedIso>,
}

impl std::fmt::Debug for Conductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor")
            .field("nodes", &lock(&self.nodes).len())
            .finish()
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        // The timer task holds only a weak reference: wake it so it sees the conductor
        // gone and ends.
        self.timers_changed.notify_one();
    }
}

/// The outcome of an action, as the node machine's event.
enum Outcome {
    Event(NodeEvent, Option<String>),
    Nothing,
}

fn outcome<E: std::fmt::Display>(result: Result<(), E>, then: NodeEvent) -> Outcome {
    match result {
        Ok(()) => Outcome::Event(then, None),
        Err(e) => Outcome::Event(NodeEvent::Fail, Some(e.to_string())),
    }
}

impl Conductor {
    /// A conductor over these drivers, its nodes kept in memory only. Called inside a
    /// tokio runtime, it starts the task that times waiting nodes out; without one,
    /// nodes wait for ever.
    pub fn new(config: ConductorConfig, registry: Registry) -> Arc<Conductor> {
        Conductor::build(config, registry, None)
    }

    /// A conductor that keeps its nodes in `store` and resumes the nodes stored there, as
    /// Ironic's conductor does on take-over: nodes in stable states stay as they were;
    /// verification, inspection, cleaning and tear-down that were running start again
    /// (each is safe to repeat); a deploy that was starting is resumed from what the BMC
    /// shows, so it is never started twice; nodes waiting for their agent keep waiting,
    /// with their deadlines and their agents' tokens. Call it inside a tokio runtime.
    pub fn open(
        config: ConductorConfig,
        registry: Registry,
        store: NodeStore,
    ) -> Result<Arc<Conductor>, StoreError> {
        let stored = store.load()?;
        let conductor = Conductor::build(config, registry, Some(store));
        let mut resumed = Vec::new();
        for (name, bytes, inventory) in stored {
            let record = conductor.restore(&name, &bytes, inventory.as_deref())?;
            resumed.push((name, record));
        }
        tracing::info!(nodes = resumed.len(), "nodes loaded from the store");
        for (name, record) in resumed {
            conductor.resume(&name, &record);
        }
        Ok(conductor)
    }

    fn restore(
        &self,
        name: &str,
        bytes: &[u8],
        inventory: Option<&[u8]>,
    ) -> Result<Shared, StoreError> {
        let store_error = |e: String| StoreError::new(format!("node {name}: {e}"));
        let stored: StoredNode =
            serde_json::from_slice(bytes).map_err(|e| store_error(e.to_string()))?;
        let inventory = inventory
            .map(serde_json::from_slice::<HardwareInventory>)
            .transpose()
            .map_err(|e| store_error(format!("inventory: {e}")))?;
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| store_error("no store".into()))?;
        let mut record =
            NodeRecord::restore(name, stored, inventory, store).map_err(StoreError::new)?;
        record.saved = Some(Sha256::digest(bytes).into());
        self.feed.push(name, Some(record.fsm.state));
        self.index_macs(&record);
        if let Some(at) = record
            .fsm
            .deadline
            .filter(|_| waits_for_agent(record.fsm.state))
        {
            lock(&self.timers).insert((at, name.to_string()));
            self.timers_changed.notify_one();
        }
        let shared = Arc::new(Mutex::new(record));
        lock(&self.nodes).insert(name.to_string(), shared.clone());
        Ok(shared)
    }

    /// Picks up a stored node's work after a restart.
    fn resume(self: &Arc<Self>, name: &str, record: &Shared) {
        let power = lock(record).target_power;
        if let Some(power) = power {
            tracing::info!(node = %name, target = power.target(), "resumed after a restart: the power change");
            self.spawn_power_change(name, record.clone(), power, None);
        }
        let (state, agent_done, in_band) = {
            let r = lock(record);
            (r.fsm.state, r.agent.result_received, r.inspect_in_band)
        };
        let note = |what: &str| {
            tracing::info!(node = %name, %state, "resumed after a restart: {what}");
            lock(&lock(record).history).push(HistoryEvent::Action {
                action: format!("resumed after a conductor restart: {what}"),
                correlation_id: None,
            });
        };
        match state {
            NodeState::Verifying => {
                note("verifying the BMC again");
                self.spawn_actions(name, vec![NodeAction::VerifyBmc]);
            }
            NodeState::Inspecting => {
                note(if in_band {
                    "booting the agent again to inspect"
                } else {
                    "inspecting again"
                });
                self.spawn_actions(name, vec![NodeAction::StartInspection]);
            }
            NodeState::Deleting => {
                note("tearing down again");
                self.spawn_actions(name, vec![NodeAction::TearDown]);
            }
            NodeState::Cleaning if agent_done => {
                note("finishing the cleaning the agent did");
                self.finish_in_background(name, |me, record| async move {
                    me.tear_down(&record).await.map_err(|e| e.to_string())
                });
            }
            NodeState::Cleaning => {
                note("cleaning again");
                self.spawn_actions(name, vec![NodeAction::StartCleaning]);
            }
            NodeState::InspectWait if agent_done => {
                note("finishing the inspection the agent did");
                self.finish_in_background(name, |me, record| async move {
                    me.tear_down(&record).await.map_err(|e| e.to_string())
                });
            }
            NodeState::Deploying if agent_done => {
                note("booting the deployed disk");
                self.finish_in_background(name, |me, record| async move {
                    me.finish_deploy(&record).await.map_err(|e| e.to_string())
                });
            }
            NodeState::Deploying => {
                note("reading the BMC back before the deploy goes on");
                let me = self.clone();
                let name = name.to_string();
                tokio::spawn(async move {
                    let Some(_work) = me.work_permit(&name).await else {
                        return;
                    };
                    let Ok(record) = me.record(&name) else {
                        return;
                    };
                    let outcome = match me.resume_deploy(&record).await {
                        Outcome::Event(NodeEvent::Fail, Some(why))
                            if !why.starts_with("deploy") =>
                        {
                            Outcome::Event(NodeEvent::Fail, Some(format!("deploy: {why}")))
                        }
                        other => other,
                    };
                    me.feed_outcome(&name, &record, outcome).await;
                });
            }
            NodeState::InspectWait | NodeState::CleanWait | NodeState::WaitCallBack => {
                note("waiting for the agent until the same deadline");
            }
            _ => {}
        }
    }

    /// A deploy that was starting when the conductor stopped. A disk image's deploy
    /// starts again: booting the agent again is harmless, as the agent writes nothing
    /// before its command, which is given once. A live ISO is never booted twice: what
    /// the BMC shows says how far its boot got. The ISO inserted and the host on: it
    /// booted. The ISO inserted, the one-time CD boot set, the host off: it is powered on
    /// (no power cycle). Anything else: the boot had not begun, and the deploy starts.
    async fn resume_deploy(&self, record: &Shared) -> Outcome {
        let Some(config) = lock(record).deploy.clone() else {
            return Outcome::Event(
                NodeEvent::Fail,
                Some("deploy: no deploy configuration".into()),
            );
        };
        if !config.image.is_live_iso() {
            return self.deploy(record).await;
        }
        let url = config.image.url.clone();
        let resumed = async {
            let _bmc = self.bmc_permit(record).await;
            let driver = self.driver(record).await?;
            let power = driver.power_state().await?;
            let inserted = driver
                .virtual_media()
                .await?
                .iter()
                .any(|s| s.inserted && s.image.as_deref() == Some(url.as_str()));
            if !inserted {
                return Ok(false);
            }
            if matches!(power, PowerState::On | PowerState::PoweringOn) {
                return Ok(true);
            }
            let cd_once = bmc_core::BootOverride::once(bmc_core::BootDevice::Cd);
            if !driver.boot_override().await?.satisfies(&cd_once) {
                return Ok(false);
            }
            ensure_power_with(
                driver.as_ref(),
                PowerAction::On,
                Deadline::after(self.config.operation_timeout),
                self.config.poll,
            )
            .await?;
            Ok::<_, BmcError>(true)
        }
        .await;
        match resumed {
            Ok(true) => {
                let mut r = lock(record);
                r.power_on = Some(true);
                r.deployed_image = Some(url);
                Outcome::Event(NodeEvent::Done, None)
            }
            Ok(false) => self.deploy(record).await,
            Err(e) => Outcome::Event(
                NodeEvent::Fail,
                Some(format!(
                    "deploy: the conductor restarted while the live ISO's boot was starting \
                     and cannot read the BMC back ({e}); it was not booted again"
                )),
            ),
        }
    }

    fn build(
        config: ConductorConfig,
        registry: Registry,
        store: Option<NodeStore>,
    ) -> Arc<Conductor> {
        let timers_changed = Arc::new(Notify::new());
        let shared_iso = config
            .agent_config_images
            .as_ref()
            .and_then(|i| i.agent_iso_file.as_deref())
            .and_then(|path| match crate::agent_iso::SharedIso::open(path) {
                Ok(iso) => Some(iso),
                Err(e) => {
                    // The service checks it before it starts; here it only loses the
                    // per-host ISOs.
                    tracing::error!(error = %e, "no per-host agent ISOs");
                    None
                }
            });
        let clock_offset = store.as_ref().map_or(Duration::ZERO, NodeStore::clock_now);
        let conductor = Arc::new(Conductor {
            heavy: Arc::new(Semaphore::new(config.max_heavy.max(1))),
            steps: StepSettings {
                agent_image_url: config.agent_image_url.clone(),
                poll: config.poll,
                operation_timeout: config.operation_timeout,
                config_images: config.agent_config_images.is_some(),
            },
            config,
            registry,
            nodes: Mutex::new(HashMap::new()),
            nodes_by_mac: Mutex::new(HashMap::new()),
            feed: Feed::starting_after(feed_base()),
            timers: Mutex::new(BTreeSet::new()),
            timers_changed: timers_changed.clone(),
            per_bmc: Mutex::new(HashMap::new()),
            started: tokio::time::Instant::now(),
            clock_offset,
            store,
            metrics: Arc::new(ConductorMetrics::new()),
            shared_iso,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(run_timers(Arc::downgrade(&conductor), timers_changed));
        }
        conductor
    }

    /// The conductor's clock (the node machines' time): time since it started, or with a
    /// store, since the store's epoch.
    fn now(&self) -> Duration {
        self.clock_offset + self.started.elapsed()
    }

    /// Commits the node's record to the store (when there is one) unless it is unchanged
    /// since its last commit. Answers once it is durable.
    async fn commit(&self, record: &Shared) -> Result<(), ApiError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let unavailable = |e: StoreError| ApiError::Unavailable(e.to_string());
        let (name, bytes, inventory, digest) = {
            let mut r = lock(record);
            if r.sealed_password.is_none() {
                let sealed = store
                    .key()
                    .seal(&r.spec.name, r.spec.credentials.password().expose())
                    .map_err(unavailable)?;
                r.sealed_password = Some(sealed);
            }
            let Some(stored) = r.stored() else {
                return Ok(());
            };
            let bytes = serde_json::to_vec(&stored)
                .map_err(|e| ApiError::Unavailable(format!("node store: {e}")))?;
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if r.saved == Some(digest) && r.inventory_saved {
                return Ok(());
            }
            let inventory = match (&r.inventory, r.inventory_saved) {
                (Some(i), false) => Some(
                    serde_json::to_vec(i)
                        .map_err(|e| ApiError::Unavailable(format!("node store: {e}")))?,
                ),
                _ => None,
            };
            (r.spec.name.clone(), bytes, inventory, digest)
        };
        let wrote_inventory = inventory.is_some();
        store
            .commit(NodeWrite {
                name,
                node: Some(bytes),
                inventory,
            })
            .await
            .map_err(unavailable)?;
        let mut r = lock(record);
        // A later commit may have finished first; either way this state is durable.
        r.saved = Some(digest);
        if wrote_inventory {
            r.inventory_saved = true;
        }
        Ok(())
    }

    /// Commits the record before its actions run; when the store fails, the actions do
    /// not run (the node stays in its state, and a restart resumes it).
    async fn commit_then_run(
        self: &Arc<Self>,
        name: &str,
        record: &Shared,
        actions: Vec<NodeAction>,
    ) {
        if let Err(e) = self.commit(record).await {
            tracing::error!(node = %name, error = %e, "cannot commit the node; its work waits for a restart");
            return;
        }
        self.spawn_actions(name, actions);
    }

    fn record(&self, name: &str) -> Result<Shared, ApiError> {
        lock(&self.nodes)
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(name.to_string()))
    }

    /// Takes a step of a node's machine: the feed is told of a state change and the
    /// node's deadline is scheduled. Returns the actions to carry out.
    fn take(&self, r: &mut NodeRecord, step: NodeStep) -> Vec<NodeAction> {
        let changed = r.fsm.state != step.node.state;
        let from = r.fsm.state;
        r.fsm = step.node;
        if changed && waits_for_agent(from) && !waits_for_agent(r.fsm.state) {
            // The agent's token is good only while the node waits for it.
            r.agent.token_sha256 = None;
            r.agent.command_sent = false;
        }
        if changed {
            self.feed.push(&r.spec.name, Some(r.fsm.state));
            lock(&r.history).push(HistoryEvent::Transition {
                from,
                to: r.fsm.state,
                event: step.transition.event.name().to_string(),
            });
        }
        if let Some(at) = step.wake_at {
            lock(&self.timers).insert((at, r.spec.name.clone()));
            self.timers_changed.notify_one();
        }
        step.actions
            .into_iter()
            .filter(|a| !matches!(a, NodeAction::RecordFailure { .. }))
            .collect()
    }

    /// Feeds `event` to the node's machine; an event it no longer expects (the node
    /// moved on: aborted, timed out) is refused with the reason.
    fn handle(
        &self,
        r: &mut NodeRecord,
        event: NodeEvent,
        reason: Option<&str>,
    ) -> Result<Vec<NodeAction>, ApiError> {
        let mut step = r
            .fsm
            .handle(event, reason, self.now(), &self.config.timeouts)
            .map_err(|e| ApiError::InvalidState(e.to_string()))?;
        tracing::debug!(node = %r.spec.name, from = %r.fsm.state, to = %step.node.state, "node transition");
        // A failed verification goes back to enroll, which the table does not count as
        // a failure state: keep the reason for the API all the same.
        if event == NodeEvent::Fail && step.node.last_error.is_none() {
            step.node.last_error = reason.map(str::to_string);
        }
        Ok(self.take(r, step))
    }

    /// Times out the waiting nodes whose deadline passed, and answers when the next one
    /// is due.
    fn fire_due_timers(self: &Arc<Self>) -> Option<Duration> {
        let now = self.now();
        let due: Vec<String> = {
            let mut timers = lock(&self.timers);
            let mut due = Vec::new();
            while let Some(first) = timers.first() {
                if first.0 > now {
                    break;
                }
                if let Some((_, name)) = timers.pop_first() {
                    due.push(name);
                }
            }
            due
        };
        for name in due {
            let Ok(record) = self.record(&name) else {
                continue;
            };
            if lock(&record).fsm.on_timer(now).is_none() {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move { me.time_out(&name, &record).await });
        }
        lock(&self.timers)
            .first()
            .map(|(at, _)| at.saturating_sub(self.now()))
    }

    /// Times a waiting node out: reads back what the BMC shows (power, boot override,
    /// media) first, so the error names the hop that failed and the state the host was
    /// left in. A node that moved on meanwhile (its agent called back) is left alone.
    async fn time_out(self: &Arc<Self>, name: &str, record: &Shared) {
        let read_back = self.read_back(record).await;
        let actions = {
            let mut r = lock(record);
            let Some(mut step) = r.fsm.on_timer(self.now()) else {
                return;
            };
            let waited = r
                .fsm
                .deadline
                .unwrap_or(step.node.entered_at)
                .saturating_sub(r.fsm.entered_at);
            let mut reason = format!(
                "{} within {} s ({} timed out)",
                r.agent.missing(),
                waited.as_secs(),
                r.fsm.state
            );
            if let Some(read) = read_back {
                reason.push_str("; ");
                reason.push_str(&read);
            }
            tracing::warn!(node = %name, state = %r.fsm.state, %reason, "node timed out");
            self.metrics.timed_out(r.fsm.state);
            lock(&r.history).push(HistoryEvent::Error {
                message: reason.clone(),
            });
            step.node.last_error = Some(reason);
            r.agent = AgentSession::default();
            self.take(&mut r, step)
        };
        self.commit_then_run(name, record, actions).await;
    }

    /// Adds the node's MACs to the lookup index.
    fn index_macs(&self, r: &NodeRecord) {
        let mut index = lock(&self.nodes_by_mac);
        for mac in r.macs() {
            let names = index.entry(mac).or_default();
            if !names.contains(&r.spec.name) {
                names.push(r.spec.name.clone());
            }
        }
    }

    /// Creates a node in `enroll`, or updates the BMC details of an existing one (so a
    /// repeated create is harmless). With a store, answers once the node is committed.
    pub async fn create_node(self: &Arc<Self>, spec: NodeSpec) -> Result<NodeView, ApiError> {
        let me = self.clone();
        to_the_end(async move { me.create_node_now(spec).await }).await
    }

    async fn create_node_now(&self, spec: NodeSpec) -> Result<NodeView, ApiError> {
        let (record, view) = self.enter_node(spec)?;
        self.commit(&record).await?;
        Ok(view)
    }

    fn enter_node(&self, spec: NodeSpec) -> Result<(Shared, NodeView), ApiError> {
        if spec.name.is_empty() {
            return Err(ApiError::BadRequest("a node needs a name".into()));
        }
        let mut nodes = lock(&self.nodes);
        if let Some(existing) = nodes.get(&spec.name) {
            let mut r = lock(existing);
            let new_password =
                r.spec.credentials.password().expose() != spec.credentials.password().expose();
            let new_credentials =
                new_password || r.spec.credentials.username() != spec.credentials.username();
            if new_password {
                r.sealed_password = None;
            }
            if new_credentials {
                r.credentials_refused = false;
            }
            if new_credentials
                || r.spec.address != spec.address
                || r.spec.disable_certificate_verification != spec.disable_certificate_verification
            {
                r.driver = None;
            }
            r.spec = spec;
            self.index_macs(&r);
            let view = r.view();
            drop(r);
            return Ok((existing.clone(), view));
        }
        let record = NodeRecord {
            spec: spec.clone(),
            fsm: Node::enroll(self.now()),
            power_on: None,
            target_power: None,
            power_error: None,
            power_requests: 0,
            inventory: None,
            deploy: None,
            deployed_image: None,
            deploy_attempts: 0,
            config_drive: None,
            driver: None,
            agent: AgentSession::default(),
            inspect_in_band: false,
            history: Arc::new(Mutex::new(History::default())),
            correlation: None,
            credentials_refused: false,
            sealed_password: None,
            saved: None,
            inventory_saved: true,
            work: Arc::default(),
        };
        self.feed.push(&spec.name, Some(record.fsm.state));
        self.index_macs(&record);
        let view = record.view();
        let shared = Arc::new(Mutex::new(record));
        nodes.insert(spec.name, shared.clone());
        Ok((shared, view))
    }

    /// A node.
    pub fn node(&self, name: &str) -> Result<NodeView, ApiError> {
        let record = self.record(name)?;
        let view = lock(&record).view();
        Ok(view)
    }

    /// What happened to a node, oldest first (bounded).
    pub fn history(&self, name: &str) -> Result<NodeHistory, ApiError> {
        let record = self.record(name)?;
        let history = lock(&record).history.clone();
        let snapshot = lock(&history).snapshot();
        Ok(snapshot)
    }

    /// The metrics in the OpenMetrics text format, nodes counted by state now.
    pub fn encode_metrics(&self) -> String {
        let records: Vec<Shared> = lock(&self.nodes).values().cloned().collect();
        let states: Vec<NodeState> = records.iter().map(|r| lock(r).fsm.state).collect();
        self.metrics.encode(states)
    }

    /// The inventory inspection found.
    pub fn inventory(&self, name: &str) -> Result<HardwareInventory, ApiError> {
        let record = self.record(name)?;
        let inventory = lock(&record).inventory.clone();
        inventory.ok_or_else(|| {
            ApiError::NotFound(format!("no inventory of node {name} (not inspected)"))
        })
    }

    /// The node state changes after position `since` of the change feed, waiting up to
    /// `timeout` for one; every node's state (`complete`) when `since` is 0 or the changes
    /// after it are no longer kept. One long poll of this tells a client about all the
    /// nodes it waits for.
    pub async fn changes(&self, since: u64, timeout: Duration) -> Changes {
        let (seq, changes) = self.feed.after(since, timeout).await;
        match changes {
            Some(changes) => Changes {
                seq,
                changes,
                complete: false,
            },
            None => {
                let records: Vec<Shared> = lock(&self.nodes).values().cloned().collect();
                Changes {
                    seq,
                    changes: records
                        .iter()
                        .map(|r| {
                            let r = lock(r);
                            NodeChange {
                                name: r.spec.name.clone(),
                                state: Some(r.fsm.state),
                            }
                        })
                        .collect(),
                    complete: true,
                }
            }
        }
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Vec<NodeView> {
        let mut v: Vec<NodeView> = lock(&self.nodes).values().map(|r| lock(r).view()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Deletes a node that is not in the middle of an operation.
    pub async fn delete_node(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let (me, name) = (self.clone(), name.to_string());
        to_the_end(async move { me.delete_node_now(&name).await }).await
    }

    async fn delete_node_now(&self, name: &str) -> Result<(), ApiError> {
        let record = self.record(name)?;
        let driver = {
            let r = lock(&record);
            if !matches!(
                r.fsm.state,
                NodeState::Enroll
                    | NodeState::Manageable
                    | NodeState::Available
                    | NodeState::InspectFailed
                    | NodeState::CleanFailed
                    | NodeState::DeployFailed
                    | NodeState::Error
            ) {
                return Err(ApiError::InvalidState(format!(
                    "node {name} is {}; it can be deleted when it is not busy",
                    r.fsm.state
                )));
            }
            let mut index = lock(&self.nodes_by_mac);
            for mac in r.macs() {
                if let Some(names) = index.get_mut(&mac) {
                    names.retain(|n| n != name);
                    if names.is_empty() {
                        index.remove(&mac);
                    }
                }
            }
            r.driver.clone()
        };
        if let Some(store) = &self.store {
            store
                .commit(NodeWrite {
                    name: name.to_string(),
                    node: None,
                    inventory: None,
                })
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        }
        if lock(&self.nodes).remove(name).is_some() {
            self.feed.push(name, None);
        }
        if let Some(d) = driver {
            // Best effort, and bounded: the node is gone whatever the BMC does.
            match tokio::time::timeout(Duration::from_secs(10), d.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(node = %name, error = %e, "closing the BMC session"),
                Err(_) => tracing::debug!(node = %name, "closing the BMC session timed out"),
            }
        }
        Ok(())
    }

    /// Applies a provisioning verb; the work it starts runs in the background. With a
    /// store, the new state is committed before the work starts and the call answers.
    pub async fn provision(
        self: &Arc<Self>,
        name: &str,
        verb: Verb,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        let (me, name, correlation) = (
            self.clone(),
            name.to_string(),
            correlation.map(str::to_string),
        );
        to_the_end(async move { me.provision_now(&name, verb, correlation.as_deref()).await }).await
    }

    async fn provision_now(
        self: &Arc<Self>,
        name: &str,
        verb: Verb,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        let record = self.record(name)?;
        let event = match &verb {
            Verb::Manage => NodeEvent::Manage,
            Verb::Inspect { .. } => NodeEvent::Inspect,
            Verb::Provide => NodeEvent::Provide,
            Verb::Deploy(_) => NodeEvent::Deploy,
            Verb::Undeploy => NodeEvent::Delete,
            Verb::Abort => NodeEvent::Abort,
        };
        let (actions, view) = {
            let mut r = lock(&record);
            // Checked before anything of the record changes.
            if Node::transition_for(r.fsm.state, event).is_none() {
                return Err(ApiError::InvalidState(format!(
                    "cannot {} a node in state {}",
                    event.name(),
                    r.fsm.state
                )));
            }
            r.correlation = correlation.map(str::to_string);
            match verb {
                Verb::Inspect { in_band } => {
                    r.inspect_in_band = in_band;
                    r.agent = AgentSession::default();
                }
                Verb::Deploy(config) => {
                    r.deploy = Some(config);
                    r.deploy_attempts += 1;
                    r.agent = AgentSession::default();
                }
                _ => {}
            }
            let actions = self.handle(&mut r, event, None)?;
            (actions, r.view())
        };
        self.commit(&record).await?;
        self.spawn_actions(name, actions);
        Ok(view)
    }

    /// Starts a power change, verified by reading back, in the background; answers at
    /// once with the change under way (`target_power`). A change asked while one runs is
    /// refused. When it ends the change feed tells of the node, with `power_error` set if
    /// it failed.
    pub async fn set_power(
        self: &Arc<Self>,
        name: &str,
        power: PowerRequest,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        let (me, name, correlation) = (
            self.clone(),
            name.to_string(),
            correlation.map(str::to_string),
        );
        to_the_end(async move { me.set_power_now(&name, power, correlation.as_deref()).await })
            .await
    }

    async fn set_power_now(
        self: &Arc<Self>,
        name: &str,
        power: PowerRequest,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        let record = self.record(name)?;
        let view = {
            let mut r = lock(&record);
            if let Some(running) = r.target_power {
                return Err(ApiError::InvalidState(format!(
                    "node {name} is already changing power ({})",
                    running.target()
                )));
            }
            r.target_power = Some(power);
            r.power_error = None;
            r.power_requests += 1;
            lock(&r.history).push(HistoryEvent::Action {
                action: format!("power {}", power.target()),
                correlation_id: correlation.map(str::to_string),
            });
            r.view()
        };
        // Committed first: a conductor restarted meanwhile carries the change out.
        self.commit(&record).await?;
        self.spawn_power_change(name, record, power, correlation);
        Ok(view)
    }

    fn spawn_power_change(
        self: &Arc<Self>,
        name: &str,
        record: Shared,
        power: PowerRequest,
        correlation: Option<&str>,
    ) {
        let me = self.clone();
        let name = name.to_string();
        let span =
            tracing::info_span!("power", node = %name, correlation_id = correlation.unwrap_or(""));
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let work = lock(&record).work.clone();
                let _work = work.lock_owned().await;
                let result = me.change_power(&record, power).await;
                let state = {
                    let mut r = lock(&record);
                    r.target_power = None;
                    match result {
                        Ok(on) => r.power_on = Some(on),
                        Err(e) => r.power_error = Some(format!("power change failed: {e}")),
                    }
                    r.fsm.state
                };
                if let Err(e) = me.commit(&record).await {
                    tracing::error!(node = %name, error = %e, "cannot commit the node's power");
                }
                // Not a provision state change, but whoever waits for the node must hear.
                me.feed.push(&name, Some(state));
            },
            span,
        ));
    }

    /// Carries out a power change; whether the host is on after it.
    async fn change_power(&self, record: &Shared, power: PowerRequest) -> Result<bool, BmcError> {
        let driver = self.driver(record).await?;
        let _permit = self.bmc_permit(record).await;
        let actions: &[PowerAction] = match power {
            PowerRequest::On => &[PowerAction::On],
            PowerRequest::Off => &[PowerAction::Off],
            PowerRequest::Reboot => &[PowerAction::Off, PowerAction::On],
        };
        let mut on = lock(record).power_on.unwrap_or(false);
        for action in actions {
            let out = ensure_power_with(
                driver.as_ref(),
                *action,
                Deadline::after(self.config.operation_timeout),
                self.config.poll,
            )
            .await?;
            on = out.final_state == PowerState::On;
        }
        Ok(on)
    }

    fn spawn_actions(self: &Arc<Self>, name: &str, actions: Vec<NodeAction>) {
        if actions.is_empty() {
            return;
        }
        let correlation = self
            .record(name)
            .ok()
            .and_then(|r| lock(&r).correlation.clone());
        let span = tracing::info_span!(
            "node",
            node = %name,
            correlation_id = correlation.as_deref().unwrap_or("")
        );
        let me = self.clone();
        let name = name.to_string();
        tokio::spawn(tracing::Instrument::instrument(
            async move { me.run(name, actions).await },
            span,
        ));
    }

    /// Runs actions and feeds their outcomes back into the node's machine until nothing
    /// is left to do.
    async fn run(self: Arc<Self>, name: String, actions: Vec<NodeAction>) {
        let Some(_work) = self.work_permit(&name).await else {
            return;
        };
        let mut queue: VecDeque<NodeAction> = actions.into();
        while let Some(action) = queue.pop_front() {
            let Ok(record) = self.record(&name) else {
                return;
            };
            // The state that asked for the action is durable before the action starts.
            if let Err(e) = self.commit(&record).await {
                tracing::error!(node = %name, error = %e, "cannot commit the node; its work waits for a restart");
                return;
            }
            let action_name = action_name(&action);
            {
                let r = lock(&record);
                lock(&r.history).push(HistoryEvent::Action {
                    action: action_name.to_string(),
                    correlation_id: r.correlation.clone(),
                });
            }
            let started = tokio::time::Instant::now();
            let done = match self.perform(&record, &action).await {
                Outcome::Event(NodeEvent::Fail, reason) => Outcome::Event(
                    NodeEvent::Fail,
                    Some(format!(
                        "{}: {}",
                        phase(&action),
                        reason.unwrap_or_else(|| "failed".into())
                    )),
                ),
                other => other,
            };
            let failed = match &done {
                Outcome::Event(NodeEvent::Fail, reason) => Some(reason.clone().unwrap_or_default()),
                _ => None,
            };
            self.metrics
                .action(action_name, failed.is_none(), started.elapsed());
            if let Some(reason) = &failed {
                tracing::warn!(node = %name, action = action_name, error = %reason, "action failed");
                lock(&lock(&record).history).push(HistoryEvent::Error {
                    message: format!("{action_name}: {reason}"),
                });
            }
            let Outcome::Event(event, reason) = done else {
                continue;
            };
            let mut r = lock(&record);
            match self.handle(&mut r, event, reason.as_deref()) {
                Ok(more) => queue.extend(more),
                // The node moved on meanwhile (aborted, timed out, deleted): drop it.
                Err(e) => tracing::debug!(node = %name, error = %e, "outcome dropped"),
            }
        }
        if let Ok(record) = self.record(&name) {
            if let Err(e) = self.commit(&record).await {
                tracing::error!(node = %name, error = %e, "cannot commit the node");
            }
        }
    }

    async fn perform(&self, record: &Shared, action: &NodeAction) -> Outcome {
        match action {
            NodeAction::VerifyBmc => outcome(self.verify(record).await, NodeEvent::Done),
            NodeAction::StartInspection if lock(record).inspect_in_band => {
                outcome(self.boot_agent(record).await, NodeEvent::Wait)
            }
            NodeAction::StartInspection => outcome(self.inspect(record).await, NodeEvent::Done),
            NodeAction::StartDeployment => self.deploy(record).await,
            NodeAction::StartCleaning if lock(record).spec.automated_clean => {
                outcome(self.boot_agent(record).await, NodeEvent::Wait)
            }
            NodeAction::StartCleaning => {
                let _heavy = self.heavy_permit().await;
                outcome(self.tear_down(record).await, NodeEvent::Done)
            }
            NodeAction::TearDown => outcome(self.tear_down(record).await, NodeEvent::Clean),
            NodeAction::AbortOperation => {
                if let Err(e) = self.tear_down(record).await {
                    tracing::warn!(node = %lock(record).spec.name, error = %e, "tearing down after an abort");
                }
                Outcome::Nothing
            }
            NodeAction::RecordFailure { .. } => Outcome::Nothing,
        }
    }

    async fn driver(&self, record: &Shared) -> Result<Arc<dyn BmcDriver>, BmcError> {
        let (spec, history) = {
            let r = lock(record);
            if let Some(d) = &r.driver {
                return Ok(d.clone());
            }
            (r.spec.clone(), r.history.clone())
        };
        let observer = Arc::new(NodeObserver {
            history,
            metrics: self.metrics.clone(),
            driver: std::sync::OnceLock::new(),
            scheme_family: spec.address.scheme().profile().ironic_driver,
        });
        let mut options = ConnectOptions::default().with_observer(observer.clone());
        if spec.disable_certificate_verification {
            options = options.with_certificate_verification_disabled();
        }
        let driver: Arc<dyn BmcDriver> = Arc::from(
            self.registry
                .connect(&spec.address, &spec.credentials, &options)
                .await?,
        );
        let _ = observer.driver.set(driver.driver_name().to_string());
        lock(record).driver = Some(driver.clone());
        Ok(driver)
    }

    /// What the BMC shows of power, boot override and virtual media, in words; none
    /// without a connected driver. Bounded in time: a dead BMC must not hold a timeout.
    async fn read_back(&self, record: &Shared) -> Option<String> {
        let driver = lock(record).driver.clone()?;
        let limit = Duration::from_secs(15);
        tokio::time::timeout(limit, Self::describe_bmc(driver.as_ref()))
            .await
            .ok()
            .or(Some(format!(
                "the BMC did not answer a read-back within {} s",
                limit.as_secs()
            )))
    }

    async fn describe_bmc(driver: &dyn BmcDriver) -> String {
        let power = match driver.power_state().await {
            Ok(p) => format!("power {}", p.to_string().to_lowercase()),
            Err(e) => format!("power unreadable ({e})"),
        };
        let boot = match driver.boot_override().await {
            Ok(state) => format!("boot override {}", describe_override(&state)),
            Err(e) => format!("boot override unreadable ({e})"),
        };
        let media = match driver.virtual_media().await {
            Ok(slots) => {
                let inserted: Vec<String> = slots
                    .iter()
                    .filter(|s| s.inserted)
                    .filter_map(|s| s.image.clone())
                    .collect();
                if inserted.is_empty() {
                    "no media inserted".to_string()
                } else {
                    format!("media inserted: {}", inserted.join(", "))
                }
            }
            Err(e) => format!("media unreadable ({e})"),
        };
        format!("the BMC read back {power}; {boot}; {media}")
    }

    async fn bmc_permit(&self, record: &Shared) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let endpoint = lock(record).spec.address.host();
        let sem = lock(&self.per_bmc)
            .entry(endpoint)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_bmc.max(1))))
            .clone();
        sem.acquire_owned().await.ok()
    }

    /// The node's work lock, once whatever works on the node now has finished; none when
    /// the node is gone.
    async fn work_permit(&self, name: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let record = self.record(name).ok()?;
        let work = lock(&record).work.clone();
        Some(work.lock_owned().await)
    }

    async fn heavy_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.heavy.clone().acquire_owned().await.ok()
    }

    async fn verify(&self, record: &Shared) -> Result<(), BmcError> {
        let _bmc = self.bmc_permit(record).await;
        // A fresh connection: credentials may have changed since the last one.
        lock(record).driver = None;
        let verified = async {
            let driver = self.driver(record).await?;
            executor::verify(driver.as_ref()).await
        }
        .await;
        let mut r = lock(record);
        r.credentials_refused = matches!(verified, Err(BmcError::AuthenticationFailed { .. }));
        r.power_on = Some(verified? == PowerState::On);
        Ok(())
    }

    async fn inspect(&self, record: &Shared) -> Result<(), BmcError> {
        let _heavy = self.heavy_permit().await;
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        let inventory = executor::inspect(driver.as_ref()).await?;
        self.set_inventory(record, inventory);
        Ok(())
    }

    /// Keeps an inventory and indexes its MACs.
    fn set_inventory(&self, record: &Shared, inventory: HardwareInventory) {
        let mut r = lock(record);
        r.inventory = Some(inventory);
        r.inventory_saved = false;
        self.index_macs(&r);
    }

    /// Boots the agent (in-band inspection, cleaning).
    async fn boot_agent(&self, record: &Shared) -> Result<(), BmcError> {
        let _heavy = self.heavy_permit().await;
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        let config = self.new_config_image(record)?;
        let mode = match lock(record).spec.legacy_boot {
            true => BootMode::Legacy,
            false => BootMode::Uefi,
        };
        let boot = executor::boot_agent(driver.as_ref(), &self.steps, config.url(), mode).await?;
        self.agent_booted(record, config, &boot);
        Ok(())
    }

    /// A new name for the config image of the agent boot about to start, and its URL
    /// (none without config images): kept in the node before the BMC is given the URL,
    /// since BMCs fetch an image as it is inserted.
    fn new_config_image(&self, record: &Shared) -> Result<NewConfigImage, BmcError> {
        let Some(images) = &self.config.agent_config_images else {
            return Ok(NewConfigImage::default());
        };
        let id = crate::persist::hex(
            &random_bytes::<16>().map_err(|e| BmcError::InvalidRequest(e.to_string()))?,
        );
        let mut r = lock(record);
        r.agent.config_image = Some(id.clone());
        let base = images.agent_api_url.trim_end_matches('/');
        let urls = executor::ConfigUrls {
            image: format!("{base}{}", config_image_path(&r.spec.name, &id)),
            per_host_iso: self
                .shared_iso
                .is_some()
                .then(|| format!("{base}{}", agent_iso_path(&r.spec.name, &id))),
        };
        Ok(NewConfigImage {
            id: Some(id),
            urls: Some(urls),
        })
    }

    /// A new boot of the agent: it may look its node up once.
    fn agent_booted(&self, record: &Shared, config: NewConfigImage, boot: &executor::AgentBoot) {
        let mut r = lock(record);
        r.power_on = Some(true);
        r.agent = AgentSession {
            booted: true,
            config_image: config.id,
            ..AgentSession::default()
        };
        use executor::AgentBoot;
        let message = match (boot, self.config.agent_config_images.is_some()) {
            (AgentBoot::WithConfigImage { kind, slot }, _) => {
                format!("agent ISO booted with the host's config image in the {kind} slot {slot}")
            }
            (AgentBoot::PerHostIso { slot }, _) => format!(
                "agent ISO booted with the host's config image inside it, streamed into the \
                 BMC's one slot {slot}"
            ),
            (AgentBoot::OneSlot { slot }, _) => format!(
                "agent ISO booted alone: the BMC's one slot {slot} takes the CD, no room for \
                 the config image (the agent looks for its conductor on the kernel command line)"
            ),
            (AgentBoot::IsoOnly, true) => "agent ISO booted alone: the BMC takes no USB or \
                 floppy media for the config image"
                .to_string(),
            (AgentBoot::IsoOnly, false) => "agent ISO booted".to_string(),
            (AgentBoot::Network, _) => "agent booted from the network".to_string(),
        };
        tracing::info!(node = %r.spec.name, "{message}");
        lock(&r.history).push(HistoryEvent::Agent { message });
    }

    /// Agent API: the config image of `node`'s current agent boot, built now: the
    /// node's pre-provisioning network data and the agent's section. Only while the node
    /// boots or waits for its agent, and only under the name its BMC was given.
    pub fn config_image(&self, node: &str, image: &str) -> Result<Vec<u8>, ApiError> {
        let id = image.strip_suffix(".img").unwrap_or(image);
        self.current_config_image(node, id, image)
    }

    /// Agent API: the per-host agent ISO of `node`'s current agent boot (for a BMC with
    /// one slot): the shared ISO and its slot filled with the config image, under the
    /// same conditions as [`Conductor::config_image`].
    pub fn per_host_iso(
        &self,
        node: &str,
        image: &str,
    ) -> Result<(crate::agent_iso::SharedIso, Vec<u8>), ApiError> {
        let not_found = || ApiError::NotFound(format!("{node}'s agent ISO {image}"));
        let shared = self.shared_iso.clone().ok_or_else(not_found)?;
        let id = image.strip_suffix(".iso").ok_or_else(not_found)?;
        let config = self.current_config_image(node, id, image)?;
        let slot = metal3_agent_protocol::config_image::iso_slot_contents(&config)
            .map_err(|e| ApiError::Unavailable(format!("the agent ISO of {node}: {e}")))?;
        Ok((shared, slot))
    }

    fn current_config_image(&self, node: &str, id: &str, image: &str) -> Result<Vec<u8>, ApiError> {
        let not_found = || ApiError::NotFound(format!("{node}'s config image {image}"));
        let Some(images) = &self.config.agent_config_images else {
            return Err(not_found());
        };
        let record = self.record(node).map_err(|_| not_found())?;
        let r = lock(&record);
        let current = r.agent.config_image.as_deref();
        // BMCs fetch the image as it is inserted (the node still booting the agent) or
        // as the host reads it (the node waiting for the agent).
        let booting = matches!(
            r.fsm.state,
            NodeState::Inspecting | NodeState::Deploying | NodeState::Cleaning
        );
        if !(booting || waits_for_agent(r.fsm.state))
            || current.is_none_or(|c| !bool::from(c.as_bytes().ct_eq(id.as_bytes())))
        {
            return Err(not_found());
        }
        let section = metal3_agent_protocol::config_image::AgentSection {
            conductor_url: images.agent_api_url.clone(),
            ca_pem: images.ca_pem.clone(),
        };
        metal3_agent_protocol::config_image::agent_config_image(
            &section,
            r.spec.preprovisioning_network_data.as_ref(),
        )
        .map_err(|e| ApiError::Unavailable(format!("building the config image of {node}: {e}")))
    }

    async fn deploy(&self, record: &Shared) -> Outcome {
        let Some(config) = lock(record).deploy.clone() else {
            return Outcome::Event(NodeEvent::Fail, Some("no deploy configuration".into()));
        };
        let _heavy = self.heavy_permit().await;
        let _bmc = self.bmc_permit(record).await;
        let driver = match self.driver(record).await {
            Ok(d) => d,
            Err(e) => return Outcome::Event(NodeEvent::Fail, Some(e.to_string())),
        };
        let image = match config.image.is_live_iso() {
            true => NewConfigImage::default(),
            false => match self.new_config_image(record) {
                Ok(image) => image,
                Err(e) => return Outcome::Event(NodeEvent::Fail, Some(e.to_string())),
            },
        };
        // The node's boot mode holds for the deployed image too.
        let mut config = config;
        config.legacy_boot |= lock(record).spec.legacy_boot;
        match executor::start_deploy(driver.as_ref(), &config, &self.steps, image.url()).await {
            Ok(DeployStarted::LiveIsoBooted) => {
                let mut r = lock(record);
                r.power_on = Some(true);
                r.deployed_image = Some(config.image.url.clone());
                Outcome::Event(NodeEvent::Done, None)
            }
            Ok(DeployStarted::AgentBooting(boot)) => {
                self.agent_booted(record, image, &boot);
                Outcome::Event(NodeEvent::Wait, None)
            }
            Err(e) => Outcome::Event(NodeEvent::Fail, Some(e)),
        }
    }

    /// After the agent wrote the image: boot from disk from now on.
    async fn finish_deploy(&self, record: &Shared) -> Result<(), BmcError> {
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        executor::finish_deploy(driver.as_ref(), &self.steps).await?;
        let mut r = lock(record);
        r.power_on = Some(true);
        r.deployed_image = r.deploy.as_ref().map(|d| d.image.url.clone());
        Ok(())
    }

    async fn tear_down(&self, record: &Shared) -> Result<(), BmcError> {
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        executor::tear_down(driver.as_ref(), &self.steps).await?;
        let mut r = lock(record);
        r.power_on = Some(false);
        r.deployed_image = None;
        r.agent.booted = false;
        r.agent.config_image = None;
        Ok(())
    }

    /// Agent API: finds the node waiting for an agent on a host with one of these MACs
    /// and hands out the token for its calls: 128 random bits, once per agent boot (a
    /// second look-up for the same boot gets none, as Ironic's agent token), good until
    /// the node stops waiting. With a store, the token's digest is committed first.
    pub async fn agent_lookup(self: &Arc<Self>, macs: &[String]) -> Result<Lookup, ApiError> {
        let (me, macs) = (self.clone(), macs.to_vec());
        to_the_end(async move { me.agent_lookup_now(&macs).await }).await
    }

    async fn agent_lookup_now(&self, macs: &[String]) -> Result<Lookup, ApiError> {
        let wanted: Vec<String> = macs.iter().map(|m| m.to_ascii_lowercase()).collect();
        let candidates: Vec<String> = {
            let index = lock(&self.nodes_by_mac);
            wanted
                .iter()
                .filter_map(|m| index.get(m))
                .flatten()
                .cloned()
                .collect()
        };
        let mut refusal = None;
        for name in candidates {
            let Ok(record) = self.record(&name) else {
                continue;
            };
            let lookup = {
                let mut r = lock(&record);
                if !waits_for_agent(r.fsm.state) || !r.macs().iter().any(|m| wanted.contains(m)) {
                    continue;
                }
                // A token never used may have been lost on the way (a conductor killed
                // as it answered): a new look-up replaces it. One in use is the agent's.
                if r.agent.token_used {
                    refusal = Some(format!(
                        "node {name} already gave this boot's agent its token; the next \
                         boot of the agent gets a new one"
                    ));
                    continue;
                }
                let token = new_agent_token().map_err(|e| ApiError::Unavailable(e.to_string()))?;
                // A new agent session: its command is still to be given.
                r.agent.token_sha256 = Some(token_digest(&token));
                r.agent.command_sent = false;
                r.agent.result_received = false;
                lock(&r.history).push(HistoryEvent::Agent {
                    message: "look-up: the agent found its node".to_string(),
                });
                tracing::info!(node = %r.spec.name, correlation_id = r.correlation.as_deref().unwrap_or(""), "agent looked up its node");
                Lookup {
                    node: r.spec.name.clone(),
                    agent_token: token,
                    correlation_id: r.correlation.clone(),
                }
            };
            self.commit(&record).await?;
            self.metrics.lookup(true);
            return Ok(lookup);
        }
        self.metrics.lookup(false);
        Err(match refusal {
            Some(why) => ApiError::InvalidState(why),
            None => ApiError::NotFound(format!(
                "no node waiting for an agent with MAC {}",
                wanted.join(", ")
            )),
        })
    }

    /// The node's record when `token` is the one its waiting agent holds (compared in
    /// constant time, digest against digest).
    fn agent_record(&self, name: &str, token: &str) -> Result<Shared, ApiError> {
        let refused = || ApiError::InvalidState("unknown agent token".into());
        let record = self.record(name).map_err(|_| refused())?;
        let good = {
            let mut r = lock(&record);
            let presented = token_digest(token);
            let good = waits_for_agent(r.fsm.state)
                && r.agent
                    .token_sha256
                    .is_some_and(|held| bool::from(held.ct_eq(&presented)));
            if good {
                r.agent.token_used = true;
            }
            good
        };
        if !good {
            return Err(refused());
        }
        Ok(record)
    }

    /// Agent API: keeps what the agent logged in the node's history (bounded, and only
    /// from the agent holding the node's token).
    pub fn agent_log(&self, name: &str, token: &str, lines: &[String]) -> Result<(), ApiError> {
        if lines.is_empty() {
            return Ok(());
        }
        let record = self.agent_record(name, token)?;
        let history = lock(&record).history.clone();
        let mut history = lock(&history);
        for line in lines.iter().take(crate::agent_protocol::MAX_LOG_LINES) {
            let mut line: String = line.chars().filter(|c| !c.is_control()).collect();
            if line.len() > crate::agent_protocol::MAX_LOG_LINE {
                let mut end = crate::agent_protocol::MAX_LOG_LINE;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                line.truncate(end);
            }
            history.push(HistoryEvent::Agent {
                message: format!("agent log: {line}"),
            });
        }
        Ok(())
    }

    /// Agent API: a heartbeat; answers the next command, if any. With a store, that the
    /// command was given is committed before it is, so a restarted conductor never gives
    /// it twice.
    pub async fn agent_heartbeat(
        self: &Arc<Self>,
        name: &str,
        token: &str,
    ) -> Result<Option<AgentCommand>, ApiError> {
        let (me, name, token) = (self.clone(), name.to_string(), token.to_string());
        to_the_end(async move { me.agent_heartbeat_now(&name, &token).await }).await
    }

    async fn agent_heartbeat_now(
        &self,
        name: &str,
        token: &str,
    ) -> Result<Option<AgentCommand>, ApiError> {
        let record = self.agent_record(name, token)?;
        self.metrics.heartbeat();
        let command = {
            let mut r = lock(&record);
            // Until its result arrives the agent is given its command on each heartbeat:
            // an answer lost with a killed conductor must not leave it without one. (An
            // agent runs the command it is already running once.)
            if r.agent.result_received {
                return Ok(None);
            }
            let command = match r.fsm.state {
                NodeState::InspectWait => AgentCommand::Inspect,
                NodeState::CleanWait => AgentCommand::EraseMetadata,
                NodeState::WaitCallBack => match &r.deploy {
                    Some(d) => AgentCommand::InstallImage {
                        image: d.image.clone(),
                        config_drive: d.config_drive.clone(),
                        root_device_hints: d.root_device_hints.clone(),
                    },
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
            if !r.agent.command_sent {
                lock(&r.history).push(HistoryEvent::Agent {
                    message: format!("heartbeat: given the command {}", command.name()),
                });
            }
            r.agent.command_sent = true;
            command
        };
        self.commit(&record).await?;
        Ok(Some(command))
    }

    /// Agent API: the result of the command, answered with the agent's next command
    /// ([`AgentCommand::PowerOff`] after a result that ends its part). With a store, the
    /// result is committed before the finishing BMC work starts, and a restarted
    /// conductor finishes it.
    pub async fn agent_report(
        self: &Arc<Self>,
        name: &str,
        token: &str,
        result: AgentResult,
    ) -> Result<Option<AgentCommand>, ApiError> {
        let (me, name, token) = (self.clone(), name.to_string(), token.to_string());
        to_the_end(async move { me.agent_report_now(&name, &token, result).await }).await
    }

    async fn agent_report_now(
        self: &Arc<Self>,
        name: &str,
        token: &str,
        result: AgentResult,
    ) -> Result<Option<AgentCommand>, ApiError> {
        let record = self.agent_record(name, token)?;
        let (actions, finish) = {
            let mut r = lock(&record);
            if r.agent.result_received {
                return Err(ApiError::InvalidState(format!(
                    "node {name} already has its agent's result"
                )));
            }
            lock(&r.history).push(HistoryEvent::Agent {
                message: match &result.error {
                    None => "result: the command succeeded".to_string(),
                    Some(e) => format!("result: the command failed: {e}"),
                },
            });
            match r.fsm.state {
                NodeState::InspectWait => {
                    let inventory = match (&result.error, result.inventory) {
                        (None, Some(inv)) => Ok(inv.to_hardware()),
                        (Some(e), _) => Err(format!("inspection: agent: {e}")),
                        (None, None) => Err("inspection: the agent sent no inventory".to_string()),
                    };
                    match inventory {
                        Ok(inventory) => {
                            r.inventory = Some(inventory);
                            r.inventory_saved = false;
                            self.index_macs(&r);
                            r.agent.result_received = true;
                            (Vec::new(), Some(Finish::Inspection))
                        }
                        Err(reason) => {
                            r.agent = AgentSession::default();
                            (self.handle(&mut r, NodeEvent::Fail, Some(&reason))?, None)
                        }
                    }
                }
                NodeState::CleanWait | NodeState::WaitCallBack => {
                    let deploying = r.fsm.state == NodeState::WaitCallBack;
                    let (event, reason) = match &result.error {
                        None => (NodeEvent::Resume, None),
                        Some(e) if deploying => {
                            (NodeEvent::Fail, Some(format!("deploy: agent: {e}")))
                        }
                        Some(e) => (NodeEvent::Fail, Some(format!("cleaning: agent: {e}"))),
                    };
                    let actions = self.handle(&mut r, event, reason.as_deref())?;
                    if deploying {
                        r.config_drive = result.config_drive;
                    }
                    if result.error.is_none() {
                        // Kept past the state change, which voided the token.
                        r.agent.result_received = true;
                        let finish = if deploying {
                            Finish::Deploy
                        } else {
                            Finish::Cleaning
                        };
                        (actions, Some(finish))
                    } else {
                        r.agent = AgentSession::default();
                        (actions, None)
                    }
                }
                other => {
                    return Err(ApiError::InvalidState(format!(
                        "node {name} is {other}: no agent result is awaited"
                    )));
                }
            }
        };
        self.commit(&record).await?;
        self.spawn_actions(name, actions);
        // A result that ends the agent's part: the agent syncs and powers the host off
        // itself, the finishing BMC work makes sure of it.
        let next = finish.as_ref().map(|_| AgentCommand::PowerOff);
        if next.is_some() {
            lock(&lock(&record).history).push(HistoryEvent::Agent {
                message: "told the agent to power the host off".to_string(),
            });
        }
        match finish {
            Some(Finish::Deploy) => self.finish_in_background(name, |me, record| async move {
                me.finish_deploy(&record)
                    .await
                    .map_err(|e| format!("deploy: {e}"))
            }),
            Some(Finish::Inspection) => self.finish_in_background(name, |me, record| async move {
                me.tear_down(&record)
                    .await
                    .map_err(|e| format!("inspection: {e}"))
            }),
            Some(Finish::Cleaning) => self.finish_in_background(name, |me, record| async move {
                me.tear_down(&record)
                    .await
                    .map_err(|e| format!("cleaning: {e}"))
            }),
            None => {}
        }
        Ok(next)
    }

    /// Runs `work` on a node in the background and feeds its outcome to the node's
    /// machine: `done`, or `fail` with the reason. An outcome the machine no longer
    /// expects (the node moved on) is dropped.
    fn finish_in_background<F, Fut>(self: &Arc<Self>, name: &str, work: F)
    where
        F: FnOnce(Arc<Self>, Shared) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let me = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let Some(_work) = me.work_permit(&name).await else {
                return;
            };
            let Ok(record) = me.record(&name) else {
                return;
            };
            let outcome = match work(me.clone(), record.clone()).await {
                Ok(()) => Outcome::Event(NodeEvent::Done, None),
                Err(e) => Outcome::Event(NodeEvent::Fail, Some(e)),
            };
            me.feed_outcome(&name, &record, outcome).await;
        });
    }

    /// Feeds an outcome of background work to the node's machine, commits, and starts
    /// what it asks for next.
    async fn feed_outcome(self: &Arc<Self>, name: &str, record: &Shared, outcome: Outcome) {
        let Outcome::Event(event, reason) = outcome else {
            return;
        };
        let actions = {
            let mut r = lock(record);
            match self.handle(&mut r, event, reason.as_deref()) {
                Ok(actions) => {
                    if !waits_for_agent(r.fsm.state) {
                        r.agent.result_received = false;
                    }
                    actions
                }
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "outcome dropped");
                    return;
                }
            }
        };
        self.commit_then_run(name, record, actions).await;
    }
}

/// Runs `work` to its end even when the caller stops waiting (an HTTP request dropped,
/// a caller's task aborted): what a call changed in memory is always committed and acted
/// on, never left half done at an await.
async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) => Err(ApiError::Unavailable(format!(
            "the conductor's work for the call stopped: {e}"
        ))),
    }
}

/// The BMC work that follows an agent's result.
enum Finish {
    Inspection,
    Deploy,
    Cleaning,
}

/// Where this run's change feed starts: microseconds of the wall clock, so that a
/// client's position from an earlier run of the conductor is older than every position
/// of this run, and gets every node's state.
fn feed_base() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0))
}
fn describe_override(state: &bmc_core::BootOverrideState) -> String {
    let Some(device) = &state.device else {
        return "none".to_string();
    };
    let mut out = device.to_string();
    match state.persistence {
        Some(bmc_core::BootPersistence::Once) => out.push_str(" once"),
        Some(bmc_core::BootPersistence::Persistent) => out.push_str(" persistent"),
        None => {}
    }
    if let Some(mode) = state.mode {
        out.push_str(&format!(" ({mode})"));
    }
    out
}

/// An action's name for histories, logs and metrics.
fn action_name(action: &NodeAction) -> &'static str {
    match action {
        NodeAction::VerifyBmc => "verify BMC",
        NodeAction::StartInspection => "start inspection",
        NodeAction::StartDeployment => "start deployment",
        NodeAction::StartCleaning => "start cleaning",
        NodeAction::TearDown => "tear down",
        NodeAction::AbortOperation => "abort operation",
        NodeAction::RecordFailure { .. } => "record failure",
    }
}

/// Times waiting nodes out at their deadlines until the conductor is gone.
async fn run_timers(conductor: Weak<Conductor>, changed: Arc<Notify>) {
    loop {
        let next = {
            let Some(c) = conductor.upgrade() else {
                return;
            };
            c.fire_due_timers()
        };
        let wait = next.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmc_core::{BmcAddress, Credentials};

    async fn conductor_with_a_node(name: &str, config: ConductorConfig) -> Arc<Conductor> {
        let c = Conductor::new(config, Registry::new());
        let credentials =
            Credentials::new("admin", "password").unwrap_or_else(|e| unreachable!("{e}"));
        c.create_node(NodeSpec {
            name: name.to_string(),
            address: BmcAddress::parse("redfish+http://127.0.0.1:9/redfish/v1/Systems/1")
                .unwrap_or_else(|e| unreachable!("{e}")),
            credentials,
            disable_certificate_verification: false,
            boot_mac: Some("52:54:00:00:00:01".to_string()),
            automated_clean: false,
            preprovisioning_network_data: None,
            legacy_boot: false,
        })
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
        c
    }

    #[tokio::test]
    async fn the_change_feed_tells_creations_deletions_and_a_full_list_from_zero() {
        let c = conductor_with_a_node("ns/a", ConductorConfig::default()).await;
        let all = c.changes(0, Duration::ZERO).await;
        assert!(all.complete);
        assert_eq!(all.changes.len(), 1);
        assert_eq!(all.changes[0].state, Some(NodeState::Enroll));
        c.delete_node("ns/a")
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let after = c.changes(all.seq, Duration::from_secs(5)).await;
        assert!(!after.complete);
        assert_eq!(
            after.changes,
            vec![NodeChange {
                name: "ns/a".into(),
                state: None
            }]
        );
    }

    use bmc_core::BmcScheme;
    use bmc_core::memory::MemoryBmc;

    async fn lab(bmc: &MemoryBmc, config: ConductorConfig) -> Arc<Conductor> {
        lab_booting(bmc, config, false).await
    }

    async fn lab_booting(
        bmc: &MemoryBmc,
        config: ConductorConfig,
        legacy_boot: bool,
    ) -> Arc<Conductor> {
        let mut registry = Registry::new();
        registry.register(BmcScheme::RedfishVirtualMedia, bmc.factory());
        let c = Conductor::new(config, registry);
        c.create_node(NodeSpec {
            name: "lab/node-0".into(),
            address: BmcAddress::parse("redfish-virtualmedia://192.0.2.10/redfish/v1/Systems/1")
                .unwrap_or_else(|e| unreachable!("{e}")),
            credentials: Credentials::new("admin", "password")
                .unwrap_or_else(|e| unreachable!("{e}")),
            disable_certificate_verification: false,
            boot_mac: Some("52:54:00:00:00:01".into()),
            automated_clean: false,
            preprovisioning_network_data: None,
            legacy_boot,
        })
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
        c
    }

    fn quick() -> ConductorConfig {
        ConductorConfig {
            poll: PollPolicy {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
            agent_image_url: "http://192.0.2.1/agent.iso".into(),
            ..ConductorConfig::default()
        }
    }

    async fn until(c: &Conductor, state: NodeState) -> NodeView {
        for _ in 0..2000 {
            let view = c.node("lab/node-0").unwrap_or_else(|e| unreachable!("{e}"));
            if view.state == state {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        unreachable!("never reached {state}: {:?}", c.node("lab/node-0"))
    }

    #[tokio::test]
    async fn a_node_goes_through_its_lifecycle_on_an_in_memory_bmc() {
        let inventory = HardwareInventory {
            total_memory_mib: Some(65_536),
            ..HardwareInventory::default()
        };
        let bmc = MemoryBmc::new(PowerState::Off).with_inventory(inventory);
        let c = lab(&bmc, quick()).await;
        c.provision("lab/node-0", Verb::Manage, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::Manageable).await;
        c.provision("lab/node-0", Verb::Inspect { in_band: false }, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let view = until(&c, NodeState::Manageable).await;
        assert!(view.inspected);
        let inventory = c
            .inventory("lab/node-0")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(inventory.total_memory_mib, Some(65_536));
        c.provision("lab/node-0", Verb::Provide, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::Available).await;
        let image = provision_fsm::Image {
            format: Some(provision_fsm::ImageFormat::LiveIso),
            ..provision_fsm::Image::at("http://192.0.2.1/live.iso")
        };
        c.provision(
            "lab/node-0",
            Verb::Deploy(DeployConfig {
                image,
                config_drive: ConfigDrive::default(),
                legacy_boot: false,
                root_device_hints: None,
            }),
            None,
        )
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
        let view = until(&c, NodeState::Active).await;
        assert_eq!(
            view.deployed_image.as_deref(),
            Some("http://192.0.2.1/live.iso")
        );
        assert_eq!(bmc.power_now(), PowerState::On);
        let calls = bmc.calls();
        assert!(
            calls
                .iter()
                .any(|c| c == "insert_media cd http://192.0.2.1/live.iso")
                && calls.iter().any(|c| c.starts_with("set_boot_override cd")),
            "{calls:?}"
        );
        c.provision("lab/node-0", Verb::Undeploy, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::Available).await;
        assert_eq!(bmc.power_now(), PowerState::Off);
        let slots = lock(&bmc.state).slots.clone();
        assert!(slots.iter().all(|s| !s.inserted), "{slots:?}");
    }

    /// A legacy node's agent boots in legacy mode, as its deployed image does (Ironic's
    /// `boot_mode` capability holds for every boot).
    #[tokio::test]
    async fn a_legacy_node_boots_the_agent_in_legacy_mode() {
        for legacy in [true, false] {
            let bmc = MemoryBmc::new(PowerState::Off);
            let c = lab_booting(&bmc, quick(), legacy).await;
            c.provision("lab/node-0", Verb::Manage, None)
                .await
                .unwrap_or_else(|e| unreachable!("{e}"));
            until(&c, NodeState::Manageable).await;
            c.provision("lab/node-0", Verb::Inspect { in_band: true }, None)
                .await
                .unwrap_or_else(|e| unreachable!("{e}"));
            until(&c, NodeState::InspectWait).await;
            let calls = bmc.calls();
            let boot = calls
                .iter()
                .find(|c| c.starts_with("set_boot_override cd"))
                .cloned()
                .unwrap_or_default();
            let wanted = if legacy { "Legacy" } else { "Uefi" };
            assert!(boot.contains(wanted), "legacy {legacy}: {calls:?}");
        }
    }

    /// An abort's tear-down and the operation asked for right after it work on the
    /// node one after the other: the host is powered off and its media ejected before
    /// the agent boots again, and it ends up on, with the agent inserted.
    #[tokio::test]
    async fn an_abort_tear_down_ends_before_the_next_operation_starts() {
        let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
        let c = lab(&bmc, quick()).await;
        c.provision("lab/node-0", Verb::Manage, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::Manageable).await;
        let inspect = Verb::Inspect { in_band: true };
        c.provision("lab/node-0", inspect.clone(), None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::InspectWait).await;
        // From here on a power change takes many reads: the tear-down is slow.
        lock(&bmc.state).transition_reads = 40;
        lock(&bmc.state).calls.clear();
        c.provision("lab/node-0", Verb::Abort, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        c.provision("lab/node-0", inspect, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::InspectWait).await;
        assert_eq!(bmc.power_now(), PowerState::On);
        let calls = bmc.calls();
        let at = |call: &str| calls.iter().position(|c| c.starts_with(call));
        let (off, on) = (
            at("power power off").or(at("power soft power off")),
            at("power power on"),
        );
        let insert = at("insert_media");
        assert!(
            off.is_some() && off < insert && insert < on,
            "the tear-down's power-off, then the agent's media, then power on: {calls:?}"
        );
    }

    /// What a booted agent logs lands in its node's history, cleaned and bounded, and
    /// only from the agent that holds the node's token.
    #[tokio::test]
    async fn the_agents_log_lines_go_into_the_history() {
        let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
        let c = lab(&bmc, quick()).await;
        c.provision("lab/node-0", Verb::Manage, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::Manageable).await;
        c.provision(
            "lab/node-0",
            Verb::Inspect { in_band: true },
            Some("step-9"),
        )
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::InspectWait).await;
        let lookup = c
            .agent_lookup(&["52:54:00:00:00:01".into()])
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(lookup.correlation_id.as_deref(), Some("step-9"));
        let refused = c.agent_log("lab/node-0", "agent-guess", &["forged".into()]);
        assert!(refused.is_err());
        let long = "x".repeat(2000);
        let lines = vec![
            "found 2 disks".to_string(),
            "a\u{1b}[31mred".to_string(),
            long,
        ];
        c.agent_log("lab/node-0", &lookup.agent_token, &lines)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let history = c
            .history("lab/node-0")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let logged: Vec<String> = history
            .entries
            .iter()
            .filter_map(|e| match &e.event {
                HistoryEvent::Agent { message } if message.starts_with("agent log: ") => {
                    Some(message.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert_eq!(logged[0], "agent log: found 2 disks");
        assert_eq!(
            logged[1], "agent log: a[31mred",
            "control characters dropped"
        );
        assert_eq!(
            logged[2].len(),
            "agent log: ".len() + crate::agent_protocol::MAX_LOG_LINE
        );
        assert!(!logged.iter().any(|l| l.contains("forged")));
    }

    /// The node machine's own deadline times a waiting node out: no polling loop, the
    /// timer task sleeps until it. Time is paused, so the 30 minutes pass at once.
    #[tokio::test(start_paused = true)]
    async fn a_node_waiting_for_its_agent_times_out_at_its_deadline() {
        let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
        let c = lab(&bmc, quick()).await;
        c.provision("lab/node-0", Verb::Manage, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::Manageable).await;
        c.provision("lab/node-0", Verb::Inspect { in_band: true }, None)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        until(&c, NodeState::InspectWait).await;
        assert_eq!(bmc.power_now(), PowerState::On, "the agent was booted");
        // An agent calling now would be answered...
        let lookup = c.agent_lookup(&["52:54:00:00:00:01".into()]).await;
        assert!(lookup.is_ok(), "{lookup:?}");
        // Ironic's 30 minutes: still waiting just before, failed just after.
        tokio::time::sleep(Duration::from_secs(1790)).await;
        let view = c.node("lab/node-0").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(view.state, NodeState::InspectWait);
        tokio::time::sleep(Duration::from_secs(20)).await;
        let view = c.node("lab/node-0").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(view.state, NodeState::InspectFailed);
        let error = view.last_error.unwrap_or_default();
        // The hop that failed, the wait, and what the BMC showed before the tear-down.
        assert!(
            error.starts_with(
                "the agent looked up its node, no heartbeat asked for its command within 1800 s (inspect wait timed out)"
            ),
            "{error}"
        );
        assert!(
            error.contains("the BMC read back power on; boot override"),
            "{error}"
        );
        let history = c
            .history("lab/node-0")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let kinds: Vec<&HistoryEvent> = history.entries.iter().map(|e| &e.event).collect();
        assert!(
            kinds.iter().any(|e| matches!(
                e,
                HistoryEvent::Transition {
                    from: NodeState::InspectWait,
                    to: NodeState::InspectFailed,
                    ..
                }
            )),
            "{kinds:?}"
        );
        assert!(
            kinds.iter().any(
                |e| matches!(e, HistoryEvent::Error { message } if message.contains("no heartbeat"))
            ),
            "{kinds:?}"
        );
        // The timeout's abort tore the host down.
        for _ in 0..100 {
            if bmc.power_now() == PowerState::Off {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(bmc.power_now(), PowerState::Off);
        // ...after the timeout it is refused: nothing waits for it.
        assert!(c.agent_lookup(&["52:54:00:00:00:01".into()]).await.is_err());
    }

    #[tokio::test]
    async fn a_refused_verb_changes_nothing_of_the_node() {
        let c = conductor_with_a_node("ns/a", ConductorConfig::default()).await;
        let deploy = DeployConfig {
            image: provision_fsm::Image::at("http://x/os.qcow2"),
            config_drive: ConfigDrive::default(),
            legacy_boot: false,
            root_device_hints: None,
        };
        let refused = c.provision("ns/a", Verb::Deploy(deploy), None).await;
        assert!(
            matches!(refused, Err(ApiError::InvalidState(_))),
            "{refused:?}"
        );
        let view = c.node("ns/a").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((view.state, view.deploy_attempts), (NodeState::Enroll, 0));
    }
}
