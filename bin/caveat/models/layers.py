"""Smallest building pieces: activations and padded convolutions.

Inputs and outputs are (N, C, L) tensors throughout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


class MaxPool1d(nn.MaxPool1d):
    """Non-overlapping max pool (stride = kernel), (N, C, L) → (N, C, L // k), as a max over
    the last axis of an (N, C, L // k, k) view.

    Same values as :class:`torch.nn.MaxPool1d` (a trailing ``L % k`` is dropped, as there), and
    the gradient goes to one maximum of each window, as there. Written by hand for training on
    CPU, where torch's kernel that keeps the argmax for backward (``max_pool2d_with_indices``) is
    slow: forward + backward of the demo model's stem pool (64 × 16 × 1344, k = 3) took 21.9 ms
    against 9.7 ms this way, and the pools were a fifth of a training step
    (``benchmarks/bench_train.py --pool``). Without autograd (inference, ISM) and on GPU,
    torch's own kernel is faster and runs; so do other settings (padding, dilation, overlap)."""

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size, self.stride
        if (not (x.requires_grad and torch.is_grad_enabled()) or torch.jit.is_tracing()  # a trace keeps torch's op
                or x.device.type != "cpu" or k != s
                or self.padding != 0 or self.dilation != 1 or self.ceil_mode or self.return_indices
                or not isinstance(k, int)):
            return super().forward(x)
        n = x.shape[-1] // k
        return x[..., : n * k].unflatten(-1, (n, k)).max(-1).values


def pool(size: int) -> nn.Module:
    """Max pool of ``size`` (stride ``size``); identity for size 1."""
    return MaxPool1d(size) if size > 1 else nn.Identity()
