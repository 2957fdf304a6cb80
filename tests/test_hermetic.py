"""The suite touches no process it did not start: a user's Ray cluster on the same machine survives it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Each stops or kills processes by name, across the machine: Ray's stop command (as shell words or a list),
# the p-kill and kill-all tools, psutil's scan of every process. Built from parts so this file does not match.
_BY_NAME = [re.compile(p) for p in (r"\bray\W{1,4}stop\b", r"\bp" + r"kill\b", r"\bkill" + r"all\b", r"process_" + r"iter\b")]


def test_no_test_fixture_script_or_benchmark_stops_processes_by_name():
    offenders = []
    for folder in ("tests", ".ci", "bench"):
        for path in sorted((REPO / folder).rglob("*")):
            if not path.is_file() or path.suffix in (".pyc", ".png", ".jpg", ".db"):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if any(p.search(line) for p in _BY_NAME):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "stop only what the test started, by PID:\n" + "\n".join(offenders)


@pytest.mark.last
def test_a_ray_cluster_the_suite_did_not_start_survives_it(bystander_ray):
    """Runs after every other test (conftest orders it last); the bystander started before the first Ray
    test, with a detached actor whose process is named like a Tune trial's."""
    assert not bystander_ray.dead(), "processes of the bystander Ray cluster were stopped by the suite"
