"""Exact fast in-silico mutagenesis for single-base substitutions (the fastISM idea).

A substitution changes one input column. Through a convolution of kernel
``k`` (dilation ``d``) it changes at most ``d (k - 1) + 1`` output positions,
through a max pool of size ``k`` and stride ``s`` about ``(W + k - 2) // s + 1``,
and a pointwise layer (activation, batchnorm in eval mode, dropout in eval
mode) changes exactly the positions it receives. So after one full REF pass
that caches the input of every convolution and pool, an ALT prediction needs
only a narrow slice per layer, recomputed with just enough REF context and
spliced into the cached REF activations (Nair et al. 2022, fastISM). Once the
slice covers the whole layer, or a non-local layer comes (flatten, linear),
the rest of the model runs on the whole (small) activation. The result equals
a plain forward pass of the ALT sequence up to float rounding.

The model is described by an ordered list of layers whose composition is the
forward pass (see :func:`caveat.model_adapter.sequential_layers`); layers the
planner does not know are run in full, so any sequential model is exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: layers that act on each position independently (in eval mode)
POINTWISE = (nn.GELU, nn.ReLU, nn.Softplus, nn.SiLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Identity,
             nn.Dropout, nn.BatchNorm1d, nn.LeakyReLU, nn.Mish)


@dataclass(frozen=True)
class LocalOp:
    """One layer of the local part of the model.

    Attributes
    ----------
    kind : {"pointwise", "conv", "pool"}
    module : nn.Module
    reach : int
        Input positions an output position sees minus one (``d (k - 1)`` for
        a conv, ``k - 1`` for a pool; 0 for pointwise).
    left : int
        Left zero padding of a conv (0 otherwise).
    pad_total : int
        Left plus right zero padding of a conv (0 otherwise).
    stride : int
        Pool stride (1 otherwise).
    """

    kind: str
    module: nn.Module
    reach: int = 0
    left: int = 0
    pad_total: int = 0
    stride: int = 1


def _conv_op(m: nn.Conv1d) -> LocalOp | None:
    if m.stride[0] != 1 or m.padding_mode != "zeros":
        return None
    reach = m.dilation[0] * (m.kernel_size[0] - 1)
    if isinstance(m.padding, str):
        same = m.padding == "same"
        left, total = (reach // 2, reach) if same else (0, 0)  # torch puts an odd extra pad on the right
    else:
        left = m.padding[0]
        total = 2 * left
    return LocalOp("conv", m, reach=reach, left=left, pad_total=total)


def _pool_op(m: nn.MaxPool1d) -> LocalOp | None:
    k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
    s = m.stride if isinstance(m.stride, int) else m.stride[0]
    pad = m.padding if isinstance(m.padding, int) else m.padding[0]
    dil = m.dilation if isinstance(m.dilation, int) else m.dilation[0]
    if pad != 0 or dil != 1 or m.ceil_mode or m.return_indices:
        return None
    return LocalOp("pool", m, reach=k - 1, stride=s)


def plan_layers(layers: list[nn.Module]) -> tuple[list[LocalOp], list[nn.Module]]:
    """Split ``layers`` into the local prefix the fast path slices and the tail run in full.

    Returns
    -------
    local : list of LocalOp
    tail : list of nn.Module
    """
    local: list[LocalOp] = []
    for i, m in enumerate(layers):
        op = None
        if isinstance(m, POINTWISE):
            op = LocalOp("pointwise", m)
        elif isinstance(m, nn.Conv1d):
            op = _conv_op(m)
        elif isinstance(m, nn.MaxPool1d):
            op = _pool_op(m)
        if op is None:
            return local, list(layers[i:])
        local.append(op)
    return local, []


def fold_batchnorm(layers: list[nn.Module]) -> list[nn.Module]:
    """Fold each eval-mode BatchNorm1d into the Conv1d right before it.

    ``BN(conv(x)) = conv'(x)`` with weights scaled by ``gamma / sqrt(var + eps)``
    and bias ``beta + (b - mean) * gamma / sqrt(var + eps)``: one pass over the
    activation less per block, same numbers up to float rounding. The input
    layers are not modified (folded convs are copies).
    """
    out: list[nn.Module] = []
    for m in layers:
        prev = out[-1] if out else None
        if (isinstance(m, nn.BatchNorm1d) and not m.training and m.running_var is not None
                and isinstance(prev, nn.Conv1d) and type(prev) is nn.Conv1d):
            with torch.no_grad():
                scale = (m.running_var + m.eps).rsqrt()
                gamma = m.weight if m.affine else torch.ones_like(scale)
                beta = m.bias if m.affine else torch.zeros_like(scale)
                scale = gamma * scale
                bias = prev.bias if prev.bias is not None else torch.zeros_like(scale)
                conv = copy.deepcopy(prev)
                conv.weight = nn.Parameter(prev.weight * scale[:, None, None], requires_grad=False)
                conv.bias = nn.Parameter(beta + (bias - m.running_mean) * scale, requires_grad=False)
            out[-1] = conv
        else:
            out.append(m)
    return out


def _channels_last(x: Tensor) -> Tensor:
    """(N, C, L) with channels innermost in memory (strides (L·C, 1, C)); a view when it already is."""
    return x if x.stride(1) == 1 else x.transpose(1, 2).contiguous().transpose(1, 2)


class ChannelsLastConv1d(nn.Conv1d):
    """Conv1d run as a channels-last (NHWC) 2-D convolution: oneDNN's NHWC kernels
    are faster on CPU for the tower's wide convolutions. Input and output are
    (N, C, L) views with channels innermost; same weights, same result."""

    @classmethod
    def from_conv(cls, conv: nn.Conv1d) -> "ChannelsLastConv1d":
        new = copy.deepcopy(conv)
        new.__class__ = cls
        new.w4 = new.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return new

    def forward(self, x: Tensor) -> Tensor:
        pad = self.padding if isinstance(self.padding, str) else (0, self.padding[0])
        x4 = _channels_last(x).unsqueeze(2)
        y = F.conv2d(x4, self.w4, self.bias, stride=1, padding=pad, dilation=(1, self.dilation[0]), groups=self.groups)
        return y.squeeze(2)


class ChannelsLastMaxPool1d(nn.MaxPool1d):
    """MaxPool1d on channels-last (N, C, L) views (as a (1, k) 2-D pool; no layout copies)."""

    @classmethod
    def from_pool(cls, pool: nn.MaxPool1d) -> "ChannelsLastMaxPool1d":
        new = copy.copy(pool)
        new.__class__ = cls
        return new

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size if isinstance(self.kernel_size, int) else self.kernel_size[0]
        s = self.stride if isinstance(self.stride, int) else self.stride[0]
        return F.max_pool2d(_channels_last(x).unsqueeze(2), (1, k), (1, s)).squeeze(2)


class GemmConv1d(nn.Conv1d):
    """A Conv1d with few input channels × taps (a DNA stem: 4 × 17) as one matrix
    product over unfolded windows, which beats direct convolution kernels on CPU
    for such thin inputs. Output: a channels-last (N, C_out, L) view.

    The output goes into a buffer kept between calls (it is the model's widest
    activation, 50 MB for 32 windows of the default model: allocated afresh, its
    pages would be mapped and zeroed by the kernel on every batch, a fifth of a
    forward pass). So an output is valid only until the next call."""

    @classmethod
    def from_conv(cls, conv: nn.Conv1d) -> "GemmConv1d":
        new = copy.deepcopy(conv)
        new.__class__ = cls
        new._out = None
        return new

    def _buffer(self, rows: int, like: Tensor) -> Tensor:
        out = self._out
        if out is None or out.shape[0] < rows or out.dtype != like.dtype or out.device != like.device:
            out = self._out = torch.empty(rows, self.out_channels, dtype=like.dtype, device=like.device)
        return out[:rows]

    def forward(self, x: Tensor) -> Tensor:
        k, d = self.kernel_size[0], self.dilation[0]
        reach = d * (k - 1)
        if isinstance(self.padding, str):
            left, right = (reach // 2, reach - reach // 2) if self.padding == "same" else (0, 0)
        else:
            left = right = self.padding[0]
        n, c, _ = x.shape
        cols = F.pad(x, (left, right)).unfold(2, reach + 1, 1)[..., ::d]          # (N, C, L_out, k)
        l_out = cols.shape[2]
        cols = cols.permute(0, 2, 1, 3).reshape(n * l_out, c * k)
        w = self.weight.reshape(self.out_channels, c * k).T
        autograd = torch.is_grad_enabled() and self.weight.requires_grad   # it allows no out=
        out = None if autograd else self._buffer(n * l_out, cols)
        y = torch.mm(cols, w, out=out) if self.bias is None else torch.addmm(self.bias, cols, w, out=out)
        return y.view(n, l_out, self.out_channels).transpose(1, 2)


def speed_up_layers(layers: list[nn.Module], max_gemm_width: int = 128) -> list[nn.Module]:
    """Inference-only rewrites, exact up to float rounding: batchnorms folded into
    convolutions; on CPU, thin convolutions (in_channels × kernel ≤ ``max_gemm_width``)
    as a GEMM and the others and the max pools in channels-last layout. The input
    layers are not modified."""
    out = []
    on_cpu = all(device_type(m) == "cpu" for m in layers)
    for m in fold_batchnorm(layers):
        if not on_cpu:
            pass                                  # cuDNN needs none of the CPU layout rewrites
        elif type(m) is nn.Conv1d and m.stride[0] == 1 and m.padding_mode == "zeros":
            if m.groups == 1 and m.in_channels * m.kernel_size[0] <= max_gemm_width:
                m = GemmConv1d.from_conv(m)
            elif not (isinstance(m.padding, str) and m.padding == "same" and m.kernel_size[0] % 2 == 0):
                m = ChannelsLastConv1d.from_conv(m)
        elif isinstance(m, nn.MaxPool1d) and not isinstance(m, ChannelsLastMaxPool1d) and _pool_op(m) is not None:
            m = ChannelsLastMaxPool1d.from_pool(m)
        out.append(m)
    return out


def device_type(m: nn.Module) -> str:
    p = next(m.parameters(), None)
    return p.device.type if p is not None else "cpu"


def _splice(ref_t: Tensor, widx: Tensor, patch: Tensor, s: Tensor, r0: Tensor, width: int) -> Tensor:
    """ALT activation over positions ``[r0, r0 + width)``: the patch where it lies, REF elsewhere.

    Parameters
    ----------
    ref_t : Tensor
        Cached REF activation, shape (B, C, L).
    widx : Tensor
        Window of each substitution, shape (N,), values in [0, B).
    patch : Tensor
        ALT values over ``[s, s + W)``, shape (N, C, W).
    s, r0 : Tensor
        Patch and range starts, shape (N,).
    width : int

    Returns
    -------
    Tensor
        Shape (N, C, width); zero outside ``[0, L)`` (a conv's zero padding).
    """
    n, c, w = patch.shape
    length = ref_t.shape[2]
    q = r0[:, None] + torch.arange(width, device=patch.device)[None, :]          # (N, width)
    ref_vals = ref_t[widx[:, None], :, q.clamp(0, length - 1)].transpose(1, 2)   # (N, C, width)
    ref_vals = ref_vals * ((q >= 0) & (q < length)).unsqueeze(1).to(ref_vals.dtype)
    rel = q - s[:, None]
    in_patch = ((rel >= 0) & (rel < w)).unsqueeze(1)
    patch_vals = patch.gather(2, rel.clamp(0, w - 1).unsqueeze(1).expand(n, c, width))
    return torch.where(in_patch, patch_vals, ref_vals)


class FastISM:
    """Exact fast ALT predictions for single-base substitutions.

    Parameters
    ----------
    layers : list of nn.Module
        Ordered layers whose composition is the model's forward, (N, 4, L) → (N, T).
        Every module must be in eval mode.
    fold_bn : bool
        Fold batchnorms into the preceding convolutions and run thin
        convolutions as GEMMs (:func:`speed_up_layers`; faster, same numbers).

    Examples
    --------
    >>> fism = FastISM(sequential_layers(model))
    >>> cache, y_ref = fism.reference(x_ref)              # x_ref (B, 4, L)
    >>> y_alt = fism.substitute(cache, widx, pos, base)   # (N, T)
    """

    def __init__(self, layers: list[nn.Module], fold_bn: bool = True):
        layers = speed_up_layers(list(layers)) if fold_bn else list(layers)
        self.local, self.tail = plan_layers(layers)
        if not any(op.kind == "conv" for op in self.local):
            raise ValueError("no local convolution layers to speed up: use the plain path")

    @torch.inference_mode()
    def reference(self, x: Tensor) -> tuple[list[Tensor | None], Tensor]:
        """Full REF pass keeping the input of each conv/pool (references, no copies).

        Parameters
        ----------
        x : Tensor
            One-hot REF windows, shape (B, 4, L).

        Returns
        -------
        cache : list
            Per local layer: its input, shape (B, C_l, L_l), or None for pointwise
            layers; last item: the input of the tail, shape (B, C_m, L_m).
        y : Tensor
            REF predictions, shape (B, T).
        """
        cache: list[Tensor | None] = []
        for op in self.local:
            cache.append(x if op.kind != "pointwise" else None)
            x = op.module(x)
        cache.append(x)
        for m in self.tail:
            x = m(x)
        return cache, x

    @torch.inference_mode()
    def substitute(self, cache: list[Tensor | None], widx: Tensor, pos: Tensor, column: Tensor) -> Tensor:
        """ALT predictions for one substitution per row.

        Parameters
        ----------
        cache : list
            From :meth:`reference` on B windows.
        widx : Tensor
            Window index of each substitution, shape (N,), int64.
        pos : Tensor
            Substituted position in the window, shape (N,), int64.
        column : Tensor
            The ALT input column (one-hot base), shape (N, 4).

        Returns
        -------
        Tensor
            Shape (N, T), equal to the model on the substituted windows.
        """
        patch = column.unsqueeze(-1).to(cache[-1].dtype)                         # (N, 4, 1)
        s = pos.long()
        for op, ref_t in zip(self.local, cache[:-1]):
            if op.kind == "pointwise":
                patch = op.module(patch)
                continue
            length = ref_t.shape[2]
            w = patch.shape[2]
            if op.kind == "conv":
                out_len = length + op.pad_total - op.reach
                wo = min(w + op.reach, out_len)
                os_ = (s - (op.reach - op.left)).clamp(0, out_len - wo)
                r0 = os_ - op.left
                xin = _splice(ref_t, widx, patch, s, r0, wo + op.reach)
                m = op.module
                patch = F.conv1d(xin, m.weight, m.bias, stride=1, padding=0, dilation=m.dilation, groups=m.groups)
            else:
                k, st = op.reach + 1, op.stride
                out_len = (length - k) // st + 1
                wo = min((w + k - 2) // st + 1, out_len)
                os_ = torch.div(s - k + 1 + st - 1, st, rounding_mode="floor").clamp(0, out_len - wo)
                r0 = os_ * st
                xin = _splice(ref_t, widx, patch, s, r0, (wo - 1) * st + k)
                patch = F.max_pool1d(xin, k, st)
            s = os_
        ref_t = cache[-1]
        x = _splice(ref_t, widx, patch, s, torch.zeros_like(s), ref_t.shape[2])
        for m in self.tail:
            x = m(x)
        return x


__all__ = ["ChannelsLastConv1d", "ChannelsLastMaxPool1d", "FastISM", "GemmConv1d", "LocalOp", "fold_batchnorm", "plan_layers", "speed_up_layers"]
