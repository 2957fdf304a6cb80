"""The samplers a spec can name (``search.sampler``): one table, name -> builder.

Torch- and Optuna-free at import (the spec checker reads the names); each builder imports Optuna.
Adding a sampler is one entry in :data:`SAMPLERS`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import optuna

    from hpo_cls.spec import SearchConfig

__all__ = ["SAMPLERS", "build_sampler", "startup_trials"]


def _random(search: SearchConfig, num_samples: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=search.seed)


def _grid(search: SearchConfig, num_samples: int) -> optuna.samplers.BaseSampler:
    import optuna

    # Param knows its own grid values: this table imports nothing of hpo_cls, so the spec can read its names
    return optuna.samplers.GridSampler({p.optuna_name: p.optuna_choices for p in search.space}, seed=search.seed)


def _tpe_startup(num_samples: int) -> int:
    # A short random warm-up, then TPE; small sweeps would otherwise never leave the warm-up.
    return min(10, max(2, num_samples // 4))


def _tpe(search: SearchConfig, num_samples: int) -> optuna.samplers.BaseSampler:
    import optuna

    # TPE after the random start-up (multi-objective TPE when the study has several directions). The
    # start-up counts the study's finished trials, those a warm start adds included.
    # group=True models conditional parameters jointly with the parameters that activate them.
    startup = _tpe_startup(num_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=search.seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True,
        )


def _nsga2(search: SearchConfig, num_samples: int) -> optuna.samplers.BaseSampler:
    import optuna

    # Generations of a quarter of the sweep (4 to Optuna's default 50), so a small sweep still breeds.
    return optuna.samplers.NSGAIISampler(seed=search.seed, population_size=max(4, min(50, num_samples // 4)))


SAMPLERS: dict[str, Callable[[SearchConfig, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsga2": _nsga2,
    "random": _random,
    "grid": _grid,
}


# Samplers that draw at random until the study holds this many finished trials (warm-started ones count).
_STARTUP: dict[str, Callable[[int], int]] = {"tpe": _tpe_startup}


def startup_trials(search: SearchConfig, num_samples: int) -> int:
    """How many finished trials ``search.sampler`` draws at random before it models the study (0: none)."""
    return _STARTUP[search.sampler](num_samples) if search.sampler in _STARTUP else 0


def build_sampler(search: SearchConfig, num_samples: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``search.sampler`` names, seeded with ``search.seed``."""
    return SAMPLERS[search.sampler](search, num_samples)
