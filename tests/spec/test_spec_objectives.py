"""hpo_cls.spec.objectives: ``objectives:`` and ``constraints:`` of a spec, and their one-line errors."""

from __future__ import annotations

import pytest
import yaml

from hpo_cls.errors import SpecError
from hpo_cls.spec import Constraint, Objective, parse_spec


def spec_of(text: str):
    return parse_spec(yaml.safe_load("name: t\n" + text))


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec_of(text)
    return info.value.problems


def test_default_is_the_single_metric():
    spec = spec_of("metric: val_loss\n")
    assert spec.objectives == (Objective("val_loss", "min"),)
    assert not spec.multi_objective and spec.constraints == ()


def test_two_objectives_set_the_metric_asha_stops_on():
    spec = spec_of("objectives:\n  - {metric: val_acc, mode: max}\n  - params_m\n"
                   "constraints: {params_m: {max: 15}, latency_ms: {min: 0.1, max: 5}}\n")
    assert spec.objectives == (Objective("val_acc", "max"), Objective("params_m", "min"))
    assert (spec.metric, spec.mode) == ("val_acc", "max") and spec.multi_objective
    assert spec.constraints == (Constraint("params_m", max=15.0), Constraint("latency_ms", max=5.0, min=0.1))


@pytest.mark.parametrize(("value", "expected"), [(10.0, -5.0), (15.0, 0.0), (20.0, 5.0)])
def test_constraint_violation_follows_optunas_sign(value, expected):
    assert Constraint("params_m", max=15.0).violation(value) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("objectives: val_acc\n", "objectives: expected a list"),
        ("objectives: [{metric: accuracy}]\n", "objectives[0].metric: 'accuracy' is not one of"),
        ("objectives: [params_m, val_acc]\n", "objectives[0].metric: ASHA stops trials on the first objective"),
        ("objectives: [val_acc, params_m, params_m]\n", "objectives[2].metric: params_m is listed twice"),
        ("objectives: [{metric: params_m, mode: max}]\n", "objectives[0].mode: params_m is optimised with mode min"),
        ("objectives: [val_acc, {metric: flops_g, goal: min}]\n", "objectives[1].goal: unknown key"),
        ("metric: val_loss\nobjectives: [val_acc, params_m]\n", "metric: val_loss differs from the first objective"),
        ("constraints: {size: {max: 3}}\n", "constraints.size: unknown metric"),
        ("constraints: {params_m: 15}\n", "constraints.params_m: expected {max: VALUE}"),
        ("constraints: {params_m: {max: big}}\n", "constraints.params_m.max: expected a number"),
        ("constraints: {params_m: {min: 20, max: 15}}\n", "constraints.params_m: min 20 is above max 15"),
    ],
    ids=["not-a-list", "unknown-metric", "cost-first", "duplicate", "wrong-mode", "unknown-key", "metric-conflict",
         "constraint-metric", "constraint-shape", "constraint-value", "constraint-order"],
)
def test_bad_objectives_and_constraints_are_named_by_key(text, message):
    problems = problems_of(text)
    assert len(problems) == 1 and message in problems[0], problems
