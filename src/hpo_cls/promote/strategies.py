"""The names of promote's member selection strategies and the default, in one place (no imports: the
command line reads them without loading promote). :mod:`hpo_cls.promote.ensemble_selection` implements them."""

__all__ = ["SELECT_STRATEGIES", "DEFAULT_SELECT"]

SELECT_STRATEGIES = ("topk", "greedy")
# top-K until the quality bench (bench/quality.py, 3 seeds, cifar10-hw) shows that greedy wins.
DEFAULT_SELECT = "topk"
