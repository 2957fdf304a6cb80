"""hpo_cls.console: progress of long steps (promote's members, images predicted) on a terminal and in a log."""

from __future__ import annotations

import io
import os
import re

from terminal import PtyReader, screen_lines

from hpo_cls.console import Steps, format_duration


def test_a_log_gets_a_line_per_update_or_per_passed_fraction():
    out = io.StringIO()
    with Steps(out, unit="epochs") as steps:
        steps.add("a", "member a", 3)
        for epoch in (1, 2, 3):
            steps.update("a", epoch, f"val_acc 0.{epoch}", eta_s=(3 - epoch) * 10.0)
    assert out.getvalue().splitlines() == ["[hpo-cls] member a 1/3 epochs  val_acc 0.1  ETA 0:20",
                                           "[hpo-cls] member a 2/3 epochs  val_acc 0.2  ETA 0:10",
                                           "[hpo-cls] member a 3/3 epochs  val_acc 0.3"]
    out = io.StringIO()
    with Steps(out, unit="images", line_every=0.25) as steps:
        steps.add("p", "predicting test", 100)
        for done in range(10, 101, 10):
            steps.update("p", done)
    counts = [int(m) for m in re.findall(r"predicting test (\d+)/100 images", out.getvalue())]
    assert counts == [10, 30, 50, 80, 100], "one line each time another quarter is passed, and at the end"


def test_a_terminal_gets_bars_updated_in_place(monkeypatch, terminal_environment):
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "20")
    master, slave = os.openpty()
    reader = PtyReader(master)
    with os.fdopen(slave, "w") as tty, Steps(tty, unit="epochs") as steps:
        for key in ("a", "b"):
            steps.add(key, f"member {key}", 4)
        for epoch in (1, 2, 3, 4):
            for key in ("a", "b"):
                steps.update(key, epoch, f"val_acc 0.{epoch}", eta_s=(4 - epoch) * 65.0)
        steps.say("both members trained")
    lines = screen_lines(reader.text(), columns=120, rows=20)
    assert [line.split()[:2] for line in lines if line.startswith("member")] == [["member", "a"], ["member", "b"]]
    assert all("4/4 epochs" in line and "val_acc 0.4" in line for line in lines if line.startswith("member"))
    assert lines[0] == "[hpo-cls] both members trained", "lines printed meanwhile scroll above the bars"
    assert format_duration(130) == "2:10"
