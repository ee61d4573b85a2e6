//! Feature and field keys: multi-part names written `a/b/c`, with metaxy's validation rules, its
//! table-name and struct-key forms, and its two orders (by parts for features, by string for
//! fully qualified field keys).

use std::fmt;

use crate::error::{MetaxyError, Result};

/// Which kind of key a name is, for error messages (`FeatureKey part 'X' is invalid…`).
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Feature,
    Field,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Feature => "FeatureKey",
            KeyKind::Field => "FieldKey",
        }
    }
}

fn parse_parts(kind: KeyKind, text: &str) -> Result<Vec<String>> {
    let parts: Vec<String> = text.split('/').map(str::to_string).collect();
    validate_parts(kind, &parts)?;
    Ok(parts)
}

/// metaxy's part rules: non-empty; lowercase letters, digits, `_` and `-`; the first part starts
/// with a letter or `_`, later parts not with `-`; no `__`.
fn validate_parts(kind: KeyKind, parts: &[String]) -> Result<()> {
    let name = kind.name();
    let invalid = |message: String| MetaxyError::InvalidKey {
        key: parts.join("/"),
        message,
    };
    if parts.is_empty() {
        return Err(invalid(format!("{name} must have at least one part")));
    }
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(invalid(format!("{name} parts cannot be empty strings")));
        }
        if part.contains('/') {
            return Err(invalid(format!(
                "{name} part '{part}' cannot contain forward slashes (/). Forward slashes are \
                 reserved as the separator in to_string(). Use underscores or hyphens instead."
            )));
        }
        if part.contains("__") {
            return Err(invalid(format!(
                "{name} part '{part}' cannot contain double underscores (__). Use single \
                 underscores or hyphens instead."
            )));
        }
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        let first = part.chars().next().unwrap_or('-');
        if i == 0 {
            if !(first.is_ascii_lowercase() || first == '_') || !part.chars().all(allowed) {
                return Err(invalid(format!(
                    "{name} first part '{part}' is invalid. The first part must start with a \
                     lowercase letter (a-z) or underscore (_), and contain only lowercase \
                     letters, digits, underscores, or hyphens."
                )));
            }
        } else if first == '-' || !part.chars().all(allowed) {
            return Err(invalid(format!(
                "{name} part '{part}' is invalid. Parts must contain only lowercase letters, \
                 digits, underscores, or hyphens, and cannot start with a hyphen."
            )));
        }
    }
    Ok(())
}

/// A feature key such as `example/video`. Ordered by its parts (a tuple compare, so
/// `a/b` < `a-b/c`), as metaxy orders features for the project version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureKey(Vec<String>);

impl FeatureKey {
    /// Parses and validates `a/b/c`.
    ///
    /// ```
    /// use datafusion_metaxy::graph::FeatureKey;
    /// let k = FeatureKey::parse("example/video-clips").unwrap();
    /// assert_eq!(k.table_name(), "example__video_clips");
    /// assert!(FeatureKey::parse("Example/video").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Self(parse_parts(KeyKind::Feature, text)?))
    }

    /// The parts of the key.
    pub fn parts(&self) -> &[String] {
        &self.0
    }

    /// The table name: parts joined with `__`, `-` replaced by `_` (`bench/simple_root` →
    /// `bench__simple_root`).
    pub fn table_name(&self) -> String {
        self.0
            .iter()
            .map(|p| p.replace('-', "_"))
            .collect::<Vec<_>>()
            .join("__")
    }

    /// Parts joined with `_` (the title of the feature's schema, the suffix of upstream columns).
    pub fn struct_key(&self) -> String {
        self.0.join("_")
    }
}

impl fmt::Display for FeatureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// A field key such as `audio/french`. Ordered by its string form, as metaxy orders fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldKey(Vec<String>);

impl FieldKey {
    /// Parses and validates `a/b`.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Self(parse_parts(KeyKind::Field, text)?))
    }

    /// Builds a key from parts (e.g. `["audio", "french"]`), validating them.
    pub fn from_parts(parts: Vec<String>) -> Result<Self> {
        validate_parts(KeyKind::Field, &parts)?;
        Ok(Self(parts))
    }

    /// The parts of the key.
    pub fn parts(&self) -> &[String] {
        &self.0
    }

    /// The name of this field inside provenance structs: parts joined with `_`.
    pub fn struct_key(&self) -> String {
        self.0.join("_")
    }

    /// The default field of a feature that declares none.
    pub fn default_field() -> Self {
        Self(vec!["default".to_string()])
    }
}

impl fmt::Display for FieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

impl PartialOrd for FieldKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FieldKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

/// A fully qualified field key, written `<feature>.<field>` (`example/video.audio`). Ordered by
/// that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FqFieldKey {
    /// The feature.
    pub feature: FeatureKey,
    /// The field of that feature.
    pub field: FieldKey,
}

impl fmt::Display for FqFieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.feature, self.field)
    }
}

impl PartialOrd for FqFieldKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FqFieldKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_orders() {
        let k = FeatureKey::parse("bench/simple_root").unwrap();
        assert_eq!(k.table_name(), "bench__simple_root");
        assert_eq!(k.struct_key(), "bench_simple_root");
        // Features order by parts, fields by string: `a/b` vs `a-b`.
        assert!(FeatureKey::parse("a/b").unwrap() < FeatureKey::parse("a-b").unwrap());
        assert!(FieldKey::parse("a-b").unwrap() < FieldKey::parse("a/b").unwrap());
        assert_eq!(
            FieldKey::parse("audio/french").unwrap().struct_key(),
            "audio_french"
        );
    }

    #[test]
    fn invalid_parts_are_named() {
        let e = |s: &str| FeatureKey::parse(s).unwrap_err().to_string();
        assert!(e("a//b").contains("parts cannot be empty strings"));
        assert!(e("a__b").contains("cannot contain double underscores"));
        assert!(e("Video").contains("first part 'Video' is invalid"));
        assert!(e("a/-b").contains("part '-b' is invalid"));
        assert!(FieldKey::parse("x y")
            .unwrap_err()
            .to_string()
            .contains("FieldKey"));
    }
}
