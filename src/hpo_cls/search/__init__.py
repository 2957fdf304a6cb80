"""Proposing trials: ``samplers`` (name -> Optuna sampler), ``space`` (the spec's space as an Optuna
define-by-run function), ``searcher`` (Tune's Searcher over an Optuna study, honest about early stops and
budgets), ``storage`` (where the study lives)."""
