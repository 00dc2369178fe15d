//! The main job on real virtual machines: the lab `../shared/peers/vm-lab.sh up` starts
//! (libvirt/QEMU guests behind sushy-tools' Redfish emulator, on a routed site network
//! with no DHCP server) taken through the whole Metal3 workflow by the conductor and the
//! operator, with the real agent ISO and a real OS disk image.
//!
//! [`run_lab`] writes a BareMetalHost per guest (Redfish virtual media; static addresses
//! from `preprovisioningNetworkDataName` and `networkData` Secrets; even guests
//! `bootMode: legacy`, odd ones UEFI), serves the images, runs the conductor and the
//! operator in the management namespace and a DHCP listener in the site namespace, and
//! checks every guest: inspected as it is (1 vCPU, its memory, its MAC, its disk),
//! provisioned, booted from its disk into the OS that read its config drive and called
//! back from its static address, deprovisioned (disk metadata erased, read from the host
//! with `qemu-img`), deleted.
//!
//! IPMI hosts are not in the lab's workflow: IPMI has no virtual media, so the agent
//! boots only from the network (PXE), which needs the DHCP server the site has not.
//!
//! ```no_run
//! use metal3_demo::lab::{Lab, LabConfig, LabImages, run_lab};
//! let lab = Lab::load("/tmp/lab".as_ref())?;
//! let images = LabImages::build(
//!     ".".as_ref(),
//!     "target/lab-images/agent".as_ref(),
//!     "target/lab-images/os".as_ref(),
//! )?;
//! let report = run_lab(LabConfig::new(lab, images))?;
//! assert!(report.ok());
//! # Ok::<(), String>(())
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::routing::get;
use bmc_core::sync::lock as locked;
use bmc_core::verified::PollPolicy;
use metal3_conductor::conductor::AgentConfigImages;
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use metal3_conductor::{ConductorApi, ConductorConfig, HttpConductor};
use metal3_operator::manifests::Manifests;
use metal3_operator::operator::{Operator, OperatorConfig};
use metal3_operator::store::Store;
use provision_fsm::{HostStateKind, NodeState, NodeTimeouts};

use crate::fleet::{self, Images};

/// One guest of the lab, as `lab.env` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// Its index (0, 1, …).
    pub index: usize,
    /// The libvirt domain's name.
    pub name: String,
    /// Its Redfish System path at the emulator.
    pub system: String,
    /// Its NIC's MAC.
    pub mac: String,
    /// The static address it is given.
    pub ip: Ipv4Addr,
    /// Its disk (qcow2) on the host.
    pub disk: PathBuf,
    /// Its serial console log.
    pub serial: PathBuf,
}

/// A running lab, read from `DIR/lab.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// The lab's directory.
    pub dir: PathBuf,
    /// The management network namespace (the emulator's, the conductor's).
    pub mgmt_netns: String,
    /// The site network namespace (the guests' bridge and gateway).
    pub site_netns: String,
    /// The management side's address, where guests reach the conductor and images.
    pub mgmt_addr: Ipv4Addr,
    /// The site's gateway.
    pub gateway: Ipv4Addr,
    /// The site network's prefix length.
    pub prefix: u8,
    /// The Redfish emulator's base URL.
    pub redfish: String,
    /// The guests.
    pub nodes: Vec<LabNode>,
}

impl Lab {
    /// Reads `dir/lab.env`.
    pub fn load(dir: &Path) -> Result<Lab, String> {
        let path = dir.join("lab.env");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (is the lab up? vm-lab.sh up DIR)", path.display()))?;
        let env: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &str| -> Result<&str, String> {
            env.get(key)
                .copied()
                .ok_or_else(|| format!("{}: no {key}", path.display()))
        };
        let parse_ip = |key: &str| -> Result<Ipv4Addr, String> {
            get(key)?
                .parse()
                .map_err(|e| format!("{}: {key}: {e}", path.display()))
        };
        let count: usize = get("NODES")?
            .parse()
            .map_err(|e| format!("{}: NODES: {e}", path.display()))?;
        let mut nodes = Vec::new();
        for index in 0..count {
            let key = |k: &str| format!("NODE{index}_{k}");
            nodes.push(LabNode {
                index,
                name: get(&key("NAME"))?.to_string(),
                system: get(&key("REDFISH_SYSTEM"))?.to_string(),
                mac: get(&key("MAC"))?.to_ascii_lowercase(),
                ip: parse_ip(&key("IP"))?,
                disk: PathBuf::from(get(&key("DISK"))?),
                serial: PathBuf::from(get(&key("SERIAL"))?),
            });
        }
        Ok(Lab {
            dir: PathBuf::from(get("LAB_DIR")?),
            mgmt_netns: get("MGMT_NETNS")?.to_string(),
            site_netns: get("SITE_NETNS")?.to_string(),
            mgmt_addr: parse_ip("MGMT_ADDR")?,
            gateway: parse_ip("SITE_GATEWAY")?,
            prefix: get("SITE_PREFIX")?
                .parse()
                .map_err(|e| format!("{}: SITE_PREFIX: {e}", path.display()))?,
            redfish: get("REDFISH")?.to_string(),
            nodes,
        })
    }
}

/// The images the lab boots and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabImages {
    /// The one agent ISO every guest boots.
    pub agent_iso: PathBuf,
    /// The OS disk image provisioned (qcow2).
    pub os_qcow2: PathBuf,
}

impl LabImages {
    /// The agent ISO in `agent_dir` and the test OS in `os_dir`, built with
    /// `examples/agent/image/agent-image.sh` (under `repo`; the agent with its own
    /// cargo target folder, `agent_dir/cargo`) when missing, the OS converted to qcow2
    /// with `qemu-img`.
    pub fn build(repo: &Path, agent_dir: &Path, os_dir: &Path) -> Result<LabImages, String> {
        let script = repo.join("examples/agent/image/agent-image.sh");
        let agent_iso = agent_dir.join("agent.iso");
        let os_img = os_dir.join("os.img");
        let os_qcow2 = os_dir.join("os.qcow2");
        let cargo_target = agent_dir.join("cargo");
        let run = |what: &str, program: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let status = Command::new(program)
                .args(args)
                .env("CARGO_TARGET_DIR", &cargo_target)
                .status()
                .map_err(|e| format!("{what}: {e}"))?;
            match status.success() {
                true => Ok(()),
                false => Err(format!("{what} failed ({status})")),
            }
        };
        if !agent_iso.exists() {
            let args = [script.as_os_str(), "build".as_ref(), agent_dir.as_os_str()];
            run("agent-image.sh build", "bash", &args)?;
        }
        if !os_img.exists() {
            let args = [script.as_os_str(), "os".as_ref(), os_dir.as_os_str()];
            run("agent-image.sh os", "bash", &args)?;
        }
        if !os_qcow2.exists() {
            let args = [
                "convert".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "raw".as_ref(),
                "-O".as_ref(),
                "qcow2".as_ref(),
                os_img.as_os_str(),
                os_qcow2.as_os_str(),
            ];
            run("qemu-img convert", "qemu-img", &args)?;
        }
        Ok(LabImages {
            agent_iso,
            os_qcow2,
        })
    }
}

/// How to run the lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The lab.
    pub lab: Lab,
    /// Its images.
    pub images: LabImages,
    /// Give up after this long.
    pub timeout: Duration,
    /// Print each host's progress.
    pub progress: bool,
}

impl LabConfig {
    /// The lab with its images, 15 minutes at most, quiet.
    pub fn new(lab: Lab, images: LabImages) -> LabConfig {
        LabConfig {
            lab,
            images,
            timeout: Duration::from_secs(900),
            progress: false,
        }
    }
}

/// What became of one guest.
#[derive(Debug, Clone, Default)]
pub struct LabHost {
    /// The BareMetalHost (`namespace/name`).
    pub key: String,
    /// `legacy` or `UEFI`.
    pub boot_mode: String,
    /// From the BareMetalHost applied to provisioned.
    pub provisioned_after: Option<Duration>,
    /// From the BareMetalHost applied to its OS calling back from its disk.
    pub os_up_after: Option<Duration>,
    /// The address the OS called back from.
    pub os_up_from: Option<String>,
    /// How long the agent took from its boot by virtual media to its inventory
    /// (the node's time in `inspect wait`).
    pub agent_boot: Option<Duration>,
    /// Requests the BMC (the emulator) answered for this guest's System.
    pub bmc_requests: usize,
    /// What inspection found: CPUs, memory, MACs, disks.
    pub inventory: String,
    /// Seconds in each provisioning state.
    pub phases: Vec<(String, f64)>,
    /// What went wrong (empty: the guest went through everything as it should).
    pub problems: Vec<String>,
}

/// What a lab run did.
#[derive(Debug, Clone, Default)]
pub struct LabReport {
    /// Every guest.
    pub hosts: Vec<LabHost>,
    /// DHCP requests heard on the site network (sender and message), there should be
    /// none.
    pub dhcp_requests: Vec<String>,
    /// The shared agent ISO's size: the only agent image stored on the management side.
    pub agent_iso_bytes: u64,
    /// What the emulator copied into its libvirt pool (sushy-tools keeps every inserted
    /// image; a real BMC streams it).
    pub emulator_pool_bytes: u64,
    /// The whole run.
    pub total: Duration,
}

impl LabReport {
    /// Every guest went through and no DHCP request was heard.
    pub fn ok(&self) -> bool {
        !self.hosts.is_empty()
            && self.hosts.iter().all(|h| h.problems.is_empty())
            && self.dhcp_requests.is_empty()
    }

    /// One line per guest.
    pub fn table(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
        let mut out = format!(
            "{:<24} {:<7} {:>12} {:>9} {:>11} {:>9}  {}\n",
            "HOST", "BOOT", "PROVISIONED", "OS UP", "AGENT BOOT", "BMC REQS", "RESULT"
        );
        for h in &self.hosts {
            out.push_str(&format!(
                "{:<24} {:<7} {:>11}s {:>8}s {:>10}s {:>9}  {}\n",
                h.key,
                h.boot_mode,
                secs(h.provisioned_after),
                secs(h.os_up_after),
                secs(h.agent_boot),
                h.bmc_requests,
                match h.problems.is_empty() {
                    true => "ok".to_string(),
                    false => h.problems.join("; "),
                }
            ));
        }
        out
    }
}

/// The namespace every guest's objects go in.
const NAMESPACE: &str = "lab";

/// The host's name for a guest.
fn host_name(node: &LabNode) -> String {
    format!("lab-{}", node.index)
}

/// Even guests boot legacy BIOS, odd ones UEFI.
fn legacy(node: &LabNode) -> bool {
    node.index % 2 == 0
}

fn network_data(node: &LabNode, lab: &Lab) -> serde_json::Value {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(lab.prefix))
        .unwrap_or(0);
    serde_json::json!({
        "links": [{"id": "nic0", "type": "phy", "ethernet_mac_address": node.mac}],
        "networks": [{
            "id": "site", "type": "ipv4", "link": "nic0",
            "ip_address": node.ip.to_string(),
            "netmask": Ipv4Addr::from(mask).to_string(),
            "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": lab.gateway.to_string()}]
        }],
        "services": []
    })
}

/// The manifests of the lab's hosts: a credentials Secret, and per guest its network
/// Secret, its user data (a script calling back to `beacon`) and its BareMetalHost.
pub fn lab_manifests(lab: &Lab, image_url: &str, checksum: &str, beacon: &str) -> String {
    let mut out = String::from(
        "# Written by metal3-lab for the guests of the lab in this directory.\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: lab-bmc\n  namespace: lab\n\
         stringData:\n  username: admin\n  password: password\n",
    );
    for node in &lab.nodes {
        let name = host_name(node);
        let network = network_data(node, lab);
        let user_data =
            format!("#!/bin/sh\nwget -q -O /dev/null {beacon}/os-up/{name} && echo called back\n");
        let indent = |text: &str| {
            text.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-network\n  namespace: {NAMESPACE}\n\
             stringData:\n  networkData: '{network}'\n\
             ---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-user-data\n  namespace: {NAMESPACE}\n\
             stringData:\n  userData: |\n{user_data}\
             ---\napiVersion: metal3.io/v1alpha1\nkind: BareMetalHost\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
             spec:\n  online: true\n  bootMode: {mode}\n  bootMACAddress: \"{mac}\"\n\
             \x20 bmc:\n    address: redfish-virtualmedia+{redfish}{system}\n    credentialsName: lab-bmc\n\
             \x20 automatedCleaningMode: metadata\n  rootDeviceHints:\n    deviceName: /dev/vda\n  preprovisioningNetworkDataName: {name}-network\n\
             \x20 networkData:\n    name: {name}-network\n  userData:\n    name: {name}-user-data\n\
             \x20 image:\n    url: {image_url}\n    checksum: {checksum}\n    checksumType: sha256\n    format: qcow2\n",
            network = network,
            user_data = indent(&user_data),
            mode = if legacy(node) { "legacy" } else { "UEFI" },
            mac = node.mac,
            redfish = lab.redfish,
            system = node.system,
        ));
    }
    out
}

/// Call-backs of provisioned OSes: host name → when, and from which address.
type Beacons = Arc<Mutex<BTreeMap<String, (Instant, SocketAddr)>>>;

async fn os_up(
    State(beacons): State<Beacons>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(name): UrlPath<String>,
) -> &'static str {
    locked(&beacons)
        .entry(name)
        .or_insert_with(|| (Instant::now(), peer));
    "ok\n"
}

/// Moves the calling thread into network namespace `name` (`ip netns` names it under
/// `/run/netns`).
fn enter_netns(name: &str) -> Result<(), String> {
    let path = Path::new("/run/netns").join(name);
    let file = std::fs::File::open(&path).map_err(|e| format!("network namespace {name}: {e}"))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("entering network namespace {name}: {e}"))
}

/// A DHCP (v4) listener: every request heard on port 67 of any address of the namespace
/// it was bound in, as "sender: message type", until `stop` is set.
pub struct DhcpListener {
    heard: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DhcpListener {
    /// Listens in network namespace `netns` (`None`: this thread's).
    pub fn start(netns: Option<&str>) -> Result<DhcpListener, String> {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.map(str::to_string);
        let (h, s) = (heard.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let bound = (|| {
                if let Some(ns) = &netns {
                    enter_netns(ns)?;
                }
                let socket = std::net::UdpSocket::bind(("0.0.0.0", 67))
                    .map_err(|e| format!("binding UDP port 67: {e}"))?;
                socket
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(socket)
            })();
            let socket = match bound {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 1500];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    locked(&h).push(format!("{from}: {}", describe_dhcp(&buf[..n])));
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| "the DHCP listener stopped".to_string())??;
        Ok(DhcpListener {
            heard,
            stop,
            thread: Some(thread),
        })
    }

    /// What was heard so far.
    pub fn heard(&self) -> Vec<String> {
        locked(&self.heard).clone()
    }
}

impl Drop for DhcpListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A BOOTP/DHCP message as a few words: its DHCP message type and client MAC.
pub fn describe_dhcp(packet: &[u8]) -> String {
    if packet.len() < 240 || packet[236..240] != [99, 130, 83, 99] {
        return format!("{} bytes, not DHCP", packet.len());
    }
    let mac = packet[28..34]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut options = &packet[240..];
    let mut kind = "BOOTP".to_string();
    while let [code, rest @ ..] = options {
        match code {
            0 => options = rest,
            255 => break,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len);
                if rest.len() < len {
                    break;
                }
                if *code == 53 && len == 1 {
                    kind = match rest[0] {
                        1 => "DHCPDISCOVER",
                        3 => "DHCPREQUEST",
                        4 => "DHCPDECLINE",
                        7 => "DHCPRELEASE",
                        8 => "DHCPINFORM",
                        _ => "DHCP",
                    }
                    .to_string();
                }
                options = &rest[len..];
            }
        }
    }
    format!("{kind} from {mac}")
}

/// Runs the lab (blocking): the DHCP listener in the site namespace, everything else on
/// a runtime of its own in the management namespace.
pub fn run_lab(config: LabConfig) -> Result<LabReport, String> {
    let dhcp = DhcpListener::start(Some(&config.lab.site_netns))?;
    let mgmt = config.lab.mgmt_netns.clone();
    let worker = std::thread::spawn(move || {
        enter_netns(&mgmt)?;
        // Threads the runtime starts are created from this one: they are in its namespace.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        runtime.block_on(lab_in_mgmt(config))
    });
    let mut report = worker
        .join()
        .map_err(|_| "the lab's runtime panicked".to_string())??;
    report.dhcp_requests = dhcp.heard();
    Ok(report)
}

/// When each guest's host became provisioned and its node entered and left `inspect wait`,
/// from polling the operator and the conductor.
struct Watch {
    applied: Instant,
    provisioned: BTreeMap<String, Instant>,
    inspect_wait: BTreeMap<String, (Instant, Option<Instant>)>,
}

impl Watch {
    async fn tick(&mut self, operator: &Operator, admin: &dyn ConductorApi, keys: &[String]) {
        for key in keys {
            if operator
                .record(key)
                .is_some_and(|r| r.host.state.kind() == HostStateKind::Provisioned)
            {
                self.provisioned
                    .entry(key.clone())
                    .or_insert_with(Instant::now);
            }
            let Ok(node) = admin.node(key).await else {
                continue;
            };
            let now = Instant::now();
            match self.inspect_wait.get_mut(key) {
                None if node.state == NodeState::InspectWait => {
                    self.inspect_wait.insert(key.clone(), (now, None));
                }
                Some((_, end @ None)) if node.state != NodeState::InspectWait => *end = Some(now),
                _ => {}
            }
        }
    }
}

fn inventory_line(hw: &bmc_core::HardwareInventory) -> String {
    let macs: Vec<String> = hw
        .nics
        .iter()
        .filter_map(|n| n.mac.as_ref().map(|m| m.to_string().to_ascii_lowercase()))
        .collect();
    let disks: Vec<String> = hw
        .disks
        .iter()
        .map(|d| format!("{} {} MiB", d.id, d.size_bytes.unwrap_or(0) >> 20))
        .collect();
    format!(
        "{} CPU, {} MiB, NICs {}, disks {}",
        hw.cpus.len(),
        hw.total_memory_mib.unwrap_or(0),
        macs.join(" "),
        disks.join(", ")
    )
}

/// The guest's disk from the host: its virtual size, its first and its last MiB
/// (`qemu-img convert` to a sparse raw file: `-U`, the guest may still run).
fn disk_ends(disk: &Path, scratch: &Path) -> Result<(u64, Vec<u8>, Vec<u8>), String> {
    use std::io::{Read, Seek, SeekFrom};
    let raw = scratch.join(format!(
        "{}-{}.raw",
        disk.file_stem().and_then(|s| s.to_str()).unwrap_or("disk"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&raw);
    let out = Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
        .arg(disk)
        .arg(&raw)
        .output()
        .map_err(|e| format!("qemu-img convert: {e}"))?;
    let read = || -> std::io::Result<(u64, Vec<u8>, Vec<u8>)> {
        let mut f = std::fs::File::open(&raw)?;
        let size = f.metadata()?.len();
        let mib = 1u64 << 20;
        let mut first = vec![0u8; mib.min(size) as usize];
        f.read_exact(&mut first)?;
        f.seek(SeekFrom::Start(size.saturating_sub(mib)))?;
        let mut last = vec![0u8; mib.min(size) as usize];
        f.read_exact(&mut last)?;
        Ok((size, first, last))
    };
    let result = match out.status.success() {
        true => read().map_err(|e| format!("reading {}: {e}", raw.display())),
        false => Err(format!(
            "qemu-img convert {}: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    };
    let _ = std::fs::remove_file(&raw);
    match result {
        Ok((size, ..)) if size < 2 << 20 => Err(format!("{}: only {size} bytes", disk.display())),
        other => other,
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// BMC requests for each System path in the emulator's access log.
fn emulator_requests(lab: &Lab) -> BTreeMap<String, usize> {
    let log = std::fs::read_to_string(lab.dir.join("logs/sushy-emulator.log")).unwrap_or_default();
    lab.nodes
        .iter()
        .map(|n| {
            let count = log
                .lines()
                .filter(|l| l.contains("HTTP/1.") && l.contains(&n.system))
                .count();
            (n.system.clone(), count)
        })
        .collect()
}

async fn lab_in_mgmt(config: LabConfig) -> Result<LabReport, String> {
    let started = Instant::now();
    let lab = &config.lab;
    let deadline = started + config.timeout;
    let say = |line: String| {
        if config.progress {
            println!("[{:6.1} s] {line}", started.elapsed().as_secs_f64());
        }
    };
    let requests_before = emulator_requests(lab);

    // The images and the call-backs, on the management side.
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let agent_iso = read(&config.images.agent_iso)?;
    let agent_iso_bytes = agent_iso.len() as u64;
    let images = Images::default()
        .with("agent.iso", agent_iso)
        .with("os.qcow2", read(&config.images.os_qcow2)?);
    let checksum = images
        .checksum("os.qcow2", "sha256")
        .ok_or("no checksum of os.qcow2")?;
    let beacons: Beacons = Arc::default();
    let app = fleet::images_router(images).merge(
        Router::new()
            .route("/os-up/{name}", get(os_up))
            .with_state(beacons.clone()),
    );
    let listener = tokio::net::TcpListener::bind((lab.mgmt_addr, 0))
        .await
        .map_err(|e| format!("image server on {}: {e}", lab.mgmt_addr))?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });

    // The conductor: its admin API on loopback, its agent API where guests reach it;
    // agents boot the one shared ISO with a config image per host.
    let state = lab.dir.join("conductor.redb");
    let _ = std::fs::remove_file(&state);
    let ten_minutes = Duration::from_secs(600);
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: format!("{}:0", lab.mgmt_addr),
            state: Some(state),
            conductor: ConductorConfig {
                agent_image_url: format!("{base}/images/agent.iso"),
                agent_config_images: Some(AgentConfigImages {
                    agent_api_url: String::new(),
                    ca_pem: None,
                    agent_iso_file: Some(config.images.agent_iso.clone()),
                }),
                poll: PollPolicy {
                    initial: Duration::from_millis(200),
                    max: Duration::from_secs(2),
                },
                operation_timeout: Duration::from_secs(180),
                timeouts: NodeTimeouts {
                    inspect_wait: ten_minutes,
                    deploy_callback: ten_minutes,
                    clean_callback: ten_minutes,
                },
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await?;
    let admin: Arc<dyn ConductorApi> = Arc::new(HttpConductor::new(&service.admin_url()));

    // The hosts, as a user would write them.
    let manifests_dir = lab.dir.join("manifests");
    std::fs::create_dir_all(&manifests_dir)
        .map_err(|e| format!("{}: {e}", manifests_dir.display()))?;
    let yaml = lab_manifests(lab, &format!("{base}/images/os.qcow2"), &checksum, &base);
    let hosts_file = manifests_dir.join("hosts.yaml");
    std::fs::write(&hosts_file, yaml).map_err(|e| format!("{}: {e}", hosts_file.display()))?;
    let manifests = Manifests::load_dir(&manifests_dir)?;
    let store_path = lab.dir.join("operator.redb");
    let _ = std::fs::remove_file(&store_path);
    let operator = Operator::open(
        admin.clone(),
        Store::open(&store_path).map_err(|e| e.to_string())?,
        OperatorConfig {
            poll: Duration::from_millis(200),
            ..OperatorConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let keys: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("{NAMESPACE}/{}", host_name(n)))
        .collect();
    let applied = Instant::now();
    operator.apply(&manifests)?;
    operator.run_embedded();
    say(format!(
        "{} BareMetalHosts applied ({})",
        keys.len(),
        hosts_file.display()
    ));

    let mut watch = Watch {
        applied,
        provisioned: BTreeMap::new(),
        inspect_wait: BTreeMap::new(),
    };
    let mut last_states: BTreeMap<String, String> = BTreeMap::new();
    let mut last_errors: BTreeMap<String, String> = BTreeMap::new();
    let failed = |key: &str| {
        operator.record(key).and_then(|r| {
            r.host
                .error
                .map(|e| format!("{}: {}", e.kind.name(), e.message))
        })
    };
    // 1. Provisioned, and the OS up from its disk.
    loop {
        watch.tick(&operator, admin.as_ref(), &keys).await;
        for key in &keys {
            let state = operator
                .record(key)
                .map_or("-".to_string(), |r| r.host.state.kind().name().to_string());
            if last_states.get(key) != Some(&state) {
                say(format!("{key}: {state}"));
                last_states.insert(key.clone(), state);
            }
        }
        let up = locked(&beacons).len();
        if up == keys.len() || Instant::now() > deadline {
            break;
        }
        for key in &keys {
            let error = failed(key);
            if error.is_some() && last_errors.get(key) != error.as_ref() {
                say(format!("{key}: {}", error.clone().unwrap_or_default()));
            }
            last_errors.insert(key.clone(), error.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let at_provisioned = operator.records();
    say(format!(
        "{} of {} OSes called back",
        locked(&beacons).len(),
        keys.len()
    ));

    // 2. Deprovision: the image goes; the host stays off.
    for bmh in &manifests.hosts {
        let mut h = bmh.clone();
        h.spec.image = None;
        h.spec.online = false;
        operator.put_host(h);
    }
    while Instant::now() < deadline
        && !keys.iter().all(|k| {
            operator
                .record(k)
                .is_some_and(|r| r.host.state.kind() == HostStateKind::Available)
        })
    {
        watch.tick(&operator, admin.as_ref(), &keys).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let at_available = operator.records();
    say("deprovisioned".to_string());

    // 3. Delete.
    for key in &keys {
        operator.delete_host(key);
    }
    while Instant::now() < deadline && !keys.iter().all(|k| operator.is_gone(k)) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    say("deleted".to_string());
    operator.clone().stop().await;

    // Checks.
    let requests_after = emulator_requests(lab);
    let beacons = locked(&beacons).clone();
    let mut hosts = Vec::new();
    for (node, key) in lab.nodes.iter().zip(&keys) {
        let mut problems = Vec::new();
        let rec = at_provisioned.get(key);
        let name = host_name(node);
        let hw = rec.and_then(|r| r.hardware.clone());
        let inventory = hw.as_ref().map(inventory_line).unwrap_or_default();
        // The disk read once from the host: its size for inspection, its ends for erasing.
        let disk = disk_ends(&node.disk, &lab.dir);
        if let Err(e) = &disk {
            problems.push(e.clone());
        }
        match &hw {
            None => problems.push("not inspected".into()),
            Some(hw) => {
                if hw.cpus.len() != 1 {
                    problems.push(format!(
                        "inspection found {} CPUs, the guest has 1",
                        hw.cpus.len()
                    ));
                }
                let macs: Vec<String> = hw
                    .nics
                    .iter()
                    .filter_map(|n| n.mac.as_ref().map(|m| m.to_string().to_ascii_lowercase()))
                    .collect();
                if !macs.contains(&node.mac) {
                    problems.push(format!(
                        "inspection did not find MAC {} ({macs:?})",
                        node.mac
                    ));
                }
                // The guest's RAM less what firmware keeps: within 64 MiB of what it has.
                let mib = hw.total_memory_mib.unwrap_or(0);
                let xml = lab.dir.join(format!("xml/{}.xml", node.name));
                match std::fs::read_to_string(&xml) {
                    Err(e) => problems.push(format!("{}: {e}", xml.display())),
                    Ok(mem) => {
                        let given: u64 = mem
                            .split("<memory unit='MiB'>")
                            .nth(1)
                            .and_then(|r| r.split('<').next())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if given == 0 {
                            problems.push(format!("no memory size in {}", xml.display()));
                        } else if mib > given || mib + 64 < given {
                            problems
                                .push(format!("inspection found {mib} MiB, the guest has {given}"));
                        }
                    }
                }
                if let Ok((size, _, _)) = &disk {
                    if !hw.disks.iter().any(|d| d.size_bytes == Some(*size)) {
                        problems.push(format!("inspection found no disk of {size} bytes"));
                    }
                }
            }
        }
        // The firmware the emulator gave the guest for its boot mode (its loader).
        match Command::new("virsh")
            .args(["-q", "-c", "qemu:///system", "dumpxml", &node.name])
            .output()
        {
            Ok(out) => {
                let xml = String::from_utf8_lossy(&out.stdout);
                let uefi = xml.contains("OVMF");
                if uefi == legacy(node) {
                    problems.push(format!(
                        "booted {} for bootMode {}",
                        if uefi { "UEFI (OVMF)" } else { "BIOS" },
                        if legacy(node) { "legacy" } else { "UEFI" }
                    ));
                }
            }
            Err(e) => problems.push(format!("virsh dumpxml {}: {e}", node.name)),
        }
        if rec.is_none_or(|r| r.host.state.kind() != HostStateKind::Provisioned) {
            problems.push(format!(
                "not provisioned{}",
                failed(key).map(|e| format!(" ({e})")).unwrap_or_default()
            ));
        }
        let up = beacons.get(&name);
        match up {
            None => problems.push(format!(
                "its OS never called back from its disk (console: {})",
                node.serial.display()
            )),
            Some((_, from)) if from.ip() != std::net::IpAddr::V4(node.ip) => {
                problems.push(format!(
                    "its OS called back from {}, not its static address {}",
                    from.ip(),
                    node.ip
                ))
            }
            Some(_) => {}
        }
        if at_available
            .get(key)
            .is_none_or(|r| r.host.state.kind() != HostStateKind::Available)
        {
            problems.push("not deprovisioned to available".into());
        }
        if let Ok((_, first, last)) = &disk {
            if first.iter().any(|b| *b != 0) || last.iter().any(|b| *b != 0) {
                problems
                    .push("its disk's first or last MiB not erased after deprovisioning".into());
            }
        }
        if !operator.is_gone(key) {
            problems.push("not deleted".into());
        }
        if admin.node(key).await.is_ok() {
            problems.push("its conductor node is still there".into());
        }
        let (start, end) = watch.inspect_wait.get(key).copied().unzip();
        hosts.push(LabHost {
            key: key.clone(),
            boot_mode: if legacy(node) { "legacy" } else { "UEFI" }.into(),
            provisioned_after: watch.provisioned.get(key).map(|t| *t - watch.applied),
            os_up_after: up.map(|(t, _)| *t - watch.applied),
            os_up_from: up.map(|(_, from)| from.ip().to_string()),
            agent_boot: start.zip(end.flatten()).map(|(s, e)| e - s),
            bmc_requests: requests_after.get(&node.system).copied().unwrap_or(0)
                - requests_before.get(&node.system).copied().unwrap_or(0),
            inventory,
            phases: at_available
                .get(key)
                .or(rec)
                .map(|r| r.phases.clone())
                .unwrap_or_default(),
            problems,
        });
    }
    drop(service);
    server.abort();
    Ok(LabReport {
        hosts,
        dhcp_requests: Vec::new(),
        agent_iso_bytes,
        emulator_pool_bytes: dir_bytes(&lab.dir.join("pool")),
        total: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dhcp_discover_is_told_apart_from_other_packets() {
        let mut p = vec![0u8; 244];
        p[0] = 1;
        p[28..34].copy_from_slice(&[0x52, 0x54, 0, 0xaa, 0, 1]);
        p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        p.extend_from_slice(&[53, 1, 1, 255]);
        p.truncate(240);
        p.extend_from_slice(&[0, 53, 1, 1, 255]);
        assert_eq!(describe_dhcp(&p), "DHCPDISCOVER from 52:54:00:aa:00:01");
        assert_eq!(describe_dhcp(&[0u8; 40]), "40 bytes, not DHCP");
        p[241] = 50; // another option: plain BOOTP/DHCP with no type
        assert!(describe_dhcp(&p).starts_with("BOOTP"));
    }

    #[test]
    fn the_manifests_give_every_guest_its_static_address_and_boot_mode() {
        let lab = Lab {
            dir: "/tmp/lab".into(),
            mgmt_netns: "m".into(),
            site_netns: "s".into(),
            mgmt_addr: Ipv4Addr::new(172, 30, 1, 1),
            gateway: Ipv4Addr::new(172, 30, 2, 1),
            prefix: 24,
            redfish: "http://172.30.1.1:8000".into(),
            nodes: (0..2)
                .map(|i| LabNode {
                    index: i,
                    name: format!("bmlab-node{i}"),
                    system: format!("/redfish/v1/Systems/uuid-{i}"),
                    mac: format!("52:54:00:aa:00:0{}", i + 1),
                    ip: Ipv4Addr::new(172, 30, 2, 20 + i as u8),
                    disk: "/d".into(),
                    serial: "/s".into(),
                })
                .collect(),
        };
        let dir = std::env::temp_dir().join(format!("lab-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let yaml = lab_manifests(
            &lab,
            "http://172.30.1.1:9/images/os.qcow2",
            "ab12",
            "http://172.30.1.1:9",
        );
        std::fs::write(dir.join("hosts.yaml"), yaml).unwrap_or_default();
        let loaded = Manifests::load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let m = match loaded {
            Ok(m) => m,
            Err(e) => return assert!(e.is_empty(), "{e}"),
        };
        assert_eq!(m.hosts.len(), 2);
        let h1 = &m.hosts[1];
        assert_eq!(h1.spec.boot_mode.as_deref(), Some("UEFI"));
        assert_eq!(m.hosts[0].spec.boot_mode.as_deref(), Some("legacy"));
        assert_eq!(
            h1.spec.bmc.address,
            "redfish-virtualmedia+http://172.30.1.1:8000/redfish/v1/Systems/uuid-1"
        );
        let secret = m.secret("lab", "lab-1-network");
        let data = secret
            .and_then(|s| s.get("networkData").ok().flatten())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
        assert_eq!(v["networks"][0]["ip_address"], "172.30.2.21");
        assert_eq!(v["networks"][0]["netmask"], "255.255.255.0");
        assert_eq!(v["links"][0]["ethernet_mac_address"], "52:54:00:aa:00:02");
        let user = m
            .secret("lab", "lab-0-user-data")
            .and_then(|s| s.get("userData").ok().flatten())
            .unwrap_or_default();
        assert!(
            user.starts_with("#!/bin/sh\n") && user.contains("http://172.30.1.1:9/os-up/lab-0"),
            "{user}"
        );
    }
}
