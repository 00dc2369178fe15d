//! The subset of Go's `net/url` parser that Metal3's BMC address handling relies on.
//!
//! Metal3 accepts or rejects a BMC address according to Go's `url.Parse`, `net.SplitHostPort`
//! and `URL.Hostname()`. To accept exactly the same addresses and report the same error texts,
//! this module follows those functions step by step over bytes (never slicing a `str` at a
//! position that could split a character).

/// A URL as Go's `url.Parse` splits it, keeping only the parts Metal3 reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct GoUrl {
    /// Lower-cased scheme, possibly empty.
    pub scheme: String,
    /// Everything after `scheme:` when it does not start with `/`.
    pub opaque: String,
    /// The authority's host, `%`-unescaped, with port and IPv6 brackets.
    pub host: String,
    /// The path exactly as written (still escaped).
    pub raw_path: String,
    /// The query without its `?`.
    pub raw_query: String,
}

/// `url.Parse`: on failure returns Go's `*url.Error` text, `parse "<url>": <reason>`.
pub(crate) fn parse(raw: &str) -> Result<GoUrl, String> {
    let (without_fragment, fragment) = match raw.find('#') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let url = parse_without_fragment(without_fragment)
        .map_err(|e| format!("parse {}: {e}", go_quote(without_fragment.as_bytes())))?;
    if let Some(fragment) = fragment {
        // The fragment is dropped, but Go still rejects a malformed escape in it.
        unescape(fragment.as_bytes(), Mode::Other)
            .map_err(|e| format!("parse {}: {e}", go_quote(raw.as_bytes())))?;
    }
    Ok(url)
}

fn parse_without_fragment(raw: &str) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_string());
    }
    let mut url = GoUrl::default();
    let (scheme, mut rest) = split_scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();

    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some(i) = rest.find('?') {
        url.raw_query = rest[i + 1..].to_string();
        rest = &rest[..i];
    }

    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return Ok(url);
        }
        let first_segment = rest.split('/').next().unwrap_or_default();
        if first_segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".to_string());
        }
    }

    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        url.host = parse_authority(authority)?;
        rest = path;
    }
    unescape(rest.as_bytes(), Mode::Other)?;
    url.raw_path = rest.to_string();
    Ok(url)
}

/// Go's `getScheme`.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok(("", raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err("missing protocol scheme".to_string());
                }
                return Ok((&raw[..i], &raw[i + 1..]));
            }
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority`: validates the user information (which Metal3 ignores and we drop)
/// and returns the host.
fn parse_authority(authority: &str) -> Result<String, String> {
    let at = authority.rfind('@');
    let host = parse_host(match at {
        Some(i) => &authority[i + 1..],
        None => authority,
    })?;
    if let Some(i) = at {
        let userinfo = &authority[..i];
        if !valid_userinfo(userinfo) {
            return Err("net/url: invalid userinfo".to_string());
        }
        for part in userinfo.splitn(2, ':') {
            unescape(part.as_bytes(), Mode::Other)?;
        }
    }
    Ok(host)
}

fn valid_userinfo(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '_'
                    | ':'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '%'
                    | '@'
            )
    })
}

/// Go's `parseHost`.
fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(close) = host.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                go_quote(colon_port.as_bytes())
            ));
        }
        if let Some(zone) = host[..close].find("%25") {
            // RFC 6874 zone: any escape is allowed inside it.
            let mut out = unescape(&host.as_bytes()[..zone], Mode::Host)?;
            out.extend(unescape(&host.as_bytes()[zone..close], Mode::Zone)?);
            out.extend(unescape(&host.as_bytes()[close..], Mode::Host)?);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                go_quote(colon_port.as_bytes())
            ));
        }
    }
    let out = unescape(host.as_bytes(), Mode::Host)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `validOptionalPort`: empty, or `:` followed by digits only.
pub(crate) fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Go's unexported `splitHostPort` behind `URL.Hostname()` and `URL.Port()`.
pub(crate) fn split_host_port(host_port: &str) -> (&str, &str) {
    let (mut host, mut port) = (host_port, "");
    if let Some(colon) = host_port.rfind(':') {
        if valid_optional_port(&host_port[colon..]) {
            host = &host_port[..colon];
            port = &host_port[colon + 1..];
        }
    }
    if host.len() >= 2 && host.starts_with('[') && host.ends_with(']') {
        host = &host[1..host.len() - 1];
    }
    (host, port)
}

/// Go's `net.SplitHostPort` (the exported one, stricter about brackets and colons),
/// reduced to whether it succeeds and its error text.
pub(crate) fn net_split_host_port(host_port: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("address {host_port}: {why}"));
    let Some(last_colon) = host_port.rfind(':') else {
        return fail("missing port in address");
    };
    let (j, k);
    if host_port.starts_with('[') {
        let Some(end) = host_port.find(']') else {
            return fail("missing ']' in address");
        };
        if end + 1 == host_port.len() {
            return fail("missing port in address");
        }
        if end + 1 != last_colon {
            if host_port.as_bytes().get(end + 1) == Some(&b':') {
                return fail("too many colons in address");
            }
            return fail("missing port in address");
        }
        j = 1;
        k = end + 1;
    } else {
        if host_port[..last_colon].contains(':') {
            return fail("too many colons in address");
        }
        j = 0;
        k = 0;
    }
    if host_port[j..].contains('[') {
        return fail("unexpected '[' in address");
    }
    if host_port[k..].contains(']') {
        return fail("unexpected ']' in address");
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    Other,
}

/// Go's `unescape` for the modes Metal3's inputs reach; returns the decoded bytes.
fn unescape(s: &[u8], mode: Mode) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' {
            let hi = s.get(i + 1).copied().and_then(hex_value);
            let lo = s.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                let end = (i + 3).min(s.len());
                return Err(format!("invalid URL escape {}", go_quote(&s[i..end])));
            };
            if mode == Mode::Host && hi < 8 && &s[i..i + 3] != b"%25" {
                return Err(format!("invalid URL escape {}", go_quote(&s[i..i + 3])));
            }
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            if mode != Mode::Other && c < 0x80 && host_must_escape(c) {
                return Err(format!(
                    "invalid character {} in host name",
                    go_quote(&s[i..i + 1])
                ));
            }
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `shouldEscape(c, encodeHost)`.
fn host_must_escape(c: u8) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
        ))
}

/// Go's `strconv.Quote` (`%q`) over raw bytes: invalid UTF-8 becomes `\x..`.
pub(crate) fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if c.is_control() => {
                    let v = c as u32;
                    if v <= 0xffff {
                        out.push_str(&format!("\\u{v:04x}"));
                    } else {
                        out.push_str(&format!("\\U{v:08x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go() {
        let u =
            parse("redfish+https://user:pw@[fe80::1]:8000/redfish/v1/Systems/1?a=b#frag").unwrap();
        assert_eq!(u.scheme, "redfish+https");
        assert_eq!(u.host, "[fe80::1]:8000");
        assert_eq!(u.raw_path, "/redfish/v1/Systems/1");
        assert_eq!(u.raw_query, "a=b");
        assert_eq!(parse("ipmi:1.2.3.4").unwrap().opaque, "1.2.3.4");
        assert_eq!(parse("my.host").unwrap().raw_path, "my.host");
    }

    #[test]
    fn error_texts_match_go() {
        assert_eq!(
            parse("1.2.3.4:623").unwrap_err(),
            r#"parse "1.2.3.4:623": first path segment in URL cannot contain colon"#
        );
        assert_eq!(
            parse(":x").unwrap_err(),
            r#"parse ":x": missing protocol scheme"#
        );
        assert_eq!(
            parse("redfish://h:8x0").unwrap_err(),
            r#"parse "redfish://h:8x0": invalid port ":8x0" after host"#
        );
        assert_eq!(
            parse("redfish://[::1").unwrap_err(),
            r#"parse "redfish://[::1": missing ']' in host"#
        );
        assert_eq!(
            parse("redfish://a b").unwrap_err(),
            r#"parse "redfish://a b": invalid character " " in host name"#
        );
        assert_eq!(
            parse("redfish://h/%zz").unwrap_err(),
            r#"parse "redfish://h/%zz": invalid URL escape "%zz""#
        );
        assert_eq!(
            parse("redfish://%41/").unwrap_err(),
            r#"parse "redfish://%41/": invalid URL escape "%41""#
        );
        assert_eq!(
            parse("a\tb").unwrap_err(),
            r#"parse "a\tb": net/url: invalid control character in URL"#
        );
        assert_eq!(
            parse("redfish://u{s}@h").unwrap_err(),
            r#"parse "redfish://u{s}@h": net/url: invalid userinfo"#
        );
    }

    #[test]
    fn escapes_never_split_characters() {
        // A multi-byte character right after '%' must not be sliced through.
        assert_eq!(
            parse("redfish://h/%aé").unwrap_err(),
            r#"parse "redfish://h/%aé": invalid URL escape "%a\xc3""#
        );
    }

    #[test]
    fn net_split_host_port_rules() {
        assert!(net_split_host_port("1.2.3.4:623").is_ok());
        assert!(net_split_host_port("[::1]:623").is_ok());
        assert!(net_split_host_port("1.2.3.4:").is_ok());
        assert!(net_split_host_port("[::1]").is_err());
        assert!(net_split_host_port("::1:623").is_err());
        assert!(net_split_host_port("[::1]x:1").is_err());
        assert!(net_split_host_port("a]:1").is_err());
    }

    #[test]
    fn hostname_and_port_split() {
        assert_eq!(split_host_port("[fe80::1]:80"), ("fe80::1", "80"));
        assert_eq!(split_host_port("[fe80::1234]"), ("fe80::1234", ""));
        assert_eq!(split_host_port("h:"), ("h", ""));
        assert_eq!(split_host_port("h:x"), ("h:x", ""));
    }
}
