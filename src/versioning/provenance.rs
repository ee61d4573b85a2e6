//! Sample provenance: the hashed field strings of a feature's expected rows, and the
//! sample-level values derived from them.

use datafusion::common::Column;
use datafusion::functions::core::expr_fn::{coalesce, get_field, named_struct};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::prelude::DataFrame;
use datafusion_metaxy_udfs::functions::metaxy_hash_concat;

use super::upstream::data_version_column;
use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey};
use crate::store::columns::*;
use crate::store::{column_names, MetadataStore};

/// Adds `metaxy_provenance_by_field` to the joined upstream rows of `key`: for every field,
/// `concat_ws('|', field key, code version, then per parent field in fq-key order its fq key
/// and that parent's data version)`, hashed with the store's algorithm and truncated. The
/// upstream data-version columns are dropped; the sample-level columns follow
/// ([`with_defaults`]).
pub(super) fn field_provenance(
    joined: DataFrame,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
) -> Result<DataFrame> {
    let feature = graph.feature(key)?;
    let spec = feature.spec();
    let alg = store.hash_algorithm();
    let truncate = graph.hash_truncation_length();
    let optional: Vec<&FeatureKey> = spec
        .deps
        .iter()
        .filter(|d| d.optional)
        .map(|d| &d.feature)
        .collect();
    let mut hashes = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    for (field_key, parents) in &feature.plan.field_parents {
        let field = spec.field(field_key).expect("planned fields exist");
        let mut parts = vec![lit(field_key.to_string()), lit(field.code_version.clone())];
        for p in parents {
            let value = get_field(col(data_version_column(&p.feature)), p.field.struct_key());
            // A missing optional value is "" (as metaxy fills it); a NULL required value makes
            // the field NULL, as Polars' concat_str (metaxy_hash_concat's semantics).
            let value = if optional.contains(&&p.feature) {
                coalesce(vec![value, lit("")])
            } else {
                value
            };
            parts.push(lit(p.to_string()));
            parts.push(value);
        }
        let hashed = metaxy_hash_concat(alg, Some(truncate), "|", parts);
        let column = format!("__metaxy_field_hash_{}", hashes.len());
        hashes.push(hashed.alias(&column));
        fields.push((field_key.struct_key(), column));
    }
    // Field hashes first, as columns, so that the struct and the sample provenance both read
    // them: built inline, the optimizer would inline the struct into the sample hash and
    // compute every field hash twice.
    let kept: Vec<Expr> = column_names(&joined)
        .into_iter()
        .filter(|n| !n.starts_with(DATA_VERSION_BY_FIELD))
        .map(|n| col(n.as_str()))
        .collect();
    let df = joined.select(kept.iter().cloned().chain(hashes).collect::<Vec<_>>())?;
    let struct_args = fields
        .iter()
        .flat_map(|(key, column)| [lit(key.as_str()), col(column.as_str())])
        .collect();
    let by_field = fields
        .iter()
        .map(|(key, column)| (key.clone(), col(column.as_str())))
        .collect();
    let mut exprs = kept;
    exprs.push(named_struct(struct_args).alias(PROVENANCE_BY_FIELD));
    exprs.push(
        crate::hashing::sample_hash(by_field, store.hash_algorithm(), truncate).alias(PROVENANCE),
    );
    let df = df.select(exprs)?;
    let struct_keys: Vec<String> = fields.into_iter().map(|(k, _)| k).collect();
    with_defaults(df, &struct_keys, store, truncate)
}

/// Adds `metaxy_provenance` (hash of the field provenances in struct-key order) when missing
/// (the data versions follow after the comparison: [`with_data_versions`]).
pub(super) fn with_defaults(
    samples: DataFrame,
    struct_keys: &[String],
    store: &MetadataStore,
    truncate: usize,
) -> Result<DataFrame> {
    let names: Vec<String> = column_names(&samples);
    let has = |n: &str| names.iter().any(|x| x == n);
    if !has(PROVENANCE_BY_FIELD) {
        return Err(MetaxyError::usage(
            "resolve_update",
            format!(
                "samples must have a '{PROVENANCE_BY_FIELD}' column (a struct of the provenance \
                 of each field; columns given: {})",
                names.join(", ")
            ),
        ));
    }
    let mut df = samples;
    if !has(PROVENANCE) {
        df = df.with_column(
            PROVENANCE,
            crate::hashing::struct_hash(
                col(PROVENANCE_BY_FIELD),
                struct_keys,
                store.hash_algorithm(),
                truncate,
            ),
        )?;
    }
    Ok(df)
}

/// Adds the data versions, defaulting to the provenance, when missing (before `change`, the
/// change column, when there is one). Added after the comparison, which needs only the
/// provenance, so the join and the filter of the comparison do not carry copies of it.
pub(super) fn with_data_versions(df: DataFrame, change: &str) -> Result<DataFrame> {
    let names: Vec<String> = column_names(&df);
    let has = |n: &str| names.iter().any(|x| x == n);
    if has(DATA_VERSION_BY_FIELD) && has(DATA_VERSION) {
        return Ok(df);
    }
    let column = |n: &str| Expr::Column(Column::from_name(n));
    let mut exprs: Vec<Expr> = names
        .iter()
        .filter(|n| *n != change)
        .map(|n| column(n))
        .collect();
    if !has(DATA_VERSION_BY_FIELD) {
        exprs.push(column(PROVENANCE_BY_FIELD).alias(DATA_VERSION_BY_FIELD));
    }
    if !has(DATA_VERSION) {
        exprs.push(column(PROVENANCE).alias(DATA_VERSION));
    }
    if has(change) {
        exprs.push(column(change));
    }
    Ok(df.select(exprs)?)
}
