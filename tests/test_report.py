"""report: a self-contained HTML file with every figure; it opens in headless Chromium without errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caveat import evaluate as E
from caveat import report as R
from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.io import write_parquet

from test_evaluate import add_second_replicate, synthetic_outdir

FIGURE_IDS = ["fig-headline", "fig-1bc", "fig-3ab", "fig-3cd", "fig-4ab", "fig-s4", "fig-s1", "fig-negsets",
              "fig-effect", "fig-cross", "fig-replicates", "fig-qc-wasp",
              "fig-qc-counts", "fig-qc-refratio", "fig-qc-pvalue", "fig-qc-clusters", "fig-qc-training"]


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    out = synthetic_outdir(tmp_path_factory.mktemp("report_synth"), n_peaks=300, n_var=500)
    add_second_replicate(out)
    E.run_step(StepContext(params={**E.PARAMS, "evaluate_bootstrap": 50, "seed": 0}, outdir=out))
    R.run_step(StepContext(params=dict(R.PARAMS), outdir=out))
    return out


def _figures(text: str) -> dict[str, str]:
    """figure id → its HTML."""
    return dict(re.findall(r"<figure id='([^']+)'.*?>(.*?)</figure>", text, flags=re.S))


def test_report_has_every_figure_embedded(full):
    text = (full / "report.html").read_text()
    figs = _figures(text)
    assert list(figs) == FIGURE_IDS
    for fid, body in figs.items():
        assert "data:image/png;base64," in body, fid
    # self-contained: nothing fetched from the network, no external scripts or styles
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text)
    assert "<link" not in text
    # the headline answers the question first: table and headline figure before the study's figures
    assert text.index("class=headline") < text.index("id='fig-1bc'")
    assert "Best reference accuracy" in text
    # every metric row is in the sortable table
    m = pd.read_parquet(full / "metrics.parquet")
    table = text[text.index("id=metrics-table"):]
    assert table.count("<tr>") == len(m) + 1


def test_report_deterministic(full, tmp_path):
    R.write_report(full / "metrics.parquet", full, tmp_path / "again.html")
    assert (tmp_path / "again.html").read_bytes() == (full / "report.html").read_bytes()


def test_report_missing_optional_pieces(full, tmp_path):
    """Only metrics: every figure slot present, the absent ones say 'not run'."""
    shutil.copy(full / "metrics.parquet", tmp_path / "metrics.parquet")
    assert R.main(["--metrics", str(tmp_path / "metrics.parquet"), "--out", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    figs = _figures(text)
    assert list(figs) == FIGURE_IDS
    assert "not run" in figs["fig-qc-wasp"] and "not run" in figs["fig-s4"]
    assert "data:image/png" in figs["fig-headline"] and "data:image/png" in figs["fig-4ab"]
    import json
    summary = json.loads((tmp_path / "report.summary.json").read_text())
    assert "fig-qc-training" in summary["figures_not_run"]


def test_report_rejects_malformed_inputs(full, tmp_path):
    m = pd.read_parquet(full / "metrics.parquet")
    write_parquet(m.drop(columns=["value"]), tmp_path / "metrics.parquet")
    with pytest.raises(InputError, match="value"):
        R.main(["--metrics", str(tmp_path / "metrics.parquet"), "--out", str(tmp_path / "r.html")])
    assert not (tmp_path / "r.html").exists()
    shutil.copy(full / "metrics.parquet", tmp_path / "metrics.parquet")
    (tmp_path / "imbalance.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="imbalance"):
        R.main(["--metrics", str(tmp_path / "metrics.parquet"), "--out", str(tmp_path / "r.html")])
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------- headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
           "--hide-scrollbars", "--window-size=1400,1000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp)


def _dom(tmp: Path, page: Path) -> str:
    res = _chromium(tmp, page.as_uri(), "--virtual-time-budget=5000", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: `apt-get install -y chromium` (make setup)")
def test_report_opens_in_headless_chromium(full, tmp_path):
    from matplotlib.image import imread

    page = full / "report.html"
    res = _chromium(tmp_path, page.as_uri(), "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0",
                    "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    # no console message from the page (errors, failed loads)
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    # the inline script ran to the end and window.onerror never fired
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-report-ready="1"' in html_tag
    assert "data-js-errors" not in html_tag
    for fid in FIGURE_IDS:
        assert re.search(rf'<figure id="{fid}"[^>]*>.*?<img[^>]+src="data:image/png', dom, flags=re.S), fid
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    img = imread(shot)[..., :3]
    assert img.shape[0] >= 900 and img.shape[1] >= 1300
    assert img.std() > 0.05  # not blank
    # the first screen holds the headline: the dark header band and non-white content below it
    assert img[:40].mean() < 0.5 and (img[100:].reshape(-1, 3) < 0.9).any(axis=1).mean() > 0.02


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: `apt-get install -y chromium` (make setup)")
def test_chromium_check_catches_script_errors(tmp_path):
    """Control: the error trap used above does flag a page whose script throws."""
    page = tmp_path / "bad.html"
    page.write_text(f"<!DOCTYPE html><html><head><script>{R.ERROR_TRAP}</script></head>"
                    "<body><script>undefinedFunction();</script></body></html>")
    assert 'data-js-errors="1"' in re.search(r"<html[^>]*>", _dom(tmp_path, page)).group(0)
    res = _chromium(tmp_path, page.as_uri(), "--virtual-time-budget=2000", "--enable-logging=stderr", "--v=0",
                    "--dump-dom")
    assert any("CONSOLE" in ln and "Uncaught" in ln for ln in res.stderr.splitlines())


# ---------------------------------------------------------------- on the pipeline's own runs

STUDY_FIGURES = ["fig-headline", "fig-1bc", "fig-3ab", "fig-3cd", "fig-4ab", "fig-s4", "fig-s1"]


def _check_run(outdir: Path, study_figures) -> pd.DataFrame:
    m = pd.read_parquet(outdir / "metrics.parquet")
    assert len(m) and np.isfinite(m["value"]).all(), m[~np.isfinite(m["value"])]
    assert {"pearson_peak", "imbalance_auroc"} <= set(m["metric"])
    # replicates (issue 18.1): every metric has each replicate's rows, the median's and the ensemble's
    reps = {r for r in m["replicate"] if r.startswith("rep")}
    for metric, g in m.groupby("metric"):
        assert reps | {"median", "ensemble"} <= set(g["replicate"]), metric
    figs = _figures((outdir / "report.html").read_text())
    assert list(figs) == FIGURE_IDS
    missing = [f for f in study_figures if "data:image/png" not in figs[f]]
    assert not missing, f"figures not drawn: {missing}"
    return m


def test_tiny_run_metrics_and_report(tiny_run):
    """The full local-engine run ends with finite metrics and a report (tiny data: headline figures)."""
    _check_run(tiny_run, ["fig-headline", "fig-1bc", "fig-4ab"])


@pytest.mark.demo
def test_demo_run_metrics_finite_and_report_complete(demo_run):
    m = _check_run(demo_run, STUDY_FIGURES + ["fig-qc-wasp", "fig-qc-refratio", "fig-qc-training"])
    assert {"direction_auroc", "overcorrelation", "replicate_pearson"} <= set(m["metric"])
    single = m[~m["replicate"].eq("median") & (m["metric"] != "replicate_direction_agreement")]
    assert np.isfinite(single[["ci_low", "ci_high"]].to_numpy()).all()   # median rows: replicate_sd, no CI


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: `apt-get install -y chromium` (make setup)")
def test_metrics_table_sorts_and_filters_in_chromium(full, tmp_path):
    """Clicking the 'value' header sorts rows numerically; typing filters them."""
    probe = """<script>window.addEventListener('load',function(){var t=document.getElementById('metrics-table');
var imgs=document.images, ok=0;for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>100){ok++;}}
document.body.setAttribute('data-images',ok+'/'+imgs.length);
var th=t.querySelector('th[data-col="5"]');th.click();th.click();
var v=Array.prototype.map.call(t.tBodies[0].rows,function(r){return r.cells[5].textContent;});
document.body.setAttribute('data-sorted',v.slice(0,5).join(';'));
var f=document.getElementById('metrics-filter');f.value='overcorrelation specific';
f.dispatchEvent(new Event('input'));
var shown=Array.prototype.filter.call(t.tBodies[0].rows,function(r){return r.style.display!=='none';});
document.body.setAttribute('data-shown',String(shown.length));});</script></body>"""
    page = tmp_path / "probe.html"
    page.write_text((full / "report.html").read_text().replace("</body>", probe))
    dom = _dom(tmp_path, page)
    body = re.search(r"<body[^>]*>", dom).group(0)
    top = [float(x) for x in re.search(r'data-sorted="([^"]*)"', body).group(1).split(";")]
    m = pd.read_parquet(full / "metrics.parquet")
    assert top == sorted(top, reverse=True) and top[0] == pytest.approx(m["value"].max(), rel=1e-3)
    # every embedded figure decoded to a real image
    assert re.search(r'data-images="([^"]*)"', body).group(1) == f"{len(FIGURE_IDS)}/{len(FIGURE_IDS)}"
    # a word filter: 'specific' also matches the pooled 'specific_any' stratum
    expect = int(((m["metric"] == "overcorrelation") & m["stratum"].str.contains("specific")).sum())
    assert int(re.search(r'data-shown="(\d+)"', body).group(1)) == expect
    assert "data-js-errors" not in re.search(r"<html[^>]*>", dom).group(0)


def test_report_shows_the_issue_18_analyses(full):
    """Each new analysis has its figure with a caption saying what it measures; BH is stated; the cross-cell-type
    heatmap matrix is the evaluate rows."""
    from caveat import plots as P

    text = (full / "report.html").read_text()
    figs = _figures(text)
    for fid in ("fig-negsets", "fig-effect", "fig-cross"):
        assert "data:image/png;base64," in figs[fid] and "What it measures" in figs[fid], fid
    assert "data:image/png;base64," in figs["fig-replicates"] and "every replicate" in figs["fig-replicates"]
    tests = text[text.index("<figure id=delong-tests>"):]
    assert "q (BH)" in tests and "Benjamini–Hochberg" in tests[:tests.index("</figure>")]
    m = R.study_view(pd.read_parquet(full / "metrics.parquet"))   # the medians over replicates ± sd
    mat = P.cross_matrix(m, "cross_imbalance_auroc", "multitask")
    assert list(mat.index) == ["ctA", "ctB", "ctC"] and list(mat.columns) == ["ctA", "ctB", "ctC", "mean_of_tasks"]
    own = m[(m.metric == "imbalance_auroc") & (m.regime == "multitask") & (m.stratum == "all")].set_index("cell_type")
    np.testing.assert_array_equal(np.diag(mat.to_numpy()[:, :3]), own.loc[mat.index, "value"].to_numpy())


def test_study_view_is_median_with_sd_and_ensemble_tests(full):
    """The figures' rows: medians with CI = median ∓ replicate sd; regime tests from the ensemble."""
    m = pd.read_parquet(full / "metrics.parquet")
    v = R.study_view(m)
    tests = v["metric"].str.startswith("delong_")
    med = m[(m.replicate == "median") & ~m.metric.str.startswith("delong_")]
    assert len(v[~tests]) == len(med) and (v.loc[~tests, "replicate"] == "median").all()
    assert (v.loc[tests, "replicate"] == "ensemble").all() and tests.any()
    np.testing.assert_allclose(v.loc[~tests, "ci_high"] - v.loc[~tests, "value"], med["replicate_sd"].to_numpy())
