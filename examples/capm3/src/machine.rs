//! One level-triggered step of a Metal3Machine, pure: from the machine, its Cluster API
//! Machine, the hosts and its rendered data as they are now, the one next thing to do
//! and the status to write. The caller carries the action out and calls again.
//!
//! The order is CAPM3's: wait for the bootstrap data; choose a host ([`choose_host`])
//! and set its `consumerRef`; render the data (a Metal3Data with its addresses); write
//! image, user data, network data and meta data into the host; wait for it to be
//! provisioned, then set `providerID` and ready. Deleted: take the image away
//! (deprovisioning), wait for the host to be available again, clear its `consumerRef`
//! (with the node-reuse label if the template asks), release the data and its
//! addresses, and let the machine go.

use std::time::Duration;

use metal3_operator::manifests::{BareMetalHost, ObjectReference, SecretRef};
use provision_fsm::HostStateKind;

use crate::data::HostNic;
use crate::objects::{
    API_VERSION, HOST_ANNOTATION, Machine, Metal3Machine, Metal3MachineStatus, NODE_REUSE_LABEL,
    UNHEALTHY_ANNOTATION,
};

/// The `AssociateBMH` condition: the machine has a host.
pub const ASSOCIATE_CONDITION: &str = "AssociateBMH";
/// The `Ready` condition: the host is provisioned for the machine.
pub const READY_CONDITION: &str = "Ready";

/// A BareMetalHost as the machine step sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    /// The object (metadata and spec, `consumerRef` included).
    pub host: BareMetalHost,
    /// `status.provisioning.state`.
    pub state: HostStateKind,
    /// `status.errorMessage`, when the host is in error.
    pub error: Option<String>,
    /// The object is being deleted.
    pub deleting: bool,
    /// Its NICs from the hardware details.
    pub nics: Vec<HostNic>,
}

impl HostView {
    /// Whether the host's `consumerRef` names this Metal3Machine.
    pub fn consumed_by(&self, m3m: &Metal3Machine) -> bool {
        self.host.spec.consumer_ref.as_ref().is_some_and(|c| {
            c.kind == "Metal3Machine"
                && c.name == m3m.metadata.name
                && c.namespace
                    .as_deref()
                    .unwrap_or(self.host.metadata.namespace())
                    == m3m.metadata.namespace()
        })
    }
}

/// What the rendered data of a machine is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataState {
    /// The machine has no data template (or gives both Secrets itself).
    NotNeeded,
    /// Not rendered yet, or its last rendering failed (why).
    Pending(Option<String>),
    /// Rendered: the Metal3Data's name and its Secrets.
    Ready {
        /// The Metal3Data.
        data: String,
        /// Its meta-data Secret.
        meta_data: SecretRef,
        /// Its network-data Secret.
        network_data: SecretRef,
    },
}

/// What a step sees.
#[derive(Debug, Clone, Copy)]
pub struct MachineInput<'a> {
    /// The Metal3Machine, with its last status.
    pub metal3_machine: &'a Metal3Machine,
    /// The Cluster API Machine that owns it (none yet: wait).
    pub machine: Option<&'a Machine>,
    /// The Metal3Machine is being deleted.
    pub deleting: bool,
    /// The template it came from asks for node reuse.
    pub node_reuse: bool,
    /// The hosts of its namespace.
    pub hosts: &'a [HostView],
    /// Its data.
    pub data: &'a DataState,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum MachineAction {
    /// Set the host's `consumerRef` to the machine (and annotate the machine).
    Associate {
        /// The host's key.
        host: String,
        /// The reference to write.
        consumer: ObjectReference,
    },
    /// Render the machine's data: a Metal3Data of the lowest free index, its addresses
    /// claimed, its Secrets written.
    RenderData,
    /// Write what the host is to be provisioned with.
    ProvisionHost {
        /// The host's key.
        host: String,
        /// The host's spec fields to set.
        image: provision_fsm::Image,
        /// The user-data Secret (the bootstrap data).
        user_data: SecretRef,
        /// The meta-data Secret, if any.
        meta_data: Option<SecretRef>,
        /// The network-data Secret, if any.
        network_data: Option<SecretRef>,
        /// `automatedCleaningMode`, if the machine says.
        automated_cleaning_mode: Option<String>,
    },
    /// Set `providerID` on the Metal3Machine and its Machine, and the annotation naming
    /// its host.
    SetProviderId {
        /// `metal3://<namespace>/<host>/<machine>`.
        provider_id: String,
        /// The host's key.
        host: String,
    },
    /// Take the image and data away from the host: it deprovisions.
    DeprovisionHost {
        /// The host's key.
        host: String,
    },
    /// Clear the host's `consumerRef`: it is free for another machine.
    ReleaseHost {
        /// The host's key.
        host: String,
        /// The node-reuse label value to put on it, when the template asks.
        reuse_for: Option<String>,
    },
    /// Delete the Metal3Data and release its addresses.
    ReleaseData,
    /// Everything is released: the Metal3Machine can go.
    Finalized,
}

/// What a step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineStep {
    /// The status to write.
    pub status: Metal3MachineStatus,
    /// The next action, if any.
    pub action: Option<MachineAction>,
    /// When to look again (besides any change of the objects).
    pub requeue_after: Option<Duration>,
}

/// How often a waiting machine looks again.
const WAIT: Duration = Duration::from_secs(2);

/// Why no host fits a machine, in words, and the host chosen when one does.
pub fn choose_host<'a>(
    m3m: &Metal3Machine,
    hosts: &'a [HostView],
    reuse_for: Option<&str>,
) -> Result<Option<&'a HostView>, String> {
    let namespace = m3m.metadata.namespace();
    let mut candidates = Vec::new();
    for h in hosts {
        if h.host.metadata.namespace() != namespace || h.deleting || h.error.is_some() {
            continue;
        }
        if h.host.spec.consumer_ref.is_some()
            || h.host
                .metadata
                .annotations
                .contains_key(UNHEALTHY_ANNOTATION)
            || h.state != HostStateKind::Available
        {
            continue;
        }
        if m3m
            .spec
            .host_selector
            .matches(&h.host.metadata.labels)
            .map_err(|e| format!("Metal3Machine {}: {e}", m3m.metadata.key()))?
        {
            candidates.push(h);
        }
    }
    // A host released for this machine's control plane or deployment comes first.
    if let Some(group) = reuse_for {
        if let Some(h) = candidates
            .iter()
            .filter(|h| {
                h.host
                    .metadata
                    .labels
                    .get(NODE_REUSE_LABEL)
                    .map(String::as_str)
                    == Some(group)
            })
            .min_by(|a, b| a.host.metadata.name.cmp(&b.host.metadata.name))
        {
            return Ok(Some(h));
        }
    }
    // CAPM3 picks at random; the first by name keeps a run reproducible.
    Ok(candidates
        .into_iter()
        .min_by(|a, b| a.host.metadata.name.cmp(&b.host.metadata.name)))
}

fn waiting(
    mut status: Metal3MachineStatus,
    kind: &str,
    reason: &str,
    message: &str,
) -> MachineStep {
    status.set_condition(kind, false, reason, message);
    MachineStep {
        status,
        action: None,
        requeue_after: Some(WAIT),
    }
}

/// The `consumerRef` naming a Metal3Machine.
fn consumer_of(m3m: &Metal3Machine) -> ObjectReference {
    ObjectReference {
        api_version: API_VERSION.into(),
        kind: "Metal3Machine".into(),
        name: m3m.metadata.name.clone(),
        namespace: Some(m3m.metadata.namespace().to_string()),
    }
}

/// The one next step of a Metal3Machine.
pub fn step(input: &MachineInput<'_>) -> MachineStep {
    let m3m = input.metal3_machine;
    let mut status = m3m.status.clone();
    status.failure_message = None;
    let host = input.hosts.iter().find(|h| h.consumed_by(m3m));
    let act = |status: Metal3MachineStatus, action: MachineAction| MachineStep {
        status,
        action: Some(action),
        requeue_after: None,
    };
    if input.deleting {
        status.ready = false;
        if let Some(h) = host {
            let key = h.host.metadata.key();
            let data_set = h.host.spec.image.is_some()
                || h.host.spec.user_data.is_some()
                || h.host.spec.network_data.is_some()
                || h.host.spec.meta_data.is_some();
            if data_set {
                return act(status, MachineAction::DeprovisionHost { host: key });
            }
            let busy = matches!(
                h.state,
                HostStateKind::Provisioning
                    | HostStateKind::Provisioned
                    | HostStateKind::Deprovisioning
            );
            if busy && h.error.is_none() {
                return waiting(
                    status,
                    READY_CONDITION,
                    "Deprovisioning",
                    &format!("host {key} is {}", h.state.name()),
                );
            }
            let reuse_for = if input.node_reuse {
                input.machine.and_then(Machine::owner_group)
            } else {
                None
            };
            return act(
                status,
                MachineAction::ReleaseHost {
                    host: key,
                    reuse_for,
                },
            );
        }
        if !matches!(input.data, DataState::NotNeeded) || status.rendered_data.is_some() {
            status.rendered_data = None;
            status.meta_data = None;
            status.network_data = None;
            return act(status, MachineAction::ReleaseData);
        }
        return act(status, MachineAction::Finalized);
    }

    let Some(machine) = input.machine else {
        return waiting(
            status,
            ASSOCIATE_CONDITION,
            "WaitingForMachine",
            "no Cluster API Machine owns this Metal3Machine yet",
        );
    };
    let Some(bootstrap) = machine.spec.bootstrap.data_secret_name.clone() else {
        return waiting(
            status,
            ASSOCIATE_CONDITION,
            "WaitingForBootstrapData",
            &format!(
                "Machine {} has no bootstrap data yet",
                machine.metadata.name
            ),
        );
    };
    let Some(image) = m3m.spec.image.clone() else {
        status.failure_message = Some("the Metal3Machine has no image".into());
        return waiting(
            status,
            ASSOCIATE_CONDITION,
            "NoImage",
            "the Metal3Machine has no image",
        );
    };
    let Some(host) = host else {
        // The host the machine was given and that lost its consumerRef (a restore that
        // missed it) is the machine's again: its data was rendered for that host.
        let annotated =
            m3m.metadata
                .annotations
                .get(HOST_ANNOTATION)
                .and_then(|key| {
                    input.hosts.iter().find(|h| {
                        h.host.metadata.key() == *key && h.host.spec.consumer_ref.is_none()
                    })
                });
        if let Some(h) = annotated {
            return act(
                status,
                MachineAction::Associate {
                    host: h.host.metadata.key(),
                    consumer: consumer_of(m3m),
                },
            );
        }
        let reuse_for = if input.node_reuse {
            machine.owner_group()
        } else {
            None
        };
        return match choose_host(m3m, input.hosts, reuse_for.as_deref()) {
            Err(e) => {
                status.failure_message = Some(e.clone());
                waiting(status, ASSOCIATE_CONDITION, "InvalidHostSelector", &e)
            }
            Ok(None) => waiting(
                status,
                ASSOCIATE_CONDITION,
                "NoAvailableHost",
                &format!(
                    "no available BareMetalHost in namespace {} matches the hostSelector and has no consumer",
                    m3m.metadata.namespace()
                ),
            ),
            Ok(Some(h)) => act(
                status,
                MachineAction::Associate {
                    host: h.host.metadata.key(),
                    consumer: consumer_of(m3m),
                },
            ),
        };
    };
    status.set_condition(ASSOCIATE_CONDITION, true, "", "");
    let key = host.host.metadata.key();
    let (meta_data, network_data) = match input.data {
        DataState::NotNeeded => (m3m.spec.meta_data.clone(), m3m.spec.network_data.clone()),
        DataState::Pending(error) => {
            // Rendered again until it works: an exhausted pool may get addresses back.
            let why = error.clone().unwrap_or_else(|| "rendering the data".into());
            status.failure_message = error.clone();
            status.set_condition(READY_CONDITION, false, "WaitingForData", &why);
            return MachineStep {
                status,
                action: Some(MachineAction::RenderData),
                requeue_after: error.as_ref().map(|_| WAIT),
            };
        }
        DataState::Ready {
            data,
            meta_data,
            network_data,
        } => {
            status.rendered_data = Some(metal3_operator::manifests::ObjectRef {
                name: data.clone(),
                namespace: None,
            });
            // Secrets the machine names itself win over the template's (CAPM3's hybrid).
            (
                m3m.spec.meta_data.clone().or(Some(meta_data.clone())),
                m3m.spec.network_data.clone().or(Some(network_data.clone())),
            )
        }
    };
    let user_data = m3m.spec.user_data.clone().unwrap_or(SecretRef {
        name: bootstrap,
        namespace: Some(m3m.metadata.namespace().to_string()),
    });
    status.user_data = Some(user_data.clone());
    status.meta_data = meta_data.clone();
    status.network_data = network_data.clone();
    let spec = &host.host.spec;
    if spec.image.as_ref() != Some(&image)
        || spec.user_data.as_ref() != Some(&user_data)
        || spec.meta_data != meta_data
        || spec.network_data != network_data
        || !spec.online
    {
        return act(
            status,
            MachineAction::ProvisionHost {
                host: key,
                image,
                user_data,
                meta_data,
                network_data,
                automated_cleaning_mode: m3m.spec.automated_cleaning_mode.clone(),
            },
        );
    }
    if let Some(e) = &host.error {
        status.ready = false;
        return waiting(
            status,
            READY_CONDITION,
            "HostError",
            &format!("host {key}: {e}"),
        );
    }
    if host.state != HostStateKind::Provisioned {
        status.ready = false;
        return waiting(
            status,
            READY_CONDITION,
            "Provisioning",
            &format!("host {key} is {}", host.state.name()),
        );
    }
    let provider_id = format!(
        "metal3://{}/{}/{}",
        m3m.metadata.namespace(),
        host.host.metadata.name,
        m3m.metadata.name
    );
    let annotated = m3m.metadata.annotations.get(HOST_ANNOTATION) == Some(&key);
    if m3m.spec.provider_id.as_deref() != Some(provider_id.as_str())
        || machine.spec.provider_id.as_deref() != Some(provider_id.as_str())
        || !annotated
    {
        return act(
            status,
            MachineAction::SetProviderId {
                provider_id,
                host: key,
            },
        );
    }
    status.ready = true;
    status.set_condition(READY_CONDITION, true, "", "");
    MachineStep {
        status,
        action: None,
        requeue_after: None,
    }
}
