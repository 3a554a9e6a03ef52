"""Layers, losses and their containers (Module, ModuleList, ModuleDict), named as in PyTorch."""

from minirad.nn import checkpoint
from minirad.nn.attention import AdditiveAttention
from minirad.nn.layers import (
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from minirad.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss
from minirad.nn.module import Module, ModuleDict, ModuleList, Parameter
from minirad.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = [
    "AdditiveAttention",
    "BCEWithLogitsLoss",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "Linear",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "RNN",
    "RNNCell",
    "ReLU",
    "Sequential",
    "checkpoint",
]
