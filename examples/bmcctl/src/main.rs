//! `bmcctl`: drive one BMC from the command line through the driver registry.
//!
//! ```text
//! bmcctl [--user U] [--password-env VAR] [--insecure] [--ca FILE] [--json] [--timeout SECS]
//!        ADDRESS <command>
//!   power status|on|off|soft-off|reset|cycle
//!   boot set pxe|disk|cd|bios|uefi-http [--persistent] [--legacy]
//!   boot status
//!   media insert URL | media eject | media status | media boot URL [--legacy]
//!   inventory
//!   info
//! ```
//! The password is read from the environment variable named by `--password-env`
//! (default `BMC_PASSWORD`), never from the command line. Each run authenticates its
//! requests directly (no session to create, delete or leak); `--session` logs in with a
//! session instead when the BMC offers one.

use std::process::ExitCode;
use std::time::Duration;

use bmc_core::verified::{Deadline, boot_from_virtual_media, ensure_power};
use bmc_core::{
    BmcAddress, BmcDriver, BootDevice, BootMode, BootOverride, ConnectOptions, Credentials,
    MediaKind, PowerAction, Registry,
};
use serde_json::{Value, json};

const USAGE: &str = "usage: bmcctl [--user U] [--password-env VAR] [--insecure] [--ca FILE] [--session] [--json] \
[--timeout SECS] ADDRESS (power status|on|off|soft-off|reset|cycle | boot set DEVICE [--persistent] \
[--legacy] | boot status | media insert URL | media eject | media status | media boot URL [--legacy] \
| inventory | info)";

struct Cli {
    user: String,
    password_env: String,
    insecure: bool,
    session: bool,
    ca: Option<String>,
    json: bool,
    timeout: Duration,
    address: String,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        user: "admin".to_string(),
        password_env: "BMC_PASSWORD".to_string(),
        insecure: false,
        session: false,
        ca: None,
        json: false,
        timeout: Duration::from_secs(300),
        address: String::new(),
        command: Vec::new(),
    };
    let mut it = args.iter().peekable();
    while let Some(arg) = it.peek().map(|s| s.as_str()) {
        if !arg.starts_with("--") {
            break;
        }
        let flag = it.next().cloned().unwrap_or_default();
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--user" => cli.user = value()?,
            "--password-env" => cli.password_env = value()?,
            "--insecure" => cli.insecure = true,
            "--session" => cli.session = true,
            "--ca" => cli.ca = Some(value()?),
            "--json" => cli.json = true,
            "--timeout" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|_| "--timeout needs seconds".to_string())?;
                cli.timeout = Duration::from_secs(secs);
            }
            "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    cli.address = it.next().cloned().ok_or_else(|| USAGE.to_string())?;
    cli.command = it.cloned().collect();
    if cli.command.is_empty() {
        return Err(USAGE.to_string());
    }
    Ok(cli)
}

fn device(name: &str) -> Result<BootDevice, String> {
    match name {
        "bios" => Ok(BootDevice::BiosSetup),
        other => other.parse(),
    }
}

/// Runs the command; returns the JSON result and its one-line text form.
async fn run(cli: &Cli, bmc: &dyn BmcDriver) -> Result<(Value, String), String> {
    let words: Vec<&str> = cli.command.iter().map(String::as_str).collect();
    let deadline = || Deadline::after(cli.timeout);
    let e = |e: bmc_core::BmcError| e.to_string();
    match words.as_slice() {
        ["power", "status"] => {
            let s = bmc.power_state().await.map_err(e)?;
            Ok((json!({"power": s.to_string()}), format!("power {s}")))
        }
        ["power", verb] => {
            let action = match *verb {
                "on" => PowerAction::On,
                "off" => PowerAction::Off,
                "soft-off" => PowerAction::SoftOff,
                "reset" => PowerAction::Reset,
                "cycle" => PowerAction::PowerCycle,
                other => return Err(format!("unknown power command {other}")),
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
        ["boot", "status"] => {
            let b = bmc.boot_override().await.map_err(e)?;
            let v = json!({
                "device": b.device.as_ref().map(ToString::to_string),
                "persistence": b.persistence.map(|p| format!("{p:?}").to_lowercase()),
                "mode": b.mode.map(|m| m.to_string()),
            });
            let text = match &b.device {
                Some(d) => format!("boot override {d} ({:?}, {:?})", b.persistence, b.mode),
                None => "no boot override".to_string(),
            };
            Ok((v, text))
        }
        ["boot", "set", dev, flags @ ..] => {
            let mut o = BootOverride::once(device(dev)?);
            for f in flags {
                match *f {
                    "--persistent" => o.persistence = bmc_core::BootPersistence::Persistent,
                    "--legacy" => o.mode = Some(BootMode::Legacy),
                    "--uefi" => o.mode = Some(BootMode::Uefi),
                    other => return Err(format!("unknown boot option {other}")),
                }
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
        ["media", "status"] => {
            let slots = bmc.virtual_media().await.map_err(e)?;
            let text = slots
                .iter()
                .map(|s| {
                    format!(
                        "{}: {}",
                        s.id,
                        s.image.as_deref().filter(|_| s.inserted).unwrap_or("empty")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            Ok((
                serde_json::to_value(&slots).map_err(|x| x.to_string())?,
                text,
            ))
        }
        ["media", "insert", url] => {
            bmc.insert_media(&MediaKind::Cd, url).await.map_err(e)?;
            Ok((json!({"inserted": url}), format!("inserted {url}")))
        }
        ["media", "eject"] => {
            bmc.eject_media(&MediaKind::Cd).await.map_err(e)?;
            Ok((json!({"ejected": true}), "ejected".to_string()))
        }
        ["media", "boot", url, flags @ ..] => {
            let mode = if flags.contains(&"--legacy") {
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
        ["inventory"] => {
            let inv = bmc.inventory().await.map_err(e)?;
            let text = format!(
                "{} {} serial {}: {} CPUs, {} MiB memory, {} NICs, {} disks",
                inv.system.manufacturer.as_deref().unwrap_or("?"),
                inv.system.model.as_deref().unwrap_or("?"),
                inv.system.serial_number.as_deref().unwrap_or("?"),
                inv.cpus.len(),
                inv.total_memory_mib.unwrap_or_else(|| inv
                    .memory
                    .iter()
                    .filter_map(|m| m.capacity_mib)
                    .sum()),
                inv.nics.len(),
                inv.disks.len()
            );
            Ok((serde_json::to_value(&inv).map_err(|x| x.to_string())?, text))
        }
        ["info"] => {
            let c = bmc.capabilities();
            let v = json!({
                "driver": bmc.driver_name(),
                "power_actions": c.power_actions.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "boot_devices": c.boot_devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "virtual_media": c.virtual_media.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "inventory": c.inventory,
            });
            let text = format!("driver {}: {v}", bmc.driver_name());
            Ok((v, text))
        }
        _ => Err(format!("unknown command: {}\n{USAGE}", words.join(" "))),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match connect_and_run(&cli).await {
        Ok((value, text)) => {
            if cli.json {
                println!("{value}");
            } else {
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
            ExitCode::FAILURE
        }
    }
}

async fn connect_and_run(cli: &Cli) -> Result<(Value, String), String> {
    let address = BmcAddress::parse(&cli.address).map_err(|e| e.to_string())?;
    let password = std::env::var(&cli.password_env).map_err(|_| {
        format!(
            "set the BMC password in the environment variable {}",
            cli.password_env
        )
    })?;
    let credentials = Credentials::new(cli.user.as_str(), password).map_err(|e| e.to_string())?;
    let mut options = ConnectOptions::default().with_operation_timeout(cli.timeout);
    if cli.insecure {
        options = options.with_certificate_verification_disabled();
    }
    if !cli.session {
        options = options.without_sessions();
    }
    if let Some(ca) = &cli.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read CA file {ca}: {e}"))?;
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
    let result = run(cli, bmc.as_ref()).await;
    if let Err(e) = bmc.close().await {
        tracing::debug!(error = %e, "closing the BMC session failed");
    }
    result
}
