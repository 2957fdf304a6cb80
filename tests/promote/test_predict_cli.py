"""``hpo-cls predict`` on bad input: one ``error:`` line (or a warning) and exit status 2, checked before any
inference; a registered model whose files changed is refused (issue #15)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from hpo_cls.models.classifier import build_model
from hpo_cls.spec import TrialConfig, flatten_trial_config
from hpo_cls.train.checkpoint import model_bundle, save_checkpoint

TINY = TrialConfig(backbone="wrn16_4", small_input=True)
SECRET = "S3CRET-pw"


def hpo_cls(*args, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo_cls.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, f"exit status 2, got {result.returncode}: {result.stderr}"
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def _images(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def registered(tmp_path):
    """A one-member ensemble registered by hpo-cls's own registration code: ``(tracking uri, model uri)``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from hpo_cls.promote.register import _register

    classes = {"0": 0, "1": 1}
    model = build_model(TINY, len(classes))
    state = {"format": "hpo-cls/1", "model": model.state_dict(), "epoch": 1, "best_val_acc": 0.5, "best_epoch": 1,
             "config": flatten_trial_config(TINY), "image_size": 16, "class_to_idx": classes}
    bundle = save_checkpoint(model_bundle(state), tmp_path / "m0" / "model.pt")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("hpo-cls", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    previous = mlflow.get_tracking_uri()
    try:
        _register(uri, run.info.run_id, "tiny", [SimpleNamespace(bundle_path=str(bundle))],
                  [SimpleNamespace(key="m0")], [1.0], False, list(classes), {}, "a test model")
        yield uri, "models:/tiny@champion"
    finally:
        mlflow.set_tracking_uri(previous)  # _register sets the process-wide URI, as promote does in its process


@pytest.mark.parametrize("batch_size", ["-1", "0"])
def test_a_batch_size_below_one_is_an_error_line(tmp_path, batch_size):
    line = error_line(hpo_cls("predict", "models:/x@champion", _images(tmp_path / "images"), "--batch-size",
                              batch_size, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path))
    assert "--batch-size" in line and batch_size in line


def test_the_pyfunc_refuses_batch_size_zero_instead_of_using_64(registered, tmp_path):
    import mlflow
    import pandas as pd

    uri, model_uri = registered
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.DataFrame({"image_path": [str(p) for p in sorted(_images(tmp_path / "images").iterdir())]})
    with pytest.raises(ValueError, match="at least 1"):
        model.predict(frame, params={"batch_size": 0})


def test_an_out_that_is_a_folder_is_refused_before_inference(registered, tmp_path):
    uri, model_uri = registered
    (tmp_path / "taken").mkdir()
    line = error_line(hpo_cls("predict", model_uri, _images(tmp_path / "images"), "--out", tmp_path / "taken",
                              "--tracking-uri", uri, cwd=tmp_path))
    assert "taken" in line and "folder" in line


def test_a_decompression_bomb_is_named_not_a_traceback(registered, tmp_path):
    uri, model_uri = registered
    images = _images(tmp_path / "images")
    # A PNG header claiming 20000 x 20000 pixels: over twice PIL's MAX_IMAGE_PIXELS, so PIL refuses it.
    Image.new("1", (20000, 20000)).save(images / "bomb.png", optimize=True)
    line = error_line(hpo_cls("predict", model_uri, images, "--tracking-uri", uri, cwd=tmp_path))
    assert "bomb.png" in line


def _badly_named(folder: Path, name: bytes, content: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), name), "wb") as f:
        f.write(content)


def test_images_named_by_bytes_that_are_not_utf8_are_predicted_and_the_csv_stays_utf8(registered, tmp_path):
    uri, model_uri = registered
    images = _images(tmp_path / "images")
    _badly_named(images, b"\xff\xfe.png", (images / "0.png").read_bytes())
    _badly_named(images, b"caf\xe9.png", (images / "1.png").read_bytes())  # latin-1
    result = hpo_cls("predict", model_uri, images, "--tracking-uri", uri, "--out", tmp_path / "p.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "p.csv").read_bytes().decode("utf-8").splitlines()  # strict: valid UTF-8
    assert sorted(row.split(",")[0] for row in rows[1:]) == ["0", "1", "2", "\\xff\\xfe", "caf\\xe9"]


def test_a_corrupt_image_named_by_bytes_that_are_not_utf8_is_named_escaped(registered, tmp_path):
    uri, model_uri = registered
    images = _images(tmp_path / "images")
    _badly_named(images, b"\xff\xfe.png", b"no image at all")
    line = error_line(hpo_cls("predict", model_uri, images, "--tracking-uri", uri, "--out", tmp_path / "p.csv",
                              cwd=tmp_path))
    assert "\\xff\\xfe.png" in line and not (tmp_path / "p.csv").exists()


# issue 36, class 8: something that is not a model is refused before anything is copied; no copy is left
@pytest.mark.parametrize("model", ["/etc", "file:///etc", "{tmp}/no-such-folder", "{tmp}/images/0.png",
                                   "relative-missing", "runs:/{run}/not-a-model"])
def test_predict_on_something_that_is_not_a_model_copies_nothing_and_leaves_nothing(registered, tmp_path, model):
    from mlflow.tracking import MlflowClient

    uri, _ = registered
    client = MlflowClient(uri)
    run = client.create_run(client.get_experiment_by_name("hpo-cls").experiment_id).info.run_id
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no model here\n")
    client.log_artifacts(run, str(tmp_path / "notes"), "not-a-model")
    temp = tmp_path / "temp"
    temp.mkdir()
    model = model.format(tmp=tmp_path, run=run)
    result = hpo_cls("predict", model, _images(tmp_path / "images"), "--tracking-uri", uri, "--out",
                     tmp_path / "p.csv", cwd=tmp_path, env={**os.environ, "TMPDIR": str(temp)})
    line = error_line(result)
    assert line.startswith(f"error: {model}: ") and ("no MLmodel file" in line or "no such folder" in line), line
    assert list(temp.iterdir()) == [], "no copy of it is left behind"
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("uri", [f"http://user:{SECRET}@127.0.0.1:{{port}}",
                                 f"http://127.0.0.1:{{port}}/?token={SECRET}"], ids=["userinfo", "token"])
@pytest.mark.parametrize("command", ["predict", "promote"])
def test_an_unreachable_server_fails_fast_without_printing_its_password(tmp_path, uri, command):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    start = time.monotonic()
    arguments = (["models:/x@champion", _images(tmp_path / "images")] if command == "predict"
                 else ["--top", "2", "--workdir", tmp_path / "promote"])
    result = hpo_cls(command, *arguments, "--tracking-uri", uri.format(port=port), cwd=tmp_path, timeout=120)
    line = error_line(result)
    assert time.monotonic() - start < 60, "no minutes of silent retries"
    assert str(port) in line
    assert SECRET not in result.stderr + result.stdout


def test_predict_refuses_a_model_whose_files_changed_after_registration(registered, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, model_uri = registered
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("tiny", "champion")
    recorded = json.loads(version.tags["hpo_cls.sha256"])
    assert "MLmodel" in recorded and any(name.endswith("model.pt") for name in recorded)
    code = next(name for name in recorded if name.endswith(".py"))
    stored = _stored_file(tmp_path / "artifacts", code)  # the store is local: change the file in place
    stored.write_text(stored.read_text() + "\nopen('pwned', 'w').close()\n")
    line = error_line(hpo_cls("predict", model_uri, _images(tmp_path / "images"), "--tracking-uri", uri,
                              cwd=tmp_path))
    assert Path(code).name in line and "differs" in line
    assert not (tmp_path / "pwned").exists(), "none of the tampered code ran"


def _stored_file(root: Path, relative: str) -> Path:
    """The file ``relative`` of the model in the local artifact store under ``root`` (not a downloaded copy)."""
    (found,) = [p for p in root.rglob(Path(relative).name) if p.as_posix().endswith(relative)]
    return found


def test_a_model_registered_without_checksums_loads_with_a_warning(registered, tmp_path):
    from mlflow.tracking import MlflowClient

    uri, model_uri = registered
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("tiny", "champion")
    client.delete_model_version_tag("tiny", version.version, "hpo_cls.sha256")
    result = hpo_cls("predict", model_uri, _images(tmp_path / "images"), "--tracking-uri", uri, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no recorded checksums" in result.stderr
    assert (tmp_path / "prediction.csv").exists()
