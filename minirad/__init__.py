"""minirad: deep learning from the inside, proved on chest-X-ray report writing.

The hand-written kernels are `minirad.kernels`: the source folder `kernels/` beside this one,
mapped to that name by pyproject.toml (`[tool.setuptools] package-dir`). Everything else here
builds on them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("minirad")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
