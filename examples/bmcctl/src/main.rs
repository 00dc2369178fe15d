//! `bmcctl`: drive one BMC from the command line through the driver registry.
//!
//! `bmcctl --help` (and `bmcctl help COMMAND`) tells every command and option:
//! `power`, `boot`, `media` (with the verified `media boot`), `inventory`, `info` and
//! `watch power`. Output is human text and tables, or one JSON object with `--json`.
//! The password comes from the environment variable named by `--password-env` (default
//! `BMC_PASSWORD`) or from `--password-file`, never from the command line. Each run
//! authenticates its requests directly (no session to create, delete or leak);
//! `--session` logs in with a session instead when the BMC offers one. Exit status: 0
//! done, 1 the BMC or the connection failed, 2 a wrong command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bmc_core::verified::{Deadline, boot_from_virtual_media, ensure_power};
use bmc_core::{
    BmcAddress, BmcDriver, BootDevice, BootMode, BootOverride, ConnectOptions, Credentials,
    HardwareInventory, MediaKind, PowerAction, PowerState, Registry,
};
use clap::{Parser, Subcommand, ValueEnum};
use metal3_cli::{EXIT_FAILED, EXIT_USAGE, LogArgs, Shell};
use serde_json::{Value, json};

/// Drives one BMC (Redfish, iDRAC, iLO or IPMI) through the driver registry: power,
/// boot override, virtual media, the verified virtual-media boot, inventory.
#[derive(Debug, Parser)]
#[command(name = "bmcctl", version)]
struct Cli {
    /// BMC user.
    #[arg(long, default_value = "admin", global = true)]
    user: String,
    /// The environment variable that holds the password.
    #[arg(
        long,
        value_name = "VAR",
        default_value = "BMC_PASSWORD",
        global = true
    )]
    password_env: String,
    /// A file whose first line is the password (instead of the environment).
    #[arg(long, value_name = "FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Does not verify the BMC's TLS certificate.
    #[arg(long, global = true)]
    insecure: bool,
    /// Trusts this CA certificate (PEM) besides the system's.
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<PathBuf>,
    /// Logs in with a session instead of authenticating each request.
    #[arg(long, global = true)]
    session: bool,
    /// Prints one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Time limit for the whole operation, waits and retries included.
    #[arg(long, value_name = "SECS", default_value_t = 300, global = true)]
    timeout: u64,
    /// Prints shell completions for SHELL and exits.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<Shell>,
    #[command(flatten)]
    log: LogArgs,
    /// The BMC, as a Metal3 address (`redfish-virtualmedia://10.0.0.5/redfish/v1/Systems/1`,
    /// `ipmi://10.0.0.6`).
    #[arg(required_unless_present = "completions")]
    address: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Reads or changes the power state (changes are verified by reading back).
    Power {
        /// What to do.
        #[arg(value_enum)]
        action: PowerVerb,
    },
    /// Reads or sets the boot override.
    Boot {
        #[command(subcommand)]
        command: BootCommand,
    },
    /// Virtual media.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// The hardware inventory: system, CPUs, memory, NICs, disks, firmware.
    Inventory,
    /// The driver and what it can do with this BMC.
    Info,
    /// Watches the BMC.
    Watch {
        #[command(subcommand)]
        command: WatchCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PowerVerb {
    /// Reads the power state.
    Status,
    /// Powers on.
    On,
    /// Powers off at once.
    Off,
    /// Asks the operating system to shut down.
    SoftOff,
    /// Resets.
    Reset,
    /// Powers off and on.
    Cycle,
}

#[derive(Debug, Clone, Subcommand)]
enum BootCommand {
    /// Reads the boot override.
    Status,
    /// Sets the boot override and reads it back.
    Set {
        /// `pxe`, `disk`, `cd`, `bios`, `uefi-http`.
        device: String,
        /// Every boot until changed, not only the next.
        #[arg(long)]
        persistent: bool,
        /// Legacy BIOS boot mode.
        #[arg(long, conflicts_with = "uefi")]
        legacy: bool,
        /// UEFI boot mode.
        #[arg(long)]
        uefi: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum MediaCommand {
    /// The virtual-media slots and what is inserted.
    Status,
    /// Inserts an image in the virtual CD.
    Insert {
        /// The image's URL.
        url: String,
    },
    /// Ejects the virtual CD.
    Eject,
    /// Inserts an image, boots once from it and powers on, verifying each step.
    Boot {
        /// The image's URL.
        url: String,
        /// Legacy BIOS boot mode (UEFI by default).
        #[arg(long)]
        legacy: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum WatchCommand {
    /// Prints the power state, then a line at each change, until stopped.
    Power {
        /// How often to read it.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
        /// Stops after this many seconds (default: until Ctrl-C).
        #[arg(long = "for", value_name = "SECS")]
        duration: Option<u64>,
    },
}

/// Columns padded to their widest cell, a header row first.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn inventory_text(inv: &HardwareInventory) -> String {
    let memory = inv
        .total_memory_mib
        .unwrap_or_else(|| inv.memory.iter().filter_map(|m| m.capacity_mib).sum());
    let mut out = vec![format!(
        "{} {} serial {}: {} CPUs, {} MiB memory, {} NICs, {} disks",
        inv.system.manufacturer.as_deref().unwrap_or("?"),
        inv.system.model.as_deref().unwrap_or("?"),
        inv.system.serial_number.as_deref().unwrap_or("?"),
        inv.cpus.len(),
        memory,
        inv.nics.len(),
        inv.disks.len()
    )];
    if !inv.cpus.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .cpus
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    or_dash(c.model.as_deref()),
                    or_dash(c.cores),
                    or_dash(c.threads),
                    or_dash(c.max_speed_mhz),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(
            &["CPU", "MODEL", "CORES", "THREADS", "MAX MHZ"],
            &rows,
        ));
    }
    if !inv.nics.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .nics
            .iter()
            .map(|n| {
                vec![
                    n.id.clone(),
                    or_dash(n.mac.as_ref()),
                    or_dash(n.speed_mbps),
                    or_dash(n.link_up.map(|up| if up { "up" } else { "down" })),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(&["NIC", "MAC", "MBPS", "LINK"], &rows));
    }
    if !inv.disks.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .disks
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    format!("{:?}", d.kind).to_lowercase(),
                    or_dash(d.size_bytes.map(|b| b / 1_000_000_000)),
                    or_dash(d.model.as_deref()),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(&["DISK", "KIND", "GB", "MODEL"], &rows));
    }
    if !inv.firmware.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .firmware
            .iter()
            .map(|f| vec![f.component.clone(), f.version.clone()])
            .collect();
        out.push(String::new());
        out.push(table(&["FIRMWARE", "VERSION"], &rows));
    }
    out.join("\n")
}

fn device(name: &str) -> Result<BootDevice, String> {
    match name {
        "bios" => Ok(BootDevice::BiosSetup),
        other => other.parse(),
    }
}

/// Runs the command; returns the JSON result and its text form.
async fn run(cli: &Cli, command: &Command, bmc: &dyn BmcDriver) -> Result<(Value, String), String> {
    let deadline = || Deadline::after(Duration::from_secs(cli.timeout));
    let e = |e: bmc_core::BmcError| e.to_string();
    match command {
        Command::Power {
            action: PowerVerb::Status,
        } => {
            let s = bmc.power_state().await.map_err(e)?;
            Ok((json!({"power": s.to_string()}), format!("power {s}")))
        }
        Command::Power { action: verb } => {
            let action = match verb {
                PowerVerb::On => PowerAction::On,
                PowerVerb::Off => PowerAction::Off,
                PowerVerb::SoftOff => PowerAction::SoftOff,
                PowerVerb::Reset => PowerAction::Reset,
                PowerVerb::Cycle | PowerVerb::Status => PowerAction::PowerCycle,
            };
            let out = ensure_power(bmc, action, deadline()).await.map_err(e)?;
            let text = if out.acted {
                format!("{action}: done, power {}", out.final_state)
            } else {
                format!("{action}: already {}", out.final_state)
            };
            Ok((
                json!({"action": action.to_string(), "acted": out.acted, "power": out.final_state.to_string()}),
                text,
            ))
        }
        Command::Boot {
            command: BootCommand::Status,
        } => {
            let b = bmc.boot_override().await.map_err(e)?;
            let v = json!({
                "device": b.device.as_ref().map(ToString::to_string),
                "persistence": b.persistence.map(|p| format!("{p:?}").to_lowercase()),
                "mode": b.mode.map(|m| m.to_string()),
            });
            let text = match &b.device {
                Some(d) => format!(
                    "boot override {d}, {}, mode {}",
                    b.persistence
                        .map_or("persistence unknown".to_string(), |p| format!("{p:?}")
                            .to_lowercase()),
                    or_dash(b.mode)
                ),
                None => "no boot override".to_string(),
            };
            Ok((v, text))
        }
        Command::Boot {
            command:
                BootCommand::Set {
                    device: dev,
                    persistent,
                    legacy,
                    uefi,
                },
        } => {
            let mut o = BootOverride::once(device(dev)?);
            if *persistent {
                o.persistence = bmc_core::BootPersistence::Persistent;
            }
            if *legacy {
                o.mode = Some(BootMode::Legacy);
            } else if *uefi {
                o.mode = Some(BootMode::Uefi);
            }
            bmc.set_boot_override(&o).await.map_err(e)?;
            let back = bmc.boot_override().await.map_err(e)?;
            if !back.satisfies(&o) {
                return Err(format!(
                    "the BMC accepted the boot override but reports {back:?}"
                ));
            }
            Ok((
                json!({"device": o.device.to_string(), "verified": true}),
                format!("boot set to {} (verified)", o.device),
            ))
        }
        Command::Media {
            command: MediaCommand::Status,
        } => {
            let slots = bmc.virtual_media().await.map_err(e)?;
            let rows: Vec<Vec<String>> = slots
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.kinds
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        s.image
                            .clone()
                            .filter(|_| s.inserted)
                            .unwrap_or_else(|| "empty".to_string()),
                    ]
                })
                .collect();
            Ok((
                serde_json::to_value(&slots).map_err(|x| x.to_string())?,
                table(&["SLOT", "KINDS", "IMAGE"], &rows),
            ))
        }
        Command::Media {
            command: MediaCommand::Insert { url },
        } => {
            bmc.insert_media(&MediaKind::Cd, url).await.map_err(e)?;
            Ok((json!({"inserted": url}), format!("inserted {url}")))
        }
        Command::Media {
            command: MediaCommand::Eject,
        } => {
            bmc.eject_media(&MediaKind::Cd).await.map_err(e)?;
            Ok((json!({"ejected": true}), "ejected".to_string()))
        }
        Command::Media {
            command: MediaCommand::Boot { url, legacy },
        } => {
            let mode = if *legacy {
                BootMode::Legacy
            } else {
                BootMode::Uefi
            };
            let out = boot_from_virtual_media(bmc, url, mode, deadline())
                .await
                .map_err(e)?;
            Ok((
                json!({"slot": out.slot_id, "ejected_previous": out.ejected, "power_action": out.power_action.to_string(), "power": "On", "power_polls": out.power_polls}),
                format!(
                    "booting {url} from virtual CD slot {} ({}), power On",
                    out.slot_id, out.power_action
                ),
            ))
        }
        Command::Inventory => {
            let inv = bmc.inventory().await.map_err(e)?;
            let text = inventory_text(&inv);
            Ok((serde_json::to_value(&inv).map_err(|x| x.to_string())?, text))
        }
        Command::Info => {
            let c = bmc.capabilities();
            let list = |v: Vec<String>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(", ")
                }
            };
            let power: Vec<String> = c.power_actions.iter().map(ToString::to_string).collect();
            let boot: Vec<String> = c.boot_devices.iter().map(ToString::to_string).collect();
            let media: Vec<String> = c.virtual_media.iter().map(ToString::to_string).collect();
            let v = json!({
                "driver": bmc.driver_name(),
                "power_actions": power,
                "boot_devices": boot,
                "virtual_media": media,
                "inventory": c.inventory,
            });
            let text = table(
                &["DRIVER", bmc.driver_name()],
                &[
                    vec!["power".into(), list(power)],
                    vec!["boot devices".into(), list(boot)],
                    vec!["virtual media".into(), list(media)],
                    vec![
                        "inventory".into(),
                        if c.inventory { "yes" } else { "no" }.into(),
                    ],
                ],
            );
            Ok((v, text))
        }
        Command::Watch {
            command:
                WatchCommand::Power {
                    interval_ms,
                    duration,
                },
        } => {
            watch_power(
                cli,
                bmc,
                Duration::from_millis((*interval_ms).max(50)),
                *duration,
            )
            .await
        }
    }
}

/// Prints the power state and each change (text, or a JSON object per line) until the
/// time is up or Ctrl-C; returns the changes seen.
async fn watch_power(
    cli: &Cli,
    bmc: &dyn BmcDriver,
    interval: Duration,
    duration: Option<u64>,
) -> Result<(Value, String), String> {
    let until = duration.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let started = tokio::time::Instant::now();
    let mut last: Option<PowerState> = None;
    let mut changes = 0u64;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let state = bmc.power_state().await.map_err(|e| e.to_string())?;
        if last.as_ref() != Some(&state) {
            let at = started.elapsed().as_secs_f64();
            if cli.json {
                println!("{}", json!({"at_s": at, "power": state.to_string()}));
            } else {
                println!("{at:>8.1} s  power {state}");
            }
            if last.is_some() {
                changes += 1;
            }
            last = Some(state);
        }
        let wait = tokio::time::sleep(interval);
        if until.is_some_and(|u| tokio::time::Instant::now() + interval > u) {
            break;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = wait => {}
        }
    }
    let power = last.map(|p| p.to_string()).unwrap_or_default();
    Ok((
        json!({"power": power, "changes": changes}),
        format!("power {power} after {changes} changes"),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        metal3_cli::print_completions::<Cli>(shell);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = cli.log.init("warn") {
        eprintln!("bmcctl: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let (Some(address), Some(command)) = (cli.address.clone(), cli.command.clone()) else {
        eprintln!("bmcctl: give an ADDRESS and a command (bmcctl --help)");
        return ExitCode::from(EXIT_USAGE);
    };
    match connect_and_run(&cli, &address, &command).await {
        Ok((value, text)) => {
            // A watch printed as it went: only its summary is left.
            let watching = matches!(command, Command::Watch { .. });
            if cli.json && !watching {
                println!("{value}");
            } else if !cli.json {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if cli.json {
                println!("{}", json!({"error": e}));
            } else {
                eprintln!("bmcctl: {e}");
            }
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The password: from `--password-file` (its first line), else the environment.
fn password(cli: &Cli) -> Result<String, String> {
    if let Some(file) = &cli.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the password file {}: {e}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    std::env::var(&cli.password_env).map_err(|_| {
        format!(
            "set the BMC password in the environment variable {} (or use --password-file)",
            cli.password_env
        )
    })
}

async fn connect_and_run(
    cli: &Cli,
    address: &str,
    command: &Command,
) -> Result<(Value, String), String> {
    let address = BmcAddress::parse(address).map_err(|e| e.to_string())?;
    let password = password(cli)?;
    let credentials = Credentials::new(cli.user.as_str(), password).map_err(|e| e.to_string())?;
    let mut options =
        ConnectOptions::default().with_operation_timeout(Duration::from_secs(cli.timeout));
    if cli.insecure {
        options = options.with_certificate_verification_disabled();
    }
    if !cli.session {
        options = options.without_sessions();
    }
    if let Some(ca) = &cli.ca {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
        options = options.with_extra_ca_cert_pem(pem);
    }
    let mut registry = Registry::new();
    bmc_redfish::register(&mut registry);
    bmc_idrac::register(&mut registry);
    bmc_ilo::register(&mut registry);
    bmc_ipmi::register(&mut registry);
    let bmc = registry
        .connect(&address, &credentials, &options)
        .await
        .map_err(|e| e.to_string())?;
    let result = run(cli, command, bmc.as_ref()).await;
    if let Err(e) = bmc.close().await {
        tracing::debug!(error = %e, "closing the BMC session failed");
    }
    result
}
