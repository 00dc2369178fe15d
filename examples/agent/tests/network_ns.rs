//! `network_data.json` applied for real, in a network namespace this test makes (a veth
//! pair inside it stands for the host's NIC): the static IPv4 and IPv6 addresses, the
//! default and extra routes and the MTU as `ip` then reports them, and `resolv.conf`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use metal3_agent::network::{Interface, apply, plan};

const MAC: &str = "52:54:00:aa:bb:01";

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn static_network_data_is_applied_in_a_namespace() {
    if !root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let name = format!("m3agent-{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    ip(&["netns", "add", &name]);
    let ns = Namespace(name.clone());
    ip(&[
        "-n", &ns.0, "link", "add", "nic0", "type", "veth", "peer", "name", "peer0",
    ]);
    ip(&["-n", &ns.0, "link", "set", "nic0", "address", MAC]);
    ip(&["-n", &ns.0, "link", "set", "peer0", "up"]);

    let data = serde_json::from_value(serde_json::json!({
        "links": [{"id": "enp1s0", "type": "phy", "ethernet_mac_address": "52:54:00:AA:BB:01", "mtu": 1400}],
        "networks": [
            {"id": "v4", "type": "ipv4", "link": "enp1s0", "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
             "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"},
                        {"network": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254"}]},
            {"id": "v6", "type": "ipv6", "link": "enp1s0", "ip_address": "2001:db8::10", "netmask": "ffff:ffff:ffff:ffff::"}
        ],
        "services": [{"type": "dns", "address": "192.0.2.53"}]
    }))
    .unwrap();
    let host = [Interface {
        name: "nic0".into(),
        mac: MAC.into(),
    }];
    let p = plan(&data, &host).unwrap();
    assert!(p.dhcp.is_empty());
    let resolv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-resolv.conf");
    let ip_in_ns: Vec<String> = ["ip", "-n", &name].iter().map(|s| s.to_string()).collect();
    apply(&p, &ip_in_ns, Some(&resolv)).unwrap();

    let addrs = ip(&["-n", &name, "-o", "addr", "show", "dev", "nic0"]);
    assert!(addrs.contains("inet 192.0.2.10/24"), "{addrs}");
    assert!(addrs.contains("inet6 2001:db8::10/64"), "{addrs}");
    let link = ip(&["-n", &name, "-o", "link", "show", "dev", "nic0"]);
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    let routes = ip(&["-n", &name, "-4", "route"]);
    assert!(
        routes.contains("default via 192.0.2.1 dev nic0"),
        "{routes}"
    );
    assert!(
        routes.contains("198.51.100.0/24 via 192.0.2.254 dev nic0"),
        "{routes}"
    );
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "nameserver 192.0.2.53\n"
    );

    // Applying again fails on the first command the kernel refuses, named.
    let err = apply(&p, &ip_in_ns, None).unwrap_err();
    assert!(err.contains("ip addr add 192.0.2.10/24 dev nic0"), "{err}");
}

/// Without a static configuration the agent asks by DHCP: busybox's udhcpd serves a
/// lease in one namespace, the agent's udhcpc with its event script takes it in another.
#[test]
fn without_static_configuration_the_agent_takes_a_dhcp_lease() {
    use metal3_agent::network::{DhcpClient, dhcp};
    if !root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let (host, server) = (
        format!("m3dhcp-h-{}", std::process::id()),
        format!("m3dhcp-s-{}", std::process::id()),
    );
    for n in [&host, &server] {
        let _ = Command::new("ip").args(["netns", "del", n]).output();
        ip(&["netns", "add", n]);
    }
    let (host_ns, _server_ns) = (Namespace(host.clone()), Namespace(server.clone()));
    ip(&[
        "-n", &host, "link", "add", "nic0", "type", "veth", "peer", "name", "srv0",
    ]);
    ip(&["-n", &host, "link", "set", "srv0", "netns", &server]);
    ip(&["-n", &server, "addr", "add", "10.99.0.1/24", "dev", "srv0"]);
    ip(&["-n", &server, "link", "set", "srv0", "up"]);
    // A second NIC without a DHCP server behind it.
    ip(&[
        "-n", &host, "link", "add", "nic1", "type", "veth", "peer", "name", "dead1",
    ]);

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dhcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 10.99.0.100\nend 10.99.0.110\ninterface srv0\nlease_file {}\n\
             option subnet 255.255.255.0\noption router 10.99.0.1\noption dns 10.99.0.53\n",
            dir.join("leases").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("leases"), b"").unwrap();
    let mut udhcpd = Command::new("ip")
        .args(["netns", "exec", &server, "busybox", "udhcpd", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let client = DhcpClient {
        program: ["ip", "netns", "exec", &host_ns.0, "busybox", "udhcpc"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        script: dir.join("udhcpc.script"),
        resolv: dir.join("resolv.conf"),
        tries: 3,
    };
    let bound = dhcp(&["nic0".to_string(), "nic1".to_string()], &client);
    let _ = Command::new("kill").arg(udhcpd.id().to_string()).status();
    let _ = udhcpd.wait();
    assert_eq!(bound.unwrap(), ["nic0"], "nic1 has no server");
    let addrs = ip(&["-n", &host, "-o", "-4", "addr", "show", "dev", "nic0"]);
    // udhcpd picks from its pool by the client's (random) MAC: any of .100 to .110.
    let leased = addrs
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let (address, prefix) = leased.split_once('/').unwrap_or_default();
    let last: u8 = address
        .strip_prefix("10.99.0.")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    assert!((100..=110).contains(&last) && prefix == "24", "{addrs}");
    let routes = ip(&["-n", &host, "-4", "route"]);
    assert!(
        routes.contains("default via 10.99.0.1 dev nic0"),
        "{routes}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("resolv.conf")).unwrap(),
        "nameserver 10.99.0.53\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
