//! Operations that are not done until the BMC reports them done.
//!
//! BMCs answer 200 and then drop a change, or take seconds to apply it. These functions use
//! only the [`BmcDriver`] trait, so they work the same over every driver: act, then read
//! back until the BMC reports the result or the deadline passes.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;

use crate::driver::BmcDriver;
use crate::error::{BmcError, Result};
use crate::types::{BootDevice, BootMode, BootOverride, MediaKind, PowerAction, PowerState};

/// A point in time by which an operation must finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
    started: Instant,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        let now = Instant::now();
        Deadline {
            at: now + timeout,
            started: now,
        }
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Time since the deadline was set.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// How often to read back while waiting: the interval starts at `initial` and doubles up
/// to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// First wait before reading back.
    pub initial: Duration,
    /// Longest wait between reads.
    pub max: Duration,
}

impl Default for PollPolicy {
    /// 1 s, doubling up to 5 s: power transitions take 1–15 s on real servers.
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
        }
    }
}

struct Poller {
    next: Duration,
    policy: PollPolicy,
    deadline: Deadline,
}

impl Poller {
    fn new(policy: PollPolicy, deadline: Deadline) -> Poller {
        Poller {
            next: policy.initial,
            policy,
            deadline,
        }
    }

    /// Sleeps for the next interval (or the BMC's `Retry-After`), never past the deadline.
    /// Returns false when the deadline has passed.
    async fn wait(&mut self, retry_after: Option<Duration>) -> bool {
        if self.deadline.expired() {
            return false;
        }
        let wait = retry_after
            .unwrap_or(self.next)
            .min(self.deadline.remaining());
        tokio::time::sleep(wait).await;
        self.next = (self.next * 2).min(self.policy.max);
        true
    }
}

/// What [`ensure_power`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOutcome {
    /// Whether a power action was sent (false when the host was already there).
    pub acted: bool,
    /// How many times the power state was read.
    pub reads: u32,
    /// How many of those reads were polls after the action was sent.
    pub polls: u32,
    /// The state the BMC reported last.
    pub final_state: PowerState,
}

/// Brings the host to `action`'s target state and waits until the BMC reports it.
///
/// For on, off and soft off, a host already in the target state is left alone (success,
/// `acted == false`), and one already transitioning toward it is only waited for. Reset
/// and power cycle always act. Retryable errors (busy, unreachable) are retried until the
/// deadline; others are returned at once. A soft off that does not complete is reported as
/// a timeout, not escalated to a hard off: that choice is the caller's.
pub async fn ensure_power<D: BmcDriver + ?Sized>(
    driver: &D,
    action: PowerAction,
    deadline: Deadline,
) -> Result<PowerOutcome> {
    ensure_power_with(driver, action, deadline, PollPolicy::default()).await
}

/// [`ensure_power`] with an explicit polling policy.
pub async fn ensure_power_with<D: BmcDriver + ?Sized>(
    driver: &D,
    action: PowerAction,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<PowerOutcome> {
    let span = tracing::info_span!("bmc.ensure_power", driver = driver.driver_name(), %action);
    ensure_power_inner(driver, action, deadline, policy, None)
        .instrument(span)
        .await
}

async fn ensure_power_inner<D: BmcDriver + ?Sized>(
    driver: &D,
    action: PowerAction,
    deadline: Deadline,
    policy: PollPolicy,
    known_state: Option<PowerState>,
) -> Result<PowerOutcome> {
    let target = action.target_state();
    let transitional = match target {
        PowerState::On => PowerState::PoweringOn,
        _ => PowerState::PoweringOff,
    };
    let mut poller = Poller::new(policy, deadline);
    let mut reads = 0;
    let mut last: Option<PowerState> = None;
    let timeout = |last: &Option<PowerState>| BmcError::Timeout {
        operation: action.to_string(),
        after: deadline.elapsed(),
        detail: Some(match last {
            Some(state) => format!("BMC still reports power {state}, expected {target}"),
            None => "BMC never reported its power state".to_string(),
        }),
    };

    let mut must_act = !action.is_idempotent();
    if !must_act {
        let state = match known_state {
            Some(state) => state,
            None => loop {
                match driver.power_state().await {
                    Ok(state) => break state,
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(error = %e, "power state read failed, retrying");
                        if !poller.wait(e.retry_after()).await {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            },
        };
        reads += 1;
        if state == target {
            tracing::debug!(%state, "already in target power state");
            return Ok(PowerOutcome {
                acted: false,
                reads,
                polls: 0,
                final_state: state,
            });
        }
        must_act = state != transitional;
        last = Some(state);
    }

    if must_act {
        loop {
            match driver.power(action).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, "power action failed, retrying");
                    if !poller.wait(e.retry_after()).await {
                        return Err(e);
                    }
                }
                Err(e) => {
                    // The host may have got there by itself since the state was read (an
                    // agent powering its host off as told; sushy-tools then refuses the
                    // power-off with a 500): what counts is the state it is in now.
                    if action.is_idempotent() && !matches!(e, BmcError::AuthenticationFailed { .. })
                    {
                        if let Ok(state) = driver.power_state().await {
                            reads += 1;
                            if state == target {
                                tracing::info!(error = %e, %state, "power action refused, the host is there already");
                                return Ok(PowerOutcome {
                                    acted: false,
                                    reads,
                                    polls: 0,
                                    final_state: state,
                                });
                            }
                        }
                    }
                    return Err(e);
                }
            }
        }
        poller = Poller::new(policy, deadline);
    }

    let mut polls = 0;
    loop {
        if !poller.wait(None).await {
            return Err(timeout(&last));
        }
        polls += 1;
        match driver.power_state().await {
            Ok(state) => {
                reads += 1;
                if state == target {
                    return Ok(PowerOutcome {
                        acted: must_act,
                        reads,
                        polls,
                        final_state: state,
                    });
                }
                last = Some(state);
            }
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, "power state read failed, retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

/// What [`boot_from_virtual_media`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMediaBoot {
    /// The slot the image went into.
    pub slot_id: String,
    /// Whether other media had to be ejected first.
    pub ejected: bool,
    /// The power action that started the boot (on, or a reset when already on).
    pub power_action: PowerAction,
    /// Power-state polls after the power action (the rest of the flow's requests come
    /// before and with it).
    pub power_polls: u32,
}

/// Boots the host from an ISO image by virtual CD: eject whatever is in the CD slot, insert
/// `image_url` and read it back, set a one-time CD boot in `mode` and read it back, then
/// power on (or reset when already on) and wait until the BMC reports the host on.
pub async fn boot_from_virtual_media<D: BmcDriver + ?Sized>(
    driver: &D,
    image_url: &str,
    mode: BootMode,
    deadline: Deadline,
) -> Result<VirtualMediaBoot> {
    boot_from_virtual_media_with(driver, image_url, mode, deadline, PollPolicy::default()).await
}

/// [`boot_from_virtual_media`] with an explicit polling policy.
pub async fn boot_from_virtual_media_with<D: BmcDriver + ?Sized>(
    driver: &D,
    image_url: &str,
    mode: BootMode,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<VirtualMediaBoot> {
    let span = tracing::info_span!(
        "bmc.boot_from_virtual_media",
        driver = driver.driver_name(),
        image_url,
        %mode
    );
    vmedia_boot_inner(driver, image_url, mode, deadline, policy)
        .instrument(span)
        .await
}

async fn vmedia_boot_inner<D: BmcDriver + ?Sized>(
    driver: &D,
    image_url: &str,
    mode: BootMode,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<VirtualMediaBoot> {
    if image_url.trim().is_empty() {
        return Err(BmcError::InvalidRequest(
            "virtual media image URL is empty".to_string(),
        ));
    }
    let caps = driver.capabilities();
    if !caps.can_insert(&MediaKind::Cd) {
        return Err(driver.unsupported("virtual CD"));
    }
    if !caps.can_boot_from(&BootDevice::Cd) {
        return Err(driver.unsupported("boot from CD"));
    }

    let slots = driver.virtual_media().await?;
    let slot = slots
        .iter()
        .find(|s| s.accepts(&MediaKind::Cd))
        .ok_or_else(|| BmcError::not_found("a virtual-media slot that takes CD images"))?;
    let slot_id = slot.id.clone();
    let ejected = slot.inserted;
    if ejected {
        tracing::debug!(slot = %slot_id, image = ?slot.image, "ejecting current media");
        driver.eject_media(&MediaKind::Cd).await?;
    }
    driver.insert_media(&MediaKind::Cd, image_url).await?;
    let after = driver.virtual_media().await?;
    let observed = after.iter().find(|s| s.id == slot_id);
    match observed {
        Some(s) if s.inserted && s.image.as_deref() == Some(image_url) => {}
        other => {
            return Err(BmcError::NotApplied {
                operation: format!("insert virtual media into slot {slot_id}"),
                expected: format!("{image_url} inserted"),
                observed: match other {
                    None => "no such slot".to_string(),
                    Some(s) if !s.inserted => "slot empty".to_string(),
                    Some(s) => format!("{} inserted", s.image.as_deref().unwrap_or("<no image>")),
                },
            });
        }
    }

    let boot = BootOverride::once(BootDevice::Cd).with_mode(mode);
    driver.set_boot_override(&boot).await?;
    let state = driver.boot_override().await?;
    if !state.satisfies(&boot) {
        return Err(BmcError::NotApplied {
            operation: "set one-time boot from CD".to_string(),
            expected: format!("{} once in {mode} mode", boot.device),
            observed: format!("{state:?}"),
        });
    }

    let state = driver.power_state().await?;
    let power_action = match state {
        PowerState::On | PowerState::PoweringOn => {
            if caps.can_power(PowerAction::Reset) {
                PowerAction::Reset
            } else {
                PowerAction::PowerCycle
            }
        }
        _ => PowerAction::On,
    };
    // The state just read is passed on so it is not read twice.
    let power = ensure_power_inner(driver, power_action, deadline, policy, Some(state)).await?;
    Ok(VirtualMediaBoot {
        slot_id,
        ejected,
        power_action,
        power_polls: power.polls,
    })
}

/// The kind of slot a small disk image (a host's config image) goes into beside the CD:
/// a USB stick where the BMC takes one, else a floppy; `None` when it takes neither.
/// Whether that slot is another than the CD's shows only once the image is in
/// ([`boot_from_virtual_media_with_config`]): drivers read slots as they need them.
pub fn second_media_kind(caps: &crate::Capabilities) -> Option<MediaKind> {
    [MediaKind::Usb, MediaKind::Floppy]
        .into_iter()
        .find(|kind| caps.can_insert(kind))
}

/// The slot holding `image_url`, if one does.
fn slot_holding<'a>(
    slots: &'a [crate::types::VirtualMediaSlot],
    image_url: &str,
) -> Option<&'a crate::types::VirtualMediaSlot> {
    slots
        .iter()
        .find(|s| s.inserted && s.image.as_deref() == Some(image_url))
}

/// How a boot with a config image went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigBoot {
    /// Booted from the CD with the config image in the slot named beside it.
    Booted {
        /// The CD boot.
        boot: VirtualMediaBoot,
        /// The slot holding the config image.
        config_slot: String,
    },
    /// The config image went into the slot the CD boots from (a BMC with one slot): it
    /// was ejected again and nothing was booted.
    OneSlot {
        /// The one slot.
        slot: String,
    },
}

/// Boots the host from `iso_url` by virtual CD, as [`boot_from_virtual_media_with`], with
/// `config_url` (a small disk image) inserted as `config_kind` in another slot first.
/// Both insertions are read back, and after the boot both images must still be in two
/// different slots, or the boot is [`BmcError::NotApplied`] (a host booted without its
/// configuration). When the BMC puts the config image where the CD goes, nothing boots:
/// [`ConfigBoot::OneSlot`].
pub async fn boot_from_virtual_media_with_config<D: BmcDriver + ?Sized>(
    driver: &D,
    iso_url: &str,
    config: (&MediaKind, &str),
    mode: BootMode,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<ConfigBoot> {
    let (kind, config_url) = config;
    let span = tracing::info_span!(
        "bmc.boot_from_virtual_media_with_config",
        driver = driver.driver_name(),
        iso_url,
        config_kind = %kind,
        %mode
    );
    async {
        if !driver.capabilities().can_insert(kind) {
            return Err(driver.unsupported(&format!("insert {kind} media")));
        }
        // Whatever an earlier boot left in the slot goes first.
        driver.eject_media(kind).await?;
        driver.insert_media(kind, config_url).await?;
        let slots = driver.virtual_media().await?;
        let Some(config_slot) = slot_holding(&slots, config_url).map(|s| s.id.clone()) else {
            return Err(BmcError::NotApplied {
                operation: format!("insert the {kind} config image"),
                expected: format!("{config_url} inserted"),
                observed: "no slot holds it".into(),
            });
        };
        // The CD goes into the first slot that takes one, as the CD boot chooses it.
        let cd_slot = slots
            .iter()
            .find(|s| s.accepts(&MediaKind::Cd))
            .map(|s| &s.id);
        if cd_slot == Some(&config_slot) {
            driver.eject_media(kind).await?;
            return Ok(ConfigBoot::OneSlot { slot: config_slot });
        }
        let boot = vmedia_boot_inner(driver, iso_url, mode, deadline, policy).await?;
        let after = driver.virtual_media().await?;
        let observed = slot_holding(&after, config_url).map(|s| s.id.clone());
        if boot.slot_id == config_slot || observed.as_ref() != Some(&config_slot) {
            return Err(BmcError::NotApplied {
                operation: format!("keep the {kind} config image beside the CD"),
                expected: format!("{config_url} in slot {config_slot}, the CD in another"),
                observed: match observed {
                    Some(id) => format!("config image in slot {id}, CD in {}", boot.slot_id),
                    None => format!("config image gone; CD in slot {}", boot.slot_id),
                },
            });
        }
        Ok(ConfigBoot::Booted { boot, config_slot })
    }
    .instrument(span)
    .await
}

/// Boots the host once from the network: a one-time PXE boot override, read back, then
/// the host powered off and on so the next power-on is the boot that reads it (hosts
/// without virtual media boot the agent this way).
pub async fn boot_once_from_network<D: BmcDriver + ?Sized>(
    driver: &D,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<()> {
    let span = tracing::info_span!("bmc.boot_once_from_network", driver = driver.driver_name());
    async {
        let pxe = BootOverride::once(BootDevice::Pxe);
        driver.set_boot_override(&pxe).await?;
        let read = driver.boot_override().await?;
        if !read.satisfies(&pxe) {
            return Err(BmcError::NotApplied {
                operation: "one-time PXE boot".into(),
                expected: "pxe".into(),
                observed: format!("{:?}", read.device),
            });
        }
        ensure_power_inner(driver, PowerAction::Off, deadline, policy, None).await?;
        ensure_power_inner(driver, PowerAction::On, deadline, policy, None).await?;
        Ok(())
    }
    .instrument(span)
    .await
}

/// Boots the host from its disk from now on: the virtual CD ejected (where there is one),
/// a persistent disk boot override, then the host powered off and on (after an image was
/// written to the disk).
pub async fn boot_from_disk<D: BmcDriver + ?Sized>(
    driver: &D,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<()> {
    let span = tracing::info_span!("bmc.boot_from_disk", driver = driver.driver_name());
    async {
        if driver.capabilities().can_insert(&MediaKind::Cd) {
            // An empty slot is what we want: a failure to eject is not fatal here, the
            // persistent disk boot below is what decides the next boot.
            if let Err(e) = driver.eject_media(&MediaKind::Cd).await {
                tracing::debug!(error = %e, "ejecting the CD before booting from disk");
            }
        }
        driver
            .set_boot_override(&BootOverride {
                device: BootDevice::Disk,
                persistence: crate::types::BootPersistence::Persistent,
                mode: None,
            })
            .await?;
        ensure_power_inner(driver, PowerAction::Off, deadline, policy, None).await?;
        ensure_power_inner(driver, PowerAction::On, deadline, policy, None).await?;
        Ok(())
    }
    .instrument(span)
    .await
}

/// Leaves the host off with its virtual CD empty (after inspection, cleaning or a
/// deprovision).
pub async fn power_off_and_eject<D: BmcDriver + ?Sized>(
    driver: &D,
    deadline: Deadline,
    policy: PollPolicy,
) -> Result<()> {
    let span = tracing::info_span!("bmc.power_off_and_eject", driver = driver.driver_name());
    async {
        if driver.capabilities().can_insert(&MediaKind::Cd) {
            driver.eject_media(&MediaKind::Cd).await?;
        }
        ensure_power_inner(driver, PowerAction::Off, deadline, policy, None).await?;
        Ok(())
    }
    .instrument(span)
    .await
}
