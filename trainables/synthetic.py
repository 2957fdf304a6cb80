"""A synthetic trainable: a smooth, known response surface over the trial config instead of a network.

For scale tests and benchmarks of the orchestration itself (hundreds of trials in minutes, no images,
no checkpoints): `trainable: trainables.synthetic` in a spec. Its "val_acc" rises with epochs towards a
ceiling set by how close lr, dropout and label smoothing are to fixed optima, plus seeded noise.
"""

from __future__ import annotations

import math
import random

from ray import tune

from hpo_cls.spec import TrialConfig, trial_config_from_dict
from hpo_cls.train.trial_setup import TrialSetup


def ceiling(cfg: TrialConfig) -> float:
    """The accuracy a config converges to: best at lr 0.05, dropout 0.2, label smoothing 0.1."""
    distance = (math.log10(cfg.lr / 0.05) ** 2) + 4 * (cfg.dropout - 0.2) ** 2 + 9 * (cfg.label_smoothing - 0.1) ** 2
    bonus = {"none": 0.0, "se": 0.01, "cbam": 0.02}[cfg.attention]
    return 0.3 + 0.6 * math.exp(-distance) + bonus


def trainable(config: dict, setup: TrialSetup) -> None:
    cfg = trial_config_from_dict(config, base=setup.fixed)
    rng = random.Random(hash((cfg.seed, cfg.lr, cfg.dropout)))
    for epoch in range(1, setup.epochs + 1):
        val_acc = ceiling(cfg) * (1 - math.exp(-epoch / 2)) + rng.gauss(0, 0.005)
        tune.report({"epoch": epoch, "val_acc": val_acc, "val_loss": 1 - val_acc, "train_loss": 1 - val_acc,
                     "train_acc": val_acc})
