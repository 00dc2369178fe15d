//! The provider's shell in embedded mode: the Metal3Machines, their Machines and
//! templates held here, the hosts, Secrets and addresses held by the embedded
//! [`Operator`]. [`Capm3::reconcile`] takes one [`machine::step`] and carries its action
//! out; [`Capm3::run`] steps every machine until stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metal3_operator::Operator;
use metal3_operator::manifests::{
    BareMetalHost, ObjectMeta, ObjectRef, ObjectReference, Secret, SecretRef,
};
use provision_fsm::HostStateKind;

use crate::data::{
    HostNic, Metal3Data, Metal3DataSpec, Metal3DataTemplate, RenderContext, data_name,
    ip_claim_name, lowest_free_index, render_meta_data, render_network_data, secret_names,
};
use crate::machine::{self, DataState, HostView, MachineAction, MachineInput};
use crate::objects::{
    ClusterManifests, HOST_ANNOTATION, Machine, Metal3Machine, Metal3MachineTemplate,
    NODE_REUSE_LABEL,
};

/// The annotation Cluster API puts on an object cloned from a template, naming it.
pub const CLONED_FROM: &str = "cluster.x-k8s.io/cloned-from-name";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    metal3_machine: Metal3Machine,
    deleting: bool,
}

/// What the provider writes into a host, kept so a restarted process gives every host
/// back exactly what it had before the operator steps it (an image the manifest lacks
/// would otherwise read as "deprovision").
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct HostFields {
    consumer_ref: Option<ObjectReference>,
    image: Option<provision_fsm::Image>,
    user_data: Option<SecretRef>,
    meta_data: Option<SecretRef>,
    network_data: Option<SecretRef>,
    online: bool,
    automated_cleaning_mode: Option<String>,
    reuse_for: Option<String>,
}

impl HostFields {
    fn of(bmh: &BareMetalHost) -> HostFields {
        HostFields {
            consumer_ref: bmh.spec.consumer_ref.clone(),
            image: bmh.spec.image.clone(),
            user_data: bmh.spec.user_data.clone(),
            meta_data: bmh.spec.meta_data.clone(),
            network_data: bmh.spec.network_data.clone(),
            online: bmh.spec.online,
            automated_cleaning_mode: bmh.spec.automated_cleaning_mode.clone(),
            reuse_for: bmh.metadata.labels.get(NODE_REUSE_LABEL).cloned(),
        }
    }

    fn apply(&self, bmh: &mut BareMetalHost) {
        bmh.spec.consumer_ref = self.consumer_ref.clone();
        bmh.spec.image = self.image.clone();
        bmh.spec.user_data = self.user_data.clone();
        bmh.spec.meta_data = self.meta_data.clone();
        bmh.spec.network_data = self.network_data.clone();
        bmh.spec.online = self.online;
        bmh.spec.automated_cleaning_mode = self.automated_cleaning_mode.clone();
        match &self.reuse_for {
            Some(g) => {
                bmh.metadata
                    .labels
                    .insert(NODE_REUSE_LABEL.into(), g.clone());
            }
            None => {
                bmh.metadata.labels.remove(NODE_REUSE_LABEL);
            }
        }
    }
}

/// Where the provider's objects live in the operator's store.
const PREFIX: &str = "capm3/";

fn stored(kind: &str, key: &str) -> String {
    format!("{PREFIX}{kind}/{key}")
}

fn encoded<T: serde::Serialize>(
    kind: &str,
    key: &str,
    value: Option<&T>,
) -> (String, Option<Vec<u8>>) {
    (
        stored(kind, key),
        value.and_then(|v| serde_json::to_vec(v).ok()),
    )
}

#[derive(Debug, Default)]
struct State {
    machines: BTreeMap<String, Machine>,
    metal3_machines: BTreeMap<String, Entry>,
    machine_templates: BTreeMap<String, Metal3MachineTemplate>,
    data_templates: BTreeMap<String, Metal3DataTemplate>,
    /// Metal3Data by key.
    datas: BTreeMap<String, Metal3Data>,
    /// The last rendering error of a machine's data.
    data_errors: BTreeMap<String, String>,
}

/// One machine as the demo's table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRow {
    /// The Metal3Machine's key.
    pub metal3_machine: String,
    /// Its host's key, once associated.
    pub host: Option<String>,
    /// `providerID`.
    pub provider_id: Option<String>,
    /// Ready.
    pub ready: bool,
    /// The addresses of its data, by pool.
    pub addresses: BTreeMap<String, std::net::IpAddr>,
    /// A condition that is not true: reason and message.
    pub waiting: Option<(String, String)>,
}

/// The provider over an embedded operator.
pub struct Capm3 {
    operator: Arc<Operator>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Capm3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capm3")
            .field("metal3_machines", &lock(&self.state).metal3_machines.len())
            .finish()
    }
}

impl Capm3 {
    /// A provider over `operator` (which holds the hosts, Secrets and IPPools), with
    /// what an earlier run kept in the operator's store: its machines and data, the
    /// Secrets it rendered, and what it wrote into each host, written into the hosts
    /// again at once. Open it after the operator has its manifests and before it runs
    /// ([`Operator::run_embedded`]), so no host is stepped without its image.
    pub fn open(operator: Arc<Operator>) -> Result<Arc<Capm3>, String> {
        let mut state = State::default();
        let load = |kind: &str| operator.saved_objects(&stored(kind, ""));
        let key_of = |k: &str, kind: &str| k.trim_start_matches(&stored(kind, "")).to_string();
        for (k, v) in load("metal3machine")? {
            let entry: Entry = serde_json::from_value(v).map_err(|e| format!("{k}: {e}"))?;
            state
                .metal3_machines
                .insert(key_of(&k, "metal3machine"), entry);
        }
        for (k, v) in load("machine")? {
            let m: Machine = serde_json::from_value(v).map_err(|e| format!("{k}: {e}"))?;
            state.machines.insert(key_of(&k, "machine"), m);
        }
        for (k, v) in load("data")? {
            let d: Metal3Data = serde_json::from_value(v).map_err(|e| format!("{k}: {e}"))?;
            state.datas.insert(key_of(&k, "data"), d);
        }
        let mut secrets = Vec::new();
        for (k, v) in load("secret")? {
            secrets.push(serde_json::from_value::<Secret>(v).map_err(|e| format!("{k}: {e}"))?);
        }
        operator.put_secrets(secrets);
        for (k, v) in load("host")? {
            let fields: HostFields = serde_json::from_value(v).map_err(|e| format!("{k}: {e}"))?;
            let key = key_of(&k, "host");
            if let Some(mut bmh) = operator.host(&key) {
                fields.apply(&mut bmh);
                operator.put_host(bmh);
            }
        }
        if !state.metal3_machines.is_empty() {
            tracing::info!(
                metal3machines = state.metal3_machines.len(),
                "machines taken up from the store"
            );
        }
        Ok(Arc::new(Capm3 {
            operator,
            state: Mutex::new(state),
        }))
    }

    /// Commits `writes` to the operator's store before the step goes on.
    async fn persist(&self, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), String> {
        self.operator.save_objects(writes).await
    }

    /// The store entries of a Metal3Machine and its Machine as they are now (removals
    /// when gone).
    fn machine_writes(&self, key: &str, machine: Option<&str>) -> Vec<(String, Option<Vec<u8>>)> {
        let s = lock(&self.state);
        let mut out = vec![encoded("metal3machine", key, s.metal3_machines.get(key))];
        if let Some(m) = machine {
            out.push(encoded("machine", m, s.machines.get(m)));
        }
        out
    }

    fn host_write(&self, bmh: &BareMetalHost) -> (String, Option<Vec<u8>>) {
        encoded("host", &bmh.metadata.key(), Some(&HostFields::of(bmh)))
    }

    /// Takes the templates and data templates of `manifests`, and the Machines and
    /// Metal3Machines it has that the store did not.
    pub fn apply(&self, manifests: &ClusterManifests) {
        let mut s = lock(&self.state);
        for t in &manifests.machine_templates {
            s.machine_templates.insert(t.metadata.key(), t.clone());
        }
        for t in &manifests.data_templates {
            s.data_templates.insert(t.metadata.key(), t.clone());
        }
        for m in &manifests.machines {
            s.machines
                .entry(m.metadata.key())
                .or_insert_with(|| m.clone());
        }
        // A machine taken up from the store keeps what it has (its status, its host).
        for m in &manifests.metal3_machines {
            s.metal3_machines
                .entry(m.metadata.key())
                .or_insert_with(|| Entry {
                    metal3_machine: m.clone(),
                    deleting: false,
                });
        }
    }

    /// Adds a Machine and its Metal3Machine (what Cluster API's machine controllers
    /// create when a control plane or deployment scales up), committed before it returns.
    pub async fn put_machine(
        &self,
        machine: Machine,
        metal3_machine: Metal3Machine,
    ) -> Result<(), String> {
        let machine_key = machine.metadata.key();
        let key = metal3_machine.metadata.key();
        {
            let mut s = lock(&self.state);
            s.machines.insert(machine_key.clone(), machine);
            s.metal3_machines.entry(key.clone()).or_insert(Entry {
                metal3_machine,
                deleting: false,
            });
        }
        let writes = self.machine_writes(&key, Some(&machine_key));
        self.persist(writes).await
    }

    /// Marks a Machine's Metal3Machine deleted (a scale-down): it releases its host and
    /// data, and both objects go once that is done.
    pub async fn delete_machine(&self, machine_key: &str) -> Result<(), String> {
        let key = {
            let mut s = lock(&self.state);
            let Some(m) = s.machines.get(machine_key).cloned() else {
                return Ok(());
            };
            let key = infra_key(&m);
            match s.metal3_machines.get_mut(&key) {
                Some(e) => e.deleting = true,
                None => {
                    s.machines.remove(machine_key);
                }
            }
            key
        };
        let writes = self.machine_writes(&key, Some(machine_key));
        self.persist(writes).await
    }

    /// The Metal3Machines' keys.
    pub fn metal3_machines(&self) -> Vec<String> {
        lock(&self.state).metal3_machines.keys().cloned().collect()
    }

    /// A Metal3Machine as it is now.
    pub fn metal3_machine(&self, key: &str) -> Option<Metal3Machine> {
        lock(&self.state)
            .metal3_machines
            .get(key)
            .map(|e| e.metal3_machine.clone())
    }

    /// The Machines.
    pub fn machines(&self) -> Vec<Machine> {
        lock(&self.state).machines.values().cloned().collect()
    }

    /// The Metal3Data objects.
    pub fn datas(&self) -> Vec<Metal3Data> {
        lock(&self.state).datas.values().cloned().collect()
    }

    /// Every machine: its host, provider id, readiness, addresses.
    pub fn rows(&self) -> Vec<MachineRow> {
        let s = lock(&self.state);
        let hosts = self.operator.hosts();
        s.metal3_machines
            .iter()
            .map(|(key, e)| {
                let m3m = &e.metal3_machine;
                let host = hosts
                    .iter()
                    .find(|(h, _)| {
                        h.spec.consumer_ref.as_ref().is_some_and(|c| {
                            c.name == m3m.metadata.name
                                && c.namespace.as_deref() == Some(m3m.metadata.namespace())
                        })
                    })
                    .map(|(h, _)| h.metadata.key());
                let addresses = data_of(&s, m3m)
                    .map(|d| {
                        d.claims
                            .iter()
                            .filter_map(|(pool, claim)| {
                                let pool_key = format!("{}/{pool}", d.metadata.namespace());
                                self.operator
                                    .pool_allocations(&pool_key)
                                    .into_iter()
                                    .find(|(c, _)| c == claim)
                                    .map(|(_, a)| (pool.clone(), a))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let waiting = m3m
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.status != "True")
                    .map(|c| (c.reason.clone(), c.message.clone()));
                MachineRow {
                    metal3_machine: key.clone(),
                    host,
                    provider_id: m3m.spec.provider_id.clone(),
                    ready: m3m.status.ready,
                    addresses,
                    waiting,
                }
            })
            .collect()
    }

    fn host_views(&self) -> Vec<HostView> {
        let records = self.operator.records();
        self.operator
            .hosts()
            .into_iter()
            .map(|(host, deleting)| {
                let record = records.get(&host.metadata.key());
                let nics = nics_of(record);
                HostView {
                    state: record.map_or(HostStateKind::None, |r| r.host.state.kind()),
                    error: record.and_then(|r| r.host.error.as_ref().map(|e| e.message.clone())),
                    deleting,
                    nics,
                    host,
                }
            })
            .collect()
    }

    /// One step of the Metal3Machine `key`, its action carried out. Returns when to step
    /// it again at the latest (`None`: it is gone, or only a change can move it).
    pub async fn reconcile(&self, key: &str) -> Option<Duration> {
        self.reconcile_with(key, &self.host_views()).await
    }

    /// [`Capm3::reconcile`] with the hosts as read for a pass over many machines (read
    /// again by the caller after any step that acted: `Some(Duration::ZERO)`).
    async fn reconcile_with(&self, key: &str, hosts: &[HostView]) -> Option<Duration> {
        let (entry, machine, node_reuse, data) = {
            let s = lock(&self.state);
            let entry = s.metal3_machines.get(key)?.clone();
            let m3m = &entry.metal3_machine;
            let machine = s.machines.values().find(|m| infra_key(m) == *key).cloned();
            let node_reuse = m3m
                .metadata
                .annotations
                .get(CLONED_FROM)
                .and_then(|t| {
                    s.machine_templates
                        .get(&format!("{}/{t}", m3m.metadata.namespace()))
                })
                .is_some_and(|t| t.spec.node_reuse);
            let data = match (m3m.spec.data_template.as_ref(), data_of(&s, m3m)) {
                (_, Some(d)) if d.ready => {
                    let (meta, network) = secret_names(&m3m.metadata.name);
                    let namespace = Some(m3m.metadata.namespace().to_string());
                    DataState::Ready {
                        data: d.metadata.name.clone(),
                        meta_data: SecretRef {
                            name: meta,
                            namespace: namespace.clone(),
                        },
                        network_data: SecretRef {
                            name: network,
                            namespace,
                        },
                    }
                }
                (_, Some(_)) => DataState::Pending(s.data_errors.get(key).cloned()),
                (Some(_), None) if !entry.deleting => {
                    DataState::Pending(s.data_errors.get(key).cloned())
                }
                _ => DataState::NotNeeded,
            };
            (entry, machine, node_reuse, data)
        };
        let step = machine::step(&MachineInput {
            metal3_machine: &entry.metal3_machine,
            machine: machine.as_ref(),
            deleting: entry.deleting,
            node_reuse,
            hosts,
            data: &data,
        });
        if let Some(e) = lock(&self.state).metal3_machines.get_mut(key) {
            e.metal3_machine.status = step.status.clone();
        }
        let Some(action) = step.action else {
            return step.requeue_after;
        };
        tracing::debug!(metal3machine = %key, ?action, "machine step");
        match self
            .act(key, &entry.metal3_machine, machine.as_ref(), action)
            .await
        {
            Ok(true) => Some(Duration::ZERO),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(metal3machine = %key, error = %e, "machine step failed");
                Some(step.requeue_after.unwrap_or(Duration::from_secs(2)))
            }
        }
    }

    /// Carries an action out. `Ok(true)`: step again now; `Ok(false)`: the machine is gone.
    async fn act(
        &self,
        key: &str,
        m3m: &Metal3Machine,
        machine: Option<&Machine>,
        action: MachineAction,
    ) -> Result<bool, String> {
        let host_of = |host: &str| {
            self.operator
                .host(host)
                .ok_or_else(|| format!("host {host} is gone"))
        };
        match action {
            MachineAction::Associate { host, consumer } => {
                let mut bmh = host_of(&host)?;
                // The host as it is now, not as the step saw it: never take another's.
                if let Some(other) = bmh.spec.consumer_ref.as_ref().filter(|c| **c != consumer) {
                    return Err(format!(
                        "host {host} was taken by {} {} meanwhile",
                        other.kind, other.name
                    ));
                }
                bmh.spec.consumer_ref = Some(consumer);
                // Taken back: the label that kept it for its deployment has done its work.
                bmh.metadata.labels.remove(NODE_REUSE_LABEL);
                if let Some(e) = lock(&self.state).metal3_machines.get_mut(key) {
                    e.metal3_machine
                        .metadata
                        .annotations
                        .insert(HOST_ANNOTATION.into(), host.clone());
                }
                let mut writes = self.machine_writes(key, None);
                writes.push(self.host_write(&bmh));
                self.persist(writes).await?;
                self.operator.put_host(bmh);
                tracing::info!(metal3machine = %key, %host, "host associated");
            }
            MachineAction::RenderData => {
                if let Err(e) = self.render_data(key, m3m, machine).await {
                    lock(&self.state)
                        .data_errors
                        .insert(key.to_string(), e.clone());
                    return Err(e);
                }
                lock(&self.state).data_errors.remove(key);
            }
            MachineAction::ProvisionHost {
                host,
                image,
                user_data,
                meta_data,
                network_data,
                automated_cleaning_mode,
            } => {
                let mut bmh = host_of(&host)?;
                bmh.spec.image = Some(image);
                bmh.spec.user_data = Some(user_data);
                bmh.spec.meta_data = meta_data;
                bmh.spec.network_data = network_data;
                bmh.spec.online = true;
                if automated_cleaning_mode.is_some() {
                    bmh.spec.automated_cleaning_mode = automated_cleaning_mode;
                }
                let mut writes = self.machine_writes(key, None);
                writes.push(self.host_write(&bmh));
                self.persist(writes).await?;
                self.operator.put_host(bmh);
                tracing::info!(metal3machine = %key, %host, "host given the machine's image and data");
            }
            MachineAction::SetProviderId {
                provider_id: id,
                host,
            } => {
                {
                    let mut s = lock(&self.state);
                    if let Some(e) = s.metal3_machines.get_mut(key) {
                        e.metal3_machine.spec.provider_id = Some(id.clone());
                        e.metal3_machine
                            .metadata
                            .annotations
                            .insert(HOST_ANNOTATION.into(), host);
                    }
                    if let Some(m) = machine {
                        if let Some(m) = s.machines.get_mut(&m.metadata.key()) {
                            m.spec.provider_id = Some(id.clone());
                        }
                    }
                }
                let machine_key = machine.map(|m| m.metadata.key());
                let writes = self.machine_writes(key, machine_key.as_deref());
                self.persist(writes).await?;
                tracing::info!(metal3machine = %key, provider_id = %id, "machine ready");
            }
            MachineAction::DeprovisionHost { host } => {
                let mut bmh = host_of(&host)?;
                bmh.spec.image = None;
                bmh.spec.user_data = None;
                bmh.spec.meta_data = None;
                bmh.spec.network_data = None;
                self.persist(vec![self.host_write(&bmh)]).await?;
                self.operator.put_host(bmh);
                tracing::info!(metal3machine = %key, %host, "host deprovisioning");
            }
            MachineAction::ReleaseHost { host, reuse_for } => {
                let mut bmh = host_of(&host)?;
                bmh.spec.consumer_ref = None;
                match reuse_for {
                    Some(group) => {
                        bmh.metadata.labels.insert(NODE_REUSE_LABEL.into(), group);
                    }
                    None => {
                        bmh.metadata.labels.remove(NODE_REUSE_LABEL);
                    }
                }
                if let Some(e) = lock(&self.state).metal3_machines.get_mut(key) {
                    e.metal3_machine
                        .metadata
                        .annotations
                        .remove(HOST_ANNOTATION);
                }
                let mut writes = self.machine_writes(key, None);
                writes.push(self.host_write(&bmh));
                self.persist(writes).await?;
                self.operator.put_host(bmh);
                tracing::info!(metal3machine = %key, %host, "host released");
            }
            MachineAction::ReleaseData => {
                let data = data_of(&lock(&self.state), m3m).cloned();
                if let Some(d) = data {
                    let namespace = d.metadata.namespace().to_string();
                    for (pool, claim) in &d.claims {
                        self.operator
                            .release_pool_address(
                                &format!("{namespace}/{pool}"),
                                claim,
                                &d.metadata,
                            )
                            .await?;
                    }
                    lock(&self.state).datas.remove(&d.metadata.key());
                    let secrets = [&d.spec.meta_data, &d.spec.network_data];
                    let mut writes: Vec<(String, Option<Vec<u8>>)> = secrets
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            let k = format!(
                                "{}/{}",
                                r.namespace.as_deref().unwrap_or(&namespace),
                                r.name
                            );
                            (stored("secret", &k), None)
                        })
                        .collect();
                    writes.push((stored("data", &d.metadata.key()), None));
                    self.persist(writes).await?;
                    tracing::info!(metal3machine = %key, data = %d.metadata.name, "data and addresses released");
                }
            }
            MachineAction::Finalized => {
                let machine_key = machine.map(|m| m.metadata.key());
                let mut writes = vec![(stored("metal3machine", key), None)];
                writes.extend(machine_key.iter().map(|m| (stored("machine", m), None)));
                self.persist(writes).await?;
                let mut s = lock(&self.state);
                s.metal3_machines.remove(key);
                s.data_errors.remove(key);
                if let Some(m) = machine_key {
                    s.machines.remove(&m);
                }
                tracing::info!(metal3machine = %key, "machine gone");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes (or finishes) the machine's Metal3Data: the lowest free index of its
    /// template, an address from every pool the template names, the rendered Secrets.
    async fn render_data(
        &self,
        key: &str,
        m3m: &Metal3Machine,
        machine: Option<&Machine>,
    ) -> Result<(), String> {
        let namespace = m3m.metadata.namespace().to_string();
        let template_ref = m3m
            .spec
            .data_template
            .clone()
            .ok_or_else(|| "no dataTemplate".to_string())?;
        let template_key = template_ref.key(&m3m.metadata);
        let (template, mut data) = {
            let mut s = lock(&self.state);
            let template = s
                .data_templates
                .get(&template_key)
                .cloned()
                .ok_or_else(|| format!("Metal3DataTemplate {template_key} not found"))?;
            let data = match data_of(&s, m3m) {
                Some(d) => d.clone(),
                None => {
                    let used: BTreeSet<u32> = s
                        .datas
                        .values()
                        .filter(|d| d.spec.template.key(&d.metadata) == template_key)
                        .map(|d| d.spec.index)
                        .collect();
                    let index = lowest_free_index(&used);
                    let name = data_name(&template.metadata.name, index);
                    let d = Metal3Data {
                        metadata: ObjectMeta {
                            name: name.clone(),
                            namespace: Some(namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Metal3DataSpec {
                            index,
                            template: ObjectRef {
                                name: template.metadata.name.clone(),
                                namespace: Some(namespace.clone()),
                            },
                            claim: ObjectRef {
                                name: m3m.metadata.name.clone(),
                                namespace: Some(namespace.clone()),
                            },
                            meta_data: None,
                            network_data: None,
                        },
                        claims: BTreeMap::new(),
                        ready: false,
                    };
                    // Taken before any address is claimed: the index is the machine's.
                    s.datas.insert(d.metadata.key(), d.clone());
                    d
                }
            };
            (template, data)
        };
        self.persist(vec![encoded("data", &data.metadata.key(), Some(&data))])
            .await?;
        let mut addresses = BTreeMap::new();
        for pool in template.pools() {
            let claim = ip_claim_name(&data.metadata.name, &pool);
            let address = self
                .operator
                .claim_pool_address(&format!("{namespace}/{pool}"), &claim, None, &data.metadata)
                .await?;
            if data.claims.insert(pool.clone(), claim).is_none() {
                self.persist(vec![encoded("data", &data.metadata.key(), Some(&data))])
                    .await?;
            }
            lock(&self.state)
                .datas
                .insert(data.metadata.key(), data.clone());
            addresses.insert(pool, address);
        }
        let host_key = m3m
            .metadata
            .annotations
            .get(HOST_ANNOTATION)
            .cloned()
            .ok_or_else(|| "no host associated yet".to_string())?;
        let host = self
            .operator
            .host(&host_key)
            .ok_or_else(|| format!("host {host_key} is gone"))?;
        let nics = nics_of(self.operator.record(&host_key).as_ref());
        let no_machine = ObjectMeta::default();
        let ctx = RenderContext {
            index: data.spec.index,
            namespace: &namespace,
            metal3_machine: &m3m.metadata,
            machine: machine.map_or(&no_machine, |m| &m.metadata),
            host: &host.metadata,
            nics: &nics,
            boot_mac: host.spec.boot_mac_address.as_deref(),
            addresses: &addresses,
        };
        let (meta_name, network_name) = secret_names(&m3m.metadata.name);
        let mut secrets = Vec::new();
        let what = |e: String| format!("Metal3DataTemplate {template_key}: {e}");
        if let Some(t) = &template.spec.meta_data {
            let meta = render_meta_data(t, &ctx).map_err(what)?;
            secrets.push(secret(&namespace, &meta_name, "metaData", yaml(&meta)?));
            data.spec.meta_data = Some(SecretRef {
                name: meta_name,
                namespace: Some(namespace.clone()),
            });
        }
        if let Some(t) = &template.spec.network_data {
            let network = render_network_data(t, &ctx).map_err(what)?;
            secrets.push(secret(
                &namespace,
                &network_name,
                "networkData",
                yaml(&network)?,
            ));
            data.spec.network_data = Some(SecretRef {
                name: network_name,
                namespace: Some(namespace.clone()),
            });
        }
        data.ready = true;
        let mut writes: Vec<(String, Option<Vec<u8>>)> = secrets
            .iter()
            .map(|s| encoded("secret", &s.metadata.key(), Some(s)))
            .collect();
        writes.push(encoded("data", &data.metadata.key(), Some(&data)));
        self.persist(writes).await?;
        self.operator.put_secrets(secrets);
        lock(&self.state)
            .datas
            .insert(data.metadata.key(), data.clone());
        tracing::info!(metal3machine = %key, data = %data.metadata.name, index = data.spec.index, "data rendered");
        Ok(())
    }

    /// Steps every Metal3Machine until the returned handle is aborted: each when its
    /// requeue is due, and all of them every `interval` (level-triggered: a host that
    /// changed is seen at the next pass).
    pub fn run(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // The hosts are read once a pass, and again after every step that acted
                // (a host just associated is no other machine's to choose).
                let mut hosts = me.host_views();
                for key in me.metal3_machines() {
                    // A step that acted is taken again at once, up to a few times a pass.
                    for _ in 0..8 {
                        if me.reconcile_with(&key, &hosts).await != Some(Duration::ZERO) {
                            break;
                        }
                        hosts = me.host_views();
                    }
                }
                tokio::time::sleep(interval).await;
            }
        })
    }
}

/// A host's NICs with a MAC, as its hardware details name them.
fn nics_of(record: Option<&metal3_operator::operator::HostRecord>) -> Vec<HostNic> {
    record
        .and_then(|r| r.hardware.as_ref())
        .map(|hw| {
            hw.nics
                .iter()
                .filter_map(|n| {
                    Some(HostNic {
                        name: n.id.clone(),
                        mac: n.mac.as_ref()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The key of a Machine's Metal3Machine.
fn infra_key(m: &Machine) -> String {
    format!(
        "{}/{}",
        m.spec
            .infrastructure_ref
            .namespace
            .as_deref()
            .unwrap_or(m.metadata.namespace()),
        m.spec.infrastructure_ref.name
    )
}

fn data_of<'a>(s: &'a State, m3m: &Metal3Machine) -> Option<&'a Metal3Data> {
    s.datas.values().find(|d| {
        d.spec.claim.name == m3m.metadata.name && d.metadata.namespace() == m3m.metadata.namespace()
    })
}

fn yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_norway::to_string(value).map_err(|e| e.to_string())
}

fn secret(namespace: &str, name: &str, key: &str, value: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        data: BTreeMap::new(),
        string_data: BTreeMap::from([(key.to_string(), value)]),
    }
}
