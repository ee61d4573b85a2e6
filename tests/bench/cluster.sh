#!/usr/bin/env bash
# resolve_update on one node vs a cluster of 2 and 4 `metaxy-sql worker`s on this machine
# Builds the bench (and the release binary with it), starts the workers on loopback, runs
# `cargo bench --bench resolve` against each, stops the workers. Workers read only the stores
# of their configuration: the bench's stores are made under that store's root (TMPDIR).
#   tests/bench/cluster.sh [simple|wide] [N] [extra bench flags, e.g. --explain]
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario=${1:-simple}
n=${2:-10000000}
shift $(( $# > 2 ? 2 : $# )) || true
# Builds the bench and, with it, target/release/metaxy-sql (one build, the same features).
cargo bench --bench resolve --no-run
scratch=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT
mkdir -p "$scratch/stores"
printf '[stores.bench]\ntype = "delta"\n[stores.bench.config]\nroot_path = "%s"\n' "$scratch/stores" > "$scratch/metaxy.toml"
export TMPDIR="$scratch/stores"
urls=()
for i in 1 2 3 4; do
  port=$((17070 + i))
  (cd "$scratch" && exec "$OLDPWD/target/release/metaxy-sql" worker --listen "127.0.0.1:$port" --config "$scratch/metaxy.toml") 2>/dev/null &
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
done
sleep 2
echo "== one node"
cargo bench --bench resolve -- --scenario "$scenario" --n "$n" --rounds 1 "$@"
for k in 2 4; do
  list=$(IFS=,; echo "${urls[*]:0:$k}")
  echo "== $k workers"
  cargo bench --bench resolve -- --scenario "$scenario" --n "$n" --rounds 1 --workers "$list" "$@"
done
