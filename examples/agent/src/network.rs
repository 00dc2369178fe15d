//! Static networking from OpenStack's `network_data.json` (what Metal3 puts in a config
//! drive and a config image), applied by the agent itself so a remote site needs no DHCP
//! server: links matched to the host's interfaces by MAC, bonds and VLANs, static IPv4
//! and IPv6 addresses with their routes, and DNS servers. [`plan`] is pure: it turns the
//! document and the host's interfaces into `ip` commands and a `resolv.conf`; [`apply`]
//! runs them. Networks of type `ipv4_dhcp`/`ipv6_dhcp`/`ipv6_slaac` are listed for a
//! DHCP client and never mixed with static addresses on one link.
//!
//! ```
//! use metal3_agent::network::{Interface, plan};
//! let doc = serde_json::json!({
//!     "links": [{"id": "nic0", "type": "phy", "ethernet_mac_address": "52:54:00:aa:bb:01"}],
//!     "networks": [{"id": "n0", "type": "ipv4", "link": "nic0", "ip_address": "192.0.2.10",
//!                   "netmask": "255.255.255.0",
//!                   "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]}],
//!     "services": [{"type": "dns", "address": "192.0.2.53"}]
//! });
//! let host = [Interface { name: "eno1".into(), mac: "52:54:00:AA:BB:01".into() }];
//! let p = plan(&serde_json::from_value(doc).unwrap(), &host).unwrap();
//! assert!(p.commands.contains(&vec!["addr".into(), "add".into(), "192.0.2.10/24".into(), "dev".into(), "eno1".into()]));
//! assert_eq!(p.resolv_conf, "nameserver 192.0.2.53\n");
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

/// `network_data.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkData {
    /// `links`.
    #[serde(default)]
    pub links: Vec<Link>,
    /// `networks`.
    #[serde(default)]
    pub networks: Vec<Network>,
    /// `services`.
    #[serde(default)]
    pub services: Vec<Service>,
}

/// One of `links`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Link {
    /// `id`, named by networks and other links.
    pub id: String,
    /// `phy`, `ethernet`, `vif`, `bond`, `vlan`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `ethernet_mac_address`.
    #[serde(default)]
    pub ethernet_mac_address: Option<String>,
    /// `mtu`.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `bond_links` (bond).
    #[serde(default)]
    pub bond_links: Vec<String>,
    /// `bond_mode` (bond).
    #[serde(default)]
    pub bond_mode: Option<String>,
    /// `vlan_link` (vlan).
    #[serde(default)]
    pub vlan_link: Option<String>,
    /// `vlan_id` (vlan).
    #[serde(default)]
    pub vlan_id: Option<u16>,
}

/// One of `networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Network {
    /// `id`.
    #[serde(default)]
    pub id: String,
    /// `ipv4`, `ipv6`, `ipv4_dhcp`, `ipv6_dhcp`, `ipv6_slaac`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `link`: the id of the link it is on.
    pub link: String,
    /// `ip_address` (with or without `/prefix`).
    #[serde(default)]
    pub ip_address: Option<String>,
    /// `netmask` (dotted IPv4, IPv6 hex, or a prefix length).
    #[serde(default)]
    pub netmask: Option<String>,
    /// `routes`.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// `dns_nameservers` of this network.
    #[serde(default)]
    pub dns_nameservers: Vec<String>,
}

/// One of a network's `routes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Route {
    /// `network`.
    pub network: String,
    /// `netmask`.
    pub netmask: String,
    /// `gateway`.
    pub gateway: String,
}

/// One of `services`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Service {
    /// `dns`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `address`.
    pub address: String,
}

/// An interface of the host: its kernel name and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel name.
    pub name: String,
    /// MAC address.
    pub mac: String,
}

/// What to run: `ip` commands in order (without the `ip`), the `resolv.conf`, and the
/// interfaces left to a DHCP client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Arguments of each `ip` command.
    pub commands: Vec<Vec<String>>,
    /// `resolv.conf`'s text (empty: leave it).
    pub resolv_conf: String,
    /// Interfaces a DHCP client should configure.
    pub dhcp: Vec<String>,
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// The prefix length of a netmask: dotted IPv4, IPv6, or a number; an error for a mask
/// whose ones are not contiguous.
pub fn prefix_len(mask: &str) -> Result<u8, String> {
    if let Ok(n) = mask.parse::<u8>() {
        return Ok(n);
    }
    let (bits, width) = match mask.parse::<IpAddr>() {
        Ok(IpAddr::V4(m)) => (u128::from(u32::from(m)) << 96, 32u32),
        Ok(IpAddr::V6(m)) => (u128::from(m), 128),
        Err(_) => return Err(format!("netmask {mask:?} is not a netmask")),
    };
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 || ones > width {
        return Err(format!("netmask {mask} is not contiguous"));
    }
    Ok(ones as u8)
}

/// A kernel interface name (at most 15 bytes, no `/` or whitespace) for a link id.
fn ifname(id: &str, fallback: &str) -> String {
    let ok = !id.is_empty()
        && id.len() <= 15
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        id.to_string()
    } else {
        fallback.to_string()
    }
}

/// The commands and files that give the host the network `data` describes.
pub fn plan(data: &NetworkData, host: &[Interface]) -> Result<Plan, String> {
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut p = Plan::default();
    let by_mac = |mac: &str| {
        host.iter()
            .find(|i| i.mac.eq_ignore_ascii_case(mac))
            .map(|i| i.name.clone())
    };
    // Physical links first, then bonds over them, then VLANs over either.
    for link in data
        .links
        .iter()
        .filter(|l| l.kind != "bond" && l.kind != "vlan")
    {
        let mac = link
            .ethernet_mac_address
            .as_deref()
            .ok_or_else(|| format!("link {} has no ethernet_mac_address", link.id))?;
        let name =
            by_mac(mac).ok_or_else(|| format!("link {}: no interface has MAC {mac}", link.id))?;
        if let Some(mtu) = link.mtu {
            p.commands.push(args(&[
                "link",
                "set",
                "dev",
                &name,
                "mtu",
                &mtu.to_string(),
            ]));
        }
        p.commands.push(args(&["link", "set", "dev", &name, "up"]));
        names.insert(&link.id, name);
    }
    for (n, link) in data.links.iter().filter(|l| l.kind == "bond").enumerate() {
        let name = ifname(&link.id, &format!("bond{n}"));
        let mode = link.bond_mode.as_deref().unwrap_or("active-backup");
        p.commands
            .push(args(&["link", "add", &name, "type", "bond", "mode", mode]));
        if link.bond_links.is_empty() {
            return Err(format!("bond {} has no bond_links", link.id));
        }
        for member in &link.bond_links {
            let m = names
                .get(member.as_str())
                .ok_or_else(|| format!("bond {}: unknown link {member}", link.id))?
                .clone();
            p.commands.push(args(&["link", "set", "dev", &m, "down"]));
            p.commands
                .push(args(&["link", "set", "dev", &m, "master", &name]));
        }
        if let Some(mac) = &link.ethernet_mac_address {
            p.commands
                .push(args(&["link", "set", "dev", &name, "address", mac]));
        }
        if let Some(mtu) = link.mtu {
            p.commands.push(args(&[
                "link",
                "set",
                "dev",
                &name,
                "mtu",
                &mtu.to_string(),
            ]));
        }
        p.commands.push(args(&["link", "set", "dev", &name, "up"]));
        names.insert(&link.id, name);
    }
    for link in data.links.iter().filter(|l| l.kind == "vlan") {
        let parent_id = link
            .vlan_link
            .as_deref()
            .ok_or_else(|| format!("vlan {} has no vlan_link", link.id))?;
        let parent = names
            .get(parent_id)
            .ok_or_else(|| format!("vlan {}: unknown link {parent_id}", link.id))?
            .clone();
        let vid = link
            .vlan_id
            .filter(|v| (1..=4094).contains(v))
            .ok_or_else(|| format!("vlan {} has no vlan_id from 1 to 4094", link.id))?;
        let name = ifname(&link.id, &format!("{parent}.{vid}"));
        let name = if name.len() > 15 {
            format!("vlan{vid}")
        } else {
            name
        };
        p.commands.push(args(&[
            "link",
            "add",
            "link",
            &parent,
            "name",
            &name,
            "type",
            "vlan",
            "id",
            &vid.to_string(),
        ]));
        if let Some(mtu) = link.mtu {
            p.commands.push(args(&[
                "link",
                "set",
                "dev",
                &name,
                "mtu",
                &mtu.to_string(),
            ]));
        }
        p.commands.push(args(&["link", "set", "dev", &name, "up"]));
        names.insert(&link.id, name);
    }
    let mut dns: Vec<String> = Vec::new();
    let mut static_links = std::collections::BTreeSet::new();
    for net in &data.networks {
        let dev = names
            .get(net.link.as_str())
            .ok_or_else(|| format!("network {}: unknown link {}", net.id, net.link))?
            .clone();
        match net.kind.as_str() {
            "ipv4" | "ipv6" => {
                let given = net
                    .ip_address
                    .as_deref()
                    .ok_or_else(|| format!("network {} has no ip_address", net.id))?;
                let (address, prefix) = match given.split_once('/') {
                    Some((a, p)) => (a, prefix_len(p)?),
                    None => {
                        let mask = net.netmask.as_deref().ok_or_else(|| {
                            format!("network {} has no netmask or prefix", net.id)
                        })?;
                        (given, prefix_len(mask)?)
                    }
                };
                let ip: IpAddr = address
                    .parse()
                    .map_err(|_| format!("network {}: {address:?} is not an address", net.id))?;
                if ip.is_ipv4() != (net.kind == "ipv4") {
                    return Err(format!(
                        "network {} is {} but has {address}",
                        net.id, net.kind
                    ));
                }
                let family = if ip.is_ipv4() { "-4" } else { "-6" };
                p.commands.push(args(&[
                    "addr",
                    "add",
                    &format!("{address}/{prefix}"),
                    "dev",
                    &dev,
                ]));
                for r in &net.routes {
                    let len = prefix_len(&r.netmask)?;
                    let to = if len == 0 {
                        "default".to_string()
                    } else {
                        format!("{}/{len}", r.network)
                    };
                    p.commands.push(args(&[
                        family, "route", "add", &to, "via", &r.gateway, "dev", &dev,
                    ]));
                }
                dns.extend(net.dns_nameservers.iter().cloned());
                static_links.insert(dev);
            }
            "ipv4_dhcp" | "ipv6_dhcp" | "ipv6_slaac" | "dhcp4" | "dhcp6" => {
                if !p.dhcp.contains(&dev) {
                    p.dhcp.push(dev);
                }
            }
            other => return Err(format!("network {}: type {other} is not supported", net.id)),
        }
    }
    // A static configuration given: no DHCP client runs on those links.
    p.dhcp.retain(|d| !static_links.contains(d));
    dns.extend(
        data.services
            .iter()
            .filter(|s| s.kind == "dns")
            .map(|s| s.address.clone()),
    );
    let mut seen = std::collections::BTreeSet::new();
    dns.retain(|d| seen.insert(d.clone()));
    p.resolv_conf = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    Ok(p)
}

/// Runs a plan's commands with `ip` (`ip` is the program and any options before each
/// command, e.g. `["ip", "-n", "ns"]`) and writes its `resolv.conf` to `resolv` when it
/// has one. The first command that fails stops it, named with what `ip` said.
pub fn apply(plan: &Plan, ip: &[String], resolv: Option<&std::path::Path>) -> Result<(), String> {
    let (program, options) = ip.split_first().ok_or("no ip program given")?;
    for command in &plan.commands {
        let out = std::process::Command::new(program)
            .args(options)
            .args(command)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                command.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if let (Some(path), false) = (resolv, plan.resolv_conf.is_empty()) {
        std::fs::write(path, &plan.resolv_conf)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Applies a config image's `network_data.json` to this host: its interfaces read from
/// `root`'s `/sys`, the commands run with `ip`, `resolv.conf` written under `root/etc`.
pub fn configure(network_data: &[u8], root: &std::path::Path) -> Result<Plan, String> {
    let data: NetworkData =
        serde_json::from_slice(network_data).map_err(|e| format!("network_data.json: {e}"))?;
    let host: Vec<Interface> = crate::inspect::inspect(root, &Default::default())
        .interfaces
        .into_iter()
        .filter_map(|i| {
            Some(Interface {
                mac: i.mac_address?,
                name: i.name,
            })
        })
        .collect();
    let p = plan(&data, &host)?;
    apply(&p, &["ip".to_string()], Some(&root.join("etc/resolv.conf")))?;
    Ok(p)
}

/// udhcpc's event script: applies a lease with `ip` (address, default route) and writes
/// the name servers to `$METAL3_RESOLV`.
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script of metal3-agent: apply the lease with ip(8).
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    if [ -n "$dns" ] && [ -n "$METAL3_RESOLV" ]; then
        : > "$METAL3_RESOLV"
        for d in $dns; do echo "nameserver $d" >> "$METAL3_RESOLV"; done
    fi
    ;;
esac
exit 0
"#;

/// How the agent runs DHCP when no static configuration is given: busybox's `udhcpc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpClient {
    /// The program and any words before udhcpc's options (`["udhcpc"]`, or
    /// `["ip", "netns", "exec", "ns", "busybox", "udhcpc"]` in a test).
    pub program: Vec<String>,
    /// Where the event script is written.
    pub script: std::path::PathBuf,
    /// Where the name servers go.
    pub resolv: std::path::PathBuf,
    /// Discover packets sent before giving up on an interface (2 s apart).
    pub tries: u32,
}

impl DhcpClient {
    /// busybox's `udhcpc` (the agent ISO's), its script under `root/run`, name servers
    /// in `root/etc/resolv.conf`.
    pub fn for_host(root: &std::path::Path) -> DhcpClient {
        DhcpClient {
            program: vec!["udhcpc".to_string()],
            script: root.join("run/metal3-agent/udhcpc.script"),
            resolv: root.join("etc/resolv.conf"),
            tries: 5,
        }
    }
}

/// Asks for a lease on every interface at once; the interfaces that got one. Fails only
/// when udhcpc cannot run at all: an interface without a lease is left unconfigured.
pub fn dhcp(interfaces: &[String], client: &DhcpClient) -> Result<Vec<String>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let (program, words) = client.program.split_first().ok_or("no DHCP client given")?;
    if let Some(dir) = client.script.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&client.script, UDHCPC_SCRIPT)
        .and_then(|()| {
            std::fs::set_permissions(&client.script, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| format!("writing {}: {e}", client.script.display()))?;
    let tries = client.tries.max(1).to_string();
    let mut running = Vec::new();
    for name in interfaces {
        let child = std::process::Command::new(program)
            .args(words)
            // Foreground, quit once bound, exit without a lease; no background renewals:
            // the agent's life is shorter than a lease.
            .args(["-f", "-q", "-n", "-t", &tries, "-T", "2", "-i", name, "-s"])
            .arg(&client.script)
            .env("METAL3_RESOLV", &client.resolv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        running.push((name.clone(), child));
    }
    let mut bound = Vec::new();
    for (name, child) in running {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{program} on {name}: {e}"))?;
        if out.status.success() {
            bound.push(name);
        } else {
            tracing::warn!(interface = %name, said = %String::from_utf8_lossy(&out.stderr).trim(), "no DHCP lease");
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<Interface> {
        vec![
            Interface {
                name: "eno1".into(),
                mac: "b0:7b:25:00:00:01".into(),
            },
            Interface {
                name: "eno2".into(),
                mac: "b0:7b:25:00:00:02".into(),
            },
        ]
    }

    fn doc(v: serde_json::Value) -> NetworkData {
        serde_json::from_value(v).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn a_bond_with_a_vlan_and_both_address_families_plan_in_order() {
        let data = doc(serde_json::json!({
            "links": [
                {"id": "p1", "type": "phy", "ethernet_mac_address": "B0:7B:25:00:00:01", "mtu": 9000},
                {"id": "p2", "type": "phy", "ethernet_mac_address": "b0:7b:25:00:00:02"},
                {"id": "bond0", "type": "bond", "bond_links": ["p1", "p2"], "bond_mode": "802.3ad",
                 "ethernet_mac_address": "b0:7b:25:00:00:01"},
                {"id": "vlan-prov", "type": "vlan", "vlan_link": "bond0", "vlan_id": 120}
            ],
            "networks": [
                {"id": "v4", "type": "ipv4", "link": "vlan-prov", "ip_address": "10.1.20.5",
                 "netmask": "255.255.255.0",
                 "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.20.1"},
                            {"network": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "10.1.20.254"}],
                 "dns_nameservers": ["10.1.0.53"]},
                {"id": "v6", "type": "ipv6", "link": "bond0", "ip_address": "2001:db8:1::5/64",
                 "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:1::1"}]},
                {"id": "d", "type": "ipv4_dhcp", "link": "bond0"}
            ],
            "services": [{"type": "dns", "address": "10.1.0.53"}, {"type": "dns", "address": "2001:db8::53"}]
        }));
        let p = plan(&data, &host()).unwrap_or_else(|e| unreachable!("{e}"));
        let lines: Vec<String> = p.commands.iter().map(|c| c.join(" ")).collect();
        let at = |s: &str| {
            lines
                .iter()
                .position(|l| l == s)
                .unwrap_or_else(|| unreachable!("{s} in {lines:#?}"))
        };
        assert!(at("link set dev eno1 mtu 9000") < at("link add bond0 type bond mode 802.3ad"));
        assert!(
            at("link set dev eno2 master bond0")
                < at("link add link bond0 name vlan-prov type vlan id 120")
        );
        assert!(
            at("addr add 10.1.20.5/24 dev vlan-prov")
                < at("-4 route add default via 10.1.20.1 dev vlan-prov")
        );
        at("-4 route add 10.9.0.0/16 via 10.1.20.254 dev vlan-prov");
        at("addr add 2001:db8:1::5/64 dev bond0");
        at("-6 route add default via 2001:db8:1::1 dev bond0");
        assert_eq!(
            p.resolv_conf,
            "nameserver 10.1.0.53\nnameserver 2001:db8::53\n"
        );
        assert!(
            p.dhcp.is_empty(),
            "a link with a static address gets no DHCP client"
        );
    }

    #[test]
    fn what_cannot_be_applied_is_refused_with_its_name() {
        let missing = doc(
            serde_json::json!({"links": [{"id": "x", "type": "phy", "ethernet_mac_address": "00:11:22:33:44:55"}]}),
        );
        assert!(
            plan(&missing, &host())
                .unwrap_err()
                .contains("no interface has MAC 00:11:22:33:44:55")
        );
        let bad_mask = doc(serde_json::json!({
            "links": [{"id": "p1", "type": "phy", "ethernet_mac_address": "b0:7b:25:00:00:01"}],
            "networks": [{"id": "n", "type": "ipv4", "link": "p1", "ip_address": "10.0.0.1", "netmask": "255.0.255.0"}]}));
        assert!(
            plan(&bad_mask, &host())
                .unwrap_err()
                .contains("not contiguous")
        );
        let bad_vlan = doc(serde_json::json!({
            "links": [{"id": "p1", "type": "phy", "ethernet_mac_address": "b0:7b:25:00:00:01"},
                      {"id": "v", "type": "vlan", "vlan_link": "p1", "vlan_id": 5000}]}));
        assert!(plan(&bad_vlan, &host()).unwrap_err().contains("vlan_id"));
        let family = doc(serde_json::json!({
            "links": [{"id": "p1", "type": "phy", "ethernet_mac_address": "b0:7b:25:00:00:01"}],
            "networks": [{"id": "n", "type": "ipv4", "link": "p1", "ip_address": "2001:db8::1/64"}]}));
        assert!(plan(&family, &host()).unwrap_err().contains("is ipv4"));
        let dhcp = doc(serde_json::json!({
            "links": [{"id": "p1", "type": "phy", "ethernet_mac_address": "b0:7b:25:00:00:01"}],
            "networks": [{"id": "n", "type": "ipv4_dhcp", "link": "p1"}]}));
        assert_eq!(
            plan(&dhcp, &host()).map(|p| p.dhcp),
            Ok(vec!["eno1".to_string()])
        );
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::"), Ok(64));
        assert_eq!(prefix_len("255.255.255.252"), Ok(30));
    }
}
