//! Every `status` the operator can write, checked against the `openAPIV3Schema` of
//! upstream's BareMetalHost CRD (`../shared/reference/metal3-manifests/`, unchanged) the
//! way kube-apiserver checks a structural schema: types, `required`, `enum`, `nullable`,
//! `format: date-time`; and every field known to the schema (the API server prunes
//! unknown fields silently, so a field it does not know would be lost).

use std::path::PathBuf;

use metal3_operator::operator::HostRecord;
use metal3_operator::render::status_json;
use provision_fsm::{
    ErrorType, HostError, HostState, HostStateKind, Image, InspectionMode, OperationalStatus,
};
use serde_json::{Value, json};

fn crd_schema() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/reference/metal3-manifests/baremetal-operator/config/base/crds/bases/metal3.io_baremetalhosts.yaml",
    );
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| unreachable!("{}: {e}", path.display()));
    let crd: Value = serde_norway::from_str(&text).unwrap_or_else(|e| unreachable!("{e}"));
    let version = crd["spec"]["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "v1alpha1"))
        .unwrap_or_else(|| unreachable!("no v1alpha1 in the CRD"));
    version["schema"]["openAPIV3Schema"]["properties"]["status"].clone()
}

/// `2026-12-02T10:00:00Z` or with a fraction or an offset (RFC 3339, as strfmt's
/// date-time wants it).
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-']))
}

/// What the API server would refuse (or prune) in `value` under `schema`, at `path`.
fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    // Keywords this checker understands; any other in the schema fails the test, so
    // nothing upstream adds is skipped unnoticed.
    const KNOWN: [&str; 10] = [
        "type",
        "default",
        "pattern",
        "description",
        "properties",
        "required",
        "enum",
        "nullable",
        "format",
        "items",
    ];
    if let Some(o) = schema.as_object() {
        for k in o.keys() {
            if !KNOWN.contains(&k.as_str()) {
                problems.push(format!("{path}: schema keyword {k} not checked"));
            }
        }
    }
    if value.is_null() {
        if schema["nullable"] != json!(true) {
            problems.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let type_ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => {
            problems.push(format!("{path}: schema type {ty:?} not checked"));
            true
        }
    };
    if !type_ok {
        problems.push(format!("{path}: {value} is not of type {ty}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if schema["format"] == "date-time"
        && let Some(s) = value.as_str()
        && !is_date_time(s)
    {
        problems.push(format!("{path}: {s:?} is not a date-time"));
    }
    if let (Some(pattern), Some(s)) = (schema["pattern"].as_str(), value.as_str()) {
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| unreachable!("{pattern}: {e}"));
        if !re.is_match(s) {
            problems.push(format!("{path}: {s:?} does not match {pattern}"));
        }
    }
    if let Some(o) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            // The API server fills a missing field that has a default before it checks.
            if let Some(r) = r.as_str()
                && !o.contains_key(r)
                && schema["properties"][r].get("default").is_none()
            {
                problems.push(format!("{path}.{r}: Required value"));
            }
        }
        for (k, v) in o {
            match schema["properties"].get(k) {
                Some(s) => check(s, v, &format!("{path}.{k}"), problems),
                None => problems.push(format!("{path}.{k}: unknown field (pruned)")),
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, v) in items.iter().enumerate() {
            check(&schema["items"], v, &format!("{path}[{i}]"), problems);
        }
    }
}

fn problems_of(status: &Value, schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check(schema, status, "status", &mut problems);
    problems
}

fn image() -> Image {
    serde_json::from_value(json!({
        "url": "http://images/os.qcow2", "checksum": "http://images/os.qcow2.sha256sum",
        "checksumType": "sha256", "format": "qcow2"
    }))
    .unwrap_or_else(|e| unreachable!("{e}"))
}

fn state_of(kind: HostStateKind) -> HostState {
    match kind {
        HostStateKind::None => HostState::None,
        HostStateKind::Unmanaged => HostState::Unmanaged,
        HostStateKind::Registering => HostState::Registering,
        HostStateKind::MatchProfile => HostState::MatchProfile,
        HostStateKind::Inspecting => HostState::Inspecting {
            mode: InspectionMode::Agent,
        },
        HostStateKind::Preparing => HostState::Preparing {
            settings: Some("v1".into()),
        },
        HostStateKind::Available => HostState::Available,
        HostStateKind::Provisioning => HostState::Provisioning { image: image() },
        HostStateKind::Provisioned => HostState::Provisioned {
            image: Image::at("http://images/live.iso"),
        },
        HostStateKind::ExternallyProvisioned => HostState::ExternallyProvisioned,
        HostStateKind::Deprovisioning => HostState::Deprovisioning,
        HostStateKind::PoweringOffBeforeDelete => HostState::PoweringOffBeforeDelete,
        HostStateKind::Deleting => HostState::Deleting,
        HostStateKind::Deleted => HostState::Deleted,
    }
}

/// An inventory as complete as a BMC reports, and one with every optional part missing.
fn inventories() -> Vec<bmc_core::HardwareInventory> {
    let full = json!({
        "system": {"manufacturer": "Dell Inc.", "model": "PowerEdge R640", "serial_number": "ABC123",
                   "sku": "X", "uuid": "4c4c4544-0000-1000-8000-000000000000", "hostname": "node-0"},
        "cpus": [{"id": "CPU.Socket.1", "model": "Xeon", "architecture": "x86_64", "cores": 16,
                  "threads": 32, "max_speed_mhz": 3900}],
        "memory": [{"id": "DIMM.A1", "capacity_mib": 32768}],
        "total_memory_mib": 65536,
        "nics": [{"id": "NIC.1", "mac": "52:54:00:00:00:01", "speed_mbps": 25000, "link_up": true}],
        "disks": [{"id": "Disk.0", "model": "SSD", "serial_number": "S1", "size_bytes": 480_103_981_056_u64, "kind": "Ssd"}],
        "firmware": [{"component": "BIOS", "version": "2.19.1"}]
    });
    let sparse = json!({
        "system": {}, "cpus": [{"id": "1"}], "memory": [], "nics": [{"id": "eth0"}],
        "disks": [{"id": "d0", "kind": "Unknown"}], "firmware": []
    });
    [full, sparse]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap_or_else(|e| unreachable!("{e}")))
        .collect()
}

#[test]
fn every_status_the_operator_writes_is_valid_for_upstreams_crd() {
    let schema = crd_schema();
    let mut checked = 0;
    let mut problems = Vec::new();
    let mut hardware = vec![None];
    hardware.extend(inventories().into_iter().map(Some));
    for kind in HostStateKind::ALL {
        for error in std::iter::once(None).chain(ErrorType::ALL.into_iter().map(Some)) {
            for hw in &hardware {
                let mut record = HostRecord::new();
                record.host.state = state_of(kind);
                record.host.error = error.map(|kind| HostError {
                    kind,
                    message: "the BMC said no".into(),
                });
                record.host.error_count = u32::from(error.is_some());
                record.host.powered_on = hw.as_ref().map(|_| true);
                record.host.operational_status = match (error, kind) {
                    (Some(_), _) => OperationalStatus::Error,
                    (None, HostStateKind::Unmanaged) => OperationalStatus::Discovered,
                    _ => OperationalStatus::Ok,
                };
                record.hardware = hw.clone();
                record.operations.register.start = Some(1_795_000_000.0);
                record.tried_credentials = Some("abc".into());
                let status = status_json("metal3/host-0", &record);
                for p in problems_of(&status, &schema) {
                    problems.push(format!("{} {error:?}: {p}", kind.name()));
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 14 * 9 * 3);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_what_the_api_server_refused() {
    // What kube-apiserver v1.20 answered to the status the operator used to write
    // (`provisioningFailCount`, also missing, has a default the server fills in).
    let schema = crd_schema();
    let old = json!({
        "provisioning": {"state": "provisioned", "image": null},
        "operationalStatus": "OK", "errorType": "", "errorMessage": "", "errorCount": 0,
        "poweredOn": true, "hardware": {"hostname": null},
        "lastUpdated": "2026-12-02T10:00:00Z", "goodCredentials": {}, "somethingNew": 1
    });
    let problems = problems_of(&old, &schema);
    for expected in [
        "status.provisioning.ID: Required value",
        "status.provisioning.image: null is not allowed",
        "status.hardware.hostname: null is not allowed",
        "status.somethingNew: unknown field (pruned)",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "{expected} not in {problems:?}"
        );
    }
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("status.errorType: \"\" is not one of")),
        "{problems:?}"
    );
    let bad_time = json!({"provisioning": {"ID": "", "state": ""}, "operationalStatus": "OK",
        "errorMessage": "", "errorCount": 0, "poweredOn": false, "provisioningFailCount": 0,
        "lastUpdated": "yesterday"});
    assert_eq!(
        problems_of(&bad_time, &schema),
        ["status.lastUpdated: \"yesterday\" is not a date-time"]
    );
}
