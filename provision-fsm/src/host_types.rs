//! The BareMetalHost vocabulary: provisioning states (with their data), operational status,
//! error types, the spec the operator reads, and the events and actions of the machine.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::image::Image;
use crate::time::Time;

/// A provisioning state without its data, named as Metal3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HostStateKind {
    /// `""`: new.
    #[serde(rename = "")]
    None,
    /// `unmanaged`: no BMC details.
    #[serde(rename = "unmanaged")]
    Unmanaged,
    /// `registering`.
    #[serde(rename = "registering")]
    Registering,
    /// `match profile` (legacy; passes straight to preparing).
    #[serde(rename = "match profile")]
    MatchProfile,
    /// `inspecting`.
    #[serde(rename = "inspecting")]
    Inspecting,
    /// `preparing`.
    #[serde(rename = "preparing")]
    Preparing,
    /// `available` (`ready` is read as this).
    #[serde(rename = "available", alias = "ready")]
    Available,
    /// `provisioning`.
    #[serde(rename = "provisioning")]
    Provisioning,
    /// `provisioned`.
    #[serde(rename = "provisioned")]
    Provisioned,
    /// `externally provisioned`.
    #[serde(rename = "externally provisioned")]
    ExternallyProvisioned,
    /// `deprovisioning`.
    #[serde(rename = "deprovisioning")]
    Deprovisioning,
    /// `powering off before delete`.
    #[serde(rename = "powering off before delete")]
    PoweringOffBeforeDelete,
    /// `deleting`.
    #[serde(rename = "deleting")]
    Deleting,
    /// `deleted`: the finalizer is removed and the object goes away. Not a Metal3 state
    /// string (upstream's object simply disappears); it makes the end explicit.
    #[serde(rename = "deleted")]
    Deleted,
}

impl HostStateKind {
    /// Every state.
    pub const ALL: [HostStateKind; 14] = [
        HostStateKind::None,
        HostStateKind::Unmanaged,
        HostStateKind::Registering,
        HostStateKind::MatchProfile,
        HostStateKind::Inspecting,
        HostStateKind::Preparing,
        HostStateKind::Available,
        HostStateKind::Provisioning,
        HostStateKind::Provisioned,
        HostStateKind::ExternallyProvisioned,
        HostStateKind::Deprovisioning,
        HostStateKind::PoweringOffBeforeDelete,
        HostStateKind::Deleting,
        HostStateKind::Deleted,
    ];

    /// Metal3's string (`status.provisioning.state`).
    pub fn name(self) -> &'static str {
        match self {
            HostStateKind::None => "",
            HostStateKind::Unmanaged => "unmanaged",
            HostStateKind::Registering => "registering",
            HostStateKind::MatchProfile => "match profile",
            HostStateKind::Inspecting => "inspecting",
            HostStateKind::Preparing => "preparing",
            HostStateKind::Available => "available",
            HostStateKind::Provisioning => "provisioning",
            HostStateKind::Provisioned => "provisioned",
            HostStateKind::ExternallyProvisioned => "externally provisioned",
            HostStateKind::Deprovisioning => "deprovisioning",
            HostStateKind::PoweringOffBeforeDelete => "powering off before delete",
            HostStateKind::Deleting => "deleting",
            HostStateKind::Deleted => "deleted",
        }
    }

    /// Parses Metal3's string; `ready` (the old name of `available`) is accepted.
    pub fn from_name(name: &str) -> Option<HostStateKind> {
        if name == "ready" {
            return Some(HostStateKind::Available);
        }
        HostStateKind::ALL.into_iter().find(|s| s.name() == name)
    }

    /// States entered only through the capacity gate.
    pub fn is_heavy(self) -> bool {
        matches!(
            self,
            HostStateKind::Inspecting | HostStateKind::Provisioning | HostStateKind::Deprovisioning
        )
    }
}

impl fmt::Display for HostStateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How inspection runs (`spec.inspectionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InspectionMode {
    /// Boot the agent and let it report (the default).
    #[default]
    Agent,
    /// Out of band through the BMC only.
    Fast,
    /// No inspection.
    Disabled,
}

/// A provisioning state with the data it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum HostState {
    /// `""`.
    #[serde(rename = "")]
    None,
    /// `unmanaged`.
    #[serde(rename = "unmanaged")]
    Unmanaged,
    /// `registering`.
    #[serde(rename = "registering")]
    Registering,
    /// `match profile`.
    #[serde(rename = "match profile")]
    MatchProfile,
    /// `inspecting`, in the mode it was started with.
    #[serde(rename = "inspecting")]
    Inspecting {
        /// Agent or out of band.
        mode: InspectionMode,
    },
    /// `preparing`, applying a version of the preparation settings.
    #[serde(rename = "preparing")]
    Preparing {
        /// The settings version being applied (`None`: nothing to apply).
        settings: Option<String>,
    },
    /// `available`.
    #[serde(rename = "available", alias = "ready")]
    Available,
    /// `provisioning` an image.
    #[serde(rename = "provisioning")]
    Provisioning {
        /// The image being written.
        image: Image,
    },
    /// `provisioned` with an image.
    #[serde(rename = "provisioned")]
    Provisioned {
        /// The image provisioned (`status.provisioning.image`).
        image: Image,
    },
    /// `externally provisioned`.
    #[serde(rename = "externally provisioned")]
    ExternallyProvisioned,
    /// `deprovisioning`.
    #[serde(rename = "deprovisioning")]
    Deprovisioning,
    /// `powering off before delete`.
    #[serde(rename = "powering off before delete")]
    PoweringOffBeforeDelete,
    /// `deleting`.
    #[serde(rename = "deleting")]
    Deleting,
    /// The object is gone.
    #[serde(rename = "deleted")]
    Deleted,
}

impl HostState {
    /// The state without its data.
    pub fn kind(&self) -> HostStateKind {
        match self {
            HostState::None => HostStateKind::None,
            HostState::Unmanaged => HostStateKind::Unmanaged,
            HostState::Registering => HostStateKind::Registering,
            HostState::MatchProfile => HostStateKind::MatchProfile,
            HostState::Inspecting { .. } => HostStateKind::Inspecting,
            HostState::Preparing { .. } => HostStateKind::Preparing,
            HostState::Available => HostStateKind::Available,
            HostState::Provisioning { .. } => HostStateKind::Provisioning,
            HostState::Provisioned { .. } => HostStateKind::Provisioned,
            HostState::ExternallyProvisioned => HostStateKind::ExternallyProvisioned,
            HostState::Deprovisioning => HostStateKind::Deprovisioning,
            HostState::PoweringOffBeforeDelete => HostStateKind::PoweringOffBeforeDelete,
            HostState::Deleting => HostStateKind::Deleting,
            HostState::Deleted => HostStateKind::Deleted,
        }
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().name())
    }
}

/// `status.operationalStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationalStatus {
    /// `OK`.
    #[serde(rename = "OK")]
    Ok,
    /// `discovered`: BMC details incomplete.
    #[serde(rename = "discovered")]
    Discovered,
    /// `error`.
    #[serde(rename = "error")]
    Error,
    /// `delayed`: waiting for provisioning capacity.
    #[serde(rename = "delayed")]
    Delayed,
    /// `detached`: the conductor no longer manages the host.
    #[serde(rename = "detached")]
    Detached,
    /// `servicing`.
    #[serde(rename = "servicing")]
    Servicing,
}

impl OperationalStatus {
    /// Every operational status.
    pub const ALL: [OperationalStatus; 6] = [
        OperationalStatus::Ok,
        OperationalStatus::Discovered,
        OperationalStatus::Error,
        OperationalStatus::Delayed,
        OperationalStatus::Detached,
        OperationalStatus::Servicing,
    ];

    /// The operational status Metal3 calls `name`.
    pub fn from_name(name: &str) -> Option<OperationalStatus> {
        OperationalStatus::ALL
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// Metal3's string.
    pub fn name(self) -> &'static str {
        match self {
            OperationalStatus::Ok => "OK",
            OperationalStatus::Discovered => "discovered",
            OperationalStatus::Error => "error",
            OperationalStatus::Delayed => "delayed",
            OperationalStatus::Detached => "detached",
            OperationalStatus::Servicing => "servicing",
        }
    }
}

/// `status.errorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorType {
    /// `provisioned registration error`.
    #[serde(rename = "provisioned registration error")]
    ProvisionedRegistration,
    /// `registration error`.
    #[serde(rename = "registration error")]
    Registration,
    /// `inspection error`.
    #[serde(rename = "inspection error")]
    Inspection,
    /// `preparation error`.
    #[serde(rename = "preparation error")]
    Preparation,
    /// `provisioning error`.
    #[serde(rename = "provisioning error")]
    Provisioning,
    /// `power management error`.
    #[serde(rename = "power management error")]
    PowerManagement,
    /// `detach error`.
    #[serde(rename = "detach error")]
    Detach,
    /// `servicing error`.
    #[serde(rename = "servicing error")]
    Servicing,
}

impl ErrorType {
    /// Every error type.
    pub const ALL: [ErrorType; 8] = [
        ErrorType::ProvisionedRegistration,
        ErrorType::Registration,
        ErrorType::Inspection,
        ErrorType::Preparation,
        ErrorType::Provisioning,
        ErrorType::PowerManagement,
        ErrorType::Detach,
        ErrorType::Servicing,
    ];

    /// The error type Metal3 calls `name`.
    pub fn from_name(name: &str) -> Option<ErrorType> {
        ErrorType::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Metal3's string.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::ProvisionedRegistration => "provisioned registration error",
            ErrorType::Registration => "registration error",
            ErrorType::Inspection => "inspection error",
            ErrorType::Preparation => "preparation error",
            ErrorType::Provisioning => "provisioning error",
            ErrorType::PowerManagement => "power management error",
            ErrorType::Detach => "detach error",
            ErrorType::Servicing => "servicing error",
        }
    }
}

/// The last error (`status.errorType` and `status.errorMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostError {
    /// Error type.
    pub kind: ErrorType,
    /// Message.
    pub message: String,
}

/// The state of the BMC credentials secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialsState {
    /// The secret does not exist (retried every 10 s).
    Missing,
    /// The secret exists but is unusable (empty user or password); waits for a change.
    Invalid(String),
    /// Usable credentials, identified by the secret's version.
    Present {
        /// The secret's resource version: a new one means re-register.
        version: String,
    },
}

/// What to do on delete while detached (`detached` annotation's `deleteAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetachedDeleteAction {
    /// Postpone deletion while detached.
    #[default]
    Delay,
    /// Delete without deprovisioning or powering off.
    Delete,
}

/// The `baremetalhost.metal3.io/detached` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Detach {
    /// On delete.
    pub delete_action: DetachedDeleteAction,
    /// Detach even from a busy state (aborting what the conductor does).
    pub force: bool,
}

/// Soft (ACPI, then hard) or hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebootMode {
    /// Soft, then hard if the OS does not stop.
    #[default]
    Soft,
    /// Hard.
    Hard,
}

/// What the operator reads from the BareMetalHost object on each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    /// `spec.bmc.address` or `credentialsName` is set.
    pub has_bmc_details: bool,
    /// The credentials secret.
    pub credentials: CredentialsState,
    /// `spec.online`.
    pub online: bool,
    /// `spec.image`.
    pub image: Option<Image>,
    /// `spec.externallyProvisioned`.
    pub externally_provisioned: bool,
    /// `spec.inspectionMode` (or the `inspect.metal3.io: disabled` annotation).
    pub inspection: InspectionMode,
    /// The `inspect.metal3.io` annotation asks for re-inspection.
    pub inspect_requested: bool,
    /// A version of the preparation settings (RAID, firmware, root device hints); `None`
    /// when there is nothing to prepare. A new version on an available host means
    /// preparing again.
    pub preparation: Option<String>,
    /// `baremetalhost.metal3.io/paused`.
    pub paused: bool,
    /// `baremetalhost.metal3.io/detached`.
    pub detached: Option<Detach>,
    /// `reboot.metal3.io`.
    pub reboot: Option<RebootMode>,
    /// `spec.disablePowerOff`.
    pub disable_power_off: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl Default for HostSpec {
    fn default() -> Self {
        HostSpec {
            has_bmc_details: true,
            credentials: CredentialsState::Present {
                version: "1".to_string(),
            },
            online: true,
            image: None,
            externally_provisioned: false,
            inspection: InspectionMode::Agent,
            inspect_requested: false,
            preparation: None,
            paused: false,
            detached: None,
            reboot: None,
            disable_power_off: false,
            deleting: false,
        }
    }
}

/// What the host machine is told: a reconcile (the spec may have changed, or a wake-up
/// time came) or the result of an action it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostEvent {
    /// Look at the spec and move on if anything is due.
    Reconcile,
    /// The conductor has the node with these credentials.
    Registered {
        /// The credentials version registered.
        credentials_version: String,
    },
    /// Registration failed.
    RegistrationFailed(String),
    /// Registration failed because the BMC refused these credentials: they are not tried
    /// again until the credentials change (a BMC locks an account after a few wrong
    /// passwords).
    CredentialsRefused {
        /// The credentials version refused.
        credentials_version: String,
        /// What the BMC said.
        message: String,
    },
    /// Inspection finished.
    InspectionDone,
    /// Inspection failed.
    InspectionFailed(String),
    /// Preparation finished.
    PreparationDone,
    /// Preparation failed.
    PreparationFailed(String),
    /// The image is provisioned.
    ProvisioningDone,
    /// Provisioning failed.
    ProvisioningFailed(String),
    /// Deprovisioning (cleaning) finished.
    DeprovisioningDone,
    /// Deprovisioning failed.
    DeprovisioningFailed(String),
    /// The BMC reports the power state.
    PowerChanged {
        /// Powered on.
        on: bool,
    },
    /// A power change failed.
    PowerFailed(String),
    /// A requested reboot finished.
    RebootDone,
    /// The conductor dropped the node (detach).
    Detached,
    /// Detaching failed.
    DetachFailed(String),
    /// The conductor deleted the node.
    NodeDeleted,
}

/// What the operator or conductor should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostAction {
    /// Create or update the conductor's node with these credentials and verify the BMC.
    Register {
        /// The credentials version to register.
        credentials_version: String,
    },
    /// Inspect the hardware.
    Inspect {
        /// How.
        mode: InspectionMode,
    },
    /// Apply preparation settings (RAID, firmware).
    Prepare {
        /// The settings version.
        settings: Option<String>,
    },
    /// Provision the image.
    Provision {
        /// The image.
        image: Image,
    },
    /// Deprovision (tear down and clean).
    Deprovision,
    /// Power on.
    PowerOn,
    /// Power off (hard when deleting).
    PowerOff,
    /// Reboot.
    Reboot {
        /// Soft or hard.
        mode: RebootMode,
    },
    /// Remove the `reboot.metal3.io` annotation.
    ClearRebootAnnotation,
    /// Remove the `inspect.metal3.io` annotation.
    ClearInspectAnnotation,
    /// Drop the node from the conductor without deprovisioning.
    Detach,
    /// Delete the node from the conductor.
    DeleteNode,
    /// Remove the finalizer: the object can go.
    RemoveFinalizer,
}

/// An action sent and not yet answered: it is not sent again until its result arrives
/// (or a failure's backoff passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pending {
    /// `Register`.
    Register,
    /// `Inspect`.
    Inspect,
    /// `Prepare`.
    Prepare,
    /// `Provision`.
    Provision,
    /// `Deprovision`.
    Deprovision,
    /// `PowerOn` or `PowerOff`.
    Power,
    /// `Reboot`.
    Reboot,
    /// Waiting for the reboot annotation to go.
    ClearReboot,
    /// `Detach`.
    Detach,
    /// `DeleteNode`.
    DeleteNode,
}

/// Context of a step: the time, the capacity gate, jitter and limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepContext {
    /// Now.
    pub now: Time,
    /// Whether the conductor has room for another heavy operation (inspecting,
    /// provisioning, deprovisioning). An input, not a shared counter.
    pub capacity_available: bool,
    /// A random number in `[0, 1)` for backoff jitter.
    pub jitter: f64,
    /// Provisioning attempts before giving up (`--max-provisioning-retries`, default 5;
    /// 0 = unlimited).
    pub max_provisioning_retries: u32,
}

impl StepContext {
    /// A context at `now` with capacity, no jitter and upstream's retry limit.
    pub fn at(now: Time) -> StepContext {
        StepContext {
            now,
            capacity_available: true,
            jitter: 0.0,
            max_provisioning_retries: 5,
        }
    }
}
