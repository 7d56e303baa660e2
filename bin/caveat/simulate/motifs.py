"""TF motifs: position weight matrices, per-cell-type activity, and scanning.

Occupancy of a motif at a position is a piecewise-linear function of the
log-odds match score (0 below 75 % of the best score, 1 above 90 %), so a
SNP far from any near-match changes nothing and a SNP at a high-information
position of a strong match can break it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND = np.array([0.3, 0.2, 0.2, 0.3])  # GC 40 %
LO_FRAC, HI_FRAC = 0.75, 0.90
N_MOTIFS = 12


@dataclass
class Motifs:
    """PWMs and activities.

    Attributes
    ----------
    names : list of str, length M
    pwms : list of float arrays, each (width, 4), rows sum to 1 (A C G T)
    activity : float array (n_cell_types, M)
    active_in : list of tuple of cell-type names, length M (all cell types for ubiquitous TFs)
    """

    names: list
    pwms: list
    activity: np.ndarray
    active_in: list

    @property
    def log_odds(self) -> list:
        """Per motif (width, 5) log2-odds vs background; column 4 (N) scores -4."""
        out = []
        for p in self.pwms:
            lo = np.log2(p / BACKGROUND)
            out.append(np.concatenate([lo, np.full((len(p), 1), -4.0)], axis=1))
        return out

    def to_json(self, cell_types) -> dict:
        ic = [float((2 + (p * np.log2(p)).sum(1)).sum()) for p in self.pwms]
        return {
            "alphabet": "ACGT",
            "background": BACKGROUND.tolist(),
            "occupancy": {"lo_fraction_of_max_score": LO_FRAC, "hi_fraction_of_max_score": HI_FRAC},
            "motifs": [
                {"name": n, "width": len(p), "information_bits": round(i, 3),
                 "pwm": np.round(p, 5).tolist(),
                 "activity": {ct: float(a) for ct, a in zip(cell_types, self.activity[:, k])},
                 "active_in": list(self.active_in[k])}
                for k, (n, p, i) in enumerate(zip(self.names, self.pwms, ic))
            ],
        }


def _pwm(rng: np.random.Generator, width: int) -> np.ndarray:
    """A PWM of realistic information content: mostly one preferred base per
    column (~1.2-1.9 bits), with a few degenerate spacer columns."""
    p = np.empty((width, 4))
    pref = rng.integers(0, 4, width)
    strength = rng.beta(9, 2, width)
    spacer = rng.random(width) < 0.15
    spacer[[0, -1]] = False
    strength[spacer] = rng.uniform(0.3, 0.45, spacer.sum())
    for i in range(width):
        rest = rng.dirichlet(np.ones(3)) * (1 - strength[i])
        p[i, np.arange(4) != pref[i]] = rest
        p[i, pref[i]] = strength[i]
    p = (p + 0.01) / (1 + 0.04)
    return p


def make_motifs(rng: np.random.Generator, cell_types) -> Motifs:
    """Ubiquitous TFs (active everywhere) plus two specific TFs per cell type:
    one active only there, one active there and in the next cell type."""
    k = len(cell_types)
    n_ubiq = max(4, N_MOTIFS - 2 * k)
    names, pwms, active = [], [], []
    for i in range(n_ubiq):
        names.append(f"UBQ{i + 1}")
        active.append(tuple(cell_types))
    for j, ct in enumerate(cell_types):
        names.append(f"{ct.upper()}_ONLY")
        active.append((ct,))
        names.append(f"{ct.upper()}_PAIR")
        active.append((ct, cell_types[(j + 1) % k]))
    for _ in names:
        pwms.append(_pwm(rng, int(rng.integers(10, 21))))
    activity = np.zeros((k, len(names)))
    for m, cts in enumerate(active):
        for ct in cts:
            activity[cell_types.index(ct), m] = rng.uniform(0.85, 1.15) if len(cts) == k else 1.0
    return Motifs(names, pwms, activity, active)


def occupancy(codes: np.ndarray, lengths: np.ndarray, motifs: Motifs) -> tuple[np.ndarray, np.ndarray]:
    """Summed motif occupancy per sequence.

    Parameters
    ----------
    codes : uint8 array (n, L)
        Sequences padded with N (4).
    lengths : int array (n,)
        True lengths.

    Returns
    -------
    occ : float array (n, M)
        Sum over positions of the per-position occupancy (max of both strands).
    covered : bool array (n, L)
        Positions inside a window with non-zero occupancy of any motif.
    """
    n, L = codes.shape
    occ = np.zeros((n, len(motifs.pwms)))
    covered = np.zeros((n, L), dtype=bool)
    for m, lo in enumerate(motifs.log_odds):
        w = len(lo)
        if L < w:
            continue
        smax = lo[:, :4].max(1).sum()
        lo_rc = lo[::-1][:, [3, 2, 1, 0, 4]]
        nw = L - w + 1
        fwd = np.zeros((n, nw))
        rev = np.zeros((n, nw))
        for j in range(w):
            c = codes[:, j:j + nw]
            fwd += lo[j][c]
            rev += lo_rc[j][c]
        score = np.maximum(fwd, rev)
        o = np.clip((score - LO_FRAC * smax) / ((HI_FRAC - LO_FRAC) * smax), 0.0, 1.0)
        o[np.arange(nw)[None, :] > (lengths[:, None] - w)] = 0.0
        occ[:, m] = o.sum(1)
        hit = o > 0
        if hit.any():
            rows, cols = np.nonzero(hit)
            for j in range(w):
                covered[rows, cols + j] = True
    return occ, covered


def accessibility(occ: np.ndarray, motifs: Motifs, base: float = 0.02, half: float = 1.8,
                  hill: float = 3.0) -> np.ndarray:
    """Accessibility per cell type from motif occupancy: a cooperative, saturating
    (Hill) function of activity-weighted occupancy, so one broken site in an
    element with one to three sites changes accessibility clearly.

    Parameters
    ----------
    occ : float array (n, M)

    Returns
    -------
    float array (n, n_cell_types), in [base, 1).
    """
    drive = occ @ motifs.activity.T
    return base + (1 - base) * drive ** hill / (drive ** hill + half ** hill)


def sample_instance(rng: np.random.Generator, pwm: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A strong site for ``pwm`` (codes, width): drawn from the sharpened PWM,
    the consensus if the draw scores below the full-occupancy threshold."""
    sharp = pwm ** 4
    sharp /= sharp.sum(1, keepdims=True)
    site = np.array([rng.choice(4, p=row) for row in sharp], dtype=np.uint8)
    smax = lo[:, :4].max(1).sum()
    if lo[np.arange(len(site)), site].sum() < HI_FRAC * smax:
        site = pwm.argmax(1).astype(np.uint8)
    return site
