//! A BMC locks an account after a few wrong passwords: credentials the BMC refused are
//! tried once per change of the credentials, never again by a retry or a reconcile.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use provision_fsm::{
    CredentialsState, ErrorType, Host, HostAction, HostEvent, HostSpec, HostStateKind,
    OperationalStatus, StepContext,
};

fn spec(version: &str) -> HostSpec {
    HostSpec {
        credentials: CredentialsState::Present {
            version: version.into(),
        },
        ..HostSpec::default()
    }
}

fn registers(actions: &[HostAction]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, HostAction::Register { .. }))
        .count()
}

/// Steps the host every 5 s of simulated time for `minutes`, answering each registration
/// with a refusal; returns the registrations asked for.
fn run(host: &mut Host, spec: &HostSpec, from: Duration, minutes: u64) -> (usize, Duration) {
    let mut asked = 0;
    let mut now = from;
    let end = from + Duration::from_secs(60 * minutes);
    let mut event = HostEvent::Reconcile;
    while now < end {
        let step = host.step(spec, &event, &StepContext::at(now));
        *host = step.host;
        event = HostEvent::Reconcile;
        for action in &step.actions {
            if let HostAction::Register {
                credentials_version,
            } = action
            {
                asked += 1;
                event = HostEvent::CredentialsRefused {
                    credentials_version: credentials_version.clone(),
                    message: "the BMC refused the credentials: authentication failed".into(),
                };
            }
        }
        now += Duration::from_secs(5);
    }
    (asked, now)
}

#[test]
fn refused_credentials_are_tried_once_per_change() {
    let mut host = Host::new();
    let (asked, now) = run(&mut host, &spec("1"), Duration::ZERO, 10);
    assert_eq!(asked, 1, "ten minutes of steps with the same credentials");
    assert_eq!(host.state.kind(), HostStateKind::Registering);
    assert_eq!(host.operational_status, OperationalStatus::Error);
    let error = host.error.clone().unwrap();
    assert_eq!(error.kind, ErrorType::Registration);
    assert!(error.message.contains("refused"), "{}", error.message);
    assert_eq!(host.refused_credentials.as_deref(), Some("1"));

    // The secret changes: one more try, refused again, then quiet.
    let (asked, now) = run(&mut host, &spec("2"), now, 10);
    assert_eq!(asked, 1);

    // The right credentials: registered, the refusal forgotten.
    let step = host.step(&spec("3"), &HostEvent::Reconcile, &StepContext::at(now));
    assert_eq!(registers(&step.actions), 1);
    let step = step.host.step(
        &spec("3"),
        &HostEvent::Registered {
            credentials_version: "3".into(),
        },
        &StepContext::at(now),
    );
    assert_eq!(step.host.refused_credentials, None);
    assert_eq!(step.host.registered_credentials.as_deref(), Some("3"));
    assert_eq!(step.host.operational_status, OperationalStatus::Ok);
}

#[test]
fn other_registration_failures_are_retried_with_backoff() {
    let mut host = Host::new();
    let mut asked = 0;
    let mut now = Duration::ZERO;
    let mut event = HostEvent::Reconcile;
    while now < Duration::from_secs(600) {
        let step = host.step(&spec("1"), &event, &StepContext::at(now));
        host = step.host;
        event = HostEvent::Reconcile;
        if registers(&step.actions) > 0 {
            asked += 1;
            event = HostEvent::RegistrationFailed("the BMC is unreachable".into());
        }
        now += Duration::from_secs(5);
    }
    assert!(
        asked > 2,
        "an unreachable BMC is tried again ({asked} times)"
    );
}
