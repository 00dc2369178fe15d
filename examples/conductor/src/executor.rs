//! What the conductor does to a host, as functions over `&dyn BmcDriver`: verify, inspect,
//! boot the agent, start a deploy, finish it, tear down. No node records, no locks, no
//! permits: the caller holds those. Each step is a verified operation of bmc-core's.

use std::time::Duration;

use bmc_core::verified::{
    ConfigBoot, Deadline, PollPolicy, boot_from_disk, boot_from_virtual_media_with,
    boot_from_virtual_media_with_config, boot_once_from_network, power_off_and_eject,
    second_media_kind,
};
use bmc_core::{BmcDriver, BmcError, BootMode, HardwareInventory, MediaKind, PowerState};

use crate::contract::DeployConfig;

/// How the steps run.
#[derive(Debug, Clone)]
pub struct StepSettings {
    /// The agent ISO booted by virtual media.
    pub agent_image_url: String,
    /// Power and boot waits.
    pub poll: PollPolicy,
    /// How long one power change or virtual-media boot may take.
    pub operation_timeout: Duration,
    /// Agents boot with a per-host config image in a second slot, which tear-downs
    /// eject too.
    pub config_images: bool,
}

impl StepSettings {
    fn deadline(&self) -> Deadline {
        Deadline::after(self.operation_timeout)
    }
}

fn has_virtual_cd(driver: &dyn BmcDriver) -> bool {
    driver.capabilities().can_insert(&MediaKind::Cd)
}

/// Reads the power state: the BMC answers with these credentials.
pub async fn verify(driver: &dyn BmcDriver) -> Result<PowerState, BmcError> {
    driver.power_state().await
}

/// Out-of-band inspection: the inventory as the BMC reports it.
pub async fn inspect(driver: &dyn BmcDriver) -> Result<HardwareInventory, BmcError> {
    driver.inventory().await
}

/// Boots the agent: its ISO by virtual media where the BMC has a virtual CD, else by a
/// one-time network boot (IPMI hosts: the site's network boot serves the agent). With
/// `config_image` (the host's config image's URL) and a BMC with a slot besides the CD's,
/// the image goes into that slot first, read back before and after the boot; a BMC with
/// one slot boots the shared ISO alone (the agent then takes its configuration from the
/// kernel command line or DHCP), and the answer says so.
pub async fn boot_agent(
    driver: &dyn BmcDriver,
    settings: &StepSettings,
    config_image: Option<&ConfigUrls>,
    mode: BootMode,
) -> Result<AgentBoot, BmcError> {
    if !has_virtual_cd(driver) {
        boot_once_from_network(driver, settings.deadline(), settings.poll).await?;
        return Ok(AgentBoot::Network);
    }
    if settings.agent_image_url.is_empty() {
        return Err(BmcError::InvalidRequest(
            "no agent image configured to boot by virtual media".into(),
        ));
    }
    let (iso, deadline) = (&settings.agent_image_url, settings.deadline());
    let kind = second_media_kind(&driver.capabilities());
    if let (Some(urls), Some(kind)) = (config_image, kind) {
        let url = urls.image.as_str();
        match boot_from_virtual_media_with_config(
            driver,
            iso,
            (&kind, url),
            mode,
            deadline,
            settings.poll,
        )
        .await?
        {
            ConfigBoot::Booted { config_slot, .. } => {
                return Ok(AgentBoot::WithConfigImage {
                    kind,
                    slot: config_slot,
                });
            }
            ConfigBoot::OneSlot { slot } => {
                // The host's own ISO, streamed from the shared one, where there is one.
                let (iso, boot) = match &urls.per_host_iso {
                    Some(own) => (own, AgentBoot::PerHostIso { slot }),
                    None => (iso, AgentBoot::OneSlot { slot }),
                };
                boot_from_virtual_media_with(driver, iso, mode, deadline, settings.poll).await?;
                return Ok(boot);
            }
        }
    }
    boot_from_virtual_media_with(driver, iso, mode, deadline, settings.poll).await?;
    Ok(AgentBoot::IsoOnly)
}

/// Where a host's config image is served for an agent boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrls {
    /// The config image, for a second slot.
    pub image: String,
    /// The host's own agent ISO (the shared one with the config image inside), for a
    /// BMC with one slot; `None` when the conductor serves none.
    pub per_host_iso: Option<String>,
}

/// How the agent was booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentBoot {
    /// By a one-time network boot.
    Network,
    /// The shared ISO by virtual CD, nothing beside it (no config image asked for, or
    /// a BMC without USB or floppy media).
    IsoOnly,
    /// The host's own ISO (the shared one with the config image in it) in the BMC's
    /// one slot.
    PerHostIso {
        /// That slot.
        slot: String,
    },
    /// The shared ISO alone: the BMC put the config image into the CD's slot, its only
    /// one, and the conductor has no per-host ISOs.
    OneSlot {
        /// That slot.
        slot: String,
    },
    /// The shared ISO with the host's config image beside it.
    WithConfigImage {
        /// The kind it was inserted as.
        kind: MediaKind,
        /// The slot it is in.
        slot: String,
    },
}

/// Ejects the config image's slot, where agents boot with one (after the CD).
async fn eject_config_image(
    driver: &dyn BmcDriver,
    settings: &StepSettings,
) -> Result<(), BmcError> {
    if !settings.config_images {
        return Ok(());
    }
    let caps = driver.capabilities();
    match [MediaKind::Usb, MediaKind::Floppy]
        .into_iter()
        .find(|k| caps.can_insert(k))
    {
        Some(kind) => driver.eject_media(&kind).await,
        None => Ok(()),
    }
}

/// How a deploy went on once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployStarted {
    /// The live ISO is booted: the deploy is done.
    LiveIsoBooted,
    /// The agent is booting: the deploy waits for its call-back.
    AgentBooting(AgentBoot),
}

/// Starts a deploy: a live ISO booted as it is by virtual media, or the agent booted to
/// write a disk image.
pub async fn start_deploy(
    driver: &dyn BmcDriver,
    deploy: &DeployConfig,
    settings: &StepSettings,
    config_image: Option<&ConfigUrls>,
) -> Result<DeployStarted, String> {
    let mode = if deploy.legacy_boot {
        BootMode::Legacy
    } else {
        BootMode::Uefi
    };
    if !deploy.image.is_live_iso() {
        let boot = boot_agent(driver, settings, config_image, mode)
            .await
            .map_err(|e| format!("booting the agent: {e}"))?;
        return Ok(DeployStarted::AgentBooting(boot));
    }
    if !has_virtual_cd(driver) {
        return Err(format!(
            "a live-iso image needs virtual media, which the {} driver has not",
            driver.driver_name()
        ));
    }
    boot_from_virtual_media_with(
        driver,
        &deploy.image.url,
        mode,
        settings.deadline(),
        settings.poll,
    )
    .await
    .map_err(|e| format!("booting {}: {e}", deploy.image.url))?;
    Ok(DeployStarted::LiveIsoBooted)
}

/// After the agent wrote the image: boot from disk from now on (the config image
/// ejected as well).
pub async fn finish_deploy(
    driver: &dyn BmcDriver,
    settings: &StepSettings,
) -> Result<(), BmcError> {
    eject_config_image(driver, settings).await?;
    boot_from_disk(driver, settings.deadline(), settings.poll).await
}

/// Tears down: media ejected (the config image's too), host off.
pub async fn tear_down(driver: &dyn BmcDriver, settings: &StepSettings) -> Result<(), BmcError> {
    power_off_and_eject(driver, settings.deadline(), settings.poll).await?;
    eject_config_image(driver, settings).await
}
