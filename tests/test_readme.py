"""The README's code runs (the docs are tested, as tinygrad and d2l do it).

Every ```python block of README.md is executed, in order, in a fresh directory that holds the
`images/` folder the training example reads. The set-up commands themselves are run by CI:
.ci/run executes the README's test command line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from minirad import backend
from test_classifier import write_disc_folder

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python blocks"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path):
    write_disc_folder(tmp_path / "images", per_class=20, seed=0)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with backend.use_backend("numpy"):  # restores the engine's backend afterwards
            exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {})
    finally:
        os.chdir(cwd)
