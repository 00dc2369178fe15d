//! The example conductor (Ironic's role): keeps nodes and drives each through
//! provision-fsm's node states with the drivers of a bmc-core [`Registry`].
//!
//! Work runs on one task per operation, bounded by a fleet-wide limit on heavy
//! operations (inspect, deploy, clean) and a per-BMC limit, so a slow or dead BMC holds
//! only its own permits. Deploys go two ways, as Metal3's: a `live-iso` image is booted
//! by virtual media as it is; a disk image is written by the agent, booted by virtual
//! media, which calls back through the agent API ([`Conductor::agent_lookup`],
//! [`Conductor::agent_heartbeat`], [`Conductor::agent_report`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use bmc_core::verified::{Deadline, PollPolicy, boot_from_virtual_media_with, ensure_power_with};
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootMode, BootOverride, BootPersistence,
    ConnectOptions, Credentials, HardwareInventory, MediaKind, PowerAction, PowerState, Registry,
};
use provision_fsm::{Node, NodeAction, NodeEvent, NodeState, NodeTimeouts};

use crate::changes::{Changes, Feed, NodeChange};

/// How the conductor runs.
#[derive(Debug, Clone)]
pub struct ConductorConfig {
    /// Heavy operations (inspect, deploy, clean) running at once, fleet-wide.
    pub max_heavy: usize,
    /// Operations running at once against one BMC endpoint (host and port).
    pub per_bmc: usize,
    /// The agent ISO booted for disk-image deploys.
    pub agent_image_url: String,
    /// Power and boot waits.
    pub poll: PollPolicy,
    /// How long one power change or virtual-media boot may take.
    pub operation_timeout: Duration,
    /// Waiting-state timeouts.
    pub timeouts: NodeTimeouts,
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
        }
    }
}

/// A node as created through the API.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Unique name (the operator uses `namespace/name` of the host).
    pub name: String,
    /// The BMC address.
    pub address: String,
    /// BMC credentials.
    pub credentials: Credentials,
    /// Skip TLS certificate checks.
    pub disable_certificate_verification: bool,
    /// The MAC the host boots from (agent look-ups match it).
    pub boot_mac: Option<String>,
    /// Clean by the agent (erase disk metadata) before a host is made available again
    /// (Metal3's `automatedCleaningMode: metadata`); when false, cleaning only ejects
    /// media and powers off (`disabled`).
    pub automated_clean: bool,
}

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployConfig {
    /// The image URL.
    pub image_url: String,
    /// Its checksum (hex), when given.
    pub checksum: Option<String>,
    /// `sha256`, `sha512` or `md5` (Metal3's types; `auto` guesses from the length).
    pub checksum_type: Option<String>,
    /// Boot the image itself by virtual media (`live-iso`) instead of writing it.
    pub live_iso: bool,
    /// Config drive: user data.
    pub user_data: Option<String>,
    /// Config drive: network data (OpenStack `network_data.json`).
    pub network_data: Option<Value>,
    /// Config drive: metadata.
    pub meta_data: Value,
    /// Boot in legacy BIOS mode (`bootMode: legacy`) rather than UEFI.
    #[serde(default)]
    pub legacy_boot: bool,
}

/// A provisioning verb of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Verify the BMC and manage the node.
    Manage,
    /// Inspect the hardware: out of band through the BMC, or in band by booting the
    /// agent, which reports what it finds.
    Inspect {
        /// Boot the agent to inspect.
        in_band: bool,
    },
    /// Clean and make available.
    Provide,
    /// Deploy.
    Deploy(DeployConfig),
    /// Tear down, clean, make available again.
    Undeploy,
    /// Abort a waiting operation.
    Abort,
}

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// Provision state (Ironic's name).
    pub state: NodeState,
    /// The last failure.
    pub last_error: Option<String>,
    /// Power as last read.
    pub power_on: Option<bool>,
    /// The driver in use, once connected.
    pub driver: Option<String>,
    /// Inventory from inspection.
    pub inventory: Option<HardwareInventory>,
    /// The image deployed (active nodes).
    pub deployed_image: Option<String>,
    /// Deploys started, all attempts.
    pub deploy_attempts: u32,
    /// The config drive the agent reports it wrote (disk-image deploys).
    pub config_drive: Option<Value>,
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No such node.
    #[error("node {0} not found")]
    NotFound(String),
    /// The node's state does not allow the request.
    #[error("{0}")]
    InvalidState(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// What the agent is told to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AgentCommand {
    /// Download, check, write the image and the config drive.
    InstallImage {
        /// Image URL.
        url: String,
        /// Checksum (hex).
        checksum: Option<String>,
        /// Checksum type.
        checksum_type: Option<String>,
        /// Config drive contents.
        config_drive: Value,
    },
    /// Report the hardware inventory.
    Inspect,
    /// Erase the disks' metadata (partition tables, filesystem signatures): Metal3's
    /// `metadata` cleaning.
    EraseMetadata,
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentResult {
    /// Success, or why not.
    pub error: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// The inventory, answering `inspect` (ironic-python-agent's layout).
    #[serde(default)]
    pub inventory: Option<Value>,
    /// The config drive written, answering `install_image`.
    #[serde(default)]
    pub config_drive: Option<Value>,
}

struct NodeRecord {
    spec: NodeSpec,
    fsm: Node,
    power_on: Option<bool>,
    inventory: Option<HardwareInventory>,
    deploy: Option<DeployConfig>,
    deployed_image: Option<String>,
    deploy_attempts: u32,
    config_drive: Option<Value>,
    driver: Option<Arc<dyn BmcDriver>>,
    agent_token: Option<String>,
    command_sent: bool,
    inspect_in_band: bool,
    /// The provision state, for callers waiting for it to change ([`Conductor::wait_node`]).
    state_tx: tokio::sync::watch::Sender<NodeState>,
    /// The conductor's change feed ([`Conductor::changes`]).
    feed: Arc<Feed>,
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

    /// Moves the node's machine on and wakes whoever waits for its state to change.
    fn set_fsm(&mut self, node: Node) {
        let state = node.state;
        self.fsm = node;
        let changed = self.state_tx.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
        if changed {
            self.feed.push(&self.spec.name, Some(state));
        }
    }

    fn view(&self) -> NodeView {
        NodeView {
            name: self.spec.name.clone(),
            state: self.fsm.state,
            last_error: self.fsm.last_error.clone(),
            power_on: self.power_on,
            driver: self.driver.as_ref().map(|d| d.driver_name().to_string()),
            inventory: self.inventory.clone(),
            deployed_image: self.deployed_image.clone(),
            deploy_attempts: self.deploy_attempts,
            config_drive: self.config_drive.clone(),
        }
    }
}

type Shared = Arc<Mutex<NodeRecord>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The conductor.
pub struct Conductor {
    config: ConductorConfig,
    registry: Registry,
    nodes: Mutex<HashMap<String, Shared>>,
    /// MAC address (lower case) → nodes with a NIC of that address: an agent's lookup is
    /// one probe per MAC, not a scan of every node. Entries may be stale; a lookup checks
    /// the node.
    nodes_by_mac: Mutex<HashMap<String, Vec<String>>>,
    feed: Arc<Feed>,
    heavy: Arc<Semaphore>,
    per_bmc: Mutex<HashMap<String, Arc<Semaphore>>>,
    started: tokio::time::Instant,
    tokens: AtomicU64,
}

impl std::fmt::Debug for Conductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor")
            .field("nodes", &lock(&self.nodes).len())
            .finish()
    }
}

enum Outcome {
    Event(NodeEvent, Option<String>),
    Nothing,
}

impl Conductor {
    /// A conductor over these drivers.
    pub fn new(config: ConductorConfig, registry: Registry) -> Arc<Conductor> {
        Arc::new(Conductor {
            heavy: Arc::new(Semaphore::new(config.max_heavy.max(1))),
            config,
            registry,
            nodes: Mutex::new(HashMap::new()),
            nodes_by_mac: Mutex::new(HashMap::new()),
            feed: Arc::new(Feed::default()),
            per_bmc: Mutex::new(HashMap::new()),
            started: tokio::time::Instant::now(),
            tokens: AtomicU64::new(1),
        })
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn record(&self, name: &str) -> Result<Shared, ApiError> {
        lock(&self.nodes)
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(name.to_string()))
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

    /// Keeps an inventory and indexes its MACs.
    fn set_inventory(&self, record: &Shared, inventory: HardwareInventory) {
        let mut r = lock(record);
        r.inventory = Some(inventory);
        self.index_macs(&r);
    }

    /// Creates a node in `enroll`, or updates the BMC details of an existing one (so a
    /// repeated create is harmless).
    pub fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError> {
        BmcAddress::parse(&spec.address).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let mut nodes = lock(&self.nodes);
        if let Some(existing) = nodes.get(&spec.name) {
            let mut r = lock(existing);
            if r.spec.address != spec.address
                || r.spec.credentials.password().expose() != spec.credentials.password().expose()
                || r.spec.credentials.username() != spec.credentials.username()
            {
                r.driver = None;
            }
            r.spec = spec;
            self.index_macs(&r);
            return Ok(r.view());
        }
        let record = NodeRecord {
            spec: spec.clone(),
            fsm: Node::enroll(self.now()),
            power_on: None,
            inventory: None,
            deploy: None,
            deployed_image: None,
            deploy_attempts: 0,
            config_drive: None,
            driver: None,
            agent_token: None,
            command_sent: false,
            inspect_in_band: false,
            state_tx: tokio::sync::watch::Sender::new(NodeState::Enroll),
            feed: self.feed.clone(),
        };
        record.state_tx.send_replace(record.fsm.state);
        self.feed.push(&spec.name, Some(record.fsm.state));
        self.index_macs(&record);
        let view = record.view();
        nodes.insert(spec.name, Arc::new(Mutex::new(record)));
        Ok(view)
    }

    /// A node.
    pub fn node(&self, name: &str) -> Result<NodeView, ApiError> {
        let record = self.record(name)?;
        let view = lock(&record).view();
        Ok(view)
    }

    /// The node once its provision state is no longer `while_in`, or as it is after
    /// `timeout`: one request per state change for a caller that waits for the node,
    /// where polling would ask again and again. A node deleted meanwhile is not found.
    pub async fn wait_node(
        &self,
        name: &str,
        while_in: NodeState,
        timeout: Duration,
    ) -> Result<NodeView, ApiError> {
        let record = self.record(name)?;
        let mut states = lock(&record).state_tx.subscribe();
        drop(record);
        let _ = tokio::time::timeout(timeout, states.wait_for(|s| *s != while_in)).await;
        self.node(name)
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
    pub async fn delete_node(&self, name: &str) -> Result<(), ApiError> {
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
        if lock(&self.nodes).remove(name).is_some() {
            self.feed.push(name, None);
        }
        if let Some(d) = driver {
            let _ = d.close().await;
        }
        Ok(())
    }

    /// Applies a provisioning verb; the work it starts runs in the background.
    pub fn provision(self: &Arc<Self>, name: &str, verb: Verb) -> Result<NodeView, ApiError> {
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
            let step = r
                .fsm
                .handle(event, None, self.now(), &self.config.timeouts)
                .map_err(|e| ApiError::InvalidState(e.to_string()))?;
            if let Verb::Inspect { in_band } = verb {
                r.inspect_in_band = in_band;
                r.agent_token = None;
                r.command_sent = false;
            }
            if let Verb::Deploy(config) = verb {
                r.deploy = Some(config);
                r.deploy_attempts += 1;
                r.agent_token = None;
                r.command_sent = false;
            }
            r.set_fsm(step.node);
            (step.actions, r.view())
        };
        self.spawn_actions(name, actions);
        Ok(view)
    }

    /// Powers a node on or off (verified by reading back).
    pub async fn set_power(&self, name: &str, on: bool) -> Result<NodeView, ApiError> {
        let record = self.record(name)?;
        let result = async {
            let driver = self.driver(&record).await?;
            let _permit = self.bmc_permit(&record).await;
            let action = if on {
                PowerAction::On
            } else {
                PowerAction::Off
            };
            ensure_power_with(
                driver.as_ref(),
                action,
                Deadline::after(self.config.operation_timeout),
                self.config.poll,
            )
            .await
        }
        .await;
        let mut r = lock(&record);
        match result {
            Ok(out) => {
                r.power_on = Some(out.final_state == PowerState::On);
                Ok(r.view())
            }
            Err(e) => Err(ApiError::InvalidState(format!("power change failed: {e}"))),
        }
    }

    fn spawn_actions(self: &Arc<Self>, name: &str, actions: Vec<NodeAction>) {
        let work: Vec<NodeAction> = actions
            .into_iter()
            .filter(|a| !matches!(a, NodeAction::RecordFailure { .. }))
            .collect();
        if work.is_empty() {
            return;
        }
        let me = self.clone();
        let name = name.to_string();
        tokio::spawn(async move { me.run(name, work).await });
    }

    /// Runs actions and feeds their outcomes back into the node's machine until nothing
    /// is left to do.
    async fn run(self: Arc<Self>, name: String, actions: Vec<NodeAction>) {
        let mut queue: VecDeque<NodeAction> = actions.into();
        while let Some(action) = queue.pop_front() {
            let Ok(record) = self.record(&name) else {
                return;
            };
            let outcome = self.perform(&record, &action).await;
            let Outcome::Event(event, reason) = outcome else {
                continue;
            };
            let mut r = lock(&record);
            match r
                .fsm
                .handle(event, reason.as_deref(), self.now(), &self.config.timeouts)
            {
                Ok(mut step) => {
                    tracing::debug!(node = %name, from = %r.fsm.state, to = %step.node.state, "node transition");
                    // A failed verification goes back to enroll, which the table does not
                    // count as a failure state: keep the reason for the API all the same.
                    if event == NodeEvent::Fail && step.node.last_error.is_none() {
                        step.node.last_error = reason.clone();
                    }
                    r.set_fsm(step.node);
                    queue.extend(
                        step.actions
                            .into_iter()
                            .filter(|a| !matches!(a, NodeAction::RecordFailure { .. })),
                    );
                }
                // The node moved on meanwhile (aborted, deleted): drop the outcome.
                Err(e) => tracing::debug!(node = %name, error = %e, "outcome dropped"),
            }
        }
    }

    async fn perform(&self, record: &Shared, action: &NodeAction) -> Outcome {
        // `then` on success, `fail` with the reason otherwise.
        let outcome = |result: Result<(), BmcError>, then: NodeEvent| match result {
            Ok(()) => Outcome::Event(then, None),
            Err(e) => Outcome::Event(NodeEvent::Fail, Some(e.to_string())),
        };
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
            NodeAction::StartCleaning => outcome(self.clean(record).await, NodeEvent::Done),
            NodeAction::TearDown => outcome(self.tear_down(record).await, NodeEvent::Clean),
            NodeAction::AbortOperation => {
                let _ = self.tear_down(record).await;
                Outcome::Nothing
            }
            NodeAction::RecordFailure { .. } => Outcome::Nothing,
        }
    }

    async fn driver(&self, record: &Shared) -> Result<Arc<dyn BmcDriver>, BmcError> {
        let spec = {
            let r = lock(record);
            if let Some(d) = &r.driver {
                return Ok(d.clone());
            }
            r.spec.clone()
        };
        let address = BmcAddress::parse(&spec.address)?;
        let mut options = ConnectOptions::default();
        if spec.disable_certificate_verification {
            options = options.with_certificate_verification_disabled();
        }
        let driver: Arc<dyn BmcDriver> = Arc::from(
            self.registry
                .connect(&address, &spec.credentials, &options)
                .await?,
        );
        lock(record).driver = Some(driver.clone());
        Ok(driver)
    }

    async fn bmc_permit(&self, record: &Shared) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let endpoint = {
            let r = lock(record);
            BmcAddress::parse(&r.spec.address)
                .map(|a| a.host().to_string())
                .unwrap_or_else(|_| r.spec.address.clone())
        };
        let sem = lock(&self.per_bmc)
            .entry(endpoint)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_bmc.max(1))))
            .clone();
        sem.acquire_owned().await.ok()
    }

    async fn heavy_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.heavy.clone().acquire_owned().await.ok()
    }

    fn deadline(&self) -> Deadline {
        Deadline::after(self.config.operation_timeout)
    }

    async fn verify(&self, record: &Shared) -> Result<(), BmcError> {
        let _bmc = self.bmc_permit(record).await;
        // A fresh connection: credentials may have changed since the last one.
        lock(record).driver = None;
        let driver = self.driver(record).await?;
        let power = driver.power_state().await?;
        lock(record).power_on = Some(power == PowerState::On);
        Ok(())
    }

    async fn inspect(&self, record: &Shared) -> Result<(), BmcError> {
        let _heavy = self.heavy_permit().await;
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        let inventory = driver.inventory().await?;
        self.set_inventory(record, inventory);
        Ok(())
    }

    /// Boots the agent ISO by virtual media (in-band inspection).
    async fn boot_agent(&self, record: &Shared) -> Result<(), BmcError> {
        let has_vmedia = match self.driver(record).await {
            Ok(d) => d.capabilities().virtual_media.contains(&MediaKind::Cd),
            Err(_) => true,
        };
        if self.config.agent_image_url.is_empty() && has_vmedia {
            return Err(BmcError::InvalidRequest(
                "no agent image configured for in-band inspection".into(),
            ));
        }
        let _heavy = self.heavy_permit().await;
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        self.boot_agent_with(driver.as_ref()).await?;
        lock(record).power_on = Some(true);
        Ok(())
    }

    /// Boots the agent: from its ISO by virtual media where the BMC has it, else by PXE
    /// (IPMI hosts: the network boot infrastructure serves the agent).
    async fn boot_agent_with(&self, driver: &dyn BmcDriver) -> Result<(), BmcError> {
        if driver.capabilities().virtual_media.contains(&MediaKind::Cd) {
            boot_from_virtual_media_with(
                driver,
                &self.config.agent_image_url,
                BootMode::Uefi,
                self.deadline(),
                self.config.poll,
            )
            .await
            .map(|_| ())
        } else {
            self.boot_by_pxe(driver).await
        }
    }

    /// One-time PXE boot, read back, then the host (re)started.
    async fn boot_by_pxe(&self, driver: &dyn BmcDriver) -> Result<(), BmcError> {
        let pxe = BootOverride {
            device: BootDevice::Pxe,
            persistence: BootPersistence::Once,
            mode: None,
        };
        driver.set_boot_override(&pxe).await?;
        let read = driver.boot_override().await?;
        if !read.satisfies(&pxe) {
            return Err(BmcError::NotApplied {
                operation: "one-time PXE boot".into(),
                expected: "pxe".into(),
                observed: format!("{:?}", read.device),
            });
        }
        // Off first, so the next power-on is the boot that reads the override.
        ensure_power_with(driver, PowerAction::Off, self.deadline(), self.config.poll).await?;
        ensure_power_with(driver, PowerAction::On, self.deadline(), self.config.poll).await?;
        Ok(())
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
        let has_vmedia = driver.capabilities().virtual_media.contains(&MediaKind::Cd);
        let (url, event) = if config.live_iso {
            if !has_vmedia {
                return Outcome::Event(
                    NodeEvent::Fail,
                    Some(format!(
                        "a live-iso image needs virtual media, which the {} driver has not",
                        driver.driver_name()
                    )),
                );
            }
            (config.image_url.clone(), NodeEvent::Done)
        } else if self.config.agent_image_url.is_empty() && has_vmedia {
            return Outcome::Event(
                NodeEvent::Fail,
                Some("no agent image configured for disk-image deploys".into()),
            );
        } else {
            (self.config.agent_image_url.clone(), NodeEvent::Wait)
        };
        let booted = if config.live_iso {
            boot_from_virtual_media_with(
                driver.as_ref(),
                &url,
                if config.legacy_boot {
                    BootMode::Legacy
                } else {
                    BootMode::Uefi
                },
                self.deadline(),
                self.config.poll,
            )
            .await
            .map(|_| ())
        } else {
            self.boot_agent_with(driver.as_ref()).await
        };
        match booted {
            Ok(_) => {
                let mut r = lock(record);
                r.power_on = Some(true);
                if config.live_iso {
                    r.deployed_image = Some(config.image_url.clone());
                }
                Outcome::Event(event, None)
            }
            Err(e) => Outcome::Event(NodeEvent::Fail, Some(format!("booting {url}: {e}"))),
        }
    }

    /// After the agent wrote the image: eject, boot from disk from now on, reboot.
    async fn finish_deploy(&self, record: &Shared) -> Result<(), BmcError> {
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        let _ = driver.eject_media(&MediaKind::Cd).await;
        driver
            .set_boot_override(&BootOverride {
                device: BootDevice::Disk,
                persistence: BootPersistence::Persistent,
                mode: None,
            })
            .await?;
        ensure_power_with(
            driver.as_ref(),
            PowerAction::Off,
            self.deadline(),
            self.config.poll,
        )
        .await?;
        ensure_power_with(
            driver.as_ref(),
            PowerAction::On,
            self.deadline(),
            self.config.poll,
        )
        .await?;
        let mut r = lock(record);
        r.power_on = Some(true);
        r.deployed_image = r.deploy.as_ref().map(|d| d.image_url.clone());
        Ok(())
    }

    async fn tear_down(&self, record: &Shared) -> Result<(), BmcError> {
        let _bmc = self.bmc_permit(record).await;
        let driver = self.driver(record).await?;
        if driver.capabilities().virtual_media.contains(&MediaKind::Cd) {
            driver.eject_media(&MediaKind::Cd).await?;
        }
        ensure_power_with(
            driver.as_ref(),
            PowerAction::Off,
            self.deadline(),
            self.config.poll,
        )
        .await?;
        let mut r = lock(record);
        r.power_on = Some(false);
        r.deployed_image = None;
        r.agent_token = None;
        Ok(())
    }

    /// Cleaning without the agent (`automatedCleaningMode: disabled`): media ejected, the
    /// host off.
    async fn clean(&self, record: &Shared) -> Result<(), BmcError> {
        let _heavy = self.heavy_permit().await;
        self.tear_down(record).await
    }

    /// Agent API: finds the node waiting for an agent on a host with one of these MACs
    /// and hands out a token for its calls.
    pub fn agent_lookup(&self, macs: &[String]) -> Result<(String, String), ApiError> {
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
        for name in candidates {
            let Ok(record) = self.record(&name) else {
                continue;
            };
            let mut r = lock(&record);
            if !matches!(
                r.fsm.state,
                NodeState::WaitCallBack | NodeState::InspectWait | NodeState::CleanWait
            ) || !r.macs().iter().any(|m| wanted.contains(m))
            {
                continue;
            }
            let token = format!(
                "agent-{:016x}",
                self.tokens.fetch_add(1, Ordering::Relaxed) ^ 0x5bd1_e995_7f4a_7c15
            );
            // A new agent session: its command is still to be given.
            r.agent_token = Some(token.clone());
            r.command_sent = false;
            return Ok((r.spec.name.clone(), token));
        }
        Err(ApiError::NotFound(format!(
            "no node waiting for an agent with MAC {}",
            wanted.join(", ")
        )))
    }

    fn agent_record(&self, name: &str, token: &str) -> Result<Shared, ApiError> {
        let record = self.record(name)?;
        if lock(&record).agent_token.as_deref() != Some(token) {
            return Err(ApiError::InvalidState("unknown agent token".into()));
        }
        Ok(record)
    }

    /// Agent API: a heartbeat; answers the next command, if any.
    pub fn agent_heartbeat(
        &self,
        name: &str,
        token: &str,
    ) -> Result<Option<AgentCommand>, ApiError> {
        let record = self.agent_record(name, token)?;
        let mut r = lock(&record);
        if r.command_sent {
            return Ok(None);
        }
        if r.fsm.state == NodeState::InspectWait {
            r.command_sent = true;
            return Ok(Some(AgentCommand::Inspect));
        }
        if r.fsm.state == NodeState::CleanWait {
            r.command_sent = true;
            return Ok(Some(AgentCommand::EraseMetadata));
        }
        if r.fsm.state != NodeState::WaitCallBack {
            return Ok(None);
        }
        let Some(d) = r.deploy.clone() else {
            return Ok(None);
        };
        r.command_sent = true;
        Ok(Some(AgentCommand::InstallImage {
            url: d.image_url,
            checksum: d.checksum,
            checksum_type: d.checksum_type,
            config_drive: serde_json::json!({
                "user_data": d.user_data,
                "network_data": d.network_data,
                "meta_data": d.meta_data,
            }),
        }))
    }

    /// Agent API: the result of the command.
    pub fn agent_report(
        self: &Arc<Self>,
        name: &str,
        token: &str,
        result: AgentResult,
    ) -> Result<(), ApiError> {
        let record = self.agent_record(name, token)?;
        let state = lock(&record).fsm.state;
        match state {
            NodeState::InspectWait => return self.inspection_report(name, &record, result),
            NodeState::CleanWait => return self.cleaning_report(name, &record, result),
            _ => {}
        }
        let (event, reason) = match &result.error {
            None => (NodeEvent::Resume, None),
            Some(e) => (NodeEvent::Fail, Some(format!("agent: {e}"))),
        };
        {
            let mut r = lock(&record);
            let step = r
                .fsm
                .handle(event, reason.as_deref(), self.now(), &self.config.timeouts)
                .map_err(|e| ApiError::InvalidState(e.to_string()))?;
            r.set_fsm(step.node);
            r.agent_token = None;
            r.config_drive = result.config_drive.clone();
        }
        if result.error.is_none() {
            self.finish_in_background(name, |me, record| async move {
                me.finish_deploy(&record).await.map_err(|e| e.to_string())
            });
        }
        Ok(())
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
            let Ok(record) = me.record(&name) else {
                return;
            };
            let (event, reason) = match work(me.clone(), record.clone()).await {
                Ok(()) => (NodeEvent::Done, None),
                Err(e) => (NodeEvent::Fail, Some(e)),
            };
            let mut r = lock(&record);
            if let Ok(step) = r
                .fsm
                .handle(event, reason.as_deref(), me.now(), &me.config.timeouts)
            {
                r.set_fsm(step.node);
            }
        });
    }

    /// The agent's inspection result: the inventory is kept, the host powered off and its
    /// media ejected, then the node is manageable again.
    fn inspection_report(
        self: &Arc<Self>,
        name: &str,
        record: &Shared,
        result: AgentResult,
    ) -> Result<(), ApiError> {
        lock(record).agent_token = None;
        let inventory = match (
            &result.error,
            result.inventory.as_ref().map(agent_inventory),
        ) {
            (None, Some(Ok(inv))) => Ok(inv),
            (Some(e), _) => Err(format!("agent: {e}")),
            (None, Some(Err(e))) => Err(format!("agent inventory: {e}")),
            (None, None) => Err("agent sent no inventory".to_string()),
        };
        self.finish_in_background(name, |me, record| async move {
            me.set_inventory(&record, inventory?);
            me.tear_down(&record).await.map_err(|e| e.to_string())
        });
        Ok(())
    }

    /// The agent's cleaning result: on success the host is powered off with its media
    /// ejected and the node made available; a failure is `clean failed`.
    fn cleaning_report(
        self: &Arc<Self>,
        name: &str,
        record: &Shared,
        result: AgentResult,
    ) -> Result<(), ApiError> {
        let (event, reason) = match &result.error {
            None => (NodeEvent::Resume, None),
            Some(e) => (NodeEvent::Fail, Some(format!("agent cleaning: {e}"))),
        };
        {
            let mut r = lock(record);
            r.agent_token = None;
            let step = r
                .fsm
                .handle(event, reason.as_deref(), self.now(), &self.config.timeouts)
                .map_err(|e| ApiError::InvalidState(e.to_string()))?;
            r.set_fsm(step.node);
        }
        if result.error.is_none() {
            self.finish_in_background(name, |me, record| async move {
                me.tear_down(&record).await.map_err(|e| e.to_string())
            });
        }
        Ok(())
    }

    /// Moves waiting nodes whose deadline passed to their failure state (call
    /// periodically).
    pub fn check_timeouts(&self) {
        let now = self.now();
        for record in lock(&self.nodes).values() {
            let mut r = lock(record);
            if let Some(step) = r.fsm.on_timer(now) {
                r.set_fsm(step.node);
            }
        }
    }
}

/// Reads an inventory in ironic-python-agent's layout.
pub fn agent_inventory(v: &Value) -> Result<HardwareInventory, String> {
    use bmc_core::{Cpu, Disk, DiskKind, Nic, SystemIdentity};
    if !v.is_object() {
        return Err("not an object".to_string());
    }
    let text = |x: &Value| x.as_str().map(str::to_string);
    let cpu = &v["cpu"];
    let count = cpu["count"].as_u64().and_then(|c| u32::try_from(c).ok());
    let nics = v["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| Nic {
            id: text(&n["name"]).unwrap_or_default(),
            mac: n["mac_address"].as_str().and_then(|m| m.parse().ok()),
            speed_mbps: n["speed_mbps"].as_u64().and_then(|s| u32::try_from(s).ok()),
            link_up: None,
        })
        .collect();
    let disks = v["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| Disk {
            id: text(&d["name"]).unwrap_or_default(),
            model: text(&d["model"]),
            serial_number: text(&d["serial"]),
            size_bytes: d["size"].as_u64(),
            kind: if d["rotational"] == Value::Bool(true) {
                DiskKind::Hdd
            } else {
                DiskKind::Unknown
            },
        })
        .collect();
    let mut inventory = HardwareInventory {
        system: SystemIdentity {
            manufacturer: text(&v["system_vendor"]["manufacturer"]),
            model: text(&v["system_vendor"]["product_name"]),
            serial_number: text(&v["system_vendor"]["serial_number"]),
            ..SystemIdentity::default()
        },
        total_memory_mib: v["memory"]["physical_mb"].as_u64(),
        nics,
        disks,
        ..HardwareInventory::default()
    };
    if count.is_some() || cpu["model_name"].is_string() {
        inventory.cpus.push(Cpu {
            id: "agent".to_string(),
            model: text(&cpu["model_name"]),
            architecture: text(&cpu["architecture"]),
            cores: None,
            threads: count,
            max_speed_mhz: None,
        });
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conductor_with_a_node(name: &str) -> Arc<Conductor> {
        let c = Conductor::new(ConductorConfig::default(), Registry::new());
        let credentials =
            Credentials::new("admin", "password").unwrap_or_else(|e| unreachable!("{e}"));
        c.create_node(NodeSpec {
            name: name.to_string(),
            address: "redfish+http://127.0.0.1:9/redfish/v1/Systems/1".to_string(),
            credentials,
            disable_certificate_verification: false,
            boot_mac: Some("52:54:00:00:00:01".to_string()),
            automated_clean: false,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        c
    }

    #[tokio::test]
    async fn a_waiter_gets_the_node_as_it_is_at_its_timeout_or_not_found_once_deleted() {
        let c = conductor_with_a_node("ns/a");
        let started = tokio::time::Instant::now();
        let view = c
            .wait_node("ns/a", NodeState::Enroll, Duration::from_millis(50))
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(view.state, NodeState::Enroll);
        assert!(started.elapsed() >= Duration::from_millis(50));

        let waiter = c.clone();
        let wait = tokio::spawn(async move {
            waiter
                .wait_node("ns/a", NodeState::Enroll, Duration::from_secs(30))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.delete_node("ns/a")
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let answer = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap_or_else(|_| unreachable!("the waiter was not woken by the deletion"));
        assert!(
            matches!(answer, Ok(Err(ApiError::NotFound(_)))),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn the_change_feed_tells_creations_deletions_and_a_full_list_from_zero() {
        let c = conductor_with_a_node("ns/a");
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
}
