//! An in-memory BMC for testing what bmc-core builds on the `BmcDriver` trait: power takes
//! a number of reads to change, writes can be dropped (the BMC says OK and forgets), and
//! errors can be injected. Every call is recorded.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use bmc_core::{
    BmcDriver, BmcError, BootDevice, BootMode, BootOverride, BootOverrideState, Capabilities,
    HardwareInventory, MediaKind, PowerAction, PowerState, Result, VirtualMediaSlot,
};

#[derive(Debug)]
pub struct State {
    pub power: PowerState,
    /// A power change in progress: the state it reaches and the reads left until then.
    pub pending: Option<(PowerState, u32)>,
    /// How many power-state reads a transition takes.
    pub transition_reads: u32,
    pub drop_power: bool,
    pub drop_boot: bool,
    pub drop_media: bool,
    /// The next this-many power actions answer "busy".
    pub busy_power_calls: u32,
    /// The next power action fails with this (not retryable) error.
    pub fail_power_with_auth: bool,
    pub boot: BootOverrideState,
    pub slots: Vec<VirtualMediaSlot>,
    pub calls: Vec<String>,
}

#[derive(Clone)]
pub struct FakeBmc {
    pub state: Arc<Mutex<State>>,
    pub caps: Capabilities,
}

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

impl FakeBmc {
    pub fn new(power: PowerState) -> FakeBmc {
        FakeBmc {
            state: Arc::new(Mutex::new(State {
                power,
                pending: None,
                transition_reads: 2,
                drop_power: false,
                drop_boot: false,
                drop_media: false,
                busy_power_calls: 0,
                fail_power_with_auth: false,
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
                calls: Vec::new(),
            })),
            caps: full_capabilities(),
        }
    }

    pub fn with<F: FnOnce(&mut State)>(self, f: F) -> FakeBmc {
        f(&mut self.state.lock().unwrap());
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn power_now(&self) -> PowerState {
        self.state.lock().unwrap().power.clone()
    }

    fn log(&self, call: String) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(call);
        s
    }
}

#[bmc_core::async_trait]
impl BmcDriver for FakeBmc {
    fn driver_name(&self) -> &str {
        "fake"
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
        let slot = s
            .slots
            .iter_mut()
            .find(|slot| slot.accepts(kind))
            .ok_or(BmcError::not_found(format!("{kind} slot")))?;
        if slot.inserted {
            return Err(BmcError::Rejected {
                operation: "insert media".into(),
                status: Some(400),
                messages: vec![bmc_core::BmcMessage {
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
        if let Some(slot) = s.slots.iter_mut().find(|slot| slot.accepts(kind)) {
            slot.inserted = false;
            slot.image = None;
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<HardwareInventory> {
        Err(self.unsupported("inventory"))
    }
}
