//! resolve_update's options on three dependencies (where metaxy 0.1.11 fails on a duplicated
//! column): filters per feature, global and target filters, skip comparison, and bad input.
//!
//! The expected provenance values were computed with polars-hash 0.9.3 from the field strings
//! written next to them.

use std::collections::HashMap;

use datafusion::prelude::{DataFrame, SessionContext};
use datafusion_metaxy::graph::FeatureGraph;
use datafusion_metaxy::versioning::{resolve_update, Increment, ResolveOptions};
use datafusion_metaxy::MetadataStore;

use super::{key, parse_graph, write_sql};
use crate::common::{batches_to_rows, session, store_options};

const GRAPH: &str = r#"
project = "tests"
[features."t/a"]
id_columns = ["sample_uid"]
fields = { x = "1" }
[features."t/b"]
id_columns = ["sample_uid"]
fields = { y = "1" }
[features."t/c"]
id_columns = ["sample_uid"]
fields = { z = "1" }
[features."t/out"]
id_columns = ["sample_uid"]
deps = ["t/a", "t/b", "t/c"]
fields = { out = "1" }
"#;

/// The columns `exprs` of a part, one line per row, sorted by `sample_uid`.
async fn sorted_rows(df: DataFrame, exprs: &[&str]) -> Vec<String> {
    let df = df
        .select_exprs(exprs)
        .unwrap()
        .sort_by(vec![datafusion::prelude::col("sample_uid")])
        .unwrap();
    batches_to_rows(&df.collect().await.unwrap())
        .into_iter()
        .map(|r| r.join(" "))
        .collect()
}

type Parts = [Vec<String>; 3];

const NONE: Vec<String> = Vec::new();

/// New and stale as `sample_uid`, `pbf.out`, `metaxy_provenance`; orphaned as ids.
async fn parts(i: Increment) -> Parts {
    let summary = [
        "sample_uid",
        "get_field(metaxy_provenance_by_field, 'out')",
        "metaxy_provenance",
    ];
    [
        sorted_rows(i.new, &summary).await,
        sorted_rows(i.stale, &summary).await,
        sorted_rows(i.orphaned, &["sample_uid"]).await,
    ]
}

/// Three roots (two samples each) and `t/out` over all three, materialised.
async fn three_roots() -> (SessionContext, FeatureGraph, MetadataStore) {
    let graph = parse_graph(GRAPH);
    let store = MetadataStore::in_memory();
    let ctx = session(store_options(&store));
    for (k, field, col) in [("t/a", "x", "a"), ("t/b", "y", "b"), ("t/c", "z", "c")] {
        let sql = format!(
            "SELECT 1 AS sample_uid, '{col}1' AS {col}_label, named_struct('{field}', '{col}{field}1') AS metaxy_provenance_by_field \
             UNION ALL SELECT 2, '{col}2', named_struct('{field}', '{col}{field}2')"
        );
        write_sql(&ctx, &graph, &store, k, &sql).await;
    }
    (ctx, graph, store)
}

/// Records `t/out`'s new samples as processed.
async fn materialise_out(ctx: &SessionContext, graph: &FeatureGraph, store: &MetadataStore) {
    let out = key("t/out");
    let first = resolve_update(ctx, graph, store, &out, ResolveOptions::default())
        .await
        .unwrap();
    store.write(graph, &out, first.new).await.unwrap();
}

/// A new version of `t/c`'s field for sample 1 only.
async fn bump_sample_1_of_c(ctx: &SessionContext, graph: &FeatureGraph, store: &MetadataStore) {
    write_sql(
        ctx,
        graph,
        store,
        "t/c",
        "SELECT 1 AS sample_uid, 'c1' AS c_label, named_struct('z', 'cz1_v2') AS metaxy_provenance_by_field",
    )
    .await;
}

#[tokio::test]
async fn three_dependencies_join_and_hash_every_parent() {
    let (ctx, graph, store) = three_roots().await;
    let out = key("t/out");
    let increment = resolve_update(&ctx, &graph, &store, &out, ResolveOptions::default())
        .await
        .unwrap();
    // Every dependency's user columns are carried.
    let names: Vec<String> = increment
        .new
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for c in ["sample_uid", "a_label", "b_label", "c_label"] {
        assert!(names.contains(&c.to_string()), "{names:?}");
    }
    let new = increment.new.clone();
    assert_eq!(
        parts(increment).await,
        [
            // out|1|t/a.x|ax1|t/b.y|by1|t/c.z|cz1 and out|1|t/a.x|ax2|t/b.y|by2|t/c.z|cz2
            vec![
                "1 20564745 17032486".to_string(),
                "2 78828838 11025173".to_string()
            ],
            vec![],
            vec![],
        ]
    );
    store.write(&graph, &out, new).await.unwrap();

    // A new version of one parent's sample makes exactly that sample stale.
    bump_sample_1_of_c(&ctx, &graph, &store).await;
    let increment = resolve_update(&ctx, &graph, &store, &out, ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(
        parts(increment).await,
        [
            vec![],
            // out|1|t/a.x|ax1|t/b.y|by1|t/c.z|cz1_v2
            vec!["1 16152022 14934489".to_string()],
            vec![],
        ]
    );
}

#[tokio::test]
async fn filters_and_skip_comparison() {
    let (ctx, graph, store) = three_roots().await;
    let out = key("t/out");
    materialise_out(&ctx, &graph, &store).await;
    bump_sample_1_of_c(&ctx, &graph, &store).await;
    let run = |options: ResolveOptions| {
        let (ctx, graph, store, out) = (&ctx, &graph, &store, &out);
        async move {
            parts(
                resolve_update(ctx, graph, store, out, options)
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let stale_1 = vec!["1 16152022 14934489".to_string()];
    let fresh_2 = vec!["2 78828838 11025173".to_string()];

    // Global filters restrict every upstream and the stored rows: sample 1 is out of scope.
    let global = ResolveOptions {
        global_filters: vec!["sample_uid = 2".into()],
        ..Default::default()
    };
    assert_eq!(run(global).await, [NONE, NONE, NONE]);

    // Target filters restrict only the stored rows: sample 1's stored row is hidden, so it is
    // expected but not stored — new (metaxy's semantics).
    let target = ResolveOptions {
        target_filters: vec!["sample_uid = 2".into()],
        ..Default::default()
    };
    assert_eq!(run(target).await, [stale_1.clone(), vec![], vec![]]);

    // A filter on one upstream feature drops sample 1 from the inner join: its stored row is
    // orphaned.
    let per_feature = ResolveOptions {
        filters: HashMap::from([(key("t/c"), vec!["c_label <> 'c1'".into()])]),
        ..Default::default()
    };
    assert_eq!(
        run(per_feature).await,
        [vec![], vec![], vec!["1".to_string()]]
    );

    // A filter on the target restricts its stored rows (and samples).
    let on_target = ResolveOptions {
        filters: HashMap::from([(out.clone(), vec!["sample_uid = 1".into()])]),
        ..Default::default()
    };
    assert_eq!(
        run(on_target).await,
        [fresh_2.clone(), stale_1.clone(), vec![]]
    );

    // Skip comparison: every expected sample is new.
    let skip = ResolveOptions {
        skip_comparison: true,
        ..Default::default()
    };
    let mut all = stale_1.clone();
    all.extend(fresh_2.clone());
    assert_eq!(run(skip).await, [all, vec![], vec![]]);

    // Staleness predicates see the stored rows' own columns.
    let predicate = ResolveOptions {
        staleness_predicates: vec!["c_label = 'c2'".into()],
        ..Default::default()
    };
    assert_eq!(
        run(predicate).await,
        [vec![], vec![stale_1[0].clone(), fresh_2[0].clone()], vec![]]
    );
}

#[tokio::test]
async fn bad_options_and_definitions_are_named() {
    let (ctx, graph, store) = three_roots().await;
    let out = key("t/out");
    materialise_out(&ctx, &graph, &store).await;
    let error = |options: ResolveOptions| {
        let (ctx, graph, store, out) = (&ctx, &graph, &store, &out);
        async move {
            match resolve_update(ctx, graph, store, out, options).await {
                Ok(_) => panic!("accepted"),
                Err(e) => e.to_string(),
            }
        }
    };
    let e = error(ResolveOptions {
        staleness_predicates: vec!["no_such_column = 1".into()],
        ..Default::default()
    })
    .await;
    assert!(
        e.contains("staleness predicate `no_such_column = 1`"),
        "{e}"
    );
    let e = error(ResolveOptions {
        global_filters: vec!["sample_uid =".into()],
        ..Default::default()
    })
    .await;
    assert!(e.contains("invalid filter `sample_uid =`"), "{e}");
    let e = error(ResolveOptions {
        filters: HashMap::from([(key("t/a"), vec!["b_label = 'x'".into()])]),
        ..Default::default()
    })
    .await;
    assert!(e.contains("upstream feature t/a"), "{e}");

    // Two dependencies carrying the same user column cannot be joined.
    let g = parse_graph(GRAPH);
    let store = MetadataStore::in_memory();
    for (k, field) in [("t/a", "x"), ("t/b", "y"), ("t/c", "z")] {
        let sql = format!(
            "SELECT 1 AS sample_uid, 'l' AS label, named_struct('{field}', 'v') AS metaxy_provenance_by_field"
        );
        write_sql(&ctx, &g, &store, k, &sql).await;
    }
    let e = match resolve_update(&ctx, &g, &store, &out, ResolveOptions::default()).await {
        Ok(_) => panic!("accepted a column collision"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("column 'label' comes from both t/a and t/b"),
        "{e}"
    );
    let e = match resolve_update(&ctx, &g, &store, &key("t/a"), ResolveOptions::default()).await {
        Ok(_) => panic!("resolved a root feature without samples"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("root feature t/a needs samples"), "{e}");
}
