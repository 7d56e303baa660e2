"""report: one self-contained HTML file with the study's figures on the user's data.

Reads ``metrics.parquet`` (from ``evaluate``) and, when present, the tables
the figures need (predictions, peaks, imbalance, variant sets, training
histories, WASP stats) from the same output folder; a missing optional piece
shows as "not run" in its figure's place. Figures are PNGs embedded as data
URIs, styles and the few lines of table-sorting JavaScript are inline: the
file opens offline and can be mailed around. The first screen answers the
study's question for this data: reference vs variant-effect accuracy per
regime, by stratum, with confidence intervals.

Replicates (issue 18.1): the figures and headline show each metric's median over the
replicate models ± the replicate sd (as the study reported its three replicates; with one
replicate, the model's own CI), regime tests are the ensemble's (DeLong on the
replicate-averaged scores, with the replicate sd of the difference), and a
replicate-consistency figure shows the share of variants whose predicted direction every
replicate agrees on, by stratum. The metrics table lists every row (each replicate, the
ensemble, the median).
"""

from __future__ import annotations

import argparse
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from . import plots as P
from .engine import Step, StepContext
from .errors import InputError
from .regimes import ENSEMBLE, MEDIAN, regime_order
from .results import METRIC_COLUMNS as COLUMNS
from .strata import attach_peak_strata
from .io import read_json, read_parquet, write_json, write_text
from .prediction_tables import read_predictions
from .log import get_logger
from .step_cli import add_param_options

log = get_logger("report")

PARAMS = {"report_title": "caveat: reference vs variant-effect accuracy"}


@dataclass
class Figure:
    """One report figure slot: its id, title, caption and the PNG (None → not run)."""

    id: str
    title: str
    caption: str
    png: str | None
    missing: str = ""


# ---------------------------------------------------------------- inputs


#: the prediction columns the report's peak figures use (peak rows only; no window positions)
PEAK_PRED_COLS = ("regime", "replicate", "model", "kind", "peak_id", "cell_type", "target", "prediction", "stratum",
                  "peak_kind", "cluster_label")


def _optional_parquet(path: Path, what: str, reader=read_parquet) -> pd.DataFrame | None:
    if not path.exists():
        log.info("%s not present (%s): its figures show 'not run'", what, path.name)
        return None
    try:
        df = reader(path)
    except Exception as e:  # a malformed file is an error, not a missing piece
        raise InputError(path, f"{what} is not a readable Parquet file ({type(e).__name__})",
                         "rerun the step that writes it") from None
    log.info("read %s: %s rows", path.name, f"{len(df):,}")
    return df


def _histories(folder: Path) -> dict[str, pd.DataFrame]:
    """``models/<regime>[/<cell_type>]/history.parquet`` → {name: table}."""
    out = {}
    models = folder / "models"
    # os.walk(followlinks=True): Nextflow stages model folders as symlinks, which rglob does not follow
    found = [Path(d) / "history.parquet" for d, _, files in os.walk(models, followlinks=True)
             if "history.parquet" in files] if models.is_dir() else []
    for f in sorted(found):
        out[f.parent.relative_to(models).as_posix()] = read_parquet(f)
    return out


def _wasp_stats(folder: Path) -> dict[str, dict]:
    out = {}
    wasp = folder / "wasp"
    for f in sorted(wasp.glob("*.stats.json")) if wasp.is_dir() else []:
        try:
            out[f.name[: -len(".stats.json")]] = read_json(f)
        except json.JSONDecodeError as e:
            raise InputError(f, f"not valid JSON ({e})", "rerun wasp_remap for this sample") from None
    return out


def _summaries(folder: Path) -> dict[str, dict]:
    """``<step>.summary.json`` of every step present, in pipeline order."""
    from .pipeline import STEP_NAMES

    # not the report's own summary: rerunning must give the same page
    names = [n for n in ("simulate", *STEP_NAMES) if n != "report" and (folder / f"{n}.summary.json").exists()]
    out = {}
    for n in names:
        try:
            out[n] = read_json(folder / f"{n}.summary.json")
        except json.JSONDecodeError as e:
            raise InputError(folder / f"{n}.summary.json", f"not valid JSON ({e})", f"rerun the {n} step") from None
    return out


def load_report_inputs(metrics_path: Path, folder: Path) -> dict:
    """Metrics (required, checked) and every optional table found in ``folder``."""
    if not metrics_path.exists():
        raise InputError(metrics_path, "metrics table not found", "run `caveat evaluate` first")
    m = read_parquet(metrics_path)
    missing = [c for c in COLUMNS[:8] if c not in m.columns]
    if missing:
        raise InputError(metrics_path, f"metrics table lacks column(s) {', '.join(missing)}",
                         "regenerate it with `caveat evaluate`")
    m_all, m = m, study_view(m)
    # only peak rows feed the report (Fig. S1): read them alone, columns pruned, labels categorical
    pred = _optional_parquet(folder / "predictions.parquet", "peak predictions",
                             lambda p: read_predictions(p, PEAK_PRED_COLS, kind="peak"))
    peaks = _optional_parquet(folder / "peaks.parquet", "peaks")
    peak_pred = None
    if pred is not None and {"kind", "target", "regime", "cell_type"} <= set(pred.columns):
        peak_pred = attach_peak_strata(pred, peaks)
    return {"metrics": m, "metrics_all": m_all, "peak_pred": peak_pred, "peaks": peaks, "summaries": _summaries(folder),
            "imbalance": _optional_parquet(folder / "imbalance.parquet", "imbalance calls"),
            "sets": _optional_parquet(folder / "variant_sets.parquet", "variant sets"),
            "histories": _histories(folder), "wasp": _wasp_stats(folder)}


def study_view(m: pd.DataFrame) -> pd.DataFrame:
    """The rows the figures and headline read: per metric the median over replicates with
    ``ci_low``/``ci_high`` = median ∓ replicate sd (one replicate: the ensemble's = the model's
    own CI), regime tests (``delong_*``) the ensemble's. A table without ``replicate``: as is."""
    if "replicate" not in m.columns:
        return m
    tests = m["metric"].str.startswith("delong_")
    ens = m[(m["replicate"] == ENSEMBLE)]
    med = m[(m["replicate"] == MEDIAN) & ~tests]
    sd = med["replicate_sd"].to_numpy(np.float64)
    if np.isfinite(sd).any():
        med = med.assign(ci_low=med["value"] - sd, ci_high=med["value"] + sd)
        view = pd.concat([med, ens[ens["metric"].str.startswith("delong_")]], ignore_index=True)
    else:
        view = ens
    return view.reset_index(drop=True)


# ---------------------------------------------------------------- figures


def _png(fig) -> str | None:
    return None if fig is None else P.to_png_base64(fig)


def main_regime(m: pd.DataFrame) -> str | None:
    """The regime shown in single-regime figures: multitask (the study's), else the first."""
    regimes = regime_order(m.loc[m["regime"] != "replicate", "regime"].unique())
    return "multitask" if "multitask" in regimes else (regimes[0] if regimes else None)


def build_figures(d: dict) -> list[Figure]:
    """Every figure slot of the report, in reading order."""
    m, imb = d["metrics"], d["imbalance"]
    reg = main_regime(m)
    ref_txt = "needs predictions (predict)"
    var_txt = "needs variant scores (score_variants)"
    specs = [
        ("fig-headline", "Reference vs variant-effect accuracy per regime", "Each point: one training regime and "
         "stratum, mean over cell types; bars are the mean 95% CIs (Fisher z for R; for AUROC a block bootstrap "
         "resampling whole peaks, as variants of one peak share windows).",
         lambda: P.fig_headline(m), "needs both reference and variant metrics"),
        ("fig-1bc", f"Fig. 1b,c — accuracy per cell type ({reg})", "Pearson R on held-out chromosomes (peaks: "
         "log2(x+1) of peak values under the peak rule in the summary of predict — by default the study's: one "
         "1344 bp window centred on each peak vs insertions summed over the centred 192 bp site; windows: "
         "centre-bin counts) and AUROCs for imbalance (every imbalanced site vs depth-matched balanced sites, score "
         "|pred_ref_ratio − 0.5|) and direction (every imbalanced site, score pred_ref_ratio).",
         lambda: P.fig_1bc(m, reg), ref_txt),
        ("fig-3ab", f"Fig. 3a,b / S1c — reference accuracy by stratum ({reg})", "Per cell type: peaks of its "
         "own specific cluster(s) (a cluster whose label names the cell type) vs the ubiquitous cluster, on test "
         "chromosomes, and the ubiquitous peaks resampled to the own specific peaks' height histogram (0.5-wide "
         "bins of log2 target; the specific set whole). Ticks: replicate ceiling from the inter-donor correlation "
         "of the same peak values.",
         lambda: P.fig_3ab(m, reg), "needs peak predictions with clusters (cluster_peaks)"),
        ("fig-3cd", "Fig. 3c,d / S3 — over-correlation", "R(pred A, pred B) − R(target A, target B) over peaks: "
         "'own specific cluster' = the peaks of A's own cluster(s) for the ordered pair A|B; > 0 means the model "
         "shares more between cell types than the data do.",
         lambda: P.fig_3cd(m), "needs peak predictions with clusters"),
        ("fig-4ab", "Fig. 4a,b — training regimes compared", "(a) Reference accuracy per stratum (own specific "
         "cluster vs ubiquitous). (b) Direction AUROC (Fig. 4B) on every tested heterozygous site (REF+ALT > 20) "
         "of the own specific and the ubiquitous cluster, |REF fraction − 0.5| distributions matched between the "
         "two. Bars: mean over cell types with mean 95% CIs; dots: cell types.",
         lambda: P.fig_4ab(m), ref_txt + " and " + var_txt),
        ("fig-s4", "Fig. S4 — allelic imbalance by stratum", "|REF/(REF+ALT) − 0.5| of every tested heterozygous "
         "site (imbalanced, balanced and intermediate) in the cell type's own specific cluster and in the "
         "ubiquitous cluster.", lambda: P.fig_s4(imb), "needs imbalance.parquet with peak strata"),
        ("fig-s1", "Fig. S1 — peak heights", "log2(insertions + 1) at test-chromosome peaks (peak rule as above), "
         "own specific cluster vs ubiquitous, per cell type.",
         lambda: P.fig_s1(d["peak_pred"]), "needs peak predictions with clusters"),
        ("fig-negsets", "Beyond the paper — imbalance AUROC against two negative sets", "What it measures: "
         "whether the model tells imbalanced from balanced sites because of the allele or because of where the "
         "site is. Depth-matched negatives (the study's) come from anywhere in the genome; region-controlled "
         "negatives are balanced sites of the positives' own peaks (short peaks filled from peaks of similar value "
         "and distance to the centre). A score that only knows 'strong peak' reaches a high depth-matched AUROC "
         "and 0.5 on the region-controlled set. Mean over cell types, block-bootstrap 95% CIs.",
         lambda: P.fig_negative_sets(m), "needs region-controlled negatives (match_negatives with peaks) and "
                                         "variant scores"),
        ("fig-effect", "Beyond the paper — effect size and accuracy by predicted magnitude", "What it measures: "
         "(a) among imbalanced sites, how well the predicted log2(ALT/REF) of the cell type's task tracks the "
         "observed log((ALT+½)/(REF+½)) (−logit of the REF fraction; positive = agreement), Spearman and Pearson; "
         "(b) direction accuracy among the top 10/25/50/100% of imbalanced sites ranked by |predicted effect| "
         "(DeepSEA/ExPecto style): a model whose confident calls are right rises to the left. Mean over cell "
         "types, block-bootstrap 95% CIs.", lambda: P.fig_effect_size(m), var_txt),
        ("fig-cross", f"Beyond the paper — which task predicts which cell type ({reg})", "What it measures: each "
         "cell type's imbalance labels (rows) scored with every task's predictions (columns) and with the mean "
         "over tasks (log2 ALT/REF averaged), as in the authors' plot_allelic_imbalance_tasks.py. Left: imbalance "
         "AUROC (depth-matched negatives); right: direction AUROC. Red squares: the best column per row; the "
         "diagonal is the per-cell-type AUROC. A missing column: that task did not score every variant of the "
         "row's sets.", lambda: P.fig_cross_cell_type(m, reg), "needs every task's scores for every variant"),
        ("fig-replicates", "Replicate consistency", "Share of variants (distinct variants of the variant "
         "sets, own cell type's task) whose predicted direction (REF or ALT more accessible) every replicate model "
         "of the regime agrees on, by stratum, mean over cell types. Low agreement: the direction calls depend on "
         "the training seed.", lambda: P.fig_replicate_agreement(d.get("metrics_all", m)),
         "needs two or more replicates (train_replicates)"),
        ("fig-qc-wasp", "QC — WASP filter", "Reads in, kept, remapped and dropped per sample (wasp/<sample>.stats.json).",
         lambda: P.fig_wasp(d["wasp"]), "wasp_remap not run"),
        ("fig-qc-counts", "QC — sites and variant sets", "Heterozygous sites per imbalance label and variant-set "
         "sizes per cell type.", lambda: P.fig_counts(imb, d["sets"]), "call_imbalance not run"),
        ("fig-qc-refratio", "QC — REF fraction", "REF/(REF+ALT) of tested sites (total above the depth threshold); "
         "a shift from 0.5 shows residual reference mapping bias.",
         lambda: P.fig_hist_by_cell_type(imb, "ref_ratio", "REF/(REF+ALT)", vline=0.5), "call_imbalance not run"),
        ("fig-qc-pvalue", "QC — p-values", "Imbalance test p-values of tested sites: uniform with a spike near 0 "
         "is healthy; a hump near 1 suggests overdispersion is ignored, mass in the middle miscalibration.",
         lambda: P.fig_hist_by_cell_type(imb, "pvalue", "p-value"), "call_imbalance not run"),
        ("fig-qc-clusters", "QC — peak cluster profiles", "Mean accessibility of each peak cluster per cell type.",
         lambda: P.fig_clusters(d["peaks"]), "cluster_peaks not run"),
        ("fig-qc-training", "QC — training curves", "Per model: train/valid Poisson loss and validation Pearson R.",
         lambda: P.fig_training(d["histories"]), "train not run"),
    ]
    out = []
    for fid, title, caption, make, missing in specs:
        png = _png(make())
        out.append(Figure(fid, title, caption, png, "" if png else missing))
        log.info("figure %s: %s", fid, "drawn" if png else f"not run ({missing})")
    return out


# ---------------------------------------------------------------- text and tables


def _fmt(v: float, lo: float = np.nan, hi: float = np.nan) -> str:
    if not np.isfinite(v):
        return "–"
    ci = f" <span class=ci>[{lo:.2f}, {hi:.2f}]</span>" if np.isfinite(lo) and np.isfinite(hi) else ""
    return f"{v:.3f}{ci}"


HEADLINE_COLS = [
    ("pearson_peak", "all", "Pearson R<br>all peaks"),
    ("pearson_peak", "ubiquitous", "Pearson R<br>ubiquitous"),
    ("pearson_peak", "specific", "Pearson R<br>specific"),
    ("imbalance_auroc", "all", "Imbalance<br>AUROC"),
    ("direction_auroc", "all", "Direction<br>AUROC"),
    ("direction_auroc", "test_chroms", "Direction AUROC<br>test chroms"),
    ("direction_auroc_strata", "ubiquitous", "Direction AUROC<br>ubiquitous*"),
    ("direction_auroc_strata", "specific", "Direction AUROC<br>specific*"),
]


def headline_table(m: pd.DataFrame) -> str:
    """Regime × headline metric, mean over cell types with mean CIs, as HTML."""
    mean = P.mean_over_cell_types(m)
    cols = [c for c in HEADLINE_COLS if ((mean["metric"] == c[0]) & (mean["stratum"] == c[1])).any()]
    if not cols:
        return "<p class=missing>No metrics to summarise.</p>"
    regimes = regime_order(mean["regime"].unique())
    head = "".join(f"<th>{label}</th>" for _, _, label in cols)
    body = []
    for r in regimes:
        cells = []
        for metric, stratum, _ in cols:
            if r == "replicate" and metric == "pearson_peak":
                metric = "replicate_ceiling"  # the experimental upper bound of a model's R
            x = mean[(mean["regime"] == r) & (mean["metric"] == metric) & (mean["stratum"] == stratum)]
            cells.append(f"<td>{_fmt(*x[['value', 'ci_low', 'ci_high']].iloc[0]) if len(x) else '–'}</td>")
        name = "replicate ceiling" if r == "replicate" else r
        body.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return (f"<table class=headline><thead><tr><th>regime</th>{head}</tr></thead><tbody>{''.join(body)}"
            "</tbody></table><p class=note>Mean over cell types [mean 95% CI]. 'specific': each cell type's own "
            "specific cluster(s); 'ubiquitous': the ubiquitous cluster. "
            + ("* Fig. 4B: every tested site of the stratum, |REF fraction − 0.5| matched between ubiquitous and "
               "specific sites. " if any(c[0] == "direction_auroc_strata" for c in cols) else "")
            + "'replicate ceiling': the highest R a "
            "model can expect against the donor-pooled target, from the inter-donor correlation of the same peak values "
            "(square root of the Spearman-Brown reliability).</p>")


def _best(mean: pd.DataFrame, metric: str, stratum: str = "all") -> tuple[str, float] | None:
    x = mean[(mean["metric"] == metric) & (mean["stratum"] == stratum) & (mean["regime"] != "replicate")]
    x = x[np.isfinite(x["value"])]
    if x.empty:
        return None
    r = x.loc[x["value"].idxmax()]
    return str(r["regime"]), float(r["value"])


def _significance(m: pd.DataFrame, metric: str, a: str, b: str) -> str:
    """How the paired DeLong tests between regimes ``a`` and ``b`` read, as a clause."""
    t = m[(m["metric"] == f"delong_{metric}") & (m["stratum"] == "all")
          & (((m["regime"] == a) & (m["reference"] == b)) | ((m["regime"] == b) & (m["reference"] == a)))]
    if t.empty:
        return ""
    sig = int((t["p_value"] < 0.05).sum())
    if sig == 0:
        return (f", but the difference is not significant in any cell type (paired DeLong p ≥ 0.05, "
                f"{len(t)} cell type(s)): more variants are needed to rank them")
    return (f": significant in {sig} of {len(t)} cell type(s) (paired DeLong p < 0.05), so reference accuracy "
            "is not a sufficient proxy for model selection here")


def answer_text(m: pd.DataFrame) -> str:
    """A few sentences stating what the metrics say (the first thing a reader sees)."""
    mean = P.mean_over_cell_types(m)
    out = []
    ref = _best(mean, "pearson_peak") or _best(mean, "pearson_window")
    var_metric = next((k for k in ("direction_auroc", "imbalance_auroc") if (mean["metric"] == k).any()), None)
    var = _best(mean, var_metric) if var_metric else None
    if ref:
        out.append(f"Best reference accuracy: <b>{html.escape(ref[0])}</b> (Pearson R {ref[1]:.3f}).")
    if var:
        out.append(f"Best variant-effect accuracy: <b>{html.escape(var[0])}</b> "
                   f"({var_metric.replace('_', ' ')} {var[1]:.3f}).")
    if ref and var:
        x = mean[(mean["metric"] == var_metric) & (mean["stratum"] == "all") & (mean["regime"] == ref[0])]["value"]
        if ref[0] == var[0]:
            out.append("The same regime leads both.")
        elif len(x) and abs(float(x.iloc[0]) - var[1]) < 1e-9:
            out.append(f"{html.escape(ref[0])} ties for the best variant-effect accuracy too.")
        else:
            out.append("<b>The regime with the best reference accuracy is not the best at variant effects</b>"
                       + _significance(m, var_metric, var[0], ref[0]) + ".")
    reg = main_regime(m)
    sel = mean[(mean["regime"] == reg) & (mean["metric"] == "pearson_peak")].set_index("stratum")["value"]
    if {"ubiquitous", "specific"} <= set(sel.index):
        s = (f"In {html.escape(str(reg))}, each cell type's own specific peaks reach R {sel['specific']:.3f} vs "
             f"{sel['ubiquitous']:.3f} in ubiquitous peaks")
        if "ubiquitous_height_matched" in sel.index:
            s += f" ({sel['ubiquitous_height_matched']:.3f} for ubiquitous peaks matched to their heights)"
        out.append(s + ".")
    oc = mean[(mean["regime"] == reg) & (mean["metric"] == "overcorrelation")].set_index("stratum")["value"]
    if {"ubiquitous", "specific"} <= set(oc.index):
        out.append(f"Over-correlation across cell types: {oc['specific']:+.3f} in specific vs "
                   f"{oc['ubiquitous']:+.3f} in ubiquitous peaks.")
    return " ".join(out) or "No metrics were computed: see the log of the evaluate step."


def _scalars(d: dict, prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    """Scalar entries of a summary dict (nested up to ``depth``) as (key, text) pairs."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth > 1:
            out += _scalars(v, key + ".", depth - 1)
        elif isinstance(v, bool) or isinstance(v, str):
            out.append((key, str(v)))
        elif isinstance(v, (int, float)):
            out.append((key, f"{v:,}" if isinstance(v, int) else f"{v:.4g}"))
    return out


def summaries_html(summaries: dict[str, dict], max_items: int = 40) -> str:
    """One collapsible block per step summary JSON: its key figures."""
    if not summaries:
        return "<p class=missing>No step summaries found.</p>"
    blocks = []
    for step, d in summaries.items():
        items = _scalars(d)
        more = f"<li>… {len(items) - max_items} more in {html.escape(step)}.summary.json</li>" \
            if len(items) > max_items else ""
        lis = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in items[:max_items])
        blocks.append(f"<details><summary>{html.escape(step)}</summary><ul class=summ>{lis}{more}</ul></details>")
    return "".join(blocks)


def delong_table(m: pd.DataFrame) -> str:
    """Paired DeLong tests between regimes (stratum ``all``), one row per cell type and pair."""
    d = m[m["metric"].str.startswith("delong_") & (m["stratum"] == "all")]
    if d.empty:
        return ""
    rows = []
    n_tests = int(m["metric"].str.startswith("delong_").sum())
    for r in d.itertuples(index=False):
        p = f"{r.p_value:.2g}" if np.isfinite(r.p_value) else "–"
        q = getattr(r, "q_value", np.nan)
        qs = f"{q:.2g}" if np.isfinite(q) else "–"
        strong = " class=sig" if np.isfinite(q) and q < 0.05 else ""
        sd = getattr(r, "replicate_sd", np.nan)
        sds = f" ± {sd:.3f} <span class=ci>(replicate sd)</span>" if np.isfinite(sd) else ""
        rows.append(f"<tr{strong}><td>{html.escape(r.metric[7:])}</td><td>{html.escape(str(r.cell_type))}</td>"
                    f"<td>{html.escape(r.regime)}</td><td>{html.escape(str(r.reference))}</td>"
                    f"<td>{_fmt(r.value, r.ci_low, r.ci_high)}{sds}</td><td>{p}</td><td>{qs}</td><td>{r.n}</td></tr>")
    return ("<figure id=delong-tests><h3>Regimes compared on the same variants (paired DeLong tests)</h3>"
            "<table class=delong><thead><tr><th>AUROC</th><th>cell type</th><th>regime</th><th>vs</th>"
            "<th>ΔAUROC [95% CI]</th><th>p</th><th>q (BH)</th><th>n</th></tr></thead><tbody>" + "".join(rows) +
            f"</tbody></table><figcaption>The ensemble's tests: the replicates' scores averaged, then a two-sided paired "
            f"DeLong test (p; it treats variants as independent); ± the sd over replicates of the per-replicate "
            f"AUROC differences. "
            f"q: Benjamini–Hochberg correction over all {n_tests} paired regime tests of this run (every task, "
            f"cell type and stratum; the rows shown are stratum 'all'). Bold: q < 0.05.</figcaption></figure>")


def metrics_table(m: pd.DataFrame) -> str:
    """Every metric row as a sortable HTML table."""
    cols = [c for c in COLUMNS if c in m.columns]
    head = "".join(f"<th data-col={i}>{c}</th>" for i, c in enumerate(cols))
    rows = []
    for rec in m[cols].itertuples(index=False):
        cells = []
        for c, v in zip(cols, rec):
            if isinstance(v, float):
                cells.append(f"<td>{'' if not np.isfinite(v) else f'{v:.4g}'}</td>")
            else:
                cells.append(f"<td>{'' if v is None else html.escape(str(v))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<input id=metrics-filter type=search placeholder='filter rows (e.g. auroc specific)'>"
            f"<table id=metrics-table class=sortable><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def figure_html(f: Figure) -> str:
    body = (f"<img alt='{html.escape(f.title)}' src='data:image/png;base64,{f.png}'>" if f.png else
            f"<div class=missing>not run — {html.escape(f.missing)}</div>")
    cls = "fig" if f.png else "fig missing-fig"
    return (f"<figure id='{f.id}' class='{cls}'><h3>{html.escape(f.title)}</h3>{body}"
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")


# ---------------------------------------------------------------- the page

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:12px 24px}header h1{margin:0;font-size:22px}
header .sub{opacity:.8;font-size:13px}main{padding:8px 24px;max-width:1400px}
.answer{font-size:15px;background:#fff;border-left:4px solid #1f3b57;padding:8px 14px;margin:10px 0}
.top{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.top>div{flex:1 1 560px}
table{border-collapse:collapse;font-size:12px;background:#fff}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#eef2f6;text-align:center}table.headline td{white-space:nowrap}.ci{color:#777;font-size:11px}
.note{font-size:11px;color:#666}figure{background:#fff;border:1px solid #e3e3e3;margin:12px 0;padding:8px 12px}
figure h3{margin:2px 0 6px;font-size:14px}figure img{max-width:100%}figcaption{font-size:12px;color:#555}
.missing{color:#a33;font-style:italic;padding:12px}nav a{margin-right:12px;font-size:13px}
#metrics-table th{cursor:pointer}#metrics-table th.asc::after{content:' ▲'}#metrics-table th.desc::after{content:' ▼'}
tr.sig td{font-weight:600}details{background:#fff;border:1px solid #e3e3e3;margin:4px 0;padding:4px 10px}
ul.summ{columns:2;font-size:12px}#metrics-filter{margin:6px 0;padding:4px;width:320px}h2{border-bottom:1px solid #ccc;padding-bottom:4px}
"""

ERROR_TRAP = """window.__errors=[];window.onerror=function(msg){window.__errors.push(String(msg));
document.documentElement.setAttribute('data-js-errors',String(window.__errors.length));};"""

SORT_JS = """(function(){
var t=document.getElementById('metrics-table');if(!t){return;}
var tb=t.tBodies[0];
function key(r,i){var s=r.cells[i].textContent;var x=parseFloat(s);return isNaN(x)?s.toLowerCase():x;}
t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
 var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
 th.classList.add(asc?'asc':'desc');var rows=Array.prototype.slice.call(tb.rows);
 rows.sort(function(a,b){var x=key(a,i),y=key(b,i);if(typeof x!==typeof y){x=String(x);y=String(y);}
  return (x<y?-1:x>y?1:0)*(asc?1:-1);});rows.forEach(function(r){tb.appendChild(r);});});});
var f=document.getElementById('metrics-filter');
f.addEventListener('input',function(){var words=f.value.toLowerCase().split(/\\s+/).filter(Boolean);
 Array.prototype.forEach.call(tb.rows,function(r){var s=r.textContent.toLowerCase();
  r.style.display=words.every(function(w){return s.indexOf(w)>=0;})?'':'none';});});
document.documentElement.setAttribute('data-report-ready','1');
})();"""


def render(d: dict, figures: list[Figure], title: str) -> str:
    """The whole report as one HTML string."""
    m = d["metrics"]
    by_id = {f.id: f for f in figures}
    study = [f for f in figures if not f.id.startswith("fig-qc") and f.id != "fig-headline"]
    qc = [f for f in figures if f.id.startswith("fig-qc")]
    nav = "".join(f"<a href='#{s}'>{s}</a>" for s in ("study", "qc", "metrics"))
    cts = sorted(m.loc[~m["cell_type"].str.contains("|", regex=False), "cell_type"].unique())
    regimes = [r for r in regime_order(m["regime"].unique()) if r != "replicate"]
    sub = (f"caveat {__version__} · regimes: {', '.join(regimes) or 'none'} · cell types: "
           f"{', '.join(cts) or 'none'} · {len(m)} metric rows")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><script>{ERROR_TRAP}</script><style>{STYLE}</style></head>
<body><header><h1>{html.escape(title)}</h1><div class=sub>{html.escape(sub)}</div></header>
<main><p class=answer id=answer>{answer_text(m)}</p>
<section id=headline class=top><div>{headline_table(m)}</div><div>{figure_html(by_id['fig-headline'])}</div></section>
<nav>{nav}</nav>
<section id=study><h2>The study's figures on this data</h2>{''.join(figure_html(f) for f in study)}
{delong_table(m)}</section>
<section id=qc><h2>Quality control</h2>{''.join(figure_html(f) for f in qc)}
<h3>Step summaries</h3>{summaries_html(d.get("summaries", {}))}</section>
<section id=metrics><h2>Every metric</h2><p class=note>Click a column to sort; type to filter.
CIs: Fisher z (Pearson R of peaks and windows); variant metrics (AUROC, AUPRC, effect-size R, top-k accuracy):
percentile of a block bootstrap that resamples whole peaks (variants outside peaks: fixed genomic blocks), since
variants of one peak share windows and predictions; cross_* AUROCs: DeLong; delong_* rows: the CI of the
difference between two regimes, p_value and its Benjamini–Hochberg q_value over every paired test;
over-correlation: bootstrap over peaks. replicate: rep&lt;k&gt; one replicate model, ensemble the mean over replicates
scored as its own model, median the median over replicates (replicate_sd: the sd over replicates; the figures
and headline show median ± sd).</p>{metrics_table(d.get("metrics_all", m))}</section>
</main><script>{SORT_JS}</script></body></html>
"""


def write_report(metrics_path: Path, folder: Path, out: Path, title: str = PARAMS["report_title"]) -> dict:
    """Build and write ``report.html`` and ``report.summary.json`` beside it."""
    d = load_report_inputs(Path(metrics_path), Path(folder))
    figures = build_figures(d)
    text = render(d, figures, title)
    write_text(text, out)
    summary = {"report": out.name, "bytes": len(text.encode()), "metric_rows": int(len(d["metrics"])),
               "figures_drawn": [f.id for f in figures if f.png],
               "figures_not_run": {f.id: f.missing for f in figures if not f.png}}
    write_json(summary, out.parent / "report.summary.json")
    log.info("report: %s (%d of %d figures drawn, %.1f kB)", out, len(summary["figures_drawn"]), len(figures),
             summary["bytes"] / 1024)
    return summary


def run_step(ctx: StepContext) -> dict:
    out = ctx.out("report.html")
    s = write_report(ctx.outdir / "metrics.parquet", ctx.outdir, out, ctx.params.get("report_title") or
                     PARAMS["report_title"])
    return {"report": s["report"], "figures_drawn": len(s["figures_drawn"]),
            "figures_not_run": len(s["figures_not_run"])}


STEP = Step(name="report", run=run_step, needs=("evaluate",), params=PARAMS,
            doc="self-contained HTML report: the study's figure set, QC and every metric")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat report", description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", required=True, help="metrics.parquet from `caveat evaluate`")
    ap.add_argument("--dir", help="folder holding the optional tables by their standard names (predictions.parquet, "
                                  "peaks.parquet, imbalance.parquet, variant_sets.parquet, models/, wasp/); "
                                  "default: the metrics file's folder")
    ap.add_argument("--out", default="report.html", help="output HTML (summary JSON written beside it)")
    add_param_options(ap, PARAMS, aliases={"report_title": ["--title"]})
    ap.add_argument("--version", action="version", version=f"caveat {__version__}")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    metrics = Path(a.metrics)
    write_report(metrics, Path(a.dir) if a.dir else metrics.parent, Path(a.out), a.report_title)
    print(f"report: {Path(a.out).resolve()}")
    return 0
