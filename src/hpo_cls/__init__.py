"""hpo-cls: hyperparameter sweeps for ResNet-family image classifiers."""

__version__ = "0.2.0"
