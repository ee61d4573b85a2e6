//! Progress of running statements from their plans' metrics: rows read from the sources and
//! bytes the parquet scans read, summed over the plans a session is running. A session opts in
//! by carrying a [`Progress`] in its configuration (the `metaxy-sql` shell does when stderr is a
//! terminal); reads, writes and resolves then run their plans through [`collect`], which
//! registers them while they run.
//!
//! ```
//! # use std::sync::Arc;
//! # use datafusion::prelude::*;
//! use datafusion_metaxy::progress::{collect, Progress};
//! # #[tokio::main] async fn main() -> datafusion_metaxy::Result<()> {
//! let progress = Arc::new(Progress::default());
//! let config = SessionConfig::new().with_extension(Arc::clone(&progress));
//! let ctx = SessionContext::new_with_config(config);
//! let df = ctx.sql("SELECT * FROM generate_series(1, 3)").await?;
//! let batches = collect(df).await?;
//! assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
//! // Finished plans are kept until the next statement starts: the totals say what it read.
//! assert_eq!(progress.snapshot().rows, 3);
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanVisitor};
use datafusion::prelude::DataFrame;

use crate::error::Result;

/// The plans of the statement a session is running (a session configuration extension).
#[derive(Debug, Default)]
pub struct Progress {
    plans: Mutex<Vec<Arc<dyn ExecutionPlan>>>,
}

/// What the registered plans have done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    /// Rows the plans' sources produced (the sources that report metrics: file scans,
    /// generated series).
    pub rows: usize,
    /// Bytes the parquet scans read.
    pub bytes: usize,
}

impl Progress {
    /// Forgets the plans of the previous statement.
    pub fn start(&self) {
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Counts `plan` from now on.
    pub fn register(&self, plan: Arc<dyn ExecutionPlan>) {
        self.plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(plan);
    }

    /// The totals of every registered plan, read from their live metrics.
    pub fn snapshot(&self) -> Done {
        let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut sum = Sum(Done::default());
        for plan in plans {
            let _ = datafusion::physical_plan::accept(plan.as_ref(), &mut sum);
        }
        sum.0
    }
}

struct Sum(Done);

impl ExecutionPlanVisitor for Sum {
    type Error = std::convert::Infallible;
    fn pre_visit(&mut self, plan: &dyn ExecutionPlan) -> std::result::Result<bool, Self::Error> {
        if let Some(metrics) = plan.metrics() {
            if plan.children().is_empty() {
                self.0.rows += metrics.output_rows().unwrap_or(0);
            }
            self.0.bytes += metrics
                .sum_by_name("bytes_scanned")
                .map_or(0, |v| v.as_usize());
        }
        Ok(true)
    }
}

/// Runs `df` to its batches, counted by the session's [`Progress`] when it has one.
pub async fn collect(df: DataFrame) -> Result<Vec<RecordBatch>> {
    let task = Arc::new(df.task_ctx());
    let progress = task.session_config().get_extension::<Progress>();
    let plan = df.create_physical_plan().await?;
    if let Some(progress) = progress {
        progress.register(Arc::clone(&plan));
    }
    Ok(datafusion::physical_plan::collect(plan, task).await?)
}

/// `1234567` as `1.2M`, for a progress line.
pub fn short_count(n: usize) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

/// `1234567` bytes as `1.2 MB`.
pub fn short_bytes(n: usize) -> String {
    match n {
        0..=999 => format!("{n} B"),
        1_000..=999_999 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}
