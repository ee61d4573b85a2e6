//! Building a feature graph in Rust, for apps that embed the engine.
//! The builders produce the same definitions a lock file or our TOML gives, so the graph and
//! its versions are checked and computed the same way.

use super::spec::{FeatureDep, FeatureSpec, FieldDeps, FieldSpec};
use super::{
    FeatureDefinition, FeatureGraph, FeatureKey, FieldKey, DEFAULT_HASH_TRUNCATION_LENGTH,
};
use crate::error::{MetaxyError, Result};

/// Builds a [`FeatureGraph`]; key errors are collected and reported by [`GraphBuilder::build`].
///
/// ```
/// use datafusion_metaxy::graph::{FeatureBuilder, GraphBuilder};
///
/// let graph = GraphBuilder::new("example")
///     .feature(FeatureBuilder::new("example/video", ["video_id"]).field("audio", "1").field("frames", "1"))
///     .feature(
///         FeatureBuilder::new("example/crop", ["video_id"])
///             .dep("example/video")
///             .field("audio", "1")
///             .field("frames", "1"),
///     )
///     .build()
///     .unwrap();
/// let crop = graph.find("example/crop").unwrap();
/// assert_eq!(crop.versions.feature_version.len(), 8);
/// ```
#[derive(Debug)]
pub struct GraphBuilder {
    project: String,
    hash_truncation_length: usize,
    definitions: Vec<FeatureDefinition>,
    errors: Vec<MetaxyError>,
}

impl GraphBuilder {
    /// A builder for features of `project`.
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            hash_truncation_length: DEFAULT_HASH_TRUNCATION_LENGTH,
            definitions: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// metaxy's `hash_truncation_length` (default 8, minimum 8).
    pub fn hash_truncation_length(mut self, n: usize) -> Self {
        self.hash_truncation_length = n;
        self
    }

    /// Adds a feature.
    pub fn feature(mut self, feature: FeatureBuilder) -> Self {
        match feature.finish() {
            Ok(spec) => self
                .definitions
                .push(FeatureDefinition::new(spec, self.project.clone())),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Adds a full definition (e.g. one read from a lock file).
    pub fn definition(mut self, definition: FeatureDefinition) -> Self {
        self.definitions.push(definition);
        self
    }

    /// Validates the graph and computes its versions.
    pub fn build(mut self) -> Result<FeatureGraph> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        FeatureGraph::new(self.definitions, self.hash_truncation_length)
    }
}

/// Builds one [`FeatureSpec`]. Until a field is added the feature has metaxy's single `default`
/// field.
#[derive(Debug)]
pub struct FeatureBuilder {
    spec: Result<FeatureSpec>,
    has_fields: bool,
}

impl FeatureBuilder {
    /// A feature with this key and id columns.
    pub fn new<I, S>(key: &str, id_columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ids = id_columns.into_iter().map(Into::into).collect();
        Self {
            spec: FeatureKey::parse(key).map(|k| FeatureSpec::new(k, ids)),
            has_fields: false,
        }
    }

    fn update(mut self, f: impl FnOnce(&mut FeatureSpec) -> Result<()>) -> Self {
        if let Ok(spec) = &mut self.spec {
            if let Err(e) = f(spec) {
                self.spec = Err(e);
            }
        }
        self
    }

    /// Adds a field whose upstream fields come from the fields mappings.
    pub fn field(self, key: &str, code_version: &str) -> Self {
        self.field_with_deps(key, code_version, FieldDeps::Mapped)
    }

    /// Adds a field with explicit field-level dependencies.
    pub fn field_with_deps(mut self, key: &str, code_version: &str, deps: FieldDeps) -> Self {
        let first = !self.has_fields;
        self.has_fields = true;
        self.update(|spec| {
            if first {
                spec.fields.clear();
            }
            let mut field = FieldSpec::new(FieldKey::parse(key)?, code_version);
            field.deps = deps;
            spec.fields.push(field);
            Ok(())
        })
    }

    /// Adds a required 1:1 dependency with the default fields mapping.
    pub fn dep(self, feature: &str) -> Self {
        self.update(|spec| {
            spec.deps.push(FeatureDep::on(FeatureKey::parse(feature)?));
            Ok(())
        })
    }

    /// Adds a dependency configured in full.
    pub fn dependency(self, dep: FeatureDep) -> Self {
        self.update(|spec| {
            spec.deps.push(dep);
            Ok(())
        })
    }

    /// Sets the description.
    pub fn description(self, text: &str) -> Self {
        self.update(|spec| {
            spec.description = Some(text.to_string());
            Ok(())
        })
    }

    /// The spec, or the first error.
    pub fn finish(self) -> Result<FeatureSpec> {
        self.spec
    }
}
