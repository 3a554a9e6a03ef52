"""`minirad data synth`: R2Gen layout, byte-identical per seed, nothing written half."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

pytest.importorskip("minirad.data.phantom")

from minirad.cli import main  # noqa: E402
from minirad.data.datasets import load_r2gen_annotation  # noqa: E402
from minirad.data.labeler import label_report  # noqa: E402
from minirad.data.synth import synthesize_dataset  # noqa: E402


def files_of(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = synthesize_dataset(tmp_path / "a", n=12, seed=3, size=64)
    b = synthesize_dataset(tmp_path / "b", n=12, seed=3, size=64)
    c = synthesize_dataset(tmp_path / "c", n=12, seed=4, size=64)
    assert files_of(a) == files_of(b)
    assert files_of(a) != files_of(c)


def test_r2gen_layout_with_ground_truth_the_labeler_reads_back(tmp_path):
    root = synthesize_dataset(tmp_path / "d", n=20, seed=0, size=64)
    annotation = json.loads((root / "annotation.json").read_text())
    assert set(annotation) == {"train", "val", "test"}
    items = [item for split in annotation.values() for item in split]
    assert [len(annotation[s]) for s in ("train", "val", "test")] == [14, 2, 4]
    for item in items:
        assert set(item) == {"id", "report", "image_path", "split", "findings"}
        assert (root / item["image_path"][0]).is_file()
        labels = label_report(item["report"])
        present = {f["name"] for f in item["findings"]}
        assert {n for n, v in labels.items() if v == 1} == present, item["report"]
    assert (root / "contact_sheet.png").stat().st_size > 0


def test_the_dataset_loader_reads_a_synthesized_dataset_back(tmp_path):
    root = synthesize_dataset(tmp_path / "e", n=10, seed=0, size=64)
    records = load_r2gen_annotation(root / "annotation.json")
    annotation = json.loads((root / "annotation.json").read_text())
    items = [item for split in ("train", "val", "test") for item in annotation[split]]
    assert [r.id for r in records] == [item["id"] for item in items]
    assert [r.findings for r in records] == [item["findings"] for item in items]
    assert all(r.image_paths[0].is_file() for r in records)


def test_cli_refuses_a_non_empty_out_dir_with_one_line(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    assert main(["data", "synth", "--n", "2", "--out", str(tmp_path / "full")]) == 1
    err = capsys.readouterr().err.strip()
    assert "full" in err and "\n" not in err
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no staging left behind


def test_cli_writes_a_dataset(tmp_path, capsys):
    assert (
        main(
            [
                "data",
                "synth",
                "--n",
                "3",
                "--seed",
                "1",
                "--size",
                "64",
                "--out",
                str(tmp_path / "ds"),
            ]
        )
        == 0
    )
    assert "wrote 3 phantoms" in capsys.readouterr().out
    assert (tmp_path / "ds" / "annotation.json").is_file()


def test_the_dataset_folder_gets_the_umask_mode(tmp_path):
    original = os.umask(0o027)
    try:
        root = synthesize_dataset(tmp_path / "shared", n=2, seed=0, size=64)
    finally:
        os.umask(original)
    assert stat.S_IMODE(root.stat().st_mode) == 0o750  # 0o777 less the umask, not 0o700


@pytest.mark.skipif(os.name != "posix", reason="pids are POSIX's")
def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    staging = tmp_path / f".ds.{int(dead.stdout)}.0123abcd.minirad-tmp"  # as a SIGKILL leaves it
    (staging / "images").mkdir(parents=True)
    (staging / "images" / "phantom-0-000000.png").write_bytes(b"half")
    synthesize_dataset(tmp_path / "ds", n=2, seed=0, size=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_the_library_names_its_argument_and_the_cli_its_flag(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^n: need at least one image, got 0$"):
        synthesize_dataset(tmp_path / "zero", n=0, seed=0)
    assert main(["data", "synth", "--n", "0", "--out", str(tmp_path / "zero")]) == 1
    assert capsys.readouterr().err.strip() == "minirad: error: --n: need at least one image, got 0"


@pytest.mark.parametrize("size", [0, 7, 20000])
def test_an_image_size_out_of_bounds_is_refused_before_any_work(tmp_path, size, capsys):
    out = tmp_path / "d"
    assert main(["data", "synth", "--n", "2", "--size", str(size), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"minirad: error: --size: must be an integer from 32 to 1024 pixels, got {size}"
    )
    assert not out.exists()
