//! `resolve_update`: which samples of a feature are new, stale or orphaned, as one DataFusion
//! plan per part over the store (nothing is collected in between): upstream current views are
//! prepared per dependency (rename, filters, select), joined on the join columns, each field's
//! provenance is hashed with the hash UDFs exactly as metaxy builds it, and the result is
//! compared with the feature's stored current view.
//!
//! First cut: identity (1:1) lineage, optional dependencies next to at least one required one,
//! root features with `samples`. Aggregation (N:1) and expansion (1:N) lineage and all-optional
//! dependencies are rejected with a clear error until they land.

use datafusion::common::{JoinType, ScalarValue};
use datafusion::functions::core::expr_fn::{coalesce, get_field, named_struct};
use datafusion::functions::string::expr_fn::concat_ws;
use datafusion::logical_expr::{binary_expr, col, lit, Expr, Operator};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion_metaxy_udfs::functions::metaxy_hash;

use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey, Lineage};
use crate::store::columns::*;
use crate::store::{column_names, MetadataStore, ReadOptions};

/// Options of [`resolve_update`].
#[derive(Default)]
pub struct ResolveOptions {
    /// The expected samples (required for a root feature): ids plus
    /// `metaxy_provenance_by_field` (and optionally `metaxy_provenance`, data versions).
    pub samples: Option<DataFrame>,
    /// SQL predicates over the stored rows that make a sample stale.
    pub staleness_predicates: Vec<String>,
}

/// The three parts of an update, each a lazy DataFrame.
pub struct Increment {
    /// Expected samples with no stored row.
    pub new: DataFrame,
    /// Expected samples whose stored provenance differs (or a staleness predicate holds).
    pub stale: DataFrame,
    /// Stored samples no longer expected (with the stored columns).
    pub orphaned: DataFrame,
}

fn unsupported(key: &FeatureKey, what: &str) -> MetaxyError {
    MetaxyError::Store(format!(
        "resolve_update of {key}: {what} is not supported yet"
    ))
}

/// Computes the increment of `key` against `store`.
pub async fn resolve_update(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    options: ResolveOptions,
) -> Result<Increment> {
    let feature = graph.feature(key)?;
    let spec = feature.spec();
    let truncate = graph.hash_truncation_length();
    let struct_keys: Vec<String> = spec.fields.iter().map(|f| f.key.struct_key()).collect();

    let expected = match options.samples {
        Some(samples) => with_defaults(samples, &struct_keys, store, truncate)?,
        None if spec.deps.is_empty() => {
            return Err(MetaxyError::Store(format!(
                "resolve_update of root feature {key} needs samples (ids and \
                 metaxy_provenance_by_field)"
            )))
        }
        None => expected_from_upstream(ctx, graph, store, key).await?,
    };

    let ids: Vec<String> = spec.id_columns.clone();
    let current = store
        .read_if_present(ctx, graph, key, &ReadOptions::default())
        .await?;
    let Some(current) = current else {
        let none = expected.clone().filter(lit(false))?;
        return Ok(Increment {
            new: expected,
            stale: none.clone(),
            orphaned: none,
        });
    };
    // Stored columns under a prefix so the joins never see two columns of one name.
    let stored_names: Vec<String> = column_names(&current);
    let mut staleness = Vec::new();
    for p in &options.staleness_predicates {
        staleness.push(current.parse_sql_expr(p)?);
    }
    let prefixed = current.clone().select(
        stored_names
            .iter()
            .map(|n| col(n.as_str()).alias(format!("__stored_{n}")))
            .collect::<Vec<Expr>>(),
    )?;
    let exp_names: Vec<String> = column_names(&expected);
    let left_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let right_ids: Vec<String> = ids.iter().map(|c| format!("__stored_{c}")).collect();
    let right_ids: Vec<&str> = right_ids.iter().map(String::as_str).collect();

    let new = expected.clone().join(
        prefixed.clone(),
        JoinType::LeftAnti,
        &left_ids,
        &right_ids,
        None,
    )?;
    let mut is_stale = binary_expr(
        col(PROVENANCE),
        Operator::IsDistinctFrom,
        col(format!("__stored_{PROVENANCE}")),
    );
    for p in staleness {
        // Evaluate each predicate on the prefixed stored columns.
        let p = p.transform_up_columns_prefixed()?;
        is_stale = is_stale.or(p.is_true());
    }
    let stale = expected
        .clone()
        .join(
            prefixed,
            JoinType::Inner,
            &left_ids,
            &right_ids,
            Some(is_stale),
        )?
        .select(
            exp_names
                .iter()
                .map(|n| col(n.as_str()))
                .collect::<Vec<Expr>>(),
        )?;
    let expected_ids = expected.clone().select(
        ids.iter()
            .map(|c| col(c.as_str()).alias(format!("__expected_{c}")))
            .collect::<Vec<Expr>>(),
    )?;
    let exp_ids: Vec<String> = ids.iter().map(|c| format!("__expected_{c}")).collect();
    let exp_ids: Vec<&str> = exp_ids.iter().map(String::as_str).collect();
    let orphaned = current.join(expected_ids, JoinType::LeftAnti, &left_ids, &exp_ids, None)?;
    Ok(Increment {
        new,
        stale,
        orphaned,
    })
}

/// Adds `metaxy_provenance` and data versions to caller-given samples when missing.
fn with_defaults(
    samples: DataFrame,
    struct_keys: &[String],
    store: &MetadataStore,
    truncate: usize,
) -> Result<DataFrame> {
    let names: Vec<String> = column_names(&samples);
    let has = |n: &str| names.iter().any(|x| x == n);
    if !has(PROVENANCE_BY_FIELD) {
        return Err(MetaxyError::Store(format!(
            "samples must have a '{PROVENANCE_BY_FIELD}' column"
        )));
    }
    let mut df = samples;
    if !has(PROVENANCE) {
        df = df.with_column(
            PROVENANCE,
            crate::store::struct_hash(col(PROVENANCE_BY_FIELD), struct_keys, store, truncate),
        )?;
    }
    if !has(DATA_VERSION_BY_FIELD) {
        df = df.with_column(DATA_VERSION_BY_FIELD, col(PROVENANCE_BY_FIELD))?;
    }
    if !has(DATA_VERSION) {
        df = df.with_column(DATA_VERSION, col(PROVENANCE))?;
    }
    Ok(df)
}

/// The expected rows of a non-root feature from its upstream features' current views.
async fn expected_from_upstream(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
) -> Result<DataFrame> {
    let feature = graph.feature(key)?;
    let spec = feature.spec();
    let join = &feature.plan.join_columns;
    if spec.deps.iter().all(|d| d.optional) {
        return Err(unsupported(
            key,
            "a feature whose dependencies are all optional",
        ));
    }
    let mut joined: Option<DataFrame> = None;
    let mut deps = spec.deps.clone();
    // Required dependencies first, so optional ones can be left-joined onto them.
    deps.sort_by_key(|d| d.optional);
    for dep in &deps {
        if !matches!(dep.lineage, Lineage::Identity) {
            return Err(unsupported(
                key,
                "aggregation (N:1) and expansion (1:N) lineage",
            ));
        }
        let upstream = graph.feature(&dep.feature)?;
        let up_spec = upstream.spec();
        let df = store
            .read(ctx, graph, &dep.feature, &ReadOptions::default())
            .await?;
        let user: Vec<String> = column_names(&df)
            .into_iter()
            .filter(|n| !ALL.contains(&n.as_str()))
            .collect();
        // rename, then filters, then select (post-rename names).
        let mut exprs: Vec<Expr> = user
            .iter()
            .map(|c| {
                let to = dep.renamed(c);
                if to == *c {
                    col(c.as_str())
                } else {
                    col(c.as_str()).alias(to)
                }
            })
            .collect();
        let suffix = dep.feature.struct_key();
        let dv_col = format!("{DATA_VERSION_BY_FIELD}__{suffix}");
        exprs.push(col(DATA_VERSION_BY_FIELD).alias(dv_col.clone()));
        let mut df = df.select(exprs)?;
        for f in dep.filters.iter().flatten() {
            let predicate = df.parse_sql_expr(f)?;
            df = df.filter(predicate)?;
        }
        let ids: Vec<String> = up_spec.id_columns.iter().map(|c| dep.renamed(c)).collect();
        let keep: Vec<String> = user
            .iter()
            .map(|c| dep.renamed(c))
            .filter(|c| {
                ids.contains(c)
                    || join.contains(c)
                    || spec.id_columns.contains(c)
                    || dep.select.as_ref().is_none_or(|s| s.contains(c))
            })
            .chain(std::iter::once(dv_col.clone()))
            .collect();
        let df = df.select(keep.iter().map(|c| col(c.as_str())).collect::<Vec<Expr>>())?;
        joined = Some(match joined {
            None => df,
            Some(left) => {
                // Right-side join columns get temporary names, dropped after the join.
                let right_names: Vec<String> = column_names(&df);
                let right = df.select(
                    right_names
                        .iter()
                        .map(|n| {
                            if join.contains(n) {
                                col(n.as_str()).alias(format!("__right_{n}"))
                            } else {
                                col(n.as_str())
                            }
                        })
                        .collect::<Vec<Expr>>(),
                )?;
                let l: Vec<&str> = join.iter().map(String::as_str).collect();
                let r: Vec<String> = join.iter().map(|c| format!("__right_{c}")).collect();
                let r: Vec<&str> = r.iter().map(String::as_str).collect();
                let kind = if dep.optional {
                    JoinType::Left
                } else {
                    JoinType::Inner
                };
                let out = left.join(right, kind, &l, &r, None)?;
                let keep: Vec<Expr> = column_names(&out)
                    .into_iter()
                    .filter(|n| !n.starts_with("__right_"))
                    .map(|n| col(n.as_str()))
                    .collect();
                out.select(keep)?
            }
        });
    }
    let joined = joined.expect("a non-root feature has dependencies");

    // Field provenance: concat_ws('|', key, code version, then per parent field in fq order
    // its fq key and the parent's data version), hashed and truncated.
    let alg = store.hash_algorithm();
    let truncate = graph.hash_truncation_length();
    let optional: Vec<&FeatureKey> = spec
        .deps
        .iter()
        .filter(|d| d.optional)
        .map(|d| &d.feature)
        .collect();
    let mut struct_args = Vec::new();
    let mut struct_keys = Vec::new();
    for (field_key, parents) in &feature.plan.field_parents {
        let field = spec.field(field_key).expect("planned fields exist");
        let mut parts = vec![lit(field_key.to_string()), lit(field.code_version.clone())];
        // Polars' concat_str gives NULL when a part is NULL, DataFusion's concat_ws skips it:
        // keep the reference's NULL (optional values were made "" above).
        let mut any_null: Option<Expr> = None;
        for p in parents {
            let value = get_field(
                col(format!(
                    "{DATA_VERSION_BY_FIELD}__{}",
                    p.feature.struct_key()
                )),
                p.field.struct_key(),
            );
            let value = if optional.contains(&&p.feature) {
                coalesce(vec![value, lit("")])
            } else {
                let null = value.clone().is_null();
                any_null = Some(match any_null {
                    None => null,
                    Some(prev) => prev.or(null),
                });
                value
            };
            parts.push(lit(p.to_string()));
            parts.push(value);
        }
        let mut hashed = metaxy_hash(concat_ws(lit("|"), parts), alg, Some(truncate));
        if let Some(any_null) = any_null {
            hashed = datafusion::logical_expr::when(any_null, lit(ScalarValue::Utf8(None)))
                .otherwise(hashed)?;
        }
        struct_keys.push(field_key.struct_key());
        struct_args.push(lit(field_key.struct_key()));
        struct_args.push(hashed);
    }
    let pbf = named_struct(struct_args);
    let carried: Vec<Expr> = column_names(&joined)
        .into_iter()
        .filter(|n| !n.starts_with(DATA_VERSION_BY_FIELD))
        .map(|n| col(n.as_str()))
        .collect();
    let mut exprs = carried;
    exprs.push(pbf.alias(PROVENANCE_BY_FIELD));
    let df = joined.select(exprs)?;
    with_defaults(df, &struct_keys, store, truncate)
}

/// Rewrites column references to the `__stored_` names used in the comparison join.
trait PrefixColumns {
    fn transform_up_columns_prefixed(self) -> Result<Expr>;
}

impl PrefixColumns for Expr {
    fn transform_up_columns_prefixed(self) -> Result<Expr> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        Ok(self
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => Transformed::yes(col(format!("__stored_{}", c.name))),
                    other => Transformed::no(other),
                })
            })?
            .data)
    }
}
