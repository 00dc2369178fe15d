//! Vendor hooks: what a vendor's BMC does its own way, consulted by the one
//! [`RedfishDriver`] at fixed points, each with the standard behaviour as its default. A
//! method of the driver is written once and reaches every Redfish BMC; a vendor changes
//! only the steps its firmware does differently.
//!
//! A vendor crate (bmc-idrac, bmc-ilo) provides a [`VendorSupport`]: which BMCs it claims
//! (by the identity read at connect), which address schemes require it, and the hooks it
//! builds for one connected BMC (following the links and action targets that BMC
//! advertises). [`register_vendor`] makes it known to every [`RedfishDriver::connect`]
//! in the process. The hooks are chosen by the BMC's identity: a Dell behind a generic
//! `redfish-virtualmedia://` address gets Dell's hooks; an `idrac-virtualmedia://` address
//! whose BMC answers as another vendor is refused with a clear error.

use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use bmc_core::{
    BmcAddress, BmcError, BmcScheme, BootOverride, Capabilities, MediaKind, PowerAction, Result,
};

use crate::driver::RedfishDriver;
use crate::quirks::BmcIdentity;

/// The steps a vendor may do its own way. Every method has the standard behaviour as its
/// default: `None` from the `Option` ones means "do it the standard way".
#[async_trait]
pub trait VendorHooks: Send + Sync + fmt::Debug {
    /// The driver's name in logs and [`bmc_core::BmcDriver::driver_name`] (`idrac`,
    /// `ilo`; the standard hooks are `redfish`).
    fn name(&self) -> &str;

    /// Adjusts what the driver says it can do (iDRAC boots the virtual CD by an import
    /// even where the standard override does not list `Cd`).
    fn adjust_capabilities(&self, _driver: &RedfishDriver, _capabilities: &mut Capabilities) {}

    /// Runs before a configuration write (a boot override): readiness of the BMC.
    async fn before_configuration(&self, _driver: &RedfishDriver) -> Result<()> {
        Ok(())
    }

    /// A power action the vendor's way (iLO: soft off by the power button).
    async fn power(&self, _driver: &RedfishDriver, _action: PowerAction) -> Option<Result<()>> {
        None
    }

    /// A boot override the vendor's way (iDRAC: the virtual CD by configuration import).
    async fn set_boot_override(
        &self,
        _driver: &RedfishDriver,
        _boot: &BootOverride,
    ) -> Option<Result<()>> {
        None
    }

    /// Runs after the standard boot override was set (iLO: `BootOnNextServerReset` on
    /// the CD slot).
    async fn after_boot_override(
        &self,
        _driver: &RedfishDriver,
        _boot: &BootOverride,
    ) -> Result<()> {
        Ok(())
    }

    /// Another way to insert media after the standard action failed with `error`.
    async fn insert_media_fallback(
        &self,
        _driver: &RedfishDriver,
        _kind: &MediaKind,
        _image_url: &str,
        _error: &BmcError,
    ) -> Option<Result<()>> {
        None
    }

    /// Another way to eject media after the standard action failed with `error`.
    async fn eject_media_fallback(
        &self,
        _driver: &RedfishDriver,
        _kind: &MediaKind,
        _error: &BmcError,
    ) -> Option<Result<()>> {
        None
    }

    /// An error of `operation` as the vendor's message ids explain it (what to do).
    fn explain(&self, error: BmcError, _operation: &str) -> BmcError {
        error
    }
}

/// Plain Redfish: every step the standard way.
#[derive(Debug, Default, Clone, Copy)]
pub struct StandardHooks;

impl VendorHooks for StandardHooks {
    fn name(&self) -> &str {
        "redfish"
    }
}

/// A vendor's support: which BMCs it claims and the hooks it builds for one.
#[async_trait]
pub trait VendorSupport: Send + Sync + fmt::Debug {
    /// The vendor's name (`Dell iDRAC`), for errors and logs.
    fn name(&self) -> &'static str;

    /// Whether a BMC of this identity is the vendor's.
    fn claims(&self, identity: &BmcIdentity) -> bool;

    /// The address schemes that mean this vendor (`idrac-virtualmedia`): a BMC behind
    /// them that the vendor does not claim is refused.
    fn schemes(&self) -> &'static [BmcScheme];

    /// The hooks for one connected BMC of the vendor's.
    async fn hooks(&self, driver: &RedfishDriver) -> Result<Arc<dyn VendorHooks>>;
}

static VENDORS: RwLock<Vec<Arc<dyn VendorSupport>>> = RwLock::new(Vec::new());

/// Makes a vendor known to every [`RedfishDriver::connect`] in this process. Registering
/// a vendor of the same name again replaces it.
pub fn register_vendor(vendor: Arc<dyn VendorSupport>) {
    let mut vendors = match VENDORS.write() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    vendors.retain(|v| v.name() != vendor.name());
    vendors.push(vendor);
}

/// The vendors registered.
pub fn registered_vendors() -> Vec<Arc<dyn VendorSupport>> {
    match VENDORS.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// The vendor whose hooks a BMC gets: the one an address scheme requires (refused when it
/// does not claim the BMC), else the first that claims the BMC's identity, else none.
pub fn choose<'a>(
    vendors: &'a [Arc<dyn VendorSupport>],
    address: Option<&BmcAddress>,
    identity: &BmcIdentity,
    base: &str,
) -> Result<Option<&'a Arc<dyn VendorSupport>>> {
    let scheme = address.map(BmcAddress::scheme);
    if let Some(required) = vendors
        .iter()
        .find(|v| scheme.is_some_and(|s| v.schemes().contains(&s)))
    {
        if !required.claims(identity) {
            return Err(BmcError::InvalidRequest(format!(
                "the BMC at {base} answers as {identity}, not as a {}: an {} address needs \
                 one (use a redfish-virtualmedia:// or redfish:// address for this BMC)",
                required.name(),
                address.map(|a| a.scheme_str()).unwrap_or_default()
            )));
        }
        return Ok(Some(required));
    }
    Ok(vendors.iter().find(|v| v.claims(identity)))
}
