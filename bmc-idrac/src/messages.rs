//! iDRAC message ids that need more than their text: what they mean for the caller, and
//! the error they become.

use bmc_core::{BmcError, BmcMessage};

/// What an iDRAC message id means for whoever sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The feature needs an iDRAC licence this BMC does not have (`LIC501`, …).
    LicenceMissing,
    /// A pending configuration job blocks the change until the host reboots or the job
    /// queue is cleared (`LC068`).
    PendingConfiguration,
    /// A job is running; try again when it is done (`RAC0679`).
    JobRunning,
    /// The iDRAC is not ready yet (`SYS518`); the client retries it.
    NotReady,
    /// Every session slot is taken (`RAC0218`): sessions leak somewhere.
    TooManySessions,
    /// Virtual media is detached or in use by another client (`VRM0021`).
    VirtualMediaInUse,
    /// The resource does not exist (`SYS403`).
    NoSuchResource,
}

/// iDRAC message ids (the part after the registry prefix) and what they mean.
pub const KNOWN: &[(&str, Meaning)] = &[
    ("LIC501", Meaning::LicenceMissing),
    ("LIC502", Meaning::LicenceMissing),
    ("LC068", Meaning::PendingConfiguration),
    ("RAC0679", Meaning::JobRunning),
    ("SYS518", Meaning::NotReady),
    ("RAC0218", Meaning::TooManySessions),
    ("VRM0021", Meaning::VirtualMediaInUse),
    ("SYS403", Meaning::NoSuchResource),
];

/// The meaning of a message id such as `IDRAC.2.7.LIC501`, if it is one of [`KNOWN`].
pub fn meaning(id: &str) -> Option<Meaning> {
    let short = id.rsplit('.').next().unwrap_or(id);
    KNOWN.iter().find(|(k, _)| *k == short).map(|(_, m)| *m)
}

/// The first known meaning among an error's messages.
pub fn meaning_of(error: &BmcError) -> Option<Meaning> {
    error.messages().iter().find_map(|m| meaning(&m.id))
}

fn joined(messages: &[BmcMessage]) -> String {
    messages
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Turns an error whose messages carry a known iDRAC id into the error that says what
/// to do: a missing licence is `Unsupported`, a blocking or running job and a full
/// session table are `Busy`. Other errors pass through unchanged.
pub fn explain(error: BmcError, operation: &str) -> BmcError {
    let Some(meaning) = meaning_of(&error) else {
        return error;
    };
    let said = joined(error.messages());
    match meaning {
        Meaning::LicenceMissing => BmcError::Unsupported {
            operation: operation.to_string(),
            driver: format!("this iDRAC without the licence the feature needs ({said})"),
        },
        Meaning::PendingConfiguration => BmcError::Busy {
            reason: format!(
                "a pending configuration job blocks {operation}; reboot the host to run it \
                 or clear the job queue ({said})"
            ),
            retry_after: None,
        },
        Meaning::JobRunning => BmcError::Busy {
            reason: format!("a job is running on the iDRAC ({said})"),
            retry_after: Some(std::time::Duration::from_secs(15)),
        },
        Meaning::TooManySessions => BmcError::Busy {
            reason: format!(
                "the iDRAC has no free session; another client leaks sessions ({said})"
            ),
            retry_after: None,
        },
        Meaning::NotReady | Meaning::VirtualMediaInUse | Meaning::NoSuchResource => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_matched_without_their_registry_prefix() {
        assert_eq!(meaning("IDRAC.2.7.LIC501"), Some(Meaning::LicenceMissing));
        assert_eq!(
            meaning("IDRAC.2.9.LC068"),
            Some(Meaning::PendingConfiguration)
        );
        assert_eq!(meaning("LC068"), Some(Meaning::PendingConfiguration));
        assert_eq!(meaning("Base.1.8.GeneralError"), None);
        assert_eq!(meaning(""), None);
    }

    #[test]
    fn a_licence_error_becomes_unsupported_and_a_running_job_busy() {
        let e = BmcError::Rejected {
            operation: "POST x".into(),
            status: Some(400),
            messages: vec![BmcMessage {
                id: "IDRAC.2.7.LIC501".into(),
                text: "A required license is missing or expired.".into(),
            }],
        };
        let e = explain(e, "virtual-CD boot");
        assert!(matches!(e, BmcError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("IDRAC.2.7.LIC501"));
        let e = BmcError::Rejected {
            operation: "POST x".into(),
            status: Some(400),
            messages: vec![BmcMessage {
                id: "IDRAC.2.7.RAC0679".into(),
                text: "job running".into(),
            }],
        };
        let e = explain(e, "virtual-CD boot");
        assert!(e.is_retryable());
        let plain = BmcError::not_found("/x");
        assert!(matches!(explain(plain, "y"), BmcError::NotFound { .. }));
    }
}
