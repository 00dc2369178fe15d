//! Property tests: random spec changes, action results (good, failed, late) and time on
//! the host machine, with a simulated operator and conductor.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use provision_fsm::*;

fn image(n: u8) -> Image {
    Image {
        url: format!("http://img/{n}.qcow2"),
        checksum: Some("c".into()),
        checksum_type: None,
        format: None,
    }
}

#[derive(Debug, Clone)]
enum Move {
    Spec(u8),
    Respond(bool),
    Tick(u16),
    Capacity(bool),
    Stray(u8),
}

fn moves(max: usize) -> impl Strategy<Value = Vec<Move>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u8..20).prop_map(Move::Spec),
            5 => any::<bool>().prop_map(Move::Respond),
            3 => (0u16..600).prop_map(Move::Tick),
            1 => any::<bool>().prop_map(Move::Capacity),
            1 => (0u8..16).prop_map(Move::Stray),
        ],
        0..max,
    )
}

struct Sim {
    host: Host,
    spec: HostSpec,
    now: Time,
    capacity: bool,
    jitter: f64,
    outstanding: VecDeque<HostAction>,
    /// Set on entering provisioned, cleared on entering deprovisioning.
    provisioned_since_deprovision: bool,
    steps: u32,
}

fn result_for(action: &HostAction, ok: bool) -> Option<HostEvent> {
    let f = |s: &str| s.to_string();
    Some(match (action, ok) {
        (
            HostAction::Register {
                credentials_version,
            },
            true,
        ) => HostEvent::Registered {
            credentials_version: credentials_version.clone(),
        },
        (HostAction::Register { .. }, false) => HostEvent::RegistrationFailed(f("BMC unreachable")),
        (HostAction::Inspect { .. }, true) => HostEvent::InspectionDone,
        (HostAction::Inspect { .. }, false) => HostEvent::InspectionFailed(f("agent timeout")),
        (HostAction::Prepare { .. }, true) => HostEvent::PreparationDone,
        (HostAction::Prepare { .. }, false) => HostEvent::PreparationFailed(f("RAID")),
        (HostAction::Provision { .. }, true) => HostEvent::ProvisioningDone,
        (HostAction::Provision { .. }, false) => HostEvent::ProvisioningFailed(f("checksum")),
        (HostAction::Deprovision, true) => HostEvent::DeprovisioningDone,
        (HostAction::Deprovision, false) => HostEvent::DeprovisioningFailed(f("clean")),
        (HostAction::PowerOn | HostAction::Reboot { .. }, false)
        | (HostAction::PowerOff, false) => HostEvent::PowerFailed(f("BMC busy")),
        (HostAction::PowerOn, true) => HostEvent::PowerChanged { on: true },
        (HostAction::PowerOff, true) => HostEvent::PowerChanged { on: false },
        (HostAction::Reboot { .. }, true) => HostEvent::RebootDone,
        (HostAction::Detach, true) => HostEvent::Detached,
        (HostAction::Detach, false) => HostEvent::DetachFailed(f("conductor down")),
        (HostAction::DeleteNode, _) => HostEvent::NodeDeleted,
        _ => return None,
    })
}

fn stray(n: u8) -> HostEvent {
    let all = [
        HostEvent::Registered {
            credentials_version: "1".into(),
        },
        HostEvent::RegistrationFailed("x".into()),
        HostEvent::InspectionDone,
        HostEvent::InspectionFailed("x".into()),
        HostEvent::PreparationDone,
        HostEvent::PreparationFailed("x".into()),
        HostEvent::ProvisioningDone,
        HostEvent::ProvisioningFailed("x".into()),
        HostEvent::DeprovisioningDone,
        HostEvent::DeprovisioningFailed("x".into()),
        HostEvent::PowerChanged { on: true },
        HostEvent::PowerChanged { on: false },
        HostEvent::PowerFailed("x".into()),
        HostEvent::RebootDone,
        HostEvent::Detached,
        HostEvent::NodeDeleted,
    ];
    all[usize::from(n) % all.len()].clone()
}

impl Sim {
    fn new(jitter: f64) -> Sim {
        Sim {
            host: Host::new(),
            spec: HostSpec::default(),
            now: Duration::from_secs(1_000_000),
            capacity: true,
            jitter,
            outstanding: VecDeque::new(),
            provisioned_since_deprovision: false,
            steps: 0,
        }
    }

    fn change_spec(&mut self, n: u8) {
        let s = &mut self.spec;
        match n {
            0 => s.online = !s.online,
            1 => s.image = Some(image(1)),
            2 => s.image = Some(image(2)),
            3 => s.image = None,
            4 => s.externally_provisioned = !s.externally_provisioned,
            5 => s.inspection = InspectionMode::Disabled,
            6 => s.inspection = InspectionMode::Fast,
            7 => s.inspect_requested = true,
            8 => s.preparation = Some(format!("v{}", self.steps)),
            9 => s.preparation = None,
            10 => s.detached = Some(Detach::default()),
            11 => {
                s.detached = Some(Detach {
                    delete_action: DetachedDeleteAction::Delete,
                    force: true,
                })
            }
            12 => s.detached = None,
            13 => s.reboot = Some(RebootMode::Soft),
            14 => {
                s.credentials = CredentialsState::Present {
                    version: format!("{}", self.steps),
                }
            }
            15 => s.credentials = CredentialsState::Missing,
            16 => s.credentials = CredentialsState::Invalid("empty password".into()),
            17 => s.paused = !s.paused,
            18 => s.has_bmc_details = !s.has_bmc_details,
            _ => s.disable_power_off = !s.disable_power_off,
        }
    }

    fn step(&mut self, event: HostEvent) -> Result<(), TestCaseError> {
        let ctx = StepContext {
            now: self.now,
            capacity_available: self.capacity,
            jitter: self.jitter,
            max_provisioning_retries: 3,
        };
        let before = self.host.clone();
        let step = self.host.step(&self.spec, &event, &ctx);
        self.steps += 1;

        // Rows come from the table and chain from the old state to the new one.
        let mut at = before.state.kind();
        for t in &step.transitions {
            prop_assert!(HOST_TRANSITIONS.contains(t));
            prop_assert!(
                t.from.is_none_or(|f| f == at),
                "row {} taken from {}",
                t.id,
                at
            );
            at = t.to;
            match t.to {
                HostStateKind::Provisioned => self.provisioned_since_deprovision = true,
                HostStateKind::Deprovisioning => self.provisioned_since_deprovision = false,
                HostStateKind::Available => prop_assert!(
                    !self.provisioned_since_deprovision,
                    "provisioned host became available without deprovisioning"
                ),
                _ => {}
            }
        }
        prop_assert_eq!(at, step.host.state.kind());

        // No error means no error count; the status always serializes and reads back.
        if step.host.error.is_none() {
            prop_assert_eq!(step.host.error_count, 0);
        }
        let json = serde_json::to_string(&step.host).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Host>(&json).unwrap(), &step.host);

        // A failure result: the retry waits the backoff for the new count.
        let failure = matches!(
            event,
            HostEvent::RegistrationFailed(_)
                | HostEvent::InspectionFailed(_)
                | HostEvent::PreparationFailed(_)
                | HostEvent::ProvisioningFailed(_)
                | HostEvent::DeprovisioningFailed(_)
                | HostEvent::PowerFailed(_)
        );
        let retry_at = step
            .host
            .retry_at
            .filter(|_| failure && !step.ignored_event && step.transitions.is_empty());
        if let Some(retry_at) = retry_at {
            let n = step.host.error_count.min(MAX_BACKOFF_COUNT);
            let wait = retry_at - self.now;
            let hi = Duration::from_secs(60 << n);
            prop_assert!(
                wait <= hi && wait >= hi / 2,
                "backoff {:?} for count {}",
                wait,
                n
            );
        }

        // A success result resets the error count, unless a later check in the same step
        // found a new problem (credentials, retry limit).
        let success = matches!(
            event,
            HostEvent::InspectionDone
                | HostEvent::PreparationDone
                | HostEvent::ProvisioningDone
                | HostEvent::DeprovisioningDone
        );
        if success && !step.ignored_event {
            if let Some(e) = &step.host.error {
                prop_assert!(
                    e.kind == ErrorType::Registration || e.message.contains("retry limit"),
                    "error kept after success: {:?}",
                    e
                );
            }
        }
        if let Some(w) = step.wake_at {
            prop_assert!(w >= self.now, "wake in the past");
        }
        self.outstanding.extend(step.actions.iter().cloned());
        self.host = step.host;
        Ok(())
    }

    fn respond(&mut self, ok: bool) -> Result<(), TestCaseError> {
        let Some(action) = self.outstanding.pop_front() else {
            return self.step(HostEvent::Reconcile);
        };
        match action {
            HostAction::ClearRebootAnnotation => {
                self.spec.reboot = None;
                self.step(HostEvent::Reconcile)
            }
            HostAction::ClearInspectAnnotation => {
                self.spec.inspect_requested = false;
                self.step(HostEvent::Reconcile)
            }
            other => match result_for(&other, ok) {
                Some(e) => self.step(e),
                None => Ok(()),
            },
        }
    }

    fn play(&mut self, m: &Move) -> Result<(), TestCaseError> {
        match m {
            Move::Spec(n) => {
                self.change_spec(*n);
                self.step(HostEvent::Reconcile)
            }
            Move::Respond(ok) => self.respond(*ok),
            Move::Tick(s) => {
                self.now += Duration::from_secs(u64::from(*s) * 30);
                self.step(HostEvent::Reconcile)
            }
            Move::Capacity(c) => {
                self.capacity = *c;
                self.step(HostEvent::Reconcile)
            }
            Move::Stray(n) => self.step(stray(*n)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_histories_keep_the_invariants(jitter in 0.0f64..1.0, history in moves(150)) {
        let mut sim = Sim::new(jitter);
        for m in &history {
            sim.play(m)?;
        }
    }

    #[test]
    fn a_deleted_host_always_ends_deleted(
        jitter in 0.0f64..1.0,
        history in moves(80),
        delete_detached in any::<bool>(),
        failures in 0u32..6,
    ) {
        let mut sim = Sim::new(jitter);
        for m in &history {
            sim.play(m)?;
        }
        sim.spec.deleting = true;
        sim.spec.paused = false;
        sim.spec.detached = delete_detached.then_some(Detach { delete_action: DetachedDeleteAction::Delete, force: false });
        sim.capacity = true;
        let mut failed = 0;
        sim.step(HostEvent::Reconcile)?;
        for _ in 0..600 {
            if sim.host.state == HostState::Deleted {
                break;
            }
            if sim.outstanding.is_empty() {
                // Nothing asked: let time pass to the next wake-up (or a minute).
                let step_ctx_wake = sim.host.retry_at.unwrap_or(sim.now).max(sim.now + Duration::from_secs(60));
                sim.now = step_ctx_wake;
                sim.step(HostEvent::Reconcile)?;
            } else {
                // A conductor that fails a few times, then cooperates.
                let ok = failed >= failures;
                failed += 1;
                sim.respond(ok)?;
            }
        }
        prop_assert_eq!(sim.host.state.kind(), HostStateKind::Deleted, "stuck: {:?}", sim.host);
    }
}
