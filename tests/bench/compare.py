#!/usr/bin/env python3
"""Side-by-side benchmark: metaxy 0.1.11 (Delta store) vs datafusion-metaxy on identical data.

For each scenario and N, runs the reference (`metaxy_peer_bench.py --store delta --export`),
which also writes its inputs as parquet; then `cargo bench --bench resolve` on those files
(our engine on a Delta store; the hand-written DataFusion SQL floor over the input files; the
same query with merge-on-read written in SQL over the store's own files, the "store floor");
then prints one table with the ratios.

It also times the whole release `metaxy-sql` process resolving the same store (`process`,
min of the rounds), the incremental cell (`--incremental simple:10000000`: 0.1% of the root's
samples rewritten after a resolve; metaxy has no incremental resolve, so its time is its full
resolve of the same state, and the cell is also timed through our Python class) and the big
cell (`--big simple:100000000`: stale,
ours only, with `--memory-limit`).

`--python-cells` (default the 1M cells) also times our engine through Python: metaxy's own
benchmark driving `metaxy_datafusion.DeltaMetadataStore` (`metaxy_peer_bench.py --store
datafusion`, the package `pip install ./python` installs, which must be installed in the venv),
so the column includes the Arrow and graph hand-offs between Python and the engine.

Usage (from the repository root, with the test venv, which has the reference stack):
  .venv/bin/python tests/bench/compare.py [--cells simple:100000,simple:1000000,...]
      [--rounds 3] [--skip-python] [--incremental CELL|none] [--big CELL|none]
      [--memory-limit 6GiB] [--python-cells CELL,...|none]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "tests" / "bench" / "metaxy_peer_bench.py"
LINE = re.compile(r"^(\S+) (\S+) (\d+) (\S+) median_s=([\d.]+) min_s=([\d.]+) rows=(\d+)(?: peak_rss_mb=(\d+))?")


def parse(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            who, scenario, n, phase, med, mn, rows, rss = m.groups()
            out[(who, scenario, int(n), phase)] = dict(
                median=float(med), min=float(mn), rows=int(rows), rss=float(rss) if rss else None)
    return out


def run(cmd: list[str], **kw) -> str:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    sys.stderr.write(done.stderr[-2000:])
    print(done.stdout, file=sys.stderr, flush=True)
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="simple:100000,simple:1000000,wide:1000000,simple:10000000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-python", action="store_true")
    ap.add_argument("--incremental", default="simple:10000000")
    ap.add_argument("--big", default="simple:100000000")
    ap.add_argument("--memory-limit", default="6GiB")
    ap.add_argument("--python-cells", default="simple:1000000,wide:1000000")
    a = ap.parse_args()
    results = {}
    # The release build of the binary the process column times (one build with the bench).
    subprocess.run(["cargo", "build", "-q", "--release", "--bin", "metaxy-sql"], cwd=ROOT, check=True)
    binary = str(ROOT / "target" / "release" / "metaxy-sql")
    if os.environ.get("CARGO_TARGET_DIR"):
        binary = str(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "metaxy-sql")
    with tempfile.TemporaryDirectory(prefix="mxcompare") as tmp:
        for cell in a.cells.split(","):
            scenario, n = cell.split(":")
            data = Path(tmp) / f"{scenario}_{n}"
            py = [sys.executable, str(PEER), "--store", "delta", "--scenario", scenario,
                  "--n", n, "--rounds", str(a.rounds), "--export", tmp]
            if a.skip_python:
                py += ["--rounds", "1", "--phases", "new"]
            results.update(parse(run(py)))
            env = dict(os.environ)
            ours = ["cargo", "bench", "-q", "--bench", "resolve", "--", "--scenario", scenario,
                    "--n", n, "--rounds", str(a.rounds), "--data", str(data), "--floor",
                    "--process", binary]
            results.update(parse(run(ours, cwd=ROOT, env=env)))
            if cell in a.python_cells.split(","):
                through_python = [sys.executable, str(PEER), "--store", "datafusion", "--scenario",
                                  scenario, "--n", n, "--rounds", str(a.rounds)]
                results.update(parse(run(through_python)))
        if a.incremental != "none":
            scenario, n = a.incremental.split(":")
            data = Path(tmp) / f"{scenario}_{n}"
            ours = ["cargo", "bench", "-q", "--bench", "resolve", "--", "--scenario", scenario,
                    "--n", n, "--rounds", str(a.rounds), "--phases", "incremental,incremental_full",
                    "--process", binary]
            if data.exists():
                ours += ["--data", str(data)]
            results.update(parse(run(ours, cwd=ROOT, env=env)))
            if not a.skip_python:
                # The same state through Python: metaxy's own store (a full resolve) and ours.
                for store in ("delta", "datafusion"):
                    results.update(parse(run([sys.executable, str(PEER), "--store", store, "--scenario",
                                              scenario, "--n", n, "--rounds", str(a.rounds),
                                              "--phases", "incremental"])))
        if a.big != "none":
            scenario, n = a.big.split(":")
            ours = ["cargo", "bench", "-q", "--bench", "resolve", "--", "--scenario", scenario,
                    "--n", n, "--rounds", "1", "--phases", "stale", "--memory-limit", a.memory_limit]
            results.update(parse(run(ours, cwd=ROOT, env=env)))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"Machine: {os.cpu_count()} cores, {cpu}; {platform.system()} {platform.release()}; {date.today()}")
    print(f"Command: {' '.join([Path(sys.executable).name, 'tests/bench/compare.py'] + sys.argv[1:])}")
    print()
    print("| scenario | N | phase | metaxy 0.1.11 Delta (median) | ours (median / min) | speed-up | ours, whole process (min) | speed-up | ours through Python (median) | speed-up | SQL floor (median) | ours / floor | store floor (median) | ours / store floor | ours peak RSS | rows |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = {"new": 0, "stale": 1, "incremental": 2, "incremental_full": 3}
    keys = sorted({(s, n, p) for (w, s, n, p) in results if w == "ours"},
                  key=lambda k: (k[1], k[0], order.get(k[2], 9)))
    for s, n, p in keys:
        # metaxy has no incremental resolve: for the incremental cell its time is its (full)
        # resolve of the same state, else of the stale phase.
        ref = results.get(("delta", s, n, p)) or results.get(
            ("delta", s, n, "stale" if p.startswith("incremental") else p))
        ours = results.get(("ours", s, n, p))
        proc = results.get(("process", s, n, p))
        floor = results.get(("floor", s, n, p))
        has_ref = ref and not a.skip_python
        ref_s = f"{ref['median']:.3f} s" if has_ref else "—"
        speed = f"{ref['median'] / ours['median']:.1f}×" if has_ref else "—"
        proc_s = f"{proc['min']:.3f} s" if proc else "—"
        proc_speed = f"{ref['median'] / proc['min']:.1f}×" if has_ref and proc else "—"
        via = results.get(("datafusion", s, n, p))
        via_s = f"{via['median']:.3f} s" if via else "—"
        via_speed = f"{ref['median'] / via['median']:.1f}×" if has_ref and via else "—"
        store = results.get(("store_floor", s, n, p))
        fl = f"{floor['median']:.3f} s" if floor else "—"
        vs_floor = f"{ours['median'] / floor['median']:.2f}" if floor else "—"
        sfl = f"{store['median']:.3f} s" if store else "—"
        vs_store = f"{ours['median'] / store['median']:.2f}" if store else "—"
        # Every engine and floor must return the same rows (a floor computing other values
        # would not be a floor).
        same_state = ref is not None and ref is results.get(("delta", s, n, p))
        others = [(w, r) for w, r in (("metaxy", ref if same_state else None),
                                      ("floor", floor), ("store floor", store), ("process", proc),
                                      ("through Python", via))
                  if r and r["rows"] != ours["rows"]]
        rows_ok = "".join(f" ({w}: {r['rows']:,})" for w, r in others)
        rss = f"{ours['rss']:.0f} MB" if ours["rss"] is not None else "—"
        print(f"| {s} | {n:,} | {p} | {ref_s} | {ours['median']:.3f} / {ours['min']:.3f} s | {speed} | "
              f"{proc_s} | {proc_speed} | {via_s} | {via_speed} | {fl} | {vs_floor} | {sfl} | {vs_store} | {rss} | {ours['rows']:,}{rows_ok} |")


if __name__ == "__main__":
    main()
