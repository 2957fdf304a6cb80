"""hpo_cls.promote.pipeline: selecting runs from a real MLflow store, rebuilding configs from params, resumable
retrains, and `hpo-cls promote` + `hpo-cls predict` end to end."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image
from sweep_helpers import hpo_cls

from hpo_cls.cli import flag, main
from hpo_cls.errors import PromoteError
from hpo_cls.promote.register import registered_model_name
from hpo_cls.promote.retrain import plan_members, train_member
from hpo_cls.promote.select import (
    Candidate,
    filled_with_early_stopped,
    load_candidates,
    near_duplicate_pairs,
    select_top_runs,
)
from hpo_cls.spec import (
    DataConfig,
    TrialConfig,
    flatten_trial_config,
    trial_config_from_dict,
)
from hpo_cls.tracking.runs import (
    PARENT_TAG,
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    SWEEP_NAME_TAG,
    TRIAL_ID_TAG,
    param_value,
    typed_params,
)
from hpo_cls.tracking.store import MlflowStore, find_sweep
from hpo_cls.train.checkpoint import EVALUATION_FILE, load_checkpoint, save_checkpoint

T0 = 1_700_000_000_000  # ms; explicit start times keep "newest sweep" unambiguous


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    return SimpleNamespace(uri=uri, client=client, store=MlflowStore(uri, client),
                           artifacts=(root / "mlruns").as_uri())


@pytest.fixture
def experiment(store, request):
    """A fresh experiment per test in the module's store: ``(name, id)``."""
    name = request.node.name
    return name, store.client.create_experiment(name, artifact_location=f"{store.artifacts}/{name}")


def log_sweep(client, experiment_id, sweep_id, name, trials, *, start=T0, epochs=2, searched="lr,backbone"):
    """Parent + child runs tagged, parametrised and scored the way a sweep records them.

    ``trials``: ``(trial_id, status, val_acc history, config overrides, log best_val_acc)``.
    """
    parent = client.create_run(experiment_id, start_time=start, run_name=sweep_id,
                               tags={SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep", SWEEP_NAME_TAG: name}).info.run_id
    client.log_batch(parent, params=[Param(k, param_value(v)) for k, v in
                                     {"epochs": epochs, "data_root": "/nowhere", "image_size": 16,
                                      "searched": searched}.items()])
    ids = {}
    for i, (trial_id, status, history, overrides, with_best) in enumerate(trials, 1):
        tags = {SWEEP_ID_TAG: sweep_id, TRIAL_ID_TAG: trial_id, ROLE_TAG: "trial", PARENT_TAG: parent}
        if status is not None:
            tags[STATUS_TAG] = status
        run_id = client.create_run(experiment_id, start_time=start + i, tags=tags).info.run_id
        params = {**flatten_trial_config(TrialConfig(**overrides)), "epochs_budget": epochs}
        metrics = [Metric("val_acc", v, start + i, step) for step, v in enumerate(history, 1)]
        if with_best:
            metrics += [Metric("best_val_acc", max(history[:step]), start + i, step)
                        for step in range(1, len(history) + 1)]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, param_value(v)) for k, v in params.items()])
        ids[trial_id] = run_id
    return ids


TRIALS = [
    ("a", "completed", [0.3, 0.5], {"lr": 0.1}, True),
    ("b", "completed", [0.6, 0.7], {"lr": 0.2}, True),
    ("c", "early_stopped", [0.9], {"lr": 0.3}, True),
    ("d", "failed", [0.95], {"lr": 0.4}, True),
    ("e", "completed", [0.2, 0.8, 0.6], {"lr": 0.5}, False),  # scored from its val_acc history: 0.8
    ("f", None, [0.99], {"lr": 0.6}, True),  # still running: no final status
]


# ---------------------------------------------------------------------------------------------
# selection


def test_selection_ranks_finished_runs_by_best_val_acc(store, experiment):
    _, exp_id = experiment
    ids = log_sweep(store.client, exp_id, "s1", "alpha", TRIALS)
    sweep = find_sweep(store.client, experiment[0], "s1")
    candidates = load_candidates(store.store, sweep)
    assert {c.trial_id for c in candidates} == {"a", "b", "c", "e"}  # failed and unfinished runs never qualify
    top = select_top_runs(candidates, 3)
    assert [(c.trial_id, c.score) for c in top] == [("e", 0.8), ("b", 0.7), ("a", 0.5)]
    assert top[0].run_id == ids["e"] and top[0].config.lr == 0.5
    with_early = select_top_runs(candidates, 2, include_early_stopped=True)
    assert [c.trial_id for c in with_early] == ["c", "e"]


def test_early_stopped_runs_fill_up_top_and_too_few_finished_runs_is_a_clear_error(store, experiment):
    log_sweep(store.client, experiment[1], "s1", "alpha", TRIALS)
    candidates = load_candidates(store.store, find_sweep(store.client, experiment[0]))
    filled = select_top_runs(candidates, 4)  # 3 completed: the early-stopped one is eligible for the 4th place
    assert [c.trial_id for c in filled] == ["e", "b", "a", "c"]
    assert "the best 1 early-stopped run(s) fill the rest" in filled_with_early_stopped(filled, False)
    assert filled_with_early_stopped(filled[:3], False) is None
    with pytest.raises(PromoteError) as info:
        select_top_runs(candidates, 5)
    message = info.value.render(flag)  # as the command line prints it
    assert "only 4 finished run(s)" in message and "lower --top" in message
    assert len(select_top_runs(candidates, 4, include_early_stopped=True)) == 4


def test_cli_reports_too_few_runs_and_unknown_sweeps_without_traceback(store, experiment, capsys):
    name, exp_id = experiment
    log_sweep(store.client, exp_id, "alpha-1", "alpha", TRIALS, start=T0)
    log_sweep(store.client, exp_id, "beta-1", "beta", TRIALS[:1], start=T0 + 100)
    common = ["--tracking-uri", store.uri, "--experiment", name]

    assert main(["promote", "--top", "2", *common]) == 2  # newest sweep (beta-1) has one completed run
    err = capsys.readouterr().err
    assert err.startswith("error: --top 2: only 1 finished run(s)") and "Traceback" not in err

    assert main(["promote", "--top", "1", "--sweep", "gamma", *common]) == 2
    err = capsys.readouterr().err
    assert "no sweep 'gamma'" in err and "beta-1 (beta), alpha-1 (alpha)" in err and len(err.splitlines()) == 1

    assert main(["promote", "--top", "1", "--experiment", "no-such-experiment", "--tracking-uri", store.uri]) == 2
    assert "no MLflow experiment 'no-such-experiment'" in capsys.readouterr().err


def test_sweep_is_found_by_id_by_newest_of_a_name_or_newest_overall(store, experiment):
    name, exp_id = experiment
    log_sweep(store.client, exp_id, "alpha-old", "alpha", TRIALS[:1], start=T0)
    log_sweep(store.client, exp_id, "alpha-new", "alpha", TRIALS[:1], start=T0 + 100)
    log_sweep(store.client, exp_id, "beta-1", "beta", TRIALS[:1], start=T0 + 200)
    assert find_sweep(store.client, name).sweep_id == "beta-1"
    assert find_sweep(store.client, name, "alpha").sweep_id == "alpha-new"
    assert find_sweep(store.client, name, "alpha-old").sweep_id == "alpha-old"
    assert find_sweep(store.client, name, "alpha-old").params["image_size"] == "16"


def _candidate(trial_id, score, **overrides):
    return Candidate(f"run-{trial_id}", trial_id, "completed", score, TrialConfig(**overrides), 0)


def test_dedupe_keeps_the_best_of_near_identical_configs():
    candidates = [
        _candidate("best", 0.9, lr=0.100, dropout=0.2, seed=0),
        _candidate("near", 0.8, lr=0.104, dropout=0.2, seed=7),  # lr within 5%, other seed: a duplicate
        _candidate("far", 0.7, lr=0.120, dropout=0.2),  # lr 20% away
        _candidate("other", 0.6, lr=0.100, dropout=0.2, attention="se"),  # another categorical value
    ]
    assert [c.trial_id for c in select_top_runs(candidates, 3, dedupe=True)] == ["best", "far", "other"]
    assert [c.trial_id for c in select_top_runs(candidates, 3)] == ["best", "near", "far"]
    with pytest.raises(PromoteError, match="1 near-duplicate config"):
        select_top_runs(candidates, 4, dedupe=True)


def test_near_duplicate_members_are_paired_best_first():
    best, near, far = (_candidate("best", 0.9, lr=0.100), _candidate("near", 0.8, lr=0.103, seed=1),
                       _candidate("far", 0.7, lr=0.2))
    assert [(a.trial_id, b.trial_id) for a, b in near_duplicate_pairs([best, near, far])] == [("best", "near")]
    assert near_duplicate_pairs([best, far]) == []


def test_promote_warns_before_retraining_near_duplicate_members(store, experiment, capsys):
    name, exp_id = experiment
    log_sweep(store.client, exp_id, "dup-1", "dup", [
        ("a", "completed", [0.5], {"lr": 0.100, "dropout": 0.2}, True),
        ("b", "completed", [0.4], {"lr": 0.102, "dropout": 0.2, "seed": 3}, True),  # within 5%, another seed
    ])
    # the sweep's data root does not exist here, so promote stops right after selecting (exit 2)
    assert main(["promote", "--top", "2", "--tracking-uri", store.uri, "--experiment", name]) == 2
    err = capsys.readouterr().err
    assert "warning: b is a near-duplicate of a (same choices, numbers within 5%)" in err
    assert "--dedupe promotes the next distinct run instead" in err


# ---------------------------------------------------------------------------------------------
# configs from MLflow params


@pytest.mark.parametrize("cfg", [
    TrialConfig(),
    TrialConfig(backbone="wrn16_4", head_hidden=(128, 64), milestones=(0.3, 0.6, 0.9), lr=1e-4, dropout=0.123456789,
                trivial_augment=True, amp=False, attention="cbam", attention_reduction=8, mix="both"),
], ids=["defaults", "everything-changed"])
def test_params_round_trip_through_mlflow_strings(cfg):
    as_strings = {k: param_value(v) for k, v in flatten_trial_config(cfg).items()} | {"epochs_budget": "4"}
    typed = typed_params(as_strings)
    assert typed["trivial_augment"] is cfg.trivial_augment and isinstance(typed["batch_size"], int)
    assert "epochs_budget" not in typed
    assert trial_config_from_dict(typed) == cfg


def test_plan_members_gives_each_run_consecutive_seeds_and_applies_fixed_overrides():
    plans = plan_members([_candidate("t1", 0.9, seed=3), _candidate("t2", 0.8)], seeds=2, overrides={"amp": False})
    assert [(p.key, p.config.seed) for p in plans] == [
        ("t1-seed3", 3), ("t1-seed4", 4), ("t2-seed0", 0), ("t2-seed1", 1)]
    assert all(p.config.amp is False for p in plans)


@pytest.mark.parametrize("raw,expected", [
    ("quickstart", "quickstart"), ("my sweep/v2", "my-sweep-v2"), ("//", "ensemble")])
def test_registered_model_name_is_sanitized(raw, expected):
    assert registered_model_name(raw) == expected


# ---------------------------------------------------------------------------------------------
# retraining: resumable and exact


TINY = TrialConfig(backbone="wrn16_4", small_input=True, batch_size=6, lr=0.05, seed=0)


def test_interrupted_member_resumes_from_its_checkpoint_exactly(tiny_data, tmp_path):
    data = DataConfig(root=tiny_data, image_size=16, workers=0)
    straight = train_member(data, TINY, 2, tmp_path / "straight")

    class Crash(Exception):
        pass

    def crash_after_first_epoch(metrics):
        if metrics["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        train_member(data, TINY, 2, tmp_path / "resumed", report=crash_after_first_epoch)
    seen = []
    resumed = train_member(data, TINY, 2, tmp_path / "resumed", report=lambda m: seen.append(m["epoch"]))
    assert resumed.resumed_from_epoch == 1 and seen == [1, 2]  # the restored epoch is reported again
    assert [m["val_acc"] for m in resumed.history] == [m["val_acc"] for m in straight.history]
    a, b = load_checkpoint(straight.bundle_path)["model"], load_checkpoint(resumed.bundle_path)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    again = train_member(data, TINY, 1, tmp_path / "resumed")  # other settings: starts over, not from epoch 2
    assert again.resumed_from_epoch == 0 and len(again.history) == 1


def test_train_on_val_adds_the_val_images_to_the_training_set(tiny_data):
    from hpo_cls.data.loaders import build_loaders

    data = DataConfig(root=tiny_data, image_size=16, workers=0)
    held_out, merged = (build_loaders(data, TINY, cache=False, train_on_val=flag) for flag in (False, True))
    assert len(held_out.train.dataset) == 18 and len(merged.train.dataset) == 18 + 9
    assert merged.val.dataset.samples == held_out.val.dataset.samples


# ---------------------------------------------------------------------------------------------
# end to end: sweep-like runs -> hpo-cls promote -> hpo-cls predict


def _log_tiny_sweep(uri: str, experiment: str, data_root: Path, workdir: Path, *, epochs: int = 1,
                    trials=None, predictions: bool = False) -> dict[str, str]:
    """Trials recorded through the sweep's own MLflow callback (SweepTracker), which logs each trial's best
    checkpoint as it ends, as in a sweep. ``trials``: ``(trial id, config, epochs it runs)``, a trial that
    runs fewer than ``epochs`` ends early-stopped (default: two 1-epoch trials). ``predictions``: each
    checkpoint carries the validation predictions, as the trainable writes them."""
    from hpo_cls.sweep.callbacks import SweepTracker
    from hpo_cls.train.run import TrainingRun

    trials = trials or (("t0000001", TINY, 1), ("t0000002", dataclasses.replace(TINY, backbone="resnet18", lr=0.02), 1))
    data = DataConfig(root=data_root, image_size=16, workers=0)
    tracker = SweepTracker(uri, experiment, "tiny-20250101-000000", "tiny", fixed=TINY, epochs=epochs,
                           metric="val_acc", mode="max", parent_tags={},
                           parent_params={"epochs": epochs, "data_root": str(data_root), "image_size": 16,
                                          "searched": "backbone,lr"})
    tracker.start()
    spec_text = f"name: tiny\ndata: {{root: {data_root}, image_size: 16, workers: 0}}\nresources: {{cpu: 1}}\n"
    tracker.writer.call("parent", lambda client, run_id: client.log_text(run_id, spec_text, "spec.yaml"))
    for trial_id, cfg, ran in trials:
        trial = SimpleNamespace(trial_id=trial_id, config={"backbone": cfg.backbone, "lr": cfg.lr}, last_result=None)
        run = TrainingRun(data, cfg, epochs)
        for epoch in range(ran):
            trial.last_result = run.run_epoch()
            tracker.on_trial_result(0, [], trial, trial.last_result)
            checkpoint_dir = workdir / trial_id / f"checkpoint_{epoch:06d}"  # what the trainable reports each epoch
            save_checkpoint(run.state_dict(), checkpoint_dir)
            evaluation = {"confusion": run.last_eval.confusion.tolist(), "per_class": run.class_report(run.last_eval)}
            (checkpoint_dir / EVALUATION_FILE).write_text(json.dumps(evaluation))
            if predictions:
                run.save_val_predictions(checkpoint_dir)
            tracker.on_checkpoint(0, [], trial, SimpleNamespace(path=str(checkpoint_dir)))
        tracker.on_trial_complete(0, [], trial)
    tracker.writer.close()
    return {t[0]: tracker.writer.run_ids.get(t[0]) for t in trials}


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.ray
def test_promote_then_predict_end_to_end(tiny_data, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("e2e", artifact_location=(tmp_path / "mlruns").as_uri())
    source_ids = _log_tiny_sweep(uri, "e2e", tiny_data, tmp_path / "trials")

    command = [sys.executable, "-m", "hpo_cls.cli", "promote", "--top", "2", "--epochs", "1", "--sweep", "tiny",
               "--experiment", "e2e", "--tracking-uri", uri, "--workdir", str(tmp_path / "work"),
               "--out", str(tmp_path / "promote.csv"), "--tta", "--weighted", "--retrain"]
    start = time.monotonic()
    promote = hpo_cls(*command[3:], cwd=tmp_path, timeout=300)  # killed with its local Ray if it overruns
    assert promote.returncode == 0, promote.stdout[-2000:] + "\n--- stderr ---\n" + promote.stderr[-6000:]
    assert "evaluation on val_seen" in promote.stdout and "evaluation on test" in promote.stdout
    # per-class rows and the confusion matrix name the classes as class_names.csv does; labels stay the folders
    assert len(re.findall(r"^(red|green|blue)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+\s*$", promote.stdout, re.M)) == 6, promote.stdout
    assert "registered tiny-ensemble version 1 with alias @champion" in promote.stdout
    assert "model page: http://127.0.0.1:5000/#/models/tiny-ensemble/versions/1" in promote.stdout
    for member in ("t0000001-seed0", "t0000002-seed0"):  # progress, as plain lines in a log
        assert re.search(rf"member {member} 1/1 epochs  train_loss [\d.]+  val_acc [\d.]+  [\d.]+s/epoch$", promote.stdout,
                         re.M)
    assert f"predicting {tiny_data / 'test'} 7/7 images" in promote.stdout
    assert "near-duplicate" not in promote.stderr, "two different configs are not flagged"
    print(f"promote took {time.monotonic() - start:.1f}s")

    # Predicting needs no Ray: the registered model loads through mlflow.pyfunc only.
    script = ("import sys; from hpo_cls.cli import main; rc = main(sys.argv[1:]); "
              "assert 'ray' not in sys.modules, 'predict imported ray'; sys.exit(rc)")
    predict = subprocess.run(
        [sys.executable, "-c", script, "predict", "models:/tiny-ensemble@champion", str(tiny_data / "test"),
         "--out", str(tmp_path / "predict.csv"), "--tracking-uri", uri],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert predict.returncode == 0, predict.stdout[-3000:] + predict.stderr[-3000:]
    assert "images/s" in predict.stdout and f"predicting {tiny_data / 'test'} 7/7 images" in predict.stdout

    rows = _read_csv(tmp_path / "promote.csv")
    assert rows == _read_csv(tmp_path / "predict.csv")
    assert rows[0] == ["image_name", "pred_label"]
    assert [r[0] for r in rows[1:]] == [f"img{i:02d}" for i in range(7)]
    assert {r[1] for r in rows[1:]} <= {"0", "1", "2"}

    version = client.get_model_version_by_alias("tiny-ensemble", "champion")
    assert version.description.startswith("Ensemble of 2 member(s) retrained from sweep ")
    assert all(key in version.description for key in ("t0000001-seed0", "t0000002-seed0", "weight"))
    model = client.get_registered_model("tiny-ensemble")
    assert "Version 1 (@champion): Ensemble of 2 member(s)" in model.description
    assert set(version.tags["hpo_cls.source_run_ids"].split(",")) == set(source_ids.values())
    assert json.loads(version.tags["hpo_cls.member.t0000002-seed0.config"])["backbone"] == "resnet18"
    promote_run = client.get_run(version.run_id)
    assert promote_run.data.tags[ROLE_TAG] == "promote" and promote_run.data.tags[STATUS_TAG] == "completed"
    assert {"val_seen_acc", "val_seen_gain_over_best_member", "test_acc"} <= set(promote_run.data.metrics)
    members = client.search_runs([promote_run.info.experiment_id],
                                 filter_string=f"tags.`{PARENT_TAG}` = '{promote_run.info.run_id}'")
    assert {m.data.tags["hpo_cls.source_run_id"] for m in members} == set(source_ids.values())
    assert all(m.data.tags[ROLE_TAG] == "promote_member" for m in members)
    assert all(len(client.get_metric_history(m.info.run_id, "val_acc")) == 1 for m in members)


def test_a_member_whose_trial_completed_the_same_training_is_taken_not_retrained(tiny_data, tmp_path):
    from hpo_cls.promote.pipeline import run_promote
    from hpo_cls.promote.plan import PromoteOptions
    from hpo_cls.promote.trial_checkpoints import REUSED_TAG

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("reuse", artifact_location=(tmp_path / "mlruns").as_uri())
    source_ids = _log_tiny_sweep(uri, "reuse", tiny_data, tmp_path / "trials")
    out = io.StringIO()
    outcome = run_promote(PromoteOptions(top=2, sweep="tiny", experiment="reuse", tracking_uri=uri,
                                         workdir=tmp_path / "work", out=tmp_path / "prediction.csv"), out)
    text = out.getvalue()
    assert text.count("taken as trained (--retrain trains it again)") == 2 and "retraining" not in text
    for result in outcome.members:  # the trial's own weights, and its epoch's metrics on the member run
        trial_weights = load_checkpoint(tmp_path / "trials" / result.key.split("-")[0] / "checkpoint_000000")["model"]
        member_weights = load_checkpoint(result.bundle_path)["model"]
        assert all(torch.equal(trial_weights[k], member_weights[k]) for k in trial_weights)
    members = client.search_runs([client.get_experiment_by_name("reuse").experiment_id],
                                 filter_string=f"tags.`{ROLE_TAG}` = 'promote_member'")
    assert {m.data.tags["hpo_cls.source_run_id"] for m in members} == set(source_ids.values())
    assert all(m.data.tags[REUSED_TAG] == "1" and m.data.tags[STATUS_TAG] == "completed" for m in members)
    assert all(len(client.get_metric_history(m.info.run_id, "val_acc")) == 1 for m in members)
    assert (tmp_path / "prediction.csv").is_file()


@pytest.mark.ray
def test_a_member_whose_trial_checkpoint_was_dropped_is_retrained_and_promote_says_so(tiny_data, tmp_path):
    from hpo_cls.promote.pipeline import run_promote
    from hpo_cls.promote.plan import PromoteOptions
    from hpo_cls.tracking.checkpoints import delete_checkpoint

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("dropped", artifact_location=(tmp_path / "mlruns").as_uri())
    source_ids = _log_tiny_sweep(uri, "dropped", tiny_data, tmp_path / "trials")
    dropped_trial = sorted(source_ids)[0]
    assert delete_checkpoint(client, source_ids[dropped_trial])  # as tracking.keep_checkpoints or gc would
    out = io.StringIO()
    outcome = run_promote(PromoteOptions(top=2, sweep="tiny", experiment="dropped", tracking_uri=uri,
                                         workdir=tmp_path / "work", out=tmp_path / "prediction.csv"), out)
    text = out.getvalue()
    assert f"member {dropped_trial}-seed0: trial {dropped_trial}'s checkpoint was dropped" in text, text
    assert text.count("taken as trained") == 1 and "retraining 1 member(s)" in text
    assert {m.key for m in outcome.members} == {f"{t}-seed0" for t in source_ids}
    assert (tmp_path / "prediction.csv").is_file()


@pytest.mark.ray
def test_promote_killed_mid_retrain_resumes_its_members_and_registers_one_version(tiny_data, tmp_path, ledger,
                                                                                  fault_figure):
    from processes import kill_tree
    from sweep_helpers import wait_for

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("resume", artifact_location=(tmp_path / "mlruns").as_uri())
    _log_tiny_sweep(uri, "resume", tiny_data, tmp_path / "trials")
    args = ["promote", "--top", "2", "--epochs", "5", "--sweep", "tiny", "--experiment", "resume", "--tracking-uri",
            uri, "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "prediction.csv")]
    checkpoints = tmp_path / "work"
    driver = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(checkpoints.glob("*/checkpoint.pt")), 300, "a member's first checkpoint")
    finally:
        kill_tree(driver)  # the driver and the local Ray it started, by their PIDs
    ledger["faults_injected"] += 1
    kept = {p.parent.name: load_checkpoint(p)["epoch"] for p in checkpoints.glob("*/checkpoint.pt")}

    again = hpo_cls(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    resumed = {key: int(epoch) for key, epoch in
               re.findall(r"(\S+): continued from the checkpoint of epoch (\d+)$", again.stdout, re.MULTILINE)}
    assert resumed == kept, "every member went on from the epoch its checkpoint holds"
    assert "registered tiny-ensemble version 1 with alias @champion" in again.stdout
    assert len(client.search_model_versions("name = 'tiny-ensemble'")) == 1, "exactly one version registered"
    total = sum(kept.values())
    fault_figure("promote driver killed mid-retrain, same command again", total, total - sum(resumed.values()),
                 "checkpointed member epochs")


def test_a_failed_promote_leaves_champion_where_it_was(tiny_data, tmp_path, capsys):
    """Issue 36, class 9: every check that can run before the first side effect (opening runs, registering,
    moving the alias) runs before it; a failure after registering moves @champion back."""
    from hpo_cls.errors import DataError
    from hpo_cls.promote.pipeline import run_promote
    from hpo_cls.promote.plan import PromoteOptions

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("fail", artifact_location=(tmp_path / "mlruns").as_uri())
    _log_tiny_sweep(uri, "fail", tiny_data, tmp_path / "trials")

    def promote(**changes):
        options = PromoteOptions(top=2, sweep="tiny", experiment="fail", tracking_uri=uri, workdir=tmp_path / "work",
                                 out=tmp_path / "prediction.csv")
        return run_promote(dataclasses.replace(options, **changes), io.StringIO())

    def state():
        versions = sorted(str(v.version) for v in client.search_model_versions("name = 'tiny-ensemble'"))
        champion = str(client.get_model_version_by_alias("tiny-ensemble", "champion").version)
        return versions, champion, len(client.search_runs([experiment_id], max_results=1000))

    promote()
    before = state()
    assert before[:2] == (["1"], "1")

    empty, clashing = tmp_path / "empty", tmp_path / "clashing"
    empty.mkdir()
    clashing.mkdir()
    for suffix in (".png", ".jpg"):  # two rows named "a" in prediction.csv
        Image.new("RGB", (16, 16)).save(clashing / f"a{suffix}")
    for changes, error, expected in [({"predict": empty}, PromoteError, "empty: no images to predict"),
                                     ({"predict": tmp_path / "missing"}, PromoteError, "no such folder"),
                                     ({"predict": clashing}, DataError, "share a name"),
                                     ({"batch_size": 0}, PromoteError, "batch_size must be at least 1"),
                                     ({"seeds": 0}, PromoteError, "seeds must be at least 1")]:
        with pytest.raises(error, match=expected):
            promote(**changes)
        assert state() == before, f"{changes}: nothing registered, no run opened, the alias unmoved"

    corrupt = tmp_path / "corrupt"  # found only while predicting, after the new version is registered
    corrupt.mkdir()
    Image.new("RGB", (16, 16)).save(corrupt / "good.png")
    (corrupt / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot decode"):
        promote(predict=corrupt)
    versions, champion, _ = state()
    assert versions == ["1", "2"] and champion == "1", "@champion points at version 1 again"
    assert "version 2: the version stays registered (no alias), @champion points at version 1 again" in capsys.readouterr().err


def test_greedy_promote_chooses_on_half_of_val_reports_the_other_half_and_predict_reproduces_it(tiny_data, tmp_path):
    """A quickstart-like sweep (one trial stopped early) whose trials log their predictions, then
    ``promote --select greedy``: members as trained with their weights, held-out figures of each member and
    of the ensemble, the ensemble registered with them, and ``predict`` writing the same prediction.csv."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("greedy", artifact_location=(tmp_path / "mlruns").as_uri())
    trials = (("t0000001", TINY, 2), ("t0000002", dataclasses.replace(TINY, backbone="resnet18", lr=0.02), 1),
              ("t0000003", dataclasses.replace(TINY, lr=0.01, seed=3), 2))
    source_ids = _log_tiny_sweep(uri, "greedy", tiny_data, tmp_path / "trials", epochs=2, trials=trials,
                                 predictions=True)
    stopped = client.get_run(source_ids["t0000002"])
    assert stopped.data.tags[STATUS_TAG] == "early_stopped"
    assert [a.path for a in client.list_artifacts(stopped.info.run_id, "predictions")] == [
        "predictions/val_predictions.npz"]

    out = io.StringIO()
    with_args = ["promote", "--select", "greedy", "--sweep", "tiny", "--experiment", "greedy", "--tracking-uri", uri,
                 "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "promote.csv")]
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert main(with_args) == 0
    text = out.getvalue()
    assert "greedy ensemble selection with replacement (nll on the selection half of val: 4 images; 5 held out) " \
           "over 3 finished run(s), completed and early-stopped" in text
    assert re.search(r"^\s*#\s+trial\s+status\s+best_val_acc\s+weight", text, re.M)  # members with their weights
    assert "taken as trained" in text and "retraining" not in text
    assert "evaluation on val_heldout" in text and "val_select (the 4 images the selection saw)" in text

    version = client.get_model_version_by_alias("tiny-ensemble", "champion")
    members = version.tags["hpo_cls.members"].split(",")
    weights = json.loads(version.tags["hpo_cls.weights"])
    assert len(members) == len(weights) >= 1 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert version.tags["hpo_cls.select"] == "greedy" and "held-out half" in version.tags["hpo_cls.val_split"]
    promote_run = client.get_run(version.run_id)
    heldout = promote_run.data.metrics["val_heldout_acc"]
    assert float(version.tags["hpo_cls.val_heldout_acc"]) == pytest.approx(heldout, abs=1e-6)
    assert {f"val_heldout_acc.{m}" for m in members} | {"val_select_acc"} <= set(promote_run.data.metrics)
    assert "val_acc" not in promote_run.data.metrics  # no val figure without saying what the selection saw
    for member in members:  # each member's held-out accuracy is printed in the table
        assert re.search(rf"^\s*{re.escape(member)}\s+[\d.]+\s+[\d.]+$", text, re.M)

    assert main(["predict", "models:/tiny-ensemble@champion", str(tiny_data / "test"), "--out",
                 str(tmp_path / "predict.csv"), "--tracking-uri", uri]) == 0
    assert _read_csv(tmp_path / "promote.csv") == _read_csv(tmp_path / "predict.csv")
