//! `Metal3DataTemplate` → `Metal3DataClaim` → `Metal3Data`: a machine's index in its
//! template, one `IPClaim` per IPPool the template names, and the meta data and network
//! data rendered from them in CAPM3's layouts (the network data is OpenStack's
//! `network_data.json`: links, networks, services).
//!
//! Rendering is pure: it takes the addresses already claimed ([`RenderContext`]) and
//! fails, naming what is missing, rather than render a partial file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use metal3_operator::manifests::{ObjectMeta, ObjectRef, SecretRef};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An object of a machine's: `machine`, `metal3machine` or `baremetalhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromObject {
    /// The metadata key.
    #[serde(default)]
    pub key: String,
    /// Which object.
    #[serde(default)]
    pub object: String,
}

/// `strings[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaString {
    /// The metadata key.
    pub key: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// `indexes[]`: `prefix + (offset + index × step) + suffix`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaIndex {
    /// The metadata key.
    pub key: String,
    /// Added to the index times the step.
    #[serde(default)]
    pub offset: i64,
    /// The step (0 is read as 1, as CAPM3 does).
    #[serde(default)]
    pub step: i64,
    /// Written before the number.
    #[serde(default)]
    pub prefix: String,
    /// Written after it.
    #[serde(default)]
    pub suffix: String,
}

/// `namespaces[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaNamespace {
    /// The metadata key.
    pub key: String,
}

/// `*FromIPPool[]`: a value of the address claimed from a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromPool {
    /// The metadata key.
    pub key: String,
    /// The IPPool's name (in the template's namespace).
    #[serde(default)]
    pub name: String,
}

/// `fromHostInterfaces[]`: the MAC address of a host NIC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromHostInterface {
    /// The metadata key.
    pub key: String,
    /// The NIC's name in the host's hardware details.
    #[serde(default)]
    pub interface: String,
    /// The host's boot MAC instead of a named NIC's.
    #[serde(default, rename = "fromBootMAC")]
    pub from_boot_mac: bool,
}

/// `fromLabels[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromLabel {
    /// The metadata key.
    pub key: String,
    /// Which object.
    #[serde(default)]
    pub object: String,
    /// The label (its value, `""` when absent).
    #[serde(default)]
    pub label: String,
}

/// `fromAnnotations[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromAnnotation {
    /// The metadata key (absent in a link's `macAddress.fromAnnotation`).
    #[serde(default)]
    pub key: String,
    /// Which object.
    #[serde(default)]
    pub object: String,
    /// The annotation (its value, `""` when absent).
    #[serde(default)]
    pub annotation: String,
}

/// `spec.metaData`. v1beta1's `…FromIPPool` and v1beta2's `…FromPool` names both load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaDataTemplate {
    /// `strings`.
    #[serde(default)]
    pub strings: Vec<MetaString>,
    /// `objectNames`.
    #[serde(default)]
    pub object_names: Vec<FromObject>,
    /// `indexes`.
    #[serde(default)]
    pub indexes: Vec<MetaIndex>,
    /// `namespaces`.
    #[serde(default)]
    pub namespaces: Vec<MetaNamespace>,
    /// `ipAddressesFromPool` (the CRD's name; `ipAddressesFromIPPool` is read too).
    #[serde(
        default,
        rename = "ipAddressesFromPool",
        alias = "ipAddressesFromIPPool"
    )]
    pub ip_addresses_from_pool: Vec<FromPool>,
    /// `prefixesFromPool` (the CRD's name; `prefixesFromIPPool` is read too).
    #[serde(default, rename = "prefixesFromPool", alias = "prefixesFromIPPool")]
    pub prefixes_from_pool: Vec<FromPool>,
    /// `gatewaysFromPool` (the CRD's name; `gatewaysFromIPPool` is read too).
    #[serde(default, rename = "gatewaysFromPool", alias = "gatewaysFromIPPool")]
    pub gateways_from_pool: Vec<FromPool>,
    /// `dnsServersFromPool` (the CRD's name; `dnsServersFromIPPool` is read too).
    #[serde(default, rename = "dnsServersFromPool", alias = "dnsServersFromIPPool")]
    pub dns_servers_from_pool: Vec<FromPool>,
    /// `fromHostInterfaces`.
    #[serde(default)]
    pub from_host_interfaces: Vec<FromHostInterface>,
    /// `fromLabels`.
    #[serde(default)]
    pub from_labels: Vec<FromLabel>,
    /// `fromAnnotations`.
    #[serde(default)]
    pub from_annotations: Vec<FromAnnotation>,
}

/// A link's `macAddress`: one of a string, a host NIC, an annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MacSource {
    /// The MAC as written.
    #[serde(default)]
    pub string: Option<String>,
    /// A host NIC's, by name.
    #[serde(default)]
    pub from_host_interface: Option<String>,
    /// An annotation's value.
    #[serde(default)]
    pub from_annotation: Option<FromAnnotation>,
}

fn default_mtu() -> u32 {
    1500
}

/// `links.ethernets[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthernetLink {
    /// `phy`, `bridge`, `ovs`, … (Nova's link types).
    #[serde(rename = "type")]
    pub kind: String,
    /// The interface name.
    pub id: String,
    /// The MTU (1500 by default).
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Where its MAC comes from.
    #[serde(default)]
    pub mac_address: MacSource,
}

/// `links.bonds[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BondLink {
    /// The interface name.
    pub id: String,
    /// The MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Where its MAC comes from.
    #[serde(default)]
    pub mac_address: MacSource,
    /// `802.3ad`, `active-backup`, ….
    #[serde(default)]
    pub bond_mode: String,
    /// `layer2`, `layer3+4`, `layer2+3`.
    #[serde(default)]
    pub bond_xmit_hash_policy: Option<String>,
    /// The links it bonds.
    #[serde(default)]
    pub bond_links: Vec<String>,
}

/// `links.vlans[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VlanLink {
    /// The interface name.
    pub id: String,
    /// The MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Where its MAC comes from.
    #[serde(default)]
    pub mac_address: MacSource,
    /// The VLAN id.
    #[serde(default, rename = "vlanID")]
    pub vlan_id: u16,
    /// The link it is on.
    #[serde(default)]
    pub vlan_link: String,
}

/// `links`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// `ethernets`.
    #[serde(default)]
    pub ethernets: Vec<EthernetLink>,
    /// `bonds`.
    #[serde(default)]
    pub bonds: Vec<BondLink>,
    /// `vlans`.
    #[serde(default)]
    pub vlans: Vec<VlanLink>,
}

/// A pool named by reference (`fromPoolRef`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRef {
    /// The pool's name.
    #[serde(default)]
    pub name: String,
}

/// A route's `gateway`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// The gateway as written.
    #[serde(default)]
    pub string: Option<IpAddr>,
    /// The gateway of the address claimed from this pool.
    #[serde(default, rename = "fromIPPool")]
    pub from_ip_pool: Option<String>,
    /// The same, by reference.
    #[serde(default)]
    pub from_pool_ref: Option<PoolRef>,
}

/// `services` (of the file or of a route).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    /// DNS servers as written.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// The DNS servers of the address claimed from this pool.
    #[serde(default, rename = "dnsFromIPPool")]
    pub dns_from_ip_pool: Option<String>,
}

/// A route of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination network.
    pub network: IpAddr,
    /// Its prefix length (`netmask` in older templates).
    #[serde(default, alias = "netmask")]
    pub prefix: u8,
    /// The gateway.
    #[serde(default)]
    pub gateway: Gateway,
    /// Services reached by it.
    #[serde(default)]
    pub services: Services,
}

/// A network with an address from a pool (`ipv4[]`, `ipv6[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticNetwork {
    /// The network's name.
    pub id: String,
    /// The link it is on.
    pub link: String,
    /// The pool its address comes from.
    #[serde(default, rename = "ipAddressFromIPPool")]
    pub ip_address_from_ip_pool: Option<String>,
    /// The same, by reference.
    #[serde(default)]
    pub from_pool_ref: Option<PoolRef>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Route>,
}

impl StaticNetwork {
    fn pool(&self) -> Option<&str> {
        self.ip_address_from_ip_pool
            .as_deref()
            .or(self.from_pool_ref.as_ref().map(|r| r.name.as_str()))
    }
}

/// A network configured by DHCP or SLAAC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicNetwork {
    /// The network's name.
    pub id: String,
    /// The link it is on.
    pub link: String,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// `networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Networks {
    /// `ipv4`.
    #[serde(default)]
    pub ipv4: Vec<StaticNetwork>,
    /// `ipv6`.
    #[serde(default)]
    pub ipv6: Vec<StaticNetwork>,
    /// `ipv4DHCP`.
    #[serde(default, rename = "ipv4DHCP")]
    pub ipv4_dhcp: Vec<DynamicNetwork>,
    /// `ipv6DHCP`.
    #[serde(default, rename = "ipv6DHCP")]
    pub ipv6_dhcp: Vec<DynamicNetwork>,
    /// `ipv6SLAAC`.
    #[serde(default, rename = "ipv6SLAAC")]
    pub ipv6_slaac: Vec<DynamicNetwork>,
}

/// `spec.networkData`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDataTemplate {
    /// `links`.
    #[serde(default)]
    pub links: Links,
    /// `networks`.
    #[serde(default)]
    pub networks: Networks,
    /// `services`.
    #[serde(default)]
    pub services: Services,
}

/// `spec` of a Metal3DataTemplate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metal3DataTemplateSpec {
    /// `clusterName`.
    #[serde(default)]
    pub cluster_name: String,
    /// `templateReference`.
    #[serde(default)]
    pub template_reference: Option<String>,
    /// `metaData`.
    #[serde(default)]
    pub meta_data: Option<MetaDataTemplate>,
    /// `networkData`.
    #[serde(default)]
    pub network_data: Option<NetworkDataTemplate>,
}

/// A `Metal3DataTemplate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metal3DataTemplate {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: Metal3DataTemplateSpec,
}

/// `spec` of a Metal3Data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metal3DataSpec {
    /// The machine's index in its template.
    pub index: u32,
    /// The template.
    pub template: ObjectRef,
    /// The Metal3DataClaim (named after the Metal3Machine).
    pub claim: ObjectRef,
    /// The rendered meta-data Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<SecretRef>,
    /// The rendered network-data Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<SecretRef>,
}

/// A `Metal3Data`: one machine's rendering of a template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metal3Data {
    /// `metadata` (`<template>-<index>`).
    pub metadata: ObjectMeta,
    /// `spec`.
    pub spec: Metal3DataSpec,
    /// The IPClaims it holds, by pool name (`<data>-<pool>`).
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// The Secrets are written.
    #[serde(default)]
    pub ready: bool,
}

/// The name of the Metal3Data of `index` in `template` (CAPM3's).
pub fn data_name(template: &str, index: u32) -> String {
    format!("{template}-{index}")
}

/// The name of a Metal3Data's IPClaim on `pool` (CAPM3's).
pub fn ip_claim_name(data: &str, pool: &str) -> String {
    format!("{data}-{pool}")
}

/// The meta-data and network-data Secret names of a Metal3Machine (CAPM3's).
pub fn secret_names(metal3_machine: &str) -> (String, String) {
    (
        format!("{metal3_machine}-metadata"),
        format!("{metal3_machine}-networkdata"),
    )
}

/// The lowest index not in `used` (CAPM3 hands out the lowest free one).
pub fn lowest_free_index(used: &BTreeSet<u32>) -> u32 {
    (0..).find(|i| !used.contains(i)).unwrap_or(u32::MAX)
}

impl Metal3DataTemplate {
    /// Every IPPool the template takes an address from (in its namespace), by name.
    pub fn pools(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Some(m) = &self.spec.meta_data {
            for p in m
                .ip_addresses_from_pool
                .iter()
                .chain(&m.prefixes_from_pool)
                .chain(&m.gateways_from_pool)
                .chain(&m.dns_servers_from_pool)
            {
                out.insert(p.name.clone());
            }
        }
        if let Some(n) = &self.spec.network_data {
            let statics = n.networks.ipv4.iter().chain(&n.networks.ipv6);
            for s in statics.clone() {
                out.extend(s.pool().map(str::to_string));
            }
            let routes = statics.flat_map(|s| &s.routes).chain(
                n.networks
                    .ipv4_dhcp
                    .iter()
                    .chain(&n.networks.ipv6_dhcp)
                    .chain(&n.networks.ipv6_slaac)
                    .flat_map(|d| &d.routes),
            );
            for r in routes {
                out.extend(r.gateway.from_ip_pool.clone());
                out.extend(r.gateway.from_pool_ref.as_ref().map(|p| p.name.clone()));
                out.extend(r.services.dns_from_ip_pool.clone());
            }
            out.extend(n.services.dns_from_ip_pool.clone());
        }
        out.retain(|p| !p.is_empty());
        out
    }
}

/// A host NIC as its hardware details name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNic {
    /// `name`.
    pub name: String,
    /// `mac`.
    pub mac: String,
}

/// What a rendering takes: the machine's objects, its index and its claimed addresses.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The Metal3Data's index.
    pub index: u32,
    /// The Metal3Data's namespace.
    pub namespace: &'a str,
    /// The Metal3Machine.
    pub metal3_machine: &'a ObjectMeta,
    /// The Cluster API Machine.
    pub machine: &'a ObjectMeta,
    /// The BareMetalHost.
    pub host: &'a ObjectMeta,
    /// The host's NICs.
    pub nics: &'a [HostNic],
    /// The host's boot MAC.
    pub boot_mac: Option<&'a str>,
    /// The address claimed from each pool, by pool name.
    pub addresses: &'a BTreeMap<String, ipam::IpAddress>,
}

impl RenderContext<'_> {
    fn object(&self, object: &str) -> Result<&ObjectMeta, String> {
        match object.to_ascii_lowercase().as_str() {
            "machine" => Ok(self.machine),
            "metal3machine" => Ok(self.metal3_machine),
            "baremetalhost" => Ok(self.host),
            other => Err(format!(
                "object {other:?} is none of machine, metal3machine, baremetalhost"
            )),
        }
    }

    fn address(&self, pool: &str) -> Result<&ipam::IpAddress, String> {
        self.addresses
            .get(pool)
            .ok_or_else(|| format!("no address claimed from IPPool {pool}"))
    }

    fn nic_mac(&self, name: &str) -> Result<String, String> {
        if self.nics.is_empty() {
            return Err(format!(
                "host {} has no NICs in its hardware details (not inspected?)",
                self.host.name
            ));
        }
        self.nics
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.mac.clone())
            .ok_or_else(|| {
                format!(
                    "host {} has no NIC named {name} (it has {})",
                    self.host.name,
                    self.nics
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    fn mac(&self, source: &MacSource, link: &str) -> Result<String, String> {
        let mac = if let Some(s) = &source.string {
            s.clone()
        } else if let Some(nic) = &source.from_host_interface {
            self.nic_mac(nic)?
        } else if let Some(a) = &source.from_annotation {
            let object = self.object(&a.object)?;
            object
                .annotations
                .get(&a.annotation)
                .cloned()
                .unwrap_or_default()
        } else {
            return Err(format!("link {link}: no MAC address given"));
        };
        if !is_mac(&mac) {
            return Err(format!("link {link}: bad MAC address {mac:?}"));
        }
        Ok(mac)
    }
}

/// `aa:bb:cc:dd:ee:ff` or `aa-bb-…` (CAPM3's check).
fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    text.len() == 17
        && parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn dns(addresses: impl IntoIterator<Item = IpAddr>) -> impl Iterator<Item = Value> {
    addresses
        .into_iter()
        .map(|a| json!({"type": "dns", "address": a.to_string()}))
}

fn services(s: &Services, ctx: &RenderContext<'_>) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = dns(s.dns.iter().copied()).collect();
    if let Some(pool) = &s.dns_from_ip_pool {
        out.extend(dns(ctx.address(pool)?.dns_servers.iter().copied()));
    }
    Ok(out)
}

fn routes(
    routes: &[Route],
    family: ipam::Family,
    network: &str,
    ctx: &RenderContext<'_>,
) -> Result<Vec<Value>, String> {
    routes
        .iter()
        .map(|r| {
            if ipam::Family::of(&r.network) != family {
                return Err(format!(
                    "network {network}: route to {} is not {family}",
                    r.network
                ));
            }
            let pool = r.gateway.from_ip_pool.as_deref().or(r
                .gateway
                .from_pool_ref
                .as_ref()
                .map(|p| p.name.as_str()));
            let gateway = match (r.gateway.string, pool) {
                (Some(g), _) => g,
                (None, Some(pool)) => ctx.address(pool)?.gateway.ok_or_else(|| {
                    format!("network {network}: IPPool {pool} has no gateway for the route")
                })?,
                (None, None) => {
                    return Err(format!(
                        "network {network}: the route to {} has no gateway",
                        r.network
                    ));
                }
            };
            Ok(json!({
                "network": r.network.to_string(),
                "netmask": family.netmask(r.prefix).to_string(),
                "gateway": gateway.to_string(),
                "services": services(&r.services, ctx)?,
            }))
        })
        .collect()
}

/// Renders a template's `networkData` for one machine: `links` (bonds, then ethernets,
/// then VLANs), `networks` (static IPv4, static IPv6, then IPv4 DHCP, IPv6 DHCP, IPv6
/// SLAAC) and `services`, as CAPM3 lays them out; netmasks as addresses in both families.
pub fn render_network_data(
    template: &NetworkDataTemplate,
    ctx: &RenderContext<'_>,
) -> Result<Value, String> {
    let mut links = Vec::new();
    for b in &template.links.bonds {
        let mut link = json!({
            "type": "bond",
            "id": b.id,
            "mtu": b.mtu,
            "ethernet_mac_address": ctx.mac(&b.mac_address, &b.id)?,
            "bond_mode": b.bond_mode,
            "bond_links": b.bond_links,
        });
        // Left out when not set: cloud-init reads an empty policy as one.
        if let (Some(p), Some(map)) = (&b.bond_xmit_hash_policy, link.as_object_mut()) {
            map.insert("bond_xmit_hash_policy".into(), json!(p));
        }
        links.push(link);
    }
    for e in &template.links.ethernets {
        links.push(json!({
            "type": e.kind,
            "id": e.id,
            "mtu": e.mtu,
            "ethernet_mac_address": ctx.mac(&e.mac_address, &e.id)?,
        }));
    }
    for v in &template.links.vlans {
        links.push(json!({
            "type": "vlan",
            "id": v.id,
            "mtu": v.mtu,
            "vlan_mac_address": ctx.mac(&v.mac_address, &v.id)?,
            "vlan_id": v.vlan_id,
            "vlan_link": v.vlan_link,
        }));
    }
    let ids: BTreeSet<&str> = links.iter().filter_map(|l| l["id"].as_str()).collect();
    let mut networks = Vec::new();
    let statics = [
        (&template.networks.ipv4, ipam::Family::V4, "ipv4"),
        (&template.networks.ipv6, ipam::Family::V6, "ipv6"),
    ];
    for (list, family, kind) in statics {
        for n in list {
            let pool = n
                .pool()
                .ok_or_else(|| format!("network {}: no ipAddressFromIPPool", n.id))?;
            let address = ctx.address(pool)?;
            if ipam::Family::of(&address.address) != family {
                return Err(format!(
                    "network {}: IPPool {pool} gave {}, not an {family} address",
                    n.id, address.address
                ));
            }
            networks.push(json!({
                "type": kind,
                "id": n.id,
                "link": n.link,
                "ip_address": address.address.to_string(),
                "netmask": family.netmask(address.prefix).to_string(),
                "routes": routes(&n.routes, family, &n.id, ctx)?,
            }));
        }
    }
    let dynamics = [
        (&template.networks.ipv4_dhcp, ipam::Family::V4, "ipv4_dhcp"),
        (&template.networks.ipv6_dhcp, ipam::Family::V6, "ipv6_dhcp"),
        (
            &template.networks.ipv6_slaac,
            ipam::Family::V6,
            "ipv6_slaac",
        ),
    ];
    for (list, family, kind) in dynamics {
        for n in list {
            networks.push(json!({
                "type": kind,
                "id": n.id,
                "link": n.link,
                "routes": routes(&n.routes, family, &n.id, ctx)?,
            }));
        }
    }
    for n in &networks {
        let link = n["link"].as_str().unwrap_or_default();
        if !ids.contains(link) {
            return Err(format!(
                "network {}: link {link} is not one of the template's links",
                n["id"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(json!({
        "links": links,
        "networks": networks,
        "services": services(&template.services, ctx)?,
    }))
}

/// Renders a template's `metaData` for one machine: every item's key to its value, and
/// `providerid` (`<namespace>/<host>/<metal3machine>`), as CAPM3 does.
pub fn render_meta_data(
    template: &MetaDataTemplate,
    ctx: &RenderContext<'_>,
) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for e in &template.from_host_interfaces {
        let mac = if e.from_boot_mac {
            ctx.boot_mac
                .map(str::to_string)
                .ok_or_else(|| format!("host {} has no boot MAC", ctx.host.name))?
        } else {
            ctx.nic_mac(&e.interface)?
        };
        m.insert(e.key.clone(), mac);
    }
    for e in &template.ip_addresses_from_pool {
        m.insert(e.key.clone(), ctx.address(&e.name)?.address.to_string());
    }
    for e in &template.prefixes_from_pool {
        m.insert(e.key.clone(), ctx.address(&e.name)?.prefix.to_string());
    }
    for e in &template.gateways_from_pool {
        let a = ctx.address(&e.name)?;
        let g = a
            .gateway
            .ok_or_else(|| format!("IPPool {} has no gateway", e.name))?;
        m.insert(e.key.clone(), g.to_string());
    }
    for e in &template.dns_servers_from_pool {
        let a = ctx.address(&e.name)?;
        let servers: Vec<String> = a.dns_servers.iter().map(ToString::to_string).collect();
        m.insert(e.key.clone(), servers.join(","));
    }
    for e in &template.indexes {
        let step = if e.step == 0 { 1 } else { e.step };
        if e.offset < 0 || step < 0 {
            return Err(format!(
                "index {}: offset and step must not be negative",
                e.key
            ));
        }
        let n = e.offset + i64::from(ctx.index) * step;
        m.insert(e.key.clone(), format!("{}{n}{}", e.prefix, e.suffix));
    }
    for e in &template.namespaces {
        m.insert(e.key.clone(), ctx.namespace.to_string());
    }
    for e in &template.object_names {
        m.insert(e.key.clone(), ctx.object(&e.object)?.name.clone());
    }
    for e in &template.from_labels {
        let v = ctx.object(&e.object)?.labels.get(&e.label).cloned();
        m.insert(e.key.clone(), v.unwrap_or_default());
    }
    for e in &template.from_annotations {
        let v = ctx
            .object(&e.object)?
            .annotations
            .get(&e.annotation)
            .cloned();
        m.insert(e.key.clone(), v.unwrap_or_default());
    }
    for e in &template.strings {
        m.insert(e.key.clone(), e.value.clone());
    }
    m.insert(
        "providerid".into(),
        format!(
            "{}/{}/{}",
            ctx.metal3_machine.namespace(),
            ctx.host.name,
            ctx.metal3_machine.name
        ),
    );
    Ok(m)
}
