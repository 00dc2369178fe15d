//! Tolerant reads from JSON: a wrong type, a null or a missing field is `None`, never an
//! error, so one odd property cannot hide the rest of a resource.

use serde_json::Value;

use crate::path::{identity, request_path};

/// The value at `path` (object keys), if every step exists.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.as_object()?.get(*key))
}

/// A string at `path`; empty strings count as absent.
pub(crate) fn string(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A boolean at `path`.
pub(crate) fn boolean(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path)?.as_bool()
}

/// A non-negative integer at `path` (floats with no fraction accepted, as some BMCs send
/// `2048.0`).
pub(crate) fn uint(v: &Value, path: &[&str]) -> Option<u64> {
    let v = at(v, path)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
            .map(|f| f as u64)
    })
}

/// A number at `path`.
pub(crate) fn number(v: &Value, path: &[&str]) -> Option<f64> {
    at(v, path)?.as_f64().filter(|f| f.is_finite())
}

/// The strings of an array at `path`; other members are skipped.
pub(crate) fn strings(v: &Value, path: &[&str]) -> Vec<String> {
    at(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `@odata.id` of the link object at `path`, as the BMC wrote it.
pub(crate) fn link(v: &Value, path: &[&str]) -> Option<String> {
    let target = at(v, path)?;
    // A link is `{"@odata.id": "..."}`; a few BMCs put the bare string.
    let raw = target
        .get("@odata.id")
        .and_then(Value::as_str)
        .or_else(|| target.as_str())?;
    request_path(raw)
}

/// The `@odata.id`s of an array of links at `path`, each once (BMCs repeat members):
/// bad members are skipped.
pub(crate) fn links(v: &Value, path: &[&str]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    at(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                .filter_map(request_path)
                .filter(|p| seen.insert(identity(p)))
                .collect()
        })
        .unwrap_or_default()
}

/// The object's own `@odata.id`, as the BMC wrote it.
pub(crate) fn own_id(v: &Value) -> Option<String> {
    v.get("@odata.id")
        .and_then(Value::as_str)
        .and_then(request_path)
}
