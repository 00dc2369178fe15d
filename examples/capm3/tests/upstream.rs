//! CAPM3's and IPAM's upstream example objects (`../shared/reference/metal3-manifests`,
//! unchanged) load, and their Metal3DataTemplate renders in CAPM3's layout: the
//! expected files below follow CAPM3's rendering (link, network and service entries with
//! Nova's `network_data.json` keys, netmasks as addresses, `providerid` in the meta data).

#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use metal3_capm3::data::{
    HostNic, Metal3DataTemplate, RenderContext, render_meta_data, render_network_data,
};
use metal3_capm3::objects::{ClusterManifests, substitute_variables};
use metal3_operator::manifests::{Manifests, ObjectMeta};
use serde_json::json;

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/metal3-manifests")
}

fn variables() -> BTreeMap<String, String> {
    [
        ("CLUSTER_NAME", "test1"),
        ("NAMESPACE", "metal3"),
        ("KUBERNETES_VERSION", "v1.33.0"),
        ("IMAGE_URL", "http://192.168.0.1/ubuntu.qcow2"),
        (
            "IMAGE_CHECKSUM",
            "http://192.168.0.1/ubuntu.qcow2.sha256sum",
        ),
        ("IMAGE_CHECKSUM_TYPE", "sha256"),
        ("IMAGE_FORMAT", "qcow2"),
        ("CONTROL_PLANE_MACHINE_COUNT", "3"),
        ("WORKER_MACHINE_COUNT", "2"),
        ("CLUSTER_APIENDPOINT_HOST", "192.168.111.249"),
        ("CLUSTER_APIENDPOINT_PORT", "6443"),
        ("POD_CIDR", "\"192.168.0.0/18\""),
        ("SERVICE_CIDR", "\"10.96.0.0/12\""),
        ("SERVICE_DOMAIN", "cluster.local"),
        ("CTLPLANE_KUBEADM_EXTRA_CONFIG", ""),
        ("WORKERS_KUBEADM_EXTRA_CONFIG", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An upstream file with clusterctl's variables substituted, as its users load it.
fn upstream(path: &str) -> String {
    let file = reference().join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    substitute_variables(&text, &variables()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(paths: &[&str]) -> (ClusterManifests, Manifests) {
    let mut cluster = ClusterManifests::default();
    for p in paths {
        cluster
            .add_yaml(&upstream(p), p)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut rest = Manifests::default();
    for (i, doc) in cluster.others.iter().enumerate() {
        rest.add_yaml(doc, &format!("other {i}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    (cluster, rest)
}

#[test]
fn upstream_examples_load_unchanged() {
    let (cluster, rest) = load(&[
        "cluster-api-provider-metal3/examples/machinedeployment/machinedeployment.yaml",
        "cluster-api-provider-metal3/examples/controlplane/controlplane.yaml",
        "cluster-api-provider-metal3/examples/templates/cluster.yaml",
        "cluster-api-provider-metal3/examples/clusterctl-templates/clusterctl-cluster.yaml",
        "cluster-api-provider-metal3/examples/cluster/cluster.yaml",
        "cluster-api-provider-metal3/examples/metal3plane/hosts.yaml",
    ]);
    assert!(
        cluster.machine_templates.len() >= 3,
        "{:?}",
        cluster.machine_templates.len()
    );
    assert!(cluster.data_templates.len() >= 3);
    assert!(!cluster.metal3_clusters.is_empty());
    assert!(!cluster.clusters.is_empty());
    let deployment = cluster
        .groups
        .iter()
        .find(|g| g.metadata.name == "test1-md-0")
        .unwrap_or_else(|| panic!("no test1-md-0 in {:?}", cluster.groups));
    assert_eq!(
        (
            deployment.kind.as_str(),
            deployment.replicas,
            deployment.template.as_str()
        ),
        ("MachineDeployment", 2, "test1-md-0")
    );
    let control_plane = cluster
        .groups
        .iter()
        .find(|g| g.kind == "KubeadmControlPlane")
        .unwrap_or_else(|| panic!("no control plane in {:?}", cluster.groups));
    assert!(control_plane.replicas >= 1);
    let md = cluster
        .machine_templates
        .iter()
        .find(|t| t.metadata.name == "test1-md-0")
        .unwrap_or_else(|| panic!("no test1-md-0 template"));
    let image = md.spec.template.spec.image.as_ref();
    assert_eq!(
        image.map(|i| i.url.as_str()),
        Some("http://192.168.0.1/ubuntu.qcow2")
    );
    assert_eq!(
        md.spec
            .template
            .spec
            .data_template
            .as_ref()
            .map(|d| d.name.as_str()),
        Some("test1-md-metadata")
    );
    // The IPPools and hosts go to the operator's manifests, as upstream wrote them.
    let pools: Vec<&str> = rest
        .pools
        .iter()
        .map(|p| p.metadata.name.as_str())
        .collect();
    for p in ["pool1", "pool2", "pool6-1", "pool6-2"] {
        assert!(pools.contains(&p), "{p} not in {pools:?}");
    }
    assert!(rest.hosts.len() >= 2, "{} hosts", rest.hosts.len());
    // IPAM's own example pool loads too.
    let mut ipam = Manifests::default();
    ipam.add_yaml(
        &upstream("ip-address-manager/examples/ippool/ippool.yaml"),
        "ippool.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ipam.pools.len(), 1);
}

/// The addresses a machine's IPClaims get from the example's pools: the first of each,
/// by ipam (pool6-2 is a whole subnet whose gateway is not handed out). ipam refuses
/// pool2 (a /24 subnet with `prefix: 25`: half its addresses would be outside their own
/// network), so its address is the one it would give.
fn claimed(rest: &Manifests, claim: &str) -> BTreeMap<String, ipam::IpAddress> {
    let mut out = BTreeMap::new();
    for p in &rest.pools {
        match ipam::IpPool::new(&p.spec) {
            Ok(mut pool) => {
                let a = pool.claim(claim).unwrap_or_else(|e| panic!("{e}"));
                out.insert(p.metadata.name.clone(), a);
            }
            Err(e) => {
                assert_eq!(p.metadata.name, "pool2", "{e}");
                assert!(e.to_string().contains("outside the network"), "{e}");
                let a: ipam::IpAddress = serde_json::from_value(
                    json!({"address": "192.168.1.2", "prefix": 25, "gateway": "192.168.1.1"}),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                out.insert("pool2".into(), a);
            }
        }
    }
    out
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: Some("metal3".into()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ObjectMeta::default()
    }
}

fn nics() -> Vec<HostNic> {
    vec![
        HostNic {
            name: "eth0".into(),
            mac: "52:54:00:6c:3c:01".into(),
        },
        HostNic {
            name: "eth1".into(),
            mac: "52:54:00:6c:3c:02".into(),
        },
    ]
}

#[test]
fn the_upstream_deployment_template_renders_in_capm3s_layout() {
    let (cluster, rest) = load(&[
        "cluster-api-provider-metal3/examples/machinedeployment/machinedeployment.yaml",
        "cluster-api-provider-metal3/examples/templates/cluster.yaml",
    ]);
    let template: &Metal3DataTemplate = cluster
        .data_templates
        .iter()
        .find(|t| t.metadata.name == "test1-md-metadata")
        .unwrap_or_else(|| panic!("no test1-md-metadata"));
    assert_eq!(
        template.pools().into_iter().collect::<Vec<_>>(),
        ["pool1", "pool2", "pool6-1", "pool6-2"]
    );
    let addresses = claimed(&rest, "test1-md-metadata-0");
    let (m3m, machine, host) = (
        meta("test1-md-0-x7k2p", &[]),
        meta("test1-md-0-5d9f8-abcde", &[]),
        meta("node-1", &[]),
    );
    let nics = nics();
    let ctx = RenderContext {
        index: 0,
        namespace: "metal3",
        metal3_machine: &m3m,
        machine: &machine,
        host: &host,
        nics: &nics,
        boot_mac: Some("52:54:00:6c:3c:01"),
        addresses: &addresses,
    };
    let network = template
        .spec
        .network_data
        .as_ref()
        .unwrap_or_else(|| panic!("no networkData"));
    let rendered = render_network_data(network, &ctx).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rendered,
        json!({
            "links": [
                {"type": "phy", "id": "enp1s0", "mtu": 1500, "ethernet_mac_address": "52:54:00:6c:3c:01"},
                {"type": "phy", "id": "enp2s0", "mtu": 1500, "ethernet_mac_address": "52:54:00:6c:3c:02"},
            ],
            "networks": [
                {"type": "ipv4", "id": "baremetal", "link": "enp2s0",
                 "ip_address": "192.168.0.10", "netmask": "255.255.255.0",
                 "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.0.1",
                             "services": [{"type": "dns", "address": "8.8.4.4"}]}]},
                {"type": "ipv4_dhcp", "id": "provisioning", "link": "enp1s0", "routes": []},
            ],
            "services": [{"type": "dns", "address": "8.8.8.8"}],
        })
    );
    let meta_template = template
        .spec
        .meta_data
        .as_ref()
        .unwrap_or_else(|| panic!("no metaData"));
    let rendered = render_meta_data(meta_template, &ctx).unwrap_or_else(|e| panic!("{e}"));
    let want: BTreeMap<String, String> = [
        ("abc", "def"),
        ("index_0_1", "0"),
        ("index_3", "3"),
        ("index_5_2", "5"),
        ("machine_name", "test1-md-0-5d9f8-abcde"),
        ("metal3machine_name", "test1-md-0-x7k2p"),
        ("bmh_name", "node-1"),
        ("ip_1", "192.168.0.10"),
        ("ip_2", "192.168.1.2"),
        ("ip6_1", "2001::10"),
        ("ip6_2", "2001:abc::2"),
        ("prefix_1", "24"),
        ("prefix_2", "25"),
        ("prefix6_1", "96"),
        ("prefix6_2", "96"),
        ("gateway_1", "192.168.0.1"),
        ("gateway_2", "192.168.1.1"),
        ("gateway6_1", "2001::1"),
        ("gateway6_2", "2001:abc::1"),
        ("mac", "52:54:00:6c:3c:01"),
        ("providerid", "metal3/node-1/test1-md-0-x7k2p"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(rendered, want);
    // The third machine of the template: offsets plus index times step.
    let third = RenderContext { index: 2, ..ctx };
    let rendered = render_meta_data(meta_template, &third).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            rendered["index_0_1"].as_str(),
            rendered["index_3"].as_str(),
            rendered["index_5_2"].as_str()
        ),
        ("2", "5", "9")
    );
}

#[test]
fn bonds_vlans_and_both_families_render_and_bad_input_is_named() {
    // A template of every link and network kind (after CAPM3's API reference example,
    // with real MAC addresses where it writes placeholders).
    let template: Metal3DataTemplate = serde_norway::from_str(
        r#"
metadata: {name: nodepool-1, namespace: metal3}
spec:
  networkData:
    links:
      ethernets:
      - {type: phy, id: enp1s0, mtu: 9000, macAddress: {fromHostInterface: eth0}}
      - {type: phy, id: enp2s0, macAddress: {fromHostInterface: eth1}}
      bonds:
      - {id: bond0, mtu: 9000, macAddress: {string: "52:54:00:aa:bb:cc"}, bondMode: 802.3ad, bondXmitHashPolicy: layer3+4, bondLinks: [enp1s0, enp2s0]}
      vlans:
      - {id: vlan1, mtu: 1500, macAddress: {fromAnnotation: {object: machine, annotation: vlan-mac}}, vlanID: 101, vlanLink: bond0}
    networks:
      ipv4DHCP:
      - {id: provisioning, link: bond0}
      ipv4:
      - id: baremetal
        link: vlan1
        ipAddressFromIPPool: pool1
        routes:
        - {network: 0.0.0.0, prefix: 0, gateway: {fromIPPool: pool1}, services: {dns: [8.8.4.4], dnsFromIPPool: pool1}}
      ipv6DHCP:
      - {id: provisioning6, link: bond0}
      ipv6SLAAC:
      - {id: provisioning6slaac, link: bond0}
      ipv6:
      - id: baremetal6
        link: vlan1
        fromPoolRef: {name: pool6-1}
        routes:
        - {network: "::", prefix: 0, gateway: {string: "2001:db8:85a3::8a2e:370:1"}}
    services:
      dns: [8.8.8.8, "2001:4860:4860::8888"]
      dnsFromIPPool: pool6-1
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        template.pools().into_iter().collect::<Vec<_>>(),
        ["pool1", "pool6-1"]
    );
    let mut pool1 = ipam::IpPool::new(&ipam::IpPoolSpec {
        pools: vec![ipam::PoolRange::from_to(
            "192.168.0.10".parse().unwrap_or_else(|_| unreachable!()),
            "192.168.0.20".parse().unwrap_or_else(|_| unreachable!()),
        )],
        prefix: Some(24),
        gateway: "192.168.0.1".parse().ok(),
        dns_servers: vec!["192.168.0.53".parse().unwrap_or_else(|_| unreachable!())],
        name_prefix: "pool1".into(),
        ..ipam::IpPoolSpec::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut pool6 = ipam::IpPool::new(&ipam::IpPoolSpec {
        pools: vec![ipam::PoolRange::from_to(
            "2001:db8::10".parse().unwrap_or_else(|_| unreachable!()),
            "2001:db8::ff".parse().unwrap_or_else(|_| unreachable!()),
        )],
        prefix: Some(64),
        dns_servers: vec!["2001:db8::53".parse().unwrap_or_else(|_| unreachable!())],
        name_prefix: "pool6-1".into(),
        ..ipam::IpPoolSpec::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let addresses = BTreeMap::from([
        (
            "pool1".to_string(),
            pool1.claim("c").unwrap_or_else(|e| panic!("{e}")),
        ),
        (
            "pool6-1".to_string(),
            pool6.claim("c").unwrap_or_else(|e| panic!("{e}")),
        ),
    ]);
    let mut machine = meta("machine-1", &[]);
    machine
        .annotations
        .insert("vlan-mac".into(), "52:54:00:aa:bb:dd".into());
    let (m3m, host) = (meta("m3m-1", &[]), meta("node-1", &[]));
    let nics = nics();
    let ctx = RenderContext {
        index: 0,
        namespace: "metal3",
        metal3_machine: &m3m,
        machine: &machine,
        host: &host,
        nics: &nics,
        boot_mac: None,
        addresses: &addresses,
    };
    let network = template
        .spec
        .network_data
        .as_ref()
        .unwrap_or_else(|| panic!("no networkData"));
    let rendered = render_network_data(network, &ctx).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rendered,
        json!({
            "links": [
                {"type": "bond", "id": "bond0", "mtu": 9000, "ethernet_mac_address": "52:54:00:aa:bb:cc",
                 "bond_mode": "802.3ad", "bond_xmit_hash_policy": "layer3+4", "bond_links": ["enp1s0", "enp2s0"]},
                {"type": "phy", "id": "enp1s0", "mtu": 9000, "ethernet_mac_address": "52:54:00:6c:3c:01"},
                {"type": "phy", "id": "enp2s0", "mtu": 1500, "ethernet_mac_address": "52:54:00:6c:3c:02"},
                {"type": "vlan", "id": "vlan1", "mtu": 1500, "vlan_mac_address": "52:54:00:aa:bb:dd",
                 "vlan_id": 101, "vlan_link": "bond0"},
            ],
            "networks": [
                {"type": "ipv4", "id": "baremetal", "link": "vlan1", "ip_address": "192.168.0.10",
                 "netmask": "255.255.255.0",
                 "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.168.0.1",
                             "services": [{"type": "dns", "address": "8.8.4.4"},
                                          {"type": "dns", "address": "192.168.0.53"}]}]},
                {"type": "ipv6", "id": "baremetal6", "link": "vlan1", "ip_address": "2001:db8::10",
                 "netmask": "ffff:ffff:ffff:ffff::",
                 "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:85a3::8a2e:370:1",
                             "services": []}]},
                {"type": "ipv4_dhcp", "id": "provisioning", "link": "bond0", "routes": []},
                {"type": "ipv6_dhcp", "id": "provisioning6", "link": "bond0", "routes": []},
                {"type": "ipv6_slaac", "id": "provisioning6slaac", "link": "bond0", "routes": []},
            ],
            "services": [
                {"type": "dns", "address": "8.8.8.8"},
                {"type": "dns", "address": "2001:4860:4860::8888"},
                {"type": "dns", "address": "2001:db8::53"},
            ],
        })
    );

    // What CAPM3 refuses is refused here, saying what is wrong.
    let mut bad_mac = network.clone();
    bad_mac.links.bonds[0].mac_address.string = Some("XX:XX:XX:XX:XX:XX".into());
    let e = render_network_data(&bad_mac, &ctx)
        .err()
        .unwrap_or_default();
    assert!(e.contains("bad MAC address"), "{e}");
    let mut no_nic = network.clone();
    no_nic.links.ethernets[0].mac_address.from_host_interface = Some("eno9".into());
    let e = render_network_data(&no_nic, &ctx).err().unwrap_or_default();
    assert!(
        e.contains("no NIC named eno9") && e.contains("eth0, eth1"),
        "{e}"
    );
    let mut unknown_link = network.clone();
    unknown_link.networks.ipv4[0].link = "vlan9".into();
    let e = render_network_data(&unknown_link, &ctx)
        .err()
        .unwrap_or_default();
    assert!(e.contains("link vlan9"), "{e}");
    let mut wrong_family = network.clone();
    wrong_family.networks.ipv6[0].from_pool_ref = Some(metal3_capm3::data::PoolRef {
        name: "pool1".into(),
    });
    let e = render_network_data(&wrong_family, &ctx)
        .err()
        .unwrap_or_default();
    assert!(e.contains("not an IPv6 address"), "{e}");
    let only_v4 = BTreeMap::from([("pool1".to_string(), addresses["pool1"].clone())]);
    let e = render_network_data(
        network,
        &RenderContext {
            addresses: &only_v4,
            ..ctx
        },
    )
    .err()
    .unwrap_or_default();
    assert!(e.contains("no address claimed from IPPool pool6-1"), "{e}");
}
