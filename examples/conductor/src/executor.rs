//! What the conductor does to a host, as functions over `&dyn BmcDriver`: verify, inspect,
//! boot the agent, start a deploy, finish it, tear down. No node records, no locks, no
//! permits: the caller holds those. Each step is a verified operation of bmc-core's.

use std::time::Duration;

use bmc_core::verified::{
    Deadline, PollPolicy, boot_from_disk, boot_from_virtual_media_with, boot_once_from_network,
    power_off_and_eject,
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
/// one-time network boot (IPMI hosts: the site's network boot serves the agent).
pub async fn boot_agent(driver: &dyn BmcDriver, settings: &StepSettings) -> Result<(), BmcError> {
    if has_virtual_cd(driver) {
        if settings.agent_image_url.is_empty() {
            return Err(BmcError::InvalidRequest(
                "no agent image configured to boot by virtual media".into(),
            ));
        }
        boot_from_virtual_media_with(
            driver,
            &settings.agent_image_url,
            BootMode::Uefi,
            settings.deadline(),
            settings.poll,
        )
        .await
        .map(|_| ())
    } else {
        boot_once_from_network(driver, settings.deadline(), settings.poll).await
    }
}

/// How a deploy went on once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployStarted {
    /// The live ISO is booted: the deploy is done.
    LiveIsoBooted,
    /// The agent is booting: the deploy waits for its call-back.
    AgentBooting,
}

/// Starts a deploy: a live ISO booted as it is by virtual media, or the agent booted to
/// write a disk image.
pub async fn start_deploy(
    driver: &dyn BmcDriver,
    deploy: &DeployConfig,
    settings: &StepSettings,
) -> Result<DeployStarted, String> {
    if !deploy.image.is_live_iso() {
        boot_agent(driver, settings)
            .await
            .map_err(|e| format!("booting the agent: {e}"))?;
        return Ok(DeployStarted::AgentBooting);
    }
    if !has_virtual_cd(driver) {
        return Err(format!(
            "a live-iso image needs virtual media, which the {} driver has not",
            driver.driver_name()
        ));
    }
    let mode = if deploy.legacy_boot {
        BootMode::Legacy
    } else {
        BootMode::Uefi
    };
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

/// After the agent wrote the image: boot from disk from now on.
pub async fn finish_deploy(
    driver: &dyn BmcDriver,
    settings: &StepSettings,
) -> Result<(), BmcError> {
    boot_from_disk(driver, settings.deadline(), settings.poll).await
}

/// Tears down: media ejected, host off.
pub async fn tear_down(driver: &dyn BmcDriver, settings: &StepSettings) -> Result<(), BmcError> {
    power_off_and_eject(driver, settings.deadline(), settings.poll).await
}
