"""The backprop engine: Tensor, Function, the tape, backward(), no_grad(), gradcheck().

Every differentiable operation is a `Function`: a `forward` on arrays that may save what its
backward needs, and a `backward` that maps the gradient of each output to the gradient of each
input (the vector-Jacobian product). `Function.apply` runs the forward and, when some input
requires a gradient, records the call on the tape: the outputs remember the Function that made
them, and the Function remembers its inputs. That chain of records is the graph.

`loss.backward()` walks the graph from the loss in reverse topological order (a Function runs
only after every Function that used its outputs has passed its gradient back), sums the
gradients that reach each tensor, and stores them in `.grad` of the leaves (the parameters and
inputs created by the user). Each Function frees its saved arrays after its backward, so a
second `backward()` through the same graph raises instead of silently doubling the gradients.

    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray, or cupy.ndarray on the GPU backend

_state = threading.local()


def grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextmanager
def no_grad():
    """Inside this block no operation is recorded (evaluation, optimizer steps)."""
    previous = grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def array_module(a: Array):
    """numpy for NumPy arrays, cupy for CuPy arrays (so elementwise code serves both)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_host(a: Any) -> np.ndarray:
    """`a` as a NumPy array in host memory: the one way minirad copies a device array back.

    NumPy arrays (and numbers, lists) pass through np.asarray, without a copy where none is
    needed; a CuPy array is copied with .get(), a Numba CUDA device array with .copy_to_host().
    Duck-typed, so cupy is never imported here and stand-ins for device arrays work too.
    """
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "copy_to_host"):  # numba.cuda's DeviceNDArray (and the simulator's)
        return a.copy_to_host()
    if hasattr(a, "get"):  # cupy.ndarray
        return a.get()
    return np.asarray(a)


def move_to(a: Any, xp: Any) -> Array:
    """`a` as an array of module `xp`: for NumPy, to_host(a); for CuPy, cupy.asarray(a) (one
    upload of host data, nothing for a device array). The one place data changes sides."""
    if xp is np:
        return to_host(a)
    return xp.asarray(a)


def like(a: Any, reference: Array) -> Array:
    """`a` on the device (or the host) where the array `reference` lives."""
    return move_to(a, array_module(reference))


class Tensor:
    """An array with an optional gradient and a link to the Function that produced it."""

    __array_priority__ = 100  # numpy scalars and arrays defer to Tensor's operators

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.data
        if not hasattr(data, "dtype") or not hasattr(data, "shape"):
            data = np.asarray(data, dtype=np.float64 if _is_float_like(data) else None)
        self.data: Array = data
        self.grad: Array | None = None
        self.requires_grad = bool(requires_grad)
        self._creator: Function | None = None  # set by Function.apply
        self._output_index = 0

    # -- description -----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._creator is None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host if it lives on a GPU)."""
        return to_host(self.data)

    def item(self) -> float:
        return float(self.data.item() if hasattr(self.data, "item") else self.data)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    # -- the backward pass -----------------------------------------------------------------

    def backward(self, grad: Array | None = None) -> None:
        """Accumulate d(self)/d(leaf) * grad into the .grad of every leaf that requires it.

        grad defaults to 1 for a scalar; a non-scalar needs the upstream gradient explicitly.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad (no graph to walk)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward(): pass the gradient of a non-scalar tensor of shape {self.shape}"
                )
            grad = array_module(self.data).ones_like(self.data)
        if self._creator is None:
            _accumulate_leaf(self, grad)
            return
        if self._creator.freed:
            raise RuntimeError(
                "backward(): this graph was already used by a backward pass and freed; "
                "run the forward pass again (minirad keeps no graph for a second backward)"
            )
        run_backward(self, grad)

    # -- operators (defined in terms of the Functions below) -------------------------------

    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    # Python numbers become tensors of self's dtype *before* Neg/Pow see them: alone they
    # would be float64 and, under NumPy 2's promotion rules, upcast a float32 result.
    def __sub__(self, other):
        return Add.apply(self, Neg.apply(as_tensor(other, like=self)))

    def __rsub__(self, other):
        return Add.apply(as_tensor(other, like=self), Neg.apply(self))

    def __neg__(self):
        return Neg.apply(self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Mul.apply(self, Pow.apply(as_tensor(other, like=self), exponent=-1.0))

    def __rtruediv__(self, other):
        return Mul.apply(as_tensor(other, like=self), Pow.apply(self, exponent=-1.0))

    def __pow__(self, exponent: float):
        return Pow.apply(self, exponent=float(exponent))

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __getitem__(self, index):
        return GetItem.apply(self, index=index)

    def sum(self, axis=None, keepdims: bool = False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        count = self.data.size if axis is None else _count(self.shape, axis)
        return Sum.apply(self, axis=axis, keepdims=keepdims) * (1.0 / count)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Reshape.apply(self, shape=tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return Transpose.apply(self, axes=tuple(axes) if axes else None)

    @property
    def T(self):  # noqa: N802 - the name every array library uses
        return self.transpose()

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def relu(self):
        return ReLU.apply(self)


def _is_float_like(data) -> bool:
    return isinstance(data, float) or (
        isinstance(data, (list, tuple)) and any(isinstance(v, float) for v in np.ravel(data))
    )


def _count(shape, axis) -> int:
    axes = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axes]))


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """A Tensor for value; Python numbers take the dtype of `like` (no silent float64 upcast)."""
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float)):
        # full() writes the number on the device (a kernel argument), where asarray would copy
        # a host scalar over: one transfer per `x + 1.0` on a GPU.
        return Tensor(array_module(like.data).full((), value, dtype=like.dtype))
    return Tensor(value)


def _accumulate_leaf(tensor: Tensor, grad: Array) -> None:
    if grad.shape != tensor.data.shape:
        raise RuntimeError(f"gradient of shape {grad.shape} for a tensor of shape {tensor.shape}")
    if grad.dtype != tensor.data.dtype:
        # A silent float64 gradient on a float32 parameter is a bug upstream (an operand that
        # was not cast); say so instead of letting the optimizer upcast the model.
        raise RuntimeError(
            f"gradient of dtype {grad.dtype} for a tensor of dtype {tensor.dtype}: "
            "some operation mixed dtypes"
        )
    tensor.grad = grad if tensor.grad is None else tensor.grad + grad


# ----------------------------------------------------------------------------------------------
# Function and the tape
# ----------------------------------------------------------------------------------------------


class Function:
    """One differentiable operation. Subclasses write `forward` and `backward` on arrays.

    forward(*arrays, **options) -> array or tuple of arrays; save what backward needs on self.
    backward(*output_grads) -> one gradient (or None) per array input of forward.
    Output gradients that nothing upstream produced arrive as zeros.
    """

    def __init__(self) -> None:
        self.inputs: tuple[Tensor | None, ...] = ()
        self.output_meta: list[tuple[tuple[int, ...], Any, Any]] = []  # shape, dtype, xp
        self.freed = False

    def forward(self, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *output_grads):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the inputs' arrays; record the call if a gradient is needed."""
        like = next((t for t in inputs if isinstance(t, Tensor)), None)
        # None stays None: an optional input that is absent (a layer without bias).
        tensors = tuple(None if t is None else as_tensor(t, like) for t in inputs)
        fn = cls()
        out = fn.forward(*(None if t is None else t.data for t in tensors), **options)
        outputs = out if isinstance(out, tuple) else (out,)
        record = grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
        results = tuple(Tensor(o, requires_grad=record) for o in outputs)
        if record:
            fn.inputs = tensors
            fn.output_meta = [(o.shape, o.dtype, array_module(o)) for o in outputs]
            for index, result in enumerate(results):
                result._creator = fn
                result._output_index = index
        return results if isinstance(out, tuple) else results[0]

    def free(self) -> None:
        """Drop everything saved for the backward pass (and the links to the inputs)."""
        self.__dict__ = {"inputs": (), "output_meta": [], "freed": True}


def topological_order(root: Function) -> list[Function]:
    """Every Function reachable from root, each after all Functions that consume its outputs.

    Iterative depth-first search (a recurrent network's graph is deeper than Python's
    recursion limit); the post-order lists producers before consumers, so it is reversed.
    """
    order, visited, stack = [], {id(root)}, [(root, iter(root.inputs))]
    while stack:
        fn, pending = stack[-1]
        for tensor in pending:
            creator = None if tensor is None else tensor._creator
            if creator is not None and id(creator) not in visited:
                visited.add(id(creator))
                stack.append((creator, iter(creator.inputs)))
                break
        else:
            stack.pop()
            order.append(fn)
    return order[::-1]


def run_backward(output: Tensor, grad: Array) -> None:
    """The backward pass from `output` with upstream gradient `grad`."""
    root = output._creator
    assert root is not None
    pending: dict[int, list] = {id(root): [None] * len(root.output_meta)}
    pending[id(root)][output._output_index] = grad
    for fn in topological_order(root):
        grads = pending.pop(id(fn), [None] * len(fn.output_meta))
        grads = [
            g if g is not None else xp.zeros(shape, dtype)
            for g, (shape, dtype, xp) in zip(grads, fn.output_meta, strict=True)
        ]
        input_grads = fn.backward(*grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for tensor, g in zip(fn.inputs, input_grads, strict=True):
            if tensor is None or g is None or not tensor.requires_grad:
                continue
            if tensor._creator is None:
                _accumulate_leaf(tensor, g)
            else:
                slots = pending.setdefault(
                    id(tensor._creator), [None] * len(tensor._creator.output_meta)
                )
                index = tensor._output_index
                slots[index] = g if slots[index] is None else slots[index] + g
        fn.free()


# ----------------------------------------------------------------------------------------------
# Elementwise and shape Functions (plain array arithmetic: the kernels are for the big ops)
# ----------------------------------------------------------------------------------------------


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum grad over the axes that broadcasting added or stretched, back to `shape`."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return unbroadcast(grad * self.b, self.a.shape), unbroadcast(grad * self.a, self.b.shape)


class Pow(Function):
    def forward(self, a, exponent: float):
        self.a, self.exponent = a, exponent
        return a**exponent

    def backward(self, grad):
        return grad * self.exponent * self.a ** (self.exponent - 1)


class MatMul(Function):
    """C = A @ B for 2-D A (M, K) and B (K, N): dA = dC @ B.T, dB = A.T @ dC."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        return grad @ self.b.T, self.a.T @ grad


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        xp = array_module(grad)
        if self.axis is not None and not self.keepdims:
            grad = xp.expand_dims(grad, self.axis)
        return xp.broadcast_to(grad, self.shape).copy()


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Transpose(Function):
    def forward(self, a, axes=None):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, grad):
        if self.axes is None:
            return grad.transpose()
        # The inverse permutation as Python ints: a device array's transpose takes no host
        # array (np.argsort returns one), as CuPy refuses implicit host-to-device conversion.
        inverse = tuple(int(axis) for axis in np.argsort(self.axes))
        return grad.transpose(inverse)


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, grad):
        xp = array_module(grad)
        full = xp.zeros(self.shape, dtype=self.dtype)
        # Scatter-add, not assignment: an index that repeats (x[[0, 0]]) gets both gradients.
        if xp is np:
            np.add.at(full, self.index, grad)
        else:
            import cupyx

            cupyx.scatter_add(full, self.index, grad)
        return full


class Exp(Function):
    def forward(self, a):
        self.y = array_module(a).exp(a)
        return self.y

    def backward(self, grad):
        return grad * self.y


class Log(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).log(a)

    def backward(self, grad):
        return grad / self.a


class Tanh(Function):
    def forward(self, a):
        self.y = array_module(a).tanh(a)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class Sigmoid(Function):
    def forward(self, a):
        xp = array_module(a)
        e = xp.exp(-xp.abs(a))  # exp of -|a| only: no overflow for any a
        self.y = xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


class ReLU(Function):
    def forward(self, a):
        self.positive = a > 0
        return a * self.positive

    def backward(self, grad):
        return grad * self.positive


class Concatenate(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, grad):
        xp = array_module(grad)
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(grad, cuts, axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        return array_module(arrays[0]).stack(arrays, axis=axis)

    def backward(self, grad):
        xp = array_module(grad)
        return tuple(xp.moveaxis(grad, self.axis, 0))


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    return Stack.apply(*tensors, axis=axis)


# ----------------------------------------------------------------------------------------------
# Gradient checking
# ----------------------------------------------------------------------------------------------


class GradcheckError(AssertionError):
    pass


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
) -> bool:
    """Compare backward() with float64 central differences for every input that requires grad.

    L = sum(fn(*inputs) * u) for a fixed random u; for each element i of each input,
        numeric_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
    and the analytic gradient must agree: max|numeric - analytic| / max|numeric| <= rtol
    (norm-wise relative error: small gradients are held to the same relative standard).
    Returns True, or raises GradcheckError naming the input, the worst element and both
    values. Inputs must be float64 (float32 rounding swamps the differences).
    """
    for index, tensor in enumerate(inputs):
        if tensor.requires_grad and tensor.dtype != np.float64:
            raise ValueError(f"inputs[{index}]: gradcheck needs float64, got {tensor.dtype}")
    rng = np.random.default_rng(seed)
    output = fn(*inputs)
    u = rng.standard_normal(output.shape)

    def loss() -> float:
        with no_grad():
            return float(np.sum(to_host(fn(*inputs).data) * u))

    for tensor in inputs:
        tensor.grad = None
    fn(*inputs).backward(array_module(output.data).asarray(u))
    for index, tensor in enumerate(inputs):
        if not tensor.requires_grad:
            continue
        analytic = to_host(tensor.grad) if tensor.grad is not None else np.zeros(tensor.shape)
        numeric = np.zeros(tensor.shape)
        for i in np.ndindex(*tensor.shape):  # perturb one element of tensor.data in place
            keep = tensor.data[i].item()
            tensor.data[i] = keep + eps
            plus = loss()
            tensor.data[i] = keep - eps
            minus = loss()
            tensor.data[i] = keep
            numeric[i] = (plus - minus) / (2 * eps)
        scale = max(float(np.max(np.abs(numeric))) if numeric.size else 0.0, 1e-12)
        error = np.abs(numeric - analytic)
        if error.size and error.max() / scale > rtol:
            worst = np.unravel_index(int(np.argmax(error)), error.shape)
            raise GradcheckError(
                f"gradcheck: inputs[{index}] shape {tensor.shape}: relative error "
                f"{error.max() / scale:.2e} > {rtol:.0e}; worst element {tuple(map(int, worst))}: "
                f"analytic {float(analytic[worst]):.6g}, numeric {float(numeric[worst]):.6g}"
            )
    return True
