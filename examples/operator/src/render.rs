//! Metal3's layouts rendered from the operator's records: a BareMetalHost's `status`
//! (with `hardware`), and the OpenStack `network_data.json` of an address claimed from
//! ipam, as CAPM3's Metal3DataTemplate renders it.

use serde_json::{Value, json};

use bmc_core::HardwareInventory;

use crate::operator::HostRecord;

/// RFC 3339 for `status.lastUpdated`.
pub fn rfc3339(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The `hardware` part of a BareMetalHost status, in Metal3's layout.
pub fn hardware_details(inv: &HardwareInventory) -> Value {
    let cpu = inv.cpus.first();
    json!({
        "systemVendor": {
            "manufacturer": inv.system.manufacturer,
            "productName": inv.system.model,
            "serialNumber": inv.system.serial_number,
        },
        "cpu": {
            "arch": cpu.and_then(|c| c.architecture.clone()).unwrap_or_default(),
            "model": cpu.and_then(|c| c.model.clone()).unwrap_or_default(),
            "count": inv.cpus.iter().map(|c| c.threads.or(c.cores).unwrap_or(1)).sum::<u32>(),
            "clockMegahertz": cpu.and_then(|c| c.max_speed_mhz).unwrap_or(0),
        },
        "ramMebibytes": inv.total_memory_mib.unwrap_or_else(|| inv.memory.iter().filter_map(|m| m.capacity_mib).sum()),
        "nics": inv.nics.iter().map(|n| json!({
            "name": n.id,
            // Upstream's schema wants a MAC address or none: `""` is refused.
            "mac": n.mac.as_ref().map(ToString::to_string),
            "speedGbps": n.speed_mbps.map(|s| s / 1000).unwrap_or(0),
        })).collect::<Vec<_>>(),
        "storage": inv.disks.iter().map(|d| json!({
            "name": d.id,
            "model": d.model,
            "serialNumber": d.serial_number,
            "sizeBytes": d.size_bytes.unwrap_or(0),
            "rotational": matches!(d.kind, bmc_core::DiskKind::Hdd),
        })).collect::<Vec<_>>(),
        "firmware": {"bios": {"version": inv.firmware.iter().find(|f| f.component == "BIOS").map(|f| f.version.clone()).unwrap_or_default()}},
        "hostname": inv.system.hostname,
    })
}

/// The OpenStack `network_data.json` for one address on the boot NIC, as CAPM3's
/// Metal3DataTemplate renders it.
pub fn network_data(address: &ipam::IpAddress, mac: Option<&str>) -> Value {
    let family = ipam::Family::of(&address.address);
    let kind = match family {
        ipam::Family::V4 => "ipv4",
        ipam::Family::V6 => "ipv6",
    };
    // CAPM3 writes netmasks as addresses in both families (`ffff:ffff:ffff:ffff::`).
    let netmask = family.netmask(address.prefix).to_string();
    let routes: Vec<Value> = address
        .gateway
        .iter()
        .map(|g| {
            if kind == "ipv4" {
                json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": g.to_string()})
            } else {
                json!({"network": "::", "netmask": "::", "gateway": g.to_string()})
            }
        })
        .collect();
    json!({
        "links": [{"id": "enp1s0", "type": "phy", "ethernet_mac_address": mac.unwrap_or_default()}],
        "networks": [{
            "id": "provisioning", "type": kind, "link": "enp1s0",
            "ip_address": address.address.to_string(), "netmask": netmask, "routes": routes,
        }],
        "services": address.dns_servers.iter().map(|d| json!({"type": "dns", "address": d.to_string()})).collect::<Vec<_>>(),
    })
}

/// Metal3's `status.errorType` for a host error. Upstream's CRD lists seven values and
/// no `detach error`: a status carrying it is refused by the API server, so a failed
/// detach (the node could not be taken off the conductor) is reported as the
/// `registration error` it is, its message saying what failed.
pub fn error_type(kind: provision_fsm::ErrorType) -> &'static str {
    match kind {
        provision_fsm::ErrorType::Detach => provision_fsm::ErrorType::Registration.name(),
        other => other.name(),
    }
}

/// A host's `status` in Metal3's layout, valid for upstream's BareMetalHost schema:
/// `provisioning.ID` is the conductor node's name (`id`), fields with nothing to say are
/// left out rather than written as `null` or `""` where the schema has no such value
/// (`errorType`, `provisioning.image`, `hardware` and what inventory did not find).
pub fn status_json(id: &str, record: &HostRecord) -> Value {
    let h = &record.host;
    let image = match &h.state {
        provision_fsm::HostState::Provisioning { image }
        | provision_fsm::HostState::Provisioned { image } => serde_json::to_value(image).ok(),
        _ => None,
    };
    let mut provisioning = json!({"ID": id, "state": h.state.kind().name()});
    let mut status = json!({
        "operationalStatus": h.operational_status.name(),
        "errorMessage": h.error.as_ref().map(|e| match e.kind {
            provision_fsm::ErrorType::Detach => format!("detach: {}", e.message),
            _ => e.message.clone(),
        }).unwrap_or_default(),
        "errorCount": h.error_count,
        "provisioningFailCount": h.provisioning_fail_count,
        "poweredOn": h.powered_on.unwrap_or(false),
        "operationHistory": operation_history(&record.operations),
        "lastUpdated": rfc3339(record.last_updated),
        "triedCredentials": credentials_version(record.tried_credentials.as_deref()),
        "goodCredentials": credentials_version(h.registered_credentials.as_deref()),
    });
    if let (Some(image), Some(p)) = (image, provisioning.as_object_mut()) {
        p.insert("image".into(), image);
    }
    if let Some(s) = status.as_object_mut() {
        s.insert("provisioning".into(), provisioning.take());
        if let Some(e) = &h.error {
            s.insert("errorType".into(), error_type(e.kind).into());
        }
        if let Some(hw) = &record.hardware {
            s.insert("hardware".into(), without_nulls(hardware_details(hw)));
        }
    }
    status
}

/// Seconds since the Unix epoch of an RFC 3339 time as [`rfc3339`] writes it
/// (`2026-11-18T11:06:40Z`, a fraction ignored); `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    if b.len() < 20 || b.get(10) != Some(&b'T') || !text.ends_with('Z') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 from a civil date (the inverse of `rfc3339`'s).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) as f64)
}

/// The record of a host whose `status` (Metal3's layout, as [`status_json`] writes it)
/// is all there is: written by another replica, or by an earlier run whose store is
/// gone. The action the state stands for is taken as asked but not sent by this run, so
/// the next step looks at the node and carries on from what it shows (as after a
/// restart) rather than starting over; the hardware details come from the node's
/// inventory (`inventory`), and `deploy_attempts` (the node's count) marks a deploy
/// already accepted. `None` for a status with no state yet.
pub fn record_from_status(
    status: &Value,
    inventory: Option<HardwareInventory>,
    deploy_attempts: Option<u32>,
) -> Option<HostRecord> {
    use provision_fsm::{
        ErrorType, HostError, HostState, HostStateKind as K, Image, OperationalStatus, Pending,
    };
    let text = |p: &str| status.pointer(p).and_then(Value::as_str);
    let count = |p: &str| {
        status
            .pointer(p)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    let kind = K::from_name(text("/provisioning/state")?)?;
    if kind == K::None {
        return None;
    }
    let image = || -> Option<Image> {
        serde_json::from_value(status.pointer("/provisioning/image")?.clone()).ok()
    };
    let state = match kind {
        K::None => HostState::None,
        K::Unmanaged => HostState::Unmanaged,
        K::Registering => HostState::Registering,
        K::MatchProfile => HostState::MatchProfile,
        K::Inspecting => HostState::Inspecting {
            mode: provision_fsm::InspectionMode::Agent,
        },
        K::Preparing => HostState::Preparing { settings: None },
        K::Available => HostState::Available,
        K::Provisioning => HostState::Provisioning { image: image()? },
        K::Provisioned => HostState::Provisioned { image: image()? },
        K::ExternallyProvisioned => HostState::ExternallyProvisioned,
        K::Deprovisioning => HostState::Deprovisioning,
        K::PoweringOffBeforeDelete => HostState::PoweringOffBeforeDelete,
        K::Deleting => HostState::Deleting,
        K::Deleted => HostState::Deleted,
    };
    let mut record = HostRecord::new();
    let h = &mut record.host;
    h.state = state;
    // Only the actions whose progress the node shows; the host machine asks the others
    // again itself.
    h.pending = match kind {
        K::Registering => Some(Pending::Register),
        K::Inspecting => Some(Pending::Inspect),
        K::Provisioning => Some(Pending::Provision),
        K::Deprovisioning => Some(Pending::Deprovision),
        _ => None,
    };
    h.error = text("/errorType")
        .and_then(ErrorType::from_name)
        .map(|kind| HostError {
            kind,
            message: text("/errorMessage").unwrap_or_default().to_string(),
        });
    h.error_count = count("/errorCount");
    h.provisioning_fail_count = count("/provisioningFailCount");
    h.powered_on = status.get("poweredOn").and_then(Value::as_bool);
    if let Some(o) = text("/operationalStatus").and_then(OperationalStatus::from_name) {
        h.operational_status = o;
        h.detached = o == OperationalStatus::Detached;
    }
    h.registered_credentials = text("/goodCredentials/credentialsVersion").map(str::to_string);
    record.tried_credentials = text("/triedCredentials/credentialsVersion").map(str::to_string);
    record.hardware = inventory;
    if kind == K::Provisioning {
        record.deploy_accepted = deploy_attempts.filter(|n| *n > 0);
    }
    let time = |p: &str| text(p).and_then(parse_rfc3339);
    let ops = &mut record.operations;
    for (name, times) in [
        ("register", &mut ops.register),
        ("inspect", &mut ops.inspect),
        ("provision", &mut ops.provision),
        ("deprovision", &mut ops.deprovision),
    ] {
        times.start = time(&format!("/operationHistory/{name}/start"));
        times.end = time(&format!("/operationHistory/{name}/end"));
    }
    if let Some(t) = time("/lastUpdated") {
        record.last_updated = t;
    }
    Some(record)
}

/// `value` with every `null` member of its objects left out (the hardware details have
/// no nullable field in upstream's schema).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Metal3's `triedCredentials` / `goodCredentials`: the credentials version (a salted
/// digest, never the password); `{}` when there is none.
fn credentials_version(version: Option<&str>) -> Value {
    match version {
        Some(v) => json!({"credentialsVersion": v}),
        None => json!({}),
    }
}

/// Metal3's `status.operationHistory`: start and end of the last registration,
/// inspection, provisioning and deprovisioning (`null` for what has not happened).
pub fn operation_history(h: &crate::operator::OperationHistory) -> Value {
    let times = |t: &crate::operator::OperationTimes| json!({"start": t.start.map(rfc3339), "end": t.end.map(rfc3339)});
    json!({
        "register": times(&h.register),
        "inspect": times(&h.inspect),
        "provision": times(&h.provision),
        "deprovision": times(&h.deprovision),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_read_back_is_the_record_it_was_written_from() {
        let mut r = HostRecord::new();
        r.host.state = provision_fsm::HostState::Provisioning {
            image: provision_fsm::Image::at("http://images/live.iso"),
        };
        r.host.error = Some(provision_fsm::HostError {
            kind: provision_fsm::ErrorType::Provisioning,
            message: "the BMC said no".into(),
        });
        r.host.error_count = 2;
        r.host.provisioning_fail_count = 1;
        r.host.powered_on = Some(true);
        r.host.operational_status = provision_fsm::OperationalStatus::Error;
        r.host.registered_credentials = Some("v1".into());
        r.tried_credentials = Some("v1".into());
        r.operations.register.start = Some(1_795_000_000.0);
        r.operations.register.end = Some(1_795_000_007.0);
        r.last_updated = 1_795_000_100.0;
        let status = status_json("lab/h0", &r);
        let back = record_from_status(&status, None, Some(1)).unwrap_or_else(|| unreachable!());
        assert_eq!(back.host.state, r.host.state);
        assert_eq!(back.host.error, r.host.error);
        assert_eq!(
            (
                back.host.error_count,
                back.host.provisioning_fail_count,
                back.host.powered_on
            ),
            (2, 1, Some(true))
        );
        assert_eq!(back.host.pending, Some(provision_fsm::Pending::Provision));
        assert_eq!(back.deploy_accepted, Some(1));
        assert_eq!(back.operations, r.operations);
        assert_eq!(back.last_updated, r.last_updated);
        // Written again, the status is the same.
        assert_eq!(status_json("lab/h0", &back), status);
        assert!(
            record_from_status(
                &json!({"provisioning": {"ID": "", "state": ""}}),
                None,
                None
            )
            .is_none()
        );
    }

    #[test]
    fn timestamps_and_network_data_in_metal3_layout() {
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40Z"), Some(1_795_000_000.0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59Z")
                .map(rfc3339)
                .as_deref(),
            Some("2024-02-29T23:59:59Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000.0), "2026-11-18T11:06:40Z");
        let a = ipam::IpAddress {
            address: "192.168.0.10".parse().unwrap_or_else(|_| unreachable!()),
            prefix: 24,
            gateway: "192.168.0.1".parse().ok(),
            dns_servers: vec!["8.8.8.8".parse().unwrap_or_else(|_| unreachable!())].into(),
        };
        let nd = network_data(&a, Some("52:54:00:00:00:01"));
        assert_eq!(nd["networks"][0]["netmask"], "255.255.255.0");
        assert_eq!(nd["networks"][0]["routes"][0]["gateway"], "192.168.0.1");
        assert_eq!(nd["services"][0]["address"], "8.8.8.8");
        assert_eq!(nd["links"][0]["ethernet_mac_address"], "52:54:00:00:00:01");
    }
}
