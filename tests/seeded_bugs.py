"""Seed one small bug at a time into the kernels and the engine and check that the tests catch it.

A test that cannot fail proves nothing. This script copies `kernels/`, `minirad/` and `tests/`
into a temporary directory, applies one mutation (a one-token change: a sign, an index, an axis,
a bound), runs the tests most likely to catch it and, if they pass, the whole suite, against the
mutant, and reports whether some test failed ("caught", with the test that failed) or all passed
("MISSED"), then the score by area. The working tree is never modified. The list is a record of
what the suite must catch: every bug class an independent mutation run found slipping through
has a mutant here (the notebooks are not run: a bug must fail a test).

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
        "conv naive dx sign",
        "kernels/conv2d/reference.py",
        "dx_pad[n, :, rows, cols] += dy",
        "dx_pad[n, :, rows, cols] -= dy",
    ),
    (
        "conv naive dw window row",
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
        "attention softmax Jacobian drops the mean",
        "kernels/attention/reference.py",
        "de = alpha * (dalpha_total - (alpha * dalpha_total).sum(axis=1, keepdims=True))",
        "de = alpha * dalpha_total",
    ),
    (
        "attention fused tanh derivative",
        "kernels/attention/numba_cpu.py",
        "out[a] = scale * v[a] * (one - h[a] * h[a])",
        "out[a] = scale * v[a] * (one - h[a])",
    ),
    (
        "attention fused hidden pass reads the first position's keys everywhere",
        "kernels/attention/numba_cpu.py",
        "p, out = projected_keys[b, position], hidden[b, position]",
        "p, out = projected_keys[b, 0], hidden[b, position]",
    ),
    (
        "lstm sequence backward does not carry dc through the forget gate",
        "kernels/lstm_sequence/reference.py",
        "dc = dc_total * f\n        dh = da[t] @ w_hh",
        "dc = dc_total\n        dh = da[t] @ w_hh",
    ),
    (
        "lstm sequence fused: the hoisted input product uses w_hh",
        "kernels/lstm_sequence/numba_cpu.py",
        "a_x = (x.reshape(T * B, I) @ w_ih.T)",
        "a_x = (x.reshape(T * B, I) @ w_hh.T)",
    ),
    (
        "lstm sequence fused: dw_hh pairs each step's da with its own h_t, not h_{t-1}",
        "kernels/lstm_sequence/numba_cpu.py",
        "h_prev[0] = h0\n    h_prev[1:] = hs[:-1]",
        "h_prev[:] = hs",
    ),
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
    (
        "linear.cu tiled: every k tile reads the first",
        "kernels/linear/linear.cu",
        "A[m * a_row + (k0 + tx) * a_col]",
        "A[m * a_row + tx * a_col]",
    ),
    # Bugs that only show beyond one block or tile (an independent mutation run: the drawn
    # shapes fitted in one tile, so these passed everything; tests/shapes.py "Block edges").
    (
        "numba linear blocked: row block ends a row early",
        "kernels/linear/numba_cpu.py",
        "min((block + 1) * ROW_BLOCK, M)",
        "min((block + 1) * ROW_BLOCK - 1, M)",
    ),
    (
        "numba conv blocked: every tile starts from tile 0's bias",
        "kernels/conv2d/numba_cpu.py",
        "a[i] = bias[k0 + j]",
        "a[i] = bias[j]",
    ),
    # Max-pool ties and windows of -inf (random floats never tie, and no drawn input was -inf).
    (
        "maxpool window of -inf keeps argmax -1",
        "kernels/maxpool2d/reference.py",
        "(values > best) | (argmax < 0) | np.isnan(values)",
        "(values > best) | np.isnan(values)",
    ),
    (
        "maxpool ties go to the last maximum",
        "kernels/maxpool2d/reference.py",
        "(values > best) | (argmax < 0)",
        "(values >= best) | (argmax < 0)",
    ),
    (
        "numba maxpool window of -inf keeps argmax -1",
        "kernels/maxpool2d/numba_cpu.py",
        "if best_index < 0 or value > best or np.isnan(value):",
        "if value > best or np.isnan(value):",
    ),
    (
        "numba maxpool ties go to the last maximum",
        "kernels/maxpool2d/numba_cpu.py",
        "best_index < 0 or value > best",
        "best_index < 0 or value >= best",
    ),
    (
        "numba maxpool 2x2: ties go to the last maximum",
        "kernels/maxpool2d/numba_cpu.py",
        "return (value > best) | (value != value)",
        "return (value >= best) | (value != value)",
    ),
    (
        "numba maxpool 2x2: the bottom-left value's index is the top-right's",
        "kernels/maxpool2d/numba_cpu.py",
        "best, offset = (value, W) if take else (best, offset)",
        "best, offset = (value, 1) if take else (best, offset)",
    ),
    (
        "numba maxpool 2x2: NaN does not win",
        "kernels/maxpool2d/numba_cpu.py",
        "return (value > best) | (value != value)",
        "return value > best",
    ),
    # The engine's backward through broadcast shapes.
    (
        "unbroadcast sums leading axes from the wrong end",
        "minirad/autograd.py",
        "grad = grad.sum(axis=0)",
        "grad = grad.sum(axis=-1)",
    ),
    (
        "Mul backward does not reduce b over broadcast axes",
        "minirad/autograd.py",
        "unbroadcast(grad * self.a, self.b.shape)",
        "grad * self.a",
    ),
    # Device paths: each mutant brings back a host copy that issue 14 removed. Caught by the
    # transfer budgets of the device tests (or by the stand-in refusing a host array).
    (
        "device: clip_grad_norm_ reads every norm back",
        "minirad/optim.py",
        "total = xp.sqrt(sum((g * g).sum() for g in grads))",
        "total = xp.sqrt(sum(float((g * g).sum()) for g in grads))",
    ),
    (
        "device: Dropout draws its mask on the host",
        "minirad/nn/layers.py",
        "keep = uniform_from_counter(xp, key, shape) >= self.p",
        "keep = like(uniform_from_counter(np, key, shape) >= self.p, xp.empty(0))",
    ),
    (
        "device: Embedding reads device ids back to check them",
        "minirad/nn/layers.py",
        "if array_module(ids) is np:",
        "if True:",
    ),
    (
        "device: cross-entropy reads its row count back",
        "kernels/softmax/cuda_c.py",
        "kept = xp.maximum((targets != ignore_index).sum(), 1).astype(logits.dtype)",
        "kept = max(int((targets != ignore_index).sum()), 1)",
    ),
    (
        "device: the report model's tokens through np.asarray",
        "minirad/models/report_model.py",
        "tokens = like(tokens, images.data)",
        "tokens = np.asarray(tokens)",
    ),
    (
        "device: a Python number copied to the device",
        "minirad/autograd.py",
        "return Tensor(array_module(like.data).full((), value, dtype=like.dtype))",
        "return Tensor(array_module(like.data).asarray(value, dtype=like.dtype))",
    ),
    (
        "device: the trainer reads its losses every step",
        "minirad/models/train_report.py",
        "if sums.batches % SHOW_EVERY == 0:",
        "if True:",
    ),
    (
        "device: greedy decoding reads its finished mask every word",
        "minirad/report/decoding.py",
        "return 1 if xp is np else CHECK_EVERY",
        "return 1",
    ),
    # The fused teacher-forced decoder: each path of its backward.
    (
        "fused decoder: the query's gradient does not reach the previous state",
        "minirad/models/fused_decoder.py",
        "dh = dh + dh_query",
        "dh = dh + 0 * dh_query",
    ),
    (
        "fused decoder: the context's gradient misses the output features",
        "minirad/models/fused_decoder.py",
        "dcontext = dx[:, E : E + D] + dfeatures[:, t, H:]",
        "dcontext = dx[:, E : E + D]",
    ),
    (
        "fused decoder: one dropout mask for every step",
        "minirad/nn/layers.py",
        "masks = [self._scaled_mask(xp, step_shape, x.dtype) for _ in range(x.shape[axis])]",
        "masks = [self._scaled_mask(xp, step_shape, x.dtype)] * x.shape[axis]",
    ),
    # The labeler: a negation's scope must end at "but".
    (
        "labeler: 'but' no longer ends a clause",
        "minirad/data/labeler.py",
        'r"[;:]|,? but\\b|',
        'r"[;:]|',
    ),
]

GPU_TESTS = ["tests/test_kernels.py", "-k", "emulated or block_edges"]

TEST_COMMAND = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]

# The tests that should catch a bug in each area, run first so that a caught mutant costs
# seconds; the whole suite runs only when they all pass.
FIRST_TESTS = {
    "engine": ["tests/test_broadcasting.py", "tests/test_autograd.py"],
    "labeler": ["tests/test_labeler.py"],
    "device": ["tests/test_device_training.py", "tests/test_device_decoding.py"],
    # The attention op has its own file: its arguments are unlike any other family's.
    "attention": ["tests/test_attention_kernel.py"],
    # So has the whole-sequence LSTM: its arguments are sequences and a cache of T steps.
    "lstm_sequence": ["tests/test_lstm_sequence_kernel.py"],
    "fused decoder": ["tests/test_fused_decoder.py"],
}
KERNEL_TESTS = ["tests/test_kernels.py", "tests/test_invariants.py", "tests/test_torch_oracle.py"]


def area(file: str, name: str = "") -> str:
    """The part of the project a mutation belongs to: the device paths (a mutant named
    "device: ..."), the fused decoder ("fused decoder: ..."), an op folder (with " GPU" for
    the CUDA sources and Numba CUDA files), the engine, or the labeler."""
    if name.startswith("device:"):
        return "device"
    if name.startswith("fused decoder:"):
        return "fused decoder"
    if file == "minirad/autograd.py":
        return "engine"
    if file == "minirad/data/labeler.py":
        return "labeler"
    family = file.split("/")[1]
    return f"{family} GPU" if file.endswith((".cu", "numba_cuda.py")) else family


def selections(file: str, name: str = "") -> list[list[str]]:
    """The pytest selections to run in turn, until one fails: the likely tests, then all."""
    if area(file, name).endswith("GPU"):
        return [GPU_TESTS]  # where such a bug is caught when no GPU exists
    return [FIRST_TESTS.get(area(file, name), KERNEL_TESTS), ["tests"]]


def copy_installed_layout(dest: Path) -> None:
    """Copy the library into `dest` as it is installed: dest/minirad, with kernels/ copied to
    dest/minirad/kernels (pyproject.toml maps the folder to minirad.kernels). With `dest` first
    on the import path, `minirad.kernels` is the copy; in the source tree only the editable
    install's finder knows where it is, and it would point back at the original. dest/kernels
    is a link to the copy, for the tests that read a kernel's source file by its path."""
    shutil.copytree(
        ROOT / "minirad", dest / "minirad", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "kernels", dest / "minirad" / "kernels")
    (dest / "kernels").symlink_to(Path("minirad") / "kernels", target_is_directory=True)


def run_mutation(name: str, file: str, old: str, new: str) -> tuple[bool, str, float]:
    """Apply one mutation to a copy of the tree; True if a test failed."""
    with tempfile.TemporaryDirectory() as tmp:
        # Everything the test suite reads: the sources, the tests, and the README (its examples
        # are tested). minirad itself is imported from the copy, so PYTHONPATH is the copy.
        copy_installed_layout(Path(tmp))
        shutil.copytree(ROOT / "tests", Path(tmp) / "tests")
        for filename in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / filename, Path(tmp) / filename)
        target = Path(tmp) / file  # kernels/... resolves through the link into the copy
        source = target.read_text()
        if source.count(old) != 1:
            raise SystemExit(
                f"{name}: the text to mutate occurs {source.count(old)} times in {file}"
            )
        target.write_text(source.replace(old, new))
        env = {**os.environ, "PYTHONPATH": tmp, "HYPOTHESIS_PROFILE": "ci"}
        start = time.perf_counter()
        for selection in selections(file, name):
            result = subprocess.run(
                TEST_COMMAND + selection, cwd=tmp, env=env, capture_output=True, text=True
            )
            # pytest exits 1 when tests failed. Anything else (2: collection error or
            # interrupted, 3/4: internal or usage error) means the suite never judged the
            # mutant: not a catch.
            # A tree that does not even import (a collection error) has not been judged.
            if result.returncode not in (0, 1) or "during collection" in result.stdout:
                lines = result.stdout.strip().splitlines() or result.stderr.strip().splitlines()
                raise SystemExit(
                    f"{name}: the test run broke (exit {result.returncode}): {lines[-1:]}"
                )
            if result.returncode == 1:
                return True, _first_failure(result.stdout), time.perf_counter() - start
        return False, "", time.perf_counter() - start


def _first_failure(stdout: str) -> str:
    """The failing test's id and the first line of its error, from pytest's -ra summary."""
    lines = stdout.splitlines()
    test = next(
        (line[len("FAILED ") :].split(" - ")[0] for line in lines if line.startswith("FAILED ")),
        "?",
    )
    error = next((line[4:].strip() for line in lines if line.startswith("E   ")), "")
    return f"{test}: {error}"


def main(words: list[str]) -> int:
    score: dict[str, list[int]] = {}  # area -> [caught, tried]
    for name, file, old, new in MUTATIONS:
        if words and not any(w in name for w in words):
            continue
        caught, failure, elapsed = run_mutation(name, file, old, new)
        counts = score.setdefault(area(file, name), [0, 0])
        counts[0] += caught
        counts[1] += 1
        verdict = "caught" if caught else "MISSED"
        print(f"{verdict:7} {name:55} ({elapsed:5.1f} s) {failure[:200]}", flush=True)
    print("\nmutation score by area:")
    for name, (caught, tried) in sorted(score.items()):
        print(f"  {name:16} {caught:2} of {tried:2} caught")
    return 0 if all(caught == tried for caught, tried in score.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
