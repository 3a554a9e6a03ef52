"""Launch geometry: every launch at the model's shapes fills a GPU, and every launch is legal.

A GPU shares a launch's blocks among its streaming multiprocessors (132 on an H100/H200); a
launch of fewer blocks leaves SMs idle however long each block works, the case of conv2d's dw
before its sum over N*P*Q was split across blocks (1 block walking 32,768 tile steps in the
first layer). One training step of the bundled report model is recorded here through the CUDA C
host code without running a kernel (minirad/models/report_launches.py; every launch passes the
launch validator on the way, or the step raises), and every launch must have GPU_SMS blocks,
unless its kernel is in SMALL_WORK below with the reason. benchmarks/occupancy.py prints the
same record as a table.

The other tests here check the pieces: grid.y's limit of 65,535 blocks (grid_2d caps it and
the kernels loop over the rest of their rows), and the split reduction of conv2d's dw and db
against the reference at shapes that cut the sums into several slices, the last one short.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import HostArgumentsMoved, to_numpy
from minirad import kernels
from minirad.kernels.runtime import cuda_c_cpu, grids, launch_check
from minirad.kernels.runtime.launch_record import distinct
from minirad.models.report_launches import training_step_launches

# Kernels allowed fewer than GPU_SMS blocks at the model's shapes, and why: their whole work is
# a few microseconds, less than the launch itself costs, so more blocks would not be faster.
# (B = 32 images, H = 256 hidden units, V = 205 words: the bundled model and the trainer.)
SMALL_WORK = {
    # The decoder's products have B = 32 rows (2 row tiles of 16) and the bias and key sizes
    # as columns: (64, 1024, 205, 128, ...) / 16 column tiles x 2 = 2 to 128 blocks of at most
    # 32 x 1024 x 256 multiply-adds (8 MFLOP). A split-K or a smaller-tile version for such
    # skinny products would fill the GPU; not written yet.
    "matmul_tiled": "skinny products of the decoder: B = 32 rows",
    # One thread per element of a (32, out) output: 32 x 205 = 6,560 elements -> 26 blocks.
    "add_bias": "elementwise over a batch of 32 rows: fewer elements than 132 x 256 threads",
    # One thread per column, a loop over 32 rows (or 2,048 for the key projection): at most
    # 1,024 columns, 4 blocks, of 32 adds each.
    "column_sums": "one thread per column of a (32, out) gradient: at most 1,024 threads",
    # One thread per hidden unit (b, j): 32 x 256 = 8,192 units -> 32 blocks of 256.
    "lstm_forward_fused": "one thread per hidden unit: B x H = 8,192 threads",
    "lstm_backward_fused": "one thread per hidden unit: B x H = 8,192 threads",
    # One block per row of the attention's softmax: 32 rows (the batch) of L = 64 cells.
    "softmax_rows_block": "one block per row: 32 rows of 64 attention weights",
    "softmax_backward_rows_block": "one block per row: 32 rows of 64 attention weights",
    # The strongest cell of each feature map: 32 x 64 maps, one output each -> 8 blocks.
    "maxpool2d_forward": "the max over the 8 x 8 grid: 2,048 outputs, one thread each",
    # The second pass of the split dw/db: one thread per element of dw (K x C x 3 x 3: 72 to
    # 36,864 elements, 1 to 144 blocks) adding its slices (2 to 263 terms each).
    "conv2d_sum_slices_tiled": "adds the slices of dw or db: one thread per weight",
}


@pytest.fixture(scope="module")
def launches():
    return training_step_launches()


def stem(kernel: str) -> str:
    """The kernel's name without its dtype: matmul_tiled_f32 -> matmul_tiled."""
    return kernel.rsplit("_", 1)[0]


def test_the_step_launches_every_layer(launches):
    stems = {stem(launch.kernel) for launch in launches}
    for expected in ("conv2d_dw_tiled", "conv2d_db_tiled", "lstm_backward_fused", "matmul_tiled"):
        assert expected in stems, f"{expected} missing from the recorded step: {sorted(stems)}"


def test_every_launch_of_a_training_step_fills_the_gpu(launches):
    small = [
        f"{launch.kernel}: grid {launch.grid}, {launch.blocks} blocks (x{count})"
        for launch, count in distinct(launches)
        if launch.blocks < grids.GPU_SMS and stem(launch.kernel) not in SMALL_WORK
    ]
    assert not small, f"launches of fewer than {grids.GPU_SMS} blocks:\n" + "\n".join(small)


def test_the_convolution_gradients_fill_the_gpu(launches):
    """The reason for this file: the weight and bias gradients, every layer."""
    for launch in launches:
        if stem(launch.kernel) in ("conv2d_dw_tiled", "conv2d_db_tiled"):
            assert launch.blocks >= grids.GPU_SMS, launch


def test_the_allow_list_names_only_kernels_the_step_launches(launches):
    stems = {stem(launch.kernel) for launch in launches}
    assert set(SMALL_WORK) <= stems, f"allowed but never launched: {set(SMALL_WORK) - stems}"


# ----------------------------------------------------------------------------------------------
# The split reduction
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_blocks", "length", "min_slice", "granule"),
    [(1, 524_288, 128, 16), (5, 131_072, 128, 16), (144, 8_192, 128, 16), (64, 8_192, 2_048, 1)],
)
def test_split_reduction_fills_the_gpu_with_long_enough_slices(
    output_blocks, length, min_slice, granule
):
    slices, slice_length = grids.split_reduction(output_blocks, length, min_slice, granule)
    assert slices * slice_length >= length > (slices - 1) * slice_length  # covered, none empty
    assert slice_length % granule == 0
    assert slice_length >= min_slice or slices == 1
    assert output_blocks * slices >= grids.GPU_SMS


@pytest.mark.parametrize("length", [0, 1, 100, 255])
def test_a_short_sum_is_not_split(length):
    slices, slice_length = grids.split_reduction(1, length, 128, 16)
    assert slices == 1 and slice_length >= length


def conv_backward_case(backend: str):
    """(ops, (dy, x, w)) at a shape where dw and db are both summed in several slices."""
    # Under the simulator TILE is 4 and blocks have 32 threads: a smaller batch suffices.
    # npq = N * H * H: 529 (15 dw slices, 2 db slices) or 4,232 (34 and 2), the last short.
    N, H = (1, 23) if backend == "cuda" else (2, 46)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((N, 2, H, H)), rng.standard_normal((2, 2, 3, 3))
    dy = rng.standard_normal((N, 2, H, H))
    return ops_taking_host_arrays(backend, conv2d="tiled"), (dy, x, w)


def ops_taking_host_arrays(backend: str, **versions: str):
    """kernels.get(backend, **versions), taking host arrays on a device backend too."""
    ops = kernels.get(backend, **versions)
    return HostArgumentsMoved(ops) if ops.on_device else ops


def expected_slices(backend: str, npq: int, K: int, CRS: int) -> tuple[int, int]:
    """(dw slices, db slices) the host code will use, from the backend's block sizes."""
    if backend == "cuda":
        from minirad.kernels.runtime import numba_cuda as sizes

        tile, threads = sizes.TILE, sizes.THREADS_1D
    else:
        from minirad.kernels.conv2d import cuda_c as sizes

        tile, threads = sizes.TILE, sizes.THREADS
    (crs_tiles, k_tiles), _ = grids.grid_2d(K, CRS, tile)
    dw = grids.split_reduction(crs_tiles * k_tiles, npq, grids.MIN_SLICE_STEPS * tile, tile)
    db = grids.split_reduction(K, npq, grids.MIN_SLICE_STEPS * threads)
    return dw[0], db[0]


@pytest.mark.parametrize("backend", ["cuda_c_cpu", "cuda"])
def test_dw_and_db_summed_in_slices_equal_the_reference(backend):
    reason = kernels.why_unavailable(backend)
    if reason:
        pytest.skip(reason)
    ops, (dy, x, w) = conv_backward_case(backend)
    npq = dy.shape[0] * dy[0, 0].size
    dw_slices, db_slices = expected_slices(backend, npq, w.shape[0], w[0].size)
    assert dw_slices >= 3 and db_slices >= 2, "the case no longer splits: choose a larger one"
    got = ops.conv2d_backward(dy, x, w, 1, 1)
    expected = kernels.get("numpy").conv2d_backward(dy, x, w, 1, 1)
    for name, g, e in zip(("dx", "dw", "db"), got, expected, strict=True):
        np.testing.assert_allclose(to_numpy(g), e, rtol=1e-10, atol=1e-10, err_msg=name)


# ----------------------------------------------------------------------------------------------
# grid.y: at most 65,535 blocks
# ----------------------------------------------------------------------------------------------


def test_grid_2d_is_legal_for_more_rows_than_grid_y_holds():
    """A million-row product (65,536 row tiles of 16) must still be a legal launch."""
    grid, block = grids.grid_2d(rows=65_536 * 16, cols=16, tile=16)
    launch_check.check_geometry("matmul_tiled_f32", grid, block)


def test_grid_2d_covers_every_row_tile_below_the_limit():
    assert grids.grid_2d(rows=40, cols=33, tile=16) == ((3, 3), (16, 16))


@pytest.fixture
def one_row_of_blocks(monkeypatch):
    """grid.y limited to ONE block, so that every kernel on a 2-D grid must loop over its row
    tiles (the cap grid_2d applies at 65,535 in earnest, here at a size tests can afford)."""
    limit = (launch_check.MAX_GRID[0], 1, launch_check.MAX_GRID[2])
    monkeypatch.setattr(launch_check, "MAX_GRID", limit)


@pytest.mark.parametrize("backend", ["cuda_c_cpu", "cuda"])
def test_kernels_on_a_2d_grid_loop_over_rows_beyond_grid_y(backend, one_row_of_blocks):
    reason = kernels.why_unavailable(backend)
    if reason:
        pytest.skip(reason)
    rows = 9 if backend == "cuda" else 20  # more than one TILE of rows (4 simulated, 16)
    rng = np.random.default_rng(1)
    reference = kernels.get("numpy")
    x, w, b = (
        rng.standard_normal((rows, 3)),
        rng.standard_normal((rows, 3)),
        rng.standard_normal(rows),
    )
    dy = rng.standard_normal((rows, rows))
    for version in ("naive", "tiled"):
        ops = ops_taking_host_arrays(backend, linear=version)
        np.testing.assert_allclose(
            to_numpy(ops.linear_forward(x, w, b)), reference.linear_forward(x, w, b), rtol=1e-10
        )
        grads = zip(ops.linear_backward(dy, x, w), reference.linear_backward(dy, x, w), strict=True)
        for g, e in grads:
            np.testing.assert_allclose(to_numpy(g), e, rtol=1e-10, err_msg=f"linear {version}")
    # conv2d tiled: K and C (the rows of Y, dW and dX) more than one tile
    xc, wc = rng.standard_normal((1, rows, 3, 3)), rng.standard_normal((rows, rows, 1, 1))
    ops = ops_taking_host_arrays(backend, conv2d="tiled")
    y = ops.conv2d_forward(xc, wc, None)
    np.testing.assert_allclose(to_numpy(y), reference.conv2d_forward(xc, wc, None), rtol=1e-10)
    dyc = rng.standard_normal(y.shape)
    got, expected = ops.conv2d_backward(dyc, xc, wc), reference.conv2d_backward(dyc, xc, wc)
    for name, g, e in zip(("dx", "dw", "db"), got, expected, strict=True):
        np.testing.assert_allclose(to_numpy(g), e, rtol=1e-10, err_msg=f"conv2d {name}")


pytestmark = pytest.mark.skipif(cuda_c_cpu.compiler() is None, reason="g++ not found")
