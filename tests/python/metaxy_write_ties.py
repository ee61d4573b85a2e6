"""Writes, with metaxy 0.1.11's Delta store, a feature table holding the same sample several
times in one write (metaxy appends rows as given, so they tie on the write's timestamp), then a
second write adding a column. Usage: metaxy_write_ties.py STORE_ROOT

Feature `t/ties`: id column `sid`, field `a`. First write: sid x three times (val 1, 2, 3) and
y once (val 4); second write: sid z with the new column `extra` = 9.
"""

import sys
import warnings

warnings.simplefilter("ignore")

import polars as pl

import metaxy as mx
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore


class Ties(mx.BaseFeature, spec=mx.FeatureSpec(key="t/ties", id_columns=["sid"], fields=["a"])):
    pass


def main() -> None:
    store = DeltaMetadataStore(sys.argv[1])
    with store.open("w"):
        store.write(
            Ties,
            pl.DataFrame(
                {
                    "sid": ["x", "x", "y", "x"],
                    "val": [1, 2, 4, 3],
                    "metaxy_provenance_by_field": [{"a": f"h{i}"} for i in range(4)],
                }
            ),
        )
        store.write(
            Ties,
            pl.DataFrame(
                {"sid": ["z"], "val": [5], "extra": [9], "metaxy_provenance_by_field": [{"a": "hz"}]}
            ),
        )


if __name__ == "__main__":
    main()
