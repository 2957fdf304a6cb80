"""The docs: the README a newcomer reads in one sitting, and a MkDocs site that builds with --strict, whose
spec and command references are generated from the code."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpo_cls.cli.args import command_parsers
from hpo_cls.spec.schema import SweepSpec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIRST_LINES = [
    "```bash",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' && hpo-cls sweep sweeps/quickstart.yaml",
    "python -m pytest -q",
    "```",
]
# What the site includes from outside docs/ (pymdownx.snippets), copied with it for the broken-site builds.
INCLUDED = ["ARCHITECTURE.md", "bench/README.md", "sweeps/quickstart.yaml"]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, timeout=300)


def _html_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def _documented_keys():
    """(key as the spec reference names it, its doc) for every YAML key of a spec."""
    for field in dataclasses.fields(SweepSpec):
        if field.metadata.get("internal"):
            continue
        yield field.name, field.metadata["doc"]
        if dataclasses.is_dataclass(field.default):
            prefix = "" if field.name == "fixed" else f"{field.name}."
            yield from ((prefix + key.name, key.metadata["doc"]) for key in dataclasses.fields(field.default))


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the manual belongs in docs/"
    assert lines[0] == "# hpo-cls"
    assert lines[2:6] == FIRST_LINES


def test_readme_states_the_quickstart_trial_count():
    claimed = [int(n) for n in re.findall(r"(\d+)-trial sweep", README.read_text())]
    spec = yaml.safe_load((ROOT / "sweeps/quickstart.yaml").read_text())
    assert claimed == [spec["budget"]["num_samples"]]


def test_readme_links_point_at_files_that_exist():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if "://" not in t]
    assert local, "the README links to the docs"
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_every_subcommand_has_a_section_in_the_command_reference():
    text = (ROOT / "docs/commands.md").read_text()
    missing = [name for name in command_parsers() if f"## `hpo-cls {name}`" not in text]
    assert missing == []


def test_site_builds_strict_with_the_generated_references(tmp_path):
    site = tmp_path / "site"
    result = _build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stdout + result.stderr

    spec_html = (site / "spec/index.html").read_text()
    spec_page = _html_text(site / "spec/index.html")
    for key, doc in _documented_keys():  # a table row per key, with its doc
        assert f"<td><code>{key}</code></td>" in spec_html and doc in spec_page, key

    commands_page = _html_text(site / "commands/index.html")
    for name in command_parsers():
        assert f"usage: hpo-cls {name}" in commands_page
    assert (ROOT / "sweeps/quickstart.yaml").read_text().splitlines()[0] in spec_page  # the shipped file, included


def _copy_site(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    for name in INCLUDED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path / "mkdocs.yml"


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


BROKEN = {
    "a link to a missing page": lambda d: _append(d / "docs/index.md", "\n[gone](no-such-page.md)\n"),
    "a link to a missing anchor": lambda d: _append(d / "docs/index.md", "\n[gone](spec.md#no-such-key)\n"),
    "a page left out of the nav": lambda d: (d / "docs/orphan.md").write_text("# Orphan\n"),
    "a nav entry without its page": lambda d: (d / "docs/recipes.md").unlink(),
    "a subcommand without its --help": lambda d: (d / "docs/commands.md").write_text(
        (d / "docs/commands.md").read_text().replace("<!-- help: predict -->", "")),
    "a spec section without its table": lambda d: (d / "docs/spec.md").write_text(
        (d / "docs/spec.md").read_text().replace("<!-- spec: budget -->", "")),
    "a marker naming no subcommand": lambda d: _append(d / "docs/commands.md", "\n<!-- help: no-such-command -->\n"),
    "an included file that is gone": lambda d: (d / "bench/README.md").unlink(),
}


def test_the_copied_site_builds(tmp_path):
    """The control for the cases below: the copy builds until a defect is put in."""
    result = _build(_copy_site(tmp_path / "repo"), tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("defect", list(BROKEN))
def test_strict_build_fails_on(defect, tmp_path):
    config = _copy_site(tmp_path / "repo")
    BROKEN[defect](tmp_path / "repo")
    result = _build(config, tmp_path / "site")
    assert result.returncode != 0, f"built despite {defect}:\n{result.stdout}{result.stderr}"
