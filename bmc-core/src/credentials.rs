//! BMC credentials that never print their password.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

/// A password. `Debug` and `Display` print `<redacted>`; [`Password::expose`] is the only
/// way to read it, so every place that sends it to a BMC is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself, for sending to the BMC. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A BMC user name and password.
///
/// ```
/// use bmc_core::Credentials;
///
/// let creds = Credentials::new("admin", "s3cret")?;
/// assert_eq!(creds.username(), "admin");
/// assert!(!format!("{creds:?} {creds}").contains("s3cret"));
/// # Ok::<(), bmc_core::CredentialsError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: Password,
}

/// Why credentials could not be built. `Display` gives Metal3's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The user name is empty.
    #[error(
        "Validation error with BMC credentials: Missing BMC connection detail 'username' in credentials"
    )]
    MissingUsername,
    /// The password is empty.
    #[error(
        "Validation error with BMC credentials: Missing BMC connection details 'password' in credentials"
    )]
    MissingPassword,
    /// The secret lacks a key.
    #[error("Secret {secret} does not contain key {key}")]
    MissingKey {
        /// The secret's name.
        secret: String,
        /// The missing key (`username` or `password`).
        key: &'static str,
    },
    /// A secret value is not valid base64 or not UTF-8.
    #[error("Secret {secret} has an invalid value for key {key}: {reason}")]
    InvalidValue {
        /// The secret's name.
        secret: String,
        /// The key whose value is bad.
        key: &'static str,
        /// What is wrong with it (never the value).
        reason: String,
    },
}

impl Credentials {
    /// Builds credentials, rejecting an empty user name or password as Metal3 does.
    /// Surrounding whitespace is trimmed (Metal3 trims secret values).
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<Credentials, CredentialsError> {
        let username = username.into().trim().to_string();
        let password = password.into().trim().to_string();
        if username.is_empty() {
            return Err(CredentialsError::MissingUsername);
        }
        if password.is_empty() {
            return Err(CredentialsError::MissingPassword);
        }
        Ok(Credentials {
            username,
            password: Password(password),
        })
    }

    /// Reads a Kubernetes secret's `stringData`-style map (plain values) with the keys
    /// `username` and `password`.
    pub fn from_secret_strings(
        secret_name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<Credentials, CredentialsError> {
        let get = |key: &'static str| {
            data.get(key).ok_or_else(|| CredentialsError::MissingKey {
                secret: secret_name.to_string(),
                key,
            })
        };
        Credentials::new(get("username")?.as_str(), get("password")?.as_str())
    }

    /// Reads a Kubernetes secret's `data` map (base64 values) with the keys `username` and
    /// `password`.
    pub fn from_secret_data(
        secret_name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<Credentials, CredentialsError> {
        let get = |key: &'static str| -> Result<String, CredentialsError> {
            let encoded = data.get(key).ok_or_else(|| CredentialsError::MissingKey {
                secret: secret_name.to_string(),
                key,
            })?;
            let invalid = |reason: String| CredentialsError::InvalidValue {
                secret: secret_name.to_string(),
                key,
                reason,
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| invalid(format!("not base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| invalid("not UTF-8".to_string()))
        };
        Credentials::new(get("username")?, get("password")?)
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password (its `Debug`/`Display` are redacted).
    pub fn password(&self) -> &Password {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (password <redacted>)", self.username)
    }
}
