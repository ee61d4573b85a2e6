"""Hash every string of a parquet file with polars-hash exactly as metaxy 0.1.11 does.

Usage: python polars_hash_crosscheck.py IN.parquet OUT.parquet
IN has a Utf8 column `s`; OUT gets `s` plus one Utf8 column per algorithm.
"""
import sys

import polars as pl
import polars_hash

# The same expressions as metaxy/ext/polars/versioning.py, cast to Utf8.
ALGORITHMS = {
    "xxhash64": lambda e: e.nchash.xxhash64(),
    "xxhash32": lambda e: e.nchash.xxhash32(),
    "xxh3_64": lambda e: e.nchash.xxh3_64(),
    "wyhash": lambda e: e.nchash.wyhash(),
    "md5": lambda e: e.nchash.md5(),
    "sha256": lambda e: e.chash.sha2_256(),
}


def main(src: str, dst: str) -> None:
    df = pl.read_parquet(src)
    out = df.select(
        pl.col("i"),
        pl.col("s"),
        *[fn(polars_hash.col("s")).cast(pl.Utf8).alias(name) for name, fn in ALGORITHMS.items()],
    )
    out.write_parquet(dst)
    print(f"hashed {out.height} strings with polars-hash {polars_hash.__version__ if hasattr(polars_hash, '__version__') else '?'}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
