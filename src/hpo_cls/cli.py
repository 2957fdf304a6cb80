"""``hpo-cls`` command line: parse arguments and dispatch. Bad input exits 2 with one ``error:`` line each.

The commands' work lives in the packages (``train.standalone``, ``sweep.tuner``, ``promote.pipeline``,
``promote.predict``); this module only turns flags into calls and errors into lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from hpo_cls import __version__
from hpo_cls.errors import HpoClsError, SpecError
from hpo_cls.spec import SweepSpec, load_spec

EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A user-facing error of the command line itself: printed as one line, exit status 2."""


def flag(option: str) -> str:
    """The command-line flag of a library option name: ``include_early_stopped`` -> ``--include-early-stopped``."""
    return "--" + option.replace("_", "-")


def _add_spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="sweep spec (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a spec value, e.g. --set budget.num_samples=4 (repeatable)")


def _add_tracking_arg(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    help_text = f"MLflow tracking URI (default: {default or 'the spec' + chr(39) + 's tracking.uri'})"
    parser.add_argument("--tracking-uri", default=default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo-cls",
        description="Hyperparameter sweeps for ResNet-family image classifiers (Ray Tune + Optuna + MLflow).",
    )
    parser.add_argument("--version", action="version", version=f"hpo-cls {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_validate, _add_train, _add_sweep, _add_ui, _add_promote, _add_predict, _add_sweeps, _add_report,
                _add_cluster):
        add(commands)
    return parser


def _add_validate(commands) -> None:
    p = commands.add_parser("validate", help="check a spec, its data folder and model sizes without training",
                            description="Parse the spec, scan the data folder for unreadable images, count "
                                        "the parameters of every backbone choice, and print the search space.")
    _add_spec_args(p)
    p.add_argument("--no-scan", action="store_true", help="skip decoding every image (faster)")
    p.add_argument("--estimate", action="store_true",
                   help="measure a few training steps per backbone and estimate the sweep's wall time and GPU-hours")
    _add_device_profile_arg(p)


def _add_device_profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device-profile", type=Path, metavar="FILE",
                   help="read the estimate's measurements from FILE (written there when it lacks them), e.g. one "
                        "made on a GPU node")


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train one configuration (the spec's fixed values) without Ray",
                            description="Train the spec's fixed configuration (plus --set) once, printing "
                                        "progress per epoch; writes checkpoint.pt and metrics.csv.")
    _add_spec_args(p)
    p.add_argument("--out", type=Path, help="output folder (default: runs/<name>-<time>)")


def _add_sweep(commands) -> None:
    p = commands.add_parser("sweep", help="run a hyperparameter sweep with Ray Tune, Optuna and ASHA",
                            description="Run a sweep: Optuna proposes trials, ASHA stops weak ones, every "
                                        "trial is checkpointed each epoch and recorded in MLflow.")
    _add_spec_args(p)
    _add_tracking_arg(p)
    p.add_argument("--address", help="join an existing Ray cluster (e.g. 127.0.0.1:6379); 'local': a private Ray "
                                     "even when `hpo-cls cluster up` runs one (default: that one, else private)")
    p.add_argument("--name", help="sweep id (default: <spec name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (the newest, or --name)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary (no live table, no event lines)")
    p.add_argument("--no-estimate", action="store_true", help="skip the cost estimate printed before the trials")
    _add_device_profile_arg(p)
    p.add_argument("--warm-start", action="append", default=[], metavar="SWEEP_ID",
                   help="learn from the finished trials of an earlier sweep in the same MLflow store before the "
                        "first proposal (repeatable)")


def _add_ui(commands) -> None:
    p = commands.add_parser("ui", help="open the MLflow UI on the sweep's tracking store (127.0.0.1)",
                            description="Start `mlflow ui` bound to 127.0.0.1 on a tracking store, and print the "
                                        "URLs of the sweep's runs (model-training view, best first) and parent run.")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--experiment", default="hpo-cls", help="MLflow experiment (default: %(default)s)")
    p.add_argument("--sweep", help="sweep id or spec name whose runs to open (default: the newest sweep)")


def _add_sweeps(commands) -> None:
    p = commands.add_parser("sweeps", help="list the sweeps in a tracking store, newest first",
                            description="One line per sweep of the experiment, newest first: id, spec, start, "
                                        "trials by status, best val_acc and whether it was promoted.")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    p.add_argument("--experiment", default="hpo-cls", help="MLflow experiment (default: %(default)s)")


def _add_report(commands) -> None:
    p = commands.add_parser("report", help="write a sweep's interactive HTML report (opens offline)",
                            description="Read a sweep from MLflow and write one self-contained HTML page: parallel "
                                        "coordinates, learning curves, parameter importances, val_acc over time, "
                                        "per-class F1 of the best trials, and the top trials with their MLflow "
                                        "links and the promote command.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP", help="sweep id or spec name (default: the newest sweep)")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file (default: %(default)s)")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    p.add_argument("--experiment", default="hpo-cls", help="MLflow experiment (default: %(default)s)")


def _add_promote(commands) -> None:
    # One flag per PromoteOptions field, in the same order; argparse's declarative list is long by nature.
    p = commands.add_parser("promote", help="retrain a sweep's top runs, ensemble, register and predict",
                            description="Pick the top runs of a sweep from MLflow, retrain each from scratch for "
                                        "the full budget as Ray tasks, ensemble them (mean softmax), evaluate, "
                                        "register the ensemble (alias champion) and write prediction.csv.")
    p.add_argument("--top", type=int, metavar="K", help="number of runs to promote (or name them with --runs)")
    p.add_argument("--sweep", action="append",
                   help="sweep id or spec name (newest sweep of that name), repeatable to pool several sweeps; "
                        "default: the newest sweep")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_ID",
                   help="promote exactly these trial runs (MLflow run ids, from any sweeps in the store)")
    p.add_argument("--diverse", metavar="KEY",
                   help="take the best run of each distinct value of KEY first (e.g. backbone), then fill up to --top")
    p.add_argument("--max-params", type=float, metavar="N",
                   help="parameter budget, e.g. 15e6: of the whole ensemble (default: the sweep's max_params, "
                        "100,000,000); with --pareto, of each member picked from the front")
    p.add_argument("--experiment", default="hpo-cls", help="MLflow experiment (default: %(default)s)")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    p.add_argument("--epochs", type=int, help="epochs per retrain (default: the sweep's epoch budget)")
    p.add_argument("--seeds", type=int, default=1, metavar="S", help="members per run: seed, seed+1, ... (default: 1)")
    p.add_argument("--train-on-val", action="store_true",
                   help="retrain on train+val (val numbers are then not held out)")
    p.add_argument("--tta", action="store_true", help="average each member over the image and its horizontal flip")
    p.add_argument("--weighted", action="store_true", help="weight members by their sweep validation score")
    p.add_argument("--include-early-stopped", action="store_true", help="also consider runs ASHA stopped early")
    p.add_argument("--dedupe", action="store_true",
                   help="skip runs whose config is near-identical to a better one (numbers within 5%%)")
    p.add_argument("--predict", type=Path, metavar="DIR",
                   help="images to predict (default: <data root>/test if present)")
    p.add_argument("--out", type=Path, default=Path("prediction.csv"), help="prediction CSV (default: %(default)s)")
    p.add_argument("--register-as", metavar="NAME", help="registered model name (default: <spec name>-ensemble)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override data.*, resources.* or fixed.* for the retrains, e.g. --set data.root=/data "
                        "(repeatable)")
    p.add_argument("--workdir", type=Path, help="member checkpoints; rerun with the same folder to resume "
                                                "(default: promote_runs/<sweep id>)")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation and prediction batch size (default: 64)")
    p.add_argument("--address", help="join an existing Ray cluster; 'local': a private Ray even when "
                                     "`hpo-cls cluster up` runs one (default: that one, else private)")
    _add_pareto_args(p)


def _add_pareto_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pareto", action="store_true",
                   help="pick the K most accurate members of the sweep's Pareto front (accuracy vs cost)")
    p.add_argument("--max-latency-ms", type=float, metavar="MS",
                   help="with --pareto: only runs whose batch-1 inference latency is at most MS milliseconds")


def _add_predict(commands) -> None:
    p = commands.add_parser("predict", help="predict a folder of images with a registered model (no Ray needed)",
                            description="Load an MLflow model (e.g. models:/quickstart-ensemble@champion) and write "
                                        "image_name,pred_label rows for every image in DIR.")
    p.add_argument("model_uri", metavar="MODEL_URI", help="e.g. models:/quickstart-ensemble@champion")
    p.add_argument("dir", type=Path, metavar="DIR", help="folder of images")
    p.add_argument("--out", type=Path, default=Path("prediction.csv"), help="prediction CSV (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    _add_tracking_arg(p, "sqlite:///mlflow.db")


def _add_cluster(commands) -> None:
    p = commands.add_parser("cluster", help="keep a private local Ray running for later sweeps and promotes",
                            description="up: start a local Ray (127.0.0.1, dashboard off, its own temp folder) "
                                        "that later sweeps and promotes without --address join, skipping Ray's "
                                        "start-up and shut-down; down: stop it; status: show it.")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--cpus", type=float, help="CPUs it offers (default: all of this machine's)")
    p.add_argument("--gpus", type=float, help="GPUs it offers (default: those visible)")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="MIN",
                   help="stop after this many minutes with no sweep or promote connected; 0: never (default: 60)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # MLflow logs store migrations and similar at INFO; hpo-cls prints what a user needs itself.
    # (Read by mlflow when it is first imported, which the commands do lazily after this point.)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    handler = {"validate": cmd_validate, "train": cmd_train, "sweep": cmd_sweep, "ui": cmd_ui,
               "promote": cmd_promote, "predict": cmd_predict, "sweeps": cmd_sweeps, "report": cmd_report,
               "cluster": cmd_cluster}[args.command]
    try:
        return handler(args) or 0
    except SpecError as exc:
        for line in exc.render_lines(flag):
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HpoClsError as exc:
        print(f"error: {exc.render(flag)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConnectionError as exc:
        print(f"error: cannot connect to the Ray cluster at {getattr(args, 'address', None)}: {exc}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _load(args) -> SweepSpec:
    spec = load_spec(args.spec, args.overrides)
    if getattr(args, "tracking_uri", None):
        import dataclasses

        spec = dataclasses.replace(spec, tracking=dataclasses.replace(spec.tracking, uri=args.tracking_uri))
    return spec


def cmd_validate(args) -> int:
    from hpo_cls.search.space import describe_space
    from hpo_cls.spec.baseline import fixed_and_searched_notes
    from hpo_cls.sweep.preflight import run_preflight

    spec = _load(args)
    print(f"spec {args.spec}: name {spec.name!r}, data {spec.data.root}")
    result = run_preflight(spec, scan_images=not args.no_scan)
    if result.summary is not None:
        print(result.summary.report())
    for backbone, count in result.parameter_counts.items():
        mark = "over max_params!" if count > spec.max_params else "ok"
        print(f"model {backbone:<20} {count:>13,} parameters  {mark}")
    print(f"budget: {spec.budget.num_samples} trials x up to {spec.budget.epochs} epochs, "
          f"{spec.budget.max_concurrent} at a time; scheduler {spec.scheduler.type}; sampler {spec.search.sampler}")
    if spec.search.space:
        print("search space:")
        for line in describe_space(spec.search.space):
            print(f"  {line}")
    for note in fixed_and_searched_notes(spec):
        print(f"note: {note}")
    if args.estimate and not result.problems:
        from hpo_cls.sweep.estimate import estimate_for, slots

        estimate, lines = estimate_for(spec, result, args.device_profile, slots(spec))
        print("\n".join(lines))
        result.problems.extend(estimate.problems if estimate else [])
    if result.problems:
        raise SpecError(result.problems)
    print("ok")
    return 0


def cmd_train(args) -> int:
    from hpo_cls.sweep.preflight import checked
    from hpo_cls.train.standalone import train_fixed

    spec = _load(args)
    checked(spec, fixed_only=True)  # train uses the fixed configuration only
    train_fixed(spec, args.out or Path("runs") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return 0


def cmd_sweep(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from hpo_cls.sweep.cluster import (
        SWEEP_OBJECT_STORE_BYTES,
        connect_ray,
        shutdown_ray,
    )
    from hpo_cls.sweep.local_cluster import resolve_address
    from hpo_cls.tracking.uri import redact_uri

    spec = _load(args)
    address = resolve_address(args.address)  # before anything imports ray
    if not args.quiet:
        print(f"checking {spec.data.root}, model sizes and {redact_uri(spec.tracking.uri)} ...", flush=True)
    started = False
    try:
        # The checks (decoding every image) and the heavy imports run while Ray's processes start:
        # seconds saved on every sweep. ray.init stays in the main thread, where it installs its signal
        # handlers.
        with ThreadPoolExecutor(max_workers=1) as pool:
            checks = pool.submit(_preflight_and_imports, spec)
            started = connect_ray(address, object_store_bytes=SWEEP_OBJECT_STORE_BYTES)
            result = checks.result()
        from hpo_cls.sweep.estimate import announce_estimate
        from hpo_cls.sweep.tuner import run_sweep

        estimate = None if args.resume or args.no_estimate else announce_estimate(spec, result, args.device_profile)
        run_sweep(spec, num_classes=len(result.summary.class_to_idx), address=address, name=args.name,
                  resume=args.resume, owns_ray=started, quiet=args.quiet, warm_start=args.warm_start,
                  estimate=estimate)
    finally:
        if started:
            shutdown_ray()
    return 0


def _preflight_and_imports(spec: SweepSpec):
    """The pre-flight checks, then the modules the sweep needs before its trials start. (mlflow is
    imported, and the store opened, by the sweep's writer thread while the first trials start.)"""
    from hpo_cls.sweep.preflight import checked

    result = checked(spec, check_tracking=True)
    from hpo_cls.data.loaders import prepare_shared_cache

    prepare_shared_cache(spec.data, spec.fixed)  # trials on this node then map the decoded images instead of decoding
    import ray.tune  # noqa: F401

    import hpo_cls.sweep.tuner  # noqa: F401
    return result


def cmd_ui(args) -> int:
    from mlflow.tracking import MlflowClient

    from hpo_cls.tracking.ui import ui_links

    base = f"http://127.0.0.1:{args.port}"
    links = ui_links(MlflowClient(args.tracking_uri), args.experiment, args.sweep, base)
    # One worker process: a UI for one person on this machine starts in seconds, not four processes' worth.
    command = ["mlflow", "ui", "--backend-store-uri", args.tracking_uri, "--host", "127.0.0.1",
               "--port", str(args.port), "--workers", "1"]
    print(f"MLflow UI on {base}  ({' '.join(command)})", *links, sep="\n", flush=True)
    os.execvp(command[0], command)
    return 0


def cmd_sweeps(args) -> int:
    from mlflow.tracking import MlflowClient

    from hpo_cls.tracking.store import list_sweeps, sweeps_table

    print(sweeps_table(list_sweeps(MlflowClient(args.tracking_uri), args.experiment)))
    return 0


def cmd_report(args) -> int:
    from mlflow.tracking import MlflowClient

    from hpo_cls.tracking.report import write_report

    path, data = write_report(MlflowClient(args.tracking_uri), args.experiment, args.sweep, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): sweep {data.sweep.sweep_id}, {len(data.trials)} "
          "trials; open it in a browser (it needs no network)")
    return 0


def cmd_promote(args) -> int:
    from hpo_cls.sweep.local_cluster import resolve_address

    address = resolve_address(args.address)  # before anything imports ray
    from hpo_cls.promote.pipeline import PromoteOptions, run_promote

    options = PromoteOptions(
        top=args.top, sweep=args.sweep, experiment=args.experiment, tracking_uri=args.tracking_uri,
        epochs=args.epochs, seeds=args.seeds, train_on_val=args.train_on_val, tta=args.tta, weighted=args.weighted,
        include_early_stopped=args.include_early_stopped, dedupe=args.dedupe, predict=args.predict, out=args.out,
        register_as=args.register_as, overrides=args.overrides, address=address, workdir=args.workdir,
        batch_size=args.batch_size, runs=args.runs, diverse=args.diverse, max_params=args.max_params,
        pareto=args.pareto, max_latency_ms=args.max_latency_ms,
    )
    run_promote(options)
    return 0


def cmd_predict(args) -> int:
    from mlflow.exceptions import MlflowException

    from hpo_cls.console import Steps
    from hpo_cls.promote.predict import predict_folder

    def progress(done: int, total: int) -> None:
        steps.add("images", f"predicting {args.dir}", total)
        steps.update("images", done)

    try:
        with Steps(unit="images", line_every=0.25) as steps:
            outcome = predict_folder(args.model_uri, args.dir, args.out, batch_size=args.batch_size,
                                     tracking_uri=args.tracking_uri, on_progress=progress)
    except MlflowException as exc:
        raise CommandError(f"{args.model_uri}: {str(exc).splitlines()[0]}") from None
    counts = ", ".join(f"{label}: {n}" for label, n in sorted(outcome.label_counts.items()))
    print(f"wrote {outcome.path}: {outcome.num_images} images in {outcome.seconds:.2f}s "
          f"({outcome.images_per_s:.1f} images/s); predicted {counts}")
    return 0


def cmd_cluster(args) -> int:
    from hpo_cls.console import say
    from hpo_cls.sweep.local_cluster import describe_state, live_cluster, start_cluster, state_path, stop_cluster

    if args.action == "up":
        if args.idle_timeout < 0:
            raise CommandError(f"{flag('idle_timeout')} must be >= 0, got {args.idle_timeout:g}")
        state, started = start_cluster(args.cpus, args.gpus, idle_timeout_s=args.idle_timeout * 60)
        say(f"{'started' if started else 'already running:'} {describe_state(state)}; sweeps and promotes "
            "without --address join it; `hpo-cls cluster down` stops it")
    elif args.action == "down":
        state = stop_cluster()
        say(f"stopped the local Ray at {state.address} (daemon PID {state.pid})" if state
            else "no hpo-cls cluster running")
    else:
        state = live_cluster()
        say(describe_state(state) if state else f"no hpo-cls cluster running (record: {state_path()})")
    return 0


def run() -> None:
    """Console entry point: :func:`main`, then exit without tearing down the imported modules.

    Everything is written and closed when ``main`` returns; the interpreter's teardown of torch, Ray and
    MLflow would only add most of a second to every command.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
