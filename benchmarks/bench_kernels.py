"""Time every kernel against PyTorch CPU: milliseconds, GFLOP/s, ratio to torch, share of peak.

    python benchmarks/bench_kernels.py [--quick] [--rounds R] [--only conv2d,lstm] [--out DIR]
    minirad bench [same options]

How it is timed (and why):
  * Each contender (numpy, numba, torch) runs in its OWN process. On two cores the thread pools
    of Numba, OpenBLAS and PyTorch busy-wait against each other when they share a process (a
    PyTorch LSTM once took 105 ms instead of 2 ms that way). Every process keeps its library
    defaults (all cores).
  * Contenders are interleaved: round after round, each process times a few calls of the same
    case in turn (the order rotates), with a pause of 0.3 s between them so that the last
    process's spinning threads go to sleep: OpenBLAS's threads busy-wait ~0.1 s after a call,
    and with a 50 ms pause a waiting NumPy process made torch's LSTM 3x slower (6.5 vs 2.0
    ms). The median over all rounds is reported, so a burst
    of load from elsewhere on the machine hits every contender alike.
  * The first call of each case in each process is a warm-up (Numba compiles there) and is not
    timed. Compile times are measured by benchmarks/compile_time.py.
  * The machine's matmul rate (float32 GEMM 1024^3 through NumPy's BLAS, median) is measured in
    the same run, and every kernel's GFLOP/s is also given as a fraction of it.

Writes benchmarks/RESULTS.md (tables, the command, the OPENBLAS variables in force; its
hand-written last section, the timings behind the kernels' design, is kept as it is) and
benchmarks/results.png (a bar chart of the ratio to torch).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONTENDERS = ("numpy", "numba", "torch")


# ----------------------------------------------------------------------------------------------
# The cases: shapes of the report model and of the issues' targets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One timed workload. `flops` counts multiply-adds as 2 (and max/exp as 1)."""

    name: str
    op: str  # which setup function builds it
    params: dict = field(default_factory=dict)
    flops: float = 0.0
    group: str = ""


def conv_case(name, N, C, H, W, K, R, S, padding, group):
    P, Q = H + 2 * padding - R + 1, W + 2 * padding - S + 1
    forward = 2.0 * N * K * P * Q * C * R * S
    params = dict(N=N, C=C, H=H, W=W, K=K, R=R, S=S, padding=padding)
    return [
        Case(f"{name} fwd", "conv_fwd", params, forward, group),
        Case(f"{name} fwd+bwd", "conv_fwd_bwd", params, 3 * forward, group),
    ]


def pool_case(name, N, C, H, W, group):
    params = dict(N=N, C=C, H=H, W=W)
    compares = N * C * (H // 2) * (W // 2) * 4.0
    return [Case(f"{name} fwd+bwd", "pool_fwd_bwd", params, compares, group)]


def linear_case(name, N, n_in, n_out, group):
    forward = 2.0 * N * n_in * n_out
    params = dict(N=N, n_in=n_in, n_out=n_out)
    return [Case(f"{name} fwd+bwd", "linear_fwd_bwd", params, 3 * forward, group)]


def lstm_case(name, B, I, H, T, group):
    # Per step: forward x w_ih^T and h w_hh^T; backward dh = da w_hh, dw_ih and dw_hh. No dx:
    # neither contender's input needs a gradient.
    forward = 2.0 * B * 4 * H * (I + H)
    backward = 2.0 * B * 4 * H * (H + I + H)
    params = dict(B=B, I=I, H=H, T=T)
    return [Case(f"{name} fwd+bwd", "lstm_seq_fwd_bwd", params, (forward + backward) * T, group)]


def ce_case(name, N, V, group):
    params = dict(N=N, V=V)
    return [Case(f"{name} fwd+bwd", "softmax_ce", params, 5.0 * N * V, group)]


# The report model (issue 7 fixes it; these are its planned shapes): 128x128 grey radiographs,
# batch 16, conv 1-16-32-64 with 3x3 kernels and 2x2 pooling, an LSTM decoder of hidden 256
# over 30 words with a 1000-word vocabulary.
CASES: list[Case] = [
    *conv_case("conv2d 32x16x64x64 k32 3x3 p1", 32, 16, 64, 64, 32, 3, 3, 1, "issue targets"),
    *lstm_case("LSTM seq B32 I64 H128 T30", 32, 64, 128, 30, "issue targets"),
    *conv_case("conv2d 16x1x128x128 k16 3x3 p1", 16, 1, 128, 128, 16, 3, 3, 1, "report model"),
    *conv_case("conv2d 16x16x64x64 k32 3x3 p1", 16, 16, 64, 64, 32, 3, 3, 1, "report model"),
    *conv_case("conv2d 16x32x32x32 k64 3x3 p1", 16, 32, 32, 32, 64, 3, 3, 1, "report model"),
    *pool_case("maxpool2d 16x16x128x128 2x2", 16, 16, 128, 128, "report model"),
    *pool_case("maxpool2d 16x32x64x64 2x2", 16, 32, 64, 64, "report model"),
    *linear_case("linear 480x256 -> 1000", 480, 256, 1000, "report model"),
    *lstm_case("LSTM seq B16 I256 H256 T30", 16, 256, 256, 30, "report model"),
    *ce_case("softmax+CE 480x1000", 480, 1000, "report model"),
]

QUICK = {"conv2d 32x16x64x64 k32 3x3 p1 fwd+bwd", "LSTM seq B32 I64 H128 T30 fwd+bwd"}


# ----------------------------------------------------------------------------------------------
# Building a runnable workload for one contender (runs inside the contender's process)
# ----------------------------------------------------------------------------------------------


def _arrays(rng, *shapes, dtype=np.float32):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def build(contender: str, case: Case):
    """Return a zero-argument callable doing the case's work once with `contender`."""
    p = case.params
    rng = np.random.default_rng(0)
    if contender == "torch":
        return _build_torch(case.op, p, rng)
    from minirad import kernels

    ops = kernels.get(contender)
    if case.op in ("conv_fwd", "conv_fwd_bwd"):
        x, w, b = _arrays(
            rng, (p["N"], p["C"], p["H"], p["W"]), (p["K"], p["C"], p["R"], p["S"]), (p["K"],)
        )
        pad = p["padding"]
        if case.op == "conv_fwd":
            return lambda: ops.conv2d_forward(x, w, b, 1, pad)

        def conv_fwd_bwd():
            y = ops.conv2d_forward(x, w, b, 1, pad)
            ops.conv2d_backward(y, x, w, 1, pad)  # y stands in for dL/dy: same shape, no cost

        return conv_fwd_bwd
    if case.op == "pool_fwd_bwd":
        (x,) = _arrays(rng, (p["N"], p["C"], p["H"], p["W"]))

        def pool_fwd_bwd():
            y, argmax = ops.maxpool2d_forward(x, 2)
            ops.maxpool2d_backward(y, argmax, x.shape, 2)

        return pool_fwd_bwd
    if case.op == "linear_fwd_bwd":
        x, w, b = _arrays(rng, (p["N"], p["n_in"]), (p["n_out"], p["n_in"]), (p["n_out"],))

        def linear_fwd_bwd():
            y = ops.linear_forward(x, w, b)
            ops.linear_backward(y, x, w)

        return linear_fwd_bwd
    if case.op == "lstm_seq_fwd_bwd":
        return _build_lstm_sequence(ops, p, rng)
    if case.op == "softmax_ce":
        (logits,) = _arrays(rng, (p["N"], p["V"]))
        targets = rng.integers(0, p["V"], p["N"])
        return lambda: ops.softmax_cross_entropy(logits, targets, -100)
    raise ValueError(f"unknown op {case.op}")


def _build_lstm_sequence(ops, p, rng):
    """The whole-sequence op (kernels/lstm_sequence), forward then backward through time, as
    nn.LSTM runs it. loss = sum of every h_t, as torch's peer below: dhs = ones, and the final
    state's gradients are zeros. need_dx=False: torch's input needs no gradient either."""
    B, I, H, T = p["B"], p["I"], p["H"], p["T"]
    (x,) = _arrays(rng, (T, B, I))
    w_ih, w_hh, b_ih, b_hh = _arrays(rng, (4 * H, I), (4 * H, H), (4 * H,), (4 * H,))
    w_ih *= 0.1
    w_hh *= 0.1
    h0 = c0 = np.zeros((B, H), np.float32)
    dhs = np.ones((T, B, H), np.float32)
    dh_n = dc_n = np.zeros((B, H), np.float32)

    def lstm_sequence():
        _, _, _, cache = ops.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        ops.lstm_sequence_backward(dhs, dh_n, dc_n, cache, need_dx=False)

    return lstm_sequence


def _build_torch(op, p, rng):
    import torch

    F = torch.nn.functional

    def tensor(*shape, grad=True):
        return torch.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=grad)

    if op in ("conv_fwd", "conv_fwd_bwd"):
        x, w, b = (
            tensor(p["N"], p["C"], p["H"], p["W"]),
            tensor(p["K"], p["C"], p["R"], p["S"]),
            tensor(p["K"]),
        )
        if op == "conv_fwd":

            def conv_fwd():
                with torch.no_grad():
                    F.conv2d(x, w, b, padding=p["padding"])

            return conv_fwd

        def conv_fwd_bwd():
            y = F.conv2d(x, w, b, padding=p["padding"])
            y.backward(y.detach())

        return conv_fwd_bwd
    if op == "pool_fwd_bwd":
        x = tensor(p["N"], p["C"], p["H"], p["W"])

        def pool_fwd_bwd():
            y = F.max_pool2d(x, 2)
            y.backward(y.detach())

        return pool_fwd_bwd
    if op == "linear_fwd_bwd":
        x, w, b = tensor(p["N"], p["n_in"]), tensor(p["n_out"], p["n_in"]), tensor(p["n_out"])

        def linear_fwd_bwd():
            y = F.linear(x, w, b)
            y.backward(y.detach())

        return linear_fwd_bwd
    if op == "lstm_seq_fwd_bwd":
        lstm = torch.nn.LSTM(p["I"], p["H"])  # the fused, whole-sequence peer
        xs = tensor(p["T"], p["B"], p["I"], grad=False)

        def lstm_sequence():
            out, _ = lstm(xs)
            out.sum().backward()

        return lstm_sequence
    if op == "softmax_ce":
        logits = tensor(p["N"], p["V"])
        targets = torch.tensor(rng.integers(0, p["V"], p["N"]))

        def softmax_ce():
            F.cross_entropy(logits, targets).backward()

        return softmax_ce
    raise ValueError(f"unknown op {op}")


# ----------------------------------------------------------------------------------------------
# The contender processes
# ----------------------------------------------------------------------------------------------


def _worker(contender: str, conn) -> None:
    """Serve timing requests: (case, reps) -> list of seconds, or an error string."""
    runners = {}
    while True:
        request = conn.recv()
        if request is None:
            return
        case, reps = request
        try:
            if case.name not in runners:
                runners[case.name] = build(contender, case)
                runners[case.name]()  # warm-up: compilation, first-touch of buffers
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                runners[case.name]()
                times.append(time.perf_counter() - start)
            conn.send(times)
        except Exception as error:  # report, don't kill the whole run
            conn.send(f"{type(error).__name__}: {error}")


def _matmul_gflops(reps: int = 7) -> float:
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    a @ a
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 1024**3 / statistics.median(times) / 1e9


def run(cases: list[Case], rounds: int, reps: int, contenders=CONTENDERS, pause: float = 0.3):
    ctx = mp.get_context("spawn")
    workers = {}
    for name in contenders:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_worker, args=(name, child), daemon=True)
        process.start()
        workers[name] = (process, parent)
    results: dict[str, dict[str, list[float] | str]] = {}
    try:
        from tqdm import tqdm

        progress = tqdm(total=len(cases) * rounds, desc="benchmark", unit="round")
        for case in cases:
            results[case.name] = {name: [] for name in contenders}
            for round_index in range(rounds):
                order = (
                    contenders[round_index % len(contenders) :]
                    + contenders[: round_index % len(contenders)]
                )
                for name in order:
                    if isinstance(results[case.name][name], str):
                        continue  # this contender failed on this case
                    workers[name][1].send((case, reps))
                    answer = workers[name][1].recv()
                    if isinstance(answer, str):
                        results[case.name][name] = answer
                    else:
                        results[case.name][name].extend(answer)
                    time.sleep(pause)
                progress.update(1)
        progress.close()
    finally:
        for process, conn in workers.values():
            conn.send(None)
            process.join(timeout=10)
    return results


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def medians(row: dict) -> dict[str, float | None]:
    """Median seconds per contender; None where it failed or did not run."""
    return {
        name: (statistics.median(t) if isinstance(t, list) and t else None)
        for name, t in row.items()
    }


def table_row(case: Case, row: dict, matmul_rate: float) -> str:
    med = medians(row)
    torch_s = med.get("torch")
    cells = [case.name]
    for name in ("numpy", "numba", "torch"):
        value = row.get(name)
        cells.append(
            "error"
            if isinstance(value, str)
            else f"{med[name] * 1e3:.2f}"
            if med.get(name)
            else "-"
        )
    for name in ("numba", "numpy"):
        cells.append(f"{med[name] / torch_s:.2f}x" if med.get(name) and torch_s else "-")
    for name in ("numba", "torch"):
        cells.append(f"{case.flops / med[name] / 1e9:.1f}" if med.get(name) else "-")
    numba_s = med.get("numba")
    cells.append(f"{100 * case.flops / numba_s / 1e9 / matmul_rate:.0f}%" if numba_s else "-")
    return "| " + " | ".join(cells) + " |"


def table(cases, results, matmul_rate) -> list[str]:
    header = [
        "| case | numpy ms | numba ms | torch ms | numba / torch | numpy / torch "
        "| numba GFLOP/s | torch GFLOP/s | numba % of matmul |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    return header + [table_row(case, results[case.name], matmul_rate) for case in cases]


def errors(results) -> list[str]:
    return [
        f"- {case} / {name}: {value}"
        for case, row in results.items()
        for name, value in row.items()
        if isinstance(value, str)
    ]


def plot(cases, results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in cases]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    y = np.arange(len(names))
    for offset, contender in ((-0.2, "numpy"), (0.2, "numba")):
        ratios = []
        for case in cases:
            med = medians(results[case.name])
            ok = med.get(contender) and med.get("torch")
            ratios.append(med[contender] / med["torch"] if ok else np.nan)
        ax.barh(y + offset, ratios, height=0.4, label=contender)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time / PyTorch CPU time (log scale; < 1 is faster than torch)")
    ax.set_title("minirad kernels vs PyTorch CPU (float32, medians)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# A hand-written section of RESULTS.md, from this heading to the end, that write_results keeps
# when it rewrites the file: the timings behind the kernels' design, quoted by their docstrings.
KEPT_SECTION = "## Measurements behind the kernels' design"


def kept_section(path: Path) -> list[str]:
    """The lines of `path` from KEPT_SECTION on (none if the file or the heading is missing)."""
    text = path.read_text() if path.exists() else ""
    start = text.find(KEPT_SECTION)
    return [] if start < 0 else ["", *text[start:].rstrip("\n").split("\n")]


def write_results(cases, results, matmul_rate, args, out_dir: Path) -> Path:
    blas_env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    command = "python benchmarks/bench_kernels.py " + " ".join(sys.argv[1:])
    machine = platform.processor() or platform.machine()
    blas_text = ", ".join(f"{k}={v}" for k, v in blas_env.items()) or "none"
    lines = [
        "# Kernel benchmarks: minirad vs PyTorch CPU",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {machine}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}  ",
        f"OPENBLAS variables in force: {blas_text}; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')} (every contender)  ",
        f"Machine matmul rate (NumPy float32 GEMM 1024^3, median): {matmul_rate:.1f} GFLOP/s  ",
        f"Timing: each contender in its own process, interleaved; {args.rounds} rounds x "
        f"{args.reps} calls, medians. float32. Warm-up (compilation) excluded.",
        "",
        *table(cases, results, matmul_rate),
        "",
        "fwd+bwd of conv2d computes dx, dw and db; the LSTM sequence is minirad's whole-sequence "
        "op (kernels/lstm_sequence: forward, then backward through time without dx, loss = the "
        "sum of every h_t) against the fused `torch.nn.LSTM` (its input needs no gradient).",
    ]
    errs = errors(results)
    if errs:
        lines += ["", "Errors:", *errs]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "RESULTS.md"
    lines += kept_section(path)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    plot(cases, results, out_dir / "results.png")
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two issue-target cases")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per round")
    parser.add_argument("--only", default="", help="comma-separated words a case name must hold")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md and the PNG go")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # `import kernels` makes every minirad process wait passively (kernels/__init__.py); the
    # torch contender never imports it and would spin. Set the policy before the contender
    # processes start, so that all of them inherit the same one and the ratios compare kernels,
    # not wait policies. Measured on the 2-core machine, numba / torch for the 16x16x64x64 conv
    # forward: 1.28x with both spinning (before kernels set the policy), 2.48x with torch
    # spinning and minirad passive, 1.25x with both passive. Passive waiting costs both sides
    # on isolated kernel calls (numba 3.3 -> 4.6 ms, torch 2.6 -> 3.7 ms); it saves a model that
    # mixes BLAS and Numba calls from the spinning pools starving each other (kernels/__init__).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cases = [c for c in CASES if not args.quick or c.name in QUICK]
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        cases = [c for c in cases if any(w in c.name for w in words)]
    if not cases:
        print("bench: no case matches", file=sys.stderr)
        return 1
    matmul_rate = _matmul_gflops()
    results = run(cases, args.rounds, args.reps)
    path = write_results(cases, results, matmul_rate, args, args.out)
    print(path.read_text())
    print(f"wrote {path} and {path.parent / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
