//! The conductor as a service, assembled in one place for every caller (the `conductor`
//! binary, the demo, tests): the conductor with its timeout task and its node store, the
//! admin API (HTTP basic auth from an htpasswd file, TLS) and the agent API (TLS) each
//! served on a listener of its own.
//!
//! Without authentication the admin API listens on loopback only, whatever address it
//! was given: it takes BMC credentials and powers servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bmc_core::Registry;

use crate::auth::BasicAuth;
use crate::conductor::{Conductor, ConductorConfig};
use crate::http::{admin_routes, agent_routes};
use crate::persist::{NodeStore, SealingKey, default_key_path};

/// Every driver of the crate family: Redfish (with the Dell and HPE hooks), iDRAC, iLO
/// and IPMI.
pub fn drivers() -> Registry {
    let mut registry = Registry::new();
    bmc_redfish::register(&mut registry);
    bmc_idrac::register(&mut registry);
    bmc_ilo::register(&mut registry);
    bmc_ipmi::register(&mut registry);
    registry
}

/// Where the service listens and how its conductor runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The admin API's address (`127.0.0.1:6385`; port 0 picks a free one).
    pub admin_listen: String,
    /// The agent API's address (`127.0.0.1:6386`).
    pub agent_listen: String,
    /// The conductor.
    pub conductor: ConductorConfig,
    /// The node store's file; `None` keeps nodes in memory only (lost with the process).
    pub state: Option<PathBuf>,
    /// The key file that seals the store's BMC passwords (created when missing);
    /// `None` means `<state>.key`.
    pub state_key: Option<PathBuf>,
    /// The htpasswd file (bcrypt) of the admin API's users; `None`: no authentication,
    /// and the admin API on loopback only.
    pub admin_htpasswd: Option<PathBuf>,
    /// The admin API's TLS certificate and key; `None`: plain HTTP.
    pub admin_tls: Option<TlsFiles>,
    /// The agent API's TLS certificate and key (its CA goes into the agents'
    /// configuration); `None`: plain HTTP.
    pub agent_tls: Option<TlsFiles>,
}

/// A TLS identity as PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            admin_listen: "127.0.0.1:6385".into(),
            agent_listen: "127.0.0.1:6386".into(),
            conductor: ConductorConfig::default(),
            state: None,
            state_key: None,
            admin_htpasswd: None,
            admin_tls: None,
            agent_tls: None,
        }
    }
}

/// A running conductor service; its servers stop when it is dropped.
#[derive(Debug)]
pub struct Service {
    /// The conductor (for callers in the same process).
    pub conductor: Arc<Conductor>,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Where the agent API listens.
    pub agent_addr: SocketAddr,
    admin_scheme: &'static str,
    agent_scheme: &'static str,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: axum::Router,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    match tls {
        Some(config) => tokio::spawn(crate::tls::serve(listener, config, routes)),
        None => tokio::spawn(async move { axum::serve(listener, routes).await }),
    }
}

async fn bind(addr: &str, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what}: {e}"))
}

impl Service {
    /// Binds both APIs and starts serving them.
    pub async fn start(config: ServiceConfig, registry: Registry) -> Result<Service, String> {
        let local = |l: &tokio::net::TcpListener| {
            l.local_addr().map_err(|e| format!("no local address: {e}"))
        };
        let auth = match &config.admin_htpasswd {
            Some(path) => Some(Arc::new(BasicAuth::from_file(path)?)),
            None => None,
        };
        let admin_tls = match &config.admin_tls {
            Some(t) => Some(crate::tls::server_config(&t.cert, &t.key)?),
            None => None,
        };
        let agent_tls = match &config.agent_tls {
            Some(t) => Some(crate::tls::server_config(&t.cert, &t.key)?),
            None => None,
        };
        let mut admin = bind(&config.admin_listen, "admin API").await?;
        if auth.is_none() && !local(&admin)?.ip().is_loopback() {
            let port = local(&admin)?.port();
            drop(admin);
            admin = bind(&format!("127.0.0.1:{port}"), "admin API").await?;
            tracing::warn!(
                asked = %config.admin_listen,
                listening = %local(&admin)?,
                "the admin API has no authentication (no htpasswd file): it listens on loopback only"
            );
        }
        let agent = bind(&config.agent_listen, "agent API").await?;
        let (admin_addr, agent_addr) = (local(&admin)?, local(&agent)?);
        let mut config = config;
        if let Some(images) = &mut config.conductor.agent_config_images {
            if let Some(path) = &images.agent_iso_file {
                // Refused now rather than found missing at a host's boot.
                crate::agent_iso::SharedIso::open(path)?;
            }
            // No URL given: the agent API as bound (for hosts on the same network).
            if images.agent_api_url.is_empty() {
                let scheme = if agent_tls.is_some() { "https" } else { "http" };
                images.agent_api_url = format!("{scheme}://{agent_addr}");
            }
        }
        let conductor = match &config.state {
            None => Conductor::new(config.conductor, registry),
            Some(path) => {
                let key_path = config
                    .state_key
                    .clone()
                    .unwrap_or_else(|| default_key_path(path));
                let key = SealingKey::load_or_create(&key_path).map_err(|e| e.to_string())?;
                let store = NodeStore::open(path, key).map_err(|e| e.to_string())?;
                Conductor::open(config.conductor, registry, store).map_err(|e| e.to_string())?
            }
        };
        let mut admin_routes = admin_routes(conductor.clone());
        if let Some(auth) = auth {
            admin_routes = admin_routes.layer(axum::middleware::from_fn_with_state(
                auth,
                crate::auth::require,
            ));
        }
        let (admin_scheme, agent_scheme) = (
            if admin_tls.is_some() { "https" } else { "http" },
            if agent_tls.is_some() { "https" } else { "http" },
        );
        let admin_server = serve(admin, admin_tls, admin_routes);
        let agent_server = serve(agent, agent_tls, agent_routes(conductor.clone()));
        Ok(Service {
            conductor,
            admin_addr,
            agent_addr,
            admin_scheme,
            agent_scheme,
            servers: vec![admin_server, agent_server],
        })
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("{}://{}", self.admin_scheme, self.admin_addr)
    }

    /// The agent API's base URL.
    pub fn agent_url(&self) -> String {
        format!("{}://{}", self.agent_scheme, self.agent_addr)
    }

    /// Serves until `shutdown` completes or one of the APIs stops.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let mut servers = std::mem::take(&mut self.servers).into_iter();
        let (Some(mut admin), Some(mut agent)) = (servers.next(), servers.next()) else {
            return Err("the conductor's APIs are not running".into());
        };
        let stopped = |what: &str, r: Result<std::io::Result<()>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => format!("the {what} stopped"),
            Ok(Err(e)) => format!("the {what} failed: {e}"),
            Err(e) => format!("the {what} failed: {e}"),
        };
        let result = tokio::select! {
            r = &mut admin => Err(stopped("admin API", r)),
            r = &mut agent => Err(stopped("agent API", r)),
            () = shutdown => Ok(()),
        };
        admin.abort();
        agent.abort();
        result
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}
