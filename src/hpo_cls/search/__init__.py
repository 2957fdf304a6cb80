"""Proposing trials: ``samplers`` (name -> Optuna sampler), ``space`` (the spec's space as an Optuna
define-by-run function), ``searcher`` (Ray Tune's OptunaSearch, honest about early stops and budgets)."""
