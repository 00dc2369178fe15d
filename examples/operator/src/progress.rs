//! Progress of a fleet in one line: how many hosts are in each state.

use std::collections::BTreeMap;

use provision_fsm::HostStateKind;

use crate::operator::Operator;

/// One line: how many hosts are in each state.
pub fn progress_line(operator: &Operator, keys: &[String]) -> String {
    let total = keys.len();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let errors = operator.with_records(|records| {
        for r in records.values() {
            *counts.entry(r.host.state.kind().name()).or_default() += 1;
        }
        records.values().filter(|r| r.host.error.is_some()).count()
    });
    let gone = keys.iter().filter(|k| operator.is_gone(k)).count();
    let mut parts: Vec<String> = [
        HostStateKind::Registering,
        HostStateKind::Inspecting,
        HostStateKind::Available,
        HostStateKind::Provisioning,
        HostStateKind::Provisioned,
        HostStateKind::Deprovisioning,
        HostStateKind::PoweringOffBeforeDelete,
        HostStateKind::Deleting,
    ]
    .iter()
    .filter_map(|s| counts.get(s.name()).map(|n| format!("{} {n}", s.name())))
    .collect();
    if errors > 0 {
        parts.push(format!("with errors {errors}"));
    }
    if gone > 0 {
        parts.push(format!("deleted {gone}"));
    }
    format!("[{total} hosts] {}", parts.join(" · "))
}
