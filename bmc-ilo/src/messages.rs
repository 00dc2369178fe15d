//! iLO message ids that need more than their text.

use bmc_core::BmcError;

/// What an iLO message id means for whoever sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The feature needs an iLO Advanced licence (`LicenseKeyRequired`).
    LicenceMissing,
    /// The host is in POST or a state where the change cannot be made yet
    /// (`UnableToModifyDuringSystemPOST`, `InvalidOperationForSystemState`); the client
    /// retries these, so one that reaches the caller outlasted the retries.
    NotReadyYet,
    /// The resource does not exist (`ResourceMissingAtURI`).
    NoSuchResource,
}

/// iLO message ids (the part after the registry prefix) and what they mean.
pub const KNOWN: &[(&str, Meaning)] = &[
    ("LicenseKeyRequired", Meaning::LicenceMissing),
    ("UnableToModifyDuringSystemPOST", Meaning::NotReadyYet),
    ("InvalidOperationForSystemState", Meaning::NotReadyYet),
    ("ResourceMissingAtURI", Meaning::NoSuchResource),
];

/// The meaning of a message id such as `iLO.2.14.UnableToModifyDuringSystemPOST`.
pub fn meaning(id: &str) -> Option<Meaning> {
    let short = id.rsplit('.').next().unwrap_or(id);
    KNOWN.iter().find(|(k, _)| *k == short).map(|(_, m)| *m)
}

/// Turns an error carrying a known iLO id into the error that says what to do: a missing
/// licence is `Unsupported`, a host still in POST `Busy`. Others pass through.
pub fn explain(error: BmcError, operation: &str) -> BmcError {
    let Some(meaning) = error.messages().iter().find_map(|m| meaning(&m.id)) else {
        return error;
    };
    let said = error
        .messages()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    match meaning {
        Meaning::LicenceMissing => BmcError::Unsupported {
            operation: operation.to_string(),
            driver: format!("this iLO without an iLO Advanced licence ({said})"),
        },
        Meaning::NotReadyYet => BmcError::Busy {
            reason: format!("the host is in POST; {operation} can be made after it ({said})"),
            retry_after: None,
        },
        Meaning::NoSuchResource => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmc_core::BmcMessage;

    #[test]
    fn licence_and_post_errors_say_what_to_do() {
        assert_eq!(
            meaning("iLO.2.14.LicenseKeyRequired"),
            Some(Meaning::LicenceMissing)
        );
        assert_eq!(
            meaning("Base.1.4.ResourceMissingAtURI"),
            Some(Meaning::NoSuchResource)
        );
        assert_eq!(meaning("iLO.0.10.ExtendedInfo"), None);
        let e = BmcError::Rejected {
            operation: "PATCH /redfish/v1/Systems/1".into(),
            status: Some(400),
            messages: vec![BmcMessage {
                id: "iLO.2.14.UnableToModifyDuringSystemPOST".into(),
                text: String::new(),
            }],
        };
        let e = explain(e, "the boot override");
        assert!(e.is_retryable(), "{e}");
        let e = BmcError::Rejected {
            operation: "POST x".into(),
            status: Some(400),
            messages: vec![BmcMessage {
                id: "iLO.2.14.LicenseKeyRequired".into(),
                text: String::new(),
            }],
        };
        assert!(matches!(
            explain(e, "virtual media"),
            BmcError::Unsupported { .. }
        ));
    }
}
