"""metaxy_datafusion.register on a datafusion-python SessionContext (PyPI ``datafusion`` 55,
through datafusion-ffi): the quickstart's SQL, a store metaxy 0.1.11 writes and reads, the hash
UDFs against polars-hash, and errors as Python exceptions.

Run by tests/run-all.sh (pytest, in .venv, after the extension is built into it).
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import datafusion
import polars as pl
import polars_hash  # noqa: F401  (registers the `nchash` namespace on expressions)
import pyarrow as pa
import pytest
from metaxy.config import MetaxyConfig
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore as MetaxyStore
from metaxy.models.feature import FeatureGraph
from metaxy.utils.lock_file import LockFile
from metaxy.versioning.types import HashAlgorithm

import metaxy_datafusion

warnings.simplefilter("ignore")

ROOT = Path(__file__).resolve().parents[2]
VIDEO = ROOT / "tests" / "conformance" / "video_field_lineage"


def statements(script: str) -> list[str]:
    """The SQL statements of a quickstart-style script (the shell's `\\` lines left out)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith(("\\", "--"))]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def rows(ctx: datafusion.SessionContext, sql: str) -> list[tuple]:
    table = ctx.sql(sql).to_arrow_table()
    return [tuple(r.values()) for r in table.to_pylist()]


def test_the_quickstart_sql_runs_through_datafusion_python(tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(ROOT / "examples" / "video", tmp_path / "examples" / "video")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metaxy.toml").write_text(
        f'store = "dev"\n[stores.dev]\ntype = "metaxy.ext.polars.DeltaMetadataStore"\n'
        f'[stores.dev.config]\nroot_path = "{tmp_path / "store"}"\n'
    )
    ctx = datafusion.SessionContext()
    metaxy_datafusion.register(
        ctx, "metaxy.toml", features=["examples/video/features.toml"], files=True
    )
    results = [rows(ctx, sql) for sql in statements(Path("examples/video/quickstart.sql").read_text())]

    def answer(pattern: str) -> list[tuple]:
        """The rows of the one statement the pattern finds."""
        script = statements(Path("examples/video/quickstart.sql").read_text())
        found = [i for i, sql in enumerate(script) if re.search(pattern, sql, re.S)]
        assert len(found) == 1, pattern
        return results[found[0]]

    # The answers the quickstart's comments state (docs/quickstart.md): every video new for
    # crop; new audio for v2 makes crop and stt stale for v2 only; face_detection untouched;
    # stt's code version bump makes every stt sample new and leaves crop alone.
    step2 = answer(r"^SELECT video_id, metaxy_change, metaxy_provenance")
    assert [(v, c) for v, c, _ in step2] == [("v1", "new"), ("v2", "new"), ("v3", "new")]
    assert answer(r"^SELECT 'example/crop' AS feature") == [
        ("example/crop", "v2", "stale"),
        ("example/stt", "v2", "stale"),
    ]
    assert answer(r"to_recompute") == [("example/face_detection", 0)]
    assert answer(r"^SELECT 'example/stt' AS feature") == [
        ("example/stt", "v1", "new"),
        ("example/stt", "v2", "new"),
        ("example/stt", "v3", "new"),
    ]
    # Writes through datafusion-python's INSERT fill the system columns, as metaxy's write.
    stored = rows(ctx, "SELECT count(*) FROM history.example__crop WHERE metaxy_feature_version IS NULL "
                  "OR metaxy_provenance IS NULL OR metaxy_created_at IS NULL")
    assert stored == [(0,)]


def test_sql_over_a_store_metaxy_shares(tmp_path: Path, monkeypatch) -> None:
    """metaxy writes the roots; the SQL answers what metaxy answers; what SQL inserts, metaxy
    reads as processed."""
    monkeypatch.chdir(tmp_path)
    MetaxyConfig.set(MetaxyConfig(project="conformance", hash_truncation_length=8))
    (tmp_path / "metaxy.toml").write_text(
        'project = "conformance"\nhash_truncation_length = 8\nstore = "dev"\n[stores.dev]\n'
        'type = "metaxy_datafusion.DeltaMetadataStore"\n'
        f'[stores.dev.config]\nroot_path = "{tmp_path / "store"}"\nhash_algorithm = "xxhash64"\n'
    )
    graph = FeatureGraph()
    for entry in LockFile.from_toml((VIDEO / "definitions.lock.toml").read_text()).features.values():
        graph.add_feature_definition(entry.data)
    theirs = MetaxyStore(str(tmp_path / "store"), hash_algorithm=HashAlgorithm("xxhash64"))
    with graph.use(), theirs.open("w"):
        theirs.write(
            "example/video",
            pl.DataFrame(
                {
                    "video_id": [1, 2, 3],
                    "metaxy_provenance_by_field": [{"audio": f"a{i}", "frames": f"f{i}"} for i in (1, 2, 3)],
                }
            ),
        )
        expected = theirs.resolve_update("example/crop").new.to_native()

    ctx = datafusion.SessionContext()
    metaxy_datafusion.register(ctx, "metaxy.toml", features=[VIDEO / "definitions.lock.toml"])
    got = rows(ctx, "SELECT video_id, metaxy_provenance FROM resolve_update('example/crop', 'new') ORDER BY video_id")
    assert got == [tuple(r) for r in expected.sort("video_id").select("video_id", "metaxy_provenance").rows()]

    inserted = rows(
        ctx,
        "INSERT INTO example__crop (video_id, metaxy_provenance_by_field, metaxy_provenance) "
        "SELECT video_id, metaxy_provenance_by_field, metaxy_provenance FROM resolve_update('example/crop', 'new')",
    )
    assert inserted == [(3,)]
    with graph.use(), theirs.open("r"):
        after = theirs.resolve_update("example/crop")
        assert (len(after.new), len(after.stale), len(after.orphaned)) == (0, 0, 0)


def test_udfs_tables_and_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = datafusion.SessionContext()
    ctx.register_batch("mine", pa.RecordBatch.from_pydict({"a": [1, 2]}))
    session = metaxy_datafusion.register(
        ctx, store="memory", features=[ROOT / "examples" / "video" / "features.toml"]
    )
    # The hash UDFs agree with polars-hash.
    words = ["", "a", "metaxy"]
    expected = pl.select(pl.Series(words).alias("w")).select(pl.col("w").nchash.xxhash64())["w"].to_list()
    got = [rows(ctx, f"SELECT xxhash64('{w}')")[0][0] for w in words]
    assert [int(g) for g in got] == expected
    # Tables registered before stay; tables created after live beside the feature tables.
    assert rows(ctx, "SELECT sum(a) FROM mine") == [(3,)]
    ctx.sql("CREATE TABLE later AS SELECT 7 AS x").collect()
    assert rows(ctx, "SELECT x FROM later") == [(7,)]
    assert "example__video" in ctx.catalog().schema("public").table_names()
    # The same tables as a catalog of their own.
    ctx.register_catalog_provider("metaxy", session)
    assert rows(ctx, "SELECT count(*) FROM metaxy.public.example__video") == [(0,)]
    # Errors are Python exceptions carrying the engine's message.
    with pytest.raises(Exception, match="unknown feature 'nope/x'"):
        ctx.sql("SELECT * FROM resolve_update('nope/x')").collect()
    with pytest.raises(Exception, match="file access is closed"):
        ctx.sql("SELECT * FROM metaxy_load_features('features.toml')").collect()
    with pytest.raises(Exception, match="read-only"):
        ctx.sql("INSERT INTO history.example__video (video_id) VALUES ('v1')").collect()
    with pytest.raises(Exception, match="DELETE"):
        ctx.sql("DELETE FROM example__video").collect()
