//! The fallback ladders of requests that BMCs accept in different shapes, with no I/O: the
//! driver sends the first rung and, on a refusal, asks the ladder for the next one.
//!
//! - `InsertMedia`: the plain body (`Image` only: Supermicro refuses the optional
//!   `Inserted`/`WriteProtected`), then with `TransferProtocolType` when the BMC asks for
//!   it, then with `TransferMethod` (some firmware requires both).
//! - The boot override `PATCH`: the boot mode is sent back as the BMC reports it when the
//!   caller names none (Supermicro falls back to its default mode otherwise); a `428`
//!   answer means "send `If-Match`": read the ETag and send it again.

use serde_json::{Value, json};

use bmc_core::{BmcError, BootDevice, BootMode, BootOverride, BootPersistence};

use crate::vocabulary::boot_target;

/// Rungs of the `InsertMedia` ladder at most (the plain body and two additions).
pub const INSERT_RUNGS: usize = 3;

/// The first `InsertMedia` body: the image only.
pub fn insert_media_body(image_url: &str) -> Value {
    json!({ "Image": image_url })
}

/// The next `InsertMedia` body after `body` was refused with `error_text`, or `None` when
/// the refusal names nothing the ladder can add.
pub fn next_insert_media_body(body: &Value, error_text: &str) -> Option<Value> {
    let mut next = body.clone();
    if error_text.contains("TransferProtocolType") && body.get("TransferProtocolType").is_none() {
        let url = body
            .get("Image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let protocol = if url.starts_with("https") {
            "HTTPS"
        } else {
            "HTTP"
        };
        next["TransferProtocolType"] = json!(protocol);
        return Some(next);
    }
    if error_text.contains("TransferMethod") && body.get("TransferMethod").is_none() {
        next["TransferMethod"] = json!("Stream");
        return Some(next);
    }
    None
}

/// The body that inserts media into a slot without an `InsertMedia` action (Lenovo XCC,
/// the DMTF mockup): a `PATCH` of the slot.
pub fn insert_media_patch(image_url: &str) -> Value {
    json!({"Image": image_url, "Inserted": true, "WriteProtected": true})
}

/// The body that ejects media from a slot without an `EjectMedia` action.
pub fn eject_media_patch() -> Value {
    json!({"Image": null, "Inserted": false})
}

/// Why a boot override cannot be sent as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootPatchError {
    /// The BMC lists its allowed targets and this is not one of them.
    TargetNotAllowed {
        /// The target asked for.
        target: String,
        /// What the BMC allows.
        allowed: Vec<String>,
    },
}

/// The `PATCH` body of a boot override: target, persistence, and the mode asked for or,
/// when none is, the one the BMC reports (`current_mode`).
pub fn boot_patch(
    boot: &BootOverride,
    allowed_targets: &[String],
    current_mode: Option<&str>,
) -> Result<Value, BootPatchError> {
    let mut target = boot_target(&boot.device);
    let allowed = |t: &str| allowed_targets.is_empty() || allowed_targets.iter().any(|a| a == t);
    // A BMC that offers the virtual CD only as `UsbCd` boots it by that name.
    if boot.device == BootDevice::Cd && !allowed(target) && allowed("UsbCd") {
        target = "UsbCd";
    }
    if !allowed(target) {
        return Err(BootPatchError::TargetNotAllowed {
            target: target.to_string(),
            allowed: allowed_targets.to_vec(),
        });
    }
    let mut body = json!({
        "BootSourceOverrideTarget": target,
        "BootSourceOverrideEnabled": match boot.persistence {
            BootPersistence::Once => "Once",
            BootPersistence::Persistent => "Continuous",
        },
    });
    match boot.mode {
        Some(mode) => {
            body["BootSourceOverrideMode"] = json!(match mode {
                BootMode::Uefi => "UEFI",
                BootMode::Legacy => "Legacy",
            });
        }
        None => {
            if let Some(current) = current_mode {
                body["BootSourceOverrideMode"] = json!(current);
            }
        }
    }
    Ok(json!({ "Boot": body }))
}

/// Whether a refused write is to be sent again with the resource's ETag in `If-Match`
/// (`428 Precondition Required`).
pub fn wants_if_match(error: &BmcError) -> bool {
    matches!(
        error,
        BmcError::Rejected {
            status: Some(428),
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmc_core::BootDevice;

    #[test]
    fn the_insert_ladder_adds_what_the_bmc_names_once_each_then_stops() {
        let first = insert_media_body("https://10.0.0.1/agent.iso");
        assert_eq!(first, json!({"Image": "https://10.0.0.1/agent.iso"}));
        // As Supermicro X13 words it.
        let refusal = "Base.1.12.PropertyMissing: The property TransferProtocolType is a \
                       required property and must be included in the request.";
        let second = next_insert_media_body(&first, refusal).unwrap_or_default();
        assert_eq!(second["TransferProtocolType"], "HTTPS");
        let third =
            next_insert_media_body(&second, "TransferMethod is required").unwrap_or_default();
        assert_eq!(third["TransferMethod"], "Stream");
        assert_eq!(next_insert_media_body(&third, refusal), None);
        assert_eq!(next_insert_media_body(&first, "Internal error"), None);
        let http = next_insert_media_body(&insert_media_body("http://x/a.iso"), refusal)
            .unwrap_or_default();
        assert_eq!(http["TransferProtocolType"], "HTTP");
    }

    #[test]
    fn a_boot_patch_sends_the_current_mode_back_unless_one_is_asked() {
        let once_cd = BootOverride::once(BootDevice::Cd);
        let body = boot_patch(&once_cd, &[], Some("UEFI")).unwrap_or_default();
        assert_eq!(
            body,
            json!({"Boot": {"BootSourceOverrideTarget": "Cd",
                "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}})
        );
        let legacy = once_cd.clone().with_mode(BootMode::Legacy);
        let body = boot_patch(&legacy, &[], Some("UEFI")).unwrap_or_default();
        assert_eq!(body["Boot"]["BootSourceOverrideMode"], "Legacy");
        let no_mode = boot_patch(&once_cd, &[], None).unwrap_or_default();
        assert!(no_mode["Boot"].get("BootSourceOverrideMode").is_none());
        let allowed = vec!["Pxe".to_string(), "Hdd".to_string()];
        assert_eq!(
            boot_patch(&once_cd, &allowed, None),
            Err(BootPatchError::TargetNotAllowed {
                target: "Cd".into(),
                allowed
            })
        );
    }

    #[test]
    fn only_a_428_asks_for_if_match() {
        let rejected = |status| BmcError::Rejected {
            status: Some(status),
            messages: Vec::new(),
            operation: "PATCH /redfish/v1/Systems/1".into(),
        };
        assert!(wants_if_match(&rejected(428)));
        assert!(!wants_if_match(&rejected(412)));
        assert!(!wants_if_match(&rejected(400)));
    }
}
