//! resolve_update benchmark on the scenarios of metaxy's published benchmark, on a Delta store on
//! local disk, with a hand-written DataFusion SQL floor over the same parquet files.
//!
//! ```text
//! cargo bench --bench resolve -- [--scenario simple|wide] [--n 1000000] [--rounds 3]
//!     [--phases new,stale] [--data DIR] [--floor]
//! ```
//!
//! - `simple`: root (fields audio, frames) → leaf (prediction); `wide`: root_0, root_1 (audio,
//!   frames, optical_flow, embedding) → leaf (a, b). xxhash64, truncation 8.
//! - `new`: roots written, leaf empty. `stale`: leaf materialised, then root_0 written again with
//!   10% of its rows carrying a new audio version. Each round seeds a fresh store, opens it
//!   again, then times `resolve_update(leaf)` plus collecting `new` and `stale` (as
//!   `Increment::changes`, one plan holding both).
//! - `incremental` (phase `--phases incremental`): leaf materialised and resolved once (which
//!   leaves the checkpoint an incremental resolve starts from), then 0.1% of root_0's samples
//!   written again with a new audio version; times the (incremental) resolve. `incremental_full`
//!   times the full resolve (`full_resolve`) of the same state, for the ratio.
//! - `--data DIR`: read the inputs `metaxy_peer_bench.py --export` wrote
//!   (`DIR/root_<i>.parquet`, `DIR/root_0_mutated.parquet`), so both engines see identical
//!   data; without it the same shapes are generated here.
//! - `METAXY_BENCH_KEEP=1`: keep the last round's store (its path is printed) for inspection.
//! - `--workers URL,…`: run the timed resolve on a cluster of `metaxy-sql worker`s (start them
//!   first; the store is on local disk, which they read directly). `--explain` then shows the
//!   stages with their metrics (elapsed compute per stage, rows and bytes sent over the network).
//! - `--memory-limit SIZE` (e.g. `6GiB`): the timed resolve runs with that memory pool
//!   (`SessionOptions::memory_limit`); for the 100M cell:
//!   `cargo bench --bench resolve -- --n 100000000 --phases stale --rounds 1 --memory-limit 6GiB`.
//! - `--floor`: also time a hand-written SQL query doing the same joins and hashes directly
//!   over the parquet files (no store, no merge-on-read).
//!
//! Prints one line per cell: `ours <scenario> <n> <phase> median_s=… min_s=… rows=…
//! peak_rss_mb=…` (peak RSS of the timed part: the high-water mark is reset before it), and
//! `floor …` lines.

// The bench is its own crate: its parts live under `tests/bench/resolve/`.
#[path = "resolve/data.rs"]
mod data;
#[path = "resolve/floor.rs"]
mod floor;
#[path = "resolve/measure.rs"]
mod measure;
#[path = "resolve/ours.rs"]
mod ours;

use std::path::PathBuf;

use data::inputs;
use floor::{experiment, floor, store_floor};
use ours::ours;

/// The fields of each root of the `wide` scenario.
pub const WIDE_FIELDS: [&str; 4] = ["audio", "frames", "optical_flow", "embedding"];

/// The command line (see the module docs).
pub struct Args {
    pub scenario: String,
    pub n: usize,
    pub rounds: usize,
    pub phases: Vec<String>,
    pub data: Option<PathBuf>,
    pub floor: bool,
    pub explain: bool,
    pub experiment: bool,
    pub profile: usize,
    /// `--workers URL,…`: resolve on these `metaxy-sql worker`s (a coordinator session).
    pub workers: Vec<url::Url>,
    /// `--memory-limit SIZE`: the timed resolve in a session with that memory pool
    /// (`SessionOptions::memory_limit`: sort-merge joins that spill).
    pub memory_limit: Option<usize>,
    /// `--process PATH`: also time the whole `metaxy-sql` process (PATH) resolving the same
    /// store, one run per round (`process …` lines).
    pub process: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        scenario: "simple".into(),
        n: 1_000_000,
        rounds: 3,
        phases: vec!["new".into(), "stale".into()],
        data: None,
        floor: false,
        explain: false,
        experiment: false,
        profile: 0,
        workers: vec![],
        memory_limit: None,
        process: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => a.scenario = value(),
            "--n" => a.n = value().replace('_', "").parse().expect("--n"),
            "--rounds" => a.rounds = value().parse().expect("--rounds"),
            "--phases" => a.phases = value().split(',').map(String::from).collect(),
            "--data" => a.data = Some(value().into()),
            "--floor" => a.floor = true,
            "--explain" => a.explain = true,
            "--experiment" => a.experiment = true,
            "--profile" => a.profile = value().parse().expect("--profile"),
            "--workers" => {
                a.workers =
                    datafusion_metaxy::distributed::parse_workers(&value()).expect("--workers")
            }
            "--memory-limit" => {
                a.memory_limit =
                    Some(datafusion_metaxy::session::parse_size(&value()).expect("--memory-limit"))
            }
            "--process" => a.process = Some(value().into()),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        a.scenario == "simple" || a.scenario == "wide",
        "--scenario simple|wide"
    );
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let scratch = tempfile::tempdir().unwrap();
    let (roots_in, mutated) = inputs(&a, scratch.path());
    if a.experiment {
        experiment(&a, &roots_in, &mutated).await;
        return;
    }
    for phase in &a.phases {
        let (cell, process) = ours(&a, phase, &roots_in, &mutated).await;
        cell.report("ours", &a, phase);
        if a.process.is_some() {
            process.report("process", &a, phase);
        }
        if a.floor && !phase.starts_with("incremental") {
            floor(&a, phase, &roots_in, &mutated)
                .await
                .report("floor", &a, phase);
            store_floor(&a, phase, &roots_in, &mutated)
                .await
                .report("store_floor", &a, phase);
        }
    }
}
