"""The command line on hostile surroundings (issue #15): a closed pipe, no ``mlflow`` on PATH, a store that
does not answer, a password in the store URI. Each ends in one ``error:`` line or quietly, never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

SECRET = "S3CRET-pw"


def hpo_cls(*args, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo_cls.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["--help"], ["validate", "{spec}", "--no-scan"]], ids=["help", "validate"])
def test_output_into_a_closed_pipe_ends_quietly(tiny_spec, tmp_path, args):
    read, write = os.pipe()
    os.close(read)  # the reader (`| head`) is gone before the first line is written
    args = [str(tiny_spec()) if a == "{spec}" else a for a in args]
    process = subprocess.run([sys.executable, "-m", "hpo_cls.cli", *args], stdout=write, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, timeout=300)
    os.close(write)
    assert "Traceback" not in process.stderr and "BrokenPipeError" not in process.stderr, process.stderr
    assert process.returncode in (0, 1)


@pytest.mark.parametrize("command", ["ui", "sweeps", "report"])
def test_an_unreachable_store_is_an_error_line_without_its_password(tmp_path, command):
    port = closed_port()
    start = time.monotonic()
    ui_port = ["--port", closed_port()] if command == "ui" else []  # not 5000: a UI already there is refused first
    result = hpo_cls(command, "--tracking-uri", f"postgresql://u:{SECRET}@127.0.0.1:{port}/mlflow", *ui_port,
                     cwd=tmp_path, timeout=120)
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(port) in line and "u:***@" in line
    assert SECRET not in result.stdout + result.stderr
    assert time.monotonic() - start < 60, "no minutes of connection retries"


def test_ui_without_mlflow_on_path_starts_and_keeps_the_store_uri_off_its_command_line(tmp_path):
    port = closed_port()
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the venv's bin (with `mlflow`) is not on it
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ui = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert ui.poll() is None, ui.stdout.read()
                assert time.monotonic() < deadline, "the MLflow UI did not come up"
                time.sleep(1)
        command_lines = [" ".join(p.cmdline()) for p in [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(True)]]
        assert not any(str(tmp_path / "mlflow.db") in line for line in command_lines), "the store URI is not in argv"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the group this test started (start_new_session)
        ui.wait(timeout=30)


# issue 36, class 7: surroundings that are not what hpo-cls needs are one line, before anything starts
@pytest.mark.parametrize("variable, under", [("HPO_CLS_CACHE_DIR", ""), ("HPO_CLS_CACHE_DIR", "/sub"),
                                             ("XDG_CACHE_HOME", "/sub")])
@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_cache_folder_that_is_a_file_is_one_line(tiny_spec, tmp_path, variable, under, command):
    (tmp_path / "a-file").write_text("not a folder\n")
    env = {k: v for k, v in os.environ.items() if k != "HPO_CLS_CACHE_DIR"}
    env[variable] = f"{tmp_path / 'a-file'}{under}"
    args = {"validate": ["validate", tiny_spec()], "train": ["train", tiny_spec(), "--out", tmp_path / "out"]}[command]
    result = hpo_cls(*args, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: {variable}: the hpo-cls cache folder ") and str(tmp_path / "a-file") in line
    assert (tmp_path / "a-file").read_text() == "not a folder\n" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_ui_on_a_port_in_use_is_an_error_line(tmp_path, host):
    with socket.socket() as other:  # another program's server
        other.bind((host, 0))
        other.listen()
        port = other.getsockname()[1]
        result = hpo_cls("ui", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", port, cwd=tmp_path,
                         timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (f"error: argument --port: 127.0.0.1:{port} is in use by another program; "
                                     "pass --port with a free one")
    assert not (tmp_path / "mlflow.db").exists(), "refused before the store is opened"


# ---------------------------------------------------------------------------------------------
# issue 36, classes 1 and 5: `--out` never replaces what hpo-cls did not write, checked before any work


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory):
    """A real MLflow SQLite store with one experiment and one run."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    client.create_run(client.create_experiment("hpo-cls"))
    return folder / "mlflow.db"


OUT_COMMANDS = {
    "report": ["report"],
    "predict": ["predict", "models:/m@champion", "{images}"],
    "promote": ["promote", "--top", "1"],
}


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
@pytest.mark.parametrize("target", ["store", "store-with-force", "folder", "proc", "a-script"])
def test_out_never_overwrites_what_hpo_cls_did_not_write(tmp_path, tracking_store, command, target):
    before = tracking_store.read_bytes()
    (tmp_path / "images").mkdir()
    script = tmp_path / "train.py"
    script.write_text("print('my code')\n")
    out, extra = {"store": (tracking_store, []), "store-with-force": (tracking_store, ["--force"]),
                  "folder": (tmp_path, []), "proc": ("/proc/x", []), "a-script": (script, ["--force"])}[target]
    args = [a.replace("{images}", str(tmp_path / "images")) for a in OUT_COMMANDS[command]]
    result = hpo_cls(*args, "--tracking-uri", f"sqlite:///{tracking_store}", "--out", out, *extra, cwd=tmp_path,
                     timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and "--out" in line, line
    assert tracking_store.read_bytes() == before, "the tracking store is untouched"
    assert script.read_text() == "print('my code')\n"


# issue 36, class 2: a password that makes the URI unparsable never appears in what the CLI prints
PIECES = ("Kpieceone", "Kpiecetwo")


@pytest.mark.parametrize("sep", ["/", "#", "@", "%"])
@pytest.mark.parametrize("command", ["sweeps", "report", "validate", "train"])
def test_an_unparsable_uri_is_printed_without_any_piece_of_its_password(tiny_spec, tmp_path, command, sep):
    port = closed_port()
    uri = f"postgresql://u:{PIECES[0]}{sep}{PIECES[1]}@127.0.0.1:{port}/mlflow"
    args = [command, "--tracking-uri", uri]
    if command == "validate":
        args = [command, tiny_spec(), "--no-scan", "--set", f"tracking.uri={uri}"]
    result = hpo_cls(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert not any(piece in result.stdout + result.stderr for piece in PIECES), result.stderr


# issue 36, class 13: every numeric flag is range-checked where it is parsed (nan and inf are no numbers)
NUMBERS = [
    ("promote", "--max-params", "nan"), ("promote", "--max-params", "inf"), ("promote", "--max-params", "1e999"),
    ("promote", "--max-params", "-5"), ("promote", "--top", "0"), ("promote", "--epochs", "-1"),
    ("promote", "--seeds", "0"), ("promote", "--batch-size", "0"), ("promote", "--max-latency-ms", "nan"),
    ("predict", "--batch-size", "0"), ("predict", "--batch-size", "2.5"), ("ui", "--port", "99999"),
    ("ui", "--port", "-1"), ("ui", "--port", "0"), ("ui", "--port", "nan"), ("promote", "--top", "2.5"),
    ("promote", "--max-latency-ms", "-1"), ("predict", "--batch-size", "inf"),
]


@pytest.mark.parametrize("command, flag_name, value", NUMBERS, ids=[" ".join(n) for n in NUMBERS])
def test_numeric_flags_are_range_checked_where_parsed(tmp_path, capsys, command, flag_name, value):
    from hpo_cls.cli import main

    before = {"predict": ["models:/m@champion", str(tmp_path)]}.get(command, [])
    with pytest.raises(SystemExit) as exit_:
        main([command, *before, f"{flag_name}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: argument {flag_name}:"), err
    assert not list(tmp_path.iterdir()), "nothing started, nothing written"


# issue 36, class 11: a name that becomes a folder is checked (no separators, no ..)
BAD_NAMES = ["../../escaped", "a/b", "..", ".", ".hidden", "/abs", "x" * 200, "", "a\\b", "tab\tname"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
def test_sweep_names_that_would_escape_storage_are_refused(tiny_spec, tmp_path, capsys, name):
    from hpo_cls.cli import main

    spec = tiny_spec()
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(spec), "--name", name])
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: argument --name:"), lines
    assert not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "x" * 200])
def test_spec_names_that_would_escape_storage_are_refused(tiny_spec, tmp_path, capsys, name):
    from hpo_cls.cli import main

    assert main(["validate", str(tiny_spec()), "--no-scan", "--set", f"name={name}"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("error: ") and "name:" in line


def test_sweep_directory_refuses_a_bad_name_itself():
    from hpo_cls.errors import SweepError
    from hpo_cls.sweep.experiment import sweep_directory

    with pytest.raises(SweepError, match="letters, digits"):
        sweep_directory("/tmp/storage", "spec", "../../escaped", resume=False)
