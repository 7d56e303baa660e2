"""Trunks: the convolutional body that maps one-hot DNA to an embedding.

The Basset trunk of the study (Kathail et al., Basenji-style):
stem GELU → conv(288, k17) → BN → pool 3; a tower of six GELU → conv(k5) → BN
→ pool 2 blocks whose widths grow geometrically from 288 to 512; GELU →
conv(256, k1) → BN; and a 'dense' GELU → conv(768, k = remaining length,
valid) → BN → dropout that sees all remaining positions at once.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from .blocks import ConvBlock


def tower_widths(start: int, end: int, n_blocks: int) -> list[int]:
    """Block widths growing geometrically from ``start`` to ``end``.

    The factor is ``(end / start) ** (1 / (n_blocks - 1))`` (1.122 for
    288 → 512 over six blocks); widths are rounded as in Basenji's conv tower.

    Returns
    -------
    list of int
        Length ``n_blocks``; first ``start``, last ``end``.
    """
    if n_blocks <= 0:
        return []
    if n_blocks == 1:
        return [int(start)]
    mult = (end / start) ** (1.0 / (n_blocks - 1))
    return [int(np.round(start * mult ** i)) for i in range(n_blocks)]


class BassetTrunk(nn.Module):
    """Stem, conv tower, bottleneck and dense layer.

    Shapes
    ------
    (N, 4, seq_len) → (N, dense, 1)
    """

    def __init__(self, *, seq_len: int, filters: int, filters_max: int, tower_blocks: int,
                 stem_kernel: int = 17, stem_pool: int = 3, tower_kernel: int = 5, tower_pool: int = 2,
                 bottleneck: int = 256, dense: int = 768, dropout: float = 0.3):
        super().__init__()
        self.stem = ConvBlock(4, filters, stem_kernel, pool_size=stem_pool)
        widths = tower_widths(filters, filters_max, tower_blocks)
        blocks, c_in = [], filters
        for w in widths:
            blocks.append(ConvBlock(c_in, w, tower_kernel, pool_size=tower_pool))
            c_in = w
        self.tower = nn.Sequential(*blocks)
        self.bottleneck = ConvBlock(c_in, bottleneck, 1)
        self.out_len = seq_len // stem_pool // (tower_pool ** tower_blocks)
        if self.out_len < 1:
            raise ValueError(f"seq_len {seq_len} is too short for a stem pool {stem_pool} and "
                             f"{tower_blocks} tower blocks of pool {tower_pool}")
        # the 'dense' layer: a valid conv over every remaining position
        self.dense = ConvBlock(bottleneck, dense, self.out_len, padding="valid", dropout=dropout)
        self.widths = widths

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.bottleneck(self.tower(self.stem(x))))
