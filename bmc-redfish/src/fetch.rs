//! How the pure readers (discovery, inventory) read resources: one `GET` as JSON behind a
//! trait of their own, so they run over the HTTP client, a recorded tree in tests, or
//! anything else that can answer a path.

use async_trait::async_trait;
use serde_json::Value;

use bmc_core::BmcError;

/// The service root's path.
pub const SERVICE_ROOT: &str = "/redfish/v1";

/// Reads a resource. The HTTP client implements it; tests implement it over fixture trees.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// `GET path`, parsed as JSON.
    async fn get_json(&self, path: &str) -> Result<Value, BmcError>;
}
