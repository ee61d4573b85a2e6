"""Reads a Delta store with metaxy 0.1.11 (the interop check of stores written by the Rust engine).

Usage: python metaxy_read_store.py STORE_ROOT LOCK_FILE TRUNCATION HASH_ALGORITHM PROJECT OUT_DIR RESOLVE_FEATURE FEATURE...

Writes OUT_DIR/<table_name>.parquet with metaxy's current view of each FEATURE, and
OUT_DIR/resolve_{new,stale,orphaned}.parquet with metaxy's resolve_update of RESOLVE_FEATURE.
"""
import sys
import warnings
from pathlib import Path

warnings.simplefilter("ignore")

from metaxy.config import MetaxyConfig
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore
from metaxy.models.feature import FeatureGraph
from metaxy.models.types import FeatureKey
from metaxy.utils.lock_file import LockFile
from metaxy.versioning.types import HashAlgorithm


def main(root, lock, truncation, algorithm, project, out, resolve, *features):
    MetaxyConfig.set(MetaxyConfig(project=project, hash_truncation_length=int(truncation)))
    lock_file = LockFile.from_toml(Path(lock).read_text())
    graph = FeatureGraph()
    for entry in lock_file.features.values():
        graph.add_feature_definition(entry.data)
    out = Path(out)
    with graph.use():
        store = DeltaMetadataStore(root, hash_algorithm=HashAlgorithm(algorithm))
        with store.open("r"):
            for key in features:
                df = store.read(key).collect().to_polars()
                df.write_parquet(out / f"{FeatureKey(key).table_name}.parquet")
            increment = store.resolve_update(resolve)
            for part in ("new", "stale", "orphaned"):
                getattr(increment, part).to_polars().write_parquet(out / f"resolve_{part}.parquet")
    print("metaxy read", ", ".join(features))


if __name__ == "__main__":
    main(*sys.argv[1:])
