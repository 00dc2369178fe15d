//! The example operator (baremetal-operator's role): each BareMetalHost is reconciled by
//! one level-triggered step, [`Operator::reconcile`], as kube-runtime's controllers and
//! baremetal-operator's provisioner work. A step reads the host's object, its record and
//! the conductor's node, tells provision-fsm's host machine what it sees (the result of
//! the action it waits for), commits the record, starts the actions the machine asks for
//! and returns when to come back. It never waits for the conductor: the next step reads
//! the node again.
//!
//! Who calls the step: [`Operator::run_embedded`] schedules it itself (one step per host
//! at a time, a delay queue for requeues, woken by the conductor's change feed); the
//! `kube` controller hands the same function to kube-runtime ([`crate::controller`]).
//!
//! Every record (and any address-pool change) is committed before the action it leads to
//! runs, and every action is idempotent against the conductor (create-or-update, verbs only
//! from the states they apply to, an active node with the wanted image counts as
//! provisioned), so a killed operator that restarts carries on without provisioning a host
//! twice or handing out an address twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use bmc_core::sync::lock;
use bmc_core::{BmcAddress, Credentials, HardwareInventory};
use metal3_conductor::agent_protocol::ConfigDrive;
use metal3_conductor::{
    ApiError, ConductorApi, DeployConfig, NodeSpec, NodeView, PowerRequest, Verb,
};
use provision_fsm::{
    CredentialsState, Host, HostAction, HostEvent, HostSpec, HostState, HostStateKind,
    InspectionMode, NodeState, Pending, RebootMode, StepContext,
};

use crate::addresses::{AddressRegistry, Allocation, LocalAddresses, Recorded};
use crate::manifests::{BareMetalHost, IpClaimObject, IpPoolObject, Manifests, ObjectMeta, Secret};
use crate::metrics::{Operation, OperatorMetrics};
use crate::render::network_data;
use crate::scheduler::Scheduler;
use crate::store::{Change, Store, StoreError, encode};

/// How the operator runs.
#[derive(Debug, Clone, Copy)]
pub struct OperatorConfig {
    /// How soon a step that could not reach the conductor, or whose action failed to
    /// start, is tried again.
    pub poll: Duration,
    /// How long a host waiting for its node is left alone when no change of the node
    /// arrives (a safety net under the change feed).
    pub idle_recheck: Duration,
    /// Provisioning attempts before giving up (0 = unlimited).
    pub max_provisioning_retries: u32,
    /// How inspection runs when a host does not say (Metal3's default: the agent).
    pub inspection: InspectionMode,
    /// Steps running at once in embedded mode. A step mostly waits for the conductor,
    /// whose client bounds the requests in flight; this bounds memory. At 10,000 simulated
    /// hosts, 512 took 87.2 s to provisioned and 4,096 took 79.1 s (BENCHMARKS.md).
    pub max_concurrent_steps: usize,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            poll: Duration::from_millis(500),
            idle_recheck: Duration::from_secs(60),
            max_provisioning_retries: 5,
            inspection: InspectionMode::Agent,
            max_concurrent_steps: 4096,
        }
    }
}

/// The address a host holds: the claim, its pool, and what ipam gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldAddress {
    /// The IPPool (`namespace/name`).
    pub pool: String,
    /// The claim's name in the pool (its `status.indexes` key): the IPClaim's name, or
    /// the host's for an address taken from its namespace's only pool. (Stores written
    /// before claims were named so hold `namespace/name`; such an address is released
    /// under the name it was claimed by.)
    pub claim: String,
    /// The address.
    pub address: ipam::IpAddress,
}

/// What the operator keeps per host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host machine's state (provisioning state, errors, pending action).
    pub host: Host,
    /// Hardware details from inspection.
    pub hardware: Option<HardwareInventory>,
    /// The address claimed for the host.
    pub address: Option<HeldAddress>,
    /// The address of the agent's static network, claimed from the pool the host's
    /// [`crate::manifests::PREPROVISIONING_POOL`] annotation names while the agent may
    /// run on it (registering to available, provisioning, deprovisioning).
    #[serde(default)]
    pub agent_address: Option<HeldAddress>,
    /// Seconds spent in each provisioning state, in order of first entry.
    pub phases: Vec<(String, f64)>,
    /// When the current state was entered (seconds since the Unix epoch).
    pub state_since: f64,
    /// `status.lastUpdated` (seconds since the Unix epoch).
    pub last_updated: f64,
    /// When the host machine next wants a step (seconds since the Unix epoch), if it is
    /// waiting for a time rather than an event.
    #[serde(default)]
    pub next_wake: Option<f64>,
    /// The node's deploy count once this operator's deploy was accepted: a node in
    /// `deploy failed` with that count failed this deploy, with another an earlier one.
    #[serde(default)]
    pub deploy_accepted: Option<u32>,
    /// The node's power-change count once this operator's power change was accepted: the
    /// change is done when the node shows none under way. Not kept across a restart (the
    /// change is asked again, which is harmless).
    #[serde(skip)]
    pub power_accepted: Option<u64>,
    /// The result of an action that finished within a step, for the next step. Not kept
    /// across a restart: the action is carried out again (every one is idempotent), so a
    /// result costs no commit of its own.
    #[serde(skip)]
    pub next_event: Option<HostEvent>,
    /// The pending action's request reached the conductor in this run of the operator
    /// (after a restart it is sent again: every request is idempotent).
    #[serde(skip)]
    pub sent: bool,
    /// When the last registration, inspection, provisioning and deprovisioning started
    /// and ended: Metal3's `status.operationHistory`.
    #[serde(default)]
    pub operations: OperationHistory,
    /// The credentials version last sent to the conductor (Metal3's
    /// `status.triedCredentials`): a refusal of the BMC is a refusal of this version.
    #[serde(default)]
    pub tried_credentials: Option<String>,
}

/// When an operation started and ended (seconds since the Unix epoch); an operation
/// under way has no end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationTimes {
    /// Started.
    pub start: Option<f64>,
    /// Ended.
    pub end: Option<f64>,
}

/// Metal3's `status.operationHistory`: the last of each operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationHistory {
    /// `registering`.
    pub register: OperationTimes,
    /// `inspecting`.
    pub inspect: OperationTimes,
    /// `provisioning`.
    pub provision: OperationTimes,
    /// `deprovisioning`.
    pub deprovision: OperationTimes,
}

impl OperationHistory {
    fn times(&mut self, operation: Operation) -> &mut OperationTimes {
        match operation {
            Operation::Register => &mut self.register,
            Operation::Inspect => &mut self.inspect,
            Operation::Provision => &mut self.provision,
            Operation::Deprovision => &mut self.deprovision,
        }
    }

    /// Records a change of state at `now`: the operation left ends, the one entered
    /// starts; the duration of the one that ended.
    fn transition(
        &mut self,
        from: HostStateKind,
        to: HostStateKind,
        now: f64,
    ) -> Option<(Operation, f64)> {
        let mut ended = None;
        if let Some(op) = operation_of(from) {
            let t = self.times(op);
            t.end = Some(now);
            ended = t.start.map(|s| (op, now - s));
        }
        if let Some(op) = operation_of(to) {
            *self.times(op) = OperationTimes {
                start: Some(now),
                end: None,
            };
        }
        ended
    }
}

/// The operation a provisioning state is part of, as baremetal-operator measures them.
fn operation_of(kind: HostStateKind) -> Option<Operation> {
    match kind {
        HostStateKind::Registering => Some(Operation::Register),
        HostStateKind::Inspecting => Some(Operation::Inspect),
        HostStateKind::Provisioning => Some(Operation::Provision),
        HostStateKind::Deprovisioning => Some(Operation::Deprovision),
        _ => None,
    }
}

impl Default for HostRecord {
    fn default() -> Self {
        HostRecord::new()
    }
}

impl HostRecord {
    /// The record of a host not seen before: state `""`, nothing known.
    pub fn new() -> HostRecord {
        let now = unix_now();
        HostRecord {
            host: Host::new(),
            hardware: None,
            address: None,
            agent_address: None,
            phases: Vec::new(),
            state_since: now,
            last_updated: now,
            next_wake: None,
            deploy_accepted: None,
            power_accepted: None,
            next_event: None,
            sent: false,
            operations: OperationHistory::default(),
            tried_credentials: None,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    /// The host's record after the step; `None` once the host is gone (deleted and
    /// finalized) or unknown.
    pub record: Option<HostRecord>,
    /// Step again after this long (a wake-up time of the host machine, a result to feed,
    /// a retry); `None`: only when the host's object or its node changes.
    pub requeue_after: Option<Duration>,
    /// The host waits for its conductor node to move on (embedded mode is woken by the
    /// change feed then; a controller without the feed polls).
    pub waiting_for_node: bool,
}

impl Reconciled {
    fn gone() -> Reconciled {
        Reconciled {
            record: None,
            requeue_after: None,
            waiting_for_node: false,
        }
    }
}

struct Desired {
    bmh: BareMetalHost,
    deleting: bool,
}

/// A request to the conductor that moves the pending action on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Register,
    Inspect,
    Provide,
    Deploy,
    Undeploy,
    Abort,
}

/// What the node says about the action the host waits for.
enum Seen {
    /// The action's result.
    Event(HostEvent),
    /// Still running.
    Waiting,
    /// The next request to send for it.
    Send(Call),
    /// An action that finishes within a step lost its result (a restart): do it again.
    Redo,
}

/// The operator.
pub struct Operator {
    conductor: Arc<dyn ConductorApi>,
    store: Arc<Store>,
    /// Saves waiting for the next commit (group commit, see [`Operator::save`]).
    pending: Arc<Mutex<PendingCommit>>,
    config: OperatorConfig,
    desired: Mutex<HashMap<String, Desired>>,
    records: Mutex<HashMap<String, HostRecord>>,
    secrets: Mutex<BTreeMap<String, Secret>>,
    pools: Pools,
    /// IPClaims by their owner host's key.
    claims: Mutex<HashMap<String, IpClaimObject>>,
    /// Claims no host owns (pool key, claim name): claimed when applied, and never a
    /// host's own claim.
    standalone: Mutex<BTreeSet<(String, String)>>,
    /// Where an address is recorded as taken before it is used.
    addresses: Arc<dyn AddressRegistry>,
    scheduler: Arc<Scheduler>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stopped: std::sync::atomic::AtomicBool,
    started: tokio::time::Instant,
    metrics: Arc<OperatorMetrics>,
    /// Steps taken: the second half of their correlation ids.
    steps: std::sync::atomic::AtomicU64,
    /// This process's random first half of them.
    correlation_prefix: u32,
    /// The store's secret salt of credentials versions.
    credentials_salt: [u8; 16],
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("hosts", &lock(&self.records).len())
            .finish()
    }
}

/// Host records and pools waiting to be committed together, and who waits for it.
#[derive(Default)]
struct PendingCommit {
    hosts: Vec<(String, Option<Vec<u8>>)>,
    objects: Vec<(String, Option<Vec<u8>>)>,
    pools: BTreeSet<String>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// A committer task is running (it takes what arrives while it commits).
    committing: bool,
}

type Pools = Arc<Mutex<HashMap<String, (IpPoolObject, ipam::IpPool)>>>;

/// Commits what is pending, batch after batch, until nothing is: one transaction (one
/// disk sync) for every save that arrived during the previous one. A pool's state is
/// encoded once per batch, however many of its claims the batch holds.
async fn commit_pending(store: Arc<Store>, pending: Arc<Mutex<PendingCommit>>, pools: Pools) {
    loop {
        let (hosts, objects, pool_names, waiters) = {
            let mut p = lock(&pending);
            if p.waiters.is_empty() {
                p.committing = false;
                return;
            }
            (
                std::mem::take(&mut p.hosts),
                std::mem::take(&mut p.objects),
                std::mem::take(&mut p.pools),
                std::mem::take(&mut p.waiters),
            )
        };
        let encoded: Result<Vec<(String, Vec<u8>)>, StoreError> = {
            let p = lock(&pools);
            pool_names
                .into_iter()
                .filter_map(|name| {
                    let (_, pool) = p.get(&name)?;
                    Some(encode(&pool.state()).map(|state| (name, state)))
                })
                .collect()
        };
        let result = match encoded {
            Ok(pools) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    store.commit(Change {
                        hosts,
                        pools,
                        objects,
                    })
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Why a request to the conductor did not go through.
#[derive(Debug)]
enum SendError {
    /// It was refused (or could not be made): the action failed.
    Refused(String),
    /// The conductor could not be reached: nothing failed, it goes again.
    Unavailable(String),
}

impl From<ApiError> for SendError {
    fn from(e: ApiError) -> SendError {
        match e {
            ApiError::Unavailable(_) => SendError::Unavailable(e.to_string()),
            other => SendError::Refused(other.to_string()),
        }
    }
}

/// Why no address could be claimed.
#[derive(Debug)]
enum ClaimFailure {
    /// The claim cannot be served (no such pool, none free, a name of another's): the
    /// action fails.
    Refused(String),
    /// The registry or the store could not record it: tried again.
    Unavailable(String),
}

#[derive(Debug)]
enum CredentialsProblem {
    Missing,
    Invalid(String),
}

impl std::fmt::Display for CredentialsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialsProblem::Missing => f.write_str("the credentials secret does not exist"),
            CredentialsProblem::Invalid(why) => f.write_str(why),
        }
    }
}

/// The node states in which the conductor is still at work on an action.
fn conductor_busy(state: NodeState) -> bool {
    matches!(
        state,
        NodeState::Verifying
            | NodeState::Inspecting
            | NodeState::InspectWait
            | NodeState::Cleaning
            | NodeState::CleanWait
            | NodeState::Deploying
            | NodeState::WaitCallBack
            | NodeState::Deleting
    )
}

fn failure(node: &NodeView, what: &str) -> String {
    node.last_error
        .clone()
        .unwrap_or_else(|| format!("{what} ended in {}", node.state))
}

impl Operator {
    /// Opens the store and loads what a previous run left; addresses are recorded in the
    /// store alone ([`LocalAddresses`]).
    pub fn open(
        conductor: Arc<dyn ConductorApi>,
        store: Store,
        config: OperatorConfig,
    ) -> Result<Arc<Operator>, StoreError> {
        Operator::open_with(conductor, store, config, Arc::new(LocalAddresses))
    }

    /// [`Operator::open`] with addresses recorded in `addresses` too (the API server's
    /// IPAddress objects in kube mode) before any is used.
    pub fn open_with(
        conductor: Arc<dyn ConductorApi>,
        store: Store,
        config: OperatorConfig,
        addresses: Arc<dyn AddressRegistry>,
    ) -> Result<Arc<Operator>, StoreError> {
        let records: HashMap<String, HostRecord> = store.hosts()?.into_iter().collect();
        let credentials_salt = store.credentials_salt()?;
        Ok(Arc::new(Operator {
            conductor,
            store: Arc::new(store),
            pending: Arc::new(Mutex::new(PendingCommit::default())),
            scheduler: Arc::new(Scheduler::new(config.max_concurrent_steps)),
            config,
            desired: Mutex::new(HashMap::new()),
            records: Mutex::new(records),
            secrets: Mutex::new(BTreeMap::new()),
            pools: Arc::new(Mutex::new(HashMap::new())),
            claims: Mutex::new(HashMap::new()),
            standalone: Mutex::new(BTreeSet::new()),
            addresses,
            tasks: Mutex::new(Vec::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            started: tokio::time::Instant::now(),
            metrics: Arc::new(OperatorMetrics::new()),
            steps: std::sync::atomic::AtomicU64::new(1),
            correlation_prefix: random_u32(),
            credentials_salt,
        }))
    }

    /// Takes (new versions of) the objects in `manifests`: Secrets, IPPools (restored
    /// from the store when it has them), IPClaims (claimed at once when no host owns
    /// them; a host's own claim is claimed when it is provisioned) and hosts.
    pub fn apply(self: &Arc<Self>, manifests: &Manifests) -> Result<(), String> {
        self.put_secrets(manifests.secrets.values().cloned());
        let saved: HashMap<String, ipam::PoolState> = self
            .store
            .pools()
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        for p in &manifests.pools {
            let key = p.metadata.key();
            if lock(&self.pools).contains_key(&key) {
                continue;
            }
            let pool = match saved.get(&key) {
                Some(state) => ipam::IpPool::restore(&p.spec, state)
                    .map_err(|e| format!("IPPool {key}: {e}"))?,
                None => ipam::IpPool::new(&p.spec).map_err(|e| format!("IPPool {key}: {e}"))?,
            };
            lock(&self.pools).insert(key, (p.clone(), pool));
        }
        for claim in &manifests.claims {
            if let Some(host) = claim.owner_host() {
                lock(&self.claims).insert(host, claim.clone());
                continue;
            }
            let (pool_key, name) = claim.pool_and_name()?;
            let mut pools = lock(&self.pools);
            let (_, pool) = pools.get_mut(&pool_key).ok_or_else(|| {
                format!(
                    "IPClaim {}: IPPool {pool_key} not found",
                    claim.metadata.key()
                )
            })?;
            pool.claim(&name)
                .map_err(|e| format!("IPClaim {}: {e}", claim.metadata.key()))?;
            lock(&self.standalone).insert((pool_key, name));
        }
        for bmh in &manifests.hosts {
            self.put_host(bmh.clone());
        }
        Ok(())
    }

    /// Takes an IPPool as the API server holds it, with the claims its `IPAddress`
    /// objects record (claim name, address), replacing what this operator had of it: in
    /// kube mode the API server's objects are the record of who holds what. An
    /// allocation that does not fit the spec (the pool changed under it) is logged and
    /// left out; its object's name still keeps the address from being handed out again.
    pub fn put_pool(
        &self,
        object: IpPoolObject,
        allocations: &[(String, std::net::IpAddr)],
    ) -> Result<(), String> {
        let key = object.metadata.key();
        let mut pool = ipam::IpPool::new(&object.spec).map_err(|e| format!("IPPool {key}: {e}"))?;
        for (claim, address) in allocations {
            if let Err(e) = pool.claim_address(claim, *address) {
                tracing::warn!(pool = %key, %claim, %address, error = %e, "an allocation that does not fit its pool");
            }
        }
        lock(&self.pools).insert(key, (object, pool));
        Ok(())
    }

    /// The spec of a pool this operator has, to tell whether a watched one changed.
    pub fn pool_spec(&self, key: &str) -> Option<ipam::IpPoolSpec> {
        lock(&self.pools).get(key).map(|(o, _)| o.spec.clone())
    }

    /// The claims a pool holds (claim name, address), in no particular order.
    pub fn pool_allocations(&self, key: &str) -> Vec<(String, std::net::IpAddr)> {
        lock(&self.pools)
            .get(key)
            .map(|(_, p)| p.allocations().map(|(c, a)| (c.to_string(), a)).collect())
            .unwrap_or_default()
    }

    /// Takes (a new version of) an IPClaim a host owns: the host's address comes from
    /// it. Of a claim no host owns, served already (its `IPAddress` is in
    /// [`Operator::put_pool`]'s allocations), the name is noted as taken in its pool.
    pub fn put_claim(&self, claim: IpClaimObject) {
        if let Some(host) = claim.owner_host() {
            lock(&self.claims).insert(host, claim);
        } else if let Ok(name) = claim.pool_and_name() {
            // Another controller's claim, served already: its name is taken in the pool.
            lock(&self.standalone).insert(name);
        }
    }

    /// Claims an address from the IPPool `pool` (`namespace/name`) for a claim no host
    /// owns (`claim`, its name in the pool: a Cluster API provider's per-machine claim),
    /// records it in the address registry and commits the pool before returning it.
    /// Claiming again returns the same address; the pool's `preAllocations` for the
    /// claim's name are honoured. `claim_object` is the IPClaim object when one exists
    /// (in kube mode: another controller's, which the registry's IPAddress names as its
    /// owner); `owner` is the object the address is for, named in logs and errors.
    pub async fn claim_pool_address(
        &self,
        pool: &str,
        claim: &str,
        claim_object: Option<&IpClaimObject>,
        owner: &ObjectMeta,
    ) -> Result<ipam::IpAddress, String> {
        lock(&self.standalone).insert((pool.to_string(), claim.to_string()));
        let address = self
            .record_claim(pool, claim, claim_object, owner)
            .await
            .map_err(|e| match e {
                ClaimFailure::Refused(e) | ClaimFailure::Unavailable(e) => e,
            })?;
        self.commit(None, &[pool.to_string()])
            .await
            .map_err(|e| e.to_string())?;
        Ok(address)
    }

    /// Takes an address for `claim` in `pool` and records it in the address registry
    /// (the caller commits the pool). An address the registry says another claim holds
    /// is marked as that claim's and the next one is tried.
    async fn record_claim(
        &self,
        pool_key: &str,
        name: &str,
        claim_object: Option<&IpClaimObject>,
        owner: &ObjectMeta,
    ) -> Result<ipam::IpAddress, ClaimFailure> {
        // However many replicas or IPAM controllers race for one pool, each lost race
        // marks one more address taken; this many in a row is something else.
        const MOST_TAKEN: usize = 64;
        for _ in 0..MOST_TAKEN {
            let (address, object, object_name, held_before) = {
                let mut pools = lock(&self.pools);
                let (object, pool) = pools
                    .get_mut(pool_key)
                    .ok_or_else(|| ClaimFailure::Refused(format!("IPPool {pool_key} not found")))?;
                let held_before = pool.get(name).is_some();
                let address = pool
                    .claim(name)
                    .map_err(|e| ClaimFailure::Refused(format!("IPPool {pool_key}: {e}")))?;
                let object_name = pool.address_name(address.address);
                (address, object.clone(), object_name, held_before)
            };
            let allocation = Allocation {
                pool: &object,
                claim: name,
                claim_object,
                host: owner,
                address: &address,
                name: &object_name,
            };
            match self.addresses.record(&allocation).await {
                Ok(Recorded::Ours) => return Ok(address),
                Ok(Recorded::TakenBy(holder)) => {
                    tracing::info!(owner = %owner.key(), pool = %pool_key, address = %address.address, %holder, "address taken by another claim; trying the next");
                    if let Some((_, pool)) = lock(&self.pools).get_mut(pool_key) {
                        pool.release(name);
                        if let Err(e) = pool.claim_address(&holder, address.address) {
                            tracing::warn!(pool = %pool_key, %holder, error = %e, "cannot mark the address taken");
                        }
                    }
                }
                Err(e) => {
                    // A claim that held nothing before holds nothing now.
                    if !held_before {
                        if let Some((_, pool)) = lock(&self.pools).get_mut(pool_key) {
                            pool.release(name);
                        }
                    }
                    return Err(ClaimFailure::Unavailable(format!(
                        "recording {object_name} for claim {name}: {e}"
                    )));
                }
            }
        }
        Err(ClaimFailure::Unavailable(format!(
            "IPPool {pool_key}: {MOST_TAKEN} addresses in a row were taken by other claims"
        )))
    }

    /// Releases the address of a claim no host owns ([`Operator::claim_pool_address`]):
    /// forgotten by the registry, released in the pool, the pool committed. Releasing
    /// what is not held succeeds.
    pub async fn release_pool_address(
        &self,
        pool: &str,
        claim: &str,
        owner: &ObjectMeta,
    ) -> Result<(), String> {
        let found = lock(&self.pools).get(pool).and_then(|(o, p)| {
            p.get(claim)
                .map(|a| (o.clone(), p.address_name(a.address), a))
        });
        if let Some((object, object_name, address)) = found {
            let allocation = Allocation {
                pool: &object,
                claim,
                claim_object: None,
                host: owner,
                address: &address,
                name: &object_name,
            };
            self.addresses
                .forget(&allocation)
                .await
                .map_err(|e| format!("forgetting {object_name} of claim {claim}: {e}"))?;
            if let Some((_, p)) = lock(&self.pools).get_mut(pool) {
                p.release(claim);
            }
            self.commit(None, &[pool.to_string()])
                .await
                .map_err(|e| e.to_string())?;
        }
        lock(&self.standalone).remove(&(pool.to_string(), claim.to_string()));
        Ok(())
    }

    /// Commits other controllers' objects (`(key, Some(json))` writes, `(key, None)`
    /// removes) to the operator's store, in its group commit, and returns once they are
    /// on disk: a Cluster API provider in the same process keeps its machines here.
    pub async fn save_objects(
        &self,
        objects: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), String> {
        self.commit_with(None, objects, &[])
            .await
            .map_err(|e| e.to_string())
    }

    /// The objects [`Operator::save_objects`] committed whose key starts with `prefix`.
    pub fn saved_objects(&self, prefix: &str) -> Result<Vec<(String, Value)>, String> {
        self.store.objects(prefix).map_err(|e| e.to_string())
    }

    /// The BareMetalHost as last put (its spec as desired), if the operator has it.
    pub fn host(&self, key: &str) -> Option<BareMetalHost> {
        lock(&self.desired).get(key).map(|d| d.bmh.clone())
    }

    /// Every BareMetalHost as last put, with whether it is being deleted.
    pub fn hosts(&self) -> Vec<(BareMetalHost, bool)> {
        lock(&self.desired)
            .values()
            .map(|d| (d.bmh.clone(), d.deleting))
            .collect()
    }

    /// The IPClaims hosts own, as last taken.
    pub fn host_claims(&self) -> Vec<IpClaimObject> {
        lock(&self.claims).values().cloned().collect()
    }

    /// Forgets the IPClaim of a host (it was deleted).
    pub fn remove_claim(&self, claim: &IpClaimObject) {
        if let Some(host) = claim.owner_host() {
            let mut claims = lock(&self.claims);
            if claims
                .get(&host)
                .is_some_and(|c| c.metadata.name == claim.metadata.name)
            {
                claims.remove(&host);
            }
        }
    }

    /// Creates or updates a host and asks for a step. Returns whether it was new or
    /// different.
    pub fn put_host(&self, bmh: BareMetalHost) -> bool {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let key = bmh.metadata.key();
        let changed = {
            let mut desired = lock(&self.desired);
            match desired.get_mut(&key) {
                Some(d) if d.bmh == bmh => false,
                Some(d) => {
                    d.bmh = bmh;
                    true
                }
                None => {
                    desired.insert(
                        key.clone(),
                        Desired {
                            bmh,
                            deleting: false,
                        },
                    );
                    true
                }
            }
        };
        if changed {
            self.scheduler.wake(&key);
        }
        changed
    }

    /// Marks a host deleted (as `kubectl delete` sets the deletion timestamp).
    pub fn delete_host(&self, key: &str) {
        if let Some(d) = lock(&self.desired).get_mut(key) {
            if !d.deleting {
                d.deleting = true;
                self.scheduler.wake(key);
            }
        }
    }

    /// Adds or replaces Secrets (the kube controller reads them from the API server).
    pub fn put_secrets(&self, secrets: impl IntoIterator<Item = Secret>) {
        let mut map = lock(&self.secrets);
        for s in secrets {
            map.insert(s.metadata.key(), s);
        }
    }

    /// A Secret as last put (`namespace/name`).
    pub fn secret(&self, key: &str) -> Option<Secret> {
        lock(&self.secrets).get(key).cloned()
    }

    /// Schedules the step of every host in this process (embedded mode): one step per
    /// host at a time, requeues in a delay queue, and a step for a host whenever the
    /// conductor's change feed says its node changed. Runs until [`Operator::stop`].
    pub fn run_embedded(self: &Arc<Self>) {
        let tasks = self.scheduler.clone().start(self.clone());
        lock(&self.tasks).extend(tasks);
        for key in lock(&self.desired).keys() {
            self.scheduler.wake(key);
        }
    }

    /// Stops every task at once, wherever it is (as a killed process would), and waits
    /// until they are gone, so the store can be opened again.
    pub async fn stop(self: Arc<Self>) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.scheduler.stop().await;
        // Saves already handed to the committer land before the store is let go.
        for _ in 0..10_000 {
            if !lock(&self.pending).committing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The metrics in the OpenMetrics text format: the counters, and the hosts by state
    /// and the pools' usage now.
    pub fn encode_metrics(&self) -> String {
        let hosts: Vec<(String, String)> = lock(&self.records)
            .values()
            .map(|r| {
                (
                    r.host.state.kind().name().to_string(),
                    r.host.operational_status.name().to_string(),
                )
            })
            .collect();
        let pools: Vec<(String, u64, u64)> = lock(&self.pools)
            .iter()
            .map(|(name, (_, pool))| {
                (
                    name.clone(),
                    pool.len() as u64,
                    u64::try_from(pool.free_count()).unwrap_or(u64::MAX),
                )
            })
            .collect();
        self.metrics.encode(hosts, pools)
    }

    /// The conductor this operator drives.
    pub fn conductor(&self) -> &Arc<dyn ConductorApi> {
        &self.conductor
    }

    /// Takes up a host this operator has no record of from the `status` the API server
    /// holds for it ([`crate::render::record_from_status`]): written by another replica,
    /// or by an earlier run whose store is gone. The node is read for its inventory and
    /// deploy count. `Ok(false)` when there is a record already or the status has no
    /// state; an error when the conductor cannot be read (the caller tries again).
    pub async fn adopt(&self, key: &str, status: &Value) -> Result<bool, String> {
        if lock(&self.records).contains_key(key) {
            return Ok(false);
        }
        let node = self
            .read_node(key)
            .await
            .map_err(|e| format!("reading the node of {key}: {e}"))?;
        let inventory = match &node {
            Some(n) if n.inspected => Some(
                self.conductor
                    .inventory(key)
                    .await
                    .map_err(|e| format!("reading the inventory of {key}: {e}"))?,
            ),
            _ => None,
        };
        let deploys = node.as_ref().map(|n| n.deploy_attempts);
        let Some(mut record) = crate::render::record_from_status(status, inventory, deploys) else {
            return Ok(false);
        };
        // An inspection whose node has an inventory was asked by the one before: a node
        // back in `manageable` finished it rather than waits for it.
        if record.host.pending == Some(Pending::Inspect)
            && node.as_ref().is_some_and(|n| n.inspected)
        {
            record.sent = true;
        }
        self.save(key, Some(&record), &[])
            .await
            .map_err(|e| format!("saving {key}: {e}"))?;
        tracing::info!(host = %key, state = %record.host.state, "host taken up from its status");
        Ok(true)
    }

    /// Whether the operator knows this host (it was put and not yet finalized).
    pub fn knows(&self, key: &str) -> bool {
        lock(&self.desired).contains_key(key)
    }

    /// The record of a host.
    pub fn record(&self, key: &str) -> Option<HostRecord> {
        lock(&self.records).get(key).cloned()
    }

    /// Every host record, by key.
    pub fn records(&self) -> BTreeMap<String, HostRecord> {
        lock(&self.records)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Runs `f` over the host records in place (no copy: for checks that look at every
    /// host often, where [`Operator::records`] would clone them all each time).
    pub fn with_records<T>(&self, f: impl FnOnce(&HashMap<String, HostRecord>) -> T) -> T {
        f(&lock(&self.records))
    }

    /// Whether the host's object is gone (deleted and finalized).
    pub fn is_gone(&self, key: &str) -> bool {
        !lock(&self.records).contains_key(key) && !lock(&self.desired).contains_key(key)
    }

    /// Hosts in `state`, for progress displays.
    pub fn count_in(&self, state: HostStateKind) -> usize {
        lock(&self.records)
            .values()
            .filter(|r| r.host.state.kind() == state)
            .count()
    }

    /// Time since the operator started (the clock of its state machines).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn credentials(&self, bmh: &BareMetalHost) -> Result<Credentials, CredentialsProblem> {
        let secrets = lock(&self.secrets);
        let secret = secrets
            .get(&format!(
                "{}/{}",
                bmh.metadata.namespace(),
                bmh.spec.bmc.credentials_name
            ))
            .ok_or(CredentialsProblem::Missing)?;
        let user = secret
            .get("username")
            .map_err(CredentialsProblem::Invalid)?;
        let pass = secret
            .get("password")
            .map_err(CredentialsProblem::Invalid)?;
        match (user, pass) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                Credentials::new(u, p).map_err(|e| CredentialsProblem::Invalid(e.to_string()))
            }
            _ => Err(CredentialsProblem::Invalid(format!(
                "secret {} needs a username and a password",
                secret.metadata.key()
            ))),
        }
    }

    /// The version of these credentials: a digest under the store's secret salt, which
    /// changes exactly when the credentials do.
    fn credentials_version(&self, credentials: &Credentials) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.credentials_salt);
        h.update(credentials.username().as_bytes());
        h.update([0]);
        h.update(credentials.password().expose().as_bytes());
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn spec_of(&self, key: &str) -> Option<(HostSpec, BareMetalHost)> {
        let (bmh, deleting) = {
            let desired = lock(&self.desired);
            let d = desired.get(key)?;
            (d.bmh.clone(), d.deleting)
        };
        let credentials = match self.credentials(&bmh) {
            Ok(c) => CredentialsState::Present {
                version: self.credentials_version(&c),
            },
            Err(CredentialsProblem::Missing) => CredentialsState::Missing,
            Err(CredentialsProblem::Invalid(why)) => CredentialsState::Invalid(why),
        };
        let image = bmh.spec.image.clone().filter(|i| !i.url.is_empty());
        let inspection = match bmh.metadata.annotations.get(crate::manifests::INSPECT) {
            Some(v) if v == "disabled" => InspectionMode::Disabled,
            _ => self.config.inspection,
        };
        let spec = HostSpec {
            has_bmc_details: !bmh.spec.bmc.address.is_empty()
                || !bmh.spec.bmc.credentials_name.is_empty(),
            credentials,
            online: bmh.spec.online,
            image,
            externally_provisioned: bmh.spec.externally_provisioned,
            inspection,
            inspect_requested: false,
            preparation: None,
            paused: bmh.paused(),
            detached: bmh.detached().then(provision_fsm::Detach::default),
            reboot: bmh.reboot_requested().then_some(RebootMode::Soft),
            disable_power_off: false,
            deleting,
        };
        Some((spec, bmh))
    }

    /// The value of a Secret the host references (`userData`, `networkData`,
    /// `metaData`), under `key` or `value`.
    fn referenced(
        &self,
        bmh: &BareMetalHost,
        r: Option<&crate::manifests::SecretRef>,
        key: &str,
    ) -> Option<String> {
        let r = r?;
        let secrets = lock(&self.secrets);
        let s = secrets.get(&format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(bmh.metadata.namespace()),
            r.name
        ))?;
        s.get(key)
            .ok()
            .flatten()
            .or_else(|| s.get("value").ok().flatten())
    }

    /// The `networkData` of the Secret `preprovisioningNetworkDataName` names, parsed.
    fn preprovisioning_network_data(&self, bmh: &BareMetalHost) -> Option<Value> {
        let name = bmh.spec.preprovisioning_network_data_name.as_ref()?;
        let secret = crate::manifests::SecretRef {
            name: name.clone(),
            namespace: None,
        };
        Self::structured(&self.referenced(bmh, Some(&secret), "networkData")?)
    }

    /// JSON or YAML text as a value.
    fn structured(text: &str) -> Option<Value> {
        serde_json::from_str(text).ok().or_else(|| {
            serde_norway::from_str::<serde_norway::Value>(text)
                .ok()
                .and_then(|v| serde_json::to_value(v).ok())
        })
    }

    /// The config drive: user data from its Secret; `networkData` from the host's Secret
    /// when it names one, else the pre-provisioning network data (as Metal3 passes it on),
    /// else rendered from the address it holds; `metaData` with the host's identity plus
    /// what its Secret adds.
    fn config_drive(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        address: Option<&ipam::IpAddress>,
        mac: Option<&str>,
    ) -> ConfigDrive {
        let network_data = match self.referenced(bmh, bmh.spec.network_data.as_ref(), "networkData")
        {
            Some(text) => Self::structured(&text),
            None => self
                .preprovisioning_network_data(bmh)
                .or_else(|| address.map(|a| network_data(a, mac))),
        };
        let mut meta = json!({
            "uuid": key,
            "name": bmh.metadata.name,
            "local-hostname": bmh.metadata.name,
        });
        if let Some(text) = self.referenced(bmh, bmh.spec.meta_data.as_ref(), "metaData") {
            if let (Some(Value::Object(extra)), Some(m)) =
                (Self::structured(&text), meta.as_object_mut())
            {
                m.extend(extra);
            }
        }
        ConfigDrive {
            user_data: self.referenced(bmh, bmh.spec.user_data.as_ref(), "userData"),
            network_data,
            meta_data: meta,
        }
    }

    /// Commits the host's record (or its removal) with the current state of `pools`, and
    /// returns once that is on disk. Saves from many hosts share a commit: the first
    /// starts a committer task that commits whatever has arrived, batch after batch.
    async fn save(
        &self,
        key: &str,
        record: Option<&HostRecord>,
        pools: &[String],
    ) -> Result<(), StoreError> {
        self.commit(Some((key, record.map(encode).transpose()?)), pools)
            .await?;
        let mut records = lock(&self.records);
        match record {
            Some(r) => {
                records.insert(key.to_string(), r.clone());
            }
            None => {
                records.remove(key);
            }
        }
        Ok(())
    }

    /// Commits a host entry (if any) with the current state of `pools`, through the
    /// group commit, and returns once that is on disk.
    async fn commit(
        &self,
        host: Option<(&str, Option<Vec<u8>>)>,
        pools: &[String],
    ) -> Result<(), StoreError> {
        self.commit_with(host, Vec::new(), pools).await
    }

    /// [`Operator::commit`] with other controllers' objects in the same transaction.
    async fn commit_with(
        &self,
        host: Option<(&str, Option<Vec<u8>>)>,
        objects: Vec<(String, Option<Vec<u8>>)>,
        pools: &[String],
    ) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let start = {
            let mut p = lock(&self.pending);
            if let Some((key, value)) = host {
                p.hosts.push((key.to_string(), value));
            }
            p.objects.extend(objects);
            p.pools.extend(pools.iter().cloned());
            p.waiters.push(done);
            !std::mem::replace(&mut p.committing, true)
        };
        if start {
            tokio::spawn(commit_pending(
                self.store.clone(),
                self.pending.clone(),
                self.pools.clone(),
            ));
        }
        committed
            .await
            .map_err(|_| StoreError::new("the committer stopped"))?
            .map_err(StoreError::new)
    }

    /// The claim a host's address comes from: the pool, the claim's name in it, and the
    /// IPClaim object the host owns (none for its own claim on its namespace's only
    /// pool, named after the host). `None` when the host has neither, or names its
    /// network data Secret and no IPClaim.
    fn host_claim(
        &self,
        key: &str,
        bmh: &BareMetalHost,
    ) -> Result<Option<(String, String, Option<IpClaimObject>)>, String> {
        if let Some(c) = lock(&self.claims).get(key).cloned() {
            let (pool, name) = c.pool_and_name()?;
            return Ok(Some((pool, name, Some(c))));
        }
        // A host given its network data (a Cluster API provider's rendering, with the
        // addresses it claimed) takes no address of its own: it would go unused.
        if bmh.spec.network_data.is_some() {
            return Ok(None);
        }
        let namespace = bmh.metadata.namespace();
        let prefix = format!("{namespace}/");
        let pool = {
            let pools = lock(&self.pools);
            let mut in_namespace = pools.keys().filter(|k| k.starts_with(&prefix));
            match (in_namespace.next(), in_namespace.next()) {
                (Some(only), None) => only.clone(),
                _ => return Ok(None),
            }
        };
        let name = bmh.metadata.name.clone();
        // An IPClaim of the host's name that is not the host's would hand its address to
        // both.
        let named_by_another = lock(&self.standalone).contains(&(pool.clone(), name.clone()))
            || lock(&self.claims).iter().any(|(host, c)| {
                host != key && c.metadata.namespace() == namespace && c.metadata.name == name
            });
        if named_by_another {
            return Err(format!(
                "IPPool {pool}: the host's own claim would be named {name}, which is another IPClaim's name"
            ));
        }
        Ok(Some((pool, name, None)))
    }

    /// Claims the host's address (recorded in the registry, then committed, before it is
    /// used): from the IPClaim the host owns, or, with none, from its namespace's only
    /// IPPool. `None` when neither exists. An address the registry says another claim
    /// holds is marked as that claim's and the next one is tried.
    async fn claim_address(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
    ) -> Result<Option<ipam::IpAddress>, ClaimFailure> {
        if let Some(held) = &record.address {
            return Ok(Some(held.address.clone()));
        }
        let Some((pool_key, name, claim_object)) =
            self.host_claim(key, bmh).map_err(ClaimFailure::Refused)?
        else {
            return Ok(None);
        };
        let address = self
            .record_claim(&pool_key, &name, claim_object.as_ref(), &bmh.metadata)
            .await?;
        record.address = Some(HeldAddress {
            pool: pool_key.clone(),
            claim: name,
            address: address.clone(),
        });
        self.save(key, Some(record), &[pool_key])
            .await
            .map_err(|e| ClaimFailure::Unavailable(e.to_string()))?;
        Ok(Some(address))
    }

    /// Gives the host's address back: forgotten by the registry first, then released in
    /// its pool. Returns the pool to commit, if any; an error when the registry cannot
    /// be reached (the step is tried again; the address stays the host's meanwhile).
    async fn release_address(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
    ) -> Result<Option<String>, String> {
        let held = match record.address.clone() {
            Some(held) => held,
            // Taken up from a status (another replica claimed it): the pool, restored from
            // the registry, knows the claim's address.
            None => {
                let Some((pool, name, _)) = self.host_claim(key, bmh).ok().flatten() else {
                    return Ok(None);
                };
                let address = lock(&self.pools).get(&pool).and_then(|(_, p)| p.get(&name));
                let Some(address) = address else {
                    return Ok(None);
                };
                HeldAddress {
                    pool,
                    claim: name,
                    address,
                }
            }
        };
        let found = lock(&self.pools)
            .get(&held.pool)
            .map(|(o, p)| (o.clone(), p.address_name(held.address.address)));
        if let Some((object, object_name)) = found {
            let claim_object = lock(&self.claims).get(key).cloned();
            let allocation = Allocation {
                pool: &object,
                claim: &held.claim,
                claim_object: claim_object.as_ref(),
                host: &bmh.metadata,
                address: &held.address,
                name: &object_name,
            };
            self.addresses
                .forget(&allocation)
                .await
                .map_err(|e| format!("forgetting {object_name} of claim {}: {e}", held.claim))?;
            if let Some((_, pool)) = lock(&self.pools).get_mut(&held.pool) {
                pool.release(&held.claim);
            }
        }
        record.address = None;
        Ok(Some(held.pool))
    }

    /// What the node says about the action the host waits for.
    fn observe(&self, pending: Pending, record: &HostRecord, node: Option<&NodeView>) -> Seen {
        use NodeState as N;
        let image = match &record.host.state {
            HostState::Provisioning { image } => Some(image),
            _ => None,
        };
        match (pending, node) {
            (Pending::Register, None) => Seen::Send(Call::Register),
            (Pending::Register, Some(n)) => match n.state {
                N::Verifying => Seen::Waiting,
                // The credentials sent last were refused (maybe by an earlier run of the
                // operator): not sent again, or the BMC may lock the account.
                N::Enroll if n.credentials_refused && record.tried_credentials.is_some() => {
                    Seen::Event(HostEvent::CredentialsRefused {
                        credentials_version: record.tried_credentials.clone().unwrap_or_default(),
                        message: format!(
                            "the BMC refused the credentials; they are not tried again until \
                             the credentials secret changes ({})",
                            n.last_error.as_deref().unwrap_or("authentication failed")
                        ),
                    })
                }
                N::Enroll if !record.sent => Seen::Send(Call::Register),
                N::Enroll => Seen::Event(HostEvent::RegistrationFailed(
                    n.last_error
                        .clone()
                        .unwrap_or_else(|| "the BMC could not be verified".into()),
                )),
                _ => Seen::Event(HostEvent::Registered {
                    credentials_version: record
                        .tried_credentials
                        .clone()
                        .unwrap_or_else(|| "1".into()),
                }),
            },
            (Pending::Inspect, None) => {
                Seen::Event(HostEvent::InspectionFailed("the node is gone".into()))
            }
            (Pending::Inspect, Some(n)) => match n.state {
                N::Inspecting | N::InspectWait => Seen::Waiting,
                N::Manageable | N::InspectFailed if !record.sent => Seen::Send(Call::Inspect),
                N::InspectFailed => {
                    Seen::Event(HostEvent::InspectionFailed(failure(n, "inspection")))
                }
                N::Enroll | N::Verifying => Seen::Event(HostEvent::InspectionFailed(format!(
                    "the node is {}",
                    n.state
                ))),
                _ => Seen::Event(HostEvent::InspectionDone),
            },
            (Pending::Provision, None) => {
                Seen::Event(HostEvent::ProvisioningFailed("the node is gone".into()))
            }
            (Pending::Provision, Some(n)) => match n.state {
                N::Manageable => Seen::Send(Call::Provide),
                N::Available => Seen::Send(Call::Deploy),
                N::DeployFailed if record.deploy_accepted != Some(n.deploy_attempts) => {
                    Seen::Send(Call::Deploy)
                }
                N::Active if image.is_some_and(|i| n.deployed_image.as_deref() == Some(&i.url)) => {
                    Seen::Event(HostEvent::ProvisioningDone)
                }
                N::Active => Seen::Event(HostEvent::ProvisioningFailed(format!(
                    "the node is active with {:?}",
                    n.deployed_image
                ))),
                s if conductor_busy(s) => Seen::Waiting,
                _ => Seen::Event(HostEvent::ProvisioningFailed(failure(n, "provisioning"))),
            },
            (Pending::Deprovision, None) => Seen::Event(HostEvent::DeprovisioningDone),
            (Pending::Deprovision, Some(n)) => match n.state {
                N::Active | N::DeployFailed | N::Error => Seen::Send(Call::Undeploy),
                N::WaitCallBack => Seen::Send(Call::Abort),
                s if conductor_busy(s) => Seen::Waiting,
                N::CleanFailed => Seen::Event(HostEvent::DeprovisioningFailed(failure(
                    n,
                    "deprovisioning",
                ))),
                _ => Seen::Event(HostEvent::DeprovisioningDone),
            },
            (Pending::Power | Pending::Reboot, _) if !record.sent => Seen::Redo,
            (Pending::Power | Pending::Reboot, None) => {
                Seen::Event(HostEvent::PowerFailed("the node is gone".into()))
            }
            (pending @ (Pending::Power | Pending::Reboot), Some(n)) => {
                if n.target_power.is_some()
                    || record
                        .power_accepted
                        .is_some_and(|asked| n.power_requests < asked)
                {
                    Seen::Waiting
                } else if let Some(e) = &n.power_error {
                    Seen::Event(HostEvent::PowerFailed(e.clone()))
                } else if pending == Pending::Reboot {
                    Seen::Event(HostEvent::RebootDone)
                } else {
                    Seen::Event(HostEvent::PowerChanged {
                        on: n.power_on.unwrap_or(false),
                    })
                }
            }
            // Actions finished within a step leave their result in `next_event`; one
            // without a result after a restart is carried out again.
            (_, _) if !record.sent => Seen::Redo,
            _ => Seen::Waiting,
        }
    }

    /// One step of the host `key`: see the module's docs. Errors of the conductor or the
    /// store are logged and retried after [`OperatorConfig::poll`].
    pub async fn reconcile(&self, key: &str) -> Reconciled {
        self.metrics.reconciled(key);
        let cid = self.correlation_id();
        let span = tracing::info_span!("reconcile", host = %key, correlation_id = %cid);
        let started = tokio::time::Instant::now();
        let step = tracing::Instrument::instrument(self.step(key, &cid), span).await;
        self.metrics.reconcile_took(started.elapsed());
        step
    }

    /// A new correlation id: this operator's random prefix and a count of its steps.
    fn correlation_id(&self) -> String {
        let n = self
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{:08x}-{n}", self.correlation_prefix)
    }

    async fn step(&self, key: &str, cid: &str) -> Reconciled {
        let Some((spec, bmh)) = self.spec_of(key) else {
            return Reconciled::gone();
        };
        let mut record = self.record(key).unwrap_or_default();
        // Tried again soon from the record as it was: nothing of this step is kept.
        let retry = || {
            self.metrics.reconcile_failed();
            Reconciled {
                record: self.record(key),
                requeue_after: Some(self.config.poll),
                waiting_for_node: false,
            }
        };
        // The node is read when the step needs it: to see the result of the action the
        // host waits for, or (below) to start one on it.
        let mut node = None;
        if record.next_event.is_none() && record.host.pending.is_some() {
            match self.read_node(key).await {
                Ok(n) => node = Some(n),
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "cannot read the host's node");
                    return retry();
                }
            }
        }
        let node_read = node.is_some();
        let node: Option<NodeView> = node.flatten();
        // What the host waits for, as the node shows it.
        let mut call = None;
        let mut redo = false;
        let event = match (record.next_event.take(), record.host.pending) {
            (Some(e), _) => e,
            (None, None) => HostEvent::Reconcile,
            (None, Some(pending)) => match self.observe(pending, &record, node.as_ref()) {
                Seen::Event(e) => e,
                Seen::Waiting => HostEvent::Reconcile,
                Seen::Send(c) => {
                    call = Some((pending, c));
                    HostEvent::Reconcile
                }
                Seen::Redo => {
                    redo = true;
                    HostEvent::Reconcile
                }
            },
        };
        if event == HostEvent::InspectionDone && node.as_ref().is_some_and(|n| n.inspected) {
            match self.conductor.inventory(key).await {
                Ok(inventory) => record.hardware = Some(inventory),
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "cannot read the inventory");
                    return retry();
                }
            }
        }
        let pending_before = record.host.pending;
        let ctx = StepContext {
            now: self.uptime(),
            capacity_available: true,
            jitter: 0.5,
            max_provisioning_retries: self.config.max_provisioning_retries,
        };
        let before = record.host.state.kind();
        let had_error = record.host.error.is_some();
        let step = record.host.step(&spec, &event, &ctx);
        record.host = step.host;
        let now = unix_now();
        let after = record.host.state.kind();
        if let (false, Some(e)) = (had_error, &record.host.error) {
            self.metrics.host_error(e.kind.name());
        }
        if before != after {
            self.metrics.state_changed(before.name(), after.name());
            if let Some((op, took)) = record.operations.transition(before, after, now) {
                self.metrics.operation_took(op, took);
            }
            let spent = now - record.state_since;
            match record.phases.iter_mut().find(|(n, _)| n == before.name()) {
                Some(p) => p.1 += spent,
                None => record.phases.push((before.name().to_string(), spent)),
            }
            record.state_since = now;
        }
        record.last_updated = now;
        record.next_wake = step
            .wake_at
            .map(|t| now + t.saturating_sub(self.uptime()).as_secs_f64());
        let mut actions = step.actions;
        if record.host.pending != pending_before || !actions.is_empty() {
            // A new action: its request is still to be sent.
            record.sent = false;
            if record.host.pending != Some(Pending::Provision) {
                record.deploy_accepted = None;
            }
        }
        if redo && record.host.pending == pending_before {
            if let Some(action) = pending_before.and_then(|p| resume_action(p, &bmh)) {
                tracing::info!(host = %key, ?action, "carrying out an action again after a restart");
                actions.push(action);
            }
        }
        let mut pools = Vec::new();
        // The agent is not running on an available or provisioned host: its address goes
        // back to the pool (claimed again before the agent boots next).
        let agent_done = matches!(
            record.host.state.kind(),
            HostStateKind::Available
                | HostStateKind::Provisioned
                | HostStateKind::ExternallyProvisioned
        );
        if agent_done && record.agent_address.is_some() {
            if let Err(e) = self.release_agent_address(key, &bmh, &mut record).await {
                tracing::warn!(host = %key, error = %e, "cannot release the agent's address");
                return retry();
            }
        }
        if event == HostEvent::DeprovisioningDone {
            match self.release_address(key, &bmh, &mut record).await {
                Ok(pool) => pools.extend(pool),
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "cannot release the host's address");
                    return retry();
                }
            }
        }
        let stored_time = lock(&self.records)
            .get(key)
            .filter(|s| persisted_eq(s, &record, false))
            .map(|s| s.last_updated);
        match stored_time {
            // Nothing to commit: the time of the last change stays.
            Some(t) if pools.is_empty() => record.last_updated = t,
            _ => {
                if let Err(e) = self.save(key, Some(&record), &pools).await {
                    tracing::error!(host = %key, error = %e, "cannot save the host's status");
                    return retry();
                }
            }
        }

        // Committed: now act.
        let mut node = node;
        let needs_node = actions.iter().any(|a| started_from_node(a).is_some());
        if needs_node && !node_read {
            match self.read_node(key).await {
                Ok(n) => node = n,
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "cannot read the host's node");
                    record.sent = false;
                    lock(&self.records).insert(key.to_string(), record.clone());
                    return Reconciled {
                        record: Some(record),
                        requeue_after: Some(self.config.poll),
                        waiting_for_node: false,
                    };
                }
            }
        }
        if let Some((pending, c)) = call.filter(|(p, _)| record.host.pending == Some(*p)) {
            let request = Request {
                call: c,
                pending,
                correlation: cid,
            };
            self.send(key, &bmh, &mut record, node.as_ref(), request)
                .await;
        }
        // An action that could not start now (the conductor down) is tried again soon:
        // nothing else would step the host.
        let mut retry_soon = false;
        for action in actions {
            match self
                .start(key, &bmh, &mut record, node.as_ref(), action, cid)
                .await
            {
                Started::Done(event) => {
                    record.next_event = Some(event);
                    break;
                }
                Started::Gone => {
                    if let Err(e) = self.release_agent_address(key, &bmh, &mut record).await {
                        tracing::warn!(host = %key, error = %e, "cannot release the agent's address");
                        return retry();
                    }
                    let pool = match self.release_address(key, &bmh, &mut record).await {
                        Ok(pool) => pool,
                        Err(e) => {
                            tracing::warn!(host = %key, error = %e, "cannot release the host's address");
                            return retry();
                        }
                    };
                    if let Err(e) = self
                        .save(key, None, &pool.into_iter().collect::<Vec<_>>())
                        .await
                    {
                        tracing::error!(host = %key, error = %e, "cannot remove the host's record");
                        return retry();
                    }
                    lock(&self.desired).remove(key);
                    return Reconciled::gone();
                }
                Started::Running => {}
                Started::Retry => {
                    record.sent = false;
                    retry_soon = true;
                }
            }
        }
        let committed = lock(&self.records)
            .get(key)
            .is_some_and(|s| persisted_eq(s, &record, true));
        if committed {
            // Only what is kept in memory changed (`sent`, a result for the next step).
            lock(&self.records).insert(key.to_string(), record.clone());
        } else if let Err(e) = self.save(key, Some(&record), &[]).await {
            tracing::error!(host = %key, error = %e, "cannot save the host's status");
            return retry();
        }
        let waiting_for_node = record.next_event.is_none()
            && record.sent
            && record.host.pending.is_some_and(node_backed);
        let wake = step.wake_at.map(|t| t.saturating_sub(self.uptime()));
        let requeue_after = if record.next_event.is_some() {
            Some(Duration::ZERO)
        } else if retry_soon || (record.host.pending.is_some() && !record.sent) {
            Some(self.config.poll)
        } else if waiting_for_node {
            Some(wake.map_or(self.config.idle_recheck, |w| {
                w.min(self.config.idle_recheck)
            }))
        } else {
            wake
        };
        Reconciled {
            record: Some(record),
            requeue_after,
            waiting_for_node,
        }
    }

    /// The host's node; `None` when the conductor has none.
    async fn read_node(&self, key: &str) -> Result<Option<NodeView>, ApiError> {
        match self.conductor.node(key).await {
            Ok(n) => Ok(Some(n)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends the conductor the request that moves a node-backed action on.
    async fn send(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
        node: Option<&NodeView>,
        request: Request<'_>,
    ) {
        let Request {
            call,
            pending,
            correlation: cid,
        } = request;
        // Every action that boots the agent first makes sure its network is the host's.
        let boots_agent = matches!(
            call,
            Call::Inspect | Call::Provide | Call::Undeploy | Call::Deploy
        );
        let agent_ready = if boots_agent {
            self.ensure_agent_network(key, bmh, record).await
        } else {
            Ok(())
        };
        let result: Result<(), SendError> = match (agent_ready, call) {
            (Err(e), _) => Err(e),
            (Ok(()), Call::Register) => self.register(key, bmh, record, node, cid).await,
            (Ok(()), Call::Inspect) => self
                .conductor
                .provision(
                    key,
                    Verb::Inspect {
                        in_band: self.config.inspection == InspectionMode::Agent,
                    },
                    Some(cid),
                )
                .await
                .map(drop)
                .map_err(SendError::from),
            (Ok(()), Call::Provide) => self.verb(key, Verb::Provide, cid).await,
            (Ok(()), Call::Undeploy) => self.verb(key, Verb::Undeploy, cid).await,
            (Ok(()), Call::Abort) => self.verb(key, Verb::Abort, cid).await,
            (Ok(()), Call::Deploy) => self.deploy(key, bmh, record, cid).await,
        };
        match result {
            Ok(()) => record.sent = true,
            // The conductor down (restarting, say): nothing failed, the request goes
            // again on the next step.
            Err(SendError::Unavailable(e)) => {
                tracing::warn!(host = %key, ?call, error = %e, "conductor unavailable; the request goes again");
            }
            Err(SendError::Refused(e)) => {
                tracing::warn!(host = %key, ?call, error = %e, "request to the conductor failed");
                // A refused deploy is the provisioning's failure; anything else is tried
                // again on the next step.
                if call == Call::Deploy && pending == Pending::Provision {
                    record.next_event = Some(HostEvent::ProvisioningFailed(e));
                } else if call == Call::Register {
                    record.next_event = Some(HostEvent::RegistrationFailed(e));
                }
            }
        }
    }

    async fn verb(&self, key: &str, verb: Verb, cid: &str) -> Result<(), SendError> {
        self.conductor
            .provision(key, verb, Some(cid))
            .await
            .map(drop)
            .map_err(SendError::from)
    }

    /// The node's spec from the host: BMC, credentials, boot MAC, and the agent's
    /// network data (from the Secret `preprovisioningNetworkDataName` names, or rendered
    /// from the address claimed for the agent).
    async fn node_spec(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
    ) -> Result<NodeSpec, SendError> {
        let refused = |e: String| SendError::Refused(e);
        let credentials = self.credentials(bmh).map_err(|e| refused(e.to_string()))?;
        let address =
            BmcAddress::parse(&bmh.spec.bmc.address).map_err(|e| refused(e.to_string()))?;
        let preprovisioning_network_data = match &bmh.spec.preprovisioning_network_data_name {
            Some(name) => Some(self.preprovisioning_network_data(bmh).ok_or_else(|| {
                refused(format!(
                    "preprovisioningNetworkDataName names Secret {}/{name}, which is not there \
                     or holds no networkData in JSON or YAML",
                    bmh.metadata.namespace()
                ))
            })?),
            None => self
                .claim_agent_address(key, bmh, record)
                .await?
                .map(|a| network_data(&a, bmh.spec.boot_mac_address.as_deref())),
        };
        Ok(NodeSpec {
            name: key.to_string(),
            address,
            credentials,
            disable_certificate_verification: bmh.spec.bmc.disable_certificate_verification,
            boot_mac: bmh.spec.boot_mac_address.clone(),
            automated_clean: bmh.spec.automated_cleaning_mode.as_deref() != Some("disabled"),
            preprovisioning_network_data,
            legacy_boot: bmh
                .spec
                .boot_mode
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("legacy")),
        })
    }

    /// Creates (or updates) the node and starts its verification.
    async fn register(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
        node: Option<&NodeView>,
        cid: &str,
    ) -> Result<(), SendError> {
        let spec = self.node_spec(key, bmh, record).await?;
        let view = self.conductor.create_node(spec).await?;
        let state = node.map_or(view.state, |n| n.state);
        if state == NodeState::Enroll || view.state == NodeState::Enroll {
            self.verb(key, Verb::Manage, cid).await?;
        }
        Ok(())
    }

    /// Before an action that boots the agent: a host whose agent network comes from a
    /// pool and holds no address now (it was released when the host became available)
    /// claims one and gives the node its network data, so the agent never boots with an
    /// address another host may hold.
    async fn ensure_agent_network(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
    ) -> Result<(), SendError> {
        if agent_pool(bmh).is_none() || record.agent_address.is_some() {
            return Ok(());
        }
        let spec = self.node_spec(key, bmh, record).await?;
        self.conductor.create_node(spec).await?;
        Ok(())
    }

    /// Claims the agent's address from the pool the host's annotation names (claim
    /// `<host>-agent`, recorded and committed before use); the one held when it holds
    /// one. `None` when the host names no pool.
    async fn claim_agent_address(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
    ) -> Result<Option<ipam::IpAddress>, SendError> {
        let Some(pool) = agent_pool(bmh) else {
            return Ok(None);
        };
        if let Some(held) = &record.agent_address {
            return Ok(Some(held.address.clone()));
        }
        let claim = agent_claim(bmh);
        let address = self
            .claim_pool_address(&pool, &claim, None, &bmh.metadata)
            .await
            .map_err(SendError::Unavailable)?;
        record.agent_address = Some(HeldAddress {
            pool,
            claim,
            address: address.clone(),
        });
        self.save(key, Some(record), &[])
            .await
            .map_err(|e| SendError::Unavailable(e.to_string()))?;
        tracing::info!(host = %key, address = %address.address, "agent network address claimed");
        Ok(Some(address))
    }

    /// Gives the agent's address back (the host is available, provisioned or gone).
    async fn release_agent_address(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
    ) -> Result<(), String> {
        let Some(held) = record.agent_address.clone() else {
            return Ok(());
        };
        // The record lets go first: a record holding an address the pool has given away
        // would hand it to the agent again; a pool holding one the record forgot gives
        // the same address back to this host's next claim.
        record.agent_address = None;
        self.save(key, Some(record), &[])
            .await
            .map_err(|e| e.to_string())?;
        self.release_pool_address(&held.pool, &held.claim, &bmh.metadata)
            .await?;
        tracing::info!(host = %key, address = %held.address.address, "agent network address released");
        Ok(())
    }

    /// Claims the address and asks for the deploy.
    async fn deploy(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
        cid: &str,
    ) -> Result<(), SendError> {
        let HostState::Provisioning { image } = record.host.state.clone() else {
            return Err(SendError::Refused("not provisioning".into()));
        };
        let address = self
            .claim_address(key, bmh, record)
            .await
            .map_err(|e| match e {
                ClaimFailure::Refused(why) => SendError::Refused(why),
                ClaimFailure::Unavailable(why) => SendError::Unavailable(why),
            })?;
        let mac = bmh.spec.boot_mac_address.clone().or_else(|| {
            record.hardware.as_ref().and_then(|h| {
                h.nics
                    .iter()
                    .find_map(|n| n.mac.as_ref().map(ToString::to_string))
            })
        });
        let config = DeployConfig {
            config_drive: self.config_drive(key, bmh, address.as_ref(), mac.as_deref()),
            image,
            legacy_boot: bmh
                .spec
                .boot_mode
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("legacy")),
            root_device_hints: bmh.spec.root_device_hints.clone().map(Box::new),
        };
        let view = self
            .conductor
            .provision(key, Verb::Deploy(config), Some(cid))
            .await?;
        record.deploy_accepted = Some(view.deploy_attempts);
        Ok(())
    }

    /// Starts an action the host machine asked for.
    async fn start(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
        node: Option<&NodeView>,
        action: HostAction,
        cid: &str,
    ) -> Started {
        if let HostAction::Register {
            credentials_version,
        } = &action
        {
            record.tried_credentials = Some(credentials_version.clone());
        }
        if let Some(p) = started_from_node(&action) {
            // Registering always sends its node (the BMC details may have changed); the
            // others send the request that fits the node as it is now (what the next
            // step would send).
            let c = match (p, self.observe(p, record, node)) {
                (Pending::Register, _) => Some(Call::Register),
                (_, Seen::Send(c)) => Some(c),
                _ => None,
            };
            match c {
                Some(c) => {
                    let request = Request {
                        call: c,
                        pending: p,
                        correlation: cid,
                    };
                    self.send(key, bmh, record, node, request).await
                }
                // Nothing to send: the node already shows the result, read next step.
                None => record.sent = true,
            }
            return match record.next_event.take() {
                Some(e) => Started::Done(e),
                None if record.sent => Started::Running,
                None => Started::Retry,
            };
        }
        match action {
            HostAction::Prepare { .. } => Started::Done(HostEvent::PreparationDone),
            HostAction::PowerOn | HostAction::PowerOff | HostAction::Reboot { .. } => {
                let request = match action {
                    HostAction::PowerOn => PowerRequest::On,
                    HostAction::PowerOff => PowerRequest::Off,
                    _ => PowerRequest::Reboot,
                };
                if request != PowerRequest::Reboot {
                    self.metrics.power_change(key, request == PowerRequest::On);
                }
                // Started on the conductor; the node shows when it is done.
                match self.conductor.set_power(key, request, Some(cid)).await {
                    Ok(view) => {
                        record.power_accepted = Some(view.power_requests);
                        record.sent = true;
                        Started::Running
                    }
                    Err(e @ ApiError::NotFound(_)) => {
                        Started::Done(HostEvent::PowerFailed(e.to_string()))
                    }
                    Err(e) => {
                        tracing::warn!(host = %key, error = %e, "power change not started yet");
                        Started::Retry
                    }
                }
            }
            HostAction::ClearRebootAnnotation | HostAction::ClearInspectAnnotation => {
                if let Some(d) = lock(&self.desired).get_mut(key) {
                    d.bmh.metadata.annotations.retain(|k, _| {
                        !(k == crate::manifests::REBOOT
                            || k.starts_with("reboot.metal3.io/")
                            || (matches!(action, HostAction::ClearInspectAnnotation)
                                && k == crate::manifests::INSPECT))
                    });
                }
                // The machine reads the annotation's absence on its next step.
                Started::Done(HostEvent::Reconcile)
            }
            HostAction::Detach => Started::Done(HostEvent::Detached),
            HostAction::DeleteNode => match self.conductor.delete_node(key).await {
                Ok(()) | Err(ApiError::NotFound(_)) => Started::Done(HostEvent::NodeDeleted),
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "node not deleted yet");
                    Started::Retry
                }
            },
            HostAction::RemoveFinalizer => Started::Gone,
            HostAction::Register { .. }
            | HostAction::Inspect { .. }
            | HostAction::Provision { .. }
            | HostAction::Deprovision => Started::Running,
        }
    }
}

/// Whether `a` and `b` hold the same persisted state (`last_updated` compared only when
/// `with_time`): nothing to commit. Every field is named, so a new one must be placed.
/// The IPPool (`namespace/name`) the host's agent network comes from, if it names one.
fn agent_pool(bmh: &BareMetalHost) -> Option<String> {
    bmh.metadata
        .annotations
        .get(crate::manifests::PREPROVISIONING_POOL)
        .filter(|p| !p.is_empty())
        .map(|p| format!("{}/{p}", bmh.metadata.namespace()))
}

/// The name of the claim of a host's agent address in its pool.
fn agent_claim(bmh: &BareMetalHost) -> String {
    format!("{}-agent", bmh.metadata.name)
}

fn persisted_eq(a: &HostRecord, b: &HostRecord, with_time: bool) -> bool {
    let HostRecord {
        host,
        hardware,
        address,
        agent_address,
        phases,
        state_since,
        last_updated,
        next_wake,
        deploy_accepted,
        operations,
        tried_credentials,
        // Kept in memory only.
        power_accepted: _,
        next_event: _,
        sent: _,
    } = a;
    *host == b.host
        && *hardware == b.hardware
        && *address == b.address
        && *agent_address == b.agent_address
        && *phases == b.phases
        && *state_since == b.state_since
        && (!with_time || *last_updated == b.last_updated)
        && *next_wake == b.next_wake
        && *deploy_accepted == b.deploy_accepted
        && *operations == b.operations
        && *tried_credentials == b.tried_credentials
}

/// Whether an action's result is read from the conductor's node (it runs there).
fn node_backed(pending: Pending) -> bool {
    matches!(
        pending,
        Pending::Register
            | Pending::Inspect
            | Pending::Provision
            | Pending::Deprovision
            | Pending::Power
            | Pending::Reboot
    )
}

/// The pending state of an action that runs on the node and needs the node read to
/// start (the request to send depends on its state).
fn started_from_node(action: &HostAction) -> Option<Pending> {
    match action {
        HostAction::Register { .. } => Some(Pending::Register),
        HostAction::Inspect { .. } => Some(Pending::Inspect),
        HostAction::Provision { .. } => Some(Pending::Provision),
        HostAction::Deprovision => Some(Pending::Deprovision),
        _ => None,
    }
}

/// How starting an action went.
enum Started {
    /// It finished within the step: its result, for the next step.
    Done(HostEvent),
    /// It runs on the conductor: the node will show its result.
    Running,
    /// It could not start: the next step tries again.
    Retry,
    /// The host is gone (its finalizer removed).
    Gone,
}

/// The action a pending state stands for, to carry out again after a restart.
fn resume_action(pending: Pending, bmh: &BareMetalHost) -> Option<HostAction> {
    Some(match pending {
        Pending::Power if bmh.spec.online => HostAction::PowerOn,
        Pending::Power => HostAction::PowerOff,
        Pending::Reboot => HostAction::Reboot {
            mode: RebootMode::Soft,
        },
        Pending::ClearReboot => HostAction::ClearRebootAnnotation,
        Pending::Detach => HostAction::Detach,
        Pending::DeleteNode => HostAction::DeleteNode,
        Pending::Prepare => HostAction::Prepare { settings: None },
        Pending::Register | Pending::Inspect | Pending::Provision | Pending::Deprovision => {
            return None;
        }
    })
}

/// A request to the conductor for a node-backed action, under the step's correlation id.
struct Request<'a> {
    call: Call,
    pending: Pending,
    correlation: &'a str,
}

/// A random number from the standard library's per-process hash keys (no dependency for
/// an id that only has to differ between processes).
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u32
}
