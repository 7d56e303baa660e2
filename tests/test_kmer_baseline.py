"""The k-mer ridge baseline (issue 18.6): its TorchScript export equals the numpy computation,
the ridge path equals scikit-learn's, it recovers the tiny study's planted signal (test peaks,
planted causal variants), runs as the ``train_baseline`` step with a manifest, reproduces its
bytes, and refuses bad params."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from caveat.errors import InputError
from caveat.kmer_baseline import (KmerFit, Moments, canonical_columns, export_torchscript, kmer_counts, kmer_names,
                                  ridge_path, width_grid)
from caveat.metrics import pearson_per_task
from caveat.model_adapter import load_model
from caveat.onehot import one_hot


def _onehot(codes: np.ndarray) -> torch.Tensor:
    return one_hot(torch.from_numpy(codes.astype(np.int64)))


def _naive_counts(codes: np.ndarray, k: int, gap: int) -> np.ndarray:
    """k-mer counts by string matching: an independent count of :func:`kmer_counts`."""
    names = kmer_names(k, gap)
    col = {n: j for j, n in enumerate(names)}
    comp = str.maketrans("ACGT", "TGCA")
    h = k // 2
    out = np.zeros((len(codes), len(names)))
    for i, row in enumerate(codes):
        s = "".join("ACGTN"[c] for c in row)
        for p in range(len(s) - (k + gap) + 1):
            kmer = s[p:p + h] + s[p + h + gap:p + k + gap]
            if "N" in kmer:
                continue
            rc = kmer.translate(comp)[::-1]
            key = min(kmer, rc)
            out[i, col[key[:h] + "n" * gap + key[h:]]] += 1
    return out


@pytest.mark.parametrize("k,gap", [(6, 0), (3, 0), (4, 2), (1, 0)])
def test_counts_equal_string_matching(k, gap):
    rng = np.random.default_rng(k + gap)
    codes = rng.integers(0, 4, (4, 80))
    codes[0, 5] = codes[2, 40:43] = 4
    assert np.array_equal(kmer_counts(codes, k, gap), _naive_counts(codes, k, gap))
    col, canonical = canonical_columns(k)
    assert len(canonical) == (4 ** k + (4 ** (k // 2) if k % 2 == 0 else 0)) // 2   # palindromes: even k only


@pytest.mark.parametrize("k,gap", [(6, 0), (3, 0), (4, 2)])
def test_torchscript_equals_numpy(tmp_path, k, gap):
    """The exported module, opened by load_model like any outside model, gives the numpy
    prediction expm1(max(0, counts · coef + b)) on random sequences with N bases."""
    rng = np.random.default_rng(3)
    L, width, T = 300, 120, 3
    _, canonical = canonical_columns(k)
    fit = KmerFit(k, gap, width, 1.0, rng.normal(size=(len(canonical), T)) * 0.05, np.array([0.3, 1.0, 2.5]), [])
    path = tmp_path / "model.ts"
    torch.jit.save(export_torchscript(fit, L), str(path))
    adapter = load_model(path, seq_len=L, task_names=["a", "b", "c"])
    codes = rng.integers(0, 4, (40, L))
    codes[rng.random(codes.shape) < 0.01] = 4
    s = (L - width) // 2
    counts = kmer_counts(codes[:, s:s + width], k, gap)
    want = fit.predict_counts(counts).astype(np.float32)
    got = adapter.predict(_onehot(codes)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert (want == 0).any() and (want > 0).any()                   # both sides of the clip tested
    raw = torch.jit.load(str(path)).kmer_counts(_onehot(codes)).numpy()   # (N, 4^k), not collapsed
    col, _ = canonical_columns(k)
    collapsed = np.zeros_like(counts)
    np.add.at(collapsed.T, col, raw.T)
    assert np.array_equal(collapsed, counts)


def test_ridge_path_equals_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (200, 30)).astype(float)
    x[:, 4] = 3.0                                          # a constant feature gets coefficient 0
    y = x[:, :3] @ rng.normal(size=(3, 2)) + rng.normal(size=(200, 2))
    m = Moments.accumulate(iter([x[:120], x[120:]]), y)
    coef, intercept = ridge_path(m, [0.5, 50.0])
    z = StandardScaler().fit_transform(x)
    for j, a in enumerate([0.5, 50.0]):
        ref = Ridge(alpha=a).fit(z, y)
        np.testing.assert_allclose(x @ coef[j] + intercept[j], ref.predict(z), rtol=1e-8, atol=1e-8)
    assert np.all(coef[:, 4] == 0)


def test_width_grid():
    assert width_grid(1344, 192) == [192, 384, 768, 1344]
    assert width_grid(384, 192) == [192, 384]


def test_widening_stops_when_validation_r_falls(monkeypatch):
    """Widths are tried narrowest first; the first whose R is below the previous width's ends
    the search (the best is kept), so the costly whole-window fit is skipped when R has peaked."""
    import caveat.kmer_baseline as kb

    r_of = {192: 0.47, 384: 0.52, 768: 0.33, 1344: 0.6}  # 1344 would win, but is never reached
    tried = []

    def fake_fit(genome, abs_starts, targets, train_idx, valid_idx, length, width, k, gap):
        tried.append(width)
        return [(1.0, r_of[width], np.zeros((2, 1)), np.zeros(1))]

    monkeypatch.setattr(kb, "fit_width", fake_fit)
    fit = kb.fit_kmer_baseline(None, np.zeros(4, np.int64), np.ones((4, 1)), np.arange(2), np.arange(2, 4), 1344,
                               [1344, 768, 384, 192])
    assert tried == [192, 384, 768] and fit.width == 384
    r_of[768] = 0.55  # still rising: every width is tried
    tried.clear()
    assert kb.fit_kmer_baseline(None, np.zeros(4, np.int64), np.ones((4, 1)), np.arange(2), np.arange(2, 4), 1344,
                                [192, 384, 768, 1344]).width == 1344 and tried == [192, 384, 768, 1344]


# ---------------------------------------------------------------- the tiny study


@pytest.fixture(scope="module")
def tiny_baseline(tiny_sim, tmp_path_factory):
    """The tiny study run through train_baseline by the local engine."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    out = tmp_path_factory.mktemp("kmer_baseline")
    steps = pipeline_steps()
    params = load_params(tiny_sim / "params.yaml", {"outdir": str(out)}, steps)
    run_pipeline(steps, params, out, until="train_baseline", threads=2)
    return out, params


def test_step_writes_model_and_manifest(tiny_baseline):
    out, params = tiny_baseline
    folder = out / "models" / "kmer_baseline"
    cts = json.loads((out / "build_dataset.summary.json").read_text())["cell_types"]
    manifest = json.loads((folder / "outside.json").read_text())
    assert manifest == {"name": "kmer_baseline", "model": "model.ts", "task_names": cts, "cell_types": cts,
                        "seq_len": params["window_size"]}
    summary = json.loads((out / "train_baseline.summary.json").read_text())
    assert summary["trained"] and summary["k"] == 6 and summary["width"] in width_grid(params["window_size"], params["target_bin"])
    coef = pd.read_parquet(folder / "coefficients.parquet")
    assert list(coef.columns) == ["term", *cts] and len(coef) == 2080 + 1
    grid = pd.read_parquet(folder / "fit_grid.parquet")
    assert np.isclose(grid["valid_pearson"].max(), summary["valid_pearson"])
    assert not (out / "models" / "multitask").exists()              # train did not run (until=train_baseline)


def _peak_predictions(out, params):
    from caveat.dataset_io import load_inputs
    from caveat.genome import fasta_lengths
    from caveat.peak_sites import centred_sites
    from caveat.targets import peaks_on_target_scale

    windows, _, cts, genome = load_inputs(out / "windows.parquet", out / "build_dataset.summary.json", params["fasta"])
    test_chroms = set(windows.loc[windows["split"] == "test", "chrom"])
    peaks = pd.read_parquet(out / "peaks.parquet")
    peaks = peaks_on_target_scale(peaks[peaks["chrom"].isin(test_chroms)].reset_index(drop=True),
                                  out / "windows.parquet", cts)
    sites = centred_sites(peaks, params["window_size"], params["target_bin"], fasta_lengths(params["fasta"]))
    fit = sites["fits"].to_numpy()
    codes = genome.gather(genome.abs_starts(sites["chrom"][fit].to_numpy(), sites["window_start"][fit].to_numpy()),
                          params["window_size"])
    model = load_model(out / "models" / "kmer_baseline" / "model.ts", seq_len=params["window_size"])
    pred = model.predict(_onehot(codes)).numpy()
    return pred, peaks.loc[fit, [f"value_{c}" for c in cts]].to_numpy(np.float64)


def test_baseline_predicts_test_peaks(tiny_baseline):
    """Planted motifs drive accessibility, so k-mer counts predict the held-out test chromosome:
    its peaks (tiny, seed 7: Pearson R 0.71, 0.41, 0.61 per cell type, only 9 peaks) and, weakly,
    its tiled windows (0.21, 0.09, 0.05; 119 windows, mostly background). On the demo the
    baseline's test-peak R is 0.63-0.77 on 206 peaks (docs/CONVENTIONS.md, "k-mer baseline")."""
    from caveat.dataset_io import load_inputs

    out, params = tiny_baseline
    windows, targets, _, genome = load_inputs(out / "windows.parquet", out / "build_dataset.summary.json", params["fasta"])
    test = np.flatnonzero(windows["split"].to_numpy() == "test")
    codes = genome.gather(genome.abs_starts(windows["chrom"].to_numpy()[test], windows["start"].to_numpy()[test]),
                          params["window_size"])
    model = load_model(out / "models" / "kmer_baseline" / "model.ts", seq_len=params["window_size"])
    r_windows = pearson_per_task(model.predict(_onehot(codes)).numpy(), targets[test])
    pred, target = _peak_predictions(out, params)
    r_peaks = pearson_per_task(pred, target)
    assert len(test) >= 50 and r_windows.mean() > 0.05, r_windows
    assert len(pred) >= 5 and np.all(r_peaks > 0) and r_peaks.mean() > 0.3, r_peaks


def test_baseline_direction_on_planted_causal_variants(tiny_baseline, tiny_sim):
    """REF − ALT of the baseline's prediction (window centred on the SNP) has the sign of the
    planted effect (ref_favouring → +) more often than chance."""
    from scipy.stats import binomtest

    from caveat.dataset_io import load_inputs

    out, params = tiny_baseline
    windows, _, cts, genome = load_inputs(out / "windows.parquet", out / "build_dataset.summary.json", params["fasta"])
    snps = pd.read_parquet(tiny_sim / "truth" / "snps.parquet")
    snps = snps[snps["planted_causal"] & ~snps["is_indel"] & snps["effect"].isin(["ref_favouring", "alt_favouring"])]
    snps = snps[snps["chrom"].isin(set(windows["chrom"]))].drop_duplicates(["variant_id", "cell_type"])
    L = params["window_size"]
    start = snps["pos"].to_numpy() - L // 2                           # pos 0-based (variant_id 1-based)
    keep = start >= 0
    snps, start = snps[keep].reset_index(drop=True), start[keep]
    ref = genome.gather(genome.abs_starts(snps["chrom"].to_numpy(), start), L)
    alt = ref.copy()
    alt[:, L // 2] = snps["alt"].map({"A": 0, "C": 1, "G": 2, "T": 3}).to_numpy()
    assert np.array_equal(ref[:, L // 2], snps["ref"].map({"A": 0, "C": 1, "G": 2, "T": 3}).to_numpy())
    model = load_model(out / "models" / "kmer_baseline" / "model.ts", seq_len=L)
    col = snps["cell_type"].map({c: j for j, c in enumerate(cts)}).to_numpy()
    rows = np.arange(len(snps))
    diff = (model.predict(_onehot(ref)).numpy() - model.predict(_onehot(alt)).numpy())[rows, col]
    want = np.where(snps["effect"] == "ref_favouring", 1.0, -1.0)
    called = diff != 0
    hits = int((np.sign(diff[called]) == want[called]).sum())
    assert called.sum() >= 30   # tiny, seed 7: 39 of 49 right (a fair coin: p = 2e-5)
    assert binomtest(hits, int(called.sum()), 0.5, alternative="greater").pvalue < 0.01, (hits, int(called.sum()))


def test_same_inputs_same_bytes(tiny_baseline, tmp_path):
    """A second fit of the same dataset writes the same model.ts and coefficients bytes
    (torch.jit.save writes its zip with fixed entry times, and the fit draws no random numbers).
    model.ts also records KmerRidge's source lines (TorchScript debug info), so an edit of
    kmer_baseline.py changes its bytes, not its numbers."""
    from caveat.train_baseline import main

    out, params = tiny_baseline
    main(["--windows", str(out / "windows.parquet"), "--summary", str(out / "build_dataset.summary.json"),
          "--fasta", str(params["fasta"]), "--outdir", str(tmp_path), "--window-size", str(params["window_size"]),
          "--target-bin", str(params["target_bin"])])
    for name in ("model.ts", "coefficients.parquet", "fit_grid.parquet", "outside.json"):
        a = (out / "models" / "kmer_baseline" / name).read_bytes()
        assert a == (tmp_path / "models" / "kmer_baseline" / name).read_bytes(), name


def test_off_removes_stale_baseline(tiny_baseline, tmp_path):
    import shutil

    from caveat.train_baseline import run

    out, params = tiny_baseline
    shutil.copytree(out / "models" / "kmer_baseline", tmp_path / "models" / "kmer_baseline")
    s = run(out / "windows.parquet", out / "build_dataset.summary.json", params["fasta"],
            {**params, "train_baseline": False}, tmp_path)
    assert s == {"trained": False} and not (tmp_path / "models" / "kmer_baseline").exists()


def test_bad_params_are_refused(tiny_baseline, tmp_path):
    from caveat.params import validate
    from caveat.train_baseline import main

    with pytest.raises(InputError, match="baseline_kmer_k"):
        validate({"baseline_kmer_k": 9})
    out, params = tiny_baseline
    with pytest.raises(InputError, match=r"baseline_kmer_k = 0 is outside 1…8"):
        main(["--windows", str(out / "windows.parquet"), "--summary", str(out / "build_dataset.summary.json"),
              "--fasta", str(params["fasta"]), "--outdir", str(tmp_path), "--baseline-kmer-k", "0"])
    with pytest.raises(InputError, match="gap needs even k"):
        kmer_counts(np.zeros((1, 20), np.uint8), 5, 1)
    assert not (tmp_path / "models").exists()
