"""predict: reference predictions of every regime on the test chromosomes.

For each regime, the model predicts the centre-bin insertion count of every
test-split window, optionally averaged over the reverse complement and shifts
−1, 0, +1 (six passes; ``predict_average``).

Peaks (``predict_peak_value``, rules in :mod:`caveat.peak_sites`):

* ``centre`` (default, the study's rule, from the authors' code; docs/CONVENTIONS.md): the
  model predicts **one 1344 bp window centred on each test-chromosome peak**
  (same averaging), and its centre 192 bp output is compared with the
  pseudobulk insertions **summed over that centred 192 bp site**
  (``value_<cell type>`` of ``peaks.parquet``, written by ``cluster_peaks``
  from the same rule). Peaks whose window runs off their contig are dropped
  (logged).
* ``mean`` / ``sum``: the mean (sum) of the targets and of the predictions of
  the tiled test windows whose centre bin overlaps the peak. A sum scales with
  peak width, so width alone makes targets and predictions correlate.

Replicates: every replicate model of a regime (``train_replicates``; folders
:func:`caveat.regimes.model_path`) predicts the same windows and peaks, its rows
labelled ``replicate`` = ``rep<k>``; evaluate averages them into the ensemble.

Outside models (``outside_models``, :mod:`caveat.outside_models`): each predicts the same
windows and peaks under the same rules, as one more regime (label = its name, replicate
``rep1``), with rows for the cell types its tasks map.

Output ``predictions.parquet``: regime, replicate, kind ∈ {window, peak}, peak_id
(null for windows), chrom, start, end (the peak's own interval for peaks),
cell_type, target, prediction.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .dataset_io import load_inputs
from .device import autocast, map_batches, resolve_device
from .engine import Step, StepContext
from .errors import InputError
from .io import write_json, write_parquet
from .loader import GenomeCodes
from .log import Progress, get_logger
from .genome import fasta_lengths
from .models import load_checkpoint
from .onehot import one_hot, reverse_complement
from .outside_models import OutputColumns, OutsideModel, open_model, outside_models, sheet_files
from .peak_sites import centred_sites, check_rule
from .regimes import REGIMES, model_path, replicate_label
from .step_cli import add_param_options, params_from_args
from .targets import peaks_on_target_scale

log = get_logger("predict")

PARAMS = {"predict_average": True, "predict_batch_size": 256, "predict_peak_value": "centre"}
AVERAGE_SHIFTS = (-1, 0, 1)


def predict_windows(model: torch.nn.Module, genome: GenomeCodes, abs_starts: np.ndarray, length: int, *,
                    average: bool = True, batch_size: int = 256, device: torch.device | None = None,
                    bf16: bool = False, label: str = "", threads: int = 1) -> np.ndarray:
    """Predict windows of the integer-coded genome.

    Each batch of ``batch_size`` windows is computed on one CPU thread and up to
    ``threads`` batches run at once (:func:`caveat.device.map_batches`), so the
    predictions are the same bits whatever ``threads``.

    Parameters
    ----------
    model : torch.nn.Module
        (N, 4, length) → (N, T).
    genome : GenomeCodes
    abs_starts : numpy.ndarray
        (W,) window starts in ``genome.codes``.
    length : int
    average : bool
        Mean over forward/reverse complement × shifts −1, 0, +1.

    Returns
    -------
    numpy.ndarray
        (W, T) float32.
    """
    device = device or next(model.parameters()).device
    model.eval()
    shifts = AVERAGE_SHIFTS if average else (0,)

    @torch.no_grad()
    def batch(i: int) -> torch.Tensor:
        starts = abs_starts[i:i + batch_size]
        acc = None
        for s in shifts:
            x = one_hot(torch.from_numpy(genome.gather(starts + s, length)).to(device))
            views = (x, reverse_complement(x)) if average else (x,)
            for v in views:
                with autocast(device, bf16):
                    p = model(v).float()
                acc = p if acc is None else acc + p
        return (acc / (len(shifts) * (2 if average else 1))).cpu()

    out = []
    prog = Progress(log, "windows", total=len(abs_starts), label=label)
    for p in map_batches(batch, range(0, len(abs_starts), batch_size), threads, device):
        out.append(p)
        prog.update(len(p))
    prog.close()
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def peak_windows(windows: pd.DataFrame, peaks: pd.DataFrame, window_size: int, target_bin: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (peak row, window row) where the window's centre bin overlaps the peak.

    Returns
    -------
    peak_idx, window_idx : (M,) int64
        Row positions in ``peaks`` and ``windows``.
    """
    offset = (window_size - target_bin) // 2
    pi, wi = [], []
    for chrom, wg in windows.groupby("chrom", sort=False):
        pk = peaks.index[peaks["chrom"] == chrom].to_numpy()
        if len(pk) == 0:
            continue
        order = np.argsort(wg["start"].to_numpy(), kind="stable")
        wrow = wg.index.to_numpy()[order]
        bs = wg["start"].to_numpy()[order] + offset
        ps, pe = peaks.loc[pk, "start"].to_numpy(), peaks.loc[pk, "end"].to_numpy()
        lo = np.searchsorted(bs + target_bin, ps, side="right")   # first bin ending after the peak start
        hi = np.searchsorted(bs, pe, side="left")                 # bins starting before the peak end
        n = np.maximum(hi - lo, 0)
        pi.append(np.repeat(pk, n))
        wi.append(wrow[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]).astype(np.int64)]
                  if n.sum() else np.zeros(0, np.int64))
    if not pi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pi).astype(np.int64), np.concatenate(wi).astype(np.int64)


def peak_values(values: np.ndarray, peak_idx: np.ndarray, window_idx: np.ndarray, n_peaks: int,
                how: str = "mean") -> np.ndarray:
    """Mean (or sum) of window values (W, T) over each peak's windows → (P, T); 0 for a peak without windows."""
    if how not in ("mean", "sum"):
        raise InputError("predict_peak_value", f"tiled-window rule {how!r} is not known", "use mean or sum")
    out = np.zeros((n_peaks, values.shape[1]), np.float64)
    np.add.at(out, peak_idx, values[window_idx])
    if how == "mean":
        out /= np.maximum(np.bincount(peak_idx, minlength=n_peaks), 1)[:, None]
    return out


def long_format(regime: str, kind: str, frame: pd.DataFrame, targets: np.ndarray, preds: np.ndarray,
                cell_types: list[str]) -> pd.DataFrame:
    """Rows × cell types → one row per (row, cell type)."""
    n, t = targets.shape
    peak_id = frame["peak_id"].to_numpy(object) if "peak_id" in frame else np.full(n, None, object)
    return pd.DataFrame({
        "regime": regime, "kind": kind, "peak_id": np.repeat(peak_id, t),
        "chrom": np.repeat(frame["chrom"].to_numpy(object), t),
        "start": np.repeat(frame["start"].to_numpy(np.int64), t),
        "end": np.repeat(frame["end"].to_numpy(np.int64), t),
        "cell_type": np.tile(np.asarray(cell_types, object), n),
        "target": targets.astype(np.float32).ravel(), "prediction": preds.astype(np.float32).ravel()})


def regime_models(models_dir: Path, regime: str, cell_types: list[str], device, replicate: int = 1,
                  n_replicates: int = 1) -> list[tuple[torch.nn.Module, list[int]]]:
    """(model, target columns) pairs of one replicate of a regime: one multitask model or one per cell type."""
    if regime != "single_task":
        path = models_dir / model_path(regime, None, replicate, n_replicates) / "model.pt"
        m = load_checkpoint(path, device)
        if m.cell_types != cell_types:
            raise InputError(path, f"model cell types {m.cell_types} differ from the dataset's {cell_types}",
                             "retrain on this dataset")
        return [(m, list(range(len(cell_types))))]
    return [(load_checkpoint(models_dir / model_path(regime, ct, replicate, n_replicates) / "model.pt", device), [j])
            for j, ct in enumerate(cell_types)]


def predict_regime(regime: str, models_dir: Path, windows: pd.DataFrame, targets: np.ndarray,
                   cell_types: list[str], genome: GenomeCodes, peaks: pd.DataFrame | None, params: dict,
                   device, lengths: dict | None = None, replicate: int = 1) -> pd.DataFrame:
    """Long-format window and peak predictions of one replicate of a regime on the test split
    (``replicate`` column ``rep<k>``).

    ``lengths`` (contig → bp) drops peaks whose centred window runs off a contig.
    """
    models = regime_models(models_dir, regime, cell_types, device, replicate, int(params.get("train_replicates", 1)))
    return predict_models(regime, models, windows, targets, cell_types, genome, peaks, params, lengths, replicate)


def outside_predictions(m: OutsideModel, windows: pd.DataFrame, targets: np.ndarray, cell_types: list[str],
                        genome: GenomeCodes, peaks: pd.DataFrame | None, params: dict, device,
                        lengths: dict | None = None) -> pd.DataFrame:
    """An outside model's rows (regime = its name, replicate ``rep1``) for the cell types it maps.

    Parameters
    ----------
    targets : numpy.ndarray
        (W, C) targets of ``windows`` in ``cell_types`` order.
    """
    module = OutputColumns(open_model(m.path), m.columns).to(device).eval()
    idx = [cell_types.index(ct) for ct in m.mapped]
    return predict_models(m.name, [(module, list(range(len(idx))))], windows, targets[:, idx], m.mapped, genome,
                          peaks, params, lengths, seq_len=m.seq_len)


def predict_models(regime: str, models: list, windows: pd.DataFrame, targets: np.ndarray, cell_types: list[str],
                   genome: GenomeCodes, peaks: pd.DataFrame | None, params: dict, lengths: dict | None = None,
                   replicate: int = 1, seq_len: int | None = None) -> pd.DataFrame:
    """Long-format window and peak predictions of loaded models (``(module, target columns)`` pairs
    covering ``cell_types``) on the test split (``windows`` rows with split ``test``).

    ``seq_len`` (an outside model's input length L, default ``window_size``): each window is
    re-centred to L bp around the same centre bin (start − (L − window_size) / 2; a window whose
    longer input runs off its contig is dropped for this model, logged), and peaks get L bp
    windows centred on them.
    """
    size = int(params["window_size"])
    seq_len = int(seq_len or size)
    if (seq_len - size) % 2:
        raise InputError("outside_models", f"{regime}: seq_len {seq_len} and window_size {size} differ by an odd "
                                           "number", "use an input length with the same parity as window_size")
    offset = (seq_len - size) // 2
    test = windows.index[windows["split"] == "test"].to_numpy()
    tw = windows.loc[test].reset_index(drop=True)
    tt = targets[test]
    if offset > 0 and lengths is not None:
        ln = tw["chrom"].map(lambda ch: lengths.get(ch, -1)).to_numpy(np.int64)
        fit = (tw["start"].to_numpy(np.int64) - offset >= 0) & (tw["start"].to_numpy(np.int64) - offset + seq_len <= ln)
        if (~fit).any():
            log.info("%s: %d test window(s) whose %d bp input runs off the contig dropped", regime, int((~fit).sum()),
                     seq_len)
        tw, tt = tw[fit].reset_index(drop=True), tt[fit]
    params = {**params, "window_size": seq_len}
    preds = run_models(models, genome, genome.abs_starts(tw["chrom"].to_numpy(), tw["start"].to_numpy() - offset),
                       len(cell_types), params, regime)
    frames = [long_format(regime, "window", tw, tt, preds, cell_types)]
    if peaks is not None and len(peaks):
        how = check_rule(params.get("predict_peak_value", "centre"))
        if how == "centre":
            frames.append(centred_peak_predictions(regime, models, genome, peaks, cell_types, params, lengths))
        else:
            frames.append(tiled_peak_predictions(regime, tw, tt, preds, peaks, cell_types,
                                                 {**params, "window_size": size}, how))
    df = pd.concat(frames, ignore_index=True)
    df.insert(1, "replicate", replicate_label(replicate))
    return df


def run_models(models: list, genome: GenomeCodes, abs_starts: np.ndarray, n_tasks: int, params: dict,
               label: str) -> np.ndarray:
    """Predictions (W, T) of a regime's model(s) for windows at ``abs_starts``."""
    preds = np.zeros((len(abs_starts), n_tasks), np.float32)
    for model, cols in models:
        preds[:, cols] = predict_windows(model, genome, abs_starts, params["window_size"],
                                         average=params["predict_average"], batch_size=params["predict_batch_size"],
                                         device=model_device(model),
                                         bf16=params.get("train_bf16", False), label=label,
                                         threads=params.get("threads", 1))
    return preds


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def centred_peak_predictions(regime: str, models: list, genome: GenomeCodes, peaks: pd.DataFrame,
                             cell_types: list[str], params: dict, lengths: dict | None = None) -> pd.DataFrame:
    """The study's rule: one window centred on each peak; targets = ``value_<cell type>`` of the peaks table."""
    cols = [f"value_{ct}" for ct in cell_types]
    missing = [c for c in cols if c not in peaks.columns]
    if missing:
        raise InputError("peaks.parquet", f"no centred-site values ({', '.join(missing)}) for predict_peak_value "
                                          "'centre'", "rerun cluster_peaks with this version of caveat")
    sites = centred_sites(peaks, params["window_size"], params["target_bin"], lengths)
    fit = sites["fits"].to_numpy()
    if (~fit).any():
        log.info("%s: %d test peak(s) whose centred window runs off the contig dropped", regime, int((~fit).sum()))
    pk, sites = peaks[fit].reset_index(drop=True), sites[fit].reset_index(drop=True)
    abs_starts = genome.abs_starts(sites["chrom"].to_numpy(), sites["window_start"].to_numpy())
    preds = run_models(models, genome, abs_starts, len(cell_types), params, f"{regime} peaks")
    log.info("%s: %d test peaks predicted from peak-centred windows", regime, len(pk))
    return long_format(regime, "peak", pk, pk[cols].to_numpy(np.float64), preds, cell_types)


def tiled_peak_predictions(regime: str, tw: pd.DataFrame, tt: np.ndarray, preds: np.ndarray, peaks: pd.DataFrame,
                           cell_types: list[str], params: dict, how: str) -> pd.DataFrame:
    """``mean``/``sum`` rules: targets and predictions of the tiled windows overlapping each peak."""
    pi, wi = peak_windows(tw, peaks, params["window_size"], params["target_bin"])
    has = np.bincount(pi, minlength=len(peaks)) > 0
    pt, pp = peak_values(tt, pi, wi, len(peaks), how), peak_values(preds, pi, wi, len(peaks), how)
    log.info("%s: %d test peaks, %d without a window (N or blacklist) dropped", regime, len(peaks), int((~has).sum()))
    return long_format(regime, "peak", peaks[has], pt[has], pp[has], cell_types)


def run(windows_path: Path, summary_path: Path, fasta: Path, models_dir: Path, peaks_path: Path | None,
        regimes: list[str], params: dict, out: Path, outdir: Path | None = None) -> dict:
    """Predict with every replicate of every regime and with every outside model (the
    ``outside_models`` sheet, and the in-run manifests under ``outdir``/models when given)."""
    windows, targets, cts, genome = load_inputs(windows_path, summary_path, fasta)
    peaks = peaks_on_target_scale(read_test_peaks(peaks_path, windows), windows_path, cts)  # targets' scale
    lengths = fasta_lengths(fasta)
    device = resolve_device(params.get("train_device", "auto"))
    n_reps = int(params.get("train_replicates", 1))
    frames = [predict_regime(r, models_dir, windows, targets, cts, genome, peaks, params, device, lengths, k)
              for r in regimes for k in range(1, n_reps + 1)]
    outside = outside_models(params, outdir, cts)
    frames += [outside_predictions(m, windows, targets, cts, genome, peaks, params, device, lengths)
               for m in outside]
    df = pd.concat(frames, ignore_index=True)
    write_parquet(df, out)
    first = df[(df["regime"] == df["regime"].iloc[0]) & (df["replicate"] == df["replicate"].iloc[0])] if len(df) else df
    per_model = max(first["cell_type"].nunique(), 1)   # rows per window of one model
    summary = {"rows": len(df), "regimes": list(regimes), "outside_models": [m.name for m in outside],
               "replicates": n_reps,
               "averaged": bool(params["predict_average"]), "peak_value": params.get("predict_peak_value", "centre"),
               "test_windows": int((first["kind"] == "window").sum() // per_model),
               "test_peaks": int((first["kind"] == "peak").sum() // per_model)}
    write_json(summary, Path(out).parent / "predict.summary.json")
    return summary


def read_test_peaks(path: Path | None, windows: pd.DataFrame) -> pd.DataFrame | None:
    """Peaks (id, interval, ``value_*`` columns) on the test chromosomes, or None without a peaks table."""
    if path is None or not Path(path).exists():
        log.info("no peaks table: window predictions only")
        return None
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    cols = ["peak_id", "chrom", "start", "end", *[c for c in names if c.startswith("value_")]]
    peaks = pd.read_parquet(path, columns=cols)
    test_chroms = set(windows.loc[windows["split"] == "test", "chrom"])
    return peaks[peaks["chrom"].isin(test_chroms)].reset_index(drop=True)


def run_step(ctx: StepContext) -> dict:
    p = ctx.params
    s = run(ctx.outdir / "windows.parquet", ctx.outdir / "build_dataset.summary.json", Path(p["fasta"]),
            ctx.outdir / "models", ctx.outdir / "peaks.parquet", list(p["regimes"]), {**p, "threads": ctx.threads},
            ctx.out("predictions.parquet"), ctx.outdir)
    return {"rows": s["rows"], "test_windows": s["test_windows"], "test_peaks": s["test_peaks"]}


def input_files(params: dict) -> list:
    return ([params["fasta"]] if params.get("fasta") else []) + sheet_files(params)


STEP = Step(name="predict", run=run_step, needs=("train",), params={**PARAMS, "window_size": 1344, "target_bin": 192,
                                                                     "regimes": list(REGIMES), "train_device": "auto",
                                                                     "train_bf16": True, "train_replicates": 3,
                                                                     "outside_models": None},
            input_files=input_files, path_params=("outside_models",),
            optional_needs=("train_baseline",),   # its models/kmer_baseline/outside.json (caveat.outside_models)
            doc="reference predictions on the test chromosomes")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat predict", description="Reference predictions of trained regimes.")
    ap.add_argument("--windows", required=True, help="windows.parquet")
    ap.add_argument("--summary", required=True, help="build_dataset.summary.json")
    ap.add_argument("--fasta", required=True)
    ap.add_argument("--models", required=True, help="folder holding <regime>[/rep<k>]/model.pt")
    ap.add_argument("--peaks", help="peaks.parquet")
    ap.add_argument("--out", default="predictions.parquet")
    add_param_options(ap, STEP.params,
                      aliases={"predict_average": ["--average"], "predict_batch_size": ["--batch-size"],
                               "predict_peak_value": ["--peak-value"], "train_device": ["--device"]},
                      choices={"predict_peak_value": ("centre", "mean", "sum"), "regimes": REGIMES},
                      helps={"predict_average": "average over RC × shifts -1, 0, +1 (--no-average: forward "
                                                "strand, no shifts only)",
                             "predict_peak_value": "peak target/prediction: centre (default, the study's: a window "
                                                   "centred on the peak vs insertions over the centred target_bin "
                                                   "site), or mean/sum over the windows tiling the peak",
                             "train_device": "auto, cpu, cuda, cuda:N"})
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads: batches predicted at once (the predictions do not depend on it)")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    params = {**params_from_args(a, STEP.params), "threads": max(1, a.threads)}
    run(Path(a.windows), Path(a.summary), Path(a.fasta), Path(a.models), Path(a.peaks) if a.peaks else None,
        a.regimes, params, Path(a.out))
    return 0
