"""A new SQLite tracking store starts as a copy of an empty one, migrated once per machine and MLflow version.

MLflow builds a new SQLite store by running every Alembic migration of its schema history: 3-4 s of CPU on
a 2-core machine, paid by the first sweep in every folder (every quickstart, every test), while that sweep's
first trials are starting. The result is the same file each time, so it is built once in the hpo-cls cache
folder, before MLflow adds anything of its own (the Default experiment, created on first open with this
store's artifact location), and copied. Best effort: when anything here fails, MLflow builds the store as
it always does.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from hpo_cls.cache_dir import default_cache_root

__all__ = ["seed_new_sqlite_store", "template_path"]

_PREFIX = "sqlite:///"
_log = logging.getLogger(__name__)


def seed_new_sqlite_store(tracking_uri: str, cache_root: Path | None = None) -> bool:
    """If ``tracking_uri`` names a SQLite file that does not exist yet, create it from the empty template
    (building the template first if this machine has none). True when the file was created here."""
    path = _sqlite_path(tracking_uri)
    if path is None or path.exists() or not path.parent.is_dir():
        return False
    try:
        template = template_path(cache_root)
        if not template.is_file():
            _build_template(template)
        staged = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.seed")  # mode as umask says
        try:
            shutil.copyfile(template, staged)
            os.link(staged, path)  # fails if another process created the store meanwhile: theirs stands
        finally:
            staged.unlink(missing_ok=True)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure (MLflow's, SQLAlchemy's, the disk's): MLflow builds it
        _log.debug("no seeded store for %s: %s", tracking_uri, exc)
        return False


def template_path(cache_root: Path | None = None) -> Path:
    import mlflow

    return (cache_root or default_cache_root()) / "mlflow-stores" / f"empty-mlflow-{mlflow.__version__}.db"


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI; None for anything else (other stores, in-memory, URI options)."""
    if not tracking_uri.startswith(_PREFIX) or "?" in tracking_uri:
        return None
    name = tracking_uri[len(_PREFIX):]
    if not name or name == ":memory:":
        return None
    return Path(name).absolute()


def _build_template(template: Path) -> None:
    """Every table of MLflow's current schema, and nothing in them. Written aside and renamed into place, so
    two sweeps building it at once both leave a whole file."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    template.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkstemp(dir=template.parent, prefix=".building-", suffix=".db")[1])
    try:
        engine = sqlalchemy.create_engine(f"{_PREFIX}{staged}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.replace(staged, template)
    finally:
        staged.unlink(missing_ok=True)
