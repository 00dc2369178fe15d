//! `RedfishDriver`: the `BmcDriver` trait over a [`RedfishClient`] and a cached
//! [`Discovery`], so a warm operation costs one request (power on = one POST, a power
//! poll = one GET of the system).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, BootDevice, BootOverride, BootOverrideState,
    Capabilities, ConnectOptions, Credentials, DriverFactory, HardwareInventory, MediaKind,
    PowerAction, PowerState, Registry, Result, VirtualMediaSlot,
};

use crate::client::{AuthMode, ClientSettings, RedfishClient};
use crate::discovery::{Discovery, Slot, complete_slots, discover, read_managers};
use crate::hooks::{StandardHooks, VendorHooks, VendorSupport, choose, registered_vendors};
use crate::ladders;
use crate::model::{ComputerSystem, VirtualMedia};
use crate::quirks::{BmcIdentity, Quirk, QuirkSet};
use crate::vocabulary::{self, power_state, reset_candidates, slot_state};

/// How long a slot read stays good for the next read of the same slot. Writes through
/// this driver drop it at once. It spares the re-read right after discovery and between
/// the steps of one operation; nothing waits on it.
const SLOT_FRESH: Duration = Duration::from_secs(2);
/// How long a read of the system stays good: long enough to share one GET between the
/// boot read-back and the power check of one flow, shorter than any poll interval. Writes
/// to the system drop it.
const SYSTEM_FRESH: Duration = Duration::from_millis(250);
/// Reads of a slot after an eject before giving up on it reading empty (about 6 s).
const EJECT_SETTLE_READS: u32 = 8;

/// A Redfish BMC behind the [`BmcDriver`] trait: the one driver for every Redfish BMC,
/// with the vendor's hooks ([`crate::hooks`]) consulted where its firmware differs.
///
/// Requests are kept few: discovery reads only what the first operations need (see
/// [`Discovery`]), a slot or system just read is not read again within a moment
/// (`SLOT_FRESH`, `SYSTEM_FRESH`, dropped on every write), so a power poll is one GET and
/// power on one POST.
pub struct RedfishDriver {
    client: RedfishClient,
    discovery: RwLock<Arc<Discovery>>,
    slot_cache: Mutex<HashMap<String, (Instant, VirtualMedia)>>,
    system_cache: Mutex<Option<(Instant, ComputerSystem)>>,
    identity: BmcIdentity,
    quirks: QuirkSet,
    hooks: Arc<dyn VendorHooks>,
}

impl std::fmt::Debug for RedfishDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishDriver")
            .field("base", &self.client.base())
            .field("system", &self.discovery().system_path)
            .field("identity", &self.identity.to_string())
            .field("quirks", &self.quirks.profile)
            .field("hooks", &self.hooks.name())
            .finish()
    }
}

fn protocol_error(path: &str, e: crate::model::ModelError) -> BmcError {
    BmcError::Protocol {
        context: format!("GET {path}"),
        reason: e.to_string(),
    }
}

impl RedfishDriver {
    /// Connects: logs in (validating the credentials), discovers the system named by the
    /// address, its managers and virtual-media slots, and takes the hooks of the
    /// registered vendor ([`crate::hooks::register_vendor`]) that the BMC's identity (or
    /// the address scheme) names.
    pub async fn connect(
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<RedfishDriver> {
        RedfishDriver::connect_with(address, credentials, options, &registered_vendors()).await
    }

    /// [`RedfishDriver::connect`] choosing among these vendors instead of the registered
    /// ones.
    pub async fn connect_with(
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
        vendors: &[Arc<dyn VendorSupport>],
    ) -> Result<RedfishDriver> {
        let endpoint = address.redfish_endpoint().ok_or_else(|| {
            BmcError::unsupported(format!("{} addresses", address.scheme()), "redfish")
        })?;
        let settings = ClientSettings {
            connect: options.clone(),
            auth: if options.use_sessions {
                AuthMode::Auto
            } else {
                AuthMode::Basic
            },
            ..ClientSettings::default()
        };
        let client = RedfishClient::new(&endpoint, credentials.clone(), settings)?;
        RedfishDriver::over(
            client,
            address.redfish_system_id().as_deref(),
            Some(address),
            vendors,
        )
        .await
    }

    /// Builds a driver over an existing client (custom settings, tests), with the hooks
    /// of the registered vendor that claims the BMC.
    pub async fn with_client(
        client: RedfishClient,
        system_path: Option<&str>,
    ) -> Result<RedfishDriver> {
        RedfishDriver::over(client, system_path, None, &registered_vendors()).await
    }

    /// Builds a driver over an existing client, choosing hooks among `vendors` (an
    /// address's scheme may require one).
    pub async fn over(
        client: RedfishClient,
        system_path: Option<&str>,
        address: Option<&BmcAddress>,
        vendors: &[Arc<dyn VendorSupport>],
    ) -> Result<RedfishDriver> {
        client.login().await?;
        let mut discovery = discover(&client, system_path).await?;
        let mut identity = match &discovery.root {
            Some(root) => BmcIdentity::from_names(root.vendor.as_deref(), &root.oem_vendors),
            None => BmcIdentity::from_names(
                discovery.system.manufacturer.as_deref(),
                &discovery.system.oem_vendors,
            ),
        };
        if identity.needs_manager() {
            // Dell and HPE quirks depend on the BMC generation and firmware, which only
            // the manager tells: one more GET, for these vendors only.
            if discovery.managers.is_empty() {
                read_managers(&client, &mut discovery).await;
            }
            if let Some(m) = discovery.managers.first() {
                identity = identity.with_manager_parts(
                    m.model.as_deref(),
                    m.firmware_version.as_deref(),
                    &m.oem_vendors,
                );
            }
        }
        let quirks = QuirkSet::for_identity(&identity);
        client.set_quirks(&quirks);
        tracing::debug!(%identity, profile = quirks.profile, "redfish bmc identified");
        for note in &discovery.notes {
            tracing::debug!(note, "redfish discovery");
        }
        let now = Instant::now();
        let slots = discovery
            .slots
            .iter()
            .map(|s| (s.path.clone(), (now, s.media.clone())))
            .collect();
        let system = (now, discovery.system.clone());
        let vendor = choose(vendors, address, &identity, client.base())?.cloned();
        let mut driver = RedfishDriver {
            client,
            discovery: RwLock::new(Arc::new(discovery)),
            slot_cache: Mutex::new(slots),
            system_cache: Mutex::new(Some(system)),
            identity,
            quirks,
            hooks: Arc::new(StandardHooks),
        };
        if let Some(vendor) = vendor {
            driver.hooks = vendor.hooks(&driver).await?;
            tracing::debug!(
                vendor = vendor.name(),
                hooks = driver.hooks.name(),
                "vendor hooks"
            );
        }
        Ok(driver)
    }

    /// The vendor hooks in use ([`StandardHooks`] for a BMC no registered vendor claims).
    pub fn hooks(&self) -> &dyn VendorHooks {
        self.hooks.as_ref()
    }

    /// Who made the BMC and which firmware it runs, as detected at connect.
    pub fn identity(&self) -> &BmcIdentity {
        &self.identity
    }

    /// The BMC's quirks (from [`crate::quirks::PROFILES`]).
    pub fn quirks(&self) -> &QuirkSet {
        &self.quirks
    }

    /// Whether the BMC has this quirk.
    pub fn has_quirk(&self, quirk: Quirk) -> bool {
        self.quirks.has(quirk)
    }

    /// The client (request counts, raw requests).
    pub fn client(&self) -> &RedfishClient {
        &self.client
    }

    /// What discovery found (cached).
    pub fn discovery(&self) -> Arc<Discovery> {
        match self.discovery.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, d: Discovery) {
        match self.discovery.write() {
            Ok(mut g) => *g = Arc::new(d),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(d),
        }
    }

    /// Runs discovery again (after a firmware update or a BMC reset).
    pub async fn rediscover(&self) -> Result<()> {
        let system = self.discovery().system_path.clone();
        let fresh = discover(&self.client, Some(&system)).await?;
        self.forget_reads();
        self.store(fresh);
        Ok(())
    }

    /// Reads what discovery left for later: the managers and every slot.
    pub async fn discover_everything(&self) -> Result<Arc<Discovery>> {
        let mut d = (*self.discovery()).clone();
        crate::discovery::complete(&self.client, &mut d).await;
        self.store(d);
        Ok(self.discovery())
    }

    /// Drops every cached read, so the next operation reads the BMC again. Vendor layers
    /// call it after a change made by an OEM action.
    pub fn invalidate(&self) {
        self.forget_reads();
    }

    fn forget_reads(&self) {
        if let Ok(mut c) = self.slot_cache.lock() {
            c.clear();
        }
        self.forget_system();
    }

    fn forget_system(&self) {
        if let Ok(mut c) = self.system_cache.lock() {
            *c = None;
        }
    }

    fn forget_slot(&self, path: &str) {
        if let Ok(mut c) = self.slot_cache.lock() {
            c.remove(path);
        }
    }

    /// The system, read again unless it was read a moment ago.
    pub async fn system(&self) -> Result<ComputerSystem> {
        if let Some((at, system)) = self.system_cache.lock().ok().and_then(|c| c.clone()) {
            if at.elapsed() < SYSTEM_FRESH {
                return Ok(system);
            }
        }
        let path = self.discovery().system_path.clone();
        let body = self.client.get(&path).await?.body;
        let system = ComputerSystem::from_json(&body).map_err(|e| protocol_error(&path, e))?;
        if let Ok(mut c) = self.system_cache.lock() {
            *c = Some((Instant::now(), system.clone()));
        }
        Ok(system)
    }

    /// The slot this driver uses for `kind` images (as discovered; see
    /// [`RedfishDriver::read_slot`] for its current state).
    pub async fn slot_for(&self, kind: &MediaKind) -> Result<Slot> {
        let wants_usb = matches!(kind, MediaKind::Usb | MediaKind::Floppy);
        let slot_one_only = self.has_quirk(Quirk::OnlyVirtualMediaSlotOne);
        let mut d = self.discovery();
        let missing = if wants_usb {
            d.usb().is_none()
        } else {
            slot_one_only && d.cd().is_none_or(|s| s.media.id != "1")
        };
        if missing && !d.unread_slots.is_empty() {
            let mut more = (*d).clone();
            complete_slots(&self.client, &mut more).await;
            self.store(more);
            d = self.discovery();
        }
        let slot = match kind {
            MediaKind::Cd if slot_one_only => d
                .slots
                .iter()
                .find(|s| s.media.id == "1" && s.media.takes_cd()),
            MediaKind::Cd => d.cd(),
            MediaKind::Usb | MediaKind::Floppy => d.usb(),
            _ => None,
        };
        slot.cloned()
            .ok_or_else(|| BmcError::not_found(format!("a virtual-media slot for {kind} images")))
    }

    /// A slot's current state, read again unless it was read a moment ago.
    pub async fn read_slot(&self, slot: &Slot) -> Result<Slot> {
        let cached = self
            .slot_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&slot.path).cloned());
        if let Some((at, media)) = cached {
            if at.elapsed() < SLOT_FRESH {
                return Ok(Slot {
                    media,
                    ..slot.clone()
                });
            }
        }
        let body = self.client.get(&slot.path).await?.body;
        let media = VirtualMedia::from_json(&body).map_err(|e| protocol_error(&slot.path, e))?;
        if let Ok(mut c) = self.slot_cache.lock() {
            c.insert(slot.path.clone(), (Instant::now(), media.clone()));
        }
        Ok(Slot {
            media,
            ..slot.clone()
        })
    }

    /// Ejects the slot if it holds media and waits (briefly) until it reads empty: some
    /// firmware ejects asynchronously and reports `Inserted` for a moment after.
    async fn eject_and_wait(&self, kind: &MediaKind, slot: &Slot) -> Result<()> {
        if !self.read_slot(slot).await?.media.is_inserted() {
            return Ok(());
        }
        self.eject_media(kind).await?;
        for attempt in 0..EJECT_SETTLE_READS {
            self.forget_slot(&slot.path);
            if !self.read_slot(slot).await?.media.is_inserted() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250 * (1 << attempt.min(3)))).await;
        }
        Err(BmcError::NotApplied {
            operation: format!("eject from slot {}", slot.media.id),
            expected: "no media".to_string(),
            observed: "media still inserted".to_string(),
        })
    }
}

#[async_trait]
impl BmcDriver for RedfishDriver {
    fn driver_name(&self) -> &str {
        self.hooks.name()
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = self.standard_capabilities();
        self.hooks.adjust_capabilities(self, &mut c);
        c
    }

    #[tracing::instrument(name = "redfish.power_state", skip_all, fields(bmc = %self.client.base()))]
    async fn power_state(&self) -> Result<PowerState> {
        Ok(power_state(self.system().await?.power_state.as_deref()))
    }

    #[tracing::instrument(name = "redfish.power", skip_all, fields(bmc = %self.client.base(), hooks = self.hooks.name()))]
    async fn power(&self, action: PowerAction) -> Result<()> {
        let result = match self.hooks.power(self, action).await {
            Some(r) => r,
            None => self.standard_power(action).await,
        };
        result.map_err(|e| self.hooks.explain(e, &format!("power {action}")))
    }

    #[tracing::instrument(name = "redfish.boot_override", skip_all, fields(bmc = %self.client.base()))]
    async fn boot_override(&self) -> Result<BootOverrideState> {
        Ok(vocabulary::boot_override_state(&self.system().await?.boot))
    }

    #[tracing::instrument(name = "redfish.set_boot_override", skip_all, fields(bmc = %self.client.base(), hooks = self.hooks.name()))]
    async fn set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        if let Some(r) = self.hooks.set_boot_override(self, boot).await {
            return r.map_err(|e| self.hooks.explain(e, "the boot override"));
        }
        let result = async {
            self.hooks.before_configuration(self).await?;
            self.standard_set_boot_override(boot).await?;
            self.hooks.after_boot_override(self, boot).await
        }
        .await;
        result.map_err(|e| self.hooks.explain(e, "the boot override"))
    }

    #[tracing::instrument(name = "redfish.virtual_media", skip_all, fields(bmc = %self.client.base()))]
    /// The slots this driver uses: the CD slot, and the USB slot once it has been looked
    /// for. [`RedfishDriver::discover_everything`] reads every slot the BMC lists.
    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>> {
        let d = self.discovery();
        let mut out = Vec::new();
        for slot in [d.cd(), d.usb()].into_iter().flatten() {
            if out.iter().any(|s: &VirtualMediaSlot| s.id == slot.media.id) {
                continue;
            }
            out.push(slot_state(&self.read_slot(slot).await?));
        }
        Ok(out)
    }

    #[tracing::instrument(name = "redfish.insert_media", skip_all, fields(bmc = %self.client.base(), hooks = self.hooks.name()))]
    async fn insert_media(&self, kind: &MediaKind, image_url: &str) -> Result<()> {
        let result = match self.standard_insert_media(kind, image_url).await {
            Err(e) => match self
                .hooks
                .insert_media_fallback(self, kind, image_url, &e)
                .await
            {
                Some(r) => r,
                None => Err(e),
            },
            ok => ok,
        };
        result.map_err(|e| self.hooks.explain(e, "inserting virtual media"))
    }

    #[tracing::instrument(name = "redfish.eject_media", skip_all, fields(bmc = %self.client.base(), hooks = self.hooks.name()))]
    async fn eject_media(&self, kind: &MediaKind) -> Result<()> {
        let result = match self.standard_eject_media(kind).await {
            Err(e) => match self.hooks.eject_media_fallback(self, kind, &e).await {
                Some(r) => r,
                None => Err(e),
            },
            ok => ok,
        };
        result.map_err(|e| self.hooks.explain(e, "ejecting virtual media"))
    }

    #[tracing::instrument(name = "redfish.inventory", skip_all, fields(bmc = %self.client.base()))]
    async fn inventory(&self) -> Result<HardwareInventory> {
        self.standard_inventory()
            .await
            .map_err(|e| self.hooks.explain(e, "the inventory"))
    }

    #[tracing::instrument(name = "redfish.close", skip_all, fields(bmc = %self.client.base()))]
    async fn close(&self) -> Result<()> {
        self.client.close().await
    }
}

/// The standard Redfish steps, which the vendor hooks fall back on or build upon.
impl RedfishDriver {
    /// What plain Redfish says the BMC can do.
    pub fn standard_capabilities(&self) -> Capabilities {
        vocabulary::capabilities(&self.discovery())
    }

    /// A power action by `ComputerSystem.Reset` (the first `ResetType` the BMC allows).
    pub async fn standard_power(&self, action: PowerAction) -> Result<()> {
        let d = self.discovery();
        let reset = d
            .system
            .reset
            .as_ref()
            .ok_or_else(|| self.unsupported(&action.to_string()))?;
        let reset_type = reset_candidates(action)
            .iter()
            .find(|c| d.reset_types.is_empty() || d.reset_types.iter().any(|t| t == *c))
            .ok_or_else(|| self.unsupported(&action.to_string()))?;
        let toggles = *reset_type == "PushPowerButton";
        if toggles || (action == PowerAction::On && self.has_quirk(Quirk::PowerOnOnlyWhenOff)) {
            // A button press toggles power, and some BMCs refuse On when on: act only
            // when the host is not already where the action leads.
            self.forget_system();
            let now = self.power_state().await?;
            if matches!(
                (action, &now),
                (PowerAction::On, PowerState::On | PowerState::PoweringOn)
                    | (
                        PowerAction::SoftOff,
                        PowerState::Off | PowerState::PoweringOff
                    )
            ) {
                return Ok(());
            }
        }
        self.forget_system();
        let result = self
            .client
            .post(&reset.target, &json!({ "ResetType": reset_type }))
            .await;
        self.forget_system();
        match result {
            Ok(_) => Ok(()),
            // "Already on/off" answered as an error: success if the BMC is there already.
            Err(BmcError::Rejected {
                status: Some(400 | 409),
                ..
            }) if action.is_idempotent()
                && self.power_state().await.ok() == Some(action.target_state()) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A boot override by PATCH of `Boot` (with If-Match after a 428).
    pub async fn standard_set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        let d = self.discovery();
        if boot.device == BootDevice::Cd && self.has_quirk(Quirk::CdOverrideBootsPhysicalDrive) {
            return Err(BmcError::unsupported(
                "booting the virtual CD by BootSourceOverrideTarget Cd (this firmware boots \
                 the physical drive with it; register bmc-idrac, whose hooks boot it by \
                 configuration import)",
                format!("redfish on {}", self.identity),
            ));
        }
        let patch = ladders::boot_patch(
            boot,
            &d.system.boot.target_allowable,
            d.system.boot.mode.as_deref(),
        )
        .map_err(
            |ladders::BootPatchError::TargetNotAllowed { target, allowed }| {
                BmcError::InvalidRequest(format!(
                    "boot target {target} is not one the BMC allows ({})",
                    allowed.join(", ")
                ))
            },
        )?;
        let path = d.system_path.clone();
        self.forget_system();
        let result = self.client.patch(&path, &patch, None).await;
        self.forget_system();
        match result {
            Err(e) if ladders::wants_if_match(&e) => {
                let etag = self.client.get(&path).await?.etag;
                self.client
                    .patch(&path, &patch, etag.as_deref())
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// `InsertMedia` (or a PATCH of the slot where it has no action).
    pub async fn standard_insert_media(&self, kind: &MediaKind, image_url: &str) -> Result<()> {
        let slot = self.slot_for(kind).await?;
        if self.has_quirk(Quirk::EjectBeforeInsert) {
            self.eject_and_wait(kind, &slot).await?;
        }
        self.forget_slot(&slot.path);
        let Some(insert) = slot.media.insert.clone() else {
            // No action (Lenovo XCC, DMTF mockup): PATCH the slot.
            return self
                .client
                .patch(
                    &slot.path,
                    &ladders::insert_media_patch(image_url),
                    slot.media.etag.as_deref(),
                )
                .await
                .map(|_| ());
        };
        let mut body = ladders::insert_media_body(image_url);
        for _ in 0..ladders::INSERT_RUNGS {
            match self.client.post(&insert.target, &body).await {
                Ok(_) => {
                    self.forget_slot(&slot.path);
                    return Ok(());
                }
                Err(e) => match ladders::next_insert_media_body(&body, &e.to_string()) {
                    Some(next) => body = next,
                    None => return Err(e),
                },
            }
        }
        self.client.post(&insert.target, &body).await.map(|_| ())
    }

    /// `EjectMedia` (or a PATCH of the slot where it has no action).
    pub async fn standard_eject_media(&self, kind: &MediaKind) -> Result<()> {
        let slot = self.slot_for(kind).await?;
        if self.has_quirk(Quirk::NoEjectWhenEmpty)
            && !self.read_slot(&slot).await?.media.is_inserted()
        {
            return Ok(());
        }
        self.forget_slot(&slot.path);
        let result = match &slot.media.eject {
            Some(eject) => self
                .client
                .post(&eject.target, &json!({}))
                .await
                .map(|_| ()),
            None => self
                .client
                .patch(
                    &slot.path,
                    &ladders::eject_media_patch(),
                    slot.media.etag.as_deref(),
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(()),
            // Ejecting an empty slot fails on some BMCs (iLO): empty is success.
            Err(e) => {
                self.forget_slot(&slot.path);
                match self.read_slot(&slot).await {
                    Ok(s) if !s.media.is_inserted() => Ok(()),
                    _ => Err(e),
                }
            }
        }
    }

    /// The inventory from the system and its collections.
    pub async fn standard_inventory(&self) -> Result<HardwareInventory> {
        let system = self.system().await?;
        if self.discovery().managers.is_empty() {
            let mut d = (*self.discovery()).clone();
            read_managers(&self.client, &mut d).await;
            self.store(d);
        }
        let managers = self.discovery().managers.clone();
        let parts = crate::inventory::read_parts(&self.client, system, &managers).await;
        Ok(crate::inventory::to_inventory(parts))
    }
}

/// Builds [`RedfishDriver`]s for a [`Registry`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RedfishFactory;

#[async_trait]
impl DriverFactory for RedfishFactory {
    async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        Ok(Box::new(
            RedfishDriver::connect(address, credentials, options).await?,
        ))
    }
}

/// Registers the generic Redfish driver for `redfish`, `redfish-virtualmedia` and
/// `redfish-uefihttp` (each with `+http`/`+https`).
pub fn register(registry: &mut Registry) {
    let factory = Arc::new(RedfishFactory);
    for scheme in [
        BmcScheme::Redfish,
        BmcScheme::RedfishVirtualMedia,
        BmcScheme::RedfishUefiHttp,
    ] {
        registry.register(scheme, factory.clone());
    }
}
