#!/usr/bin/env bash
# Where the fixed cost of one `metaxy-sql` statement goes, on a store the resolve benchmark seeds
# (simple scenario, N samples, phase new or stale): each line adds one step to the one before,
# timed as whole processes (min of R runs, milliseconds).
#
#   tests/bench/fixed_costs.sh [N] [PHASE] [R]      (defaults: 100000 new 10)
#
# Uses the release binary (built by `cargo bench --bench resolve`).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
PHASE=${2:-new}
R=${3:-10}
BIN=$(realpath "${CARGO_TARGET_DIR:-target}")/release/metaxy-sql
cargo build -q --release --bin metaxy-sql
store=$(METAXY_BENCH_KEEP=1 cargo bench -q --bench resolve -- --scenario simple --n "$N" \
  --phases "$PHASE" --rounds 1 --process "$BIN" 2>&1 | sed -n 's/^store kept at //p' | tail -1)
cfg="$store.process/metaxy.toml"
features="$store.process/features.toml"
empty=$(mktemp -d)
trap 'rm -rf "$store" "$store.process" "$empty"' EXIT

best() { # best of R wall times (ms) of the command
  local min=999999
  for _ in $(seq "$R"); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" > /dev/null
    t1=$(date +%s%N)
    local ms=$(( (t1 - t0) / 1000000 ))
    (( ms < min )) && min=$ms
  done
  echo "$min"
}
resolve() { # $1: the statement's prefix (EXPLAIN or nothing); always a full resolve
  rm -rf "$store/_metaxy"
  "$BIN" --config "$cfg" --features "$features" --quiet -c \
    "$1 SELECT count(*) FROM resolve_update('bench/simple_leaf')"
}

echo "simple $N $PHASE, whole processes, min of $R (ms):"
echo "  process, no configuration, SELECT 1:         $(cd "$empty" && best "$BIN" --store memory --quiet -c 'SELECT 1')"
echo "  + configuration and feature graph:           $(best "$BIN" --config "$cfg" --features "$features" --quiet -c 'SELECT 1')"
echo "  + a feature's Delta log opened and planned:  $(best "$BIN" --config "$cfg" --features "$features" --quiet -c 'EXPLAIN SELECT * FROM bench__simple_root')"
echo "  + resolve_update planned (every log):       $(best resolve EXPLAIN)"
echo "  + resolve_update run (full, no checkpoint):  $(best resolve "")"
