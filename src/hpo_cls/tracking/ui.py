"""Opening the MLflow UI on a sweep: its addresses, and the experiment tags MLflow 3's UI reads.

MLflow 3.17's UI shows an experiment in the mode of its sidebar switch (GenAI / Model training): the URL's
``workflowType`` parameter, else the browser's last choice of the switch (its local storage), else GenAI.
The experiment tag ``mlflow.experimentKind = custom_model_development`` (what the UI's "experiment type"
selector writes; hpo-cls sets it when it creates an experiment) is not what 3.17 picks the mode by
(docs/mlflow.md), so every link hpo-cls prints carries ``workflowType=machine_learning``.

The runs table's columns are the browser's choice, except in a
*saved view*: an experiment tag ``mlflow.sharedViewState.<key>`` that the UI lists under "Views" and opens
with ``?viewStateShareKey=<key>``. Each sweep gets one: its trial runs, best first by its own metric and mode,
with ``best_<metric>``, status and the searched parameters as columns.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import time
import urllib.parse

from hpo_cls.tracking.runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING, ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.store import find_sweep, sweep_models, sweep_records
from hpo_cls.tracking.uri import redact_uri

__all__ = ["EXPERIMENT_KIND_TAG", "MODEL_TRAINING", "VIEW_TAG_PREFIX", "DEFAULT_UI_PORT", "ui_base_url",
           "runs_view_url", "run_url", "model_url", "view_key", "sweep_view_state", "sweep_view_op", "is_local_store", "ui_links",
           "port_problem"]

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
DEFAULT_UI_PORT = 5000


def is_local_store(tracking_uri: str) -> bool:
    """A store read straight from disk (SQLite, a folder): its UI is the one ``hpo-cls ui`` starts."""
    return not tracking_uri.lower().startswith(("http://", "https://"))


def port_problem(port: int, host: str = "127.0.0.1") -> str | None:
    """Why the UI's server could not listen on ``host:port`` (another program does; a port below 1024 without
    the right), or None. Bound as that server binds (SO_REUSEADDR): a port that a closed connection still
    holds is free for it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            in_use = exc.errno == errno.EADDRINUSE
            return "is in use by another program" if in_use else f"cannot be used: {exc.strerror}"
    return None


def ui_base_url(tracking_uri: str, port: int = DEFAULT_UI_PORT) -> str:
    """Where the UI of ``tracking_uri`` is: the tracking server itself, or ``hpo-cls ui`` on this machine."""
    if is_local_store(tracking_uri):
        return f"http://127.0.0.1:{port}"
    return redact_uri(tracking_uri).rstrip("/")


def view_key(sweep_id: str) -> str:
    """The saved view's key for a sweep (an experiment tag suffix and a URL parameter)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_id)


def runs_view_url(base: str, experiment_id: str, sweep_id: str | None = None) -> str:
    """The experiment's runs table in model-training mode; with ``sweep_id``, through the sweep's view."""
    query = {"workflowType": "machine_learning"}
    if sweep_id:
        query["viewStateShareKey"] = view_key(sweep_id)
    return f"{base}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def model_url(base: str, name: str, version: str | None = None) -> str:
    """A registered model's page in the UI (its version's page with ``version``)."""
    path = f"{base}/#/models/{urllib.parse.quote(name, safe='')}"
    return f"{path}/versions/{version}" if version else path


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"  # how the UI names a column (and a sort key)


def sweep_view_state(sweep_id: str, searched: list[str], rule: ScoreRule = ScoreRule()) -> dict:
    """The runs-table state of a sweep's view: its trial runs, best first by ``rule``, the columns that matter."""
    columns = [_column("metrics", rule.best_metric), _column("metrics", rule.metric), _column("tags", STATUS_TAG),
               _column("tags", "hpo_cls.epochs_run"), *[_column("params", name) for name in searched],
               _column("attributes", "Duration")]
    return {
        "searchFilter": f"tags.`{SWEEP_ID_TAG}` = '{sweep_id}' and tags.`{ROLE_TAG}` = 'trial'",
        "orderByKey": _column("metrics", rule.best_metric),
        "orderByAsc": rule.mode == "min",
        "selectedColumns": list(dict.fromkeys(columns)),
    }


def sweep_view_op(sweep_id: str, searched: list[str], rule: ScoreRule = ScoreRule()):
    """An :meth:`MlflowWriter.call` op on the sweep's parent run: mark its experiment as model training
    (unless someone chose a kind already) and save the sweep's view."""

    def op(client, run_id):
        experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
        if not experiment.tags.get(EXPERIMENT_KIND_TAG):
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        now = int(time.time() * 1000)
        envelope = {"name": f"hpo-cls sweep {sweep_id}", "createdAt": now, "updatedAt": now,
                    "state": json.dumps(sweep_view_state(sweep_id, searched, rule))}
        client.set_experiment_tag(experiment.experiment_id, VIEW_TAG_PREFIX + view_key(sweep_id), json.dumps(envelope))

    return op


def ui_links(client, experiment: str, sweep: str | None, base: str) -> list[str]:
    """The lines ``hpo-cls ui`` prints: the sweep's runs view (its saved view made if an older sweep has
    none), its parent run and the model version its last promotion registered; only the experiment's runs view where the store holds no sweep yet."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        if sweep is not None:
            find_sweep(client, experiment, sweep)  # raises the error that names the experiments there
        return [f"Experiments:   {base}/#/experiments?workflowType=machine_learning"]
    if sweep is None and not sweep_records(client, found.experiment_id, limit=1):
        return [f"Runs view:     {runs_view_url(base, found.experiment_id)}"]
    record = find_sweep(client, experiment, sweep)
    if VIEW_TAG_PREFIX + view_key(record.sweep_id) not in found.tags:
        sweep_view_op(record.sweep_id, record.searched, record.rule)(client, record.run_id)
    models = sweep_models(client, found.experiment_id, record.sweep_id)
    return [f"Sweep:         {record.sweep_id}",
            f"Runs view:     {runs_view_url(base, found.experiment_id, record.sweep_id)}",
            f"Parent run:    {run_url(base, found.experiment_id, record.run_id)}",
            *([f"Model:         {model_url(base, *models[-1])}"] if models else [])]
