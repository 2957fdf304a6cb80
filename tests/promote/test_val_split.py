"""The selection / held-out split of val: stratified, seeded, stable."""

import random
from collections import Counter

from hpo_cls.promote.val_split import selection_mask


def _images(per_class):
    names, labels = [], []
    for label, count in enumerate(per_class):
        names += [f"c{label}/{i:04d}.png" for i in range(count)]
        labels += [label] * count
    return names, labels


def test_each_class_is_halved():
    names, labels = _images([10, 7, 5, 1, 8])
    mask = selection_mask(names, labels)
    selected = Counter(l for l, m in zip(labels, mask) if m)
    for label, count in enumerate([10, 7, 5, 1, 8]):
        assert selected[label] in (count // 2, (count + 1) // 2)
    assert abs(int(mask.sum()) - (len(names) - int(mask.sum()))) <= 1  # odd classes round alternately


def test_the_split_depends_on_the_names_not_their_order():
    names, labels = _images([20, 20, 20])
    chosen = {n for n, m in zip(names, selection_mask(names, labels)) if m}
    order = list(range(len(names)))
    random.Random(1).shuffle(order)
    shuffled = [names[i] for i in order], [labels[i] for i in order]
    assert {n for n, m in zip(shuffled[0], selection_mask(*shuffled)) if m} == chosen
    # another class's images added: this class's halves are unchanged
    more_names, more_labels = _images([20, 20, 20, 9])
    assert {n for n, m in zip(more_names, selection_mask(more_names, more_labels)) if m and n[:2] != "c3"} == chosen


def test_the_seed_gives_another_split():
    names, labels = _images([40])
    assert list(selection_mask(names, labels, seed=0)) != list(selection_mask(names, labels, seed=1))
    assert list(selection_mask(names, labels, seed=1)) == list(selection_mask(names, labels, seed=1))
