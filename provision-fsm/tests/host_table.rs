//! Every row of the host transition table, driven from a host in the row's `from` state.
//! Each case is named by its row id (`reference/metal3.md` §3.2 handler table and §3.3
//! delete table); the last check proves every row is covered.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use provision_fsm::rows::*;
use provision_fsm::*;

fn image(url: &str) -> Image {
    Image {
        url: url.into(),
        checksum: Some("0123abcd".into()),
        checksum_type: Some(provision_fsm::ChecksumType::Sha256),
        format: Some(provision_fsm::ImageFormat::Qcow2),
    }
}

/// A registered host in `state`.
fn host_in(state: HostState) -> Host {
    Host {
        state,
        registered_credentials: Some("1".into()),
        powered_on: Some(true),
        ..Host::new()
    }
}

struct Case {
    row: HostTransition,
    host: Host,
    spec: HostSpec,
    event: HostEvent,
}

fn case(row: HostTransition, host: Host, spec: HostSpec, event: HostEvent) -> Case {
    Case {
        row,
        host,
        spec,
        event,
    }
}

fn spec() -> HostSpec {
    HostSpec::default()
}

fn deleting() -> HostSpec {
    HostSpec {
        deleting: true,
        ..HostSpec::default()
    }
}

fn with_error(mut host: Host, kind: ErrorType, count: u32) -> Host {
    host.error = Some(HostError {
        kind,
        message: "boom".into(),
    });
    host.error_count = count;
    host.operational_status = OperationalStatus::Error;
    host.retry_at = Some(Duration::ZERO);
    host
}

fn cases() -> Vec<Case> {
    let img = image("http://img/a.qcow2");
    let provisioning = HostState::Provisioning { image: img.clone() };
    let provisioned = HostState::Provisioned { image: img.clone() };
    let with_image = HostSpec {
        image: Some(img.clone()),
        ..spec()
    };
    let pending = |mut h: Host, p: Pending| {
        h.pending = Some(p);
        h
    };
    use HostEvent as E;
    vec![
        case(NONE_REGISTER, Host::new(), spec(), E::Reconcile),
        case(
            NONE_UNMANAGED,
            Host::new(),
            HostSpec {
                has_bmc_details: false,
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            UNMANAGED_REGISTER,
            Host {
                state: HostState::Unmanaged,
                ..Host::new()
            },
            spec(),
            E::Reconcile,
        ),
        case(
            REGISTERING_EXTERNAL,
            host_in(HostState::Registering),
            HostSpec {
                externally_provisioned: true,
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            REGISTERING_PREPARE,
            host_in(HostState::Registering),
            HostSpec {
                inspection: InspectionMode::Disabled,
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            REGISTERING_INSPECT,
            host_in(HostState::Registering),
            spec(),
            E::Reconcile,
        ),
        case(
            INSPECTING_DONE,
            pending(
                host_in(HostState::Inspecting {
                    mode: InspectionMode::Agent,
                }),
                Pending::Inspect,
            ),
            spec(),
            E::InspectionDone,
        ),
        case(
            MATCH_PROFILE_PREPARE,
            host_in(HostState::MatchProfile),
            spec(),
            E::Reconcile,
        ),
        case(
            PREPARING_DONE,
            pending(
                host_in(HostState::Preparing {
                    settings: Some("raid-v1".into()),
                }),
                Pending::Prepare,
            ),
            HostSpec {
                preparation: Some("raid-v1".into()),
                ..spec()
            },
            E::PreparationDone,
        ),
        case(
            AVAILABLE_EXTERNAL,
            host_in(HostState::Available),
            HostSpec {
                externally_provisioned: true,
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            AVAILABLE_INSPECT,
            host_in(HostState::Available),
            HostSpec {
                inspect_requested: true,
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            AVAILABLE_PREPARE,
            Host {
                prepared: Some("v1".into()),
                ..host_in(HostState::Available)
            },
            HostSpec {
                preparation: Some("v2".into()),
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            AVAILABLE_PROVISION,
            host_in(HostState::Available),
            with_image.clone(),
            E::Reconcile,
        ),
        case(
            PROVISIONING_FAILED,
            with_error(host_in(provisioning.clone()), ErrorType::Provisioning, 1),
            with_image.clone(),
            E::Reconcile,
        ),
        case(
            PROVISIONING_CANCELLED,
            host_in(provisioning.clone()),
            spec(),
            E::Reconcile,
        ),
        case(
            PROVISIONING_DONE,
            pending(host_in(provisioning.clone()), Pending::Provision),
            with_image.clone(),
            E::ProvisioningDone,
        ),
        case(
            PROVISIONED_CANCELLED,
            host_in(provisioned.clone()),
            HostSpec {
                image: Some(image("http://img/b.qcow2")),
                ..spec()
            },
            E::Reconcile,
        ),
        case(
            EXTERNAL_PROVISIONED,
            host_in(HostState::ExternallyProvisioned),
            with_image.clone(),
            E::Reconcile,
        ),
        case(
            EXTERNAL_DEPROVISION,
            host_in(HostState::ExternallyProvisioned),
            spec(),
            E::Reconcile,
        ),
        case(
            DEPROVISIONING_DONE,
            pending(host_in(HostState::Deprovisioning), Pending::Deprovision),
            spec(),
            E::DeprovisioningDone,
        ),
        case(
            DEPROVISIONING_DONE_DELETING,
            pending(host_in(HostState::Deprovisioning), Pending::Deprovision),
            deleting(),
            E::DeprovisioningDone,
        ),
        case(
            DEPROVISIONING_GIVE_UP,
            with_error(
                host_in(HostState::Deprovisioning),
                ErrorType::Provisioning,
                3,
            ),
            deleting(),
            E::DeprovisioningFailed("clean failed".into()),
        ),
        case(
            DEPROVISIONING_UNREGISTERED,
            Host {
                registered_credentials: None,
                ..host_in(HostState::Deprovisioning)
            },
            HostSpec {
                credentials: CredentialsState::Missing,
                ..deleting()
            },
            E::Reconcile,
        ),
        case(
            POWER_OFF_DONE,
            pending(host_in(HostState::PoweringOffBeforeDelete), Pending::Power),
            deleting(),
            E::PowerChanged { on: false },
        ),
        case(
            POWER_OFF_GIVE_UP,
            with_error(
                host_in(HostState::PoweringOffBeforeDelete),
                ErrorType::PowerManagement,
                3,
            ),
            deleting(),
            E::PowerFailed("BMC unreachable".into()),
        ),
        case(
            DELETING_DONE,
            pending(host_in(HostState::Deleting), Pending::DeleteNode),
            deleting(),
            E::NodeDeleted,
        ),
        case(
            DELETE_DETACHED,
            Host {
                detached: true,
                ..host_in(provisioned.clone())
            },
            HostSpec {
                detached: Some(Detach {
                    delete_action: DetachedDeleteAction::Delete,
                    force: false,
                }),
                ..deleting()
            },
            E::Reconcile,
        ),
        case(DELETE_NONE, Host::new(), deleting(), E::Reconcile),
        case(
            DELETE_UNMANAGED,
            Host {
                state: HostState::Unmanaged,
                ..Host::new()
            },
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_REGISTERING,
            host_in(HostState::Registering),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_PROVISIONING,
            host_in(provisioning.clone()),
            HostSpec {
                image: Some(img.clone()),
                ..deleting()
            },
            E::Reconcile,
        ),
        case(
            DELETE_PROVISIONED,
            host_in(provisioned.clone()),
            HostSpec {
                image: Some(img.clone()),
                ..deleting()
            },
            E::Reconcile,
        ),
        case(
            DELETE_DEPROVISIONING_REGISTRATION,
            with_error(
                host_in(HostState::Deprovisioning),
                ErrorType::Registration,
                4,
            ),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_POWER_OFF_REGISTRATION,
            with_error(
                host_in(HostState::PoweringOffBeforeDelete),
                ErrorType::Registration,
                4,
            ),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_INSPECTING,
            host_in(HostState::Inspecting {
                mode: InspectionMode::Fast,
            }),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_MATCH_PROFILE,
            host_in(HostState::MatchProfile),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_PREPARING,
            host_in(HostState::Preparing { settings: None }),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_AVAILABLE,
            host_in(HostState::Available),
            deleting(),
            E::Reconcile,
        ),
        case(
            DELETE_EXTERNAL,
            host_in(HostState::ExternallyProvisioned),
            deleting(),
            E::Reconcile,
        ),
    ]
}

#[test]
fn every_host_row_is_taken_from_its_state() {
    let ctx = StepContext::at(Duration::from_secs(3600));
    for c in cases() {
        let id = c.row.id;
        if let Some(from) = c.row.from {
            assert_eq!(
                c.host.state.kind(),
                from,
                "{id}: case starts in the wrong state"
            );
        }
        let step = c.host.step(&c.spec, &c.event, &ctx);
        assert!(!step.ignored_event, "{id}: event ignored");
        let first = step
            .transitions
            .first()
            .unwrap_or_else(|| panic!("{id}: no transition"));
        assert_eq!(
            first.id,
            id,
            "{id}: took {:?}",
            step.transitions.iter().map(|t| t.id).collect::<Vec<_>>()
        );
        // The chain of rows taken matches the states passed through.
        let mut at = c.host.state.kind();
        for t in &step.transitions {
            assert!(
                t.from.is_none_or(|f| f == at),
                "{id}: row {} from {at}",
                t.id
            );
            at = t.to;
        }
        assert_eq!(at, step.host.state.kind(), "{id}");
    }
}

#[test]
fn every_row_has_a_case() {
    let covered: BTreeSet<&str> = cases().iter().map(|c| c.row.id).collect();
    let all: BTreeSet<&str> = HOST_TRANSITIONS.iter().map(|t| t.id).collect();
    assert_eq!(all.len(), HOST_TRANSITIONS.len(), "row ids must be unique");
    assert_eq!(covered, all);
}

#[test]
fn heavy_states_wait_for_capacity_as_delayed() {
    let ctx = StepContext {
        capacity_available: false,
        jitter: 0.5,
        ..StepContext::at(Duration::ZERO)
    };
    let host = host_in(HostState::Registering);
    let step = host.step(&spec(), &HostEvent::Reconcile, &ctx);
    assert_eq!(step.host.state.kind(), HostStateKind::Registering);
    assert_eq!(step.host.operational_status, OperationalStatus::Delayed);
    assert_eq!(
        step.wake_at,
        Some(Duration::from_secs(90)),
        "backoff(1) with jitter 0.5"
    );
    assert!(step.actions.is_empty());
    let step = step.host.step(
        &spec(),
        &HostEvent::Reconcile,
        &StepContext::at(Duration::from_secs(90)),
    );
    assert_eq!(step.host.state.kind(), HostStateKind::Inspecting);
    assert_eq!(step.host.operational_status, OperationalStatus::Ok);
    assert_eq!(
        step.actions,
        [HostAction::Inspect {
            mode: InspectionMode::Agent
        }]
    );
}

#[test]
fn failures_back_off_exponentially_and_success_resets_the_count() {
    let spec = spec();
    let mut host = host_in(HostState::Inspecting {
        mode: InspectionMode::Agent,
    });
    host.pending = Some(Pending::Inspect);
    let mut now = Duration::ZERO;
    for n in 1..=11u32 {
        let step = host.step(
            &spec,
            &HostEvent::InspectionFailed("no agent".into()),
            &StepContext::at(now),
        );
        assert_eq!(step.host.error_count, n);
        assert_eq!(
            step.host.error.as_ref().unwrap().kind,
            ErrorType::Inspection
        );
        let wait = step.wake_at.unwrap() - now;
        let hi = Duration::from_secs(60 << n.min(9));
        assert_eq!(wait, hi, "jitter 0: the full 2^n minutes");
        assert!(step.actions.is_empty(), "no retry before the backoff");
        // At the wake time the inspection is retried.
        now += wait;
        let retry = step
            .host
            .step(&spec, &HostEvent::Reconcile, &StepContext::at(now));
        assert_eq!(
            retry.actions,
            [HostAction::Inspect {
                mode: InspectionMode::Agent
            }]
        );
        host = retry.host;
    }
    let done = host.step(&spec, &HostEvent::InspectionDone, &StepContext::at(now));
    assert_eq!(done.host.error_count, 0);
    assert_eq!(done.host.error, None);
    assert_eq!(done.host.operational_status, OperationalStatus::Ok);
}

#[test]
fn provisioning_gives_up_after_the_retry_limit() {
    let img = image("http://img/bad.qcow2");
    let spec = HostSpec {
        image: Some(img.clone()),
        ..spec()
    };
    let ctx = |t: u64| StepContext {
        max_provisioning_retries: 2,
        ..StepContext::at(Duration::from_secs(t))
    };
    let mut host = host_in(HostState::Available);
    let mut t = 0;
    let mut deprovisions = 0;
    let mut event = HostEvent::Reconcile;
    for _ in 0..40 {
        let step = host.step(&spec, &event, &ctx(t));
        host = step.host;
        event = match step.actions.first() {
            Some(HostAction::Provision { .. }) => {
                HostEvent::ProvisioningFailed("bad checksum".into())
            }
            Some(HostAction::Deprovision) => {
                deprovisions += 1;
                HostEvent::DeprovisioningDone
            }
            _ => HostEvent::Reconcile,
        };
        t += 3600;
    }
    assert_eq!(deprovisions, 2);
    assert_eq!(host.provisioning_fail_count, 2);
    assert_eq!(host.state.kind(), HostStateKind::Available);
    let err = host.error.unwrap();
    assert_eq!(err.kind, ErrorType::Provisioning);
    assert!(
        err.message
            .starts_with("provisioning failed 2 times, retry limit (2) reached"),
        "{}",
        err.message
    );
}

#[test]
fn credentials_missing_invalid_and_changed() {
    let host = host_in(HostState::Available);
    let ctx = StepContext::at(Duration::ZERO);
    let missing = HostSpec {
        credentials: CredentialsState::Missing,
        ..spec()
    };
    let step = host.step(&missing, &HostEvent::Reconcile, &ctx);
    assert_eq!(
        step.host.error.as_ref().unwrap().kind,
        ErrorType::Registration
    );
    assert_eq!(step.wake_at, Some(CREDENTIALS_RETRY));
    let invalid = HostSpec {
        credentials: CredentialsState::Invalid(
            "Missing BMC connection detail 'username' in credentials".into(),
        ),
        ..spec()
    };
    let step = host.step(&invalid, &HostEvent::Reconcile, &ctx);
    assert_eq!(
        step.wake_at, None,
        "no requeue: a change to the secret retriggers"
    );
    assert_eq!(step.host.operational_status, OperationalStatus::Error);
    // New credentials version: register again, once.
    let changed = HostSpec {
        credentials: CredentialsState::Present {
            version: "2".into(),
        },
        ..spec()
    };
    let step = host.step(&changed, &HostEvent::Reconcile, &ctx);
    assert_eq!(
        step.actions,
        [HostAction::Register {
            credentials_version: "2".into()
        }]
    );
    let again = step.host.step(&changed, &HostEvent::Reconcile, &ctx);
    assert!(again.actions.is_empty(), "not sent twice while pending");
    let done = again.host.step(
        &changed,
        &HostEvent::Registered {
            credentials_version: "2".into(),
        },
        &ctx,
    );
    assert_eq!(done.host.registered_credentials.as_deref(), Some("2"));
    assert_eq!(done.host.error, None);
}

#[test]
fn online_toggles_power_in_stable_states() {
    let ctx = StepContext::at(Duration::ZERO);
    let host = host_in(HostState::Available);
    let off = HostSpec {
        online: false,
        ..spec()
    };
    let step = host.step(&off, &HostEvent::Reconcile, &ctx);
    assert_eq!(step.actions, [HostAction::PowerOff]);
    assert_eq!(step.wake_at, Some(POWER_POLL));
    let step = step
        .host
        .step(&off, &HostEvent::PowerChanged { on: false }, &ctx);
    assert!(step.actions.is_empty());
    assert_eq!(step.host.powered_on, Some(false));
    let step = step.host.step(&spec(), &HostEvent::Reconcile, &ctx);
    assert_eq!(step.actions, [HostAction::PowerOn]);
    // disablePowerOff: never powered off.
    let no_off = HostSpec {
        online: false,
        disable_power_off: true,
        ..spec()
    };
    assert!(
        host.step(&no_off, &HostEvent::Reconcile, &ctx)
            .actions
            .is_empty()
    );
}

#[test]
fn reboot_annotation_reboots_once_then_clears() {
    let ctx = StepContext::at(Duration::ZERO);
    let img = image("http://img/a.qcow2");
    let host = host_in(HostState::Provisioned { image: img.clone() });
    let spec = HostSpec {
        image: Some(img),
        reboot: Some(RebootMode::Hard),
        ..spec()
    };
    let step = host.step(&spec, &HostEvent::Reconcile, &ctx);
    assert_eq!(
        step.actions,
        [HostAction::Reboot {
            mode: RebootMode::Hard
        }]
    );
    let step = step.host.step(&spec, &HostEvent::RebootDone, &ctx);
    assert_eq!(step.actions, [HostAction::ClearRebootAnnotation]);
    let step = step.host.step(&spec, &HostEvent::Reconcile, &ctx);
    assert!(
        step.actions.is_empty(),
        "annotation not yet gone: no second reboot"
    );
    let cleared = HostSpec {
        reboot: None,
        ..spec
    };
    let step = step.host.step(&cleared, &HostEvent::Reconcile, &ctx);
    assert!(step.actions.is_empty());
    assert_eq!(step.host.pending, None);
}

#[test]
fn detach_and_reattach() {
    let ctx = StepContext::at(Duration::ZERO);
    let host = host_in(HostState::Available);
    let detached = HostSpec {
        detached: Some(Detach::default()),
        ..spec()
    };
    let step = host.step(&detached, &HostEvent::Reconcile, &ctx);
    assert_eq!(step.actions, [HostAction::Detach]);
    let step = step.host.step(&detached, &HostEvent::Detached, &ctx);
    assert_eq!(step.host.operational_status, OperationalStatus::Detached);
    assert_eq!(step.wake_at, Some(SLOW_POLL));
    // Delete with deleteAction delay waits while detached.
    let delay = HostSpec {
        deleting: true,
        ..detached.clone()
    };
    let waiting = step.host.step(&delay, &HostEvent::Reconcile, &ctx);
    assert_eq!(waiting.host.state.kind(), HostStateKind::Available);
    assert!(waiting.actions.is_empty());
    // Annotation removed: register again and carry on.
    let step = step.host.step(&spec(), &HostEvent::Reconcile, &ctx);
    assert_eq!(step.host.operational_status, OperationalStatus::Ok);
    assert_eq!(
        step.actions,
        [HostAction::Register {
            credentials_version: "1".into()
        }]
    );
    // A busy host waits for a stable state unless forced.
    let inspecting = host_in(HostState::Inspecting {
        mode: InspectionMode::Agent,
    });
    let step = inspecting.step(&detached, &HostEvent::Reconcile, &ctx);
    assert_eq!(
        step.actions,
        [HostAction::Inspect {
            mode: InspectionMode::Agent
        }]
    );
    let forced = HostSpec {
        detached: Some(Detach {
            force: true,
            ..Detach::default()
        }),
        ..spec()
    };
    assert_eq!(
        inspecting
            .step(&forced, &HostEvent::Reconcile, &ctx)
            .actions,
        [HostAction::Detach]
    );
}

#[test]
fn paused_hosts_do_nothing() {
    let ctx = StepContext::at(Duration::ZERO);
    let paused = HostSpec {
        paused: true,
        ..spec()
    };
    let step = Host::new().step(&paused, &HostEvent::Reconcile, &ctx);
    assert_eq!(step.host, Host::new());
    assert!(step.actions.is_empty() && step.wake_at.is_none());
}

#[test]
fn late_results_are_ignored() {
    let ctx = StepContext::at(Duration::ZERO);
    let host = host_in(HostState::Available);
    let step = host.step(&spec(), &HostEvent::InspectionDone, &ctx);
    assert!(step.ignored_event);
    assert_eq!(step.host.state.kind(), HostStateKind::Available);
    let gone = Host {
        state: HostState::Deleted,
        ..Host::new()
    };
    assert!(
        gone.step(&spec(), &HostEvent::NodeDeleted, &ctx)
            .ignored_event
    );
}

#[test]
fn status_serializes_with_metal3_strings() {
    let mut host = host_in(HostState::PoweringOffBeforeDelete);
    host.error = Some(HostError {
        kind: ErrorType::PowerManagement,
        message: "x".into(),
    });
    host.operational_status = OperationalStatus::Error;
    let v = serde_json::to_value(&host).unwrap();
    assert_eq!(v["state"], "powering off before delete");
    assert_eq!(v["operational_status"], "error");
    assert_eq!(v["error"]["kind"], "power management error");
    let back: Host = serde_json::from_value(v).unwrap();
    assert_eq!(back, host);
    assert_eq!(
        HostStateKind::from_name("ready"),
        Some(HostStateKind::Available)
    );
    assert_eq!(
        HostStateKind::from_name("externally provisioned"),
        Some(HostStateKind::ExternallyProvisioned)
    );
    for k in HostStateKind::ALL {
        assert_eq!(HostStateKind::from_name(k.name()), Some(k));
    }
}

/// A host whose registration keeps failing, deleted while it backs off: it is gone at
/// once, not after the backoff (baremetal-operator handles the delete on its own watch
/// event), while without the delete it keeps waiting.
#[test]
fn a_delete_does_not_wait_for_an_errors_backoff() {
    let now = Duration::from_secs(10);
    let ctx = StepContext::at(now);
    // Registration fails a few times: the host backs off.
    let mut host = Host::new();
    for _ in 0..4 {
        let step = host.step(&spec(), &HostEvent::Reconcile, &ctx);
        host = step.host;
        let step = host.step(
            &spec(),
            &HostEvent::RegistrationFailed("failed to parse BMC address".into()),
            &ctx,
        );
        host = step.host;
        host.retry_at = Some(now + Duration::from_secs(3600));
    }
    assert!(host.error.is_some());
    let waiting = host.step(&spec(), &HostEvent::Reconcile, &ctx);
    assert!(waiting.actions.is_empty(), "{:?}", waiting.actions);

    // Deleted: every action answered at once, the clock standing still.
    let mut event = HostEvent::Reconcile;
    for _ in 0..10 {
        let step = host.step(&deleting(), &event, &ctx);
        host = step.host;
        if host.state == HostState::Deleted {
            break;
        }
        // Actions are carried out in order and the first result goes back, as the
        // operator does: a registration still fails (the address is still bad).
        event = match step.actions.first() {
            Some(HostAction::Register { .. }) => {
                HostEvent::RegistrationFailed("failed to parse BMC address".into())
            }
            Some(HostAction::DeleteNode) => HostEvent::NodeDeleted,
            Some(HostAction::PowerOff) => HostEvent::PowerChanged { on: false },
            _ => HostEvent::Reconcile,
        };
    }
    assert_eq!(host.state, HostState::Deleted, "{host:?}");
}
