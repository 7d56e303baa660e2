"""A model-free baseline (issue 18.6): ridge regression of the targets on k-mer counts.

Features: the counts of every k-mer (``k`` default 6), reverse-complement collapsed (a k-mer and
its reverse complement are one feature: 2,080 features for k = 6), in the central ``width`` bp
of each window. Target: ``log1p`` of the per-task targets the CNNs train on (build_dataset's
``targets`` of windows.parquet, raw scaled insertion counts of the centre bin; the CNNs fit them
with a Poisson loss on a softplus output), all windows of the ``train`` split (the ``multitask``
regime's windows). Features are standardised on the training windows; the ridge penalty
``alpha`` and the counting ``width`` are chosen on the ``valid`` split the CNNs early-stop on, by
the same criterion (mean over tasks of the Pearson R of raw-scale predictions and targets).
Prediction: ``expm1(max(0, counts · coef + intercept))`` (non-negative, as an outside model must).

The width matters more than anything else: on the demo study (seed 1) the validation mean
Pearson R of 6-mer counts is 0.52 over the central 192 bp, 0.58 over 384 bp, 0.39 over 768 bp
and lower over the whole 1344 bp window (the target is the centre bin; far k-mers add noise).
The grid is ``target_bin`` × 1, 2, 4 and the whole window (:func:`width_grid`), tried narrowest
first until R falls (:func:`fit_kmer_baseline`).

Why not gapped k-mers or a gkm-SVM. PyPI has ``gkmsvm-lite`` 0.1.0 (2026-10, one release, no
track record) and ``fastsk`` 0.0.2 (2021, unmaintained); the maintained LS-GKM is a C program,
not a package, so none is a dependency we would want. Spaced (gapped) k-mers are implemented
here (``gap`` > 0: two halves of the k informative bases with ``gap`` unread bases between)
and were measured against contiguous ones on the demo (docs/CONVENTIONS.md, "k-mer baseline");
contiguous k-mers are the default.

Fit: closed form. The counts of each chunk of windows are accumulated into XᵀX, Xᵀ1 and XᵀY
(float64, exact for integer counts), so memory is O(F²) whatever the number of windows; the
standardised Gram matrix is eigendecomposed once and every alpha costs one (F, F) product
(``ridge_path``). Deterministic: no random numbers.

Export: :class:`KmerRidge`, a TorchScript-able module mapping one-hot (N, 4, L) to (N, T): a
fixed two-channel Conv1d gives each position's k-mer index (Σ base · 4^(k-1-j)) and the number of
called bases under it, a scatter-add turns them into exact k-mer counts (N, 4^k), and a float64
product with the coefficients (each k-mer carries its canonical class's coefficient) gives the
predictions. It therefore goes through :func:`caveat.model_adapter.load_model` like any
outside model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .metrics import pearson_per_task

#: largest k: 4^k k-mer indices must be exact in float32 (≤ 2^24) and F² fit in memory
MAX_K = 8
#: alpha grid, as multiples of the number of training windows (standardised features: the
#: Gram matrix's diagonal is that number)
ALPHA_FACTORS = tuple(10.0 ** np.arange(-3.0, 3.01, 0.5))
#: windows counted per chunk
CHUNK = 1024


# ---------------------------------------------------------------- k-mer counting


def kmer_offsets(k: int, gap: int = 0) -> np.ndarray:
    """Positions (k,) of the informative bases of a (spaced) k-mer: the first k // 2 bases, then
    ``gap`` unread bases, then the other k - k // 2. The span is ``offsets[-1] + 1``."""
    check_k(k, gap)
    h = k // 2
    return np.r_[np.arange(h), h + gap + np.arange(k - h)].astype(np.int64)


def check_k(k: int, gap: int = 0, where: str = "params") -> None:
    """Raise :class:`InputError` for a k outside 1 … :data:`MAX_K` or a gap with odd k."""
    if not 1 <= int(k) <= MAX_K:
        raise InputError(where, f"baseline_kmer_k = {k} is outside 1…{MAX_K}",
                         f"set baseline_kmer_k between 1 and {MAX_K} (4^k features; 6 is the default)")
    if gap < 0 or (gap and k % 2):
        raise InputError(where, f"k-mer gap {gap} with k = {k}: a gap needs even k and gap >= 0",
                         "use an even k with a gap, or gap 0 (a spaced k-mer must be its own reverse complement's shape)")


def canonical_columns(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each k-mer index's canonical feature column and the canonical k-mers.

    Returns
    -------
    column : (4**k,) int64
        Feature column of k-mer index i (the same for a k-mer and its reverse complement).
    canonical : (F,) int64
        The smaller index of each reverse-complement pair, in column order.
    """
    idx = np.arange(4 ** k, dtype=np.int64)
    place = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    digits = (idx[:, None] // place) % 4
    rc = ((3 - digits[:, ::-1]) * place).sum(1)
    canonical, column = np.unique(np.minimum(idx, rc), return_inverse=True)
    return column.astype(np.int64), canonical


def kmer_names(k: int, gap: int = 0) -> list[str]:
    """The canonical k-mers of :func:`canonical_columns` as strings (a gap written as ``n``s)."""
    _, canonical = canonical_columns(k)
    place = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    letters = np.array(list("ACGT"))[(canonical[:, None] // place) % 4]
    h = k // 2
    return ["".join(r[:h]) + "n" * gap + "".join(r[h:]) for r in letters]


def kmer_index(codes: np.ndarray, k: int, gap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each position's k-mer index.

    Parameters
    ----------
    codes : (N, W) integer array
        A=0, C=1, G=2, T=3, N=4 (:mod:`caveat.genome`).

    Returns
    -------
    index : (N, P) int64
        Σ_j code[p + offset_j] · 4^(k-1-j), P = W - span + 1 (N bases read as T).
    valid : (N, P) bool
        No N among the k informative bases.
    """
    off = kmer_offsets(k, gap)
    p = codes.shape[1] - int(off[-1])
    if p <= 0:
        raise InputError("params", f"a {k}-mer with gap {gap} does not fit in {codes.shape[1]} bp", "use a smaller k")
    c = codes.astype(np.int64)
    index = np.zeros((len(c), p), np.int64)
    valid = np.ones((len(c), p), bool)
    for o in off:
        b = c[:, o:o + p]
        valid &= b < 4
        index = index * 4 + np.minimum(b, 3)
    return index, valid


def kmer_counts(codes: np.ndarray, k: int, gap: int = 0, sparse: bool = False):
    """Reverse-complement-collapsed k-mer counts, (N, W) codes → (N, F) float64.

    ``sparse``: a ``scipy.sparse.csr_matrix`` (a window of W bp holds at most W of the 4^k / 2
    k-mers, so XᵀX costs ~W² per window instead of F²: 100× less for 6-mers in 192 bp)."""
    from scipy import sparse as sp

    column, canonical = canonical_columns(k)
    f = len(canonical)
    index, valid = kmer_index(codes, k, gap)
    rows = np.broadcast_to(np.arange(len(codes), dtype=np.int64)[:, None], index.shape)
    x = sp.csr_matrix((np.ones(int(valid.sum())), (rows[valid], column[index][valid])), shape=(len(codes), f))
    x.sum_duplicates()
    return x if sparse else x.toarray()


def centre_start(length: int, width: int) -> int:
    """First position of the central ``width`` bp of a ``length`` bp window."""
    return (int(length) - int(width)) // 2


def width_grid(window_size: int, target_bin: int) -> list[int]:
    """Counting widths tried: ``target_bin`` × 1, 2, 4 (those below the window) and the window."""
    return sorted({w for w in (target_bin, 2 * target_bin, 4 * target_bin) if w < window_size} | {window_size})


def window_counts(genome, abs_starts: np.ndarray, length: int, width: int, k: int, gap: int = 0,
                  chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """k-mer counts (≤ chunk, F) (sparse) of the central ``width`` bp of the windows at ``abs_starts``, chunk by chunk.

    ``genome``: a :class:`caveat.loader.GenomeCodes`."""
    s = centre_start(length, width)
    for i in range(0, len(abs_starts), chunk):
        yield kmer_counts(genome.gather(abs_starts[i:i + chunk] + s, width), k, gap, sparse=True)


# ---------------------------------------------------------------- ridge regression


@dataclass
class Moments:
    """Sufficient statistics of a least-squares fit: n, Σx (F,), XᵀX (F, F), XᵀY (F, T), Σy (T,)."""

    n: int
    xsum: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray
    ysum: np.ndarray

    @classmethod
    def accumulate(cls, chunks: Iterator[np.ndarray], y: np.ndarray) -> "Moments":
        """From feature chunks (sparse or dense, rows in order) and the transformed targets y (n, T)."""
        m, at = None, 0
        for x in chunks:
            yy = y[at:at + x.shape[0]]
            at += x.shape[0]
            if m is None:
                m = cls(0, np.zeros(x.shape[1]), np.zeros((x.shape[1],) * 2), np.zeros((x.shape[1], y.shape[1])),
                        np.zeros(y.shape[1]))
            m.n += x.shape[0]
            m.xsum += np.asarray(x.sum(0)).ravel()
            xtx = x.T @ x
            m.xtx += xtx.toarray() if hasattr(xtx, "toarray") else xtx
            m.xty += np.asarray(x.T @ yy)
            m.ysum += yy.sum(0)
        return m


def ridge_path(m: Moments, alphas) -> tuple[np.ndarray, np.ndarray]:
    """Ridge fits on standardised features for every alpha, mapped back to raw counts.

    Returns
    -------
    coef : (A, F, T) float64
        Coefficients of the raw counts (0 for a feature constant on the training windows).
    intercept : (A, T) float64
    """
    mu, ym = m.xsum / m.n, m.ysum / m.n
    cov = m.xtx - m.n * np.outer(mu, mu)                         # centred XᵀX
    sd = np.sqrt(np.maximum(np.diag(cov), 0) / m.n)
    scale = np.where(sd > 1e-12, 1 / np.where(sd > 1e-12, sd, 1), 0.0)
    gram = cov * scale[:, None] * scale[None, :]
    zty = (m.xty - np.outer(m.xsum, ym)) * scale[:, None]      # centred, scaled XᵀY
    ev, vec = np.linalg.eigh(gram)
    proj = vec.T @ zty
    coef = np.stack([(vec @ (proj / (np.maximum(ev, 0) + a)[:, None])) * scale[:, None] for a in alphas])
    intercept = ym[None, :] - np.einsum("f,aft->at", mu, coef)
    return coef, intercept


def inverse_target(z: np.ndarray) -> np.ndarray:
    """log1p scale → target scale, clipped at 0: expm1(max(z, 0))."""
    return np.expm1(np.maximum(z, 0))


@dataclass
class KmerFit:
    """A fitted k-mer ridge baseline.

    Attributes
    ----------
    k, gap, width : int
        k-mer length, gap, central counting width (bp).
    alpha : float
    coef : (F, T) float64
        Coefficients of the canonical k-mer counts (:func:`canonical_columns` order).
    intercept : (T,) float64
    grid : list of dict
        width, alpha, valid_pearson (mean over tasks) of every fit tried.
    """

    k: int
    gap: int
    width: int
    alpha: float
    coef: np.ndarray
    intercept: np.ndarray
    grid: list

    def predict_counts(self, counts: np.ndarray) -> np.ndarray:
        """Predictions (N, T) from canonical k-mer counts (N, F), dense or sparse, of the central ``width`` bp."""
        return inverse_target(np.asarray(counts @ self.coef) + self.intercept)


def fit_width(genome, abs_starts: np.ndarray, targets: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray,
              length: int, width: int, k: int, gap: int = 0) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """Every alpha's fit at one width: [(alpha, valid mean Pearson R, coef (F, T), intercept (T,))]."""
    m = Moments.accumulate(window_counts(genome, abs_starts[train_idx], length, width, k, gap),
                           np.log1p(targets[train_idx].astype(np.float64)))
    alphas = [m.n * f for f in ALPHA_FACTORS]
    coef, intercept = ridge_path(m, alphas)
    a, f, t = coef.shape
    flat = coef.transpose(1, 0, 2).reshape(f, a * t)
    z = np.concatenate([np.asarray(x @ flat) for x in window_counts(genome, abs_starts[valid_idx], length, width, k, gap)])
    pred = inverse_target(z.reshape(len(valid_idx), a, t) + intercept[None])
    out = []
    for j, alpha in enumerate(alphas):
        r = pearson_per_task(pred[:, j], targets[valid_idx].astype(np.float64))
        out.append((float(alpha), float(np.nanmean(r)) if np.isfinite(r).any() else float("-inf"), coef[j], intercept[j]))
    return out


def fit_kmer_baseline(genome, abs_starts: np.ndarray, targets: np.ndarray, train_idx: np.ndarray,
                      valid_idx: np.ndarray, length: int, widths, k: int = 6, gap: int = 0, log=None) -> KmerFit:
    """Fit on the training windows, choosing width and alpha on the validation windows.

    Parameters
    ----------
    genome : caveat.loader.GenomeCodes
    abs_starts : (W,) int64
        Window starts in the genome's coordinates.
    targets : (W, T) float
        Non-negative targets (raw scale).
    train_idx, valid_idx : (n,) int64
    length : int
        Window length L.
    widths : sequence of int
        Central counting widths tried (each ≤ L).
    k, gap : int

    Returns
    -------
    KmerFit
        The fit with the best validation mean Pearson R (ties: the first width and alpha).

    Widths are tried from the narrowest, and widening stops at the first width whose best
    validation R is below the previous width's: R is unimodal in the width (k-mers far from the
    target bin add noise; on the demo 0.47, 0.52, 0.33, 0.14 for 192 … 1344 bp), and the widest
    fits cost the most (the whole window was 34 of the demo's 61 s).
    """
    check_k(k, gap)
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise InputError("windows.parquet", f"{len(train_idx)} training and {len(valid_idx)} validation windows",
                         "the k-mer baseline needs both splits: check valid_chroms / test_chroms")
    best, grid, previous = None, [], -np.inf
    for width in sorted(int(w) for w in widths):
        for alpha, r, coef, intercept in fit_width(genome, abs_starts, targets, train_idx, valid_idx, length,
                                                   width, k, gap):
            grid.append({"width": width, "alpha": alpha, "valid_pearson": r})
            if best is None or r > best[2]:
                best = (width, alpha, r, coef, intercept)
        here = max(g["valid_pearson"] for g in grid if g["width"] == width)
        if log is not None:
            log.info("k-mer baseline: width %d bp, best valid mean Pearson R %.4f", width, here)
        if here < previous:
            if log is not None:
                log.info("k-mer baseline: R fell from the previous width: wider ones not tried")
            break
        previous = here
    width, alpha, _, coef, intercept = best
    return KmerFit(k, gap, width, alpha, coef, intercept, grid)


# ---------------------------------------------------------------- TorchScript export


class KmerRidge(nn.Module):
    """One-hot (N, 4, L) → (N, T) predictions of a :class:`KmerFit` (TorchScript-able).

    Parameters
    ----------
    fit : KmerFit
    seq_len : int
        Input length L.
    """

    def __init__(self, fit: KmerFit, seq_len: int):
        super().__init__()
        off = kmer_offsets(fit.k, fit.gap)
        kernel = torch.zeros(2, 4, int(off[-1]) + 1, dtype=torch.float32)
        for j, o in enumerate(off):
            kernel[0, :, o] = torch.arange(4, dtype=torch.float32) * float(4 ** (fit.k - 1 - j))
            kernel[1, :, o] = 1.0
        column, _ = canonical_columns(fit.k)
        self.register_buffer("kernel", kernel)
        self.register_buffer("table", torch.from_numpy(np.ascontiguousarray(fit.coef[column])))   # (4^k, T) float64
        self.register_buffer("intercept", torch.from_numpy(np.asarray(fit.intercept, np.float64)))
        self.k = int(fit.k)
        self.n_kmers = int(4 ** fit.k)
        self.start = centre_start(seq_len, fit.width)
        self.width = int(fit.width)

    @torch.jit.export
    def kmer_counts(self, x: torch.Tensor) -> torch.Tensor:
        """Counts of every (not collapsed) k-mer in the central width, (N, 4, L) → (N, 4^k) float64."""
        z = torch.nn.functional.conv1d(x[:, :, self.start:self.start + self.width].float(), self.kernel)
        valid = (z[:, 1] > self.k - 0.5).to(torch.float64)
        index = torch.round(z[:, 0]).to(torch.long).clamp(0, self.n_kmers - 1)
        counts = torch.zeros(x.shape[0], self.n_kmers, dtype=torch.float64, device=x.device)
        return counts.scatter_add_(1, index, valid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.kmer_counts(x) @ self.table + self.intercept
        return torch.expm1(z.clamp(min=0.0)).float()


def export_torchscript(fit: KmerFit, seq_len: int) -> torch.jit.ScriptModule:
    """The fit as a TorchScript module (save with ``torch.jit.save``)."""
    return torch.jit.script(KmerRidge(fit, seq_len).eval())


__all__ = ["KmerFit", "KmerRidge", "MAX_K", "Moments", "canonical_columns", "centre_start", "check_k",
           "export_torchscript", "fit_kmer_baseline", "kmer_counts", "kmer_index", "kmer_names", "kmer_offsets",
           "ridge_path", "width_grid", "window_counts"]
