"""The seed's CNN classifier: three conv blocks, one hidden dense layer, one logit.

    x (N, C, H, W), pixels in [0, 1]
      -> 2x - 1                                                    centred to [-1, 1]
      -> Conv2d(C,   32, 3, padding=1) -> ReLU -> MaxPool2d(2)     (N, 32,  H/2, W/2)
      -> Conv2d(32,  64, 3, padding=1) -> ReLU -> MaxPool2d(2)     (N, 64,  H/4, W/4)
      -> Conv2d(64, 128, 3, padding=1) -> ReLU -> MaxPool2d(2)     (N, 128, H/8, W/8)
      -> Flatten                                                   (N, 128 * H/8 * W/8)
      -> Linear(., 128) -> ReLU                                    (N, 128)
      -> Linear(128, 1)                                            (N,)  the logit z

(H/2 is floor division, as the pooling windows tile the image.) The model outputs the logit
z, not the probability sigmoid(z): training uses binary cross-entropy on the logit, which is
computed stably as max(z, 0) - z t + log(1 + exp(-|z|)) and has the simple gradient
sigmoid(z) - t. `predict_proba` applies the sigmoid for inference.

Padding 1 keeps each 3x3 convolution's output the size of its input, so only the pooling
halves the image; doubling the channels as the image halves keeps the work per block similar.
"""

from __future__ import annotations

import numpy as np

from minirad.autograd import Tensor, no_grad
from minirad.nn.layers import (
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Seed,
    Sequential,
    as_generator,
)
from minirad.nn.module import Module

CHANNELS = (32, 64, 128)
HIDDEN = 128


class CNNClassifier(Module):
    """A binary image classifier: forward(x (N, in_channels, size, size)) -> logits (N,).

    image_size fixes the input the dense layer expects (at least 8: three poolings by 2).
    rng (a seed or a Generator) draws the initial weights; dtype is the parameters' dtype.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 32,
        rng: Seed = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        if image_size < 2 ** len(CHANNELS):
            raise ValueError(
                f"image_size: must be at least 8 (three 2x2 poolings), got {image_size}"
            )
        rng = as_generator(rng)  # one stream for all layers: the whole model follows one seed
        self.image_size = image_size
        blocks, channels = [], in_channels
        for out_channels in CHANNELS:
            blocks += [
                Conv2d(channels, out_channels, 3, padding=1, rng=rng, dtype=dtype),
                ReLU(),
                MaxPool2d(2),
            ]
            channels = out_channels
        self.features = Sequential(*blocks)
        side = image_size // 2 ** len(CHANNELS)
        self.head = Sequential(
            Flatten(),
            Linear(channels * side * side, HIDDEN, rng=rng, dtype=dtype),
            ReLU(),
            Linear(HIDDEN, 1, rng=rng, dtype=dtype),
        )

    def forward(self, x: Tensor) -> Tensor:
        expected = (self.image_size, self.image_size)
        if x.ndim != 4 or x.shape[2:] != expected:
            raise ValueError(
                f"x: expected shape (N, C, {expected[0]}, {expected[1]}), got {x.shape}"
            )
        # Centre the [0, 1] pixels on zero, to [-1, 1]: with a zero-mean input the first
        # layer's ReLUs start half active and the first epochs learn several times faster.
        x = x * 2.0 - 1.0
        return self.head(self.features(x)).reshape(-1)

    def predict_proba(self, x: Tensor) -> np.ndarray:
        """P(class 1 | x) = sigmoid(logit), shape (N,), without recording a graph."""
        with no_grad():
            return self.forward(x).sigmoid().numpy()
