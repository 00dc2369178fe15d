//! The cluster flow on a simulated fleet: what `metal3-demo --cluster` runs.
//!
//! The hosts of `cluster/` are enrolled with no image and go to available. The cluster's
//! KubeadmControlPlane and MachineDeployment ask for one control plane and three
//! workers; standing in for Cluster API's controllers (none runs here), the demo creates
//! a Machine, a Metal3Machine cloned from the group's Metal3MachineTemplate and the
//! bootstrap data Secret for each. The provider ([`metal3_capm3`]) chooses a host for
//! every machine by its `hostSelector`, renders its network and meta data from the
//! Metal3DataTemplate with addresses from the IPPools, and the operator provisions the
//! host with them. Then the workers are scaled down by one (the host is deprovisioned
//! and released, its addresses returned) and up again (a free host is chosen). The run
//! checks each step against the operator's records, the Secrets and the pools.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmc_core::verified::PollPolicy;
use metal3_capm3::controller::{CLONED_FROM, Capm3, MachineRow};
use metal3_capm3::objects::{
    CLUSTER_NAME_LABEL, CONTROL_PLANE_LABEL, ClusterManifests, DEPLOYMENT_NAME_LABEL, Machine,
    MachineGroup, Metal3Machine, Metal3MachineTemplate, NODE_REUSE_LABEL,
};
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use metal3_conductor::{ConductorApi, ConductorConfig, HttpConductor};
use metal3_operator::manifests::{
    Manifests, ObjectMeta, ObjectReference, PREPROVISIONING_POOL, Secret,
};
use metal3_operator::operator::{Operator, OperatorConfig};
use metal3_operator::store::Store;
use provision_fsm::HostStateKind;

use crate::demo::VENDOR_ANNOTATION;
use crate::fleet::{self, HostSimConfig, Images, SimHost};
use crate::fleet_process::RemoteHost;

/// How to run the cluster demo.
#[derive(Debug, Clone)]
pub struct ClusterDemoConfig {
    /// The cluster's manifests (hosts, Secrets, IPPools, the cluster's objects).
    pub manifests: PathBuf,
    /// The recorded Redfish trees.
    pub fixtures: PathBuf,
    /// Share of BMC requests answered 503.
    pub fault_rate: f64,
    /// Give up on a phase after this long.
    pub timeout: Duration,
    /// Print a line per phase and per machine change.
    pub progress: bool,
    /// Stop the operator and the provider once the first host is provisioning and start
    /// them again on their store (a restart must lose nothing and deploy nothing twice).
    pub restart: bool,
}

impl Default for ClusterDemoConfig {
    fn default() -> Self {
        ClusterDemoConfig {
            manifests: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster")),
            fixtures: fleet::default_fixtures(),
            fault_rate: 0.0,
            timeout: Duration::from_secs(240),
            progress: false,
            restart: false,
        }
    }
}

/// One phase of the run and how long it took.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What it was.
    pub name: String,
    /// Seconds.
    pub seconds: f64,
}

/// How the cluster run went.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    /// The machines at the end: machine → host → addresses.
    pub rows: Vec<MachineRow>,
    /// The hosts' states at the end, by key.
    pub hosts: BTreeMap<String, String>,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// What did not hold (empty when the run is good).
    pub failures: Vec<String>,
    /// Times the operator and the provider were stopped and started again.
    pub restarts: u32,
}

impl ClusterReport {
    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The machines and hosts as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:<18} {:<6} {:<18} {:<16}\n",
            "METAL3MACHINE", "HOST", "READY", "IPV4", "IPV6"
        );
        let mut used = BTreeSet::new();
        for r in &self.rows {
            let pick = |v6: bool| {
                r.addresses
                    .values()
                    .find(|a| a.is_ipv6() == v6)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "-".into())
            };
            if let Some(h) = &r.host {
                used.insert(h.clone());
            }
            out.push_str(&format!(
                "{:<28} {:<18} {:<6} {:<18} {:<16}\n",
                r.metal3_machine,
                r.host.as_deref().unwrap_or("-"),
                if r.ready { "true" } else { "false" },
                pick(false),
                pick(true),
            ));
        }
        for (h, state) in self.hosts.iter().filter(|(h, _)| !used.contains(*h)) {
            out.push_str(&format!("{:<28} {h:<18} ({state}, no consumer)\n", "-"));
        }
        for p in &self.phases {
            out.push_str(&format!("{:<58} {:>6.1} s\n", p.name, p.seconds));
        }
        out
    }
}

/// What Cluster API's controllers would create for machine number `n` of a control
/// plane or deployment: the Machine, its Metal3Machine cloned from the group's template
/// (image URL pointed at the local image server) and its bootstrap data Secret.
pub fn new_machine(
    group: &MachineGroup,
    template: &Metal3MachineTemplate,
    n: u32,
    images: &str,
) -> (Machine, Metal3Machine, Secret) {
    let name = format!("{}-{n}", group.metadata.name);
    let namespace = group.metadata.namespace().to_string();
    let mut labels = BTreeMap::from([(CLUSTER_NAME_LABEL.to_string(), group.cluster_name.clone())]);
    if group.kind == "KubeadmControlPlane" {
        labels.insert(CONTROL_PLANE_LABEL.into(), String::new());
    } else {
        labels.insert(DEPLOYMENT_NAME_LABEL.into(), group.metadata.name.clone());
    }
    let meta = |annotations: BTreeMap<String, String>| ObjectMeta {
        name: name.clone(),
        namespace: Some(namespace.clone()),
        labels: labels.clone(),
        annotations,
        ..ObjectMeta::default()
    };
    let bootstrap = format!("{name}-bootstrap");
    let machine = Machine {
        metadata: meta(BTreeMap::new()),
        spec: metal3_capm3::objects::MachineSpec {
            cluster_name: group.cluster_name.clone(),
            bootstrap: metal3_capm3::objects::Bootstrap {
                data_secret_name: Some(bootstrap.clone()),
            },
            infrastructure_ref: ObjectReference {
                api_version: metal3_capm3::objects::API_VERSION.into(),
                kind: "Metal3Machine".into(),
                name: name.clone(),
                namespace: None,
            },
            provider_id: None,
        },
    };
    let mut spec = template.spec.template.spec.clone();
    if let Some(image) = &mut spec.image {
        crate::demo::localize_image(image, images);
    }
    let m3m = Metal3Machine {
        metadata: meta(BTreeMap::from([(
            CLONED_FROM.to_string(),
            template.metadata.name.clone(),
        )])),
        spec,
        status: Default::default(),
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: bootstrap,
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        data: BTreeMap::new(),
        string_data: BTreeMap::from([(
            "value".to_string(),
            format!(
                "#cloud-config\nhostname: {name}\nruncmd:\n  - kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml\n"
            ),
        )]),
    };
    (machine, m3m, secret)
}

struct Run {
    config: ClusterDemoConfig,
    operator: Option<Arc<Operator>>,
    capm3: Option<Arc<Capm3>>,
    /// What a restart opens again: the store, the conductor, the manifests, the
    /// bootstrap Secrets Cluster API would hold.
    state_file: PathBuf,
    admin: Arc<dyn ConductorApi>,
    manifests: Manifests,
    cluster: ClusterManifests,
    bootstraps: Vec<Secret>,
    stepper: Option<tokio::task::JoinHandle<()>>,
    restarts: u32,
    started: Instant,
    phases: Vec<Phase>,
    failures: Vec<String>,
    /// Rows last printed, to print only changes.
    printed: BTreeMap<String, String>,
    /// The agent-network claims seen held (`pool/claim`), sampled while waiting.
    agent_claims_seen: BTreeSet<String>,
}

/// A running operator, the provider over it, and the provider's stepping task.
type Started = (Arc<Operator>, Arc<Capm3>, tokio::task::JoinHandle<()>);

/// Opens the operator on its store with the manifests, the provider over it (which gives
/// the hosts back what it wrote into them), and starts both.
fn start(
    state_file: &std::path::Path,
    admin: Arc<dyn ConductorApi>,
    manifests: &Manifests,
    cluster: &ClusterManifests,
    bootstraps: &[Secret],
) -> Result<Started, String> {
    let store = Store::open(state_file).map_err(|e| e.to_string())?;
    let operator = Operator::open(
        admin,
        store,
        OperatorConfig {
            poll: Duration::from_millis(20),
            ..OperatorConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    operator.apply(manifests)?;
    operator.put_secrets(bootstraps.iter().cloned());
    let capm3 = Capm3::open(operator.clone())?;
    capm3.apply(cluster);
    operator.run_embedded();
    let stepper = capm3.run(Duration::from_millis(50));
    Ok((operator, capm3, stepper))
}

impl Run {
    #[allow(clippy::expect_used)]
    fn op(&self) -> &Arc<Operator> {
        // Absent only inside `restart`, which puts new ones back before it returns.
        self.operator.as_ref().expect("the operator is running")
    }

    #[allow(clippy::expect_used)]
    fn cap(&self) -> &Arc<Capm3> {
        self.capm3.as_ref().expect("the provider is running")
    }

    /// Stops the provider and the operator where they are and starts them again.
    async fn restart(&mut self) -> Result<(), String> {
        if let Some(s) = self.stepper.take() {
            s.abort();
            let _ = s.await;
        }
        // The old ones are let go first: the store opens again only once they are.
        self.capm3 = None;
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        let (operator, capm3, stepper) = start(
            &self.state_file,
            self.admin.clone(),
            &self.manifests,
            &self.cluster,
            &self.bootstraps,
        )?;
        self.operator = Some(operator);
        self.capm3 = Some(capm3);
        self.stepper = Some(stepper);
        self.restarts += 1;
        if self.config.progress {
            println!(
                "{:>6.1} s  operator and provider stopped and started again on their store",
                self.started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Creates machine `n` of `group` as Cluster API would.
    async fn add_machine(
        &mut self,
        group: &MachineGroup,
        template: &Metal3MachineTemplate,
        n: u32,
        images: &str,
    ) -> Result<String, String> {
        let (machine, m3m, bootstrap) = new_machine(group, template, n, images);
        let key = m3m.metadata.key();
        self.op().put_secrets([bootstrap.clone()]);
        self.bootstraps.push(bootstrap);
        self.cap().put_machine(machine, m3m).await?;
        Ok(key)
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            if self.config.progress {
                println!("check failed: {what}");
            }
            self.failures.push(what);
        }
    }

    /// Notes which agent-network claims the pools hold now.
    fn sample_agent_claims(&mut self) {
        let pools: BTreeSet<String> = self
            .manifests
            .hosts
            .iter()
            .filter_map(|h| {
                let pool = h.metadata.annotations.get(PREPROVISIONING_POOL)?;
                Some(format!("{}/{pool}", h.metadata.namespace()))
            })
            .collect();
        for pool in pools {
            for (claim, _) in self.op().pool_allocations(&pool) {
                self.agent_claims_seen.insert(format!("{pool}/{claim}"));
            }
        }
    }

    fn print_changes(&mut self) {
        self.sample_agent_claims();
        if !self.config.progress {
            return;
        }
        for r in self.cap().rows() {
            let line = match (&r.host, r.ready, &r.waiting) {
                (Some(h), true, _) => format!(
                    "ready on {h} ({})",
                    r.provider_id.clone().unwrap_or_default()
                ),
                (Some(h), false, Some((reason, message))) => format!("{h}: {reason}: {message}"),
                (None, _, Some((reason, message))) => format!("{reason}: {message}"),
                (h, _, None) => h.as_deref().unwrap_or("-").to_string(),
            };
            if self.printed.get(&r.metal3_machine) != Some(&line) {
                println!(
                    "{:>6.1} s  {:<24} {line}",
                    self.started.elapsed().as_secs_f64(),
                    r.metal3_machine
                );
                self.printed.insert(r.metal3_machine.clone(), line);
            }
        }
    }

    /// Waits (printing changes) until `done` holds; a phase of the report.
    async fn wait(&mut self, name: &str, done: impl Fn(&Run) -> bool) -> Result<(), String> {
        let start = Instant::now();
        if self.config.progress {
            println!("== {name}");
        }
        while !done(self) {
            self.print_changes();
            if start.elapsed() > self.config.timeout {
                let rows = self.cap().rows();
                return Err(format!(
                    "{name}: not done after {:.0} s; machines: {rows:?}",
                    self.config.timeout.as_secs_f64()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.print_changes();
        self.phases.push(Phase {
            name: name.to_string(),
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn host_state(&self, key: &str) -> HostStateKind {
        self.op()
            .record(key)
            .map_or(HostStateKind::None, |r| r.host.state.kind())
    }

    fn all_ready(&self, count: usize) -> bool {
        let rows = self.cap().rows();
        rows.len() == count && rows.iter().all(|r| r.ready)
    }

    /// The checks of a cluster whose machines are all ready.
    async fn check_ready_cluster(&mut self, templates: &BTreeMap<String, Metal3MachineTemplate>) {
        let rows = self.cap().rows();
        let mut seen_hosts = BTreeSet::new();
        let mut seen_addresses = BTreeSet::new();
        for r in &rows {
            let Some(host_key) = r.host.clone() else {
                self.check(false, format!("{} has no host", r.metal3_machine));
                continue;
            };
            self.check(
                seen_hosts.insert(host_key.clone()),
                format!("{host_key} is the host of two machines"),
            );
            let state = self.host_state(&host_key);
            self.check(
                state == HostStateKind::Provisioned,
                format!("{host_key} of {} is {}", r.metal3_machine, state.name()),
            );
            let m3m = self.cap().metal3_machine(&r.metal3_machine);
            let host = self.op().host(&host_key);
            let (Some(m3m), Some(host)) = (m3m, host) else {
                self.check(false, format!("{} or its host is gone", r.metal3_machine));
                continue;
            };
            // The host was chosen by the machine's template's selector.
            let template = m3m
                .metadata
                .annotations
                .get(CLONED_FROM)
                .and_then(|t| templates.get(&format!("{}/{t}", m3m.metadata.namespace())));
            let selected = template.is_some_and(|t| {
                t.spec
                    .template
                    .spec
                    .host_selector
                    .matches(&host.metadata.labels)
                    .unwrap_or(false)
            });
            self.check(
                selected,
                format!(
                    "{host_key} does not match {}'s hostSelector",
                    r.metal3_machine
                ),
            );
            self.check(
                host.spec.image == m3m.spec.image,
                format!("{host_key} was not given {}'s image", r.metal3_machine),
            );
            self.check(
                r.provider_id.as_deref()
                    == Some(&format!(
                        "metal3://{}/{}/{}",
                        m3m.metadata.namespace(),
                        host.metadata.name,
                        m3m.metadata.name
                    )),
                format!("{}: providerID {:?}", r.metal3_machine, r.provider_id),
            );
            self.check(
                r.addresses.len() == 2,
                format!("{}: addresses {:?}", r.metal3_machine, r.addresses),
            );
            for a in r.addresses.values() {
                self.check(
                    seen_addresses.insert(*a),
                    format!("{a} is held by two machines"),
                );
            }
            // The network data the host was given holds the machine's addresses.
            let network = host.spec.network_data.as_ref().and_then(|s| {
                self.op().secret(&format!(
                    "{}/{}",
                    s.namespace.as_deref().unwrap_or(host.metadata.namespace()),
                    s.name
                ))
            });
            let text = network
                .and_then(|s| s.get("networkData").ok().flatten())
                .unwrap_or_default();
            for a in r.addresses.values() {
                self.check(
                    text.contains(&a.to_string()),
                    format!("{host_key}'s networkData lacks {a}: {text}"),
                );
            }
            // And the agent wrote it on the host's disk with the bootstrap user data and
            // the rendered meta data.
            let drive = match self.op().conductor().node(&host_key).await {
                Ok(node) => node.config_drive.unwrap_or_default(),
                Err(e) => {
                    self.check(false, format!("reading the node of {host_key}: {e}"));
                    continue;
                }
            };
            let written: BTreeSet<String> = drive
                .network_data
                .as_ref()
                .and_then(|n| n["networks"].as_array())
                .map(|n| {
                    n.iter()
                        .filter_map(|n| n["ip_address"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let given: BTreeSet<String> = r.addresses.values().map(ToString::to_string).collect();
            self.check(
                written == given,
                format!(
                    "{host_key}'s config drive has addresses {written:?}, its machine {given:?}"
                ),
            );
            let machine_name = m3m.metadata.name.clone();
            self.check(
                drive
                    .user_data
                    .as_deref()
                    .is_some_and(|u| u.contains(&format!("hostname: {machine_name}"))),
                format!("{host_key}'s config drive lacks {machine_name}'s bootstrap data"),
            );
            self.check(
                drive.meta_data["providerid"].as_str()
                    == Some(&format!(
                        "{}/{}/{machine_name}",
                        m3m.metadata.namespace(),
                        host.metadata.name
                    )),
                format!("{host_key}'s config drive meta data: {}", drive.meta_data),
            );
        }
    }
}

/// Runs the cluster demo.
pub async fn run(config: ClusterDemoConfig) -> Result<ClusterReport, String> {
    let started = Instant::now();
    let cluster = ClusterManifests::load_dir(&config.manifests)?;
    let mut manifests = Manifests::default();
    for (i, doc) in cluster.others.iter().enumerate() {
        manifests.add_yaml(doc, &format!("{} document {i}", config.manifests.display()))?;
    }
    if manifests.hosts.is_empty() {
        return Err(format!(
            "no BareMetalHost in {}",
            config.manifests.display()
        ));
    }

    let image_server = fleet::serve_images(Images::demo())
        .await
        .map_err(|e| format!("image server: {e}"))?;
    let images = format!("http://{}", image_server.addr);
    let agent_image_url = format!("{images}/images/agent.iso");
    let conductor_state = std::env::temp_dir().join(format!(
        "metal3-cluster-demo-{}-{}-conductor.redb",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            state: Some(conductor_state.clone()),
            conductor: ConductorConfig {
                agent_image_url: agent_image_url.clone(),
                poll: PollPolicy {
                    initial: Duration::from_millis(10),
                    max: Duration::from_millis(200),
                },
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await?;
    let admin: Arc<dyn ConductorApi> = Arc::new(HttpConductor::new(&service.admin_url()));

    // A simulated BMC per host, of the vendor its annotation names.
    let http = reqwest::Client::new();
    let mut sims: Vec<SimHost> = Vec::new();
    let credentials: Vec<(String, String)> = manifests
        .hosts
        .iter()
        .map(|bmh| crate::demo::bmc_credentials(&manifests, bmh))
        .collect();
    for (i, (bmh, credentials)) in manifests.hosts.iter_mut().zip(credentials).enumerate() {
        let vendor_name = bmh
            .metadata
            .annotations
            .get(VENDOR_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| "dmtf".into());
        let vendor = fleet::vendor(&vendor_name)
            .ok_or_else(|| format!("{}: unknown vendor {vendor_name}", bmh.metadata.key()))?;
        let sim = fleet::start_host(
            vendor,
            i as u32 + 1,
            &HostSimConfig {
                fixtures: config.fixtures.clone(),
                credentials,
                power_delay: Duration::from_millis(20),
                fault_rate: config.fault_rate,
                seed: i as u64 + 1,
                agent_image_url: agent_image_url.clone(),
                agent_api: service.agent_url(),
                agent_http: http.clone(),
                silent_agent: false,
            },
        )
        .await
        .map_err(|e| format!("simulated BMC: {e}"))?;
        crate::demo::localize(
            bmh,
            &RemoteHost {
                address: sim.address.clone(),
                macs: sim.macs.clone(),
            },
            &images,
        );
        sims.push(sim);
    }

    let state = std::env::temp_dir().join(format!(
        "metal3-cluster-demo-{}-{}.redb",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    let _remove = crate::demo::RemoveOnDrop(vec![
        state.clone(),
        conductor_state.clone(),
        metal3_conductor::persist::default_key_path(&conductor_state),
    ]);
    let (operator, capm3, stepper) = start(&state, admin.clone(), &manifests, &cluster, &[])?;
    let mut run = Run {
        config: config.clone(),
        operator: Some(operator),
        capm3: Some(capm3),
        state_file: state.clone(),
        admin,
        manifests: manifests.clone(),
        cluster: cluster.clone(),
        bootstraps: Vec::new(),
        stepper: Some(stepper),
        restarts: 0,
        started,
        phases: Vec::new(),
        failures: Vec::new(),
        printed: BTreeMap::new(),
        agent_claims_seen: BTreeSet::new(),
    };
    let result = scenario(&mut run, &cluster, &images).await;
    if let Some(s) = run.stepper.take() {
        s.abort();
        let _ = s.await;
    }
    let hosts = manifests
        .hosts
        .iter()
        .map(|h| {
            let key = h.metadata.key();
            let state = run.host_state(&key).name().to_string();
            (key, state)
        })
        .collect();
    let rows = run.cap().rows();
    run.capm3 = None;
    if let Some(op) = run.operator.take() {
        op.stop().await;
    }
    drop(service);
    drop(sims);
    drop(image_server);
    result?;
    Ok(ClusterReport {
        rows,
        hosts,
        phases: run.phases,
        failures: run.failures,
        restarts: run.restarts,
    })
}

async fn scenario(run: &mut Run, cluster: &ClusterManifests, images: &str) -> Result<(), String> {
    let host_keys: Vec<String> = run
        .op()
        .hosts()
        .into_iter()
        .map(|(h, _)| h.metadata.key())
        .collect();
    let hosts = host_keys.len();
    run.wait(
        &format!("{hosts} hosts enrolled, inspected, available"),
        |r| {
            host_keys
                .iter()
                .all(|k| r.host_state(k) == HostStateKind::Available)
        },
    )
    .await?;

    let templates: BTreeMap<String, Metal3MachineTemplate> = cluster
        .machine_templates
        .iter()
        .map(|t| (t.metadata.key(), t.clone()))
        .collect();
    let template_of = |g: &MachineGroup| {
        templates
            .get(&format!("{}/{}", g.metadata.namespace(), g.template))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{} {}: no Metal3MachineTemplate {}",
                    g.kind, g.metadata.name, g.template
                )
            })
    };
    let mut wanted = 0;
    for g in &cluster.groups {
        let template = template_of(g)?;
        for n in 0..g.replicas {
            run.add_machine(g, &template, n, images).await?;
            wanted += 1;
        }
    }
    if run.config.restart {
        run.wait("a host provisioning for a machine", |r| {
            host_keys
                .iter()
                .any(|k| r.host_state(k) == HostStateKind::Provisioning)
        })
        .await?;
        run.restart().await?;
    }
    run.wait(&format!("{wanted} machines provisioned and ready"), |r| {
        r.all_ready(wanted)
    })
    .await?;
    // Each host was deployed once, restart or not.
    for r in run.cap().rows() {
        let Some(h) = r.host else { continue };
        let attempts = run
            .op()
            .conductor()
            .node(&h)
            .await
            .map(|n| n.deploy_attempts);
        run.check(
            matches!(attempts, Ok(1)),
            format!("{h} was deployed {attempts:?} times"),
        );
    }
    run.check_ready_cluster(&templates).await;
    // Every host's agent had an address of its own while it ran, and none holds one
    // now that every host is available or provisioned.
    for h in &run.manifests.hosts.clone() {
        let Some(pool) = h.metadata.annotations.get(PREPROVISIONING_POOL) else {
            continue;
        };
        let pool_key = format!("{}/{pool}", h.metadata.namespace());
        let claim = format!("{pool_key}/{}-agent", h.metadata.name);
        let seen = run.agent_claims_seen.contains(&claim);
        run.check(seen, format!("{claim} was never held"));
        let held = run.op().pool_allocations(&pool_key);
        run.check(
            held.is_empty(),
            format!("{pool_key} still holds {held:?} with every host available or provisioned"),
        );
    }
    // Claims a pool preallocates got their address.
    for pool in &run.manifests.pools.clone() {
        let held = run.op().pool_allocations(&pool.metadata.key());
        for (claim, want) in &pool.spec.pre_allocations {
            if let Some((_, got)) = held.iter().find(|(c, _)| c == claim) {
                run.check(
                    got == want,
                    format!("{claim} got {got}, preallocated {want}"),
                );
            }
        }
    }
    // The host no selector matches stays as it was.
    let consumed: BTreeSet<String> = run
        .cap()
        .rows()
        .into_iter()
        .filter_map(|r| r.host)
        .collect();
    for key in host_keys.iter().filter(|k| !consumed.contains(*k)) {
        let host = run.op().host(key);
        let state = run.host_state(key);
        run.check(
            host.is_some_and(|h| h.spec.consumer_ref.is_none() && h.spec.image.is_none())
                && state == HostStateKind::Available,
            format!(
                "{key}, chosen by no machine, is {} or has a consumer",
                state.name()
            ),
        );
    }

    // Scale the workers down by one: the last worker machine goes.
    let deployment = cluster
        .groups
        .iter()
        .find(|g| g.kind == "MachineDeployment")
        .ok_or("no MachineDeployment in the cluster manifests")?
        .clone();
    let last = format!(
        "{}/{}-{}",
        deployment.metadata.namespace(),
        deployment.metadata.name,
        deployment.replicas.saturating_sub(1)
    );
    let row = run
        .cap()
        .rows()
        .into_iter()
        .find(|r| r.metal3_machine == last)
        .ok_or_else(|| format!("no machine {last}"))?;
    let released = row
        .host
        .clone()
        .ok_or_else(|| format!("{last} has no host"))?;
    let data = run
        .cap()
        .datas()
        .into_iter()
        .find(|d| d.spec.claim.name == last.rsplit('/').next().unwrap_or_default())
        .ok_or_else(|| format!("{last} has no Metal3Data"))?;
    run.cap().delete_machine(&last).await?;
    let last_key = last.clone();
    run.wait(
        &format!("scaled down: {last} gone, {released} deprovisioned"),
        |r| r.cap().metal3_machine(&last_key).is_none(),
    )
    .await?;
    let host = run.op().host(&released);
    let state = run.host_state(&released);
    run.check(
        host.as_ref()
            .is_some_and(|h| h.spec.consumer_ref.is_none() && h.spec.image.is_none()),
        format!("{released} still has a consumer or image after its machine went"),
    );
    run.check(
        state == HostStateKind::Available,
        format!("{released} is {} after deprovisioning", state.name()),
    );
    // With nodeReuse, the released host is labelled for its deployment.
    if template_of(&deployment)?.spec.node_reuse {
        let label = run
            .op()
            .host(&released)
            .and_then(|h| h.metadata.labels.get(NODE_REUSE_LABEL).cloned());
        run.check(
            label.as_deref() == Some(deployment.metadata.name.as_str()),
            format!("{released} released with node-reuse label {label:?}"),
        );
    }
    for (pool, claim) in &data.claims {
        let pool_key = format!("{}/{pool}", data.metadata.namespace());
        let held = run
            .op()
            .pool_allocations(&pool_key)
            .into_iter()
            .any(|(c, _)| c == *claim);
        run.check(!held, format!("{pool_key} still holds {claim}"));
    }
    run.check(
        run.cap()
            .datas()
            .iter()
            .all(|d| d.metadata.key() != data.metadata.key()),
        format!("Metal3Data {} is still there", data.metadata.key()),
    );
    run.check(
        run.cap()
            .machines()
            .iter()
            .all(|m| m.metadata.key() != last),
        format!("Machine {last} is still there"),
    );

    // And up again: a new machine takes a free matching host.
    let template = template_of(&deployment)?;
    let new_key = run
        .add_machine(&deployment, &template, deployment.replicas, images)
        .await?;
    run.wait(
        &format!("scaled up: {new_key} provisioned and ready"),
        |r| r.all_ready(wanted),
    )
    .await?;
    run.check_ready_cluster(&templates).await;
    let new_row = run
        .cap()
        .rows()
        .into_iter()
        .find(|r| r.metal3_machine == new_key);
    run.check(
        new_row.as_ref().is_some_and(|r| r.host.is_some()),
        format!("{new_key} has no host"),
    );
    if template.spec.node_reuse {
        let host = new_row.and_then(|r| r.host);
        run.check(
            host.as_deref() == Some(released.as_str()),
            format!("{new_key} took {host:?}, not {released} released for its deployment"),
        );
        let label = run
            .op()
            .host(&released)
            .and_then(|h| h.metadata.labels.get(NODE_REUSE_LABEL).cloned());
        run.check(
            label.is_none(),
            format!("{released} kept its node-reuse label {label:?} once taken back"),
        );
    }
    Ok(())
}
