//! HTTP basic authentication of the admin API against an htpasswd file of bcrypt hashes
//! (`htpasswd -B`; what Ironic's `http_basic` auth strategy reads).
//!
//! bcrypt costs tens of milliseconds a check by design, too much for an operator that
//! makes thousands of calls a minute: a user's credentials, once they verified, are kept
//! as a SHA-256 digest and later requests are compared against it in constant time. A
//! failed check is never cached. An unknown user costs a bcrypt check all the same, so
//! the answer's timing does not tell which users exist. Passwords and digests are never
//! logged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use bmc_core::sync::lock;

/// The users of the admin API and their bcrypt hashes.
pub struct BasicAuth {
    users: HashMap<String, String>,
    /// A hash of random bytes at the users' cost, checked for unknown users.
    dummy: std::sync::OnceLock<String>,
    /// Digests of credentials that verified, by user.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .finish()
    }
}

fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
}

impl BasicAuth {
    /// Reads an htpasswd file: `user:hash` lines, bcrypt hashes (`$2a$`, `$2b$`, `$2y$`);
    /// blank lines and `#` comments are skipped.
    pub fn from_file(path: &Path) -> Result<BasicAuth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the htpasswd file {}: {e}", path.display()))?;
        BasicAuth::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses an htpasswd file's text (see [`BasicAuth::from_file`]).
    pub fn parse(text: &str) -> Result<BasicAuth, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: not user:hash", n + 1));
            };
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err(format!(
                    "line {}: the hash of {user} is not bcrypt (make it with htpasswd -B)",
                    n + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err("no users".into());
        }
        Ok(BasicAuth {
            users,
            dummy: std::sync::OnceLock::new(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the request's `Authorization` header carries a user's credentials.
    pub async fn check(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = headers.get(header::AUTHORIZATION).and_then(parse_basic)
        else {
            return false;
        };
        let presented = digest(&user, &password);
        if let Some(known) = lock(&self.verified).get(&user) {
            if bool::from(known.ct_eq(&presented)) {
                return true;
            }
        }
        let hash = self.users.get(&user).cloned();
        let known_user = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => self.dummy_hash(),
        };
        let good = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false)
            && known_user;
        if good {
            lock(&self.verified).insert(user, presented);
        }
        good
    }
}

impl BasicAuth {
    fn dummy_hash(&self) -> String {
        self.dummy
            .get_or_init(|| {
                let cost = self
                    .users
                    .values()
                    .next()
                    .and_then(|h| h.get(4..6))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(bcrypt::DEFAULT_COST);
                let random = crate::persist::random_bytes::<16>()
                    .map(|b| crate::persist::hex(&b))
                    .unwrap_or_default();
                bcrypt::hash(random, cost).unwrap_or_default()
            })
            .clone()
    }
}

/// `Basic base64(user:password)`.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The middleware that refuses requests without good credentials: 401 with a
/// `WWW-Authenticate` challenge, and no word of what was wrong.
pub async fn require(State(auth): State<Arc<BasicAuth>>, request: Request, next: Next) -> Response {
    if auth.check(request.headers()).await {
        return next.run(request).await;
    }
    let body = axum::Json(serde_json::json!({
        "kind": "unauthorized",
        "error": "authentication required",
    }));
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"conductor\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if let Ok(v) = HeaderValue::from_str(&format!("Basic {token}")) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[tokio::test]
    async fn only_a_users_own_password_passes() -> Result<(), String> {
        let hash = bcrypt::hash("s3cret", 4).map_err(|e| e.to_string())?;
        let auth = BasicAuth::parse(&format!("# users\noperator:{hash}\n"))?;
        assert!(auth.check(&headers("operator", "s3cret")).await);
        // Cached now; a wrong password still fails.
        assert!(auth.check(&headers("operator", "s3cret")).await);
        assert!(!auth.check(&headers("operator", "s3cret2")).await);
        assert!(!auth.check(&headers("operator", "")).await);
        assert!(!auth.check(&headers("nobody", "s3cret")).await);
        assert!(!auth.check(&HeaderMap::new()).await);
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!auth.check(&bearer).await);
        assert!(BasicAuth::parse("operator:plain").is_err(), "not bcrypt");
        assert!(BasicAuth::parse("\n# none\n").is_err());
        Ok(())
    }

    #[test]
    fn the_dummy_hash_is_a_bcrypt_hash_at_the_users_cost() -> Result<(), String> {
        let hash = bcrypt::hash("s3cret", 5).map_err(|e| e.to_string())?;
        let auth = BasicAuth::parse(&format!("operator:{hash}"))?;
        let dummy = auth.dummy_hash();
        assert!(dummy.starts_with("$2b$05$"), "{dummy}");
        assert!(matches!(bcrypt::verify("s3cret", &dummy), Ok(false)));
        Ok(())
    }
}
