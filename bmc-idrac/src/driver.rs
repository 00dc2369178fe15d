//! `IdracDriver`: the generic Redfish driver plus what iDRAC does its own way.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, BootDevice, BootOverride, BootOverrideState,
    Capabilities, ConnectOptions, Credentials, DriverFactory, HardwareInventory, MediaKind,
    PowerAction, PowerState, Registry, Result, VirtualMediaSlot,
};
use bmc_redfish::RedfishDriver;
use bmc_redfish::model::{Collection, find_oem_action};
use bmc_redfish::quirks::Quirk;

use crate::jobs::{Job, JobQueue};
use crate::messages::{Meaning, explain, meaning_of};
use crate::scp::{ScpBootDevice, boot_import_body};

/// How patient the driver is with the iDRAC's own pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdracPolicy {
    /// How long to wait for the Lifecycle Controller to become ready.
    pub lc_ready_timeout: Duration,
    /// Pause between readiness queries.
    pub lc_poll_interval: Duration,
    /// How often a configuration import is tried again while another job runs
    /// (`RAC0679`); Ironic allows 35.
    pub job_running_retries: u32,
    /// Pause before trying again while another job runs (Ironic: 15 s).
    pub job_running_wait: Duration,
}

impl Default for IdracPolicy {
    fn default() -> Self {
        IdracPolicy {
            lc_ready_timeout: Duration::from_secs(300),
            lc_poll_interval: Duration::from_secs(5),
            job_running_retries: 35,
            job_running_wait: Duration::from_secs(15),
        }
    }
}

/// A Dell iDRAC 9/10 behind the [`BmcDriver`] trait.
///
/// Everything plain Redfish does right on iDRAC goes through [`RedfishDriver`] (which
/// already honours the iDRAC quirks that need no OEM call). This layer adds:
/// - booting the virtual CD by a configuration import (`ServerBoot.1#FirstBootDevice
///   VCD-DVD`), followed to its job's end, falling back to the standard `Cd` override
///   where the firmware boots the virtual CD with it;
/// - the Lifecycle Controller's readiness before every configuration change;
/// - the job queue: a running job is waited for (`RAC0679`), a pending one reported
///   (`LC068`) with the jobs that block, [`IdracDriver::job_queue`] and
///   [`IdracDriver::clear_job_queue`];
/// - iDRAC message ids turned into errors that say what to do ([`crate::messages`]).
pub struct IdracDriver {
    redfish: RedfishDriver,
    manager_path: String,
    manager_id: String,
    import_target: Option<String>,
    policy: IdracPolicy,
}

impl std::fmt::Debug for IdracDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdracDriver")
            .field("redfish", &self.redfish)
            .field("manager", &self.manager_path)
            .finish()
    }
}

impl IdracDriver {
    /// Connects: the generic Redfish connect (login, discovery, identity), then the
    /// manager's OEM actions.
    pub async fn connect(
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<IdracDriver> {
        let redfish = RedfishDriver::connect(address, credentials, options).await?;
        IdracDriver::over(redfish).await
    }

    /// Wraps a connected Redfish driver.
    pub async fn over(redfish: RedfishDriver) -> Result<IdracDriver> {
        let mut d = redfish.discovery();
        if d.managers.is_empty() {
            d = redfish.discover_everything().await?;
        }
        let manager = d
            .managers
            .first()
            .ok_or_else(|| BmcError::not_found("the iDRAC manager (no manager is listed)"))?;
        let manager_path = manager
            .path
            .clone()
            .or_else(|| d.manager_paths.first().cloned())
            .unwrap_or_else(|| format!("/redfish/v1/Managers/{}", manager.id));
        let import_target = find_oem_action(&manager.oem_actions, ".ImportSystemConfiguration")
            .map(|a| a.target.clone());
        tracing::debug!(identity = %redfish.identity(), profile = redfish.quirks().profile, oem_import = import_target.is_some(), "idrac connected");
        Ok(IdracDriver {
            manager_id: manager.id.clone(),
            manager_path,
            import_target,
            redfish,
            policy: IdracPolicy::default(),
        })
    }

    /// Sets how patient the driver is.
    pub fn with_policy(mut self, policy: IdracPolicy) -> IdracDriver {
        self.policy = policy;
        self
    }

    /// The Redfish driver underneath.
    pub fn redfish(&self) -> &RedfishDriver {
        &self.redfish
    }

    fn dell_path(&self, rest: &str) -> String {
        format!("{}/Oem/Dell/{rest}", self.manager_path)
    }

    /// Whether the Lifecycle Controller says it is ready (`GetRemoteServicesAPIStatus`).
    pub async fn lifecycle_controller_ready(&self) -> Result<bool> {
        let target =
            self.dell_path("DellLCService/Actions/DellLCService.GetRemoteServicesAPIStatus");
        let body = self
            .redfish
            .client()
            .post(&target, &json!({}))
            .await
            .map_err(|e| explain(e, "the lifecycle-controller status"))?
            .body;
        let ready = |k: &str| body.get(k).and_then(Value::as_str) == Some("Ready");
        // Older firmware reports only LCStatus; newer ones Status as well.
        Ok(ready("LCStatus") && (body.get("Status").is_none() || ready("Status")))
    }

    /// Waits until the Lifecycle Controller is ready, up to the policy's timeout.
    pub async fn wait_for_lifecycle_controller(&self) -> Result<()> {
        let start = tokio::time::Instant::now();
        loop {
            if self.lifecycle_controller_ready().await? {
                return Ok(());
            }
            if start.elapsed() + self.policy.lc_poll_interval > self.policy.lc_ready_timeout {
                return Err(BmcError::Busy {
                    reason: format!(
                        "the iDRAC Lifecycle Controller is not ready after {:?}",
                        self.policy.lc_ready_timeout
                    ),
                    retry_after: None,
                });
            }
            tokio::time::sleep(self.policy.lc_poll_interval).await;
        }
    }

    /// Reads the job queue.
    pub async fn job_queue(&self) -> Result<JobQueue> {
        let client = self.redfish.client();
        let path = self.dell_path("Jobs");
        let listing = client.get(&path).await?.body;
        let members = Collection::from_json(&listing)
            .map_err(|e| BmcError::Protocol {
                context: format!("GET {path}"),
                reason: e.to_string(),
            })?
            .members;
        let mut jobs = Vec::with_capacity(members.len());
        for m in members {
            // A job deleted between the listing and the read is simply gone.
            if let Ok(r) = client.get(&m).await {
                if let Some(job) = Job::from_json(&r.body) {
                    jobs.push(job);
                }
            }
        }
        Ok(JobQueue { jobs })
    }

    /// Deletes every job (`DellJobService.DeleteJobQueue`, `JID_CLEARALL`).
    pub async fn clear_job_queue(&self) -> Result<()> {
        let target = self.dell_path("DellJobService/Actions/DellJobService.DeleteJobQueue");
        self.redfish
            .client()
            .post(&target, &json!({"JobID": "JID_CLEARALL"}))
            .await
            .map(|_| ())
            .map_err(|e| explain(e, "clearing the job queue"))
    }

    /// Lifecycle-controller readiness, where this firmware has the quirk.
    async fn before_configuration(&self) -> Result<()> {
        if self.redfish.has_quirk(Quirk::LifecycleControllerReadiness) {
            self.wait_for_lifecycle_controller().await?;
        }
        Ok(())
    }

    /// Imports the boot attributes and follows the job; waits while another job runs.
    async fn import_boot(&self, target: &str, boot: &BootOverride) -> Result<()> {
        let body = boot_import_body(&self.manager_id, ScpBootDevice::VirtualCd, boot.persistence);
        let mut tries = 0;
        loop {
            match self.redfish.client().post(target, &body).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if meaning_of(&e) == Some(Meaning::JobRunning)
                        && tries < self.policy.job_running_retries =>
                {
                    tries += 1;
                    tracing::debug!(tries, "iDRAC job running; waiting to import");
                    tokio::time::sleep(self.policy.job_running_wait).await;
                }
                Err(e) if meaning_of(&e) == Some(Meaning::PendingConfiguration) => {
                    // Say which jobs block, so the operator can act.
                    let blocking = match self.job_queue().await {
                        Ok(q) => q.pending().map(ToString::to_string).collect::<Vec<_>>(),
                        Err(_) => Vec::new(),
                    };
                    let e = explain(e, "the virtual-CD boot");
                    return Err(if blocking.is_empty() {
                        e
                    } else {
                        BmcError::Busy {
                            reason: format!("{e}; pending jobs: {}", blocking.join(", ")),
                            retry_after: None,
                        }
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn boot_virtual_cd(&self, boot: &BootOverride) -> Result<()> {
        let oem = self.import_target.as_deref().filter(|_| {
            self.redfish
                .has_quirk(Quirk::VirtualCdBootByConfigurationImport)
        });
        let standard_works = !self.redfish.has_quirk(Quirk::CdOverrideBootsPhysicalDrive);
        if let Some(mode) = boot.mode {
            let current = self.redfish.boot_override().await?.mode;
            if current.is_some_and(|c| c != mode) {
                return Err(BmcError::InvalidRequest(format!(
                    "iDRAC changes the boot mode through a BIOS job and a reboot; set {mode} \
                     in the BIOS first (the system reports {})",
                    current.map(|c| c.to_string()).unwrap_or_default()
                )));
            }
        }
        if let Some(target) = oem {
            self.before_configuration().await?;
            match self.import_boot(target, boot).await {
                Ok(()) => {
                    self.redfish.invalidate();
                    return Ok(());
                }
                // The import is refused as such (no licence, an action this firmware
                // does not take): plain Redfish where it boots the virtual CD.
                Err(e @ (BmcError::Rejected { .. } | BmcError::NotFound { .. }))
                    if standard_works
                        && !matches!(
                            meaning_of(&e),
                            Some(Meaning::JobRunning | Meaning::PendingConfiguration)
                        ) =>
                {
                    tracing::warn!(error = %e, "iDRAC configuration import refused; using the standard Cd override");
                }
                Err(e) => return Err(explain(e, "the virtual-CD boot")),
            }
        } else if !standard_works {
            return Err(BmcError::unsupported(
                "booting the virtual CD (this firmware boots the physical drive with the \
                 standard override and offers no configuration import)",
                format!("idrac on {}", self.redfish.identity()),
            ));
        }
        self.redfish
            .set_boot_override(boot)
            .await
            .map_err(|e| explain(e, "the boot override"))
    }
}

#[async_trait]
impl BmcDriver for IdracDriver {
    fn driver_name(&self) -> &str {
        "idrac"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = self.redfish.capabilities();
        if self.import_target.is_some() && !c.boot_devices.contains(&BootDevice::Cd) {
            c.boot_devices.push(BootDevice::Cd);
        }
        c
    }

    async fn power_state(&self) -> Result<PowerState> {
        self.redfish.power_state().await
    }

    async fn power(&self, action: PowerAction) -> Result<()> {
        self.redfish
            .power(action)
            .await
            .map_err(|e| explain(e, &format!("power {action}")))
    }

    async fn boot_override(&self) -> Result<BootOverrideState> {
        self.redfish.boot_override().await
    }

    async fn set_boot_override(&self, boot: &BootOverride) -> Result<()> {
        if boot.device == BootDevice::Cd {
            return self.boot_virtual_cd(boot).await;
        }
        self.before_configuration().await?;
        self.redfish
            .set_boot_override(boot)
            .await
            .map_err(|e| explain(e, "the boot override"))
    }

    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>> {
        self.redfish.virtual_media().await
    }

    async fn insert_media(&self, kind: &MediaKind, image_url: &str) -> Result<()> {
        self.redfish
            .insert_media(kind, image_url)
            .await
            .map_err(|e| explain(e, "inserting virtual media"))
    }

    async fn eject_media(&self, kind: &MediaKind) -> Result<()> {
        self.redfish
            .eject_media(kind)
            .await
            .map_err(|e| explain(e, "ejecting virtual media"))
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

/// Builds [`IdracDriver`]s for a [`Registry`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IdracFactory;

#[async_trait]
impl DriverFactory for IdracFactory {
    async fn connect(
        &self,
        address: &BmcAddress,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> Result<Box<dyn BmcDriver>> {
        Ok(Box::new(
            IdracDriver::connect(address, credentials, options).await?,
        ))
    }
}

/// Registers the iDRAC driver for `idrac-redfish` and `idrac-virtualmedia` (each with
/// `+http`/`+https`).
pub fn register(registry: &mut Registry) {
    let factory = Arc::new(IdracFactory);
    for scheme in [BmcScheme::IdracRedfish, BmcScheme::IdracVirtualMedia] {
        registry.register(scheme, factory.clone());
    }
}
