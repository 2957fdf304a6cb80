"""The sweep's console view: one table redrawn in place on a terminal, one line per event elsewhere, nothing
but the summary with --quiet. Tune's events are driven with trial objects shaped like Tune's (no Ray
needed); the real sweeps in a pseudo-terminal and piped to a file are at the bottom."""

from __future__ import annotations

import io
import os
import re
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console
from sweep_helpers import write_quickstart_like_spec
from terminal import PtyReader, run_in_pty, screen_lines

from hpo_cls.console import LIVE, LINES, QUIET, format_duration, output_mode
from hpo_cls.sweep.board import SweepBoard
from hpo_cls.sweep.live import TITLE, render_board
from hpo_cls.sweep.progress import SweepProgress, epoch_line_every

PARAMS = ["backbone", "attention", "dropout", "lr"]
HEADER = re.compile(r"^trial\s+status\s+epoch\s+val_acc\s+best\b", re.M)


def trial(trial_id, status="RUNNING", epoch=0, val_acc=None, **config):
    config = {"backbone": "resnet18", "attention": "se", "dropout": 0.25, "lr": 0.01, **config}
    result = {"epoch": epoch, "val_acc": val_acc} if epoch else {}
    return SimpleNamespace(trial_id=trial_id, config=config, status=status, last_result=result, error_file=None)


def board_with_trials() -> SweepBoard:
    board = SweepBoard("s-1", num_samples=6, epochs=4, metric="val_acc", mode="max", param_names=PARAMS, started=0.0)
    board.start("run-slow", {"backbone": "resnet34", "attention": "cbam", "lr": 0.02}, now=10)
    board.result("run-slow", 1, 0.30)
    board.start("done-good", {"backbone": "resnet18", "attention": "se", "lr": 0.01}, now=1)
    for epoch, score in enumerate((0.40, 0.55, 0.50, 0.52), 1):
        board.result("done-good", epoch, score)
    board.end("done-good", "completed")
    board.start("done-weak", {"backbone": "resnet18", "attention": "none", "lr": 0.04}, now=2)
    board.result("done-weak", 1, 0.20)
    board.end("done-weak", "early_stopped")
    board.start("run-fast", {"backbone": "resnet18", "attention": "none", "lr": 0.003}, now=5)
    board.result("run-fast", 2, 0.45)
    return board


def render_text(board: SweepBoard, width: int, height: int = 30) -> str:
    console = Console(width=width, height=height, record=True, color_system=None, file=io.StringIO())
    console.print(render_board(board, now=120.0, width=width, height=height))
    return console.export_text()


def test_running_trials_come_first_then_the_best_finished():
    text = render_text(board_with_trials(), width=140)
    order = [line.split()[0] for line in text.splitlines() if line.startswith(("run-", "done-"))]
    assert order == ["run-fast", "run-slow", "done-good", "done-weak"]  # running by start, finished best first
    headline = text.splitlines()[0]
    assert headline.startswith(f"{TITLE} s-1") and "2/6 done" in headline and "2 running" in headline
    assert "best val_acc 0.5500 (done-good)" in headline and "elapsed 2:00" in headline and "ETA ~" in headline
    assert HEADER.search(text) and "attention" in text and "0.5500" in text


def test_a_narrow_terminal_hides_parameters_instead_of_wrapping_rows():
    wide, narrow = render_text(board_with_trials(), 140), render_text(board_with_trials(), 72)
    header = {name: next(line for line in text.splitlines() if HEADER.match(line)).split()
              for name, text in (("wide", wide), ("narrow", narrow))}
    assert header["wide"][5:] == PARAMS and "lr" not in header["narrow"]
    assert "searched parameter(s) hidden: terminal too narrow" in narrow
    assert all(len(line) <= 72 for line in narrow.splitlines())
    row = next(line for line in narrow.splitlines() if line.startswith("run-fast"))
    assert "2/4" in row and "0.4500" in row, "a row is one line with its epoch and score"


def test_a_short_terminal_keeps_the_running_trials_and_counts_the_rest():
    text = render_text(board_with_trials(), width=140, height=9)
    rows = [line.split()[0] for line in text.splitlines() if line.startswith(("run-", "done-"))]
    assert rows == ["run-fast", "run-slow", "done-good"]
    assert "1 more trial(s) below" in text


def test_eta_follows_the_pace_and_the_share_of_the_budget_finished_trials_used():
    board = SweepBoard("s", num_samples=4, epochs=4, metric="val_acc", mode="max", param_names=[], started=0.0)
    assert board.eta_s(now=10) is None  # no epoch yet: no pace
    board.start("a", {}, now=0)
    board.result("a", 2, 0.5)
    board.end("a", "early_stopped")  # finished trials used half their budget
    board.start("b", {}, now=0)
    board.result("b", 1, 0.4)
    # 3 epochs in 30 s; b is expected to run 2 epochs (1 to go), 2 trials to come 2 each: 5 epochs at 0.1/s
    assert board.eta_s(now=30) == pytest.approx(50)
    board.time_budget_s = 40
    assert board.eta_s(now=30) == pytest.approx(10), "the time budget caps the ETA"
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05" and format_duration(None) == "-"


def test_output_mode_is_decided_by_the_stream_and_quiet(terminal_environment):
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        assert output_mode(tty) == LIVE and output_mode(tty, quiet=True) == QUIET
    os.close(master)
    assert output_mode(io.StringIO()) == LINES and output_mode(io.StringIO(), quiet=True) == QUIET


def drive(progress: SweepProgress) -> None:
    """A small sweep's events as Tune sends them: two trials run, one is stopped early, one fails."""
    progress.setup()
    a, b, c = trial("aaaa0001"), trial("bbbb0002", attention="none"), trial("cccc0003")
    progress.on_trial_start(0, [a, b], a)
    progress.on_trial_start(0, [a, b], b)
    for epoch in (1, 2, 3, 4):
        a.last_result = {"epoch": epoch, "val_acc": 0.1 * epoch}
        progress.on_trial_result(0, [a, b], a, a.last_result)
        progress.on_step_end(0, [a, b])
        if epoch == 1:
            b.last_result = {"epoch": 1, "val_acc": 0.05}
            progress.on_trial_result(0, [a, b], b, b.last_result)
            b.status = "TERMINATED"
            progress.on_trial_complete(0, [a, b], b)
    a.status = "TERMINATED"
    progress.on_trial_complete(0, [a, b], a)
    progress.on_trial_start(0, [a, b, c], c)
    c.status = "ERROR"
    progress.on_trial_error(0, [a, b, c], c)
    progress.on_experiment_end([a, b, c])


def test_piped_output_is_one_line_per_event_and_never_a_table():
    out = io.StringIO()
    drive(SweepProgress("s-1", 3, 4, "val_acc", "max", PARAMS, stream=out))
    lines = out.getvalue().splitlines()
    assert all(line.startswith("[hpo-cls] trial ") for line in lines), lines
    assert not HEADER.search(out.getvalue()) and "\x1b" not in out.getvalue()
    assert "trial aaaa0001 started: backbone=resnet18 attention=se dropout=0.25 lr=0.01" in lines[0]
    epoch_lines = [line for line in lines if line.startswith("[hpo-cls] trial aaaa0001 epoch ")]
    assert epoch_line_every(4) == 1 and len(epoch_lines) == 3, "epochs 1-3 (the 4th ends the trial)"
    assert epoch_lines[1].endswith("epoch 2/4: val_acc 0.2000 (best 0.2000)")
    stopped = next(line for line in lines if "bbbb0002" in line and "stopped early" in line)
    assert "after 1/4 epochs: val_acc 0.0500 (best 0.0500)" in stopped and "[1/3 done" in stopped
    assert any("aaaa0001 completed after 4/4 epochs: val_acc 0.4000" in line for line in lines)
    assert any("cccc0003 failed after 0/4 epochs: trial raised an error" in line for line in lines)


def test_epoch_lines_thin_out_for_long_trials():
    out = io.StringIO()
    progress = SweepProgress("s-1", 1, 50, "val_acc", "max", [], stream=out)
    progress.setup()
    t = trial("long0001")
    progress.on_trial_start(0, [t], t)
    for epoch in range(1, 51):
        progress.on_trial_result(0, [t], t, {"epoch": epoch, "val_acc": 0.5})
    assert epoch_line_every(50) == 10 and out.getvalue().count(" epoch ") == 4  # 10, 20, 30, 40


def test_quiet_prints_nothing_while_trials_run():
    out = io.StringIO()
    drive(SweepProgress("s-1", 3, 4, "val_acc", "max", PARAMS, quiet=True, stream=out))
    assert out.getvalue() == ""


def test_a_resuming_driver_takes_the_place_of_the_callback_tune_unpickles():
    """Tune.restore unpickles the interrupted run's callbacks; the resumed run's --quiet and stream count."""
    import pickle

    interrupted = pickle.dumps([SweepProgress("s-1", 4, 2, "val_acc", "max", PARAMS, quiet=True)])
    resuming = SweepProgress("s-1", 4, 2, "val_acc", "max", PARAMS, quiet=False, stream=io.StringIO())
    other = SweepProgress("s-2", 4, 2, "val_acc", "max", PARAMS)
    with resuming.taking_over():
        assert pickle.loads(interrupted)[0] is resuming
    with other.taking_over():
        copy = pickle.loads(interrupted)[0]
    assert copy is not other and copy.quiet and copy.sweep_id == "s-1", "another sweep's callback stays itself"
    assert pickle.loads(interrupted)[0] is not resuming, "only while restoring"


def test_a_terminal_gets_one_table_redrawn_in_place(monkeypatch, terminal_environment):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "30")
    master, slave = os.openpty()
    reader = PtyReader(master)
    with os.fdopen(slave, "w") as tty:
        drive(SweepProgress("s-1", 3, 4, "val_acc", "max", PARAMS, stream=tty))
    raw = reader.text()
    assert len(HEADER.findall(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw))) > 3, "the table was drawn again and again"
    lines = screen_lines(raw, columns=100, rows=30)
    text = "\n".join(lines)
    assert len(HEADER.findall(text)) == 1, "...in place: the terminal holds one table\n" + text
    table_at = next(i for i, line in enumerate(lines) if HEADER.match(line))
    events = [i for i, line in enumerate(lines) if line.startswith("[hpo-cls] trial ")]
    assert len(events) == 3 and max(events) < table_at, "finished, stopped and failed trials scroll above it"
    assert not any(" started" in lines[i] or " epoch " in lines[i] for i in events), "the table shows those"
    assert "3/3 done (1 completed, 1 early_stopped, 1 failed)" in text


# ---------------------------------------------------------------------------------------------
# real sweeps


@pytest.mark.ray
def test_a_sweep_in_a_terminal_shows_one_table_updated_in_place(tmp_path):
    spec = write_quickstart_like_spec(tmp_path)
    code, raw = run_in_pty([sys.executable, "-m", "hpo_cls.cli", "sweep", str(spec), "--name", "live"], tmp_path,
                           columns=110, rows=30)
    lines = screen_lines(raw, columns=110, rows=30)
    text = "\n".join(lines)
    assert code == 0, text[-3000:]
    drawn = HEADER.findall(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw))
    assert len(drawn) > 1, "the table was redrawn as trials progressed"
    assert len(HEADER.findall(text)) == 1, "...in place: the terminal shows one table\n" + text
    table_at = next(i for i, line in enumerate(lines) if HEADER.match(line))
    ended = [i for i, line in enumerate(lines) if re.match(r"\[hpo-cls\] trial \w+ (completed|stopped early|failed)", line)]
    assert len(ended) == 4 and max(ended) < table_at, "each trial's end scrolled above the table\n" + text
    assert any(line.startswith("sweep live ") for line in lines[table_at - 3:table_at]), "its headline above it"
    assert "sweep live finished:" in text and "Traceback" not in text
    assert re.search(r"Runs view: +http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning", text)


@pytest.mark.ray
def test_a_sweep_piped_to_a_file_logs_one_line_per_event_and_no_table(finished_sweep):
    log = finished_sweep.log
    assert "\x1b[" not in log, "no terminal control codes in a file"
    summary_at = log.index("sweep finished finished:")
    during, summary = log[:summary_at], log[summary_at:]
    assert not HEADER.search(during), "no trial table while trials run"
    assert len(re.findall(r"^#\s+trial\s+status", summary, re.M)) == 1, "one table: the final summary"
    started = re.findall(r"^\[hpo-cls\] trial (\w+) started: (?=.*backbone=resnet18)(?=.*attention=(?:none|se))", during,
                         re.M)
    ended = re.findall(r"^\[hpo-cls\] trial (\w+) (?:completed|stopped early|failed) after \d/2 epochs: .* "
                       r"\[\d/4 done", during, re.M)
    # Every trial ends in one line; a trial Tune fails before it starts (a busy machine) has no "started".
    assert len(ended) == len(set(ended)) == 4 and started and set(started) <= set(ended), during
