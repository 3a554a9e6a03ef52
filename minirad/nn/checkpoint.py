"""Checkpoints: a state_dict saved as an .npz file, and loaded back with every failure explained.

An .npz is a zip archive holding one .npy file per entry ("encoder.0.weight.npy"), readable by
`numpy.load` anywhere, without minirad or PyTorch. Nothing is pickled, in either direction: a
pickle can run code when it is loaded, and a checkpoint is a file that people pass around.

    save(model, "model.npz")          # atomic: the old file stays intact if this is interrupted
    load_into(model, "model.npz")     # ValueError "<file>: <first problem>" on any failure
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from minirad.autograd import to_host
from minirad.files import atomic_writer
from minirad.nn.module import Module

PathLike = str | os.PathLike


def _one_line(error: object) -> str:
    """An exception (or an OSError's strerror) as one line of text."""
    return " ".join(str(error).split()) or type(error).__name__


def save(module_or_state: Module | dict[str, np.ndarray], path: PathLike) -> None:
    """Write a Module's state_dict (or a name -> array dict) to `path` as an .npz archive.

    The archive is streamed into a temporary file in the same directory and then renamed over
    `path` (minirad.files.atomic_writer): a crash or a full disk mid-write leaves the previous
    checkpoint as it was, never half a file under the checkpoint's name.
    """
    state = module_or_state.state_dict() if isinstance(module_or_state, Module) else module_or_state
    # What np.savez does, written out; savez's keyword arguments would clash with an entry named
    # "file", and this way each failing entry can be named.
    with (
        atomic_writer(path) as file,
        zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive,
    ):
        for name, value in state.items():
            array = to_host(value)
            try:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
            except ValueError as error:  # object arrays: they would need a pickle
                raise ValueError(f"{path}: entry {name!r}: {_one_line(error)}") from None


def load(path: PathLike) -> dict[str, np.ndarray]:
    """name -> array for every entry of the .npz at `path` (no pickles are ever loaded).

    Raises ValueError "<path>: not a readable .npz checkpoint (<reason>)" for a missing file, a
    truncated or corrupt archive, a file of another kind, or an entry that cannot be read.
    """
    name = None
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as archive:
            state = {}
            for name in archive.files:  # entries are decompressed (and CRC-checked) here
                state[name] = archive[name]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        where = f"entry {name!r}: " if name is not None else ""
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ValueError(
            f"{path}: not a readable .npz checkpoint ({where}{_one_line(reason)})"
        ) from None
    return state


def load_into(module: Module, path: PathLike) -> None:
    """Load the checkpoint at `path` into `module`'s parameters.

    Names, shapes and dtypes must match the module exactly; otherwise ValueError, one line
    naming the file and the first entry that differs. The module is unchanged on failure.
    """
    module.load_state_dict(load(path), source=str(path))
