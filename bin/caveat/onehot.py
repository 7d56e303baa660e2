"""Integer-coded DNA → one-hot on the device, reverse complement and shifts.

Sequences travel as compact uint8/int64 codes (A=0, C=1, G=2, T=3, N=4, see
:mod:`caveat.genome`) and become one-hot only per batch, on the device that
runs the model. Channel order is A, C, G, T, so reversing the channel axis
complements a one-hot sequence.
"""

from __future__ import annotations

import torch

#: code → complement code (A↔T, C↔G, N→N)
_COMPLEMENT = (3, 2, 1, 0, 4)


def one_hot(codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot encode integer codes.

    Parameters
    ----------
    codes : torch.Tensor
        Integer codes of shape (N, L) (any integer dtype), values 0..4.
    dtype : torch.dtype
        Output dtype.

    Returns
    -------
    torch.Tensor
        Shape (N, 4, L); an N (code 4, or any code > 3) is an all-zero column.
    """
    if codes.dim() != 2:
        raise ValueError(f"codes must have shape (N, L), got {tuple(codes.shape)}")
    # a broadcast comparison writes (N, 4, L) directly: ~3x faster than indexing an
    # identity matrix and transposing; codes ≥ 4 (N) match no channel → all-zero column
    bases = torch.arange(4, device=codes.device, dtype=codes.dtype if codes.dtype != torch.bool else torch.uint8)
    return (codes[:, None, :] == bases[None, :, None]).to(dtype)


def reverse_complement(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of one-hot sequences, shape (N, 4, L) → (N, 4, L)."""
    return x.flip(dims=(-2, -1))


def reverse_complement_codes(codes: torch.Tensor) -> torch.Tensor:
    """Reverse complement of integer codes, shape (..., L) → (..., L)."""
    comp = torch.tensor(_COMPLEMENT, dtype=codes.dtype, device=codes.device)
    return comp[codes.long().clamp(0, 4)].flip(-1)


def shift_crop(codes: torch.Tensor, shifts: torch.Tensor | int, max_shift: int) -> torch.Tensor:
    """Crop windows shifted by ``shifts`` out of codes padded by ``max_shift`` each side.

    Parameters
    ----------
    codes : torch.Tensor
        Shape (N, L + 2 * max_shift): each row is a window with ``max_shift``
        extra bases on both sides.
    shifts : torch.Tensor or int
        Shape (N,) (or a scalar) of shifts in ``[-max_shift, max_shift]``; a
        positive shift moves the window towards higher coordinates.
    max_shift : int

    Returns
    -------
    torch.Tensor
        Shape (N, L): row ``i`` is ``codes[i, max_shift + s_i : max_shift + s_i + L]``.
    """
    n, width = codes.shape
    length = width - 2 * max_shift
    if max_shift == 0:
        return codes
    shifts = torch.as_tensor(shifts, device=codes.device).long().expand(n)
    if (shifts.abs() > max_shift).any():
        raise ValueError(f"shifts must lie in [-{max_shift}, {max_shift}]")
    idx = (max_shift + shifts)[:, None] + torch.arange(length, device=codes.device)[None, :]
    return codes.gather(1, idx)


__all__ = ["one_hot", "reverse_complement", "reverse_complement_codes", "shift_crop"]
