"""A device-strict stand-in for CuPy: run minirad's GPU paths on a CPU, and prove where data lives.

No GPU is at hand in CI, yet "the model stays on the device" is a claim that needs a test. This
module imitates the part of CuPy minirad relies on, and is stricter than CuPy where strictness
finds a bug:

  * `ndarray` holds a NumPy array that stands for device memory. It computes with other device
    arrays and with Python or NumPy *scalars*, as cupy.ndarray does; a NumPy *array* in device
    maths (`device + host`, `device[host_index]`, `np.exp(device)`, `np.asarray(device)`)
    raises TypeError, as CuPy's implicit-conversion rule does (CuPy would accept a few of these
    with a hidden copy; here every copy must be explicit).
  * Every copy is counted: host to device (`asarray`/`array` of host data, `ndarray.set`) and
    device to host (`.get()`, `asnumpy`, and each synchronising read: `float()`, `int()`,
    `bool()`, `.item()`, `.tolist()`, printing). `count_transfers()` measures a block.
  * Reductions return 0-d device arrays, not NumPy scalars (CuPy's rule), so a loss read with
    `float(loss)` is a counted sync.
  * `RawModule(code=...)` compiles the CUDA C source with the g++ emulation
    (minirad.kernels.runtime.cuda_c_cpu), so the real `cuda_c.py` host code of the `cupy`
    backend launches the real `.cu` kernels; a host array as a kernel argument is refused.
  * `install()` also teaches Numba's CUDA simulator to take these arrays as kernel arguments,
    as numba takes CuPy arrays on a GPU (`__cuda_array_interface__`), so the `cuda` backend
    runs through the simulator on device arrays.

    import device_standin
    device_standin.install()                 # sys.modules["cupy"] is now this stand-in
    with device_standin.count_transfers() as moved:
        ...                                  # moved.h2d, moved.d2h after the block

From a shell, `python tests/device_standin.py report --backend cupy chest.png` runs a minirad
command on it and prints its transfers by source line.

tests/conftest.py installs it for the whole suite on a machine without a real GPU (set
MINIRAD_STANDIN=0 to run without it), so every test parametrized over backends runs its `cuda`
and `cupy` cases on device arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- transfer counting -----------------------------------------------------------------------


@dataclass
class Transfers:
    """Copies between host and device: host-to-device, device-to-host (each sync is one)."""

    h2d: int = 0
    d2h: int = 0
    h2d_bytes: int = 0
    d2h_bytes: int = 0

    # Where each copy was made ("h2d minirad/nn/layers.py:180"), while count_transfers(
    # where=True) is active: the first frame outside this file.
    sites: list[str] = field(default_factory=list, compare=False, repr=False)

    def __sub__(self, other: Transfers) -> Transfers:
        return Transfers(
            self.h2d - other.h2d,
            self.d2h - other.d2h,
            self.h2d_bytes - other.h2d_bytes,
            self.d2h_bytes - other.d2h_bytes,
        )


TOTAL = Transfers()  # since install(); count_transfers() reports differences of it
_RECORDING: list[list[str]] = []  # the `sites` lists of the active count_transfers(where=True)


def _site(direction: str) -> str:
    frame = sys._getframe(2)
    while frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    return f"{direction} {frame.f_code.co_filename.split('minirad/')[-1]}:{frame.f_lineno}"


def _count_h2d(host: np.ndarray) -> None:
    TOTAL.h2d += 1
    TOTAL.h2d_bytes += host.nbytes
    for sites in _RECORDING:
        sites.append(_site("h2d"))


def _count_d2h(device: np.ndarray) -> None:
    TOTAL.d2h += 1
    TOTAL.d2h_bytes += device.nbytes
    for sites in _RECORDING:
        sites.append(_site("d2h"))


@contextlib.contextmanager
def count_transfers(where: bool = False) -> Iterator[Transfers]:
    """The transfers made inside the block (the yielded object is filled in on exit); with
    `where`, also the source line of each one in `.sites`."""
    start = Transfers(**{k: v for k, v in vars(TOTAL).items() if k != "sites"})
    moved = Transfers()
    if where:
        _RECORDING.append(moved.sites)
    try:
        yield moved
    finally:
        if where:
            _RECORDING.remove(moved.sites)
        for name in ("h2d", "d2h", "h2d_bytes", "d2h_bytes"):
            setattr(moved, name, getattr(TOTAL, name) - getattr(start, name))


# -- the device array ------------------------------------------------------------------------


def _host_array_error(what: str) -> TypeError:
    return TypeError(
        f"{what}: a host array (numpy.ndarray) met a device array; move it with cupy.asarray "
        "first (CuPy refuses implicit conversion; the stand-in counts every copy)"
    )


def _unwrap(value: Any, what: str) -> Any:
    """The NumPy buffer behind device arrays (also inside lists and tuples); host arrays refused."""
    if isinstance(value, ndarray):
        return value._buffer
    if isinstance(value, np.ndarray):
        raise _host_array_error(what)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, what) for v in value)
    return value


def _wrap(value: Any) -> Any:
    """Results as device arrays: NumPy arrays and scalars become `ndarray` (0-d for scalars)."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _index(key: Any) -> Any:
    """An index into a device array: ints, slices, None, Ellipsis and device arrays. A host
    index array would be a hidden upload on every use, so it is refused; a list is uploaded."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._buffer
    if isinstance(key, np.ndarray):
        raise _host_array_error("indexing")
    if isinstance(key, list):
        uploaded = np.asarray(key)
        _count_h2d(uploaded)
        return uploaded
    return key


def _binary(name: str):
    def operator(self: ndarray, other: Any) -> Any:
        if isinstance(other, np.ndarray):
            raise _host_array_error(f"ndarray.{name}")
        if not isinstance(other, (ndarray, int, float, bool, complex, np.generic)):
            return NotImplemented  # a Tensor, say: let its reflected operator answer
        return _wrap(getattr(self._buffer, name)(_unwrap(other, name)))

    operator.__name__ = name
    return operator


def _inplace(name: str):
    def operator(self: ndarray, other: Any) -> ndarray:
        if isinstance(other, np.ndarray):
            raise _host_array_error(f"ndarray.{name}")
        getattr(self._buffer, name)(_unwrap(other, name))
        return self

    operator.__name__ = name
    return operator


def _method(name: str):
    def method(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        return _wrap(
            getattr(self._buffer, name)(*_unwrap(args, name), **_unwrap_kwargs(kwargs, name))
        )

    method.__name__ = name
    return method


def _unwrap_kwargs(kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    return {key: _unwrap(value, what) for key, value in kwargs.items()}


class ndarray:  # noqa: N801 - the name CuPy gives it
    """A device array: a NumPy buffer that only device maths and counted copies may touch."""

    __slots__ = ("_buffer",)
    __array_ufunc__ = None  # np.exp(device), host + device: TypeError, as in CuPy
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, buffer: np.ndarray) -> None:
        self._buffer = buffer

    # Description: no copy involved.
    shape = property(lambda self: self._buffer.shape)
    dtype = property(lambda self: self._buffer.dtype)
    ndim = property(lambda self: self._buffer.ndim)
    size = property(lambda self: self._buffer.size)
    itemsize = property(lambda self: self._buffer.itemsize)
    nbytes = property(lambda self: self._buffer.nbytes)
    strides = property(lambda self: self._buffer.strides)
    flags = property(lambda self: self._buffer.flags)
    T = property(lambda self: ndarray(self._buffer.T))

    def __len__(self) -> int:
        return len(self._buffer)

    def __iter__(self) -> Iterator[ndarray]:
        return (ndarray(row) if isinstance(row, np.ndarray) else _wrap(row) for row in self._buffer)

    # Refused: the implicit conversions CuPy refuses.
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly."
        )

    def __array_function__(self, func, types, args, kwargs):  # np.concatenate([device]), ...
        raise TypeError(
            f"numpy.{func.__name__} was called on a device array; use the array module "
            "(minirad.autograd.array_module / cupy) instead"
        )

    # Counted: the copies and synchronising reads.
    def get(self) -> np.ndarray:
        _count_d2h(self._buffer)
        return np.array(self._buffer, copy=True)

    def set(self, host: np.ndarray) -> None:
        host = np.asarray(host)
        _count_h2d(host)
        self._buffer[...] = host

    def _read(self) -> np.ndarray:
        _count_d2h(self._buffer)
        return self._buffer

    def item(self) -> Any:
        return self._read().item()

    def tolist(self) -> Any:
        return self._read().tolist()

    def __float__(self) -> float:
        return float(self._read())

    def __int__(self) -> int:
        return int(self._read())

    def __index__(self) -> int:
        return self._read().__index__()

    def __bool__(self) -> bool:
        return bool(self._read())

    def __repr__(self) -> str:
        return f"array({np.array2string(self._read())}, device)"

    __str__ = __repr__

    # Device maths.
    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._buffer[_index(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._buffer[_index(key)] = _unwrap(value, "ndarray.__setitem__")

    def __neg__(self) -> ndarray:
        return ndarray(-self._buffer)

    def __abs__(self) -> ndarray:
        return ndarray(abs(self._buffer))

    def __invert__(self) -> ndarray:
        return ndarray(~self._buffer)

    def __pos__(self) -> ndarray:
        return self


_BINARY = (
    "add sub mul truediv floordiv mod pow matmul and or xor lshift rshift "
    "radd rsub rmul rtruediv rfloordiv rmod rpow rmatmul rand ror rxor lt le gt ge eq ne"
)
for _name in _BINARY.split():
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor"]:
    setattr(ndarray, f"__i{_name}__", _inplace(f"__i{_name}__"))
_METHODS = (
    "reshape transpose astype copy sum mean max min argmax argmin any all ravel flatten fill "
    "clip squeeze swapaxes cumsum std var prod dot nonzero repeat take round view conj"
)
for _name in _METHODS.split():
    setattr(ndarray, _name, _method(_name))


# -- the module functions --------------------------------------------------------------------


def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """A device array of `a`; host data (a NumPy array, a list, a number) is one upload."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    host = np.asarray(a, dtype=dtype, order=order)
    _count_h2d(host)
    return ndarray(np.array(host, copy=True))


def array(a: Any, dtype: Any = None, copy: bool = True, order: Any = "K") -> ndarray:
    if isinstance(a, ndarray):
        return ndarray(np.array(a._buffer, dtype=dtype, copy=copy, order=order))
    return asarray(a, dtype=dtype)


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    return ndarray(np.ascontiguousarray(asarray(a)._buffer, dtype=dtype))


def asnumpy(a: Any) -> np.ndarray:
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*arrays: Any) -> types.ModuleType:
    return _MODULE if any(isinstance(a, ndarray) for a in arrays) else np


def is_available() -> bool:
    return True


def _device_function(name: str):
    """numpy.<name> on device arrays: device arrays in, device arrays out, host arrays refused."""
    numpy_function = getattr(np, name)

    def function(*args: Any, **kwargs: Any) -> Any:
        return _wrap(numpy_function(*_unwrap(args, name), **_unwrap_kwargs(kwargs, name)))

    function.__name__ = name
    function.__doc__ = f"numpy.{name} on device arrays (the stand-in's cupy.{name})."
    return function


# Functions that make new device arrays from nothing, or compute on device arrays.
_FUNCTIONS = (
    "empty zeros ones full arange linspace eye identity empty_like zeros_like ones_like "
    "full_like concatenate stack vstack hstack split array_split where maximum minimum exp log "
    "log1p expm1 tanh sqrt abs sign square clip sum mean max min amax amin argmax argmin "
    "argsort sort take_along_axis take matmul dot outer einsum isfinite isnan isinf all any "
    "cumsum pad broadcast_to moveaxis swapaxes transpose reshape expand_dims squeeze flip "
    "repeat tile logical_and logical_or logical_not equal not_equal less less_equal greater "
    "greater_equal floor ceil round prod std var count_nonzero unique nonzero ravel diff "
    "allclose array_equal tensordot sigmoid"
)

# Names CuPy shares with NumPy that are not functions of arrays.
_CONSTANTS = (
    "float16 float32 float64 int8 int16 int32 int64 uint8 uint32 uint64 bool_ intp dtype "
    "newaxis inf nan pi e finfo iinfo result_type promote_types can_cast issubdtype floating "
    "integer number generic"
)


class _Generator:
    """cupy.random.Generator: numpy's generator, its samples created on the device."""

    def __init__(self, seed: Any = None) -> None:
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        draw = getattr(self._rng, name)

        def on_device(*args: Any, **kwargs: Any) -> Any:
            return _wrap(draw(*args, **kwargs))

        return on_device


class _RawKernel:
    def __init__(self, module: Any, name: str) -> None:
        self._module, self._name = module, name

    def __call__(self, grid: Any, block: Any, args: tuple, shared_mem: int = 0) -> None:
        buffers = []
        for value in args:
            if isinstance(value, np.ndarray):
                raise _host_array_error(f"kernel {self._name}")
            buffers.append(value._buffer if isinstance(value, ndarray) else value)
        self._module.launch(self._name, grid, block, buffers)


class RawModule:
    """cupy.RawModule: here the source is compiled by g++ for the CPU emulation."""

    def __init__(self, code: str, options: tuple = (), **_: Any) -> None:
        from minirad.kernels.runtime import cuda_c_cpu

        self.options = tuple(options)
        digest = hashlib.sha256(code.encode()).hexdigest()[:16]
        folder = cuda_c_cpu.cache_dir() / "standin"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}.cu"
        if not path.exists():
            from minirad.files import write_atomically

            write_atomically(path, code.encode())
        self._emulated = cuda_c_cpu.load(path)

    def get_function(self, name: str) -> _RawKernel:
        if name not in self._emulated.source.kernels:
            raise AttributeError(f"no kernel named {name} in this module")
        return _RawKernel(self._emulated, name)


def _cuda_namespace() -> types.SimpleNamespace:
    """cupy.cuda: one device of an H100/H200's shape (132 SMs), always synchronised."""
    properties = {"name": b"minirad device stand-in (CPU)", "multiProcessorCount": 132}

    class Device:
        def __init__(self, index: int = 0) -> None:
            self.id = index

        def synchronize(self) -> None:
            pass

        def __enter__(self) -> Device:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda index: dict(properties),
        runtimeGetVersion=lambda: 12080,
    )
    return types.SimpleNamespace(Device=Device, runtime=runtime, is_available=is_available)


def _scatter_add(target: ndarray, indices: Any, values: Any) -> None:
    """cupyx.scatter_add: target[indices] += values, repeated indices summed (np.add.at)."""
    np.add.at(target._buffer, _index(indices), _unwrap(values, "scatter_add"))


def _build_module() -> types.ModuleType:
    module = types.ModuleType("cupy", __doc__)
    module.__dict__["__standin__"] = True
    for name in _FUNCTIONS.split():
        if hasattr(np, name):
            setattr(module, name, _device_function(name))
    for name in _CONSTANTS.split():
        setattr(module, name, getattr(np, name))
    for function in (asarray, array, ascontiguousarray, asnumpy, get_array_module, is_available):
        setattr(module, function.__name__, function)
    module.ndarray = ndarray  # type: ignore[attr-defined]
    module.RawModule = RawModule  # type: ignore[attr-defined]
    module.random = types.SimpleNamespace(default_rng=_Generator, Generator=_Generator)  # type: ignore[attr-defined]
    module.cuda = _cuda_namespace()  # type: ignore[attr-defined]
    return module


_MODULE = _build_module()
# The engine recognises CuPy arrays by their class's module (minirad.autograd.array_module),
# as it recognises the real ones (cupy._core.core.ndarray).
ndarray.__module__ = "cupy"


def installed() -> bool:
    return getattr(sys.modules.get("cupy"), "__standin__", False)


def install() -> None:
    """Make `import cupy` (and cupyx) give the stand-in, and the CUDA simulator accept its arrays.

    Call it before minirad first imports cupy (kernels.get("cupy") does), as conftest.py does.
    """
    if installed():
        return
    if "cupy" in sys.modules:
        raise RuntimeError("the real cupy is imported already; install the stand-in first")
    sys.modules["cupy"] = _MODULE
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = _scatter_add  # type: ignore[attr-defined]
    sys.modules["cupyx"] = cupyx
    _teach_simulator()


def _teach_simulator() -> None:
    """Numba's simulator copies NumPy arguments in and out of a fake device; a stand-in array
    *is* device memory, so it is handed over as its buffer, without a counted copy. A host
    array as an argument, which numba on a GPU would silently copy both ways on every launch,
    is refused: the device backends must allocate on the device."""
    from minirad.kernels.runtime.numba_cuda import cuda, simulator_on

    cuda()
    if not simulator_on():
        return
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    if getattr(FakeCUDAKernel.__call__, "_standin", False):
        return
    original = FakeCUDAKernel.__call__

    def call(self: Any, *args: Any) -> Any:
        if self._device:  # a device function called from a kernel: its arguments are in-kernel
            return original(self, *args)
        buffers = []
        for value in args:
            if isinstance(value, np.ndarray) and value.ndim > 0:
                raise _host_array_error(f"Numba CUDA kernel {self.fn.__name__}")
            buffers.append(value._buffer if isinstance(value, ndarray) else value)
        return original(self, *buffers)

    call._standin = True  # type: ignore[attr-defined]
    FakeCUDAKernel.__call__ = call  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    """`python tests/device_standin.py ARGS...`: run `minirad ARGS...` on the stand-in and
    print the transfers it made, by direction and by the source line that made them."""
    from collections import Counter

    install()
    from minirad.cli import main as minirad

    with count_transfers(where=True) as moved:
        status = minirad(argv)
    print(
        f"device stand-in: {moved.h2d} host-to-device copies ({moved.h2d_bytes} bytes), "
        f"{moved.d2h} device-to-host ({moved.d2h_bytes} bytes)",
        file=sys.stderr,
    )
    for site, count in Counter(moved.sites).most_common():
        print(f"  {count:6}  {site}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
