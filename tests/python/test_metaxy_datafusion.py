"""metaxy_datafusion.DeltaMetadataStore against metaxy 0.1.11's own DeltaMetadataStore: the same
metaxy scenarios through metaxy's API, on the same tables, give the same increments.

Run by tests/run-all.sh (pytest, in .venv, after the extension is built into it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest
from metaxy.config import MetaxyConfig
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore as MetaxyStore
from metaxy.models.feature import FeatureGraph
from metaxy.utils.lock_file import LockFile
from metaxy.versioning.types import HashAlgorithm, Increment, LazyIncrement

import metaxy_datafusion
from metaxy_datafusion import DeltaMetadataStore as OurStore

warnings.simplefilter("ignore")

CASES = Path(__file__).resolve().parents[1] / "conformance"
VIDEO = CASES / "video_field_lineage"
ID = "video_id"
#: The columns an increment is compared on (timestamps differ by design).
COMPARED = [ID, "metaxy_provenance", "metaxy_provenance_by_field", "metaxy_data_version"]


def graph_of(lock: Path) -> FeatureGraph:
    graph = FeatureGraph()
    for entry in LockFile.from_toml(lock.read_text()).features.values():
        graph.add_feature_definition(entry.data)
    return graph


@pytest.fixture(autouse=True)
def config():
    MetaxyConfig.set(MetaxyConfig(project="conformance", hash_truncation_length=8))
    yield


def stores(root: Path) -> tuple[MetaxyStore, OurStore]:
    algorithm = HashAlgorithm("xxhash64")
    return (
        MetaxyStore(str(root), hash_algorithm=algorithm),
        OurStore(str(root), hash_algorithm=algorithm),
    )


def rows(frame) -> list[dict]:
    """An increment part as sorted rows of the compared columns."""
    native = frame.to_native() if hasattr(frame, "to_native") else frame
    if isinstance(native, pl.LazyFrame):
        native = native.collect()
    native = native.select([c for c in COMPARED if c in native.columns])
    return sorted(native.to_dicts(), key=lambda r: str(r[ID]))


def assert_same(theirs: Increment, ours: Increment) -> None:
    for part in ("new", "stale", "orphaned"):
        assert rows(getattr(ours, part)) == rows(getattr(theirs, part)), part


def videos(*specs: tuple[int, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            ID: [s[0] for s in specs],
            "metaxy_provenance_by_field": [{"audio": s[1], "frames": s[2]} for s in specs],
        }
    )


def resolve_both(theirs: MetaxyStore, ours: OurStore, key: str, **kwargs) -> Increment:
    expected = theirs.resolve_update(key, **kwargs)
    got = ours.resolve_update(key, **kwargs)
    assert isinstance(got, type(expected))
    if isinstance(got, LazyIncrement):
        expected, got = expected.collect(), got.collect()
    assert_same(expected, got)
    return got


def test_the_pipeline_gives_metaxys_increments(tmp_path: Path) -> None:
    theirs, ours = stores(tmp_path)
    with graph_of(VIDEO / "definitions.lock.toml").use(), theirs.open("w"), ours.open("w"):
        theirs.write("example/video", videos((1, "a1", "f1"), (2, "a2", "f2"), (3, "a3", "f3")))
        first = resolve_both(theirs, ours, "example/crop")
        assert len(rows(first.new)) == 3
        # Process: record crop's new samples with metaxy's own write.
        theirs.write("example/crop", first.new.to_native())
        assert rows(ours.resolve_update("example/crop").new) == []
        # Upstream changes: video 2's audio, video 3 goes away (soft delete).
        theirs.write("example/video", videos((2, "a2-new", "f2")))
        theirs.delete("example/video", nw.col(ID) == 3)
        changed = resolve_both(theirs, ours, "example/crop")
        assert [r[ID] for r in rows(changed.stale)] == [2]
        assert [r[ID] for r in rows(changed.orphaned)] == [3]
        # Lazy as eager; field-level lineage downstream.
        resolve_both(theirs, ours, "example/crop", lazy=True)
        resolve_both(theirs, ours, "example/stt")
        # A hard delete of a processed sample: new again.
        theirs.delete("example/crop", nw.col(ID) == 1, soft=False)
        resolve_both(theirs, ours, "example/crop")
    # A code version bump: every sample of the bumped feature is new for its new version.
    with graph_of(VIDEO / "definitions_v2.lock.toml").use(), theirs.open("w"), ours.open("w"):
        resolve_both(theirs, ours, "example/crop")
        resolve_both(theirs, ours, "example/stt")


def test_every_argument_reaches_the_engine(tmp_path: Path) -> None:
    theirs, ours = stores(tmp_path)
    with graph_of(VIDEO / "definitions.lock.toml").use(), theirs.open("w"), ours.open("w"):
        theirs.write("example/video", videos((1, "a1", "f1"), (2, "a2", "f2"), (3, "a3", "f3")))
        theirs.write("example/crop", theirs.resolve_update("example/crop").new.to_native())
        # Root features take samples (any Arrow frame).
        samples = videos((1, "a1", "f1"), (4, "a4", "f4"))
        resolve_both(theirs, ours, "example/video", samples=nw.from_native(samples))
        got = ours.resolve_update("example/video", samples=samples.to_arrow())
        assert [r[ID] for r in rows(got.new)] == [4]
        resolve_both(theirs, ours, "example/crop", filters={"example/video": [nw.col(ID) > 1]})
        resolve_both(theirs, ours, "example/crop", global_filters=[nw.col(ID) != 2])
        resolve_both(theirs, ours, "example/crop", target_filters=[nw.col(ID) <= 2])
        resolve_both(
            theirs, ours, "example/crop", staleness_predicates=[nw.col(ID) == 1]
        )
        resolve_both(theirs, ours, "example/crop", skip_comparison=True)
        resolve_both(theirs, ours, "example/crop", versioning_engine="polars")


def all_rows(frame) -> list[dict]:
    """Every column of a read, rows sorted (the stored rows themselves: timestamps equal too)."""
    native = frame.to_native()
    if isinstance(native, pl.LazyFrame):
        native = native.collect()
    return sorted(native.to_dicts(), key=repr)


def test_reads_give_metaxys_rows(tmp_path: Path) -> None:
    from metaxy.metadata_store.exceptions import FeatureNotFoundError
    from metaxy.models.feature import current_graph

    algorithm = HashAlgorithm("xxhash64")
    theirs, ours = stores(tmp_path / "local")
    shared = MetaxyStore(str(tmp_path / "shared"), hash_algorithm=algorithm)
    v1, v2 = graph_of(VIDEO / "definitions.lock.toml"), graph_of(VIDEO / "definitions_v2.lock.toml")
    with v1.use(), shared.open("w"), theirs.open("w"):
        shared.write(
            "example/stt",
            pl.DataFrame({ID: [9], "metaxy_provenance_by_field": [{"transcription": "t9"}]}),
        )
        theirs.write("example/video", videos((1, "a1", "f1"), (2, "a2", "f2"), (3, "a3", "f3")))
        theirs.write("example/video", videos((2, "a2-new", "f2")))
        theirs.delete("example/video", nw.col(ID) == 3)
        theirs.write("example/crop", theirs.resolve_update("example/crop").new.to_native())
    # Rows of two feature versions of crop (the v2 lock bumps its code version).
    with v2.use(), theirs.open("w"):
        theirs.write("example/crop", theirs.resolve_update("example/crop").new.to_native())
        v2_crop = current_graph().get_feature_version(theirs._resolve_feature_key("example/crop"))
    cases = [
        {},
        {"with_sample_history": True},
        {"with_sample_history": True, "include_soft_deleted": True},
        {"include_soft_deleted": True},
        {"with_feature_history": True},
        {"with_feature_history": True, "with_sample_history": True},
        {"with_feature_history": True, "feature_version": v2_crop},
        {"filters": [nw.col(ID) > 1]},
        {"filters": [~nw.col("metaxy_provenance").is_null()], "columns": [ID, "metaxy_provenance"]},
    ]
    with v1.use(), theirs.open("r"), ours.open("r"):
        for key in ("example/video", "example/crop"):
            for kwargs in cases:
                assert all_rows(ours.read(key, **kwargs)) == all_rows(theirs.read(key, **kwargs)), (key, kwargs)
        with pytest.raises(ValueError, match="feature_version"):
            ours.read("example/video", feature_version="x")
        with pytest.raises(FeatureNotFoundError):
            ours.read("example/stt")
    # A feature only a fallback store has.
    theirs_fb = MetaxyStore(str(tmp_path / "local"), hash_algorithm=algorithm, fallback_stores=[shared])
    ours_fb = OurStore(str(tmp_path / "local"), hash_algorithm=algorithm, fallback_stores=[shared])
    with v1.use(), theirs_fb.open("r"), ours_fb.open("r"):
        assert all_rows(ours_fb.read("example/stt")) == all_rows(theirs_fb.read("example/stt"))
        with pytest.raises(FeatureNotFoundError):
            ours_fb.read("example/stt", allow_fallback=False)


def test_bad_input_raises_the_engines_message(tmp_path: Path) -> None:
    _, ours = stores(tmp_path)
    with graph_of(VIDEO / "definitions.lock.toml").use(), ours.open("w"):
        ours.write("example/video", videos((1, "a1", "f1")))
        with pytest.raises(metaxy_datafusion.EngineError, match="metaxy_provenance_by_field"):
            ours.resolve_update("example/video", samples=pl.DataFrame({ID: [1]}))
        with pytest.raises(TypeError):
            ours.resolve_update("example/video", samples=[1, 2])
        with pytest.raises(metaxy_datafusion.EngineError, match="needs samples"):
            ours.resolve_update("example/video")
        with pytest.raises(Exception):
            ours.resolve_update("example/crop", filters={"example/video": [nw.col("no_such_column") > 1]})


def test_metaxy_toml_names_the_class(tmp_path: Path) -> None:
    (tmp_path / "metaxy.toml").write_text(
        'project = "conformance"\nstore = "dev"\n[stores.dev]\n'
        'type = "metaxy_datafusion.DeltaMetadataStore"\n'
        f'[stores.dev.config]\nroot_path = "{tmp_path / "store"}"\nhash_algorithm = "xxhash64"\n'
    )
    config = MetaxyConfig.load(tmp_path / "metaxy.toml")
    store = config.get_store("dev")
    assert isinstance(store, OurStore)


def test_fallback_stores_are_read(tmp_path: Path) -> None:
    algorithm = HashAlgorithm("xxhash64")
    upstream = MetaxyStore(str(tmp_path / "shared"), hash_algorithm=algorithm)
    theirs = MetaxyStore(str(tmp_path / "local"), hash_algorithm=algorithm, fallback_stores=[upstream])
    ours = OurStore(str(tmp_path / "local"), hash_algorithm=algorithm, fallback_stores=[upstream])
    with graph_of(VIDEO / "definitions.lock.toml").use():
        with upstream.open("w"):
            upstream.write("example/video", videos((1, "a1", "f1"), (2, "a2", "f2")))
        with theirs.open("w"), ours.open("w"):
            got = resolve_both(theirs, ours, "example/crop")
            assert [r[ID] for r in rows(got.new)] == [1, 2]


FEATURES_MODULE = '''
import metaxy as mx


class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="example/video", id_columns=["video_id"], fields=["audio", "frames"])):
    video_id: int


class Crop(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="example/crop", id_columns=["video_id"], deps=[mx.FeatureDep(feature=Video)], fields=["audio", "frames"]
    ),
):
    video_id: int
'''


def test_metaxy_metadata_status_runs_with_the_class(tmp_path: Path, monkeypatch) -> None:
    """metaxy's CLI over a project whose store is ours: the same counts as with metaxy's store,
    and in process the increment comes from the engine."""
    import subprocess
    import sys

    (tmp_path / "status_features.py").write_text(FEATURES_MODULE)
    store_root = tmp_path / "store"

    def project(store_type: str) -> Path:
        d = tmp_path / store_type.split(".")[0]
        d.mkdir(exist_ok=True)
        (d / "metaxy.toml").write_text(
            f'project = "statusdemo"\nentrypoints = ["status_features"]\nstore = "dev"\n'
            f'[stores.dev]\ntype = "{store_type}"\n[stores.dev.config]\nroot_path = "{store_root}"\n'
        )
        return d

    ours_dir = project("metaxy_datafusion.DeltaMetadataStore")
    theirs_dir = project("metaxy.ext.polars.DeltaMetadataStore")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    write = (
        "import polars as pl\nfrom metaxy.config import MetaxyConfig\nimport status_features\n"
        "config = MetaxyConfig.load('metaxy.toml')\nstore = config.get_store('dev')\n"
        "with store.open('w'):\n"
        "    store.write('example/video', pl.DataFrame({'video_id': [1, 2, 3], 'metaxy_provenance_by_field': "
        "[{'audio': f'a{i}', 'frames': f'f{i}'} for i in (1, 2, 3)]}))\n"
    )
    subprocess.run([sys.executable, "-c", write], cwd=ours_dir, env=env, check=True)
    metaxy_cli = str(Path(sys.executable).with_name("metaxy"))

    def status(d: Path) -> str:
        done = subprocess.run(
            [metaxy_cli, "metadata", "status", "example/crop"], cwd=d, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        line = next(l for l in done.stdout.splitlines() if "example/crop" in l)
        return " ".join(line.split("│")[1:6])

    ours_status, theirs_status = status(ours_dir), status(theirs_dir)
    assert ours_status == theirs_status
    assert ours_status.split()[-3:] == ["0", "3", "0"], ours_status  # materialized, missing, stale

    # In process, the status's increment is the engine's.
    calls = []
    real = metaxy_datafusion._resolve_update
    monkeypatch.setattr(metaxy_datafusion, "_resolve_update", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(ours_dir)
    import status_features  # noqa: F401
    from metaxy.graph.status import get_feature_metadata_status
    from metaxy.models.types import FeatureKey

    config = MetaxyConfig.load(ours_dir / "metaxy.toml")
    MetaxyConfig.set(config)
    store = config.get_store("dev")
    with store.open("r"):
        got = get_feature_metadata_status(FeatureKey("example/crop"), store)
    assert got.status.missing_count == 3
    assert len(calls) == 1
