//! The `BmcDriver` trait and the capability set each driver declares.

use async_trait::async_trait;

use crate::error::{BmcError, Result};
use crate::types::{
    BootDevice, BootMode, BootOverride, BootOverrideState, HardwareInventory, MediaKind,
    PowerAction, PowerState, VirtualMediaSlot,
};

/// What a driver (for this BMC) can do, declared up front so callers can choose a path
/// before trying. A method outside the set returns [`BmcError::Unsupported`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Power actions the driver can perform ([`BmcDriver::power`]).
    pub power_actions: Vec<PowerAction>,
    /// Boot devices [`BmcDriver::set_boot_override`] accepts.
    pub boot_devices: Vec<BootDevice>,
    /// Boot modes that can be selected with an override.
    pub boot_modes: Vec<BootMode>,
    /// Whether a persistent (not only once) override can be set.
    pub persistent_boot: bool,
    /// Media kinds [`BmcDriver::insert_media`] accepts; empty means no virtual media.
    pub virtual_media: Vec<MediaKind>,
    /// Whether [`BmcDriver::inventory`] works.
    pub inventory: bool,
}

impl Capabilities {
    /// Whether `action` can be performed.
    pub fn can_power(&self, action: PowerAction) -> bool {
        self.power_actions.contains(&action)
    }

    /// Whether the driver can boot from `device`.
    pub fn can_boot_from(&self, device: &BootDevice) -> bool {
        self.boot_devices.contains(device)
    }

    /// Whether virtual media of `kind` can be inserted.
    pub fn can_insert(&self, kind: &MediaKind) -> bool {
        self.virtual_media.contains(kind)
    }
}

/// A connection to one BMC: power, boot device, virtual media, inventory.
///
/// Object safe: drivers are used as `Box<dyn BmcDriver>` from a [`crate::Registry`].
/// Methods a driver cannot do keep their default body, which returns
/// [`BmcError::Unsupported`]; [`BmcDriver::capabilities`] says up front which ones work.
///
/// Writes (`power`, `set_boot_override`, `insert_media`, `eject_media`) return once the BMC
/// has accepted the request; they do not wait for it to take effect. The verified
/// operations in [`crate::verified`] add the waiting and reading back.
#[async_trait]
pub trait BmcDriver: Send + Sync {
    /// A short name for logs and errors, e.g. `redfish` or `ipmi`.
    fn driver_name(&self) -> &str;

    /// What this driver can do with this BMC.
    fn capabilities(&self) -> Capabilities;

    /// The current power state.
    async fn power_state(&self) -> Result<PowerState> {
        Err(self.unsupported("power state"))
    }

    /// Requests a power action.
    async fn power(&self, action: PowerAction) -> Result<()> {
        Err(self.unsupported(&action.to_string()))
    }

    /// The boot override currently set.
    async fn boot_override(&self) -> Result<BootOverrideState> {
        Err(self.unsupported("read boot override"))
    }

    /// Sets the boot device for the next boot or persistently, optionally with a mode.
    async fn set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        Err(self.unsupported(&format!("boot from {}", boot.device)))
    }

    /// The virtual-media slots and what is inserted in them.
    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>> {
        Err(self.unsupported("virtual media"))
    }

    /// Inserts the image at `image_url` into a slot that accepts `kind`.
    async fn insert_media(&self, kind: &MediaKind, image_url: &str) -> Result<()> {
        let _ = image_url;
        Err(self.unsupported(&format!("insert {kind} media")))
    }

    /// Ejects whatever is in the slot that accepts `kind`; nothing inserted is success.
    async fn eject_media(&self, kind: &MediaKind) -> Result<()> {
        Err(self.unsupported(&format!("eject {kind} media")))
    }

    /// Out-of-band hardware inventory.
    async fn inventory(&self) -> Result<HardwareInventory> {
        Err(self.unsupported("inventory"))
    }

    /// Releases what the driver holds on the BMC (sessions). Later calls may reconnect.
    async fn close(&self) -> Result<()> {
        Ok(())
    }

    /// Builds the [`BmcError::Unsupported`] error for `operation` on this driver.
    fn unsupported(&self, operation: &str) -> BmcError {
        BmcError::unsupported(operation, self.driver_name())
    }
}

impl std::fmt::Debug for dyn BmcDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BmcDriver({})", self.driver_name())
    }
}
