//! The conductor's Prometheus metrics, served as `GET /metrics` on the admin API in the
//! OpenMetrics text format.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `conductor_nodes` | `state` | nodes by provision state (at scrape time) |
//! | `bmc_requests_total` | `protocol`, `driver`, `method`, `status` | exchanges with BMCs |
//! | `bmc_request_duration_seconds` | `protocol`, `driver`, `method` | their latency |
//! | `conductor_actions_total` | `action`, `outcome` | node-machine actions carried out |
//! | `conductor_action_duration_seconds` | `action` | how long they took |
//! | `conductor_node_timeouts_total` | `state` | waits that timed out |
//! | `agent_lookups_total` | `result` | agent look-ups (`found`, `not_found`) |
//! | `agent_heartbeats_total` | | agent heartbeats accepted |
//!
//! BMC labels never carry a host or node name: 10,000 BMCs would be 10,000 series per
//! histogram bucket. Per node, look at its history instead.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use bmc_core::observe::BmcCall;
use bmc_core::sync::lock;
use provision_fsm::NodeState;

/// The content type of [`ConductorMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    driver: String,
    method: &'static str,
    status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    protocol: &'static str,
    driver: String,
    method: &'static str,
}

/// An answer's status as a label: the code, or `none` when no answer came. Counted
/// on every BMC request, so it is built without allocating.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Status(Option<u16>);

impl prometheus_client::encoding::EncodeLabelValue for Status {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(code) => code.encode(encoder),
            None => "none".encode(encoder),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

fn request_buckets() -> Histogram {
    // 1 ms to about 33 s: loopback simulators answer in a millisecond, real BMCs in
    // tens to thousands.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn action_buckets() -> Histogram {
    // 10 ms to about 45 min: a verify is quick, a virtual-media boot takes minutes.
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

/// The conductor's metrics.
pub struct ConductorMetrics {
    registry: Mutex<Registry>,
    nodes: Family<StateLabel, Gauge>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    actions: Family<ActionLabels, Counter>,
    action_time: Family<ActionLabel, Histogram, fn() -> Histogram>,
    timeouts: Family<StateLabel, Counter>,
    lookups: Family<ResultLabel, Counter>,
    heartbeats: Counter,
}

impl std::fmt::Debug for ConductorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConductorMetrics")
    }
}

impl Default for ConductorMetrics {
    fn default() -> Self {
        ConductorMetrics::new()
    }
}

impl ConductorMetrics {
    /// Every metric at zero.
    pub fn new() -> ConductorMetrics {
        let m = ConductorMetrics {
            registry: Mutex::new(Registry::default()),
            nodes: Family::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(request_buckets),
            actions: Family::default(),
            action_time: Family::new_with_constructor(action_buckets),
            timeouts: Family::default(),
            lookups: Family::default(),
            heartbeats: Counter::default(),
        };
        {
            let mut r = lock(&m.registry);
            r.register(
                "conductor_nodes",
                "Nodes by provision state",
                m.nodes.clone(),
            );
            r.register(
                "bmc_requests",
                "Exchanges with BMCs by protocol, driver, method and status",
                m.requests.clone(),
            );
            r.register(
                "bmc_request_duration_seconds",
                "Latency of exchanges with BMCs",
                m.latency.clone(),
            );
            r.register(
                "conductor_actions",
                "Node-machine actions carried out, by outcome",
                m.actions.clone(),
            );
            r.register(
                "conductor_action_duration_seconds",
                "How long node-machine actions took",
                m.action_time.clone(),
            );
            r.register(
                "conductor_node_timeouts",
                "Waits that timed out, by the state that waited",
                m.timeouts.clone(),
            );
            r.register(
                "agent_lookups",
                "Agent look-ups by result",
                m.lookups.clone(),
            );
            r.register(
                "agent_heartbeats",
                "Agent heartbeats accepted",
                m.heartbeats.clone(),
            );
        }
        m
    }

    /// Counts one exchange with a BMC driven by `driver`.
    pub fn bmc_call(&self, driver: &str, call: &BmcCall<'_>) {
        self.requests
            .get_or_create(&RequestLabels {
                protocol: call.protocol,
                driver: driver.to_string(),
                method: call.method,
                status: Status(call.status),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                protocol: call.protocol,
                driver: driver.to_string(),
                method: call.method,
            })
            .observe(call.latency.as_secs_f64());
    }

    /// Counts an action carried out and how long it took.
    pub fn action(&self, action: &str, succeeded: bool, took: Duration) {
        self.actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
                outcome: if succeeded { "success" } else { "failure" }.to_string(),
            })
            .inc();
        self.action_time
            .get_or_create(&ActionLabel {
                action: action.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a wait that timed out in `state`.
    pub fn timed_out(&self, state: NodeState) {
        self.timeouts
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .inc();
    }

    /// Counts an agent look-up.
    pub fn lookup(&self, found: bool) {
        self.lookups
            .get_or_create(&ResultLabel {
                result: if found { "found" } else { "not_found" }.to_string(),
            })
            .inc();
    }

    /// Counts an agent heartbeat.
    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// The metrics in the OpenMetrics text format, with the nodes counted by state as
    /// `states` says (every state appears, at 0 when no node is in it).
    pub fn encode(&self, states: impl IntoIterator<Item = NodeState>) -> String {
        let mut counts: Vec<(NodeState, i64)> = provision_fsm::NodeState::ALL
            .iter()
            .map(|s| (*s, 0))
            .collect();
        for s in states {
            if let Some(c) = counts.iter_mut().find(|(k, _)| *k == s) {
                c.1 += 1;
            }
        }
        for (state, n) in counts {
            self.nodes
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(n);
        }
        let mut out = String::new();
        let registry = lock(&self.registry);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
