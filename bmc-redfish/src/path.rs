//! Resource paths as BMCs write them, normalised: trailing slashes dropped, absolute URLs
//! reduced to their path, fragments removed. Comparison is case-insensitive, because some
//! BMCs link to `systems/1/bios` while serving `Systems/1/Bios`.

/// Normalises a resource path or URL; `None` if nothing usable remains.
pub fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // Absolute URL: keep from the first '/' after the authority.
    let path = match raw.find("://") {
        Some(i) => {
            let rest = &raw[i + 3..];
            &rest[rest.find('/')?..]
        }
        None => raw,
    };
    let path = path.split(['#', '?']).next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    if !path.starts_with('/') || path.is_empty() {
        return None;
    }
    Some(path.to_string())
}

/// The key under which two paths that name the same resource are equal.
pub fn identity(path: &str) -> String {
    normalize(path)
        .unwrap_or_else(|| path.to_string())
        .to_ascii_lowercase()
}

/// The last segment of a path (a resource's id when it has no `Id`).
pub fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_forms_seen_in_the_wild() {
        assert_eq!(
            normalize("/redfish/v1/Systems/1/").as_deref(),
            Some("/redfish/v1/Systems/1")
        );
        assert_eq!(
            normalize("https://10.0.0.1:443/redfish/v1/Managers/1?x=1").as_deref(),
            Some("/redfish/v1/Managers/1")
        );
        assert_eq!(
            normalize("/redfish/v1/Chassis/1#/Oem/Vendor").as_deref(),
            Some("/redfish/v1/Chassis/1")
        );
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("/"), None);
        assert_eq!(normalize("Systems/1"), None);
        assert_eq!(normalize("https://host"), None);
        assert_eq!(
            identity("/redfish/v1/systems/1/bios/"),
            identity("/redfish/v1/Systems/1/Bios")
        );
        assert_eq!(
            last_segment("/redfish/v1/Systems/System.Embedded.1/"),
            "System.Embedded.1"
        );
    }
}
