"""On a machine with an NVIDIA GPU: run the `gpu` tests, then time every GPU kernel version and
one training step of the report model, against PyTorch on the same GPU; all within ~10 minutes.

    python benchmarks/gpu.py [--skip-tests] [--reps 20] [--budget-s 540]
    python benchmarks/gpu.py --dry-run [--out FILE]     # no GPU: numpy vs torch CPU, tiny shapes

Needs `pip install -e ".[gpu,test]"` and, for the peer column, a CUDA build of PyTorch. Timed, in
float32, with the device synchronised around each call:

  - every version of every op of the `cuda` (Numba CUDA) and `cupy` (CUDA C) backends, forward +
    backward at the report model's shapes, against torch.cuda (cuDNN for the convolution);
  - one training step of the report model at the default configuration's shapes (a batch of
    TrainConfig's batch size, teacher-forced forward, loss, backward, gradient clipping, Adam),
    on each GPU backend, against the same model in PyTorch (benchmarks/torch_report_model.py).

Each row gives the median, min and max of the timed calls (after one untimed warm-up, which
includes any compilation) and the ratio of the median to torch's (< 1: faster than torch). The
repetitions are cut to fit the time budget (--budget-s, the gpu tests included), never below
MIN_REPS. Writes benchmarks/GPU_RESULTS.md. The dry run times the `numpy` backend against
torch on the CPU at tiny shapes: the same code, on a machine without a GPU
(tests/test_gpu_benchmark.py runs it); it prints its table and writes it only with --out.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np

HERE = Path(__file__).resolve().parent
MIN_REPS = 3
GPU_BACKENDS = ("cuda", "cupy")  # Numba CUDA and the CUDA C sources through CuPy
TESTS_TIMEOUT_S = 240  # the gpu tests get at most this much of the budget

# (name, family, shapes). The same workloads as bench_kernels.py's report-model cases.
CASES = [
    ("conv2d 16x16x64x64 k32 3x3 p1 fwd+bwd", "conv2d", dict(N=16, C=16, H=64, W=64, K=32)),
    ("maxpool2d 16x32x64x64 2x2 fwd+bwd", "maxpool2d", dict(N=16, C=32, H=64, W=64)),
    ("linear 480x256 -> 1000 fwd+bwd", "linear", dict(N=480, n_in=256, n_out=1000)),
    ("LSTM cell B16 I256 H256 fwd+bwd", "rnn", dict(B=16, I=256, H=256)),
    ("softmax+CE 480x1000", "softmax", dict(N=480, V=1000)),
]
# The dry run: the same workloads, shrunk until the numpy reference takes milliseconds.
TINY_CASES = [
    ("conv2d 2x2x8x8 k4 3x3 p1 fwd+bwd", "conv2d", dict(N=2, C=2, H=8, W=8, K=4)),
    ("maxpool2d 2x2x8x8 2x2 fwd+bwd", "maxpool2d", dict(N=2, C=2, H=8, W=8)),
    ("linear 8x16 -> 12 fwd+bwd", "linear", dict(N=8, n_in=16, n_out=12)),
    ("LSTM cell B2 I8 H8 fwd+bwd", "rnn", dict(B=2, I=8, H=8)),
    ("softmax+CE 8x12", "softmax", dict(N=8, V=12)),
]


@dataclass(frozen=True)
class Timing:
    median_ms: float
    min_ms: float
    max_ms: float
    reps: int


@dataclass(frozen=True)
class Target:
    """Where the run measures: the backends, their array module, and torch's device."""

    backends: tuple[str, ...]
    xp: ModuleType
    synchronize: Callable[[], None]
    torch_device: str
    cases: list
    model: str  # "default" (the report model's shapes) or "tiny"
    description: str


def gpu_target(backends: tuple[str, ...]) -> Target:
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return Target(backends, cupy, cupy.cuda.Device().synchronize, "cuda", CASES, "default", name)


def dry_run_target() -> Target:
    cpu = f"CPU dry run ({platform.machine()}): numpy backend vs torch CPU at tiny shapes"
    return Target(("numpy",), np, lambda: None, "cpu", TINY_CASES, "tiny", cpu)


# -- timing -------------------------------------------------------------------------------------


class Budget:
    """Seconds left for the measurements still to do, shared out evenly."""

    def __init__(self, seconds: float, measurements: int) -> None:
        self.deadline = time.perf_counter() + seconds
        self.left = max(1, measurements)

    def next_share(self) -> float:
        share = max(0.0, self.deadline - time.perf_counter()) / self.left
        self.left = max(1, self.left - 1)
        return share


def measure(fn: Callable[[], object], synchronize, reps: int, seconds: float) -> Timing:
    """One warm-up call, then up to `reps` timed calls within `seconds` (MIN_REPS at least)."""
    fn()
    synchronize()
    times: list[float] = []
    stop = time.perf_counter() + seconds
    while len(times) < reps and (len(times) < MIN_REPS or time.perf_counter() < stop):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    ms = [t * 1e3 for t in times]
    return Timing(statistics.median(ms), min(ms), max(ms), len(ms))


# -- the op workloads ---------------------------------------------------------------------------


def workload(ops, family: str, p: dict, xp):
    """A zero-argument callable doing one forward + backward of `family` with `ops`."""
    rng = np.random.default_rng(0)

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    if family == "conv2d":
        x, w, b = arr(p["N"], p["C"], p["H"], p["W"]), arr(p["K"], p["C"], 3, 3), arr(p["K"])
        return lambda: ops.conv2d_backward(ops.conv2d_forward(x, w, b, 1, 1), x, w, 1, 1)
    if family == "maxpool2d":
        x = arr(p["N"], p["C"], p["H"], p["W"])

        def pool():
            y, argmax = ops.maxpool2d_forward(x, 2)
            ops.maxpool2d_backward(y, argmax, x.shape, 2)

        return pool
    if family == "linear":
        x, w, b = arr(p["N"], p["n_in"]), arr(p["n_out"], p["n_in"]), arr(p["n_out"])
        return lambda: ops.linear_backward(ops.linear_forward(x, w, b), x, w)
    if family == "rnn":
        B, I, H = p["B"], p["I"], p["H"]
        x, h, c = arr(B, I), arr(B, H), arr(B, H)
        w_ih, w_hh, b_ih, b_hh = arr(4 * H, I), arr(4 * H, H), arr(4 * H), arr(4 * H)

        def lstm():
            h_new, c_new, cache = ops.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
            ops.lstm_cell_backward(h_new, c_new, cache)

        return lstm
    if family == "softmax":
        logits = arr(p["N"], p["V"])
        targets = xp.asarray(rng.integers(0, p["V"], p["N"]))
        return lambda: ops.softmax_cross_entropy(logits, targets, -100)
    raise ValueError(family)


def torch_workload(family: str, p: dict, device: str):
    import torch

    F = torch.nn.functional

    def t(*shape):
        return torch.randn(*shape, device=device, requires_grad=True)

    def backward_of(y):
        y.backward(y.detach())

    if family == "conv2d":
        x, w, b = t(p["N"], p["C"], p["H"], p["W"]), t(p["K"], p["C"], 3, 3), t(p["K"])
        return lambda: backward_of(F.conv2d(x, w, b, padding=1))
    if family == "maxpool2d":
        x = t(p["N"], p["C"], p["H"], p["W"])
        return lambda: backward_of(F.max_pool2d(x, 2))
    if family == "linear":
        x, w, b = t(p["N"], p["n_in"]), t(p["n_out"], p["n_in"]), t(p["n_out"])
        return lambda: backward_of(F.linear(x, w, b))
    if family == "rnn":
        cell = torch.nn.LSTMCell(p["I"], p["H"]).to(device)
        x, h, c = t(p["B"], p["I"]), t(p["B"], p["H"]), t(p["B"], p["H"])
        return lambda: (lambda hc: (hc[0].sum() + hc[1].sum()).backward())(cell(x, (h, c)))
    if family == "softmax":
        logits = t(p["N"], p["V"])
        targets = torch.randint(0, p["V"], (p["N"],), device=device)
        return lambda: F.cross_entropy(logits, targets).backward()
    raise ValueError(family)


# -- one training step of the report model ----------------------------------------------------


def model_config(size: str):
    """The default configuration's shapes (those of the bundled model), or tiny ones."""
    from minirad.models.report_model import ReportModelConfig

    if size == "tiny":
        return ReportModelConfig(
            vocab_size=12, image_size=32, channels=(2, 3, 4, 4), summary_size=5, embed_dim=3,
            hidden_size=4, attention_dim=3, max_len=8,
        )  # fmt: skip
    # The bundled model's vocabulary: the phantom reports' words seen at least min_count times.
    return ReportModelConfig(vocab_size=205)


def report_batch(config, batch_size: int, seed: int = 0):
    """(images, tokens, findings) of the shapes a training batch has: `batch_size` phantom
    reports' worth of tokens, cut to the longest of them (ReportArrays.batch), random ids."""
    from minirad.data.phantom import sample_study
    from minirad.data.reports import write_report
    from minirad.data.vocab import BOS_ID, EOS_ID, PAD_ID, clean_report, tokenize

    rng = np.random.default_rng(seed)
    studies = [sample_study(rng) for _ in range(batch_size)]
    lengths = [len(tokenize(clean_report(write_report(s, rng)))) + 2 for s in studies]
    T = min(max(lengths), config.max_len)
    tokens = np.full((batch_size, T), PAD_ID, dtype=np.int64)
    for row, length in enumerate(lengths):
        n = min(length, T)
        tokens[row, :n] = rng.integers(EOS_ID + 1, config.vocab_size, n)
        tokens[row, 0], tokens[row, n - 1] = BOS_ID, EOS_ID
    images = rng.random((batch_size, 1, config.image_size, config.image_size)).astype(np.float32)
    findings = (rng.random((batch_size, config.num_findings)) < 0.2).astype(np.float32)
    return images, tokens, findings


def training_step(backend_name: str, config, batch) -> Callable[[], None]:
    """One step of minirad's training loop (train_report._train_epoch, after the warm-up
    epochs) on `backend_name`, the model and the batch on that backend's device."""
    from minirad import backend, kernels
    from minirad.models.report_model import ReportModel
    from minirad.models.train_report import TrainConfig, train_step
    from minirad.optim import Adam

    train = TrainConfig()
    ops = kernels.get(backend_name)
    model = ReportModel(config, rng=0).to(ops)
    images, tokens, findings = (backend.to_device(a, ops) for a in batch)  # once, as training
    optimizer = Adam(model.parameters(), lr=train.lr)

    def step() -> None:
        with backend.use_ops(ops):
            train_step(model, optimizer, images, tokens, findings, train)

    return step


def torch_training_step(config, batch, device: str) -> Callable[[], None]:
    """The same step in PyTorch, on the same shapes."""
    import torch
    from torch_report_model import TorchReportModel, torch_report_loss

    from minirad.models.train_report import TrainConfig

    train = TrainConfig()
    model = TorchReportModel(config).to(device)
    images, tokens, findings = (torch.from_numpy(a).to(device) for a in batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr)

    def step() -> None:
        optimizer.zero_grad()
        word_logits, finding_logits = model(images, tokens, findings)
        loss = torch_report_loss(
            word_logits, finding_logits, tokens[:, 1:], findings, train.finding_weight
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
        optimizer.step()

    return step


# -- the run ------------------------------------------------------------------------------------


def run_gpu_tests(timeout_s: float) -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(HERE.parent / "tests")]
    print("$", " ".join(command), flush=True)
    try:
        return subprocess.run(command, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        print(f"gpu: the gpu tests did not finish in {timeout_s:.0f} s", file=sys.stderr)
        return 1


def _torch_synchronize(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _have_torch(device: str) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return device == "cpu" or torch.cuda.is_available()


def row(case: str, backend: str, version: str, t: Timing, peer: Timing | None) -> str:
    ratio = f"{t.median_ms / peer.median_ms:.2f}x" if peer else "-"
    peer_ms = f"{peer.median_ms:.3f}" if peer else "-"
    return (
        f"| {case} | {backend} | {version} | {t.median_ms:.3f} | {t.min_ms:.3f} | "
        f"{t.max_ms:.3f} | {t.reps} | {peer_ms} | {ratio} |"
    )


def timed_or_note(make, target: Target, reps: int, budget: Budget, notes: list[str], what: str):
    """measure(make()), or None with a note saying why it could not run: one failing version
    must not cost the rest of a GPU session's table."""
    share = budget.next_share()
    try:
        return measure(make(), target.synchronize, reps, share)
    except NotImplementedError as error:
        notes.append(f"{what}: not timed: {error}")
    except Exception as error:
        notes.append(f"{what}: failed: {type(error).__name__}: {str(error)[:300]}")
    return None


HEADER = [
    "| case | backend | version | median ms | min ms | max ms | reps | torch median ms | ratio |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|",
]


def benchmark(target: Target, reps: int, seconds: float) -> tuple[list[str], list[str]]:
    """(table rows, notes) timing every case and the training step on `target`."""
    from minirad import kernels

    have_torch = _have_torch(target.torch_device)
    torch_sync = _torch_synchronize(target.torch_device) if have_torch else None
    versions = {b: kernels.get(b).versions for b in target.backends}
    count = sum(len(versions[b][family]) for _, family, _ in target.cases for b in target.backends)
    count += (len(target.cases) + 1) * have_torch + len(target.backends)
    budget = Budget(seconds, count)
    rows, notes = list(HEADER), []

    def emit(line: str) -> None:
        rows.append(line)
        print(line, flush=True)

    for name, family, p in target.cases:
        peer = None
        if have_torch:
            fn = torch_workload(family, p, target.torch_device)
            peer = measure(fn, torch_sync, reps, budget.next_share())
        for backend in target.backends:
            for version in versions[backend][family]:
                ops = kernels.get(backend, **{family: version})
                make = partial(workload, ops, family, p, target.xp)
                what = f"{name} on {backend} {version}"
                timed = timed_or_note(make, target, reps, budget, notes, what)
                if timed:
                    emit(row(name, backend, version, timed, peer))

    config = model_config(target.model)
    from minirad.models.train_report import TrainConfig

    batch_size = TrainConfig().batch_size if target.model == "default" else 2
    batch = report_batch(config, batch_size)
    case = f"report model train step B{batch_size} T{batch[1].shape[1]} S{config.image_size}"
    peer = None
    if have_torch:
        fn = torch_training_step(config, batch, target.torch_device)
        peer = measure(fn, torch_sync, reps, budget.next_share())
    for backend in target.backends:
        make = partial(training_step, backend, config, batch)
        timed = timed_or_note(make, target, reps, budget, notes, f"{case} on {backend}")
        if timed:
            emit(row(case, backend, "-", timed, peer))
    if not have_torch:
        notes.append(f"no PyTorch for {target.torch_device}: no peer column")
    return rows, notes


def report_text(target: Target, rows: list[str], notes: list[str], command: str) -> str:
    lines = [
        "# GPU kernels and one training step vs PyTorch",
        "",
        f"Command: `{command}`",
        "",
        f"Device: {target.description}.",
        "",
        "float32; milliseconds per forward + backward (ops) or per training step (forward, loss,",
        "backward, gradient clipping, Adam); ratio = median / torch's median (< 1: faster).",
        "",
        *rows,
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--budget-s", type=float, default=540.0, help="seconds for everything")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: numpy vs torch CPU")
    parser.add_argument("--out", type=Path, default=None, help="default: GPU_RESULTS.md (GPU)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    if args.dry_run:
        target, status, out = dry_run_target(), 0, args.out
    else:
        from minirad import kernels

        missing = {b: kernels.why_unavailable(b) for b in GPU_BACKENDS}
        if all(missing.values()):
            print(f"gpu: no GPU backend can run here: {missing}", file=sys.stderr)
            return 1
        for backend, reason in missing.items():
            if reason:
                print(f"gpu: backend {backend} not timed: {reason}", file=sys.stderr)
        available = tuple(b for b in GPU_BACKENDS if not missing[b])
        target, out = gpu_target(available), args.out or HERE / "GPU_RESULTS.md"
        status = 0 if args.skip_tests else run_gpu_tests(min(TESTS_TIMEOUT_S, args.budget_s / 2))
    seconds_left = args.budget_s - (time.perf_counter() - start)
    rows, notes = benchmark(target, args.reps, seconds_left)
    command = "python benchmarks/gpu.py" + (" --dry-run" if args.dry_run else "")
    text = report_text(target, rows, notes, command)
    if out is not None:
        out.write_text(text)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
