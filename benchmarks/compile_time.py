"""First-call time of the whole numba backend: cold (compiling) and cached (loading from disk).

    python benchmarks/compile_time.py [--backend numba]

A learner's first `kernels.get("numba").conv2d_forward(...)` compiles the kernel; Numba's
`cache=True` writes the machine code to disk so that the next process only loads it. This
script measures both in fresh processes: it points NUMBA_CACHE_DIR at an empty temporary
directory, then calls every op of the backend once on tiny float32 and float64 inputs (every
version, both dtypes: what the test suite compiles), first in one process (cold), then in a
second one (cached). Printed: seconds per op family and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
import numpy as np
start = time.perf_counter()
import kernels
from kernels._check import GRUCache, LSTMCache  # noqa: F401
import_s = time.perf_counter() - start
backend = sys.argv[1]
times = {"import": import_s}
rng = np.random.default_rng(0)
for family, versions in kernels.get(backend).versions.items():
    t0 = time.perf_counter()
    for version in versions:
        ops = kernels.get(backend, **{family: version})
        for dtype in (np.float32, np.float64):
            a = lambda *s: rng.standard_normal(s).astype(dtype)
            if family == "conv2d":
                x, w = a(2, 3, 6, 6), a(4, 3, 3, 3)
                y = ops.conv2d_forward(x, w, a(4), 1, 1)
                ops.conv2d_backward(y, x, w, 1, 1)
            elif family == "maxpool2d":
                x = a(2, 3, 6, 6)
                y, arg = ops.maxpool2d_forward(x, 2)
                ops.maxpool2d_backward(y, arg, x.shape, 2)
            elif family == "linear":
                x, w = a(3, 4), a(5, 4)
                y = ops.linear_forward(x, w, a(5))
                ops.linear_backward(y, x, w)
            elif family == "rnn":
                x, h, c = a(2, 3), a(2, 4), a(2, 4)
                hn = ops.rnn_tanh_cell_forward(x, h, a(4, 3), a(4, 4), a(4), a(4))
                ops.rnn_tanh_cell_backward(hn, x, h, a(4, 3), a(4, 4), hn)
                hn, cn, cache = ops.lstm_cell_forward(x, h, c, a(16, 3), a(16, 4), a(16), a(16))
                ops.lstm_cell_backward(hn, cn, cache)
                hn, cache = ops.gru_cell_forward(x, h, a(12, 3), a(12, 4), a(12), a(12))
                ops.gru_cell_backward(hn, cache)
            elif family == "softmax":
                x = a(3, 5)
                y = ops.softmax(x, -1); ops.softmax_backward(x, y, -1)
                y = ops.log_softmax(x, -1); ops.log_softmax_backward(x, y, -1)
                ops.softmax_cross_entropy(x, np.array([0, 1, -100]), -100)
    times[family] = time.perf_counter() - t0
print(json.dumps(times))
"""


def first_call_times(backend: str, cache_dir: str) -> dict[str, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, backend], env=env, capture_output=True, text=True, check=True
    )
    times = json.loads(out.stdout.strip().splitlines()[-1])
    times["process total"] = time.perf_counter() - start
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = first_call_times(args.backend, cache_dir)
        cached = first_call_times(args.backend, cache_dir)
    print(f"first call of every {args.backend} op, every version, float32 + float64 (seconds)")
    print(f"{'':16} {'cold':>8} {'cached':>8}")
    for key in cold:
        print(f"{key:16} {cold[key]:8.2f} {cached[key]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
