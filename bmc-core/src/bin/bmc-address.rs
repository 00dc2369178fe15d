//! Parses BMC addresses with Metal3's rules and prints what each one resolves to.
//!
//! Usage: `bmc-address ADDRESS...`; exits with status 1 if any address is invalid.

use std::process::ExitCode;

use bmc_core::BmcAddress;

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: bmc-address ADDRESS...");
        return ExitCode::from(2);
    }
    let mut status = ExitCode::SUCCESS;
    for arg in &args {
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
