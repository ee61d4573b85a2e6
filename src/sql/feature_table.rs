//! [`FeatureTable`]: a feature's table in SQL. Reads are the store's current view (or, under
//! `history.`, every stored row); writes are DataFusion's DML on the provider: `INSERT` appends
//! through the store's write (system columns filled), `DELETE` soft-deletes, and what metaxy
//! never does (UPDATE in place, TRUNCATE, OVERWRITE, writing history) is refused with the reason.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::action::{context_of, Action, ActionExec};
use super::catalog::MetaxyState;
use crate::error::MetaxyError;
use crate::graph::FeatureKey;

/// The rows to write without the system columns that are NULL in every row. SQL fills the
/// columns an `INSERT (…)` does not name with NULL, and a session without the analyzer rule of
/// [`super::dml`] (datafusion-python's, datafusion-cli's) hands them on; the store's write fills
/// a system column only when it is absent (versions, provenance, timestamps), so one NULL in
/// every row counts as not given and is dropped here rather than stored as NULL.
fn without_unset_system_columns(
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let unset = |index: usize| {
        crate::store::columns::ALL.contains(&schema.field(index).name().as_str())
            && rows
                .iter()
                .all(|batch| batch.column(index).logical_null_count() == batch.num_rows())
    };
    let kept: Vec<usize> = (0..schema.fields().len()).filter(|i| !unset(*i)).collect();
    if kept.len() == schema.fields().len() {
        return Ok((schema, rows));
    }
    let rows = rows
        .iter()
        .map(|batch| batch.project(&kept))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((Arc::new(schema.project(&kept)?), rows))
}

/// The one-row `count` result of a write, as DataFusion's own DML returns.
pub(crate) fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

pub(crate) fn count_batch(rows: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?)
}

/// The error for a statement a feature table cannot honour.
pub(crate) fn refuse(statement: &str, clause: &str, why: &str) -> DataFusionError {
    MetaxyError::Unsupported(format!("{clause} in {statement} on a feature table: {why}")).into()
}

/// A feature's table: its rows as a view over the store, its writes through the store.
#[derive(Debug)]
pub struct FeatureTable {
    state: MetaxyState,
    key: FeatureKey,
    view: ViewTable,
    /// `history.<table>`: every stored row, read-only.
    history: bool,
    /// The predicate of the DELETE this table is the target of (set while analysing the
    /// statement, see `super::dml`): exactly the statement's WHERE clause.
    delete_predicate: Option<Expr>,
}

impl FeatureTable {
    /// The table of `key` reading `view` (its current view, or its history when `history`).
    pub(crate) fn new(
        state: MetaxyState,
        key: FeatureKey,
        view: LogicalPlan,
        history: bool,
    ) -> Self {
        Self {
            state,
            key,
            view: ViewTable::new(view, None),
            history,
            delete_predicate: None,
        }
    }

    /// The feature this table holds.
    pub fn key(&self) -> &FeatureKey {
        &self.key
    }

    /// Whether this is a read-only `history.<table>`.
    pub fn is_history(&self) -> bool {
        self.history
    }

    /// The same table as the target of a DELETE of the rows matching `predicate`.
    pub(crate) fn deleting(&self, predicate: Expr) -> Self {
        Self {
            state: self.state.clone(),
            key: self.key.clone(),
            view: ViewTable::new(self.view.logical_plan().clone(), None),
            history: self.history,
            delete_predicate: Some(predicate),
        }
    }

    /// The error for a write to `history.<table>`.
    pub(crate) fn read_only(key: &FeatureKey) -> DataFusionError {
        let table = key.table_name();
        MetaxyError::Unsupported(format!(
            "history.{table} is read-only: write to the feature table {table} instead"
        ))
        .into()
    }

    fn writable(&self) -> Result<()> {
        if self.history {
            return Err(Self::read_only(&self.key));
        }
        Ok(())
    }
}

#[async_trait]
impl TableProvider for FeatureTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.view.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.view.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.view.scan(state, projection, filters, limit).await
    }

    /// Appends the input's rows as metaxy's write does: columns by name, system columns
    /// filled, the stored table's columns and types kept (a new column is added).
    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        match insert_op {
            InsertOp::Append => {}
            InsertOp::Overwrite => {
                return Err(refuse(
                    "INSERT",
                    "OVERWRITE",
                    "feature tables are append-only; delete rows with DELETE (soft) or \
                     metaxy_hard_delete first",
                ))
            }
            InsertOp::Replace => {
                return Err(refuse("INSERT", "REPLACE INTO", "every write appends"))
            }
        }
        let ctx = context_of(state)?;
        let (metaxy, key) = (self.state.clone(), self.key.clone());
        let schema = input.schema();
        let action: Action = Arc::new(move |rows| {
            let (ctx, metaxy, key, schema) = (
                ctx.clone(),
                metaxy.clone(),
                key.clone(),
                Arc::clone(&schema),
            );
            Box::pin(async move {
                let (schema, rows) = without_unset_system_columns(schema, rows)?;
                let data = ctx.read_table(Arc::new(MemTable::try_new(schema, vec![rows])?))?;
                let graph = metaxy.graph();
                let written = metaxy.store.write(&graph, &key, data).await?;
                count_batch(written)
            })
        });
        let description = format!("append to {}", self.key);
        Ok(Arc::new(ActionExec::new(
            description,
            Some(input),
            count_schema(),
            None,
            action,
        )?))
    }

    /// Soft-deletes the current rows matching the statement's WHERE clause (tombstones with
    /// `metaxy_deleted_at`).
    async fn delete_from(
        &self,
        state: &dyn Session,
        _filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        // DataFusion's filters of a DELETE may include the view's own conditions; the
        // statement's predicate is taken while analysing it instead.
        let predicate = self.delete_predicate.clone().ok_or_else(|| {
            DataFusionError::Plan(format!(
                "DELETE FROM {} was not analysed by datafusion-metaxy's rule (build the \
                 session with new_context)",
                self.key.table_name()
            ))
        })?;
        let ctx = context_of(state)?;
        let (metaxy, key) = (self.state.clone(), self.key.clone());
        let action: Action = Arc::new(move |_| {
            let (ctx, metaxy, key, predicate) =
                (ctx.clone(), metaxy.clone(), key.clone(), predicate.clone());
            Box::pin(async move {
                let graph = metaxy.graph();
                let deleted = metaxy
                    .store
                    .soft_delete(&ctx, &graph, &key, predicate)
                    .await?;
                count_batch(deleted)
            })
        });
        Ok(Arc::new(ActionExec::new(
            format!("soft delete from {}", self.key),
            None,
            count_schema(),
            None,
            action,
        )?))
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _assignments: Vec<(String, Expr)>,
        _filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        Err(refuse(
            "UPDATE",
            "UPDATE",
            "feature tables are append-only; INSERT the new rows instead",
        ))
    }

    async fn truncate(&self, _state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        self.writable()?;
        Err(MetaxyError::Unsupported(format!(
            "TRUNCATE of a feature table: use SELECT * FROM metaxy_hard_delete('{}', 'true', \
             'all_feature_versions') or metaxy_drop_feature",
            self.key
        ))
        .into())
    }
}
