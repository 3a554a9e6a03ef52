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
start = time.perf_counter()
from minirad import kernels
from minirad.kernels.verify.smoke import exercise_every_op
times = {"import": time.perf_counter() - start}
times.update(exercise_every_op(sys.argv[1]))
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
