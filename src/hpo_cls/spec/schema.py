"""The typed spec: frozen dataclasses a reader reads, one per YAML section.

The checker that builds them from YAML is :mod:`hpo_cls.spec.validate`; the search-space grammar is
:mod:`hpo_cls.spec.space`; reading a file with ``--set`` overrides is :mod:`hpo_cls.spec.load`.
Every key of a section is a field here, with its default, its bounds and a one-line doc.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hpo_cls.models.names import ATTENTION_KINDS, ATTENTION_PLACEMENTS, BACKBONES
from hpo_cls.search.samplers import SAMPLERS
from hpo_cls.train.optim import LR_SCHEDULERS, OPTIMIZERS

__all__ = [
    "TrialConfig",
    "DataConfig",
    "BudgetConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearchConfig",
    "Param",
    "TrackingConfig",
    "FaultToleranceConfig",
    "SweepSpec",
    "Objective",
    "Constraint",
    "METRIC_MODES",
    "COST_METRICS",
    "METRIC_RANGES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "format_value",
    "flatten_trial_config",
]


def _opt(default, *, choices=None, ge=None, gt=None, le=None, lt=None, length=None, doc=""):
    """A config field: default, allowed values or bounds (each item's, for lists), a list's exact
    ``length``, and a one-line doc."""
    return field(default=default, metadata=dict(choices=choices, ge=ge, gt=gt, le=le, lt=lt, length=length, doc=doc))


# Upper bounds far beyond any real use: they only stop a typo (1e30 epochs, image_size 100000) from
# passing validation and failing hours later, or allocating tens of GB.
MAX_EPOCHS = 10_000
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("crop", "full")
PLATEAU_METRICS = ("val_acc", "val_loss")
METRIC_MODES = {"val_acc": "max", "val_loss": "min", "train_acc": "max", "train_loss": "min"}
# What a trial's model costs, reported by every trial (``models/cost.py``): parameters in millions,
# forward GFLOPs per image, and median inference latency (ms) at batch 1 and of a batch of 64.
COST_METRICS = {"params_m": "min", "flops_g": "min", "latency_ms": "min", "latency_b64_ms": "min"}
# The values each metric can take: accuracies are fractions, losses and costs are never negative.
METRIC_RANGES = {"val_acc": (0.0, 1.0), "train_acc": (0.0, 1.0), "val_loss": (0.0, math.inf),
                 "train_loss": (0.0, math.inf), **{name: (0.0, math.inf) for name in COST_METRICS}}


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with: the keys of ``fixed`` and ``search.space``.

    Flat on purpose: one dict is logged with every MLflow run, and every key can be searched.
    """

    # model
    backbone: str = _opt("resnet18", choices=BACKBONES, doc="model architecture")
    pretrained: bool = _opt(False, doc="start from torchvision's ImageNet weights (its cache, ~/.cache/torch/hub/checkpoints; "
                                    "offline without the file: an error naming the file to place there)")
    small_input: bool = _opt(False, doc="CIFAR stem (3x3 conv, no max-pool) for ~32px images; WRNs always have it. "
                                     "About 15x the FLOPs per 32-px image: pays off over long runs only (bench/stem.py)")
    attention: str = _opt("none", choices=ATTENTION_KINDS, doc="attention module")
    attention_placement: str = _opt(
        "after_layer4",
        choices=ATTENTION_PLACEMENTS,
        doc="one module after the last stage, one after each stage, or inside every residual block "
            "before the addition",
    )
    attention_reduction: int = _opt(16, ge=1, le=1024, doc="channel reduction ratio r of SE/CBAM")
    dropout: float = _opt(0.0, ge=0.0, lt=1.0, doc="dropout right before the classifier (and after each head_hidden layer while "
                                                                "head_dropout is unset)")
    dropout_l3_l4: float = _opt(0.0, ge=0.0, lt=1.0, doc="dropout between layer3 and layer4")
    head_hidden: tuple[int, ...] = _opt((), ge=1, le=65536, doc="extra FC layers (BatchNorm1d + SiLU + head_dropout)")
    freeze_stages: int = _opt(0, ge=0, le=4, doc="freeze the first N stages (and the stem, see freeze_stem); "
                                                          "their BatchNorm stays in eval mode")
    # optimisation
    optimizer: str = _opt("sgd", choices=tuple(OPTIMIZERS), doc="norm and bias parameters get no weight decay")
    lr: float = _opt(0.05, gt=0.0, doc="learning rate")
    momentum: float = _opt(0.9, ge=0.0, lt=1.0, doc="SGD momentum")
    weight_decay: float = _opt(5e-4, ge=0.0, doc="not applied to norm and bias parameters")
    batch_size: int = _opt(64, ge=1, le=65536, doc="training batch (evaluation uses twice that)")
    lr_scheduler: str = _opt("cosine", choices=tuple(LR_SCHEDULERS),
                             doc="per-epoch schedule; plateau = ReduceLROnPlateau on plateau_metric")
    warmup_epochs: int = _opt(0, ge=0, le=MAX_EPOCHS, doc="linear warm-up from 0.1 x lr, then the schedule (any lr_scheduler)")
    milestones: tuple[float, ...] = _opt((0.5, 0.75), gt=0.0, le=1.0, doc="multistep: fractions of the epoch budget")
    gamma: float = _opt(0.1, gt=0.0, lt=1.0, doc="multistep / plateau decay factor")
    plateau_patience: int = _opt(2, ge=0, le=MAX_EPOCHS, doc="plateau: epochs without improvement before the LR drops")
    label_smoothing: float = _opt(0.0, ge=0.0, lt=1.0, doc="CrossEntropyLoss(label_smoothing=...)")
    grad_clip: float = _opt(0.0, ge=0.0, doc="max gradient norm; 0 = off")
    ema_decay: float = _opt(0.0, ge=0.0, lt=1.0, doc="EMA of weights, evaluated instead; 0 = off")
    # augmentation
    mix: str = _opt("none", choices=("none", "mixup", "cutmix", "both"),
                    doc="transforms.v2.MixUp / CutMix on the batch (both: one of them per batch)")
    mixup_alpha: float = _opt(0.2, gt=0.0, doc="MixUp's Beta(alpha, alpha)")
    cutmix_alpha: float = _opt(1.0, gt=0.0, doc="CutMix's Beta(alpha, alpha)")
    mix_prob: float = _opt(1.0, ge=0.0, le=1.0, doc="probability that a batch is mixed")
    trivial_augment: bool = _opt(False, doc="TrivialAugmentWide")
    rotation: float = _opt(0.0, ge=0.0, le=180.0, doc="max random rotation in degrees")
    color_jitter: float = _opt(0.0, ge=0.0, le=1.0, doc="brightness / contrast / saturation jitter")
    random_erasing: float = _opt(0.0, ge=0.0, le=1.0, doc="RandomErasing probability")
    # runtime
    seed: int = _opt(0, ge=0, le=MAX_SEED, doc="seeds everything; randomness is re-seeded from (seed, epoch), so resumes are exact")
    amp: bool = _opt(True, doc="bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = _opt(True, doc="channels_last memory format on CUDA (ignored on CPU)")
    compile: bool = _opt(False, doc="torch.compile the model")
    # Recipe keys: what the seed reports' recipes need beyond the keys above (sweeps/seed_*.yaml use them).
    # Each default keeps the behaviour these things had before the key existed, so older specs, MLflow
    # runs and model bundles mean what they meant.
    resize: str = _opt("crop", choices=RESIZE_MODES,
                       doc="crop: random-resized crop (train) / short side + centre crop (eval); "
                           "full: the whole frame squashed to image_size x image_size, train and eval")
    crop_scale: tuple[float, ...] = _opt((0.08, 1.0), gt=0.0, le=1.0, length=2,
                                         doc="RandomResizedCrop's area range (resize: crop, images > 64 px)")
    hflip: float = _opt(0.5, ge=0.0, le=1.0, doc="horizontal-flip probability")
    vflip: float = _opt(0.0, ge=0.0, le=1.0, doc="vertical-flip probability")
    hue: float = _opt(0.0, ge=0.0, le=0.5, doc="hue jitter (ColorJitter's hue), beside color_jitter")
    augment_one_of: bool = _opt(False, doc="apply exactly one of rotation / colour jitter / flips per image")
    mean: tuple[float, ...] = _opt(IMAGENET_MEAN, length=3, doc="Normalize mean (RGB): training, evaluation, predict and the registered model")
    std: tuple[float, ...] = _opt(IMAGENET_STD, gt=0.0, length=3, doc="Normalize std (RGB): training, evaluation, predict and the registered model")
    head_dropout: float | None = _opt(None, ge=0.0, lt=1.0,
                                      doc="dropout after each head_hidden layer; unset = dropout (as before)")
    freeze_stem: bool = _opt(True, doc="freeze_stages >= 1 also freezes the stem (conv1, bn1)")
    plateau_metric: str = _opt("val_acc", choices=PLATEAU_METRICS, doc="what plateau watches")
    min_lr: float = _opt(0.0, ge=0.0, doc="LR floor: plateau's min_lr, cosine's eta_min")

    @property
    def hidden_dropout(self) -> float:
        """The dropout after each ``head_hidden`` layer: ``head_dropout``, or ``dropout`` when unset."""
        return self.dropout if self.head_dropout is None else self.head_dropout


@dataclass(frozen=True)
class DataConfig:
    root: Path = _opt(Path("data"), doc="folder with train/<class_id>/, val/<class_id>/, optional test/")
    image_size: int = _opt(224, ge=8, le=2048, doc="side of the square input in pixels (<= 64 px: pad + random-crop augmentation)")
    workers: int = _opt(2, ge=0, le=256, doc="DataLoader worker processes per trial")
    balanced_sampling: bool = _opt(False, doc="WeightedRandomSampler by inverse class frequency")
    cache_dir: Path | None = _opt(None, doc="where each machine keeps its decoded images (images/): one memory-mapped "
                                            "file per split and size, shared by every trial and promote member, rebuilt "
                                            "when a file changes, up to 4 GB of images per run (else decoded each epoch); "
                                            "default: $HPO_CLS_CACHE_DIR or ~/.cache/hpo-cls")


@dataclass(frozen=True)
class BudgetConfig:
    epochs: int = _opt(10, ge=1, le=MAX_EPOCHS, doc="epochs of a trial that is not stopped early")
    num_samples: int = _opt(8, ge=1, le=100_000, doc="number of trials")
    max_concurrent: int = _opt(2, ge=1, le=10_000, doc="trials running at once (TPE sees results between)")
    time_budget_s: float | None = _opt(None, gt=0.0, doc="stop starting trials after this many seconds")


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: float = _opt(1.0, gt=0.0, doc="CPUs per trial (its torch threads)")
    gpu: float = _opt(0.0, ge=0.0, doc="fractional values share a GPU between trials")


@dataclass(frozen=True)
class SchedulerConfig:
    type: str = _opt("asha", choices=("asha", "fifo"), doc="asha stops weak trials early; fifo runs every trial to the end")
    grace_period: int = _opt(1, ge=1, le=MAX_EPOCHS, doc="epochs every trial gets before it can be stopped")
    reduction_factor: float = _opt(3.0, gt=1.0, doc="ASHA keeps the top 1/reduction_factor at each rung")


@dataclass(frozen=True)
class Param:
    """One search-space entry. ``when`` maps parameter names to the values that activate this one.

    ``name`` is the trial-config key it sets. One of several alternatives for the same key (each with its
    own range, e.g. an ``lr`` per optimizer) has a ``label`` naming it in Optuna's study, so TPE models
    each range apart.
    """

    name: str
    kind: str  # choice | uniform | loguniform | int | quniform
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    when: Mapping[str, tuple] = field(default_factory=dict)
    label: str = ""

    @property
    def optuna_name(self) -> str:
        return self.label or self.name

    @property
    def optuna_choices(self) -> list:
        """A ``choice``'s values as Optuna holds them (and ``suggest`` returns them): lists as strings."""
        return [format_value(c) for c in self.choices]


@dataclass(frozen=True)
class SearchConfig:
    sampler: str = _opt("tpe", choices=tuple(SAMPLERS), doc="Optuna sampler; grid needs choice parameters only")
    seed: int = _opt(0, ge=0, le=MAX_SEED, doc="the sampler's seed")
    baseline_first: bool = _opt(True, doc="trial 0 trains the fixed configuration; the summary gives the gain over it")
    storage: str = _opt("memory", doc="where the Optuna study lives, named after the sweep id: memory; an RDB URL "
                                      "(optuna-dashboard and --resume continue it); or tracking: beside the MLflow "
                                      "database, in tables of its own")
    space: tuple[Param, ...] = field(default=(), metadata=dict(doc="the parameters to search, in order (see the search-space grammar)"))

    @property
    def names(self) -> tuple[str, ...]:
        """The trial-config keys searched, in order, each once (alternatives share a key)."""
        return tuple(dict.fromkeys(p.name for p in self.space))


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = _opt("sqlite:///mlflow.db", doc="MLflow tracking URI")
    experiment: str = _opt("hpo-cls", doc="MLflow experiment name")


@dataclass(frozen=True)
class FaultToleranceConfig:
    max_failures: int = _opt(2, ge=0, le=1000, doc="retries of a crashed trial, from its last checkpoint")
    keep_checkpoints: int = _opt(2, ge=1, le=1000, doc="best checkpoints kept per trial (the latest is always kept too)")


@dataclass(frozen=True)
class Objective:
    """One objective of the search: a metric every trial reports and its direction."""

    metric: str
    mode: str  # max | min


@dataclass(frozen=True)
class Constraint:
    """``constraints: {metric: {max: x, min: y}}``: a trial outside the bounds is infeasible."""

    metric: str
    max: float | None = None
    min: float | None = None

    def violation(self, value: float) -> float:
        """How far ``value`` lies outside the bounds: > 0 infeasible, <= 0 feasible (Optuna's convention)."""
        over = value - self.max if self.max is not None else -float("inf")
        under = self.min - value if self.min is not None else -float("inf")
        return max(over, under)


def _section(cls, doc: str):
    """A section of the spec (a mapping in YAML) with a one-line doc."""
    return field(default=cls(), metadata=dict(doc=doc))


def _internal(default):
    """A field filled in by the reader, not a YAML key."""
    return field(default=default, metadata=dict(internal=True))


@dataclass(frozen=True)
class SweepSpec:
    name: str = field(metadata=dict(doc="required; letters, digits, - _ . ; sweep ids are <name>-<time>"))
    data: DataConfig = _section(DataConfig, "the image folders and how they are read")
    trainable: str = _opt("trainables.image_classifier",
                          doc="dotted path of the Tune trainable: a module with trainable(config, setup), or such "
                              "a function")
    metric: str = _opt("val_acc", choices=tuple(METRIC_MODES),
                       doc="what the searcher and the scheduler optimise (the first objective)")
    mode: str = _opt("max", choices=("max", "min"), doc="the metric's direction; defaults to, and must be, the metric's own (min for losses)")
    budget: BudgetConfig = _section(BudgetConfig, "how many trials, how long, how many at once")
    resources: ResourcesConfig = _section(ResourcesConfig, "what each trial asks Ray for")
    scheduler: SchedulerConfig = _section(SchedulerConfig, "early stopping")
    search: SearchConfig = _section(SearchConfig, "the sampler and the search space")
    fixed: TrialConfig = _section(TrialConfig, "the trial configuration: trial 0, and every key not searched")
    tracking: TrackingConfig = _section(TrackingConfig, "the MLflow store (--tracking-uri overrides the uri)")
    fault_tolerance: FaultToleranceConfig = _section(FaultToleranceConfig, "retries and checkpoints kept")
    max_params: int = _opt(100_000_000, ge=1, doc="parameter budget; larger models are rejected before training")
    storage_path: Path = _opt(Path("ray_results"), doc="Tune's experiment folder (a local path; s3://... on clusters)")
    source: Path | None = _internal(None)  # the YAML file this spec was read from
    # The search's objectives, first the one ASHA stops on; empty in the constructor = (metric, mode).
    objectives: tuple[Objective, ...] = field(
        default=(), metadata=dict(doc="several objectives as {metric, mode}; the first, a training metric, is "
                                      "what ASHA stops on (default: metric / mode)"))
    constraints: tuple[Constraint, ...] = field(
        default=(), metadata=dict(doc="{metric: {max: x, min: y}}: trials outside the bounds are infeasible"))

    def __post_init__(self):
        if not self.objectives:
            object.__setattr__(self, "objectives", (Objective(self.metric, self.mode),))
        elif (self.objectives[0].metric, self.objectives[0].mode) != (self.metric, self.mode):
            raise ValueError("metric/mode must be the first objective")  # a bug of the caller, not user input

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1
    fixed_keys: frozenset[str] = _internal(frozenset())  # keys written under ``fixed`` (file or --set); the rest are defaults

    @property
    def trial_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(TrialConfig))


def format_value(value: Any) -> Any:
    """Lists as ``"[a, b]"`` strings (Optuna categoricals and MLflow params take scalars only)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return value


def flatten_trial_config(cfg: TrialConfig) -> dict[str, Any]:
    """Plain dict of the trial config, lists for tuples (YAML- and JSON-friendly)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}

