//! The `kube` feature: what tests against [`crate::KubeApiServer`] do with objects —
//! read a YAML stream, create any object of the kinds the examples use, apply a CRD as
//! it is and wait until it is served, and connect as the admin.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::Deserialize as _;
use serde_json::Value;

use crate::KubeApiServer;

/// The documents of a YAML stream, as JSON (empty documents left out).
pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde_norway::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// The resource of an object's kind, and whether it lives in a namespace.
pub fn resource_of(object: &Value) -> (ApiResource, bool) {
    let api_version = object["apiVersion"].as_str().unwrap();
    let kind = object["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (plural, namespaced) = match kind {
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "Namespace" => ("namespaces", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "Secret" => ("secrets", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "BareMetalHost" => ("baremetalhosts", true),
        "Deployment" => ("deployments", true),
        "Service" => ("services", true),
        "PersistentVolumeClaim" => ("persistentvolumeclaims", true),
        "IPPool" => ("ippools", true),
        "IPClaim" => ("ipclaims", true),
        "IPAddress" => ("ipaddresses", true),
        "Machine" => ("machines", true),
        "Metal3Machine" => ("metal3machines", true),
        "Metal3MachineTemplate" => ("metal3machinetemplates", true),
        "Metal3DataTemplate" => ("metal3datatemplates", true),
        "Metal3DataClaim" => ("metal3dataclaims", true),
        "Metal3Data" => ("metal3datas", true),
        "Metal3Cluster" => ("metal3clusters", true),
        other => panic!("no resource for kind {other}"),
    };
    (
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural),
        namespaced,
    )
}

/// The API of an object's kind (in its namespace, `default` when it names none).
pub fn api_for(client: &Client, object: &Value) -> Api<DynamicObject> {
    let (resource, namespaced) = resource_of(object);
    if namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    }
}

/// Creates `object`, panicking with its kind and name if the API server refuses it.
pub async fn create(client: &Client, object: Value) -> DynamicObject {
    let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    api_for(client, &object)
        .create(&PostParams::default(), &dynamic)
        .await
        .unwrap_or_else(|e| panic!("creating {what}: {e}"))
}

/// Applies the CRDs of the file at `path` as they are and waits until each is served.
pub async fn apply_crd(client: &Client, path: &Path) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for crd in documents(&text) {
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let api = api_for(client, &crd);
        create(client, crd).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = api.get(&name).await.unwrap();
            let established = got.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                break;
            }
            assert!(Instant::now() < deadline, "CRD {name} never established");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl KubeApiServer {
    /// A client with the admin's kubeconfig.
    pub async fn admin_client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }
}
