//! `RedfishDriver`: the `BmcDriver` trait over a [`RedfishClient`] and a cached
//! [`Discovery`], so a warm operation costs one request (power on = one POST, a power
//! poll = one GET of the system).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, BootDevice, BootMode, BootOverride,
    BootOverrideState, BootPersistence, Capabilities, ConnectOptions, Cpu, Credentials, Disk,
    DiskKind, DriverFactory, FirmwareVersion, HardwareInventory, MediaKind, MemoryModule, Nic,
    PowerAction, PowerState, Registry, Result, SystemIdentity, VirtualMediaSlot,
};

use crate::client::{AuthMode, ClientSettings, RedfishClient};
use crate::discovery::{Discovery, Slot, complete_slots, discover, read_managers};
use crate::hooks::{StandardHooks, VendorHooks, VendorSupport, choose, registered_vendors};
use crate::model::{
    Collection, ComputerSystem, Drive, EthernetInterface, Memory, Processor, SimpleStorage,
    Storage, VirtualMedia,
};
use crate::quirks::{BmcIdentity, Quirk, QuirkSet};

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

/// The `ResetType`s to try for an action, best first.
fn reset_candidates(action: PowerAction) -> &'static [&'static str] {
    match action {
        PowerAction::On => &["On", "ForceOn"],
        PowerAction::Off => &["ForceOff"],
        PowerAction::SoftOff => &["GracefulShutdown", "PushPowerButton"],
        PowerAction::Reset => &["ForceRestart", "GracefulRestart", "PowerCycle"],
        PowerAction::PowerCycle => &["PowerCycle", "ForceRestart"],
    }
}

fn boot_target(device: &BootDevice) -> &str {
    match device {
        BootDevice::Pxe => "Pxe",
        BootDevice::Disk => "Hdd",
        BootDevice::Cd => "Cd",
        BootDevice::BiosSetup => "BiosSetup",
        BootDevice::UefiHttp => "UefiHttp",
        BootDevice::Other(s) => s,
        _ => "None",
    }
}

fn boot_device(target: &str) -> Option<BootDevice> {
    match target {
        "None" => None,
        "Pxe" => Some(BootDevice::Pxe),
        "Hdd" => Some(BootDevice::Disk),
        "Cd" | "UsbCd" => Some(BootDevice::Cd),
        "BiosSetup" => Some(BootDevice::BiosSetup),
        "UefiHttp" => Some(BootDevice::UefiHttp),
        other => Some(BootDevice::Other(other.to_string())),
    }
}

fn power_state(s: Option<&str>) -> PowerState {
    match s {
        Some("On") => PowerState::On,
        Some("Off") => PowerState::Off,
        Some("PoweringOn") => PowerState::PoweringOn,
        Some("PoweringOff") => PowerState::PoweringOff,
        Some(other) => PowerState::Other(other.to_string()),
        None => PowerState::Other("unknown".to_string()),
    }
}

fn media_kinds(m: &VirtualMedia) -> Vec<MediaKind> {
    let mut kinds = Vec::new();
    if m.takes_cd() {
        kinds.push(MediaKind::Cd);
    }
    if m.takes_usb() {
        kinds.push(MediaKind::Usb);
    }
    kinds
}

fn slot_state(slot: &Slot) -> VirtualMediaSlot {
    VirtualMediaSlot {
        id: slot.media.id.clone(),
        kinds: media_kinds(&slot.media),
        inserted: slot.media.is_inserted(),
        image: slot.media.image.clone(),
        write_protected: slot.media.write_protected,
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

    async fn members<T>(
        &self,
        collection: Option<&String>,
        read: fn(&Value) -> std::result::Result<T, crate::model::ModelError>,
    ) -> Vec<T> {
        let Some(path) = collection else {
            return Vec::new();
        };
        let members = match self
            .client
            .get(path)
            .await
            .map(|r| Collection::from_json(&r.body))
        {
            Ok(Ok(c)) => c.members,
            _ => return Vec::new(),
        };
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            // One unreadable member must not hide the rest.
            if let Ok(r) = self.client.get(&m).await {
                if let Ok(item) = read(&r.body) {
                    out.push(item);
                }
            }
        }
        out
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
        let boot = self.system().await?.boot;
        let enabled = boot.enabled.as_deref();
        let active = !matches!(enabled, Some("Disabled"));
        Ok(BootOverrideState {
            device: if active {
                boot.target.as_deref().and_then(boot_device)
            } else {
                None
            },
            persistence: match enabled {
                Some("Once") => Some(BootPersistence::Once),
                Some("Continuous") => Some(BootPersistence::Persistent),
                _ => None,
            },
            mode: match boot.mode.as_deref() {
                Some("UEFI") => Some(BootMode::Uefi),
                Some("Legacy") => Some(BootMode::Legacy),
                _ => None,
            },
        })
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
        let d = self.discovery();
        let allowed = |action: PowerAction| {
            d.system.reset.is_some()
                && (d.reset_types.is_empty()
                    || reset_candidates(action)
                        .iter()
                        .any(|c| d.reset_types.iter().any(|t| t == c)))
        };
        let power_actions = [
            PowerAction::On,
            PowerAction::Off,
            PowerAction::SoftOff,
            PowerAction::Reset,
            PowerAction::PowerCycle,
        ]
        .into_iter()
        .filter(|a| allowed(*a))
        .collect();
        let boot = &d.system.boot;
        let boot_devices = if !boot.present {
            Vec::new()
        } else if boot.target_allowable.is_empty() {
            vec![
                BootDevice::Pxe,
                BootDevice::Disk,
                BootDevice::Cd,
                BootDevice::BiosSetup,
            ]
        } else {
            boot.target_allowable
                .iter()
                .filter_map(|t| boot_device(t))
                .filter(|b| !matches!(b, BootDevice::Other(_)))
                .collect()
        };
        let mut virtual_media = Vec::new();
        if d.cd().is_some() {
            virtual_media.push(MediaKind::Cd);
        }
        // A USB slot may still be among the slots not read yet.
        if d.usb().is_some() || !d.unread_slots.is_empty() {
            virtual_media.push(MediaKind::Usb);
        }
        Capabilities {
            power_actions,
            boot_devices,
            boot_modes: if boot.mode.is_some() || !boot.mode_allowable.is_empty() {
                vec![BootMode::Uefi, BootMode::Legacy]
            } else {
                Vec::new()
            },
            persistent_boot: boot.enabled_allowable.is_empty()
                || boot.enabled_allowable.iter().any(|e| e == "Continuous"),
            virtual_media,
            inventory: true,
        }
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
        let target = boot_target(&boot.device);
        let allowed = &d.system.boot.target_allowable;
        if !allowed.is_empty() && !allowed.iter().any(|t| t == target) {
            return Err(BmcError::InvalidRequest(format!(
                "boot target {target} is not one the BMC allows ({})",
                allowed.join(", ")
            )));
        }
        let mut body = json!({
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": match boot.persistence {
                BootPersistence::Once => "Once",
                BootPersistence::Persistent => "Continuous",
            },
        });
        match boot.mode {
            Some(mode) => {
                body["BootSourceOverrideMode"] = json!(match mode {
                    BootMode::Uefi => "UEFI",
                    BootMode::Legacy => "Legacy",
                });
            }
            // Some firmware (Supermicro) falls back to its default mode unless the mode is
            // sent with every boot change: send back the one it reports.
            None => {
                if let Some(current) = &d.system.boot.mode {
                    body["BootSourceOverrideMode"] = json!(current);
                }
            }
        }
        let path = d.system_path.clone();
        let patch = json!({ "Boot": body });
        self.forget_system();
        let result = self.client.patch(&path, &patch, None).await;
        self.forget_system();
        match result {
            // 428: this BMC insists on If-Match; fetch the ETag and try again.
            Err(BmcError::Rejected {
                status: Some(428), ..
            }) => {
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
            let body = json!({"Image": image_url, "Inserted": true, "WriteProtected": true});
            return self
                .client
                .patch(&slot.path, &body, slot.media.etag.as_deref())
                .await
                .map(|_| ());
        };
        // Inserted/WriteProtected are left out: their defaults are what we want, and
        // Supermicro rejects them.
        let mut body = json!({ "Image": image_url });
        for _ in 0..3 {
            match self.client.post(&insert.target, &body).await {
                Ok(_) => {
                    self.forget_slot(&slot.path);
                    return Ok(());
                }
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("TransferProtocolType")
                        && body.get("TransferProtocolType").is_none()
                    {
                        let proto = if image_url.starts_with("https") {
                            "HTTPS"
                        } else {
                            "HTTP"
                        };
                        body["TransferProtocolType"] = json!(proto);
                    } else if text.contains("TransferMethod")
                        && body.get("TransferMethod").is_none()
                    {
                        body["TransferMethod"] = json!("Stream");
                    } else {
                        return Err(e);
                    }
                }
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
            None => {
                let body = json!({"Image": null, "Inserted": false});
                self.client
                    .patch(&slot.path, &body, slot.media.etag.as_deref())
                    .await
                    .map(|_| ())
            }
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
        let d = self.discovery();
        let cpus = self
            .members(system.processors.as_ref(), Processor::from_json)
            .await
            .into_iter()
            .filter(|p| p.state.as_deref() != Some("Absent"))
            .filter(|p| p.processor_type.as_deref().is_none_or(|t| t == "CPU"))
            .map(|p| Cpu {
                id: p.id,
                model: p.model,
                architecture: p.architecture,
                cores: p.cores.and_then(|c| u32::try_from(c).ok()),
                threads: p.threads.and_then(|c| u32::try_from(c).ok()),
                max_speed_mhz: p.max_speed_mhz.and_then(|c| u32::try_from(c).ok()),
            })
            .collect();
        let memory = self
            .members(system.memory.as_ref(), Memory::from_json)
            .await
            .into_iter()
            .filter(|m| m.state.as_deref() != Some("Absent") && m.capacity_mib.unwrap_or(0) > 0)
            .map(|m| MemoryModule {
                id: m.id,
                capacity_mib: m.capacity_mib,
                memory_type: m.device_type,
                speed_mhz: m.speed_mhz.and_then(|c| u32::try_from(c).ok()),
            })
            .collect();
        let nics = self
            .members(
                system.ethernet_interfaces.as_ref(),
                EthernetInterface::from_json,
            )
            .await
            .into_iter()
            .map(|n| Nic {
                mac: n.mac.as_deref().and_then(|m| m.parse().ok()),
                id: n.id,
                speed_mbps: n.speed_mbps.and_then(|c| u32::try_from(c).ok()),
                link_up: n.link_status.map(|s| s == "LinkUp"),
            })
            .collect();
        let mut disks = Vec::new();
        for storage in self
            .members(system.storage.as_ref(), Storage::from_json)
            .await
        {
            for path in storage.drives {
                if let Ok(r) = self.client.get(&path).await {
                    if let Ok(drive) = Drive::from_json(&r.body) {
                        disks.push(disk(drive));
                    }
                }
            }
        }
        if disks.is_empty() {
            for ss in self
                .members(system.simple_storage.as_ref(), SimpleStorage::from_json)
                .await
            {
                for (name, model, size) in ss.devices {
                    disks.push(Disk {
                        id: name,
                        model,
                        serial_number: None,
                        size_bytes: size,
                        kind: DiskKind::Unknown,
                    });
                }
            }
        }
        let mut firmware = Vec::new();
        if let Some(v) = &system.bios_version {
            firmware.push(FirmwareVersion {
                component: "BIOS".to_string(),
                version: v.clone(),
            });
        }
        for m in &d.managers {
            if let Some(v) = &m.firmware_version {
                firmware.push(FirmwareVersion {
                    component: format!("BMC {}", m.id),
                    version: v.clone(),
                });
            }
        }
        Ok(HardwareInventory {
            system: SystemIdentity {
                manufacturer: system.manufacturer,
                model: system.model,
                serial_number: system.serial_number,
                sku: system.sku,
                uuid: system.uuid,
                hostname: system.hostname,
            },
            cpus,
            memory,
            total_memory_mib: system.total_memory_gib.map(|g| (g * 1024.0).round() as u64),
            nics,
            disks,
            firmware,
        })
    }
}

fn disk(d: Drive) -> Disk {
    let kind = match (d.protocol.as_deref(), d.media_type.as_deref()) {
        (Some(p), _) if p.eq_ignore_ascii_case("NVMe") => DiskKind::Nvme,
        (_, Some("SSD")) => DiskKind::Ssd,
        (_, Some("HDD")) => DiskKind::Hdd,
        _ => DiskKind::Unknown,
    };
    Disk {
        id: d.name.unwrap_or(d.id),
        model: d.model,
        serial_number: d.serial_number,
        size_bytes: d.capacity_bytes,
        kind,
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
