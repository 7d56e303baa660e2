"""The fast ISM path equals plain forward passes of the substituted sequences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from caveat.fast_ism import FastISM, GemmConv1d, plan_layers
from caveat.model_adapter import ModelAdapter, sequential_layers
from caveat.models import BassetModel, ModelConfig, calibrate_batchnorm


def _randomise_bn(model: nn.Module, seed: int, length: int) -> nn.Module:
    """Batchnorm statistics from random sequences plus random affine terms, so
    that activations keep their scale through depth and the output responds
    to single substitutions (as in a trained model)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            c = m.num_features
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
    return calibrate_batchnorm(model, _onehot(16, length, seed))


def _all_substitutions(x: torch.Tensor):
    """Every (window, position, other base) of one-hot x (B, 4, L)."""
    b, _, length = x.shape
    ref_base = x.argmax(1)                                             # (B, L)
    widx, pos, base = [], [], []
    for shift in (1, 2, 3):
        widx.append(torch.arange(b).repeat_interleave(length))
        pos.append(torch.arange(length).repeat(b))
        base.append(((ref_base + shift) % 4).reshape(-1))
    return torch.cat(widx), torch.cat(pos), torch.cat(base)


def _plain(model, x, widx, pos, base):
    xa = x[widx].clone()
    xa[torch.arange(len(widx)), :, pos] = 0
    xa[torch.arange(len(widx)), base, pos] = 1
    with torch.inference_mode():
        return torch.cat([model(xa[i:i + 512]) for i in range(0, len(xa), 512)])


def _fast(layers, x, widx, pos, base):
    fism = FastISM(layers)
    cache, _ = fism.reference(x)
    col = torch.nn.functional.one_hot(base, 4).float()
    return torch.cat([fism.substitute(cache, widx[i:i + 512], pos[i:i + 512], col[i:i + 512])
                      for i in range(0, len(widx), 512)])


def _onehot(b, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (b, length), generator=g), 4).transpose(1, 2).float()


def _rel_err(a, b):
    return ((a - b).abs() / b.abs().clamp_min(1e-6)).max().item()


def _assert_fast_equals_plain(model, layers, x):
    """Every substitution of every window of ``x``: fast path within 1e-4 relative of
    the plain one, and substitutions move the output far more than that (not vacuous)."""
    widx, pos, base = _all_substitutions(x)
    want = _plain(model, x, widx, pos, base)
    got = _fast(layers, x, widx, pos, base)
    assert _rel_err(got, want) < 1e-4
    with torch.inference_mode():
        ref = model(x)
    assert (want - ref[widx]).abs().max() > 1e3 * (got - want).abs().max()


def test_basset_every_offset_equals_plain():
    """The study's layer types (stem k17/pool3, k5/pool2 tower, k1, valid dense conv)."""
    torch.manual_seed(1)
    model = _randomise_bn(BassetModel(ModelConfig(seq_len=1344, n_tasks=3, filters=12, filters_max=16,
                                                  bottleneck=8, dense=16)), 2, 1344)
    layers = sequential_layers(model, 1344)
    assert layers is not None
    local, tail = plan_layers(layers)
    assert sum(op.kind == "conv" for op in local) >= 8          # stem, tower, bottleneck, dense
    _assert_fast_equals_plain(model, layers, _onehot(1, 1344, 3))   # 1344 positions × 3 bases


class _Odd(nn.Module):
    """Dilated, even-kernel, explicitly padded and valid convs; overlapping pools."""

    def __init__(self, t=2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(4, 8, 6, padding="same", bias=True), nn.BatchNorm1d(8), nn.ReLU(),
            nn.MaxPool1d(3, stride=2),
            nn.Conv1d(8, 8, 3, dilation=2, padding=2), nn.GELU(),
            nn.Conv1d(8, 6, 4), nn.Softplus(), nn.MaxPool1d(2),
            nn.Conv1d(6, 5, 5, padding="valid"), nn.Dropout(0.3),
        )
        self.head = nn.Sequential(nn.Flatten(1), nn.LazyLinear(t), nn.Softplus())

    def forward(self, x):
        return self.head(self.body(x))


def test_odd_layers_every_offset_equals_plain():
    torch.manual_seed(4)
    model = _Odd()
    model(torch.zeros(1, 4, 101))                               # materialise the lazy linear
    model = _randomise_bn(model, 5, 101)
    layers = sequential_layers(model, 101)
    assert layers is not None
    _assert_fast_equals_plain(model, layers, _onehot(3, 101, 6))


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.lin = nn.Linear(4 * 20, 1)

    def forward(self, x):
        return self.lin((x + self.conv(x)).flatten(1))


def test_non_sequential_model_falls_back_to_plain():
    model = _Residual().eval()
    assert sequential_layers(model, 20) is None
    adapter = ModelAdapter(model, 20)
    assert adapter.layers is None and adapter.n_tasks == 1


def test_no_conv_model_is_refused_by_fast_path():
    with pytest.raises(ValueError, match="plain path"):
        FastISM([nn.Flatten(1), nn.Linear(40, 1)])


def test_gemm_stem_reuses_its_output_buffer():
    """The stem's widest activation is written into one buffer kept between calls
    (no fresh pages per batch), and stays exact for any batch size."""
    torch.manual_seed(7)
    conv = nn.Conv1d(4, 6, 17, padding="same", bias=True).eval()
    gemm = GemmConv1d.from_conv(conv)
    with torch.inference_mode():
        ptrs = set()
        for n in (5, 2, 5, 3):
            x = _onehot(n, 300, n)
            y = gemm(x)
            assert torch.allclose(y, conv(x), atol=1e-5)
            ptrs.add(y.data_ptr())
        assert len(ptrs) == 1
    # outside inference mode (autograd on) it allocates as usual and stays exact
    x = _onehot(2, 300, 9)
    assert torch.allclose(gemm(x), conv(x), atol=1e-5)
