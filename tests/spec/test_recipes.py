"""The seed specs are the course reports' recipes: what `hpo-cls train sweeps/seed_*.yaml` trains equals
each report's recipe value by value (the tables below, one row per value with the report section it comes
from), nothing the recipe depends on is left to a default, and `train` prints that configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from hpo_cls.cli import main
from hpo_cls.spec import load_spec
from hpo_cls.spec.recipe import RUNTIME_KEYS, inactive_keys, recipe_lines, ungrouped_keys

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# (key, value, report section). data.* / budget.* are spec sections; the rest are fixed.* keys.
RECIPES = {
    "seed_resnet_cbam_ensemble": [  # report 000, model §7 c (ResNet152 + CBAM, the ensemble's CBAM member)
        ("backbone", "resnet152", "§7 c ResNet152 + CBAM"),
        ("pretrained", True, "§1 pre-trained ImageNet weights"),
        ("attention", "cbam", "§4, §7 c"),
        ("attention_placement", "after_each_stage", "§7 c after layer1..layer4"),
        ("head_hidden", (), "Result: one Linear in the parameter count"),
        ("dropout", 0.0, "§7: none"),
        ("freeze_stages", 0, "§7 c: fully fine-tuned"),
        ("data.image_size", 224, "§3 crop + resize (torchvision size)"),
        ("resize", "crop", "§3 randomly cropped and resized"),
        ("hflip", 0.5, "§3 flipped horizontally with 50%"),
        ("vflip", 0.0, "§3"), ("rotation", 0.0, "§3"), ("color_jitter", 0.0, "§3"),
        ("mean", IMAGENET[0], "§3 pre-training normalization"),
        ("std", IMAGENET[1], "§3 pre-training normalization"),
        ("label_smoothing", 0.0, "§7 c"),
        ("mix", "none", "§3"),
        ("optimizer", "adam", "§7 c Optimizer: Adam"),
        ("lr", 1e-4, "§7 c Learning Rate: 0.0001"),
        ("weight_decay", 0.0, "§7: none"),
        ("budget.epochs", 100, "§7 c Epoch: 100"),
        ("data.balanced_sampling", False, "§7"),
    ],
    "seed_resnext50_fc_head": [  # report 001, §3 setting 4 (FC head + CBAM)
        ("backbone", "resnext50_32x4d", "§2 B.1 ResNeXt-50"),
        ("pretrained", True, "§1 ImageNet weights"),
        ("attention", "cbam", "§2 B.2 CBAM after stage 5"),
        ("attention_placement", "after_layer4", "§2 B.2 stage 5 = layer4"),
        ("head_hidden", (1024, 512), "§2 B.2 Fig. 2"),
        ("head_dropout", 0.3, "§2 B.2 Fig. 2 Dropout(p=0.3) after each"),
        ("dropout", 0.0, "§2 B.2 Fig. 2: none before the last Linear"),
        ("data.image_size", 512, "§2 A resize to 512x512"),
        ("resize", "full", "§2 A resize, no crop, train and eval"),
        ("augment_one_of", True, "§2 A 2 one of the following"),
        ("rotation", 45.0, "§2 A 2 rotation up to 45"),
        ("color_jitter", 0.2, "§2 A 2 brightness/contrast/saturation 0.2"),
        ("hue", 0.0, "§2 A 2"),
        ("hflip", 0.2, "§2 A 2 horizontal flip p 0.2"),
        ("vflip", 0.2, "§2 A 2 vertical flip p 0.2"),
        ("mean", IMAGENET[0], "§2 A 4"),
        ("std", IMAGENET[1], "§2 A 4"),
        ("optimizer", "adam", "§2 C Adam"),
        ("lr", 1e-4, "§2 C 1e-4"),
        ("batch_size", 16, "§2 C batch size 16"),
        ("lr_scheduler", "plateau", "§2 C ReduceLROnPlateau"),
        ("plateau_metric", "val_loss", "§2 C when validation loss stops improving"),
        ("gamma", 0.1, "§2 C factor 0.1"),
        ("plateau_patience", 3, "§2 C patience 3"),
        ("label_smoothing", 0.0, "§2 C cross-entropy"),
        ("mix", "none", "§2 A"),
        ("budget.epochs", 50, "§2 C 50 epochs"),
    ],
    "seed_resnext101_mixup": [  # report 002, §3.4 + §4
        ("backbone", "resnext101_32x8d", "§2.3"),
        ("pretrained", True, "§2.1 pretrained"),
        ("freeze_stages", 2, "§2.3 froze layer 1 and layer 2"),
        ("freeze_stem", False, "§2.3 only layer 1 and 2 named"),
        ("dropout", 0.5, "§2.3 Dropout(p=0.5) before the Linear"),
        ("dropout_l3_l4", 0.2, "§2.3 between layer 3 and layer 4"),
        ("attention", "cbam", "§2.3"),
        ("attention_placement", "after_layer4", "§2.3 after the final layer"),
        ("data.image_size", 224, "§2.2 RandomResizedCrop 224"),
        ("resize", "crop", "§2.2 RandomResizedCrop"),
        ("crop_scale", (0.8, 1.0), "§2.2 80%-100%"),
        ("hflip", 0.5, "§2.2 RandomHorizontalFlip 50%"),
        ("rotation", 15.0, "§2.2 ±15°"),
        ("color_jitter", 0.2, "§2.2 ±20%"),
        ("hue", 0.2, "§2.2 hue ±20%"),
        ("mean", IMAGENET[0], "§2.1"),
        ("std", IMAGENET[1], "§2.1"),
        ("mix", "mixup", "§2.2 Mixup"),
        ("mixup_alpha", 0.2, "§2.4 Mixup alpha 0.2"),
        ("mix_prob", 0.5, "§4 Mixup with a 50% probability"),
        ("optimizer", "adamw", "§2.4 AdamW"),
        ("lr", 1e-4, "§2.4 0.0001"),
        ("weight_decay", 0.045, "§2.4 0.045"),
        ("batch_size", 32, "§2.4 32"),
        ("lr_scheduler", "plateau", "§2.4 ReduceLROnPlateau"),
        ("gamma", 0.1, "§2.4 factor 0.1"),
        ("min_lr", 1e-6, "§2.4 min learning rate 0.000001"),
        ("budget.epochs", 50, "§2.4 50 epochs"),
    ],
    "seed_wrn_se_cifar": [  # report 004 (paragraphs ¶1-¶4)
        ("backbone", "wrn28_10", "¶4 WRN-28-10"),
        ("attention", "se", "¶4 SE-Net"),
        ("attention_placement", "in_every_block", "¶4 [Figure 4] SE in each block"),
        ("pretrained", False, "¶4 from scratch"),
        ("data.image_size", 32, "¶2 32x32"),
        ("data.balanced_sampling", True, "¶3 WeightedRandomSampler"),
        ("resize", "crop", "¶4 RandomCrop"),
        ("hflip", 0.0, "¶2-¶4 no flip"),
        ("mean", (0.49, 0.49, 0.49), "¶1 mean=0.49"),
        ("std", (0.25, 0.25, 0.25), "¶1 std=0.25"),
        ("mix", "cutmix", "¶3 CutMix"),
        ("cutmix_alpha", 1.0, "¶3 Beta(1,1)"),
        ("mix_prob", 0.5, "¶3 probability 0.5"),
        ("label_smoothing", 0.1, "¶3 smoothing factor 0.1"),
        ("optimizer", "sgd", "¶1 momentum SGD"),
        ("momentum", 0.9, "¶1 momentum 0.9"),
        ("lr", 0.1, "¶1 0.1 learning rate"),
        ("weight_decay", 5e-4, "¶2 from 0.0005"),
        ("batch_size", 128, "¶1 128 batch size"),
        ("lr_scheduler", "multistep", "¶1 decay at 60, 90"),
        ("milestones", (0.5, 0.75), "¶1 epochs 60 and 90 of 120"),
        ("gamma", 0.1, "¶1 0.1 factor"),
        ("budget.epochs", 120, "¶1 120 epochs"),
    ],
}


def _value(spec, key: str):
    section, _, name = key.rpartition(".")
    return getattr(getattr(spec, section or "fixed"), name)


@pytest.mark.parametrize("name,key,expected,section", [
    pytest.param(name, key, value, section, id=f"{name}:{key}")
    for name, rows in RECIPES.items() for key, value, section in rows
])
def test_train_runs_the_reports_recipe(name, key, expected, section):
    spec = load_spec(SWEEPS / f"{name}.yaml")  # what `hpo-cls train` trains: fixed, data, budget.epochs
    assert _value(spec, key) == expected, f"{name} {key}: the report ({section}) says {expected!r}"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_nothing_the_recipe_depends_on_is_left_to_a_default(name):
    spec = load_spec(SWEEPS / f"{name}.yaml")
    needed = set(spec.fixed.__dataclass_fields__) - RUNTIME_KEYS - inactive_keys(spec.fixed, spec.data.image_size)
    assert needed - spec.fixed_keys == set(), "write these recipe keys in fixed:"
    raw = yaml.safe_load((SWEEPS / f"{name}.yaml").read_text())
    assert {"image_size", "balanced_sampling"} <= set(raw["data"]) and "epochs" in raw["budget"]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_line_names_its_report_section(name):
    lines = (SWEEPS / f"{name}.yaml").read_text().splitlines()
    fixed_lines = lines[lines.index("fixed:") + 1:]
    fixed_lines = [line for line in fixed_lines[:next(i for i, line in enumerate(fixed_lines) if not line.startswith(" "))]
                   if not line.strip().startswith("#")]
    assert fixed_lines and all("# " in line for line in fixed_lines), [line for line in fixed_lines if "# " not in line]


def test_report_000_parameter_counts_match_its_table():
    """Report 000's Result table, 100 classes: the spec's CBAM (r=16) and heads are the report's models."""
    from hpo_cls.models.classifier import count_parameters

    cfg = load_spec(SWEEPS / "seed_resnet_cbam_ensemble.yaml").fixed
    counts = {
        "ResNet50": (dataclasses.replace(cfg, backbone="resnet50", attention="none"), 23_712_932),
        "ResNet50 + CBAM": (dataclasses.replace(cfg, backbone="resnet50"), 24_409_644),
        "ResNet152 + CBAM": (cfg, 59_045_420),
        "ResNext101": (dataclasses.replace(cfg, backbone="resnext101_32x8d", attention="none"), 86_947_236),
        "ResNext101 + CBAM": (dataclasses.replace(cfg, backbone="resnext101_32x8d"), 87_643_948),
    }
    assert {k: count_parameters(c, 100) for k, (c, _) in counts.items()} == {k: n for k, (_, n) in counts.items()}


def test_every_trial_key_has_a_recipe_group():
    assert ungrouped_keys() == ()


def test_printed_configuration_shows_each_recipe_value():
    spec = load_spec(SWEEPS / "seed_wrn_se_cifar.yaml")
    text = "\n".join(recipe_lines(spec))
    for item in ("backbone=wrn28_10", "mean=[0.49, 0.49, 0.49]", "lr=0.1", "momentum=0.9", "epochs=120",
                 "milestones=[0.5, 0.75] (epochs 60, 90)", "balanced_sampling=true", "mix_prob=0.5", "seed=0*"):
        assert item in text
    assert "mixup_alpha" not in text and "plateau_patience" not in text  # unused under cutmix / multistep


def test_train_prints_the_configuration_it_runs(tmp_path, capsys):
    """`hpo-cls train` on a seed spec: the configuration comes first, then the epochs of that recipe."""
    data = SWEEPS.parent / "data" / "cifar10-mini"
    code = main(["train", str(SWEEPS / "seed_resnext50_fc_head.yaml"), "--set", f"data.root={data}",
                 "--set", "budget.epochs=1", "--set", "fixed.pretrained=false", "--set", "data.image_size=16",
                 "--set", "fixed.backbone=resnet18", "--set", "data.workers=0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    head = out[: out.index("epoch 1/1")]
    for item in ("image_size=16", "resize=full", "augment_one_of=true", "head_hidden=[1024, 512]",
                 "head_dropout=0.3", "dropout=0.0", "plateau_metric=val_loss", "plateau_patience=3", "lr=0.0001"):
        assert item in head
    assert yaml.safe_load((tmp_path / "run" / "config.json").read_text())["resize"] == "full"
