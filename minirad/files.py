"""Writing files whole: a reader never finds half a file under the final name."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    os.replace is atomic within one file system, so an interrupted run leaves either the old file
    or the new one, never a truncated one. (Checkpoints stream their archive and have their own
    writer: minirad.nn.checkpoint.save.)
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(temporary)
