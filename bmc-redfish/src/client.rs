//! The Redfish HTTP client: one concurrency limit per BMC (connections pooled per BMC in
//! an HTTP client shared by BMCs with the same TLS settings),
//! sessions with a basic-auth fallback, retries that are safe for BMCs, ETag handling and
//! task monitors.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ETAG, HeaderMap, HeaderValue, IF_MATCH, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use bmc_core::observe::BmcCall;
use bmc_core::{BmcError, BmcMessage, ConnectOptions, Credentials};

use crate::fetch::{Fetch, SERVICE_ROOT};
use crate::model::{ErrorBody, ServiceRoot, Task};
use crate::path::request_path;
use crate::quirks::QuirkSet;

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// A session when the BMC has a SessionService, basic auth otherwise (the default).
    #[default]
    Auto,
    /// Sessions only.
    Session,
    /// Basic auth on every request.
    Basic,
}

/// Retry policy for requests that are safe to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First delay; doubles per attempt.
    pub initial_delay: Duration,
    /// Longest delay, also the cap on a BMC's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Client settings beyond [`ConnectOptions`].
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Connection options (timeouts, TLS, concurrency).
    pub connect: ConnectOptions,
    /// Authentication mode.
    pub auth: AuthMode,
    /// Retries.
    pub retry: RetryPolicy,
}

#[derive(Clone)]
enum Auth {
    /// Not logged in yet.
    None,
    /// A session: token and the session's URI (to delete it).
    Session { token: String, uri: Option<String> },
    /// Basic auth on every request.
    Basic,
}

/// A response: status, ETag header and parsed body (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `ETag` header, if any.
    pub etag: Option<String>,
    /// `Location` header, if any.
    pub location: Option<String>,
    /// The body as JSON; `Null` when empty or not JSON.
    pub body: Value,
}

/// A Redfish client for one BMC.
pub struct RedfishClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    settings: ClientSettings,
    limit: Arc<Semaphore>,
    auth: Mutex<Auth>,
    /// The service root read while logging in, handed to the first reader (discovery) so
    /// it is not fetched twice.
    root: std::sync::Mutex<Option<Value>>,
    /// Message ids that mean "not ready yet" ([`QuirkSet::not_ready`]): the only case
    /// where a write is retried.
    not_ready: std::sync::RwLock<Vec<&'static str>>,
    requests: AtomicU64,
}

impl fmt::Debug for RedfishClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishClient")
            .field("base", &self.base)
            .field("user", &self.credentials.username())
            .finish()
    }
}

fn unreachable(base: &str, e: &reqwest::Error) -> BmcError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    BmcError::Unreachable {
        endpoint: base.to_string(),
        reason,
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What makes two BMCs' HTTP clients differ: the TLS trust and the timeouts. Everything
/// else (credentials, sessions, concurrency) is per request or per [`RedfishClient`].
#[derive(Clone, PartialEq, Eq, Hash)]
struct HttpClientKey {
    verify_tls: bool,
    extra_ca_certs_pem: Vec<Vec<u8>>,
    request_timeout: Duration,
    max_idle_per_host: usize,
}

/// One `reqwest::Client` per distinct [`HttpClientKey`], shared by every BMC that uses it.
///
/// Building a client loads the system's CA store (milliseconds of CPU and a few hundred
/// KiB each): a conductor of 10,000 BMCs would spend most of its start-up doing that. The
/// pool inside is keyed by host and port, so BMCs sharing a client never share a
/// connection.
fn shared_http_client(opts: &ConnectOptions) -> Result<reqwest::Client, BmcError> {
    static CLIENTS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<HttpClientKey, reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let key = HttpClientKey {
        verify_tls: opts.verify_tls,
        extra_ca_certs_pem: opts.extra_ca_certs_pem.clone(),
        request_timeout: opts.request_timeout,
        max_idle_per_host: opts.max_concurrent_requests,
    };
    let clients = CLIENTS.get_or_init(Default::default);
    let mut clients = bmc_core::sync::lock(clients);
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    let mut builder = reqwest::Client::builder()
        .timeout(opts.request_timeout)
        .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(opts.max_concurrent_requests)
        .danger_accept_invalid_certs(!opts.verify_tls)
        .redirect(reqwest::redirect::Policy::none());
    for pem in &opts.extra_ca_certs_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
            BmcError::InvalidRequest(format!("extra CA certificate is not valid PEM: {e}"))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| BmcError::InvalidRequest(e.to_string()))?;
    clients.insert(key, client.clone());
    Ok(client)
}

impl RedfishClient {
    /// A client for the Redfish service at `base` (e.g. `https://10.0.0.5`). Nothing is
    /// sent until the first request.
    pub fn new(
        base: &str,
        credentials: Credentials,
        settings: ClientSettings,
    ) -> Result<RedfishClient, BmcError> {
        let http = shared_http_client(&settings.connect)?;
        Ok(RedfishClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            credentials,
            limit: Arc::new(Semaphore::new(
                settings.connect.max_concurrent_requests.max(1),
            )),
            settings,
            auth: Mutex::new(Auth::None),
            root: std::sync::Mutex::new(None),
            not_ready: std::sync::RwLock::new(QuirkSet::default().not_ready),
            requests: AtomicU64::new(0),
        })
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Takes the "not ready" message ids of the BMC's quirk set (writes answered with
    /// one of them are retried).
    pub fn set_quirks(&self, quirks: &QuirkSet) {
        if let Ok(mut n) = self.not_ready.write() {
            n.clone_from(&quirks.not_ready);
        }
    }

    /// Whether a BMC's error body says "not ready yet".
    fn says_not_ready(&self, body: &Value) -> bool {
        let text = body.to_string();
        self.not_ready
            .read()
            .map(|n| n.iter().any(|id| text.contains(id)))
            .unwrap_or(false)
    }

    /// HTTP requests sent so far (logins included).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// One HTTP exchange, no retries, no re-login.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        auth: &Auth,
    ) -> Result<(StatusCode, HeaderMap, Value), BmcError> {
        let _permit = self
            .limit
            .acquire()
            .await
            .map_err(|_| BmcError::InvalidRequest("client closed".to_string()))?;
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .header("OData-Version", "4.0")
            .header("Accept", "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(tag) = if_match {
            req = req.header(IF_MATCH, tag);
        }
        req = match auth {
            Auth::Session { token, .. } => req.header("X-Auth-Token", token),
            Auth::Basic => req.basic_auth(
                self.credentials.username(),
                Some(self.credentials.password().expose()),
            ),
            Auth::None => req,
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let observed = |status: Option<StatusCode>, failure: Option<&str>| {
            self.settings.connect.observer.observe(&BmcCall {
                protocol: "redfish",
                method: method_name(&method),
                target: path_only(path),
                status: status.map(|s| s.as_u16()),
                latency: started.elapsed(),
                failure,
            })
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                let error = if e.is_timeout() {
                    BmcError::Timeout {
                        operation: format!("{method} {path}"),
                        after: started.elapsed(),
                        detail: None,
                    }
                } else {
                    unreachable(&self.base, &e)
                };
                observed(None, Some(&error.to_string()));
                return Err(error);
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let limit = self.settings.connect.max_response_bytes;
        let bytes = match read_bounded(resp, limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge(seen)) => {
                let error = BmcError::Protocol {
                    context: format!("{method} {}", path_only(path)),
                    reason: format!(
                        "the BMC's answer is larger than the limit of {limit} bytes ({seen}); \
                         not read"
                    ),
                };
                observed(Some(status), Some(&error.to_string()));
                return Err(error);
            }
            Err(BodyError::Read(e)) => {
                let error = if e.is_timeout() {
                    BmcError::Timeout {
                        operation: format!("{method} {path}"),
                        after: started.elapsed(),
                        detail: Some("reading the answer's body".into()),
                    }
                } else {
                    unreachable(&self.base, &e)
                };
                observed(Some(status), Some(&error.to_string()));
                return Err(error);
            }
        };
        observed(Some(status), None);
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        tracing::debug!(%method, path = path_only(path), status = status.as_u16(), latency_ms = started.elapsed().as_millis() as u64, "redfish request");
        Ok((status, headers, body))
    }

    /// Logs in: a session through the SessionService, or basic auth when the BMC has
    /// none. A rejected login is never retried (BMCs lock accounts).
    pub async fn login(&self) -> Result<(), BmcError> {
        let mut auth = self.auth.lock().await;
        *auth = self.create_auth().await?;
        Ok(())
    }

    async fn create_auth(&self) -> Result<Auth, BmcError> {
        if self.settings.auth == AuthMode::Basic {
            return Ok(Auth::Basic);
        }
        let (status, _, root_json) = self
            .send(Method::GET, SERVICE_ROOT, None, None, &Auth::None)
            .await?;
        let root = status
            .is_success()
            .then(|| ServiceRoot::from_json(&root_json).ok())
            .flatten();
        if root.is_some() {
            if let Ok(mut cached) = self.root.lock() {
                *cached = Some(root_json.clone());
            }
        }
        if let Some(root) = &root {
            if root.sessions.is_none() && root.session_service.is_none() {
                // The service advertises no sessions (sushy-emulator, some lab BMCs).
                return match self.settings.auth {
                    AuthMode::Session => {
                        Err(BmcError::unsupported("sessions", "this Redfish service"))
                    }
                    _ => Ok(Auth::Basic),
                };
            }
        }
        let sessions = root
            .and_then(|r| r.sessions)
            .unwrap_or_else(|| format!("{SERVICE_ROOT}/SessionService/Sessions"));
        let body = json!({
            "UserName": self.credentials.username(),
            "Password": self.credentials.password().expose(),
        });
        let (status, headers, resp) = self
            .send(Method::POST, &sessions, Some(&body), None, &Auth::None)
            .await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(BmcError::AuthenticationFailed {
                reason: error_text(status, &resp),
            });
        }
        let token = headers
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (status.is_success(), token) {
            (true, Some(token)) => {
                let uri = headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(request_path)
                    .or_else(|| crate::json::own_id(&resp));
                Ok(Auth::Session { token, uri })
            }
            _ if self.settings.auth == AuthMode::Session => Err(BmcError::Protocol {
                context: format!("POST {sessions}"),
                reason: format!("no session created (status {})", status.as_u16()),
            }),
            // No session service (or no token): basic auth, as sushy's `auto` does.
            _ => Ok(Auth::Basic),
        }
    }

    /// Sends a request with authentication, one re-login on 401, retries where safe and
    /// task-monitor following for 202. Returns the final response or a typed error.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Response, BmcError> {
        let deadline = Instant::now() + self.settings.connect.operation_timeout;
        let policy = self.settings.retry;
        let idempotent = method == Method::GET;
        let mut attempt = 0;
        let mut relogged = false;
        loop {
            attempt += 1;
            let auth = {
                let mut guard = self.auth.lock().await;
                if matches!(*guard, Auth::None) {
                    *guard = self.create_auth().await?;
                }
                guard.clone()
            };
            let result = self.send(method.clone(), path, body, if_match, &auth).await;
            let delay = match result {
                Ok((status, headers, resp)) => {
                    if status == StatusCode::UNAUTHORIZED {
                        if matches!(auth, Auth::Session { .. }) && !relogged {
                            // The session expired or was dropped: log in again once.
                            relogged = true;
                            *self.auth.lock().await = Auth::None;
                            attempt -= 1;
                            continue;
                        }
                        return Err(BmcError::AuthenticationFailed {
                            reason: error_text(status, &resp),
                        });
                    }
                    let retryable = status.is_server_error()
                        && (idempotent || self.says_not_ready(&resp))
                        || status == StatusCode::SERVICE_UNAVAILABLE
                        || (status == StatusCode::BAD_REQUEST
                            && !idempotent
                            && self.says_not_ready(&resp));
                    if !retryable || attempt >= policy.attempts {
                        return self
                            .finish(&method, path, status, &headers, resp, deadline)
                            .await;
                    }
                    retry_after(&headers)
                }
                Err(e) => {
                    // Connection failures: reads are retried; writes only when the
                    // request cannot have reached the BMC.
                    let safe = idempotent
                        || matches!(&e, BmcError::Unreachable { reason, .. } if reason.contains("connect"));
                    if !safe || attempt >= policy.attempts {
                        return Err(e);
                    }
                    None
                }
            };
            let backoff = policy.initial_delay * 2u32.saturating_pow(attempt - 1);
            let wait = delay.unwrap_or(backoff).min(policy.max_delay);
            if Instant::now() + wait > deadline {
                return Err(BmcError::Timeout {
                    operation: format!("{method} {path}"),
                    after: self.settings.connect.operation_timeout,
                    detail: Some("retries exhausted the operation deadline".to_string()),
                });
            }
            tracing::debug!(%method, path, attempt, ?wait, "retrying redfish request");
            tokio::time::sleep(wait).await;
        }
    }

    async fn finish(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: Value,
        deadline: Instant,
    ) -> Result<Response, BmcError> {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        if status == StatusCode::ACCEPTED && *method != Method::GET {
            if let Some(monitor) = header(LOCATION).and_then(|l| request_path(&l)) {
                return self.follow_task(method, path, &monitor, deadline).await;
            }
        }
        // A 2xx whose body is a Redfish error object is the error it carries, not the
        // resource (seen on BMCs that answer a missing resource with 200).
        if status.is_success() && body.get("error").is_some_and(Value::is_object) {
            let messages = ErrorBody::from_json(&body)
                .map(|e| e.all_messages())
                .unwrap_or_default();
            let missing = messages.iter().any(|m| {
                m.id.contains("ResourceMissingAtURI") || m.id.contains("ResourceNotFound")
            });
            return Err(if missing {
                BmcError::NotFound {
                    resource: path.to_string(),
                    messages,
                }
            } else {
                BmcError::Rejected {
                    operation: format!("{method} {path}"),
                    status: Some(status.as_u16()),
                    messages,
                }
            });
        }
        if status.is_success() {
            return Ok(Response {
                status: status.as_u16(),
                etag: header(ETAG),
                location: header(LOCATION),
                body,
            });
        }
        let operation = format!("{method} {path}");
        let messages = ErrorBody::from_json(&body)
            .map(|e| e.all_messages())
            .unwrap_or_default();
        Err(match status {
            StatusCode::FORBIDDEN => BmcError::PermissionDenied {
                operation,
                reason: error_text(status, &body),
            },
            StatusCode::NOT_FOUND => BmcError::NotFound {
                resource: path.to_string(),
                messages,
            },
            StatusCode::SERVICE_UNAVAILABLE => BmcError::Busy {
                reason: error_text(status, &body),
                retry_after: retry_after(headers),
            },
            _ => BmcError::Rejected {
                operation,
                status: Some(status.as_u16()),
                messages: if messages.is_empty() {
                    vec![BmcMessage {
                        id: String::new(),
                        text: status.canonical_reason().unwrap_or("error").to_string(),
                    }]
                } else {
                    messages
                },
            },
        })
    }

    /// Polls a task monitor until the task is done or the deadline passes.
    async fn follow_task(
        &self,
        method: &Method,
        path: &str,
        monitor: &str,
        deadline: Instant,
    ) -> Result<Response, BmcError> {
        loop {
            let auth = self.auth.lock().await.clone();
            let (status, headers, body) =
                self.send(Method::GET, monitor, None, None, &auth).await?;
            let task = Task::from_json(&body).unwrap_or_default();
            let still_running = status == StatusCode::ACCEPTED
                || (status.is_success() && task.state.is_some() && !task.is_finished());
            if !still_running {
                if status.is_success() && (task.state.is_none() || task.succeeded()) {
                    return Ok(Response {
                        status: status.as_u16(),
                        etag: None,
                        location: Some(monitor.to_string()),
                        body,
                    });
                }
                return Err(BmcError::Rejected {
                    operation: format!("{method} {path} (task {monitor})"),
                    status: Some(status.as_u16()),
                    messages: if task.messages.is_empty() {
                        vec![BmcMessage {
                            id: task.state.unwrap_or_default(),
                            text: error_text(status, &body),
                        }]
                    } else {
                        task.messages
                    },
                });
            }
            let wait = retry_after(&headers)
                .unwrap_or(Duration::from_secs(1))
                .min(self.settings.retry.max_delay);
            if Instant::now() + wait > deadline {
                return Err(BmcError::Timeout {
                    operation: format!("{method} {path}"),
                    after: self.settings.connect.operation_timeout,
                    detail: Some(format!(
                        "task {monitor} still {}",
                        task.state.as_deref().unwrap_or("running")
                    )),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Response, BmcError> {
        self.request(Method::GET, path, None, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Response, BmcError> {
        self.request(Method::POST, path, Some(body), None).await
    }

    /// `PATCH path` with `If-Match: etag` when given; on 412 the weak/strong/no-ETag
    /// ladder is tried.
    pub async fn patch(
        &self,
        path: &str,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Response, BmcError> {
        let mut ladder: Vec<Option<String>> = Vec::new();
        if let Some(tag) = etag.filter(|t| !t.trim().is_empty()) {
            ladder.push(Some(tag.to_string()));
            if let Some(strong) = tag.strip_prefix("W/") {
                ladder.push(Some(strong.to_string()));
            }
        }
        ladder.push(None);
        let mut last = None;
        for tag in ladder {
            match self
                .request(Method::PATCH, path, Some(body), tag.as_deref())
                .await
            {
                Err(BmcError::Rejected {
                    status: Some(412), ..
                }) if tag.is_some() => {
                    last = Some(tag);
                    continue;
                }
                other => return other,
            }
        }
        Err(BmcError::Rejected {
            operation: format!("PATCH {path}"),
            status: Some(412),
            messages: vec![BmcMessage {
                id: String::new(),
                text: format!("precondition failed with every ETag form (last {last:?})"),
            }],
        })
    }

    /// Deletes the session, if one is open. Later requests log in again.
    pub async fn close(&self) -> Result<(), BmcError> {
        let previous = std::mem::replace(&mut *self.auth.lock().await, Auth::None);
        if let Auth::Session {
            token,
            uri: Some(uri),
        } = &previous
        {
            let auth = Auth::Session {
                token: token.clone(),
                uri: None,
            };
            let (status, _, body) = self.send(Method::DELETE, uri, None, None, &auth).await?;
            // 401/404: the session had already expired or been dropped; it is gone either way.
            let gone = status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED;
            if !status.is_success() && !gone {
                return Err(BmcError::Rejected {
                    operation: format!("DELETE {uri}"),
                    status: Some(status.as_u16()),
                    messages: vec![BmcMessage {
                        id: String::new(),
                        text: error_text(status, &body),
                    }],
                });
            }
        }
        Ok(())
    }
}

impl Drop for RedfishClient {
    /// A session left open counts against the BMC's session limit (iDRAC answers 503
    /// `RAC0218` when full): delete it in the background if a runtime is there.
    fn drop(&mut self) {
        let auth = std::mem::replace(self.auth.get_mut(), Auth::None);
        if let (
            Auth::Session {
                token,
                uri: Some(uri),
            },
            Ok(handle),
        ) = (auth, tokio::runtime::Handle::try_current())
        {
            let url = self.url(&uri);
            let http = self.http.clone();
            handle.spawn(async move {
                let _ = http.delete(url).header("X-Auth-Token", token).send().await;
            });
        }
    }
}

#[async_trait::async_trait]
impl Fetch for RedfishClient {
    async fn get_json(&self, path: &str) -> Result<Value, BmcError> {
        if crate::path::same(path, SERVICE_ROOT) {
            if let Some(root) = self.root.lock().ok().and_then(|mut r| r.take()) {
                return Ok(root);
            }
        }
        Ok(self.get(path).await?.body)
    }
}

/// The BMC's message for an error response, or the status text.
fn error_text(status: StatusCode, body: &Value) -> String {
    ErrorBody::from_json(body)
        .map(|e| {
            e.all_messages()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            )
        })
}

/// The path of a request target, without scheme, host or query: what a history may keep.
fn path_only(target: &str) -> &str {
    let rest = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("http://"))
        .map(|r| r.find('/').map_or("/", |i| &r[i..]))
        .unwrap_or(target);
    rest.split(['?', '#']).next().unwrap_or(rest)
}

/// The request's method as a static name for observers (`OTHER` for extension methods,
/// which this client never sends).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// Why an answer's body was not read.
enum BodyError {
    /// Larger than the limit: how much was announced or seen.
    TooLarge(String),
    /// The connection failed or timed out.
    Read(reqwest::Error),
}

/// Reads an answer's body chunk by chunk, up to `limit` bytes: a `Content-Length` above
/// it is refused before any of the body is read, and a body that grows past it (chunked,
/// endless) is dropped as soon as it does. The request timeout bounds a slow body.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(announced) = resp.content_length() {
        if announced > limit as u64 {
            return Err(BodyError::TooLarge(format!("{announced} bytes announced")));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(format!(
                "more than {} bytes sent",
                body.len() + chunk.len()
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
