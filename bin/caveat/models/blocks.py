"""Blocks: activation → convolution → batchnorm → (dropout) → pool, the
Basenji ``conv_block`` order used by the study's Basset model."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import activation, conv1d, pool


class ConvBlock(nn.Module):
    """GELU → conv(k) → BatchNorm → dropout → max pool.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
    pool_size : int
        1 for no pooling.
    padding : {"same", "valid"}
    dropout : float
    act : str

    Shapes
    ------
    (N, in_channels, L) → (N, out_channels, L' // pool_size), with L' = L for
    ``same`` padding and L - kernel_size + 1 for ``valid``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, pool_size: int = 1,
                 padding: str = "same", dropout: float = 0.0, act: str = "gelu"):
        super().__init__()
        self.act = activation(act)
        self.conv = conv1d(in_channels, out_channels, kernel_size, padding=padding)
        self.norm = nn.BatchNorm1d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.pool = pool(pool_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.dropout(self.norm(self.conv(self.act(x)))))
