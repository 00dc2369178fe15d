//! The operator's Prometheus metrics, with baremetal-operator's `metal3_*` names where it
//! has them, served by `operator --metrics-listen ADDR` as `GET /metrics` (OpenMetrics).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `metal3_reconcile_total` | `namespace`, `host` | steps taken (BMO's name) |
//! | `metal3_reconcile_error_total` | | steps that could not reach the conductor or the store (BMO's) |
//! | `metal3_reconcile_duration_seconds` | | how long one step took |
//! | `metal3_provisioning_state_change_total` | `prev_state`, `new_state` | transitions (BMO's) |
//! | `metal3_host_error_total` | `error_type` | hosts entering an error (BMO's) |
//! | `metal3_operation_power_change_total` | `namespace`, `host`, `on_off` | power changes asked (BMO's) |
//! | `metal3_operation_{register,inspect,provision,deprovision}_duration_seconds` | | how long each operation took (BMO's names) |
//! | `metal3_hosts` | `provisioning_state`, `operational_status` | hosts now (at scrape time) |
//! | `ipam_pool_addresses` | `pool`, `state` (`allocated`, `free`) | IPAM pool usage (at scrape time) |
//!
//! Unlike baremetal-operator's, the duration histograms carry no host label: 10,000 hosts
//! would be 10,000 series per bucket.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use bmc_core::sync::lock;

/// The content type of [`OperatorMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    namespace: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    prev_state: String,
    new_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PowerLabels {
    namespace: String,
    host: String,
    on_off: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostStateLabels {
    provisioning_state: String,
    operational_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
    state: String,
}

/// An operation whose duration is measured (baremetal-operator's four).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `registering`.
    Register,
    /// `inspecting`.
    Inspect,
    /// `provisioning`.
    Provision,
    /// `deprovisioning`.
    Deprovision,
}

fn operation_buckets() -> Histogram {
    // baremetal-operator's slow-operation buckets, with a finer start for simulators.
    Histogram::new([1.0, 5.0, 30.0, 90.0, 180.0, 360.0, 720.0, 1440.0])
}

/// The operator's metrics.
pub struct OperatorMetrics {
    registry: Mutex<Registry>,
    reconciles: Family<HostLabels, Counter>,
    reconcile_errors: Counter,
    reconcile_time: Histogram,
    state_changes: Family<ChangeLabels, Counter>,
    host_errors: Family<ErrorLabel, Counter>,
    power_changes: Family<PowerLabels, Counter>,
    operations: [Histogram; 4],
    hosts: Family<HostStateLabels, Gauge>,
    pools: Family<PoolLabels, Gauge>,
}

impl std::fmt::Debug for OperatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorMetrics")
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics::new()
    }
}

fn split_key(key: &str) -> HostLabels {
    let (namespace, host) = key.split_once('/').unwrap_or(("", key));
    HostLabels {
        namespace: namespace.to_string(),
        host: host.to_string(),
    }
}

impl OperatorMetrics {
    /// Every metric at zero.
    pub fn new() -> OperatorMetrics {
        let m = OperatorMetrics {
            registry: Mutex::new(Registry::default()),
            reconciles: Family::default(),
            reconcile_errors: Counter::default(),
            // 100 µs to about 1.6 s: a step is one commit and at most a few requests.
            reconcile_time: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 15),
            ),
            state_changes: Family::default(),
            host_errors: Family::default(),
            power_changes: Family::default(),
            operations: [
                operation_buckets(),
                operation_buckets(),
                operation_buckets(),
                operation_buckets(),
            ],
            hosts: Family::default(),
            pools: Family::default(),
        };
        {
            let mut r = lock(&m.registry);
            r.register(
                "metal3_reconcile",
                "The number of times hosts have been reconciled",
                m.reconciles.clone(),
            );
            r.register(
                "metal3_reconcile_error",
                "The number of times the operator has failed to reconcile a host",
                m.reconcile_errors.clone(),
            );
            r.register(
                "metal3_reconcile_duration_seconds",
                "How long one reconcile step took",
                m.reconcile_time.clone(),
            );
            r.register(
                "metal3_provisioning_state_change",
                "Number of times a state transition has occurred",
                m.state_changes.clone(),
            );
            r.register(
                "metal3_host_error",
                "The number of times hosts have entered an error state",
                m.host_errors.clone(),
            );
            r.register(
                "metal3_operation_power_change",
                "Number of times a host has been powered on or off",
                m.power_changes.clone(),
            );
            let [register, inspect, provision, deprovision] = &m.operations;
            r.register(
                "metal3_operation_register_duration_seconds",
                "Length of time per registration per host",
                register.clone(),
            );
            r.register(
                "metal3_operation_inspect_duration_seconds",
                "Length of time per hardware inspection per host",
                inspect.clone(),
            );
            r.register(
                "metal3_operation_provision_duration_seconds",
                "Length of time per hardware provision operation per host",
                provision.clone(),
            );
            r.register(
                "metal3_operation_deprovision_duration_seconds",
                "Length of time per hardware deprovision operation per host",
                deprovision.clone(),
            );
            r.register(
                "metal3_hosts",
                "Hosts by provisioning state and operational status",
                m.hosts.clone(),
            );
            r.register(
                "ipam_pool_addresses",
                "Addresses of each IPPool, allocated and free",
                m.pools.clone(),
            );
        }
        m
    }

    /// Counts a step of the host `key` (`namespace/name`).
    pub fn reconciled(&self, key: &str) {
        self.reconciles.get_or_create(&split_key(key)).inc();
    }

    /// Records how long a step took.
    pub fn reconcile_took(&self, took: std::time::Duration) {
        self.reconcile_time.observe(took.as_secs_f64());
    }

    /// Counts a step that failed and will be retried.
    pub fn reconcile_failed(&self) {
        self.reconcile_errors.inc();
    }

    /// Counts a provisioning-state change.
    pub fn state_changed(&self, prev: &str, new: &str) {
        self.state_changes
            .get_or_create(&ChangeLabels {
                prev_state: prev.to_string(),
                new_state: new.to_string(),
            })
            .inc();
    }

    /// Counts a host entering an error of `error_type`.
    pub fn host_error(&self, error_type: &str) {
        self.host_errors
            .get_or_create(&ErrorLabel {
                error_type: error_type.to_string(),
            })
            .inc();
    }

    /// Counts a power change asked of the host `key`.
    pub fn power_change(&self, key: &str, on: bool) {
        let HostLabels { namespace, host } = split_key(key);
        self.power_changes
            .get_or_create(&PowerLabels {
                namespace,
                host,
                on_off: if on { "on" } else { "off" }.to_string(),
            })
            .inc();
    }

    /// Records how long an operation took.
    pub fn operation_took(&self, operation: Operation, seconds: f64) {
        let i = match operation {
            Operation::Register => 0,
            Operation::Inspect => 1,
            Operation::Provision => 2,
            Operation::Deprovision => 3,
        };
        self.operations[i].observe(seconds.max(0.0));
    }

    /// The metrics in the OpenMetrics text format, with the hosts counted by
    /// (provisioning state, operational status) and each pool's (allocated, free) now.
    pub fn encode(
        &self,
        hosts: impl IntoIterator<Item = (String, String)>,
        pools: impl IntoIterator<Item = (String, u64, u64)>,
    ) -> String {
        self.hosts.clear();
        for (state, status) in hosts {
            self.hosts
                .get_or_create(&HostStateLabels {
                    provisioning_state: state,
                    operational_status: status,
                })
                .inc();
        }
        self.pools.clear();
        for (pool, allocated, free) in pools {
            for (state, n) in [("allocated", allocated), ("free", free)] {
                self.pools
                    .get_or_create(&PoolLabels {
                        pool: pool.clone(),
                        state: state.to_string(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        let registry = lock(&self.registry);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_pools_are_counted_afresh_at_each_scrape() {
        let m = OperatorMetrics::new();
        m.state_changed("registering", "inspecting");
        m.operation_took(Operation::Register, 2.0);
        let text = m.encode(
            [
                ("available".to_string(), "OK".to_string()),
                ("available".to_string(), "OK".to_string()),
            ],
            [("metal3/provisioning".to_string(), 3, 97)],
        );
        assert!(
            text.contains(
                r#"metal3_hosts{provisioning_state="available",operational_status="OK"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"ipam_pool_addresses{pool="metal3/provisioning",state="allocated"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ipam_pool_addresses{pool="metal3/provisioning",state="free"} 97"#),
            "{text}"
        );
        assert!(text.contains(r#"metal3_provisioning_state_change_total{prev_state="registering",new_state="inspecting"} 1"#), "{text}");
        assert!(
            text.contains("metal3_operation_register_duration_seconds_count 1"),
            "{text}"
        );
        // A state no host is in any more is gone from the next scrape.
        let text = m.encode([("provisioned".to_string(), "OK".to_string())], []);
        assert!(
            !text.contains(r#"provisioning_state="available""#),
            "{text}"
        );
        assert!(!text.contains("ipam_pool_addresses{"), "{text}");
    }
}
