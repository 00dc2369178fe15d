//! The agent's life on a booted host: look its node up by the host's MAC addresses,
//! heartbeat, carry out each command the conductor gives (inspect, erase the disks'
//! metadata, install an image with its config drive), and send the result until the
//! conductor takes it. The disk work runs on blocking threads; the image is streamed
//! from the network to the disk through a bounded channel, so memory stays flat.
//!
//! ```no_run
//! # async fn run() {
//! use metal3_agent::agent::{Agent, AgentConfig};
//! let agent = Agent::new(AgentConfig::new("https://conductor.example:6385")).unwrap();
//! agent.run().await.unwrap();
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use metal3_agent_protocol::{
    AgentCommand, AgentDisk, AgentInventory, AgentResult, CORRELATION_HEADER, ConfigDrive,
    Heartbeat, HeartbeatReply, Lookup, MAX_LOG_LINES, RootDeviceHints, heartbeat_path, lookup_path,
};
use provision_fsm::{ChecksumType, Image};

use crate::configdrive::{ConfigFiles, LABEL, fat_image};
use crate::erase::erase_metadata;
use crate::image::{Checksum, FileDisk, ImageWriter, checksum_in_file};
use crate::inspect::{InspectOptions, addresses_from_ip, inspect_disks, inspect_with};
use crate::partition::add_partition_at_end;

/// Bytes in MiB, for progress lines.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The config drive partition's size, as Ironic makes it.
pub const CONFIG_DRIVE_PARTITION: u64 = 64 << 20;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The HTTP client could not be built (a CA that does not parse, say).
    #[error("HTTP client: {0}")]
    Client(String),
    /// No node answered the look-up in time.
    #[error("no node found for MAC addresses {0:?}")]
    NotFound(Vec<String>),
    /// The kernel refused to power off or restart.
    #[error("{0}: {1}")]
    Power(&'static str, String),
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The conductor's agent API (`https://host:port`).
    pub conductor_url: String,
    /// A CA (PEM) to trust for the conductor and image servers, beside the public ones.
    pub ca_pem: Option<String>,
    /// Where `/proc` and `/sys` are (`/`; a fake tree in tests).
    pub root: PathBuf,
    /// Where the disks' device files are (`/dev`).
    pub dev: PathBuf,
    /// Count loop devices as disks (tests only).
    pub loop_devices: bool,
    /// MAC addresses to look the node up by; empty: the host's NICs'.
    pub macs: Vec<String>,
    /// Time between heartbeats while idle.
    pub heartbeat_interval: Duration,
    /// How long to keep looking the node up.
    pub lookup_timeout: Duration,
    /// What `power_off` and `reboot` do.
    pub power: PowerControl,
}

/// What the agent does when told to power off or reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerControl {
    /// The host's own: sync the disks, then the kernel's power-off or restart (the
    /// agent as a ramdisk's main job).
    Host,
    /// Sync the disks and stop the agent, leaving the machine as it is (tests, and an
    /// agent run by hand): the default, so nothing powers off the machine unasked.
    StopAgent,
}

impl AgentConfig {
    /// Defaults for a host: `/` and `/dev`, heartbeats every 2 s, look-ups for 30 min.
    pub fn new(conductor_url: impl Into<String>) -> AgentConfig {
        AgentConfig {
            conductor_url: conductor_url.into().trim_end_matches('/').to_string(),
            ca_pem: None,
            root: PathBuf::from("/"),
            dev: PathBuf::from("/dev"),
            loop_devices: false,
            macs: Vec::new(),
            heartbeat_interval: Duration::from_secs(2),
            lookup_timeout: Duration::from_secs(1800),
            power: PowerControl::StopAgent,
        }
    }
}

/// A running agent (see the [module](self) docs).
#[derive(Debug, Clone)]
pub struct Agent {
    config: AgentConfig,
    http: reqwest::Client,
    /// Progress lines of the command running, sent with the heartbeats made meanwhile.
    progress: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    /// An agent with its HTTP client (rustls, public roots plus the configured CA).
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60));
        if let Some(pem) = &config.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| AgentError::Client(format!("the configured CA: {e}")))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| AgentError::Client(e.to_string()))?;
        Ok(Agent {
            config,
            http,
            progress: Default::default(),
        })
    }

    /// The host's inventory now.
    pub fn inventory(&self) -> AgentInventory {
        let addresses = std::process::Command::new("ip")
            .args(["-o", "addr", "show"])
            .output()
            .map(|o| addresses_from_ip(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default();
        inspect_with(
            &self.config.root,
            &InspectOptions {
                loop_devices: self.config.loop_devices,
            },
            &addresses,
        )
    }

    /// Looks the node up, then heartbeats and works until the conductor has the result
    /// of a command that ends the agent's part (or refuses its token: the node moved on).
    pub async fn run(&self) -> Result<(), AgentError> {
        let macs = if self.config.macs.is_empty() {
            self.inventory()
                .interfaces
                .iter()
                .filter_map(|i| i.mac_address.clone())
                .collect()
        } else {
            self.config.macs.clone()
        };
        let lookup = self.lookup(&macs).await?;
        let correlation = lookup.correlation_id.clone().unwrap_or_default();
        let url = format!(
            "{}{}",
            self.config.conductor_url,
            heartbeat_path(&lookup.node)
        );
        tracing::info!(node = %lookup.node, correlation_id = %correlation, "node found");
        let mut log: Vec<String> = vec![format!("agent up, node {}", lookup.node)];
        // A command that came with the answer to a result.
        let mut next: Option<AgentCommand> = None;
        loop {
            if let Some(command @ (AgentCommand::PowerOff | AgentCommand::Reboot)) = next.take() {
                return self.power(&command);
            }
            let beat = Heartbeat {
                agent_token: lookup.agent_token.clone(),
                command_result: None,
                log: std::mem::take(&mut log),
            };
            let reply = self
                .http
                .post(&url)
                .header(CORRELATION_HEADER, &correlation)
                .json(&beat)
                .send()
                .await;
            let command = match reply {
                Ok(r) if r.status().is_success() => r
                    .json::<HeartbeatReply>()
                    .await
                    .ok()
                    .and_then(|h| h.command),
                Ok(r) if r.status().is_client_error() => {
                    tracing::info!(status = %r.status(), "the conductor ended this agent's token");
                    return Ok(());
                }
                Ok(r) => {
                    log = beat.log;
                    tracing::warn!(status = %r.status(), "heartbeat refused");
                    None
                }
                Err(e) => {
                    log = beat.log;
                    tracing::warn!(error = %e, "heartbeat failed");
                    None
                }
            };
            let Some(command) = command.or_else(|| next.take()) else {
                tokio::time::sleep(self.config.heartbeat_interval).await;
                continue;
            };
            if matches!(command, AgentCommand::PowerOff | AgentCommand::Reboot) {
                return self.power(&command);
            }
            tracing::info!(command = command.name(), "running");
            let mut lines = Vec::new();
            let result = {
                let work = self.execute(command, &mut lines);
                tokio::pin!(work);
                // Heartbeats go on while the command runs, with its progress: the
                // conductor sees a live agent, and the command it repeats is ignored.
                loop {
                    tokio::select! {
                        result = &mut work => break result,
                        () = tokio::time::sleep(self.config.heartbeat_interval) => {
                            let beat = Heartbeat {
                                agent_token: lookup.agent_token.clone(),
                                command_result: None,
                                log: self.take_progress(),
                            };
                            let sent = self.http.post(&url).header(CORRELATION_HEADER, &correlation).json(&beat).send().await;
                            if !sent.as_ref().is_ok_and(|r| r.status().is_success()) {
                                // Not lost: the lines go with the next heartbeat.
                                self.put_back_progress(beat.log);
                            }
                        }
                    }
                }
            };
            for line in &lines {
                tracing::info!("{line}");
            }
            // Progress not sent yet comes first, in order.
            let mut pending = self.take_progress();
            pending.append(&mut lines);
            let mut lines = pending;
            lines.truncate(MAX_LOG_LINES);
            next = self
                .deliver(&url, &correlation, &lookup.agent_token, result, lines)
                .await;
            // Without a command in the answer the conductor moves the node on by the
            // BMC; an agent that is still up heartbeats on, in case another comes.
        }
    }

    async fn lookup(&self, macs: &[String]) -> Result<Lookup, AgentError> {
        let url = format!("{}{}", self.config.conductor_url, lookup_path(macs));
        let deadline = tokio::time::Instant::now() + self.config.lookup_timeout;
        while tokio::time::Instant::now() < deadline {
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    if let Ok(l) = r.json::<Lookup>().await {
                        return Ok(l);
                    }
                }
                Ok(r) => tracing::debug!(status = %r.status(), "look-up not answered yet"),
                Err(e) => tracing::debug!(error = %e, "look-up failed"),
            }
            tokio::time::sleep(self.config.heartbeat_interval).await;
        }
        Err(AgentError::NotFound(macs.to_vec()))
    }

    /// Sends a result until the conductor takes it (or refuses it for good); the
    /// command its answer carries, if any.
    async fn deliver(
        &self,
        url: &str,
        correlation: &str,
        token: &str,
        result: AgentResult,
        log: Vec<String>,
    ) -> Option<AgentCommand> {
        let beat = Heartbeat {
            agent_token: token.to_string(),
            command_result: Some(result),
            log,
        };
        loop {
            let sent = self
                .http
                .post(url)
                .header(CORRELATION_HEADER, correlation)
                .json(&beat)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    return r
                        .json::<HeartbeatReply>()
                        .await
                        .ok()
                        .and_then(|h| h.command);
                }
                Ok(r) if r.status().is_client_error() => return None,
                _ => tokio::time::sleep(self.config.heartbeat_interval).await,
            }
        }
    }

    /// The progress lines not sent yet.
    fn take_progress(&self) -> Vec<String> {
        self.progress
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    fn put_back_progress(&self, mut lines: Vec<String>) {
        if let Ok(mut p) = self.progress.lock() {
            lines.append(&mut p);
            *p = lines;
        }
    }

    fn report_progress(&self, line: String) {
        tracing::info!("{line}");
        if let Ok(mut p) = self.progress.lock() {
            p.push(line);
        }
    }

    /// Syncs the disks, then powers off or restarts as [`AgentConfig::power`] says.
    fn power(&self, command: &AgentCommand) -> Result<(), AgentError> {
        rustix::fs::sync();
        let restart = *command == AgentCommand::Reboot;
        match self.config.power {
            PowerControl::StopAgent => {
                tracing::info!(
                    command = command.name(),
                    "disks synced; the agent stops here"
                );
                Ok(())
            }
            PowerControl::Host => {
                tracing::info!(command = command.name(), "disks synced; powering the host");
                let how = if restart {
                    rustix::system::RebootCommand::Restart
                } else {
                    rustix::system::RebootCommand::PowerOff
                };
                rustix::system::reboot(how)
                    .map_err(|e| AgentError::Power(command.name(), e.to_string()))
            }
        }
    }

    /// Carries out one command; its result, with what happened in `log`.
    pub async fn execute(&self, command: AgentCommand, log: &mut Vec<String>) -> AgentResult {
        match command {
            AgentCommand::PowerOff | AgentCommand::Reboot => {
                // Not a command with a result: [`Agent::run`] powers the host instead.
                AgentResult::failed(format!("{} has no result", command.name()))
            }
            AgentCommand::Inspect => {
                let agent = self.clone();
                match tokio::task::spawn_blocking(move || agent.inventory()).await {
                    Ok(inventory) => {
                        log.push(format!(
                            "inspected: {} CPUs, {} NICs, {} disks",
                            inventory.cpu.count.unwrap_or(0),
                            inventory.interfaces.len(),
                            inventory.disks.len()
                        ));
                        AgentResult {
                            inventory: Some(inventory),
                            ..AgentResult::default()
                        }
                    }
                    Err(e) => AgentResult::failed(format!("inspection: {e}")),
                }
            }
            AgentCommand::EraseMetadata => {
                let agent = self.clone();
                let done = tokio::task::spawn_blocking(move || agent.erase_all()).await;
                match done {
                    Ok(Ok(lines)) => {
                        log.extend(lines);
                        AgentResult::default()
                    }
                    Ok(Err(e)) => AgentResult::failed(e),
                    Err(e) => AgentResult::failed(format!("erasing: {e}")),
                }
            }
            AgentCommand::InstallImage {
                image,
                config_drive,
                root_device_hints,
            } => {
                let hints = root_device_hints.map(|h| *h).unwrap_or_default();
                match self.install(&image, &config_drive, &hints, log).await {
                    Ok(bytes) => AgentResult {
                        bytes,
                        config_drive: Some(config_drive),
                        ..AgentResult::default()
                    },
                    Err(e) => {
                        log.push(format!("installing {} failed: {e}", image.url));
                        AgentResult::failed(e)
                    }
                }
            }
        }
    }

    fn device(&self, disk: &AgentDisk) -> PathBuf {
        let name = disk.name.trim_start_matches("/dev/");
        self.config.dev.join(name)
    }

    fn sector(&self, disk: &AgentDisk) -> u64 {
        let name = disk.name.trim_start_matches("/dev/");
        std::fs::read_to_string(
            self.config
                .root
                .join("sys/block")
                .join(name)
                .join("queue/logical_block_size"),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512)
    }

    /// The host's disks (no addresses needed: no `ip` run).
    fn disks(&self) -> Vec<AgentDisk> {
        inspect_disks(
            &self.config.root,
            &InspectOptions {
                loop_devices: self.config.loop_devices,
            },
        )
    }

    /// Erases every disk's metadata but read-only devices' and config images' (the
    /// virtual media the agent booted with: write-protected on most BMCs, and what it
    /// was configured from).
    fn erase_all(&self) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        for disk in &self.disks() {
            let path = self.device(disk);
            let name = disk.name.trim_start_matches("/dev/");
            let ro =
                std::fs::read_to_string(self.config.root.join("sys/block").join(name).join("ro"));
            if ro.is_ok_and(|r| r.trim() == "1") {
                lines.push(format!("skipped {}: read-only", disk.name));
                continue;
            }
            // A whole small device labelled config-2 (a tenant's disk is larger, and its
            // config drive a partition).
            if disk.size.is_some_and(|s| s <= CONFIG_DRIVE_PARTITION)
                && crate::config::is_config_image(&path)
            {
                lines.push(format!("skipped {}: a config image", disk.name));
                continue;
            }
            let mut file = open_rw(&path)?;
            let erased = erase_metadata(&mut file, self.sector(disk))
                .map_err(|e| format!("erasing {}: {e}", path.display()))?;
            file.sync_all()
                .map_err(|e| format!("syncing {}: {e}", path.display()))?;
            lines.push(format!(
                "erased the metadata of {} ({} partitions)",
                disk.name, erased.partitions
            ));
        }
        Ok(lines)
    }

    /// Streams the image to the disk the hints choose, then adds the config drive.
    async fn install(
        &self,
        image: &Image,
        config_drive: &ConfigDrive,
        hints: &RootDeviceHints,
        log: &mut Vec<String>,
    ) -> Result<u64, String> {
        let disks = self.disks();
        let disk = hints.choose(&disks)?.clone();
        let path = self.device(&disk);
        // Through the progress lines, so it comes before them.
        self.report_progress(format!("writing {} to {}", image.url, disk.name));
        let checksum = self.checksum(image).await?;
        let target =
            FileDisk::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let writer =
            ImageWriter::new(target, image.format.clone(), checksum).map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(&image.url)
            .send()
            .await
            .map_err(|e| format!("downloading {}: {e}", image.url))?;
        if !response.status().is_success() {
            return Err(format!(
                "downloading {}: HTTP {}",
                image.url,
                response.status()
            ));
        }
        // The network side reads chunks; a blocking thread writes them in order.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let writing = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            let mut failed = None;
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = writer.write(&chunk) {
                    failed = Some(e.to_string());
                    break;
                }
            }
            match (failed, writer.finish()) {
                (Some(e), Ok((disk, _)) | Err((disk, _))) => Err((disk, e)),
                (None, Ok((_, written))) => Ok(written),
                (None, Err((disk, e))) => Err((disk, e.to_string())),
            }
        });
        let mut response = response;
        let mut download_error = None;
        let total = response.content_length();
        // A progress line at each tenth of the image (each GiB when its size is unknown).
        let step = total.map_or(1 << 30, |t| (t / 10).max(1));
        let (mut received, mut next_report) = (0u64, step);
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    received += bytes.len() as u64;
                    if received >= next_report {
                        next_report = (received / step + 1) * step;
                        self.report_progress(match total {
                            Some(t) => format!(
                                "received {:.1} of {:.1} MiB of {} ({} %)",
                                mib(received),
                                mib(t),
                                image.url,
                                received * 100 / t.max(1)
                            ),
                            None => format!("received {:.1} MiB of {}", mib(received), image.url),
                        });
                    }
                    if tx.send(bytes.to_vec()).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    download_error = Some(format!("downloading {}: {e}", image.url));
                    break;
                }
            }
        }
        drop(tx);
        let outcome = writing.await.map_err(|e| format!("writing: {e}"))?;
        let written = match (download_error, outcome) {
            (None, Ok(written)) => written,
            (error, outcome) => {
                let reason = error.unwrap_or_else(|| match &outcome {
                    Err((_, e)) => e.clone(),
                    Ok(_) => String::new(),
                });
                // A half-written or corrupt image must not boot: its metadata goes.
                let sector = self.sector(&disk);
                let path = path.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    open_rw(&path).map(|mut f| erase_metadata(&mut f, sector))
                })
                .await;
                return Err(reason);
            }
        };
        log.push(format!(
            "wrote {} ({}, {} bytes received, {} bytes of disk){}",
            image.url,
            written.format.name(),
            written.image_bytes,
            written.disk_bytes,
            if written.checksum.is_some() {
                ", checksum verified"
            } else {
                ""
            }
        ));
        let sector = self.sector(&disk);
        let files = ConfigFiles::from_config_drive(config_drive);
        let placed = tokio::task::spawn_blocking(move || write_config_drive(&path, sector, &files))
            .await
            .map_err(|e| format!("config drive: {e}"))??;
        log.push(placed);
        Ok(written.image_bytes)
    }

    /// The checksum to expect: given, or read from the checksum file it names.
    async fn checksum(&self, image: &Image) -> Result<Option<Checksum>, String> {
        let Some(given) = image.checksum.as_deref() else {
            return Ok(None);
        };
        let kind = image.checksum_type.clone().unwrap_or(ChecksumType::Auto);
        let hex = if given.starts_with("http://") || given.starts_with("https://") {
            let text = self
                .http
                .get(given)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("downloading the checksum {given}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("downloading the checksum {given}: {e}"))?;
            checksum_in_file(&text, &image.url)?
        } else {
            given.to_string()
        };
        Checksum::new(&hex, &kind).map(Some)
    }
}

fn open_rw(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// Adds the config drive partition at the end of the disk and writes the drive into it.
fn write_config_drive(path: &Path, sector: u64, files: &ConfigFiles) -> Result<String, String> {
    let image = fat_image(files, LABEL).map_err(|e| format!("config drive: {e}"))?;
    let mut file = open_rw(path)?;
    let part = add_partition_at_end(&mut file, sector, CONFIG_DRIVE_PARTITION, LABEL)
        .map_err(|e| format!("config drive partition on {}: {e}", path.display()))?;
    std::os::unix::fs::FileExt::write_all_at(&file, &image, part.start)
        .map_err(|e| format!("writing the config drive: {e}"))?;
    file.sync_all()
        .map_err(|e| format!("syncing {}: {e}", path.display()))?;
    Ok(format!(
        "config drive ({} bytes) in partition {} at byte {}",
        image.len(),
        part.number,
        part.start
    ))
}
