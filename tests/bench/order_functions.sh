#!/usr/bin/env bash
# Writes the function order of the release `metaxy-sql` (every function that typical
# statements run), which build.rs hands to the linker when METAXY_SYMBOL_ORDER names it; the
# build.rs header says why and how:
#
#   tests/bench/order_functions.sh [OUT]   # needs valgrind; OUT: default target/metaxy-sql.order
#   METAXY_SYMBOL_ORDER=target/metaxy-sql.order cargo build --release
#
# Builds the release binary, then runs each statement once under callgrind (which records every
# function executed, however briefly, unlike sampling): the start of a session, reads, a write
# and resolve_update new, stale (full and incremental) on the bench's simple and wide stores.
# Valgrind hides AVX-512, so the udfs crate's functions are all added by name. The names carry
# the compiler's symbol hashes: regenerate after changes to the code, the dependencies or the
# compiler; a stale list only makes start-up slower.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
OUT=${1:-$TARGET_DIR/metaxy-sql.order}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release --bin metaxy-sql
BIN=$TARGET_DIR/release/metaxy-sql
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
keep() { # scenario n phase -> kept store path
    METAXY_BENCH_KEEP=1 cargo bench -q --bench resolve -- --scenario "$1" --n "$2" \
        --phases "$3" --rounds 1 --process "$BIN" 2>&1 >/dev/null | sed -n 's/^store kept at //p' | tail -1
}
run() { # name store sql
    (cd "$WORK" && valgrind -q --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$WORK/$1.cg" "$BIN" --config "$2.process/metaxy.toml" \
        --features "$2.process/features.toml" --quiet --format csv -c "$3" >/dev/null)
}
SIMPLE_NEW=$(keep simple 100000 new)
SIMPLE_STALE=$(keep simple 100000 stale)
WIDE_NEW=$(keep wide 100000 new)
for s in "$SIMPLE_NEW" "$SIMPLE_STALE" "$WIDE_NEW"; do rm -rf "$s/_metaxy"; done
(cd "$WORK" && valgrind -q --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$WORK/select1.cg" "$BIN" -c "SELECT 1" >/dev/null)
run simple_new "$SIMPLE_NEW" "SELECT count(*) AS n FROM resolve_update('bench/simple_leaf')"
run simple_stale "$SIMPLE_STALE" "SELECT count(*) AS n FROM resolve_update('bench/simple_leaf')"
run simple_incremental "$SIMPLE_STALE" "SELECT count(*) AS n FROM resolve_update('bench/simple_leaf')"
run wide_new "$WIDE_NEW" "SELECT count(*) AS n FROM resolve_update('bench/wide_leaf')"
run write "$SIMPLE_NEW" "INSERT INTO bench__simple_leaf SELECT sample_uid, metaxy_provenance_by_field, \
metaxy_provenance FROM resolve_update('bench/simple_leaf', 'new'); SELECT count(*) FROM bench__simple_leaf"
nm --defined-only "$BIN" > "$WORK/nm.txt"
mkdir -p "$(dirname "$OUT")"
python3 - "$WORK" "$OUT" <<'PY'
import glob, re, sys
work, out = sys.argv[1], sys.argv[2]
text = {}
for line in open(f"{work}/nm.txt"):
    p = line.split()
    if len(p) == 3 and p[1] in "tTwW":
        text[p[2]] = int(p[0], 16)
ran = set()
for f in glob.glob(f"{work}/*.cg"):
    for line in open(f):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if m and m.group(1) in text:
            ran.add(m.group(1))
ran |= {s for s in text if "datafusion_metaxy_udfs" in s}
with open(out, "w") as o:
    o.writelines(s + "\n" for s in sorted(ran, key=text.get))
print(f"{len(ran)} functions -> {out}")
PY
echo "link with it: METAXY_SYMBOL_ORDER=$OUT cargo build --release"
for s in "$SIMPLE_NEW" "$SIMPLE_STALE" "$WIDE_NEW"; do rm -rf "$s" "$s.process"; done
