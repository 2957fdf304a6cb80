"""What ``hpo-cls promote`` will do, settled before anything trains: the options, the runs chosen (from one
or more sweeps, or named), the members, and every check that can fail early — epochs, image size,
preprocessing, the data folder, and the ensemble's parameter budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

from hpo_cls.console import say, warn
from hpo_cls.errors import PromoteError
from hpo_cls.promote.checks import (
    check_image_sizes,
    check_preprocessing,
    common_epochs,
    ensemble_parameters,
    sweep_max_params,
)
from hpo_cls.promote.retrain import MemberPlan, plan_members
from hpo_cls.promote.ensemble_selection import (
    DEFAULT_SELECT,
    FALLBACK_TOP,
    GREEDY_METRIC,
    SELECT_STRATEGIES,
    greedy_members,
    load_half_predictions,
    rank_on_selection_half,
)
from hpo_cls.promote.select import (
    Candidate,
    SweepRecord,
    common_rule,
    filled_with_early_stopped,
    format_selection,
    near_duplicate_pairs,
    select_top_runs,
)
from hpo_cls.promote.settings import promote_settings
from hpo_cls.promote.pareto import pareto_selection
from hpo_cls.promote.sources import Selection, load_pool, select_runs
from hpo_cls.spec import DataConfig, ResourcesConfig, TrackingConfig, TrialConfig
from hpo_cls.tracking.backend import TrackingStore

__all__ = ["PromoteOptions", "PromotePlan", "choose_members", "plan_promote"]


@dataclass
class PromoteOptions:
    top: int | None = None
    sweep: str | Sequence[str] | None = None  # one sweep id / spec name, or several
    experiment: str = TrackingConfig().experiment
    tracking_uri: str = TrackingConfig().uri
    epochs: int | None = None
    seeds: int = 1
    train_on_val: bool = False
    tta: bool = False
    weighted: bool = False
    include_early_stopped: bool = False
    dedupe: bool = False
    predict: Path | None = None
    out: Path = Path("prediction.csv")
    register_as: str | None = None
    overrides: list[str] = field(default_factory=list)
    address: str | None = None
    workdir: Path | None = None
    batch_size: int = 64
    runs: list[str] = field(default_factory=list)  # exactly these trial runs, from any sweeps
    diverse: str | None = None  # the best run per distinct value of this key first
    max_params: float | None = None  # the ensemble's budget (default: the sweeps' max_params); with pareto, each member's
    pareto: bool = False  # members from the Pareto front (promote.pareto), within max_params / max_latency_ms
    max_latency_ms: float | None = None
    retrain: bool = False  # retrain members whose trial already trained them (promote.trial_checkpoints)
    select: str = DEFAULT_SELECT  # how members are chosen: promote.ensemble_selection.SELECT_STRATEGIES

    @property
    def sweeps(self) -> list[str | None]:
        if self.sweep is None or isinstance(self.sweep, str):
            return [self.sweep]
        return list(self.sweep) or [None]


@dataclass
class PromotePlan:
    """What promote will do; ``sweeps[0]`` is the sweep whose data, resources and name are used."""

    sweeps: list[SweepRecord]
    selected: list[Candidate]
    searched: list[str]
    members: list[MemberPlan]
    parameters: list[int]  # per member
    data_cfg: DataConfig
    resources: ResourcesConfig
    epochs: int
    workdir: Path
    predict_dir: Path | None
    promote_id: str
    weights: list[float] | None = None  # per member, summing to 1 (greedy's selection counts); None: options decide
    on_selection_half: bool = False  # the members were chosen on the selection half of val (val_split)
    as_trained: bool = False  # members are their trials' checkpoints as trained (greedy chose those predictions)
    train_on_val: bool = False

    @property
    def sweep(self) -> SweepRecord:
        return self.sweeps[0]

    @property
    def held_out(self) -> bool:
        """The members never trained on val (``--train-on-val`` trains on it)."""
        return not self.train_on_val


def _check_flags(options: PromoteOptions) -> None:
    for name in ("top", "epochs", "seeds", "batch_size"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise PromoteError(f"{{{name}}} must be at least 1, got {value}")
    if options.max_params is not None and options.max_params < 1:
        raise PromoteError(f"{{max_params}} must be >= 1, got {options.max_params:g}")
    if options.select not in SELECT_STRATEGIES:
        raise PromoteError(f"{{select}} {options.select}: one of {', '.join(SELECT_STRATEGIES)}")
    greedy = options.select == "greedy"
    if options.max_latency_ms is not None and not (options.pareto or greedy):
        raise PromoteError("{max_latency_ms} bounds members from the Pareto front or a greedy ensemble: add "
                           "{pareto} or {select} greedy")
    if greedy:
        clashing = [name for name in ("pareto", "runs", "diverse", "dedupe", "weighted", "include_early_stopped")
                    if getattr(options, name)]
        if clashing:
            raise PromoteError("{select} greedy chooses members and weights from every finished run itself; drop "
                               + ", ".join(f"{{{name}}}" for name in clashing))
    if options.pareto and (options.runs or options.diverse or options.dedupe):
        raise PromoteError("{pareto} picks its members from the front: drop {runs}, {diverse} and {dedupe}")
    if options.runs:
        clashing = [name for name, given in (("top", options.top is not None), ("sweep", options.sweep),
                                             ("diverse", options.diverse), ("dedupe", options.dedupe),
                                             ("include_early_stopped", options.include_early_stopped)) if given]
        if clashing:
            raise PromoteError("{runs} promotes exactly the runs named; drop "
                               + ", ".join(f"{{{name}}}" for name in clashing))


def _check_weighted(options: PromoteOptions, selection: Selection) -> None:
    """Weights proportional to the members' scores need a score that grows with quality."""
    rule = common_rule(selection.selected)
    if options.weighted and rule.mode != "max":
        raise PromoteError(f"{{weighted}} weights members in proportion to their score, but the sweep ranks by "
                           f"{rule.metric} ({rule.mode}); drop {{weighted}}")


def _check_predict_folder(folder: Path) -> None:
    """The folder to predict holds images with distinct names: checked before anything is registered, so a
    bad folder never leaves @champion on a model whose promote failed."""
    from hpo_cls.data import list_test_images
    from hpo_cls.promote.predict import check_prediction_names

    if not folder.is_dir():
        raise PromoteError(f"{{predict}} {folder}: no such folder")
    images = list_test_images(folder)
    if not images:
        raise PromoteError(f"{folder}: no images to predict; pass {{predict}} DIR with images")
    check_prediction_names(images)


def _searched(sweeps: Sequence[SweepRecord], diverse: str | None) -> list[str]:
    names = [n for s in sweeps for n in s.params.get("searched", "").split(",")]
    names = [*([diverse] if diverse else []), *names]
    return [n for n in dict.fromkeys(names) if n in TrialConfig.__dataclass_fields__]


def _announce(selection, options: PromoteOptions, searched: list[str], out: TextIO) -> None:
    ids = ", ".join(s.sweep_id for s in selection.sweeps)
    if options.runs:
        say(f"promoting the {len(selection.selected)} run(s) named, from sweep(s) {ids}:", out)
    elif selection.weights is not None:
        say(f"sweep(s) {ids}: {selection.considered} finished run(s); the greedy ensemble:", out)
    else:
        how = f", best per {options.diverse} first" if options.diverse else ""
        say(f"sweep(s) {ids}: {selection.considered} finished run(s); promoting the top "
            f"{len(selection.selected)}{how}:", out)
    rescored = selection.on_selection_half and selection.weights is None  # topk: scores on the selection half
    score_name = f"{common_rule(selection.selected).metric} (selection half)" if rescored else None
    print(format_selection(selection.selected, searched, selection.weights, score_name), file=out, flush=True)
    filled = None if options.runs or options.pareto else filled_with_early_stopped(selection.selected,
                                                                                    options.include_early_stopped)
    if filled and selection.weights is None:
        say(filled, out)


def choose_members(options: PromoteOptions, store: TrackingStore, out: TextIO) -> Selection:
    """The runs to promote (and their weights, where the strategy sets them), by the options."""
    if options.pareto:
        return pareto_selection(store, options.experiment, options.sweeps[0], options.top or 0,
                                max_params=options.max_params, max_latency_ms=options.max_latency_ms,
                                include_early_stopped=options.include_early_stopped, warn=warn, out=out)
    greedy = options.select == "greedy"
    if options.runs or (options.top is None and not greedy):
        return select_runs(store, experiment=options.experiment, runs=options.runs, top=options.top, warn=warn)
    records, candidates = load_pool(store, options.experiment, options.sweeps, warn)
    half = load_half_predictions(store, candidates)
    ids = ", ".join(s.sweep_id for s in records)
    if half is None and greedy:
        say(f"sweep(s) {ids}: no trial logged its validation predictions (sweeps before hpo-cls kept them): "
            f"--select greedy falls back to the top {options.top or FALLBACK_TOP} by the trials' own scores", out)
    if half is not None and greedy:
        return _greedy(options, store, records, candidates, half, out)
    ranked = rank_on_selection_half(candidates, half) if half is not None else None
    selected = select_top_runs(ranked or candidates, options.top or FALLBACK_TOP,
                               include_early_stopped=options.include_early_stopped, dedupe=options.dedupe,
                               diverse=options.diverse)
    if ranked is not None:
        say(f"trials ranked by {common_rule(ranked).metric} on the selection half of val ({half.selection_images} "
            f"images); the other {half.held_out_images} are held out for the figures below", out)
    return Selection(records, len(candidates), selected, on_selection_half=ranked is not None)


def _greedy(options: PromoteOptions, store: TrackingStore, records, candidates, half, out: TextIO) -> Selection:
    from hpo_cls.models.classifier import count_parameters

    missing = [c for c in candidates if c.run_id not in half.by_run]
    if missing:
        say(f"{len(missing)} of {len(candidates)} finished run(s) logged no validation predictions: greedy "
            "selection leaves them out", out)
    max_params = int(options.max_params) if options.max_params else min(sweep_max_params(store, s) for s in records)
    selected, weights = greedy_members(candidates, half, top=options.top, max_params=max_params,
                                       max_latency_ms=options.max_latency_ms,
                                       count_parameters=lambda c: count_parameters(c.config, len(half.classes)),
                                       warn=warn)
    say(f"greedy ensemble selection with replacement ({GREEDY_METRIC} on the selection half of val: "
        f"{half.selection_images} images; {half.held_out_images} held out) over {len(candidates) - len(missing)} "
        f"finished run(s), completed and early-stopped: {len(selected)} member(s)", out)
    return Selection(records, len(candidates), selected, weights=weights, on_selection_half=True)


def plan_promote(options: PromoteOptions, store: TrackingStore, out: TextIO) -> PromotePlan:
    """Choose the runs and check every option before any retraining starts."""
    import time

    from hpo_cls.data import class_mapping

    _check_flags(options)
    selection = choose_members(options, store, out)
    _check_weighted(options, selection)
    primary = selection.sweeps[0]
    data_cfg, resources, fixed = promote_settings(store, primary, options.overrides)
    searched = _searched(selection.sweeps, options.diverse)
    _announce(selection, options, searched, out)
    # greedy chose its members on their predictions: near-duplicates there earned their place
    for better, worse in near_duplicate_pairs(selection.selected) if selection.weights is None else ():
        warn(f"{worse.trial_id} is a near-duplicate of {better.trial_id} (same choices, numbers within 5%): as "
             "ensemble members they add little over one; --dedupe promotes the next distinct run instead")
    epochs = common_epochs(selection.sweeps, options.epochs)
    check_image_sizes(selection.sweeps, data_cfg.image_size)
    root = Path(data_cfg.root)
    if not (root / "train").is_dir():
        raise PromoteError(f"{root}/train: no such folder on this machine; pass {{set}} data.root=DIR")
    predict_dir = options.predict or (root / "test" if (root / "test").is_dir() else None)
    if predict_dir is not None:
        _check_predict_folder(Path(predict_dir))
    members = plan_members(selection.selected, options.seeds, fixed)
    weights = None
    if selection.weights is not None:  # each run's weight shared by its seeds
        weights = [w / options.seeds for w in selection.weights for _ in range(options.seeds)]
    check_preprocessing(members)
    # With --pareto, max_params bounded each member; the ensemble keeps the sweeps' own budget.
    ensemble_budget = None if options.pareto or options.max_params is None else int(options.max_params)
    max_params = ensemble_budget or min(sweep_max_params(store, s) for s in selection.sweeps)
    parameters = ensemble_parameters(members, len(class_mapping(root / "train")), max_params)
    say(f"ensemble of {len(members)} member(s): {sum(parameters):,} parameters (max_params {max_params:,}; "
        + ", ".join(f"{m.key} {c:,}" for m, c in zip(members, parameters)) + ")", out)
    if options.train_on_val:
        warn("members also train on val/, so the validation numbers below are NOT held out")
    return PromotePlan(
        sweeps=selection.sweeps, selected=selection.selected, searched=searched, members=members,
        parameters=parameters, data_cfg=data_cfg, resources=resources, epochs=epochs,
        workdir=Path(options.workdir or Path("promote_runs") / primary.sweep_id).resolve(),
        predict_dir=predict_dir,
        promote_id=f"{primary.sweep_id}-promote-{time.strftime('%Y%m%d-%H%M%S')}",
        weights=weights, on_selection_half=selection.on_selection_half and not options.train_on_val,
        as_trained=selection.weights is not None and not (options.retrain or options.train_on_val),
        train_on_val=options.train_on_val,
    )
