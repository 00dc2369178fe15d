//! The simulated Redfish BMC: serves a tree with working power, boot override, virtual
//! media and sessions, and injects faults on request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::tree::{Resources, builtin, key, load_shared, replicate_system};
use crate::vendor::{BootSource, DellBoot, SimVendor, boot, parse_dell_import};

/// How to run a simulated Redfish BMC.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// A recorded tree (`shared/fixtures/redfish/<tree>`), or `None` for the built-in one.
    pub tree: Option<PathBuf>,
    /// Systems behind the one port (the tree's system is copied as `<path>-2`, …).
    pub systems: usize,
    /// How long a power change takes to show.
    pub power_delay: Duration,
    /// Probability that a request is answered 503 (after the first login).
    pub fault_rate: f64,
    /// Extra latency per request.
    pub latency: Duration,
    /// Require these credentials (sessions or basic auth); `None` = no authentication.
    pub credentials: Option<(String, String)>,
    /// Session lifetime.
    pub session_timeout: Duration,
    /// Seed of the fault generator (runs are reproducible).
    pub seed: u64,
    /// Port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Called after each boot of a simulated host, outside the simulator's locks (so it
    /// may call back into the simulator); it should return quickly and spawn longer work.
    pub on_boot: Option<BootHook>,
    /// Resources to replace in the tree before serving (`Value::Null` removes one): older
    /// firmware, a missing action. Applied before the vendor is detected and the actions
    /// indexed.
    pub overrides: Vec<(String, Value)>,
    /// Answers every path whatever its case and trailing slash, and an action at any
    /// spelling of its target. Off by default: a real BMC answers at the URIs it
    /// advertised (a resource at the path it was recorded at or its own `@odata.id`, an
    /// action at its `target`, exactly), and a client that rewrites them fails there.
    pub lenient_paths: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tree: None,
            systems: 1,
            power_delay: Duration::ZERO,
            fault_rate: 0.0,
            latency: Duration::ZERO,
            credentials: None,
            session_timeout: Duration::from_secs(1800),
            seed: 1,
            port: 0,
            overrides: Vec::new(),
            on_boot: None,
            lenient_paths: false,
        }
    }
}

/// A boot of a simulated host: which system, what it booted, and its NICs' MAC addresses
/// (what an agent booted on it would see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    /// The system's path as the tree names it.
    pub system: String,
    /// What it booted.
    pub source: BootSource,
    /// MAC addresses of the system's Ethernet interfaces.
    pub macs: Vec<String>,
    /// What an agent booted on the host finds, from the tree: CPUs, memory, NICs, disks
    /// and system identity, in ironic-python-agent's inventory layout.
    pub hardware: Value,
    /// Every image inserted in a virtual-media slot the system sees (its own slots, then
    /// its managers'), the booted one included: what the booted host finds attached.
    pub media: Vec<AttachedMedia>,
}

/// An image inserted in a virtual-media slot at a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedMedia {
    /// The slot's path as the tree names it.
    pub slot: String,
    /// The slot's `MediaTypes`.
    pub media_types: Vec<String>,
    /// The image URL.
    pub image: String,
}

/// A function called on every boot ([`SimConfig::on_boot`]).
#[derive(Clone)]
pub struct BootHook(pub Arc<dyn Fn(BootEvent) + Send + Sync>);

impl std::fmt::Debug for BootHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootHook")
    }
}

/// A fault to inject into upcoming requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a Redfish error body.
    Status(u16),
    /// Answer 503 with `Retry-After: 0`.
    Busy,
    /// Wait this long before answering.
    Latency(Duration),
    /// Forget every session (clients get 401 and must log in again).
    ExpireSessions,
    /// Answer with a body that is not JSON.
    Garbage,
    /// Answer with this status and JSON body, whatever was asked: a BMC that sends an
    /// error object with 200, say.
    Answer {
        /// HTTP status.
        status: u16,
        /// The body.
        body: Value,
    },
    /// Start answering, then break the connection mid-body.
    Drop,
    /// Answer with this status and an error body carrying this message id and text (a
    /// vendor's "not ready" or job-conflict answer).
    Message {
        /// HTTP status.
        status: u16,
        /// The message id, e.g. `IDRAC.2.7.RAC0679`.
        id: String,
        /// The message text.
        text: String,
    },
}

#[derive(Debug, Clone)]
enum ActionKind {
    Reset,
    Insert,
    Eject,
    /// Dell `EID_674_Manager.ImportSystemConfiguration`.
    DellImport,
    /// Dell `DellLCService.GetRemoteServicesAPIStatus`.
    DellLcStatus,
    /// Dell `DellJobService.DeleteJobQueue`.
    DellDeleteJobQueue,
    /// HPE `HpeiLOVirtualMedia.InsertVirtualMedia`.
    HpeInsert,
    /// HPE `HpeiLOVirtualMedia.EjectVirtualMedia`.
    HpeEject,
    /// HPE `HpeComputerSystemExt.PowerButton`.
    HpePowerButton,
}

struct Session {
    uri: String,
    expires: Instant,
}

struct Inner {
    resources: Mutex<Resources>,
    actions: HashMap<String, (ActionKind, String)>,
    /// Action targets exactly as advertised (strict paths).
    action_targets: HashSet<String>,
    sessions: Mutex<HashMap<String, Session>>,
    pending_power: Mutex<HashMap<String, (String, Instant)>>,
    planned: Mutex<VecDeque<Fault>>,
    /// Faults for the next request whose path contains the pattern (lower case).
    planned_at: Mutex<Vec<(String, Fault)>>,
    rng: Mutex<u64>,
    requests: AtomicU64,
    /// Logins refused for wrong credentials (sessions and basic auth).
    refused_logins: AtomicU64,
    next_session: AtomicU64,
    vendor: SimVendor,
    /// Dell boots set by configuration import, per system.
    dell_boot: Mutex<HashMap<String, DellBoot>>,
    /// What each power-on booted, per system.
    boots: Mutex<HashMap<String, Vec<BootSource>>>,
    /// Dell jobs still running: job path → when it completes.
    running_jobs: Mutex<HashMap<String, Instant>>,
    next_job: AtomicU64,
    /// How many more lifecycle-controller status queries answer "not ready".
    lc_not_ready: AtomicU32,
    /// Boots not yet told to the boot hook.
    boot_events: Mutex<Vec<BootEvent>>,
    config: SimConfig,
}

use bmc_core::sync::lock;

/// A running simulator; stops when [`RedfishSim::stop`] is called or it is dropped.
pub struct RedfishSim {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Every action the tree advertises, by [`key`] of its target; and the targets exactly as
/// advertised.
fn index_actions(
    resources: &Resources,
) -> (HashMap<String, (ActionKind, String)>, HashSet<String>) {
    let mut out = HashMap::new();
    let mut exact = HashSet::new();
    for (path, v) in resources.iter() {
        let Some(actions) = v.get("Actions").and_then(Value::as_object) else {
            continue;
        };
        let oem = actions
            .get("Oem")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        let hpe = v["Oem"]["Hpe"]["Actions"].as_object().into_iter().flatten();
        for (name, a) in actions.iter().chain(oem).chain(hpe) {
            let kind = match name.as_str() {
                "#ComputerSystem.Reset" => ActionKind::Reset,
                "#VirtualMedia.InsertMedia" => ActionKind::Insert,
                "#VirtualMedia.EjectMedia" => ActionKind::Eject,
                n if n.ends_with("#OemManager.ImportSystemConfiguration") => ActionKind::DellImport,
                "#DellLCService.GetRemoteServicesAPIStatus" => ActionKind::DellLcStatus,
                "#DellJobService.DeleteJobQueue" => ActionKind::DellDeleteJobQueue,
                "#HpeiLOVirtualMedia.InsertVirtualMedia" => ActionKind::HpeInsert,
                "#HpeiLOVirtualMedia.EjectVirtualMedia" => ActionKind::HpeEject,
                "#HpeComputerSystemExt.PowerButton" => ActionKind::HpePowerButton,
                _ => continue,
            };
            if let Some(target) = a.get("target").and_then(Value::as_str) {
                out.insert(key(target), (kind, path.clone()));
                exact.insert(uri_path(target).to_string());
            }
        }
    }
    (out, exact)
}

/// The path of a URI as a tree writes it: no scheme, authority or fragment.
fn uri_path(uri: &str) -> &str {
    let path = match uri.find("://") {
        Some(i) => uri[i + 3..].find('/').map_or("/", |j| &uri[i + 3 + j..]),
        None => uri,
    };
    path.split(['#', '?']).next().unwrap_or_default()
}

fn etag_of(v: &Value) -> String {
    etag_of_text(&v.to_string())
}

/// The ETag of a serialized body (what [`etag_of`] gives for its JSON).
fn etag_of_text(body: &str) -> String {
    // FNV-1a over the serialized body: stable, cheap, changes with every write.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("W/\"{h:016x}\"")
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    let body = json!({"error": {
        "code": "Base.1.8.GeneralError",
        "message": "A general error has occurred. See ExtendedInfo for more information.",
        "@Message.ExtendedInfo": [{"MessageId": id, "Message": message, "Severity": "Critical"}]
    }});
    (
        status,
        [("Content-Type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A 503 with `Retry-After: 0`, as a BMC busy for a moment answers.
fn busy(message: &str) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Base.1.8.ServiceTemporarilyUnavailable",
        message,
    );
    r.headers_mut()
        .insert("Retry-After", HeaderValue::from_static("0"));
    r
}

/// The strings of a JSON array (other members skipped); empty when it is not an array.
fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl RedfishSim {
    /// Loads the tree and starts serving on 127.0.0.1.
    pub async fn start(config: SimConfig) -> std::io::Result<RedfishSim> {
        let base = match &config.tree {
            Some(dir) => load_shared(dir)?,
            None => Arc::new(builtin().into()),
        };
        let first_system = base
            .resources
            .get(&key("/redfish/v1/Systems"))
            .and_then(|c| c.get("Members"))
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .and_then(|m| m.get("@odata.id"))
            .and_then(Value::as_str)
            .map(|s| s.trim_end_matches('/').to_string());
        let base = match first_system {
            Some(system) if config.systems > 1 => {
                let mut copy = (*base).clone();
                replicate_system(&mut copy.resources, &system, config.systems);
                copy.linked = crate::tree::links_in(&copy.resources);
                Arc::new(copy)
            }
            _ => base,
        };
        let mut resources = Resources::new(base);
        for (path, value) in &config.overrides {
            if value.is_null() {
                resources.remove(&key(path));
            } else {
                resources.insert_at(path, value.clone());
            }
        }
        let (actions, action_targets) = index_actions(&resources);
        let vendor = SimVendor::detect(&resources);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            resources: Mutex::new(resources),
            actions,
            action_targets,
            sessions: Mutex::new(HashMap::new()),
            pending_power: Mutex::new(HashMap::new()),
            planned: Mutex::new(VecDeque::new()),
            planned_at: Mutex::new(Vec::new()),
            rng: Mutex::new(config.seed.max(1)),
            requests: AtomicU64::new(0),
            refused_logins: AtomicU64::new(0),
            next_session: AtomicU64::new(1),
            vendor,
            dell_boot: Mutex::new(HashMap::new()),
            boots: Mutex::new(HashMap::new()),
            running_jobs: Mutex::new(HashMap::new()),
            next_job: AtomicU64::new(1),
            lc_not_ready: AtomicU32::new(0),
            boot_events: Mutex::new(Vec::new()),
            config,
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "bmc-sim server stopped");
            }
        });
        Ok(RedfishSim {
            addr,
            inner,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Queues faults for the next requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.planned).extend(faults);
    }

    /// The current JSON of a resource (power transitions applied).
    pub fn resource(&self, path: &str) -> Option<Value> {
        settle_power(&self.inner, &key(path));
        lock(&self.inner.resources).get(&key(path)).cloned()
    }

    /// Queues a fault for the next request whose path contains `pattern` (compared in
    /// lower case), leaving other requests alone.
    pub fn inject_at(&self, pattern: &str, fault: Fault) {
        lock(&self.inner.planned_at).push((pattern.to_ascii_lowercase(), fault));
    }

    /// Replaces (or adds) a resource, to set up a case: a job in the queue, firmware
    /// without an action. Actions are indexed at start: a new action target is not served.
    pub fn put_resource(&self, path: &str, value: Value) {
        lock(&self.inner.resources).insert_at(path, value);
    }

    /// Whose firmware the simulator behaves like (detected from the tree).
    pub fn vendor(&self) -> SimVendor {
        self.inner.vendor
    }

    /// What each power-on of the system at `path` booted, oldest first.
    pub fn boots(&self, path: &str) -> Vec<BootSource> {
        lock(&self.inner.boots)
            .get(&key(path))
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the next `n` Dell lifecycle-controller status queries answer "not ready",
    /// as an iDRAC does for a while after a host reboot.
    pub fn lifecycle_controller_busy_for(&self, n: u32) {
        self.inner.lc_not_ready.store(n, Ordering::Relaxed);
    }

    /// Open sessions.
    pub fn sessions(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Logins refused so far for wrong credentials (session logins and basic-auth
    /// requests): what a real BMC counts towards locking the account.
    pub fn refused_logins(&self) -> u64 {
        self.inner.refused_logins.load(Ordering::Relaxed)
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RedfishSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Applies a finished power transition of the system at `path` (if any).
fn settle_power(inner: &Inner, path: &str) {
    let mut pending = lock(&inner.pending_power);
    if let Some((target, due)) = pending.get(path) {
        if Instant::now() >= *due {
            let target = target.clone();
            pending.remove(path);
            if let Some(system) = lock(&inner.resources).get_mut(path) {
                system["PowerState"] = json!(target);
            }
        }
    }
}

fn next_random(inner: &Inner) -> f64 {
    let mut s = lock(&inner.rng);
    // xorshift64*
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    let v = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (v >> 11) as f64 / (1u64 << 53) as f64
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some((user, pass)) = &inner.config.credentials else {
        return true;
    };
    if let Some(token) = headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) {
        let mut sessions = lock(&inner.sessions);
        return match sessions.get(token) {
            Some(s) if s.expires > Instant::now() => true,
            Some(_) => {
                sessions.remove(token);
                false
            }
            None => false,
        };
    }
    let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let good = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|pair| pair == format!("{user}:{pass}"));
    if !good {
        inner.refused_logins.fetch_add(1, Ordering::Relaxed);
    }
    good
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.requests.fetch_add(1, Ordering::Relaxed);
    let path = uri.path().to_string();
    let k = key(&path);
    if !inner.config.latency.is_zero() {
        tokio::time::sleep(inner.config.latency).await;
    }
    let targeted = {
        let mut at = lock(&inner.planned_at);
        at.iter()
            .position(|(pattern, _)| k.contains(pattern.as_str()))
            .map(|i| at.remove(i).1)
    };
    let planned = targeted.or_else(|| lock(&inner.planned).pop_front());
    match planned {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "Base.1.8.InternalError", "injected fault");
        }
        Some(Fault::Busy) => return busy("injected busy"),
        Some(Fault::Message { status, id, text }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, &id, &text);
        }
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::ExpireSessions) => lock(&inner.sessions).clear(),
        Some(Fault::Garbage) => return (StatusCode::OK, "{\"not json").into_response(),
        Some(Fault::Answer { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return (
                status,
                [("Content-Type", "application/json")],
                body.to_string(),
            )
                .into_response();
        }
        Some(Fault::Drop) => {
            // A body that fails: the server aborts the connection mid-response.
            let broken = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection drop",
                ))
            });
            return (StatusCode::OK, axum::body::Body::from_stream(broken)).into_response();
        }
        None => {}
    }
    let sessions_path = key("/redfish/v1/SessionService/Sessions");
    let reading = method == Method::GET || method == Method::HEAD;
    // What the specification lets anyone read, and the login.
    let public = (reading && STANDARD_URIS.contains(&k.as_str()))
        || (method == Method::POST
            && (k == sessions_path || k == format!("{sessions_path}/members")));
    if !public && inner.config.fault_rate > 0.0 && next_random(&inner) < inner.config.fault_rate {
        return busy("random fault");
    }
    if !public && !authorized(&inner, &headers) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "Base.1.8.NoValidSession",
            "no valid session or credentials",
        );
        r.headers_mut().insert(
            "WWW-Authenticate",
            HeaderValue::from_static("Basic realm=\"bmc-sim\""),
        );
        return r;
    }
    // A client may ask for an OData version the service does not speak.
    if headers
        .get("OData-Version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "4.0")
    {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "Base.1.8.PreconditionFailed",
            "only OData-Version 4.0 is supported",
        );
    }
    if let Some(refused) = refused_query(uri.query()) {
        return refused;
    }
    if !inner.config.lenient_paths
        && !STANDARD_URIS.contains(&k.as_str())
        && !advertised(&inner, &method, &path, &k)
    {
        return error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            &format!("{path} is not a URI this service advertises"),
        );
    }
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.MalformedJSON",
                    "the body is not JSON",
                );
            }
        }
    };
    let is_session = |k: &str| {
        k.starts_with(&format!("{sessions_path}/")) && k != format!("{sessions_path}/members")
    };
    let exists = STANDARD_URIS.contains(&k.as_str()) || lock(&inner.resources).get(&k).is_some();
    let not_allowed = match method {
        Method::GET | Method::HEAD => false,
        Method::PATCH => exists && !patchable(&inner, &k),
        Method::POST => {
            exists
                && k != sessions_path
                && !inner.actions.contains_key(&k)
                && !is_collection(&inner, &k)
        }
        Method::DELETE => exists && !is_session(&k),
        _ => true,
    };
    let mut response = if not_allowed {
        method_not_allowed(&inner, &k, &method)
    } else {
        match method {
            Method::GET | Method::HEAD => get(&inner, &k),
            Method::POST if k == sessions_path || k == format!("{sessions_path}/members") => {
                create_session(&inner, &json_body)
            }
            Method::POST if is_subscriptions(&inner, &k) => subscribe(&inner, &k, &json_body),
            Method::POST => post_action(&inner, &k, &json_body),
            Method::PATCH => patch(&inner, &k, &headers, &json_body),
            _ => delete(&inner, &k, &headers),
        }
    };
    // Every Redfish service says which OData version it speaks, and a read what else
    // the resource takes.
    let h = response.headers_mut();
    h.insert("OData-Version", HeaderValue::from_static("4.0"));
    h.insert("Cache-Control", HeaderValue::from_static("no-cache"));
    if reading && response.status().is_success() {
        if let Some(link) = described_by(&inner, &k) {
            response.headers_mut().insert("Link", link);
        }
        response
            .headers_mut()
            .insert("Allow", HeaderValue::from_static(allow_for(&inner, &k)));
    }
    if let Some(hook) = &inner.config.on_boot {
        let events = std::mem::take(&mut *lock(&inner.boot_events));
        for event in events {
            (hook.0)(event);
        }
    }
    response
}

/// Whether `path` (as requested) is a URI the service advertised for what is asked: a
/// resource at the path it was recorded at, at its own `@odata.id` or at a spelling the
/// tree links to it by, an action at its
/// `target`, a session at its `Location`, exactly (case and trailing slash). Requests for
/// what does not exist at all pass, to be answered as such.
fn advertised(inner: &Inner, method: &Method, path: &str, k: &str) -> bool {
    let decoded = percent_decoded(path);
    let is = |uri: &str| {
        let uri = uri_path(uri);
        uri == path || decoded.as_deref() == Some(uri)
    };
    if *method == Method::POST && !is_collection(inner, k) {
        return !inner.actions.contains_key(k)
            || inner.action_targets.contains(path)
            || decoded
                .as_deref()
                .is_some_and(|d| inner.action_targets.contains(d));
    }
    if *method == Method::DELETE {
        let sessions = lock(&inner.sessions);
        if let Some(s) = sessions.values().find(|s| key(&s.uri) == k) {
            return is(&s.uri);
        }
    }
    let resources = lock(&inner.resources);
    match resources.get(k) {
        None => true,
        Some(v) => {
            let own = v.get("@odata.id").and_then(Value::as_str);
            let recorded = resources.recorded_path(k);
            // A recording's folders cannot say whether the link had a trailing slash:
            // a resource that names no `@odata.id` of its own (an error body) is served
            // at its folder's path with or without one.
            let at_folder = |r: &str| match own {
                Some(_) => is(r),
                None => path.trim_end_matches('/') == r.trim_end_matches('/'),
            };
            (own.is_none() && recorded.is_none())
                || own.is_some_and(is)
                || recorded.is_some_and(at_folder)
                || resources.linked_paths(k).iter().any(|l| is(l))
        }
    }
}

/// 405 with the `Allow` header a BMC sends: what the resource at `k` takes.
fn method_not_allowed(inner: &Inner, k: &str, method: &Method) -> Response {
    let allow = allow_for(inner, k);
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Base.1.8.OperationNotAllowed",
        &format!("{method} is not allowed here"),
    );
    r.headers_mut()
        .insert("Allow", HeaderValue::from_static(allow));
    r
}

/// Query parameters the simulator does not carry out: an unknown `$` parameter is 501
/// (the specification's answer), `only` and `excerpt`, which take no value, with one are
/// 400. Other parameters are ignored, as a service that does not support them does.
fn refused_query(query: Option<&str>) -> Option<Response> {
    for pair in query?.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.starts_with('$') {
            return Some(error(
                StatusCode::NOT_IMPLEMENTED,
                "Base.1.8.QueryNotSupported",
                &format!("the query parameter {name} is not supported"),
            ));
        }
        if matches!(name, "only" | "excerpt") && !value.is_empty() {
            return Some(error(
                StatusCode::BAD_REQUEST,
                "Base.1.8.QueryParameterValueFormatError",
                &format!("the query parameter {name} takes no value"),
            ));
        }
    }
    None
}

/// `Link: <schema>; rel=describedby`: the JSON schema of the resource's type.
fn described_by(inner: &Inner, k: &str) -> Option<HeaderValue> {
    let resources = lock(&inner.resources);
    let t = resources.get(k)?.get("@odata.type")?.as_str()?;
    // `#ComputerSystem.v1_5_0.ComputerSystem` is described by `ComputerSystem.v1_5_0.json`.
    let (namespace, _) = t.trim_start_matches('#').rsplit_once('.')?;
    HeaderValue::from_str(&format!(
        "<http://redfish.dmtf.org/schemas/v1/{namespace}.json>; rel=describedby"
    ))
    .ok()
}

/// The methods the resource at `k` takes, as its `Allow` header says.
fn allow_for(inner: &Inner, k: &str) -> &'static str {
    if inner.actions.contains_key(k) {
        return "POST";
    }
    if k.ends_with("/sessions") && is_collection(inner, k) {
        return "GET, HEAD, POST";
    }
    if patchable(inner, k) {
        return "GET, HEAD, PATCH";
    }
    "GET, HEAD"
}

/// Whether a PATCH can change the resource at `k` (a system's boot override, a
/// virtual-media slot).
fn patchable(inner: &Inner, k: &str) -> bool {
    lock(&inner.resources)
        .get(k)
        .is_some_and(|v| v.get("Boot").is_some() || v.get("MediaTypes").is_some() || is_settable(v))
}

/// The URIs the specification defines for every service (lower case, as [`key`] makes
/// them): readable without authentication, at any spelling.
const STANDARD_URIS: [&str; 4] = [
    "/redfish",
    "/redfish/v1",
    "/redfish/v1/odata",
    "/redfish/v1/$metadata",
];

/// Whether the resource at `k` is a collection (a POST there creates a member).
fn is_collection(inner: &Inner, k: &str) -> bool {
    lock(&inner.resources)
        .get(k)
        .is_some_and(|v| v.get("Members").is_some())
}

/// `%XX` escapes decoded, when there are any and the result is UTF-8.
fn percent_decoded(path: &str) -> Option<String> {
    if !path.contains('%') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(path.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The status a recorded error body was sent with. The trees keep the bodies of the
/// BMC's error answers (a mockup serves them with 200); the simulator answers them as
/// the BMC did: missing resources 404, anything else 400.
fn recorded_error_status(v: &Value) -> Option<StatusCode> {
    let error = v.get("error")?.as_object()?;
    let text = Value::Object(error.clone()).to_string();
    Some(
        if text.contains("ResourceMissingAtURI") || text.contains("SYS403") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        },
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let body = body.to_string();
    let etag = etag_of_text(&body);
    (
        status,
        [
            ("Content-Type", "application/json".to_string()),
            ("ETag", etag),
        ],
        body,
    )
        .into_response()
}

/// `/redfish/v1/odata`: the service root and each of its top-level resources.
fn odata_service_document(resources: &Resources) -> Value {
    let mut value = vec![json!({"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"})];
    if let Some(root) = resources
        .get(&key("/redfish/v1"))
        .and_then(Value::as_object)
    {
        for (name, link) in root {
            if let Some(url) = link.get("@odata.id").and_then(Value::as_str) {
                value.push(json!({"name": name, "kind": "Singleton", "url": url}));
            }
        }
    }
    json!({"@odata.context": "/redfish/v1/$metadata", "value": value})
}

/// `/redfish/v1/$metadata`: a CSDL document referring to the DMTF schema of every
/// resource type in the tree, with the service's entity container.
fn metadata_document(resources: &Resources) -> String {
    use std::collections::{BTreeMap, BTreeSet};
    let mut namespaces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let namespace_of = |v: &Value| {
        // `#ComputerSystem.v1_5_0.ComputerSystem`: namespace `ComputerSystem.v1_5_0`.
        let t = v.get("@odata.type")?.as_str()?.trim_start_matches('#');
        Some(t.rsplit_once('.')?.0.to_string())
    };
    for (_, v) in resources.iter() {
        let Some(namespace) = namespace_of(v) else {
            continue;
        };
        let schema = namespace.split('.').next().unwrap_or_default().to_string();
        if !schema.is_empty() && schema.chars().all(|c| c.is_ascii_alphanumeric()) {
            let set = namespaces.entry(schema.clone()).or_default();
            set.insert(schema);
            set.insert(namespace);
        }
    }
    let root_namespace = resources
        .get(&key("/redfish/v1"))
        .and_then(namespace_of)
        .unwrap_or_else(|| "ServiceRoot.v1_0_0".to_string());
    namespaces
        .entry("ServiceRoot".into())
        .or_default()
        .insert(root_namespace.clone());
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <edmx:Edmx xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\" Version=\"4.0\">\n",
    );
    for (schema, includes) in &namespaces {
        xml.push_str(&format!(
            "  <edmx:Reference Uri=\"http://redfish.dmtf.org/schemas/v1/{schema}_v1.xml\">\n"
        ));
        for ns in includes {
            xml.push_str(&format!("    <edmx:Include Namespace=\"{ns}\"/>\n"));
        }
        xml.push_str("  </edmx:Reference>\n");
    }
    xml.push_str(&format!(
        "  <edmx:DataServices>\n    <Schema xmlns=\"http://docs.oasis-open.org/odata/ns/edm\" \
         Namespace=\"Service\">\n      <EntityContainer Name=\"Service\" \
         Extends=\"{root_namespace}.ServiceContainer\"/>\n    </Schema>\n  \
         </edmx:DataServices>\n</edmx:Edmx>\n"
    ));
    xml
}

/// Completes a running Dell job once its time has come.
fn settle_job(inner: &Inner, k: &str) {
    let mut jobs = lock(&inner.running_jobs);
    if jobs.get(k).is_some_and(|due| Instant::now() >= *due) {
        jobs.remove(k);
        if let Some(job) = lock(&inner.resources).get_mut(k) {
            if job["JobState"] == "Running" {
                job["JobState"] = json!("Completed");
                job["PercentComplete"] = json!(100);
                job["Message"] =
                    json!("Successfully imported and applied Server Configuration Profile.");
                job["MessageId"] = json!("SYS053");
            }
        }
    }
}

fn get(inner: &Inner, k: &str) -> Response {
    settle_power(inner, k);
    settle_job(inner, k);
    let resources = lock(&inner.resources);
    // The sessions collection lists the sessions open now.
    if k == key("/redfish/v1/SessionService/Sessions") {
        if let Some(collection) = resources.get(k) {
            let mut collection = collection.clone();
            let members: Vec<Value> = lock(&inner.sessions)
                .values()
                .map(|s| json!({"@odata.id": s.uri}))
                .collect();
            collection["Members@odata.count"] = json!(members.len());
            collection["Members"] = Value::Array(members);
            return json_response(StatusCode::OK, &collection);
        }
    }
    // A session open now is a resource of its own.
    if let Some((id, session)) = lock(&inner.sessions)
        .values()
        .find(|s| key(&s.uri) == k)
        .map(|s| {
            (
                s.uri.rsplit('/').next().unwrap_or_default().to_string(),
                s.uri.clone(),
            )
        })
    {
        return json_response(
            StatusCode::OK,
            &json!({"@odata.id": session, "@odata.type": "#Session.v1_0_0.Session",
                    "Id": id, "Name": "User Session", "UserName": inner.config.credentials.as_ref().map(|c| c.0.clone())}),
        );
    }
    if resources.get(k).is_none() {
        match k {
            "/redfish" => {
                return json_response(StatusCode::OK, &json!({"v1": "/redfish/v1/"}));
            }
            "/redfish/v1/odata" => {
                return json_response(StatusCode::OK, &odata_service_document(&resources));
            }
            "/redfish/v1/$metadata" => {
                return (
                    StatusCode::OK,
                    [("Content-Type", "application/xml")],
                    metadata_document(&resources),
                )
                    .into_response();
            }
            _ => {}
        }
    }
    match resources.get(k) {
        Some(v) if recorded_error_status(v).is_some() => (
            recorded_error_status(v).unwrap_or(StatusCode::BAD_REQUEST),
            [("Content-Type", "application/json")],
            v.to_string(),
        )
            .into_response(),
        Some(v) => {
            // Serialized once, for the body and its ETag.
            let body = v.to_string();
            let etag = etag_of_text(&body);
            (
                StatusCode::OK,
                [
                    ("Content-Type", "application/json".to_string()),
                    ("ETag", etag),
                ],
                body,
            )
                .into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            "no such resource",
        ),
    }
}

fn create_session(inner: &Inner, body: &Value) -> Response {
    let user = body
        .get("UserName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pass = body
        .get("Password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some((u, p)) = &inner.config.credentials {
        if user != u || pass != p {
            inner.refused_logins.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::UNAUTHORIZED,
                "Base.1.8.InsufficientPrivilege",
                "invalid credentials",
            );
        }
    }
    let n = inner.next_session.fetch_add(1, Ordering::Relaxed);
    let token = format!(
        "sim-token-{n:08x}-{:08x}",
        (next_random(inner) * f64::from(u32::MAX)) as u32
    );
    let uri = format!("/redfish/v1/SessionService/Sessions/{n}");
    lock(&inner.sessions).insert(
        token.clone(),
        Session {
            uri: uri.clone(),
            expires: Instant::now() + inner.config.session_timeout,
        },
    );
    (
        StatusCode::CREATED,
        [
            ("X-Auth-Token", token),
            ("Location", uri.clone()),
            ("Content-Type", "application/json".to_string()),
        ],
        json!({"@odata.id": uri, "@odata.type": "#Session.v1_0_0.Session",
               "Id": n.to_string(), "Name": "User Session", "UserName": user})
        .to_string(),
    )
        .into_response()
}

fn delete(inner: &Inner, k: &str, headers: &HeaderMap) -> Response {
    let mut sessions = lock(&inner.sessions);
    let token = sessions
        .iter()
        .find(|(_, s)| key(&s.uri) == k)
        .map(|(t, _)| t.clone());
    match token {
        Some(t) => {
            sessions.remove(&t);
            StatusCode::NO_CONTENT.into_response()
        }
        None if headers.contains_key("X-Auth-Token")
            && k.starts_with(&key("/redfish/v1/SessionService/Sessions/")) =>
        {
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            "no such session",
        ),
    }
}

fn allowable_reset_types(resources: &Resources, system: &Value) -> Vec<String> {
    let action = &system["Actions"]["#ComputerSystem.Reset"];
    let inline = str_list(&action["ResetType@Redfish.AllowableValues"]);
    if !inline.is_empty() {
        return inline;
    }
    action["@Redfish.ActionInfo"]
        .as_str()
        .and_then(|p| resources.get(&key(p)))
        .and_then(|info| info["Parameters"].as_array())
        .and_then(|ps| ps.iter().find(|p| p["Name"] == "ResetType"))
        .map(|p| str_list(&p["AllowableValues"]))
        .unwrap_or_default()
}

/// Whether `k` is the event service's subscriptions collection.
fn is_subscriptions(inner: &Inner, k: &str) -> bool {
    k.ends_with("/eventservice/subscriptions") && is_collection(inner, k)
}

/// Creates an event subscription (kept and listed; the simulator sends no events): a
/// `Destination` URI and the `Redfish` protocol are required, as the schema says.
fn subscribe(inner: &Inner, k: &str, body: &Value) -> Response {
    let destination = body.get("Destination").and_then(Value::as_str);
    let protocol = body.get("Protocol").and_then(Value::as_str);
    let Some(destination) = destination.filter(|d| d.contains("://")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Base.1.8.PropertyMissing",
            "Destination (a URI) is required",
        );
    };
    if protocol != Some("Redfish") {
        return error(
            StatusCode::BAD_REQUEST,
            "Base.1.8.PropertyValueNotInList",
            &format!("the value {protocol:?} for Protocol is not in the list of acceptable values"),
        );
    }
    let mut resources = lock(&inner.resources);
    let Some(collection) = resources.get(k).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            "no such collection",
        );
    };
    let base = collection
        .get("@odata.id")
        .and_then(Value::as_str)
        .unwrap_or("/redfish/v1/EventService/Subscriptions")
        .trim_end_matches('/')
        .to_string();
    let n = inner.next_job.fetch_add(1, Ordering::Relaxed);
    let uri = format!("{base}/sim-{n}");
    let subscription = json!({
        "@odata.id": uri, "@odata.type": "#EventDestination.v1_7_0.EventDestination",
        "Id": format!("sim-{n}"), "Name": "Event subscription",
        "Destination": destination, "Protocol": "Redfish",
        "Context": body.get("Context").cloned().unwrap_or(Value::Null),
        "EventTypes": body.get("EventTypes").cloned().unwrap_or(json!([]))
    });
    resources.insert_at(&uri, subscription.clone());
    if let Some(c) = resources.get_mut(k) {
        let members = c["Members"].as_array().cloned().unwrap_or_default();
        let mut members = members;
        members.push(json!({"@odata.id": uri}));
        c["Members@odata.count"] = json!(members.len());
        c["Members"] = Value::Array(members);
    }
    (
        StatusCode::CREATED,
        [
            ("Location", uri),
            ("Content-Type", "application/json".to_string()),
        ],
        subscription.to_string(),
    )
        .into_response()
}

fn post_action(inner: &Inner, k: &str, body: &Value) -> Response {
    let Some((kind, resource)) = inner.actions.get(k).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            "no such action",
        );
    };
    match kind {
        ActionKind::Reset => {
            settle_power(inner, &resource);
            let mut resources = lock(&inner.resources);
            let allowed = resources
                .get(&resource)
                .map(|s| allowable_reset_types(&resources, s))
                .unwrap_or_default();
            let Some(reset) = body.get("ResetType").and_then(Value::as_str) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.ActionParameterMissing",
                    "ResetType is required",
                );
            };
            if !allowed.is_empty() && !allowed.iter().any(|a| a == reset) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.ActionParameterValueNotInList",
                    &format!(
                        "The value {reset} for the parameter ResetType is not in the list of acceptable values"
                    ),
                );
            }
            let Some(system) = resources.get_mut(&resource) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "Base.1.8.ResourceMissingAtURI",
                    "no such system",
                );
            };
            let current = system["PowerState"].as_str().unwrap_or("Off").to_string();
            let target = match reset {
                "On" | "ForceOn" | "ForceRestart" | "GracefulRestart" | "PowerCycle" => "On",
                "ForceOff" | "GracefulShutdown" => "Off",
                "PushPowerButton" if current == "On" => "Off",
                "PushPowerButton" => "On",
                _ => return StatusCode::NO_CONTENT.into_response(),
            };
            let restarts = matches!(reset, "ForceRestart" | "GracefulRestart" | "PowerCycle");
            let boots = target == "On" && (current != "On" || restarts);
            set_power(inner, &mut resources, &resource, target, boots);
            StatusCode::NO_CONTENT.into_response()
        }
        ActionKind::HpePowerButton => {
            settle_power(inner, &resource);
            let mut resources = lock(&inner.resources);
            let current = resources
                .get(&resource)
                .and_then(|s| s["PowerState"].as_str())
                .unwrap_or("Off")
                .to_string();
            let target = match (
                body.get("PushType").and_then(Value::as_str),
                current.as_str(),
            ) {
                (Some("Press"), "On") | (Some("PressAndHold"), _) => "Off",
                (Some("Press"), _) => "On",
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "Base.1.4.ActionParameterValueNotInList",
                        "PushType must be Press or PressAndHold",
                    );
                }
            };
            let boots = target == "On" && current != "On";
            set_power(inner, &mut resources, &resource, target, boots);
            StatusCode::NO_CONTENT.into_response()
        }
        ActionKind::DellImport => dell_import(inner, &resource, body),
        ActionKind::DellLcStatus => {
            let busy = inner
                .lc_not_ready
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
            let status = if busy { "NotReady" } else { "Ready" };
            (
                StatusCode::OK,
                [("Content-Type", "application/json")],
                json!({
                    "@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.7.LC061", "Message": "Lifecycle Controller Remote Services is ready.", "Severity": "Informational"}],
                    "LCStatus": status, "RTStatus": status, "ServerStatus": "OutOfPOST", "Status": status
                })
                .to_string(),
            )
                .into_response()
        }
        ActionKind::DellDeleteJobQueue => {
            let mut resources = lock(&inner.resources);
            let jobs = key(&format!(
                "{}/Jobs",
                resource.trim_end_matches("/delljobservice")
            ));
            let members: Vec<String> = resources
                .get(&jobs)
                .and_then(|c| c["Members"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["@odata.id"].as_str().map(key))
                .collect();
            for m in &members {
                resources.remove(m);
            }
            if let Some(c) = resources.get_mut(&jobs) {
                c["Members"] = json!([]);
                c["Members@odata.count"] = json!(0);
            }
            lock(&inner.running_jobs).clear();
            (
                StatusCode::OK,
                [("Content-Type", "application/json")],
                json!({"@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.7.SUP020", "Message": "Successfully deleted the Job(s)."}]}).to_string(),
            )
                .into_response()
        }
        ActionKind::Insert | ActionKind::HpeInsert => insert_action(inner, &resource, body),
        ActionKind::HpeEject | ActionKind::Eject => {
            let mut resources = lock(&inner.resources);
            if let Some(slot) = resources.get_mut(&resource) {
                if inner.vendor == SimVendor::Hpe && slot["Inserted"] != json!(true) {
                    // iLO refuses to eject an empty slot.
                    return error(
                        StatusCode::BAD_REQUEST,
                        "iLO.2.14.UnableToEjectMedia",
                        "no media is inserted in this slot",
                    );
                }
                eject(slot);
            }
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// Sets a system's power (now, or after the configured delay) and records what it boots.
fn set_power(inner: &Inner, resources: &mut Resources, resource: &str, target: &str, boots: bool) {
    if boots {
        let mut dell = lock(&inner.dell_boot);
        let mut pending = dell.remove(resource);
        let source = boot(inner.vendor, resources, &mut pending, resource);
        if let Some(p) = pending {
            dell.insert(resource.to_string(), p);
        }
        if inner.config.on_boot.is_some() {
            let system = resources
                .get(resource)
                .and_then(|s| s["@odata.id"].as_str())
                .unwrap_or(resource)
                .to_string();
            lock(&inner.boot_events).push(BootEvent {
                system,
                source: source.clone(),
                macs: macs_of(resources, resource),
                hardware: hardware_of(resources, resource),
                media: crate::vendor::attached_media(resources, resource),
            });
        }
        lock(&inner.boots)
            .entry(resource.to_string())
            .or_default()
            .push(source);
    }
    let Some(system) = resources.get_mut(resource) else {
        return;
    };
    if inner.config.power_delay.is_zero() {
        system["PowerState"] = json!(target);
    } else {
        lock(&inner.pending_power).insert(
            resource.to_string(),
            (
                target.to_string(),
                Instant::now() + inner.config.power_delay,
            ),
        );
    }
}

/// The members of the collection linked from `v[link]`.
fn linked_members<'a>(resources: &'a Resources, v: &Value, link: &str) -> Vec<&'a Value> {
    v[link]["@odata.id"]
        .as_str()
        .and_then(|p| resources.get(&key(p)))
        .and_then(|c| c["Members"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m["@odata.id"].as_str())
        .filter_map(|p| resources.get(&key(p)))
        .collect()
}

/// The inventory an agent would report on this system, from the tree's resources.
fn hardware_of(resources: &Resources, system: &str) -> Value {
    let Some(s) = resources.get(system) else {
        return Value::Null;
    };
    let cpus: Vec<&Value> = linked_members(resources, s, "Processors")
        .into_iter()
        .filter(|p| p["ProcessorType"].as_str().is_none_or(|t| t == "CPU"))
        .filter(|p| p["Status"]["State"] != "Absent")
        .collect();
    let threads: u64 = cpus
        .iter()
        .map(|p| {
            p["TotalThreads"]
                .as_u64()
                .or(p["TotalCores"].as_u64())
                .unwrap_or(1)
        })
        .sum();
    let memory_mib = s["MemorySummary"]["TotalSystemMemoryGiB"]
        .as_f64()
        .map(|g| (g * 1024.0) as u64)
        .unwrap_or(0);
    let interfaces: Vec<Value> = linked_members(resources, s, "EthernetInterfaces")
        .into_iter()
        .map(|n| {
            json!({
                "name": n["Id"],
                "mac_address": n["MACAddress"].as_str().map(str::to_ascii_lowercase),
                "speed_mbps": n["SpeedMbps"],
            })
        })
        .collect();
    let mut disks = Vec::new();
    for storage in linked_members(resources, s, "Storage") {
        for d in storage["Drives"].as_array().into_iter().flatten() {
            if let Some(drive) = d["@odata.id"].as_str().and_then(|p| resources.get(&key(p))) {
                disks.push(json!({
                    "name": drive["Name"].as_str().or(drive["Id"].as_str()),
                    "model": drive["Model"],
                    "serial": drive["SerialNumber"],
                    "size": drive["CapacityBytes"],
                    "rotational": drive["MediaType"] == "HDD",
                }));
            }
        }
    }
    json!({
        "cpu": {
            "count": threads,
            "model_name": cpus.first().map(|p| p["Model"].clone()).unwrap_or(Value::Null),
            "architecture": cpus.first().map(|p| p["InstructionSet"].clone()).unwrap_or(Value::Null),
        },
        "memory": {"physical_mb": memory_mib},
        "interfaces": interfaces,
        "disks": disks,
        "system_vendor": {
            "manufacturer": s["Manufacturer"],
            "product_name": s["Model"],
            "serial_number": s["SerialNumber"],
        },
    })
}

/// The MAC addresses of a system's Ethernet interfaces, in member order.
fn macs_of(resources: &Resources, system: &str) -> Vec<String> {
    let nics = resources
        .get(system)
        .and_then(|s| s["EthernetInterfaces"]["@odata.id"].as_str())
        .and_then(|p| resources.get(&key(p)));
    nics.and_then(|c| c["Members"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m["@odata.id"].as_str())
        .filter_map(|p| resources.get(&key(p)))
        .filter_map(|n| {
            n["MACAddress"]
                .as_str()
                .or_else(|| n["PermanentMACAddress"].as_str())
        })
        .filter(|m| !m.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// `InsertMedia` (standard or HPE's OEM one): into an empty slot only.
fn insert_action(inner: &Inner, resource: &str, body: &Value) -> Response {
    let Some(image) = body.get("Image").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Base.1.8.ActionParameterMissing",
            "Image is required",
        );
    };
    let mut resources = lock(&inner.resources);
    let Some(slot) = resources.get_mut(resource) else {
        return error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            "no such slot",
        );
    };
    if slot["Inserted"] == json!(true) {
        return error(
            StatusCode::CONFLICT,
            "Base.1.8.ResourceInUse",
            "media is already inserted; eject it first",
        );
    }
    insert_into(
        slot,
        image,
        body.get("WriteProtected").and_then(Value::as_bool),
    );
    StatusCode::NO_CONTENT.into_response()
}

/// Dell's configuration import: the boot attributes become a pending boot for the
/// manager's system, answered 202 with a job that completes after the power delay.
fn dell_import(inner: &Inner, manager: &str, body: &Value) -> Response {
    let boot = match parse_dell_import(body) {
        Ok(b) => b,
        Err(reason) => {
            return error(
                StatusCode::BAD_REQUEST,
                "IDRAC.2.7.SYS041",
                &format!("Unable to import the configuration: {reason}"),
            );
        }
    };
    let mut resources = lock(&inner.resources);
    // The systems this manager manages (every system, on a replicated tree).
    let systems: Vec<String> = resources
        .get(&key("/redfish/v1/Systems"))
        .and_then(|c| c["Members"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["@odata.id"].as_str().map(key))
        .collect();
    for system in &systems {
        if let Some(s) = resources.get_mut(system) {
            s["Boot"]["BootSourceOverrideTarget"] = json!(match boot.device.as_str() {
                "VCD-DVD" => "Cd",
                "VFDD" => "Floppy",
                "PXE" => "Pxe",
                "HDD" => "Hdd",
                "BIOS" => "BiosSetup",
                _ => "None",
            });
            s["Boot"]["BootSourceOverrideEnabled"] =
                json!(if boot.once { "Once" } else { "Continuous" });
        }
        lock(&inner.dell_boot).insert(system.clone(), boot.clone());
    }
    let n = inner.next_job.fetch_add(1, Ordering::Relaxed);
    let id = format!("JID_{:012}", 900_000_000_000 + n);
    let jobs = format!("{manager}/oem/dell/jobs");
    let job_path = format!("{jobs}/{}", id.to_ascii_lowercase());
    let manager_uri = resources
        .get(manager)
        .and_then(|m| m["@odata.id"].as_str())
        .unwrap_or(manager)
        .trim_end_matches('/')
        .to_string();
    let job_uri = format!("{manager_uri}/Oem/Dell/Jobs/{id}");
    resources.insert(
        job_path.clone(),
        json!({
            "@odata.id": job_uri, "@odata.type": "#DellJob.v1_2_0.DellJob", "Id": id,
            "JobState": "Running", "JobType": "ImportConfiguration", "PercentComplete": 0,
            "Message": "Importing Server Configuration Profile.", "MessageId": "SYS057",
            "Name": "Import Configuration"
        }),
    );
    if let Some(c) = resources.get_mut(&jobs) {
        if let Some(members) = c["Members"].as_array_mut() {
            members.push(json!({"@odata.id": job_uri}));
            let count = members.len();
            c["Members@odata.count"] = json!(count);
        }
    }
    lock(&inner.running_jobs).insert(job_path, Instant::now() + inner.config.power_delay);
    (StatusCode::ACCEPTED, [("Location", job_uri)], String::new()).into_response()
}

fn insert_into(slot: &mut Value, image: &str, write_protected: Option<bool>) {
    slot["Image"] = json!(image);
    slot["ImageName"] = json!(image.rsplit('/').next().unwrap_or(image));
    slot["Inserted"] = json!(true);
    slot["ConnectedVia"] = json!("URI");
    slot["WriteProtected"] = json!(write_protected.unwrap_or(true));
}

fn eject(slot: &mut Value) {
    // An empty slot's image is null, as most BMCs (and the schema) say.
    slot["Image"] = Value::Null;
    slot["ImageName"] = Value::Null;
    slot["Inserted"] = json!(false);
    slot["ConnectedVia"] = json!("NotConnected");
}

fn patch(inner: &Inner, k: &str, headers: &HeaderMap, body: &Value) -> Response {
    let mut resources = lock(&inner.resources);
    let Some(resource) = resources.get_mut(k) else {
        return error(
            StatusCode::NOT_FOUND,
            "Base.1.8.ResourceMissingAtURI",
            "no such resource",
        );
    };
    if let Some(tag) = headers.get("If-Match").and_then(|v| v.to_str().ok()) {
        let current = etag_of(resource);
        let strong = current.trim_start_matches("W/");
        if tag != current && tag != strong && tag != "*" {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "Base.1.8.PreconditionFailed",
                "ETag does not match",
            );
        }
    }
    let is_system = resource.get("Boot").is_some() || resource.get("PowerState").is_some();
    let is_slot = resource.get("MediaTypes").is_some();
    if is_system {
        let Some(boot) = body.get("Boot").and_then(Value::as_object) else {
            return error(
                StatusCode::BAD_REQUEST,
                "Base.1.8.PropertyUnknown",
                "only Boot can be changed",
            );
        };
        let allowed =
            str_list(&resource["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]);
        if let Some(t) = boot.get("BootSourceOverrideTarget").and_then(Value::as_str) {
            if !allowed.is_empty() && !allowed.iter().any(|a| a == t) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyValueNotInList",
                    &format!(
                        "The value {t} for the property BootSourceOverrideTarget is not in the list of acceptable values"
                    ),
                );
            }
        }
        for (name, value) in boot {
            resource["Boot"][name] = value.clone();
        }
        // A standard boot change replaces a boot set by Dell's configuration import.
        lock(&inner.dell_boot).remove(k);
        return StatusCode::NO_CONTENT.into_response();
    }
    if is_slot {
        let boot_next = body["Oem"]["Hpe"]["BootOnNextServerReset"].as_bool();
        if let Some(flag) = boot_next {
            if resource["Oem"]["Hpe"].is_null() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyUnknown",
                    "Oem.Hpe is not a property of this slot",
                );
            }
            resource["Oem"]["Hpe"]["BootOnNextServerReset"] = json!(flag);
            if body.get("Image").is_none() && body.get("Inserted").is_none() {
                return StatusCode::NO_CONTENT.into_response();
            }
        }
        match (
            body.get("Inserted").and_then(Value::as_bool),
            body.get("Image"),
        ) {
            (Some(false), _) | (_, Some(Value::Null)) => eject(resource),
            (_, Some(Value::String(image))) => {
                let image = image.clone();
                insert_into(
                    resource,
                    &image,
                    body.get("WriteProtected").and_then(Value::as_bool),
                );
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Base.1.8.PropertyMissing",
                    "Image or Inserted is required",
                );
            }
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    if is_settable(resource) {
        let Some(changes) = body.as_object() else {
            return error(
                StatusCode::BAD_REQUEST,
                "Base.1.8.MalformedJSON",
                "the body is not an object",
            );
        };
        let mut changes = changes.clone();
        // A password is written, never read back.
        if is_account(resource) {
            changes.remove("Password");
        }
        let mut changed = resource.clone();
        if let Err(property) = merge_existing(&mut changed, &changes) {
            return error(
                StatusCode::BAD_REQUEST,
                "Base.1.8.PropertyNotWritable",
                &format!("the property {property} cannot be written"),
            );
        }
        *resource = changed;
        return StatusCode::NO_CONTENT.into_response();
    }
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Base.1.8.OperationNotAllowed",
        "this resource cannot be changed",
    )
}

/// What BMCs let clients change beyond boot and media: a manager's network protocol
/// settings (NTP servers and the like) and its accounts (iDRAC's fixed account slots are
/// filled by PATCH).
fn is_settable(v: &Value) -> bool {
    v.get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| {
            t.starts_with("#ManagerNetworkProtocol.") || t.starts_with("#ManagerAccount.")
        })
}

fn is_account(v: &Value) -> bool {
    v.get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("#ManagerAccount."))
}

/// Applies a PATCH to the properties the resource already has, with Redfish's array
/// rules: `null` removes an element, `{}` leaves it, a shorter array truncates. A property
/// the resource does not have, or an identity property, is refused (its name returned).
fn merge_existing(
    target: &mut Value,
    changes: &serde_json::Map<String, Value>,
) -> Result<(), String> {
    for (name, change) in changes {
        if name.starts_with('@')
            || name.contains("@odata")
            || matches!(name.as_str(), "Id" | "Name")
        {
            return Err(name.clone());
        }
        let Some(current) = target.get_mut(name) else {
            return Err(name.clone());
        };
        match (current, change) {
            (Value::Object(_), Value::Object(inner)) => {
                let mut sub = target[name].clone();
                merge_existing(&mut sub, inner).map_err(|p| format!("{name}/{p}"))?;
                target[name] = sub;
            }
            (Value::Array(items), Value::Array(new)) => {
                let mut out = Vec::new();
                for (i, element) in new.iter().enumerate() {
                    match element {
                        Value::Null => {}
                        Value::Object(o) if o.is_empty() => {
                            if let Some(old) = items.get(i) {
                                out.push(old.clone());
                            }
                        }
                        other => out.push(other.clone()),
                    }
                }
                *items = out;
            }
            (current, change) => *current = change.clone(),
        }
    }
    Ok(())
}
