//! Parses BMC addresses with Metal3's rules and prints what each one resolves to.
//!
//! `bmc-address ADDRESS...` (see `--help`); exits with status 1 if any address is
//! invalid, 2 for a wrong command line.

use std::process::ExitCode;

use bmc_core::BmcAddress;
use clap::Parser;
use metal3_cli::Shell;

/// Parses BMC addresses with Metal3's rules and prints what each one resolves to: the
/// canonical form, scheme, driver, Ironic driver, host, Redfish endpoint and system or
/// IPMI port and privilege, and what the scheme means for booting.
#[derive(Debug, Parser)]
#[command(name = "bmc-address", version)]
struct Cli {
    /// The addresses, as a BareMetalHost's `spec.bmc.address` holds them.
    #[arg(required_unless_present = "completions")]
    addresses: Vec<String>,
    /// Prints shell completions for SHELL and exits.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<Shell>,
}

fn describe(address: &BmcAddress) -> String {
    let scheme = address.scheme();
    let profile = scheme.profile();
    let mut lines = vec![
        format!("  canonical:        {address}"),
        format!("  scheme:           {}", address.scheme_str()),
        format!("  driver:           {:?}", scheme.driver_kind()),
        format!("  ironic driver:    {}", profile.ironic_driver),
        format!("  host:             {}", address.hostname()),
    ];
    if let Some(endpoint) = address.redfish_endpoint() {
        lines.push(format!("  redfish endpoint: {endpoint}"));
        lines.push(format!(
            "  system id:        {}",
            address
                .redfish_system_id()
                .unwrap_or_else(|| "(the BMC's only system)".to_string())
        ));
    } else {
        lines.push(format!("  ipmi port:        {}", address.ipmi_port()));
        lines.push(format!(
            "  privilege level:  {}",
            address.ipmi_privilege_level()
        ));
    }
    lines.push(format!(
        "  virtual media:    {}",
        profile.supports_virtual_media
    ));
    lines.push(format!("  needs boot MAC:   {}", profile.needs_mac));
    lines.push(format!(
        "  needs prov. net:  {}",
        profile.requires_provisioning_network
    ));
    lines.join("\n")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        metal3_cli::print_completions::<Cli>(shell);
        return ExitCode::SUCCESS;
    }
    let mut status = ExitCode::SUCCESS;
    for arg in &cli.addresses {
        match BmcAddress::parse(arg) {
            Ok(address) => println!("{arg}\n{}", describe(&address)),
            Err(err) => {
                eprintln!("{arg}\n  error: {err}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
