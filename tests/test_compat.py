"""hpo_cls.compat: the one home of private names of dependencies. Each use works without its name (the public
fallback), HPO_CLS_COMPAT=off takes every fallback, and nothing outside compat names a private attribute."""

from __future__ import annotations

import ast
import builtins
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs
import pytest

from hpo_cls import compat

REPO = Path(__file__).resolve().parents[1]
WATCHED = {"ray", "mlflow", "optuna", "torch", "torchvision", "ctypes"}  # packages whose private names stay in compat
BANNED_NAMES = {"ctypes", "mallopt", "__mixins__"}  # the C library, and Tune's hook, however they are reached
# namedtuple's documented methods carry an underscore only to keep clear of field names (urlsplit's result).
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
PUBLIC_DUNDERS = {"__version__", "__name__", "__file__", "__doc__", "__dict__", "__class__", "__qualname__",
                  "__module__", "__wrapped__", "__path__"}
PRIVATE_STRING = ".".join(["ray", "_private"])  # written split so this file's own scan stays clean


# -- the scan ------------------------------------------------------------------------------------------------


def _is_private(name: str) -> bool:
    return name.startswith("_") and name not in PUBLIC_DUNDERS and name not in PUBLIC_UNDERSCORED


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _defined_private_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Every ``_name`` our own code defines: functions, classes, attributes assigned, module globals."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {name for name in names if name.startswith("_")}


def _bindings(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """``(names bound to a watched package or something imported from one, names imported from anything
    else, classes subclassing something watched)``."""
    bound, other = set(WATCHED), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                (bound if alias.name.split(".")[0] in WATCHED else other).add(name)
        elif isinstance(node, ast.ImportFrom):
            names = {alias.asname or alias.name for alias in node.names}
            watched = bool(node.module) and node.module.split(".")[0] in WATCHED
            (bound if watched else other).update(names)
    subclasses = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                  and any((_dotted(base) or [""])[0] in bound for base in node.bases)}
    return bound, other - bound, subclasses


def private_uses(path: Path, tree: ast.Module, ours: set[str]) -> list[str]:
    """``file:line: what`` for every private name of a watched package that ``tree`` uses."""
    where = path.relative_to(REPO)
    found = []
    bound, other, subclasses = _bindings(tree)
    not_theirs = other | set(dir(builtins)) | {"self", "cls"}  # receivers that are no dependency's object

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in BANNED_NAMES or (parts[0] in WATCHED and any(map(_is_private, parts[1:]))):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] in WATCHED and (any(map(_is_private, parts[1:]))
                                        or any(_is_private(a.name) for a in node.names)):
                report(node, f"from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Attribute):
            chain = _dotted(node)
            if node.attr in BANNED_NAMES:
                report(node, ".".join(chain or ["...", node.attr]))
            elif chain and chain[0] in bound and any(map(_is_private, chain[1:])):
                if chain[-1] == node.attr:  # report each chain once, at its full length
                    report(node, ".".join(chain))
            elif (_is_private(node.attr) and not node.attr.startswith("__") and node.attr not in ours and chain
                  and chain[0] not in not_theirs and not chain[0].startswith("_")):
                report(node, ".".join(chain))  # a private name of an object we did not make
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in BANNED_NAMES or node.value.startswith(PRIVATE_STRING):
                report(node, repr(node.value))
        elif isinstance(node, ast.Name) and node.id in BANNED_NAMES - {"ctypes"}:
            report(node, node.id)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name in subclasses):
        own = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        own |= {t.id for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        own |= {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
                and (_dotted(n) or [""])[0] == "self"}
        for node in ast.walk(cls):
            if (isinstance(node, ast.Attribute) and (_dotted(node) or [""])[0] == "self" and _is_private(node.attr)
                    and node.attr not in own and not node.attr.startswith("__")):
                report(node, f"self.{node.attr} (of {cls.name}'s base class)")
    return found


def _sources() -> dict[Path, ast.Module]:
    paths = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "trainables").rglob("*.py")])
    return {path: ast.parse(path.read_text(), str(path)) for path in paths}


def test_nothing_outside_compat_names_a_private_attribute_of_a_dependency():
    trees = _sources()
    compat_file = REPO / "src" / "hpo_cls" / "compat.py"
    ours = _defined_private_names({path: tree for path, tree in trees.items() if path != compat_file})
    found = sorted(use for path, tree in trees.items() if path != compat_file for use in private_uses(path, tree, ours))
    assert not found, "private names of dependencies outside hpo_cls/compat.py:\n" + "\n".join(found)


@pytest.mark.parametrize("code, flagged", [
    ("import ray\nray._private.worker.x", True),
    ("from ray._private import ray_constants", True),
    ("from ray.train._internal import storage", True),
    ("import torch\ntorch._C._cuda_clearCublasWorkspaces()", True),
    ("import ctypes", True),
    ("def f(t):\n    t.__mixins__ = ()", True),
    ("f = lambda lib: lib.mallopt(1, 2)", True),
    ("import logging\nlogging.getLogger('ray._private.x')", True),
    ("def f(tuner):\n    return tuner._local_tuner", True),
    ("from ray.tune.search.optuna import OptunaSearch\nclass S(OptunaSearch):\n    def f(self):\n"
     "        return self._ot_study", True),
    ("from ray.tune.search.optuna import OptunaSearch\nclass S(OptunaSearch):\n    def __init__(self):\n"
     "        self._mine = 1\n    def f(self):\n        return self._mine", False),
    ("import torch\ntorch.__version__", False),
    ("import os\nos._exit(0)", False),
    ("class A:\n    def _g(self): ...\ndef f(a):\n    return a._g()", False),
])
def test_the_scan_finds_what_it_is_meant_to(tmp_path, code, flagged):
    path = REPO / "src" / "example.py"  # only named in the report, never written
    tree = ast.parse(code)
    assert bool(private_uses(path, tree, _defined_private_names({path: tree}))) is flagged


# -- the switch ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, on", [(None, True), ("on", True), ("off", False), ("OFF", False), ("0", False)])
def test_the_switch_is_read_at_every_call(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(compat.COMPAT_ENV, raising=False)
    else:
        monkeypatch.setenv(compat.COMPAT_ENV, value)
    assert compat.enabled() is on


# -- each use, without its name --------------------------------------------------------------------------------


def test_loopback_sets_rays_switch_and_its_constant_and_restores_both(monkeypatch):
    from ray._private import ray_constants

    monkeypatch.setenv(compat.RAY_CLUSTER_SWITCH, "1")
    before = ray_constants.ENABLE_RAY_CLUSTER
    with compat.loopback_only():
        assert os.environ[compat.RAY_CLUSTER_SWITCH] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    assert os.environ[compat.RAY_CLUSTER_SWITCH] == "1" and ray_constants.ENABLE_RAY_CLUSTER is before


@pytest.mark.parametrize("removed", ["name", "switch off"])
def test_loopback_without_rays_constant_sets_the_public_switch_only(monkeypatch, removed):
    from ray._private import ray_constants

    if removed == "name":
        monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
    else:
        monkeypatch.setenv(compat.COMPAT_ENV, "off")
    monkeypatch.delenv(compat.RAY_CLUSTER_SWITCH, raising=False)
    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", "absent")
    with compat.loopback_only():
        assert os.environ[compat.RAY_CLUSTER_SWITCH] == "0"
        assert getattr(ray_constants, "ENABLE_RAY_CLUSTER", "absent") == before
    assert compat.RAY_CLUSTER_SWITCH not in os.environ


@pytest.mark.ray
def test_with_compat_off_a_private_ray_still_listens_on_loopback_only():
    """The public switch, set before the command imports Ray, is enough: no private constant is written."""
    code = ("import sys; from hpo_cls.sweep.cluster import before_importing_ray, connect_ray, shutdown_ray\n"
            "before_importing_ray(None)\nimport ray, psutil\nfrom ray._private import ray_constants\n"
            "assert ray_constants.ENABLE_RAY_CLUSTER is False, 'read from the switch at import'\n"
            "connect_ray(None, 80 * 2**20)\n"
            "me = psutil.Process()\n"
            "open_ = [c.laddr.ip for p in me.children(recursive=True) for c in p.net_connections('inet')\n"
            "         if c.status == psutil.CONN_LISTEN]\n"
            "print(ray.get_runtime_context().gcs_address.split(':')[0], *sorted(set(open_)))\nshutdown_ray()\n")
    env = {**os.environ, compat.COMPAT_ENV: "off"}
    env.pop(compat.RAY_CLUSTER_SWITCH, None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    address, *listening = result.stdout.split()
    assert address == "127.0.0.1" and listening and set(listening) <= {"127.0.0.1", "::ffff:127.0.0.1"}, result.stdout


@pytest.mark.parametrize("compat_on", [True, False])
def test_the_auth_notice_is_quieted_only_with_compat(monkeypatch, compat_on):
    name = PRIVATE_STRING + ".authentication.authentication_token_setup"
    monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setenv(compat.COMPAT_ENV, "on" if compat_on else "off")
    compat.quiet_ray_auth_notice()
    assert logging.getLogger(name).level == (logging.ERROR if compat_on else logging.NOTSET)


def _checkpoint(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights" * 1000)
    (folder / "sub" / "evaluation.json").write_text("{}")
    return folder


def _persist(source: Path, destination: Path) -> None:
    """What Tune's report does with a checkpoint folder: its copy function, looked up at call time."""
    from ray.train._internal import storage

    local = pyarrow.fs.LocalFileSystem()
    storage._pyarrow_fs_copy_files(str(source), str(destination), source_filesystem=local,
                                   destination_filesystem=local)


def test_a_reported_checkpoint_is_linked_not_copied_and_rays_copy_is_back_after(tmp_path):
    from ray.train._internal import storage

    original = storage._pyarrow_fs_copy_files
    source, destination = _checkpoint(tmp_path / "tmp_ckpt"), tmp_path / "experiment" / "checkpoint_000000"
    with compat.checkpoints_linked() as linked:
        _persist(source, destination)
    assert linked and storage._pyarrow_fs_copy_files is original
    for name in ("model.pt", "sub/evaluation.json"):
        assert os.path.samefile(source / name, destination / name)


@pytest.mark.parametrize("removed", ["name", "switch off"])
def test_without_rays_copy_function_the_checkpoint_is_copied_as_ray_does(tmp_path, monkeypatch, removed):
    from ray.train._internal import storage

    original = storage._pyarrow_fs_copy_files
    if removed == "name":
        monkeypatch.delattr(storage, "_pyarrow_fs_copy_files")
    else:
        monkeypatch.setenv(compat.COMPAT_ENV, "off")
    source, destination = _checkpoint(tmp_path / "tmp_ckpt"), tmp_path / "experiment" / "checkpoint_000000"
    with compat.checkpoints_linked() as linked:
        assert not linked
        monkeypatch.setattr(storage, "_pyarrow_fs_copy_files", original, raising=False)  # Ray copies on
        _persist(source, destination)
    assert (destination / "model.pt").read_bytes() == b"weights" * 1000
    assert not os.path.samefile(source / "model.pt", destination / "model.pt")


def test_without_hard_links_rays_copy_overwrites_what_was_linked(tmp_path, monkeypatch):
    source, destination = _checkpoint(tmp_path / "tmp_ckpt"), tmp_path / "experiment" / "checkpoint_000000"
    real_link = os.link

    def no_links(src, dst):  # the first file links, the second cannot (as across devices)
        if "evaluation" in str(src):
            raise OSError(18, "Invalid cross-device link")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", no_links)
    with compat.checkpoints_linked():
        _persist(source, destination)
    (source / "model.pt").write_bytes(b"changed")  # Tune deletes its temporary folder; a link would follow
    assert (destination / "model.pt").read_bytes() == b"weights" * 1000
    assert (destination / "sub" / "evaluation.json").read_text() == "{}"


def test_link_tree_replaces_an_existing_file_and_linking_onto_itself_is_harmless(tmp_path):
    source, destination = _checkpoint(tmp_path / "a"), tmp_path / "b"
    destination.mkdir()
    (destination / "model.pt").write_bytes(b"old")
    compat.link_tree(source, destination)
    assert (destination / "model.pt").read_bytes() == b"weights" * 1000
    compat.link_tree(source, source)
    assert (source / "model.pt").read_bytes() == b"weights" * 1000


def test_tune_makes_the_mixin_part_of_the_trainables_class():
    from ray.tune.trainable.function_trainable import wrap_function

    from hpo_cls.sweep.reuse import FreshWorkerOnFailedReset, reusable_trainable

    def trainable(config):
        return None

    wrapped, reuse_actors = reusable_trainable(trainable)
    assert reuse_actors and issubclass(wrap_function(wrapped), FreshWorkerOnFailedReset)


@pytest.mark.parametrize("removed", ["hook ignored", "wrapper moved", "switch off"])
def test_without_tunes_mixin_hook_trials_run_in_fresh_workers(monkeypatch, removed):
    """No reuse, so no reset that could lose a trial: every trial starts its own worker (slower, never wrong)."""
    from ray.tune.trainable import function_trainable

    from hpo_cls.sweep.reuse import reusable_trainable

    if removed == "hook ignored":  # a Tune whose function API no longer reads __mixins__
        monkeypatch.setattr(function_trainable, "wrap_function",
                            lambda func, name=None: type("Plain", (function_trainable.FunctionTrainable,), {}))
    elif removed == "wrapper moved":
        monkeypatch.delattr(function_trainable, "wrap_function")
    else:
        monkeypatch.setenv(compat.COMPAT_ENV, "off")

    def trainable(config):
        return None

    assert reusable_trainable(trainable) == (trainable, False)


@pytest.mark.parametrize("removed", [None, "name", "switch off"])
def test_cuda_memory_goes_back_with_or_without_torchs_workspace_call(monkeypatch, removed):
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: calls.append("workspaces"), raising=False)
    if removed == "name":
        monkeypatch.delattr(torch._C, "_cuda_clearCublasWorkspaces")
    elif removed == "switch off":
        monkeypatch.setenv(compat.COMPAT_ENV, "off")
    compat.release_cuda_memory(torch)
    assert calls == (["workspaces", "empty_cache"] if removed is None else ["empty_cache"])


# -- all of them off, end to end --------------------------------------------------------------------------------


@pytest.mark.ray
def test_a_quickstart_like_sweep_and_promote_run_with_compat_off(tmp_path):
    """Public APIs only, in every process (the trials' inherit the variable): trials run in fresh workers and
    checkpoints are copied, and the sweep records every trial and promote registers its ensemble as always."""
    from sweep_helpers import hpo_cls, sweep_runs, write_quickstart_like_spec

    spec = write_quickstart_like_spec(tmp_path)
    env = {**os.environ, compat.COMPAT_ENV: "off"}
    sweep = hpo_cls("sweep", str(spec), "--name", "off", "--quiet", cwd=tmp_path, env=env)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, parents, children = sweep_runs(uri, "tests")
    assert len(parents) == 1 and len(children) == 4
    assert {run.data.tags["hpo_cls.status"] for run in children} <= {"completed", "early_stopped"}
    results = [json.loads(line) for path in (tmp_path / "ray_results" / "off").glob("*/result.json")
               for line in path.read_text().splitlines()]
    assert len({row["pid"] for row in results}) == 4, "no worker process was reused"

    promote = hpo_cls("promote", "--top", "2", "--epochs", "1", "--retrain", "--sweep", "off", "--experiment",
                      "tests", "--tracking-uri", uri, "--workdir", str(tmp_path / "work"), cwd=tmp_path, env=env)
    assert promote.returncode == 0, promote.stdout[-2000:] + promote.stderr[-3000:]
    assert "registered tiny-ensemble version 1 with alias @champion" in promote.stdout
