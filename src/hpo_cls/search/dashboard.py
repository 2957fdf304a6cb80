"""``hpo-cls dashboard``: optuna-dashboard on a sweep's Optuna study, while the sweep runs and after.

The study is where ``search.storage`` put it (:mod:`hpo_cls.search.storage`), named after the sweep id. The
sweep's parent run records that setting (:data:`STORAGE_PARAM`), so the sweep id alone finds the study; a
password in an RDB URL is not recorded, and ``--storage`` gives the URL then.
"""

from __future__ import annotations

from typing import Mapping

from hpo_cls.errors import CommandError
from hpo_cls.search.storage import MEMORY, TRACKING, study_storage

__all__ = ["STORAGE_PARAM", "dashboard_command", "recorded_storage", "sweep_study_storage", "study_page", "serve"]

STORAGE_PARAM = "study_storage"  # the parent run's param: memory, tracking or the RDB URL (redacted)
_REDACTED = "***"


def dashboard_command(sweep_id: str, tracking_uri: str, experiment: str) -> str:
    """The ``hpo-cls dashboard`` command that serves this sweep's study (the sweep's header prints it)."""
    import shlex

    from hpo_cls.tracking.uri import redact_uri

    words = ["hpo-cls", "dashboard", sweep_id]
    if tracking_uri != "sqlite:///mlflow.db":
        words += ["--tracking-uri", redact_uri(tracking_uri)]
    if experiment != "hpo-cls":
        words += ["--experiment", experiment]
    return shlex.join(words)


def recorded_storage(value: str, tracking_uri: str) -> str:
    """What the parent run records of ``search.storage: value``: ``memory``, ``tracking``, or the RDB URL
    (a SQLite file's path made absolute) without its password."""
    from hpo_cls.tracking.uri import redact_uri

    return value if value in (MEMORY, TRACKING) else redact_uri(study_storage(value, tracking_uri))


def sweep_study_storage(sweep_id: str, params: Mapping[str, str], tracking_uri: str, storage: str | None) -> str:
    """The RDB URL of sweep ``sweep_id``'s study: ``storage`` when given, else what its parent run recorded
    (``tracking``: beside ``tracking_uri``). A study kept in memory cannot be served: the error says how to
    get a stored one."""
    if storage:
        return study_storage(storage, tracking_uri) or storage
    recorded = params.get(STORAGE_PARAM, MEMORY)  # sweeps made before the param kept their study in memory
    if recorded == MEMORY:
        raise CommandError(
            f"sweep {sweep_id} kept its Optuna study in memory (search.storage: memory), where no dashboard can "
            "read it; run the sweep with --set search.storage=tracking (tables beside a SQLite or PostgreSQL "
            "tracking.uri) or an RDB URL (--set search.storage=sqlite:///optuna.db), then `hpo-cls dashboard`")
    if recorded == TRACKING:
        return study_storage(TRACKING, tracking_uri)
    if _REDACTED in recorded:
        raise CommandError(f"sweep {sweep_id}'s study is in {recorded}, recorded without its password; pass the "
                           "URL with {storage}")
    return recorded


def study_page(storage_url: str, study_name: str) -> str:
    """The dashboard's path of the study (``/dashboard/studies/<id>``); an error when the storage holds none
    of that name. A SQLite file that is not there is reported, never created."""
    import os

    import optuna

    from hpo_cls.tracking.uri import redact_uri

    if storage_url.startswith("sqlite:///"):
        path = storage_url.split(":///", 1)[1].split("?", 1)[0]
        if path and not path.startswith(":memory:") and not os.path.isfile(path):
            raise CommandError(f"no Optuna storage at {redact_uri(storage_url)} (the file {path} does not exist)")
    try:
        storage = optuna.storages.RDBStorage(storage_url, skip_compatibility_check=True, skip_table_creation=True)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and Optuna raise many kinds; all mean "cannot open"
        raise CommandError(f"cannot open the Optuna storage {redact_uri(storage_url)}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    try:
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError:
            names = [s.study_name for s in storage.get_all_studies()][:20]
            raise CommandError(f"{redact_uri(storage_url)} holds no study named {study_name!r}; studies there: "
                               f"{', '.join(names) or 'none'}") from None
    finally:
        storage.remove_session()
    return f"/dashboard/studies/{study_id}"


def serve(storage_url: str, host: str, port: int) -> None:
    """optuna-dashboard on ``host:port`` until interrupted (it serves every study of the storage)."""
    import optuna_dashboard

    try:
        optuna_dashboard.run_server(storage_url, host=host, port=port)
    except KeyboardInterrupt:
        pass
