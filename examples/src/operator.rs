//! The example operator (baremetal-operator's role): reconciles each BareMetalHost with
//! provision-fsm's host machine, carries out its actions through the conductor's API,
//! claims addresses from ipam and renders them into `networkData`, and keeps every host's
//! status, in Metal3's layout, in the embedded [`Store`].
//!
//! Each reconcile step commits the host record (and any pool change) before its actions
//! run, and every action is idempotent against the conductor (create-or-update, verbs
//! only from the states they apply to, an active node with the wanted image counts as
//! provisioned), so a killed operator that restarts carries on without provisioning a
//! host twice or handing out an address twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use bmc_core::{Credentials, HardwareInventory};
use provision_fsm::{
    CredentialsState, Host, HostAction, HostEvent, HostSpec, HostStateKind, Image, InspectionMode,
    NodeState, Pending, RebootMode, StepContext,
};

use crate::api::ConductorApi;
use crate::conductor::{ApiError, DeployConfig, NodeSpec, NodeView, Verb};
use crate::manifests::{BareMetalHost, IpPoolObject, Manifests, Secret};
use crate::store::{Change, Store, StoreError, encode};

/// How the operator runs.
#[derive(Debug, Clone, Copy)]
pub struct OperatorConfig {
    /// How often a waiting action looks at the conductor's node.
    pub poll: Duration,
    /// Provisioning attempts before giving up (0 = unlimited).
    pub max_provisioning_retries: u32,
    /// How inspection runs when a host does not say (Metal3's default: the agent).
    pub inspection: InspectionMode,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            poll: Duration::from_millis(500),
            max_provisioning_retries: 5,
            inspection: InspectionMode::Agent,
        }
    }
}

/// What the operator keeps per host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host machine's state (provisioning state, errors, pending action).
    pub host: Host,
    /// Hardware details from inspection.
    pub hardware: Option<HardwareInventory>,
    /// The pool and address claimed for the host.
    pub address: Option<(String, ipam::IpAddress)>,
    /// Seconds spent in each provisioning state, in order of first entry.
    pub phases: Vec<(String, f64)>,
    /// When the current state was entered (seconds since the Unix epoch).
    pub state_since: f64,
    /// `status.lastUpdated` (seconds since the Unix epoch).
    pub last_updated: f64,
    /// When the host machine next wants a reconcile (seconds since the Unix epoch), if it
    /// is waiting for a time rather than an event.
    #[serde(default)]
    pub next_wake: Option<f64>,
}

impl HostRecord {
    fn new() -> HostRecord {
        let now = unix_now();
        HostRecord {
            host: Host::new(),
            hardware: None,
            address: None,
            phases: Vec::new(),
            state_since: now,
            last_updated: now,
            next_wake: None,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RFC 3339 for `status.lastUpdated`.
pub fn rfc3339(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The `hardware` part of a BareMetalHost status, in Metal3's layout.
pub fn hardware_details(inv: &HardwareInventory) -> Value {
    let cpu = inv.cpus.first();
    json!({
        "systemVendor": {
            "manufacturer": inv.system.manufacturer,
            "productName": inv.system.model,
            "serialNumber": inv.system.serial_number,
        },
        "cpu": {
            "arch": cpu.and_then(|c| c.architecture.clone()).unwrap_or_default(),
            "model": cpu.and_then(|c| c.model.clone()).unwrap_or_default(),
            "count": inv.cpus.iter().map(|c| c.threads.or(c.cores).unwrap_or(1)).sum::<u32>(),
            "clockMegahertz": cpu.and_then(|c| c.max_speed_mhz).unwrap_or(0),
        },
        "ramMebibytes": inv.total_memory_mib.unwrap_or_else(|| inv.memory.iter().filter_map(|m| m.capacity_mib).sum()),
        "nics": inv.nics.iter().map(|n| json!({
            "name": n.id,
            "mac": n.mac.as_ref().map(ToString::to_string).unwrap_or_default(),
            "speedGbps": n.speed_mbps.map(|s| s / 1000).unwrap_or(0),
        })).collect::<Vec<_>>(),
        "storage": inv.disks.iter().map(|d| json!({
            "name": d.id,
            "model": d.model,
            "serialNumber": d.serial_number,
            "sizeBytes": d.size_bytes.unwrap_or(0),
            "rotational": matches!(d.kind, bmc_core::DiskKind::Hdd),
        })).collect::<Vec<_>>(),
        "firmware": {"bios": {"version": inv.firmware.iter().find(|f| f.component == "BIOS").map(|f| f.version.clone()).unwrap_or_default()}},
        "hostname": inv.system.hostname,
    })
}

/// The OpenStack `network_data.json` for one address on the boot NIC, as CAPM3's
/// Metal3DataTemplate renders it.
pub fn network_data(address: &ipam::IpAddress, mac: Option<&str>) -> Value {
    let (kind, netmask) = match address.address {
        std::net::IpAddr::V4(_) => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(address.prefix.min(32)))
                .unwrap_or(0);
            ("ipv4", std::net::Ipv4Addr::from(bits).to_string())
        }
        std::net::IpAddr::V6(_) => ("ipv6", format!("/{}", address.prefix)),
    };
    let routes: Vec<Value> = address
        .gateway
        .iter()
        .map(|g| {
            if kind == "ipv4" {
                json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": g.to_string()})
            } else {
                json!({"network": "::", "netmask": "::", "gateway": g.to_string()})
            }
        })
        .collect();
    json!({
        "links": [{"id": "enp1s0", "type": "phy", "ethernet_mac_address": mac.unwrap_or_default()}],
        "networks": [{
            "id": "provisioning", "type": kind, "link": "enp1s0",
            "ip_address": address.address.to_string(), "netmask": netmask, "routes": routes,
        }],
        "services": address.dns_servers.iter().map(|d| json!({"type": "dns", "address": d.to_string()})).collect::<Vec<_>>(),
    })
}

/// A host's `status` in Metal3's layout.
pub fn status_json(record: &HostRecord) -> Value {
    let h = &record.host;
    let image = match &h.state {
        provision_fsm::HostState::Provisioning { image }
        | provision_fsm::HostState::Provisioned { image } => serde_json::to_value(image).ok(),
        _ => None,
    };
    json!({
        "provisioning": {"state": h.state.kind().name(), "image": image},
        "operationalStatus": h.operational_status.name(),
        "errorType": h.error.as_ref().map(|e| e.kind.name()).unwrap_or_default(),
        "errorMessage": h.error.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
        "errorCount": h.error_count,
        "poweredOn": h.powered_on.unwrap_or(false),
        "hardware": record.hardware.as_ref().map(hardware_details),
        "lastUpdated": rfc3339(record.last_updated),
    })
}

struct Desired {
    bmh: BareMetalHost,
    deleting: bool,
    changed: Arc<Notify>,
    running: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
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
    pools: Arc<Mutex<HashMap<String, (IpPoolObject, ipam::IpPool)>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stopped: std::sync::atomic::AtomicBool,
    started: tokio::time::Instant,
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
        let (hosts, pool_names, waiters) = {
            let mut p = lock(&pending);
            if p.waiters.is_empty() {
                p.committing = false;
                return;
            }
            (
                std::mem::take(&mut p.hosts),
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
                tokio::task::spawn_blocking(move || store.commit(Change { hosts, pools }))
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

/// Outcome of carrying out one action.
enum Done {
    Event(HostEvent),
    Gone,
    Nothing,
}

impl Operator {
    /// Opens the store and loads what a previous run left.
    pub fn open(
        conductor: Arc<dyn ConductorApi>,
        store: Store,
        config: OperatorConfig,
    ) -> Result<Arc<Operator>, StoreError> {
        let records: HashMap<String, HostRecord> = store.hosts()?.into_iter().collect();
        Ok(Arc::new(Operator {
            conductor,
            store: Arc::new(store),
            pending: Arc::new(Mutex::new(PendingCommit::default())),
            config,
            desired: Mutex::new(HashMap::new()),
            records: Mutex::new(records),
            secrets: Mutex::new(BTreeMap::new()),
            pools: Arc::new(Mutex::new(HashMap::new())),
            tasks: Mutex::new(Vec::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            started: tokio::time::Instant::now(),
        }))
    }

    /// Takes (new versions of) the objects in `manifests` and reconciles every host.
    pub fn apply(self: &Arc<Self>, manifests: &Manifests) -> Result<(), String> {
        lock(&self.secrets).extend(manifests.secrets.clone());
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
            let pool_key = format!(
                "{}/{}",
                claim
                    .spec
                    .pool
                    .namespace
                    .as_deref()
                    .unwrap_or(claim.metadata.namespace()),
                claim.spec.pool.name
            );
            let mut pools = lock(&self.pools);
            if let Some((_, pool)) = pools.get_mut(&pool_key) {
                pool.claim(&claim.metadata.key())
                    .map_err(|e| format!("IPClaim {}: {e}", claim.metadata.key()))?;
            }
        }
        for bmh in &manifests.hosts {
            self.put_host(bmh.clone());
        }
        Ok(())
    }

    /// Creates or updates a host and wakes its reconciler. Returns whether it was new
    /// or different.
    pub fn put_host(self: &Arc<Self>, bmh: BareMetalHost) -> bool {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let key = bmh.metadata.key();
        let (start, changed) = {
            let mut desired = lock(&self.desired);
            let mut new = false;
            let d = desired.entry(key.clone()).or_insert_with(|| {
                new = true;
                Desired {
                    bmh: bmh.clone(),
                    deleting: false,
                    changed: Arc::new(Notify::new()),
                    running: false,
                }
            });
            let changed = new || d.bmh != bmh;
            if changed {
                d.bmh = bmh;
                d.changed.notify_one();
            }
            let start = !d.running;
            d.running = true;
            (start, changed)
        };
        if start {
            let me = self.clone();
            let task = tokio::spawn(async move { me.reconcile(key).await });
            lock(&self.tasks).push(task);
        }
        changed
    }

    /// Stops every reconciler at once, wherever it is (as a killed process would), and
    /// waits until they are gone, so the store can be opened again.
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
        // Saves already handed to the committer land before the store is let go.
        for _ in 0..10_000 {
            if !lock(&self.pending).committing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Adds or replaces Secrets (the kube controller reads them from the API server).
    pub fn put_secrets(&self, secrets: impl IntoIterator<Item = Secret>) {
        let mut map = lock(&self.secrets);
        for s in secrets {
            map.insert(s.metadata.key(), s);
        }
    }

    /// Whether the operator knows this host (it was put and not yet finalized).
    pub fn knows(&self, key: &str) -> bool {
        lock(&self.desired).contains_key(key)
    }

    /// Marks a host deleted (as `kubectl delete` sets the deletion timestamp).
    pub fn delete_host(&self, key: &str) {
        if let Some(d) = lock(&self.desired).get_mut(key) {
            d.deleting = true;
            d.changed.notify_one();
        }
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

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Time since the operator started (the clock of its state machines).
    pub fn uptime(&self) -> Duration {
        self.now()
    }

    fn spec_of(&self, key: &str) -> Option<(HostSpec, BareMetalHost)> {
        let desired = lock(&self.desired);
        let d = desired.get(key)?;
        let bmh = d.bmh.clone();
        let credentials = match self.credentials(&bmh) {
            Ok(_) => CredentialsState::Present {
                version: "1".to_string(),
            },
            Err(CredentialsProblem::Missing) => CredentialsState::Missing,
            Err(CredentialsProblem::Invalid(why)) => CredentialsState::Invalid(why),
        };
        let image = bmh
            .spec
            .image
            .as_ref()
            .filter(|i| !i.url.is_empty())
            .map(|i| Image {
                url: i.url.clone(),
                checksum: i.checksum.clone(),
                checksum_type: i.checksum_type.clone(),
                format: i.format.clone(),
            });
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
            deleting: d.deleting,
        };
        Some((spec, bmh))
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

    fn user_data(&self, bmh: &BareMetalHost) -> Option<String> {
        self.referenced(bmh, bmh.spec.user_data.as_ref(), "userData")
    }

    /// `networkData` from the host's Secret when it names one (JSON or YAML), else
    /// rendered from the address claimed from ipam.
    fn network_data(
        &self,
        bmh: &BareMetalHost,
        address: Option<&ipam::IpAddress>,
        mac: Option<&str>,
    ) -> Option<Value> {
        if let Some(text) = self.referenced(bmh, bmh.spec.network_data.as_ref(), "networkData") {
            let parsed: Option<Value> = serde_json::from_str(&text).ok().or_else(|| {
                serde_norway::from_str::<serde_norway::Value>(&text)
                    .ok()
                    .and_then(|v| serde_json::to_value(v).ok())
            });
            return parsed;
        }
        address.map(|a| network_data(a, mac))
    }

    /// `metaData`: the host's identity, plus what its `metaData` Secret adds.
    fn meta_data(&self, key: &str, bmh: &BareMetalHost) -> Value {
        let mut meta = json!({
            "uuid": key,
            "name": bmh.metadata.name,
            "local-hostname": bmh.metadata.name,
        });
        if let Some(text) = self.referenced(bmh, bmh.spec.meta_data.as_ref(), "metaData") {
            let extra: Option<Value> = serde_json::from_str(&text).ok().or_else(|| {
                serde_norway::from_str::<serde_norway::Value>(&text)
                    .ok()
                    .and_then(|v| serde_json::to_value(v).ok())
            });
            if let (Some(Value::Object(extra)), Some(m)) = (extra, meta.as_object_mut()) {
                m.extend(extra);
            }
        }
        meta
    }

    /// Commits a host's record (and pool changes) and publishes it.
    /// Commits the host's record (or its removal) with the current state of `pools`, and
    /// returns once that is on disk. Saves from many hosts share a commit: the first
    /// starts a committer task that commits whatever has arrived, batch after batch.
    async fn save(
        &self,
        key: &str,
        record: Option<&HostRecord>,
        pools: &[String],
    ) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let start = {
            let mut p = lock(&self.pending);
            p.hosts
                .push((key.to_string(), record.map(encode).transpose()?));
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
            .map_err(StoreError::new)?;
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

    async fn reconcile(self: Arc<Self>, key: String) {
        let mut record = self.record(&key).unwrap_or_else(HostRecord::new);
        // A pending action from before a restart: carry it out again (idempotently).
        let mut event = HostEvent::Reconcile;
        let mut resumed = self.resume(&key, &mut record).await;
        loop {
            if let Some(e) = resumed.take() {
                event = e;
            }
            let Some((spec, bmh)) = self.spec_of(&key) else {
                return;
            };
            let ctx = StepContext {
                now: self.now(),
                capacity_available: true,
                jitter: 0.5,
                max_provisioning_retries: self.config.max_provisioning_retries,
            };
            let before = record.host.state.kind();
            let step = record.host.step(&spec, &event, &ctx);
            record.host = step.host;
            let after = record.host.state.kind();
            let now = unix_now();
            if before != after {
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
                .map(|t| now + t.saturating_sub(self.now()).as_secs_f64());
            if let Err(e) = self.save(&key, Some(&record), &[]).await {
                tracing::error!(host = %key, error = %e, "cannot save the host's status");
            }
            event = HostEvent::Reconcile;
            let mut acted = false;
            for action in step.actions {
                acted = true;
                match self.carry_out(&key, &bmh, &mut record, action).await {
                    Done::Event(e) => {
                        event = e;
                        break;
                    }
                    Done::Gone => {
                        let pool = record.address.as_ref().map(|(p, _)| p.clone());
                        if let Some(p) = &pool {
                            if let Some((_, pool)) = lock(&self.pools).get_mut(p) {
                                pool.release(&key);
                            }
                        }
                        let _ = self
                            .save(&key, None, &pool.into_iter().collect::<Vec<_>>())
                            .await;
                        lock(&self.desired).remove(&key);
                        return;
                    }
                    Done::Nothing => {}
                }
            }
            if acted && event != HostEvent::Reconcile {
                continue;
            }
            let changed = match lock(&self.desired).get(&key) {
                Some(d) => d.changed.clone(),
                None => return,
            };
            let wait = step
                .wake_at
                .map(|t| t.saturating_sub(self.now()))
                .unwrap_or(Duration::from_secs(3600))
                .max(Duration::from_millis(1));
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The result of the action a record was waiting for when the operator stopped.
    async fn resume(&self, key: &str, record: &mut HostRecord) -> Option<HostEvent> {
        let pending = record.host.pending?;
        let (_, bmh) = self.spec_of(key)?;
        let action = match pending {
            Pending::Register => HostAction::Register {
                credentials_version: "1".to_string(),
            },
            Pending::Inspect => HostAction::Inspect {
                mode: self.config.inspection,
            },
            Pending::Provision => match &record.host.state {
                provision_fsm::HostState::Provisioning { image } => HostAction::Provision {
                    image: image.clone(),
                },
                _ => return None,
            },
            Pending::Deprovision => HostAction::Deprovision,
            Pending::Power => {
                if bmh.spec.online {
                    HostAction::PowerOn
                } else {
                    HostAction::PowerOff
                }
            }
            Pending::DeleteNode => HostAction::DeleteNode,
            Pending::Prepare => HostAction::Prepare { settings: None },
            _ => return None,
        };
        tracing::info!(host = %key, ?action, "resuming an action after a restart");
        match self.carry_out(key, &bmh, record, action).await {
            Done::Event(e) => Some(e),
            _ => None,
        }
    }

    async fn wait_node(
        &self,
        name: &str,
        done: impl Fn(NodeState) -> bool,
    ) -> Result<NodeView, ApiError> {
        // Long polls: the conductor answers when the state changes, so a wait costs one
        // request per state passed through, however long it takes.
        let mut view = self.conductor.node(name).await?;
        loop {
            if done(view.state) {
                return Ok(view);
            }
            view = self
                .conductor
                .wait_node(name, view.state, NODE_WAIT)
                .await?;
        }
    }

    async fn carry_out(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
        action: HostAction,
    ) -> Done {
        match action {
            HostAction::Register {
                credentials_version,
            } => Done::Event(match self.register(key, bmh).await {
                Ok(()) => HostEvent::Registered {
                    credentials_version,
                },
                Err(e) => HostEvent::RegistrationFailed(e),
            }),
            HostAction::Inspect { mode } => Done::Event(match self.inspect(key, mode).await {
                Ok(inv) => {
                    record.hardware = inv;
                    HostEvent::InspectionDone
                }
                Err(e) => HostEvent::InspectionFailed(e),
            }),
            HostAction::Prepare { .. } => Done::Event(HostEvent::PreparationDone),
            HostAction::Provision { image } => {
                Done::Event(match self.provision(key, bmh, record, &image).await {
                    Ok(()) => HostEvent::ProvisioningDone,
                    Err(e) => HostEvent::ProvisioningFailed(e),
                })
            }
            HostAction::Deprovision => Done::Event(match self.deprovision(key).await {
                Ok(()) => HostEvent::DeprovisioningDone,
                Err(e) => HostEvent::DeprovisioningFailed(e),
            }),
            HostAction::PowerOn | HostAction::PowerOff => {
                let on = matches!(action, HostAction::PowerOn);
                Done::Event(match self.conductor.set_power(key, on).await {
                    Ok(_) => HostEvent::PowerChanged { on },
                    Err(e) => HostEvent::PowerFailed(e.to_string()),
                })
            }
            HostAction::Reboot { .. } => {
                let off = self.conductor.set_power(key, false).await;
                let on = match off {
                    Ok(_) => self.conductor.set_power(key, true).await,
                    Err(e) => Err(e),
                };
                Done::Event(match on {
                    Ok(_) => HostEvent::RebootDone,
                    Err(e) => HostEvent::PowerFailed(e.to_string()),
                })
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
                Done::Nothing
            }
            HostAction::Detach => Done::Event(HostEvent::Detached),
            HostAction::DeleteNode => match self.conductor.delete_node(key).await {
                Ok(()) | Err(ApiError::NotFound(_)) => Done::Event(HostEvent::NodeDeleted),
                Err(e) => {
                    tracing::warn!(host = %key, error = %e, "node not deleted yet");
                    tokio::time::sleep(self.config.poll).await;
                    Done::Nothing
                }
            },
            HostAction::RemoveFinalizer => Done::Gone,
        }
    }

    async fn register(&self, key: &str, bmh: &BareMetalHost) -> Result<(), String> {
        let credentials = self.credentials(bmh).map_err(|e| e.to_string())?;
        self.conductor
            .create_node(NodeSpec {
                name: key.to_string(),
                address: bmh.spec.bmc.address.clone(),
                credentials,
                disable_certificate_verification: bmh.spec.bmc.disable_certificate_verification,
                boot_mac: bmh.spec.boot_mac_address.clone(),
                automated_clean: bmh.spec.automated_cleaning_mode.as_deref() != Some("disabled"),
            })
            .await
            .map_err(|e| e.to_string())?;
        let node = self.conductor.node(key).await.map_err(|e| e.to_string())?;
        if node.state == NodeState::Enroll {
            self.conductor
                .provision(key, Verb::Manage)
                .await
                .map_err(|e| e.to_string())?;
        }
        let node = self
            .wait_node(key, |s| s != NodeState::Verifying)
            .await
            .map_err(|e| e.to_string())?;
        match node.state {
            NodeState::Enroll => Err(node
                .last_error
                .unwrap_or_else(|| "the BMC could not be verified".to_string())),
            _ => Ok(()),
        }
    }

    async fn inspect(
        &self,
        key: &str,
        mode: InspectionMode,
    ) -> Result<Option<HardwareInventory>, String> {
        let node = self.conductor.node(key).await.map_err(|e| e.to_string())?;
        if matches!(node.state, NodeState::Manageable | NodeState::InspectFailed) {
            self.conductor
                .provision(
                    key,
                    Verb::Inspect {
                        in_band: mode == InspectionMode::Agent,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        let node = self
            .wait_node(key, |s| {
                !matches!(s, NodeState::Inspecting | NodeState::InspectWait)
            })
            .await
            .map_err(|e| e.to_string())?;
        match node.state {
            NodeState::InspectFailed => Err(node
                .last_error
                .unwrap_or_else(|| "inspection failed".to_string())),
            _ => Ok(node.inventory),
        }
    }

    /// Claims the host's address (committed before it is used).
    async fn claim_address(
        &self,
        key: &str,
        record: &mut HostRecord,
    ) -> Result<Option<ipam::IpAddress>, String> {
        if let Some((_, a)) = &record.address {
            return Ok(Some(a.clone()));
        }
        let pool_name = {
            let pools = lock(&self.pools);
            let desired = lock(&self.desired);
            let wanted = desired.get(key).and_then(|d| {
                d.bmh
                    .metadata
                    .annotations
                    .get("metal3-demo/ip-pool")
                    .cloned()
            });
            match wanted {
                Some(w) => Some(w),
                None if pools.len() == 1 => pools.keys().next().cloned(),
                None => None,
            }
        };
        let Some(pool_name) = pool_name else {
            return Ok(None);
        };
        let address = {
            let mut pools = lock(&self.pools);
            let (_, pool) = pools
                .get_mut(&pool_name)
                .ok_or_else(|| format!("IPPool {pool_name} not found"))?;
            pool.claim(key)
                .map_err(|e| format!("IPPool {pool_name}: {e}"))?
        };
        record.address = Some((pool_name.clone(), address.clone()));
        self.save(key, Some(record), &[pool_name])
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(address))
    }

    async fn provision(
        &self,
        key: &str,
        bmh: &BareMetalHost,
        record: &mut HostRecord,
        image: &Image,
    ) -> Result<(), String> {
        let node = self.conductor.node(key).await.map_err(|e| e.to_string())?;
        match node.state {
            // Already done (a restart after the deploy finished): not twice.
            NodeState::Active if node.deployed_image.as_deref() == Some(image.url.as_str()) => {
                return Ok(());
            }
            NodeState::Deploying | NodeState::WaitCallBack => {}
            NodeState::Manageable => {
                self.conductor
                    .provision(key, Verb::Provide)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        let node = self
            .wait_node(key, |s| {
                !matches!(s, NodeState::Cleaning | NodeState::CleanWait)
            })
            .await
            .map_err(|e| e.to_string())?;
        if matches!(node.state, NodeState::Available | NodeState::DeployFailed) {
            let address = self.claim_address(key, record).await?;
            let mac = bmh.spec.boot_mac_address.clone().or_else(|| {
                record.hardware.as_ref().and_then(|h| {
                    h.nics
                        .iter()
                        .find_map(|n| n.mac.as_ref().map(ToString::to_string))
                })
            });
            let config = DeployConfig {
                image_url: image.url.clone(),
                checksum: image.checksum.clone(),
                checksum_type: image.checksum_type.clone(),
                live_iso: image.format.as_deref() == Some("live-iso"),
                user_data: self.user_data(bmh),
                network_data: self.network_data(bmh, address.as_ref(), mac.as_deref()),
                meta_data: self.meta_data(key, bmh),
                legacy_boot: bmh
                    .spec
                    .boot_mode
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case("legacy")),
            };
            self.conductor
                .provision(key, Verb::Deploy(config))
                .await
                .map_err(|e| e.to_string())?;
        } else if !matches!(node.state, NodeState::Deploying | NodeState::WaitCallBack) {
            return Err(format!(
                "node is {}{}",
                node.state,
                node.last_error
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        let node = self
            .wait_node(key, |s| {
                !matches!(s, NodeState::Deploying | NodeState::WaitCallBack)
            })
            .await
            .map_err(|e| e.to_string())?;
        match node.state {
            NodeState::Active => Ok(()),
            _ => Err(node
                .last_error
                .unwrap_or_else(|| format!("deploy ended in {}", node.state))),
        }
    }

    async fn deprovision(&self, key: &str) -> Result<(), String> {
        let node = self.conductor.node(key).await.map_err(|e| e.to_string())?;
        match node.state {
            NodeState::Active | NodeState::DeployFailed | NodeState::Error => {
                self.conductor
                    .provision(key, Verb::Undeploy)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            NodeState::WaitCallBack => {
                self.conductor
                    .provision(key, Verb::Abort)
                    .await
                    .map_err(|e| e.to_string())?;
                return Err("deploy aborted; deprovisioning again".into());
            }
            _ => {}
        }
        let node = self
            .wait_node(key, |s| {
                !matches!(
                    s,
                    NodeState::Deleting | NodeState::Cleaning | NodeState::CleanWait
                )
            })
            .await
            .map_err(|e| e.to_string())?;
        match node.state {
            NodeState::Available | NodeState::Manageable => {
                let released = {
                    let mut pools = lock(&self.pools);
                    self.record(key).and_then(|r| r.address).map(|(p, _)| {
                        if let Some((_, pool)) = pools.get_mut(&p) {
                            pool.release(key);
                        }
                        p
                    })
                };
                if let Some(p) = released {
                    if let Some(mut r) = self.record(key) {
                        r.address = None;
                        let _ = self.save(key, Some(&r), &[p]).await;
                    }
                }
                Ok(())
            }
            other => Err(node
                .last_error
                .unwrap_or_else(|| format!("deprovisioning ended in {other}"))),
        }
    }

    /// Hosts in `state`, for progress displays.
    pub fn count_in(&self, state: HostStateKind) -> usize {
        lock(&self.records)
            .values()
            .filter(|r| r.host.state.kind() == state)
            .count()
    }
}

/// How long one long poll of a node waits for its state to change.
const NODE_WAIT: Duration = Duration::from_secs(30);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_network_data_in_metal3_layout() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000.0), "2026-11-18T11:06:40Z");
        let a = ipam::IpAddress {
            address: "192.168.0.10".parse().unwrap_or_else(|_| unreachable!()),
            prefix: 24,
            gateway: "192.168.0.1".parse().ok(),
            dns_servers: vec!["8.8.8.8".parse().unwrap_or_else(|_| unreachable!())].into(),
        };
        let nd = network_data(&a, Some("52:54:00:00:00:01"));
        assert_eq!(nd["networks"][0]["netmask"], "255.255.255.0");
        assert_eq!(nd["networks"][0]["routes"][0]["gateway"], "192.168.0.1");
        assert_eq!(nd["services"][0]["address"], "8.8.8.8");
        assert_eq!(nd["links"][0]["ethernet_mac_address"], "52:54:00:00:00:01");
    }
}
