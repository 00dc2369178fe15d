//! `IpmiDriver`: the `BmcDriver` trait over an [`IpmiSession`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcMessage, BmcScheme, BootDevice, BootMode, BootOverride,
    BootOverrideState, BootPersistence, Capabilities, ConnectOptions, Credentials, DriverFactory,
    FirmwareVersion, HardwareInventory, PowerAction, PowerState, Registry, Result, SystemIdentity,
};

use crate::codec::CodecError;
use crate::codec::chassis::{BootFlags, BootSelector, ChassisStatus, DeviceId, decode_guid};
use crate::session::{IpmiSession, SessionConfig, privilege};

const APP: u8 = 0x06;
const CHASSIS: u8 = 0x00;

/// An IPMI BMC behind the [`BmcDriver`] trait. Boots by PXE: virtual media is unsupported.
pub struct IpmiDriver {
    config: SessionConfig,
    session: Mutex<Option<Arc<IpmiSession>>>,
    keep_alive: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How often an idle session is kept alive (BMCs drop sessions idle for about a minute).
const KEEP_ALIVE: Duration = Duration::from_secs(20);

impl Drop for IpmiDriver {
    fn drop(&mut self) {
        if let Ok(mut k) = self.keep_alive.lock() {
            if let Some(handle) = k.take() {
                handle.abort();
            }
        }
    }
}

impl std::fmt::Debug for IpmiDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiDriver")
            .field("config", &self.config)
            .finish()
    }
}

fn rejected(operation: &str, completion: u8) -> BmcError {
    BmcError::Rejected {
        operation: operation.to_string(),
        status: Some(u16::from(completion)),
        messages: vec![BmcMessage {
            id: format!("IPMI completion code {completion:#04x}"),
            text: match completion {
                0xc0 => "node busy",
                0xc1 => "invalid command",
                0xc7 | 0xc8 => "request data length invalid",
                0xc9 => "parameter out of range",
                0xcc => "invalid data field in request",
                0xd4 => "insufficient privilege",
                0xd5 => "command not supported in present state",
                _ => "command failed",
            }
            .to_string(),
        }],
    }
}

impl IpmiDriver {
    /// Connects: resolves the address, opens a session (validating the credentials).
    pub async fn connect(
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<IpmiDriver> {
        let host = address.hostname();
        let port = address.ipmi_port();
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| BmcError::Unreachable {
                endpoint: format!("{host}:{port}"),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| BmcError::Unreachable {
                endpoint: format!("{host}:{port}"),
                reason: "no address".to_string(),
            })?;
        let level = address.ipmi_privilege_level();
        let privilege = privilege::from_name(&level).ok_or_else(|| {
            BmcError::InvalidRequest(format!("unknown IPMI privilege level {level}"))
        })?;
        let attempt_timeout = options
            .request_timeout
            .min(Duration::from_secs(2))
            .max(Duration::from_millis(200));
        let config = SessionConfig {
            addr,
            user: credentials.username().to_string(),
            password: credentials.password().expose().to_string(),
            kg: None,
            privilege,
            suite: None,
            attempt_timeout,
            attempts: 3,
            transport: None,
            observer: options.observer.clone(),
        };
        let driver = IpmiDriver {
            config,
            session: Mutex::new(None),
            keep_alive: std::sync::Mutex::new(None),
        };
        driver.session().await?;
        Ok(driver)
    }

    async fn session(&self) -> Result<Arc<IpmiSession>> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(IpmiSession::open(self.config.clone()).await?);
        *guard = Some(s.clone());
        if let Ok(mut k) = self.keep_alive.lock() {
            if let Some(old) = k.replace(s.spawn_keep_alive(KEEP_ALIVE)) {
                old.abort();
            }
        }
        Ok(s)
    }

    /// Runs a command, reopening the session once if the BMC forgot it.
    async fn command(&self, operation: &str, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>> {
        let session = self.session().await?;
        let r = match session.command(netfn, cmd, data).await {
            Err(BmcError::Timeout { .. }) => {
                // The BMC may have dropped the session: one fresh one, then give up.
                *self.session.lock().await = None;
                self.session().await?.command(netfn, cmd, data).await?
            }
            other => other?,
        };
        if r.completion != 0 {
            return Err(rejected(operation, r.completion));
        }
        Ok(r.data)
    }
}

fn boot_selector(device: &BootDevice) -> Option<BootSelector> {
    match device {
        BootDevice::Pxe => Some(BootSelector::Pxe),
        BootDevice::Disk => Some(BootSelector::Disk),
        BootDevice::Cd => Some(BootSelector::Cd),
        BootDevice::BiosSetup => Some(BootSelector::BiosSetup),
        _ => None,
    }
}

fn decode_error(e: CodecError) -> BmcError {
    BmcError::Protocol {
        context: "IPMI answer".to_string(),
        reason: e.to_string(),
    }
}

#[async_trait]
impl BmcDriver for IpmiDriver {
    fn driver_name(&self) -> &str {
        "ipmi"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            power_actions: vec![
                PowerAction::On,
                PowerAction::Off,
                PowerAction::SoftOff,
                PowerAction::Reset,
                PowerAction::PowerCycle,
            ],
            boot_devices: vec![
                BootDevice::Pxe,
                BootDevice::Disk,
                BootDevice::Cd,
                BootDevice::BiosSetup,
            ],
            boot_modes: vec![BootMode::Uefi, BootMode::Legacy],
            persistent_boot: true,
            virtual_media: Vec::new(),
            inventory: true,
        }
    }

    #[tracing::instrument(name = "ipmi.power_state", skip_all, fields(bmc = %self.config.addr))]
    async fn power_state(&self) -> Result<PowerState> {
        let data = self
            .command("get chassis status", CHASSIS, 0x01, &[])
            .await?;
        let status = ChassisStatus::decode(&data).map_err(decode_error)?;
        Ok(if status.power_on {
            PowerState::On
        } else {
            PowerState::Off
        })
    }

    #[tracing::instrument(name = "ipmi.power", skip_all, fields(bmc = %self.config.addr, %action))]
    async fn power(&self, action: PowerAction) -> Result<()> {
        let code = match action {
            PowerAction::Off => 0x00,
            PowerAction::On => 0x01,
            PowerAction::PowerCycle => 0x02,
            PowerAction::Reset => 0x03,
            PowerAction::SoftOff => 0x05,
        };
        // Cycle and reset need the host on: BMCs refuse them (0xd5) or accept and do
        // nothing (OpenIPMI) when it is off. A reboot of a host that is off powers it on.
        let code = if matches!(action, PowerAction::PowerCycle | PowerAction::Reset)
            && self.power_state().await? == PowerState::Off
        {
            0x01
        } else {
            code
        };
        self.command(&action.to_string(), CHASSIS, 0x02, &[code])
            .await
            .map(|_| ())
    }

    #[tracing::instrument(name = "ipmi.boot_override", skip_all, fields(bmc = %self.config.addr))]
    async fn boot_override(&self) -> Result<BootOverrideState> {
        let data = self
            .command(
                "get system boot options",
                CHASSIS,
                0x09,
                &[0x05, 0x00, 0x00],
            )
            .await?;
        let flags = BootFlags::decode(&data).map_err(decode_error)?;
        let valid = flags.valid;
        let device = match flags.device {
            BootSelector::Pxe => Some(BootDevice::Pxe),
            BootSelector::Disk => Some(BootDevice::Disk),
            BootSelector::Cd => Some(BootDevice::Cd),
            BootSelector::BiosSetup => Some(BootDevice::BiosSetup),
            BootSelector::NoOverride => None,
            BootSelector::Other(other) => {
                Some(BootDevice::Other(format!("IPMI boot device {other:#x}")))
            }
        };
        Ok(BootOverrideState {
            device: if valid { device } else { None },
            persistence: valid.then_some(if flags.persistent {
                BootPersistence::Persistent
            } else {
                BootPersistence::Once
            }),
            mode: valid.then_some(if flags.uefi {
                BootMode::Uefi
            } else {
                BootMode::Legacy
            }),
        })
    }

    #[tracing::instrument(name = "ipmi.set_boot_override", skip_all, fields(bmc = %self.config.addr))]
    async fn set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        let device = boot_selector(&boot.device)
            .ok_or_else(|| self.unsupported(&format!("boot from {}", boot.device)))?;
        let flags = BootFlags {
            valid: true,
            persistent: boot.persistence == BootPersistence::Persistent,
            uefi: boot.mode != Some(BootMode::Legacy),
            device,
        };
        self.command("set system boot options", CHASSIS, 0x08, &flags.encode())
            .await
            .map(|_| ())
    }

    #[tracing::instrument(name = "ipmi.inventory", skip_all, fields(bmc = %self.config.addr))]
    async fn inventory(&self) -> Result<HardwareInventory> {
        let id = DeviceId::decode(&self.command("get device id", APP, 0x01, &[]).await?)
            .map_err(decode_error)?;
        // Not every BMC answers Get System GUID: the inventory goes on without it.
        let uuid = self
            .command("get system guid", APP, 0x37, &[])
            .await
            .ok()
            .and_then(|g| decode_guid(&g).ok());
        let firmware = vec![FirmwareVersion {
            component: "BMC".to_string(),
            version: id.firmware(),
        }];
        let manufacturer = id.manufacturer.map(|m| format!("IANA {m}"));
        let model = id.product.map(|p| format!("product {p:#06x}"));
        Ok(HardwareInventory {
            system: SystemIdentity {
                manufacturer,
                model,
                uuid,
                ..SystemIdentity::default()
            },
            firmware,
            ..HardwareInventory::default()
        })
    }

    async fn close(&self) -> Result<()> {
        if let Ok(mut k) = self.keep_alive.lock() {
            if let Some(handle) = k.take() {
                handle.abort();
            }
        }
        let session = self.session.lock().await.take();
        match session {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }
}

/// Builds [`IpmiDriver`]s for a [`Registry`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IpmiFactory;

#[async_trait]
impl DriverFactory for IpmiFactory {
    async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        Ok(Box::new(
            IpmiDriver::connect(address, credentials, options).await?,
        ))
    }
}

/// Registers the IPMI driver for `ipmi` and `libvirt` (VirtualBMC).
pub fn register(registry: &mut Registry) {
    let factory = Arc::new(IpmiFactory);
    registry.register(BmcScheme::Ipmi, factory.clone());
    registry.register(BmcScheme::Libvirt, factory);
}
