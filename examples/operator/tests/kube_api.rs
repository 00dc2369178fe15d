//! `operator --kube` against a real kube-apiserver (v1.20 on etcd, `kube-apiserver.sh`):
//! upstream's BareMetalHost CRD applied unchanged, the operator running as its own
//! ServiceAccount with `deploy/rbac.yaml`'s rights (not as an admin), the conductor and
//! bmc-sim behind it. Hosts register, inspect, provision; a host whose credentials Secret
//! is missing shows a registration error until the Secret comes, one whose password the
//! BMC refuses until the Secret is corrected; the operator is killed
//! and started again without anything done twice; a deleted host is deprovisioned, its
//! node deleted and its finalizer removed. What `kubectl get bmh` shows is read as
//! kubectl reads it (the server's Table), and every status the operator wrote had to pass
//! the API server's validation against upstream's schema. A second run rides out faults
//! of the BMCs (503s), the conductor and the API server (each unreachable for a while)
//! with nothing done twice; a third kills the leading replica of two.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bmc_sim::RedfishSim;
use bmc_sim::vendor::BootSource;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use metal3_conductor::history::HistoryEvent;
use metal3_conductor::service::Service;
use metal3_conductor::{ApiError, ConductorApi, HttpConductor};
use provision_fsm::NodeState;
use serde_json::{Value, json};
use test_peers::KubeApiServer;
use test_peers::kube_objects::{api_for, apply_crd, create, documents, resource_of};

mod common;
use common::{Written, agent, conductor, faulty_sims, sims};

const SYSTEM: &str = "/redfish/v1/Systems/437XR1138R2";
const LIVE_ISO: &str = "http://127.0.0.1:9/live.iso";
const HOSTS: usize = 4;

fn mac(i: usize) -> String {
    format!("52:54:00:bb:00:{i:02x}")
}

fn reference(path: &str) -> PathBuf {
    test_peers::metal3_manifest(path)
}

/// A kubeconfig for the operator's ServiceAccount (its token, made by the controller
/// manager), written to `path`.
async fn service_account_kubeconfig(client: &Client, server: &KubeApiServer, path: &Path) {
    let accounts: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "metal3",
        &resource_of(&json!({"apiVersion": "v1", "kind": "ServiceAccount"})).0,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let secret = loop {
        let sa = accounts.get("metal3-operator").await.unwrap();
        if let Some(name) = sa.data["secrets"][0]["name"].as_str() {
            break name.to_string();
        }
        assert!(Instant::now() < deadline, "no token for the ServiceAccount");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), "metal3");
    let token = secrets.get(&secret).await.unwrap().data.unwrap()["token"]
        .0
        .clone();
    let token = String::from_utf8(token).unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode(server.ca_pem());
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: metal3-operator\n  user:\n    token: {token}\n\
             contexts:\n- name: lab\n  context: {{cluster: lab, user: metal3-operator}}\ncurrent-context: lab\n",
            server.url
        ),
    )
    .unwrap();
}

/// A fresh API server with upstream's BareMetalHost CRD, the `lab` namespace with the
/// BMC Secret `bmc`, and the operator's identity from `deploy/rbac.yaml` (its kubeconfig
/// at `DIR/operator.kubeconfig`).
async fn cluster(dir: &Path) -> (KubeApiServer, Client) {
    let server = KubeApiServer::start(&dir.join("kube"));
    let client = server.admin_client().await;
    for crd in [
        "baremetal-operator/config/base/crds/bases/metal3.io_baremetalhosts.yaml",
        "ip-address-manager/config/crd/bases/ipam.metal3.io_ippools.yaml",
        "ip-address-manager/config/crd/bases/ipam.metal3.io_ipclaims.yaml",
        "ip-address-manager/config/crd/bases/ipam.metal3.io_ipaddresses.yaml",
    ] {
        apply_crd(&client, &reference(crd)).await;
    }
    let rbac =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml"))
            .unwrap();
    for object in documents(&rbac) {
        create(&client, object).await;
    }
    service_account_kubeconfig(&client, &server, &dir.join("operator.kubeconfig")).await;
    create(
        &client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}),
    )
    .await;
    create(
        &client,
        secret("bmc", json!({"username": "admin", "password": "s3cret"})),
    )
    .await;
    (server, client)
}

/// Simulated BMCs of the recorded DMTF rack server, a conductor and an agent per host.
async fn fleet(
    hosts: usize,
) -> (
    Vec<RedfishSim>,
    Service,
    Written,
    Vec<tokio::task::JoinHandle<()>>,
) {
    fleet_with(hosts, 0.0).await
}

/// As [`fleet`], the BMCs answering `fault_rate` of their requests with 503.
async fn fleet_with(
    hosts: usize,
    fault_rate: f64,
) -> (
    Vec<RedfishSim>,
    Service,
    Written,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let sims = faulty_sims(hosts, fault_rate).await;
    let service = conductor().await;
    let written = Written::default();
    let agents = (0..hosts)
        .map(|i| tokio::spawn(agent(service.agent_url(), mac(i), written.clone())))
        .collect();
    (sims, service, written, agents)
}

/// Stops what a test started: its agents, conductor, BMCs and API server, and removes
/// its directory.
async fn stop(
    agents: Vec<tokio::task::JoinHandle<()>>,
    service: Service,
    sims: Vec<RedfishSim>,
    server: KubeApiServer,
    dir: &Path,
) {
    for a in agents {
        a.abort();
    }
    drop(service);
    for sim in sims {
        sim.stop().await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// Live-ISO boots at a simulated BMC.
fn live_boots(sim: &RedfishSim) -> usize {
    sim.boots(SYSTEM)
        .iter()
        .filter(|b| matches!(b, BootSource::VirtualCd { image, .. } if image == LIVE_ISO))
        .count()
}

/// What `kubectl get bmh -n lab` shows: the server's Table, name → column → cell.
async fn table(server: &KubeApiServer) -> BTreeMap<String, BTreeMap<String, String>> {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&server.ca_pem()).unwrap())
        .build()
        .unwrap();
    let t: Value = http
        .get(format!(
            "{}/apis/metal3.io/v1alpha1/namespaces/lab/baremetalhosts",
            server.url
        ))
        .bearer_auth(server.admin_token())
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let columns: Vec<String> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let cells = row["cells"].as_array().unwrap();
            let name = row["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string();
            let cells = columns
                .iter()
                .zip(cells)
                .map(|(c, v)| {
                    let v = v.as_str().map(str::to_string).unwrap_or(v.to_string());
                    (c.clone(), v)
                })
                .collect();
            (name, cells)
        })
        .collect()
}

/// The operator's process, killed when dropped (a failing test leaves none behind).
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn operator(admin: &str, dir: &Path) -> OperatorProcess {
    replica(admin, dir, "operator", &[])
}

/// An operator process named `name` (its state file and log are `DIR/NAME.*`).
fn replica(admin: &str, dir: &Path, name: &str, args: &[&str]) -> OperatorProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--kube", "--conductor", admin, "--state"])
        .arg(dir.join(format!("{name}.redb")))
        .args(args)
        .args(["--poll-ms", "20", "--inspection", "agent"])
        .env("KUBECONFIG", dir.join("operator.kubeconfig"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(OperatorProcess)
        .unwrap()
}

fn host(i: usize, sim: &RedfishSim, credentials: &str) -> Value {
    let mut spec = json!({
        "online": true,
        "bootMACAddress": mac(i),
        "bmc": {"address": format!("redfish-virtualmedia+http://{}{SYSTEM}", sim.addr()), "credentialsName": credentials},
    });
    if i == 1 {
        // A disk image written by the agent, with cloud-init's user and meta data from
        // Secrets and its network data rendered from the address the host claims.
        spec["image"] = json!({"url": "http://127.0.0.1:9/os.qcow2", "format": "qcow2",
                               "checksumType": "sha256", "checksum": "ab".repeat(32)});
        spec["automatedCleaningMode"] = json!("metadata");
        spec["userData"] = json!({"name": "node-1-user-data"});
        spec["metaData"] = json!({"name": "node-1-meta-data"});
    } else {
        spec["image"] = json!({"url": LIVE_ISO, "format": "live-iso"});
        spec["automatedCleaningMode"] = json!("disabled");
    }
    json!({
        "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "metadata": {"name": format!("node-{i}"), "namespace": "lab"},
        "spec": spec,
    })
}

fn secret(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "lab"}, "stringData": data})
}

async fn statuses(client: &Client) -> BTreeMap<String, DynamicObject> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "lab",
        &resource_of(&json!({"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost"})).0,
    );
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| (o.metadata.name.clone().unwrap(), o))
        .collect()
}

/// Waits until `done` holds for the hosts as listed, or fails with `context`.
async fn wait_for(
    client: &Client,
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    done: impl Fn(&BTreeMap<String, DynamicObject>) -> bool,
) -> BTreeMap<String, DynamicObject> {
    let deadline = Instant::now() + timeout;
    loop {
        let hosts = statuses(client).await;
        if done(&hosts) {
            return hosts;
        }
        if Instant::now() > deadline {
            let states: BTreeMap<_, _> = hosts
                .iter()
                .map(|(k, o)| (k.clone(), o.data["status"].clone()))
                .collect();
            panic!("{what}: not after {timeout:?}\n{states:#?}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Upstream IPAM's example IPPool (`pool1`: 192.168.0.10–50, `namePrefix: pool1-prov`)
/// in `lab`.
async fn example_pool(client: &Client) {
    let text = std::fs::read_to_string(reference("ip-address-manager/examples/ippool/ippool.yaml"))
        .unwrap()
        .replace("${NAMESPACE}", "lab");
    let pool = documents(&text)
        .into_iter()
        .find(|d| d["kind"] == "IPPool")
        .unwrap();
    create(client, pool).await;
}

/// An object of `lab` by kind and name.
async fn get(client: &Client, api_version: &str, kind: &str, name: &str) -> Option<DynamicObject> {
    let object = json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": "lab"}});
    api_for(client, &object).get_opt(name).await.unwrap()
}

/// The IPAddress objects of `lab`: claim name → addresses.
async fn addresses(client: &Client) -> BTreeMap<String, Vec<String>> {
    let object = json!({"apiVersion": "ipam.metal3.io/v1alpha1", "kind": "IPAddress", "metadata": {"namespace": "lab"}});
    let mut by_claim: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in api_for(client, &object)
        .list(&Default::default())
        .await
        .unwrap()
        .items
    {
        let claim = a.data["spec"]["claim"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let address = a.data["spec"]["address"].as_str().unwrap().to_string();
        assert_eq!(
            a.metadata.name.as_deref(),
            Some(format!("pool1-prov-{}", address.replace('.', "-")).as_str()),
            "an IPAddress named as upstream names them"
        );
        by_claim.entry(claim).or_default().push(address);
    }
    by_claim
}

/// Every claim holds one address, no address is held twice, and the pool's and claims'
/// statuses say the same.
async fn check_addresses(client: &Client, claims: &[&str], foreign: &[(&str, &str)]) {
    let by_claim = addresses(client).await;
    let mut expected: Vec<String> = claims.iter().map(ToString::to_string).collect();
    expected.extend(foreign.iter().map(|(c, _)| c.to_string()));
    expected.sort();
    assert_eq!(
        by_claim.keys().cloned().collect::<Vec<_>>(),
        expected,
        "{by_claim:?}"
    );
    let mut all: Vec<&String> = by_claim.values().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        by_claim.len(),
        "an address held twice: {by_claim:?}"
    );
    for (claim, address) in foreign {
        assert_eq!(by_claim[*claim], [address.to_string()], "{by_claim:?}");
    }
    let pool = get(client, "ipam.metal3.io/v1alpha1", "IPPool", "pool1")
        .await
        .unwrap();
    for claim in claims {
        let held = &by_claim[*claim];
        assert_eq!(held.len(), 1, "{claim}: {by_claim:?}");
        assert_eq!(
            pool.data["status"]["indexes"][claim], held[0],
            "{:?}",
            pool.data
        );
        let object = get(client, "ipam.metal3.io/v1alpha1", "IPClaim", claim)
            .await
            .unwrap();
        assert_eq!(
            object.data["status"]["address"]["name"],
            format!("pool1-prov-{}", held[0].replace('.', "-")),
            "{:?}",
            object.data
        );
    }
}

fn state(o: &DynamicObject) -> &str {
    o.data["status"]["provisioning"]["state"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_on_a_real_api_server_takes_hosts_through_their_life() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kube-api-{}", std::process::id()));
    let started = Instant::now();
    let (server, client) = cluster(&dir).await;
    let server_up = started.elapsed();

    let (sims, service, written, agents) = fleet(HOSTS).await;
    let admin = service.admin_url();
    let conductor = HttpConductor::new(&admin);

    // The manifests to deploy the conductor and the operator load into the API server as
    // they are, and the operator's arguments there are ones it takes.
    for file in ["deploy/operator.yaml", "../conductor/deploy/conductor.yaml"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        for object in documents(&text) {
            if object["kind"] == "Deployment" && object["metadata"]["name"] == "metal3-operator" {
                let args: Vec<String> = object["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                let parsed = Command::new(env!("CARGO_BIN_EXE_operator"))
                    .args(&args)
                    .args(["--completions", "bash"])
                    .output()
                    .unwrap();
                assert!(
                    parsed.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&parsed.stderr)
                );
            }
            create(&client, object).await;
        }
    }

    create(
        &client,
        secret(
            "node-1-user-data",
            json!({"userData": "#cloud-config\nhostname: node-1\n"}),
        ),
    )
    .await;
    create(
        &client,
        secret(
            "node-1-meta-data",
            json!({"metaData": "{\"site\": \"lab\"}"}),
        ),
    )
    .await;
    create(
        &client,
        secret(
            "node-3-bmc",
            json!({"username": "admin", "password": "wrong"}),
        ),
    )
    .await;
    for (i, sim) in sims.iter().enumerate() {
        // node-2 names a Secret that does not exist yet (bad input); node-3's has a
        // password the BMC refuses (a fault of the BMC's making).
        let credentials = match i {
            2 => "node-2-bmc",
            3 => "node-3-bmc",
            _ => "bmc",
        };
        create(&client, host(i, sim, credentials)).await;
    }
    // Addresses from upstream's example pool: node-0 through an IPClaim it owns, the
    // others through a claim of their own the operator makes.
    example_pool(&client).await;
    let node_0 = get(&client, "metal3.io/v1alpha1", "BareMetalHost", "node-0")
        .await
        .unwrap();
    create(
        &client,
        json!({"apiVersion": "ipam.metal3.io/v1alpha1", "kind": "IPClaim",
               "metadata": {"name": "node-0-prov", "namespace": "lab", "ownerReferences": [
                   {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost", "name": "node-0",
                    "uid": node_0.metadata.uid.unwrap()}]},
               "spec": {"pool": {"name": "pool1", "namespace": "lab"}}}),
    )
    .await;

    let log = dir.join("operator.log");
    let context = || {
        format!(
            "operator log:\n{}\napiserver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            server.log_tail(20)
        )
    };
    let child = operator(&admin, &dir);
    // Once the operator has read the pool, someone else (upstream's IPAM, another
    // replica) takes its first address: the operator learns it when its create of that
    // IPAddress is refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("IPPool taken from the API server")
    {
        assert!(
            Instant::now() < deadline,
            "the pool never read\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    create(
        &client,
        json!({"apiVersion": "ipam.metal3.io/v1alpha1", "kind": "IPAddress",
               "metadata": {"name": "pool1-prov-192-168-0-10", "namespace": "lab"},
               "spec": {"address": "192.168.0.10", "prefix": 24, "gateway": "192.168.0.1",
                        "pool": {"name": "pool1", "namespace": "lab"},
                        "claim": {"name": "someone-else", "namespace": "lab"}}}),
    )
    .await;
    let hosts = wait_for(
        &client,
        "node-0 and node-1 provisioned and on, node-2 refused",
        Duration::from_secs(120),
        context,
        |h| {
            h.len() == HOSTS
                && ["node-0", "node-1"].iter().all(|n| {
                    state(&h[*n]) == "provisioned" && h[*n].data["status"]["poweredOn"] == true
                })
                && h["node-2"].data["status"]["errorType"] == "registration error"
                && h["node-3"].data["status"]["errorType"] == "registration error"
        },
    )
    .await;
    let provisioned = started.elapsed();

    // What kubectl shows.
    let shown = table(&server).await;
    assert_eq!(shown["node-0"]["State"], "provisioned", "{shown:?}");
    assert_eq!(shown["node-1"]["State"], "provisioned", "{shown:?}");
    assert_eq!(shown["node-2"]["Error"], "registration error", "{shown:?}");
    assert_eq!(shown["node-3"]["Error"], "registration error", "{shown:?}");
    assert_eq!(shown["node-0"]["Status"], "OK", "{shown:?}");
    for (name, o) in &hosts {
        assert!(
            o.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "baremetalhost.metal3.io"),
            "{name}: {:?}",
            o.metadata
        );
    }
    let status = &hosts["node-1"].data["status"];
    assert_eq!(status["provisioning"]["ID"], "lab/node-1", "{status}");
    assert_eq!(
        status["provisioning"]["image"]["format"], "qcow2",
        "{status}"
    );
    assert_eq!(status["poweredOn"], true, "{status}");
    assert_eq!(status["hardware"]["nics"][0]["mac"], mac(1), "{status}");
    assert!(
        status["operationHistory"]["provision"]["end"].is_string(),
        "{status}"
    );
    assert!(
        hosts["node-2"].data["status"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("doesn't exist"),
        "{:?}",
        hosts["node-2"].data
    );
    // The Secrets came from the API into the config drive the agent wrote (its address is
    // checked below, with the others).
    let drive = conductor
        .node("lab/node-1")
        .await
        .unwrap()
        .config_drive
        .unwrap();
    assert_eq!(
        drive.user_data.as_deref(),
        Some("#cloud-config\nhostname: node-1\n")
    );
    assert_eq!(
        drive.network_data.as_ref().unwrap()["links"][0]["ethernet_mac_address"],
        mac(1)
    );
    assert_eq!(drive.meta_data["site"], "lab", "{:?}", drive.meta_data);

    // The bad input put right: the Secret comes and the host goes on.
    create(
        &client,
        secret(
            "node-2-bmc",
            json!({"username": "admin", "password": "s3cret"}),
        ),
    )
    .await;
    wait_for(
        &client,
        "node-2 provisioned once its Secret exists",
        Duration::from_secs(60),
        context,
        |h| {
            state(&h["node-2"]) == "provisioned"
                && h["node-2"].data["status"].get("errorType").is_none()
        },
    )
    .await;

    // The refused credentials put right: the Secret changes, which wakes the host (the
    // host itself does not change, and a refused password is not tried again by itself).
    let refused = hosts["node-3"].data["status"]["errorMessage"].clone();
    assert!(refused.as_str().unwrap().contains("refused"), "{refused}");
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), "lab");
    secrets
        .patch(
            "node-3-bmc",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"stringData": {"password": "s3cret"}})),
        )
        .await
        .unwrap();
    let fixed = Instant::now();
    wait_for(
        &client,
        "node-3 provisioned once its Secret is right",
        Duration::from_secs(60),
        context,
        |h| {
            state(&h["node-3"]) == "provisioned"
                && h["node-3"].data["status"].get("errorType").is_none()
        },
    )
    .await;
    let after_fix = fixed.elapsed();
    // One address per host, recorded in the API server, none of them the one taken.
    let claims = ["node-0-prov", "node-1", "node-2", "node-3"];
    let foreign = [("someone-else", "192.168.0.10")];
    check_addresses(&client, &claims, &foreign).await;
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("address taken by another claim"),
        "{}",
        context()
    );
    let held = addresses(&client).await;
    // The config drive the agent wrote on node-1 (disk-image deploy) carries its address.
    let drive = conductor
        .node("lab/node-1")
        .await
        .unwrap()
        .config_drive
        .unwrap();
    let network = drive.network_data.unwrap();
    assert_eq!(
        network["networks"][0]["ip_address"], held["node-1"][0],
        "{network}"
    );
    assert_eq!(
        network["networks"][0]["netmask"], "255.255.255.0",
        "{network}"
    );
    let own = get(&client, "ipam.metal3.io/v1alpha1", "IPClaim", "node-2")
        .await
        .unwrap();
    assert_eq!(
        own.metadata.owner_references.unwrap()[0].name,
        "node-2",
        "a host's own claim is owned by the host"
    );

    // Killed and started again: the same hosts, nothing done twice.
    drop(child);
    let child = operator(&admin, &dir);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hosts = statuses(&client).await;
    for (i, sim) in sims.iter().enumerate() {
        let key = format!("lab/node-{i}");
        assert_eq!(state(&hosts[&format!("node-{i}")]), "provisioned", "{key}");
        assert_eq!(
            conductor.node(&key).await.unwrap().deploy_attempts,
            1,
            "{key}"
        );
        let images = written.lock().unwrap().get(&key).copied().unwrap_or(0);
        let expected = if i == 1 { (0, 1) } else { (1, 0) };
        assert_eq!((live_boots(sim), images), expected, "{key}");
    }
    assert_eq!(
        addresses(&client).await,
        held,
        "addresses changed by the restart"
    );

    // Deleted: deprovisioned (cleaned), its node deleted, the finalizer removed, gone.
    let bmh = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "lab",
        &resource_of(&json!({"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost"})).0,
    );
    bmh.delete("node-1", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &client,
        "node-1 gone",
        Duration::from_secs(60),
        context,
        |h| !h.contains_key("node-1"),
    )
    .await;
    assert!(
        matches!(
            conductor.node("lab/node-1").await,
            Err(ApiError::NotFound(_))
        ),
        "the node of a deleted host stays"
    );
    // Its address given back (the IPAddress deleted, the pool's index gone), and its own
    // claim collected with it.
    check_addresses(&client, &["node-0-prov", "node-2", "node-3"], &foreign).await;
    let pool = get(&client, "ipam.metal3.io/v1alpha1", "IPPool", "pool1")
        .await
        .unwrap();
    assert!(
        pool.data["status"]["indexes"].get("node-1").is_none(),
        "{:?}",
        pool.data
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&client, "ipam.metal3.io/v1alpha1", "IPClaim", "node-1")
        .await
        .is_some()
    {
        assert!(Instant::now() < deadline, "node-1's IPClaim outlived it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Events, as `kubectl describe bmh` lists them.
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "lab",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let reasons: Vec<(String, String)> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| {
            (
                e.data["regarding"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e.data["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (host, reason) in [
        ("node-0", "Registered"),
        ("node-0", "InspectionComplete"),
        ("node-0", "ProvisioningComplete"),
        ("node-1", "DeprovisioningStarted"),
        ("node-1", "DeprovisioningComplete"),
        ("node-2", "RegistrationError"),
    ] {
        assert!(
            reasons.iter().any(|(h, r)| h == host && r == reason),
            "no {reason} Event for {host}: {reasons:?}"
        );
    }
    drop(child);
    // Every status write was accepted: the operator logged no failed reconcile.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("reconcile failed"), "{logged}");
    println!(
        "kube-apiserver up in {:.1} s; 2 hosts provisioned through it {:.1} s after the start; \
         the host with refused credentials provisioned {:.1} s after its Secret was put right",
        server_up.as_secs_f64(),
        provisioned.as_secs_f64(),
        after_fix.as_secs_f64()
    );

    stop(agents, service, sims, server, &dir).await;
}

/// A TCP relay on loopback between the operator and a peer, which can be cut (every
/// connection broken, each new one closed at once: the peer away, as behind a load
/// balancer with no backend) and restored.
struct Relay {
    url: String,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `target` (`scheme://127.0.0.1:port`), its own URL in the same scheme.
    async fn start(target: &str) -> Relay {
        let (scheme, rest) = target.split_once("://").unwrap();
        let to: std::net::SocketAddr = rest.trim_end_matches('/').parse().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let up = std::sync::Arc::new(tokio::sync::watch::channel(true).0);
        let state = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut cut = state.subscribe();
                if !*cut.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Relay { url, up, task }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The same workflow with faults on every side: BMCs answering 10 % of their requests
/// with 503, the conductor unreachable for a while mid-run, then the API server. Every
/// host still ends provisioned with one deploy and one address, and is deleted after,
/// with the operator's process never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_the_bmcs_the_conductor_and_the_api_server_are_ridden_out() {
    const AWAY: Duration = Duration::from_secs(7);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kube-faults-{}", std::process::id()));
    let (server, client) = cluster(&dir).await;
    let (sims, service, written, agents) = fleet_with(HOSTS, 0.1).await;
    let conductor = HttpConductor::new(&service.admin_url());
    let to_conductor = Relay::start(&service.admin_url()).await;
    let to_api = Relay::start(&server.url).await;
    // The operator reaches the API server through its relay (the server's certificate
    // names 127.0.0.1, whatever the port).
    let kubeconfig = dir.join("operator.kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    std::fs::write(&kubeconfig, text.replace(&server.url, &to_api.url)).unwrap();
    for (name, data) in [
        (
            "node-1-user-data",
            json!({"userData": "#cloud-config\nhostname: node-1\n"}),
        ),
        ("node-1-meta-data", json!({"metaData": "{}"})),
    ] {
        create(&client, secret(name, data)).await;
    }
    example_pool(&client).await;
    for (i, sim) in sims.iter().enumerate() {
        create(&client, host(i, sim, "bmc")).await;
    }
    let log = dir.join("operator.log");
    let context = || {
        format!(
            "operator log:\n{}\napiserver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            server.log_tail(20)
        )
    };
    let started = Instant::now();
    let mut child = operator(&to_conductor.url, &dir);
    let on_their_way = wait_for(
        &client,
        "a host inspecting or provisioning",
        Duration::from_secs(60),
        context,
        |h| {
            h.values()
                .any(|o| ["inspecting", "provisioning"].contains(&state(o)))
        },
    )
    .await;
    let states: Vec<String> = on_their_way
        .values()
        .map(|o| state(o).to_string())
        .collect();

    // The conductor away: the operator says so and goes on asking.
    to_conductor.cut();
    tokio::time::sleep(AWAY).await;
    let unreachable = format!("{} unreachable", to_conductor.url);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains(&unreachable),
        "no {unreachable}\n{}",
        context()
    );
    to_conductor.restore();
    // Then the API server away: its watches break and list again once it answers.
    to_api.cut();
    tokio::time::sleep(AWAY).await;
    to_api.restore();
    let back = Instant::now();
    let provisioned = wait_for(
        &client,
        "every host provisioned after the faults",
        Duration::from_secs(180),
        context,
        |h| h.len() == HOSTS && h.values().all(|o| state(o) == "provisioned"),
    )
    .await;
    let (took, after_back) = (started.elapsed(), back.elapsed());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("watch of BareMetalHosts or Secrets failed"),
        "{}",
        context()
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the operator exited\n{}",
        context()
    );
    for (name, o) in &provisioned {
        assert!(
            o.data["status"].get("errorType").is_none(),
            "{name}: {:?}",
            o.data
        );
    }
    // Nothing twice for all that.
    for (i, sim) in sims.iter().enumerate() {
        let key = format!("lab/node-{i}");
        assert_eq!(
            conductor.node(&key).await.unwrap().deploy_attempts,
            1,
            "{key}\n{}",
            context()
        );
        let images = written.lock().unwrap().get(&key).copied().unwrap_or(0);
        let expected = if i == 1 { (0, 1) } else { (1, 0) };
        assert_eq!((live_boots(sim), images), expected, "{key}\n{}", context());
    }
    let claims: Vec<String> = (0..HOSTS).map(|i| format!("node-{i}")).collect();
    let claims: Vec<&str> = claims.iter().map(String::as_str).collect();
    check_addresses(&client, &claims, &[]).await;

    // And deleted, the BMCs still failing: every node and address gone with its host.
    let bmh = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "lab",
        &resource_of(&json!({"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost"})).0,
    );
    for i in 0..HOSTS {
        bmh.delete(&format!("node-{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_for(
        &client,
        "every host gone",
        Duration::from_secs(120),
        context,
        |h| h.is_empty(),
    )
    .await;
    for i in 0..HOSTS {
        let key = format!("lab/node-{i}");
        assert!(
            matches!(conductor.node(&key).await, Err(ApiError::NotFound(_))),
            "{key}'s node stays"
        );
    }
    assert_eq!(addresses(&client).await, BTreeMap::new(), "addresses stay");
    let requests: u64 = sims.iter().map(|s| s.requests()).sum();
    println!(
        "{HOSTS} hosts provisioned in {:.1} s with the BMCs failing 10 % of {requests} requests, \
         the conductor away for {} s (hosts then {states:?}) and the API server for {} s; the \
         last {:.1} s after the API server answered again",
        took.as_secs_f64(),
        AWAY.as_secs(),
        AWAY.as_secs(),
        after_back.as_secs_f64()
    );
    drop(child);
    stop(agents, service, sims, server, &dir).await;
}

/// The Lease's holder, if any.
async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "metal3");
    leases
        .get_opt("metal3-operator")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leads_and_the_other_takes_over_when_it_dies() {
    const REPLICA_HOSTS: usize = 6;
    const LEASE_SECONDS: u64 = 3;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kube-replicas-{}", std::process::id()));
    let (server, client) = cluster(&dir).await;
    let (sims, service, written, agents) = fleet(REPLICA_HOSTS).await;
    let admin = service.admin_url();
    let conductor = HttpConductor::new(&admin);
    let context = || {
        format!(
            "a:\n{}\nb:\n{}\napiserver:\n{}",
            std::fs::read_to_string(dir.join("a.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("b.log")).unwrap_or_default(),
            server.log_tail(20)
        )
    };
    example_pool(&client).await;
    let lease = ["--leader-election", "--lease-seconds", "3"];
    let a = replica(&admin, &dir, "a", &lease);
    let a_pid = a.0.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lease_holder(&client)
        .await
        .is_some_and(|h| h.ends_with(&format!("-{a_pid}")))
    {
        assert!(Instant::now() < deadline, "a never led\n{}", context());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = replica(&admin, &dir, "b", &lease);
    let b_pid = b.0.id().to_string();
    for (i, sim) in sims.iter().enumerate() {
        create(&client, host(i, sim, "bmc")).await;
    }
    // Killed while hosts are on their way: one provisioning, not all provisioned.
    let at_kill = wait_for(
        &client,
        "hosts on their way",
        Duration::from_secs(60),
        context,
        |h| {
            h.len() == REPLICA_HOSTS
                && h.values().any(|o| state(o) == "provisioning")
                && h.values().any(|o| state(o) != "provisioned")
        },
    )
    .await;
    let b_before = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    drop(a);
    let killed = Instant::now();
    let states: Vec<String> = at_kill.values().map(|o| state(o).to_string()).collect();
    // Until then b only waited: it took up no host and reconciled nothing.
    assert!(b_before.contains("waiting to lead"), "{b_before}");
    assert!(
        !b_before.contains("taken up") && !b_before.contains("reconcile"),
        "{b_before}"
    );
    while !lease_holder(&client)
        .await
        .is_some_and(|h| h.ends_with(&format!("-{b_pid}")))
    {
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_SECONDS * 3),
            "b did not take over\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS + 2),
        "took {takeover:?}"
    );
    wait_for(
        &client,
        "every host provisioned by b",
        Duration::from_secs(120),
        context,
        |h| h.values().all(|o| state(o) == "provisioned"),
    )
    .await;
    // Nothing twice: one deploy per node, one live-ISO boot or one image written.
    for (i, sim) in sims.iter().enumerate() {
        let key = format!("lab/node-{i}");
        assert_eq!(
            conductor.node(&key).await.unwrap().deploy_attempts,
            1,
            "{key}\n{}",
            context()
        );
        let images = written.lock().unwrap().get(&key).copied().unwrap_or(0);
        let expected = if i == 1 { (0, 1) } else { (1, 0) };
        assert_eq!((live_boots(sim), images), expected, "{key}\n{}", context());
        let history = conductor.history(&key).await.unwrap();
        let inspections = history
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    &e.event,
                    HistoryEvent::Transition {
                        to: NodeState::Inspecting,
                        ..
                    }
                )
            })
            .count();
        let expected = if history.dropped == 0 {
            1
        } else {
            inspections.min(1)
        };
        assert_eq!(inspections, expected, "{key} inspected {inspections} times");
    }
    let b_log = std::fs::read_to_string(dir.join("b.log")).unwrap();
    assert!(b_log.contains("taken up from its status"), "{b_log}");
    // Each host one address, whichever replica claimed it: b knew a's from the API.
    let claims: Vec<String> = (0..REPLICA_HOSTS).map(|i| format!("node-{i}")).collect();
    let claims: Vec<&str> = claims.iter().map(String::as_str).collect();
    check_addresses(&client, &claims, &[]).await;
    println!(
        "leader killed with hosts in {states:?}; the other replica held the lease {:.2} s later \
         (lease {LEASE_SECONDS} s) and took {REPLICA_HOSTS} hosts to provisioned, each deployed once",
        takeover.as_secs_f64()
    );
    drop(b);
    stop(agents, service, sims, server, &dir).await;
}

/// CPU seconds (user + system) and peak resident memory (KiB) of a process and its
/// children that have been waited for.
fn cpu_and_peak(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12, 13, 14]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, peak)
}

/// The process a `timeout` wrapper of kube-apiserver.sh runs.
fn wrapped(server: &KubeApiServer, name: &str) -> u32 {
    let wrapper = std::fs::read_to_string(server.dir.join(format!("run/{name}.pid"))).unwrap();
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        wrapper.trim(),
        wrapper.trim()
    ))
    .unwrap();
    children.split_whitespace().next().unwrap().parse().unwrap()
}

/// How far one replica goes: `KUBE_HOSTS` live-ISO hosts (default 200, fast inspection)
/// taken to provisioned through the API server by one operator. A benchmark, not a
/// check: `cargo test --release -p metal3-operator --features kube --test kube_api --
/// --ignored --nocapture` (BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints figures"]
async fn one_replica_at_scale() {
    let hosts: usize = std::env::var("KUBE_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kube-scale-{}", std::process::id()));
    let (server, client) = cluster(&dir).await;
    // No agents: live ISOs and inspection through the BMC need none.
    let sims = sims(hosts).await;
    let service = conductor().await;
    for (i, sim) in sims.iter().enumerate() {
        let mut h = host(0, sim, "bmc");
        h["metadata"]["name"] = json!(format!("node-{i}"));
        h["spec"]["bootMACAddress"] = json!(format!("52:54:00:cc:{:02x}:{:02x}", i / 256, i % 256));
        create(&client, h).await;
    }
    let (api_cpu0, _) = cpu_and_peak(wrapped(&server, "kube-apiserver"));
    let (etcd_cpu0, _) = cpu_and_peak(wrapped(&server, "etcd"));
    let started = Instant::now();
    let log = std::fs::File::create(dir.join("operator.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_operator"))
        .args(["--kube", "--conductor", &service.admin_url(), "--state"])
        .arg(dir.join("operator.redb"))
        .args(["--inspection", "fast"])
        .env("KUBECONFIG", dir.join("operator.kubeconfig"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(OperatorProcess)
        .unwrap();
    let pid = child.0.id();
    // Looked at once a second: a list of every host is itself work for the API server.
    loop {
        let h = statuses(&client).await;
        if h.len() == hosts && h.values().all(|o| state(o) == "provisioned") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not provisioned in 30 min"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = started.elapsed();
    let (api_cpu, api_peak) = cpu_and_peak(wrapped(&server, "kube-apiserver"));
    let (etcd_cpu, etcd_peak) = cpu_and_peak(wrapped(&server, "etcd"));
    let (op_cpu, op_peak) = cpu_and_peak(pid);
    println!(
        "{hosts} hosts provisioned through kube-apiserver by one operator in {:.1} s: operator \
         {op_cpu:.1} CPU-s ({:.1} ms per host), peak {:.1} MiB; kube-apiserver {:.1} CPU-s, peak \
         {:.1} MiB; etcd {:.1} CPU-s, peak {:.1} MiB",
        took.as_secs_f64(),
        op_cpu * 1000.0 / hosts as f64,
        op_peak as f64 / 1024.0,
        api_cpu - api_cpu0,
        api_peak as f64 / 1024.0,
        etcd_cpu - etcd_cpu0,
        etcd_peak as f64 / 1024.0,
    );
    drop(child);
    drop(service);
    for sim in sims {
        sim.stop().await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
