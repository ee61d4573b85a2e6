//! metaxy's store operations as table functions that return what they did; each runs when the
//! statement executes (never while planning, so `EXPLAIN` changes nothing):
//!
//! - `metaxy_hard_delete('<feature>', '<SQL predicate>' [, 'all_feature_versions'])`: physical
//!   removal of the matching rows of the current feature version (or of every version);
//!   returns `feature`, `count` (rows removed);
//! - `metaxy_drop_feature('<feature>')`: drops the feature's table; returns `feature`,
//!   `dropped` (whether the store had it);
//! - `metaxy_load_features('<file>' [, ...])`: replaces the session's feature graph with the
//!   definitions in these files (lock files or our TOML), e.g. after a code-version bump;
//!   returns `count` (features loaded). It reads files: the session's file access decides.
//!
//! `SELECT * FROM metaxy_drop_feature('example/video')`; the `metaxy-sql` shell also takes
//! `CALL metaxy_drop_feature('example/video')` for the same.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;

use super::action::{context_of, Action, ActionExec};
use super::catalog::MetaxyState;
use super::feature_table::{count_batch, count_schema};
use crate::error::MetaxyError;
use crate::store::ReadOptions;

/// The names of the procedures, as registered.
pub const PROCEDURES: [&str; 3] = [
    "metaxy_hard_delete",
    "metaxy_drop_feature",
    "metaxy_load_features",
];

/// One of [`PROCEDURES`] over a session's graph and store.
#[derive(Debug)]
pub struct Procedure {
    name: &'static str,
    state: MetaxyState,
}

impl Procedure {
    /// The procedure `name` (one of [`PROCEDURES`]).
    pub fn new(name: &'static str, state: MetaxyState) -> Self {
        Self { name, state }
    }

    fn usage(&self) -> MetaxyError {
        let takes = match self.name {
            "metaxy_hard_delete" => "('<feature>', '<SQL predicate>' [, 'all_feature_versions'])",
            "metaxy_drop_feature" => "('<feature>')",
            _ => "('<file>' [, ...])",
        };
        MetaxyError::usage(self.name, format!("expected {}{takes}", self.name))
    }
}

fn strings(values: &[&str]) -> Arc<StringArray> {
    Arc::new(StringArray::from(values.to_vec()))
}

/// The table a procedure call reads: its result, computed when the scan executes.
struct ProcedureCall {
    description: String,
    schema: SchemaRef,
    action: Action,
}

impl std::fmt::Debug for ProcedureCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcedureCall({})", self.description)
    }
}

#[async_trait]
impl TableProvider for ProcedureCall {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ActionExec::new(
            self.description.clone(),
            None,
            Arc::clone(&self.schema),
            projection.cloned(),
            Arc::clone(&self.action),
        )?))
    }
}

impl TableFunctionImpl for Procedure {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let values = super::string_args(self.name, args.exprs())?;
        let Some(values) = values.into_iter().collect::<Option<Vec<String>>>() else {
            return Err(self.usage().into());
        };
        let ctx = context_of(args.session())?;
        let state = self.state.clone();
        let graph = state.graph();
        let (schema, action): (SchemaRef, Action) = match (self.name, values.as_slice()) {
            ("metaxy_hard_delete", [feature, predicate, scope @ ..]) if scope.len() <= 1 => {
                let all_feature_versions = match scope {
                    [] => false,
                    [s] if s.eq_ignore_ascii_case("all_feature_versions") => true,
                    [other] => {
                        return Err(MetaxyError::usage(
                            self.name,
                            format!(
                                "unknown scope '{other}' (expected 'all_feature_versions' or \
                                 nothing for the current version)"
                            ),
                        )
                        .into())
                    }
                    _ => return Err(self.usage().into()),
                };
                let key = graph.find(feature)?.key().clone();
                let predicate = predicate.clone();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("feature", DataType::Utf8, false),
                    Field::new("count", DataType::UInt64, false),
                ]));
                let out = Arc::clone(&schema);
                let action: Action = Arc::new(move |_| {
                    let (ctx, state, key, predicate, out) = (
                        ctx.clone(),
                        state.clone(),
                        key.clone(),
                        predicate.clone(),
                        Arc::clone(&out),
                    );
                    Box::pin(async move {
                        let graph = state.graph();
                        // The predicate may name any stored column, of any version or row.
                        let every_row = ReadOptions {
                            all_feature_versions: true,
                            history: true,
                            include_deleted: true,
                            ..Default::default()
                        };
                        let rows = DataFrame::new(
                            ctx.state(),
                            crate::store::table_plan(&state.store, &graph, &key, &every_row)
                                .await?,
                        );
                        let predicate = rows.parse_sql_expr(&predicate)?;
                        let removed = state
                            .store
                            .hard_delete(&ctx, &graph, &key, predicate, all_feature_versions)
                            .await?;
                        let count = count_batch(removed)?;
                        Ok(RecordBatch::try_new(
                            out,
                            vec![strings(&[&key.to_string()]), Arc::clone(count.column(0))],
                        )?)
                    })
                });
                (schema, action)
            }
            ("metaxy_drop_feature", [feature]) => {
                let key = graph.find(feature)?.key().clone();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("feature", DataType::Utf8, false),
                    Field::new("dropped", DataType::Boolean, false),
                ]));
                let out = Arc::clone(&schema);
                let action: Action = Arc::new(move |_| {
                    let (state, key, out) = (state.clone(), key.clone(), Arc::clone(&out));
                    Box::pin(async move {
                        let existed = state.store.has_feature(&key).await?;
                        state.store.drop_feature(&key).await?;
                        Ok(RecordBatch::try_new(
                            out,
                            vec![
                                strings(&[&key.to_string()]),
                                Arc::new(BooleanArray::from(vec![existed])),
                            ],
                        )?)
                    })
                });
                (schema, action)
            }
            ("metaxy_load_features", paths) if !paths.is_empty() => {
                super::file_access::of(&ctx).check_path_function(self.name)?;
                let paths: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
                let action: Action = Arc::new(move |_| {
                    let (state, paths) = (state.clone(), paths.clone());
                    Box::pin(async move {
                        let graph = state.config.load_features(&paths)?;
                        let n = graph.features().count() as u64;
                        state.set_graph(Arc::new(graph));
                        count_batch(n)
                    })
                });
                (count_schema(), action)
            }
            _ => return Err(self.usage().into()),
        };
        Ok(Arc::new(ProcedureCall {
            description: format!("{}({})", self.name, quoted(&values)),
            schema,
            action,
        }))
    }
}

fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}
