"""The output-path guard (issue 36, classes 1 and 5): no ``--out`` replaces what hpo-cls did not write, and a
failed write leaves the old file whole."""

from __future__ import annotations

import sqlite3

import pytest

from hpo_cls.errors import OutputError
from hpo_cls.outputs import PREDICTION_CSV, REPORT_HTML, atomic_write, check_output_file


def _sqlite(path):
    with sqlite3.connect(path) as db:
        db.execute("create table runs (id text)")
    return path


@pytest.mark.parametrize("kind", [PREDICTION_CSV, REPORT_HTML], ids=["csv", "html"])
def test_a_sqlite_database_is_refused_even_with_force(tmp_path, kind):
    store = _sqlite(tmp_path / "anything.csv")  # the name does not matter, the content does
    with pytest.raises(OutputError, match="SQLite database"):
        check_output_file(store, kind, force=True)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00", b"import os\nprint('code')\n", b"\xff\xfe\x00x"],
                         ids=["binary", "python", "not-utf8"])
def test_a_file_of_another_kind_is_refused_even_with_force(tmp_path, content):
    other = tmp_path / "prediction.csv"
    other.write_bytes(content)
    with pytest.raises(OutputError, match="not a prediction CSV"):
        check_output_file(other, PREDICTION_CSV, force=True)
    assert other.read_bytes() == content


def test_a_file_of_the_same_kind_not_written_by_hpo_cls_needs_force(tmp_path):
    theirs = tmp_path / "p.csv"
    theirs.write_text("id,label\n1,cat\n")
    with pytest.raises(OutputError, match="did not write; pass force"):
        check_output_file(theirs, PREDICTION_CSV)
    assert check_output_file(theirs, PREDICTION_CSV, force=True) == theirs
    page = tmp_path / "r.html"
    page.write_text("<!DOCTYPE html><html><title>mine</title></html>")
    with pytest.raises(OutputError, match="did not write"):
        check_output_file(page, REPORT_HTML)


def test_its_own_files_missing_and_empty_ones_are_written(tmp_path):
    ours = tmp_path / "prediction.csv"
    ours.write_text("image_name,pred_label\na,1\n")
    empty = tmp_path / "empty.html"
    empty.write_bytes(b"")
    check_output_file(ours, PREDICTION_CSV)
    check_output_file(empty, REPORT_HTML)
    check_output_file(tmp_path / "new" / "deeper" / "r.html", REPORT_HTML)
    assert not (tmp_path / "new").exists(), "the check creates nothing"


@pytest.mark.parametrize("where", ["folder", "under-a-file", "proc"])
def test_paths_that_cannot_take_the_file_are_refused(tmp_path, where):
    (tmp_path / "a-file").write_text("x")
    path = {"folder": tmp_path, "under-a-file": tmp_path / "a-file" / "out.csv", "proc": "/proc/x"}[where]
    with pytest.raises(OutputError, match=r"\bout\b"):
        check_output_file(path, PREDICTION_CSV)


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "prediction.csv"
    path.write_text("image_name,pred_label\nold,1\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("image_name,pred_label\nnew,")
            raise RuntimeError("disk full")
    assert path.read_text() == "image_name,pred_label\nold,1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["prediction.csv"], "no partial file left"
    with atomic_write(path) as f:
        f.write("image_name,pred_label\nnew,2\n")
    assert path.read_text() == "image_name,pred_label\nnew,2\n"
