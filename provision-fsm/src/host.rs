//! The BareMetalHost lifecycle as a pure step function (Metal3's host state machine).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host_types::{
    CredentialsState, DetachedDeleteAction, ErrorType, HostAction, HostError, HostEvent, HostSpec,
    HostState, HostStateKind, InspectionMode, OperationalStatus, Pending, StepContext,
};
use crate::time::{Time, backoff};

/// Retry delay while the credentials secret is missing (`hostErrorRetryDelay`).
pub const CREDENTIALS_RETRY: Duration = Duration::from_secs(10);
/// Poll interval for unmanaged and detached hosts (`unmanagedRetryDelay`).
pub const SLOW_POLL: Duration = Duration::from_secs(600);
/// Power check interval in stable states.
pub const POWER_POLL: Duration = Duration::from_secs(60);
/// Failures after which deletion stops trying to clean up (`retryCount`).
pub const DELETE_RETRIES: u32 = 3;

/// One row of the host transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTransition {
    /// Stable identifier, e.g. `available.provision`.
    pub id: &'static str,
    /// From (`None`: any state but deleting and deleted).
    pub from: Option<HostStateKind>,
    /// To.
    pub to: HostStateKind,
    /// The condition, as the reference states it.
    pub when: &'static str,
}

macro_rules! rows {
    ($($name:ident: $id:literal, $from:expr => $to:ident, $when:literal;)*) => {
        $(
            #[doc = concat!("Row `", $id, "`: ", $when, ".")]
            pub const $name: HostTransition = HostTransition {
                id: $id,
                from: $from,
                to: HostStateKind::$to,
                when: $when,
            };
        )*
        /// Every transition of the host machine (`reference/metal3.md` §3.2–§3.3).
        pub const HOST_TRANSITIONS: &[HostTransition] = &[$($name),*];
    };
}

use HostStateKind as K;

/// Rows of the transition table, one constant each.
pub mod rows {
    use super::*;
    rows! {
        NONE_REGISTER: "none.register", Some(K::None) => Registering, "BMC details present";
        NONE_UNMANAGED: "none.unmanaged", Some(K::None) => Unmanaged, "no BMC details (discovered)";
        UNMANAGED_REGISTER: "unmanaged.register", Some(K::Unmanaged) => Registering, "BMC details added";
        REGISTERING_EXTERNAL: "registering.external", Some(K::Registering) => ExternallyProvisioned, "registered, externallyProvisioned set";
        REGISTERING_PREPARE: "registering.prepare", Some(K::Registering) => Preparing, "registered, inspection disabled";
        REGISTERING_INSPECT: "registering.inspect", Some(K::Registering) => Inspecting, "registered (capacity gate)";
        INSPECTING_DONE: "inspecting.done", Some(K::Inspecting) => Preparing, "inspection done";
        MATCH_PROFILE_PREPARE: "match-profile.prepare", Some(K::MatchProfile) => Preparing, "always (legacy state)";
        PREPARING_DONE: "preparing.done", Some(K::Preparing) => Available, "preparation done, or nothing to prepare";
        AVAILABLE_EXTERNAL: "available.external", Some(K::Available) => ExternallyProvisioned, "externallyProvisioned set";
        AVAILABLE_INSPECT: "available.inspect", Some(K::Available) => Inspecting, "inspect annotation, inspection enabled (capacity gate)";
        AVAILABLE_PREPARE: "available.prepare", Some(K::Available) => Preparing, "preparation settings changed";
        AVAILABLE_PROVISION: "available.provision", Some(K::Available) => Provisioning, "online, image set, under the retry limit (capacity gate)";
        PROVISIONING_FAILED: "provisioning.failed", Some(K::Provisioning) => Deprovisioning, "provisioning failed: failCount+1 (capacity gate)";
        PROVISIONING_CANCELLED: "provisioning.cancelled", Some(K::Provisioning) => Deprovisioning, "image removed or changed (capacity gate)";
        PROVISIONING_DONE: "provisioning.done", Some(K::Provisioning) => Provisioned, "provisioning done";
        PROVISIONED_CANCELLED: "provisioned.cancelled", Some(K::Provisioned) => Deprovisioning, "image removed or changed (capacity gate)";
        EXTERNAL_PROVISIONED: "external.provisioned", Some(K::ExternallyProvisioned) => Provisioned, "externallyProvisioned cleared, image set";
        EXTERNAL_DEPROVISION: "external.deprovision", Some(K::ExternallyProvisioned) => Deprovisioning, "externallyProvisioned cleared, no image (capacity gate)";
        DEPROVISIONING_DONE: "deprovisioning.done", Some(K::Deprovisioning) => Available, "deprovisioning done";
        DEPROVISIONING_DONE_DELETING: "deprovisioning.done-deleting", Some(K::Deprovisioning) => PoweringOffBeforeDelete, "deprovisioning done while deleting";
        DEPROVISIONING_GIVE_UP: "deprovisioning.give-up", Some(K::Deprovisioning) => PoweringOffBeforeDelete, "deleting, failed more than 3 times";
        DEPROVISIONING_UNREGISTERED: "deprovisioning.unregistered", Some(K::Deprovisioning) => Deleting, "deleting, not registered and no credentials";
        POWER_OFF_DONE: "power-off.done", Some(K::PoweringOffBeforeDelete) => Deleting, "powered off, or power off disabled";
        POWER_OFF_GIVE_UP: "power-off.give-up", Some(K::PoweringOffBeforeDelete) => Deleting, "failed more than 3 times, or not registered and no credentials";
        DELETING_DONE: "deleting.done", Some(K::Deleting) => Deleted, "node deleted, finalizer removed";
        DELETE_DETACHED: "delete.detached", None => Deleting, "delete while detached with deleteAction delete";
        DELETE_NONE: "delete.none", Some(K::None) => Deleting, "delete before registration";
        DELETE_UNMANAGED: "delete.unmanaged", Some(K::Unmanaged) => Deleting, "delete while unmanaged";
        DELETE_REGISTERING: "delete.registering", Some(K::Registering) => Deleting, "delete while registering";
        DELETE_PROVISIONING: "delete.provisioning", Some(K::Provisioning) => Deprovisioning, "delete while provisioning (capacity gate)";
        DELETE_PROVISIONED: "delete.provisioned", Some(K::Provisioned) => Deprovisioning, "delete while provisioned (capacity gate)";
        DELETE_DEPROVISIONING_REGISTRATION: "delete.deprovisioning-registration", Some(K::Deprovisioning) => Deleting, "deleting, registration error more than 3 times";
        DELETE_POWER_OFF_REGISTRATION: "delete.power-off-registration", Some(K::PoweringOffBeforeDelete) => Deleting, "deleting, registration error more than 3 times";
        DELETE_INSPECTING: "delete.inspecting", Some(K::Inspecting) => PoweringOffBeforeDelete, "delete while inspecting";
        DELETE_MATCH_PROFILE: "delete.match-profile", Some(K::MatchProfile) => PoweringOffBeforeDelete, "delete in match profile";
        DELETE_PREPARING: "delete.preparing", Some(K::Preparing) => PoweringOffBeforeDelete, "delete while preparing";
        DELETE_AVAILABLE: "delete.available", Some(K::Available) => PoweringOffBeforeDelete, "delete while available";
        DELETE_EXTERNAL: "delete.external", Some(K::ExternallyProvisioned) => PoweringOffBeforeDelete, "delete while externally provisioned";
    }
}

pub use rows::HOST_TRANSITIONS;
use rows::*;

/// The host's status as the machine keeps it (the parts of `BareMetalHostStatus` the
/// lifecycle needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Provisioning state (`status.provisioning.state`) and its data.
    #[serde(flatten)]
    pub state: HostState,
    /// `status.operationalStatus`.
    pub operational_status: OperationalStatus,
    /// `status.errorType` / `status.errorMessage`.
    pub error: Option<HostError>,
    /// `status.errorCount`: failures since the last success; drives the backoff.
    pub error_count: u32,
    /// `status.provisioningFailCount`: consecutive failed provisionings of this image.
    pub provisioning_fail_count: u32,
    /// Credentials version the conductor's node was registered with (Metal3's
    /// `goodCredentials`).
    pub registered_credentials: Option<String>,
    /// Credentials version the BMC refused: not tried again while the credentials stay
    /// the same.
    #[serde(default)]
    pub refused_credentials: Option<String>,
    /// Preparation settings version last applied.
    pub prepared: Option<String>,
    /// `status.poweredOn`, if known.
    pub powered_on: Option<bool>,
    /// The conductor no longer manages the host (detached).
    pub detached: bool,
    /// An action sent and not yet answered.
    pub pending: Option<Pending>,
    /// After a failure: no retry before this time.
    pub retry_at: Option<Time>,
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct HostStep {
    /// The host after the step.
    pub host: Host,
    /// What to do now, in order.
    pub actions: Vec<HostAction>,
    /// When to call [`Host::step`] with [`HostEvent::Reconcile`] next; `None` means only
    /// when something changes (an action's result or the spec).
    pub wake_at: Option<Time>,
    /// The table rows taken, in order (a step can pass through several states).
    pub transitions: Vec<&'static HostTransition>,
    /// The event did not apply to the host's state (a late result) and was dropped.
    pub ignored_event: bool,
}

impl Host {
    /// A new host: state `""`, no error.
    pub fn new() -> Host {
        Host {
            state: HostState::None,
            operational_status: OperationalStatus::Ok,
            error: None,
            error_count: 0,
            provisioning_fail_count: 0,
            registered_credentials: None,
            refused_credentials: None,
            prepared: None,
            powered_on: None,
            detached: false,
            pending: None,
            retry_at: None,
        }
    }

    /// Applies `event` and the current `spec` at `ctx.now`: the new status, the actions to
    /// carry out, and when to be woken.
    pub fn step(&self, spec: &HostSpec, event: &HostEvent, ctx: &StepContext) -> HostStep {
        let mut m = Machine {
            host: self.clone(),
            spec,
            ctx,
            actions: Vec::new(),
            wake: None,
            transitions: Vec::new(),
            ignored: false,
        };
        if m.host.state != HostState::Deleted {
            m.apply(event);
            if !spec.paused {
                // Each pass may move one state on; the bound only guards against a cycle.
                for _ in 0..16 {
                    let before = m.transitions.len();
                    m.reconcile();
                    if m.transitions.len() == before {
                        break;
                    }
                }
            }
        } else {
            m.ignored = *event != HostEvent::Reconcile;
        }
        HostStep {
            host: m.host,
            actions: m.actions,
            wake_at: m.wake,
            transitions: m.transitions,
            ignored_event: m.ignored,
        }
    }
}

struct Machine<'a> {
    host: Host,
    spec: &'a HostSpec,
    ctx: &'a StepContext,
    actions: Vec<HostAction>,
    wake: Option<Time>,
    transitions: Vec<&'static HostTransition>,
    ignored: bool,
}

impl Machine<'_> {
    fn kind(&self) -> HostStateKind {
        self.host.state.kind()
    }

    fn wake_in(&mut self, delay: Duration) {
        self.wake_at(self.ctx.now + delay);
    }

    fn wake_at(&mut self, at: Time) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// Takes a table row. Success rows clear the error; give-up rows keep it.
    fn go(&mut self, row: &'static HostTransition, state: HostState) {
        self.transitions.push(row);
        self.host.state = state;
        self.host.pending = None;
        if !row.id.contains("give-up") && !row.id.contains("registration") {
            self.clear_error();
        }
        self.host.operational_status = if self.host.state.kind() == K::Unmanaged {
            OperationalStatus::Discovered
        } else if self.host.error.is_some() {
            OperationalStatus::Error
        } else {
            OperationalStatus::Ok
        };
    }

    /// Takes a row into a heavy state if the capacity gate allows; otherwise waits
    /// (`delayed`) and asks to be woken after `backoff(1)`.
    fn go_heavy(&mut self, row: &'static HostTransition, state: HostState) -> bool {
        if !self.ctx.capacity_available {
            self.host.operational_status = OperationalStatus::Delayed;
            self.wake_in(backoff(1, self.ctx.jitter));
            return false;
        }
        self.go(row, state);
        true
    }

    fn clear_error(&mut self) {
        self.host.error = None;
        self.host.error_count = 0;
        self.host.retry_at = None;
    }

    fn fail(&mut self, kind: ErrorType, message: &str) {
        self.host.error = Some(HostError {
            kind,
            message: message.to_string(),
        });
        self.host.error_count = self.host.error_count.saturating_add(1);
        self.host.operational_status = OperationalStatus::Error;
        self.host.pending = None;
        let at = self.ctx.now + backoff(self.host.error_count, self.ctx.jitter);
        self.host.retry_at = Some(at);
    }

    fn emit(&mut self, pending: Pending, action: HostAction) {
        if self.host.pending != Some(pending) {
            self.host.pending = Some(pending);
            self.actions.push(action);
        }
    }

    fn answered(&mut self, pending: Pending) -> bool {
        if self.host.pending == Some(pending) {
            self.host.pending = None;
        }
        true
    }

    /// Records an action's result. Results that do not fit the state are dropped.
    fn apply(&mut self, event: &HostEvent) {
        let kind = self.kind();
        let applies = match event {
            HostEvent::Reconcile => true,
            HostEvent::Registered {
                credentials_version,
            } => {
                self.answered(Pending::Register);
                self.host.registered_credentials = Some(credentials_version.clone());
                self.host.refused_credentials = None;
                if self
                    .host
                    .error
                    .as_ref()
                    .is_some_and(|e| e.kind == ErrorType::Registration)
                {
                    self.clear_error();
                    self.host.operational_status = OperationalStatus::Ok;
                }
                true
            }
            HostEvent::RegistrationFailed(msg) => {
                self.answered(Pending::Register);
                self.fail(ErrorType::Registration, msg);
                true
            }
            HostEvent::CredentialsRefused {
                credentials_version,
                message,
            } => {
                self.answered(Pending::Register);
                self.host.refused_credentials = Some(credentials_version.clone());
                self.host.registered_credentials = None;
                self.set_error_without_backoff(ErrorType::Registration, message);
                true
            }
            HostEvent::InspectionDone if kind == K::Inspecting => {
                self.go(
                    &INSPECTING_DONE,
                    HostState::Preparing {
                        settings: self.spec.preparation.clone(),
                    },
                );
                true
            }
            HostEvent::InspectionFailed(msg) if kind == K::Inspecting => {
                self.fail(ErrorType::Inspection, msg);
                true
            }
            HostEvent::PreparationDone => match &self.host.state {
                HostState::Preparing { settings } => {
                    self.host.prepared = settings.clone();
                    self.go(&PREPARING_DONE, HostState::Available);
                    true
                }
                _ => false,
            },
            HostEvent::PreparationFailed(msg) if kind == K::Preparing => {
                self.fail(ErrorType::Preparation, msg);
                true
            }
            HostEvent::ProvisioningDone => match &self.host.state {
                HostState::Provisioning { image } => {
                    let image = image.clone();
                    self.host.provisioning_fail_count = 0;
                    self.go(&PROVISIONING_DONE, HostState::Provisioned { image });
                    true
                }
                _ => false,
            },
            HostEvent::ProvisioningFailed(msg) if kind == K::Provisioning => {
                self.fail(ErrorType::Provisioning, msg);
                true
            }
            HostEvent::DeprovisioningDone if kind == K::Deprovisioning => {
                if self.spec.deleting {
                    self.go(
                        &DEPROVISIONING_DONE_DELETING,
                        HostState::PoweringOffBeforeDelete,
                    );
                } else {
                    self.go(&DEPROVISIONING_DONE, HostState::Available);
                }
                true
            }
            HostEvent::DeprovisioningFailed(msg) if kind == K::Deprovisioning => {
                self.fail(ErrorType::Provisioning, msg);
                if self.spec.deleting && self.host.error_count > DELETE_RETRIES {
                    self.go(&DEPROVISIONING_GIVE_UP, HostState::PoweringOffBeforeDelete);
                }
                true
            }
            HostEvent::PowerChanged { on } => {
                self.answered(Pending::Power);
                self.host.powered_on = Some(*on);
                if kind == K::PoweringOffBeforeDelete && !on {
                    self.go(&POWER_OFF_DONE, HostState::Deleting);
                } else if *on == self.spec.online
                    && self
                        .host
                        .error
                        .as_ref()
                        .is_some_and(|e| e.kind == ErrorType::PowerManagement)
                {
                    self.clear_error();
                    self.host.operational_status = OperationalStatus::Ok;
                }
                true
            }
            HostEvent::PowerFailed(msg) => {
                self.answered(Pending::Power);
                self.answered(Pending::Reboot);
                self.fail(ErrorType::PowerManagement, msg);
                if kind == K::PoweringOffBeforeDelete && self.host.error_count > DELETE_RETRIES {
                    self.go(&POWER_OFF_GIVE_UP, HostState::Deleting);
                }
                true
            }
            HostEvent::RebootDone if self.host.pending == Some(Pending::Reboot) => {
                self.host.powered_on = Some(true);
                self.host.pending = Some(Pending::ClearReboot);
                self.actions.push(HostAction::ClearRebootAnnotation);
                true
            }
            HostEvent::Detached if self.host.pending == Some(Pending::Detach) => {
                self.host.pending = None;
                self.host.detached = true;
                self.host.registered_credentials = None;
                self.host.operational_status = OperationalStatus::Detached;
                true
            }
            HostEvent::DetachFailed(msg) if self.host.pending == Some(Pending::Detach) => {
                self.fail(ErrorType::Detach, msg);
                true
            }
            HostEvent::NodeDeleted if kind == K::Deleting => {
                self.host.registered_credentials = None;
                self.go(&DELETING_DONE, HostState::Deleted);
                self.actions.push(HostAction::RemoveFinalizer);
                true
            }
            _ => false,
        };
        self.ignored = !applies;
    }

    /// One pass of the reconcile pipeline: delete, detach, credentials, registration,
    /// backoff, then the state's handler.
    fn reconcile(&mut self) {
        let kind = self.kind();
        if kind == K::Deleted {
            return;
        }
        if self.spec.deleting && self.initiate_delete() {
            return;
        }
        if self.detach() {
            return;
        }
        if !matches!(
            kind,
            K::None | K::Unmanaged | K::MatchProfile | K::Deleting | K::Deleted
        ) && !self.ensure_registered()
        {
            return;
        }
        // An error's backoff spaces out retries of what failed; it does not hold back the
        // deletion of the node (a host whose registration failed is deleted at once, as
        // baremetal-operator deletes it on the delete's own watch event).
        if let Some(at) = self.host.retry_at.filter(|_| kind != K::Deleting) {
            if self.host.error.is_some() && self.ctx.now < at {
                self.wake_at(at);
                return;
            }
        }
        self.handle_state();
    }

    /// `checkInitiateDelete`. Returns true when nothing more is to be done this pass.
    fn initiate_delete(&mut self) -> bool {
        let kind = self.kind();
        if matches!(kind, K::Deleting | K::Deleted) {
            return false;
        }
        if self.host.detached || self.spec.detached.is_some() {
            let delete_now = self
                .spec
                .detached
                .is_some_and(|d| d.delete_action == DetachedDeleteAction::Delete);
            if delete_now {
                self.go(&DELETE_DETACHED, HostState::Deleting);
            }
            return false;
        }
        let registration_give_up = self
            .host
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorType::Registration)
            && self.host.error_count > DELETE_RETRIES;
        match kind {
            K::None => self.go(&DELETE_NONE, HostState::Deleting),
            K::Unmanaged => self.go(&DELETE_UNMANAGED, HostState::Deleting),
            K::Registering => self.go(&DELETE_REGISTERING, HostState::Deleting),
            K::Provisioning => {
                return !self.go_heavy(&DELETE_PROVISIONING, HostState::Deprovisioning);
            }
            K::Provisioned => {
                return !self.go_heavy(&DELETE_PROVISIONED, HostState::Deprovisioning);
            }
            K::Deprovisioning if registration_give_up => {
                self.go(&DELETE_DEPROVISIONING_REGISTRATION, HostState::Deleting);
            }
            K::PoweringOffBeforeDelete if registration_give_up => {
                self.go(&DELETE_POWER_OFF_REGISTRATION, HostState::Deleting);
            }
            K::Inspecting => self.go(&DELETE_INSPECTING, HostState::PoweringOffBeforeDelete),
            K::MatchProfile => self.go(&DELETE_MATCH_PROFILE, HostState::PoweringOffBeforeDelete),
            K::Preparing => self.go(&DELETE_PREPARING, HostState::PoweringOffBeforeDelete),
            K::Available => self.go(&DELETE_AVAILABLE, HostState::PoweringOffBeforeDelete),
            K::ExternallyProvisioned => {
                self.go(&DELETE_EXTERNAL, HostState::PoweringOffBeforeDelete);
            }
            _ => {}
        }
        false
    }

    /// The detached annotation. Returns true while the host stays detached.
    fn detach(&mut self) -> bool {
        let kind = self.kind();
        match self.spec.detached {
            Some(detach) if kind != K::Deleting => {
                let detachable = matches!(
                    kind,
                    K::Provisioned | K::ExternallyProvisioned | K::Available
                ) || detach.force;
                if self.host.detached {
                    self.wake_in(SLOW_POLL);
                    return true;
                }
                if !detachable {
                    // Wait for a stable state.
                    return false;
                }
                if let Some(at) = self.host.retry_at {
                    if self.ctx.now < at {
                        self.wake_at(at);
                        return true;
                    }
                }
                self.emit(Pending::Detach, HostAction::Detach);
                true
            }
            _ => {
                if self.host.detached {
                    // Annotation removed: manage again (re-register).
                    self.host.detached = false;
                    self.host.registered_credentials = None;
                    self.host.operational_status = OperationalStatus::Ok;
                }
                false
            }
        }
    }

    /// Credentials and registration (`ensureRegistered`). Returns true when registered.
    fn ensure_registered(&mut self) -> bool {
        let deleting = self.spec.deleting;
        let version = match &self.spec.credentials {
            CredentialsState::Present { version } => version.clone(),
            CredentialsState::Missing if deleting => return self.continue_without_credentials(),
            CredentialsState::Invalid(_) if deleting => {
                return self.continue_without_credentials();
            }
            CredentialsState::Missing => {
                self.set_error_without_backoff(
                    ErrorType::Registration,
                    "BMC CredentialsName secret doesn't exist",
                );
                self.wake_in(CREDENTIALS_RETRY);
                return false;
            }
            CredentialsState::Invalid(why) => {
                let why = why.clone();
                // No retry: a change to the secret or spec triggers the next step.
                self.set_error_without_backoff(ErrorType::Registration, &why);
                return false;
            }
        };
        if self.host.registered_credentials.as_deref() == Some(version.as_str()) {
            return true;
        }
        if self.host.refused_credentials.as_deref() == Some(version.as_str()) {
            // Tried once and refused: no retry until the credentials change, which steps
            // the host again.
            self.host.operational_status = OperationalStatus::Error;
            return false;
        }
        if let Some(at) = self.host.retry_at {
            if self.host.error.is_some() && self.ctx.now < at {
                self.wake_at(at);
                return false;
            }
        }
        self.emit(
            Pending::Register,
            HostAction::Register {
                credentials_version: version,
            },
        );
        false
    }

    /// Deleting without usable credentials: states that need the conductor give up.
    fn continue_without_credentials(&mut self) -> bool {
        if self.host.registered_credentials.is_some() {
            return true;
        }
        match self.kind() {
            K::Deprovisioning => self.go(&DEPROVISIONING_UNREGISTERED, HostState::Deleting),
            K::PoweringOffBeforeDelete => self.go(&POWER_OFF_GIVE_UP, HostState::Deleting),
            _ => {}
        }
        false
    }

    fn set_error_without_backoff(&mut self, kind: ErrorType, message: &str) {
        let same = self
            .host
            .error
            .as_ref()
            .is_some_and(|e| e.kind == kind && e.message == message);
        if !same {
            self.host.error = Some(HostError {
                kind,
                message: message.to_string(),
            });
            self.host.error_count = self.host.error_count.saturating_add(1);
        }
        self.host.operational_status = OperationalStatus::Error;
        self.host.retry_at = None;
    }

    fn handle_state(&mut self) {
        let spec = self.spec;
        match self.host.state.clone() {
            HostState::None => {
                if spec.has_bmc_details {
                    self.go(&NONE_REGISTER, HostState::Registering);
                } else {
                    self.go(&NONE_UNMANAGED, HostState::Unmanaged);
                }
            }
            HostState::Unmanaged => {
                if spec.has_bmc_details {
                    self.go(&UNMANAGED_REGISTER, HostState::Registering);
                } else {
                    self.wake_in(SLOW_POLL);
                }
            }
            HostState::Registering => {
                if spec.externally_provisioned {
                    self.go(&REGISTERING_EXTERNAL, HostState::ExternallyProvisioned);
                } else if spec.inspection == InspectionMode::Disabled {
                    self.go(
                        &REGISTERING_PREPARE,
                        HostState::Preparing {
                            settings: spec.preparation.clone(),
                        },
                    );
                } else {
                    self.go_heavy(
                        &REGISTERING_INSPECT,
                        HostState::Inspecting {
                            mode: spec.inspection,
                        },
                    );
                }
            }
            HostState::MatchProfile => self.go(
                &MATCH_PROFILE_PREPARE,
                HostState::Preparing {
                    settings: spec.preparation.clone(),
                },
            ),
            HostState::Inspecting { mode } => {
                self.emit(Pending::Inspect, HostAction::Inspect { mode });
            }
            HostState::Preparing { settings } => {
                if settings.is_none() || settings == self.host.prepared {
                    self.host.prepared = settings;
                    self.go(&PREPARING_DONE, HostState::Available);
                } else {
                    self.emit(Pending::Prepare, HostAction::Prepare { settings });
                }
            }
            HostState::Available => self.handle_available(),
            HostState::Provisioning { image } => {
                let failed = self
                    .host
                    .error
                    .as_ref()
                    .is_some_and(|e| e.kind == ErrorType::Provisioning);
                if spec.image.as_ref() != Some(&image) {
                    if self.go_heavy(&PROVISIONING_CANCELLED, HostState::Deprovisioning) {
                        self.host.provisioning_fail_count = 0;
                    }
                } else if failed {
                    let count = self.host.provisioning_fail_count.saturating_add(1);
                    if self.go_heavy(&PROVISIONING_FAILED, HostState::Deprovisioning) {
                        self.host.provisioning_fail_count = count;
                    }
                } else {
                    self.emit(Pending::Provision, HostAction::Provision { image });
                }
            }
            HostState::Provisioned { image } => {
                if spec.image.as_ref() != Some(&image) {
                    if self.go_heavy(&PROVISIONED_CANCELLED, HostState::Deprovisioning) {
                        self.host.provisioning_fail_count = 0;
                    }
                } else {
                    self.manage_power();
                }
            }
            HostState::ExternallyProvisioned => {
                if spec.externally_provisioned {
                    self.manage_power();
                } else if let Some(image) = spec.image.clone() {
                    self.go(&EXTERNAL_PROVISIONED, HostState::Provisioned { image });
                } else {
                    self.go_heavy(&EXTERNAL_DEPROVISION, HostState::Deprovisioning);
                }
            }
            HostState::Deprovisioning => {
                self.emit(Pending::Deprovision, HostAction::Deprovision);
            }
            HostState::PoweringOffBeforeDelete => {
                if spec.disable_power_off || self.host.powered_on == Some(false) {
                    self.go(&POWER_OFF_DONE, HostState::Deleting);
                } else {
                    self.emit(Pending::Power, HostAction::PowerOff);
                }
            }
            HostState::Deleting => self.emit(Pending::DeleteNode, HostAction::DeleteNode),
            HostState::Deleted => {}
        }
    }

    fn handle_available(&mut self) {
        let spec = self.spec;
        if spec.externally_provisioned {
            self.go(&AVAILABLE_EXTERNAL, HostState::ExternallyProvisioned);
        } else if spec.inspect_requested && spec.inspection != InspectionMode::Disabled {
            if self.go_heavy(
                &AVAILABLE_INSPECT,
                HostState::Inspecting {
                    mode: spec.inspection,
                },
            ) {
                self.actions.push(HostAction::ClearInspectAnnotation);
            }
        } else if spec.preparation.is_some() && spec.preparation != self.host.prepared {
            self.go(
                &AVAILABLE_PREPARE,
                HostState::Preparing {
                    settings: spec.preparation.clone(),
                },
            );
        } else if let (true, Some(image)) = (spec.online, spec.image.clone()) {
            let limit = self.ctx.max_provisioning_retries;
            if limit > 0 && self.host.provisioning_fail_count >= limit {
                let message = format!(
                    "provisioning failed {} times, retry limit ({limit}) reached; \
                     change or remove the image to try again",
                    self.host.provisioning_fail_count
                );
                self.set_error_without_backoff(ErrorType::Provisioning, &message);
            } else {
                self.go_heavy(&AVAILABLE_PROVISION, HostState::Provisioning { image });
            }
        } else {
            self.manage_power();
        }
    }

    /// Power in stable states: reboot requests, then `online`.
    fn manage_power(&mut self) {
        let spec = self.spec;
        if self.host.pending == Some(Pending::ClearReboot) {
            if spec.reboot.is_some() {
                return;
            }
            self.host.pending = None;
        }
        if let Some(mode) = spec.reboot {
            self.emit(Pending::Reboot, HostAction::Reboot { mode });
            return;
        }
        if self.host.pending.is_none() && self.host.powered_on != Some(spec.online) {
            if spec.online {
                self.emit(Pending::Power, HostAction::PowerOn);
            } else if !spec.disable_power_off {
                self.emit(Pending::Power, HostAction::PowerOff);
            }
        }
        self.wake_in(POWER_POLL);
    }
}
