"""Writes to a Delta store with metaxy 0.1.11, on commands read from standard input: the Python
writer of the incremental resolve's differential test (`tests/resolve/differential.rs`), so
that the store it resolves over is written by both languages.

Usage: python metaxy_writer.py STORE_ROOT PROJECT TRUNCATION HASH_ALGORITHM

One JSON command per line, each naming the lock file of the definitions to write with; the
reply is one line, "ok" once the command is done (anything else is the error, and the process
ends):
  {"lock": PATH, "op": "write", "feature": KEY, "rows": [{"sample_uid": ID,
   "metaxy_provenance_by_field": {FIELD: VALUE, ...}}, ...]}
  {"lock": PATH, "op": "pipeline", "feature": KEY, "keep": N}: metaxy's resolve_update of KEY,
   and the rows of its new and stale samples whose provenance's first character code % 3 < N
   written (the Rust steps choose the same way)
  {"lock": PATH, "op": "soft_delete", "feature": KEY, "at_most": ID}: samples with ids <= ID
  {"lock": PATH, "op": "hard_delete", "feature": KEY, "equal": ID}
"""

import json
import sys
import traceback
import warnings
from pathlib import Path

warnings.simplefilter("ignore")

import narwhals as nw
import polars as pl

from metaxy.config import MetaxyConfig
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore
from metaxy.models.feature import FeatureGraph
from metaxy.utils.lock_file import LockFile
from metaxy.versioning.types import HashAlgorithm


def graph_of(lock: str) -> FeatureGraph:
    graph = FeatureGraph()
    for entry in LockFile.from_toml(Path(lock).read_text()).features.values():
        graph.add_feature_definition(entry.data)
    return graph


def run(store: DeltaMetadataStore, command: dict) -> None:
    key = command["feature"]
    op = command["op"]
    with graph_of(command["lock"]).use(), store.open("w"):
        if op == "write":
            store.write(key, pl.DataFrame(command["rows"]))
        elif op == "pipeline":
            increment = store.resolve_update(key)
            parts = [p.to_polars() for p in (increment.new, increment.stale)]
            parts = [p for p in parts if p.height > 0]
            if parts:
                rows = pl.concat(parts, how="vertical_relaxed")
                keep = int(command["keep"])
                chosen = rows.filter(
                    pl.col("metaxy_provenance").map_elements(
                        lambda s: ord(s[0]) % 3 < keep, return_dtype=pl.Boolean
                    )
                )
                if chosen.height > 0:
                    store.write(key, chosen)
        elif op == "soft_delete":
            store.delete(key, nw.col("sample_uid") <= command["at_most"])
        elif op == "hard_delete":
            store.delete(key, nw.col("sample_uid") == command["equal"], soft=False)
        else:
            raise ValueError(f"unknown op {op}")


def main(root: str, project: str, truncation: str, algorithm: str) -> None:
    MetaxyConfig.set(MetaxyConfig(project=project, hash_truncation_length=int(truncation)))
    store = DeltaMetadataStore(root, hash_algorithm=HashAlgorithm(algorithm))
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            run(store, json.loads(line))
        except Exception:
            print("error: " + traceback.format_exc().replace("\n", " | "), flush=True)
            sys.exit(1)
        print("ok", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
