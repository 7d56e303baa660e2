"""The scaling benchmark's arithmetic (benchmarks/bench_scaling.py): the growth-exponent fit, the
extrapolation and the table, on synthetic numbers (no pipeline run)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scaling", ROOT / "benchmarks" / "bench_scaling.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_scaling"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("b", [0.5, 1.0, 1.37, 2.0])
def test_fit_recovers_planted_exponent(bench, b):
    rng = np.random.default_rng(int(b * 100))
    n = np.array([1e3, 1e4, 1e5, 1e6])
    t = 0.02 * n**b * np.exp(rng.normal(0, 0.01, n.size))  # 1 % multiplicative noise
    assert bench.fit_exponent(n, t) == pytest.approx(b, abs=0.02)
    assert bench.fit_exponent(n, 0.02 * n**b) == pytest.approx(b, abs=1e-9)


def test_fit_needs_two_distinct_positive_points(bench):
    assert math.isnan(bench.fit_exponent([10], [1.0]))
    assert math.isnan(bench.fit_exponent([10, 10], [1.0, 2.0]))
    # a non-positive value (memory below the baseline) is left out, not taken as log(0)
    assert math.isnan(bench.fit_exponent([10, 100], [0.0, 2.0]))
    assert bench.fit_exponent([10, 100, 1000], [-1.0, 2.0, 20.0]) == pytest.approx(1.0)


def test_extrapolation(bench):
    # linear floor: a sublinear fit (fixed costs at small sizes) extrapolates linearly
    assert bench.extrapolate_time(2.0, 1e3, 1e6, 0.4) == pytest.approx(2000.0)
    assert bench.extrapolate_time(2.0, 1e3, 1e6, float("nan")) == pytest.approx(2000.0)
    # a superlinear fit is kept: 10x size at b = 1.5 is 10 ** 1.5
    assert bench.extrapolate_time(1.0, 10, 100, 1.5) == pytest.approx(10**1.5)
    # memory: the baseline stays, the part above it grows with the fitted exponent
    assert bench.extrapolate_rss(300.0, 200.0, 1e3, 1e5, 0.5) == pytest.approx(200.0 + 100.0 * 10.0)
    assert bench.extrapolate_rss(150.0, 200.0, 1e3, 1e5, 0.5) == pytest.approx(200.0)
    assert math.isnan(bench.extrapolate_rss(300.0, 200.0, 1e3, 1e5, float("nan")))


def _record(scale: float, threads: int = 1) -> dict:
    """A fake measure_size record: every step's N, time and RSS at ``scale`` (time ~ N,
    RSS - baseline ~ sqrt(N)), and summaries in the shape the natural sizes read."""
    steps = {s: {"n": 1000 * scale, "time_s": 0.5 * scale, "rss_mb": 200 + 10 * math.sqrt(scale),
                 "step_cpu_s": 0.4 * scale, "wall_s": 1 + 0.5 * scale} for s in ["wasp_remap", "build_dataset"]}
    S = {"wasp_remap": {"per_sample": {"a": {"reads_in": 1000 * scale, "reads_out": 800 * scale}}, "het_snps": 100},
         "build_dataset": {"windows": 1000 * scale}}
    return {"steps": steps, "baseline_rss_mb": 200.0, "summaries": S, "threads": threads}


def test_table_from_two_fake_sizes(bench):
    steps = ["wasp_remap", "build_dataset"]
    sizes = {"tiny": _record(1.0), "demo": _record(16.0), "large": None}
    text, rows = bench.report(sizes, steps, {"large": "7 h of simulation"})
    by = {r["step"]: r for r in rows}
    assert by["wasp_remap"]["b_time"] == pytest.approx(1.0)
    assert by["wasp_remap"]["b_cpu"] == pytest.approx(1.0)
    assert by["wasp_remap"]["b_rss"] == pytest.approx(0.5)
    # real study: 30 BAMs x 125 M reads; from the demo's 16 k reads in 6.4 CPU s, linearly
    assert by["wasp_remap"]["n_real"] == pytest.approx(3.75e9)
    assert by["wasp_remap"]["time_real_s"] == pytest.approx(6.4 * 3.75e9 / 16000)
    assert by["wasp_remap"]["rss_real_mb"] == pytest.approx(200 + 40 * math.sqrt(3.75e9 / 16000))
    assert by["build_dataset"]["n_real"] == pytest.approx(15e6)
    lines = [line for line in text.splitlines() if line.startswith("| wasp_remap")]
    assert len(lines) == 2  # the measurements' row and the assumptions' row
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    assert lines[1] == "| wasp_remap | 3.75 G reads in | 30 BAMs x 125 M reads |"
    assert cells[2] == "1 k / 0.5 s / 0.4 s / 210 MB"
    assert cells[3] == "16 k / 8.0 s / 6.4 s / 240 MB"
    assert cells[4] == "not run (7 h of simulation)"
    assert cells[5:8] == ["1.00", "1.00", "0.50"]
    assert cells[8] == "3.75 G"
    assert "15 M windows" in text and "Study constants" in text


def test_table_with_a_step_missing_at_the_larger_size(bench):
    """A run stopped part-way: the step measured only at tiny has no exponent, is extrapolated
    (linearly) from tiny, and says so in the demo column."""
    demo = _record(16.0)
    del demo["steps"]["build_dataset"]
    text, rows = bench.report({"tiny": _record(1.0), "demo": demo}, ["wasp_remap", "build_dataset"], {})
    bd = {r["step"]: r for r in rows}["build_dataset"]
    assert math.isnan(bd["b_cpu"]) and bd["per_size"].keys() == {"tiny"}
    assert bd["time_real_s"] == pytest.approx(0.4 * 15e6 / 1000)
    line = next(line for line in text.splitlines() if line.startswith("| build_dataset | windows"))
    assert "not run (not measured)" in line and "| – | – | – |" in line and line.endswith("| – |")
    assert "2 of 2 steps" in text


def test_layout_config_lays_preset_params_over_the_study(bench, tmp_path):
    """--config demo: the size's own params.yaml with the demo's step params over it, in files
    of their own (the preset's own run is left as it is)."""
    import yaml

    from caveat.simulate.presets import PRESET_PARAMS

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"input": "samplesheet.csv", "match_bins": 4,
                                                          "model_filters": 8, "imbalance_test": "binomial"}))
    own, demo = bench.Layout(tmp_path), bench.Layout(tmp_path, "demo")
    assert own.params == tmp_path / "params.yaml" and own.store == tmp_path / "scaling.json"
    assert demo.outdir == tmp_path / "scaling_results.demo" and demo.store == tmp_path / "scaling.demo.json"
    demo.write_params()
    got = yaml.safe_load(demo.params.read_text())
    assert got == {"input": "samplesheet.csv", "match_bins": 4, **PRESET_PARAMS["demo"]}
    assert yaml.safe_load(own.params.read_text())["model_filters"] == 8
