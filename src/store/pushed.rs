//! The feature graph `metaxy push` stored in a store (`metaxy-system/feature_versions`), read
//! back as a [`FeatureGraph`] and checked against its recorded versions.

use datafusion::prelude::SessionContext;

use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey};

use super::MetadataStore;

impl MetadataStore {
    /// The feature graph last pushed to this store by `metaxy push` (the latest row per feature
    /// of `metaxy-system/feature_versions`, optionally of one project); `None` when the store
    /// has no system table.
    pub async fn pushed_graph(
        &self,
        ctx: &SessionContext,
        project: Option<&str>,
        hash_truncation_length: usize,
    ) -> Result<Option<FeatureGraph>> {
        use crate::graph::system::{PushedFeature, FEATURE_VERSIONS_KEY};
        use datafusion::arrow::array::{Array, AsArray};
        let key = FeatureKey::parse(FEATURE_VERSIONS_KEY)?;
        let Some(scan) = self.backend.scan(&key).await? else {
            return Ok(None);
        };
        let mut df = ctx.read_table(scan.provider)?;
        if let Some(project) = project {
            df = df.filter(
                datafusion::prelude::col("project").eq(datafusion::prelude::lit(project)),
            )?;
        }
        let batches = df
            .sort(vec![
                datafusion::prelude::col("recorded_at").sort(false, true)
            ])?
            .select_columns(&[
                "project",
                "feature_key",
                "metaxy_feature_version",
                "metaxy_definition_version",
                "feature_spec",
                "feature_schema",
                "feature_class_path",
            ])?
            .collect()
            .await?;
        let mut rows: Vec<PushedFeature> = Vec::new();
        for batch in &batches {
            let text: Vec<_> = (0..batch.num_columns())
                .map(|i| {
                    datafusion::arrow::compute::cast(
                        batch.column(i),
                        &datafusion::arrow::datatypes::DataType::Utf8,
                    )
                })
                .collect::<std::result::Result<_, _>>()?;
            let text: Vec<_> = text.iter().map(|c| c.as_string::<i32>().clone()).collect();
            for r in 0..batch.num_rows() {
                let get = |i: usize| (!text[i].is_null(r)).then(|| text[i].value(r).to_string());
                let feature_key = get(1).unwrap_or_default();
                // Rows are newest first: keep the first row of each feature.
                if rows.iter().any(|p| p.feature_key == feature_key) {
                    continue;
                }
                rows.push(PushedFeature {
                    project: get(0).unwrap_or_default(),
                    feature_key,
                    feature_version: get(2).unwrap_or_default(),
                    definition_version: get(3).unwrap_or_default(),
                    feature_spec: get(4).unwrap_or_default(),
                    feature_schema: get(5).unwrap_or_default(),
                    feature_class_path: get(6),
                });
            }
        }
        let definitions = rows
            .iter()
            .map(PushedFeature::definition)
            .collect::<Result<Vec<_>>>()?;
        let graph = FeatureGraph::new(definitions, hash_truncation_length)?;
        for row in &rows {
            let computed = &graph.find(&row.feature_key)?.versions;
            if computed.feature_version != row.feature_version {
                return Err(MetaxyError::Store(format!(
                    "{FEATURE_VERSIONS_KEY} in store '{}': feature {} was pushed with version {} \
                     but its definition gives {} (hash_truncation_length = {hash_truncation_length})",
                    self.name, row.feature_key, row.feature_version, computed.feature_version
                )));
            }
        }
        Ok(Some(graph))
    }
}
