"""Headless Chromium for the tests that open a page as a user would (the MLflow UI, the report, the dashboard)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """Chromium's path; CI fails without it, elsewhere the test is skipped."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def open_page(url: str, profile: Path, *flags: str) -> str:
    """Headless Chromium's output for ``url`` after its scripts ran (``--dump-dom``: the DOM)."""
    command = [require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1600,1000",
               "--virtual-time-budget=20000", *flags, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=profile.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
