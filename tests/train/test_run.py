"""hpo_cls.train.run + hpo_cls.train.checkpoint: exact resume from a checkpoint file, and what loading refuses."""

from __future__ import annotations

import os

import pytest
import torch

from hpo_cls.errors import CheckpointError
from hpo_cls.spec import DataConfig, TrialConfig, flatten_trial_config
from hpo_cls.train.checkpoint import (
    MODEL_FILE,
    TRAINING_STATE_FILE,
    load_checkpoint,
    model_bundle,
    save_checkpoint,
    save_trial_checkpoint,
)
from hpo_cls.train.engine import gpu_memory_mb
from hpo_cls.train.run import TrainingRun

EPOCHS = 3


def tiny_run(root, workers=0, **cfg) -> TrainingRun:
    cfg = TrialConfig(backbone="resnet18", small_input=True, batch_size=4, lr=0.05, amp=False, **cfg)
    return TrainingRun(DataConfig(root=root, image_size=16, workers=workers), cfg, EPOCHS)


@pytest.mark.parametrize(
    "cfg, save",
    [
        (dict(lr_scheduler="cosine", warmup_epochs=1), save_checkpoint),
        (dict(mix="mixup", ema_decay=0.9, lr_scheduler="plateau", dropout=0.2), save_checkpoint),
        (dict(mix="mixup", workers=1), save_checkpoint),
        (dict(mix="mixup", ema_decay=0.9, lr_scheduler="plateau", dropout=0.2), save_trial_checkpoint),
    ],
    ids=["plain", "mixup-ema", "mixup-workers", "mixup-ema-trial-folder"],
)
def test_resume_from_checkpoint_continues_exactly(tiny_image_folder, tmp_path, cfg, save):
    uninterrupted = tiny_run(tiny_image_folder, **cfg)
    uninterrupted.run_epoch()
    path = save(uninterrupted.state_dict(), tmp_path)
    expected = [uninterrupted.run_epoch() for _ in range(EPOCHS - 1)]  # two epochs: the LR schedule moves

    resumed = tiny_run(tiny_image_folder, **cfg)
    resumed.load_state_dict(load_checkpoint(path))
    got = [resumed.run_epoch() for _ in range(EPOCHS - 1)]

    for key in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "best_val_acc"):
        assert [m[key] for m in got] == [m[key] for m in expected], f"{key}: resumed as if never interrupted"
    for name, tensor in uninterrupted.eval_model.state_dict().items():
        torch.testing.assert_close(resumed.eval_model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_checkpoint_carries_class_mapping_and_config(tiny_image_folder, tmp_path):
    run = tiny_run(tiny_image_folder, head_hidden=(8,))
    run.run_epoch()
    state = load_checkpoint(save_checkpoint(run.state_dict(), tmp_path / "ckpt.pt"))
    assert state["class_to_idx"] == {"0": 0, "1": 1, "2": 2}, "prediction maps outputs back to folder names"
    assert state["config"] == flatten_trial_config(run.cfg), "the model can be rebuilt from the checkpoint"
    assert (state["image_size"], state["epoch"]) == (16, 1)


def test_a_trial_checkpoint_folder_holds_the_model_bundle_as_its_own_file(tiny_image_folder, tmp_path):
    """The sweep logs a trial's best model file to MLflow as it is: it must be exactly what prediction loads."""
    run = tiny_run(tiny_image_folder)
    run.run_epoch()
    folder = save_trial_checkpoint(run.state_dict(), tmp_path / "checkpoint_000000")
    assert {p.name for p in folder.iterdir()} == {MODEL_FILE, TRAINING_STATE_FILE}
    model = load_checkpoint(folder / MODEL_FILE)
    assert model.keys() == model_bundle(run.state_dict()).keys() and "optimizer" not in model
    whole = load_checkpoint(folder)
    assert whole.keys() == run.state_dict().keys(), "the folder loads as the whole training state"


def test_gpu_memory_metrics_only_on_cuda(tiny_image_folder):
    metrics = tiny_run(tiny_image_folder).run_epoch()
    assert not any(key.startswith("gpu_") for key in metrics), "CPU runs report no GPU memory figures"
    assert gpu_memory_mb(torch.device("cpu")) == (0.0, 0.0)


def test_resume_refuses_different_classes(tiny_image_folder, tmp_path):
    run = tiny_run(tiny_image_folder)
    state = run.state_dict()
    state["class_to_idx"] = {"0": 0, "1": 1, "cat": 2}
    with pytest.raises(ValueError, match="different set of classes"):
        tiny_run(tiny_image_folder).load_state_dict(state)


class Payload:
    """Stands in for an object an attacker pickles into a checkpoint."""


@pytest.mark.parametrize("payload", [Payload(), os.system], ids=["custom-class", "function"])
def test_load_refuses_pickled_objects(tmp_path, payload):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "class_to_idx": {}, "extra": payload}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mapped"])
@pytest.mark.parametrize("keep", [0, 10, 0.5], ids=["empty", "header-only", "half"])
def test_load_reports_truncated_file(tmp_path, keep, mmap):
    path = save_checkpoint({"model": {"w": torch.zeros(100)}, "class_to_idx": {"0": 0}}, tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path, mmap=mmap)


def test_a_mapped_load_passes_the_weights_on_unchanged(tmp_path):
    """The sweep's writer maps each trial's best checkpoint and saves its model part as the trial's bundle."""
    state = {"model": {"w": torch.randn(1000)}, "optimizer": {"m": torch.randn(1000)}, "class_to_idx": {"0": 0}}
    bundle = save_checkpoint(model_bundle(load_checkpoint(save_checkpoint(state, tmp_path / "c.pt"), mmap=True)),
                             tmp_path / "model.pt")
    loaded = load_checkpoint(bundle)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and "optimizer" not in loaded


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "no checkpoint file"), ({"weights": torch.zeros(1)}, "not an hpo-cls checkpoint")],
)
def test_load_rejects_missing_or_foreign_file(tmp_path, content, match):
    path = tmp_path / "c.pt"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_the_per_class_report_names_classes_from_class_names_csv(tiny_image_folder):
    """What the confusion matrix and per-class report of a trial show; the labels stay the folder names."""
    (tiny_image_folder / "class_names.csv").write_text("index,name\n0,red\n1,green\n2,blue\n")
    run = tiny_run(tiny_image_folder)
    assert [row["class"] for row in run.class_report()] == ["red", "green", "blue"]
    assert run.class_to_idx == {"0": 0, "1": 1, "2": 2}
