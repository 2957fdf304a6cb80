"""Where a sweep's Optuna study lives (``search.storage``), and its name there: the sweep's id.

- ``memory`` (the default): in the driver, saved with Tune's experiment state; a ``--resume`` continues it
  from Tune's last snapshot. Nothing outside the sweep can read it.
- an RDB URL (``sqlite:///optuna.db``, ``postgresql+psycopg://user@host/db``, ``mysql+pymysql://...``): the
  study is stored there as the trials go, under the sweep's id, so several sweeps share one database.
  ``optuna-dashboard URL`` and ``optuna.load_study(study_name=SWEEP_ID, storage=URL)`` read it while the
  sweep runs, and a ``--resume`` after a driver crash continues the same study
  (:class:`hpo_cls.search.searcher.StudySearcher`).
- ``tracking``: the sweep's own database (``tracking.uri``), in tables of its own. Optuna and MLflow cannot
  share one schema: both version their tables with Alembic in a table named ``alembic_version``, and
  whichever comes second refuses the other's revision (Optuna: "no longer compatible with the table
  schema"; MLflow: "Can't locate revision"). So a SQLite ``tracking.uri`` (``sqlite:///runs/mlflow.db``)
  puts the study in a file beside it (``sqlite:///runs/mlflow-optuna.db``), and a PostgreSQL one in the
  same database, in schema ``optuna`` (created when missing; Optuna finds it through ``search_path``).
  A tracking server or folder has no database the driver can reach: name an RDB URL then.

An RDB URL that is ``tracking.uri`` itself is refused for the same reason. Checked when the spec is read
(:func:`storage_problem`); resolved when the sweep starts (:func:`study_storage`).
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MEMORY", "TRACKING", "OPTUNA_SCHEMA", "storage_problem", "study_storage", "prepare_storage"]

MEMORY, TRACKING = "memory", "tracking"
OPTUNA_SCHEMA = "optuna"  # a PostgreSQL tracking database's schema for the study
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


def _scheme(uri: str) -> str:
    """``postgresql`` of ``postgresql+psycopg://...`` (and of ``postgres://``); "" for anything that is no URL."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    return "postgresql" if scheme == "postgres" else scheme


def storage_problem(value: str, tracking_uri: str) -> str | None:
    """Why ``search.storage: value`` cannot work with ``tracking.uri``, or None."""
    if value == MEMORY:
        return None
    if value == TRACKING:
        if _scheme(tracking_uri) not in ("sqlite", "postgresql"):
            return (f"tracking needs a SQLite or PostgreSQL tracking.uri, not {_kind(tracking_uri)} (a server or "
                    "folder has no database the sweep can reach); give the study an RDB URL of its own")
        return None
    if _scheme(value) not in _RDB_SCHEMES:
        return (f"expected memory, tracking or an RDB URL (sqlite:///optuna.db, postgresql://user@host/db), "
                f"got {_kind(value)}")
    if _same_database(value, tracking_uri):
        return ("is tracking.uri's database, where Optuna's and MLflow's tables collide (both keep an "
                "alembic_version table); use `tracking` for tables of the study's own beside it")
    return None


def study_storage(value: str, tracking_uri: str) -> str | None:
    """The RDB URL of the study for ``search.storage: value`` (checked by :func:`storage_problem`); None
    for a study in memory."""
    if value == MEMORY:
        return None
    if value != TRACKING:
        return _absolute_sqlite(value)
    if _scheme(tracking_uri) == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db: the file's path follows the third "/"
        head, _, rest = tracking_uri.partition(":///")
        path, sep, query = rest.partition("?")
        file = PurePosixPath(path)
        sibling = file.with_name(file.stem + "-optuna" + (file.suffix or ".db"))
        return _absolute_sqlite(f"{head}:///{sibling}{sep}{query}")
    parts = urlsplit(tracking_uri)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"-csearch_path={OPTUNA_SCHEMA}"
    return urlunsplit(parts._replace(query=urlencode(query)))


def _absolute_sqlite(url: str) -> str:
    """A SQLite URL with its file's path made absolute: a ``--resume`` from another folder finds the study."""
    if _scheme(url) != "sqlite" or ":///" not in url:
        return url
    head, _, rest = url.partition(":///")
    return f"{head}:///{os.path.abspath(rest)}" if rest and not rest.startswith(("/", ":memory:")) else url


def prepare_storage(url: str) -> None:
    """Create the PostgreSQL schema a :func:`study_storage` URL names in its ``search_path``, if missing."""
    options = dict(parse_qsl(urlsplit(url).query)).get("options", "")
    if _scheme(url) != "postgresql" or "search_path=" not in options:
        return
    import sqlalchemy

    schema = options.split("search_path=", 1)[1].split(",", 1)[0].split()[0]
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def _kind(uri: str) -> str:
    """What a URI is, for a message, without its credentials (this module stays a leaf of the layers)."""
    return f"a {uri.split('://', 1)[0]}:// URI" if "://" in uri else repr(uri)


def _same_database(a: str, b: str) -> bool:
    def where(uri: str):
        parts = urlsplit(uri)
        if _scheme(uri) == "sqlite":  # relative to the current folder, as SQLAlchemy opens it
            return "sqlite", os.path.abspath(parts.path[1:]) if parts.path[1:] else None
        return _scheme(uri), parts.hostname, parts.port, parts.path

    return where(a) == where(b)
