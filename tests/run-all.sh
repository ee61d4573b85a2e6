#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: creates the Python venv the cross-checks
# need (pinned to the reference stack) when missing, then rustfmt, the tests (unit, .slt,
# conformance, Python cross-checks) and clippy. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The same target directory as the README's run command (`./target`, or $CARGO_TARGET_DIR when
# set), so a fresh machine compiles DataFusion once.

if ! .venv/bin/python -c "import polars, polars_hash, metaxy" 2>/dev/null || ! [ -x .venv/bin/maturin ]; then
  echo "creating .venv with the reference Python stack (tests/python/requirements.txt)"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
if ! .venv-s3/bin/python -c "import moto, boto3" 2>/dev/null; then
  echo "creating .venv-s3 with the S3 test server (tests/python/s3-requirements.txt)"
  rm -rf .venv-s3
  python3 -m venv .venv-s3
  .venv-s3/bin/pip install --quiet --disable-pip-version-check -r tests/python/s3-requirements.txt
fi
# The cross-checks fail, rather than skip, when the venv is unusable.
export METAXY_REQUIRE_PYTHON=1
export METAXY_PYTHON="$PWD/.venv/bin/python"
export METAXY_S3_PYTHON="$PWD/.venv-s3/bin/python"

cargo fmt --all -- --check
cargo test --workspace
# The Python package (python/): built in the dev profile into the same target directory (only
# our crates compile again: the package alone leaves out the shell) and installed into .venv
# as an editable package, then its tests against metaxy's own store.
VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --profile dev --manifest-path python/Cargo.toml
.venv/bin/python -m pytest -p no:cases -q tests/python
cargo clippy --workspace --all-targets -- -D warnings
echo "all checks passed"
