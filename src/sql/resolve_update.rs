//! The SQL form of `resolve_update`, a table function:
//! `resolve_update(feature_key [, part [, samples [, staleness]]])` in any FROM clause (joins,
//! CTEs, views, `INSERT … SELECT`, `COPY`, `EXPLAIN`). `part` is `'new'`, `'stale'` or
//! `'orphaned'`; NULL or absent gives new and stale rows with `metaxy_change`. `samples` is a
//! table name or a parquet path (when file access allows querying paths); `staleness` an SQL
//! predicate on stored rows. The increment is one lazy plan inlined into the statement.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::Result;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};

use super::action::{block_on, context_of};
use super::catalog::MetaxyState;
use super::string_args;
use crate::error::MetaxyError;
use crate::versioning::{Increment, ResolveOptions};

const FUNCTION: &str = "resolve_update";

/// `resolve_update(...)` over the session's graph and store.
#[derive(Debug)]
pub struct ResolveUpdateFunction {
    state: MetaxyState,
}

impl ResolveUpdateFunction {
    /// The function over a session's graph and store.
    pub fn new(state: MetaxyState) -> Self {
        Self { state }
    }
}

fn usage() -> MetaxyError {
    MetaxyError::usage(
        FUNCTION,
        format!(
            "expected {FUNCTION}('<feature>' [, 'new' | 'stale' | 'orphaned' | NULL [, \
             '<samples parquet or table>' | NULL [, '<staleness SQL>' | NULL]]])"
        ),
    )
}

/// Which part of the increment a call reads.
fn part_of(increment: Increment, part: Option<&str>) -> crate::Result<DataFrame> {
    Ok(match part {
        None => increment.changes,
        Some("new") => increment.new,
        Some("stale") => increment.stale,
        Some("orphaned") => increment.orphaned,
        Some(other) => return Err(part_error(other)),
    })
}

/// The samples argument: a parquet file (when the session may query paths) or a table.
async fn samples(ctx: &SessionContext, samples: &str) -> crate::Result<DataFrame> {
    let access = super::file_access::of(ctx);
    // The file system is only looked at when the session may read paths.
    let is_path = samples.ends_with(".parquet")
        || (access.url_tables && std::path::Path::new(samples).exists());
    if is_path {
        access.check_url_tables(&format!("{FUNCTION} with samples '{samples}'"))?;
        return Ok(ctx
            .read_parquet(samples, ParquetReadOptions::default())
            .await?);
    }
    Ok(ctx.table(samples).await?)
}

impl TableFunctionImpl for ResolveUpdateFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let args =
            string_args(FUNCTION, args.exprs()).and_then(|a| Ok((a, context_of(args.session())?)));
        let (args, ctx) = args?;
        if args.is_empty() || args.len() > 4 {
            return Err(usage().into());
        }
        let feature = args[0].clone().ok_or_else(usage)?;
        let part = args.get(1).cloned().flatten();
        let samples_arg = args.get(2).cloned().flatten();
        let staleness_predicates = args.get(3).cloned().flatten().into_iter().collect();
        let graph = self.state.graph();
        let key = graph.find(&feature)?.key().clone();
        if let Some(p) = part.as_deref() {
            // Refused before the store is read.
            if !matches!(p, "new" | "stale" | "orphaned") {
                return Err(part_error(p).into());
            }
        }
        let store = Arc::clone(&self.state.store);
        let df = block_on(async {
            let samples = match &samples_arg {
                Some(s) => Some(samples(&ctx, s).await?),
                None => None,
            };
            let options = ResolveOptions {
                samples,
                staleness_predicates,
                ..Default::default()
            };
            let increment =
                crate::versioning::resolve_update(&ctx, &graph, &store, &key, options).await?;
            part_of(increment, part.as_deref())
        })??;
        Ok(Arc::new(ViewTable::new(df.logical_plan().clone(), None)))
    }
}

fn part_error(part: &str) -> MetaxyError {
    MetaxyError::usage(
        FUNCTION,
        format!("unknown part '{part}' (expected new, stale, orphaned or NULL)"),
    )
}
