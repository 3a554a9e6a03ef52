"""Checkpoints: a state_dict saved as an .npz file, and loaded back with every failure explained.

An .npz is a zip archive holding one .npy file per entry ("encoder.0.weight.npy"), readable by
`numpy.load` anywhere, without minirad or PyTorch. Nothing is pickled, in either direction: a
pickle can run code when it is loaded, and a checkpoint is a file that people pass around.

    save(model, "model.npz")          # atomic: the old file stays intact if this is interrupted
    load_into(model, "model.npz")     # ValueError "<file>: <first problem>" on any failure
"""

from __future__ import annotations

import math
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


# A checkpoint names the size of each entry in its zip directory, before any entry is read: an
# .npz of a few kilobytes can hold a "zip bomb", an entry that inflates to gigabytes. Refuse a
# checkpoint whose entries add up to more than this, uncompressed. (The bundled report model is
# 5 MB; a model of 250 million float32 parameters would be 1 GiB.)
MAX_UNCOMPRESSED_BYTES = 1 << 30

ZIP_MAGIC, NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"


def load(path: PathLike) -> dict[str, np.ndarray]:
    """name -> array for every entry of the .npz at `path` (no pickles are ever loaded).

    Raises ValueError "<path>: not a readable .npz checkpoint (<reason>)" for a missing file, a
    truncated or corrupt archive, a file of another kind, an entry that cannot be read, or
    entries larger than MAX_UNCOMPRESSED_BYTES (checked from the zip directory, before reading).

    The archive is read with zipfile, entry by entry, rather than by numpy.load: numpy.load
    calls any file that is neither .npy nor .npz "pickled data" and advises allow_pickle=True,
    which is exactly what must not be done with a file from elsewhere.
    """
    name = None
    try:
        _check_kind(path)
        with zipfile.ZipFile(path) as archive:
            entries = _entries_within_bounds(archive)
            state = {}
            for name, info in entries.items():  # decompressed (and CRC-checked) here
                state[name] = _read_entry(archive, info)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        where = f"entry {name!r}: " if name is not None else ""
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ValueError(
            f"{path}: not a readable .npz checkpoint ({where}{_one_line(reason)})"
        ) from None
    return state


def _check_kind(path: PathLike) -> None:
    """ValueError unless the file starts as a zip archive does (an .npz is one)."""
    with open(path, "rb") as file:
        start = file.read(6)
    if start.startswith(NPY_MAGIC):
        raise ValueError("a single .npy array, not an .npz archive")
    if not start.startswith(ZIP_MAGIC):
        raise ValueError("not a zip archive, as an .npz file is")


def _entries_within_bounds(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """name -> ZipInfo of each .npy entry, once their uncompressed sizes are known to fit."""
    entries, total = {}, 0
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ValueError(f"entry {info.filename!r} is not an .npy array")
        total += info.file_size
        entries[info.filename[: -len(".npy")]] = info
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ValueError(
            f"its entries hold {total / 2**30:.1f} GiB uncompressed, more than the "
            f"{MAX_UNCOMPRESSED_BYTES / 2**30:.1f} GiB a checkpoint may (a zip bomb?)"
        )
    return entries


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy entry, once its header's shape is known to fit in the entry's bytes.

    The header declares the shape; numpy allocates shape x itemsize bytes before it reads any.
    A header that declares a terabyte over a few bytes of data is refused here instead.
    """
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        declared = math.prod(shape) * dtype.itemsize
        if dtype.hasobject:
            raise ValueError("an object array (it would need a pickle)")
        if declared > info.file_size - member.tell():
            raise ValueError(
                f"its header declares shape {shape} ({declared} bytes), "
                f"the entry holds {info.file_size - member.tell()}"
            )
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def load_into(module: Module, path: PathLike) -> None:
    """Load the checkpoint at `path` into `module`'s parameters.

    Names, shapes and dtypes must match the module exactly; otherwise ValueError, one line
    naming the file and the first entry that differs. The module is unchanged on failure.
    """
    module.load_state_dict(load(path), source=str(path))
