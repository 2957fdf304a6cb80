"""The end-of-sweep summary of a baseline-first sweep: trial 0 named as the baseline, the best trial's gain."""

from __future__ import annotations

import io

from hpo_cls.spec import parse_spec
from hpo_cls.sweep.outcome import SweepOutcome, TrialOutcome, find_baseline, print_summary


def _spec(**top):
    return parse_spec({"name": "t", "fixed": {"lr": 0.01},
                       "search": {"space": {"lr": {"loguniform": [0.001, 0.1]}}}, **top}, "spec.yaml")


def _summary(spec, trials) -> str:
    out = io.StringIO()
    print_summary(spec, SweepOutcome("t-1", "parent", "/tmp/t-1", trials), out)
    return out.getvalue()


def _trial(trial_id, lr, score, status="completed"):
    return TrialOutcome(trial_id, status, 4, score, {"lr": lr}, f"run-{trial_id}")


def test_summary_names_trial_zero_and_the_gain_over_it():
    trials = [_trial("aaaa", 0.01, 0.30), _trial("bbbb", 0.05, 0.42), _trial("cccc", 0.002, 0.25)]
    text = _summary(_spec(), trials)
    assert "aaaa (baseline)" in text
    assert "baseline: trial aaaa = trial 0, the spec's fixed configuration (completed, 4 epochs): best val_acc 0.3000" in text
    assert "best trial bbbb: val_acc 0.4200, gain over the baseline +0.1200 (higher val_acc)" in text


def test_baseline_that_stays_best_is_said_so():
    text = _summary(_spec(), [_trial("aaaa", 0.01, 0.50), _trial("bbbb", 0.05, 0.42)])
    assert "best trial: the baseline; no searched configuration beat the spec's fixed configuration" in text


def test_gain_is_positive_when_lower_is_better():
    spec = _spec(metric="val_loss", mode="min")
    text = _summary(spec, [_trial("aaaa", 0.01, 1.5), _trial("bbbb", 0.05, 1.2)])
    assert "gain over the baseline +0.3000 (lower val_loss)" in text


def test_the_first_trial_with_the_fixed_configuration_is_the_baseline():
    trials = [_trial("bbbb", 0.05, 0.4), _trial("aaaa", 0.01, 0.3), _trial("dddd", 0.01, 0.35)]
    assert find_baseline(_spec(), trials).trial_id == "aaaa"
    off = _spec(search={"baseline_first": False, "space": {"lr": {"loguniform": [0.001, 0.1]}}})
    assert find_baseline(off, trials) is None and "baseline" not in _summary(off, trials)
