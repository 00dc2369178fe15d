//! The one error type of every BMC operation.

use std::fmt;
use std::time::Duration;

use crate::AddressError;

/// A message a BMC attached to its answer (Redfish `@Message.ExtendedInfo`, an IPMI
/// completion code, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcMessage {
    /// Machine-readable id, e.g. `Base.1.8.PropertyValueNotInList` or `IDRAC.2.8.SYS403`.
    pub id: String,
    /// Human-readable text as the BMC sent it.
    pub text: String,
}

impl fmt::Display for BmcMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.id.is_empty(), self.text.is_empty()) {
            (true, _) => f.write_str(&self.text),
            (false, true) => f.write_str(&self.id),
            (false, false) => write!(f, "{}: {}", self.id, self.text),
        }
    }
}

/// Formats BMC messages as `; `-separated text for error displays.
struct Messages<'a>(&'a [BmcMessage]);

impl fmt::Display for Messages<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

/// What went wrong talking to a BMC. [`BmcError::is_retryable`] tells whether trying the
/// same operation again later can help.
///
/// No variant ever carries a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BmcError {
    /// The BMC could not be reached (connection refused, reset, DNS, TLS handshake).
    #[error("BMC {endpoint} unreachable: {reason}")]
    Unreachable {
        /// Where we tried to connect.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// The operation did not finish in time.
    #[error("{operation} timed out after {after:?}{}", detail_suffix(.detail))]
    Timeout {
        /// What was being done.
        operation: String,
        /// How long we waited.
        after: Duration,
        /// What the BMC last reported, if anything.
        detail: Option<String>,
    },
    /// The BMC refused the credentials. Never retried automatically: BMCs lock accounts
    /// after a few failed logins.
    #[error("authentication failed: {reason}")]
    AuthenticationFailed {
        /// The BMC's reason, if it gave one.
        reason: String,
    },
    /// The credentials are valid but lack the privilege for the operation.
    #[error("permission denied for {operation}: {reason}")]
    PermissionDenied {
        /// What was attempted.
        operation: String,
        /// The BMC's reason.
        reason: String,
    },
    /// A resource the operation needs does not exist on this BMC.
    #[error("not found: {resource}{}", messages_suffix(.messages))]
    NotFound {
        /// The missing resource (path, slot, system id).
        resource: String,
        /// What the BMC said, if it answered with messages (e.g.
        /// `Base.1.4.ResourceMissingAtURI`, `IDRAC.2.7.SYS403`).
        messages: Vec<BmcMessage>,
    },
    /// The driver or this BMC cannot do the operation at all.
    #[error("{operation} is not supported by {driver}")]
    Unsupported {
        /// The operation asked for.
        operation: String,
        /// The driver (and, where known, the BMC model).
        driver: String,
    },
    /// The BMC is busy or not ready (a job running, the lifecycle controller in use, HTTP
    /// 503); trying again later can succeed.
    #[error("BMC busy: {reason}{}", retry_after_suffix(.retry_after))]
    Busy {
        /// What the BMC said.
        reason: String,
        /// How long the BMC asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The BMC answered with something we could not understand.
    #[error("protocol error in {context}: {reason}")]
    Protocol {
        /// Which exchange failed (e.g. `GET /redfish/v1/Systems/1`, `RAKP 2`).
        context: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The BMC understood the request and refused it.
    #[error("BMC rejected {operation}{}: {}", status_suffix(.status), Messages(.messages))]
    Rejected {
        /// What was attempted.
        operation: String,
        /// The HTTP status or protocol completion code, if there was one.
        status: Option<u16>,
        /// The BMC's own message ids and texts (at least one).
        messages: Vec<BmcMessage>,
    },
    /// The BMC accepted a change but reading back shows it was not applied.
    #[error("{operation} not applied: expected {expected}, BMC reports {observed}")]
    NotApplied {
        /// The change made.
        operation: String,
        /// What we expected to read back.
        expected: String,
        /// What the BMC reports instead.
        observed: String,
    },
    /// The caller asked for something invalid (not the BMC's fault).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The BMC address could not be parsed.
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),
    /// No driver is registered for the address's scheme.
    #[error("no driver registered for scheme '{0}'")]
    NoDriver(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn retry_after_suffix(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (retry after {d:?})"))
        .unwrap_or_default()
}

fn messages_suffix(messages: &[BmcMessage]) -> String {
    if messages.is_empty() {
        String::new()
    } else {
        format!(" ({})", Messages(messages))
    }
}

fn status_suffix(status: &Option<u16>) -> String {
    status.map(|s| format!(" (status {s})")).unwrap_or_default()
}

impl BmcError {
    /// Whether the same operation may succeed if tried again later: unreachable, timeout,
    /// busy, and a change the BMC dropped. Authentication failures are never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BmcError::Unreachable { .. }
                | BmcError::Timeout { .. }
                | BmcError::Busy { .. }
                | BmcError::NotApplied { .. }
        )
    }

    /// How long the BMC asked us to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BmcError::Busy { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The BMC's own messages, if the error carries any.
    pub fn messages(&self) -> &[BmcMessage] {
        match self {
            BmcError::Rejected { messages, .. } | BmcError::NotFound { messages, .. } => messages,
            _ => &[],
        }
    }

    /// Shorthand for a [`BmcError::NotFound`] without BMC messages.
    pub fn not_found(resource: impl Into<String>) -> BmcError {
        BmcError::NotFound {
            resource: resource.into(),
            messages: Vec::new(),
        }
    }

    /// Shorthand for [`BmcError::Unsupported`].
    pub fn unsupported(operation: impl Into<String>, driver: impl Into<String>) -> BmcError {
        BmcError::Unsupported {
            operation: operation.into(),
            driver: driver.into(),
        }
    }
}

/// Result of a BMC operation.
pub type Result<T, E = BmcError> = std::result::Result<T, E>;
