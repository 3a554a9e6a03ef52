"""Module and Parameter, and the containers ModuleList and ModuleDict, named as in PyTorch.

A Module owns Parameters (tensors that training changes) and sub-Modules, found by attribute:
assigning `self.conv = Conv2d(...)` or `self.weight = Parameter(...)` registers it, so
`named_parameters()` yields dotted names ("encoder.conv1.weight") in assignment order, which is
also the order and the naming of `state_dict()`.

Layers kept in a plain Python list or dict are not attributes of the Module, so they are not
registered: the optimizer never sees their parameters and the checkpoint never saves them, and
nothing says so. ModuleList and ModuleDict hold layers registered under their positions ("0",
"1", ...) or keys:

    self.blocks = ModuleList([Linear(8, 8) for _ in range(3)])   # "blocks.0.weight", ...
    self.heads = ModuleDict({"findings": Linear(8, 9)})           # "heads.findings.weight"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

import numpy as np

from minirad import backend, kernels
from minirad.autograd import Tensor, array_module
from minirad.backend import to_device
from minirad.kernels import Ops

ModuleT = TypeVar("ModuleT", bound="Module")  # Module.to returns the model of its own type


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

    def add_module(self, name: str, module: Module) -> None:
        """Register `module` as the sub-module `name`, as `setattr(self, name, module)` does.

        As in PyTorch: `name` is a non-empty string without "." (state_dict joins names with
        dots), it may not hide an attribute that is not a sub-module (a ModuleDict key "train"
        would hide the method), and a sub-module that is replaced keeps its place in the order.
        """
        if not isinstance(module, Module):
            raise TypeError(f"{name!r}: expected a Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f'a module name is a non-empty string without ".", got {name!r}')
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"{name!r}: {type(self).__name__} already has an attribute of that name")
        self._modules[name] = module  # an existing key keeps its position in the dict
        object.__setattr__(self, name, module)

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
            # A parameter on a device stays there: the host array is uploaded, once.
            xp = array_module(parameter.data)
            parameter.data = xp.array(state[name], copy=True)

    def to(self: ModuleT, backend: str | Ops | None = None) -> ModuleT:
        """Move every parameter, and its gradient, to where `backend` computes; returns self.

        backend: a backend name ("cupy", "numba", "auto", ...; "cpu" means host memory, as
        "numpy"), an Ops from minirad.kernels.get, or None for the active backend
        (minirad.backend.active()). In place, as PyTorch's Module.to: each Parameter object
        stays the same and only its .data moves, so an optimizer built on model.parameters()
        keeps working (its moments are created on the first step, where the parameters are).
        Arrays already there are not copied.
        """
        ops = _ops_for(backend)
        for parameter in self.parameters():
            parameter.data = to_device(parameter.data, ops)
            if parameter.grad is not None:
                parameter.grad = to_device(parameter.grad, ops)
        return self

    def to_dtype(self, dtype) -> Module:
        """Cast every parameter (float32 for speed, float64 for gradient checks)."""
        for parameter in self.parameters():
            parameter.data = parameter.data.astype(dtype)
            parameter.grad = None
        return self


def _ops_for(backend_: str | Ops | None) -> Ops:
    """The Ops a Module.to argument names ("cpu" is the host: the numpy backend)."""
    if backend_ is None:
        return backend.active()
    if isinstance(backend_, Ops):
        return backend_
    if backend_ == "cpu":
        return kernels.get("numpy")
    return kernels.get(backend.resolve(backend_))


class ModuleList(Module):
    """A list of Modules, each registered under its position: "0.weight", "1.weight", ...

    Indexing (negative and slices too), len, iteration, append and extend, as a list and as
    PyTorch's nn.ModuleList. No forward: the owner calls the layers as it needs (in a loop, or
    layer t at step t).
    """

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self.extend(modules)

    def _key(self, index: int) -> str:
        """The name of the layer at `index` (negative counts from the end)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"ModuleList index {index} out of range for {n} modules")
        return str(index % n)

    @overload
    def __getitem__(self, index: int) -> Module: ...
    @overload
    def __getitem__(self, index: slice) -> ModuleList: ...
    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        if isinstance(index, slice):  # the same layers (not copies), renumbered from 0
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._key(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        self.add_module(self._key(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self


class ModuleDict(Module):
    """Modules by name, each registered under its key: "findings.weight", ...

    Indexing by key, `in`, len, iteration over the keys, keys(), values(), items(), update()
    and del, in insertion order, as a dict and as PyTorch's nn.ModuleDict. Keys follow
    `add_module`'s rules. No forward.
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] = ()) -> None:
        super().__init__()
        self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        object.__delattr__(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self[key] = module
