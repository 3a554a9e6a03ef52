"""What a .cu source declares, read off its text: each kernel's parameters and shared memory.

Both runtimes that launch the CUDA C sources read them here: the CPU emulation
(runtime/cuda_c_cpu.py) to generate its launchers, and both it and CuPy (runtime/cupy_module.py)
to check every launch against the kernel's signature and the GPU's limits (runtime/launch_check.py).

    parse_kernels(text)        {kernel: [Param, ...]} for every extern "C" __global__ kernel
    static_shared_bytes(text)  {kernel: bytes of the __shared__ arrays it declares}
    CudaSource.read(path)      both, read once, with the file's text and name

This is a reader of the sources minirad writes, not a C parser: one signature per kernel, no
macros in a signature, array sizes that are integers, #defines and + - * / of them.
"""

from __future__ import annotations

import ast
import ctypes
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# C parameter type -> ctypes type (its NumPy dtype is np.dtype(ctypes type)). Pointers of any
# kind are passed as void*.
SCALAR_TYPES = {
    "int": ctypes.c_int,
    "unsigned": ctypes.c_uint,
    "unsigned int": ctypes.c_uint,
    "long long": ctypes.c_longlong,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
}

KERNEL_PATTERN = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


@dataclass(frozen=True)
class Param:
    ctype: str  # the C type as written, without const/__restrict__
    name: str
    is_pointer: bool


def parse_kernels(source: str) -> dict[str, list[Param]]:
    """The extern "C" __global__ kernels of a .cu source and their parameters."""
    kernels = {}
    for name, params_text in KERNEL_PATTERN.findall(source):
        params = []
        for raw in params_text.split(","):
            raw = " ".join(raw.replace("__restrict__", " ").replace("const", " ").split())
            if not raw:
                continue
            is_pointer = "*" in raw
            ctype, _, pname = raw.replace("*", " * ").rpartition(" ")
            ctype = " ".join(ctype.replace("*", " ").split())
            if not is_pointer and ctype not in SCALAR_TYPES:
                raise ValueError(f"kernel {name}: unsupported parameter type {ctype!r}")
            params.append(Param(ctype, pname, is_pointer))
        kernels[name] = params
    return kernels


def c_dtype(ctype: str) -> np.dtype | None:
    """The NumPy dtype of a C type of SCALAR_TYPES ("int" -> int32), None for any other type."""
    return np.dtype(SCALAR_TYPES[ctype]) if ctype in SCALAR_TYPES else None


# ----------------------------------------------------------------------------------------------
# Static shared memory
# ----------------------------------------------------------------------------------------------
# A kernel's static shared memory is every `__shared__ T name[n]...;` in its body and in the
# device functions it calls, directly or not: the compiler gives each its own place in the
# block's shared memory, for the whole launch. The kernels here are templates on the element
# type T, instantiated by their extern "C" entry points (`db_tiled<double>(...)`), so T is
# known from the call that enters the template.

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_DEFINE = re.compile(r"^[ \t]*#define[ \t]+(\w+)[ \t]+(.+?)[ \t]*$", re.M)
_FUNCTION_HEAD = re.compile(r"(?:__device__|__global__)[^;{}()]*?\b(\w+)\s*\([^)]*\)\s*\{")
_SHARED = re.compile(r"__shared__\s+([\w ]+?)\s+\w+\s*((?:\[[^\]]+\]\s*)+);")
_CALL = re.compile(r"\b(\w+)\s*(?:<\s*([\w ]+?)\s*>)?\s*\(")
_ARITHMETIC: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.floordiv,  # C's integer division (sizes are non-negative)
}


@dataclass(frozen=True)
class CudaSource:
    """One .cu file as the host code sees it: read once, used to launch and to check launches."""

    name: str  # the file name, for messages
    text: str
    kernels: dict[str, list[Param]]  # parse_kernels
    shared_bytes: dict[str, int]  # static_shared_bytes

    @classmethod
    def read(cls, path: Path) -> CudaSource:
        text = path.read_text()
        return cls(path.name, text, parse_kernels(text), static_shared_bytes(text))


def static_shared_bytes(source: str) -> dict[str, int]:
    """Bytes of static __shared__ memory of each extern "C" __global__ kernel of `source`."""
    text = _COMMENT.sub(" ", source)
    defines = dict(_DEFINE.findall(text))
    bodies = {
        match.group(1): _body(text, match.end() - 1) for match in _FUNCTION_HEAD.finditer(text)
    }

    def reached(function: str, element_type: str | None, seen: set) -> None:
        """Add (function, T) and everything it calls to `seen`; T passes on to deduced calls."""
        if (function, element_type) in seen:
            return
        seen.add((function, element_type))
        for callee, type_argument in _CALL.findall(bodies[function]):
            if callee in bodies and callee != function:
                reached(callee, type_argument or element_type, seen)

    sizes = {}
    for kernel in parse_kernels(text):
        seen: set[tuple[str, str | None]] = set()
        reached(kernel, None, seen)
        sizes[kernel] = sum(
            _shared_bytes(kernel, bodies[function], element_type, defines)
            for function, element_type in seen
        )
    return sizes


def _body(text: str, opening_brace: int) -> str:
    """The text between the brace at `opening_brace` and the brace that closes it."""
    depth = 0
    for i in range(opening_brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[opening_brace + 1 : i]
    raise ValueError(f"unbalanced braces after {text[opening_brace - 60 : opening_brace + 1]!r}")


def _shared_bytes(kernel: str, body: str, element_type: str | None, defines: dict) -> int:
    """Bytes of the __shared__ arrays declared in one function body, T = element_type."""
    total = 0
    for declared_type, sizes in _SHARED.findall(body):
        ctype = element_type if declared_type == "T" else declared_type
        dtype = c_dtype(ctype) if ctype else None
        if dtype is None:
            raise ValueError(f"{kernel}: cannot size a __shared__ array of type {declared_type}")
        count = 1
        for size in re.findall(r"\[([^\]]+)\]", sizes):
            count *= _integer(size, defines)
        total += count * dtype.itemsize
    return total


def _integer(expression: str, defines: dict) -> int:
    """The value of an array size: integers, #define names, + - * / and parentheses."""

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in defines:
            return _integer(defines[node.id], defines)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"cannot evaluate the __shared__ array size {expression!r}")

    return value(ast.parse(expression.strip(), mode="eval").body)
