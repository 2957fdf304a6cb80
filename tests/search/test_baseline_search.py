"""Trial 0 of a baseline-first sweep: the searcher's first suggestion is the fixed configuration (Optuna
enqueue_trial, through Ray's points_to_evaluate); later ones are the sampler's."""

from __future__ import annotations

import pytest

from hpo_cls.search.samplers import build_sampler
from hpo_cls.search.searcher import StudySearcher
from hpo_cls.search.optuna_space import DefineByRun, baseline_point
from hpo_cls.spec import TrialConfig, parse_spec, trial_config_from_dict


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_first_suggestion_is_the_fixed_configuration(sampler):
    spec = parse_spec({"name": "t", "fixed": {"lr": 0.002, "head_hidden": [64], "mix": "mixup", "mixup_alpha": 0.3},
                       "search": {"sampler": sampler, "space": {
                           "lr": {"loguniform": [1.0e-4, 1.0e-1]},
                           "head_hidden": {"choice": [[128], [64], []]},
                           "mix": {"choice": ["none", "mixup"]},
                           "mixup_alpha": {"uniform": [0.1, 0.4], "when": {"mix": "mixup"}}}}})
    searcher = StudySearcher(
        DefineByRun(spec.search.space, spec.fixed), metric="val_acc", mode="max",
        sampler=build_sampler(spec.search, 8), max_epochs=1, param_count=lambda config: 1, max_params=10,
        baseline=baseline_point(spec.search.space, spec.fixed))
    first = searcher.suggest("trial-0")
    assert trial_config_from_dict(first, base=spec.fixed) == spec.fixed
    searcher.on_trial_complete("trial-0", {"val_acc": 0.5, "epoch": 1})
    others = [searcher.suggest(f"trial-{i}") for i in range(1, 4)]
    assert all(trial_config_from_dict(c, base=spec.fixed) != spec.fixed for c in others)


def test_without_a_baseline_the_first_suggestion_is_sampled():
    spec = parse_spec({"name": "t", "fixed": {"lr": 0.002},
                       "search": {"sampler": "random", "space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}}}})
    searcher = StudySearcher(
        DefineByRun(spec.search.space, TrialConfig()), metric="val_acc", mode="max",
        sampler=build_sampler(spec.search, 8), max_epochs=1, param_count=lambda config: 1, max_params=10)
    assert searcher.suggest("trial-0")["lr"] != 0.002


def test_trial_zero_takes_the_fixed_value_of_a_parameter_searched_per_alternative():
    # `lr` with one range per optimizer: Optuna knows it as `lr|optimizer=adamw`, and trial 0 must still
    # train fixed.lr (it once enqueued plain `lr`, which Optuna ignored and sampled instead).
    spec = parse_spec({"name": "t", "fixed": {"optimizer": "adamw", "lr": 1.0e-3},
                       "search": {"sampler": "tpe", "space": {
                           "optimizer": {"choice": ["adamw", "sgd"]},
                           "lr": [{"loguniform": [3.0e-4, 3.0e-3], "when": {"optimizer": "adamw"}},
                                  {"loguniform": [0.005, 0.03], "when": {"optimizer": "sgd"}}]}}})
    searcher = StudySearcher(
        DefineByRun(spec.search.space, spec.fixed), metric="val_acc", mode="max",
        sampler=build_sampler(spec.search, 8), max_epochs=1, param_count=lambda config: 1, max_params=10,
        baseline=baseline_point(spec.search.space, spec.fixed))
    first = searcher.suggest("trial-0")
    assert first["lr"] == 1.0e-3
    assert trial_config_from_dict(first, base=spec.fixed) == spec.fixed
