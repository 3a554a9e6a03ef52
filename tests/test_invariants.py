"""Properties every implementation must have, whatever the reference says.

These hold by the mathematics alone, so they catch a bug shared by a kernel *and* the reference:
softmax rows sum to 1; log_softmax is the log of softmax; a max-pool output is an element of its
window and its gradient goes only to the argmax; convolution is linear in x and in w; the naive
and im2col references agree; cross-entropy over only-ignored rows is 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

from harness import Impl, assert_close, impls, to_numpy
from minirad import kernels
from shapes import conv_cases, pool_cases, softmax_cases

FEW = settings(max_examples=25)


@pytest.mark.parametrize("impl", impls("softmax", include_reference=True), ids=str)
@FEW
@given(case=softmax_cases())
def test_softmax_sums_to_one_and_log_softmax_is_its_log(impl: Impl, case):
    x, _, _ = case.arrays(impl.dtype)
    where = f"softmax invariants [{impl}] {case}"
    y = to_numpy(impl.ops.softmax(x, case.axis))
    assert np.all(y >= 0), f"{where}: negative probability"
    sums = y.sum(axis=case.axis)
    assert_close(sums, np.ones_like(sums), impl.tol, f"{where}: rows sum to 1")
    log_y = to_numpy(impl.ops.log_softmax(x, case.axis))
    # Compare where exp does not underflow: there log(softmax) itself is -inf.
    finite = y > np.finfo(impl.dtype).tiny * 1e3
    assert_close(log_y[finite], np.log(y[finite]), impl.tol, f"{where}: log_softmax = log softmax")


@pytest.mark.parametrize("impl", impls("maxpool2d", include_reference=True), ids=str)
@FEW
@given(case=pool_cases())
def test_maxpool_picks_from_its_window_and_routes_gradient_to_argmax(impl: Impl, case):
    x, dy = case.arrays(impl.dtype)
    where = f"maxpool2d invariants [{impl}] {case}"
    hyper = dict(kernel=case.kernel, stride=case.stride, padding=case.padding)
    y, argmax = (to_numpy(a) for a in impl.ops.maxpool2d_forward(x, **hyper))
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = case.kernel, case.stride, case.padding
    for n, c, p, q in np.ndindex(y.shape):
        i, j = divmod(int(argmax[n, c, p, q]), W)
        assert p * sh - ph <= i < p * sh - ph + kh and q * sw - pw <= j < q * sw - pw + kw, (
            f"{where}: argmax {(i, j)} of output {(n, c, p, q)} lies outside its window"
        )
        window = x[
            n, c, max(p * sh - ph, 0) : p * sh - ph + kh, max(q * sw - pw, 0) : q * sw - pw + kw
        ]
        assert y[n, c, p, q] == x[n, c, i, j] == window.max(), f"{where}: {(n, c, p, q)}"
        # Ties (and windows of -inf) go to the first maximum in row-major window order,
        # PyTorch's rule: the first (row, column) of the window that holds the maximum.
        first_r, first_s = np.argwhere(window == window.max())[0]
        first = (max(p * sh - ph, 0) + first_r, max(q * sw - pw, 0) + first_s)
        assert (i, j) == tuple(first), (
            f"{where}: argmax {(i, j)} of output {(n, c, p, q)} is not the first maximum "
            f"{tuple(map(int, first))} of its window {window.tolist()}"
        )
    dx = to_numpy(impl.ops.maxpool2d_backward(dy, argmax, x.shape, **hyper))
    expected = np.zeros((N * C, H * W))
    for plane, (flat_dy, flat_arg) in enumerate(
        zip(dy.reshape(N * C, -1), argmax.reshape(N * C, -1), strict=True)
    ):
        for g, a in zip(flat_dy, flat_arg, strict=True):
            expected[plane, a] += g
    assert_close(dx, expected.reshape(x.shape), impl.tol, f"{where}: gradient routing")


@pytest.mark.parametrize("impl", impls("conv2d", include_reference=True), ids=str)
@FEW
@given(case=conv_cases())
def test_conv2d_is_linear_in_x_and_in_w(impl: Impl, case):
    x1, w1, _, _ = case.arrays(impl.dtype)
    x2, w2, _, _ = dataclasses.replace(case, seed=case.seed + 1).arrays(impl.dtype)
    a, b = 0.75, -1.5
    where = f"conv2d linearity [{impl}] {case}"

    def conv(x, w):
        return to_numpy(impl.ops.conv2d_forward(x, w, None, case.stride, case.padding))

    mix_x = (a * x1 + b * x2).astype(impl.dtype)
    assert_close(conv(mix_x, w1), a * conv(x1, w1) + b * conv(x2, w1), impl.tol, f"{where} in x")
    mix_w = (a * w1 + b * w2).astype(impl.dtype)
    assert_close(conv(x1, mix_w), a * conv(x1, w1) + b * conv(x1, w2), impl.tol, f"{where} in w")


@FEW
@given(case=conv_cases())
def test_conv2d_naive_and_im2col_references_agree(case):
    x, w, b, dy = case.arrays(np.float64)
    naive, im2col = kernels.get("numpy", conv2d="naive"), kernels.get("numpy", conv2d="im2col")
    where = f"conv2d naive vs im2col {case}"
    tol = (1e-12, 1.0)
    assert_close(
        naive.conv2d_forward(x, w, b, case.stride, case.padding),
        im2col.conv2d_forward(x, w, b, case.stride, case.padding),
        tol,
        where,
    )
    for name, g1, g2 in zip(
        ["dx", "dw", "db"],
        naive.conv2d_backward(dy, x, w, case.stride, case.padding),
        im2col.conv2d_backward(dy, x, w, case.stride, case.padding),
        strict=True,
    ):
        assert_close(g1, g2, tol, f"{where} {name}")


@pytest.mark.parametrize("impl", impls("softmax", include_reference=True), ids=str)
def test_cross_entropy_of_only_ignored_rows_is_zero(impl: Impl):
    logits = np.arange(12, dtype=impl.dtype).reshape(3, 4)
    targets = np.full(3, -100)
    loss, dlogits = impl.ops.softmax_cross_entropy(logits, targets, -100)
    assert float(to_numpy(loss)) == 0.0
    assert not np.any(to_numpy(dlogits)), f"[{impl}] ignored rows must get no gradient"


@pytest.mark.parametrize("impl", impls("softmax", include_reference=True), ids=str)
def test_softmax_survives_huge_logits(impl: Impl):
    """exp(1000) overflows in either dtype; the max-shift must make it irrelevant."""
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], dtype=impl.dtype)
    y = to_numpy(impl.ops.softmax(x, -1))
    assert np.all(np.isfinite(y)), f"[{impl}] softmax overflowed: {y}"
    assert_close(y, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], impl.tol, f"softmax [{impl}]")
    loss, _ = impl.ops.softmax_cross_entropy(x, np.array([0, 1]), -100)
    assert np.isfinite(float(to_numpy(loss))), f"[{impl}] cross-entropy overflowed"
