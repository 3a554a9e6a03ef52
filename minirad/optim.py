"""Optimizers, gradient clipping and learning-rate schedules, with PyTorch's update rules.

After `loss.backward()` every parameter p holds its gradient g = dL/dp in `p.grad`. An
optimizer's `step()` moves each p against g; `zero_grad()` clears the gradients before the next
backward (minirad, like PyTorch, *accumulates* gradients, so forgetting it sums several steps).

    optimizer = Adam(model.parameters(), lr=1e-3)
    for x, t in batches:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), t)
        loss.backward()
        clip_grad_norm_(model.parameters(), max_norm=1.0)   # optional
        optimizer.step()

The updates follow torch.optim's documented algorithms term for term (same order of the
operations, same defaults), so a test can run both on the same gradients and compare in float64.
Updates write into the parameters' arrays in place, under `no_grad()`: an update is not part of
any graph. What an optimizer remembers between steps (a momentum buffer, Adam's moments) lives
in `optimizer.state[p]`, one dict per parameter, created at the parameter's first update.

minirad keeps one learning rate per optimizer (`optimizer.lr`); PyTorch's parameter groups are
left out. A schedule changes `optimizer.lr` between epochs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from minirad.autograd import Array, Tensor, array_module, no_grad, to_host

# ----------------------------------------------------------------------------------------------
# Optimizers
# ----------------------------------------------------------------------------------------------


class Optimizer:
    """Base class: holds the parameters, the learning rate and the per-parameter state."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = _checked_params(params)
        _check_positive("lr", lr)
        self.lr = float(lr)
        self.state: dict[Tensor, dict[str, Any]] = {p: {} for p in self.params}

    def zero_grad(self) -> None:
        """Forget every gradient (set to None, as PyTorch's default set_to_none=True)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient; one without (unused this step) is skipped."""
        with no_grad():
            for p in self.params:
                if p.grad is not None:
                    self.update(p, p.grad, self.state[p])

    def update(self, p: Tensor, g, state: dict[str, Any]) -> None:  # pragma: no cover
        """Change p.data in place given its gradient g (an array of p's shape)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """What the optimizer remembers, as name -> host array, for a checkpoint (.npz).

        "lr" and, for parameter number i (in `params` order) and each entry of its state,
        "{i}.{entry}" ("3.exp_avg", "3.step"). Resuming from it continues exactly where the
        saved run stopped: without the moments, Adam would restart with m = v = 0.
        """
        state = {"lr": np.asarray(self.lr)}
        for i, p in enumerate(self.params):
            for key, value in self.state[p].items():
                state[f"{i}.{key}"] = to_host(value)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved; ValueError naming the entry that does not fit."""
        per_param: list[dict[str, Any]] = [{} for _ in self.params]
        for name, value in state.items():
            if name == "lr":
                continue
            index, _, key = name.partition(".")
            if not index.isdigit() or int(index) >= len(self.params) or not key:
                raise ValueError(f"optimizer state: entry {name!r} names no parameter")
            p = self.params[int(index)]
            if value.ndim == 0:  # a counter such as "step"
                per_param[int(index)][key] = value.item()
            elif value.shape != p.shape:
                raise ValueError(
                    f"optimizer state: entry {name!r} has shape {value.shape}, "
                    f"parameter {index} has {p.shape}"
                )
            else:
                per_param[int(index)][key] = array_module(p.data).asarray(value, dtype=p.dtype)
        if "lr" in state:
            self.lr = float(state["lr"])
        for p, entries in zip(self.params, per_param, strict=True):
            self.state[p] = entries


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    With weight decay lambda, momentum mu and learning rate lr, for each parameter p:

        g = grad + lambda * p                     (L2 penalty lambda/2 |p|^2 folded into g)
        b = g             on the first step       (the momentum buffer)
        b = mu * b + g    afterwards
        g = g + mu * b    if nesterov, else g = b
        p = p - lr * g

    With mu = 0 this is plain p = p - lr * g. (PyTorch's `dampening` is left out: it is 0 here.)
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        _check_non_negative("momentum", momentum)
        _check_non_negative("weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def update(self, p: Tensor, g, state: dict[str, Any]) -> None:
        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data  # a new array: p.grad itself is left as it was
        if self.momentum != 0:
            if "momentum_buffer" not in state:
                # An array, even for a 0-d parameter (where g may be a NumPy scalar, and
                # `b *= mu` on a scalar would rebind b instead of updating the buffer).
                state["momentum_buffer"] = array_module(p.data).array(g, copy=True)
            else:
                b = state["momentum_buffer"]
                b *= self.momentum
                b += g
            b = state["momentum_buffer"]
            g = g + self.momentum * b if self.nesterov else b
        p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): a step per coordinate scaled by running gradient moments.

    With betas (beta1, beta2), step count t = 1, 2, ... and weight decay lambda:

        g = grad + lambda * p                                  (L2 decay, coupled: see AdamW)
        m = beta1 * m + (1 - beta1) * g                        (first moment, m_0 = 0)
        v = beta2 * v + (1 - beta2) * g^2                      (second moment, v_0 = 0)
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The bias corrections 1 - beta^t undo the pull of the zero initial moments towards zero in
    the first steps; without them the first steps would be about (1 - beta1) times too small.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{index}]: must be in [0, 1), got {beta}")
        _check_non_negative("eps", eps)
        _check_non_negative("weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def update(self, p: Tensor, g, state: dict[str, Any]) -> None:
        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data
        self.adam_step(p, g, state)

    def adam_step(self, p: Tensor, g, state: dict[str, Any]) -> None:
        """The moment updates and the bias-corrected step, shared by Adam and AdamW."""
        beta1, beta2 = self.betas
        if not state:
            xp = array_module(p.data)
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        step_size = self.lr / (1 - beta1**t)
        denom = array_module(v).sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        p.data -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    The decay shrinks the weights directly instead of entering the gradient, so it is not
    rescaled by Adam's per-coordinate step size:

        p = p * (1 - lr * lambda)         (first)
        then Adam's update above with lambda = 0.

    The default lambda = 0.01 is PyTorch's.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def update(self, p: Tensor, g, state: dict[str, Any]) -> None:
        p.data *= 1 - self.lr * self.weight_decay
        self.adam_step(p, g, state)


def _checked_params(params: Iterable[Tensor]) -> list[Tensor]:
    """params as a list; ValueError naming `params` if it is empty or holds a non-Tensor."""
    if isinstance(params, Tensor) or not isinstance(params, Iterable):
        raise ValueError(
            f"params: expected an iterable of Tensors (e.g. model.parameters()), "
            f"got {type(params).__name__}"
        )
    params = list(params)
    if not params:
        raise ValueError("params: empty list; the optimizer would have nothing to update")
    seen: set[int] = set()
    for index, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise ValueError(f"params[{index}]: expected a Tensor, got {type(p).__name__}")
        if id(p) in seen:  # it would be updated twice per step
            raise ValueError(f"params[{index}]: the same parameter appears twice")
        seen.add(id(p))
    return params


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name}: must be a number > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name}: must be a number >= 0, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Gradient clipping
# ----------------------------------------------------------------------------------------------


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> Array:
    """Scale all gradients together so that their global L2 norm is at most max_norm.

        total = sqrt(sum over parameters p, elements i of grad_p[i]^2)
        grad_p = grad_p * min(1, max_norm / (total + 1e-6))       for every p

    One factor for all gradients keeps the update's direction; only its length shrinks. (The
    1e-6 guards the division, as in torch.nn.utils.clip_grad_norm_.) Parameters without a
    gradient are skipped. Returns the norm *before* clipping, which is worth logging: steady
    growth of it is the usual sign of a diverging run. The trailing underscore, as in PyTorch,
    says that the gradients are changed in place.

    The norm is returned as a 0-d array where the gradients are, as PyTorch returns a tensor:
    everything here stays on the device, and `if total > max_norm` in Python would be a
    device-to-host sync per step. So the factor is applied always, computed with minimum();
    read the norm with float(total) where it is wanted (one sync).
    """
    _check_positive("max_norm", max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return np.zeros(())
    xp = array_module(grads[0])
    # Norm of the per-parameter norms == norm of everything: sqrt(sum_p |g_p|^2).
    total = xp.sqrt(sum((g * g).sum() for g in grads))
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= scale
    return total


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules
# ----------------------------------------------------------------------------------------------


class LRScheduler:
    """Base class: sets optimizer.lr = lr_at(epoch) at construction (epoch 0) and each step().

    Call `step()` once per epoch, after that epoch's optimizer steps (PyTorch's order).
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer: expected a minirad Optimizer, got {type(optimizer)}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """[the learning rate now]: a list, as in PyTorch (one per group; minirad has one)."""
        return [self.optimizer.lr]


class StepLR(LRScheduler):
    """Multiply the learning rate by gamma every step_size epochs:

    lr(epoch) = base_lr * gamma ** (epoch // step_size).
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size: must be an integer >= 1, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from base_lr down to eta_min over T_max epochs (Loshchilov & Hutter, 2017):

    lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.

    Past T_max the cosine climbs back up (PyTorch's behaviour too); stop at T_max, or set T_max
    to the number of epochs.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"T_max: must be an integer >= 1, got {T_max!r}")
        _check_non_negative("eta_min", eta_min)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine
