//! CAPM3's objects (`infrastructure.cluster.x-k8s.io`, v1beta1 and v1beta2 field names)
//! and the few Cluster API objects that drive them (`Cluster`, `Machine`,
//! `KubeadmControlPlane` and `MachineDeployment` replicas), read from YAML with upstream's
//! field names so upstream's examples load unchanged. Fields this provider does not act
//! on are ignored, not refused.

use std::collections::BTreeMap;

use metal3_operator::manifests::{ObjectMeta, ObjectRef, ObjectReference, SecretRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::selector::HostSelector;

/// The API version this provider writes into references (`consumerRef`, owners).
pub const API_VERSION: &str = "infrastructure.cluster.x-k8s.io/v1beta1";
/// The label naming a machine's cluster (Cluster API's).
pub const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";
/// The label marking a control-plane machine (Cluster API's).
pub const CONTROL_PLANE_LABEL: &str = "cluster.x-k8s.io/control-plane";
/// The label naming a machine's MachineDeployment (Cluster API's).
pub const DEPLOYMENT_NAME_LABEL: &str = "cluster.x-k8s.io/deployment-name";
/// The annotation on a Metal3Machine naming its BareMetalHost (`namespace/name`), CAPM3's.
pub const HOST_ANNOTATION: &str = "metal3.io/BareMetalHost";
/// The label CAPM3 puts on a host released by a template with `nodeReuse`, naming the
/// control plane or deployment that should get it back.
pub const NODE_REUSE_LABEL: &str = "infrastructure.cluster.x-k8s.io/node-reuse";
/// The annotation marking a host unhealthy: never chosen for a new machine (CAPM3's).
pub const UNHEALTHY_ANNOTATION: &str = "capi.metal3.io/unhealthy";

/// `spec` of a Metal3Machine (and of a Metal3MachineTemplate's `template`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metal3MachineSpec {
    /// `providerID`, set once the host is provisioned.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// The image written to (or booted on) the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<provision_fsm::Image>,
    /// A user-data Secret overriding the machine's bootstrap data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<SecretRef>,
    /// A meta-data Secret given directly (wins over the data template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<SecretRef>,
    /// A network-data Secret given directly (wins over the data template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<SecretRef>,
    /// The Metal3DataTemplate rendering this machine's meta and network data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_template: Option<ObjectRef>,
    /// Which hosts may be chosen.
    #[serde(default)]
    pub host_selector: HostSelector,
    /// `metadata` or `disabled`, passed on to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated_cleaning_mode: Option<String>,
}

/// A condition in Cluster API's layout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What it means, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `status` of a Metal3Machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metal3MachineStatus {
    /// The host is provisioned with the machine's image.
    #[serde(default)]
    pub ready: bool,
    /// The user-data Secret in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<SecretRef>,
    /// The meta-data Secret in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<SecretRef>,
    /// The network-data Secret in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<SecretRef>,
    /// The Metal3Data rendered for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_data: Option<ObjectRef>,
    /// Why the machine cannot go on, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// `AssociateBMH` and `Ready`, as CAPM3 sets them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Metal3MachineStatus {
    /// Sets (or replaces) the condition of `kind`.
    pub fn set_condition(&mut self, kind: &str, ok: bool, reason: &str, message: &str) {
        let condition = Condition {
            kind: kind.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: if ok {
                String::new()
            } else {
                reason.to_string()
            },
            message: if ok {
                String::new()
            } else {
                message.to_string()
            },
        };
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => *c = condition,
            None => self.conditions.push(condition),
        }
    }

    /// The condition of `kind`, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// A `Metal3Machine`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metal3Machine {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: Metal3MachineSpec,
    /// `status`.
    #[serde(default)]
    pub status: Metal3MachineStatus,
}

/// `spec.template` of a Metal3MachineTemplate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metal3MachineTemplateResource {
    /// The Metal3Machine spec every machine of the template starts from.
    #[serde(default)]
    pub spec: Metal3MachineSpec,
}

/// `spec` of a Metal3MachineTemplate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metal3MachineTemplateSpec {
    /// Give a released host back to the same control plane or deployment.
    #[serde(default)]
    pub node_reuse: bool,
    /// The machine spec.
    #[serde(default)]
    pub template: Metal3MachineTemplateResource,
}

/// A `Metal3MachineTemplate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metal3MachineTemplate {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: Metal3MachineTemplateSpec,
}

/// A `Metal3Cluster`: the cluster's API endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metal3Cluster {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec` (`controlPlaneEndpoint`, `noCloudProvider`, …) as given.
    #[serde(default)]
    pub spec: Value,
}

/// `spec.bootstrap` of a Machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    /// The Secret holding the bootstrap data (`value`), once the bootstrap provider wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_secret_name: Option<String>,
}

/// `spec` of a Cluster API Machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineSpec {
    /// `clusterName`.
    #[serde(default)]
    pub cluster_name: String,
    /// `bootstrap`.
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// `infrastructureRef`: the Metal3Machine.
    #[serde(default)]
    pub infrastructure_ref: ObjectReference,
    /// `providerID`, copied from the Metal3Machine.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
}

/// A Cluster API `Machine` (given as a manifest here: no Cluster API core runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: MachineSpec,
}

impl Machine {
    /// The control plane or deployment the machine belongs to, for `nodeReuse`: its
    /// deployment's name, or `<cluster>-controlplane` for a control-plane machine.
    pub fn owner_group(&self) -> Option<String> {
        let labels = &self.metadata.labels;
        if let Some(d) = labels.get(DEPLOYMENT_NAME_LABEL) {
            return Some(d.clone());
        }
        labels
            .contains_key(CONTROL_PLANE_LABEL)
            .then(|| format!("{}-controlplane", self.spec.cluster_name))
    }
}

/// A `KubeadmControlPlane` or `MachineDeployment`: how many machines of which template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineGroup {
    /// `metadata`.
    pub metadata: ObjectMeta,
    /// `KubeadmControlPlane` or `MachineDeployment`.
    pub kind: String,
    /// `spec.replicas`.
    pub replicas: u32,
    /// The Metal3MachineTemplate its machines are made from.
    pub template: String,
    /// `spec.clusterName` (a deployment's) or the cluster label.
    pub cluster_name: String,
}

/// Everything a set of cluster manifests holds, by kind.
#[derive(Debug, Clone, Default)]
pub struct ClusterManifests {
    /// Cluster API `Cluster`s (metadata only: the name is what machines refer to).
    pub clusters: Vec<ObjectMeta>,
    /// Metal3Clusters.
    pub metal3_clusters: Vec<Metal3Cluster>,
    /// Metal3MachineTemplates.
    pub machine_templates: Vec<Metal3MachineTemplate>,
    /// Metal3Machines.
    pub metal3_machines: Vec<Metal3Machine>,
    /// Metal3DataTemplates.
    pub data_templates: Vec<crate::data::Metal3DataTemplate>,
    /// Machines.
    pub machines: Vec<Machine>,
    /// KubeadmControlPlanes and MachineDeployments.
    pub groups: Vec<MachineGroup>,
    /// The rest (BareMetalHosts, Secrets, IPPools, IPClaims and kinds not read here) for
    /// the operator's [`metal3_operator::manifests::Manifests`].
    pub others: Vec<String>,
}

fn parse<T: serde::de::DeserializeOwned>(doc: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(doc.clone()).map_err(|e| format!("{what}: {e}"))
}

impl ClusterManifests {
    /// Reads every YAML document of `text` (`---`-separated); documents of other kinds
    /// are kept, as YAML text, in [`ClusterManifests::others`].
    pub fn add_yaml(&mut self, text: &str, origin: &str) -> Result<(), String> {
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            let what = format!("{origin}: document {}", i + 1);
            let value =
                serde_norway::Value::deserialize(doc).map_err(|e| format!("{what}: {e}"))?;
            if value.is_null() {
                continue;
            }
            let json: Value = serde_json::to_value(&value).map_err(|e| format!("{what}: {e}"))?;
            let kind = json["kind"].as_str().unwrap_or_default().to_string();
            let what = format!("{what} ({kind})");
            match kind.as_str() {
                "Cluster" => self.clusters.push(parse(&json["metadata"], &what)?),
                "Metal3Cluster" => self.metal3_clusters.push(parse(&json, &what)?),
                "Metal3MachineTemplate" => self.machine_templates.push(parse(&json, &what)?),
                "Metal3Machine" => self.metal3_machines.push(parse(&json, &what)?),
                "Metal3DataTemplate" => self.data_templates.push(parse(&json, &what)?),
                "Machine" => self.machines.push(parse(&json, &what)?),
                "KubeadmControlPlane" | "MachineDeployment" => {
                    self.groups.push(group(&json, &kind, &what)?)
                }
                _ => self
                    .others
                    .push(serde_norway::to_string(&value).map_err(|e| format!("{what}: {e}"))?),
            }
        }
        Ok(())
    }

    /// Reads every `*.yaml` file of a directory, in name order.
    pub fn load_dir(dir: &std::path::Path) -> Result<ClusterManifests, String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut m = ClusterManifests::default();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            m.add_yaml(&text, &f.display().to_string())?;
        }
        Ok(m)
    }
}

/// A KubeadmControlPlane's `spec.machineTemplate.infrastructureRef` or a
/// MachineDeployment's `spec.template.spec.infrastructureRef`, and its replicas.
fn group(doc: &Value, kind: &str, what: &str) -> Result<MachineGroup, String> {
    let metadata: ObjectMeta = parse(&doc["metadata"], what)?;
    let spec = &doc["spec"];
    let infra = if kind == "KubeadmControlPlane" {
        // v1beta2 moved it under `machineTemplate.spec`.
        match &spec["machineTemplate"]["spec"]["infrastructureRef"] {
            Value::Null => &spec["machineTemplate"]["infrastructureRef"],
            v => v,
        }
    } else {
        &spec["template"]["spec"]["infrastructureRef"]
    };
    let template = infra["name"]
        .as_str()
        .ok_or_else(|| format!("{what}: no infrastructureRef name"))?
        .to_string();
    // `replicas` defaults to 1 in Cluster API; a value that is not a number is refused.
    let replicas = match &spec["replicas"] {
        Value::Null => 1,
        v => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{what}: replicas {v} is not a count"))?,
    };
    let cluster_name = spec["clusterName"]
        .as_str()
        .map(str::to_string)
        .or_else(|| metadata.labels.get(CLUSTER_NAME_LABEL).cloned())
        .unwrap_or_default();
    Ok(MachineGroup {
        metadata,
        kind: kind.to_string(),
        replicas,
        template,
        cluster_name,
    })
}

/// Replaces `${NAME}`, `${NAME:-default}` and `${NAME:=default}` in a clusterctl template with `vars` (as
/// `clusterctl generate cluster` does), so upstream's templates load as their users load
/// them. A variable neither given nor defaulted is an error naming it.
pub fn substitute_variables(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {:?}", &rest[start..]))?;
        let inner = &after[..end];
        let (name, default) = match inner.find(":-").or_else(|| inner.find(":=")) {
            Some(at) => (&inner[..at], Some(&inner[at + 2..])),
            None => (inner, None),
        };
        match vars.get(name).map(String::as_str).or(default) {
            Some(v) => out.push_str(v),
            None => return Err(format!("variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_substituted_with_defaults_and_a_missing_one_is_named() {
        let vars = BTreeMap::from([
            ("A".to_string(), "x".to_string()),
            ("B".to_string(), "2".to_string()),
        ]);
        assert_eq!(
            substitute_variables("${A}-${B}-${C:-3}-${E:=[\"4\"]}", &vars).as_deref(),
            Ok("x-2-3-[\"4\"]")
        );
        assert_eq!(
            substitute_variables("${D}", &vars),
            Err("variable D is not set".to_string())
        );
    }

    #[test]
    fn groups_read_their_template_and_replicas() {
        let mut m = ClusterManifests::default();
        m.add_yaml(
            "kind: MachineDeployment\nmetadata: {name: md}\nspec: {clusterName: c, replicas: 3, template: {spec: {infrastructureRef: {name: t}}}}\n---\nkind: KubeadmControlPlane\nmetadata: {name: cp, labels: {cluster.x-k8s.io/cluster-name: c}}\nspec: {machineTemplate: {infrastructureRef: {name: cpt}}}\n",
            "inline",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(m.groups[0].replicas, 3);
        assert_eq!(m.groups[0].template, "t");
        assert_eq!(m.groups[1].replicas, 1);
        assert_eq!(m.groups[1].cluster_name, "c");
        let bad = ClusterManifests::default().add_yaml(
            "kind: MachineDeployment\nmetadata: {name: md}\nspec: {replicas: x, template: {spec: {infrastructureRef: {name: t}}}}\n",
            "inline",
        );
        assert!(bad.is_err_and(|e| e.contains("replicas")));
    }
}
