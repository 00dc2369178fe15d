//! The operator's reconciler in Kubernetes controller form: one call per BareMetalHost
//! object (on a watch event or a requeue) that hands the object to the [`Operator`] and
//! answers what to write back (finalizer, status) and when to be called again.
//!
//! This part has no Kubernetes dependency, so it is tested in every build against the
//! same scenarios as the embedded mode (see `metal3-demo`'s kube mode); the `kube` cargo
//! feature (`kube_controller`) runs it as a kube-rs controller over the real
//! `metal3.io/v1alpha1` CRD.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::manifests::{BareMetalHost, Secret};
use crate::operator::Operator;
use crate::render::status_json;

/// The finalizer the operator puts on every host it manages (baremetal-operator's).
pub const FINALIZER: &str = "baremetalhost.metal3.io";

/// A BareMetalHost object as the API server holds it.
#[derive(Debug, Clone)]
pub struct HostObject {
    /// The object (metadata and spec).
    pub host: BareMetalHost,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// The current `status`, if any.
    pub status: Option<Value>,
}

/// A write the controller makes to the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Add [`FINALIZER`] to `metadata.finalizers`.
    AddFinalizer,
    /// Remove [`FINALIZER`]: the object can go.
    RemoveFinalizer,
    /// Replace `status` with this (Metal3's layout).
    Status(Value),
    /// Record a Kubernetes Event about the host, as baremetal-operator does.
    Event(HostEvent),
}

/// A Kubernetes Event about a host: what `kubectl describe bmh` shows under Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEvent {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// A PascalCase reason (`ProvisioningStarted`, `InspectionError`, …).
    pub reason: String,
    /// What happened, in words.
    pub message: String,
}

/// The provisioning state and error of a status in Metal3's layout.
fn state_and_error(status: Option<&Value>) -> (String, String, String) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    match status {
        None => (String::new(), String::new(), String::new()),
        Some(s) => (
            text(s.pointer("/provisioning/state")),
            text(s.get("errorType")),
            text(s.get("errorMessage")),
        ),
    }
}

/// `provisioning error` → `ProvisioningError`.
fn pascal_case(words: &str) -> String {
    words
        .split([' ', '-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The Events for a status change, in baremetal-operator's vocabulary: an operation
/// started or completed, a host registered, an error raised.
pub fn events_for(before: Option<&Value>, after: &Value) -> Vec<HostEvent> {
    let (old, old_error, _) = state_and_error(before);
    let (new, error_type, error_message) = state_and_error(Some(after));
    let mut events = Vec::new();
    let normal = |reason: &str, message: String| HostEvent {
        warning: false,
        reason: reason.to_string(),
        message,
    };
    if old != new {
        let done = match old.as_str() {
            // From "" straight past registration (it finished within the first step,
            // before a status with `registering` was written): registered all the same.
            "registering" | ""
                if error_type.is_empty()
                    && !matches!(
                        new.as_str(),
                        "" | "registering"
                            | "unmanaged"
                            | "deleting"
                            | "powering off before delete"
                    ) =>
            {
                Some("Registered")
            }
            "inspecting" if error_type.is_empty() => Some("InspectionComplete"),
            "provisioning" if new == "provisioned" => Some("ProvisioningComplete"),
            "deprovisioning" if error_type.is_empty() => Some("DeprovisioningComplete"),
            _ => None,
        };
        if let Some(reason) = done {
            events.push(normal(reason, format!("{old} done; now {new}")));
        }
        let started = match new.as_str() {
            "inspecting" => Some("InspectionStarted"),
            "provisioning" => Some("ProvisioningStarted"),
            "deprovisioning" => Some("DeprovisioningStarted"),
            _ => None,
        };
        if let Some(reason) = started {
            let from = if old.is_empty() { "new" } else { old.as_str() };
            events.push(normal(reason, format!("{new} started (was {from})")));
        }
    }
    if !error_type.is_empty() && error_type != old_error {
        events.push(HostEvent {
            warning: true,
            reason: pascal_case(&error_type),
            message: error_message,
        });
    }
    events
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: members of `new` that
/// differ, and `null` for members of `old` that `new` leaves out. A status written as a
/// plain merge of the new one would keep a field the new one drops (an `errorType` after
/// the error clears); this patch removes it.
pub fn merge_patch(old: Option<&Value>, new: &Value) -> Value {
    match (old.and_then(Value::as_object), new.as_object()) {
        (Some(old), Some(new)) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in new {
                match old.get(k) {
                    Some(o) if o == v => {}
                    o => {
                        patch.insert(k.clone(), merge_patch(o, v));
                    }
                }
            }
            for k in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// What one reconcile decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Writes, in order.
    pub writes: Vec<Write>,
    /// Call again after this long (the host machine's wake-up time, or a short poll
    /// while the host is busy), or `None` when only a change should trigger it.
    pub requeue_after: Option<Duration>,
}

/// How often a host waiting for its conductor node is looked at in a cluster.
pub const BUSY_POLL: Duration = Duration::from_secs(2);

/// One reconcile of `object`, with the Secrets it references as read now: the object
/// handed to the [`Operator`], one [`Operator::reconcile`] step, and what to write back.
/// `busy_poll` is how soon a host waiting for its conductor node is looked at again (a
/// controller does not follow the conductor's change feed; [`BUSY_POLL`] in a cluster).
pub async fn reconcile(
    operator: &Arc<Operator>,
    object: &HostObject,
    secrets: &[Secret],
    busy_poll: Duration,
) -> Decision {
    let key = object.host.metadata.key();
    operator.put_secrets(secrets.iter().cloned());
    let mut writes = Vec::new();
    let ours = object.finalizers.iter().any(|f| f == FINALIZER);
    // A host with a status and no record here (another replica had it, or the store is
    // new) is taken up from its status, not started over.
    if let Some(status) = &object.status
        && let Err(e) = operator.adopt(&key, status).await
    {
        tracing::warn!(host = %key, error = %e, "cannot take up the host from its status");
        return Decision {
            writes: if ours || object.deleting {
                writes
            } else {
                vec![Write::AddFinalizer]
            },
            requeue_after: Some(busy_poll),
        };
    }
    if object.deleting {
        if !ours {
            // Not ours (or already released): nothing to hold back.
            return Decision {
                writes,
                requeue_after: None,
            };
        }
        if !operator.knows(&key) && operator.record(&key).is_some() {
            // After a restart: the operator must know the host to delete it.
            operator.put_host(object.host.clone());
        }
        operator.delete_host(&key);
    } else {
        if !ours {
            writes.push(Write::AddFinalizer);
        }
        operator.put_host(object.host.clone());
    }
    let step = operator.reconcile(&key).await;
    let Some(record) = &step.record else {
        if object.deleting {
            writes.push(Write::RemoveFinalizer);
        }
        return Decision {
            writes,
            requeue_after: None,
        };
    };
    let status = status_json(&key, record);
    // `lastUpdated` changes every step; compare without it so an unchanged host causes
    // no write.
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("lastUpdated");
        }
        v
    };
    if object.status.as_ref().map(strip) != Some(strip(&status)) {
        writes.extend(
            events_for(object.status.as_ref(), &status)
                .into_iter()
                .map(Write::Event),
        );
        writes.push(Write::Status(status));
    }
    let requeue_after = match (step.requeue_after, step.waiting_for_node) {
        (Some(d), true) => Some(d.min(busy_poll)),
        (None, true) => Some(busy_poll),
        (d, false) => d,
    };
    Decision {
        writes,
        requeue_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(state: &str, error: &str) -> Value {
        json!({"provisioning": {"state": state}, "errorType": error, "errorMessage": if error.is_empty() { "" } else { "the BMC said no" }})
    }

    #[test]
    fn a_merge_patch_changes_what_changed_and_removes_what_went() {
        let old = json!({"provisioning": {"ID": "a", "state": "provisioning", "image": {"url": "x"}},
                         "errorType": "provisioning error", "errorCount": 1});
        let new = json!({"provisioning": {"ID": "a", "state": "provisioned"}, "errorCount": 0});
        let patch = merge_patch(Some(&old), &new);
        assert_eq!(
            patch,
            json!({"provisioning": {"state": "provisioned", "image": null}, "errorType": null, "errorCount": 0})
        );
        // Applied as RFC 7386 says, the patch gives the new status exactly.
        fn apply(target: &mut Value, patch: &Value) {
            match (target.as_object_mut(), patch.as_object()) {
                (Some(t), Some(p)) => {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            apply(t.entry(k.clone()).or_insert(Value::Null), v);
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        let mut applied = old.clone();
        apply(&mut applied, &patch);
        assert_eq!(applied, new);
        assert_eq!(merge_patch(None, &new), new);
        assert_eq!(merge_patch(Some(&new), &new), json!({}));
    }

    #[test]
    fn events_name_what_started_completed_or_failed() {
        let reasons = |before: Option<Value>, after: Value| -> Vec<(bool, String)> {
            events_for(before.as_ref(), &after)
                .into_iter()
                .map(|e| (e.warning, e.reason))
                .collect()
        };
        assert_eq!(
            reasons(Some(status("available", "")), status("provisioning", "")),
            vec![(false, "ProvisioningStarted".to_string())]
        );
        assert_eq!(
            reasons(Some(status("provisioning", "")), status("provisioned", "")),
            vec![(false, "ProvisioningComplete".to_string())]
        );
        assert_eq!(
            reasons(None, status("inspecting", "")),
            vec![
                (false, "Registered".to_string()),
                (false, "InspectionStarted".to_string())
            ]
        );
        assert!(reasons(None, status("registering", "")).is_empty());
        assert_eq!(
            reasons(Some(status("registering", "")), status("inspecting", "")),
            vec![
                (false, "Registered".to_string()),
                (false, "InspectionStarted".to_string())
            ]
        );
        // An error raised once is one Warning, not one per reconcile.
        assert_eq!(
            reasons(
                Some(status("provisioning", "")),
                status("provisioning", "provisioning error")
            ),
            vec![(true, "ProvisioningError".to_string())]
        );
        assert!(
            reasons(
                Some(status("provisioning", "provisioning error")),
                status("provisioning", "provisioning error")
            )
            .is_empty()
        );
        assert!(reasons(Some(status("provisioned", "")), status("provisioned", "")).is_empty());
    }
}
