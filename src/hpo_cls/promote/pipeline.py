"""``hpo-cls promote``: the sweep's best runs (read from MLflow) -> final retrains (Ray tasks) -> ensemble
-> evaluation -> registered MLflow model with alias ``champion`` -> ``prediction.csv``.

This module only runs the steps in order and records them in MLflow; each step lives in its own
module: :mod:`hpo_cls.promote.plan` (choosing runs, checks), :mod:`hpo_cls.promote.retrain`,
:mod:`hpo_cls.promote.evaluate` and :mod:`hpo_cls.promote.register`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hpo_cls.console import Steps, say, warn
from hpo_cls.promote.plan import PromoteOptions, PromotePlan, plan_promote
from hpo_cls.promote.register import (
    CHAMPION_ALIAS,
    HELD_OUT_TAG,
    champion_version,
    register_ensemble,
    registered_model_name,
    restore_champion,
)
from hpo_cls.promote.retrain import MemberResult, retrain_members
from hpo_cls.promote.trial_checkpoints import REUSED_TAG, reuse_trial_checkpoints
from hpo_cls.promote.val_split import SPLIT_SEED, selection_mask
from hpo_cls.spec import flatten_trial_config
from hpo_cls.tracking.runs import (
    ROLE_TAG,
    SWEEP_ID_TAG,
    SWEEP_NAME_TAG,
    TRIAL_ID_TAG,
    end_run_op,
)
from hpo_cls.tracking.store import MlflowStore
from hpo_cls.tracking.ui import model_url, ui_base_url
from hpo_cls.tracking.uri import redact_uri
from hpo_cls.tracking.writer import MlflowWriter

__all__ = ["PromoteOptions", "PromoteOutcome", "run_promote"]

PROMOTE_ID_TAG = "hpo_cls.promote_id"
MEMBER_TAG = "hpo_cls.member"
SOURCE_RUN_TAG = "hpo_cls.source_run_id"
SWEEP_IDS_TAG = "hpo_cls.sweep_ids"  # every sweep the members come from (SWEEP_ID_TAG: the first)
SELECT_TAG = "hpo_cls.select"  # on the registered version: how its members were chosen
VAL_SPLIT_TAG = "hpo_cls.val_split"  # on the registered version: which val images the choice saw


@dataclass
class PromoteOutcome:
    promote_run_id: str
    model_name: str
    model_version: str
    model_uri: str
    members: list[MemberResult]
    val_report: dict
    test_report: dict | None
    prediction_csv: Path | None


def run_promote(options: PromoteOptions, out: TextIO | None = None) -> PromoteOutcome:
    """Select, retrain, ensemble, evaluate, register and predict; see the module docstring. Members are
    retrained from scratch and continue from their checkpoints when run again with the same ``workdir``."""
    out = out or sys.stdout  # looked up per call: a default argument would pin the stdout of import time
    plan = plan_promote(options, MlflowStore(options.tracking_uri), out)
    writer = MlflowWriter(options.tracking_uri, options.experiment)
    _open_runs(writer, plan, options)
    finished: set[str] = set()
    try:
        results = _retrain(plan, options, writer, finished, out)
        outcome = _evaluate_register_predict(options, plan, results, writer, out)
        writer.call("promote", end_run_op("completed"))
        writer.close(timeout=300)
        return outcome
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        for p in plan.members:
            if p.key not in finished:
                writer.call(p.key, end_run_op("failed", reason))
        writer.call("promote", end_run_op("failed", reason))
        writer.close(timeout=60)
        raise


def _open_runs(writer: MlflowWriter, plan: PromotePlan, options: PromoteOptions) -> None:
    """The promote run and one nested run per member."""
    sweep = plan.sweep
    common_tags = {SWEEP_ID_TAG: sweep.sweep_id, SWEEP_NAME_TAG: sweep.name,
                   HELD_OUT_TAG: str(not options.train_on_val).lower()}
    writer.open_run("promote", {PROMOTE_ID_TAG: plan.promote_id, ROLE_TAG: "promote"}, run_name=plan.promote_id,
                    tags={**common_tags, "hpo_cls.sweep_run_id": sweep.run_id,
                          SWEEP_IDS_TAG: ",".join(s.sweep_id for s in plan.sweeps)},
                    params={"top": len(plan.selected), "select": options.select, "epochs": plan.epochs,
                            "seeds": options.seeds, "tta": options.tta,
                            "weighted": options.weighted, "train_on_val": options.train_on_val,
                            "include_early_stopped": options.include_early_stopped, "dedupe": options.dedupe,
                            "pareto": options.pareto, "max_params": options.max_params,
                            "max_latency_ms": options.max_latency_ms,
                            "data_root": str(plan.data_cfg.root), "image_size": plan.data_cfg.image_size,
                            "workdir": str(plan.workdir), "diverse": options.diverse or "none",
                            "parameters": sum(plan.parameters),
                            "source_run_ids": ",".join(c.run_id for c in plan.selected)})
    for p in plan.members:
        writer.open_run(p.key, {PROMOTE_ID_TAG: plan.promote_id, MEMBER_TAG: p.key},
                        run_name=f"{plan.promote_id}/{p.key}",
                        tags={**common_tags, ROLE_TAG: "promote_member", SOURCE_RUN_TAG: p.source.run_id,
                              TRIAL_ID_TAG: p.source.trial_id},
                        params={**flatten_trial_config(p.config), "epochs_budget": plan.epochs,
                                "train_on_val": options.train_on_val}, parent_key="promote")


def _retrain(plan: PromotePlan, options: PromoteOptions, writer: MlflowWriter, finished: set[str],
             out: TextIO) -> list[MemberResult]:
    """Retrain every member (Ray tasks), each epoch logged to its run, except those whose trial already
    trained their model (:mod:`hpo_cls.promote.trial_checkpoints`); ``finished`` collects the done ones."""
    reused = _reused(plan, options, out)
    for key, result in reused.items():
        for metrics in result.history:
            writer.log_metrics(key, {k: v for k, v in metrics.items() if k != "epoch"}, step=int(metrics["epoch"]))
        writer.call(key, end_run_op("completed", extra_tags={REUSED_TAG: "1"}))
        finished.add(key)
    to_train = [p for p in plan.members if p.key not in reused]
    trained = {r.key: r for r in _train(plan, to_train, options, writer, finished, out)} if to_train else {}
    return [reused.get(p.key) or trained[p.key] for p in plan.members]


def _reused(plan: PromotePlan, options: PromoteOptions, out: TextIO) -> dict[str, MemberResult]:
    if options.retrain or options.train_on_val:
        return {}
    reused = reuse_trial_checkpoints(MlflowStore(options.tracking_uri), plan.members, plan.sweeps, plan.data_cfg,
                                     plan.epochs, plan.workdir, as_trained=plan.as_trained,
                                     note=lambda line: say(line, out))
    for key, result in reused.items():
        if plan.as_trained:
            say(f"member {key}: its trial's checkpoint (epoch {len(result.history)}), whose predictions greedy "
                "selection chose, taken as trained (--retrain trains the configuration for the full budget)", out)
        else:
            say(f"member {key}: its trial completed the same {plan.epochs} epoch(s) with this configuration and "
                "seed, and its checkpoint is the last epoch: taken as trained (--retrain trains it again)", out)
    left = [p.key for p in plan.members if p.key not in reused]
    if plan.as_trained and left:
        say(f"member(s) {', '.join(left)}: no checkpoint of this configuration and seed was kept: retrained for "
            f"the full budget of {plan.epochs} epoch(s)", out)
    return reused


def _train(plan: PromotePlan, members: list, options: PromoteOptions, writer: MlflowWriter, finished: set[str],
           out: TextIO) -> list[MemberResult]:
    star = "*" if options.train_on_val else ""
    resources = plan.resources
    say(f"retraining {len(members)} member(s) for {plan.epochs} epoch(s) each on {plan.data_cfg.root} "
        f"({resources.cpu:g} CPU{f', {resources.gpu:g} GPU' if resources.gpu else ''} per member); "
        f"checkpoints in {plan.workdir}", out)
    with Steps(out, unit="epochs") as steps:
        for p in members:
            steps.add(p.key, f"member {p.key}", plan.epochs)

        def on_epoch(key: str, metrics: dict) -> None:
            epoch = int(metrics["epoch"])
            writer.log_metrics(key, {k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            steps.update(key, epoch, f"train_loss {metrics['train_loss']:.4f}  val_acc{star} {metrics['val_acc']:.4f}"
                                     f"  {metrics['epoch_time_s']:.1f}s/epoch",
                         eta_s=(plan.epochs - epoch) * metrics["epoch_time_s"])

        results = retrain_members(members, plan.data_cfg, plan.epochs, plan.workdir,
                                  train_on_val=options.train_on_val, cpus=resources.cpu, gpus=resources.gpu,
                                  address=options.address, on_epoch=on_epoch)
    for r in results:
        if r.resumed_from_epoch:
            say(f"{r.key}: continued from the checkpoint of epoch {r.resumed_from_epoch}", out)
        writer.call(r.key, end_run_op("completed"))
        finished.add(r.key)
    return results


def _evaluate_register_predict(options: PromoteOptions, plan: PromotePlan, results: list[MemberResult],
                               writer: MlflowWriter, out: TextIO) -> PromoteOutcome:
    from hpo_cls.promote.ensemble import load_ensemble, normalize_weights

    weights = plan.weights or normalize_weights([p.source.score for p in plan.members] if options.weighted else None,
                                                len(plan.members))
    loaded = load_ensemble([r.bundle_path for r in results], weights, options.tta)
    val_report, test_report = _evaluate(options, plan, loaded, writer, out)
    promote_run_id = writer.run_ids["promote"]
    name = registered_model_name(options.register_as or f"{plan.sweep.name}-ensemble")
    previous = champion_version(options.tracking_uri, name)
    selection_tags = {SELECT_TAG: options.select if plan.weights is not None or options.select == "topk"
                      else "topk (greedy fell back: no predictions)",
                      VAL_SPLIT_TAG: f"selection half / held-out half, seed {SPLIT_SEED}" if plan.on_selection_half
                      else "none: the selection saw all of val"}
    info, version = register_ensemble(options.tracking_uri, promote_run_id, name, plan.sweeps, plan.members, results,
                                      weights, loaded.class_names, val_report, plan.searched, tta=options.tta,
                                      weighted=options.weighted, train_on_val=options.train_on_val,
                                      extra_tags=selection_tags)
    say(f"registered {name} version {version.version} with alias @{CHAMPION_ALIAS} ({info.model_uri})", out)
    say(f"model page: {model_url(ui_base_url(options.tracking_uri), name, str(version.version))}", out)
    try:
        csv_path = _predict(options, plan, loaded, name, writer, out)
    except BaseException:  # @champion goes back: it never points at a model whose promote failed
        restore_champion(options.tracking_uri, name, previous)
        warn(f"promote failed after registering {name} version {version.version}: the version stays registered "
             f"(no alias), @{CHAMPION_ALIAS} " + (f"points at version {previous} again" if previous
                                                   else "was removed again"))
        raise
    return PromoteOutcome(promote_run_id, name, str(version.version), f"models:/{name}@{CHAMPION_ALIAS}", results,
                          val_report, test_report, csv_path)


def _val_halves(plan: PromotePlan, samples) -> dict[str, list]:
    """The val samples under the name promote reports them by: ``val_heldout`` (unseen by the selection) and
    ``val_select`` when the members were chosen on the selection half; else all of val, as ``val_seen`` (the
    trials' scores that ranked them saw it) or ``val`` (members trained on it)."""
    if not plan.on_selection_half:
        return {"val_seen" if plan.held_out else "val": samples}
    mask = selection_mask([f"{path.parent.name}/{path.name}" for path, _ in samples], [y for _, y in samples])
    return {"val_heldout": [s for s, m in zip(samples, mask) if not m],
            "val_select": [s for s, m in zip(samples, mask) if m]}


def _evaluate(options: PromoteOptions, plan: PromotePlan, loaded, writer: MlflowWriter, out: TextIO):
    """Members and ensemble on val, each figure named by whether the selection saw those images (and on
    labelled test images, for reporting only); the first report (held out where there is one) is returned."""
    from hpo_cls.data import list_images
    from hpo_cls.data.folders import class_names
    from hpo_cls.promote.evaluate import (
        evaluate_split,
        labelled_test_samples,
        log_split,
        print_split_report,
    )

    keys = [p.key for p in plan.members]
    root, workers = Path(plan.data_cfg.root), plan.data_cfg.workers
    halves = _val_halves(plan, list_images(root / "val", loaded.class_to_idx))
    names = class_names(root, loaded.class_to_idx)  # class_names.csv's names where it has them, as trial reports
    reports = {name: evaluate_split(name, loaded, keys, samples, options.batch_size, workers, names)
               for name, samples in halves.items() if samples}
    val_report = next(iter(reports.values()))
    print_split_report(val_report, not options.train_on_val, out)
    if "val_select" in reports:
        chosen_on = reports["val_select"]
        say(f"val_select (the {len(halves['val_select'])} images the selection saw): ensemble accuracy "
            f"{chosen_on['ensemble']['accuracy']:.4f}; val_heldout ({len(halves['val_heldout'])} images it never "
            f"saw): {val_report['ensemble']['accuracy']:.4f}", out)
    elif plan.held_out:
        say("val_seen: the trials' scores that chose these members were measured on these images", out)
    for report in reports.values():
        log_split(writer, "promote", report)
    test_report = None
    test_samples = labelled_test_samples(Path(plan.predict_dir), loaded.class_to_idx, warn) if plan.predict_dir else None
    if test_samples:
        test_report = evaluate_split("test", loaded, keys, test_samples, options.batch_size, workers, names)
        print_split_report(test_report, True, out)
        say("test numbers are for reporting only: nothing was selected or weighted on them", out)
        log_split(writer, "promote", test_report)
    writer.flush()
    return val_report, test_report


def _predict(options: PromoteOptions, plan: PromotePlan, loaded, name: str, writer: MlflowWriter,
             out: TextIO) -> Path | None:
    from hpo_cls.data import list_test_images
    from hpo_cls.promote.predict import (
        predict_probabilities,
        prediction_frame,
        write_prediction_csv,
    )

    if plan.predict_dir is None:
        say(f"no test folder in {plan.data_cfg.root} and no folder to predict was given: prediction.csv not written", out)
        return None
    paths = list_test_images(Path(plan.predict_dir))
    with Steps(out, unit="images", line_every=0.25) as steps:
        steps.add("predict", f"predicting {plan.predict_dir}", len(paths))
        probabilities = predict_probabilities(loaded.model, paths, loaded.image_size, options.batch_size,
                                              on_batch=lambda done: steps.update("predict", done),
                                              cfg=loaded.eval_config)
    labels = prediction_frame(probabilities, loaded.class_names)["pred_label"].tolist()
    csv_path = write_prediction_csv(options.out, paths, labels)
    writer.call("promote", lambda client, run_id: client.log_artifact(run_id, str(csv_path)))
    say(f"wrote {csv_path} ({len(paths)} images from {plan.predict_dir})", out)
    say(f"same predictions later: hpo-cls predict models:/{name}@{CHAMPION_ALIAS} {plan.predict_dir} "
        f"--tracking-uri {redact_uri(options.tracking_uri)}", out)
    return csv_path
