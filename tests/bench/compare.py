#!/usr/bin/env python3
"""Side-by-side benchmark: metaxy 0.1.11 (Delta store) vs datafusion-metaxy on identical data.

For each scenario and N, runs the reference (`metaxy_peer_bench.py --store delta --export`),
which also writes its inputs as parquet; then `cargo bench --bench resolve` on those files
(our engine on a Delta store; the hand-written DataFusion SQL floor over the input files; the
same query with merge-on-read written in SQL over the store's own files, the "store floor");
then prints one table with the ratios.

Usage (from the repository root, with the test venv, which has the reference stack):
  .venv/bin/python tests/bench/compare.py [--cells simple:100000,simple:1000000,...]
      [--rounds 3] [--skip-python]
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
    a = ap.parse_args()
    results = {}
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
                    "--n", n, "--rounds", str(a.rounds), "--data", str(data), "--floor"]
            results.update(parse(run(ours, cwd=ROOT, env=env)))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"Machine: {os.cpu_count()} cores, {cpu}; {platform.system()} {platform.release()}; {date.today()}")
    print(f"Command: {' '.join([Path(sys.executable).name, 'tests/bench/compare.py'] + sys.argv[1:])}")
    print()
    print("| scenario | N | phase | metaxy 0.1.11 Delta (median) | ours (median / min) | speed-up | SQL floor (median) | ours / floor | store floor (median) | ours / store floor | ours peak RSS | rows |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(s, n, p) for (_, s, n, p) in results}, key=lambda k: (k[0], k[1], k[2]))
    for s, n, p in keys:
        ref = results.get(("delta", s, n, p))
        ours = results.get(("ours", s, n, p))
        floor = results.get(("floor", s, n, p))
        if not ours:
            continue
        ref_s = f"{ref['median']:.3f} s" if ref and not a.skip_python else "—"
        speed = f"{ref['median'] / ours['median']:.1f}×" if ref and not a.skip_python else "—"
        store = results.get(("store_floor", s, n, p))
        fl = f"{floor['median']:.3f} s" if floor else "—"
        vs_floor = f"{ours['median'] / floor['median']:.2f}" if floor else "—"
        sfl = f"{store['median']:.3f} s" if store else "—"
        vs_store = f"{ours['median'] / store['median']:.2f}" if store else "—"
        # Every engine and floor must return the same rows (a floor computing other values
        # would not be a floor).
        others = [(w, r) for w, r in (("metaxy", ref), ("floor", floor), ("store floor", store))
                  if r and r["rows"] != ours["rows"]]
        rows_ok = "".join(f" ({w}: {r['rows']:,})" for w, r in others)
        print(f"| {s} | {n:,} | {p} | {ref_s} | {ours['median']:.3f} / {ours['min']:.3f} s | {speed} | {fl} | "
              f"{vs_floor} | {sfl} | {vs_store} | {ours['rss']:.0f} MB | {ours['rows']:,}{rows_ok} |")


if __name__ == "__main__":
    main()
