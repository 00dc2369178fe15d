//! What a driver tells its caller about each exchange with the BMC, so that a conductor
//! can keep a per-host history and count requests without parsing logs.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use bmc_core::observe::{BmcCall, BmcCallObserver};
//! use bmc_core::ConnectOptions;
//!
//! #[derive(Default)]
//! struct Count(Mutex<Vec<String>>);
//! impl BmcCallObserver for Count {
//!     fn observe(&self, call: &BmcCall<'_>) {
//!         if let Ok(mut seen) = self.0.lock() {
//!             seen.push(format!("{} {} {:?}", call.method, call.target, call.status));
//!         }
//!     }
//! }
//! let count = Arc::new(Count::default());
//! let options = ConnectOptions::default().with_observer(count.clone());
//! assert!(options.observer.is_some());
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One exchange with a BMC: an HTTP request of a Redfish driver, an IPMI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BmcCall<'a> {
    /// The protocol: `redfish` or `ipmi`.
    pub protocol: &'static str,
    /// The HTTP method (`GET`, `PATCH`, ...) or, for IPMI, the command's name: static,
    /// so observers can keep and count it without copying.
    pub method: &'static str,
    /// What was addressed: the request path (never a query with secrets), or for IPMI the
    /// network function and command (`netfn 0x00 cmd 0x02`).
    pub target: &'a str,
    /// The answer's status: the HTTP status, or the IPMI completion code; `None` when no
    /// answer came (a timeout, a refused connection).
    pub status: Option<u16>,
    /// From sending to the whole answer read (or to the failure).
    pub latency: Duration,
    /// Why no answer came, when none did.
    pub failure: Option<&'a str>,
}

impl BmcCall<'_> {
    /// Whether the BMC answered with success (2xx, or IPMI completion code 0).
    pub fn succeeded(&self) -> bool {
        match (self.protocol, self.status) {
            ("ipmi", Some(code)) => code == 0,
            (_, Some(code)) => (200..300).contains(&code),
            (_, None) => false,
        }
    }
}

/// Told of every exchange a driver has with its BMC. Called on the driver's task, so it
/// must be quick and must not block (record and return).
pub trait BmcCallObserver: Send + Sync {
    /// One exchange finished.
    fn observe(&self, call: &BmcCall<'_>);
}

/// The observer a driver was given, if any; clones share it.
#[derive(Clone, Default)]
pub struct Observer(Option<Arc<dyn BmcCallObserver>>);

impl Observer {
    /// Wraps an observer.
    pub fn new(observer: Arc<dyn BmcCallObserver>) -> Observer {
        Observer(Some(observer))
    }

    /// Whether there is one.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// Tells the observer, if there is one.
    pub fn observe(&self, call: &BmcCall<'_>) {
        if let Some(o) = &self.0 {
            o.observe(call);
        }
    }
}

impl PartialEq for Observer {
    fn eq(&self, other: &Observer) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Observer {}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Observer(..)"
        } else {
            "None"
        })
    }
}
