//! The verified operations, against the in-memory BMC in `common`. Time is paused, so the
//! polling waits cost nothing.

use std::time::Duration;

use bmc_core::memory::MemoryBmc;
use bmc_core::verified::{
    ConfigBoot, Deadline, PollPolicy, boot_from_virtual_media, boot_from_virtual_media_with_config,
    ensure_power, ensure_power_with, second_media_kind,
};
use bmc_core::{
    BmcDriver, BmcError, BootDevice, BootMode, BootPersistence, Capabilities, MediaKind,
    PowerAction, PowerState,
};

const ISO: &str = "http://10.0.0.1/images/agent.iso";

fn minutes(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(60 * n))
}

#[tokio::test(start_paused = true)]
async fn power_on_when_already_on_is_success_without_acting() {
    let bmc = MemoryBmc::new(PowerState::On);
    let out = ensure_power(&bmc, PowerAction::On, minutes(1))
        .await
        .unwrap();
    assert!(!out.acted);
    assert_eq!(out.reads, 1);
    assert_eq!(bmc.calls(), ["power_state"]);
}

#[tokio::test(start_paused = true)]
async fn power_on_acts_then_polls_until_the_bmc_reports_on() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 3);
    let started = tokio::time::Instant::now();
    let out = ensure_power(&bmc, PowerAction::On, minutes(1))
        .await
        .unwrap();
    assert!(out.acted);
    assert_eq!(out.final_state, PowerState::On);
    assert_eq!(out.reads, 4, "one read before, three while waiting");
    assert_eq!(out.polls, 3);
    assert_eq!(bmc.calls()[..2], ["power_state", "power power on"]);
    // Default policy waits 1 s, 2 s, 4 s between reads.
    assert_eq!(started.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_power_change_is_a_clear_timeout() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.drop_power = true);
    let err = ensure_power(
        &bmc,
        PowerAction::On,
        Deadline::after(Duration::from_secs(20)),
    )
    .await
    .unwrap_err();
    match &err {
        BmcError::Timeout {
            operation,
            after,
            detail,
        } => {
            assert_eq!(operation, "power on");
            assert_eq!(*after, Duration::from_secs(20));
            assert_eq!(
                detail.as_deref(),
                Some("BMC still reports power Off, expected On")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
    // Polling stopped at the deadline: 1+2+4+5+5 s, then the 3 s left.
    let reads = bmc.calls().iter().filter(|c| *c == "power_state").count();
    assert_eq!(reads, 7);
}

#[tokio::test(start_paused = true)]
async fn busy_bmc_is_retried_until_it_accepts() {
    let bmc = MemoryBmc::new(PowerState::On).with(|s| {
        s.busy_power_calls = 2;
        s.transition_reads = 1;
    });
    let out = ensure_power(&bmc, PowerAction::Off, minutes(1))
        .await
        .unwrap();
    assert!(out.acted);
    assert_eq!(bmc.power_now(), PowerState::Off);
    let actions = bmc
        .calls()
        .iter()
        .filter(|c| c.starts_with("power "))
        .count();
    assert_eq!(actions, 3);
}

#[tokio::test(start_paused = true)]
async fn authentication_failure_is_returned_at_once_never_retried() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.fail_power_with_auth = true);
    let err = ensure_power(&bmc, PowerAction::On, minutes(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BmcError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_eq!(bmc.calls(), ["power_state", "power power on"]);
}

/// A host that powered itself off between the state read and the power-off (an agent
/// told to): the BMC refuses the action, and the state read after it says it is done.
/// Seen in the lab: sushy-tools answers 500 "domain is not running".
#[tokio::test(start_paused = true)]
async fn a_refused_power_off_of_a_host_already_off_is_done_not_failed() {
    let bmc = MemoryBmc::new(PowerState::On).with(|s| s.reached_then_refused = true);
    let out = ensure_power(&bmc, PowerAction::Off, minutes(1))
        .await
        .unwrap();
    assert!(!out.acted);
    assert_eq!(out.final_state, PowerState::Off);
    assert_eq!(
        bmc.calls(),
        ["power_state", "power power off", "power_state"]
    );
}

/// The refusal stands when the host is not where the action would take it.
#[tokio::test(start_paused = true)]
async fn a_refused_power_on_of_a_host_still_off_fails() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| {
        s.reached_then_refused = true;
        s.drop_power = true;
    });
    let err = ensure_power(&bmc, PowerAction::On, minutes(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BmcError::Rejected {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(bmc.power_now(), PowerState::Off);
}

#[tokio::test(start_paused = true)]
async fn a_host_powering_on_is_waited_for_not_pushed_again() {
    let bmc =
        MemoryBmc::new(PowerState::PoweringOn).with(|s| s.pending = Some((PowerState::On, 3)));
    let out = ensure_power(&bmc, PowerAction::On, minutes(1))
        .await
        .unwrap();
    assert!(!out.acted);
    assert!(
        bmc.calls().iter().all(|c| c == "power_state"),
        "{:?}",
        bmc.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn reset_always_acts() {
    let bmc = MemoryBmc::new(PowerState::On).with(|s| s.transition_reads = 0);
    let out = ensure_power(&bmc, PowerAction::Reset, minutes(1))
        .await
        .unwrap();
    assert!(out.acted);
    assert_eq!(bmc.calls(), ["power reset", "power_state"]);
}

#[tokio::test(start_paused = true)]
async fn soft_off_when_off_does_nothing_and_custom_policy_is_honoured() {
    let bmc = MemoryBmc::new(PowerState::Off);
    let out = ensure_power_with(
        &bmc,
        PowerAction::SoftOff,
        minutes(1),
        PollPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    assert!(!out.acted);

    let bmc = MemoryBmc::new(PowerState::On).with(|s| s.transition_reads = 5);
    let started = tokio::time::Instant::now();
    ensure_power_with(
        &bmc,
        PowerAction::SoftOff,
        minutes(1),
        PollPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn virtual_media_boot_from_off_ejects_inserts_sets_boot_and_powers_on() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| {
        s.slots[1].inserted = true;
        s.slots[1].image = Some("http://old/old.iso".into());
    });
    let out = boot_from_virtual_media(&bmc, ISO, BootMode::Uefi, minutes(5))
        .await
        .unwrap();
    assert_eq!(out.slot_id, "CD1");
    assert!(out.ejected);
    assert_eq!(out.power_action, PowerAction::On);
    assert_eq!(bmc.power_now(), PowerState::On);
    let state = bmc.state.lock().unwrap();
    assert_eq!(state.slots[1].image.as_deref(), Some(ISO));
    assert_eq!(state.boot.device, Some(BootDevice::Cd));
    assert_eq!(state.boot.persistence, Some(BootPersistence::Once));
    assert_eq!(state.boot.mode, Some(BootMode::Uefi));
    assert_eq!(
        state.calls[..8],
        [
            "virtual_media",
            "eject_media cd",
            &format!("insert_media cd {ISO}"),
            "virtual_media",
            "set_boot_override cd Some(Uefi)",
            "boot_override",
            "power_state",
            "power power on",
        ]
    );
    assert_eq!(
        state.calls[8..],
        ["power_state", "power_state"],
        "polls until on"
    );
}

#[tokio::test(start_paused = true)]
async fn virtual_media_boot_when_on_resets_and_skips_eject_when_empty() {
    let bmc = MemoryBmc::new(PowerState::On);
    let out = boot_from_virtual_media(&bmc, ISO, BootMode::Legacy, minutes(5))
        .await
        .unwrap();
    assert!(!out.ejected);
    assert_eq!(out.power_action, PowerAction::Reset);
    assert!(!bmc.calls().iter().any(|c| c.starts_with("eject")));
    assert!(bmc.calls().contains(&"power reset".to_string()));
}

#[tokio::test(start_paused = true)]
async fn virtual_media_boot_detects_a_dropped_insert() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.drop_media = true);
    let err = boot_from_virtual_media(&bmc, ISO, BootMode::Uefi, minutes(5))
        .await
        .unwrap_err();
    match err {
        BmcError::NotApplied {
            operation,
            observed,
            ..
        } => {
            assert_eq!(operation, "insert virtual media into slot CD1");
            assert_eq!(observed, "slot empty");
        }
        other => panic!("{other:?}"),
    }
    // Nothing after the failed verification: no boot override, no power.
    assert!(
        !bmc.calls()
            .iter()
            .any(|c| c.starts_with("set_boot") || c.starts_with("power"))
    );
}

#[tokio::test(start_paused = true)]
async fn virtual_media_boot_detects_a_dropped_boot_override() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.drop_boot = true);
    let err = boot_from_virtual_media(&bmc, ISO, BootMode::Uefi, minutes(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BmcError::NotApplied { ref operation, .. } if operation == "set one-time boot from CD"),
        "{err:?}"
    );
    assert_eq!(
        bmc.power_now(),
        PowerState::Off,
        "must not power on into the wrong device"
    );
}

#[tokio::test(start_paused = true)]
async fn virtual_media_boot_needs_the_capability_and_a_url() {
    let mut bmc = MemoryBmc::new(PowerState::Off);
    bmc.caps.virtual_media = vec![MediaKind::Usb];
    let err = boot_from_virtual_media(&bmc, ISO, BootMode::Uefi, minutes(5))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err:?}");
    assert!(bmc.calls().is_empty());

    let bmc = MemoryBmc::new(PowerState::Off);
    let err = boot_from_virtual_media(&bmc, " ", BootMode::Uefi, minutes(5))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::InvalidRequest(_)), "{err:?}");
}

/// A driver that implements only power: everything else must be a typed `Unsupported`.
struct PowerOnly;

#[bmc_core::async_trait]
impl BmcDriver for PowerOnly {
    fn driver_name(&self) -> &str {
        "power-only"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            power_actions: vec![PowerAction::On, PowerAction::Off],
            ..Capabilities::default()
        }
    }
    async fn power_state(&self) -> bmc_core::Result<PowerState> {
        Ok(PowerState::On)
    }
}

#[tokio::test]
async fn unimplemented_methods_are_typed_unsupported_errors() {
    let d: Box<dyn BmcDriver> = Box::new(PowerOnly);
    assert!(d.capabilities().virtual_media.is_empty());
    for err in [
        d.power(PowerAction::Reset).await.unwrap_err(),
        d.virtual_media().await.map(|_| ()).unwrap_err(),
        d.insert_media(&MediaKind::Cd, ISO).await.unwrap_err(),
        d.eject_media(&MediaKind::Cd).await.unwrap_err(),
        d.inventory().await.map(|_| ()).unwrap_err(),
        d.boot_override().await.map(|_| ()).unwrap_err(),
    ] {
        match &err {
            BmcError::Unsupported { driver, .. } => assert_eq!(driver, "power-only"),
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
    }
    assert_eq!(
        d.power(PowerAction::Reset).await.unwrap_err().to_string(),
        "reset is not supported by power-only"
    );
    d.close().await.unwrap();
    let err = boot_from_virtual_media(&*d, ISO, BootMode::Uefi, minutes(1))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "virtual CD is not supported by power-only");
}

#[tokio::test(start_paused = true)]
async fn a_bmc_that_keeps_overrides_continuous_still_boots_from_cd() {
    // sushy-emulator (and some firmware) report every override as Continuous.
    let bmc = MemoryBmc::new(PowerState::Off);
    let out = boot_from_virtual_media(&bmc, ISO, BootMode::Uefi, minutes(5)).await;
    assert!(out.is_ok());
    let mut state = bmc.state.lock().unwrap().boot.clone();
    state.persistence = Some(BootPersistence::Persistent);
    assert!(state.satisfies(&bmc_core::BootOverride::once(BootDevice::Cd)));
    state.persistence = Some(BootPersistence::Once);
    assert!(
        !state.satisfies(&bmc_core::BootOverride::persistent(BootDevice::Cd)),
        "once does not satisfy persistent"
    );
    state.device = Some(BootDevice::Pxe);
    assert!(!state.satisfies(&bmc_core::BootOverride::once(BootDevice::Cd)));
}

const CONFIG: &str = "http://10.0.0.1/v1/config-images/n/abc.img";

/// The agent ISO by CD with [`CONFIG`] beside it as a USB stick.
async fn boot_with_config(bmc: &MemoryBmc) -> Result<ConfigBoot, BmcError> {
    boot_from_virtual_media_with_config(
        bmc,
        ISO,
        (&MediaKind::Usb, CONFIG),
        BootMode::Uefi,
        minutes(5),
        PollPolicy::default(),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_config_image_goes_beside_the_cd_and_both_are_read_back() {
    // What an earlier boot left in the USB slot is ejected first.
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| {
        s.slots[0].inserted = true;
        s.slots[0].image = Some("http://old/config.img".into());
    });
    assert_eq!(second_media_kind(&bmc.caps), Some(MediaKind::Usb));
    let out = boot_with_config(&bmc).await.unwrap();
    let ConfigBoot::Booted { boot, config_slot } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (boot.slot_id.as_str(), config_slot.as_str()),
        ("CD1", "Floppy1")
    );
    let state = bmc.state.lock().unwrap();
    assert_eq!(state.slots[0].image.as_deref(), Some(CONFIG));
    assert_eq!(state.slots[1].image.as_deref(), Some(ISO));
    assert_eq!(
        state.calls[..5],
        [
            "eject_media usb",
            &format!("insert_media usb {CONFIG}"),
            "virtual_media",
            "virtual_media",
            &format!("insert_media cd {ISO}"),
        ]
    );
    // Read back once more after the power-on.
    assert_eq!(
        state.calls.last().map(String::as_str),
        Some("virtual_media")
    );
}

#[tokio::test(start_paused = true)]
async fn one_slot_for_everything_boots_nothing_and_says_so() {
    // One slot that takes CDs and USB sticks (as some BMCs have): the CD insert would
    // eject the config image.
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| {
        s.slots.remove(0);
        s.slots[0].kinds = vec![MediaKind::Cd, MediaKind::Usb];
    });
    let out = boot_with_config(&bmc).await.unwrap();
    assert_eq!(out, ConfigBoot::OneSlot { slot: "CD1".into() });
    assert!(
        !bmc.state.lock().unwrap().slots[0].inserted,
        "ejected again"
    );
    assert!(
        !bmc.calls()
            .iter()
            .any(|c| c.starts_with("power") || c.contains(" cd "))
    );
}

#[tokio::test(start_paused = true)]
async fn a_config_image_lost_at_the_cd_insert_is_caught() {
    // A BMC that takes both into one slot and lists a second CD slot first would still
    // lose it: the read-back after the boot catches any loss.
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| {
        s.slots[1].kinds = vec![MediaKind::Cd];
        s.slots[0].kinds = vec![MediaKind::Usb];
    });
    // Lose the config image as the CD goes in: a fault the memory BMC has not, so the
    // config slot is emptied by hand between the two inserts.
    let state = bmc.state.clone();
    let watcher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut s = state.lock().unwrap();
            if s.calls.iter().any(|c| c.starts_with("insert_media cd")) {
                s.slots[0].inserted = false;
                s.slots[0].image = None;
                break;
            }
        }
    });
    let err = boot_with_config(&bmc).await.unwrap_err();
    watcher.abort();
    match err {
        BmcError::NotApplied {
            operation,
            observed,
            ..
        } => {
            assert_eq!(operation, "keep the usb config image beside the CD");
            assert_eq!(observed, "config image gone; CD in slot CD1");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_config_insert_stops_before_the_boot() {
    let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.drop_media = true);
    let err = boot_with_config(&bmc).await.unwrap_err();
    assert!(
        matches!(err, BmcError::NotApplied { ref operation, .. } if operation == "insert the usb config image"),
        "{err:?}"
    );
    assert!(
        !bmc.calls()
            .iter()
            .any(|c| c.starts_with("power") || c.contains(" cd "))
    );
}

#[tokio::test(start_paused = true)]
async fn a_bmc_without_usb_or_floppy_has_no_second_slot() {
    let mut bmc = MemoryBmc::new(PowerState::Off);
    bmc.caps.virtual_media = vec![MediaKind::Cd, MediaKind::Floppy];
    assert_eq!(second_media_kind(&bmc.caps), Some(MediaKind::Floppy));
    bmc.caps.virtual_media = vec![MediaKind::Cd];
    assert_eq!(second_media_kind(&bmc.caps), None);
}
