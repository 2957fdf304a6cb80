"""Parameter importances, computed one way for the sweep's PNG and its HTML report: Optuna's PED-ANOVA
(made for HPO studies, deterministic, quick with a handful of trials)."""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["importance_module", "ped_anova"]


def importance_module() -> ModuleType:
    """``optuna.importance``, imported without scikit-learn when nothing has imported that yet.

    The package imports scikit-learn for its fANOVA evaluator (~1.2 s of CPU, at every sweep's end), which
    hpo-cls never uses. A ``None`` in ``sys.modules`` makes that import raise ImportError, which Optuna
    defers to the fANOVA evaluator's first use; the entry is removed right after, so a later
    ``import sklearn`` works as usual.
    """
    if "optuna.importance" not in sys.modules and "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
        try:
            import optuna.importance  # noqa: F401
        finally:
            if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
                del sys.modules["sklearn"]
    import optuna.importance

    return optuna.importance


def ped_anova():
    """Optuna's ``PedAnovaImportanceEvaluator``."""
    return importance_module().PedAnovaImportanceEvaluator()
