//! Dell's hooks for the one Redfish driver: what iDRAC does its own way.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BmcScheme, BootDevice, BootOverride, Capabilities,
    ConnectOptions, Credentials, Registry, Result,
};
use bmc_redfish::discovery::Discovery;
use bmc_redfish::hooks::{VendorHooks, VendorSupport, register_vendor};
use bmc_redfish::model::{Collection, Manager, all_actions, find_oem_action};
use bmc_redfish::quirks::{BmcIdentity, Quirk, Vendor};
use bmc_redfish::{RedfishDriver, RedfishFactory};

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

/// Dell's support for the Redfish driver: it claims every Dell BMC, whatever the address
/// scheme, and `idrac-redfish`/`idrac-virtualmedia` addresses need one.
///
/// What its hooks ([`IdracHooks`]) add to plain Redfish, on every iDRAC (Ironic's idrac
/// driver does the same):
/// - the virtual CD booted by a configuration import (`ServerBoot.1#FirstBootDevice
///   VCD-DVD`), followed to its job's end, falling back to the standard `Cd` override where
///   the firmware boots the virtual CD with it;
/// - the Lifecycle Controller's readiness (`DellLCService.GetRemoteServicesAPIStatus`)
///   before every configuration change;
/// - the job queue: a running job is waited for (`RAC0679`), a pending one reported
///   (`LC068`) with the jobs that block ([`job_queue`], [`clear_job_queue`]);
/// - iDRAC message ids turned into errors that say what to do ([`crate::messages`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Dell {
    policy: IdracPolicy,
}

impl Dell {
    /// Dell's support with this patience.
    pub fn with_policy(policy: IdracPolicy) -> Dell {
        Dell { policy }
    }
}

#[async_trait]
impl VendorSupport for Dell {
    fn name(&self) -> &'static str {
        "Dell iDRAC"
    }

    fn claims(&self, identity: &BmcIdentity) -> bool {
        identity.vendor == Vendor::Dell
    }

    fn schemes(&self) -> &'static [BmcScheme] {
        &[BmcScheme::IdracRedfish, BmcScheme::IdracVirtualMedia]
    }

    async fn hooks(&self, driver: &RedfishDriver) -> Result<Arc<dyn VendorHooks>> {
        Ok(Arc::new(IdracHooks::for_driver(driver, self.policy).await?))
    }
}

/// The hooks for one iDRAC: its manager and the configuration-import action it
/// advertises.
#[derive(Debug)]
pub struct IdracHooks {
    manager_id: String,
    import_target: Option<String>,
    policy: IdracPolicy,
    lc_status_target: OnceLock<String>,
}

/// The iDRAC's manager, as discovery found it.
fn idrac_manager(d: &Discovery) -> Result<&Manager> {
    d.managers
        .first()
        .ok_or_else(|| BmcError::not_found("the iDRAC manager (no manager is listed)"))
}

/// The path of the iDRAC service `name` (`DellLCService`, `DellJobService`, `Jobs`) as
/// the manager advertises it in `Links.Oem.Dell`.
fn dell_link(driver: &RedfishDriver, name: &str) -> Result<String> {
    let d = driver.discovery();
    let manager = idrac_manager(&d)?;
    manager.oem_link(name).map(str::to_string).ok_or_else(|| {
        BmcError::not_found(format!(
            "the iDRAC's {name} (manager {} does not advertise it in Links.Oem)",
            manager.id
        ))
    })
}

/// The target of `action` (`#DellLCService.GetRemoteServicesAPIStatus`) as the service
/// `service` advertises it.
async fn dell_action(driver: &RedfishDriver, service: &str, action: &str) -> Result<String> {
    let path = dell_link(driver, service)?;
    let body = driver.client().get(&path).await?.body;
    find_oem_action(&all_actions(&body), action)
        .map(|a| a.target.clone())
        .ok_or_else(|| BmcError::not_found(format!("{action} (not advertised by {path})")))
}

const LC_STATUS: &str = "#DellLCService.GetRemoteServicesAPIStatus";

impl IdracHooks {
    /// Reads what the hooks need from a connected iDRAC: its manager (read now if
    /// discovery left it for later) and the import action it advertises.
    pub async fn for_driver(driver: &RedfishDriver, policy: IdracPolicy) -> Result<IdracHooks> {
        let mut d = driver.discovery();
        if d.managers.is_empty() {
            d = driver.discover_everything().await?;
        }
        let manager = idrac_manager(&d)?;
        let import_target = find_oem_action(&manager.oem_actions, ".ImportSystemConfiguration")
            .map(|a| a.target.clone());
        tracing::debug!(identity = %driver.identity(), profile = driver.quirks().profile, oem_import = import_target.is_some(), "idrac hooks");
        Ok(IdracHooks {
            manager_id: manager.id.clone(),
            import_target,
            policy,
            lc_status_target: OnceLock::new(),
        })
    }

    /// The Lifecycle Controller's status action, read once from `DellLCService`.
    async fn lc_status_target(&self, driver: &RedfishDriver) -> Result<String> {
        if let Some(t) = self.lc_status_target.get() {
            return Ok(t.clone());
        }
        let target = dell_action(driver, "DellLCService", LC_STATUS).await?;
        Ok(self.lc_status_target.get_or_init(|| target).clone())
    }

    /// Imports the boot attributes and follows the job; waits while another job runs.
    async fn import_boot(
        &self,
        driver: &RedfishDriver,
        target: &str,
        boot: &BootOverride,
    ) -> Result<()> {
        let body = boot_import_body(&self.manager_id, ScpBootDevice::VirtualCd, boot.persistence);
        let mut tries = 0;
        loop {
            match driver.client().post(target, &body).await {
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
                    let blocking = match job_queue(driver).await {
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

    async fn boot_virtual_cd(&self, driver: &RedfishDriver, boot: &BootOverride) -> Result<()> {
        let standard_works = !driver.has_quirk(Quirk::CdOverrideBootsPhysicalDrive);
        if let Some(mode) = boot.mode {
            let current = driver.boot_override().await?.mode;
            if current.is_some_and(|c| c != mode) {
                return Err(BmcError::InvalidRequest(format!(
                    "iDRAC changes the boot mode through a BIOS job and a reboot; set {mode} \
                     in the BIOS first (the system reports {})",
                    current.map(|c| c.to_string()).unwrap_or_default()
                )));
            }
        }
        if let Some(target) = self.import_target.as_deref() {
            self.before_configuration(driver).await?;
            match self.import_boot(driver, target, boot).await {
                Ok(()) => {
                    driver.invalidate();
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
                format!("idrac on {}", driver.identity()),
            ));
        }
        driver.standard_set_boot_override(boot).await
    }
}

#[async_trait]
impl VendorHooks for IdracHooks {
    fn name(&self) -> &str {
        "idrac"
    }

    fn adjust_capabilities(&self, _driver: &RedfishDriver, c: &mut Capabilities) {
        if self.import_target.is_some() && !c.boot_devices.contains(&BootDevice::Cd) {
            c.boot_devices.push(BootDevice::Cd);
        }
    }

    async fn before_configuration(&self, driver: &RedfishDriver) -> Result<()> {
        let target = self.lc_status_target(driver).await?;
        wait_for_lifecycle_controller_at(driver, &target, &self.policy).await
    }

    async fn set_boot_override(
        &self,
        driver: &RedfishDriver,
        boot: &BootOverride,
    ) -> Option<Result<()>> {
        if boot.device != BootDevice::Cd {
            return None;
        }
        Some(self.boot_virtual_cd(driver, boot).await)
    }

    fn explain(&self, error: BmcError, operation: &str) -> BmcError {
        explain(error, operation)
    }
}

/// Whether the Lifecycle Controller says it is ready (`GetRemoteServicesAPIStatus`, at
/// the target `DellLCService` advertises).
pub async fn lifecycle_controller_ready(driver: &RedfishDriver) -> Result<bool> {
    let target = dell_action(driver, "DellLCService", LC_STATUS).await?;
    lifecycle_controller_ready_at(driver, &target).await
}

async fn lifecycle_controller_ready_at(driver: &RedfishDriver, target: &str) -> Result<bool> {
    let body = driver
        .client()
        .post(target, &json!({}))
        .await
        .map_err(|e| explain(e, "the lifecycle-controller status"))?
        .body;
    let ready = |k: &str| body.get(k).and_then(Value::as_str) == Some("Ready");
    // Older firmware reports only LCStatus; newer ones Status as well.
    Ok(ready("LCStatus") && (body.get("Status").is_none() || ready("Status")))
}

/// Waits until the Lifecycle Controller is ready, up to the policy's timeout.
pub async fn wait_for_lifecycle_controller(
    driver: &RedfishDriver,
    policy: &IdracPolicy,
) -> Result<()> {
    let target = dell_action(driver, "DellLCService", LC_STATUS).await?;
    wait_for_lifecycle_controller_at(driver, &target, policy).await
}

async fn wait_for_lifecycle_controller_at(
    driver: &RedfishDriver,
    target: &str,
    policy: &IdracPolicy,
) -> Result<()> {
    let start = tokio::time::Instant::now();
    loop {
        if lifecycle_controller_ready_at(driver, target).await? {
            return Ok(());
        }
        if start.elapsed() + policy.lc_poll_interval > policy.lc_ready_timeout {
            return Err(BmcError::Busy {
                reason: format!(
                    "the iDRAC Lifecycle Controller is not ready after {:?}",
                    policy.lc_ready_timeout
                ),
                retry_after: None,
            });
        }
        tokio::time::sleep(policy.lc_poll_interval).await;
    }
}

/// Reads the job queue.
pub async fn job_queue(driver: &RedfishDriver) -> Result<JobQueue> {
    let client = driver.client();
    let path = dell_link(driver, "Jobs")?;
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
pub async fn clear_job_queue(driver: &RedfishDriver) -> Result<()> {
    let target = dell_action(driver, "DellJobService", "#DellJobService.DeleteJobQueue").await?;
    driver
        .client()
        .post(&target, &json!({"JobID": "JID_CLEARALL"}))
        .await
        .map(|_| ())
        .map_err(|e| explain(e, "clearing the job queue"))
}

/// Connects to an iDRAC with Dell's hooks and this patience; a BMC that does not answer as
/// a Dell is refused.
pub async fn connect_with_policy(
    address: &BmcAddress,
    credentials: &Credentials,
    options: &ConnectOptions,
    policy: IdracPolicy,
) -> Result<RedfishDriver> {
    let dell: Arc<dyn VendorSupport> = Arc::new(Dell::with_policy(policy));
    let driver = RedfishDriver::connect_with(address, credentials, options, &[dell]).await?;
    if driver.driver_name() != "idrac" {
        return Err(BmcError::InvalidRequest(format!(
            "the BMC at {} answers as {}, not as a Dell iDRAC",
            driver.client().base(),
            driver.identity()
        )));
    }
    Ok(driver)
}

/// [`connect_with_policy`] with the default patience.
pub async fn connect(
    address: &BmcAddress,
    credentials: &Credentials,
    options: &ConnectOptions,
) -> Result<RedfishDriver> {
    connect_with_policy(address, credentials, options, IdracPolicy::default()).await
}

/// Registers Dell's hooks for every Redfish connect in the process (so a Dell behind a
/// generic `redfish*` address gets them too) and the Redfish driver for `idrac-redfish`
/// and `idrac-virtualmedia` (each with `+http`/`+https`), where a BMC that does not
/// answer as a Dell is refused.
pub fn register(registry: &mut Registry) {
    register_vendor(Arc::new(Dell::default()));
    let factory = Arc::new(RedfishFactory);
    for scheme in [BmcScheme::IdracRedfish, BmcScheme::IdracVirtualMedia] {
        registry.register(scheme, factory.clone());
    }
}
