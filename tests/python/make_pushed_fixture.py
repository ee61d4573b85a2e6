"""Regenerates tests/data/pushed_feature_versions.json (and the Delta store it came from) with the
real metaxy: push conformance graphs to a Delta store and read the system table back.

Usage: .venv/bin/python tests/python/make_pushed_fixture.py OUT_DIR aggregation_lineage video_field_lineage
"""
import json, warnings, shutil, sys
warnings.simplefilter("ignore")
from pathlib import Path
from metaxy.config import MetaxyConfig
from metaxy.utils.lock_file import LockFile
from metaxy.models.feature import FeatureGraph
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore
from metaxy.metadata_store.system.storage import SystemTableStorage
from metaxy.metadata_store.system import FEATURE_VERSIONS_KEY
MetaxyConfig.set(MetaxyConfig(project="conformance", hash_truncation_length=8))
out = {}
for case in sys.argv[2:]:
    lf = LockFile.from_toml(Path(f"tests/conformance/{case}/definitions.lock.toml").read_text())
    g = FeatureGraph()
    for k,f in lf.features.items(): g.add_feature_definition(f.data)
    root = f"{sys.argv[1]}/{case}"
    shutil.rmtree(root, ignore_errors=True)
    with g.use():
        store = DeltaMetadataStore(root)
        with store.open("w"):
            r = SystemTableStorage(store).push_graph_snapshot(project="conformance", tags={})
            df = store.read(FEATURE_VERSIONS_KEY, with_feature_history=True).collect().to_polars()
            rows = [{k: (v if isinstance(v, (str, type(None))) else str(v)) for k, v in row.items()} for row in df.iter_rows(named=True)]
    out[case] = rows
print(json.dumps(out, indent=1))
