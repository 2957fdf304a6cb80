"""Members that need no retraining: a completed trial already trained the member's model.

A member is retrained from scratch with its run's configuration and seed, for the epoch budget, on the
sweep's data. When the run's trial completed that same budget on that same data and its logged checkpoint
is its last epoch (Tune keeps the best epoch; with a decaying schedule that is usually the last), that
checkpoint is what the retrain would train again: promote takes it instead (``--retrain`` trains anyway).
Anything else (another seed, ``fixed.*`` or ``data.*`` overrides, ``--epochs``, ``--train-on-val``, a
trial stopped early, a best epoch before the last) is retrained as before.

``as_trained`` (``--select greedy``): the members were chosen by the predictions of their trials' kept
checkpoints, so those checkpoints are the members, whatever epoch they are of and however the trial ended;
only the configuration, seed and data must be the trial's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from hpo_cls.promote.retrain import MemberPlan, MemberResult
from hpo_cls.spec import DataConfig
from hpo_cls.tracking.backend import SweepRecord, TrackingStore
from hpo_cls.tracking.checkpoints import CHECKPOINT_ARTIFACT, CHECKPOINT_TAG, DROPPED
from hpo_cls.train.checkpoint import MODEL_FILE, load_checkpoint

__all__ = ["REUSED_TAG", "reuse_trial_checkpoints"]

REUSED_TAG = "hpo_cls.reused_trial_checkpoint"  # on a member run whose trial's checkpoint was taken

_HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")


def reuse_trial_checkpoints(store: TrackingStore, members: Sequence[MemberPlan], sweeps: Sequence[SweepRecord],
                            data_cfg: DataConfig, epochs: int, workdir: Path, *, as_trained: bool = False,
                            note: Callable[[str], None] = print) -> dict[str, MemberResult]:
    """The members whose trial's logged checkpoint is the model their retrain would train (``as_trained``:
    whose trial's checkpoint is theirs, see the module doc), by key; each bundle is copied to
    ``workdir/<key>/model.pt``. A member whose trial's checkpoint the sweep dropped
    (``tracking.keep_checkpoints``, ``hpo-cls gc``) is retrained, and ``note`` says so in one line."""
    by_id = {s.sweep_id: s for s in sweeps}
    reused = {}
    for member in members:
        sweep = by_id.get(member.source.sweep_id) or (sweeps[0] if len(sweeps) == 1 else None)
        if sweep is None or not _same_training(member, sweep, data_cfg, None if as_trained else epochs):
            continue
        start = time.perf_counter()
        bundle_path = _download_bundle(store, member.source.run_id, workdir / member.key)
        if bundle_path is None:
            run = store.trial_run(member.source.run_id)
            if run is not None and run.tags.get(CHECKPOINT_TAG) == DROPPED:
                note(f"member {member.key}: trial {member.source.trial_id}'s checkpoint was dropped "
                     "(tracking.keep_checkpoints or hpo-cls gc): retraining it")
            continue
        bundle = load_checkpoint(bundle_path)
        trained = int(bundle.get("epoch") or 0)
        if (not as_trained and trained != epochs) or trained < 1 or bundle.get("image_size") != data_cfg.image_size:
            bundle_path.unlink()
            continue
        history = _history(store, member.source.run_id, trained)
        reused[member.key] = MemberResult(member.key, str(bundle_path), history, 0, time.perf_counter() - start)
    return reused


def _same_training(member: MemberPlan, sweep: SweepRecord, data_cfg: DataConfig, epochs: int | None) -> bool:
    """Same configuration and seed, same data; unless ``epochs`` is None: the trial trained the whole budget,
    and the budget is promote's."""
    params = sweep.params
    return (member.config == member.source.config
            and (epochs is None or (member.source.status == "completed" and int(float(params.get("epochs", 0))) == epochs))
            and str(Path(params.get("data_root", "")).resolve()) == str(Path(data_cfg.root).resolve())
            and int(params.get("image_size", 0)) == data_cfg.image_size)


def _download_bundle(store: TrackingStore, run_id: str, member_dir: Path) -> Path | None:
    import shutil
    import tempfile

    member_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=member_dir) as tmp:
        downloaded = store.download_artifact(run_id, CHECKPOINT_ARTIFACT, Path(tmp))
        if downloaded is None:
            return None
        target = member_dir / MODEL_FILE
        shutil.move(str(downloaded), target)
    return target


def _history(store: TrackingStore, run_id: str, epochs: int) -> list[dict]:
    """The trial's per-epoch metrics, in the form a retrain reports them."""
    rows: dict[int, dict] = {epoch: {"epoch": epoch} for epoch in range(1, epochs + 1)}
    for key in _HISTORY_KEYS:
        for step, value, _ in store.metric_history(run_id, key):
            if step in rows:
                rows[step][key] = value
    return [rows[epoch] for epoch in sorted(rows)]
