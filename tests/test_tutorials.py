"""The tutorials' form (nbmake executes them; see pyproject's addopts): stored without outputs,
numbered 01..11 without gaps, each with a title, a figure and a checkable exercise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_eleven_tutorials_are_there():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(1, 12)), [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {i}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_figure_and_exercise(path):
    all_cells = cells(path)
    number = int(path.name[:2])
    assert re.match(rf"# {number:02d} · ", source(all_cells[0])), "the first cell is the title"
    code = [source(c) for c in all_cells if c["cell_type"] == "code"]
    assert any("plt." in c or ".imshow(" in c or ".plot(" in c for c in code), "no figure"
    exercise = [
        i
        for i, c in enumerate(all_cells)
        if c["cell_type"] == "markdown" and source(c).lstrip().startswith("## Exercise")
    ]
    assert exercise, "no '## Exercise' cell"
    after = [source(c) for c in all_cells[exercise[0] + 1 :] if c["cell_type"] == "code"]
    assert any("assert" in c for c in after[:3]), "the exercise has no checking cell"
