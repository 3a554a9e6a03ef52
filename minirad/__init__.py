"""minirad: deep learning from the inside, proved on chest-X-ray report writing.

The hand-written kernels live in the sibling package `kernels`; this package builds on them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("minirad")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
