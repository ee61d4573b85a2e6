//! metaxy's sample-provenance rule as expressions: the hash of a sample's per-field values,
//! shared by writes (`store`) and `resolve_update` (`versioning`), which both sit above it.

use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{lit, Expr};
use datafusion_metaxy_udfs::functions::metaxy_hash_concat;
use datafusion_metaxy_udfs::HashAlgorithm;

/// metaxy's sample-level rule, its one definition: a sample's provenance (or data version) is
/// its per-field values in field-key order joined with `|`, hashed with the store's `algorithm`
/// and truncated; NULL when any value is NULL (Polars' `concat_str`); the hash of "" without
/// fields. `by_field` holds (struct key, value) pairs in any order.
pub(crate) fn sample_hash(
    mut by_field: Vec<(String, Expr)>,
    algorithm: HashAlgorithm,
    truncate: usize,
) -> Expr {
    by_field.sort_by(|a, b| a.0.cmp(&b.0));
    let mut parts: Vec<Expr> = by_field.into_iter().map(|(_, value)| value).collect();
    if parts.is_empty() {
        parts.push(lit(""));
    }
    metaxy_hash_concat(algorithm, Some(truncate), "|", parts)
}

/// [`sample_hash`] of a provenance-like struct column with the given keys.
pub(crate) fn struct_hash(
    struct_col: Expr,
    struct_keys: &[String],
    algorithm: HashAlgorithm,
    truncate: usize,
) -> Expr {
    let by_field = struct_keys
        .iter()
        .map(|k| (k.clone(), get_field(struct_col.clone(), k.as_str())))
        .collect();
    sample_hash(by_field, algorithm, truncate)
}
