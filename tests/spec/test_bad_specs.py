"""A corpus of malformed specs and overrides: each one exits 2 with one clear line and no traceback."""

from __future__ import annotations

import socket
import textwrap

import pytest
from sweep_helpers import make_images

from hpo_cls.cli import main

GOOD = """\
name: good
data: {root: DATA, image_size: 16, workers: 0}
budget: {epochs: 2, num_samples: 2, max_concurrent: 1}
search:
  space:
    lr: {loguniform: [0.001, 0.1]}
fixed: {backbone: resnet18}
"""


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (id, spec text or None for GOOD, extra CLI args, text the one error line must contain)
CASES = [
    ("yaml-syntax", "name: [unclosed\n", [], "invalid YAML: line"),
    ("top-level-list", "- a\n- b\n", [], "expected a mapping at the top level"),
    ("missing-name", GOOD.replace("name: good\n", ""), [], "name: required"),
    ("unknown-top-key", GOOD + "nmae: x\n", [], "nmae: unknown key"),
    ("internal-field-as-key", GOOD + "fixed_keys: [lr]\n", [], "fixed_keys: unknown key"),
    ("unknown-section-key", GOOD.replace("workers: 0", "workrs: 0"), [], "data.workrs: unknown key"),
    ("wrong-type", GOOD.replace("epochs: 2", "epochs: ten"), [], "budget.epochs: expected an integer"),
    ("negative-budget", GOOD.replace("num_samples: 2", "num_samples: -3"), [], "budget.num_samples: must be >= 1"),
    ("zero-epochs", GOOD.replace("epochs: 2", "epochs: 0"), [], "budget.epochs: must be >= 1"),
    ("unknown-backbone", GOOD.replace("backbone: resnet18", "backbone: vgg16"), [], "fixed.backbone: 'vgg16'"),
    ("unknown-fixed-key", GOOD.replace("backbone: resnet18", "lrr: 0.1"), [], "fixed.lrr: unknown key"),
    ("empty-space", GOOD.replace("    lr: {loguniform: [0.001, 0.1]}\n", "").replace("  space:\n", "  space: {}\n"),
     [], "search.space: is empty"),
    ("reversed-range", GOOD.replace("loguniform: [0.001, 0.1]", "uniform: [0.1, 0.001]"), [],
     "search.space.lr.uniform: low must be < high"),
    ("loguniform-zero", GOOD.replace("[0.001, 0.1]", "[0, 0.1]"), [], "search.space.lr.loguniform: low must be > 0"),
    ("unknown-distribution", GOOD.replace("loguniform:", "normal:"), [], "search.space.lr.normal: unknown key"),
    ("impossible-condition-fixed", GOOD.replace(
        "    lr: {loguniform: [0.001, 0.1]}\n", "    cutmix_alpha: {uniform: [0.5, 1.0], when: {mix: cutmix}}\n"), [],
     "can never hold: mix is fixed"),
    ("impossible-condition-searched", GOOD.replace(
        "    lr: {loguniform: [0.001, 0.1]}\n",
        "    mix: {choice: [none, mixup]}\n    cutmix_alpha: {uniform: [0.5, 1.0], when: {mix: cutmix}}\n"), [],
     "can never hold: mix is searched over"),
    ("grid-needs-choices", GOOD.replace("search:\n", "search:\n  sampler: grid\n"), [],
     "search.space.lr: the grid sampler needs choice parameters"),
    ("bad-choice-value", GOOD.replace("    lr: {loguniform: [0.001, 0.1]}\n",
                                      "    attention: {choice: [none, transformer]}\n"), [],
     "search.space.attention.choice[1]"),
    ("missing-data-folder", GOOD.replace("root: DATA", "root: /nonexistent/hw1"), [], "data.root:"),
    ("set-without-equals", None, ["--set", "budget.epochs"], "--set budget.epochs: expected key.path=value"),
    ("set-unknown-key", None, ["--set", "budget.epoch=3"], "budget.epoch: unknown key"),
    ("set-into-scalar", None, ["--set", "name.first=x"], "--set name.first: name is not a mapping"),
    ("set-bad-value", None, ["--set", "fixed.lr=-1"], "fixed.lr: must be > 0.0"),
    ("mode-mismatch", GOOD + "metric: val_loss\nmode: max\n", [], "mode: val_loss is optimised with mode min"),
    ("unknown-metric", GOOD + "metric: f1\n", [], "metric: 'f1' is not one of"),
    ("grace-beyond-budget", GOOD + "scheduler: {grace_period: 5}\n", [], "scheduler.grace_period: 5 exceeds"),
    ("over-max-params", None, ["--set", "max_params=1000"], "fixed.backbone: resnet18 has"),
    ("bad-quniform-step", GOOD.replace("loguniform: [0.001, 0.1]", "quniform: [0.01, 0.1, 0.5]"), [],
     "q must be > 0 and <= high - low"),
    ("list-field-scalar", GOOD.replace("backbone: resnet18", "head_hidden: 5"), [], "fixed.head_hidden: expected a list"),
    ("negative-gpu", GOOD + "resources: {gpu: -1}\n", [], "resources.gpu: must be >= 0.0"),
    ("bad-name", GOOD.replace("name: good", "name: 'my sweep!'"), [], "name: use letters, digits"),
    # the recipe keys (issue 13)
    ("mean-length", GOOD.replace("backbone: resnet18", "mean: [0.5, 0.5]"), [], "fixed.mean: expected 3 values, got 2"),
    ("resize-mode", GOOD.replace("backbone: resnet18", "resize: stretch"), [], "fixed.resize: 'stretch' is not one of"),
    ("hue-range", GOOD.replace("backbone: resnet18", "hue: 0.6"), [], "fixed.hue: must be <= 0.5"),
    ("plateau-metric", GOOD.replace("backbone: resnet18", "plateau_metric: loss"), [],
     "fixed.plateau_metric: 'loss' is not one of val_acc, val_loss"),
    ("crop-scale-zero", GOOD.replace("backbone: resnet18", "crop_scale: [0, 1]"), [], "fixed.crop_scale: item 0 must be > 0"),
    ("baseline-outside-range", None, ["--set", "fixed.lr=0.5"], "search.space.lr: fixed.lr=0.5 is trial 0's value"),
    ("baseline-not-a-choice", GOOD.replace("    lr: {loguniform: [0.001, 0.1]}\n", "    backbone: {choice: [resnet34]}\n"),
     [], "fixed.backbone=resnet18 is trial 0's value (search.baseline_first) but not one of the choices"),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("bad-specs") / "data", train=2, val=1)


@pytest.mark.parametrize("text, extra, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec_gets_one_clear_line(tmp_path, data_root, capsys, text, extra, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text((text if text is not None else GOOD).replace("DATA", str(data_root)))
    code = main(["validate", str(spec), *extra])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("uri, expected", [
    ("http://127.0.0.1:{port}", "tracking.uri: cannot reach an MLflow server"),
    ("sqlite:///{tmp}/no/such/folder/mlflow.db", "does not exist"),
])
def test_unusable_tracking_uri_is_one_line(tmp_path, data_root, capsys, uri, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD.replace("DATA", str(data_root)))
    code = main(["sweep", str(spec), "--tracking-uri", uri.format(port=_unused_port(), tmp=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines() if "error:" in line]
    assert expected in err
    import ray

    assert not ray.is_initialized()  # the Ray started alongside the checks is released again


def test_the_corpus_is_large_enough():
    assert len(CASES) + 1 >= 20


def test_several_problems_are_reported_together(tmp_path, data_root, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(GOOD).replace("DATA", str(data_root)).replace("epochs: 2", "epochs: x")
                    .replace("backbone: resnet18", "backbone: vgg16"))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "budget.epochs" in err and "fixed.backbone" in err
