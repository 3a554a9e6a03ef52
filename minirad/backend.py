"""Which kernels backend the engine uses: `use_backend(name)`, MINIRAD_BACKEND, or "auto".

    import minirad
    minirad.backend.use_backend("numba")          # from now on
    with minirad.backend.use_backend("numpy"):     # only inside the block
        ...

"auto" (the default, also MINIRAD_BACKEND=auto) picks cupy on a machine with a CUDA GPU,
else numba, else numpy. The engine asks `active()` for the kernels on every call, so a switch
takes effect at once; the kernels themselves never know about the engine.
"""

from __future__ import annotations

import os

import kernels

AUTO_ORDER = ("cupy", "numba", "numpy")

_active: kernels.Backend | None = None


def resolve(name: str) -> str:
    """The concrete backend a name stands for ("auto" -> the best one available here)."""
    if name != "auto":
        return name
    for candidate in AUTO_ORDER:
        if kernels.why_unavailable(candidate) is None:
            return candidate
    return "numpy"


def active() -> kernels.Backend:
    """The kernels the engine calls now (chosen from MINIRAD_BACKEND on first use)."""
    global _active
    if _active is None:
        _active = kernels.get(resolve(os.environ.get("MINIRAD_BACKEND", "auto")))
    return _active


class _Switch:
    """Returned by use_backend: the switch is already made; `with` restores the previous one."""

    def __init__(self, previous: kernels.Backend | None):
        self._previous = previous

    def __enter__(self) -> kernels.Backend:
        return active()

    def __exit__(self, *exc) -> None:
        global _active
        _active = self._previous


def use_backend(name: str, **versions: str) -> _Switch:
    """Make backend `name` (with optional kernel versions) the active one.

    Usable as a statement (switches for good) or as a context manager (switches back on exit).
    Raises ValueError, naming the reason, when the backend cannot run here.
    """
    global _active
    previous = _active
    _active = kernels.get(resolve(name), **versions)
    return _Switch(previous)
