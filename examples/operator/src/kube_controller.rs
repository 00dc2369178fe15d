//! The `kube` feature: [`crate::controller::reconcile`] (one [`Operator::reconcile`] step
//! per call) run as a kube-rs controller over the real `metal3.io/v1alpha1` BareMetalHost
//! CRD: kube-runtime schedules the step, as the embedded mode's scheduler does without an
//! API server.
//!
//! Objects are watched as dynamic objects of the CRD's group, version and kind, read into
//! this crate's [`BareMetalHost`] with upstream's field names (unknown fields are
//! ignored, so upstream's samples and newer CRD versions load), and reconciled by the
//! same function the embedded mode is tested with. The controller adds the
//! `baremetalhost.metal3.io` finalizer, writes `status` through the status subresource
//! in Metal3's layout, removes the finalizer once the host is deprovisioned and its node
//! deleted, and requeues with the host machine's wake-up time. The Secrets a host names
//! (`bmc.credentialsName`, `userData`, `networkData`, `metaData`,
//! `preprovisioningNetworkDataName`) are read from its namespace on each reconcile, and
//! a change of one of them wakes the hosts that name it (Secrets are watched). Addresses
//! are `ipam.metal3.io` objects ([`crate::kube_ipam`]): the IPPools and IPClaims are read
//! before the first host is reconciled and watched after.
//!
//! Against a cluster (the CRD from baremetal-operator's `config/base/crds` installed):
//!
//! ```text
//! cargo run -p metal3-operator --features kube --bin operator -- \
//!     --kube --conductor http://CONDUCTOR:6385 --state operator.redb
//! ```
//! The kubeconfig is found the usual way (`KUBECONFIG`, `~/.kube/config`, or the
//! in-cluster service account); `--namespace NS` limits the watch to one namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::Resource as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use crate::controller::{BUSY_POLL, HostObject, Write, merge_patch, reconcile};
use crate::manifests::{BareMetalHost, ObjectMeta, Secret};
use crate::operator::Operator;

/// The BareMetalHost resource: `metal3.io/v1alpha1`, plural `baremetalhosts`.
pub fn bare_metal_hosts() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metal3.io", "v1alpha1", "BareMetalHost"),
        "baremetalhosts",
    )
}

/// Reads a watched object into the controller's view of it.
pub fn host_object(obj: &DynamicObject) -> Result<HostObject, String> {
    let meta = &obj.metadata;
    let name = meta
        .name
        .clone()
        .ok_or_else(|| "a BareMetalHost without a name".to_string())?;
    let spec = obj.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let spec =
        serde_json::from_value(spec).map_err(|e| format!("BareMetalHost {name}: spec: {e}"))?;
    Ok(HostObject {
        host: BareMetalHost {
            metadata: ObjectMeta {
                name,
                namespace: meta.namespace.clone(),
                annotations: meta.annotations.clone().unwrap_or_default(),
                labels: meta.labels.clone().unwrap_or_default(),
                owner_references: meta
                    .owner_references
                    .iter()
                    .flatten()
                    .map(|o| crate::manifests::OwnerReference {
                        api_version: o.api_version.clone(),
                        kind: o.kind.clone(),
                        name: o.name.clone(),
                        uid: Some(o.uid.clone()),
                    })
                    .collect(),
                uid: meta.uid.clone(),
            },
            spec,
        },
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
        status: obj.data.get("status").cloned(),
    })
}

/// A Kubernetes Secret as this crate's [`Secret`] (its data already decoded).
pub fn secret_from(s: &KubeSecret) -> Secret {
    let mut string_data: BTreeMap<String, String> = s.string_data.clone().unwrap_or_default();
    for (k, v) in s.data.iter().flatten() {
        if let Ok(text) = String::from_utf8(v.0.clone()) {
            string_data.entry(k.clone()).or_insert(text);
        }
    }
    Secret {
        metadata: ObjectMeta {
            name: s.metadata.name.clone().unwrap_or_default(),
            namespace: s.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        data: BTreeMap::new(),
        string_data,
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The object could not be read.
    #[error("{0}")]
    Object(String),
    /// The API server refused a write.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The API server refused a write of a host, with its reason.
    #[error("writing the {what} of {host}: {source}")]
    Write {
        /// What was written (`status`).
        what: &'static str,
        /// The host, `namespace/name`.
        host: String,
        /// The API server's answer.
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    operator: Arc<Operator>,
    recorder: Recorder,
}

/// Every Secret a host names: BMC credentials, userData, networkData, metaData and the
/// agent's preprovisioning network data (in the host's namespace).
pub fn secret_names(host: &BareMetalHost) -> Vec<String> {
    let spec = &host.spec;
    let mut names = vec![spec.bmc.credentials_name.clone()];
    for r in [&spec.user_data, &spec.network_data, &spec.meta_data]
        .into_iter()
        .flatten()
    {
        names.push(r.name.clone());
    }
    names.extend(spec.preprovisioning_network_data_name.clone());
    names.retain(|n| !n.is_empty());
    names
}

async fn secrets_for(client: &Client, host: &BareMetalHost) -> Vec<Secret> {
    let ns = host.metadata.namespace();
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), ns);
    let names = secret_names(host);
    let mut out = Vec::new();
    for name in names {
        // A missing secret is the host's error to report (registration error), not ours.
        if let Ok(Some(s)) = api.get_opt(&name).await {
            out.push(secret_from(&s));
        }
    }
    out
}

async fn reconcile_object(
    obj: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let object = host_object(&obj).map_err(ControllerError::Object)?;
    let secrets = secrets_for(&ctx.client, &object.host).await;
    let decision = reconcile(&ctx.operator, &object, &secrets, BUSY_POLL).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        object.host.metadata.namespace(),
        &bare_metal_hosts(),
    );
    let name = &object.host.metadata.name;
    let params = PatchParams::default();
    let mut finalizers = object.finalizers.clone();
    for write in decision.writes {
        match write {
            Write::AddFinalizer | Write::RemoveFinalizer => {
                if matches!(write, Write::AddFinalizer) {
                    finalizers.push(crate::controller::FINALIZER.to_string());
                } else {
                    finalizers.retain(|f| f != crate::controller::FINALIZER);
                }
                let patch = json!({"metadata": {"finalizers": finalizers}});
                api.patch(name, &params, &Patch::Merge(&patch)).await?;
            }
            Write::Status(status) => {
                // A merge patch from the status read to the new one, so what the new one
                // leaves out goes.
                let patch = json!({"status": merge_patch(object.status.as_ref(), &status)});
                api.patch_status(name, &params, &Patch::Merge(&patch))
                    .await
                    .map_err(|source| ControllerError::Write {
                        what: "status",
                        host: object.host.metadata.key(),
                        source,
                    })?;
            }
            Write::Event(event) => {
                let reference = obj.object_ref(&bare_metal_hosts());
                let published = ctx
                    .recorder
                    .publish(
                        &Event {
                            type_: if event.warning {
                                EventType::Warning
                            } else {
                                EventType::Normal
                            },
                            reason: event.reason.clone(),
                            note: Some(event.message.clone()),
                            action: "Reconcile".to_string(),
                            secondary: None,
                        },
                        &reference,
                    )
                    .await;
                // An Event is a courtesy: one the API server refuses is logged, not
                // retried, and does not hold the host back.
                if let Err(e) = published {
                    tracing::warn!(host = %object.host.metadata.key(), reason = %event.reason, error = %e, "cannot record an Event");
                }
            }
        }
    }
    Ok(match decision.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn error_policy(obj: Arc<DynamicObject>, error: &ControllerError, _ctx: Arc<Context>) -> Action {
    let host = format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    );
    tracing::error!(%host, %error, "reconcile failed; trying again in 5 s");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until the watch ends. The IPPools, their IPAddresses and the
/// hosts' IPClaims are read first ([`crate::kube_ipam::load`]; the operator should be
/// opened with [`crate::kube_ipam::KubeAddresses`]), so no host is reconciled with a
/// stale view of who holds which address; a failure to read them is returned.
pub async fn run(
    client: Client,
    operator: Arc<Operator>,
    namespace: Option<&str>,
) -> Result<(), String> {
    let ipam = crate::kube_ipam::load(&client, &operator, namespace).await?;
    let ipam_watch = async {
        if ipam {
            crate::kube_ipam::watch(
                client.clone(),
                operator.clone(),
                namespace.map(String::from),
            )
            .await;
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = run_hosts(client.clone(), operator.clone(), namespace) => Ok(()),
        () = ipam_watch => Ok(()),
    }
}

async fn run_hosts(client: Client, operator: Arc<Operator>, namespace: Option<&str>) {
    let resource = bare_metal_hosts();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let recorder = Recorder::new(client.clone(), Reporter::from("metal3-operator"));
    let context = Arc::new(Context {
        client,
        operator,
        recorder,
    });
    let controller = Controller::new_with(api, watcher::Config::default(), resource.clone());
    // A Secret that changes (new credentials after the BMC refused the old ones, a
    // userData that appears) wakes the hosts that name it: the API server sends no event
    // for the host itself.
    let hosts = controller.store();
    let secrets: Api<KubeSecret> = match namespace {
        Some(ns) => Api::namespaced(context.client.clone(), ns),
        None => Api::all(context.client.clone()),
    };
    let mapper = move |secret: KubeSecret| {
        let (ns, name) = (secret.metadata.namespace, secret.metadata.name);
        hosts
            .state()
            .into_iter()
            .filter(|h| h.metadata.namespace == ns)
            .filter(|h| {
                host_object(h).is_ok_and(|o| {
                    name.as_ref()
                        .is_some_and(|n| secret_names(&o.host).contains(n))
                })
            })
            .map(|h| ObjectRef::from_obj_with(h.as_ref(), resource.clone()))
            .collect::<Vec<_>>()
    };
    controller
        .watches(secrets, watcher::Config::default(), mapper)
        .run(reconcile_object, error_policy, context)
        .for_each(|result| async move {
            match result {
                // The API server away: the watches list again once it answers.
                Err(kube::runtime::controller::Error::QueueError(e)) => {
                    tracing::warn!(error = %e, "watch of BareMetalHosts or Secrets failed; trying again");
                }
                Err(e) => tracing::debug!(error = %e, "controller event"),
                Ok(_) => {}
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// baremetal-operator's sample host (config/samples), as the API server returns it.
    const SAMPLE: &str = r#"{
        "apiVersion": "metal3.io/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": {
            "name": "example-baremetalhost", "namespace": "metal3",
            "finalizers": ["baremetalhost.metal3.io"],
            "deletionTimestamp": "2026-11-24T10:00:00Z",
            "annotations": {"baremetalhost.metal3.io/paused": ""}
        },
        "spec": {
            "online": true,
            "bootMACAddress": "00:c2:fc:4b:c6:8a",
            "bmc": {"address": "redfish-virtualmedia://192.168.122.1:8000/redfish/v1/Systems/1",
                    "credentialsName": "example-baremetalhost-secret"},
            "image": {"url": "http://172.22.0.1/images/rhcos.qcow2", "checksum": "abc", "checksumType": "md5"},
            "customDeploy": {"method": "install_coreos"},
            "architecture": "x86_64"
        },
        "status": {"provisioning": {"state": "provisioned"}, "operationalStatus": "OK"}
    }"#;

    #[test]
    fn upstream_objects_read_with_their_deletion_finalizers_and_status() {
        let obj: DynamicObject =
            serde_json::from_str(SAMPLE).unwrap_or_else(|e| unreachable!("{e}"));
        let o = host_object(&obj).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(o.host.metadata.key(), "metal3/example-baremetalhost");
        assert!(o.deleting && o.host.paused());
        assert_eq!(o.finalizers, ["baremetalhost.metal3.io"]);
        assert_eq!(
            o.host.spec.boot_mac_address.as_deref(),
            Some("00:c2:fc:4b:c6:8a")
        );
        assert_eq!(
            o.status
                .as_ref()
                .map(|s| s["provisioning"]["state"].clone()),
            Some(json!("provisioned"))
        );
        let r = bare_metal_hosts();
        assert_eq!(
            (r.group.as_str(), r.plural.as_str()),
            ("metal3.io", "baremetalhosts")
        );
    }

    #[test]
    fn secrets_come_decoded_and_string_data_wins() {
        let s: KubeSecret = serde_json::from_value(json!({
            "metadata": {"name": "bmc", "namespace": "metal3"},
            "data": {"username": "YWRtaW4=", "password": "cGFzc3dvcmQ="},
            "stringData": {"username": "root"}
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let s = secret_from(&s);
        assert_eq!(s.get("username"), Ok(Some("root".to_string())));
        assert_eq!(s.get("password"), Ok(Some("password".to_string())));
    }
}
