//! The conductor as a service, assembled in one place for every caller (the `conductor`
//! binary, the demo, tests): the conductor with its timeout task, the admin API and the
//! agent API each served on a listener of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use bmc_core::Registry;

use crate::conductor::{Conductor, ConductorConfig};
use crate::http::{admin_routes, agent_routes};

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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            admin_listen: "127.0.0.1:6385".into(),
            agent_listen: "127.0.0.1:6386".into(),
            conductor: ConductorConfig::default(),
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
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

async fn bind(addr: &str, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what}: {e}"))
}

impl Service {
    /// Binds both APIs and starts serving them.
    pub async fn start(config: ServiceConfig, registry: Registry) -> Result<Service, String> {
        let admin = bind(&config.admin_listen, "admin API").await?;
        let agent = bind(&config.agent_listen, "agent API").await?;
        let local = |l: &tokio::net::TcpListener| {
            l.local_addr().map_err(|e| format!("no local address: {e}"))
        };
        let (admin_addr, agent_addr) = (local(&admin)?, local(&agent)?);
        let conductor = Conductor::new(config.conductor, registry);
        let admin_server = {
            let routes = admin_routes(conductor.clone());
            tokio::spawn(async move { axum::serve(admin, routes).await })
        };
        let agent_server = {
            let routes = agent_routes(conductor.clone());
            tokio::spawn(async move { axum::serve(agent, routes).await })
        };
        Ok(Service {
            conductor,
            admin_addr,
            agent_addr,
            servers: vec![admin_server, agent_server],
        })
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// The agent API's base URL.
    pub fn agent_url(&self) -> String {
        format!("http://{}", self.agent_addr)
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
