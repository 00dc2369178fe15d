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
    let status = status_json(record);
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
