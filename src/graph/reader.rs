//! A strict reader over JSON values (lock files and our TOML are converted to JSON first): every
//! value is read at a path that error messages name, and unknown keys are errors.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{MetaxyError, Result};

/// The error for a value at `at`.
pub(crate) fn error(at: &str, message: impl Into<String>) -> MetaxyError {
    MetaxyError::Definition {
        at: at.to_string(),
        message: message.into(),
    }
}

/// Converts a TOML document to JSON (datetimes are not part of any definition format).
pub(crate) fn toml_to_json(value: toml::Value, at: &str) -> Result<Value> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| error(at, format!("{f} is not a JSON number")))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => {
            return Err(error(at, format!("dates are not supported here (got {d})")))
        }
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| toml_to_json(v, &format!("{at}[{i}]")))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(table) => {
            let mut map = Map::new();
            for (k, v) in table {
                let child = format!("{at}.{k}");
                map.insert(k, toml_to_json(v, &child)?);
            }
            Value::Object(map)
        }
    })
}

/// A JSON object being read: remembers which keys were read so [`Obj::finish`] can reject the
/// rest.
pub(crate) struct Obj<'a> {
    pub at: String,
    map: &'a Map<String, Value>,
    used: BTreeSet<&'a str>,
}

impl<'a> Obj<'a> {
    pub fn new(value: &'a Value, at: impl Into<String>) -> Result<Self> {
        let at = at.into();
        match value {
            Value::Object(map) => Ok(Self {
                at,
                map,
                used: BTreeSet::new(),
            }),
            other => Err(error(&at, format!("expected a table, got {}", kind(other)))),
        }
    }

    /// The path of a child key.
    pub fn child(&self, key: &str) -> String {
        if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            format!("{}.{key}", self.at)
        } else {
            format!("{}.\"{key}\"", self.at)
        }
    }

    /// A key that may be absent; JSON null counts as absent.
    pub fn opt(&mut self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.used.insert(k.as_str());
        (!v.is_null()).then_some(v)
    }

    /// A key that must be present.
    pub fn req(&mut self, key: &str) -> Result<&'a Value> {
        self.opt(key)
            .ok_or_else(|| error(&self.at, format!("missing required key '{key}'")))
    }

    /// The entries of the object, all marked as read.
    pub fn entries(&mut self) -> Vec<(&'a String, &'a Value)> {
        for k in self.map.keys() {
            self.used.insert(k.as_str());
        }
        self.map.iter().collect()
    }

    /// Fails on any key that was not read, naming it and the keys that are allowed.
    pub fn finish(self, allowed: &[&str]) -> Result<()> {
        let unknown: Vec<&str> = self
            .map
            .keys()
            .map(String::as_str)
            .filter(|k| !self.used.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(error(
            &self.at,
            format!(
                "unknown key{} {} (allowed: {})",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                allowed.join(", ")
            ),
        ))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

pub(crate) fn as_str<'v>(v: &'v Value, at: &str) -> Result<&'v str> {
    v.as_str()
        .ok_or_else(|| error(at, format!("expected a string, got {}", kind(v))))
}

pub(crate) fn as_bool(v: &Value, at: &str) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| error(at, format!("expected true or false, got {}", kind(v))))
}

pub(crate) fn as_array<'v>(v: &'v Value, at: &str) -> Result<&'v Vec<Value>> {
    v.as_array()
        .ok_or_else(|| error(at, format!("expected an array, got {}", kind(v))))
}

pub(crate) fn as_str_list(v: &Value, at: &str) -> Result<Vec<String>> {
    as_array(v, at)?
        .iter()
        .enumerate()
        .map(|(i, s)| as_str(s, &format!("{at}[{i}]")).map(str::to_string))
        .collect()
}
