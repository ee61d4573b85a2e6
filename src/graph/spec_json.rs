//! The JSON form of feature specs: [`FeatureSpec::to_json`] is metaxy's
//! `spec.model_dump(mode="json")` (pydantic field order, nulls included) and
//! [`FeatureSpec::from_json`] reads it back, validating as metaxy does.

use serde_json::{json, Map, Value};

use super::key::{FeatureKey, FieldKey};
use super::reader::{as_array, as_bool, as_str, as_str_list, error, Obj};
use super::spec::*;
use crate::error::Result;

impl FeatureSpec {
    /// A spec with the default field `default`, no dependencies.
    pub fn new(key: FeatureKey, id_columns: Vec<String>) -> Self {
        Self {
            key,
            id_columns,
            deps: Vec::new(),
            fields: vec![FieldSpec::new(
                FieldKey::default_field(),
                DEFAULT_CODE_VERSION,
            )],
            metadata: Map::new(),
            description: None,
        }
    }

    /// The field with this key.
    pub fn field(&self, key: &FieldKey) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| &f.key == key)
    }

    /// Checks the rules metaxy applies to a single spec: id columns, unique fields (also by
    /// struct key), select using post-rename names, parseable filters, lineage `on` columns.
    pub fn validate(&self) -> Result<()> {
        let at = format!("feature '{}'", self.key);
        if self.id_columns.is_empty() {
            return Err(error(
                &at,
                "id_columns must be non-empty if specified. Use None for default.",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.id_columns {
            if c.is_empty() {
                return Err(error(&at, "id_columns must not contain an empty name"));
            }
            if !seen.insert(c) {
                return Err(error(&at, format!("id column '{c}' is listed twice")));
            }
            if SYSTEM_COLUMNS.contains(&c.as_str()) {
                return Err(error(
                    &at,
                    format!("id column '{c}' is a metaxy system column"),
                ));
            }
        }
        let mut keys = std::collections::BTreeSet::new();
        let mut struct_keys = std::collections::BTreeMap::new();
        for f in &self.fields {
            if !keys.insert(f.key.to_string()) {
                return Err(error(
                    &at,
                    format!(
                        "Duplicate field key found: {}. All fields must have unique keys.",
                        f.key
                    ),
                ));
            }
            if let Some(other) = struct_keys.insert(f.key.struct_key(), f.key.to_string()) {
                return Err(error(
                    &at,
                    format!(
                        "fields '{other}' and '{}' share the struct key '{}' used in provenance \
                         columns; rename one of them",
                        f.key,
                        f.key.struct_key()
                    ),
                ));
            }
        }
        for dep in &self.deps {
            let dep_at = format!("{at}, dependency '{}'", dep.feature);
            if let (Some(select), Some(rename)) = (&dep.select, &dep.rename) {
                let targets: Vec<&String> = rename.iter().map(|(_, to)| to).collect();
                let mut bad: Vec<&String> = rename
                    .iter()
                    .map(|(from, _)| from)
                    .filter(|from| !targets.contains(from) && select.contains(from))
                    .collect();
                bad.sort();
                bad.dedup();
                if !bad.is_empty() {
                    return Err(error(
                        &dep_at,
                        format!(
                            "select contains pre-rename column name(s) [{}]. Use post-rename \
                             names in select (rename is applied first).",
                            bad.iter()
                                .map(|b| format!("'{b}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            for filter in dep.filters.iter().flatten() {
                parse_filter(filter).map_err(|e| error(&dep_at, e))?;
            }
            match &dep.lineage {
                Lineage::Aggregation { on: Some(on) } | Lineage::Expansion { on, .. }
                    if on.is_empty() =>
                {
                    return Err(error(&dep_at, "lineage `on` must name at least one column"))
                }
                _ => {}
            }
            let on_must_be_ids = match &dep.lineage {
                Lineage::Aggregation { on: Some(on) } => Some(on),
                Lineage::Expansion { on, .. } => Some(on),
                _ => None,
            };
            for c in on_must_be_ids.into_iter().flatten() {
                if !self.id_columns.contains(c) {
                    return Err(error(
                        &dep_at,
                        format!(
                            "lineage `on` column '{c}' is not an id column of '{}' (id columns: \
                             {})",
                            self.key,
                            self.id_columns.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// metaxy's `spec.model_dump(mode="json")`: pydantic field order, nulls included.
    pub fn to_json(&self) -> Value {
        json!({
            "key": self.key.to_string(),
            "id_columns": self.id_columns,
            "deps": self.deps.iter().map(FeatureDep::to_json).collect::<Vec<_>>(),
            "fields": self.fields.iter().map(FieldSpec::to_json).collect::<Vec<_>>(),
            "metadata": self.metadata,
            "description": self.description,
        })
    }

    /// Reads metaxy's spec JSON (a lock file's `data.spec`, a system table's `feature_spec`).
    /// Missing optional keys take metaxy's defaults; unknown keys are errors.
    pub fn from_json(value: &Value, at: &str) -> Result<Self> {
        let mut o = Obj::new(value, at)?;
        let key_at = o.child("key");
        let key = FeatureKey::parse(as_str(o.req("key")?, &key_at)?)
            .map_err(|e| error(&key_at, e.to_string()))?;
        let id_columns = match o.opt("id_columns") {
            Some(v) => as_str_list(v, &o.child("id_columns"))?,
            None => return Err(error(&o.at, "missing required key 'id_columns'")),
        };
        let deps = match o.opt("deps") {
            Some(v) => {
                let deps_at = o.child("deps");
                as_array(v, &deps_at)?
                    .iter()
                    .enumerate()
                    .map(|(i, d)| FeatureDep::from_json(d, &format!("{deps_at}[{i}]")))
                    .collect::<Result<_>>()?
            }
            None => Vec::new(),
        };
        let fields = match o.opt("fields") {
            Some(v) => {
                let fields_at = o.child("fields");
                as_array(v, &fields_at)?
                    .iter()
                    .enumerate()
                    .map(|(i, f)| FieldSpec::from_json(f, &format!("{fields_at}[{i}]")))
                    .collect::<Result<_>>()?
            }
            None => vec![FieldSpec::new(
                FieldKey::default_field(),
                DEFAULT_CODE_VERSION,
            )],
        };
        let metadata = match o.opt("metadata") {
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(error(&o.child("metadata"), "expected a table")),
            None => Map::new(),
        };
        let description = match o.opt("description") {
            Some(v) => Some(as_str(v, &o.child("description"))?.to_string()),
            None => None,
        };
        o.finish(&[
            "key",
            "id_columns",
            "deps",
            "fields",
            "metadata",
            "description",
        ])?;
        Ok(Self {
            key,
            id_columns,
            deps,
            fields,
            metadata,
            description,
        })
    }
}

impl FeatureDep {
    fn to_json(&self) -> Value {
        let rename = self.rename.as_ref().map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<_, _>>()
        });
        json!({
            "feature": self.feature.to_string(),
            "select": self.select,
            "rename": rename,
            "fields_mapping": {"mapping": self.fields_mapping.to_json()},
            "sql_filters": self.filters,
            "lineage": {"relationship": self.lineage.to_json()},
            "optional": self.optional,
        })
    }

    fn from_json(value: &Value, at: &str) -> Result<Self> {
        let mut o = Obj::new(value, at)?;
        let f_at = o.child("feature");
        let feature = FeatureKey::parse(as_str(o.req("feature")?, &f_at)?)
            .map_err(|e| error(&f_at, e.to_string()))?;
        let select = o
            .opt("select")
            .map(|v| as_str_list(v, &o.child("select")))
            .transpose()?;
        let rename = match o.opt("rename") {
            Some(v) => {
                let r_at = o.child("rename");
                let mut r = Obj::new(v, &r_at)?;
                let pairs = r
                    .entries()
                    .into_iter()
                    .map(|(k, v)| Ok((k.clone(), as_str(v, &format!("{r_at}.{k}"))?.to_string())))
                    .collect::<Result<Vec<_>>>()?;
                Some(pairs)
            }
            None => None,
        };
        let fields_mapping = match o.opt("fields_mapping") {
            Some(v) => {
                let fm_at = o.child("fields_mapping");
                let mut fm = Obj::new(v, &fm_at)?;
                let mapping = FieldsMapping::from_json(fm.req("mapping")?, &fm.child("mapping"))?;
                fm.finish(&["mapping"])?;
                mapping
            }
            None => FieldsMapping::default(),
        };
        let filters = match (o.opt("sql_filters"), o.opt("filters")) {
            (Some(_), Some(_)) => {
                return Err(error(
                    at,
                    "give either 'sql_filters' or 'filters', not both",
                ))
            }
            (Some(v), None) => Some(as_str_list(v, &o.child("sql_filters"))?),
            (None, Some(v)) => Some(as_str_list(v, &o.child("filters"))?),
            (None, None) => None,
        };
        let lineage = match o.opt("lineage") {
            Some(v) => {
                let l_at = o.child("lineage");
                let mut l = Obj::new(v, &l_at)?;
                let lineage = Lineage::from_json(l.req("relationship")?, &l.child("relationship"))?;
                l.finish(&["relationship"])?;
                lineage
            }
            None => Lineage::Identity,
        };
        let optional = o
            .opt("optional")
            .map(|v| as_bool(v, &o.child("optional")))
            .transpose()?
            .unwrap_or(false);
        o.finish(&[
            "feature",
            "select",
            "rename",
            "fields_mapping",
            "sql_filters",
            "lineage",
            "optional",
        ])?;
        Ok(Self {
            feature,
            select,
            rename,
            fields_mapping,
            filters,
            lineage,
            optional,
        })
    }
}

fn field_key(v: &Value, at: &str) -> Result<FieldKey> {
    match v {
        Value::Array(parts) => {
            let parts = parts
                .iter()
                .map(|p| as_str(p, at).map(str::to_string))
                .collect::<Result<Vec<_>>>()?;
            FieldKey::from_parts(parts)
        }
        other => FieldKey::parse(as_str(other, at)?),
    }
    .map_err(|e| error(at, e.to_string()))
}

fn field_keys(v: &Value, at: &str) -> Result<Vec<FieldKey>> {
    as_array(v, at)?
        .iter()
        .enumerate()
        .map(|(i, k)| field_key(k, &format!("{at}[{i}]")))
        .collect()
}

impl FieldsMapping {
    fn to_json(&self) -> Value {
        match self {
            FieldsMapping::Default {
                match_suffix,
                exclude_fields,
            } => json!({
                "type": "default",
                "match_suffix": match_suffix,
                "exclude_fields": exclude_fields.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            FieldsMapping::Specific(map) => {
                let mapping: Map<String, Value> = map
                    .iter()
                    .map(|(k, targets)| {
                        // metaxy serialises the set of targets as parts lists sorted by parts.
                        let mut parts: Vec<&[String]> = targets.iter().map(|t| t.parts()).collect();
                        parts.sort();
                        parts.dedup();
                        (k.to_string(), json!(parts))
                    })
                    .collect();
                json!({"type": "specific", "mapping": mapping})
            }
            FieldsMapping::All => json!({"type": "all"}),
            FieldsMapping::None => json!({"type": "none"}),
        }
    }

    pub(crate) fn from_json(value: &Value, at: &str) -> Result<Self> {
        let mut o = Obj::new(value, at)?;
        let kind = as_str(o.req("type")?, &o.child("type"))?.to_string();
        let mapping = match kind.as_str() {
            "default" => {
                let match_suffix = o
                    .opt("match_suffix")
                    .map(|v| as_bool(v, &o.child("match_suffix")))
                    .transpose()?
                    .unwrap_or(false);
                let exclude_fields = o
                    .opt("exclude_fields")
                    .map(|v| field_keys(v, &o.child("exclude_fields")))
                    .transpose()?
                    .unwrap_or_default();
                o.finish(&["type", "match_suffix", "exclude_fields"])?;
                FieldsMapping::Default {
                    match_suffix,
                    exclude_fields,
                }
            }
            "specific" => {
                let m_at = o.child("mapping");
                let mut m = Obj::new(o.req("mapping")?, &m_at)?;
                let pairs = m
                    .entries()
                    .into_iter()
                    .map(|(k, v)| {
                        let k_at = format!("{m_at}.\"{k}\"");
                        Ok((field_key(&Value::String(k.clone()), &k_at)?, field_keys(v, &k_at)?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                o.finish(&["type", "mapping"])?;
                FieldsMapping::Specific(pairs)
            }
            "all" => {
                o.finish(&["type"])?;
                FieldsMapping::All
            }
            "none" => {
                o.finish(&["type"])?;
                FieldsMapping::None
            }
            other => {
                return Err(error(
                    &o.child("type"),
                    format!(
                        "unknown fields mapping type '{other}' (expected default, specific, all or none)"
                    ),
                ))
            }
        };
        Ok(mapping)
    }
}

impl Lineage {
    fn to_json(&self) -> Value {
        match self {
            Lineage::Identity => json!({"type": "1:1"}),
            Lineage::Aggregation { on } => json!({"type": "N:1", "on": on}),
            Lineage::Expansion {
                on,
                id_generation_pattern,
            } => json!({"type": "1:N", "on": on, "id_generation_pattern": id_generation_pattern}),
        }
    }

    pub(crate) fn from_json(value: &Value, at: &str) -> Result<Self> {
        let mut o = Obj::new(value, at)?;
        let kind = as_str(o.req("type")?, &o.child("type"))?.to_string();
        let lineage = match kind.as_str() {
            "1:1" => {
                o.finish(&["type"])?;
                Lineage::Identity
            }
            "N:1" => {
                let on = o
                    .opt("on")
                    .map(|v| as_str_list(v, &o.child("on")))
                    .transpose()?;
                o.finish(&["type", "on"])?;
                Lineage::Aggregation { on }
            }
            "1:N" => {
                let on = as_str_list(
                    o.opt("on")
                        .ok_or_else(|| error(at, "an expansion (1:N) lineage requires 'on'"))?,
                    &o.child("on"),
                )?;
                let id_generation_pattern = o
                    .opt("id_generation_pattern")
                    .map(|v| as_str(v, &o.child("id_generation_pattern")).map(str::to_string))
                    .transpose()?;
                o.finish(&["type", "on", "id_generation_pattern"])?;
                Lineage::Expansion {
                    on,
                    id_generation_pattern,
                }
            }
            other => {
                return Err(error(
                    &o.child("type"),
                    format!("unknown lineage type '{other}' (expected 1:1, N:1 or 1:N)"),
                ))
            }
        };
        Ok(lineage)
    }
}

impl FieldSpec {
    fn to_json(&self) -> Value {
        let deps = match &self.deps {
            FieldDeps::Mapped => json!([]),
            FieldDeps::All => json!(ALL_DEP),
            FieldDeps::Explicit(deps) => Value::Array(
                deps.iter()
                    .map(|d| {
                        json!({
                            "feature": d.feature.to_string(),
                            "fields": match &d.fields {
                                None => json!(ALL_DEP),
                                Some(fields) => json!(fields.iter().map(ToString::to_string).collect::<Vec<_>>()),
                            },
                        })
                    })
                    .collect(),
            ),
        };
        json!({"key": self.key.to_string(), "code_version": self.code_version, "deps": deps})
    }

    fn from_json(value: &Value, at: &str) -> Result<Self> {
        // metaxy accepts a bare string for a field with default code version.
        if let Value::String(s) = value {
            return Ok(FieldSpec::new(
                FieldKey::parse(s).map_err(|e| error(at, e.to_string()))?,
                DEFAULT_CODE_VERSION,
            ));
        }
        let mut o = Obj::new(value, at)?;
        let key = match o.opt("key") {
            Some(v) => field_key(v, &o.child("key"))?,
            None => FieldKey::default_field(),
        };
        let code_version = o
            .opt("code_version")
            .map(|v| as_str(v, &o.child("code_version")).map(str::to_string))
            .transpose()?
            .unwrap_or_else(|| DEFAULT_CODE_VERSION.to_string());
        let deps = match o.opt("deps") {
            None => FieldDeps::Mapped,
            Some(v) => field_deps_from_json(v, &o.child("deps"))?,
        };
        o.finish(&["key", "code_version", "deps"])?;
        Ok(Self {
            key,
            code_version,
            deps,
        })
    }
}

/// Reads a field's `deps`: `"__METAXY_ALL_DEP__"`, `[]`, or a list of `{feature, fields}`.
pub(crate) fn field_deps_from_json(v: &Value, at: &str) -> Result<FieldDeps> {
    match v {
        Value::String(s) if s == ALL_DEP => Ok(FieldDeps::All),
        Value::String(s) => Err(error(
            at,
            format!("String value must be {ALL_DEP}, got {s}"),
        )),
        Value::Array(items) if items.is_empty() => Ok(FieldDeps::Mapped),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d_at = format!("{at}[{i}]");
                let mut o = Obj::new(d, &d_at)?;
                let f_at = o.child("feature");
                let feature = FeatureKey::parse(as_str(o.req("feature")?, &f_at)?)
                    .map_err(|e| error(&f_at, e.to_string()))?;
                let fields = match o.opt("fields") {
                    None => None,
                    Some(Value::String(s)) if s == ALL_DEP || s == "all" => None,
                    Some(Value::String(s)) => {
                        return Err(error(
                            &o.child("fields"),
                            format!("String value must be {ALL_DEP}, got {s}"),
                        ))
                    }
                    Some(v) => Some(field_keys(v, &o.child("fields"))?),
                };
                o.finish(&["feature", "fields"])?;
                Ok(FieldDep { feature, fields })
            })
            .collect::<Result<Vec<_>>>()
            .map(FieldDeps::Explicit),
        _ => Err(error(
            at,
            format!("expected a list of field dependencies or \"{ALL_DEP}\""),
        )),
    }
}

/// Parses a dependency filter with DataFusion's SQL parser, so a bad filter fails when the
/// definitions load rather than when data is read.
pub fn parse_filter(
    sql: &str,
) -> std::result::Result<datafusion::sql::sqlparser::ast::Expr, String> {
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};
    if sql.trim().is_empty() {
        return Err("Filter string cannot be empty.".to_string());
    }
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| {
            let expr = p.parse_expr()?;
            p.expect_token(&datafusion::sql::sqlparser::tokenizer::Token::EOF)?;
            Ok(expr)
        })
        .map_err(|e| format!("invalid SQL filter '{sql}': {e}"))
}
