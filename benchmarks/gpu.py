"""On a machine with an NVIDIA GPU: run the `gpu` tests, then time every GPU kernel version.

    python benchmarks/gpu.py [--skip-tests] [--reps 20]

Needs `pip install -e ".[gpu,test]"` and, for the peer column, a CUDA build of PyTorch. Every
version of every op of the `cuda` (Numba CUDA) and `cupy` (CUDA C) backends is timed at the
report model's shapes against torch.cuda (cuDNN for convolution), float32, median of `reps`
calls after a warm-up, with the device synchronised around each call. Prints a table with the
ratio to torch (< 1: faster than torch) and writes it to benchmarks/GPU_RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# (name, family, shapes). The same workloads as bench_kernels.py's report-model cases.
CASES = [
    ("conv2d 16x16x64x64 k32 3x3 p1 fwd+bwd", "conv2d", dict(N=16, C=16, H=64, W=64, K=32)),
    ("maxpool2d 16x32x64x64 2x2 fwd+bwd", "maxpool2d", dict(N=16, C=32, H=64, W=64)),
    ("linear 480x256 -> 1000 fwd+bwd", "linear", dict(N=480, n_in=256, n_out=1000)),
    ("LSTM cell B16 I256 H256 fwd+bwd", "rnn", dict(B=16, I=256, H=256)),
    ("softmax+CE 480x1000", "softmax", dict(N=480, V=1000)),
]


def run_gpu_tests() -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(HERE.parent / "tests")]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command).returncode


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


def torch_workload(family: str, p: dict):
    import torch

    F = torch.nn.functional
    dev = "cuda"

    def t(*shape):
        return torch.randn(*shape, device=dev, requires_grad=True)

    if family == "conv2d":
        x, w, b = t(p["N"], p["C"], p["H"], p["W"]), t(p["K"], p["C"], 3, 3), t(p["K"])
        return lambda: (lambda y: y.backward(y.detach()))(F.conv2d(x, w, b, padding=1))
    if family == "maxpool2d":
        x = t(p["N"], p["C"], p["H"], p["W"])
        return lambda: (lambda y: y.backward(y.detach()))(F.max_pool2d(x, 2))
    if family == "linear":
        x, w, b = t(p["N"], p["n_in"]), t(p["n_out"], p["n_in"]), t(p["n_out"])
        return lambda: (lambda y: y.backward(y.detach()))(F.linear(x, w, b))
    if family == "rnn":
        cell = torch.nn.LSTMCell(p["I"], p["H"]).to(dev)
        x, h, c = t(p["B"], p["I"]), t(p["B"], p["H"]), t(p["B"], p["H"])
        return lambda: (lambda hc: (hc[0].sum() + hc[1].sum()).backward())(cell(x, (h, c)))
    if family == "softmax":
        logits = t(p["N"], p["V"])
        targets = torch.randint(0, p["V"], (p["N"],), device=dev)
        return lambda: F.cross_entropy(logits, targets).backward()
    raise ValueError(family)


def median_ms(fn, synchronize, reps: int) -> float:
    fn()
    synchronize()
    times = []
    for _ in range(reps):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)

    from minirad import kernels

    missing = {b: kernels.why_unavailable(b) for b in ("cuda", "cupy")}
    if all(missing.values()):
        print(f"gpu: no GPU backend can run here: {missing}", file=sys.stderr)
        return 1
    status = 0 if args.skip_tests else run_gpu_tests()

    import cupy

    try:
        import torch

        have_torch = torch.cuda.is_available()
    except ImportError:
        have_torch = False
    rows = [
        "| case | backend | version | ms | torch.cuda ms | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, family, p in CASES:
        torch_ms = None
        if have_torch:
            torch_ms = median_ms(torch_workload(family, p), torch.cuda.synchronize, args.reps)
        for backend in ("cuda", "cupy"):
            if missing[backend]:
                continue
            for version in kernels.get(backend).versions[family]:
                ops = kernels.get(backend, **{family: version})
                fn = workload(ops, family, p, cupy)
                ms = median_ms(fn, cupy.cuda.Device().synchronize, args.reps)
                ratio = f"{ms / torch_ms:.2f}x" if torch_ms else "-"
                peer = f"{torch_ms:.3f}" if torch_ms else "-"
                rows.append(f"| {name} | {backend} | {version} | {ms:.3f} | {peer} | {ratio} |")
                print(rows[-1], flush=True)
    text = (
        "\n".join(
            ["# GPU kernels vs torch.cuda", "", "Command: `python benchmarks/gpu.py`", "", *rows]
        )
        + "\n"
    )
    (HERE / "GPU_RESULTS.md").write_text(text)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
