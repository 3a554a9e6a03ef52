"""minirad installs exactly one top-level import name, `minirad`.

The kernels/ folder sits at the top of the source tree but installs as `minirad.kernels`
(pyproject.toml, `[tool.setuptools] package-dir`): a package called `kernels` already exists on
PyPI, and two distributions that install the same top-level name overwrite each other's files.
These tests read the distribution's own metadata, build the wheel that `pip install .` would
install and list its top-level names, and make sure no source still imports a top-level
`kernels` (which would work by accident in a source checkout, from the repository root, and
fail everywhere else).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib  # Python >= 3.11
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_KERNELS_IMPORT = re.compile(r"^\s*(?:import|from)\s+kernels\b", re.M)


def test_the_installed_distribution_names_one_top_level_package():
    top_level = metadata.distribution("minirad").read_text("top_level.txt")
    assert top_level is not None and top_level.split() == ["minirad"], top_level


def test_the_wheel_installs_only_minirad(tmp_path):
    """`pip install .` installs the wheel built here: its top-level entries are the package and
    its metadata, and the kernels (with their .cu sources) sit inside the package."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("minirad", "kernels"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("minirad-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert {name.split("/")[0] for name in names} == {"minirad", dist_info}
    assert "minirad/kernels/conv2d/conv2d.cu" in names
    assert "minirad/kernels/runtime/cuda_emu.h" in names
    assert "minirad/weights/default.npz" in names


def test_pyproject_lists_every_package_folder():
    """The package list is explicit (a find directive cannot rename kernels/): every folder
    with an __init__.py is in it under its installed name, and nothing else is."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(("minirad", *path.parent.relative_to(ROOT / "minirad").parts))
        for path in (ROOT / "minirad").rglob("__init__.py")
    } | {
        ".".join(("minirad.kernels", *path.parent.relative_to(ROOT / "kernels").parts))
        for path in (ROOT / "kernels").rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk
    assert config["package-dir"]["minirad.kernels"] == "kernels"


def _python_sources() -> dict[str, str]:
    """Every Python source a user or CI runs: modules, tests, benchmarks, the notebooks' code
    cells and the README's python blocks, by a name for the failure message."""
    sources = {}
    for folder in ("minirad", "kernels", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            sources[str(path.relative_to(ROOT))] = path.read_text()
    for path in (ROOT / "tutorials").glob("*.ipynb"):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                sources[f"{path.name} cell {i}"] = "".join(cell["source"])
    readme = (ROOT / "README.md").read_text()
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", readme, re.S)):
        sources[f"README.md python block {i}"] = block
    return sources


def test_nothing_imports_a_top_level_kernels_package():
    offenders = [
        name for name, text in _python_sources().items() if TOP_LEVEL_KERNELS_IMPORT.search(text)
    ]
    assert not offenders, f"import minirad.kernels instead of kernels in: {offenders}"


def test_no_second_copy_of_the_kernels_is_imported():
    """Run from the repository root, where a folder called kernels/ is importable by accident:
    the library and a compiled kernel (Numba's on-disk cache records the module's name) must
    not import the kernels under the old top-level name, a second copy of every module."""
    program = (
        "import sys, numpy as np\n"
        "import minirad.cli, minirad.nn, minirad.report.pipeline\n"
        "from minirad import kernels\n"
        "ops = kernels.get('numba')\n"
        "ops.linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.ones(4))\n"
        "old = sorted(m for m in sys.modules if m.split('.')[0] == 'kernels')\n"
        "assert not old, old\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
