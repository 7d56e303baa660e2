"""train_baseline: a model-free k-mer ridge baseline, so that AUROCs have context (issue 18.6).

Fits :mod:`caveat.kmer_baseline` (reverse-complement-collapsed k-mer counts of the central
bases of each window → ``log1p`` targets, ridge; width and alpha chosen on the validation split)
on build_dataset's windows, the same training and validation windows and targets as the
``multitask`` regime, and writes it as an outside model the benchmark scores like any other:

``<outdir>/models/kmer_baseline/``

* ``model.ts`` — TorchScript, one-hot (N, 4, L) → (N, T) non-negative predictions
  (:class:`caveat.kmer_baseline.KmerRidge`; opens with :func:`caveat.model_adapter.load_model`);
* ``outside.json`` — the manifest of in-run outside models (:mod:`caveat.outside_models`):
  ``{"name": "kmer_baseline", "model": "model.ts", "task_names": [...], "cell_types": [...],
  "seq_len": L}``;
* ``coefficients.parquet`` — term (canonical k-mer, or ``intercept``) and one coefficient
  column per cell type (raw-count scale, before ``expm1``);
* ``fit_grid.parquet`` — width, alpha, valid_pearson of every fit tried.

With ``train_baseline`` false the step fits nothing and removes a baseline folder an earlier
run left (so no stale manifest is scored). Deterministic: no random numbers; the same inputs
give the same bytes (tests/test_kmer_baseline.py).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .dataset_io import load_inputs
from .engine import Step, StepContext
from .io import atomic_path, read_json, write_json, write_parquet
from .kmer_baseline import MAX_K, check_k, export_torchscript, fit_kmer_baseline, kmer_names, width_grid
from .log import get_logger
from .step_cli import add_param_options, params_from_args

log = get_logger("train_baseline")

NAME = "kmer_baseline"
#: the manifest file of an in-run outside model (caveat.outside_models reads ``models/*/outside.json``)
MANIFEST_NAME = "outside.json"
PARAMS = {"train_baseline": True, "baseline_kmer_k": 6}
STEP_PARAMS = {**PARAMS, "window_size": 1344, "target_bin": 192}


def split_indices(windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation window indices (the ``multitask`` regime's: every window of the split)."""
    split = windows["split"].to_numpy()
    return np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")


def write_model(fit, cell_types: list[str], seq_len: int, folder: Path) -> None:
    """model.ts, outside.json, coefficients.parquet and fit_grid.parquet, written as one folder (atomically)."""
    with atomic_path(folder, is_dir=True) as tmp:
        torch.jit.save(export_torchscript(fit, seq_len), str(tmp / "model.ts"))
        write_json({"name": NAME, "model": "model.ts", "task_names": list(cell_types), "cell_types": list(cell_types),
                    "seq_len": int(seq_len)}, tmp / MANIFEST_NAME)
        coef = pd.DataFrame(np.vstack([fit.coef, fit.intercept[None]]), columns=cell_types)
        coef.insert(0, "term", [*kmer_names(fit.k, fit.gap), "intercept"])
        write_parquet(coef, tmp / "coefficients.parquet")
        write_parquet(pd.DataFrame(fit.grid, columns=["width", "alpha", "valid_pearson"]), tmp / "fit_grid.parquet")


def run(windows_path: Path, summary_path: Path, fasta: Path, params: dict, outdir: Path) -> dict:
    """Fit and write the baseline below ``outdir/models/kmer_baseline``; returns the summary."""
    folder = outdir / "models" / NAME
    if not params["train_baseline"]:
        if (folder / MANIFEST_NAME).exists() and read_json(folder / MANIFEST_NAME).get("name") == NAME:
            shutil.rmtree(folder)
            log.info("train_baseline off: removed the baseline an earlier run left in %s", folder)
        log.info("train_baseline off: no k-mer baseline fitted")
        return {"trained": False}
    k = int(params["baseline_kmer_k"])
    check_k(k)
    windows, targets, cell_types, genome = load_inputs(windows_path, summary_path, fasta)
    length = int(params["window_size"])
    train_idx, valid_idx = split_indices(windows)
    log.info("k-mer baseline: k = %d, %d training and %d validation windows (of %d; the test split is not read)",
             k, len(train_idx), len(valid_idx), len(windows))
    t0 = time.monotonic()
    abs_starts = genome.abs_starts(windows["chrom"].to_numpy(), windows["start"].to_numpy())
    fit = fit_kmer_baseline(genome, abs_starts, targets, train_idx, valid_idx, length,
                            width_grid(length, int(params["target_bin"])), k, log=log)
    write_model(fit, cell_types, length, folder)
    best = max(g["valid_pearson"] for g in fit.grid)
    # wall time is logged, never written: outputs must be byte-identical across identical runs
    log.info("k-mer baseline: fitted in %.1f s: width %d bp, alpha %.4g, valid mean Pearson R %.4f → %s",
             time.monotonic() - t0, fit.width, fit.alpha, best, folder)
    return {"trained": True, "name": NAME, "k": k, "gap": fit.gap, "features": int(fit.coef.shape[0]),
            "width": fit.width, "alpha": fit.alpha, "valid_pearson": best, "cell_types": cell_types,
            "train_windows": len(train_idx), "valid_windows": len(valid_idx), "seq_len": length,
            "model": f"models/{NAME}/model.ts"}


def run_step(ctx: StepContext) -> dict:
    p = ctx.params
    s = run(ctx.outdir / "windows.parquet", ctx.outdir / "build_dataset.summary.json", Path(p["fasta"]), p, ctx.outdir)
    write_json(s, ctx.out("train_baseline.summary.json"))
    return {"trained": s["trained"], **({"valid_pearson": round(s["valid_pearson"], 3)} if s["trained"] else {})}


def input_files(params: dict) -> list:
    return [params["fasta"]] if params.get("fasta") else []


STEP = Step(name="train_baseline", run=run_step, needs=("build_dataset",), params=STEP_PARAMS,
            input_files=input_files, doc="a model-free k-mer ridge baseline, scored as an outside model")


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat train_baseline", description="Fit the k-mer ridge baseline.")
    ap.add_argument("--windows", required=True, help="windows.parquet")
    ap.add_argument("--summary", required=True, help="build_dataset.summary.json (cell types)")
    ap.add_argument("--fasta", required=True, help="reference genome FASTA")
    ap.add_argument("--outdir", default=".", help=f"writes OUTDIR/models/{NAME}/ and OUTDIR/train_baseline.summary.json")
    add_param_options(ap, STEP_PARAMS, helps={"baseline_kmer_k": f"k-mer length, 1…{MAX_K} (default 6)"})
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    params = params_from_args(a, STEP_PARAMS)
    s = run(Path(a.windows), Path(a.summary), Path(a.fasta), params, Path(a.outdir))
    write_json(s, Path(a.outdir) / "train_baseline.summary.json")
    return 0
