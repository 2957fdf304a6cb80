"""Greedy ensemble selection on probability arrays small enough to check by hand."""

import math

import numpy as np
import pytest

from hpo_cls.promote.greedy import accuracy, greedy_selection, nll


def _two_class(true_class_probabilities):
    """Rows [p, 1 - p]: every image is of class 0, with probability p."""
    return np.array([[p, 1 - p] for p in true_class_probabilities])


LABELS = np.array([0, 0])
A = _two_class([0.1, 0.5])
B = _two_class([0.2, 0.2])


def test_greedy_chooses_with_replacement_as_computed_by_hand():
    # NLL = -(ln p1 + ln p2) / 2 of the averaged probabilities:
    # round 1: A 1.4979 (ln .1, ln .5) beats B 1.6094 (ln .2 twice)               -> A
    # round 2: A+B averages to (.15, .35): 1.4735 < 1.4979                        -> B
    # round 3: A,A,B (.1333, .4): 1.4656; A,B,B (.1667, .3): 1.4979              -> A again
    # round 4: A,A,A,B (.125, .425): 1.4676 and A,A,B,B (.15, .35): 1.4735, neither below 1.4656 -> stop
    result = greedy_selection([A, B], LABELS)
    assert result.counts == {0: 2, 1: 1}
    assert result.weights == pytest.approx([2 / 3, 1 / 3])
    expected = [-(math.log(.1) + math.log(.5)) / 2, -(math.log(.15) + math.log(.35)) / 2,
                -(math.log(.4 / 3) + math.log(.4)) / 2]
    assert result.scores == pytest.approx(expected)
    assert nll((2 * A + B) / 3, LABELS) == pytest.approx(expected[-1])


def test_replacement_changes_the_weights_from_a_plain_average():
    """Without replacement the same two members would be averaged 1:1; choosing A again scores better."""
    result = greedy_selection([A, B], LABELS)
    assert result.weights != pytest.approx([0.5, 0.5])
    assert nll((2 * A + B) / 3, LABELS) < nll((A + B) / 2, LABELS)


def test_greedy_stops_at_max_members_distinct_and_only_adds_those_again():
    C = _two_class([0.15, 0.15])  # NLL 1.8971: last alone
    assert greedy_selection([A, B, C], LABELS).members == [0, 1]
    result = greedy_selection([A, B, C], LABELS, max_members=1)
    assert result.members == [0]  # A alone is best; nothing else may join, and A again changes nothing


def test_greedy_respects_the_budget():
    costs = [{"params": 10}, {"params": 5}]
    result = greedy_selection([A, B], LABELS, costs=costs, budget={"params": 12})
    assert result.counts == {0: 1}  # A + B would be 15 parameters
    result = greedy_selection([A, B], LABELS, costs=costs, budget={"params": 8})
    assert result.counts == {1: 1}  # A alone is over the budget
    with pytest.raises(ValueError, match="budget"):
        greedy_selection([A, B], LABELS, costs=costs, budget={"params": 4})


def test_accuracy_metric_and_ties_go_to_the_first_listed():
    labels = np.array([0, 1, 1])
    first = np.array([[.9, .1], [.2, .8], [.6, .4]])  # 2 of 3 right
    second = np.array([[.9, .1], [.6, .4], [.2, .8]])  # 2 of 3 right, another mistake
    assert accuracy(first, labels) == accuracy(second, labels) == pytest.approx(2 / 3)
    result = greedy_selection([first, second], labels, metric="accuracy")
    # averaged: [.9,.1] [.4,.6] [.4,.6] -> all 3 right
    assert result.counts == {0: 1, 1: 1}
    assert result.scores == pytest.approx([2 / 3, 1.0])
