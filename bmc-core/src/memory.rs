//! An in-memory BMC behind the [`BmcDriver`] trait, for testing what is built on the
//! trait (as nv-redfish's `bmc-mock` serves its users): power takes a number of reads to
//! change, writes can be dropped (the BMC says OK and forgets), errors can be injected,
//! and every call is recorded. Clones share one BMC; [`MemoryBmc::factory`] hands it to a
//! [`Registry`](crate::Registry).
//!
//! ```
//! use bmc_core::memory::MemoryBmc;
//! use bmc_core::{BmcDriver, PowerAction, PowerState};
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     let bmc = MemoryBmc::new(PowerState::Off).with(|s| s.transition_reads = 0);
//!     bmc.power(PowerAction::On).await?;
//!     assert_eq!(bmc.power_state().await?, PowerState::On);
//!     assert_eq!(bmc.calls().len(), 2);
//!     Ok::<(), bmc_core::BmcError>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::sync::lock;
use crate::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootMode, BootOverride, BootOverrideState,
    Capabilities, ConnectOptions, Credentials, DriverFactory, HardwareInventory, MediaKind,
    PowerAction, PowerState, Result, VirtualMediaSlot,
};

/// What the in-memory BMC holds; change it through [`MemoryBmc::with`].
#[derive(Debug)]
pub struct State {
    /// The power state reported.
    pub power: PowerState,
    /// A power change in progress: the state it reaches and the reads left until then.
    pub pending: Option<(PowerState, u32)>,
    /// How many power-state reads a transition takes.
    pub transition_reads: u32,
    /// Power actions answer OK and change nothing.
    pub drop_power: bool,
    /// Boot overrides answer OK and change nothing.
    pub drop_boot: bool,
    /// Media inserts answer OK and change nothing.
    pub drop_media: bool,
    /// The next this-many power actions answer "busy".
    pub busy_power_calls: u32,
    /// Power actions fail with an authentication error (not retryable).
    pub fail_power_with_auth: bool,
    /// The next power action is refused with a 500 after the host went to the action's
    /// target by itself (unless `drop_power`), as sushy-tools refuses a power-off of a
    /// domain that has just stopped.
    pub reached_then_refused: bool,
    /// The boot override reported.
    pub boot: BootOverrideState,
    /// The virtual-media slots.
    pub slots: Vec<VirtualMediaSlot>,
    /// The inventory answered; `None`: inventory is unsupported.
    pub inventory: Option<HardwareInventory>,
    /// Every call, in order (`power_state`, `insert_media CD http://…`, …).
    pub calls: Vec<String>,
}

/// An in-memory BMC; clones share it.
#[derive(Debug, Clone)]
pub struct MemoryBmc {
    /// Its state.
    pub state: Arc<Mutex<State>>,
    /// What it says it can do.
    pub caps: Capabilities,
}

/// Every power action, PXE, disk and CD boot, both boot modes, persistent boot, CD and USB
/// media; no inventory.
pub fn full_capabilities() -> Capabilities {
    Capabilities {
        power_actions: vec![
            PowerAction::On,
            PowerAction::Off,
            PowerAction::SoftOff,
            PowerAction::Reset,
            PowerAction::PowerCycle,
        ],
        boot_devices: vec![BootDevice::Pxe, BootDevice::Disk, BootDevice::Cd],
        boot_modes: vec![BootMode::Uefi, BootMode::Legacy],
        persistent_boot: true,
        virtual_media: vec![MediaKind::Cd, MediaKind::Usb],
        inventory: false,
    }
}

impl MemoryBmc {
    /// A BMC in this power state, with a CD and a USB slot, both empty.
    pub fn new(power: PowerState) -> MemoryBmc {
        MemoryBmc {
            state: Arc::new(Mutex::new(State {
                power,
                pending: None,
                transition_reads: 2,
                drop_power: false,
                drop_boot: false,
                drop_media: false,
                busy_power_calls: 0,
                fail_power_with_auth: false,
                reached_then_refused: false,
                boot: BootOverrideState::default(),
                slots: vec![
                    VirtualMediaSlot {
                        id: "Floppy1".into(),
                        kinds: vec![MediaKind::Floppy, MediaKind::Usb],
                        inserted: false,
                        image: None,
                        write_protected: None,
                    },
                    VirtualMediaSlot {
                        id: "CD1".into(),
                        kinds: vec![MediaKind::Cd],
                        inserted: false,
                        image: None,
                        write_protected: Some(true),
                    },
                ],
                inventory: None,
                calls: Vec::new(),
            })),
            caps: full_capabilities(),
        }
    }

    /// Changes its state (a builder step).
    pub fn with<F: FnOnce(&mut State)>(self, f: F) -> MemoryBmc {
        f(&mut lock(&self.state));
        self
    }

    /// With this inventory (and the capability to report it).
    pub fn with_inventory(mut self, inventory: HardwareInventory) -> MemoryBmc {
        self.caps.inventory = true;
        self.with(|s| s.inventory = Some(inventory))
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }

    /// The power state now, without counting as a read.
    pub fn power_now(&self) -> PowerState {
        lock(&self.state).power.clone()
    }

    /// A factory that hands out this BMC (sharing its state) for every address.
    pub fn factory(&self) -> Arc<dyn DriverFactory> {
        Arc::new(MemoryFactory(self.clone()))
    }

    fn log(&self, call: String) -> MutexGuard<'_, State> {
        let mut s = lock(&self.state);
        s.calls.push(call);
        s
    }
}

/// [`MemoryBmc::factory`].
#[derive(Debug)]
struct MemoryFactory(MemoryBmc);

#[async_trait]
impl DriverFactory for MemoryFactory {
    async fn connect(
        &self,
        _address: &BmcAddress,
        _credentials: &Credentials,
        _options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        Ok(Box::new(self.0.clone()))
    }
}

#[async_trait]
impl BmcDriver for MemoryBmc {
    fn driver_name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    async fn power_state(&self) -> Result<PowerState> {
        let mut s = self.log("power_state".into());
        if let Some((target, left)) = s.pending.take() {
            if left <= 1 {
                s.power = target;
            } else {
                s.pending = Some((target, left - 1));
            }
        }
        Ok(s.power.clone())
    }

    async fn power(&self, action: PowerAction) -> Result<()> {
        let mut s = self.log(format!("power {action}"));
        if s.fail_power_with_auth {
            return Err(BmcError::AuthenticationFailed {
                reason: "session expired, login refused".into(),
            });
        }
        if s.reached_then_refused {
            s.reached_then_refused = false;
            if !s.drop_power {
                s.power = action.target_state();
                s.pending = None;
            }
            return Err(BmcError::Rejected {
                operation: format!("power {action}"),
                status: Some(500),
                messages: vec![crate::BmcMessage {
                    id: "Base.1.0.GeneralError".into(),
                    text: "Requested operation is not valid: domain is not running".into(),
                }],
            });
        }
        if s.busy_power_calls > 0 {
            s.busy_power_calls -= 1;
            return Err(BmcError::Busy {
                reason: "job in progress".into(),
                retry_after: None,
            });
        }
        if !s.drop_power {
            let n = s.transition_reads;
            if n == 0 {
                s.power = action.target_state();
            } else {
                s.pending = Some((action.target_state(), n));
            }
        }
        Ok(())
    }

    async fn boot_override(&self) -> Result<BootOverrideState> {
        Ok(self.log("boot_override".into()).boot.clone())
    }

    async fn set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        let mut s = self.log(format!("set_boot_override {} {:?}", boot.device, boot.mode));
        if !s.drop_boot {
            s.boot = BootOverrideState {
                device: Some(boot.device.clone()),
                persistence: Some(boot.persistence),
                mode: boot.mode,
            };
        }
        Ok(())
    }

    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>> {
        Ok(self.log("virtual_media".into()).slots.clone())
    }

    async fn insert_media(&self, kind: &MediaKind, image_url: &str) -> Result<()> {
        let mut s = self.log(format!("insert_media {kind} {image_url}"));
        let drop = s.drop_media;
        let index = slot_for(&s.slots, kind).ok_or(BmcError::not_found(format!("{kind} slot")))?;
        let slot = &mut s.slots[index];
        if slot.inserted {
            return Err(BmcError::Rejected {
                operation: "insert media".into(),
                status: Some(400),
                messages: vec![crate::BmcMessage {
                    id: "Base.1.8.ResourceInUse".into(),
                    text: "media already inserted".into(),
                }],
            });
        }
        if !drop {
            slot.inserted = true;
            slot.image = Some(image_url.to_string());
        }
        Ok(())
    }

    async fn eject_media(&self, kind: &MediaKind) -> Result<()> {
        let mut s = self.log(format!("eject_media {kind}"));
        if let Some(slot) = slot_for(&s.slots, kind).map(|i| &mut s.slots[i]) {
            slot.inserted = false;
            slot.image = None;
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<HardwareInventory> {
        let inventory = self.log("inventory".into()).inventory.clone();
        inventory.ok_or_else(|| self.unsupported("inventory"))
    }
}

/// The slot `kind` goes into: a CD into the first that takes CDs; other kinds into a
/// slot other than that one where there is one (as the Redfish driver chooses).
fn slot_for(slots: &[VirtualMediaSlot], kind: &MediaKind) -> Option<usize> {
    let cd = slots.iter().position(|s| s.accepts(&MediaKind::Cd));
    if *kind == MediaKind::Cd {
        return cd;
    }
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.accepts(kind))
        .min_by_key(|(i, _)| Some(*i) == cd)
        .map(|(i, _)| i)
}
