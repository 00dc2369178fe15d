//! A Metal3Machine's `hostSelector`: `matchLabels` and `matchExpressions` over a
//! BareMetalHost's labels, with the operators CAPM3 accepts (Kubernetes' label selection
//! operators: `in`, `notin`, `exists`, `!`, `=`, `==`, `!=`, `gt`, `lt`, and the
//! `In`/`NotIn`/`Exists`/`DoesNotExist` spelling of label selectors).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One of `matchExpressions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSelectorRequirement {
    /// The label.
    pub key: String,
    /// The operator.
    pub operator: String,
    /// Its values (none for `exists` and `!`).
    #[serde(default)]
    pub values: Vec<String>,
}

/// `hostSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSelector {
    /// Labels that must be there with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Expressions that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<HostSelectorRequirement>,
}

/// An operator of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Equals,
    NotEquals,
    GreaterThan,
    LessThan,
}

impl Operator {
    fn parse(text: &str) -> Option<Operator> {
        Some(match text.to_ascii_lowercase().as_str() {
            "in" => Operator::In,
            "notin" => Operator::NotIn,
            "exists" => Operator::Exists,
            "!" | "doesnotexist" => Operator::DoesNotExist,
            "=" | "==" => Operator::Equals,
            "!=" => Operator::NotEquals,
            "gt" => Operator::GreaterThan,
            "lt" => Operator::LessThan,
            _ => return None,
        })
    }
}

impl HostSelectorRequirement {
    /// Whether `labels` satisfy the requirement; an error for an operator that does not
    /// exist or values that do not fit it (as the API server's selector parser refuses
    /// them).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        let op = Operator::parse(&self.operator).ok_or_else(|| {
            format!(
                "hostSelector: {:?} is not an operator (in, notin, exists, !, =, ==, !=, gt, lt)",
                self.operator
            )
        })?;
        let one = || match self.values.as_slice() {
            [v] => Ok(v.as_str()),
            _ => Err(format!(
                "hostSelector: {} {} takes exactly one value, not {}",
                self.key,
                self.operator,
                self.values.len()
            )),
        };
        let number = |v: &str| {
            v.parse::<i64>().map_err(|_| {
                format!(
                    "hostSelector: {} {} needs an integer, not {v:?}",
                    self.key, self.operator
                )
            })
        };
        let value = labels.get(&self.key);
        Ok(match op {
            Operator::In => {
                if self.values.is_empty() {
                    return Err(format!("hostSelector: {} in needs values", self.key));
                }
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotIn => {
                if self.values.is_empty() {
                    return Err(format!("hostSelector: {} notin needs values", self.key));
                }
                value.is_none_or(|v| !self.values.contains(v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals => {
                let want = one()?;
                value.is_some_and(|v| v == want)
            }
            Operator::NotEquals => {
                let want = one()?;
                value.is_none_or(|v| v != want)
            }
            Operator::GreaterThan | Operator::LessThan => {
                let bound = number(one()?)?;
                // A label that is not a number does not match (Kubernetes' rule).
                match value.and_then(|v| v.parse::<i64>().ok()) {
                    Some(v) if op == Operator::GreaterThan => v > bound,
                    Some(v) => v < bound,
                    None => false,
                }
            }
        })
    }
}

impl HostSelector {
    /// Whether a host with `labels` is selected: every `matchLabels` pair is there and
    /// every expression holds. An empty selector selects every host.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        if !self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            // The expressions are still checked, so a malformed one is reported whatever
            // the labels.
            for e in &self.match_expressions {
                e.matches(labels)?;
            }
            return Ok(false);
        }
        for e in &self.match_expressions {
            if !e.matches(labels)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> HostSelectorRequirement {
        HostSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn each_operator_selects_as_kubernetes_does() {
        let l = labels(&[("key1", "value1"), ("key3", "b"), ("rack", "7")]);
        let cases = [
            (req("key3", "in", &["a", "b", "c"]), true),
            (req("key3", "In", &["a", "c"]), false),
            (req("key3", "notin", &["a", "c"]), true),
            (req("absent", "NotIn", &["a"]), true),
            (req("key1", "exists", &[]), true),
            (req("absent", "Exists", &[]), false),
            (req("absent", "!", &[]), true),
            (req("key1", "DoesNotExist", &[]), false),
            (req("key1", "=", &["value1"]), true),
            (req("key1", "==", &["other"]), false),
            (req("key1", "!=", &["other"]), true),
            (req("absent", "!=", &["other"]), true),
            (req("rack", "gt", &["6"]), true),
            (req("rack", "lt", &["6"]), false),
            (req("key1", "gt", &["6"]), false),
        ];
        for (r, want) in cases {
            assert_eq!(r.matches(&l), Ok(want), "{r:?}");
        }
    }

    #[test]
    fn malformed_requirements_are_refused_with_what_is_wrong() {
        let l = labels(&[]);
        let bad = [
            (req("k", "like", &["x"]), "not an operator"),
            (req("k", "=", &["a", "b"]), "exactly one value"),
            (req("k", "gt", &["x"]), "needs an integer"),
            (req("k", "in", &[]), "needs values"),
        ];
        for (r, why) in bad {
            let e = r.matches(&l).err().unwrap_or_default();
            assert!(e.contains(why), "{r:?}: {e}");
        }
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        // CAPM3's documented example 4: key1=value1 AND key2=value2 AND key3 in (a,b,c).
        let s = HostSelector {
            match_labels: labels(&[("key1", "value1"), ("key2", "value2")]),
            match_expressions: vec![req("key3", "in", &["a", "b", "c"])],
        };
        let all = labels(&[("key1", "value1"), ("key2", "value2"), ("key3", "c")]);
        assert_eq!(s.matches(&all), Ok(true));
        let mut wrong = all.clone();
        wrong.insert("key3".into(), "d".into());
        assert_eq!(s.matches(&wrong), Ok(false));
        let mut missing = all.clone();
        missing.remove("key2");
        assert_eq!(s.matches(&missing), Ok(false));
        assert_eq!(HostSelector::default().matches(&labels(&[])), Ok(true));
    }
}
