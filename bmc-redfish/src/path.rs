//! Resource URIs as BMCs write them. A request goes to a URI exactly as the BMC
//! advertised it ([`request_path`]): some BMCs answer only at their own spelling (an
//! action target with a trailing slash, a link in lower case). Two URIs are compared by
//! [`identity`], which ignores a trailing slash and case, because some BMCs link to
//! `systems/1/bios` while serving `Systems/1/Bios`.

/// The path a request for an advertised URI goes to: the URI as the BMC wrote it, less
/// any scheme and authority (requests go to the BMC being talked to) and fragment, with
/// its trailing slash, case, query and percent-encoding kept. `None` if no path remains.
pub fn request_path(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // Absolute URL: keep from the first '/' after the authority.
    let path = match raw.find("://") {
        Some(i) => {
            let rest = &raw[i + 3..];
            &rest[rest.find('/')?..]
        }
        None => raw,
    };
    let path = path.split('#').next().unwrap_or_default();
    if !path.starts_with('/') || path.trim_end_matches('/').is_empty() {
        return None;
    }
    Some(path.to_string())
}

/// The key under which two URIs that name the same resource are equal: the path without
/// query, trailing slashes or case.
pub fn identity(path: &str) -> String {
    let sent = request_path(path).unwrap_or_else(|| path.to_string());
    sent.split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_ascii_lowercase()
}

/// Whether two URIs name the same resource.
pub fn same(a: &str, b: &str) -> bool {
    identity(a) == identity(b)
}

/// The last segment of a path (a resource's id when it has no `Id`), percent-decoded
/// when it decodes to UTF-8 (`Disk%201` is `Disk 1`).
pub fn last_segment(path: &str) -> String {
    let segment = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    percent_decode(segment).unwrap_or_else(|| segment.to_string())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_where_the_bmc_said() {
        // Trailing slash, case, query and encoding as advertised.
        assert_eq!(
            request_path("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset/").as_deref(),
            Some("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset/")
        );
        assert_eq!(
            request_path("/redfish/v1/systems/1/bios/").as_deref(),
            Some("/redfish/v1/systems/1/bios/")
        );
        assert_eq!(
            request_path("/redfish/v1/Systems/1/Storage/Disk%201").as_deref(),
            Some("/redfish/v1/Systems/1/Storage/Disk%201")
        );
        // Only the authority and the fragment go.
        assert_eq!(
            request_path("https://10.0.0.1:443/redfish/v1/Managers/1?x=1").as_deref(),
            Some("/redfish/v1/Managers/1?x=1")
        );
        assert_eq!(
            request_path("/redfish/v1/Chassis/1#/Oem/Vendor").as_deref(),
            Some("/redfish/v1/Chassis/1")
        );
        assert_eq!(request_path(""), None);
        assert_eq!(request_path("/"), None);
        assert_eq!(request_path("//"), None);
        assert_eq!(request_path("Systems/1"), None);
        assert_eq!(request_path("https://host"), None);
    }

    #[test]
    fn uris_compare_without_slash_case_or_query() {
        assert!(same(
            "/redfish/v1/systems/1/bios/",
            "/redfish/v1/Systems/1/Bios"
        ));
        assert!(same(
            "https://bmc/redfish/v1/Managers/1?x=1",
            "/redfish/v1/Managers/1"
        ));
        assert!(!same("/redfish/v1/Systems/1", "/redfish/v1/Systems/2"));
        assert_eq!(
            last_segment("/redfish/v1/Systems/System.Embedded.1/"),
            "System.Embedded.1"
        );
        assert_eq!(last_segment("/redfish/v1/Chassis/Disk%201"), "Disk 1");
        // Not UTF-8 once decoded, or not an escape: as written.
        assert_eq!(last_segment("/a/b%ff"), "b%ff");
        assert_eq!(last_segment("/a/100%"), "100%");
    }
}
