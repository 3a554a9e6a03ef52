"""Layers, losses and their container, Module; names and weight layouts as in PyTorch."""

from minirad.nn.module import Module, Parameter

__all__ = ["Module", "Parameter"]
