"""Module and Parameter: the containers of a network, named as in PyTorch.

A Module owns Parameters (tensors that training changes) and sub-Modules, found by attribute:
assigning `self.conv = Conv2d(...)` or `self.weight = Parameter(...)` registers it, so
`named_parameters()` yields dotted names ("encoder.conv1.weight") in assignment order, which is
also the order and the naming of `state_dict()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from minirad.autograd import Tensor, array_module


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad is on."""

    def __init__(self, data: Any) -> None:
        super().__init__(data, requires_grad=True)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class of every layer and model. Subclasses write __init__ and forward."""

    _parameters: dict[str, Parameter]
    _modules: dict[str, Module]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__()")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal -----------------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, module in self.named_modules():
            for name, parameter in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), parameter

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    # -- modes and gradients -------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """name -> a host copy of each parameter's data (PyTorch's names and shapes)."""
        return {name: np.array(p.numpy(), copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray], source: str = "state_dict") -> None:
        """Copy arrays into the parameters; names, shapes and dtypes must match exactly.

        Raises ValueError naming `source` and the first entry that differs.
        """
        own = dict(self.named_parameters())
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        if missing:
            raise ValueError(f"{source}: missing entry {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            raise ValueError(f"{source}: unexpected entry {unexpected[0]!r}")
        for name, parameter in own.items():
            value = state[name]
            if tuple(value.shape) != parameter.shape:
                raise ValueError(
                    f"{source}: entry {name!r} has shape {tuple(value.shape)}, "
                    f"the model expects {parameter.shape}"
                )
            if np.dtype(value.dtype) != np.dtype(parameter.dtype):
                raise ValueError(
                    f"{source}: entry {name!r} has dtype {value.dtype}, "
                    f"the model expects {parameter.dtype}"
                )
        for name, parameter in own.items():
            xp = array_module(parameter.data)  # a parameter on the GPU stays there
            parameter.data = xp.array(state[name], copy=True)

    def to_dtype(self, dtype) -> Module:
        """Cast every parameter (float32 for speed, float64 for gradient checks)."""
        for parameter in self.parameters():
            parameter.data = parameter.data.astype(dtype)
            parameter.grad = None
        return self
