"""The report's figures: matplotlib (object API, Agg canvas, no pyplot state).

Each ``fig_*`` function takes tables and returns a :class:`matplotlib.figure.Figure`
(or None when its data is absent); :func:`to_png_base64` embeds it in HTML.
PNGs are written without the software/date metadata so the report is
byte-identical for the same inputs.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .regimes import regime_order
from .strata import KINDS

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
KIND_COLOURS = {"ubiquitous": "#4C72B0", "specific": "#C44E52", "all": "#555555",
                "ubiquitous_height_matched": "#9DB4D8", "specific_any": "#E3A0A2", "test_chroms": "#8C8C8C"}
STRATUM_LABEL = {"all": "all", "ubiquitous": "ubiquitous", "specific": "own specific cluster",
                 "ubiquitous_height_matched": "ubiq., height-matched to own specific",
                 "specific_any": "any specific cluster (pooled)", "test_chroms": "test chromosomes"}
DPI = 96
VAR_TITLE = {"direction_auroc_strata": "Fig. 4B direction AUROC (imbalance-matched)",
             "direction_auroc": "direction AUROC, imbalanced sites", "imbalance_auroc": "imbalance AUROC"}


def new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png_base64(fig: Figure) -> str:
    """PNG bytes of ``fig`` as base64 text (no metadata: deterministic)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def regime_colours(regimes) -> dict[str, str]:
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(regime_order(regimes))}


def _select(m: pd.DataFrame, metric: str, strata=None, regimes=None) -> pd.DataFrame:
    s = m[m["metric"] == metric]
    if strata is not None:
        s = s[s["stratum"].isin(strata)]
    if regimes is not None:
        s = s[s["regime"].isin(regimes)]
    return s


def mean_over_cell_types(m: pd.DataFrame) -> pd.DataFrame:
    """Mean value and mean CI bounds per regime × metric × stratum (over cell types)."""
    g = m.groupby(["regime", "metric", "stratum"], sort=False)
    return g.agg(value=("value", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
                 n_cell_types=("cell_type", "nunique")).reset_index()


def _err(d: pd.DataFrame) -> np.ndarray:
    lo = (d["value"] - d["ci_low"]).clip(lower=0).fillna(0).to_numpy()
    hi = (d["ci_high"] - d["value"]).clip(lower=0).fillna(0).to_numpy()
    return np.vstack([lo, hi])


def _grouped_bars(ax, table: pd.DataFrame, groups: list[str], series: list[str], colours: dict, labels=None,
                  group_col="regime", series_col="stratum", points: pd.DataFrame | None = None) -> None:
    """Bars of ``value`` with CI error bars: x = groups, one bar per series; optional per-cell-type dots."""
    width = 0.8 / max(len(series), 1)
    for k, s in enumerate(series):
        d = table[table[series_col] == s].set_index(group_col).reindex(groups)
        x = np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, d["value"].to_numpy(), width * 0.95, color=colours.get(s, PALETTE[k % len(PALETTE)]),
               label=(labels or {}).get(s, s), yerr=_err(d), capsize=2, ecolor="#333333", error_kw={"lw": 0.8})
        if points is not None:
            pts = points[points[series_col] == s]
            for gi, g in enumerate(groups):
                v = pts.loc[pts[group_col] == g, "value"].to_numpy()
                ax.scatter(np.full(v.size, x[gi]), v, s=8, color="black", zorder=3, linewidths=0)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=20, ha="right")
    ax.grid(axis="y", alpha=0.3)


# ---------------------------------------------------------------- the study's figures


def fig_headline(m: pd.DataFrame) -> Figure | None:
    """Reference accuracy (x) vs variant-effect accuracy (y) per regime × stratum, with CIs."""
    ref = mean_over_cell_types(_select(m, "pearson_peak", ["all", *KINDS]))
    var_metric = "direction_auroc" if (m["metric"] == "direction_auroc").any() else "imbalance_auroc"
    var = mean_over_cell_types(_select(m, var_metric, ["all", *KINDS]))
    both = ref.merge(var, on=["regime", "stratum"], suffixes=("_ref", "_var"))
    if both.empty:
        return None
    colours = regime_colours(both["regime"])
    markers = {"all": "o", "ubiquitous": "s", "specific": "^"}
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    for _, r in both.iterrows():
        ax.errorbar(r["value_ref"], r["value_var"],
                    xerr=[[max(r["value_ref"] - r["ci_low_ref"], 0)], [max(r["ci_high_ref"] - r["value_ref"], 0)]],
                    yerr=[[max(r["value_var"] - r["ci_low_var"], 0)], [max(r["ci_high_var"] - r["value_var"], 0)]],
                    fmt=markers.get(r["stratum"], "o"), color=colours[r["regime"]], ms=8, capsize=2, lw=0.8)
    for reg, c in colours.items():
        ax.plot([], [], "o", color=c, label=reg)
    for s, mk in markers.items():
        ax.plot([], [], mk, color="#777777", label=STRATUM_LABEL[s])
    ax.axhline(0.5, color="#999999", lw=0.8, ls="--")
    ax.set_xlabel("reference accuracy: Pearson R, peaks on test chromosomes")
    ax.set_ylabel(f"variant-effect accuracy: {var_metric.replace('_', ' ')}")
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.grid(alpha=0.3)
    ax.set_title("Reference vs variant-effect accuracy (mean over cell types, 95% CI)", fontsize=10)
    return fig


def fig_1bc(m: pd.DataFrame, regime: str) -> Figure | None:
    """Fig. 1b,c: one regime's reference accuracy and variant-effect AUROCs per cell type."""
    ref = _select(m, "pearson_peak", ["all"], [regime]).assign(stratum="peaks")
    win = _select(m, "pearson_window", ["all"], [regime]).assign(stratum="windows")
    var = _select(m, "imbalance_auroc", ["all"], [regime]).assign(stratum="imbalance")
    dire = _select(m, "direction_auroc", ["all"], [regime]).assign(stratum="direction")
    if ref.empty and var.empty:
        return None
    fig = new_figure(9, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    r = pd.concat([ref, win])
    if len(r):
        cts = list(dict.fromkeys(r["cell_type"]))
        _grouped_bars(ax1, r, cts, ["peaks", "windows"], {"peaks": PALETTE[0], "windows": PALETTE[7]},
                      group_col="cell_type")
        ax1.legend(fontsize=7)
    if r.empty:
        ax1.text(0.5, 0.5, "not run: no predictions", ha="center", va="center", color="#a33",
                 transform=ax1.transAxes)
    ax1.set_ylabel("Pearson R (test chromosomes)")
    ax1.set_title(f"(b) reference accuracy — {regime}", fontsize=10)
    v = pd.concat([var, dire])
    if len(v):
        cts = list(dict.fromkeys(v["cell_type"]))
        _grouped_bars(ax2, v, cts, ["imbalance", "direction"], {"imbalance": PALETTE[2], "direction": PALETTE[4]},
                      group_col="cell_type")
        ax2.axhline(0.5, color="#999999", lw=0.8, ls="--")
        ax2.set_ylim(0, 1)
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "not run: no variant scores", ha="center", va="center", color="#a33",
                 transform=ax2.transAxes)
    ax2.set_ylabel("AUROC (95% DeLong CI)")
    ax2.set_title(f"(c) variant-effect accuracy — {regime}", fontsize=10)
    return fig


def fig_3ab(m: pd.DataFrame, regime: str) -> Figure | None:
    """Fig. 3a,b and S1c: reference accuracy by stratum (with height-matched control, replicate bound)."""
    strata = ["ubiquitous", "ubiquitous_height_matched", "specific"]
    d = _select(m, "pearson_peak", strata, [regime])
    if d.empty:
        return None
    cts = list(dict.fromkeys(d["cell_type"]))
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    present = [s for s in strata if s in set(d["stratum"])]
    _grouped_bars(ax, d, cts, present, KIND_COLOURS, STRATUM_LABEL, group_col="cell_type")
    rep = _select(m, "replicate_ceiling", ["ubiquitous", "specific"])
    for s, mk in (("ubiquitous", "_"), ("specific", "_")):
        rr = rep[rep["stratum"] == s].set_index("cell_type").reindex(cts)["value"].to_numpy()
        if np.isfinite(rr).any():
            ax.scatter(np.arange(len(cts)), rr, marker=mk, s=400, color=KIND_COLOURS[s], zorder=4, linewidths=2,
                       label=f"replicate ceiling, {s}")
    ax.set_ylabel("Pearson R, log2(x+1) peak values")
    ax.set_title(f"Reference accuracy: own specific cluster vs ubiquitous — {regime}", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return fig


def fig_3cd(m: pd.DataFrame) -> Figure | None:
    """Fig. 3c,d / S3: over-correlation per regime and cluster kind (one dot per cell-type pair)."""
    d = _select(m, "overcorrelation", list(KINDS))
    if d.empty:
        return None
    regimes = regime_order(d["regime"].unique())
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    mean = d.groupby(["regime", "stratum"], sort=False).agg(value=("value", "mean")).reset_index()
    mean["ci_low"], mean["ci_high"] = mean["value"], mean["value"]
    _grouped_bars(ax, mean, regimes, list(KINDS), KIND_COLOURS, STRATUM_LABEL, points=d)
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_ylabel("R(pred A, pred B) − R(target A, target B)")
    ax.set_title("Over-correlation across cell types (bars: mean; dots: cell-type pairs)", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def fig_4ab(m: pd.DataFrame) -> Figure | None:
    """Fig. 4a,b: regimes compared on reference accuracy and variant-effect accuracy by stratum."""
    ref = _select(m, "pearson_peak", ["all", *KINDS])
    var_metric = next((k for k in ("direction_auroc_strata", "direction_auroc", "imbalance_auroc")
                       if (m["metric"] == k).any()), "imbalance_auroc")
    vstrata = list(KINDS) if var_metric == "direction_auroc_strata" else ["all", *KINDS]
    var = _select(m, var_metric, vstrata)
    if ref.empty and var.empty:
        return None
    fig = new_figure(10, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    for ax, d, strata, title, ylab in (
            (ax1, ref, ["all", *KINDS], "(a) reference accuracy", "Pearson R (peaks)"),
            (ax2, var, vstrata, f"(b) {VAR_TITLE.get(var_metric, var_metric)}", "AUROC")):
        if d.empty:
            ax.set_title(title + " — not available", fontsize=10)
            continue
        regimes = regime_order(d["regime"].unique())
        present = [s for s in strata if s in set(d["stratum"])]
        _grouped_bars(ax, mean_over_cell_types(d), regimes, present, KIND_COLOURS, STRATUM_LABEL, points=d)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylab)
        ax.legend(fontsize=7)
    ax2.axhline(0.5, color="#999999", lw=0.8, ls="--")
    return fig


def fig_s4(imb: pd.DataFrame) -> Figure | None:
    """Fig. S4: |ref_ratio − 0.5| of every tested heterozygous site (all labels, the intermediate
    ``untested`` ones included), own specific cluster vs ubiquitous, per cell type."""
    if imb is None or "stratum" not in imb.columns:
        return None
    return _by_stratum_hists(imb[imb["stratum"].isin(KINDS)], "stratum",
                             lambda g: np.abs(g["ref_ratio"].to_numpy(np.float64) - 0.5), "|REF/(REF+ALT) − 0.5|",
                             np.linspace(0, 0.5, 21))


def fig_s1(peak_pred: pd.DataFrame | None) -> Figure | None:
    """Fig. S1: peak heights (log2 target + 1) of test peaks, own specific cluster vs ubiquitous, per cell type."""
    if peak_pred is None or peak_pred.empty or peak_pred["stratum"].isna().all():
        return None
    one = peak_pred[(peak_pred["regime"] == peak_pred["regime"].iloc[0]) & peak_pred["stratum"].isin(KINDS)]
    h = np.log2(one["target"].to_numpy(np.float64) + 1)
    bins = np.arange(0, np.nanmax(h) + 0.5, 0.5) if np.isfinite(h).any() and np.nanmax(h) > 0 else 10
    return _by_stratum_hists(one, "stratum", lambda g: np.log2(g["target"].to_numpy(np.float64) + 1),
                             "log2(peak insertions + 1)", bins)


def _by_stratum_hists(t: pd.DataFrame, col: str, value, xlabel: str, bins) -> Figure | None:
    """One panel per cell type: density histograms of ``value(rows)`` per stratum in ``col``."""
    if t.empty:
        return None
    cts = list(dict.fromkeys(t["cell_type"]))
    fig = new_figure(min(3.2 * len(cts), 12), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(cts), sharey=True))
    for ax, ct in zip(axes, cts):
        g = t[t["cell_type"] == ct]
        for k in KINDS:
            x = value(g[g[col] == k])
            if x.size:
                ax.hist(x, bins=bins, density=True, histtype="step", lw=1.5, color=KIND_COLOURS[k],
                        label=f"{STRATUM_LABEL[k]} (n={x.size})")
        ax.set_title(ct, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("density")
    return fig


# ---------------------------------------------------------------- QC


def fig_wasp(stats: dict[str, dict]) -> Figure | None:
    """Per-sample WASP filter figures (every numeric entry of ``wasp/<sample>.stats.json``)."""
    if not stats:
        return None
    df = pd.DataFrame({s: flatten_numeric(v) for s, v in stats.items()}).T.fillna(0)
    if df.empty:
        return None
    fig = new_figure(max(8, 0.5 * len(df) + 5), 3.6)
    ax = fig.add_subplot()
    cols = list(df.columns)
    width = 0.8 / len(cols)
    for k, c in enumerate(cols):
        ax.bar(np.arange(len(df)) + (k - (len(cols) - 1) / 2) * width, df[c].to_numpy(np.float64) + 1, width,
               color=PALETTE[k % len(PALETTE)], label=c)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(df)), df.index, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("reads (+1, log scale)")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper")
    ax.set_title("WASP remapping filter per sample", fontsize=10)
    return fig


def flatten_numeric(d: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a.b`` keys (strings and lists ignored)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_numeric(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def fig_counts(imb: pd.DataFrame | None, sets: pd.DataFrame | None) -> Figure | None:
    """Heterozygous sites per label (imbalance.parquet) and variant-set sizes per cell type."""
    if imb is None and sets is None:
        return None
    fig = new_figure(9, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    if sets is not None and "negative_set" in sets.columns and "set" in sets.columns:
        sets = sets.assign(set=np.where(sets["negative_set"].notna(), "negative, " + sets["negative_set"].astype(str)
                                        .str.replace("_", "-"), sets["set"].astype(str)))
    for ax, df, col, title in ((ax1, imb, "label", "sites per label"), (ax2, sets, "set", "variant sets")):
        if df is None or col not in df.columns:
            ax.set_title(f"{title}: not run", fontsize=10)
            ax.axis("off")
            continue
        tab = df.groupby(["cell_type", col]).size().unstack(fill_value=0)
        cts = list(tab.index)
        bottom = np.zeros(len(cts))
        for k, c in enumerate(tab.columns):
            ax.bar(cts, tab[c].to_numpy(), bottom=bottom, color=PALETTE[k % len(PALETTE)], label=str(c))
            bottom += tab[c].to_numpy()
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("variants")
        ax.legend(fontsize=7)
    return fig


def fig_hist_by_cell_type(imb: pd.DataFrame | None, column: str, xlabel: str, tested_only: bool = True,
                          rng: tuple[float, float] = (0.0, 1.0), vline: float | None = None) -> Figure | None:
    """Histogram of ``column`` per cell type (REF fraction, p-values)."""
    if imb is None or column not in imb.columns:
        return None
    t = imb[imb["label"] != "untested"] if tested_only and "label" in imb.columns else imb
    if t.empty:
        return None
    fig = new_figure(6.4, 3.0)
    ax = fig.add_subplot()
    bins = np.linspace(*rng, 41)
    for k, (ct, g) in enumerate(t.groupby("cell_type", sort=False)):
        ax.hist(g[column].to_numpy(np.float64), bins=bins, histtype="step", lw=1.4, color=PALETTE[k % len(PALETTE)],
                label=f"{ct} (n={len(g)})")
    if vline is not None:
        ax.axvline(vline, color="#333333", ls="--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sites")
    ax.legend(fontsize=7)
    return fig


def fig_clusters(peaks: pd.DataFrame | None) -> Figure | None:
    """Mean accessibility (acc_<cell type>) per peak cluster: the cluster profiles."""
    if peaks is None:
        return None
    acc = [c for c in peaks.columns if c.startswith("acc_")]
    if not acc or "cluster" not in peaks.columns:
        return None
    label = peaks["cluster_label"].astype(str) if "cluster_label" in peaks.columns else peaks["cluster"].astype(str)
    key = peaks["cluster"].astype(str) + ": " + label + " (" + peaks["kind"].astype(str) + ")"
    prof = peaks[acc].groupby(key.to_numpy()).mean()
    sizes = key.value_counts().reindex(prof.index)
    fig = new_figure(max(5, 0.8 * len(acc) + 4), max(2.5, 0.35 * len(prof) + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(prof.to_numpy(np.float64), aspect="auto", cmap="viridis")
    ax.set_xticks(np.arange(len(acc)), [c[4:] for c in acc], rotation=30, ha="right")
    ax.set_yticks(np.arange(len(prof)), [f"{k} n={n}" for k, n in zip(prof.index, sizes)], fontsize=7)
    fig.colorbar(im, ax=ax, label="mean accessibility")
    ax.set_title("Peak cluster profiles", fontsize=10)
    return fig


def fig_training(histories: dict[str, pd.DataFrame]) -> Figure | None:
    """Training curves per model: losses and validation Pearson R by epoch."""
    if not histories:
        return None
    fig = new_figure(10, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    for k, (name, h) in enumerate(sorted(histories.items())):
        c = PALETTE[k % len(PALETTE)]
        if "train_loss" in h:
            ax1.plot(h["epoch"], h["train_loss"], color=c, lw=1, ls="--")
        if "valid_loss" in h:
            ax1.plot(h["epoch"], h["valid_loss"], color=c, lw=1.4, label=name)
        if "valid_pearson" in h:
            ax2.plot(h["epoch"], h["valid_pearson"], color=c, lw=1.4, marker="o", ms=3, label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("Poisson loss (solid: valid, dashed: train)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation mean Pearson R")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    return fig


# ---------------------------------------------------------------- beyond the paper (issue 18)

NEGSET_LABEL = {"imbalance_auroc": "depth-matched negatives (study)",
                "imbalance_auroc_region_controlled": "region-controlled negatives (same peaks)"}
TOPK = (10, 25, 50, 100)


def fig_negative_sets(m: pd.DataFrame) -> Figure | None:
    """Imbalance AUROC against both negative sets, per regime (mean over cell types, mean CIs)."""
    t = mean_over_cell_types(m[m["metric"].isin(list(NEGSET_LABEL)) & (m["stratum"] == "all")])
    if t.empty or not (t["metric"] == "imbalance_auroc_region_controlled").any():
        return None
    regimes = regime_order(t["regime"].unique())
    fig = new_figure(6.4, 3.4)
    ax = fig.add_subplot()
    colours = dict(zip(NEGSET_LABEL, ("#4C72B0", "#DD8452")))
    _grouped_bars(ax, t, regimes, list(NEGSET_LABEL), colours, NEGSET_LABEL, series_col="metric")
    ax.axhline(0.5, color="#999999", lw=0.8, ls="--")
    ax.set_ylabel("imbalance AUROC")
    ax.legend(fontsize=7)
    return fig


def fig_effect_size(m: pd.DataFrame) -> Figure | None:
    """(a) Spearman/Pearson of predicted vs observed effect per regime; (b) direction accuracy vs top-k %."""
    eff = mean_over_cell_types(m[m["metric"].isin(["effect_spearman", "effect_pearson"]) & (m["stratum"] == "all")])
    if eff.empty:
        return None
    regimes = regime_order(eff["regime"].unique())
    fig = new_figure(9.5, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    _grouped_bars(ax1, eff, regimes, ["effect_spearman", "effect_pearson"],
                  {"effect_spearman": "#4C72B0", "effect_pearson": "#55A868"},
                  {"effect_spearman": "Spearman", "effect_pearson": "Pearson"}, series_col="metric")
    ax1.axhline(0, color="#999999", lw=0.8)
    ax1.set_ylabel("R, predicted vs observed ALT/REF effect")
    ax1.legend(fontsize=7)
    colours = regime_colours(regimes)
    for r in regimes:
        d = mean_over_cell_types(m[(m["regime"] == r) & (m["stratum"] == "all")
                                   & m["metric"].isin([f"direction_accuracy_top{k}" for k in TOPK])])
        d = d.set_index("metric").reindex([f"direction_accuracy_top{k}" for k in TOPK])
        ax2.errorbar(TOPK, d["value"], yerr=_err(d.reset_index()), marker="o", color=colours[r], label=r,
                     capsize=2, lw=1)
    ax2.axhline(0.5, color="#999999", lw=0.8, ls="--")
    ax2.set_xlabel("top % of imbalanced variants by |predicted effect|")
    ax2.set_ylabel("direction accuracy")
    ax2.invert_xaxis()
    ax2.legend(fontsize=7)
    return fig


def cross_matrix(m: pd.DataFrame, metric: str, regime: str) -> pd.DataFrame:
    """Label cell type (rows) × scoring task (columns) of ``metric`` for one regime."""
    t = m[(m["metric"] == metric) & (m["regime"] == regime)]
    if t.empty:
        return pd.DataFrame()
    parts = t["cell_type"].str.split("|", n=1, expand=True)
    t = t.assign(label=parts[0], task=parts[1])
    mat = t.pivot_table(index="label", columns="task", values="value", aggfunc="first")
    cols = sorted(c for c in mat.columns if c in mat.index) + [c for c in mat.columns if c not in mat.index]
    return mat.reindex(index=sorted(mat.index), columns=cols)


def fig_cross_cell_type(m: pd.DataFrame, regime: str) -> Figure | None:
    """Heatmaps: each cell type's imbalance / direction labels scored with every task's predictions."""
    mats = [(k, cross_matrix(m, f"cross_{k}_auroc", regime)) for k in ("imbalance", "direction")]
    mats = [(k, x) for k, x in mats if not x.empty]
    if not mats:
        return None
    fig = new_figure(4.8 * len(mats), 0.5 * max(len(x) for _, x in mats) + 2.4)
    for ax, (k, x) in zip(np.atleast_1d(fig.subplots(1, len(mats))), mats):
        im = ax.imshow(x.to_numpy(np.float64), cmap="viridis", vmin=0.4, vmax=max(0.6, float(np.nanmax(x))))
        ax.set_xticks(np.arange(x.shape[1]), list(x.columns), rotation=45, ha="right", fontsize=7)
        ax.set_yticks(np.arange(x.shape[0]), list(x.index), fontsize=7)
        for (i, j), v in np.ndenumerate(x.to_numpy(np.float64)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
        best = np.nanargmax(np.where(np.isfinite(x.to_numpy(np.float64)), x.to_numpy(np.float64), -np.inf), axis=1)
        ax.scatter(best, np.arange(x.shape[0]), marker="s", s=160, facecolors="none", edgecolors="r", lw=1)
        ax.set_title(f"{k} AUROC ({regime})", fontsize=9)
        ax.set_xlabel("predictions of task")
        ax.set_ylabel("labels of cell type")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def fig_replicate_agreement(m: pd.DataFrame) -> Figure | None:
    """Replicate consistency: share of variants whose predicted direction every replicate agrees on
    (``replicate_direction_agreement``, ensemble rows), per regime by stratum, mean over cell types."""
    rows = m[(m["metric"] == "replicate_direction_agreement") & (m.get("replicate") == "ensemble")]
    t = mean_over_cell_types(rows).assign(ci_low=np.nan, ci_high=np.nan)
    if t.empty:
        return None
    regimes = regime_order(t["regime"].unique())
    strata = [s for s in ("all", "ubiquitous", "specific", "specific_any", "test_chroms") if s in set(t["stratum"])]
    fig = new_figure(6.4, 3.4)
    ax = fig.add_subplot()
    _grouped_bars(ax, t, regimes, strata, {}, series_col="stratum")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("direction agreed by every replicate")
    ax.legend(fontsize=7)
    return fig
