"""Smallest building pieces: activations and padded convolutions.

Inputs and outputs are (N, C, L) tensors throughout.
"""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "softplus": nn.Softplus, "identity": nn.Identity}


def activation(name: str) -> nn.Module:
    """An activation module by name (``gelu``, ``relu``, ``softplus``, ``identity``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


def conv1d(in_channels: int, out_channels: int, kernel_size: int, *, padding: str = "same",
           bias: bool = False) -> nn.Conv1d:
    """1-D convolution, (N, in, L) → (N, out, L) with ``same`` padding or
    (N, out, L - k + 1) with ``valid``. No bias by default: a batchnorm follows
    and its shift makes a bias redundant (as in Basenji)."""
    if padding not in ("same", "valid"):
        raise ValueError("padding must be 'same' or 'valid'")
    return nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)


def pool(size: int) -> nn.Module:
    """Max pool of ``size`` (stride ``size``); identity for size 1."""
    return nn.MaxPool1d(size) if size > 1 else nn.Identity()
