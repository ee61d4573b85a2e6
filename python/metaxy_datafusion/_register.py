"""datafusion-metaxy's SQL surface on a datafusion-python ``SessionContext``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from metaxy_datafusion._native import Session

#: The major version of datafusion-python (and of its FFI interface) the extension is built for.
DATAFUSION_MAJOR = 55


def register(
    ctx: Any,
    config: str | os.PathLike[str] | None = None,
    *,
    store: str | None = None,
    features: Sequence[str | os.PathLike[str]] = (),
    files: bool = False,
    catalog: str = "datafusion",
    schema: str = "public",
) -> Session:
    """Registers datafusion-metaxy on ``ctx`` (a ``datafusion.SessionContext``).

    Opens the store and feature graph as ``metaxy-sql`` does (``config``, else
    ``METAXY_CONFIG``, else the nearest ``metaxy.toml``; ``store`` by name; ``features``:
    definition files instead of the configured graph) and registers, through datafusion-ffi:

    - the hash UDFs (``xxhash64``, ``metaxy_hash``, ...);
    - the feature tables in ``catalog.schema`` (DataFusion's default schema unless told),
      named by their table name (current view; ``INSERT`` appends with the system columns
      filled), and every stored row under ``history.<table>``; the tables already in that
      schema stay there, and tables created later live beside the feature tables;
    - ``resolve_update``, ``metaxy_features``, ``metaxy_fields`` and the procedures
      (``metaxy_hard_delete``, ``metaxy_drop_feature``, ``metaxy_load_features``) as table
      functions.

    The engine reads and writes files by path (a ``samples`` parquet file of
    ``resolve_update``, ``metaxy_load_features``) only with ``files=True``. ``DELETE`` is not
    available through datafusion-python's interface (it has no delete for foreign tables): use
    ``metaxy_hard_delete`` or the metaxy store. Returns the session, which also exports the
    feature tables as a catalog (``ctx.register_catalog_provider("metaxy", session)``).

    Example::

        from datafusion import SessionContext
        import metaxy_datafusion

        ctx = SessionContext()
        metaxy_datafusion.register(ctx, config="metaxy.toml")
        ctx.sql("SELECT * FROM resolve_update('example/crop', 'new')").show()
    """
    import datafusion
    from datafusion.catalog import Schema

    major = int(datafusion.__version__.split(".")[0])
    if major != DATAFUSION_MAJOR:
        raise ImportError(
            f"metaxy_datafusion.register needs datafusion {DATAFUSION_MAJOR}.x (its FFI "
            f"interface), found {datafusion.__version__}"
        )
    session = Session(
        None if config is None else os.fspath(config),
        store,
        [os.fspath(f) for f in features],
        files,
    )
    for name in session.udf_names():
        ctx.register_udf(datafusion.udf(session.udf(name)))
    for name in session.table_function_names():
        ctx.register_udtf(datafusion.udtf(session.table_function(name), name))
    target = ctx.catalog(catalog)
    existing: Schema = target.schema(schema)
    kept = {name: existing.table(name) for name in existing.table_names()}
    target.register_schema(schema, session.schema("public"))
    features_schema = target.schema(schema)
    for name, table in kept.items():
        features_schema.register_table(name, table)
    target.register_schema("history", session.schema("history"))
    return session
