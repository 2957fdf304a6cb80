"""Hostile spec files (issue 15): each one is refused with one ``error:`` line naming the file or key, in
bounded time and memory, never a traceback, a hang or a silently wrong result."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sweep_helpers import make_images

from hpo_cls.cli import main
from hpo_cls.spec import load_spec

GOOD = """\
name: good
data: {root: DATA, image_size: 16, workers: 0}
budget: {epochs: 2, num_samples: 2, max_concurrent: 1}
search:
  space:
    lr: {loguniform: [0.001, 0.1]}
fixed: {backbone: resnet18}
"""


def _billion_laughs(levels: int = 11, fan_out: int = 10) -> str:
    """``a0`` is a string; each ``a{i}`` a list of ``fan_out`` aliases of ``a{i-1}``: 10**10 strings expanded."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan_out)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("hostile-specs") / "data", train=2, val=1)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _validate(tmp_path, capsys, text: str | bytes, *extra: str, name: str = "spec.yaml") -> str:
    spec = tmp_path / name
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["validate", str(spec), *extra]) == 2
    return _one_error_line(capsys)


# ---------------------------------------------------------------------------------------------
# 1. YAML alias bombs: refused before anything expands them


ALIAS_BOMBS = {
    "billion-laughs": _billion_laughs(),
    "billion-laughs-beside-a-good-spec": GOOD + _billion_laughs(),
    "wide-not-deep": "a: &a [" + ", ".join(["x"] * 400) + "]\nb: [" + ", ".join(["*a"] * 400) + "]\n",
    "recursive-alias": "name: &n [*n]\n",
    "recursive-mapping": "data: &d {root: *d}\n",
}


def _run_cli_bounded(args: list[str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    """The CLI in a child with 4 GB of address space at most, so a bomb that went off cannot take the machine."""

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "hpo_cls.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, preexec_fn=limit, env=env)


def _bounded_error_line(args: list[str], spec: Path) -> str:
    result = _run_cli_bounded(args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}: "), result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("command", ["validate", "train", "sweep"])
def test_billion_laughs_is_refused_in_bounded_time(tmp_path, command):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_billion_laughs())
    assert spec.stat().st_size < 700
    assert "alias" in _bounded_error_line([command, str(spec)], spec)


@pytest.mark.parametrize("text", list(ALIAS_BOMBS.values()), ids=list(ALIAS_BOMBS))
def test_alias_bombs_name_the_file(tmp_path, text):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert "alias" in _bounded_error_line(["validate", str(spec)], spec)


def test_alias_bomb_in_a_set_override_is_refused(tmp_path, data_root, capsys):
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]  # each level: ten aliases of the one before, 10**6 in all
    for i in range(1, 6):
        levels.append(f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    text = GOOD.replace("DATA", str(data_root))
    line = _validate(tmp_path, capsys, text, "--set", "fixed.head_hidden=[" + ", ".join(levels) + "]")
    assert "--set" in line and "alias" in line and len(line) < 300


def test_ordinary_aliases_still_work(tmp_path, data_root):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)).replace(
        "    lr: {loguniform: [0.001, 0.1]}\n",
        "    lr: &rate {loguniform: [0.001, 0.1]}\n    weight_decay: *rate\n"))
    loaded = load_spec(spec)
    assert [p.name for p in loaded.search.space] == ["lr", "weight_decay"]


def test_deeply_nested_yaml_is_one_line(tmp_path, capsys):
    line = _validate(tmp_path, capsys, "name: " + "[" * 20000 + "]" * 20000 + "\n")
    assert str(tmp_path / "spec.yaml") in line


# ---------------------------------------------------------------------------------------------
# 2. files that are not UTF-8 text


NOT_TEXT = {
    "random-bytes": bytes(range(256)) * 4,
    "latin-1": "name: caf\xe9\n".encode("latin-1"),
    "png-header": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "nul-bytes-in-utf8": b"name: x\x00y\n",
    "utf16-without-bom": "name: good\n".encode("utf-16-le"),
}


@pytest.mark.parametrize("data", list(NOT_TEXT.values()), ids=list(NOT_TEXT))
def test_binary_spec_file_is_one_line_naming_it(tmp_path, capsys, data):
    line = _validate(tmp_path, capsys, data)
    assert line.startswith(f"error: {tmp_path / 'spec.yaml'}: ")


# ---------------------------------------------------------------------------------------------
# 3. a metric that is not a scalar


NON_SCALAR_METRICS = [
    ("file-list", "metric: [val_acc, val_loss]\n", [], "metric: "),
    ("file-mapping", "metric: {val_acc: 1}\n", [], "metric: "),
    ("set-list", "", ["--set", "metric=[val_acc,val_loss]"], "metric: "),
    ("set-mapping", "", ["--set", "metric={a: b}"], "metric: "),
    ("objective-list", "objectives: [{metric: [val_acc], mode: max}]\n", [], "objectives[0].metric: "),
    ("objective-mode-list", "objectives: [{metric: val_acc, mode: [max]}]\n", [], "objectives[0].mode: "),
    ("constraint-key-list", "constraints: {[a, b]: {max: 1}}\n", [], "invalid YAML: line 8"),
    ("mode-list", "mode: [max]\n", [], "mode: "),
]


@pytest.mark.parametrize("text, extra, expected", [c[1:] for c in NON_SCALAR_METRICS],
                         ids=[c[0] for c in NON_SCALAR_METRICS])
def test_non_scalar_metric_names_the_key(tmp_path, data_root, capsys, text, extra, expected):
    line = _validate(tmp_path, capsys, GOOD.replace("DATA", str(data_root)) + text, *extra)
    assert expected in line, line


# ---------------------------------------------------------------------------------------------
# 4. a condition on a parameter searched later


FORWARD = [
    ("later-parameter", "    cutmix_alpha: {uniform: [0.5, 1.0], when: {mix: cutmix}}\n"
                        "    mix: {choice: [none, cutmix]}\n", "search.space.cutmix_alpha.when.mix"),
    ("cycle", "    mix: {choice: [none, cutmix], when: {optimizer: sgd}}\n"
              "    optimizer: {choice: [sgd, adamw], when: {mix: none}}\n", "search.space.mix.when.optimizer"),
    ("alternative-list", "    lr: [{loguniform: [0.01, 0.1], when: {optimizer: sgd}},"
                         " {loguniform: [0.0001, 0.001], when: {optimizer: adamw}}]\n"
                         "    optimizer: {choice: [sgd, adamw]}\n", "search.space.lr[0].when.optimizer"),
]


@pytest.mark.parametrize("space, expected", [c[1:] for c in FORWARD], ids=[c[0] for c in FORWARD])
def test_condition_on_a_later_parameter_is_refused(tmp_path, data_root, capsys, space, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)).replace("    lr: {loguniform: [0.001, 0.1]}\n", space))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]  # one per alternative that names optimizer
    assert lines and all(line.startswith("error: ") and "listed after" in line for line in lines), err
    assert expected in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# 5. values that pass a type check but make no sense


NONSENSE = [
    ("search-zero", GOOD.replace("search:\n  space:\n    lr: {loguniform: [0.001, 0.1]}\n", "search: 0\n"), "search: "),
    ("search-false", GOOD.replace("search:\n  space:\n    lr: {loguniform: [0.001, 0.1]}\n", "search: false\n"),
     "search: "),
    ("search-empty-string", GOOD.replace("search:\n  space:\n    lr: {loguniform: [0.001, 0.1]}\n", "search: ''\n"),
     "search: "),
    ("search-empty-list", GOOD.replace("search:\n  space:\n    lr: {loguniform: [0.001, 0.1]}\n", "search: []\n"),
     "search: "),
    ("epochs-1e30", GOOD.replace("epochs: 2", "epochs: 1e30"), "budget.epochs: must be <="),
    ("num-samples-1e12", GOOD.replace("num_samples: 2", "num_samples: 1e12"), "budget.num_samples: must be <="),
    ("max-concurrent-1e9", GOOD.replace("max_concurrent: 1", "max_concurrent: 1000000000"),
     "budget.max_concurrent: must be <="),
    ("image-size-100000", GOOD.replace("image_size: 16", "image_size: 100000"), "data.image_size: must be <= 2048"),
    ("image-size-4", GOOD.replace("image_size: 16", "image_size: 4"), "data.image_size: must be >= 8"),
    ("batch-size-1e9", GOOD.replace("backbone: resnet18", "batch_size: 1000000000"), "fixed.batch_size: must be <="),
    ("grace-1e30", GOOD + "scheduler: {grace_period: 1e30}\n", "scheduler.grace_period: must be <="),
    ("workers-1e6", GOOD.replace("workers: 0", "workers: 1000000"), "data.workers: must be <="),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in NONSENSE], ids=[c[0] for c in NONSENSE])
def test_nonsense_values_are_refused(tmp_path, data_root, capsys, text, expected):
    line = _validate(tmp_path, capsys, text.replace("DATA", str(data_root)))
    assert expected in line, line


# ---------------------------------------------------------------------------------------------
# 6. data.root relative to the spec file, whatever the file's name


@pytest.mark.parametrize("name", ["spec.YAML", "spec.Yml", "spec", "spec.txt", ".spec"])
def test_relative_data_root_is_relative_to_the_spec_file(tmp_path, monkeypatch, name):
    make_images(tmp_path / "specs" / "data", train=1, val=1)
    spec = tmp_path / "specs" / name
    spec.write_text(GOOD.replace("DATA", "data"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["validate", os.path.relpath(spec, elsewhere), "--no-scan"]) == 0
    assert load_spec(os.path.relpath(spec, elsewhere)).data.root == (tmp_path / "specs" / "data").resolve()


# ---------------------------------------------------------------------------------------------
# 9. validate checks what train and sweep would reject later


def test_validate_refuses_an_unknown_tracking_scheme(tmp_path, data_root, capsys):
    line = _validate(tmp_path, capsys, GOOD.replace("DATA", str(data_root)) + "tracking: {uri: 'ftp://host/x'}\n")
    assert "tracking.uri:" in line and "ftp" in line


def test_validate_refuses_a_sqlite_store_in_a_missing_folder(tmp_path, data_root, capsys):
    uri = f"sqlite:///{tmp_path}/no/such/folder/mlflow.db"
    line = _validate(tmp_path, capsys, GOOD.replace("DATA", str(data_root)), "--set", f"tracking.uri={uri}")
    assert "tracking.uri:" in line and "does not exist" in line


@pytest.mark.parametrize("trainable", ["no_such_package.trainer", "trainables.no_such_module", "os.path"])
def test_validate_refuses_a_trainable_that_cannot_be_imported(tmp_path, data_root, capsys, trainable):
    line = _validate(tmp_path, capsys, GOOD.replace("DATA", str(data_root)) + f"trainable: {trainable}\n")
    assert "trainable:" in line and trainable in line


@pytest.fixture
def offline_empty_torch_home(tmp_path, monkeypatch):
    """No cached weights, and every download refused at once (a dead proxy), whether or not there is internet."""
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen reads the proxy settings afresh
    return home


def test_validate_warns_that_pretrained_weights_are_not_available(tmp_path, data_root, capsys,
                                                                   offline_empty_torch_home):
    # A warning, not an error: the trials may run on machines that hold the weights (and the shipped seed
    # specs ask for them); train on this machine fails with one line (the next test).
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)).replace("backbone: resnet18",
                                                                 "backbone: resnet18, pretrained: true"))
    assert main(["validate", str(spec), "--no-scan"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "Traceback" not in err, err
    assert "fixed.pretrained:" in warnings[0] and "resnet18" in warnings[0]
    assert str(offline_empty_torch_home) in warnings[0] and "train would fail" in warnings[0]


def test_train_without_pretrained_weights_is_one_line(tmp_path, data_root, capsys, offline_empty_torch_home):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)).replace("backbone: resnet18",
                                                                 "backbone: resnet18, pretrained: true"))
    assert main(["train", str(spec), "--out", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "resnet18" in line and "pretrained" in line


def test_train_with_a_broken_cached_weights_file_is_one_line(tmp_path, data_root, capsys, offline_empty_torch_home):
    from torchvision import models

    url = models.get_model_weights("resnet18").DEFAULT.url
    cached = offline_empty_torch_home / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # torch.load raised EOFError (a truncated file: UnpicklingError)
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)).replace("backbone: resnet18",
                                                                 "backbone: resnet18, pretrained: true"))
    assert main(["train", str(spec), "--out", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "fixed.pretrained:" in line and str(cached) in line


def test_validate_accepts_cached_pretrained_weights(tmp_path, data_root, capsys, offline_empty_torch_home):
    from torchvision import models

    url = models.get_model_weights("resnet18").DEFAULT.url
    cached = offline_empty_torch_home / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not checked")  # validate checks that the file is there; train reads it
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)).replace("backbone: resnet18",
                                                                 "backbone: resnet18, pretrained: true"))
    assert main(["validate", str(spec), "--no-scan"]) == 0


# ---------------------------------------------------------------------------------------------
# issue 36, class 3: no value echoed in a message floods the terminal


def _bomb_levels(depth: int = 6) -> str:
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, depth):
        levels.append(f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "[" + ", ".join(levels) + "]"


FLOODS = {
    "quoted-alias-bomb-in-a-list-key": ["--set", f"fixed.head_hidden='{_bomb_levels()}'"],
    "long-list-for-a-list-key": ["--set", "fixed.head_hidden=[" + ", ".join(["x"] * 50_000) + "]"],
    "long-string-name": ["--set", "name=" + "n/" * 200_000],
    "long-string-choice": ["--set", "fixed.backbone=" + "r" * 500_000],
    "long-metric-mapping": ["--set", "metric={" + ", ".join(f"k{i}: {i}" for i in range(20_000)) + "}"],
    "long-set-without-equals": ["--set", "budget." + "e" * 300_000],
}


@pytest.mark.parametrize("extra", list(FLOODS.values()), ids=list(FLOODS))
def test_a_long_value_is_echoed_cut_with_its_length(tmp_path, data_root, capsys, extra):
    line = _validate(tmp_path, capsys, GOOD.replace("DATA", str(data_root)), *extra)
    assert len(line) < 2_500, f"{len(line):,} characters"


# issue 36, class 15: nonsense a loader would accept silently is refused
DUPLICATES = {
    "top-level": GOOD + "name: other\n",
    "nested": GOOD.replace("budget: {epochs: 2,", "budget: {epochs: 2, epochs: 3,"),
    "in-the-space": GOOD.replace("    lr: {loguniform: [0.001, 0.1]}\n",
                                 "    lr: {loguniform: [0.001, 0.1]}\n    lr: {uniform: [0.1, 0.2]}\n"),
}


@pytest.mark.parametrize("text", list(DUPLICATES.values()), ids=list(DUPLICATES))
def test_a_key_written_twice_is_refused(tmp_path, data_root, capsys, text):
    line = _validate(tmp_path, capsys, text.replace("DATA", str(data_root)), "--no-scan")
    assert "is already set on line" in line


def test_a_merge_key_may_be_overridden():
    from hpo_cls.spec.safe_yaml import load_yaml

    assert load_yaml("a: &d {x: 1, y: 2}\nb: {<<: *d, x: 3}\n", "w")["b"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "./mlruns", "/tmp/mlruns"])
def test_a_folder_tracking_store_is_refused_by_validate(tmp_path, data_root, capsys, uri):
    line = _validate(tmp_path, capsys, GOOD.replace("DATA", str(data_root)), "--no-scan", "--set",
                     f"tracking.uri={uri}")
    assert "tracking.uri" in line and "SQLite" in line


# issue 36, class 7: a spec file that never ends, or is far too big, is refused before it is read whole
@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom", "two-MiB-of-spaces"])
def test_an_endless_or_huge_spec_file_is_refused_unread(tmp_path, capsys, command, source):
    if source == "two-MiB-of-spaces":
        source = tmp_path / "big.yaml"
        source.write_bytes(b"name: big\n" + b" " * (2 << 20))
    extra = ["--out", str(tmp_path / "out")] if command == "train" else []
    assert main([command, str(source), *extra]) == 2
    assert _one_error_line(capsys) == f"error: {source}: over 1 MiB; a spec is a few kB of YAML text"


# issue 36, class 15, the rest: a spec that validate passed, though no sweep of it could do what it says
SPACE = "search:\n  space:\n    lr: {loguniform: [0.001, 0.1]}\n"
NEVER = {
    "trainable-getcwd": ("trainable: os.getcwd\n", "trainable: 'os.getcwd' is not a trainable (it takes ())"),
    "trainable-path-join": ("trainable: os.path.join\n", "'os.path.join' is not a trainable (it takes (a, *p))"),
    "trainable-sleep": ("trainable: time.sleep\n", "'time.sleep' is not a trainable"),
    "trainable-a-class": ("trainable: collections.OrderedDict\n", "'collections.OrderedDict' is not a trainable"),
    "quniform-fractional-step": ("    batch_size: {quniform: [8, 64, 2.5]}\n",
                                 "batch_size.quniform: an integer parameter needs whole numbers"),
    "quniform-fractional-low": ("    warmup_epochs: {quniform: [0.5, 4, 1]}\n",
                                "warmup_epochs.quniform: an integer parameter needs whole numbers"),
    "when-uniform-value": ("    momentum: {uniform: [0.8, 0.99]}\n"
                           "    dropout: {uniform: [0, 0.3], when: {momentum: 0.9}}\n",
                           "dropout.when.momentum: holds with probability 0: momentum is searched over a continuous "
                           "range (uniform [0.8, 0.99])"),
    "when-loguniform-value": ("    dropout: {uniform: [0, 0.3], when: {lr: [0.01, 0.1]}}\n",
                              "dropout.when.lr: holds with probability 0"),
    "when-int-off-step": ("    warmup_epochs: {int: [0, 4], step: 2}\n"
                          "    dropout: {uniform: [0, 0.3], when: {warmup_epochs: 3}}\n",
                          "can never hold: warmup_epochs is searched over int [0, 4] step 2, none of [3]"),
    "when-quniform-off-grid": ("    batch_size: {quniform: [8, 64, 8]}\n"
                               "    dropout: {uniform: [0, 0.3], when: {batch_size: 12}}\n",
                               "can never hold: batch_size is searched over quniform [8, 64] step 8, none of [12]"),
    "params-max-tiny": ("constraints: {params_m: {max: 0.001}}\n", "constraints.params_m.max: 0.001 is below every "
                        "network of the space: the smallest, resnet18 without attention or head layers, has 11.2 M"),
    "params-max-below-smallest-choice": (
        "constraints: {params_m: {max: 11}}\n    backbone: {choice: [resnet50, resnet18]}\n",
        "constraints.params_m.max: 11 is below every network of the space"),
    "val-acc-min-above-1": ("constraints: {val_acc: {min: 1.5}}\n", "constraints.val_acc.min: 1.5 is outside what "
                            "val_acc can be (from 0 to 1)"),
    "val-acc-max-negative": ("constraints: {val_acc: {max: -0.1}}\n", "constraints.val_acc.max: -0.1 is outside"),
    "train-acc-min-2": ("constraints: {train_acc: {min: 2}}\n", "constraints.train_acc.min: 2 is outside"),
    "val-loss-max-negative": ("constraints: {val_loss: {max: -1}}\n",
                              "constraints.val_loss.max: -1 is outside what val_loss can be (0 or more)"),
    "params-min-negative": ("constraints: {params_m: {min: -2}}\n", "constraints.params_m.min: -2 is outside"),
    "latency-max-negative": ("constraints: {latency_ms: {max: -1}}\n", "constraints.latency_ms.max: -1 is outside"),
}


def _with(addition: str) -> str:
    """GOOD with ``addition``: lines indented as space entries go into the search space, others at the top."""
    space = "".join(line + "\n" for line in addition.splitlines() if line.startswith("    "))
    top = "".join(line + "\n" for line in addition.splitlines() if not line.startswith("    "))
    return GOOD.replace(SPACE, SPACE + space) + top


@pytest.mark.parametrize("addition, expected", list(NEVER.values()), ids=list(NEVER))
def test_a_spec_no_sweep_could_follow_is_refused(tmp_path, data_root, capsys, addition, expected):
    line = _validate(tmp_path, capsys, _with(addition).replace("DATA", str(data_root)), "--no-scan")
    assert expected in line, line


@pytest.mark.parametrize("addition", ["constraints: {params_m: {max: 12}, val_acc: {min: 0.5, max: 1}}\n",
                                      "    warmup_epochs: {int: [0, 4], step: 2}\n"
                                      "    dropout: {uniform: [0, 0.3], when: {warmup_epochs: [2, 3]}}\n",
                                      "    batch_size: {quniform: [8, 64, 8]}\n",
                                      "trainable: trainables.image_classifier\n"])
def test_what_a_sweep_can_follow_still_validates(tmp_path, data_root, capsys, addition):
    spec = tmp_path / "spec.yaml"
    spec.write_text(_with(addition).replace("DATA", str(data_root)))
    assert main(["validate", str(spec), "--no-scan"]) == 0, capsys.readouterr().err
