//! The conductor's admin API (modelled on Ironic's), three ways: the [`ConductorApi`]
//! trait the operator calls, the HTTP routes the `conductor` binary serves, and an HTTP
//! client ([`HttpConductor`]) for an operator in another process.
//!
//! | call | HTTP |
//! |---|---|
//! | create (or update) a node | `POST /v1/nodes` |
//! | show / list | `GET /v1/nodes/{name}`, `GET /v1/nodes` |
//! | node state changes after a position of the feed (long poll) | `GET /v1/changes?since=<seq>&timeout_ms=<ms>` |
//! | delete | `DELETE /v1/nodes/{name}` |
//! | provision verb | `PUT /v1/nodes/{name}/states/provision` `{"target": "manage"\|"inspect"\|"provide"\|"active"\|"deleted"\|"abort", "deploy": {…}}` |
//! | power | `PUT /v1/nodes/{name}/states/power` `{"target": "power on"\|"power off"}` |
//!
//! Node names are `namespace/name`; the slash is escaped (`%2F`) in paths. Credentials
//! travel in the create body, so serve the API on loopback or behind TLS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};

use bmc_core::Credentials;

use provision_fsm::NodeState;

use crate::changes::Changes;
use crate::conductor::{ApiError, Conductor, DeployConfig, NodeSpec, NodeView, Verb};

/// What the operator needs from a conductor.
#[async_trait]
pub trait ConductorApi: Send + Sync {
    /// Creates a node, or updates the BMC details of an existing one.
    async fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError>;
    /// Shows a node.
    async fn node(&self, name: &str) -> Result<NodeView, ApiError>;
    /// Shows a node once its provision state is no longer `while_in`, or as it is after
    /// `timeout` (a long poll: one answer per state change).
    async fn wait_node(
        &self,
        name: &str,
        while_in: NodeState,
        timeout: Duration,
    ) -> Result<NodeView, ApiError>;
    /// Deletes a node.
    async fn delete_node(&self, name: &str) -> Result<(), ApiError>;
    /// Applies a provisioning verb.
    async fn provision(&self, name: &str, verb: Verb) -> Result<NodeView, ApiError>;
    /// Powers a node on or off.
    async fn set_power(&self, name: &str, on: bool) -> Result<NodeView, ApiError>;
}

/// The conductor in this process behind [`ConductorApi`].
#[derive(Debug, Clone)]
pub struct InProcess(pub Arc<Conductor>);

#[async_trait]
impl ConductorApi for InProcess {
    async fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError> {
        self.0.create_node(spec)
    }
    async fn node(&self, name: &str) -> Result<NodeView, ApiError> {
        self.0.node(name)
    }
    async fn wait_node(
        &self,
        name: &str,
        while_in: NodeState,
        timeout: Duration,
    ) -> Result<NodeView, ApiError> {
        self.0.wait_node(name, while_in, timeout).await
    }
    async fn delete_node(&self, name: &str) -> Result<(), ApiError> {
        self.0.delete_node(name).await
    }
    async fn provision(&self, name: &str, verb: Verb) -> Result<NodeView, ApiError> {
        self.0.provision(name, verb)
    }
    async fn set_power(&self, name: &str, on: bool) -> Result<NodeView, ApiError> {
        self.0.set_power(name, on).await
    }
}

/// `POST /v1/nodes` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateNode {
    /// Name.
    pub name: String,
    /// BMC address.
    pub address: String,
    /// BMC user.
    pub username: String,
    /// BMC password.
    pub password: String,
    /// Skip TLS certificate checks.
    #[serde(default)]
    pub disable_certificate_verification: bool,
    /// Boot MAC.
    #[serde(default)]
    pub boot_mac: Option<String>,
    /// Clean by the agent (`automatedCleaningMode: metadata`, the default).
    #[serde(default = "yes")]
    pub automated_clean: bool,
}

fn yes() -> bool {
    true
}

/// `PUT …/states/provision` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionTarget {
    /// `manage`, `inspect`, `provide`, `active`, `deleted`, `abort`.
    pub target: String,
    /// For `active`: what to deploy.
    #[serde(default)]
    pub deploy: Option<DeployConfig>,
    /// For `inspect`: `agent` (in band) or `redfish` (out of band, the default).
    #[serde(default)]
    pub inspect_interface: Option<String>,
}

/// `PUT …/states/power` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerTarget {
    /// `power on` or `power off`.
    pub target: String,
}

fn verb(t: ProvisionTarget) -> Result<Verb, ApiError> {
    let in_band = t.inspect_interface.as_deref() == Some("agent");
    Ok(match (t.target.as_str(), t.deploy) {
        ("manage", _) => Verb::Manage,
        ("inspect", _) => Verb::Inspect { in_band },
        ("provide", _) => Verb::Provide,
        ("active", Some(d)) => Verb::Deploy(d),
        ("active", None) => {
            return Err(ApiError::BadRequest("target active needs a deploy".into()));
        }
        ("deleted", _) => Verb::Undeploy,
        ("abort", _) => Verb::Abort,
        (other, _) => {
            return Err(ApiError::BadRequest(format!(
                "unknown provision target {other:?}"
            )));
        }
    })
}

fn target(v: &Verb) -> ProvisionTarget {
    let inspect_interface = match v {
        Verb::Inspect { in_band: true } => Some("agent".to_string()),
        _ => None,
    };
    let (t, deploy) = match v {
        Verb::Manage => ("manage", None),
        Verb::Inspect { .. } => ("inspect", None),
        Verb::Provide => ("provide", None),
        Verb::Deploy(d) => ("active", Some(d.clone())),
        Verb::Undeploy => ("deleted", None),
        Verb::Abort => ("abort", None),
    };
    ProvisionTarget {
        target: t.to_string(),
        deploy,
        inspect_interface,
    }
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    kind: String,
    error: String,
}

fn reply<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let (status, kind) = match &e {
                ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not found"),
                ApiError::InvalidState(_) => (StatusCode::CONFLICT, "invalid state"),
                ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
            };
            let message = match e {
                ApiError::NotFound(m) | ApiError::InvalidState(m) | ApiError::BadRequest(m) => m,
            };
            (
                status,
                Json(ErrorBody {
                    kind: kind.to_string(),
                    error: message,
                }),
            )
                .into_response()
        }
    }
}

async fn create(State(c): State<Arc<Conductor>>, Json(body): Json<CreateNode>) -> Response {
    let credentials = match Credentials::new(body.username, body.password) {
        Ok(c) => c,
        Err(e) => return reply::<()>(Err(ApiError::BadRequest(e.to_string()))),
    };
    reply(c.create_node(NodeSpec {
        name: body.name,
        address: body.address,
        credentials,
        disable_certificate_verification: body.disable_certificate_verification,
        boot_mac: body.boot_mac,
        automated_clean: body.automated_clean,
    }))
}

async fn list(State(c): State<Arc<Conductor>>) -> Response {
    reply(Ok(c.nodes()))
}

async fn show(State(c): State<Arc<Conductor>>, Path(name): Path<String>) -> Response {
    reply(c.node(&name))
}

async fn delete(State(c): State<Arc<Conductor>>, Path(name): Path<String>) -> Response {
    match c.delete_node(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => reply::<()>(Err(e)),
    }
}

async fn provision(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    Json(body): Json<ProvisionTarget>,
) -> Response {
    reply(verb(body).and_then(|v| c.provision(&name, v)))
}

async fn power(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    Json(body): Json<PowerTarget>,
) -> Response {
    let on = match body.target.as_str() {
        "power on" => true,
        "power off" => false,
        other => {
            return reply::<()>(Err(ApiError::BadRequest(format!(
                "unknown power target {other:?}"
            ))));
        }
    };
    reply(c.set_power(&name, on).await)
}

/// The longest a `GET /v1/changes` long poll is held.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// `GET /v1/changes` query.
#[derive(Debug, Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    since: u64,
    timeout_ms: Option<u64>,
}

async fn changes(State(c): State<Arc<Conductor>>, Query(q): Query<ChangesQuery>) -> Response {
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000)).min(MAX_WAIT);
    reply(Ok(c.changes(q.since, timeout).await))
}

/// The admin API's routes.
pub fn routes(conductor: Arc<Conductor>) -> Router {
    Router::new()
        .route("/v1/nodes", get(list).post(create))
        .route("/v1/changes", get(changes))
        .route("/v1/nodes/{name}", get(show).delete(delete))
        .route("/v1/nodes/{name}/states/provision", put(provision))
        .route("/v1/nodes/{name}/states/power", put(power))
        .with_state(conductor)
}

/// The admin API over HTTP.
///
/// At most [`HttpConductor::MAX_IN_FLIGHT`] requests are in flight at once (so thousands of
/// hosts reconciled at once share a few connections), and waits for node state changes
/// ([`ConductorApi::wait_node`]) are answered from one long poll of the conductor's change
/// feed shared by all waiters, not a connection per waiting node.
#[derive(Debug, Clone)]
pub struct HttpConductor {
    base: String,
    http: reqwest::Client,
    in_flight: Arc<tokio::sync::Semaphore>,
    watch: Arc<Watch>,
}

/// What the change-feed watcher knows, per node.
#[derive(Debug)]
struct Watch {
    nodes: std::sync::Mutex<HashMap<String, WatchedNode>>,
    running: std::sync::atomic::AtomicBool,
}

/// A node as the feed last told it, and the waiters to wake when it changes (only that
/// node's: ten thousand waiting hosts are not all woken for every change).
#[derive(Debug, Default)]
struct WatchedNode {
    /// `None`: not told yet; `Some(None)`: deleted.
    state: Option<Option<NodeState>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Watch {
    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, WatchedNode>> {
        match self.nodes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// Follows the conductor's change feed until every [`HttpConductor`] sharing `watch` is
/// gone.
async fn follow_changes(base: String, http: reqwest::Client, watch: std::sync::Weak<Watch>) {
    let mut since = 0;
    loop {
        let answer = http
            .get(format!("{base}/v1/changes?since={since}&timeout_ms=20000"))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let changes = match answer {
            Ok(r) if r.status().is_success() => r.json::<Changes>().await.ok(),
            _ => None,
        };
        let Some(watch) = watch.upgrade() else {
            return;
        };
        match changes {
            Some(c) => {
                let mut nodes = watch.nodes();
                if c.complete {
                    // A full list: what it leaves out is not known any more.
                    for node in nodes.values_mut() {
                        node.state = None;
                        node.changed.notify_waiters();
                    }
                }
                for change in c.changes {
                    let node = nodes.entry(change.name).or_default();
                    node.state = Some(change.state);
                    node.changed.notify_waiters();
                }
                since = c.seq;
            }
            None => {
                drop(watch);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl HttpConductor {
    /// Requests in flight at once.
    pub const MAX_IN_FLIGHT: usize = 64;

    /// A client for the conductor at `base` (`http://127.0.0.1:6385`).
    pub fn new(base: &str) -> HttpConductor {
        HttpConductor {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(Self::MAX_IN_FLIGHT)),
            watch: Arc::new(Watch {
                nodes: std::sync::Mutex::new(HashMap::new()),
                running: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, ApiError> {
        let _permit = self.in_flight.acquire().await;
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::InvalidState(format!("conductor unreachable: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return response
                .json::<T>()
                .await
                .map(Some)
                .map_err(|e| ApiError::InvalidState(format!("conductor answer: {e}")));
        }
        let message = response
            .json::<ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(match status.as_u16() {
            404 => ApiError::NotFound(message),
            400 => ApiError::BadRequest(message),
            _ => ApiError::InvalidState(message),
        })
    }

    async fn view(&self, request: reqwest::RequestBuilder) -> Result<NodeView, ApiError> {
        self.answer::<NodeView>(request)
            .await?
            .ok_or_else(|| ApiError::InvalidState("empty conductor answer".into()))
    }
}

#[async_trait]
impl ConductorApi for HttpConductor {
    async fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError> {
        let body = CreateNode {
            name: spec.name,
            address: spec.address,
            username: spec.credentials.username().to_string(),
            password: spec.credentials.password().expose().to_string(),
            disable_certificate_verification: spec.disable_certificate_verification,
            boot_mac: spec.boot_mac,
            automated_clean: spec.automated_clean,
        };
        self.view(
            self.http
                .post(format!("{}/v1/nodes", self.base))
                .json(&body),
        )
        .await
    }

    async fn node(&self, name: &str) -> Result<NodeView, ApiError> {
        self.view(
            self.http
                .get(format!("{}/v1/nodes/{}", self.base, escape(name))),
        )
        .await
    }

    async fn wait_node(
        &self,
        name: &str,
        while_in: NodeState,
        timeout: Duration,
    ) -> Result<NodeView, ApiError> {
        if !self
            .watch
            .running
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tokio::spawn(follow_changes(
                self.base.clone(),
                self.http.clone(),
                Arc::downgrade(&self.watch),
            ));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let changed = self
            .watch
            .nodes()
            .entry(name.to_string())
            .or_default()
            .changed
            .clone();
        loop {
            // Registered before the state is read, so a change in between is not missed.
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let known = self.watch.nodes().get(name).and_then(|n| n.state);
            match known {
                Some(Some(state)) if state == while_in => {}
                // Moved on (or deleted: then the node is not found). The feed may still
                // hold a state from before the caller's own read: then wait for more.
                Some(_) => {
                    let view = self.node(name).await?;
                    if view.state != while_in {
                        return Ok(view);
                    }
                }
                // Not told yet: the feed's first answer lists every node.
                None => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.node(name).await;
            }
        }
    }

    async fn delete_node(&self, name: &str) -> Result<(), ApiError> {
        self.answer::<serde_json::Value>(self.http.delete(format!(
            "{}/v1/nodes/{}",
            self.base,
            escape(name)
        )))
        .await
        .map(|_| ())
    }

    async fn provision(&self, name: &str, verb: Verb) -> Result<NodeView, ApiError> {
        self.view(
            self.http
                .put(format!(
                    "{}/v1/nodes/{}/states/provision",
                    self.base,
                    escape(name)
                ))
                .json(&target(&verb)),
        )
        .await
    }

    async fn set_power(&self, name: &str, on: bool) -> Result<NodeView, ApiError> {
        let target = if on { "power on" } else { "power off" };
        self.view(
            self.http
                .put(format!(
                    "{}/v1/nodes/{}/states/power",
                    self.base,
                    escape(name)
                ))
                .json(&PowerTarget {
                    target: target.to_string(),
                }),
        )
        .await
    }
}
