"""hpo_cls.spec and hpo_cls.search.optuna_space: spec parsing, one-line errors, overrides, the Optuna space."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from hpo_cls.cli import flag
from hpo_cls.errors import SpecError
from hpo_cls.search.samplers import build_sampler
from hpo_cls.search.optuna_space import DefineByRun
from hpo_cls.spec import SearchConfig, load_spec, parse_spec, trial_config_from_dict

SWEEPS = sorted((Path(__file__).parents[2] / "sweeps").glob("*.yaml"))


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\n" + text)
    return path


def problems_of(path: Path, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, list(overrides))
    return info.value.render_lines(flag)  # as the command line prints them


def space_of(text: str):
    spec = parse_spec(yaml.safe_load("name: t\n" + text))
    return spec.search.space, spec.fixed


def sampled_params(text: str, n_trials: int = 30, sampler=None) -> list[optuna.trial.FrozenTrial]:
    """Run a real Optuna study over the spec's space and return each trial's params."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, fixed = space_of(text)
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    define = DefineByRun(space, fixed)
    study.optimize(lambda trial: define(trial) or 0.0, n_trials=n_trials)
    return study.trials


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_shipped_spec_parses(path):
    spec = load_spec(path)
    assert spec.search.space, "a shipped sweep searches something"
    assert spec.data.root.is_absolute(), "data.root is resolved against the spec file, not the working directory"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("data: {rooot: x}\n", "data.rooot"),
        ("fixed: {lrr: 0.1}\n", "fixed.lrr"),
        ("search: {space: {lrr: {uniform: [0.1, 0.2]}}}\n", "search.space.lrr"),
        ("search: {space: {lr: {uniform: [0.1, 0.2], lgo: true}}}\n", "search.space.lr.lgo"),
    ],
)
def test_unknown_key_is_one_line_naming_file_and_dotted_key(tmp_path, text, key):
    path = write_spec(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 1, "a typo gives exactly one problem"
    assert problems[0].startswith(f"{path}: {key}: unknown"), "the line names the file and the dotted key"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("search: {space: {lr: {loguniform: [0.1, 0.001]}}}\n", "search.space.lr.loguniform: low must be < high"),
        ("search: {space: {lr: {loguniform: [0, 0.1]}}}\n", "search.space.lr.loguniform: low must be > 0"),
        ("fixed: {backbone: resnet9}\n", "fixed.backbone: 'resnet9' is not one of"),
        ("search: {space: {backbone: {choice: [resnet18, resnet9]}}}\n", "search.space.backbone.choice[1]:"),
        ("fixed: {batch_size: many}\n", "fixed.batch_size: expected an integer"),
        ("budget: {epochs: 0}\n", "budget.epochs: must be >= 1"),
        ("fixed: {milestones: [30, 60]}\n", "fixed.milestones: item 0 must be <= 1.0"),  # epochs, not fractions
        ("search: {space: {head_hidden: {choice: [[512], [0]]}}}\n", "search.space.head_hidden.choice[1]: item 0"),
        ("search: {space: {mixup_alpha: {uniform: [0.1, 0.4], when: {mix: mixup}}}}\n",
         "search.space.mixup_alpha.when.mix: can never hold: mix is fixed to 'none'"),
        ("search: {space: {mix: {choice: [none, cutmix]}, mixup_alpha: {uniform: [0.1, 0.4], when: {mix: mixup}}}}\n",
         "search.space.mixup_alpha.when.mix: can never hold: mix is searched over"),
        ("search: {sampler: grid, space: {lr: {uniform: [0.01, 0.1]}}}\n",
         "search.space.lr: the grid sampler needs choice parameters"),
        ("search: {space: {}}\n", "search.space: is empty"),
        # options Optuna would reject only when the first trial is sampled, or silently ignore
        ("search: {space: {dropout: {uniform: [0.0, 0.5], log: true}}}\n",
         "search.space.dropout.uniform: low must be > 0 when log is true"),
        ("search: {space: {batch_size: {int: [8, 64], log: true, step: 8}}}\n",
         "search.space.batch_size.step: cannot be combined with log"),
        ("search: {space: {batch_size: {int: [8, 64], step: 0}}}\n", "search.space.batch_size.step: must be >= 1"),
        ("search: {space: {lr: {uniform: [0.01, 0.1], step: 0.01}}}\n", "search.space.lr.step: only with int"),
        ("search: {space: {mix: {choice: [none, mixup], log: true}}}\n",
         "search.space.mix.log: only with uniform or int"),
    ],
)
def test_invalid_value_is_one_line_naming_the_key(tmp_path, text, expected):
    path = write_spec(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 1, f"exactly one problem expected, got {problems}"
    assert problems[0].startswith(f"{path}: {expected}"), "the line names file, dotted key and the reason"


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    path = write_spec(tmp_path, "bogus: 1\nfixed: {lr: -1, backbone: resnet9}\nbudget: {epochs: zz}\n")
    problems = problems_of(path)
    keys = sorted(line.split(": ")[1] for line in problems)
    assert keys == ["bogus", "budget.epochs", "fixed.backbone", "fixed.lr"], "one line per problem, in one pass"


def test_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 as a string; users mean the number.
    text = "fixed: {lr: 1e-4}\nsearch: {space: {weight_decay: {loguniform: [1e-5, 1e-3]}}}\n"
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.fixed.lr == pytest.approx(1e-4) and isinstance(spec.fixed.lr, float), "fixed value"
    (param,) = spec.search.space
    assert (param.low, param.high) == pytest.approx((1e-5, 1e-3)), "search-space bounds"


def test_set_overrides_replace_file_values(tmp_path):
    path = write_spec(tmp_path, "budget: {num_samples: 8}\nfixed: {lr: 0.1}\n")
    spec = load_spec(path, ["budget.num_samples=4", "data.root=/x", "fixed.lr=1e-3", "fixed.head_hidden=[64]"])
    assert spec.budget.num_samples == 4, "an override wins over the file"
    assert spec.data.root == Path("/x"), "an absolute data.root is taken as is"
    assert spec.fixed.lr == pytest.approx(1e-3), "override values are read as YAML"
    assert spec.fixed.head_hidden == (64,), "lists can be overridden"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("budget.epochs", "--set budget.epochs: expected key.path=value"),
        ("budget.epochs=zz", "budget.epochs: expected an integer, got 'zz'"),
        ("fixed.lrr=0.1", "fixed.lrr: unknown key"),
        ("fixed.backbone=resnet9", "fixed.backbone: 'resnet9' is not one of"),
        ("name.x=1", "--set name.x: name is not a mapping"),
    ],
)
def test_bad_override_is_validated_like_the_file(tmp_path, override, expected):
    problems = problems_of(write_spec(tmp_path, ""), [override])
    assert len(problems) == 1 and expected in problems[0], f"one line naming the key, got {problems}"


@pytest.mark.parametrize("value", ["1e8", "100000000", "5.0e7"])
def test_max_params_accepts_integer_spellings(tmp_path, value):
    assert load_spec(write_spec(tmp_path, f"max_params: {value}\n")).max_params == int(float(value))


def test_invalid_yaml_is_one_line_with_position(tmp_path):
    path = write_spec(tmp_path, "fixed:\n  lr: [0.1\n  seed: 1\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: invalid YAML: line 4, column"), "syntax errors say where"


def test_missing_file_is_one_line(tmp_path):
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]


# --------------------------------------------------------------------------------------------
# search space -> Optuna

CONDITIONAL = """
search:
  space:
    mix: {choice: [none, mixup]}
    mixup_alpha: {uniform: [0.1, 0.4], when: {mix: mixup}}
    head_hidden: {choice: [[], [1024, 512]]}
    dropout: {uniform: [0.0, 0.5], when: {head_hidden: [[1024, 512]]}}
"""


@pytest.mark.parametrize(
    ("parent", "active_when", "child", "distribution"),
    [
        ("mix", "mixup", "mixup_alpha", optuna.distributions.FloatDistribution(0.1, 0.4)),
        ("head_hidden", "[1024, 512]", "dropout", optuna.distributions.FloatDistribution(0.0, 0.5)),
    ],
)
def test_conditional_parameter_is_suggested_only_when_its_condition_holds(parent, active_when, child, distribution):
    trials = sampled_params(CONDITIONAL)
    for t in trials:
        assert (child in t.params) == (t.params[parent] == active_when), "inactive parameters are never suggested"
        if child in t.params:
            assert t.distributions[child] == distribution, "suggested from its real distribution"
    assert any(child in t.params for t in trials) and not all(child in t.params for t in trials), "both branches"


def test_list_choice_round_trips_through_optuna_into_trial_config():
    _, fixed = space_of(CONDITIONAL)
    trials = sampled_params(CONDITIONAL)
    assert trials[0].distributions["head_hidden"] == optuna.distributions.CategoricalDistribution(["[]", "[1024, 512]"])
    seen = {trial_config_from_dict(t.params, base=fixed).head_hidden for t in trials}
    assert seen == {(), (1024, 512)}, "Optuna's '[1024, 512]' string becomes the tuple the model is built with"


PER_OPTIMIZER = """
search:
  space:
    optimizer: {choice: [adamw, sgd]}
    lr:
      - {loguniform: [1.0e-4, 1.0e-2], when: {optimizer: adamw}}
      - {loguniform: [0.01, 0.2], when: {optimizer: sgd}}
"""


def test_alternatives_give_one_key_a_range_per_condition_each_its_own_optuna_param():
    space, fixed = space_of(PER_OPTIMIZER)
    trials = sampled_params(PER_OPTIMIZER)
    ranges = {"adamw": (1e-4, 1e-2), "sgd": (0.01, 0.2)}
    for t in trials:
        optimizer = t.params["optimizer"]
        assert set(t.params) == {"optimizer", f"lr|optimizer={optimizer}"}, "TPE models each range apart"
        cfg = trial_config_from_dict(DefineByRun(space, fixed).config_keys(t.params), base=fixed)
        low, high = ranges[optimizer]
        assert cfg.optimizer == optimizer and low <= cfg.lr <= high, "the value lands in the trial config's lr"
    assert {t.params["optimizer"] for t in trials} == {"adamw", "sgd"}
    assert parse_spec(yaml.safe_load("name: t\n" + PER_OPTIMIZER)).search.names == ("optimizer", "lr")


@pytest.mark.parametrize(("text", "expected"), [
    ("search: {space: {optimizer: {choice: [adamw, sgd]}, lr: [{uniform: [0.1, 0.2], when: {optimizer: sgd}}, "
     "{uniform: [0.01, 0.02], when: {optimizer: [sgd, adamw]}}]}}\n",
     "search.space.lr[1].when: can hold together with search.space.lr[0]"),
    ("search: {space: {lr: [{uniform: [0.1, 0.2]}, {uniform: [0.01, 0.02]}]}}\n",
     "search.space.lr[1].when: can hold together with search.space.lr[0]"),
    ("search: {space: {optimizer: {choice: [adamw, sgd]}, lr: [{uniform: [0.1, 0.2], when: {optimizer: sgd}}, "
     "{uniform: [0.02, 0.01], when: {optimizer: adamw}}]}}\n",
     "search.space.lr[1].uniform: low must be < high"),
    ("search: {space: {lr: []}}\n", "search.space.lr: expected a mapping"),
])
def test_bad_alternatives_are_one_line_naming_the_item(tmp_path, text, expected):
    path = write_spec(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 1, f"exactly one problem expected, got {problems}"
    assert problems[0].startswith(f"{path}: {expected}"), "the line names the alternative's index"


def test_grid_sampler_covers_list_choices():
    text = "search: {sampler: grid, space: {head_hidden: {choice: [[], [64]]}, optimizer: {choice: [sgd, adam]}}}\n"
    space, fixed = space_of(text)
    trials = sampled_params(text, n_trials=4, sampler=build_sampler(SearchConfig(sampler="grid", space=space), 4))
    configs = {(c.head_hidden, c.optimizer) for c in (trial_config_from_dict(t.params, base=fixed) for t in trials)}
    assert configs == {((), "sgd"), ((), "adam"), ((64,), "sgd"), ((64,), "adam")}, "every grid point, once"


def test_tracking_passwords_are_never_printed():
    from hpo_cls.tracking.uri import redact_uri

    assert redact_uri("http://bob:s3cret@mlflow.lab:5000") == "http://bob:***@mlflow.lab:5000"
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_data_root_from_set_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    from hpo_cls.spec import parse_spec

    monkeypatch.chdir(tmp_path)
    spec = parse_spec({"name": "x", "data": {"root": "in-file"}}, tmp_path / "specs" / "x.yaml",
                      ["data.root=from-cli"])
    assert spec.data.root == tmp_path / "from-cli"
    spec = parse_spec({"name": "x", "data": {"root": "in-file"}}, tmp_path / "specs" / "x.yaml")
    assert spec.data.root == tmp_path / "specs" / "in-file"
