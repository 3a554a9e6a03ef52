"""minirad.files: files and folders written whole, with the usual permissions, and no leftovers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minirad.files import (
    atomic_directory,
    atomic_writer,
    remove_stale_temporaries,
    temporary_name,
    write_atomically,
    write_set_atomically,
)
from minirad.nn import checkpoint

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="pids and SIGKILL are POSIX's")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """os.umask, with the process's own umask restored after the test."""
    original = os.umask(0o022)  # reading the umask means setting it
    os.umask(original)
    yield os.umask
    os.umask(original)


def a_dead_pid() -> int:
    """The pid of a process that has run and been reaped (so it runs no more)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that imports this checkout's minirad."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".minirad-tmp"))


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path, umask):
    umask(0o027)
    path = tmp_path / "report.txt"
    write_atomically(path, b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]
    assert mode_of(path) == 0o640  # 0o666 less the umask, as open() gives (not mkstemp's 0o600)


def test_an_interrupted_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "model.npz"
    write_atomically(path, b"the old checkpoint")
    with pytest.raises(RuntimeError, match="disk full"), atomic_writer(path) as file:
        file.write(b"half of the new one")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"the old checkpoint"
    assert leftovers(tmp_path) == []
    # The same for a checkpoint whose archive fails half way (an entry needs a pickle).
    checkpoint.save({"a": np.arange(3)}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="'names'"):
        checkpoint.save({"a": np.arange(4), "names": np.array([None], dtype=object)}, path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@posix_only
def test_a_killed_writer_leaves_the_old_file_and_the_next_write_removes_its_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"the old checkpoint")
    killed = run_python(
        "import os, signal, sys\n"
        "from minirad.files import atomic_writer\n"
        "with atomic_writer(sys.argv[1]) as file:\n"
        "    file.write(b'half of the new one')\n"
        "    file.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n",
        str(path),
    )
    assert killed.returncode == -9, killed.stderr
    assert path.read_bytes() == b"the old checkpoint"
    (stale,) = leftovers(tmp_path)
    assert stale.startswith(".model.npz.")
    # This process has not written into tmp_path yet: its first write there sweeps it.
    write_atomically(tmp_path / "other.txt", b"x")
    assert leftovers(tmp_path) == []
    assert path.read_bytes() == b"the old checkpoint"


@posix_only
def test_only_our_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = a_dead_pid()
    stale_file = tmp_path / f".model.npz.{dead}.0123abcd.minirad-tmp"
    stale_folder = tmp_path / f".phantoms.{dead}.89abcdef.minirad-tmp"
    live = temporary_name(tmp_path / "model.npz")  # this process's pid: a live writer
    foreign = [tmp_path / f".model.npz.{dead}.tmp", tmp_path / f"notes.{dead}.0123abcd.txt"]
    for path in (stale_file, live, *foreign):
        path.write_bytes(b"x")
    (stale_folder / "images").mkdir(parents=True)
    (stale_folder / "images" / "a.png").write_bytes(b"x")

    removed = remove_stale_temporaries(tmp_path)

    assert sorted(removed) == sorted([stale_file, stale_folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, *foreign))


def test_a_temporary_name_is_recognisable_and_fresh_each_time(tmp_path):
    a, b = temporary_name(tmp_path / "x.npz"), temporary_name(tmp_path / "x.npz")
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(f".x.npz.{os.getpid()}.") and a.name.endswith(".minirad-tmp")


def test_an_atomic_directory_appears_whole_with_the_umask_mode(tmp_path, umask):
    umask(0o027)
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()  # nothing under the final name yet
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert mode_of(tmp_path / "out") == 0o750
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "half") as staging:
        (staging / "a.txt").write_text("a")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_set_of_files_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    old = {tmp_path / f"r.{suffix}": b"old" for suffix in ("txt", "json", "png")}
    for path, data in old.items():
        path.write_bytes(data)
    new = {path: b"new " + path.suffix.encode() for path in old}
    real_fsync = os.fsync
    fsyncs = []

    def disk_full_at_the_third(fd):
        fsyncs.append(fd)
        if len(fsyncs) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_at_the_third)
    with pytest.raises(OSError, match="No space left"):
        write_set_atomically(new)
    assert {path: path.read_bytes() for path in old} == old  # not one file changed
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(os, "fsync", real_fsync)

    real_replace, renamed = os.replace, []

    def ctrl_c_after_the_first_rename(source, target):
        real_replace(source, target)
        renamed.append(target)
        if len(renamed) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", ctrl_c_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt):
        write_set_atomically(new)
    assert {path: path.read_bytes() for path in old} == new  # the whole set, then the stop
    assert leftovers(tmp_path) == []
