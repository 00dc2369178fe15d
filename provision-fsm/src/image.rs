//! The image a host is provisioned with (`spec.image`): one type from the manifest to the
//! agent, so "is it a live ISO" and "which checksum" are decided in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The image to provision (`spec.image`), with upstream's field names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Image URL.
    #[serde(default)]
    pub url: String,
    /// Checksum (or URL of one); none for `live-iso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// `md5`, `sha256`, `sha512` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<ChecksumType>,
    /// `raw`, `qcow2`, `vdi`, `vmdk`, `live-iso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ImageFormat>,
}

impl Image {
    /// An image at `url` with nothing else said about it.
    pub fn at(url: impl Into<String>) -> Image {
        Image {
            url: url.into(),
            checksum: None,
            checksum_type: None,
            format: None,
        }
    }

    /// Whether the image is booted as it is by virtual media (`format: live-iso`) rather
    /// than written to disk by the agent.
    pub fn is_live_iso(&self) -> bool {
        self.format == Some(ImageFormat::LiveIso)
    }
}

/// `spec.image.format`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ImageFormat {
    /// `raw`.
    Raw,
    /// `qcow2`.
    Qcow2,
    /// `vdi`.
    Vdi,
    /// `vmdk`.
    Vmdk,
    /// `live-iso`: booted by virtual media as it is.
    LiveIso,
    /// A format Metal3 does not name, kept as written (the agent decides).
    Other(String),
}

impl ImageFormat {
    /// Upstream's spelling.
    pub fn name(&self) -> &str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vdi => "vdi",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::LiveIso => "live-iso",
            ImageFormat::Other(s) => s,
        }
    }
}

impl From<String> for ImageFormat {
    fn from(s: String) -> ImageFormat {
        match s.as_str() {
            "raw" => ImageFormat::Raw,
            "qcow2" => ImageFormat::Qcow2,
            "vdi" => ImageFormat::Vdi,
            "vmdk" => ImageFormat::Vmdk,
            "live-iso" => ImageFormat::LiveIso,
            _ => ImageFormat::Other(s),
        }
    }
}

impl From<ImageFormat> for String {
    fn from(f: ImageFormat) -> String {
        f.name().to_string()
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `spec.image.checksumType`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ChecksumType {
    /// `md5`.
    Md5,
    /// `sha256`.
    Sha256,
    /// `sha512`.
    Sha512,
    /// `auto` (or empty): told by the checksum's length.
    Auto,
    /// A type Metal3 does not allow, kept as written so the failure can name it.
    Other(String),
}

impl ChecksumType {
    /// Upstream's spelling.
    pub fn name(&self) -> &str {
        match self {
            ChecksumType::Md5 => "md5",
            ChecksumType::Sha256 => "sha256",
            ChecksumType::Sha512 => "sha512",
            ChecksumType::Auto => "auto",
            ChecksumType::Other(s) => s,
        }
    }

    /// The type a checksum of `hex` characters has, for `auto`: 32 md5, 64 sha256, 128
    /// sha512; `Err` names the length that fits none.
    pub fn resolve(&self, checksum: &str) -> Result<ChecksumType, String> {
        match self {
            ChecksumType::Auto => match checksum.trim().len() {
                32 => Ok(ChecksumType::Md5),
                64 => Ok(ChecksumType::Sha256),
                128 => Ok(ChecksumType::Sha512),
                n => Err(format!(
                    "cannot tell the checksum type of a {n}-character checksum"
                )),
            },
            ChecksumType::Other(s) => Err(format!("checksum type {s} is not one Metal3 allows")),
            known => Ok(known.clone()),
        }
    }
}

impl From<String> for ChecksumType {
    fn from(s: String) -> ChecksumType {
        match s.to_ascii_lowercase().as_str() {
            "md5" => ChecksumType::Md5,
            "sha256" => ChecksumType::Sha256,
            "sha512" => ChecksumType::Sha512,
            "" | "auto" => ChecksumType::Auto,
            _ => ChecksumType::Other(s),
        }
    }
}

impl From<ChecksumType> for String {
    fn from(c: ChecksumType) -> String {
        c.name().to_string()
    }
}

impl fmt::Display for ChecksumType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_spellings_round_trip_and_unknown_ones_are_kept() {
        let image: Image = serde_json::from_str(
            r#"{"url":"http://x/os.iso","checksumType":"SHA256","format":"live-iso"}"#,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(image.is_live_iso());
        assert_eq!(image.checksum_type, Some(ChecksumType::Sha256));
        let back = serde_json::to_value(&image).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(back["format"], "live-iso");
        assert_eq!(back["checksumType"], "sha256");
        assert_eq!(
            ImageFormat::from("zstd".to_string()),
            ImageFormat::Other("zstd".into())
        );
        assert!(!Image::at("http://x/os.qcow2").is_live_iso());
    }

    #[test]
    fn auto_is_told_by_length_and_unknown_types_are_refused_by_name() {
        let auto = ChecksumType::Auto;
        assert_eq!(auto.resolve(&"a".repeat(32)), Ok(ChecksumType::Md5));
        assert_eq!(auto.resolve(&"a".repeat(64)), Ok(ChecksumType::Sha256));
        assert_eq!(auto.resolve(&"a".repeat(128)), Ok(ChecksumType::Sha512));
        assert!(
            auto.resolve("abc")
                .is_err_and(|e| e.contains("3-character"))
        );
        let crc = ChecksumType::from("crc32".to_string());
        assert!(crc.resolve("x").is_err_and(|e| e.contains("crc32")));
    }
}
