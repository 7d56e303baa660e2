"""models: the study's architecture, shapes, gradients, checkpoints."""

from __future__ import annotations

import pytest
import torch

from caveat.errors import InputError
from caveat.models import BassetModel, ModelConfig, count_parameters, load_checkpoint, save_checkpoint
from caveat.models.trunks import tower_widths

SMALL = ModelConfig(seq_len=384, n_tasks=3, filters=16, filters_max=32, tower_blocks=3, bottleneck=8, dense=24)


def test_default_architecture_matches_study():
    m = BassetModel(ModelConfig())
    # tower 288 → 512 by ×1.122, 7 positions left for the k7 'dense' conv
    assert m.trunk.widths == [288, 323, 363, 407, 456, 512]
    assert abs((512 / 288) ** (1 / 5) - 1.122) < 1e-3
    assert m.trunk.out_len == 7 and m.trunk.dense.conv.kernel_size == (7,)
    n = count_parameters(m)
    print(f"default Basset model, one task: {n:,} trainable parameters")
    # independent count: convs without bias + BN scale/shift + final dense with bias
    widths = [288] + m.trunk.widths
    convs = 4 * 288 * 17 + sum(a * b * 5 for a, b in zip(widths[:-1], widths[1:])) + 512 * 256 + 256 * 768 * 7
    bn = 2 * (288 + sum(m.trunk.widths) + 256 + 768)
    assert n == convs + bn + 768 + 1 == 5_835_113
    assert round(n / 1e6, 2) == 5.84


def test_shapes_and_gradients():
    torch.manual_seed(0)
    m = BassetModel(SMALL)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 384)), 4).float().transpose(1, 2)
    y = m(x)
    assert y.shape == (5, 3) and (y >= 0).all()
    y.sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.trunk.stem.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="too short"):
        BassetModel(ModelConfig(seq_len=40, tower_blocks=6))


def test_tower_widths():
    assert tower_widths(16, 32, 1) == [16]
    w = tower_widths(16, 64, 3)
    assert w == [16, 32, 64]


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(1)
    m = BassetModel(SMALL).eval()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (4, 384)), 4).float().transpose(1, 2)
    save_checkpoint(m, tmp_path / "model.pt", cell_types=["a", "b", "c"], extra={"regime": "multitask"})
    r = load_checkpoint(tmp_path / "model.pt")
    assert r.config == SMALL and r.cell_types == ["a", "b", "c"] and r.extra["regime"] == "multitask"
    assert torch.equal(m(x), r(x))
    save_checkpoint(m, tmp_path / "again.pt", cell_types=["a", "b", "c"], extra={"regime": "multitask"})
    assert (tmp_path / "model.pt").read_bytes() == (tmp_path / "again.pt").read_bytes()
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(InputError):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("length,k", [(1344, 3), (449, 2), (10, 4)])
def test_training_max_pool_equals_torch(length, k):
    """caveat's training pool (a max over an (N, C, L // k, k) view) gives torch's MaxPool1d
    values and gradients (random inputs: no ties), trailing L % k dropped as torch does."""
    from torch import nn

    from caveat.models.layers import MaxPool1d

    g = torch.Generator().manual_seed(length)
    x = torch.randn(5, 3, length, generator=g)
    w = torch.randn(5, 3, length // k, generator=g)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ya, yb = MaxPool1d(k)(a), nn.MaxPool1d(k)(b)
    assert torch.equal(ya, yb)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    assert torch.equal(a.grad, b.grad)
    assert torch.count_nonzero(a.grad) == w.numel()       # one maximum per window gets the gradient
    with torch.no_grad():                                  # inference: torch's own kernel
        assert torch.equal(MaxPool1d(k)(x), yb)


def test_model_pools_are_the_training_pool():
    from caveat.models.layers import MaxPool1d

    pools = [m for m in BassetModel(SMALL).modules() if isinstance(m, torch.nn.MaxPool1d)]
    assert pools and all(type(m) is MaxPool1d for m in pools)
