"""One handler per subcommand: flags in, library calls out. The work lives in the packages
(``train.standalone``, ``sweep.tuner``, ``promote.pipeline``, ``promote.predict``, ``tracking.report``, ...)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hpo_cls.errors import CommandError, SpecError, SweepStopped
from hpo_cls.spec import SweepSpec, load_spec

__all__ = ["HANDLERS"]


def _load(args) -> SweepSpec:
    spec = load_spec(args.spec, args.overrides)
    if getattr(args, "tracking_uri", None):
        import dataclasses

        spec = dataclasses.replace(spec, tracking=dataclasses.replace(spec.tracking, uri=args.tracking_uri))
    return spec


def cmd_validate(args) -> int:
    from hpo_cls.search.optuna_space import describe_space
    from hpo_cls.spec.baseline import fixed_and_searched_notes
    from hpo_cls.console import warn
    from hpo_cls.sweep.preflight import check_pretrained_weights, deferred_problems, run_preflight

    spec = _load(args)
    print(f"spec {args.spec}: name {spec.name!r}, data {spec.data.root}")
    result = run_preflight(spec, scan_images=not args.no_scan)
    result.problems.extend(deferred_problems(spec))
    for line in check_pretrained_weights(spec):
        warn(line)
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
    train_fixed(spec, args.out or Path("runs") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                resume=args.resume, force=args.force)
    return 0


def cmd_sweep(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from hpo_cls.sweep.cluster import SWEEP_OBJECT_STORE_BYTES, before_importing_ray, connect_ray, shutdown_ray
    from hpo_cls.tracking.uri import redact_uri

    spec = _load(args)
    address = args.address
    before_importing_ray(address)
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
    except SweepStopped as stopped:
        raise CommandError(f"sweep {stopped.sweep_id} was stopped ({stopped.signal_name}) before its trials ended; "
                           f"continue it with: {_resume_command(args, stopped.sweep_id)}") from None
    finally:
        if started:
            shutdown_ray()
    return 0


def _resume_command(args, sweep_id: str) -> str:
    """The ``hpo-cls sweep`` command that continues sweep ``sweep_id`` as ``args`` started it."""
    import shlex

    from hpo_cls.tracking.uri import redact_uri

    words = ["hpo-cls", "sweep", str(args.spec), "--name", sweep_id, "--resume"]
    words += [word for override in args.overrides for word in ("--set", override)]
    if args.tracking_uri:
        words += ["--tracking-uri", redact_uri(args.tracking_uri)]
    if args.address:
        words += ["--address", args.address]
    words += ["--quiet"] if args.quiet else []
    return shlex.join(words)


def _preflight_and_imports(spec: SweepSpec):
    """The pre-flight checks, then the modules the sweep needs before its trials start. (mlflow is
    imported, and the store opened, by the sweep's writer thread while the first trials start.)"""
    from hpo_cls.sweep.preflight import checked

    result = checked(spec, check_tracking=True)
    import ray.tune  # noqa: F401

    import hpo_cls.sweep.tuner  # noqa: F401
    return result


def _client(tracking_uri: str):
    """An MlflowClient on a store that passed the tracking pre-flight: an unreachable server, a file that is no
    database, a locked one, is an error line within seconds (MLflow itself retries a server for minutes)."""
    from hpo_cls.errors import TrackingError
    from hpo_cls.sweep.preflight import check_tracking_uri

    problem = check_tracking_uri(tracking_uri)
    if problem:
        raise TrackingError(problem)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _mlflow_command() -> list[str]:
    """``mlflow`` on PATH, else this interpreter's ``python -m mlflow`` (a venv used without activating it)."""
    import shutil
    import sys

    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def cmd_ui(args) -> int:
    from hpo_cls.tracking.ui import port_problem, ui_links
    from hpo_cls.tracking.uri import redact_uri

    problem = port_problem(args.port)  # else MLflow's server says so and exits 0, after the links were printed
    if problem:
        raise CommandError(f"argument --port: 127.0.0.1:{args.port} {problem}; pass --port with a free one")
    base = f"http://127.0.0.1:{args.port}"
    links = ui_links(_client(args.tracking_uri), args.experiment, args.sweep, base)
    # One worker process: a UI for one person on this machine starts in seconds, not four processes' worth.
    # The store URI goes by environment, not argv: a password in it would show in `ps` to every user.
    command = [*_mlflow_command(), "ui", "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    shown = f"MLFLOW_BACKEND_STORE_URI={redact_uri(args.tracking_uri)} mlflow ui {' '.join(command[-6:])}"
    print(f"MLflow UI on {base}  ({shown})", *links, sep="\n", flush=True)
    os.execvpe(command[0], command, {**os.environ, "MLFLOW_BACKEND_STORE_URI": args.tracking_uri})
    return 0


def cmd_sweeps(args) -> int:
    from hpo_cls.tracking.store import list_sweeps, sweeps_table

    print(sweeps_table(list_sweeps(_client(args.tracking_uri), args.experiment)))
    return 0


def cmd_report(args) -> int:
    from hpo_cls.outputs import REPORT_HTML, check_output_file
    from hpo_cls.tracking.report import write_report

    check_output_file(args.out, REPORT_HTML, force=args.force)
    path, data = write_report(_client(args.tracking_uri), args.experiment, args.sweep, args.out, args.ui_url)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): sweep {data.sweep.sweep_id}, {len(data.trials)} "
          "trials; open it in a browser (it needs no network)")
    return 0


def cmd_promote(args) -> int:
    from hpo_cls.outputs import PREDICTION_CSV, check_output_file
    from hpo_cls.sweep.cluster import before_importing_ray

    check_output_file(args.out, PREDICTION_CSV, force=args.force)  # before any run is read, opened or trained
    _client(args.tracking_uri)  # an unreachable server: an error line now, not minutes of retries
    before_importing_ray(args.address)
    from hpo_cls.promote.pipeline import PromoteOptions, run_promote

    options = PromoteOptions(
        top=args.top, sweep=args.sweep, experiment=args.experiment, tracking_uri=args.tracking_uri,
        epochs=args.epochs, seeds=args.seeds, train_on_val=args.train_on_val, tta=args.tta, weighted=args.weighted,
        include_early_stopped=args.include_early_stopped, dedupe=args.dedupe, predict=args.predict, out=args.out,
        register_as=args.register_as, overrides=args.overrides, address=args.address, workdir=args.workdir,
        batch_size=args.batch_size, runs=args.runs, diverse=args.diverse, max_params=args.max_params,
        pareto=args.pareto, max_latency_ms=args.max_latency_ms, retrain=args.retrain, select=args.select,
    )
    run_promote(options)
    return 0


def cmd_predict(args) -> int:
    from mlflow.exceptions import MlflowException

    from hpo_cls.console import Steps
    from hpo_cls.outputs import PREDICTION_CSV, check_output_file
    from hpo_cls.promote.predict import predict_folder

    check_output_file(args.out, PREDICTION_CSV, force=args.force)
    if args.tracking_uri:
        _client(args.tracking_uri)  # an unreachable server: an error line now, not minutes of retries

    def progress(done: int, total: int) -> None:
        steps.add("images", f"predicting {args.dir}", total)
        steps.update("images", done)

    try:
        with Steps(unit="images", line_every=0.25) as steps:
            outcome = predict_folder(args.model_uri, args.dir, args.out, batch_size=args.batch_size,
                                     tracking_uri=args.tracking_uri, force=args.force, on_progress=progress)
    except MlflowException as exc:
        raise CommandError(f"{args.model_uri}: {str(exc).splitlines()[0]}") from None
    counts = ", ".join(f"{label}: {n}" for label, n in sorted(outcome.label_counts.items()))
    print(f"wrote {outcome.path}: {outcome.num_images} images in {outcome.seconds:.2f}s "
          f"({outcome.images_per_s:.1f} images/s); predicted {counts}")
    return 0


def cmd_dashboard(args) -> int:
    from hpo_cls.console import warn
    from hpo_cls.search.dashboard import serve, study_page, sweep_study_storage
    from hpo_cls.tracking.store import find_sweep
    from hpo_cls.tracking.ui import port_problem
    from hpo_cls.tracking.uri import redact_uri

    problem = port_problem(args.port, args.host)
    if problem:
        raise CommandError(f"argument --port: {args.host}:{args.port} {problem}; pass --port with a free one")
    sweep = find_sweep(_client(args.tracking_uri), args.experiment, args.sweep)
    storage = sweep_study_storage(sweep.sweep_id, sweep.params, args.tracking_uri, args.storage)
    page = study_page(storage, sweep.sweep_id)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"the dashboard listens on {args.host}: anyone who reaches this machine can read and edit the study")
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"optuna-dashboard on sweep {sweep.sweep_id}: http://{shown}:{args.port}{page}  (study in "
          f"{redact_uri(storage)}; Ctrl+C stops it)", flush=True)
    serve(storage, args.host, args.port)
    return 0


def cmd_gc(args) -> int:
    from hpo_cls.tracking.checkpoints import collect_garbage

    collect_garbage(_client(args.tracking_uri), args.experiment, args.sweep, dry_run=args.dry_run)
    return 0


HANDLERS = {"validate": cmd_validate, "train": cmd_train, "sweep": cmd_sweep, "ui": cmd_ui, "promote": cmd_promote,
            "predict": cmd_predict, "sweeps": cmd_sweeps, "report": cmd_report, "dashboard": cmd_dashboard,
            "gc": cmd_gc}
