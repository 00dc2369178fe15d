//! HPE's hooks for the one Redfish driver: what iLO does its own way.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, BootDevice, BootOverride, BootPersistence,
    ConnectOptions, Credentials, MediaKind, PowerAction, PowerState, Registry, Result,
};
use bmc_redfish::hooks::{VendorHooks, VendorSupport, register_vendor};
use bmc_redfish::model::find_oem_action;
use bmc_redfish::quirks::{BmcIdentity, Vendor};
use bmc_redfish::{RedfishDriver, RedfishFactory};

use crate::messages::explain;

/// HPE's support for the Redfish driver: it claims every HPE BMC, whatever the address
/// scheme, and `ilo5-redfish`/`ilo5-virtualmedia` addresses need one.
///
/// The generic driver already honours the iLO quirks that need no OEM call (eject before
/// insert, no eject of an empty slot, `On` only when off, the iLO not-ready message ids
/// retried). The hooks ([`IloHooks`]) add, on every iLO (as proliantutils does):
/// - `Oem.Hpe.BootOnNextServerReset` on the CD slot with a one-time CD boot, so the
///   virtual CD boots at the next reset as iLO intends;
/// - the OEM `HpeiLOVirtualMedia` insert and eject where the standard action fails;
/// - soft power off by a press of the power button, only when the host is on;
/// - iLO message ids turned into errors that say what to do ([`crate::messages`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hpe;

#[async_trait]
impl VendorSupport for Hpe {
    fn name(&self) -> &'static str {
        "HPE iLO"
    }

    fn claims(&self, identity: &BmcIdentity) -> bool {
        identity.vendor == Vendor::Hpe
    }

    fn schemes(&self) -> &'static [BmcScheme] {
        &[BmcScheme::Ilo5Redfish, BmcScheme::Ilo5VirtualMedia]
    }

    async fn hooks(&self, driver: &RedfishDriver) -> Result<Arc<dyn VendorHooks>> {
        tracing::debug!(identity = %driver.identity(), profile = driver.quirks().profile, "ilo hooks");
        Ok(Arc::new(IloHooks))
    }
}

/// The hooks for one iLO. They follow the OEM action targets the BMC advertises on the
/// system and its slots.
#[derive(Debug, Clone, Copy, Default)]
pub struct IloHooks;

impl IloHooks {
    /// Posts the slot's OEM virtual-media action (`InsertVirtualMedia`/`EjectVirtualMedia`).
    async fn oem_media(
        &self,
        driver: &RedfishDriver,
        kind: &MediaKind,
        action: &str,
        body: serde_json::Value,
    ) -> Option<Result<()>> {
        let slot = driver.slot_for(kind).await.ok()?;
        let target = find_oem_action(&slot.media.oem_actions, action)?
            .target
            .clone();
        driver.invalidate();
        let result = driver.client().post(&target, &body).await.map(|_| ());
        driver.invalidate();
        Some(result)
    }

    /// Sets `Oem.Hpe.BootOnNextServerReset` on the CD slot when it holds media.
    async fn boot_cd_on_next_reset(&self, driver: &RedfishDriver) -> Result<()> {
        let slot = driver.slot_for(&MediaKind::Cd).await?;
        let current = driver.read_slot(&slot).await?;
        if !current.media.is_inserted() || current.media.boot_on_next_server_reset.is_none() {
            return Ok(());
        }
        driver.invalidate();
        driver
            .client()
            .patch(
                &slot.path,
                &json!({"Oem": {"Hpe": {"BootOnNextServerReset": true}}}),
                current.media.etag.as_deref(),
            )
            .await?;
        driver.invalidate();
        let after = driver.read_slot(&slot).await?;
        if after.media.boot_on_next_server_reset != Some(true) {
            return Err(BmcError::NotApplied {
                operation: format!("BootOnNextServerReset on slot {}", slot.media.id),
                expected: "true".to_string(),
                observed: format!("{:?}", after.media.boot_on_next_server_reset),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl VendorHooks for IloHooks {
    fn name(&self) -> &str {
        "ilo"
    }

    async fn power(&self, driver: &RedfishDriver, action: PowerAction) -> Option<Result<()>> {
        if action != PowerAction::SoftOff {
            return None;
        }
        let target = find_oem_action(
            &driver.discovery().system.oem_actions,
            "#HpeComputerSystemExt.PowerButton",
        )?
        .target
        .clone();
        driver.invalidate();
        // A press toggles: only when the host is on.
        match driver.power_state().await {
            Ok(PowerState::Off | PowerState::PoweringOff) => return Some(Ok(())),
            Ok(_) => {}
            Err(e) => return Some(Err(e)),
        }
        let result = driver
            .client()
            .post(&target, &json!({"PushType": "Press"}))
            .await
            .map(|_| ());
        driver.invalidate();
        Some(result)
    }

    async fn after_boot_override(&self, driver: &RedfishDriver, boot: &BootOverride) -> Result<()> {
        if boot.device == BootDevice::Cd && boot.persistence == BootPersistence::Once {
            self.boot_cd_on_next_reset(driver)
                .await
                .map_err(|e| explain(e, "BootOnNextServerReset"))?;
        }
        Ok(())
    }

    async fn insert_media_fallback(
        &self,
        driver: &RedfishDriver,
        kind: &MediaKind,
        image_url: &str,
        error: &BmcError,
    ) -> Option<Result<()>> {
        if !matches!(error, BmcError::Rejected { .. } | BmcError::NotFound { .. }) {
            return None;
        }
        tracing::debug!(%error, "standard InsertMedia failed; trying the iLO OEM action");
        self.oem_media(
            driver,
            kind,
            "#HpeiLOVirtualMedia.InsertVirtualMedia",
            json!({"Image": image_url}),
        )
        .await
    }

    async fn eject_media_fallback(
        &self,
        driver: &RedfishDriver,
        kind: &MediaKind,
        error: &BmcError,
    ) -> Option<Result<()>> {
        if !matches!(error, BmcError::Rejected { .. } | BmcError::NotFound { .. }) {
            return None;
        }
        tracing::debug!(%error, "standard EjectMedia failed; trying the iLO OEM action");
        self.oem_media(
            driver,
            kind,
            "#HpeiLOVirtualMedia.EjectVirtualMedia",
            json!({}),
        )
        .await
    }

    fn explain(&self, error: BmcError, operation: &str) -> BmcError {
        explain(error, operation)
    }
}

/// Connects to an iLO with HPE's hooks; a BMC that does not answer as an HPE is refused.
pub async fn connect(
    address: &BmcAddress,
    credentials: &Credentials,
    options: &ConnectOptions,
) -> Result<RedfishDriver> {
    let hpe: Arc<dyn VendorSupport> = Arc::new(Hpe);
    let driver = RedfishDriver::connect_with(address, credentials, options, &[hpe]).await?;
    if driver.driver_name() != "ilo" {
        return Err(BmcError::InvalidRequest(format!(
            "the BMC at {} answers as {}, not as an HPE iLO",
            driver.client().base(),
            driver.identity()
        )));
    }
    Ok(driver)
}

/// Registers HPE's hooks for every Redfish connect in the process (so an HPE behind a
/// generic `redfish*` address gets them too) and the Redfish driver for `ilo5-redfish`
/// and `ilo5-virtualmedia` (each with `+http`/`+https`), where a BMC that does not answer
/// as an HPE is refused.
pub fn register(registry: &mut Registry) {
    register_vendor(Arc::new(Hpe));
    let factory = Arc::new(RedfishFactory);
    for scheme in [BmcScheme::Ilo5Redfish, BmcScheme::Ilo5VirtualMedia] {
        registry.register(scheme, factory.clone());
    }
}
