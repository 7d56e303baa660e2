"""Heads: embedding → one non-negative prediction per task."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import activation


class SoftplusHead(nn.Module):
    """GELU → dense(T) → softplus: the centre bin's predicted insertion count per task.

    Shapes
    ------
    (N, C, 1) → (N, T)
    """

    def __init__(self, in_channels: int, n_tasks: int, act: str = "gelu"):
        super().__init__()
        self.act = activation(act)
        self.linear = nn.Linear(in_channels, n_tasks)
        self.softplus = nn.Softplus()

    def forward(self, x: Tensor) -> Tensor:
        return self.softplus(self.linear(self.act(x.flatten(1))))
