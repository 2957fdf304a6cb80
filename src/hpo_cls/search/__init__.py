"""Proposing trials: ``samplers`` (name -> Optuna sampler), ``optuna_space`` (the spec's space as an Optuna
define-by-run function), ``searcher`` (Tune's Searcher over an Optuna study, honest about early stops and
budgets), ``storage`` (where the study lives), ``dashboard`` (optuna-dashboard on a stored study),
``warm_start`` (earlier sweeps' trials in a new study)."""

__all__ = ["WARM_START_MEASURED"]

# What `bench/search_efficiency.py --warm-start` measured of the warm start (bench/README.md holds the rows).
# Until a measurement over 3 seeds meets the target (warm_epoch_ratio <= 0.8), `sweep --help` says so and a
# warm-started sweep prints that its benefit is unproven. (Optuna-free: the CLI's --help reads it.)
WARM_START_MEASURED = ("bench/search_efficiency.py --warm-start measured warm_epoch_ratio=inf on 3 seeds on "
                       "2026-12-06 (per seed inf, 1.045, inf: twice the warm sweep never reached 99% of the cold "
                       "sweep's best, once it took 23 epochs against 22); the target is <= 0.8")
