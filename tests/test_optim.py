"""minirad.optim against torch.optim: same parameters, same gradients, several steps, float64.

Each test builds the same parameters in minirad and in torch, feeds both optimizers the same
random gradients step after step (one parameter has no gradient on some steps, which both must
skip), and requires the parameters to agree to a relative error below 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest

from minirad import optim
from minirad.autograd import Tensor
from minirad.nn.module import Parameter

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), (2, 3, 2, 2), ()]
STEPS = 7
RTOL = 1e-10


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale


def twin_parameters(seed: int = 0) -> tuple[list[Parameter], list]:
    """The same float64 values as minirad Parameters and as torch leaf tensors."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(shape) for shape in SHAPES]
    ours = [Parameter(v.copy()) for v in values]
    theirs = [torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True) for v in values]
    return ours, theirs


def run_both(make_ours, make_theirs, steps: int = STEPS) -> None:
    """Step both optimizers on identical gradients; compare every parameter after each step."""
    ours, theirs = twin_parameters()
    opt_ours, opt_theirs = make_ours(ours), make_theirs(theirs)
    rng = np.random.default_rng(1)
    for step in range(steps):
        opt_ours.zero_grad()
        opt_theirs.zero_grad()
        for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            if index == 1 and step % 3 == 2:
                continue  # no gradient this step: both optimizers must leave p (and its state)
            g = rng.standard_normal(p.shape)
            p.grad = g.copy()
            q.grad = torch.tensor(g.copy(), dtype=torch.float64)
        opt_ours.step()
        opt_theirs.step()
        for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            error = relative_error(p.data, q.detach().numpy())
            assert error < RTOL, (
                f"{type(opt_ours).__name__}: parameter {index} shape {p.shape} after step "
                f"{step + 1}: relative error {error:.2e}"
            )


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(momentum=0.9),
        dict(momentum=0.9, nesterov=True),
        dict(weight_decay=0.1),
        dict(momentum=0.5, weight_decay=0.01),
        dict(momentum=0.8, nesterov=True, weight_decay=0.05),
    ],
    ids=repr,
)
def test_sgd_matches_torch(options):
    run_both(
        lambda ps: optim.SGD(ps, lr=0.1, **options),
        lambda ps: torch.optim.SGD(ps, lr=0.1, **options),
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99)),
        dict(eps=1e-3),
        dict(weight_decay=0.1),
        dict(lr=0.05, betas=(0.0, 0.5), weight_decay=0.01),
    ],
    ids=repr,
)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(name, options):
    run_both(
        lambda ps: getattr(optim, name)(ps, **options),
        lambda ps: getattr(torch.optim, name)(ps, foreach=False, **options),
    )


def test_adamw_default_weight_decay_is_torchs():
    run_both(lambda ps: optim.AdamW(ps, lr=0.1), lambda ps: torch.optim.AdamW(ps, lr=0.1))


def test_step_leaves_the_gradient_alone_and_records_nothing():
    p = Parameter(np.ones(3))
    p.grad = np.full(3, 2.0)
    optim.SGD([p], lr=0.5, weight_decay=1.0).step()
    np.testing.assert_array_equal(p.grad, np.full(3, 2.0))  # decay went into a copy
    assert p.is_leaf and p.requires_grad
    np.testing.assert_allclose(p.data, 1 - 0.5 * (2 + 1))


def test_optimizers_minimise_a_quadratic_through_autograd():
    """End to end with the engine: min |p - c|^2 reaches c."""
    c = np.array([1.0, -2.0, 3.0])
    for make in (
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: optim.Adam(ps, lr=0.1),
        lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.0),
    ):
        p = Parameter(np.zeros(3))
        opt = make([p])
        for _ in range(300):
            opt.zero_grad()
            ((p - Tensor(c)) ** 2).sum().backward()
            opt.step()
        np.testing.assert_allclose(p.data, c, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# clip_grad_norm_
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs = twin_parameters()
    rng = np.random.default_rng(2)
    for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
        if index == 2:
            continue  # a parameter without a gradient is skipped by both
        g = rng.standard_normal(p.shape)
        p.grad, q.grad = g.copy(), torch.tensor(g.copy(), dtype=torch.float64)
    total = optim.clip_grad_norm_(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, foreach=False).item()
    assert relative_error(np.array(total), np.array(expected)) < RTOL
    for index, (p, q) in enumerate(zip(ours, theirs, strict=True)):
        if q.grad is None:
            assert p.grad is None
            continue
        error = relative_error(p.grad, q.grad.numpy())
        assert error < RTOL, f"clip_grad_norm_: grad {index}: relative error {error:.2e}"


@pytest.mark.parametrize("max_norm", [1.0, 4.99, 5.01])
def test_clip_grad_norm_scales_only_above_max_norm(max_norm):
    p = Parameter(np.zeros(2))
    p.grad = np.array([3.0, 4.0])  # norm 5
    assert optim.clip_grad_norm_([p], max_norm) == pytest.approx(5.0)
    assert np.linalg.norm(p.grad) == pytest.approx(min(max_norm, 5.0), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def scheduled_rates(make_scheduler, make_optimizer, params, epochs: int = 25) -> list[float]:
    optimizer = make_optimizer(params)
    scheduler = make_scheduler(optimizer)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(epochs):
        optimizer.step()  # torch warns when the scheduler steps before the optimizer
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    return rates


@pytest.mark.parametrize(
    "name, options",
    [
        ("StepLR", dict(step_size=3)),
        ("StepLR", dict(step_size=1, gamma=0.5)),
        ("StepLR", dict(step_size=4, gamma=0.9)),
        ("CosineAnnealingLR", dict(T_max=10)),
        ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
        ("CosineAnnealingLR", dict(T_max=1, eta_min=0.001)),
    ],
)
def test_schedules_match_torch(name, options):
    ours, theirs = twin_parameters()
    ours_rates = scheduled_rates(
        lambda o: getattr(optim, name)(o, **options), lambda ps: optim.SGD(ps, lr=0.3), ours
    )
    theirs_rates = scheduled_rates(
        lambda o: getattr(torch.optim.lr_scheduler, name)(o, **options),
        lambda ps: torch.optim.SGD(ps, lr=0.3),
        theirs,
    )
    # Absolute error relative to base_lr: the cosine passes through exactly eta_min = 0.
    error = np.max(np.abs(np.array(ours_rates) - np.array(theirs_rates))) / 0.3
    assert error < RTOL, f"{name}{options}: ours {ours_rates} torch {theirs_rates}"


def test_schedule_drives_the_optimizer_step():
    p = Parameter(np.zeros(1))
    optimizer = optim.SGD([p], lr=1.0)
    scheduler = optim.StepLR(optimizer, step_size=1, gamma=0.5)
    for expected in (1.0, 0.5, 0.25):
        p.data[:] = 0.0
        p.grad = np.ones(1)
        optimizer.step()
        assert p.data[0] == -expected
        scheduler.step()


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------

OPTIMIZERS = [optim.SGD, optim.Adam, optim.AdamW]


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "params, match",
    [
        ([], r"params: empty"),
        ([np.zeros(3)], r"params\[0\]: expected a Tensor, got ndarray"),
        (None, r"params: expected an iterable"),
        (Parameter(np.zeros(3)), r"params: expected an iterable"),
    ],
    ids=["empty", "array", "None", "bare tensor"],
)
def test_bad_params_raise_value_error(cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(params, lr=0.1)


def test_repeated_parameter_raises():
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match=r"params\[1\]: the same parameter appears twice"):
        optim.Adam([p, p])


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, float("nan"), "0.1"])
def test_bad_lr_raises_value_error(cls, lr):
    with pytest.raises(ValueError, match=r"^lr: "):
        cls([Parameter(np.zeros(3))], lr=lr)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), r"^nesterov: "),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.1), r"^momentum: "),
        (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), r"^betas\[0\]: "),
        (lambda ps: optim.AdamW(ps, betas=(0.9, -0.1)), r"^betas\[1\]: "),
        (lambda ps: optim.Adam(ps, eps=-1.0), r"^eps: "),
        (lambda ps: optim.Adam(ps, weight_decay=-1.0), r"^weight_decay: "),
        (lambda ps: optim.StepLR(optim.SGD(ps, lr=0.1), step_size=0), r"^step_size: "),
        (lambda ps: optim.CosineAnnealingLR(optim.SGD(ps, lr=0.1), T_max=0), r"^T_max: "),
        (lambda ps: optim.clip_grad_norm_(ps, max_norm=0.0), r"^max_norm: "),
    ],
)
def test_bad_hyper_parameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.zeros(3))])


@pytest.mark.parametrize(
    "make", [lambda p: optim.Adam(p, lr=0.1), lambda p: optim.SGD(p, lr=0.1, momentum=0.9)]
)
def test_state_dict_resumes_exactly(make):
    """Five steps straight == three steps, state_dict -> a new optimizer, two more steps."""
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]

    def run(params, optimizer, steps):
        for g in steps:
            params[0].grad = g.copy()
            optimizer.step()

    straight = [Parameter(start.copy())]
    run(straight, make(straight), grads)
    first = [Parameter(start.copy())]
    optimizer = make(first)
    run(first, optimizer, grads[:3])
    saved = {k: np.array(v) for k, v in optimizer.state_dict().items()}
    resumed = make(first)
    resumed.load_state_dict(saved)
    run(first, resumed, grads[3:])
    np.testing.assert_array_equal(first[0].data, straight[0].data)


def test_load_state_dict_names_a_misfit_entry():
    optimizer = optim.Adam([Parameter(np.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="entry '0.exp_avg' has shape"):
        optimizer.load_state_dict({"0.exp_avg": np.zeros(4)})
    with pytest.raises(ValueError, match="names no parameter"):
        optimizer.load_state_dict({"7.exp_avg": np.zeros(3)})
