"""Choosing members from the trials' logged validation predictions (a real MLflow store in tmp_path): greedy
over every finished run within the budget, top-K on the selection half, and the fall-back for sweeps logged
before trials kept their predictions."""

from __future__ import annotations

import io

from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from test_promote import TRIALS, log_sweep

from hpo_cls.errors import PromoteError
from hpo_cls.models.classifier import count_parameters
from hpo_cls.cli import flag
from hpo_cls.promote.plan import PromoteOptions, choose_members, plan_promote
from hpo_cls.promote.val_split import selection_mask
from hpo_cls.spec import TrialConfig
from hpo_cls.tracking.runs import PREDICTIONS_ARTIFACT_DIR
from hpo_cls.tracking.store import MlflowStore
from hpo_cls.train.val_predictions import save_val_predictions

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    return SimpleNamespace(uri=uri, client=client, store=MlflowStore(uri, client), artifacts=(root / "mlruns").as_uri())


@pytest.fixture
def experiment(store, request):
    """A fresh experiment per test: ``(name, id)``."""
    name = request.node.name
    return name, store.client.create_experiment(name, artifact_location=f"{store.artifacts}/{name}")


NAMES = [f"{label}/{i}.png" for label in (0, 1) for i in range(10)]
LABELS = np.array([0] * 10 + [1] * 10)
SELECT = selection_mask(NAMES, LABELS)


def _probabilities(right: np.ndarray) -> np.ndarray:
    """0.8 on the true class where ``right``, else 0.2."""
    p_true = np.where(right, 0.8, 0.2)
    return np.stack([np.where(LABELS == 0, p_true, 1 - p_true), np.where(LABELS == 1, p_true, 1 - p_true)], 1)


def _log_predictions(client, run_ids: dict[str, str], right: dict[str, np.ndarray], tmp_path) -> None:
    for trial_id, mask in right.items():
        folder = tmp_path / trial_id
        folder.mkdir()
        path = save_val_predictions(folder, _probabilities(mask), NAMES, LABELS, ["0", "1"], 1)
        client.log_artifact(run_ids[trial_id], str(path), PREDICTIONS_ARTIFACT_DIR)


def _options(name, **kw) -> PromoteOptions:
    return PromoteOptions(sweep="s1", experiment=name, **kw)


def test_a_sweep_without_predictions_falls_back_to_top_k_with_one_line(store, experiment):
    name, exp_id = experiment
    log_sweep(store.client, exp_id, "s1", "alpha", TRIALS)
    out = io.StringIO()
    selection = choose_members(_options(name, select="greedy", top=2, tracking_uri=store.uri), store.store, out)
    assert [c.trial_id for c in selection.selected] == ["e", "b"] and selection.weights is None
    assert not selection.on_selection_half
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "no trial logged its validation predictions" in lines[0]
    assert "falls back to the top 2" in lines[0]


def test_greedy_takes_early_stopped_runs_and_stays_within_the_budget(store, experiment, tmp_path):
    name, exp_id = experiment
    ids = log_sweep(store.client, exp_id, "s1", "alpha", TRIALS)
    # On the selection half: "c" (stopped early) is right on the first half of each class's selection images
    # and "e" on the rest, "a" and "b" nowhere: c and e together are right everywhere.
    rows = np.flatnonzero(SELECT)
    first, rest = np.zeros(len(NAMES), bool), np.zeros(len(NAMES), bool)
    first[rows[: len(rows) // 2 + 1]] = True
    rest[rows[len(rows) // 2 + 1:]] = True
    _log_predictions(store.client, ids, {"a": np.zeros(20, bool), "b": np.zeros(20, bool), "c": first, "e": rest},
                     tmp_path)
    out = io.StringIO()
    selection = choose_members(_options(name, select="greedy", tracking_uri=store.uri), store.store, out)
    assert [c.trial_id for c in selection.selected] == ["c", "e"]  # c is right on more images: chosen first
    # NLL on the 10 selection images: c 0.777, c+e 0.693 (0.5 everywhere), c+c+e 0.673 (0.6 on c's 6, 0.4 on
    # e's 4), then c+c+c+e 0.678 and c+c+e+e 0.693: stop, with c chosen twice
    assert selection.weights == pytest.approx([2 / 3, 1 / 3]) and selection.on_selection_half
    assert selection.selected[0].status == "early_stopped"
    assert "over 4 finished run(s), completed and early-stopped: 2 member(s)" in out.getvalue()

    one = count_parameters(TrialConfig(lr=0.3), 2)  # every run here has the same network: two would not fit
    budget = choose_members(_options(name, select="greedy", max_params=one * 1.5, tracking_uri=store.uri),
                            store.store, io.StringIO())
    assert [c.trial_id for c in budget.selected] == ["c"] and budget.weights == [1.0]
    with pytest.raises(PromoteError, match="no candidate fits the budget"):
        choose_members(_options(name, select="greedy", max_params=one / 2, tracking_uri=store.uri), store.store,
                       io.StringIO())


def test_top_k_ranks_on_the_selection_half_when_predictions_exist(store, experiment, tmp_path):
    name, exp_id = experiment
    ids = log_sweep(store.client, exp_id, "s1", "alpha", TRIALS)
    held_out_only, select_only = ~SELECT, SELECT.copy()
    # "a" ranks last by its logged best_val_acc, but is right on every selection image
    _log_predictions(store.client, ids, {"a": select_only, "b": held_out_only, "c": held_out_only,
                                         "e": held_out_only}, tmp_path)
    out = io.StringIO()
    selection = choose_members(_options(name, top=1, tracking_uri=store.uri), store.store, out)
    assert [(c.trial_id, c.score) for c in selection.selected] == [("a", 1.0)] and selection.on_selection_half
    assert f"on the selection half of val ({SELECT.sum()} images)" in out.getvalue()


@pytest.mark.parametrize("clash, shown", [(dict(dedupe=True), "--dedupe"), (dict(weighted=True), "--weighted"),
                                          (dict(pareto=True), "--pareto"), (dict(diverse="lr"), "--diverse")])
def test_greedy_refuses_options_that_choose_members_otherwise(store, clash, shown):
    with pytest.raises(PromoteError) as info:  # before anything is read
        plan_promote(_options("any", select="greedy", **clash), store.store, io.StringIO())
    assert info.value.render(flag) == f"--select greedy chooses members and weights from every finished run itself; drop {shown}"
