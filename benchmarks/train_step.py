"""The report model, minirad against PyTorch on the CPU, side by side: a training step, its
encoder and decoder halves, and greedy decoding of 1 and of 32 images.

    python benchmarks/train_step.py [--rounds 5] [--reps 5] [--batch 32] [--phases step ...]
                                    [--out benchmarks/RESULTS.md]

Phases (what one timed call does):
    step       one training step as the trainer runs it: forward, loss, backward, gradient
               clipping, Adam (minirad.models.train_report.train_step, under small_blas), on
               the bundled model's architecture (128 x 128 images, four conv blocks, an LSTM
               decoder of 256 units over 205 words) with fresh weights and a batch of phantom
               reports cut to the longest (benchmarks/gpu.py: report_batch).
    encoder    the image side of that step: the encoder and the finding head forward, the
               finding loss, backward.
    decoder    the text side: teacher-forced decoding of the same batch from the encoder's
               outputs (computed once, constants, as in training), the word loss, backward.
               step ~ encoder + decoder + clipping and Adam.
    greedy-1   a report for one phantom image with the bundled weights: encode, then the most
               probable word until <eos> (minirad.report.decoding.greedy; its PyTorch twin is
               torch_greedy in benchmarks/torch_report_model.py).
    greedy-32  the same for a batch of 32 phantoms (the longest report sets the steps).

Contenders, each phase in a fresh process of its own, alternated round by round (the
machine's noise falls on all of them alike):
    minirad        the numba backend, as `minirad train` / `minirad report` run it
    torch          PyTorch eager in its default environment: what a PyTorch user gets
    torch-passive  PyTorch with OMP_WAIT_POLICY=PASSIVE, the environment minirad sets
Each process builds its model and inputs, runs two warm-up calls, then `reps` timed calls; the
table gives the median over all timed calls, min and max, and the ratio to torch. The PyTorch
twin computes the same loss and gradients in float64 (tests/test_gpu_benchmark.py) and the same
greedy words (tests/test_train_step_benchmark.py); each greedy worker also prints a digest of
its words, and the table says whether minirad's and torch's agree on the timed images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTENDERS = ("minirad", "torch", "torch-passive")
PHASES = ("step", "encoder", "decoder", "greedy-1", "greedy-32")
WARM_UP = 2
SECTION = "### The report model, minirad against PyTorch (benchmarks/train_step.py)"
PHANTOM_SEED = 2026  # the greedy phases' images: phantoms no model was trained on


def environment(contender: str) -> dict[str, str]:
    """The worker's environment: torch without minirad's OMP_WAIT_POLICY unless asked."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if contender == "torch-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


# -- what one timed call does -------------------------------------------------------------------


def build(contender: str, phase: str, batch_size: int) -> tuple[Callable[[], None], str]:
    """(a zero-argument callable doing one `phase` call for `contender`, a digest of its
    words for the greedy phases or "")."""
    if contender.startswith("torch"):
        import torch  # first: its OpenMP reads OMP_WAIT_POLICY when it loads

        torch.manual_seed(0)
    else:
        import minirad  # noqa: F401  first, as the `minirad` command: it sets OpenBLAS's
        # thread timeout before NumPy loads the library (minirad/__init__.py)
    sys.path.insert(0, str(HERE))
    if phase.startswith("greedy"):
        return _greedy(contender, 1 if phase == "greedy-1" else 32)
    import gpu

    config = gpu.model_config("default")
    batch = gpu.report_batch(config, batch_size)
    if contender.startswith("torch"):
        return _torch_training(phase, config, batch), ""
    return _minirad_training(phase, config, batch), ""


def _minirad_training(phase: str, config, batch) -> Callable[[], None]:
    import gpu

    from minirad import functional as F
    from minirad.autograd import Tensor, no_grad
    from minirad.backend import small_blas
    from minirad.data.vocab import PAD_ID
    from minirad.models.report_model import ReportModel

    images, tokens, findings = batch
    if phase == "step":
        step = gpu.training_step("numba", config, batch)
    else:
        model = ReportModel(config, rng=0)  # in training mode: dropout on, as in a step
        model.zero_grad()
        with no_grad():
            encoded = model.encode(Tensor(images))  # the decoder phase's constant inputs

        def step() -> None:
            if phase == "encoder":
                logits = model.encode(Tensor(images)).finding_logits
                F.binary_cross_entropy_with_logits(logits, findings).backward()
            else:
                word_logits = model.decode(encoded, tokens, findings)
                B, T, V = word_logits.shape
                targets = tokens[:, 1:].reshape(-1)
                F.cross_entropy(word_logits.reshape(B * T, V), targets, PAD_ID).backward()

    def with_one_blas_thread() -> None:
        with small_blas():  # as the trainer runs it (minirad.backend.small_blas)
            step()

    if phase != "step":
        with_one_blas_thread.model = model  # type: ignore[attr-defined]  # for the tests
    return with_one_blas_thread


def _torch_training(phase: str, config, batch) -> Callable[[], None]:
    import gpu
    import torch
    from torch.nn import functional as F  # noqa: N812
    from torch_report_model import TorchReportModel

    from minirad.data.vocab import PAD_ID

    if phase == "step":
        return gpu.torch_training_step(config, batch, "cpu")
    model = TorchReportModel(config)  # in training mode: dropout on
    images, tokens, findings = (torch.from_numpy(a) for a in batch)
    with torch.no_grad():
        keys, summary, _ = model.encode(images)

    def step() -> None:
        model.zero_grad()
        if phase == "encoder":
            logits = model.encode(images)[2]
            F.binary_cross_entropy_with_logits(logits, findings).backward()
        else:
            word_logits = model.decode(keys, summary, tokens, findings)
            B, T, V = word_logits.shape
            targets = tokens[:, 1:].reshape(-1)
            F.cross_entropy(word_logits.reshape(B * T, V), targets, ignore_index=PAD_ID).backward()

    step.model = model  # type: ignore[attr-defined]  # for the tests
    return step


def phantom_images(n: int):
    """n phantoms (n, 1, 128, 128) in [0, 1], float32, of a seed no model was trained on."""
    import numpy as np

    from minirad.data.phantom import synthesize

    return np.stack([p / np.float32(255) for p, _ in synthesize(n, PHANTOM_SEED, size=128)])[
        :, None
    ]


def digest(reports: list[list[int]]) -> str:
    """crc32 of the token ids of every report, in order: equal words, equal digest."""
    return f"{zlib.crc32(json.dumps(reports).encode()):08x}"


def _greedy(contender: str, n: int) -> tuple[Callable[[], None], str]:
    from minirad.models.report_checkpoint import load_report_model
    from minirad.report.decoding import generate
    from minirad.report.pipeline import default_model_path

    model, _, _ = load_report_model(default_model_path())
    images, max_len = phantom_images(n), model.config.max_len
    if contender == "minirad":

        def minirad_reports() -> list[list[int]]:
            return [d.tokens for d in generate(model, images, "greedy", max_len=max_len)]

        return minirad_reports, digest(minirad_reports())
    import torch
    from torch_report_model import TorchReportModel, torch_greedy

    twin = TorchReportModel(model.config).eval()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    t_images = torch.from_numpy(images)

    def torch_reports() -> list[list[int]]:
        return torch_greedy(twin, t_images, max_len)

    return torch_reports, digest(torch_reports())


def worker(contender: str, phase: str, reps: int, batch_size: int) -> None:
    """Time `reps` calls after the warm-up; print {"seconds": [...], "words": digest} as JSON."""
    call, words = build(contender, phase, batch_size)
    for _ in range(WARM_UP):
        call()
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "words": words}))


# -- the run and its table ----------------------------------------------------------------------


def run(
    rounds: int, reps: int, batch_size: int, phases: tuple[str, ...]
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, str]]]:
    """(phase -> contender -> every timed call's seconds, phase -> contender -> words digest),
    every (phase, contender) in a fresh process, the contenders alternated within a round."""
    times = {p: {c: [] for c in CONTENDERS} for p in phases}
    words: dict[str, dict[str, str]] = {p: {} for p in phases}
    for round_ in range(rounds):
        for phase in phases:
            for contender in CONTENDERS:
                command = [sys.executable, __file__, "--worker", contender, "--phases", phase]
                command += ["--reps", str(reps), "--batch", str(batch_size)]
                result = subprocess.run(
                    command, env=environment(contender), capture_output=True, text=True
                )
                if result.returncode != 0:
                    raise SystemExit(f"{phase} {contender}: failed\n{result.stderr[-2000:]}")
                report = json.loads(result.stdout.strip().splitlines()[-1])
                times[phase][contender] += report["seconds"]
                words[phase][contender] = report["words"]
                median = statistics.median(times[phase][contender]) * 1e3
                print(
                    f"round {round_ + 1}/{rounds} {phase:9} {contender:14} {median:8.1f} ms",
                    flush=True,
                )
    return times, words


def table(
    times: dict[str, dict[str, list[float]]], command: str, words: dict | None = None
) -> list[str]:
    """The Markdown section: one row per phase and contender, the ratio to torch's median."""
    blas = [f"{k}={v}" for k, v in os.environ.items() if k.startswith("OPENBLAS_")]
    lines = [
        SECTION,
        "",
        f"Command: `{command}`; OPENBLAS_* in force: {', '.join(blas) or 'none'} (the minirad "
        f"process adds OPENBLAS_THREAD_TIMEOUT="
        f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', '20')} where unset: minirad/__init__.py)",
        "",
        "| phase | contender | median ms | min ms | max ms | calls | ratio to torch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for phase, by_contender in times.items():
        peer = statistics.median(by_contender["torch"])
        for contender, seconds in by_contender.items():
            median = statistics.median(seconds)
            lines.append(
                f"| {phase} | {contender} | {median * 1e3:.1f} | {min(seconds) * 1e3:.1f} | "
                f"{max(seconds) * 1e3:.1f} | {len(seconds)} | {median / peer:.2f}x |"
            )
    for phase, digests in (words or {}).items():
        if digests.get("minirad"):
            same = digests["minirad"] == digests.get("torch")
            verdict = "the same words" if same else "DIFFERENT words"
            lines += ["", f"{phase}: minirad and torch wrote {verdict} ({digests['minirad']})."]
    return lines


def write_section(path: Path, lines: list[str]) -> None:
    """Replace the section (up to the next heading of its level or above) or append it."""
    text = path.read_text() if path.is_file() else ""
    section = "\n".join(lines) + "\n"
    start = text.find(SECTION)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    rest = text[start + len(SECTION) :]
    ends = [i for i in (rest.find("\n### "), rest.find("\n## ")) if i >= 0]
    end = start + len(SECTION) + min(ends) + 1 if ends else len(text)
    path.write_text(text[:start] + section + ("\n" + text[end:] if end < len(text) else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--out", type=Path, help="a Markdown file to write the section into")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.phases[0], args.reps, args.batch)
        return 0
    times, words = run(args.rounds, args.reps, args.batch, tuple(args.phases))
    command = "python benchmarks/train_step.py " + " ".join(argv or sys.argv[1:])
    lines = table(times, command.strip(), words)
    print("\n".join(lines))
    if args.out:
        write_section(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
