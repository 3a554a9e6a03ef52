"""The softmax family's layout on the host: any axis becomes the last axis of contiguous rows.

Every softmax kernel, of every backend and version, normalises rows (R, L). The host moves the
axis to normalise last, flattens the other axes into the R rows and copies them contiguous (the
kernels index flat rows), then moves the result back:

    x (..., L along axis, ...)  --as_rows-->  (R, L)  --kernel-->  (R, L)  --from_rows-->  like x

The same two functions serve NumPy arrays (CPU, simulator, emulation) and CuPy arrays (GPU):
the caller passes its array module `xp`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def as_rows(xp: ModuleType, x: Any, axis: int) -> Any:
    """Move `axis` last and flatten the rest: (R, L) contiguous rows."""
    if _is_last(x, axis):  # the common case (logits (B, V)): no move, no copy if contiguous
        return xp.ascontiguousarray(x).reshape(-1, x.shape[-1])
    moved = xp.moveaxis(x, axis, -1)
    return xp.ascontiguousarray(moved).reshape(-1, moved.shape[-1])


def from_rows(xp: ModuleType, rows: Any, like: Any, axis: int) -> Any:
    """Inverse of as_rows for an output shaped like `like`."""
    if _is_last(like, axis):
        return rows.reshape(like.shape)
    moved_shape = xp.moveaxis(like, axis, -1).shape
    return xp.ascontiguousarray(xp.moveaxis(rows.reshape(moved_shape), -1, axis))


def _is_last(x: Any, axis: int) -> bool:
    """True if `axis` (negative or not) is x's last axis. moveaxis would be a no-op there, but
    it costs about 10 us a call: a greedy decoding step makes three."""
    return axis in (-1, x.ndim - 1)
