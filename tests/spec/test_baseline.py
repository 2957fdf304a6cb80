"""Baseline-first sweeps before they start: trial 0 is the fixed configuration, so each fixed value trial 0
suggests must lie in its searched range (checked by `validate` and `sweep`, not by `train`, which trains the
fixed configuration whatever the space); `validate` says which trials train a key that is fixed and searched."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo_cls.cli import main
from hpo_cls.search.optuna_space import baseline_point
from hpo_cls.spec import load_spec, parse_spec
from hpo_cls.spec.baseline import baseline_values, fixed_and_searched_notes, sweep_problems

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def _spec(space: dict, fixed: dict | None = None, **search):
    return parse_spec({"name": "t", "fixed": fixed or {}, "search": {"space": space, **search}}, "spec.yaml")


def _problems(space: dict, fixed: dict | None = None, **search) -> list[str]:
    return sweep_problems(_spec(space, fixed, **search))


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_starts_from_its_fixed_configuration(path):
    assert sweep_problems(load_spec(path)) == []


def test_fixed_value_outside_its_range_is_one_problem_line():
    problems = _problems({"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "backbone": {"choice": ["resnet50", "resnet34"]}},
                         {"lr": 0.05})
    assert len(problems) == 2
    assert problems[0].startswith("spec.yaml: search.space.lr: fixed.lr=0.05 is trial 0's value")
    assert "outside the searched range [0.0001, 0.01]" in problems[0] and "search.baseline_first: false" in problems[0]
    assert "fixed.backbone=resnet18 (the default)" in problems[1]
    assert "not one of the choices [resnet50, resnet34]" in problems[1]


def test_baseline_first_false_and_the_grid_sampler_accept_any_fixed_value():
    assert _problems({"lr": {"loguniform": [1.0e-4, 1.0e-2]}}, {"lr": 0.05}, baseline_first=False) == []
    assert _problems({"lr": {"choice": [0.1, 0.2]}}, {"lr": 0.05}, sampler="grid") == []


def test_quniform_and_int_values_must_be_on_the_grid():
    assert "not on the searched grid" in _problems({"mix_prob": {"quniform": [0.0, 1.0, 0.25]}}, {"mix_prob": 0.3})[0]
    assert _problems({"mix_prob": {"quniform": [0.0, 1.0, 0.25]}}, {"mix_prob": 0.75}) == []
    assert "not on the searched grid" in _problems({"batch_size": {"int": [16, 64], "step": 16}}, {"batch_size": 40})[0]


def test_inactive_parameters_are_not_part_of_trial_zero():
    space = {"mix": {"choice": ["none", "mixup"]}, "mixup_alpha": {"uniform": [0.1, 0.4], "when": {"mix": "mixup"}}}
    spec = _spec(space, {"mix": "none", "mixup_alpha": 0.9})  # alpha unused by trial 0: no problem
    assert baseline_values(spec.search.space, spec.fixed) == {"mix": "none"}
    assert sweep_problems(spec) == []
    (problem,) = _problems(space, {"mix": "mixup", "mixup_alpha": 0.9})
    assert "search.space.mixup_alpha: fixed.mixup_alpha=0.9" in problem


def test_baseline_point_is_in_optunas_form():
    spec = _spec({"head_hidden": {"choice": [[1024, 512], [512]]}, "lr": {"loguniform": [1.0e-4, 1.0e-2]}},
                 {"head_hidden": [1024, 512], "lr": 1.0e-3})
    assert baseline_point(spec.search.space, spec.fixed) == {"head_hidden": "[1024, 512]", "lr": 1.0e-3}


def test_notes_name_trial_zero_and_the_searched_range():
    space = {"mix": {"choice": ["mixup", "none"]}, "mixup_alpha": {"uniform": [0.1, 0.4], "when": {"mix": "mixup"}},
             "lr": {"loguniform": [1.0e-4, 1.0e-1]}}
    spec = _spec(space, {"mix": "mixup", "mixup_alpha": 0.2})
    assert fixed_and_searched_notes(spec) == [
        "fixed.mix=mixup is trial 0's value; other trials search [mixup, none]",
        "fixed.mixup_alpha=0.2 is trial 0's value; other trials search [0.1, 0.4]",
    ]  # lr is searched but not written under fixed: no note
    off = _spec(space, {"mix": "mixup", "mixup_alpha": 0.2, "lr": 0.01}, baseline_first=False)
    assert fixed_and_searched_notes(off) == [
        "fixed.mix=mixup is never trained: every trial searches [mixup, none] (search.baseline_first is false)",
        "fixed.mixup_alpha=0.2 is used whenever mix in [mixup] does not hold; trials where it holds search [0.1, 0.4]",
        "fixed.lr=0.01 is never trained: every trial searches [0.0001, 0.1] (search.baseline_first is false)",
    ]


def test_notes_for_a_parameter_searched_per_alternative_name_the_condition_of_the_other():
    space = {"optimizer": {"choice": ["adamw", "sgd"]},
             "lr": [{"loguniform": [3.0e-4, 3.0e-3], "when": {"optimizer": "adamw"}},
                    {"loguniform": [0.005, 0.03], "when": {"optimizer": "sgd"}}]}
    spec = _spec(space, {"optimizer": "adamw", "lr": 1.0e-3})
    assert fixed_and_searched_notes(spec) == [
        "fixed.optimizer=adamw is trial 0's value; other trials search [adamw, sgd]",
        "fixed.lr=0.001 is trial 0's value; other trials search [0.0003, 0.003]",
        "fixed.lr=0.001 is used whenever optimizer in [sgd] does not hold; trials where it holds search [0.005, 0.03]",
    ]


def test_validate_prints_one_note_per_fixed_and_searched_key(tiny_spec, capsys):
    path = tiny_spec(fixed={"backbone": "resnet18", "small_input": True, "lr": 0.01, "mixup_alpha": 0.2,
                            "mix": "mixup"},
                     search={"sampler": "random", "space": {"lr": {"loguniform": [0.001, 0.1]},
                                                            "mixup_alpha": {"uniform": [0.1, 0.4]}}})
    assert main(["validate", str(path), "--no-scan"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == ["note: fixed.lr=0.01 is trial 0's value; other trials search [0.001, 0.1]",
                     "note: fixed.mixup_alpha=0.2 is trial 0's value; other trials search [0.1, 0.4]"]


def test_train_trains_the_fixed_configuration_whatever_the_space(tiny_spec, capsys):
    path = tiny_spec(fixed={"backbone": "resnet18", "small_input": True, "batch_size": 4, "lr": 0.2, "amp": False,
                            "grad_clip": 1.0})
    assert main(["validate", str(path), "--no-scan"]) == 2  # lr 0.2 is outside the searched [0.001, 0.1]
    assert "search.space.lr: fixed.lr=0.2 is trial 0's value" in capsys.readouterr().err
    assert main(["train", str(path), "--out", str(path.parent / "out")]) == 0
