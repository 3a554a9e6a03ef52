"""Feed-forward layers: Conv2d, MaxPool2d, ReLU, Linear, Embedding, Dropout, Flatten, Sequential.

Each layer is a Module that owns its Parameters and calls one differentiable operation of
`minirad.functional` (or, for Embedding, its own Function below). Names, shapes and the initial
distributions are PyTorch's, so a state_dict moves between the two unchanged:

    layer       parameter   shape                                initial distribution
    Conv2d      weight      (out_channels, in_channels, kh, kw)  U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                bias        (out_channels,)                      U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    Linear      weight      (out_features, in_features)          the same
                bias        (out_features,)                      the same
    Embedding   weight      (num_embeddings, embedding_dim)      N(0, 1), the padding row zero

(fan_in is in_channels * kh * kw for a convolution, in_features for a linear layer.)
Randomness comes from a NumPy Generator: pass `rng` as a Generator to share one stream across
a model, or as an int seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from minirad import functional as F
from minirad.autograd import Function, Tensor, array_module, like
from minirad.nn.module import Module, Parameter

Seed = int | np.random.Generator | None


# ----------------------------------------------------------------------------------------------
# Initialisation (PyTorch's defaults)
# ----------------------------------------------------------------------------------------------


def as_generator(rng: Seed) -> np.random.Generator:
    """A Generator from a seed or None; a Generator is returned as is (callers share its stream)."""
    return np.random.default_rng(rng)


def uniform(shape: tuple[int, ...], bound: float, rng: np.random.Generator, dtype) -> Parameter:
    """A Parameter drawn from U(-bound, +bound)."""
    return Parameter(rng.uniform(-bound, bound, size=shape).astype(dtype))


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype):
    """PyTorch's default for conv and linear weights: kaiming_uniform_(w, a=sqrt(5)).

    Kaiming's uniform draws from U(-b, b) with b = gain * sqrt(3 / fan_in) and the leaky-ReLU
    gain sqrt(2 / (1 + a^2)); with a = sqrt(5) the gain is sqrt(1/3), so b = 1 / sqrt(fan_in).
    """
    gain = math.sqrt(2.0 / (1.0 + 5.0))
    return uniform(shape, gain * math.sqrt(3.0 / fan_in), rng, dtype)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# ----------------------------------------------------------------------------------------------
# Layers with parameters
# ----------------------------------------------------------------------------------------------


class Conv2d(Module):
    """y (N, out_channels, P, Q) = x (N, in_channels, H, W) correlated with weight, plus bias.

    y[n,k,p,q] = bias[k] + sum_{c,r,s} x_pad[n, c, p*sh + r, q*sw + s] * weight[k, c, r, s]
    with P = (H + 2 ph - kh) // sh + 1 and Q = (W + 2 pw - kw) // sw + 1.
    kernel_size, stride and padding take an int or an (h, w) pair.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        rng = as_generator(rng)
        kh, kw = _pair(kernel_size)
        self.stride, self.padding = _pair(stride), _pair(padding)
        fan_in = in_channels * kh * kw
        self.weight = kaiming_uniform((out_channels, in_channels, kh, kw), fan_in, rng, dtype)
        self.bias = uniform((out_channels,), 1 / math.sqrt(fan_in), rng, dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class Linear(Module):
    """y (..., out_features) = x (..., in_features) @ weight.T + bias; weight (out, in)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        rng = as_generator(rng)
        self.weight = kaiming_uniform((out_features, in_features), in_features, rng, dtype)
        self.bias = (
            uniform((out_features,), 1 / math.sqrt(in_features), rng, dtype) if bias else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class EmbeddingLookup(Function):
    """y[..., :] = weight[ids[...], :]: a row lookup, and its backward, a scatter-add.

    weight (V, D) float, ids (...) integers in [0, V) -> y (..., D).
    dweight[v] = sum of dy[i] over every position i with ids[i] == v. An id that occurs twice
    receives both gradients, so the backward adds (np.add.at) where a plain assignment
    dweight[ids] = dy would keep only the last one. The padding row gets no gradient, as in
    PyTorch, so it stays the zero vector through training.
    """

    def forward(self, weight, ids, padding_idx=None):
        self.weight_shape, self.ids, self.padding_idx = weight.shape, ids, padding_idx
        return weight[ids]

    def backward(self, dy):
        xp = array_module(dy)
        dweight = xp.zeros(self.weight_shape, dtype=dy.dtype)
        flat_ids, flat_dy = self.ids.reshape(-1), dy.reshape(-1, self.weight_shape[1])
        if xp is np:
            np.add.at(dweight, flat_ids, flat_dy)
        else:
            import cupyx

            cupyx.scatter_add(dweight, flat_ids, flat_dy)
        if self.padding_idx is not None:
            dweight[self.padding_idx] = 0
        return dweight, None  # ids are integers: no gradient


class Embedding(Module):
    """A table of num_embeddings vectors of size embedding_dim, looked up by integer id.

    forward(ids (...) ints) -> (..., embedding_dim). padding_idx (may be negative, counted from
    the end as in PyTorch) names a row that starts at zero and receives no gradient.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"padding_idx {padding_idx} is outside the table of {num_embeddings} rows"
                )
            padding_idx %= num_embeddings
        self.num_embeddings, self.padding_idx = num_embeddings, padding_idx
        table = as_generator(rng).standard_normal((num_embeddings, embedding_dim))
        if padding_idx is not None:
            table[padding_idx] = 0
        self.weight = Parameter(table.astype(dtype))

    def forward(self, ids) -> Tensor:
        """ids (...) integers in [0, num_embeddings), on the host or on the table's device.

        Host ids are checked, then moved to the table's device. Ids already on a device are
        not read back to be checked: that would be a device-to-host sync per lookup, per
        decoded word. They come from a batch that was on the host (and is checked there, by
        this method or by its dataset) or from the model's own argmax over the vocabulary.
        """
        ids = ids.data if isinstance(ids, Tensor) else ids
        if array_module(ids) is np:
            ids = self._checked(np.asarray(ids))
        return EmbeddingLookup.apply(
            self.weight, like(ids, self.weight.data), padding_idx=self.padding_idx
        )

    def _checked(self, ids: np.ndarray) -> np.ndarray:
        if ids.dtype.kind not in "iu":
            raise ValueError(f"ids: expected integers, got dtype {ids.dtype}")
        # Checked here because a NumPy index out of range would raise IndexError and a negative
        # one would silently wrap around to the end of the table.
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            raise ValueError(
                f"ids: values must lie in [0, {self.num_embeddings}), "
                f"got min {int(ids.min())}, max {int(ids.max())}"
            )
        return ids


# ----------------------------------------------------------------------------------------------
# Layers without parameters
# ----------------------------------------------------------------------------------------------


class MaxPool2d(Module):
    """y (N, C, P, Q): the maximum of each kernel_size window of x (N, C, H, W).

    stride defaults to kernel_size (windows that tile the image without overlap).
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class ReLU(Module):
    """y = max(x, 0), elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1 :])


class Dropout(Module):
    """Inverted dropout: in training y = x * m / (1 - p) with m ~ Bernoulli(1 - p) per element.

    Dividing by the keep probability during training keeps E[y] = x, so evaluation needs no
    rescaling: in eval mode (module.eval()) the layer is the identity. `rng` (a seed or a
    Generator) makes the masks reproducible.

    Where the mask is drawn. A mask for a tensor on a GPU must be made on the GPU: drawn on the
    host it would cost an upload per call, per decoder step. So the host generator draws only
    one 64-bit key per call, and the mask is computed where x lives, from the key and each
    element's position, by a counter-based generator (`uniform_from_counter`): the idea of
    Philox in cuRAND and of JAX's keys. The same key gives the same mask on every backend, and
    the generator's state (saved by training checkpoints) still says everything.
    """

    def __init__(self, p: float = 0.5, rng: Seed = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: a dropout probability lies in [0, 1], got {p}")
        self.p, self.rng = float(p), as_generator(rng)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * Tensor(self._scaled_mask(array_module(x.data), x.shape, x.dtype))

    def forward_per_step(self, x: Tensor, axis: int = 1) -> Tensor:
        """Dropout on a whole sequence with the masks that one `forward` per step would draw:
        x.shape[axis] masks, drawn in step order, one per slice along `axis`. A fused decoder
        (minirad/models/fused_decoder.py) drops out all its steps at once and still draws,
        from the same generator state, exactly what the step-by-step decoder draws."""
        if not self.training or self.p == 0.0:
            return x
        xp, step_shape = array_module(x.data), x.shape[:axis] + x.shape[axis + 1 :]
        masks = [self._scaled_mask(xp, step_shape, x.dtype) for _ in range(x.shape[axis])]
        return x * Tensor(xp.stack(masks, axis=axis))

    def _scaled_mask(self, xp, shape: tuple[int, ...], dtype):
        """keep / (1 - p), keep ~ Bernoulli(1 - p) per element, from one fresh key."""
        key = int(self.rng.integers(0, 2**63))  # a host number: no transfer
        keep = uniform_from_counter(xp, key, shape) >= self.p
        # p = 1 drops everything; the formula would divide by zero.
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        return keep.astype(dtype) * dtype.type(scale)


# SplitMix64 (Steele, Lea and Flood, 2014), the finaliser of java.util.SplittableRandom: a
# bijection of 64-bit integers whose outputs pass BigCrush for consecutive inputs.
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def uniform_from_counter(xp, key: int, shape: tuple[int, ...]):
    """U[0, 1) samples of `shape` computed from (key, position): no generator state at all.

    u[i] = splitmix64(key + (i + 1) * gamma) / 2^64 for the flat position i, in uint64
    arithmetic that wraps modulo 2^64 (the same on NumPy and CuPy, so every backend draws the
    same numbers), keeping the top 53 bits, which a float64 holds exactly.
    """
    u64 = xp.uint64
    z = (xp.arange(1, math.prod(shape) + 1, dtype=u64) * u64(_GOLDEN_GAMMA)) + u64(key)
    z = (z ^ (z >> u64(30))) * u64(_MIX_1)
    z = (z ^ (z >> u64(27))) * u64(_MIX_2)
    z = z ^ (z >> u64(31))
    return ((z >> u64(11)).astype(xp.float64) * 2.0**-53).reshape(shape)


class Sequential(Module):
    """Modules applied in order; they are named "0", "1", ... as in PyTorch ("0.weight")."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]
