//! `metaxy_features()` and `metaxy_fields()`: the loaded feature graph as SQL tables.
//! Both are table functions over the session's graph, one row per feature or field, with the
//! definition-level versions computed from the definitions alone.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;

use crate::graph::{Feature, FeatureGraph};
use crate::sql::catalog::MetaxyState;

/// `metaxy_features([feature_key])`: one row per feature, in topological order, with where its
/// definition came from (`source`: a file, the lock, the store's pushed rows).
#[derive(Debug)]
pub struct FeaturesFunction {
    state: MetaxyState,
}

/// `metaxy_fields([feature_key])`: one row per field.
#[derive(Debug)]
pub struct FieldsFunction {
    state: MetaxyState,
}

impl FeaturesFunction {
    /// The function over a graph.
    pub fn new(state: MetaxyState) -> Self {
        Self { state }
    }
}

impl FieldsFunction {
    /// The function over a graph.
    pub fn new(state: MetaxyState) -> Self {
        Self { state }
    }
}

fn list_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        false,
    )
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

/// The features selected by the optional feature-key argument.
fn selected<'a>(
    function: &str,
    graph: &'a FeatureGraph,
    exprs: &[Expr],
) -> Result<Vec<&'a Feature>> {
    match exprs {
        [] => Ok(graph.features().collect()),
        [Expr::Literal(ScalarValue::Utf8(Some(key)), _)] => Ok(vec![graph.find(key)?]),
        _ => plan_err!(
            "{function} takes no argument or one feature key string, e.g. {function}('example/video')"
        ),
    }
}

fn strings(values: impl IntoIterator<Item = String>) -> ArrayRef {
    Arc::new(
        values
            .into_iter()
            .map(Some)
            .collect::<datafusion::arrow::array::StringArray>(),
    )
}

fn lists(values: impl IntoIterator<Item = Vec<String>>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in values {
        for v in row {
            builder.values().append_value(v);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn table(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

impl TableFunctionImpl for FeaturesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let graph = self.state.graph();
        let features = selected("metaxy_features", &graph, args.exprs())?;
        let schema = Arc::new(Schema::new(vec![
            utf8("feature_key"),
            utf8("table_name"),
            utf8("project"),
            list_field("id_columns"),
            utf8("feature_version"),
            utf8("code_version"),
            utf8("spec_version"),
            utf8("definition_version"),
            utf8("project_version"),
            list_field("parent_keys"),
            Field::new("source", DataType::Utf8, true),
        ]));
        let col = |f: fn(&Feature) -> String| strings(features.iter().map(|x| f(x)));
        let columns = vec![
            col(|f| f.key().to_string()),
            col(|f| f.key().table_name()),
            col(|f| f.definition.project.clone()),
            lists(features.iter().map(|f| f.spec().id_columns.clone())),
            col(|f| f.versions.feature_version.clone()),
            col(|f| f.versions.code_version.clone()),
            col(|f| f.versions.spec_version.clone()),
            col(|f| f.versions.definition_version.clone()),
            strings(
                features
                    .iter()
                    .map(|f| graph.project_version(&f.definition.project)),
            ),
            lists(
                features
                    .iter()
                    .map(|f| f.plan.parents.iter().map(ToString::to_string).collect()),
            ),
            Arc::new(StringArray::from_iter(
                features.iter().map(|f| graph.source(f.key())),
            )),
        ];
        table(schema, columns)
    }
}

impl TableFunctionImpl for FieldsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let graph = self.state.graph();
        let features = selected("metaxy_fields", &graph, args.exprs())?;
        let schema = Arc::new(Schema::new(vec![
            utf8("feature_key"),
            utf8("field_key"),
            utf8("struct_key"),
            utf8("code_version"),
            utf8("field_version"),
            list_field("upstream_fields"),
        ]));
        let rows: Vec<_> = features
            .iter()
            .flat_map(|f| {
                f.plan.field_parents.iter().map(move |(key, parents)| {
                    let spec = f.spec().field(key).expect("planned fields exist");
                    (
                        f.key().to_string(),
                        key.to_string(),
                        key.struct_key(),
                        spec.code_version.clone(),
                        f.versions.field(key).unwrap_or_default().to_string(),
                        parents.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    )
                })
            })
            .collect();
        let columns = vec![
            strings(rows.iter().map(|r| r.0.clone())),
            strings(rows.iter().map(|r| r.1.clone())),
            strings(rows.iter().map(|r| r.2.clone())),
            strings(rows.iter().map(|r| r.3.clone())),
            strings(rows.iter().map(|r| r.4.clone())),
            lists(rows.iter().map(|r| r.5.clone())),
        ];
        table(schema, columns)
    }
}
