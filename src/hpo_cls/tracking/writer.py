"""The MLflow writer: every MLflow call of a sweep on one background thread.

It works an ordered queue: the Tune driver never waits on the tracking server, metric writes are
batched, and an unreachable server delays writes (with a warning) instead of losing them or crashing
trials.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from hpo_cls.console import warn
from hpo_cls.tracking.runs import (
    FINALIZED_TAG,
    PARENT_TAG,
    find_or_create_experiment,
    find_run,
    param_value,
)
from hpo_cls.tracking.uri import default_retry_seconds, redact_text, redact_uri

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

__all__ = ["MlflowWriter"]

_BATCH_LIMIT = 900  # MLflow accepts at most 1000 metrics per log_batch


@dataclass
class _Op:
    kind: str  # "call" | "metrics"
    key: str | None = None  # run key the op belongs to (resolved to a run id when the op runs)
    fn: Callable[[MlflowClient, str | None], Any] | None = None
    metrics: list[Metric] = field(default_factory=list)
    done: threading.Event | None = None


class MlflowWriter:
    """Ordered, retrying, batching MLflow writer on a background thread.

    Runs are addressed by a key (``"parent"`` or a trial id); ``open_run`` binds a key to a run of
    ``experiment`` that is found by tags or created, so later ops for that key need no run id from the
    caller. The client and the experiment are made on the writer thread at the first write (a new SQLite
    store first builds its tables, 1-2 s), so a sweep's trials start meanwhile.
    """

    def __init__(self, tracking_uri: str, experiment: str, retry_for_s: float | None = None,
                 warn: Callable[[str], None] = warn):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self.retry_for_s = default_retry_seconds(tracking_uri) if retry_for_s is None else retry_for_s
        self.warn = warn
        self.run_ids: dict[str, str] = {}
        # Steps already written, so a trial that reports epochs again (a retry from its checkpoint, a resumed
        # sweep) does not log them twice: run key -> highest step logged before this driver reopened the run,
        # and (run key, metric) -> highest step written since. Per metric: other metrics at a step already
        # written (promote's test figures after its val figures, both step 0) are new.
        self.logged_steps: dict[str, int] = {}
        self._written_steps: dict[tuple[str, str], int] = {}
        self.failed_ops = 0
        self._queue: queue.Queue[_Op | None] = queue.Queue()
        self._lookahead: deque[_Op | None] = deque()  # taken off the queue while batching, not yet run
        self._thread = threading.Thread(target=self._work, name="mlflow-writer", daemon=True)
        self._thread.start()

    @property
    def client(self) -> MlflowClient:
        """Made on first use; only the writer thread uses it."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """Resolved on first use; only the writer thread uses it."""
        if self._experiment_id is None:
            self._experiment_id = find_or_create_experiment(self.client, self.experiment)
        return self._experiment_id

    # -- API used by the driver (non-blocking) -------------------------------------------------

    def open_run(self, key: str, identity: dict[str, str], run_name: str, *,
                 tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                 parent_key: str | None = None, step_metric: str = "val_acc", resume: bool = True) -> None:
        """Bind ``key`` to the run carrying the ``identity`` tags, creating it (nested under the run of
        ``parent_key``, with ``tags`` and ``params``) if none exists yet. With ``resume`` a found run is
        running again (and no longer finalized), and metric steps up to the last one of ``step_metric``
        already in it are not logged again; without, it is only bound, its state left as it is."""

        def op(client: MlflowClient, _run_id: str | None) -> None:
            from mlflow.entities import Param

            run_id = find_run(client, self.experiment_id, identity)
            if run_id is None:
                all_tags = {**identity, **(tags or {})}
                if parent_key is not None:
                    all_tags[PARENT_TAG] = self.run_ids[parent_key]
                run_id = client.create_run(self.experiment_id, run_name=run_name, tags=all_tags).info.run_id
                items = [Param(k, param_value(v)) for k, v in (params or {}).items()]
                for i in range(0, len(items), 100):
                    client.log_batch(run_id, params=items[i : i + 100])
            elif resume:
                client.update_run(run_id, status="RUNNING")
                if FINALIZED_TAG in client.get_run(run_id).data.tags:  # e.g. a failed trial retried on resume
                    client.delete_tag(run_id, FINALIZED_TAG)
                # A resumed trial may report epochs again that were logged before the interruption.
                self.logged_steps[key] = max((m.step for m in client.get_metric_history(run_id, step_metric)),
                                             default=-1)
            self.run_ids[key] = run_id

        self._queue.put(_Op("call", None, op))

    def log_metrics(self, key: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._queue.put(_Op("metrics", key, metrics=batch))

    def call(self, key: str | None, fn: Callable[[MlflowClient, str | None], Any]) -> None:
        """Run ``fn(client, run_id_of_key)`` in order with the other writes."""
        self._queue.put(_Op("call", key, fn))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` ran out first."""
        done = threading.Event()
        self._queue.put(_Op("call", None, lambda client, run_id: None, done=done))
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout=5)

    # -- the worker thread ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            op = self._lookahead.popleft() if self._lookahead else self._queue.get()
            if op is None:
                return
            if op.kind == "metrics":
                self._coalesce(op)
            self._run_with_retry(op)
            if op.done is not None:
                op.done.set()

    def _coalesce(self, op: _Op) -> None:
        """Append queued metric writes of the same run to ``op`` (one log_batch); keeps order."""
        while len(op.metrics) < _BATCH_LIMIT and not self._lookahead:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return
            if nxt is not None and nxt.kind == "metrics" and nxt.key == op.key:
                op.metrics.extend(nxt.metrics)
            else:
                self._lookahead.append(nxt)

    def _run_with_retry(self, op: _Op) -> None:
        deadline = time.monotonic() + self.retry_for_s
        delay, warned = 0.5, False
        while True:
            try:
                run_id = self.run_ids.get(op.key) if op.key else None
                if op.key and run_id is None:
                    raise LookupError(f"no MLflow run is open for {op.key}")
                if op.kind == "metrics":
                    floor = self.logged_steps.get(op.key, -1)
                    fresh = [m for m in op.metrics
                             if m.step > max(floor, self._written_steps.get((op.key, m.key), -1))]
                    for i in range(0, len(fresh), _BATCH_LIMIT):
                        self.client.log_batch(run_id, metrics=fresh[i : i + _BATCH_LIMIT])
                    for m in fresh:
                        name = (op.key, m.key)
                        self._written_steps[name] = max(self._written_steps.get(name, -1), m.step)
                else:
                    op.fn(self.client, run_id)
                if warned:
                    self.warn(f"MLflow tracking server at {redact_uri(self.tracking_uri)} is reachable again; "
                              "queued writes sent")
                return
            except LookupError:
                self.failed_ops += 1
                self.warn(f"dropped an MLflow write: no run is open for {op.key}")
                return
            except Exception as exc:  # noqa: BLE001 - any client/server error: keep retrying, never crash
                if time.monotonic() > deadline:
                    self.failed_ops += 1
                    self.warn(f"gave up an MLflow write after {self.retry_for_s:.0f}s: {redact_text(str(exc))}")
                    return
                if not warned:
                    self.warn(f"MLflow write failed, retrying in the background: {redact_text(str(exc).splitlines()[0])[:200]}")
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
