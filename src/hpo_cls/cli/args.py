"""The command line's flags: one ``_add_<command>`` parser per subcommand (argparse, declarative)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpo_cls import __version__
from hpo_cls.promote.strategies import DEFAULT_SELECT, SELECT_STRATEGIES
from hpo_cls.search import WARM_START_MEASURED

__all__ = ["build_parser", "command_parsers", "number"]


def _add_spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="sweep spec (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a spec value, e.g. --set budget.num_samples=4 (repeatable)")


def _add_tracking_arg(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    help_text = f"MLflow tracking URI (default: {default or 'the spec' + chr(39) + 's tracking.uri'})"
    parser.add_argument("--tracking-uri", default=default, help=help_text)


def _add_experiment_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="hpo-cls", help="MLflow experiment (default: %(default)s)")


def _add_out_args(parser: argparse.ArgumentParser, default: str, kind: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(default), help=f"{kind} (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help=f"overwrite an --out file that is a {kind} hpo-cls did not write (a folder, a SQLite "
                             "database or a file of another kind is never overwritten)")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors (which quote the flags given) are one ``error:`` line, without a
    URI's secrets and cut to length. Subcommands' parsers are of the same class (argparse's default)."""

    def error(self, message: str):
        from hpo_cls.errors import cut_line
        from hpo_cls.tracking.uri import redact_text

        self.exit(2, f"error: {cut_line(redact_text(message))} (see {self.prog} --help)\n")


def number(kind: type = int, *, at_least: float | None = None, above: float | None = None,
           at_most: float | None = None):
    """An argparse ``type`` for a numeric flag: ``kind`` (int or float), finite (nan and inf refused, and
    ``1e999``), within the bounds; so every numeric flag is range-checked where it is parsed."""
    import math

    bounds = ", ".join(text for text in (at_least is not None and f">= {at_least:g}", above is not None and
                                         f"> {above:g}", at_most is not None and f"<= {at_most:g}") if text)

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got "
                                             f"{text[:40]!r}") from None
        if not math.isfinite(value) or (at_least is not None and value < at_least) or \
                (above is not None and value <= above) or (at_most is not None and value > at_most):
            raise argparse.ArgumentTypeError(f"expected a finite number {bounds}, got {text[:40]}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_COUNT = number(int, at_least=1)


def _sweep_name(text: str) -> str:
    """``--name``: the sweep id, a folder name under ``storage_path`` (spec.validate.name_problem)."""
    from hpo_cls.spec.validate import name_problem

    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def build_parser() -> argparse.ArgumentParser:
    return _build_parsers()[0]


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser by name, in ``--help`` order (the command reference is built from them)."""
    return dict(_build_parsers()[1].choices)


def _build_parsers():
    parser = _Parser(
        prog="hpo-cls",
        description="Hyperparameter sweeps for ResNet-family image classifiers (Ray Tune + Optuna + MLflow).",
    )
    parser.add_argument("--version", action="version", version=f"hpo-cls {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_validate, _add_train, _add_sweep, _add_ui, _add_promote, _add_predict, _add_sweeps, _add_report,
                _add_dashboard, _add_gc):
        add(commands)
    return parser, commands


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
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint (same spec and --set values)")
    again.add_argument("--force", action="store_true", help="overwrite the run already in --out")


def _add_sweep(commands) -> None:
    p = commands.add_parser("sweep", help="run a hyperparameter sweep with Ray Tune, Optuna and ASHA",
                            description="Run a sweep: Optuna proposes trials, ASHA stops weak ones, every "
                                        "trial is checkpointed each epoch and recorded in MLflow.")
    _add_spec_args(p)
    _add_tracking_arg(p)
    p.add_argument("--address", help="join a running Ray (e.g. 127.0.0.1:6379, one `ray start --head` started); "
                                     "default: a private Ray for this command, on 127.0.0.1 only")
    p.add_argument("--name", type=_sweep_name, help="sweep id (default: <spec name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (the newest, or --name)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary (no live table, no event lines)")
    p.add_argument("--no-estimate", action="store_true", help="skip the cost estimate printed before the trials")
    _add_device_profile_arg(p)
    p.add_argument("--warm-start", action="append", default=[], metavar="SWEEP_ID",
                   help="learn from the finished trials of an earlier sweep in the same MLflow store before the "
                        "first proposal, and train its best configurations first (repeatable); its benefit in "
                        "epochs is unproven: " + WARM_START_MEASURED.replace("%", "%%"))


def _add_ui(commands) -> None:
    p = commands.add_parser("ui", help="open the MLflow UI on the sweep's tracking store (127.0.0.1)",
                            description="Start `mlflow ui` bound to 127.0.0.1 on a tracking store, and print the "
                                        "URLs of the sweep's runs (model-training view, best first), its parent run and, once "
                                        "promoted, its registered model version.")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    p.add_argument("--port", type=number(int, at_least=1, at_most=65535), default=5000)
    _add_experiment_arg(p)
    p.add_argument("--sweep", help="sweep id or spec name whose runs to open (default: the newest sweep)")


def _add_sweeps(commands) -> None:
    p = commands.add_parser("sweeps", help="list the sweeps in a tracking store, newest first",
                            description="One line per sweep of the experiment, newest first: id, spec, start, "
                                        "duration, trials by status, best score, the best trial's id and "
                                        "backbone, the parent run id, and the registered model and version of "
                                        "each promotion.")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    _add_experiment_arg(p)


def _add_report(commands) -> None:
    p = commands.add_parser("report", help="write a sweep's interactive HTML report (opens offline)",
                            description="Read a sweep from MLflow and write one self-contained HTML page: parallel "
                                        "coordinates, learning curves, parameter importances (completed trials), "
                                        "accuracy against cost (Pareto), val_acc over time, per-class F1 of the "
                                        "best trials, and the top trials (baseline marked) with their MLflow "
                                        "links and the promote command.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP", help="sweep id or spec name (default: the newest sweep)")
    _add_out_args(p, "report.html", "HTML report")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    _add_experiment_arg(p)
    p.add_argument("--ui-url", type=_http_url, metavar="URL",
                   help="where the report's MLflow links point (default: the tracking server itself, or "
                        "http://127.0.0.1:5000 where `hpo-cls ui` serves a local store)")


def _http_url(text: str) -> str:
    """An http(s) address with a host: where a browser can open the MLflow UI."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) address like http://host:5000, got {text!r}")
    return text.rstrip("/")


def _add_promote(commands) -> None:
    # One flag per PromoteOptions field, in the same order; argparse's declarative list is long by nature.
    p = commands.add_parser("promote", help="retrain a sweep's top runs, ensemble, register and predict",
                            description="Pick the top runs of a sweep from MLflow, retrain each from scratch for "
                                        "the full budget as Ray tasks, ensemble them (mean softmax), evaluate, "
                                        "register the ensemble (alias champion) and write prediction.csv.")
    p.add_argument("--top", type=_COUNT, metavar="K",
                   help="number of runs to promote (or name them with --runs); with --select greedy, the most "
                        "distinct members. Early-stopped runs fill the places completed runs cannot")
    p.add_argument("--sweep", action="append",
                   help="sweep id or spec name (newest sweep of that name), repeatable to pool several sweeps; "
                        "default: the newest sweep")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_ID",
                   help="promote exactly these trial runs (MLflow run ids, from any sweeps in the store)")
    p.add_argument("--diverse", metavar="KEY",
                   help="take the best run of each distinct value of KEY first (e.g. backbone), then fill up to --top")
    p.add_argument("--max-params", type=number(float, at_least=1), metavar="N",
                   help="parameter budget, e.g. 15e6: of the whole ensemble (default: the sweep's max_params, "
                        "100,000,000); with --pareto, of each member picked from the front")
    _add_experiment_arg(p)
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    p.add_argument("--epochs", type=_COUNT, help="epochs per retrain (default: the sweep's epoch budget)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain every member, even one whose completed trial already trained it (same "
                        "configuration, seed, epochs and data: by default its last-epoch checkpoint is taken)")
    p.add_argument("--seeds", type=_COUNT, default=1, metavar="S", help="members per run: seed, seed+1, ... (default: 1)")
    p.add_argument("--train-on-val", action="store_true",
                   help="retrain on train+val (val numbers are then not held out)")
    p.add_argument("--tta", action="store_true", help="average each member over the image and its horizontal flip")
    p.add_argument("--weighted", action="store_true", help="weight members by their sweep validation score")
    p.add_argument("--include-early-stopped", action="store_true", help="also consider runs ASHA stopped early")
    p.add_argument("--dedupe", action="store_true",
                   help="skip runs whose config is near-identical to a better one (numbers within 5%%)")
    p.add_argument("--predict", type=Path, metavar="DIR",
                   help="images to predict (default: <data root>/test if present)")
    _add_out_args(p, "prediction.csv", "prediction CSV")
    p.add_argument("--register-as", metavar="NAME", help="registered model name (default: <spec name>-ensemble)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override data.*, resources.* or fixed.* for the retrains, e.g. --set data.root=/data "
                        "(repeatable)")
    p.add_argument("--workdir", type=Path, help="member checkpoints; rerun with the same folder to resume "
                                                "(default: promote_runs/<sweep id>)")
    p.add_argument("--batch-size", type=_COUNT, default=64, help="evaluation and prediction batch size (default: 64)")
    p.add_argument("--address", help="join a running Ray (e.g. 127.0.0.1:6379); default: a private Ray for this "
                                     "command, on 127.0.0.1 only")
    _add_pareto_args(p)
    p.add_argument("--select", choices=SELECT_STRATEGIES, default=DEFAULT_SELECT,
                   help="how members are chosen, on the selection half of val from the trials' logged predictions "
                        "(the other half is held out for the figures): topk, the K best runs; greedy, ensemble "
                        "selection with replacement over every finished run, weights = times chosen, members "
                        "taken as trained (default: %(default)s)")


def _add_pareto_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pareto", action="store_true",
                   help="pick the K most accurate members of the sweep's Pareto front (accuracy vs cost)")
    p.add_argument("--max-latency-ms", type=number(float, above=0), metavar="MS",
                   help="with --pareto: only runs whose batch-1 inference latency is at most MS milliseconds; "
                        "with --select greedy: the members' latencies summed")


def _add_predict(commands) -> None:
    p = commands.add_parser("predict", help="predict a folder of images with a registered model (no Ray needed)",
                            description="Load an MLflow model (e.g. models:/quickstart-ensemble@champion) and write "
                                        "image_name,pred_label rows for every image in DIR.")
    p.add_argument("model_uri", metavar="MODEL_URI", help="e.g. models:/quickstart-ensemble@champion")
    p.add_argument("dir", type=Path, metavar="DIR", help="folder of images")
    _add_out_args(p, "prediction.csv", "prediction CSV")
    p.add_argument("--batch-size", type=_COUNT, default=64, help="images per forward pass (default: 64)")
    _add_tracking_arg(p, "sqlite:///mlflow.db")



def _add_dashboard(commands) -> None:
    p = commands.add_parser("dashboard", help="serve optuna-dashboard on a sweep's Optuna study (127.0.0.1)",
                            description="Serve optuna-dashboard (history, importances, parallel coordinates, "
                                        "Pareto front, each trial) on the sweep's Optuna study, while the sweep "
                                        "runs and after. The study must be stored: search.storage tracking or an "
                                        "RDB URL.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP", help="sweep id or spec name (default: the newest sweep)")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    _add_experiment_arg(p)
    p.add_argument("--storage", metavar="URL",
                   help="the study's RDB URL, when the sweep recorded it without its password (default: the "
                        "sweep's search.storage)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only; 0.0.0.0 shows the study to "
                        "the network, without a login)")
    p.add_argument("--port", type=number(int, at_least=1, at_most=65535), default=8080,
                   help="port (default: %(default)s)")


def _add_gc(commands) -> None:
    p = commands.add_parser("gc", help="delete the trial checkpoints of sweeps that no registered model uses",
                            description="Delete the checkpoint/model.pt artifacts of a sweep's trial runs, except "
                                        "those of runs a registered model version was built from (their "
                                        "metrics, evaluation and validation predictions stay). --dry-run lists "
                                        "what would go, with sizes.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP",
                   help="sweep id or spec name (default: every sweep of the experiment)")
    _add_tracking_arg(p, "sqlite:///mlflow.db")
    _add_experiment_arg(p)
    p.add_argument("--dry-run", action="store_true", help="list the checkpoints and their sizes; delete nothing")
