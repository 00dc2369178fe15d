//! The provider's kube mode against a real kube-apiserver (`kube-apiserver.sh`), with
//! upstream's CRDs applied unchanged (BareMetalHost, IPPool/IPClaim/IPAddress, and
//! CAPM3's Metal3Machine, Metal3MachineTemplate, Metal3DataTemplate, Metal3DataClaim and
//! Metal3Data) and a stand-in for Cluster API's Machine CRD (`tests/crds/`). The
//! operator's kube mode runs beside it on the same API server (reconciling the hosts
//! through the conductor and simulated BMCs, and serving the IPClaims), as BMO, IPAM and
//! CAPM3 run beside each other in a management cluster; the test plays Cluster API's
//! part, creating Machines and Metal3Machines and deleting them.
//!
//! Two workers are chosen by their `hostSelector` (the storage host is left alone), get
//! their Metal3Data, IPClaims, addresses and Secrets, are provisioned and get their
//! `providerID`; a third waits with `NoAvailableHost` and, deleted, just goes; one worker
//! deleted gives its host (labelled for node reuse), data and address back, and a new one
//! takes that host and index. Every status written had to pass the API server's
//! validation against upstream's schemas.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../operator/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client};
use metal3_conductor::{ConductorApi, HttpConductor};
use metal3_operator::operator::{Operator, OperatorConfig};
use metal3_operator::store::Store;
use provision_fsm::InspectionMode;
use serde_json::{Value, json};
use test_peers::KubeApiServer;
use test_peers::kube_objects::{api_for, apply_crd, create};

const SYSTEM: &str = "/redfish/v1/Systems/437XR1138R2";
const NS: &str = "lab";
const V1BETA2: &str = "infrastructure.cluster.x-k8s.io/v1beta2";

fn mac(i: usize) -> String {
    format!("52:54:00:cc:00:{i:02x}")
}

fn reference(path: &str) -> PathBuf {
    test_peers::metal3_manifest(path)
}

/// Every object of `kind` in the namespace, by name.
async fn list(client: &Client, api_version: &str, kind: &str) -> BTreeMap<String, DynamicObject> {
    let probe = json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": NS}});
    api_for(client, &probe)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| (o.metadata.name.clone().unwrap(), o))
        .collect()
}

/// What the namespace holds, as the checks read it.
#[derive(Debug)]
struct Snapshot {
    hosts: BTreeMap<String, DynamicObject>,
    metal3_machines: BTreeMap<String, DynamicObject>,
    machines: BTreeMap<String, DynamicObject>,
    datas: BTreeMap<String, DynamicObject>,
    data_claims: BTreeMap<String, DynamicObject>,
    ip_claims: BTreeMap<String, DynamicObject>,
    ip_addresses: BTreeMap<String, DynamicObject>,
    secrets: BTreeMap<String, KubeSecret>,
}

impl Snapshot {
    async fn read(client: &Client) -> Snapshot {
        let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), NS);
        Snapshot {
            hosts: list(client, "metal3.io/v1alpha1", "BareMetalHost").await,
            metal3_machines: list(client, V1BETA2, "Metal3Machine").await,
            machines: list(client, "cluster.x-k8s.io/v1beta2", "Machine").await,
            datas: list(client, V1BETA2, "Metal3Data").await,
            data_claims: list(client, V1BETA2, "Metal3DataClaim").await,
            ip_claims: list(client, "ipam.metal3.io/v1alpha1", "IPClaim").await,
            ip_addresses: list(client, "ipam.metal3.io/v1alpha1", "IPAddress").await,
            secrets: secrets
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| (s.metadata.name.clone().unwrap(), s))
                .collect(),
        }
    }

    fn state(&self, host: &str) -> &str {
        self.hosts[host].data["status"]["provisioning"]["state"]
            .as_str()
            .unwrap_or_default()
    }

    fn consumer(&self, host: &str) -> Option<&str> {
        self.hosts[host].data["spec"]["consumerRef"]["name"].as_str()
    }

    /// The host whose consumerRef names the machine.
    fn host_of(&self, machine: &str) -> Option<&str> {
        self.hosts
            .keys()
            .find(|h| self.consumer(h) == Some(machine))
            .map(String::as_str)
    }

    fn provisioned(&self, machine: &str) -> bool {
        self.metal3_machines
            .get(machine)
            .is_some_and(|m| m.data["status"]["initialization"]["provisioned"] == json!(true))
    }

    fn condition(&self, machine: &str, kind: &str) -> Option<&Value> {
        self.metal3_machines[machine].data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
    }

    /// The machine's Metal3Data (its claim's `status.renderedData`).
    fn data_of(&self, machine: &str) -> Option<&DynamicObject> {
        let name =
            self.data_claims.get(machine)?.data["status"]["renderedData"]["name"].as_str()?;
        self.datas.get(name)
    }

    /// A Secret's field, decoded.
    fn secret(&self, name: &str, field: &str) -> Option<String> {
        let s = self.secrets.get(name)?;
        let bytes = s.data.as_ref()?.get(field)?;
        Some(String::from_utf8(bytes.0.clone()).unwrap())
    }
}

/// Waits until `done` holds for the namespace as read, or fails showing what it holds.
async fn wait_for(
    client: &Client,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = Instant::now() + timeout;
    loop {
        let s = Snapshot::read(client).await;
        if done(&s) {
            return s;
        }
        if Instant::now() > deadline {
            let hosts: BTreeMap<_, _> = s
                .hosts
                .iter()
                .map(|(k, o)| {
                    (
                        k.clone(),
                        (
                            o.data["status"]["provisioning"]["state"].clone(),
                            o.data["status"]["errorMessage"].clone(),
                            o.data["spec"]["consumerRef"].clone(),
                        ),
                    )
                })
                .collect();
            let machines: BTreeMap<_, _> = s
                .metal3_machines
                .iter()
                .map(|(k, o)| (k.clone(), o.data["status"].clone()))
                .collect();
            panic!(
                "{what}: not after {timeout:?}\nhosts: {hosts:#?}\nmetal3machines: {machines:#?}\ndata: {:?}\nipclaims: {:?}",
                s.datas.keys().collect::<Vec<_>>(),
                s.ip_claims.keys().collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn host(i: usize, sim_addr: std::net::SocketAddr, role: &str) -> Value {
    json!({
        "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "metadata": {"name": format!("node-{i}"), "namespace": NS, "labels": {"role": role}},
        "spec": {
            "online": true,
            "bootMACAddress": mac(i),
            "bmc": {"address": format!("redfish-virtualmedia+http://{sim_addr}{SYSTEM}"), "credentialsName": "bmc"},
        },
    })
}

fn templates() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "ipam.metal3.io/v1alpha1", "kind": "IPPool",
            "metadata": {"name": "prov", "namespace": NS},
            "spec": {"clusterName": "c1", "namePrefix": "prov",
                     "pools": [{"start": "192.168.10.10", "end": "192.168.10.20"}],
                     "prefix": 24, "gateway": "192.168.10.1", "dnsServers": ["192.168.10.1"]},
        }),
        json!({
            "apiVersion": V1BETA2, "kind": "Metal3DataTemplate",
            "metadata": {"name": "workers-data", "namespace": NS},
            "spec": {
                "clusterName": "c1",
                "metaData": {
                    "objectNames": [{"key": "name", "object": "machine"}],
                    "indexes": [{"key": "index", "offset": 0, "step": 1}],
                    "ipAddressesFromPool": [{"key": "address", "name": "prov"}],
                },
                "networkData": {
                    "links": {"ethernets": [{"type": "phy", "id": "eth0", "macAddress": {"fromHostInterface": "eth0"}}]},
                    "networks": {"ipv4": [{"id": "prov", "link": "eth0", "ipAddressFromIPPool": "prov",
                                           "routes": [{"network": "0.0.0.0", "prefix": 0, "gateway": {"fromIPPool": "prov"}}]}]},
                },
            },
        }),
        json!({
            "apiVersion": V1BETA2, "kind": "Metal3MachineTemplate",
            "metadata": {"name": "workers", "namespace": NS},
            "spec": {"nodeReuse": true, "template": {"spec": machine_spec()}},
        }),
    ]
}

fn machine_spec() -> Value {
    json!({
        "image": {"url": "http://127.0.0.1:9/node.qcow2", "checksum": "ab".repeat(32),
                  "checksumType": "sha256", "format": "qcow2"},
        "dataTemplate": {"name": "workers-data"},
        "hostSelector": {"matchLabels": {"role": "worker"}},
    })
}

/// What Cluster API's MachineDeployment controllers make for one more worker: the
/// bootstrap data Secret, the Machine and its Metal3Machine cloned from the template,
/// owned by the Machine.
async fn add_worker(client: &Client, name: &str) {
    create(
        client,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": format!("{name}-bootstrap"), "namespace": NS},
               "stringData": {"value": format!("#cloud-config\nhostname: {name}\n"), "format": "cloud-config"}}),
    )
    .await;
    let machine = create(
        client,
        json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"cluster.x-k8s.io/cluster-name": "c1", "cluster.x-k8s.io/deployment-name": "workers"}},
            "spec": {"clusterName": "c1",
                     "bootstrap": {"dataSecretName": format!("{name}-bootstrap")},
                     "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "Metal3Machine", "name": name}},
        }),
    )
    .await;
    create(
        client,
        json!({
            "apiVersion": V1BETA2, "kind": "Metal3Machine",
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"cluster.x-k8s.io/cloned-from-name": "workers"},
                         "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
                         "ownerReferences": [{"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
                                              "name": name, "uid": machine.metadata.uid, "controller": true}]},
            "spec": machine_spec(),
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_a_real_api_server_chooses_hosts_renders_data_and_gives_them_back() {
    let dir = std::env::temp_dir().join(format!("capm3-kube-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = KubeApiServer::start(&dir.join("kube"));
    let client = server.admin_client().await;
    for crd in [
        "baremetal-operator/config/base/crds/bases/metal3.io_baremetalhosts.yaml",
        "ip-address-manager/config/crd/bases/ipam.metal3.io_ippools.yaml",
        "ip-address-manager/config/crd/bases/ipam.metal3.io_ipclaims.yaml",
        "ip-address-manager/config/crd/bases/ipam.metal3.io_ipaddresses.yaml",
        "cluster-api-provider-metal3/config/crd/bases/infrastructure.cluster.x-k8s.io_metal3machines.yaml",
        "cluster-api-provider-metal3/config/crd/bases/infrastructure.cluster.x-k8s.io_metal3machinetemplates.yaml",
        "cluster-api-provider-metal3/config/crd/bases/infrastructure.cluster.x-k8s.io_metal3datatemplates.yaml",
        "cluster-api-provider-metal3/config/crd/bases/infrastructure.cluster.x-k8s.io_metal3dataclaims.yaml",
        "cluster-api-provider-metal3/config/crd/bases/infrastructure.cluster.x-k8s.io_metal3datas.yaml",
    ] {
        apply_crd(&client, &reference(crd)).await;
    }
    apply_crd(
        &client,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds/cluster.x-k8s.io_machines.yaml"),
    )
    .await;
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bmc", "namespace": NS},
               "stringData": {"username": "admin", "password": "s3cret"}}),
    )
    .await;

    // The fleet: simulated BMCs, the conductor, an agent per host; the operator's kube
    // mode over them, and the provider beside it.
    let sims = common::sims(3).await;
    let service = common::conductor().await;
    let written = common::Written::default();
    let agents: Vec<_> = (0..3)
        .map(|i| tokio::spawn(common::agent(service.agent_url(), mac(i), written.clone())))
        .collect();
    let conductor: Arc<dyn ConductorApi> = Arc::new(HttpConductor::new(&service.admin_url()));
    let operator = Operator::open_with(
        conductor,
        Store::open(&dir.join("operator.redb")).unwrap(),
        OperatorConfig {
            poll: Duration::from_millis(20),
            inspection: InspectionMode::Agent,
            ..OperatorConfig::default()
        },
        Arc::new(metal3_operator::kube_ipam::KubeAddresses::new(
            client.clone(),
        )),
    )
    .unwrap();
    let operator_task = {
        let (client, operator) = (client.clone(), operator.clone());
        tokio::spawn(async move {
            metal3_operator::kube_controller::run(client, operator, Some(NS))
                .await
                .unwrap();
        })
    };
    let provider_task = {
        let client = client.clone();
        tokio::spawn(async move { metal3_capm3::kube_controller::run(client, Some(NS)).await })
    };

    for object in templates() {
        create(&client, object).await;
    }
    for (i, role) in ["worker", "worker", "storage"].into_iter().enumerate() {
        create(&client, host(i, sims[i].addr(), role)).await;
    }
    wait_for(
        &client,
        "every host available",
        Duration::from_secs(120),
        |s| s.hosts.len() == 3 && s.hosts.keys().all(|h| s.state(h) == "available"),
    )
    .await;

    // Two workers: each takes a worker host and is provisioned on it.
    add_worker(&client, "w0").await;
    add_worker(&client, "w1").await;
    let s = wait_for(
        &client,
        "two workers provisioned",
        Duration::from_secs(180),
        |s| s.provisioned("w0") && s.provisioned("w1"),
    )
    .await;
    assert_eq!(
        s.consumer("node-2"),
        None,
        "the storage host is no worker's"
    );
    assert_eq!(s.state("node-2"), "available");
    let mut indexes = Vec::new();
    for m in ["w0", "w1"] {
        let host = s.host_of(m).unwrap_or_else(|| panic!("{m} has no host"));
        assert_ne!(host, "node-2");
        assert_eq!(s.state(host), "provisioned");
        let provider_id = format!("metal3://{NS}/{host}/{m}");
        assert_eq!(
            s.metal3_machines[m].data["spec"]["providerID"], provider_id,
            "{m}"
        );
        assert_eq!(s.machines[m].data["spec"]["providerID"], provider_id);
        assert_eq!(
            s.metal3_machines[m].metadata.annotations.as_ref().unwrap()["metal3.io/BareMetalHost"],
            format!("{NS}/{host}")
        );
        assert_eq!(
            s.condition(m, "Ready").unwrap()["status"],
            "True",
            "{:?}",
            s.metal3_machines[m].data["status"]
        );
        // The host got the machine's image, its bootstrap data and the rendered Secrets.
        let spec = &s.hosts[host].data["spec"];
        assert_eq!(spec["image"]["url"], "http://127.0.0.1:9/node.qcow2");
        assert_eq!(spec["userData"]["name"], format!("{m}-bootstrap"));
        assert_eq!(spec["networkData"]["name"], format!("{m}-networkdata"));
        assert_eq!(spec["metaData"]["name"], format!("{m}-metadata"));
        // Its data: ready, of an index of the template, its address from the pool through
        // an IPClaim owned by the data and an IPAddress named as upstream's IPAM names it.
        let data = s.data_of(m).unwrap_or_else(|| panic!("{m} has no data"));
        assert_eq!(data.data["status"]["ready"], true);
        let index = data.data["spec"]["index"].as_u64().unwrap();
        indexes.push(index);
        let data_name = data.metadata.name.clone().unwrap();
        assert_eq!(data_name, format!("workers-data-{index}"));
        let claim = &s.ip_claims[&format!("{data_name}-prov")];
        assert_eq!(
            claim.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Metal3Data"
        );
        let address_name = claim.data["status"]["address"]["name"].as_str().unwrap();
        let address = s.ip_addresses[address_name].data["spec"]["address"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(address_name, format!("prov-{}", address.replace('.', "-")));
        let network = s
            .secret(&format!("{m}-networkdata"), "networkData")
            .unwrap();
        assert!(network.contains(&address), "{m}: {network}");
        assert!(
            network.contains(&mac(host.trim_start_matches("node-").parse().unwrap())),
            "{m}: the host's NIC by its MAC: {network}"
        );
        let meta = s.secret(&format!("{m}-metadata"), "metaData").unwrap();
        assert!(meta.contains(&address) && meta.contains(m), "{m}: {meta}");
    }
    indexes.sort();
    assert_eq!(indexes, [0, 1], "the lowest free indexes");
    // Only the machines' claims hold addresses: the hosts took none of their own.
    assert_eq!(s.ip_addresses.len(), 2, "{:?}", s.ip_addresses.keys());
    assert_eq!(
        written.lock().unwrap().len(),
        2,
        "{:?}",
        written.lock().unwrap()
    );

    // A third worker finds no host and says so.
    add_worker(&client, "w2").await;
    wait_for(
        &client,
        "w2 waiting for a host",
        Duration::from_secs(30),
        |s| {
            s.metal3_machines.get("w2").is_some_and(|_| {
                s.condition("w2", "AssociateBMH")
                    .is_some_and(|c| c["status"] == "False" && c["reason"] == "NoAvailableHost")
            })
        },
    )
    .await;

    // A machine that never got a host is deleted: it has nothing to give back and goes.
    let metal3_machines = api_for(
        &client,
        &json!({"apiVersion": V1BETA2, "kind": "Metal3Machine", "metadata": {"namespace": NS}}),
    );
    let machines = api_for(
        &client,
        &json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine", "metadata": {"namespace": NS}}),
    );
    metal3_machines
        .delete("w2", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&client, "w2 gone", Duration::from_secs(30), |s| {
        !s.metal3_machines.contains_key("w2")
    })
    .await;
    machines
        .delete("w2", &DeleteParams::default())
        .await
        .unwrap();

    // Scale down: w1 is deleted. Its host is deprovisioned and released (labelled for
    // its deployment), its data, IPClaim, address and Secrets go, and then the machine.
    let released_host = s.host_of("w1").unwrap().to_string();
    let released = s.data_of("w1").unwrap();
    let released_data = released.metadata.name.clone().unwrap();
    let w1_index = released.data["spec"]["index"].clone();
    let w1_address =
        s.ip_claims[&format!("{released_data}-prov")].data["status"]["address"]["name"]
            .as_str()
            .unwrap()
            .to_string();
    metal3_machines
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    let s = wait_for(&client, "w1 gone", Duration::from_secs(180), |s| {
        !s.metal3_machines.contains_key("w1")
    })
    .await;
    machines
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(s.state(&released_host), "available");
    assert_eq!(s.consumer(&released_host), None);
    assert_eq!(
        s.hosts[&released_host].metadata.labels.as_ref().unwrap()["infrastructure.cluster.x-k8s.io/node-reuse"],
        "workers",
        "released for its deployment"
    );
    assert!(s.hosts[&released_host].data["spec"]["image"].is_null());
    for gone in ["w1-networkdata", "w1-metadata"] {
        assert!(!s.secrets.contains_key(gone), "{gone}");
    }
    assert!(!s.data_claims.contains_key("w1"));
    assert!(!s.datas.contains_key(&released_data));
    assert!(!s.ip_claims.contains_key(&format!("{released_data}-prov")));
    let s = wait_for(
        &client,
        "w1's address given back",
        Duration::from_secs(30),
        |s| !s.ip_addresses.contains_key(&w1_address),
    )
    .await;
    let pool = list(&client, "ipam.metal3.io/v1alpha1", "IPPool").await;
    assert!(
        pool["prov"].data["status"]["indexes"]
            .get(format!("{released_data}-prov"))
            .is_none(),
        "{:?}",
        pool["prov"].data["status"]
    );
    assert_eq!(s.ip_addresses.len(), 1);

    // Scale up: a new worker takes the released host and the index given back.
    add_worker(&client, "w3").await;
    let s = wait_for(&client, "w3 provisioned", Duration::from_secs(180), |s| {
        s.provisioned("w3")
    })
    .await;
    assert_eq!(s.host_of("w3"), Some(released_host.as_str()));
    assert_eq!(s.data_of("w3").unwrap().data["spec"]["index"], w1_index);
    let labels = s.hosts[&released_host]
        .metadata
        .labels
        .clone()
        .unwrap_or_default();
    assert!(
        !labels.contains_key("infrastructure.cluster.x-k8s.io/node-reuse"),
        "the node-reuse label is taken off when the host is taken back: {labels:?}"
    );
    assert_eq!(s.ip_addresses.len(), 2);
    // Three images written in all: two workers, then w3 on w1's host.
    assert_eq!(
        written.lock().unwrap().values().sum::<u32>(),
        3,
        "{:?}",
        written.lock().unwrap()
    );

    provider_task.abort();
    operator_task.abort();
    operator.stop().await;
    for a in agents {
        a.abort();
    }
    drop(service);
    for sim in sims {
        sim.stop().await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
