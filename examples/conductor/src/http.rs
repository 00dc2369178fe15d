//! The conductor's two APIs over HTTP (modelled on Ironic's): the admin API the operator
//! calls and the agent API agents call back on, as axum routes; and [`HttpConductor`], the
//! admin API's client behind [`ConductorApi`].
//!
//! | call | HTTP |
//! |---|---|
//! | create (or update) a node | `POST /v1/nodes` |
//! | show / list | `GET /v1/nodes/{name}`, `GET /v1/nodes` |
//! | the inventory inspection found | `GET /v1/nodes/{name}/inventory` |
//! | node state changes after a position of the feed (long poll) | `GET /v1/changes?since=<seq>&timeout_ms=<ms>` |
//! | delete | `DELETE /v1/nodes/{name}` |
//! | provision verb | `PUT /v1/nodes/{name}/states/provision` `{"target": "manage"\|"inspect"\|"provide"\|"active"\|"deleted"\|"abort", "deploy": {…}}` |
//! | power (answered 202, done in the background) | `PUT /v1/nodes/{name}/states/power` `{"target": "power on"\|"power off"\|"rebooting"}` |
//! | agent look-up by MACs | `GET /v1/lookup?addresses=<mac>,<mac>` (agent API) |
//! | agent heartbeat, command result | `POST /v1/heartbeat/{node}` (agent API) |
//!
//! Node names are `namespace/name`; the slash is escaped (`%2F`) in paths. Errors are
//! `{"kind": …, "error": …}` with the status of [`ApiError::status`]. Credentials travel
//! in the create body: the [`crate::service`] serves the admin API with HTTP basic auth
//! and TLS, or on loopback only. Request bodies are bounded ([`MAX_ADMIN_BODY`],
//! [`MAX_AGENT_BODY`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};

use bmc_core::{BmcAddress, Credentials, HardwareInventory};

use crate::agent_protocol::{Heartbeat, HeartbeatReply};
use crate::conductor::Conductor;
use crate::contract::{
    ApiError, CORRELATION_HEADER, ConductorApi, DeployConfig, NodeSpec, NodeView, PowerRequest,
    Verb, clean_correlation,
};
use crate::feed::Changes;
use crate::history::NodeHistory;

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
    /// `network_data.json` for the agent's own network (Metal3's
    /// `preprovisioningNetworkDataName`), carried in its config image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprovisioning_network_data: Option<serde_json::Value>,
    /// Boot in legacy BIOS mode rather than UEFI (`bootMode: legacy`).
    #[serde(default)]
    pub legacy_boot: bool,
}

fn yes() -> bool {
    true
}

impl CreateNode {
    /// The node spec, with the address parsed and the credentials checked: the API's edge.
    pub fn into_spec(self) -> Result<NodeSpec, ApiError> {
        let address =
            BmcAddress::parse(&self.address).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let credentials = Credentials::new(self.username, self.password)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(NodeSpec {
            name: self.name,
            address,
            credentials,
            disable_certificate_verification: self.disable_certificate_verification,
            boot_mac: self.boot_mac,
            automated_clean: self.automated_clean,
            preprovisioning_network_data: self.preprovisioning_network_data,
            legacy_boot: self.legacy_boot,
        })
    }

    fn from_spec(spec: NodeSpec) -> CreateNode {
        CreateNode {
            name: spec.name,
            address: spec.address.to_string(),
            username: spec.credentials.username().to_string(),
            password: spec.credentials.password().expose().to_string(),
            disable_certificate_verification: spec.disable_certificate_verification,
            boot_mac: spec.boot_mac,
            automated_clean: spec.automated_clean,
            preprovisioning_network_data: spec.preprovisioning_network_data,
            legacy_boot: spec.legacy_boot,
        }
    }
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

impl ProvisionTarget {
    /// The verb this body asks for.
    pub fn verb(self) -> Result<Verb, ApiError> {
        let in_band = self.inspect_interface.as_deref() == Some("agent");
        Ok(match (self.target.as_str(), self.deploy) {
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

    /// The body that asks for `verb`.
    pub fn of(verb: &Verb) -> ProvisionTarget {
        let inspect_interface = match verb {
            Verb::Inspect { in_band: true } => Some("agent".to_string()),
            _ => None,
        };
        let (target, deploy) = match verb {
            Verb::Manage => ("manage", None),
            Verb::Inspect { .. } => ("inspect", None),
            Verb::Provide => ("provide", None),
            Verb::Deploy(d) => ("active", Some(d.clone())),
            Verb::Undeploy => ("deleted", None),
            Verb::Abort => ("abort", None),
        };
        ProvisionTarget {
            target: target.to_string(),
            deploy,
            inspect_interface,
        }
    }
}

/// `PUT …/states/power` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerTarget {
    /// `power on` or `power off`.
    pub target: String,
}

/// An error's body.
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    kind: String,
    error: String,
}

/// The one mapping of an API error to an HTTP answer (both APIs).
fn error_response(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match &e {
        ApiError::NotFound(_) => "not found",
        ApiError::InvalidState(_) => "invalid state",
        ApiError::BadRequest(_) => "bad request",
        ApiError::Unavailable(_) => "unavailable",
    };
    let body = ErrorBody {
        kind: kind.to_string(),
        error: e.message().to_string(),
    };
    (status, Json(body)).into_response()
}

fn reply<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(e),
    }
}

async fn create(State(c): State<Arc<Conductor>>, Json(body): Json<CreateNode>) -> Response {
    let spec = match body.into_spec() {
        Ok(spec) => spec,
        Err(e) => return error_response(e),
    };
    reply(c.create_node(spec).await)
}

async fn list(State(c): State<Arc<Conductor>>) -> Response {
    reply(Ok(c.nodes()))
}

async fn show(State(c): State<Arc<Conductor>>, Path(name): Path<String>) -> Response {
    reply(c.node(&name))
}

async fn inventory(State(c): State<Arc<Conductor>>, Path(name): Path<String>) -> Response {
    reply(c.inventory(&name))
}

async fn delete(State(c): State<Arc<Conductor>>, Path(name): Path<String>) -> Response {
    match c.delete_node(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(e),
    }
}

/// The caller's correlation id, if it sent a usable one.
fn correlation(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(clean_correlation)
}

async fn provision(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ProvisionTarget>,
) -> Response {
    let id = correlation(&headers);
    match body.verb() {
        Ok(verb) => reply(c.provision(&name, verb, id.as_deref()).await),
        Err(e) => error_response(e),
    }
}

async fn history(State(c): State<Arc<Conductor>>, Path(name): Path<String>) -> Response {
    reply(c.history(&name))
}

async fn metrics(State(c): State<Arc<Conductor>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        c.encode_metrics(),
    )
        .into_response()
}

async fn power(
    State(c): State<Arc<Conductor>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<PowerTarget>,
) -> Response {
    let Some(power) = PowerRequest::from_target(&body.target) else {
        return error_response(ApiError::BadRequest(format!(
            "unknown power target {:?}",
            body.target
        )));
    };
    match c
        .set_power(&name, power, correlation(&headers).as_deref())
        .await
    {
        // Accepted: the change runs in the background (Ironic answers 202 too).
        Ok(view) => (StatusCode::ACCEPTED, Json(view)).into_response(),
        Err(e) => error_response(e),
    }
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

/// The largest request body the admin API takes (a node, a deploy with its user data).
pub const MAX_ADMIN_BODY: usize = 1 << 20;

/// The largest request body the agent API takes (a heartbeat with an inventory).
pub const MAX_AGENT_BODY: usize = 4 << 20;

/// The admin API's routes.
pub fn admin_routes(conductor: Arc<Conductor>) -> Router {
    Router::new()
        .route("/v1/nodes", get(list).post(create))
        .route("/v1/changes", get(changes))
        .route("/v1/nodes/{name}", get(show).delete(delete))
        .route("/v1/nodes/{name}/inventory", get(inventory))
        .route("/v1/nodes/{name}/history", get(history))
        .route("/metrics", get(metrics))
        .route("/v1/nodes/{name}/states/provision", put(provision))
        .route("/v1/nodes/{name}/states/power", put(power))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .with_state(conductor)
}

#[derive(Deserialize)]
struct LookupQuery {
    addresses: String,
}

async fn lookup(State(c): State<Arc<Conductor>>, Query(q): Query<LookupQuery>) -> Response {
    let macs: Vec<String> = q.addresses.split(',').map(str::to_string).collect();
    reply(c.agent_lookup(&macs).await)
}

/// `GET /v1/config-images/{node}/{image}` (and `HEAD`): what a BMC fetches for the
/// config image slot.
async fn config_image(
    State(c): State<Arc<Conductor>>,
    Path((node, image)): Path<(String, String)>,
) -> Response {
    match c.config_image(&node, &image) {
        Ok(bytes) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

/// `GET /v1/agent-isos/{node}/{image}` (and `HEAD`, and single byte ranges, as BMCs
/// read virtual media): a BMC with one slot boots this.
async fn per_host_iso(
    State(c): State<Arc<Conductor>>,
    Path((node, image)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    use axum::http::{StatusCode, header};
    let (iso, slot) = match c.per_host_iso(&node, &image) {
        Ok(found) => found,
        Err(e) => return error_response(e),
    };
    let len = iso.len();
    let range = match headers.get(header::RANGE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) => match crate::agent_iso::parse_range(text, len) {
            Ok(range) => range,
            Err(()) => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                )
                    .into_response();
            }
        },
        Some(Err(_)) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let (status, (first, last)) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r),
        None => (StatusCode::OK, (0, len.saturating_sub(1))),
    };
    let mut response = Response::new(axum::body::Body::new(iso.body(slot, first, last)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    let value = |s: String| axum::http::HeaderValue::from_str(&s).ok();
    h.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        axum::http::HeaderValue::from_static("bytes"),
    );
    if let Some(v) = value((last + 1 - first).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Some(v) = value(format!("bytes {first}-{last}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

async fn heartbeat(
    State(c): State<Arc<Conductor>>,
    Path(node): Path<String>,
    headers: HeaderMap,
    Json(beat): Json<Heartbeat>,
) -> Response {
    let id = correlation(&headers);
    let span =
        tracing::info_span!("agent", node = %node, correlation_id = id.as_deref().unwrap_or(""));
    tracing::Instrument::instrument(
        async move {
            tracing::debug!(result = beat.command_result.is_some(), "agent heartbeat");
            if let Err(e) = c.agent_log(&node, &beat.agent_token, &beat.log) {
                return error_response(e);
            }
            reply(match beat.command_result {
                Some(result) => c
                    .agent_report(&node, &beat.agent_token, result)
                    .await
                    .map(|command| HeartbeatReply { command }),
                None => c
                    .agent_heartbeat(&node, &beat.agent_token)
                    .await
                    .map(|command| HeartbeatReply { command }),
            })
        },
        span,
    )
    .await
}

/// The agent API's routes (`/v1/lookup`, `/v1/heartbeat/{node}`).
pub fn agent_routes(conductor: Arc<Conductor>) -> Router {
    Router::new()
        .route("/v1/lookup", get(lookup))
        .route("/v1/heartbeat/{node}", post(heartbeat))
        .route("/v1/config-images/{node}/{image}", get(config_image))
        .route("/v1/agent-isos/{node}/{image}", get(per_host_iso))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_AGENT_BODY))
        .with_state(conductor)
}

/// A node name as one path segment.
pub use metal3_agent_protocol::path_segment as escape;

/// The admin API over HTTP. At most [`HttpConductor::MAX_IN_FLIGHT`] requests are in
/// flight at once, so thousands of hosts reconciled at once share a few connections.
#[derive(Debug, Clone)]
pub struct HttpConductor {
    base: String,
    http: reqwest::Client,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl HttpConductor {
    /// Requests in flight at once.
    pub const MAX_IN_FLIGHT: usize = 64;

    /// How long one request may take (the change feed's long poll asks for its own): a
    /// conductor that takes a request and never answers must not hold its caller.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

    /// A client for the conductor at `base` (`http://127.0.0.1:6385`), without
    /// credentials, trusting the system's CAs.
    pub fn new(base: &str) -> HttpConductor {
        HttpConductor {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Self::REQUEST_TIMEOUT)
                .build()
                .unwrap_or_default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(Self::MAX_IN_FLIGHT)),
        }
    }

    /// A client for the conductor at `base` (`https://conductor:6385`) that trusts the
    /// CA certificates of `ca_pem` (PEM; none: the system's) and sends `credentials`
    /// (HTTP basic auth) with every request. The password goes only into the
    /// `Authorization` header, marked sensitive.
    pub fn with_security(
        base: &str,
        ca_pem: Option<&[u8]>,
        credentials: Option<&Credentials>,
    ) -> Result<HttpConductor, String> {
        let mut builder = reqwest::Client::builder().timeout(Self::REQUEST_TIMEOUT);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the conductor's CA bundle: {e}"))?;
            if certs.is_empty() {
                return Err("the conductor's CA bundle has no certificate".into());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(c) = credentials {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.username(),
                c.password().expose()
            ));
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| "the conductor credentials cannot go into a header".to_string())?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        Ok(HttpConductor {
            base: base.trim_end_matches('/').to_string(),
            http: builder
                .build()
                .map_err(|e| format!("the conductor client: {e}"))?,
            in_flight: Arc::new(tokio::sync::Semaphore::new(Self::MAX_IN_FLIGHT)),
        })
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, ApiError> {
        let _permit = self.in_flight.acquire().await;
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("{} unreachable: {e}", self.base)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ApiError::Unavailable(format!(
                "{} refused the request: authentication required (no or wrong credentials)",
                self.base
            )));
        }
        if status.is_success() {
            return response
                .json::<T>()
                .await
                .map(Some)
                .map_err(|e| ApiError::Unavailable(format!("answer of {}: {e}", self.base)));
        }
        let message = response
            .json::<ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(ApiError::from_status(status.as_u16(), message))
    }

    async fn view(&self, request: reqwest::RequestBuilder) -> Result<NodeView, ApiError> {
        self.answer::<NodeView>(request)
            .await?
            .ok_or_else(|| ApiError::Unavailable("an empty answer".into()))
    }

    fn node_url(&self, name: &str, rest: &str) -> String {
        format!("{}/v1/nodes/{}{rest}", self.base, escape(name))
    }
}

#[async_trait]
impl ConductorApi for HttpConductor {
    async fn create_node(&self, spec: NodeSpec) -> Result<NodeView, ApiError> {
        let body = CreateNode::from_spec(spec);
        self.view(
            self.http
                .post(format!("{}/v1/nodes", self.base))
                .json(&body),
        )
        .await
    }

    async fn node(&self, name: &str) -> Result<NodeView, ApiError> {
        self.view(self.http.get(self.node_url(name, ""))).await
    }

    async fn inventory(&self, name: &str) -> Result<HardwareInventory, ApiError> {
        self.answer::<HardwareInventory>(self.http.get(self.node_url(name, "/inventory")))
            .await?
            .ok_or_else(|| ApiError::Unavailable("an empty answer".into()))
    }

    async fn changes(&self, since: u64, timeout: Duration) -> Result<Changes, ApiError> {
        // Not counted against the in-flight limit: a long poll holds its place for long.
        let url = format!(
            "{}/v1/changes?since={since}&timeout_ms={}",
            self.base,
            timeout.min(MAX_WAIT).as_millis()
        );
        let response = self
            .http
            .get(url)
            .timeout(timeout.min(MAX_WAIT) + Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("{} unreachable: {e}", self.base)))?;
        if !response.status().is_success() {
            return Err(ApiError::from_status(
                response.status().as_u16(),
                format!("change feed: HTTP {}", response.status()),
            ));
        }
        response
            .json::<Changes>()
            .await
            .map_err(|e| ApiError::Unavailable(format!("change feed of {}: {e}", self.base)))
    }

    async fn delete_node(&self, name: &str) -> Result<(), ApiError> {
        self.answer::<serde_json::Value>(self.http.delete(self.node_url(name, "")))
            .await
            .map(|_| ())
    }

    async fn provision(
        &self,
        name: &str,
        verb: Verb,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        let mut request = self
            .http
            .put(self.node_url(name, "/states/provision"))
            .json(&ProvisionTarget::of(&verb));
        if let Some(id) = correlation {
            request = request.header(CORRELATION_HEADER, id);
        }
        self.view(request).await
    }

    async fn set_power(
        &self,
        name: &str,
        power: PowerRequest,
        correlation: Option<&str>,
    ) -> Result<NodeView, ApiError> {
        let mut request = self
            .http
            .put(self.node_url(name, "/states/power"))
            .json(&PowerTarget {
                target: power.target().to_string(),
            });
        if let Some(id) = correlation {
            request = request.header(CORRELATION_HEADER, id);
        }
        self.view(request).await
    }

    async fn history(&self, name: &str) -> Result<NodeHistory, ApiError> {
        self.answer::<NodeHistory>(self.http.get(self.node_url(name, "/history")))
            .await?
            .ok_or_else(|| ApiError::Unavailable("an empty answer".into()))
    }
}
