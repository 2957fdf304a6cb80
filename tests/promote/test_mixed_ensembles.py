"""The ensembles the reports built: named runs from several sweeps (--runs), several --sweep, the best run
per backbone (--diverse), the ensemble's parameter budget checked before any retraining, and the members'
normalisation reaching prediction and the registered model."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from sweep_helpers import write_tinted_image

from hpo_cls.cli import flag, main
from hpo_cls.errors import CheckpointError, PromoteError
from hpo_cls.models.classifier import build_model, count_parameters
from hpo_cls.promote.ensemble import load_ensemble, write_pyfunc_code
from hpo_cls.promote.plan import PromoteOptions, plan_promote
from hpo_cls.promote.predict import predict_probabilities
from hpo_cls.promote.select import Candidate, select_top_runs
from hpo_cls.spec import IMAGENET_MEAN, IMAGENET_STD, TrialConfig, flatten_trial_config
from hpo_cls.tracking.runs import PARENT_TAG, ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG, TRIAL_ID_TAG, param_value
from hpo_cls.tracking.store import MlflowStore
from hpo_cls.train.checkpoint import model_bundle, save_checkpoint

WRN = TrialConfig(backbone="wrn16_4", small_input=True, batch_size=6, lr=0.05)
RESNET = dataclasses.replace(WRN, backbone="resnet18")


def _candidate(trial_id, score, **overrides):
    return Candidate(f"run-{trial_id}", trial_id, "completed", score, TrialConfig(**overrides), 0)


def test_diverse_takes_the_best_run_per_value_before_filling_up():
    candidates = [_candidate("a", 0.9, backbone="resnet50"), _candidate("b", 0.8, backbone="resnet50"),
                  _candidate("c", 0.7, backbone="resnet50"), _candidate("d", 0.6, backbone="resnet152"),
                  _candidate("e", 0.5, backbone="resnext101_32x8d")]
    assert [c.trial_id for c in select_top_runs(candidates, 2)] == ["a", "b"]
    assert [c.trial_id for c in select_top_runs(candidates, 2, diverse="backbone")] == ["a", "d"]
    assert [c.trial_id for c in select_top_runs(candidates, 4, diverse="backbone")] == ["a", "b", "d", "e"]
    with pytest.raises(PromoteError, match="not a configuration key"):
        select_top_runs(candidates, 2, diverse="backbon")


# ---------------------------------------------------------------------------------------------
# sweeps in a real MLflow store


def _log_sweep(client, experiment_id, sweep_id, trials, data_root, start, max_params=None) -> dict[str, str]:
    """A sweep's parent and finished trial runs as a sweep records them; ``trials``: (trial id, config,
    best_val_acc). Returns trial id -> run id."""
    parent_params = {"epochs": 1, "data_root": str(data_root), "image_size": 16, "searched": "lr"}
    if max_params is not None:
        parent_params["max_params"] = max_params
    parent = client.create_run(experiment_id, start_time=start, run_name=sweep_id, tags={
        SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep", SWEEP_NAME_TAG: sweep_id.rsplit("-", 1)[0]}).info.run_id
    client.log_batch(parent, params=[Param(k, param_value(v)) for k, v in parent_params.items()])
    ids = {}
    for i, (trial_id, cfg, score) in enumerate(trials, 1):
        run = client.create_run(experiment_id, start_time=start + i, tags={
            SWEEP_ID_TAG: sweep_id, TRIAL_ID_TAG: trial_id, ROLE_TAG: "trial", PARENT_TAG: parent,
            STATUS_TAG: "completed"}).info.run_id
        params = {**flatten_trial_config(cfg), "epochs_budget": 1}
        client.log_batch(run, metrics=[Metric("best_val_acc", score, start + i, 1)],
                         params=[Param(k, param_value(v)) for k, v in params.items()])
        ids[trial_id] = run
    return ids


@pytest.fixture
def two_sweeps(tmp_path, tiny_data):
    """Sweep ``wrn-1`` (two WRN runs) and ``resnet-1`` (a ResNet run), each top-heavy in one backbone."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("mixed", artifact_location=(tmp_path / "mlruns").as_uri())
    wrn = _log_sweep(client, exp, "wrn-1", [("w1", WRN, 0.9), ("w2", dataclasses.replace(WRN, lr=0.02), 0.8)],
                     tiny_data, 1_700_000_000_000)
    resnet = _log_sweep(client, exp, "resnet-1", [("r1", RESNET, 0.6)], tiny_data, 1_700_000_001_000,
                        max_params=20_000_000)
    return uri, client, {**wrn, **resnet}


def _plan(uri, **options):
    return plan_promote(PromoteOptions(experiment="mixed", tracking_uri=uri, **options), MlflowStore(uri), io.StringIO())


def test_pooled_sweeps_with_diverse_backbone_take_one_member_per_backbone(two_sweeps):
    uri, _, ids = two_sweeps
    plain = _plan(uri, top=2, sweep=["wrn-1", "resnet-1"])
    assert [c.trial_id for c in plain.selected] == ["w1", "w2"]  # the two best are both WRNs
    diverse = _plan(uri, top=2, sweep=["wrn-1", "resnet-1"], diverse="backbone")
    assert [(c.trial_id, c.config.backbone) for c in diverse.selected] == [("w1", "wrn16_4"), ("r1", "resnet18")]
    assert [s.sweep_id for s in diverse.sweeps] == ["wrn-1", "resnet-1"]
    assert diverse.parameters == [count_parameters(WRN, 3), count_parameters(RESNET, 3)]


def test_runs_take_exactly_the_runs_named_from_any_sweep(two_sweeps):
    uri, _, ids = two_sweeps
    plan = _plan(uri, runs=[ids["r1"], ids["w2"]])
    assert [c.run_id for c in plan.selected] == [ids["r1"], ids["w2"]]
    assert [s.sweep_id for s in plan.sweeps] == ["resnet-1", "wrn-1"]


@pytest.mark.parametrize("options,message", [
    (dict(runs=["nope"]), "--runs: no run nope"),
    (dict(runs=["R1", "R1"]), "--runs: named more than once"),
    (dict(runs=["R1"], top=2), "--runs promotes exactly the runs named; drop --top"),
    (dict(), "pass --top K"),
    (dict(runs=["R1"], max_params=0), "--max-params must be >= 1"),
])
def test_bad_selections_are_one_clear_error(two_sweeps, options, message):
    uri, _, ids = two_sweeps
    options["runs"] = [ids["r1"] if r == "R1" else r for r in options.get("runs", [])]
    with pytest.raises(PromoteError) as info:
        _plan(uri, **options)
    assert message in info.value.render(flag)


def test_an_ensemble_over_max_params_is_refused_before_any_retraining(two_sweeps, tmp_path):
    """One error line naming each member's count; no Ray, no MLflow promote run, no member folder."""
    uri, client, ids = two_sweeps
    wrn, resnet = count_parameters(WRN, 3), count_parameters(RESNET, 3)
    assert wrn + resnet > 2 * wrn  # the budget below fits two WRNs but not WRN + ResNet
    script = ("import sys; from hpo_cls.cli import main; rc = main(sys.argv[1:]); "
              "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)")
    workdir = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, "-c", script, "promote", "--runs", ids["w1"], ids["r1"], "--max-params", str(2 * wrn),
         "--experiment", "mixed", "--tracking-uri", uri, "--workdir", str(workdir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"the ensemble has {wrn + resnet:,} parameters, over max_params {2 * wrn:,}" in errors[0]
    assert f"w1-seed0 (wrn16_4) {wrn:,}" in errors[0] and f"r1-seed0 (resnet18) {resnet:,}" in errors[0]
    assert "--max-params N" in errors[0]
    assert not workdir.exists()
    assert not client.search_runs([client.get_experiment_by_name("mixed").experiment_id],
                                  filter_string=f"tags.`{ROLE_TAG}` = 'promote'")


def test_default_budget_is_the_sweeps_max_params(two_sweeps):
    uri, _, ids = two_sweeps
    _plan(uri, runs=[ids["w1"], ids["w2"]])  # wrn-1 logged no max_params: 100 M
    with pytest.raises(PromoteError, match="over max_params 20,000,000"):  # resnet-1's own budget is the smaller
        _plan(uri, runs=[ids["w1"], ids["r1"]], seeds=3)
    assert sum(_plan(uri, runs=[ids["w1"], ids["r1"]], seeds=3, max_params=10**9).parameters) > 20_000_000


@pytest.mark.ray
def test_promote_runs_from_two_sweeps_registers_one_ensemble(two_sweeps, tmp_path, tiny_data):
    uri, client, ids = two_sweeps
    out = tmp_path / "prediction.csv"
    code = main(["promote", "--runs", ids["w1"], ids["r1"], "--epochs", "1", "--experiment", "mixed",
                 "--tracking-uri", uri, "--workdir", str(tmp_path / "work"), "--out", str(out),
                 "--register-as", "mixed-ensemble"])
    assert code == 0
    version = client.get_model_version_by_alias("mixed-ensemble", "champion")
    assert version.tags["hpo_cls.source_run_ids"].split(",") == [ids["w1"], ids["r1"]]
    assert version.tags["hpo_cls.sweep_ids"] == "wrn-1,resnet-1"
    backbones = {json.loads(v)["backbone"] for k, v in version.tags.items() if k.endswith(".config")}
    assert backbones == {"wrn16_4", "resnet18"}
    promote_run = client.get_run(version.run_id)
    assert int(float(promote_run.data.params["parameters"])) == count_parameters(WRN, 3) + count_parameters(RESNET, 3)
    with open(out, newline="") as f:
        assert len(list(csv.reader(f))) == 1 + len(list((tiny_data / "test").iterdir()))


# ---------------------------------------------------------------------------------------------
# normalisation travels with the model


def _bundle(path: Path, cfg: TrialConfig, classes=("0", "1", "2"), drop: tuple[str, ...] = ()) -> Path:
    torch.manual_seed(0)
    model = build_model(cfg, len(classes))
    config = {k: v for k, v in flatten_trial_config(cfg).items() if k not in drop}
    state = {"format": "hpo-cls/1", "model": model.state_dict(), "epoch": 1, "best_val_acc": 0.5, "best_epoch": 1,
             "config": config, "image_size": 16, "class_to_idx": {c: i for i, c in enumerate(classes)}}
    return save_checkpoint(model_bundle(state), path)


def _images(folder: Path, n: int = 3) -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        write_tinted_image(paths[-1], rng, (120, 80, 200))
    return paths


def test_mean_and_std_reach_predict_and_the_registered_model(tmp_path):
    import mlflow

    cfg = dataclasses.replace(WRN, mean=(0.49, 0.49, 0.49), std=(0.25, 0.25, 0.25), resize="full")
    bundle = _bundle(tmp_path / "m" / "model.pt", cfg)
    images = _images(tmp_path / "images")
    loaded = load_ensemble([bundle], device="cpu")
    assert (loaded.eval_config.mean, loaded.eval_config.std, loaded.eval_config.resize) == (
        (0.49, 0.49, 0.49), (0.25, 0.25, 0.25), "full")
    ours = predict_probabilities(loaded.model, images, 16, cfg=loaded.eval_config)
    imagenet = predict_probabilities(loaded.model, images, 16)
    assert not torch.allclose(ours, imagenet), "the normalisation changes what the model sees"

    mlflow.pyfunc.save_model(tmp_path / "model", python_model=str(write_pyfunc_code(tmp_path)),
                             artifacts={"member_00": str(bundle)}, model_config={"members": ["member_00"]},
                             pip_requirements=["torch"])
    frame = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(
        pd.DataFrame({"image_path": [str(p) for p in images]}))
    registered = torch.tensor(frame[[f"prob_{c}" for c in ("0", "1", "2")]].to_numpy())
    assert torch.allclose(registered, ours, atol=1e-6)


def test_bundles_from_before_the_keys_keep_imagenet_statistics(tmp_path):
    bundle = _bundle(tmp_path / "old" / "model.pt", WRN, drop=("mean", "std", "resize", "hflip", "head_dropout"))
    loaded = load_ensemble([bundle], device="cpu")
    assert (loaded.eval_config.mean, loaded.eval_config.std, loaded.eval_config.resize) == (
        IMAGENET_MEAN, IMAGENET_STD, "crop")


def test_members_with_different_normalisation_are_refused(tmp_path):
    a = _bundle(tmp_path / "a" / "model.pt", WRN)
    b = _bundle(tmp_path / "b" / "model.pt", dataclasses.replace(WRN, mean=(0.5, 0.5, 0.5)))
    with pytest.raises(CheckpointError, match=r"preprocessing \(mean\) differs"):
        load_ensemble([a, b], device="cpu")
