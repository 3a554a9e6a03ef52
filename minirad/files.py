"""Writing files and folders whole: a reader never finds half of one under the final name.

    write_atomically("report.txt", text.encode())      # bytes in memory
    with atomic_writer("model.npz") as file:            # or streamed: file is a binary file
        file.write(...)
    with atomic_directory("phantoms") as staging:       # a folder, filled and then renamed
        (staging / "annotation.json").write_text(...)
    write_set_atomically({Path("r.txt"): text, Path("r.png"): png})  # all of them, or none

Each writes to a temporary name in the same folder, makes the bytes durable (fsync), and renames
the temporary over the final name. os.replace is atomic within one file system, so an
interrupted run leaves either the old file or the new one, never a truncated one.

A process killed mid-write (SIGKILL, a power cut) cannot remove its temporary. Temporaries are
named `.<final name>.<pid>.<random>.minirad-tmp`, and the first write of a process into a folder
removes the ones there whose writer process is gone (`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".minirad-tmp"
_TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.minirad-tmp$")


def temporary_name(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary path beside `path`: `.<name>.<pid>.<8 random hex>.minirad-tmp`.

    The pid says which process writes it (so that a later run can tell a dead writer's leftover
    from a live write); the random part keeps two writers of one process apart.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` whole (see `atomic_writer`)."""
    with atomic_writer(path) as file:
        file.write(data)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content into; it replaces `path` when the block ends.

    On leaving the block normally the bytes are flushed and fsynced, the temporary is renamed
    over `path`, and the folder is fsynced (so the rename itself survives a power cut). On an
    exception the temporary is removed and `path` is left as it was. The file gets the usual
    permissions (0o666 less the umask), as a file written with open() would.
    """
    path = Path(path)
    _sweep_once(path.parent)
    temporary, handle = _create_file(path)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """An empty staging folder beside `path`; it becomes `path` when the block ends.

    `path` must not exist, or be an empty folder (rename cannot replace a full one). On an
    exception the staging folder and everything in it are removed. The folder gets the usual
    permissions (0o777 less the umask), not tempfile.mkdtemp's private 0o700.

    The files inside are not fsynced one by one: a dataset folder holds thousands of them, and
    it can be written again from its seed; the rename and its folder are made durable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    staging = _create_directory(path)
    try:
        yield staging
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
        _fsync_directory(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_set_atomically(files: Mapping[Path, bytes]) -> None:
    """Write several files as one set: each path gets its bytes, or (on an exception) none does.

    A report is four files (.txt .json .html .png) that describe one image; three of them without
    the fourth are a broken set. So every file is first written whole to its temporary and
    fsynced, and only then are the temporaries renamed, one after the other, to their names. A
    failure while writing (a full disk) removes the temporaries and changes nothing. Ctrl-C
    during the renames (a few microseconds) is held until the last one is done, so that the
    set is whole; an OSError from a rename itself, which a file system almost never gives, can
    leave the set part new.
    """
    staged: list[tuple[Path, Path]] = []  # (temporary, final path)
    try:
        for path, data in files.items():
            path = Path(path)
            _sweep_once(path.parent)
            temporary, handle = _create_file(path)
            staged.append((temporary, path))
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
    except BaseException:
        for temporary, _ in staged:
            with contextlib.suppress(OSError):
                os.remove(temporary)
        raise
    _rename_all(staged)


def _rename_all(staged: list[tuple[Path, Path]]) -> None:
    """Rename each temporary to its final path; a KeyboardInterrupt waits for the last one."""
    interrupted: KeyboardInterrupt | None = None
    for temporary, path in staged:
        try:
            os.replace(temporary, path)
        except KeyboardInterrupt as error:  # Ctrl-C here: finish the set, then stop
            interrupted = error
            if os.path.lexists(temporary):  # the interrupt came before the rename, not after
                os.replace(temporary, path)
    for folder in {path.parent for _, path in staged}:
        _fsync_directory(folder)
    if interrupted is not None:
        raise interrupted


def _create_file(path: Path) -> tuple[Path, int]:
    # Not tempfile.mkstemp: its files are private (mode 0o600) and the final file would keep
    # that mode after the rename. os.open with 0o666 lets the umask decide, as open() does;
    # O_EXCL makes the name ours alone (a clash only draws another random name).
    while True:
        temporary = temporary_name(path)
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _create_directory(path: Path) -> Path:
    while True:  # as _create_file: os.mkdir's 0o777 less the umask, not mkdtemp's 0o700
        staging = temporary_name(path)
        try:
            os.mkdir(staging, 0o777)
            return staging
        except FileExistsError:
            continue


def _fsync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; elsewhere a folder cannot be opened)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # some file systems refuse to sync a folder: no matter
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


# ---------------------------------------------------------------------------------------------
# Leftovers of killed writers


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries in `folder` (files or staging folders) whose writer is gone.

    Only names of our pattern (`temporary_name`) are touched, and only when the process whose
    pid is in the name no longer runs. Why not also "older than some age": a live writer is
    never robbed of its temporary that way (a dataset's staging folder can be minutes old and
    still being filled), and a killed run's leftover goes at the next run, not a day later. A
    pid that the system has reused for another process only keeps a leftover until that process
    ends. (This assumes that the writers of one folder run on this machine, in this pid
    namespace, as minirad's do: one process, or rank 0 under MPI, writes each output.)
    Returns the paths removed.
    """
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY_NAME.match(entry.name)
            if match is None or _process_is_running(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.remove(entry.path)
                removed.append(Path(entry.path))
    return removed


def _process_is_running(pid: int) -> bool:
    """Whether process `pid` exists here. Unknown (not POSIX) counts as running: keep the file."""
    if os.name != "posix":
        return True  # on Windows os.kill(pid, 0) would terminate the process, not probe it
    try:
        os.kill(pid, 0)  # signal 0: no signal is sent, only the existence check is made
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to another user
    return True


# Each folder is swept at this process's first write into it: a writer that died before this
# process started left its temporaries there already, and a reports folder with thousands of
# files would otherwise be listed again for every file written into it.
_swept: set[Path] = set()


def _sweep_once(folder: Path) -> None:
    key = folder.resolve()
    if key not in _swept:
        _swept.add(key)
        remove_stale_temporaries(key)
