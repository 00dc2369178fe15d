//! The `kube` feature: the provider as a kube-rs controller over CAPM3's real CRDs
//! (`infrastructure.cluster.x-k8s.io/v1beta2`, their storage version), beside the
//! operator's own kube mode, which reconciles the BareMetalHosts and serves the IPClaims.
//! Every reconcile takes one [`machine::step`] of a Metal3Machine (the same pure step
//! the embedded mode carries out) from the objects as the API server has them now, and
//! carries its action out as API writes:
//!
//! - a host is taken with a merge patch of its `spec.consumerRef` that carries the
//!   host's `resourceVersion`: of two machines (or two replicas) racing for one host,
//!   the API server lets one through;
//! - the data is CAPM3's chain of objects: a `Metal3DataClaim` named after the machine
//!   and owned by it; a `Metal3Data` `<template>-<index>` owned by the claim (the lowest
//!   free index; the name is the lock, a create that finds it taken tries the next); an
//!   `IPClaim` `<data>-<pool>` per pool, owned by the data, served by the IPAM
//!   controller (the operator's kube mode: `metal3_operator::kube_ipam`); the addresses
//!   read from the `IPAddress` objects; the rendered `<machine>-metadata` and
//!   `<machine>-networkdata` Secrets owned by the data; the data's `status.ready`, the
//!   claim's `status.renderedData` and the template's `status.indexes`;
//! - image, user data, meta data and network data go into the host's spec; its
//!   `status.provisioning.state` is followed to `provisioned`; `providerID` is set on
//!   the Metal3Machine and its Machine;
//! - the Metal3Machine gets the `metal3machine.infrastructure.cluster.x-k8s.io`
//!   finalizer; deleted, it deprovisions and releases its host, deletes its IPClaims
//!   (their addresses go back to the pools), Secrets, data and claim, and then lets go.
//!
//! The status is written in v1beta2's layout (`initialization.provisioned`, conditions
//! with reasons and transition times, `deprecated.v1beta1.failureMessage`), which the
//! API server validates against upstream's schema.
//!
//! ```
//! use metal3_capm3::kube_controller::{metal3_machines, status_object};
//! use metal3_capm3::objects::Metal3MachineStatus;
//!
//! assert_eq!(metal3_machines().plural, "metal3machines");
//! let mut status = Metal3MachineStatus::default();
//! status.set_condition("AssociateBMH", false, "NoAvailableHost", "no host matches");
//! let object = status_object(&status, None, "2026-12-03T10:00:00Z");
//! assert_eq!(object["conditions"][0]["reason"], "NoAvailableHost");
//! assert_eq!(object["conditions"][0]["lastTransitionTime"], "2026-12-03T10:00:00Z");
//! assert_eq!(object["initialization"]["provisioned"], false);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use metal3_operator::manifests::SecretRef;
use provision_fsm::HostStateKind;
use serde_json::{Value, json};

use crate::controller::CLONED_FROM;
use crate::data::{
    HostNic, Metal3DataTemplate, RenderContext, data_name, ip_claim_name, lowest_free_index,
    render_meta_data, render_network_data, secret_names,
};
use crate::machine::{self, DataState, HostView, MachineAction, MachineInput};
use crate::objects::{
    HOST_ANNOTATION, Machine, Metal3Machine, Metal3MachineStatus, NODE_REUSE_LABEL,
};

/// CAPM3's group.
const GROUP: &str = "infrastructure.cluster.x-k8s.io";
/// The version this controller reads and writes: the CRDs' storage version.
const VERSION: &str = "v1beta2";
/// `apiVersion` of the objects this controller makes.
const API_VERSION: &str = "infrastructure.cluster.x-k8s.io/v1beta2";
/// The Metal3Machine finalizer (CAPM3's).
pub const FINALIZER: &str = "metal3machine.infrastructure.cluster.x-k8s.io";
/// The field manager of the Secrets this controller applies.
const MANAGER: &str = "metal3-capm3";
/// How often a machine waiting for its addresses looks again.
const ADDRESS_WAIT: Duration = Duration::from_millis(500);

fn infrastructure(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// `Metal3Machine`, plural `metal3machines`.
pub fn metal3_machines() -> ApiResource {
    infrastructure("Metal3Machine", "metal3machines")
}

/// `Metal3MachineTemplate`, plural `metal3machinetemplates`.
pub fn metal3_machine_templates() -> ApiResource {
    infrastructure("Metal3MachineTemplate", "metal3machinetemplates")
}

/// `Metal3DataTemplate`, plural `metal3datatemplates`.
pub fn metal3_data_templates() -> ApiResource {
    infrastructure("Metal3DataTemplate", "metal3datatemplates")
}

/// `Metal3DataClaim`, plural `metal3dataclaims`.
pub fn metal3_data_claims() -> ApiResource {
    infrastructure("Metal3DataClaim", "metal3dataclaims")
}

/// `Metal3Data`, plural `metal3datas`.
pub fn metal3_datas() -> ApiResource {
    infrastructure("Metal3Data", "metal3datas")
}

/// Cluster API's `Machine` (`cluster.x-k8s.io/v1beta2`), plural `machines`.
pub fn machines() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cluster.x-k8s.io", "v1beta2", "Machine"),
        "machines",
    )
}

/// Why a reconcile failed (tried again by the controller).
#[derive(Debug)]
pub struct ReconcileError(String);

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReconcileError {}

impl From<String> for ReconcileError {
    fn from(e: String) -> ReconcileError {
        ReconcileError(e)
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn api(client: &Client, namespace: &str, r: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, r)
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, object: &DynamicObject) -> Result<T, String> {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("{what} {name}: {e}"))
}

fn dynamic(value: Value) -> Result<DynamicObject, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// A Metal3Machine as the step sees it, its status read from v1beta2's layout.
pub fn metal3_machine_from(object: &DynamicObject) -> Result<Metal3Machine, String> {
    let mut m3m: Metal3Machine = decode("Metal3Machine", object)?;
    let status = object.data.get("status");
    let at = |p: &str| status.and_then(|s| s.pointer(p));
    m3m.status.ready = at("/initialization/provisioned")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    m3m.status.failure_message = at("/deprecated/v1beta1/failureMessage")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(m3m)
}

/// A step's status in v1beta2's layout. A condition keeps its `lastTransitionTime` from
/// `previous` (the status as read) while its status stays the same; one that changes,
/// or is new, takes `now`.
pub fn status_object(status: &Metal3MachineStatus, previous: Option<&Value>, now: &str) -> Value {
    let before = |kind: &str| {
        previous
            .and_then(|p| p.get("conditions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .cloned()
    };
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| {
            // A true condition says what holds; v1beta2 wants a reason either way.
            let reason = match (c.reason.is_empty(), c.kind.as_str()) {
                (false, _) => c.reason.clone(),
                (true, machine::ASSOCIATE_CONDITION) => "Associated".to_string(),
                (true, machine::READY_CONDITION) => "Provisioned".to_string(),
                (true, _) => "Ready".to_string(),
            };
            let since = before(&c.kind)
                .filter(|b| b["status"] == c.status.as_str())
                .and_then(|b| b["lastTransitionTime"].as_str().map(str::to_string))
                .unwrap_or_else(|| now.to_string());
            json!({
                "type": c.kind,
                "status": c.status,
                "reason": reason,
                "message": c.message,
                "lastTransitionTime": since,
            })
        })
        .collect();
    let mut object = json!({
        "initialization": {"provisioned": status.ready},
        "conditions": conditions,
    });
    let fields = [
        ("userData", serde_json::to_value(&status.user_data).ok()),
        ("metaData", serde_json::to_value(&status.meta_data).ok()),
        (
            "networkData",
            serde_json::to_value(&status.network_data).ok(),
        ),
        (
            "renderedData",
            serde_json::to_value(&status.rendered_data).ok(),
        ),
    ];
    for (k, v) in fields {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            object[k] = v;
        }
    }
    if let Some(m) = &status.failure_message {
        object["deprecated"] = json!({"v1beta1": {"failureMessage": m}});
    }
    object
}

/// A BareMetalHost object as the step sees it: its spec, `status.provisioning.state`,
/// `status.errorMessage` and the NICs of `status.hardware`.
pub fn host_view(object: &DynamicObject) -> Result<HostView, String> {
    let host = metal3_operator::kube_controller::host_object(object)?;
    let status = host.status.as_ref();
    let at = |p: &str| status.and_then(|s| s.pointer(p));
    let state = at("/provisioning/state")
        .and_then(Value::as_str)
        .and_then(HostStateKind::from_name)
        .unwrap_or(HostStateKind::None);
    let error = at("/errorMessage")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let nics = at("/hardware/nics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| {
            Some(HostNic {
                name: n["name"].as_str()?.to_string(),
                mac: n["mac"].as_str().filter(|m| !m.is_empty())?.to_string(),
            })
        })
        .collect();
    Ok(HostView {
        host: host.host,
        state,
        error,
        deleting: host.deleting,
        nics,
    })
}

struct Context {
    client: Client,
}

/// Now, as the API server's timestamps are written.
fn now() -> String {
    metal3_operator::render::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default(),
    )
}

/// The machine's Cluster API Machine: its owner of kind Machine.
async fn owning_machine(
    client: &Client,
    object: &DynamicObject,
) -> Result<Option<(Machine, DynamicObject)>, String> {
    let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
    let Some(owner) = object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Machine" && o.api_version.starts_with("cluster.x-k8s.io/"))
    else {
        return Ok(None);
    };
    let found = api(client, namespace, &machines())
        .get_opt(&owner.name)
        .await
        .map_err(|e| format!("reading Machine {namespace}/{}: {e}", owner.name))?;
    match found {
        Some(m) => Ok(Some((decode("Machine", &m)?, m))),
        None => Ok(None),
    }
}

/// Whether the template the machine was cloned from asks for node reuse.
async fn node_reuse(client: &Client, m3m: &Metal3Machine) -> Result<bool, String> {
    let Some(template) = m3m.metadata.annotations.get(CLONED_FROM) else {
        return Ok(false);
    };
    let namespace = m3m.metadata.namespace();
    let found = api(client, namespace, &metal3_machine_templates())
        .get_opt(template)
        .await
        .map_err(|e| format!("reading Metal3MachineTemplate {namespace}/{template}: {e}"))?;
    Ok(found
        .and_then(|t| t.data.pointer("/spec/nodeReuse").and_then(Value::as_bool))
        .unwrap_or(false))
}

/// The hosts of a namespace.
async fn hosts(client: &Client, namespace: &str) -> Result<Vec<HostView>, String> {
    let list = api(
        client,
        namespace,
        &metal3_operator::kube_controller::bare_metal_hosts(),
    )
    .list(&ListParams::default())
    .await
    .map_err(|e| format!("listing the BareMetalHosts of {namespace}: {e}"))?;
    let mut out = Vec::new();
    for object in &list.items {
        match host_view(object) {
            Ok(h) => out.push(h),
            Err(e) => tracing::warn!(error = %e, "a BareMetalHost this provider cannot read"),
        }
    }
    Ok(out)
}

/// The machine's data as the API server has it: its Metal3DataClaim (named after it),
/// the Metal3Data the claim's `status.renderedData` names, ready or not.
async fn data_state(
    client: &Client,
    m3m: &Metal3Machine,
    deleting: bool,
) -> Result<(DataState, Option<DynamicObject>), String> {
    let namespace = m3m.metadata.namespace();
    let name = &m3m.metadata.name;
    let claim = api(client, namespace, &metal3_data_claims())
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Metal3DataClaim {namespace}/{name}: {e}"))?;
    let Some(claim) = claim else {
        // A machine going away with no claim has no data to give back.
        return Ok(if m3m.spec.data_template.is_some() && !deleting {
            (DataState::Pending(None), None)
        } else {
            (DataState::NotNeeded, None)
        });
    };
    let error = claim
        .data
        .pointer("/status/errorMessage")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let rendered = claim
        .data
        .pointer("/status/renderedData/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(data) = rendered {
        let found = api(client, namespace, &metal3_datas())
            .get_opt(&data)
            .await
            .map_err(|e| format!("reading Metal3Data {namespace}/{data}: {e}"))?;
        if let Some(d) = found {
            let ready = d.data.pointer("/status/ready").and_then(Value::as_bool) == Some(true);
            if ready {
                let (meta, network) = secret_names(name);
                let namespace = Some(namespace.to_string());
                return Ok((
                    DataState::Ready {
                        data,
                        meta_data: SecretRef {
                            name: meta,
                            namespace: namespace.clone(),
                        },
                        network_data: SecretRef {
                            name: network,
                            namespace,
                        },
                    },
                    Some(claim),
                ));
            }
        }
    }
    Ok((DataState::Pending(error), Some(claim)))
}

async fn reconcile_object(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let client = &ctx.client;
    let namespace = object
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = object.metadata.name.clone().unwrap_or_default();
    let machines_api = api(client, &namespace, &metal3_machines());
    // The object as it is now, not as the watch last delivered it: the step before
    // this one may have written it.
    let Some(object) = machines_api
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading Metal3Machine {namespace}/{name}: {e}"))?
    else {
        return Ok(Action::await_change());
    };
    let key = format!("{namespace}/{name}");
    let deleting = object.metadata.deletion_timestamp.is_some();
    let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
    let params = PatchParams::default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        if deleting {
            // Never ours, or released already.
            return Ok(Action::await_change());
        }
        let mut with = finalizers.clone();
        with.push(FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": with, "resourceVersion": object.metadata.resource_version}});
        machines_api
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("adding the finalizer of Metal3Machine {key}: {e}"))?;
    }
    let m3m = metal3_machine_from(&object)?;
    let machine = owning_machine(client, &object).await?;
    let reuse = node_reuse(client, &m3m).await?;
    let hosts = hosts(client, &namespace).await?;
    let (data, data_claim) = data_state(client, &m3m, deleting).await?;
    let step = machine::step(&MachineInput {
        metal3_machine: &m3m,
        machine: machine.as_ref().map(|(m, _)| m),
        deleting,
        node_reuse: reuse,
        hosts: &hosts,
        data: &data,
    });
    let previous = object.data.get("status");
    let status = status_object(&step.status, previous, &now());
    let patch = metal3_operator::controller::merge_patch(previous, &status);
    if patch.as_object().is_none_or(|p| !p.is_empty()) {
        machines_api
            .patch_status(&name, &params, &Patch::Merge(&json!({"status": patch})))
            .await
            .map_err(|e| format!("writing the status of Metal3Machine {key}: {e}"))?;
    }
    let Some(action) = step.action else {
        return Ok(match step.requeue_after {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        });
    };
    tracing::debug!(metal3machine = %key, ?action, "machine step");
    let acted = Acting {
        client,
        namespace: &namespace,
        key: &key,
        m3m: &m3m,
        hosts: &hosts,
    };
    let next = acted
        .act(action, machine.as_ref(), data_claim.as_ref())
        .await?;
    Ok(next)
}

/// One action of one machine, carried out.
struct Acting<'a> {
    client: &'a Client,
    namespace: &'a str,
    key: &'a str,
    m3m: &'a Metal3Machine,
    hosts: &'a [HostView],
}

impl Acting<'_> {
    fn hosts_api(&self) -> Api<DynamicObject> {
        api(
            self.client,
            self.namespace,
            &metal3_operator::kube_controller::bare_metal_hosts(),
        )
    }

    /// A merge patch of a host.
    async fn patch_host(&self, host: &str, patch: Value, what: &str) -> Result<(), String> {
        let name = host.rsplit('/').next().unwrap_or(host);
        self.hosts_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| format!("{what} (host {host}): {e}"))
    }

    /// A merge patch of the Metal3Machine.
    async fn patch_machine(&self, patch: Value, what: &str) -> Result<(), String> {
        api(self.client, self.namespace, &metal3_machines())
            .patch(
                &self.m3m.metadata.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("{what} (Metal3Machine {}): {e}", self.key))
    }

    async fn act(
        &self,
        action: MachineAction,
        machine: Option<&(Machine, DynamicObject)>,
        data_claim: Option<&DynamicObject>,
    ) -> Result<Action, String> {
        match action {
            MachineAction::Associate { host, mut consumer } => {
                // The version this controller writes the machine in.
                consumer.api_version = API_VERSION.to_string();
                let name = host.rsplit('/').next().unwrap_or(&host).to_string();
                let current = self
                    .hosts_api()
                    .get(&name)
                    .await
                    .map_err(|e| format!("reading host {host}: {e}"))?;
                let view = host_view(&current)?;
                if let Some(other) = view
                    .host
                    .spec
                    .consumer_ref
                    .as_ref()
                    .filter(|c| **c != consumer)
                {
                    return Err(format!(
                        "host {host} was taken by {} {} meanwhile",
                        other.kind, other.name
                    ));
                }
                // The resourceVersion makes it a compare-and-swap: a host another
                // machine took since it was read is refused (409), not taken twice.
                let patch = json!({
                    "metadata": {
                        "resourceVersion": current.metadata.resource_version,
                        "labels": {NODE_REUSE_LABEL: null},
                    },
                    "spec": {"consumerRef": consumer},
                });
                self.patch_host(&host, patch, "taking the host").await?;
                self.patch_machine(
                    json!({"metadata": {"annotations": {HOST_ANNOTATION: host}}}),
                    "naming its host",
                )
                .await?;
                tracing::info!(metal3machine = %self.key, %host, "host associated");
            }
            MachineAction::RenderData => {
                let Some(machine) = machine else {
                    return Err("no Machine to render the data for".into());
                };
                return match self.render_data(&machine.0, data_claim).await {
                    Ok(true) => Ok(Action::requeue(Duration::ZERO)),
                    Ok(false) => Ok(Action::requeue(ADDRESS_WAIT)),
                    Err(e) => {
                        self.data_error(Some(&e)).await;
                        Err(e)
                    }
                };
            }
            MachineAction::ProvisionHost {
                host,
                image,
                user_data,
                meta_data,
                network_data,
                automated_cleaning_mode,
            } => {
                let mut spec = json!({
                    "image": image,
                    "userData": user_data,
                    "metaData": meta_data,
                    "networkData": network_data,
                    "online": true,
                });
                if let Some(mode) = automated_cleaning_mode {
                    spec["automatedCleaningMode"] = json!(mode);
                }
                self.patch_host(&host, json!({ "spec": spec }), "provisioning the host")
                    .await?;
                tracing::info!(metal3machine = %self.key, %host, "host given the machine's image and data");
            }
            MachineAction::SetProviderId { provider_id, host } => {
                self.patch_machine(
                    json!({
                        "metadata": {"annotations": {HOST_ANNOTATION: host}},
                        "spec": {"providerID": provider_id},
                    }),
                    "setting providerID",
                )
                .await?;
                if let Some((m, _)) = machine {
                    api(self.client, m.metadata.namespace(), &machines())
                        .patch(
                            &m.metadata.name,
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"spec": {"providerID": provider_id}})),
                        )
                        .await
                        .map_err(|e| {
                            format!("setting providerID (Machine {}): {e}", m.metadata.key())
                        })?;
                }
                tracing::info!(metal3machine = %self.key, %provider_id, "machine ready");
            }
            MachineAction::DeprovisionHost { host } => {
                let patch = json!({"spec": {"image": null, "userData": null, "metaData": null, "networkData": null}});
                self.patch_host(&host, patch, "deprovisioning the host")
                    .await?;
                tracing::info!(metal3machine = %self.key, %host, "host deprovisioning");
            }
            MachineAction::ReleaseHost { host, reuse_for } => {
                let patch = json!({
                    "metadata": {"labels": {NODE_REUSE_LABEL: reuse_for}},
                    "spec": {"consumerRef": null},
                });
                self.patch_host(&host, patch, "releasing the host").await?;
                self.patch_machine(
                    json!({"metadata": {"annotations": {HOST_ANNOTATION: null}}}),
                    "forgetting its host",
                )
                .await?;
                tracing::info!(metal3machine = %self.key, %host, "host released");
            }
            MachineAction::ReleaseData => {
                self.release_data(data_claim).await?;
            }
            MachineAction::Finalized => {
                let finalizers: Vec<String> = api(self.client, self.namespace, &metal3_machines())
                    .get(&self.m3m.metadata.name)
                    .await
                    .map_err(|e| format!("reading Metal3Machine {}: {e}", self.key))?
                    .metadata
                    .finalizers
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f != FINALIZER)
                    .collect();
                self.patch_machine(
                    json!({"metadata": {"finalizers": finalizers}}),
                    "removing the finalizer",
                )
                .await?;
                tracing::info!(metal3machine = %self.key, "machine released everything");
                return Ok(Action::await_change());
            }
        }
        Ok(Action::requeue(Duration::ZERO))
    }

    /// Writes (or clears) the rendering error on the machine's Metal3DataClaim.
    async fn data_error(&self, error: Option<&str>) {
        let claims = api(self.client, self.namespace, &metal3_data_claims());
        let patch = json!({"status": {"errorMessage": error.map(|e| clip(e, 512))}});
        if let Err(e) = claims
            .patch_status(
                &self.m3m.metadata.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            if !is_code(&e, 404) {
                tracing::warn!(metal3machine = %self.key, error = %e, "cannot write the data claim's error");
            }
        }
    }

    /// The machine's Metal3DataClaim, made (owned by the machine) when it has none.
    async fn ensure_claim(
        &self,
        existing: Option<&DynamicObject>,
    ) -> Result<DynamicObject, String> {
        if let Some(c) = existing {
            return Ok(c.clone());
        }
        let m3m = self.m3m;
        let template = m3m
            .spec
            .data_template
            .as_ref()
            .ok_or_else(|| "no dataTemplate".to_string())?;
        let uid = m3m
            .metadata
            .uid
            .clone()
            .ok_or_else(|| format!("Metal3Machine {} has no uid", self.key))?;
        let claim = dynamic(json!({
            "apiVersion": API_VERSION,
            "kind": "Metal3DataClaim",
            "metadata": {
                "name": m3m.metadata.name,
                "namespace": self.namespace,
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Metal3Machine",
                                     "name": m3m.metadata.name, "uid": uid, "controller": true}],
            },
            "spec": {"template": {"name": template.name, "namespace": self.namespace}},
        }))?;
        let claims = api(self.client, self.namespace, &metal3_data_claims());
        match claims.create(&PostParams::default(), &claim).await {
            Ok(c) => Ok(c),
            Err(e) if is_code(&e, 409) => claims
                .get(&m3m.metadata.name)
                .await
                .map_err(|e| format!("reading Metal3DataClaim {}: {e}", self.key)),
            Err(e) => Err(format!("creating Metal3DataClaim {}: {e}", self.key)),
        }
    }

    /// The claim's Metal3Data: the one its status names, or one made for it before that
    /// was written, or a new one of the lowest free index of the template.
    async fn ensure_data(
        &self,
        claim: &DynamicObject,
        template: &Metal3DataTemplate,
    ) -> Result<DynamicObject, String> {
        let datas = api(self.client, self.namespace, &metal3_datas());
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        let list = datas
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing the Metal3Datas of {}: {e}", self.namespace))?
            .items;
        let of_template = |d: &&DynamicObject| {
            d.data
                .pointer("/spec/template/name")
                .and_then(Value::as_str)
                == Some(template.metadata.name.as_str())
        };
        if let Some(d) = list.iter().filter(of_template).find(|d| {
            d.data.pointer("/spec/claim/name").and_then(Value::as_str) == Some(&claim_name)
        }) {
            return Ok(d.clone());
        }
        let mut used: BTreeSet<u32> = list
            .iter()
            .filter(of_template)
            .filter_map(|d| d.data.pointer("/spec/index").and_then(Value::as_u64))
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        let claim_uid = claim
            .metadata
            .uid
            .clone()
            .ok_or_else(|| format!("Metal3DataClaim {} has no uid", self.key))?;
        // The name is the lock: a create that finds it taken (another replica, a
        // machine of the same template at the same moment) tries the next index.
        for _ in 0..64 {
            let index = lowest_free_index(&used);
            let name = data_name(&template.metadata.name, index);
            let data = dynamic(json!({
                "apiVersion": API_VERSION,
                "kind": "Metal3Data",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Metal3DataClaim",
                                         "name": claim_name, "uid": claim_uid, "controller": true}],
                },
                "spec": {
                    "index": index,
                    "template": {"name": template.metadata.name, "namespace": self.namespace},
                    "claim": {"name": claim_name, "namespace": self.namespace},
                },
            }))?;
            match datas.create(&PostParams::default(), &data).await {
                Ok(d) => return Ok(d),
                Err(e) if is_code(&e, 409) => {
                    used.insert(index);
                }
                Err(e) => {
                    return Err(format!(
                        "creating Metal3Data {}/{name}: {e}",
                        self.namespace
                    ));
                }
            }
        }
        Err(format!(
            "Metal3DataTemplate {}: no free index after 64 tries",
            template.metadata.key()
        ))
    }

    /// The address of the data's IPClaim on `pool`, the claim made (owned by the data)
    /// when missing. `Ok(None)`: the IPAM controller has not served it yet.
    async fn address(
        &self,
        data: &DynamicObject,
        pool: &str,
    ) -> Result<Option<ipam::IpAddress>, String> {
        let data_name = data.metadata.name.clone().unwrap_or_default();
        let name = ip_claim_name(&data_name, pool);
        let key = format!("{}/{name}", self.namespace);
        let claims = api(
            self.client,
            self.namespace,
            &metal3_operator::kube_ipam::ip_claims(),
        );
        let found = claims
            .get_opt(&name)
            .await
            .map_err(|e| format!("reading IPClaim {key}: {e}"))?;
        let claim = match found {
            Some(c) => c,
            None => {
                let uid = data
                    .metadata
                    .uid
                    .clone()
                    .ok_or_else(|| format!("Metal3Data {data_name} has no uid"))?;
                let claim = dynamic(json!({
                    "apiVersion": "ipam.metal3.io/v1alpha1",
                    "kind": "IPClaim",
                    "metadata": {
                        "name": name,
                        "namespace": self.namespace,
                        "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Metal3Data",
                                             "name": data_name, "uid": uid, "controller": true}],
                    },
                    "spec": {"pool": {"name": pool, "namespace": self.namespace}},
                }))?;
                match claims.create(&PostParams::default(), &claim).await {
                    Ok(_) => return Ok(None),
                    Err(e) if is_code(&e, 409) => return Ok(None),
                    Err(e) => return Err(format!("creating IPClaim {key}: {e}")),
                }
            }
        };
        if let Some(e) = claim
            .data
            .pointer("/status/errorMessage")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            return Err(format!("IPClaim {key}: {e}"));
        }
        let Some(address) = claim
            .data
            .pointer("/status/address/name")
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let object = api(
            self.client,
            self.namespace,
            &metal3_operator::kube_ipam::ip_addresses(),
        )
        .get_opt(address)
        .await
        .map_err(|e| format!("reading IPAddress {}/{address}: {e}", self.namespace))?;
        let Some(object) = object else {
            return Ok(None);
        };
        let spec = object.data.get("spec").cloned().unwrap_or_default();
        serde_json::from_value(spec)
            .map(Some)
            .map_err(|e| format!("IPAddress {}/{address}: {e}", self.namespace))
    }

    /// Takes the machine's data one step on: claim, data, addresses, Secrets, ready.
    /// `Ok(false)` while an address is still to come.
    async fn render_data(
        &self,
        machine: &Machine,
        existing_claim: Option<&DynamicObject>,
    ) -> Result<bool, String> {
        let m3m = self.m3m;
        let claim = self.ensure_claim(existing_claim).await?;
        let template_ref = m3m
            .spec
            .data_template
            .clone()
            .ok_or_else(|| "no dataTemplate".to_string())?;
        let templates = api(self.client, self.namespace, &metal3_data_templates());
        let template_object = templates
            .get_opt(&template_ref.name)
            .await
            .map_err(|e| {
                format!(
                    "reading Metal3DataTemplate {}/{}: {e}",
                    self.namespace, template_ref.name
                )
            })?
            .ok_or_else(|| {
                format!(
                    "Metal3DataTemplate {}/{} not found",
                    self.namespace, template_ref.name
                )
            })?;
        let template: Metal3DataTemplate = decode("Metal3DataTemplate", &template_object)?;
        let data = self.ensure_data(&claim, &template).await?;
        let data_name = data.metadata.name.clone().unwrap_or_default();
        let index = data
            .data
            .pointer("/spec/index")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or_default();
        let params = PatchParams::default();
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        api(self.client, self.namespace, &metal3_data_claims())
            .patch_status(
                &claim_name,
                &params,
                &Patch::Merge(&json!({"status": {"renderedData": {"name": data_name, "namespace": self.namespace}}})),
            )
            .await
            .map_err(|e| format!("writing the status of Metal3DataClaim {}: {e}", self.key))?;
        self.write_index(&template.metadata.name, &claim_name, Some(index))
            .await?;
        let mut addresses = BTreeMap::new();
        for pool in template.pools() {
            match self.address(&data, &pool).await? {
                Some(a) => {
                    addresses.insert(pool, a);
                }
                None => {
                    tracing::debug!(metal3machine = %self.key, %pool, "waiting for an address");
                    return Ok(false);
                }
            }
        }
        let host = self
            .hosts
            .iter()
            .find(|h| h.consumed_by(m3m))
            .ok_or_else(|| "no host associated yet".to_string())?;
        let ctx = RenderContext {
            index,
            namespace: self.namespace,
            metal3_machine: &m3m.metadata,
            machine: &machine.metadata,
            host: &host.host.metadata,
            nics: &host.nics,
            boot_mac: host.host.spec.boot_mac_address.as_deref(),
            addresses: &addresses,
        };
        let what = |e: String| format!("Metal3DataTemplate {}: {e}", template.metadata.key());
        let (meta_name, network_name) = secret_names(&m3m.metadata.name);
        let mut secrets = Vec::new();
        let mut spec = json!({});
        if let Some(t) = &template.spec.meta_data {
            let meta = render_meta_data(t, &ctx).map_err(what)?;
            secrets.push((meta_name.clone(), "metaData", yaml(&meta)?));
            spec["metaData"] = json!({"name": meta_name, "namespace": self.namespace});
        }
        if let Some(t) = &template.spec.network_data {
            let network = render_network_data(t, &ctx).map_err(what)?;
            secrets.push((network_name.clone(), "networkData", yaml(&network)?));
            spec["networkData"] = json!({"name": network_name, "namespace": self.namespace});
        }
        let data_uid = data
            .metadata
            .uid
            .clone()
            .ok_or_else(|| format!("Metal3Data {data_name} has no uid"))?;
        let secrets_api: Api<KubeSecret> = Api::namespaced(self.client.clone(), self.namespace);
        for (name, field, value) in secrets {
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Metal3Data",
                                         "name": data_name, "uid": data_uid, "controller": true}],
                },
                "type": "Opaque",
                "stringData": {field: value},
            });
            secrets_api
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await
                .map_err(|e| format!("writing Secret {}/{name}: {e}", self.namespace))?;
        }
        let datas = api(self.client, self.namespace, &metal3_datas());
        datas
            .patch(&data_name, &params, &Patch::Merge(&json!({ "spec": spec })))
            .await
            .map_err(|e| format!("writing Metal3Data {}/{data_name}: {e}", self.namespace))?;
        datas
            .patch_status(
                &data_name,
                &params,
                &Patch::Merge(&json!({"status": {"ready": true, "errorMessage": null}})),
            )
            .await
            .map_err(|e| {
                format!(
                    "writing the status of Metal3Data {}/{data_name}: {e}",
                    self.namespace
                )
            })?;
        self.data_error(None).await;
        tracing::info!(metal3machine = %self.key, data = %data_name, index, "data rendered");
        Ok(true)
    }

    /// Records (or, `None`, removes) a claim's index in the template's `status.indexes`
    /// (a list keyed by index in v1beta2), read and written back with the template's
    /// `resourceVersion` so that machines writing at once do not drop each other's.
    async fn write_index(
        &self,
        template: &str,
        claim: &str,
        index: Option<u32>,
    ) -> Result<(), String> {
        let templates = api(self.client, self.namespace, &metal3_data_templates());
        let what = format!(
            "writing the status of Metal3DataTemplate {}/{template}",
            self.namespace
        );
        for _ in 0..16 {
            let Some(current) = templates
                .get_opt(template)
                .await
                .map_err(|e| format!("{what}: {e}"))?
            else {
                return Ok(());
            };
            let mut indexes: Vec<Value> = current
                .data
                .pointer("/status/indexes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let before = indexes.clone();
            indexes.retain(|e| e["name"] != claim);
            if let Some(i) = index {
                indexes.push(json!({"name": claim, "index": i}));
            }
            indexes.sort_by_key(|e| e["index"].as_u64());
            if indexes == before {
                return Ok(());
            }
            // The schema wants at least one entry: none is no list at all.
            let indexes = (!indexes.is_empty()).then_some(indexes);
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "status": {"indexes": indexes, "lastUpdated": now()},
            });
            match templates
                .patch_status(template, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_code(&e, 409) => continue,
                Err(e) if is_code(&e, 404) => return Ok(()),
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
        Err(format!("{what}: changed by others 16 times in a row"))
    }

    /// Deletes the machine's IPClaims (the IPAM controller gives their addresses back),
    /// its Secrets, its Metal3Data and its Metal3DataClaim, and its index in the
    /// template's status.
    async fn release_data(&self, claim: Option<&DynamicObject>) -> Result<(), String> {
        let namespace = self.namespace;
        let datas = api(self.client, namespace, &metal3_datas());
        let claim_name = self.m3m.metadata.name.clone();
        let owned: Vec<DynamicObject> = datas
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing the Metal3Datas of {namespace}: {e}"))?
            .items
            .into_iter()
            .filter(|d| {
                d.data.pointer("/spec/claim/name").and_then(Value::as_str) == Some(&claim_name)
            })
            .collect();
        let gone = |r: Result<_, kube::Error>, what: String| match r {
            Err(e) if !is_code(&e, 404) => Err(format!("deleting {what}: {e}")),
            _ => Ok(()),
        };
        let params = DeleteParams::default();
        let ip_claims = api(
            self.client,
            namespace,
            &metal3_operator::kube_ipam::ip_claims(),
        );
        for d in &owned {
            let data_name = d.metadata.name.clone().unwrap_or_default();
            let template = d
                .data
                .pointer("/spec/template/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // Every IPClaim the data owns, whatever pools the template names now.
            let claims = ip_claims
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("listing the IPClaims of {namespace}: {e}"))?
                .items;
            for c in claims.iter().filter(|c| {
                c.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Metal3Data" && o.name == data_name)
            }) {
                let n = c.metadata.name.clone().unwrap_or_default();
                gone(
                    ip_claims.delete(&n, &params).await.map(|_| ()),
                    format!("IPClaim {namespace}/{n}"),
                )?;
            }
            let secrets: Api<KubeSecret> = Api::namespaced(self.client.clone(), namespace);
            let (meta, network) = secret_names(&self.m3m.metadata.name);
            for s in [meta, network] {
                gone(
                    secrets.delete(&s, &params).await.map(|_| ()),
                    format!("Secret {namespace}/{s}"),
                )?;
            }
            gone(
                datas.delete(&data_name, &params).await.map(|_| ()),
                format!("Metal3Data {namespace}/{data_name}"),
            )?;
            self.write_index(&template, &claim_name, None).await?;
            tracing::info!(metal3machine = %self.key, data = %data_name, "data and addresses released");
        }
        if claim.is_some() {
            let claims = api(self.client, namespace, &metal3_data_claims());
            gone(
                claims.delete(&claim_name, &params).await.map(|_| ()),
                format!("Metal3DataClaim {namespace}/{claim_name}"),
            )?;
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes, at a character boundary (upstream's schemas bound
/// their message fields).
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_norway::to_string(value).map_err(|e| e.to_string())
}

fn error_policy(object: Arc<DynamicObject>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    );
    tracing::warn!(metal3machine = %key, %error, "machine step failed; trying again in 2 s");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller over the Metal3Machines (of `namespace`, or all) until the watch
/// ends. A host's change wakes the machine its `consumerRef` names; a Machine's change
/// (its bootstrap data written) wakes its Metal3Machine; a machine waiting for a host
/// or an address looks again on its own.
pub async fn run(client: Client, namespace: Option<&str>) {
    let resource = metal3_machines();
    let all = |r: &ApiResource| -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, r),
            None => Api::all_with(client.clone(), r),
        }
    };
    let host_resource = metal3_operator::kube_controller::bare_metal_hosts();
    let machine_resource = machines();
    let to_machine = resource.clone();
    let host_to_machine = move |host: DynamicObject| {
        let namespace = host.metadata.namespace.clone();
        host.data
            .pointer("/spec/consumerRef")
            .filter(|c| c["kind"] == "Metal3Machine")
            .and_then(|c| {
                let name = c["name"].as_str()?;
                let ns = c["namespace"].as_str().map(str::to_string).or(namespace)?;
                Some(ObjectRef::new_with(name, to_machine.clone()).within(&ns))
            })
    };
    let to_machine = resource.clone();
    let machine_to_metal3 = move |m: DynamicObject| {
        let namespace = m.metadata.namespace.clone()?;
        let infra = m.data.pointer("/spec/infrastructureRef")?;
        if infra["kind"] != "Metal3Machine" {
            return None;
        }
        Some(ObjectRef::new_with(infra["name"].as_str()?, to_machine.clone()).within(&namespace))
    };
    let context = Arc::new(Context {
        client: client.clone(),
    });
    Controller::new_with(all(&resource), watcher::Config::default(), resource.clone())
        .watches_with(
            all(&host_resource),
            host_resource.clone(),
            watcher::Config::default(),
            host_to_machine,
        )
        .watches_with(
            all(&machine_resource),
            machine_resource.clone(),
            watcher::Config::default(),
            machine_to_metal3,
        )
        .run(reconcile_object, error_policy, context)
        .for_each(|result| async move {
            match result {
                Err(kube::runtime::controller::Error::QueueError(e)) => {
                    tracing::warn!(error = %e, "watch of Metal3Machines, hosts or Machines failed; trying again");
                }
                Err(e) => tracing::debug!(error = %e, "controller event"),
                Ok(_) => {}
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut status = Metal3MachineStatus::default();
        status.set_condition("AssociateBMH", false, "NoAvailableHost", "none");
        let first = status_object(&status, None, "2026-12-03T10:00:00Z");
        status.set_condition("AssociateBMH", false, "NoAvailableHost", "still none");
        let same = status_object(&status, Some(&first), "2026-12-03T10:00:05Z");
        assert_eq!(
            same["conditions"][0]["lastTransitionTime"],
            "2026-12-03T10:00:00Z"
        );
        status.set_condition("AssociateBMH", true, "", "");
        let changed = status_object(&status, Some(&same), "2026-12-03T10:00:09Z");
        assert_eq!(
            changed["conditions"][0]["lastTransitionTime"],
            "2026-12-03T10:00:09Z"
        );
        // v1beta2 wants a reason on a true condition too.
        assert_eq!(changed["conditions"][0]["reason"], "Associated");
    }

    #[test]
    fn a_failure_goes_where_v1beta2_keeps_it_and_is_read_back() {
        let mut status = Metal3MachineStatus {
            ready: true,
            failure_message: Some("the Metal3Machine has no image".into()),
            ..Metal3MachineStatus::default()
        };
        status.set_condition("Ready", true, "", "");
        let written = status_object(&status, None, "2026-12-03T10:00:00Z");
        assert_eq!(
            written["deprecated"]["v1beta1"]["failureMessage"],
            "the Metal3Machine has no image"
        );
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Metal3Machine",
            "metadata": {"name": "m", "namespace": "lab"},
            "spec": {}, "status": written,
        }))
        .unwrap();
        let read = metal3_machine_from(&object).unwrap();
        assert!(read.status.ready);
        assert_eq!(
            read.status.failure_message.as_deref(),
            Some("the Metal3Machine has no image")
        );
        assert_eq!(read.status.condition("Ready").unwrap().status, "True");
    }

    #[test]
    fn a_host_is_read_with_its_state_error_and_nics() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": "h", "namespace": "lab", "labels": {"role": "worker"}},
            "spec": {"online": true, "consumerRef": {"apiVersion": API_VERSION, "kind": "Metal3Machine", "name": "m", "namespace": "lab"}},
            "status": {"provisioning": {"state": "provisioned"}, "errorMessage": "",
                       "hardware": {"nics": [{"name": "eth0", "mac": "52:54:00:00:00:01"}, {"name": "lo", "mac": ""}]}},
        }))
        .unwrap();
        let view = host_view(&object).unwrap();
        assert_eq!(view.state, HostStateKind::Provisioned);
        assert_eq!(view.error, None);
        assert_eq!(
            view.nics,
            vec![HostNic {
                name: "eth0".into(),
                mac: "52:54:00:00:00:01".into()
            }]
        );
        let m3m: Metal3Machine =
            serde_json::from_value(json!({"metadata": {"name": "m", "namespace": "lab"}})).unwrap();
        assert!(view.consumed_by(&m3m));
    }

    #[test]
    fn the_image_goes_into_the_host_in_metal3s_layout() {
        let image: provision_fsm::Image = serde_json::from_value(json!({
            "url": "http://images/node.qcow2", "checksum": "abc", "checksumType": "sha256", "format": "qcow2"
        }))
        .unwrap();
        let spec = json!({ "image": image });
        assert_eq!(spec["image"]["checksumType"], "sha256");
        assert_eq!(spec["image"]["format"], "qcow2");
    }
}
