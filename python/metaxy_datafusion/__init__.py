"""metaxy's Delta metadata store with ``resolve_update`` computed by datafusion-metaxy.

Use it by changing one line of ``metaxy.toml``::

    [stores.dev]
    type = "metaxy_datafusion.DeltaMetadataStore"   # was metaxy.ext.polars.DeltaMetadataStore

Everything else (config keys, tables, writes, deletes) is metaxy's own Delta store; the
increment of ``resolve_update`` and the rows of ``read`` are computed by the Rust engine (Apache
DataFusion) over the same tables, incremental when a checkpoint proves what changed, and
returned as Polars frames.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import narwhals as nw
import polars as pl
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore as _MetaxyDeltaStore

from metaxy_datafusion._native import EngineError
from metaxy_datafusion._native import read as _read
from metaxy_datafusion._native import resolve_update as _resolve_update
from metaxy_datafusion._register import register

__all__ = ["DeltaMetadataStore", "EngineError", "register"]

#: The ``type`` of this store in ``metaxy.toml``.
STORE_TYPE = "metaxy_datafusion.DeltaMetadataStore"


def _lock_toml() -> str:
    """The active feature graph in metaxy's lock format, every feature included."""
    from metaxy.models.feature import FeatureGraph
    from metaxy.utils.lock_file import _build_lock_file

    graph = FeatureGraph.get_active()
    keys = graph.list_features(only_current_project=False)
    definitions = [graph.get_feature_definition(key) for key in keys]
    return _build_lock_file(definitions, {}, graph).to_toml()


def _sql(expressions: Sequence[nw.Expr], schema: Any) -> list[str]:
    """Narwhals filter expressions as DataFusion SQL, translated by metaxy itself."""
    from metaxy.metadata_store.utils import narwhals_expr_to_sql_predicate

    return [narwhals_expr_to_sql_predicate([e], schema, dialect="datafusion") for e in expressions]


class DeltaMetadataStore(_MetaxyDeltaStore):
    """metaxy's ``DeltaMetadataStore`` (same configuration, same tables) whose
    ``resolve_update`` runs in datafusion-metaxy."""

    def _engine_config(self) -> str:
        from metaxy.config import MetaxyConfig

        config = MetaxyConfig.get(_allow_default_config=True)
        store: dict[str, Any] = {
            "root_path": self._root_uri,
            "layout": self.layout,
            "hash_algorithm": self.hash_algorithm.value,
        }
        if self.storage_options:
            store["storage_options"] = {k: str(v) for k, v in self.storage_options.items()}
        stores: dict[str, Any] = {"this": {"type": STORE_TYPE, "config": store}}
        fallbacks = []
        for i, fallback in enumerate(self.fallback_stores):
            name = f"fallback_{i}"
            config_of = {
                "root_path": fallback._root_uri,
                "layout": fallback.layout,
                "hash_algorithm": fallback.hash_algorithm.value,
            }
            if fallback.storage_options:
                config_of["storage_options"] = {k: str(v) for k, v in fallback.storage_options.items()}
            stores[name] = {"type": STORE_TYPE, "config": config_of}
            fallbacks.append(name)
        if fallbacks:
            store["fallback_stores"] = fallbacks
        whole: dict[str, Any] = {
            "hash_truncation_length": config.hash_truncation_length,
            "store": "this",
            "stores": stores,
        }
        if config.project:
            whole["project"] = config.project
        return json.dumps(whole)

    def _engine_can_resolve(self) -> bool:
        """Whether the engine answers this store: every store the resolve reads is a Delta store
        it opens, and the `_by_field` columns are structs (metaxy's experimental Map datatype is
        metaxy's own code)."""
        from metaxy.config import MetaxyConfig

        if MetaxyConfig.get(_allow_default_config=True).enable_map_datatype:
            return False
        return all(isinstance(f, _MetaxyDeltaStore) for f in self.fallback_stores)

    def resolve_update(  # type: ignore[override]
        self,
        feature: Any,
        *,
        samples: Any = None,
        filters: Mapping[Any, Sequence[nw.Expr]] | None = None,
        global_filters: Sequence[nw.Expr] | None = None,
        target_filters: Sequence[nw.Expr] | None = None,
        lazy: bool = False,
        versioning_engine: Literal["auto", "native", "polars"] | None = None,
        skip_comparison: bool = False,
        staleness_predicates: Sequence[nw.Expr] | None = None,
        **kwargs: Any,
    ) -> Any:
        """metaxy's ``resolve_update``, computed by datafusion-metaxy.

        Every argument is metaxy's. Filters and staleness predicates are translated to SQL by
        metaxy's own ``narwhals_expr_to_sql_predicate`` (dialect ``datafusion``); one that does
        not translate raises. ``versioning_engine`` is accepted and does not change the answer
        (the engine is always this one). Fallback stores other than Delta stores, or metaxy's
        experimental Map datatype, make the call metaxy's own.
        """
        from metaxy.config import MetaxyConfig
        from metaxy.utils.external_features import sync_external_features
        from metaxy.versioning.types import Increment, LazyIncrement

        if not self._engine_can_resolve():
            return super().resolve_update(
                feature,
                samples=samples,
                filters=filters,
                global_filters=global_filters,
                target_filters=target_filters,
                lazy=lazy,
                versioning_engine=versioning_engine,
                skip_comparison=skip_comparison,
                staleness_predicates=staleness_predicates,
                **kwargs,
            )
        if versioning_engine not in (None, "auto", "native", "polars"):
            raise ValueError(f"unknown versioning_engine {versioning_engine!r}")
        if kwargs:
            raise TypeError(f"resolve_update() got unexpected arguments: {', '.join(sorted(kwargs))}")
        # As metaxy does: external features take their stored definitions first.
        if MetaxyConfig.get(_allow_default_config=True).sync:
            sync_external_features(self)

        key = self._resolve_feature_key(feature)
        native_samples = None
        if samples is not None:
            frame = samples if isinstance(samples, (nw.DataFrame, nw.LazyFrame)) else nw.from_native(samples)
            if isinstance(frame, nw.LazyFrame):
                frame = frame.collect()
            native_samples = frame.to_arrow()

        def schema_of(feature_key: Any) -> Any:
            try:
                return self.read_feature_schema_from_store(feature_key)
            except Exception:
                return None

        sql_filters: dict[str, list[str]] = {}
        for filter_key, exprs in (filters or {}).items():
            resolved = self._resolve_feature_key(filter_key)
            sql_filters[resolved.to_string()] = _sql(list(exprs), schema_of(resolved))
        target_schema = schema_of(key)
        new, stale, orphaned = _resolve_update(
            self._engine_config(),
            _lock_toml(),
            key.to_string(),
            samples=native_samples,
            filters=sql_filters,
            global_filters=_sql(list(global_filters or []), target_schema),
            target_filters=_sql(list(target_filters or []), target_schema),
            staleness_predicates=_sql(list(staleness_predicates or []), target_schema),
            skip_comparison=skip_comparison,
        )
        parts = [nw.from_native(pl.DataFrame(part)) for part in (new, stale, orphaned)]
        if lazy:
            return LazyIncrement(new=parts[0].lazy(), stale=parts[1].lazy(), orphaned=parts[2].lazy())
        return Increment(new=parts[0], stale=parts[1], orphaned=parts[2])

    def read(  # type: ignore[override]
        self,
        feature: Any,
        *,
        feature_version: str | None = None,
        filters: Sequence[nw.Expr] | None = None,
        columns: Sequence[str] | None = None,
        allow_fallback: bool = True,
        with_feature_history: bool = False,
        with_sample_history: bool = False,
        include_soft_deleted: bool = False,
        with_store_info: bool = False,
    ) -> Any:
        """metaxy's ``read``, computed by datafusion-metaxy: the latest row per sample of the
        current feature version, soft-deleted samples left out, unless the arguments (metaxy's)
        ask otherwise. Filters apply after the latest row is chosen, translated to SQL by
        metaxy's ``narwhals_expr_to_sql_predicate``.

        metaxy's system tables, ``with_store_info``, metaxy's experimental Map datatype and
        fallback stores other than Delta stores are metaxy's own code.
        """
        from metaxy.config import MetaxyConfig
        from metaxy.metadata_store.exceptions import FeatureNotFoundError
        from metaxy.utils.external_features import sync_external_features

        key = self._resolve_feature_key(feature)
        if with_store_info or self._is_system_table(key) or not self._engine_can_resolve():
            return super().read(
                feature,
                feature_version=feature_version,
                filters=filters,
                columns=columns,
                allow_fallback=allow_fallback,
                with_feature_history=with_feature_history,
                with_sample_history=with_sample_history,
                include_soft_deleted=include_soft_deleted,
                with_store_info=with_store_info,
            )
        self._check_open()
        if MetaxyConfig.get(_allow_default_config=True).sync:
            sync_external_features(self)
        if feature_version is not None and not with_feature_history:
            raise ValueError(
                "Cannot specify both feature_version and with_feature_history=False. "
                "Use with_feature_history=True with feature_version parameter."
            )
        sql_filters: list[str] = []
        if filters:
            try:
                schema = self.read_feature_schema_from_store(key)
            except Exception:
                schema = None
            sql_filters = _sql(list(filters), schema)
        rows = _read(
            self._engine_config(),
            _lock_toml(),
            key.to_string(),
            filters=sql_filters,
            columns=list(columns) if columns else None,
            feature_version=feature_version,
            with_feature_history=with_feature_history,
            with_sample_history=with_sample_history,
            include_soft_deleted=include_soft_deleted,
            allow_fallback=allow_fallback,
        )
        if rows is None:
            raise FeatureNotFoundError(
                f"Feature {key.to_string()} not found in store" + (" or fallback stores" if allow_fallback else "")
            )
        return nw.from_native(pl.DataFrame(rows).lazy())
