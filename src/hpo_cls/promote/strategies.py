"""The names of promote's member selection strategies and the default, in one place (no imports: the
command line reads them without loading promote). :mod:`hpo_cls.promote.ensemble_selection` implements them."""

__all__ = ["SELECT_STRATEGIES", "DEFAULT_SELECT"]

SELECT_STRATEGIES = ("topk", "greedy")
# top-K: on cifar10-hw's 1,000 test images greedy scored 0.5 points below it (bench/quality.py, 3 seeds,
# bench/README.md), selecting on the 250-image half of val that is not held out.
DEFAULT_SELECT = "topk"
