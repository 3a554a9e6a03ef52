"""One name for each thing: the version vocabulary and the index notation are stated once.

The docstring of `kernels` (kernels/__init__.py) says once what each version name means,
tabulates which backend holds which version, and ends with the legend of index letters. These
tests read them back and compare them with the VERSIONS tables of the backend files, and the
legend with the copy tutorial 01 shows, so none of them can drift.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minirad import kernels

DOC = kernels.__doc__ or ""
TABLE_START, TABLE_END = "    op folder  ", "    (* the default)"
TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"


def vocabulary() -> set[str]:
    """The version names the docstring defines: the first word of each entry of 'Versions.'"""
    section = DOC[DOC.index("\nVersions.") : DOC.index(TABLE_START)]
    return set(re.findall(r"^    ([a-z0-9]+) {2,}\S", section, re.M))


def table() -> dict[tuple[str, str], tuple[tuple[str, ...], str]]:
    """(op folder, backend) -> (versions, default), as the docstring's table says."""
    lines = DOC[DOC.index(TABLE_START) : DOC.index(TABLE_END)].splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())[1:]
    rows = {}
    for line in lines[1:]:
        family, *cells = re.split(r"\s{2,}", line.strip())
        for backends, cell in zip(header, cells, strict=True):
            names = [name.strip() for name in cell.split(",")]
            default = next(name.rstrip("*") for name in names if name.endswith("*"))
            for backend in backends.split(", "):
                rows[family, backend] = (tuple(name.rstrip("*") for name in names), default)
    return rows


def file_versions(family: str, backend: str) -> tuple[tuple[str, ...], str]:
    """(the version names, the default) of backend's file in op folder `family`."""
    module = importlib.import_module(f"minirad.kernels.{family}.{kernels.BACKENDS[backend].file}")
    if hasattr(module, "make_versions"):  # the CUDA C host files build their table at run time
        versions = module.make_versions(SimpleNamespace(xp=np))
    else:
        versions = module.VERSIONS
    return tuple(versions), module.DEFAULT_VERSION


def every_file() -> list[tuple[str, str]]:
    return [(family, backend) for family in kernels.FAMILIES for backend in kernels.BACKENDS]


@pytest.mark.parametrize(("family", "backend"), every_file())
def test_the_docstring_table_is_the_files_table(family, backend):
    assert table()[family, backend] == file_versions(family, backend), (
        f"kernels/__init__.py's table of versions disagrees with kernels/{family}/"
        f"{kernels.BACKENDS[backend].file}.py"
    )


def test_every_version_name_is_defined_once_and_used():
    used = {name for key in every_file() for name in file_versions(*key)[0]}
    assert used <= vocabulary(), f"not defined in kernels/__init__.py: {used - vocabulary()}"
    assert vocabulary() <= used, f"defined but used by no file: {vocabulary() - used}"


def notation() -> str:
    """The legend of index letters that closes the docstring of `kernels`."""
    return DOC[DOC.index("\nNotation.") + 1 :].rstrip()


def test_tutorial_01_shows_the_same_notation_as_kernels():
    notebook = json.loads((TUTORIALS / "01_tour.ipynb").read_text(encoding="utf-8"))
    sources = ["".join(cell["source"]) for cell in notebook["cells"]]
    blocks = [re.findall(r"```text\n(Notation\..*?)\n```", source, re.S) for source in sources]
    shown = [block for found in blocks for block in found]
    assert len(shown) == 1, "tutorial 01 must show the notation in one ```text block"
    assert shown[0] == notation(), "tutorial 01's notation differs from kernels' docstring"
