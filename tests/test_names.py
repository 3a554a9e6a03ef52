"""One name for each thing: the version vocabulary is stated once, and the files keep to it.

The docstring of `kernels` (kernels/__init__.py) says once what each version name means and
tabulates which backend holds which version. These tests read both back and compare them with
the VERSIONS tables of the backend files themselves, so neither can drift from the code.
"""

from __future__ import annotations

import importlib
import re
from types import SimpleNamespace

import numpy as np
import pytest

import kernels

DOC = kernels.__doc__ or ""
TABLE_START, TABLE_END = "    op folder  ", "    (* the default)"


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
    module = importlib.import_module(f"kernels.{family}.{kernels.BACKENDS[backend].file}")
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
