"""onehot: codes → one-hot, reverse complement, shifted crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caveat.genome import decode, encode, reverse_complement_codes as rc_numpy
from caveat.onehot import one_hot, reverse_complement, reverse_complement_codes, shift_crop


def test_one_hot_columns_and_n():
    codes = torch.from_numpy(encode("ACGTNacgtn").astype(np.int64))[None]
    x = one_hot(codes)
    assert x.shape == (1, 4, 10) and x.dtype == torch.float32
    assert torch.equal(x[0].argmax(0)[:4], torch.arange(4))
    assert torch.equal(x[0].sum(0), torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 1, 0.0]))
    assert one_hot(codes.to(torch.uint8), dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        one_hot(codes[0])


def test_reverse_complement_agrees_with_strings():
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGTN"), 50))
    comp = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    expect = "".join(comp[b] for b in reversed(seq))
    codes = torch.from_numpy(encode(seq).astype(np.int64))[None]
    assert decode(reverse_complement_codes(codes)[0].numpy()) == expect
    assert decode(rc_numpy(encode(seq))) == expect
    assert torch.equal(reverse_complement(one_hot(codes)), one_hot(torch.from_numpy(encode(expect).astype(np.int64))[None]))
    assert torch.equal(reverse_complement(reverse_complement(one_hot(codes))), one_hot(codes))


def test_shift_crop():
    codes = torch.arange(20).reshape(2, 10)
    out = shift_crop(codes, torch.tensor([-2, 1]), 2)
    assert torch.equal(out, torch.stack([torch.arange(0, 6), torch.arange(13, 19)]))
    assert torch.equal(shift_crop(codes, 0, 2), codes[:, 2:8])
    with pytest.raises(ValueError):
        shift_crop(codes, 3, 2)
