//! Measuring: rows counted as they stream, the peak RSS of a timed part, a cell's times, and a
//! SQL query timed round by round.

use std::time::Instant;

use datafusion::prelude::SessionContext;

use crate::Args;

/// The rows of `df`, counted as they stream (not kept).
pub async fn count(df: datafusion::prelude::DataFrame) -> usize {
    use futures::StreamExt;
    let mut stream = df.execute_stream().await.unwrap();
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().num_rows();
    }
    rows
}

/// Resets the process's peak RSS (Linux: `clear_refs` 5), then reads it back later. Memory the
/// seeding freed is first given back to the system (glibc keeps it otherwise, and the peak of
/// the timed part would start from it).
pub fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap memory.
        unsafe {
            malloc_trim(0);
        }
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One cell of the results: each round's time, the rows counted, the peak RSS.
pub struct Cell {
    pub times: Vec<f64>,
    pub rows: usize,
    pub peak_mb: f64,
}

impl Cell {
    pub fn report(&self, who: &str, a: &Args, phase: &str) {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        println!(
            "{who} {} {} {phase} median_s={:.3} min_s={:.3} rows={} peak_rss_mb={:.0}",
            a.scenario,
            a.n,
            t[t.len() / 2],
            t[0],
            self.rows,
            self.peak_mb
        );
    }
}

/// Runs `sql` `a.rounds` times (`--explain`: prints its plan with metrics first).
pub async fn timed(a: &Args, ctx: &SessionContext, sql: &str) -> Cell {
    if a.explain {
        let plan = ctx.sql(sql).await.unwrap().explain(false, true).unwrap();
        let text =
            datafusion::arrow::util::pretty::pretty_format_batches(&plan.collect().await.unwrap())
                .unwrap();
        eprintln!("{text}");
    }
    let mut cell = Cell {
        times: vec![],
        rows: 0,
        peak_mb: 0.0,
    };
    for _ in 0..a.rounds {
        reset_peak_rss();
        let t0 = Instant::now();
        cell.rows = count(ctx.sql(sql).await.unwrap()).await;
        cell.times.push(t0.elapsed().as_secs_f64());
        cell.peak_mb = cell.peak_mb.max(peak_rss_mb());
    }
    cell
}
