//! The host state machine fed arbitrary events and spec changes: rows chain from state to
//! state, no error means no error count, and the status always round-trips through JSON.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use provision_fsm::*;

fn event(n: u8) -> HostEvent {
    match n % 18 {
        0 => HostEvent::Reconcile,
        1 => HostEvent::Registered { credentials_version: "1".into() },
        2 => HostEvent::RegistrationFailed("x".into()),
        3 => HostEvent::InspectionDone,
        4 => HostEvent::InspectionFailed("x".into()),
        5 => HostEvent::PreparationDone,
        6 => HostEvent::PreparationFailed("x".into()),
        7 => HostEvent::ProvisioningDone,
        8 => HostEvent::ProvisioningFailed("x".into()),
        9 => HostEvent::DeprovisioningDone,
        10 => HostEvent::DeprovisioningFailed("x".into()),
        11 => HostEvent::PowerChanged { on: true },
        12 => HostEvent::PowerChanged { on: false },
        13 => HostEvent::PowerFailed("x".into()),
        14 => HostEvent::RebootDone,
        15 => HostEvent::Detached,
        16 => HostEvent::DetachFailed("x".into()),
        _ => HostEvent::NodeDeleted,
    }
}

fn mutate(spec: &mut HostSpec, n: u8) {
    let image = |u: &str| Image { url: u.into(), checksum: None, checksum_type: None, format: None };
    match n % 16 {
        0 => spec.online = !spec.online,
        1 => spec.image = Some(image("http://a")),
        2 => spec.image = None,
        3 => spec.externally_provisioned = !spec.externally_provisioned,
        4 => spec.inspection = InspectionMode::Disabled,
        5 => spec.inspect_requested = !spec.inspect_requested,
        6 => spec.preparation = Some(format!("v{n}")),
        7 => spec.detached = Some(Detach::default()),
        8 => spec.detached = None,
        9 => spec.reboot = Some(RebootMode::Hard),
        10 => spec.credentials = CredentialsState::Missing,
        11 => spec.credentials = CredentialsState::Present { version: format!("{n}") },
        12 => spec.paused = !spec.paused,
        13 => spec.deleting = true,
        14 => spec.has_bmc_details = !spec.has_bmc_details,
        _ => spec.disable_power_off = !spec.disable_power_off,
    }
}

fuzz_target!(|steps: Vec<(u8, u8, u16, u8, bool)>| {
    let mut host = Host::new();
    let mut spec = HostSpec::default();
    let mut now = Duration::from_secs(1);
    for (e, m, dt, jitter, capacity) in steps.into_iter().take(400) {
        if m % 3 == 0 {
            mutate(&mut spec, m / 3);
        }
        now += Duration::from_secs(u64::from(dt));
        let ctx = StepContext {
            now,
            capacity_available: capacity,
            jitter: f64::from(jitter) / 256.0,
            max_provisioning_retries: 3,
        };
        let step = host.step(&spec, &event(e), &ctx);
        let mut at = host.state.kind();
        for t in &step.transitions {
            assert!(t.from.is_none_or(|f| f == at), "row {} from {at}", t.id);
            at = t.to;
        }
        assert_eq!(at, step.host.state.kind());
        if step.host.error.is_none() {
            assert_eq!(step.host.error_count, 0);
        }
        let json = serde_json::to_string(&step.host).expect("status serializes");
        let back: Host = serde_json::from_str(&json).expect("status reads back");
        assert_eq!(back, step.host);
        host = step.host;
    }
});
