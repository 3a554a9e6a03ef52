"""`minirad report` on a batch with bad inputs in it: one line each, and nothing lost (issue 15).

Every input's output set (.txt .json .html .png) is written whole or not at all; a bad input,
a name that matplotlib would parse as math, a full disk, or the input gate stops that input
alone; Ctrl-C stops the batch between two whole sets. Uses the bundled weights, greedy decoding.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from minirad.cli import main
from minirad.data.phantom import synthesize
from minirad.report.pipeline import default_model_path

pytestmark = pytest.mark.skipif(
    not default_model_path().is_file(), reason="the bundled weights are not built yet"
)
SET = (".txt", ".json", ".html", ".png")


@pytest.fixture(scope="module")
def phantom():
    ((image, _),) = synthesize(1, seed=99, size=128)
    return image


def report(*arguments) -> int:
    return main(["report", "--beam", "1", *map(str, arguments)])


def outputs(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def whole_set(stem) -> set[str]:
    return {stem + suffix for suffix in SET}


def test_same_names_in_different_folders_keep_their_relative_paths(tmp_path, phantom, capsys):
    for folder in ("p1", "p2", "p3"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        Image.fromarray(phantom).save(tmp_path / "in" / folder / "image.png")
    out = tmp_path / "out"
    assert report(tmp_path / "in", "--out", out) == 0
    assert outputs(out) == whole_set("p1/image") | whole_set("p2/image") | whole_set("p3/image")
    for folder in ("p1", "p2", "p3"):
        result = json.loads((out / folder / "image.json").read_text())
        assert result["input"]["file"] == f"{folder}/image.png"  # relative to the argument
    capsys.readouterr()


def test_an_empty_folder_is_one_line_and_the_good_file_is_still_reported(tmp_path, phantom, capsys):
    (tmp_path / "empty").mkdir()
    Image.fromarray(phantom).save(tmp_path / "good.png")
    assert report(tmp_path / "empty", tmp_path / "good.png", "--out", tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == (
        f"minirad: error: {tmp_path / 'empty'}: no PNG, JPEG, TIFF or DICOM file inside"
    )
    assert outputs(tmp_path / "out") == whole_set("good")


def test_names_with_math_text_or_bytes_that_are_not_utf8_are_reported(tmp_path, phantom, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(phantom).save(folder / "$\\frac{a}{$.png")  # matplotlib's math text
    latin1 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not UTF-8
    Image.fromarray(phantom).save(os.path.join(folder, latin1))
    out = tmp_path / "out"
    assert report(folder, "--out", out, "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(r["input"]["file"] for r in results) == ["$\\frac{a}{$.png", "caf\ufffd.png"]
    assert len(outputs(out)) == 8
    assert outputs(out) >= whole_set("$\\frac{a}{$")


def test_a_full_disk_loses_that_report_whole_and_the_batch_goes_on(
    tmp_path, phantom, capsys, monkeypatch
):
    for name in ("a.png", "b.png"):
        Image.fromarray(phantom).save(tmp_path / name)
    real_fsync = os.fsync

    def disk_full_on_a_html(fd):
        if "a.html" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_a_html)
    out = tmp_path / "out"
    assert report(tmp_path / "a.png", tmp_path / "b.png", "--out", out) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[0] == (
        f"minirad: error: {tmp_path / 'a.png'}: its report was not written to {out}: "
        "No space left on device"
    )
    assert outputs(out) == whole_set("b")  # nothing of a's set, no temporary left behind


def test_ctrl_c_stops_between_two_whole_sets(tmp_path, phantom, capsys, monkeypatch):
    import minirad.report.render as render

    for name in ("a.png", "b.png"):
        Image.fromarray(phantom).save(tmp_path / name)
    real_to_png = render.to_png
    calls = []

    def interrupted_on_the_second(report, *args, **kwargs):
        calls.append(report.source)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_to_png(report, *args, **kwargs)

    monkeypatch.setattr(render, "to_png", interrupted_on_the_second)
    out = tmp_path / "out"
    assert report(tmp_path / "a.png", tmp_path / "b.png", "--out", out) == 130
    assert outputs(out) == whole_set("a")  # b's .txt .json .html are not there without its .png
    assert "interrupted after 1 of 2 inputs" in capsys.readouterr().err


def test_the_gate_refuses_a_ct_in_one_line_and_force_reports_it_marked(tmp_path, capsys):
    ct = get_testdata_file("CT_small.dcm")
    assert report(ct) == 1
    assert capsys.readouterr().err.strip() == (
        f"minirad: error: {ct}: refused: Modality CT: not a radiograph (CR or DX) "
        "(--force reports on it anyway)"
    )
    out = tmp_path / "out"
    assert report(ct, "--force", "--out", out) == 0
    forced = "Modality CT: not a radiograph (CR or DX)"
    assert json.loads((out / "CT_small.json").read_text())["forced"] == [forced]
    mark = f"FORCED past the input gate: {forced}"
    assert mark in (out / "CT_small.txt").read_text()
    assert mark in (out / "CT_small.html").read_text()
    assert mark in capsys.readouterr().out
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(blank)
    assert report(blank, "--force") == 1  # no picture to read: never forced
    assert "refused: constant or near-constant pixels" in capsys.readouterr().err
