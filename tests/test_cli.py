"""The command line: exit codes and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minirad import __version__
from minirad.cli import main


def test_bare_command_prints_version_and_backends(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert f"minirad {__version__}" in out
    assert "numpy" in out


def test_doctor_reports_versions_blas_and_every_backend(capsys):
    from minirad import kernels

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for label in ("Python", "numpy", "numba", "cupy", "BLAS", "CUDA simulator"):
        assert label in out, f"doctor does not report {label}"
    for name in kernels.BACKENDS:
        assert f"backend {name}" in out


def test_unknown_command_exits_non_zero_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "minirad.cli", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([flag])
    assert exit_info.value.code == 0


def test_doctor_and_the_summary_agree_on_backends_in_fresh_processes():
    """doctor probes numba.cuda itself; it must not keep the cuda backend from its simulator."""

    # A user's fresh shell: the simulator switch is minirad's to make (pytest's own process
    # has already made it, and children would inherit it).
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}

    def run(*args):
        command = [sys.executable, "-m", "minirad.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout

    summary = run().splitlines()[1].split(": ", 1)[1].split(", ")
    doctor = [
        line.split()[1]
        for line in run("doctor").splitlines()
        if line.startswith("backend ") and line.split(None, 2)[2] == "available"
    ]
    assert doctor == summary


# -- --backend ----------------------------------------------------------------------------------

COMMANDS_WITH_BACKEND = [
    ["doctor"],
    ["data", "synth", "--out", "x"],
    ["demo"],
    ["train", "--data", "d", "--out", "m.npz"],
    ["evaluate", "--data", "d"],
    ["report", "image.png"],
]


@pytest.mark.parametrize("command", COMMANDS_WITH_BACKEND, ids=lambda c: " ".join(c[:2]))
def test_every_command_takes_backend(command):
    from minirad.cli import build_parser

    args = build_parser().parse_args([*command, "--backend", "numpy"])
    assert args.backend == "numpy"
    assert not hasattr(build_parser().parse_args(command), "backend")  # absent: env, or auto


def test_backend_switches_the_engine_for_the_command(monkeypatch, capsys):
    from minirad import backend

    seen = []

    def doctor(args) -> int:
        seen.append(backend.active().name)
        return 0

    monkeypatch.setattr("minirad.cli._doctor", doctor)
    with backend.use_backend("numba"):  # restored after the block, as the command leaves it
        assert main(["doctor", "--backend", "numpy"]) == 0
    assert seen == ["numpy"]


def test_a_backend_that_cannot_run_is_one_line_and_exit_1(monkeypatch, capsys):
    from minirad import kernels

    monkeypatch.setattr(kernels, "why_unavailable", lambda name: f"{name}: no such thing here")
    assert main(["doctor", "--backend", "cupy"]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip() == "minirad: error: backend 'cupy' is not available: cupy: no such thing here"
    )


def test_doctor_says_what_auto_picks_and_why(capsys):
    assert main(["doctor"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("backend auto"))
    from minirad import backend

    assert backend.resolve("auto") in line
