//! `IloDriver`: the generic Redfish driver plus what iLO does its own way.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, BootDevice, BootOverride, BootOverrideState,
    BootPersistence, Capabilities, ConnectOptions, Credentials, DriverFactory, HardwareInventory,
    MediaKind, PowerAction, PowerState, Registry, Result, VirtualMediaSlot,
};
use bmc_redfish::RedfishDriver;
use bmc_redfish::model::find_oem_action;
use bmc_redfish::quirks::Quirk;

use crate::messages::explain;

/// An HPE iLO 5 or 6 behind the [`BmcDriver`] trait.
///
/// Plain Redfish does most of the work through [`RedfishDriver`], which already honours
/// the iLO quirks that need no OEM call (eject before insert, no eject of an empty slot,
/// `On` only when off, the iLO not-ready message ids retried). This layer adds:
/// - `Oem.Hpe.BootOnNextServerReset` on the CD slot with a one-time CD boot, so the
///   virtual CD boots at the next reset as iLO intends;
/// - the OEM `HpeiLOVirtualMedia` insert and eject where the standard action fails;
/// - soft power off by a press of the power button, only when the host is on;
/// - iLO message ids turned into errors that say what to do ([`crate::messages`]).
pub struct IloDriver {
    redfish: RedfishDriver,
}

impl std::fmt::Debug for IloDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IloDriver")
            .field("redfish", &self.redfish)
            .finish()
    }
}

impl IloDriver {
    /// Connects through the generic Redfish connect (login, discovery, identity).
    pub async fn connect(
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<IloDriver> {
        Ok(IloDriver::over(
            RedfishDriver::connect(address, credentials, options).await?,
        ))
    }

    /// Wraps a connected Redfish driver.
    pub fn over(redfish: RedfishDriver) -> IloDriver {
        tracing::debug!(identity = %redfish.identity(), profile = redfish.quirks().profile, "ilo connected");
        IloDriver { redfish }
    }

    /// The Redfish driver underneath.
    pub fn redfish(&self) -> &RedfishDriver {
        &self.redfish
    }

    /// Posts the slot's OEM virtual-media action (`InsertVirtualMedia`/`EjectVirtualMedia`).
    async fn oem_media(
        &self,
        kind: &MediaKind,
        action: &str,
        body: serde_json::Value,
    ) -> Option<Result<()>> {
        let slot = self.redfish.slot_for(kind).await.ok()?;
        let target = find_oem_action(&slot.media.oem_actions, action)?
            .target
            .clone();
        self.redfish.invalidate();
        let result = self.redfish.client().post(&target, &body).await.map(|_| ());
        self.redfish.invalidate();
        Some(result)
    }

    /// Sets `Oem.Hpe.BootOnNextServerReset` on the CD slot when it holds media.
    async fn boot_cd_on_next_reset(&self) -> Result<()> {
        let slot = self.redfish.slot_for(&MediaKind::Cd).await?;
        let current = self.redfish.read_slot(&slot).await?;
        if !current.media.is_inserted() || current.media.boot_on_next_server_reset.is_none() {
            return Ok(());
        }
        self.redfish.invalidate();
        self.redfish
            .client()
            .patch(
                &slot.path,
                &json!({"Oem": {"Hpe": {"BootOnNextServerReset": true}}}),
                current.media.etag.as_deref(),
            )
            .await?;
        self.redfish.invalidate();
        let after = self.redfish.read_slot(&slot).await?;
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
impl BmcDriver for IloDriver {
    fn driver_name(&self) -> &str {
        "ilo"
    }

    fn capabilities(&self) -> Capabilities {
        self.redfish.capabilities()
    }

    async fn power_state(&self) -> Result<PowerState> {
        self.redfish.power_state().await
    }

    async fn power(&self, action: PowerAction) -> Result<()> {
        let button = find_oem_action(
            &self.redfish.discovery().system.oem_actions,
            "#HpeComputerSystemExt.PowerButton",
        )
        .map(|a| a.target.clone());
        match button {
            Some(target)
                if action == PowerAction::SoftOff
                    && self.redfish.has_quirk(Quirk::SoftOffByPowerButton) =>
            {
                self.redfish.invalidate();
                // A press toggles: only when the host is on.
                if matches!(
                    self.redfish.power_state().await?,
                    PowerState::Off | PowerState::PoweringOff
                ) {
                    return Ok(());
                }
                let result = self
                    .redfish
                    .client()
                    .post(&target, &json!({"PushType": "Press"}))
                    .await
                    .map(|_| ());
                self.redfish.invalidate();
                result.map_err(|e| explain(e, "soft power off"))
            }
            _ => self
                .redfish
                .power(action)
                .await
                .map_err(|e| explain(e, &format!("power {action}"))),
        }
    }

    async fn boot_override(&self) -> Result<BootOverrideState> {
        self.redfish.boot_override().await
    }

    async fn set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        self.redfish
            .set_boot_override(boot)
            .await
            .map_err(|e| explain(e, "the boot override"))?;
        if boot.device == BootDevice::Cd
            && boot.persistence == BootPersistence::Once
            && self.redfish.has_quirk(Quirk::BootOnNextServerReset)
        {
            self.boot_cd_on_next_reset()
                .await
                .map_err(|e| explain(e, "BootOnNextServerReset"))?;
        }
        Ok(())
    }

    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>> {
        self.redfish.virtual_media().await
    }

    async fn insert_media(&self, kind: &MediaKind, image_url: &str) -> Result<()> {
        match self.redfish.insert_media(kind, image_url).await {
            Ok(()) => Ok(()),
            Err(e @ (BmcError::Rejected { .. } | BmcError::NotFound { .. }))
                if self.redfish.has_quirk(Quirk::OemVirtualMediaActions) =>
            {
                tracing::debug!(error = %e, "standard InsertMedia failed; trying the iLO OEM action");
                match self
                    .oem_media(
                        kind,
                        "#HpeiLOVirtualMedia.InsertVirtualMedia",
                        json!({"Image": image_url}),
                    )
                    .await
                {
                    Some(result) => result.map_err(|e| explain(e, "inserting virtual media")),
                    None => Err(explain(e, "inserting virtual media")),
                }
            }
            Err(e) => Err(explain(e, "inserting virtual media")),
        }
    }

    async fn eject_media(&self, kind: &MediaKind) -> Result<()> {
        match self.redfish.eject_media(kind).await {
            Ok(()) => Ok(()),
            Err(e @ (BmcError::Rejected { .. } | BmcError::NotFound { .. }))
                if self.redfish.has_quirk(Quirk::OemVirtualMediaActions) =>
            {
                tracing::debug!(error = %e, "standard EjectMedia failed; trying the iLO OEM action");
                match self
                    .oem_media(kind, "#HpeiLOVirtualMedia.EjectVirtualMedia", json!({}))
                    .await
                {
                    Some(result) => result.map_err(|e| explain(e, "ejecting virtual media")),
                    None => Err(explain(e, "ejecting virtual media")),
                }
            }
            Err(e) => Err(explain(e, "ejecting virtual media")),
        }
    }

    async fn inventory(&self) -> Result<HardwareInventory> {
        self.redfish
            .inventory()
            .await
            .map_err(|e| explain(e, "the inventory"))
    }

    async fn close(&self) -> Result<()> {
        self.redfish.close().await
    }
}

/// Builds [`IloDriver`]s for a [`Registry`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IloFactory;

#[async_trait]
impl DriverFactory for IloFactory {
    async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        Ok(Box::new(
            IloDriver::connect(address, credentials, options).await?,
        ))
    }
}

/// Registers the iLO driver for `ilo5-redfish` and `ilo5-virtualmedia` (each with
/// `+http`/`+https`), which plain Redfish would otherwise serve as aliases.
pub fn register(registry: &mut Registry) {
    let factory = Arc::new(IloFactory);
    for scheme in [BmcScheme::Ilo5Redfish, BmcScheme::Ilo5VirtualMedia] {
        registry.register(scheme, factory.clone());
    }
}
