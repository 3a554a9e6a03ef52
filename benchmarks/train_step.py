"""One training step of the report model: minirad against PyTorch on the CPU, side by side.

    python benchmarks/train_step.py [--rounds 5] [--reps 5] [--batch 32]

The bundled model's architecture (minirad/weights/default.npz's config: 128 x 128 images, four
conv blocks, an LSTM decoder of 256 units over a vocabulary of 205), a batch of phantom reports
cut to the longest (benchmarks/gpu.py: report_batch), one step as the trainer runs it:
forward, loss, backward, gradient clipping, Adam (minirad.models.train_report.train_step, under
small_blas as the trainer runs it; its PyTorch twin is benchmarks/torch_report_model.py, equal
to minirad's loss and gradients in float64, tests/test_gpu_benchmark.py).

Contenders, each in a fresh process of its own, alternated round by round (the machine's
noise falls on all of them alike):
    minirad        the numba backend, as `minirad train` runs it
    torch          PyTorch eager in its default environment: what a PyTorch user gets
    torch-passive  PyTorch with OMP_WAIT_POLICY=PASSIVE, the environment minirad sets
Each process builds its model and batch, runs two warm-up steps, then `reps` timed steps; the
table gives the median over all timed steps, min and max, and the ratio to torch. This is the
first measurement of issue 16 (faster than PyTorch on the whole model); it does not yet split
the encoder from the decoder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTENDERS = ("minirad", "torch", "torch-passive")
WARM_UP = 2


def environment(contender: str) -> dict[str, str]:
    """The worker's environment: torch without minirad's OMP_WAIT_POLICY unless asked."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if contender == "torch-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def build_step(contender: str, batch_size: int):
    """A zero-argument callable doing one training step for `contender`."""
    if contender.startswith("torch"):
        import torch  # first: its OpenMP reads OMP_WAIT_POLICY when it loads

        torch.manual_seed(0)
    sys.path.insert(0, str(HERE))
    import gpu

    config = gpu.model_config("default")
    batch = gpu.report_batch(config, batch_size)
    if contender.startswith("torch"):
        return gpu.torch_training_step(config, batch, "cpu")
    from minirad.backend import small_blas

    step = gpu.training_step("numba", config, batch)

    def step_with_one_blas_thread() -> None:
        with small_blas():  # as the trainer runs it (minirad.backend.small_blas)
            step()

    return step_with_one_blas_thread


def worker(contender: str, reps: int, batch_size: int) -> None:
    """Time `reps` steps after the warm-up; print the seconds of each as JSON."""
    step = build_step(contender, batch_size)
    for _ in range(WARM_UP):
        step()
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps(seconds))


def run(rounds: int, reps: int, batch_size: int) -> dict[str, list[float]]:
    """contender -> every timed step's seconds, the contenders alternated in fresh processes."""
    times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for round_ in range(rounds):
        for contender in CONTENDERS:
            command = [sys.executable, __file__, "--worker", contender]
            command += ["--reps", str(reps), "--batch", str(batch_size)]
            result = subprocess.run(
                command, env=environment(contender), capture_output=True, text=True, check=True
            )
            times[contender] += json.loads(result.stdout.strip().splitlines()[-1])
            median = statistics.median(times[contender]) * 1e3
            print(f"round {round_ + 1}/{rounds} {contender:14} {median:8.1f} ms", flush=True)
    return times


def table(times: dict[str, list[float]], command: str) -> list[str]:
    peer = statistics.median(times["torch"])
    blas = [f"{k}={v}" for k, v in os.environ.items() if k.startswith("OPENBLAS_")]
    lines = [
        "## One training step of the report model (benchmarks/train_step.py)",
        "",
        f"Command: `{command}`; OPENBLAS_* in force: {', '.join(blas) or 'none'}",
        "",
        "| contender | median ms | min ms | max ms | steps | ratio to torch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for contender, seconds in times.items():
        median = statistics.median(seconds)
        lines.append(
            f"| {contender} | {median * 1e3:.1f} | {min(seconds) * 1e3:.1f} | "
            f"{max(seconds) * 1e3:.1f} | {len(seconds)} | {median / peer:.2f}x |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.reps, args.batch)
        return 0
    times = run(args.rounds, args.reps, args.batch)
    command = "python benchmarks/train_step.py " + " ".join(argv or sys.argv[1:])
    print("\n".join(table(times, command.strip())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
