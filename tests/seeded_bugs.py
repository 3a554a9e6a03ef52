"""Seed one small bug at a time into the reference kernels and check that the tests catch it.

A test that cannot fail proves nothing. This script copies `kernels/` and `tests/` into a
temporary directory, applies one mutation (a one-token change: a sign, an index, an axis), runs
the test suite against the mutant and reports whether some test failed ("caught") or all passed
("MISSED"). The working tree is never modified.

    python tests/seeded_bugs.py            # every mutation
    python tests/seeded_bugs.py lstm gru   # those whose name contains one of the words

Exit status 1 if any mutation was missed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, file, exact text, replacement). Each text must occur exactly once in its file.
# Bugs in the references are hunted by the whole suite; bugs in the GPU kernels by the emulated
# property tests (GPU_TESTS), which is where such a bug is caught when no GPU exists.
MUTATIONS = [
    (
        "conv loop dx sign",
        "kernels/conv2d/reference.py",
        "dx_pad[n, :, rows, cols] += dy",
        "dx_pad[n, :, rows, cols] -= dy",
    ),
    (
        "conv loop dw window row",
        "kernels/conv2d/reference.py",
        "rows = slice(p * sh, p * sh + R)",
        "rows = slice(p * sw, p * sw + R)",
    ),
    (
        "col2im stride",
        "kernels/conv2d/reference.py",
        "x_pad[:, :, r : r + sh * P : sh, s : s + sw * Q : sw] += cols",
        "x_pad[:, :, r : r + sh * P : sh, s : s + sw * Q : sh] += cols",
    ),
    (
        "conv im2col dw axes",
        "kernels/conv2d/reference.py",
        "axes=([0, 2], [0, 2])",
        "axes=([0, 2], [0, 1])",
    ),
    (
        "conv unpad offset",
        "kernels/conv2d/reference.py",
        "x_pad[:, :, ph : ph + H, pw : pw + W]",
        "x_pad[:, :, ph : ph + H, ph : ph + W]",
    ),
    (
        "conv im2col transpose",
        "kernels/conv2d/reference.py",
        "np.matmul(w.reshape(K, C * R * S).T, dy3)",
        "np.matmul(w.reshape(K, C * R * S).T, -dy3)",
    ),
    (
        "maxpool backward plane",
        "kernels/maxpool2d/reference.py",
        "dx = np.zeros((N * C, H * W)",
        "dx = np.zeros((N * C, H * H)",
    ),
    (
        "maxpool argmax row stride",
        "kernels/maxpool2d/reference.py",
        "argmax = np.where(take, i[:, None] * W + j",
        "argmax = np.where(take, i[:, None] * H + j",
    ),
    ("linear db axis", "kernels/linear/reference.py", "dy.sum(axis=0)", "dy.sum(axis=1)"),
    ("linear dx transpose", "kernels/linear/reference.py", "return dy @ w,", "return dy @ -w,"),
    (
        "tanh derivative sign",
        "kernels/rnn/reference.py",
        "dh_new * (1 - h_new * h_new)",
        "dh_new * (1 + h_new * h_new)",
    ),
    (
        "lstm forget-gate derivative",
        "kernels/rnn/reference.py",
        "dc_total * c * f * (1 - f)",
        "dc_total * c * f * (1 - i)",
    ),
    (
        "lstm dc through forget gate",
        "kernels/rnn/reference.py",
        "dc = dc_total * f",
        "dc = dc_total * i",
    ),
    (
        "lstm output-gate path",
        "kernels/rnn/reference.py",
        "dh_new * tanh_c_new * o * (1 - o)",
        "dh_new * tanh_c_new * o * (1 - g)",
    ),
    (
        "gru reset scales hidden part",
        "kernels/rnn/reference.py",
        "da_n * r], axis=1)",
        "da_n * z], axis=1)",
    ),
    ("gru direct path", "kernels/rnn/reference.py", "dh += dh_new * z", "dh += dh_new * r"),
    (
        "gru update-gate sign",
        "kernels/rnn/reference.py",
        "dh_new * (h - n) * z",
        "dh_new * (n - h) * z",
    ),
    (
        "rnn db_hh from da_x",
        "kernels/rnn/reference.py",
        "da_x.sum(axis=0), da_h.sum(axis=0)",
        "da_x.sum(axis=0), da_x.sum(axis=0)",
    ),
    (
        "softmax backward sign",
        "kernels/softmax/reference.py",
        "y * (dy - (dy * y)",
        "y * (dy + (dy * y)",
    ),
    (
        "log_softmax backward exp",
        "kernels/softmax/reference.py",
        "dy - np.exp(y) * dy.sum",
        "dy - np.exp(dy) * dy.sum",
    ),
    (
        "cross-entropy onehot sign",
        "kernels/softmax/reference.py",
        "dlogits[rows, picked] -= 1",
        "dlogits[rows, picked] += 1",
    ),
    (
        "cross-entropy mean over all rows",
        "kernels/softmax/reference.py",
        "dlogits /= M",
        "dlogits /= N",
    ),
    # GPU kernels: the classic bugs of a CUDA course.
    (
        "conv2d.cu tiled: missing barrier",
        "kernels/conv2d/conv2d.cu",
        "__syncthreads();  // the tiles are complete before anyone reads them",
        ";",
    ),
    (
        "conv2d.cu db reduction: missing barrier",
        "kernels/conv2d/conv2d.cu",
        "__syncthreads();  // this level's sums are written before the next level reads them",
        ";",
    ),
    (
        "numba cuda conv dw: off-by-one",
        "kernels/conv2d/numba_cuda.py",
        "for q in range(Q):\n                    total += dy[n, k, p, q] * x_padded(",
        "for q in range(Q - 1):\n                    total += dy[n, k, p, q] * x_padded(",
    ),
    (
        "numba cuda matmul: missing barrier",
        "kernels/linear/numba_cuda.py",
        "numba_cuda.syncthreads()  # tiles complete before anyone reads them",
        "pass",
    ),
    (
        "numba cuda softmax: missing barrier",
        "kernels/softmax/numba_cuda.py",
        "numba_cuda.syncthreads()  # every partial written before anyone combines them",
        "pass",
    ),
]

GPU_TESTS = ["tests/test_kernels.py", "-k", "emulated"]

TEST_COMMAND = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]


def run_mutation(name: str, file: str, old: str, new: str) -> tuple[bool, str, float]:
    """Apply one mutation to a copy of the tree; True if a test failed."""
    with tempfile.TemporaryDirectory() as tmp:
        # Everything the test suite reads: the sources, the tests, and the README (its examples
        # are tested). minirad itself is imported from the copy too, so PYTHONPATH is the copy.
        for folder in ("kernels", "minirad", "tests"):
            shutil.copytree(ROOT / folder, Path(tmp) / folder)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, Path(tmp) / name)
        target = Path(tmp) / file
        source = target.read_text()
        if source.count(old) != 1:
            raise SystemExit(
                f"{name}: the text to mutate occurs {source.count(old)} times in {file}"
            )
        target.write_text(source.replace(old, new))
        env = {**os.environ, "PYTHONPATH": tmp, "HYPOTHESIS_PROFILE": "ci"}
        selection = GPU_TESTS if file.endswith((".cu", "numba_cuda.py")) else ["tests"]
        start = time.perf_counter()
        result = subprocess.run(
            TEST_COMMAND + selection, cwd=tmp, env=env, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - start
        first_failure = next(
            (line for line in result.stdout.splitlines() if line.startswith("E   ")), ""
        ).strip()
        # pytest exits 1 when tests failed. Anything else (2: collection error or interrupted,
        # 3/4: internal or usage error) means the suite never judged the mutant: not a catch.
        if result.returncode not in (0, 1):
            tail = (
                result.stdout.strip().splitlines()[-1:] or result.stderr.strip().splitlines()[-1:]
            )
            raise SystemExit(f"{name}: the test run broke (exit {result.returncode}): {tail}")
        return result.returncode == 1, first_failure, elapsed


def main(words: list[str]) -> int:
    missed = 0
    for name, file, old, new in MUTATIONS:
        if words and not any(w in name for w in words):
            continue
        caught, failure, elapsed = run_mutation(name, file, old, new)
        missed += not caught
        verdict = "caught" if caught else "MISSED"
        print(f"{verdict:7} {name:40} ({elapsed:5.1f} s) {failure[:160]}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
