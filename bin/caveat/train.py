"""train: fit Basset-style models under the study's four training regimes.

Regimes (Kathail et al., Table 1), each written to ``models/<regime>/``:

- ``single_task``: one model per cell type on all windows (``models/single_task/<cell_type>/``)
- ``multitask``: one model, every cell type, all windows
- ``multitask_peaks``: windows whose centre bin overlaps any union peak
- ``multitask_nonubiquitous``: windows whose centre bin overlaps a cell-type specific peak

Poisson loss on softplus outputs; reverse-complement and ±``augment_shift`` bp
shift augmentation; SGD with momentum (the study's Basenji default) or AdamW;
early stopping on the validation mean Pearson R (per task, raw counts, as
Basenji) with Basenji's rule (stop once more than ``train_patience`` epochs in a
row brought no improvement, never before ``train_min_epochs``), the best epoch's
weights kept. Defaults are the authors' parameter files (docs/CONVENTIONS.md):
multitask regimes lr 0.005, batch 64; single-task lr 0.0005, batch 256
(``train_lr_single_task``, ``train_batch_size_single_task``); momentum 0.98,
patience 3, 3 to 30 epochs, no gradient clipping.

Determinism: the same data, params and seed give the same checkpoint bytes
whatever ``--threads``. On CPU the arithmetic runs on ``train_cpu_threads``
torch threads (torch splits some reductions by thread, so the bits depend on
that count, which is therefore a param); on a GPU the CPU thread count plays no
part, and bf16 autocast and ``torch.compile`` may be used.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .dataset_io import load_inputs
from .device import autocast, resolve_device, torch_threads
from .engine import Step, StepContext
from .errors import InputError
from .io import write_json, write_parquet
from .loader import GenomeCodes, WindowLoader
from .log import Progress, get_logger
from .models import BassetModel, ModelConfig, count_parameters, save_checkpoint
from .onehot import one_hot
from .regimes import REGIMES
from .step_cli import add_param_options, params_from_args

log = get_logger("train")

PARAMS = {
    "regimes": list(REGIMES),
    "model_filters": 288,
    "model_filters_max": 512,
    "model_tower_blocks": 6,
    "model_bottleneck": 256,
    "model_dense": 768,
    "model_dropout": 0.2,
    "train_optimizer": "sgd",
    "train_lr": 0.005,
    "train_lr_single_task": 0.0005,
    "train_momentum": 0.98,
    "train_weight_decay": 0.0,
    "train_clip_norm": 0.0,
    "train_batch_size": 64,
    "train_batch_size_single_task": 256,
    "train_max_epochs": 30,
    "train_min_epochs": 3,
    "train_patience": 3,
    "train_cpu_threads": 1,
    "train_device": "auto",
    "train_bf16": True,
    "train_compile": False,
    "train_max_windows": None,
    "train_permute_targets": False,
    "augment_rc": True,
    "augment_shift": 3,
}


# ---------------------------------------------------------------- pieces


#: params that single_task models take from their own ``*_single_task`` param
SINGLE_TASK_PARAMS = ("train_lr", "train_batch_size")


def regime_params(params: dict, regime: str) -> dict:
    """The params a regime trains with: single_task uses ``train_lr_single_task`` and
    ``train_batch_size_single_task`` (the study's single-task values), the others ``train_lr``
    and ``train_batch_size``."""
    if regime != "single_task":
        return params
    return {**params, **{k: params.get(f"{k}_single_task", params[k]) for k in SINGLE_TASK_PARAMS}}


def regime_mask(windows: pd.DataFrame, regime: str) -> np.ndarray:
    """Windows a regime trains and validates on, (W,) bool."""
    if regime in ("single_task", "multitask"):
        return np.ones(len(windows), bool)
    if regime == "multitask_peaks":
        return windows["in_peak"].to_numpy(bool)
    if regime == "multitask_nonubiquitous":
        return windows["in_nonubiquitous_peak"].to_numpy(bool)
    raise InputError("params", f"unknown regime {regime!r}", f"set `regimes` to a subset of {list(REGIMES)}")


def poisson_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Mean Poisson negative log-likelihood (without the log(y!) constant); (N, T) → scalar."""
    return (pred - target * torch.log(pred + eps)).mean()


def pearson_per_task(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson R per column of (N, T) arrays → (T,); NaN for a constant column."""
    p = pred - pred.mean(0)
    t = target - target.mean(0)
    den = np.sqrt((p * p).sum(0) * (t * t).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (p * t).sum(0) / np.where(den > 0, den, 1), np.nan)


@contextlib.contextmanager
def deterministic(seed: int, algorithms: bool = True):
    """Seed torch and (``algorithms``) switch on deterministic algorithms, restoring the
    previous mode after. Used on CPU; on a GPU only the seed is set, since deterministic
    cuDNN kernels cost speed and bf16 results are not bit-reproducible anyway."""
    was = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(algorithms or was, warn_only=True if algorithms else warn)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def make_optimizer(model: torch.nn.Module, params: dict) -> torch.optim.Optimizer:
    name = params["train_optimizer"]
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=params["train_lr"], momentum=params["train_momentum"],
                               weight_decay=params["train_weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=params["train_lr"], weight_decay=params["train_weight_decay"])
    raise InputError("params", f"train_optimizer {name!r} is not known", "use sgd or adamw")


@torch.no_grad()
def predict_loader(model: torch.nn.Module, loader, device: torch.device, bf16: bool = False) -> np.ndarray:
    """Predictions for every batch of a loader (no augmentation), (W, T) float32."""
    model.eval()
    out = []
    for codes, _ in loader:
        with autocast(device, bf16):
            out.append(model(one_hot(codes.to(device, non_blocking=True))).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def init_output_bias(model: BassetModel, targets: np.ndarray) -> None:
    """Start the softplus output at each task's mean target (inverse softplus of
    the mean), so early epochs fit sequence effects rather than the scale. targets: (n, T)."""
    mean = torch.from_numpy(np.maximum(targets.mean(0), 1e-3).astype(np.float32))
    with torch.no_grad():
        model.head.linear.bias.copy_(mean + torch.log(-torch.expm1(-mean)))


# ---------------------------------------------------------------- the loop


def train_epoch(model, step_model, loader, opt, device, params, progress: Progress) -> float:
    """One pass over the training loader; returns the mean training loss."""
    model.train()
    total, n = 0.0, 0
    for codes, y in loader:
        x = one_hot(codes.to(device, non_blocking=True))
        y = y.to(device, non_blocking=True)
        with autocast(device, params["train_bf16"]):
            pred = step_model(x)
        loss = poisson_loss(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if params["train_clip_norm"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params["train_clip_norm"])
        opt.step()
        total += float(loss.detach()) * len(y)
        n += len(y)
        progress.update(len(y))
    return total / max(n, 1)


def fit(model: BassetModel, train_loader: WindowLoader, valid_loader: WindowLoader, valid_targets: np.ndarray,
        params: dict, device: torch.device, label: str = "") -> tuple[dict, pd.DataFrame]:
    """Train with early stopping on the validation mean Pearson R.

    Returns
    -------
    best_state : dict
        State dict of the best epoch (CPU tensors).
    history : DataFrame
        epoch, train_loss, valid_loss, valid_pearson.
    """
    model.to(device)
    step_model = torch.compile(model) if params["train_compile"] and device.type == "cuda" else model
    opt = make_optimizer(model, params)
    rows, best, best_state, waited = [], -np.inf, None, 0
    vt = torch.from_numpy(valid_targets)
    for epoch in range(1, params["train_max_epochs"] + 1):
        train_loader.set_epoch(epoch)
        prog = Progress(log, "seqs", total=len(train_loader.abs_starts), label=f"{label} epoch {epoch}")
        train_loss = train_epoch(model, step_model, train_loader, opt, device, params, prog)
        prog.close()
        pred = predict_loader(model, valid_loader, device, params["train_bf16"])
        valid_loss = float(poisson_loss(torch.from_numpy(pred), vt))
        per_task = pearson_per_task(pred, valid_targets)
        r = float(np.nanmean(per_task)) if np.isfinite(per_task).any() else float("nan")
        rows.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss, "valid_pearson": r})
        log.info("%s epoch %d: train loss %.4f, valid loss %.4f, valid mean Pearson R %.4f",
                 label, epoch, train_loss, valid_loss, r)
        if best_state is None or (np.isfinite(r) and r > best):
            best, waited = (r if np.isfinite(r) else best), 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            waited += 1
            # Basenji's rule (trainer.py): stop once unimproved > patience and epoch >= train_epochs_min
            if waited > params["train_patience"] and epoch >= params.get("train_min_epochs", 1):
                log.info("%s: early stop after epoch %d (best valid Pearson R %.4f)", label, epoch, best)
                break
    history = pd.DataFrame(rows).astype({"epoch": np.int64, "train_loss": np.float64,
                                         "valid_loss": np.float64, "valid_pearson": np.float64})
    return best_state, history


# ---------------------------------------------------------------- regimes


def _subsample(idx: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    if cap is None or len(idx) <= cap:
        return idx
    return np.sort(rng.choice(idx, size=cap, replace=False))


def regime_data(windows: pd.DataFrame, targets: np.ndarray, regime: str, params: dict
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training/validation window indices of a regime and the (maybe permuted) targets.

    Returns
    -------
    train_idx, valid_idx : (n,) int64
    targets : (W, T) float32 (rows permuted within each split for the control)
    """
    mask = regime_mask(windows, regime)
    split = windows["split"].to_numpy()
    rng = np.random.default_rng([params.get("seed", 0), 17])
    train_idx = _subsample(np.flatnonzero(mask & (split == "train")), params["train_max_windows"], rng)
    valid_cap = None if params["train_max_windows"] is None else max(params["train_max_windows"] // 4, 1)
    valid_idx = _subsample(np.flatnonzero(mask & (split == "valid")), valid_cap, rng)
    for what, idx in (("training", train_idx), ("validation", valid_idx)):
        if len(idx) == 0:
            raise InputError("windows.parquet", f"regime {regime!r} has no {what} windows "
                             f"({int(mask.sum())} windows selected by the regime in total)",
                             "check peaks.parquet and the chromosome splits, or remove the regime from `regimes`")
    if params["train_permute_targets"]:
        targets = targets.copy()
        for idx in (train_idx, valid_idx):
            targets[idx] = targets[rng.permutation(idx)]
        log.warning("train_permute_targets: targets permuted across windows (negative control)")
    return train_idx, valid_idx, targets


def train_model(genome: GenomeCodes, abs_starts: np.ndarray, targets: np.ndarray, train_idx: np.ndarray,
                valid_idx: np.ndarray, params: dict, device: torch.device, label: str
                ) -> tuple[BassetModel, pd.DataFrame]:
    """Build, train and return the best model (on CPU) and its history. targets: (W, T)."""
    seed = int(params.get("seed", 0))
    length = params["window_size"]
    cpu = device.type == "cpu"
    threads = torch_threads(params.get("train_cpu_threads", 1)) if cpu else contextlib.nullcontext()
    with threads, deterministic(seed, algorithms=cpu):
        model = BassetModel(ModelConfig.from_params(params, targets.shape[1]))
        init_output_bias(model, targets[train_idx])
        log.info("%s: %s parameters, %d training and %d validation windows, device %s",
                 label, f"{count_parameters(model):,}", len(train_idx), len(valid_idx), device)
        train = WindowLoader(genome, abs_starts[train_idx], targets[train_idx], length,
                             batch_size=params["train_batch_size"], shuffle=True, seed=seed,
                             max_shift=params["augment_shift"], rc=params["augment_rc"])
        valid = WindowLoader(genome, abs_starts[valid_idx], targets[valid_idx], length,
                             batch_size=max(params["train_batch_size"], 256))
        state, history = fit(model, train, valid, targets[valid_idx], params, device, label)
    model.load_state_dict(state)
    return model.cpu().eval(), history


def train_regime(regime: str, windows: pd.DataFrame, targets: np.ndarray, cell_types: list[str],
                 genome: GenomeCodes, params: dict, outdir: Path, only_cell_type: str | None = None) -> dict:
    """Train one regime's model(s) and write ``outdir/models/<regime>/…``; returns a summary."""
    device = resolve_device(params["train_device"])
    params = regime_params(params, regime)
    abs_starts = genome.abs_starts(windows["chrom"].to_numpy(), windows["start"].to_numpy())
    train_idx, valid_idx, targets = regime_data(windows, targets, regime, params)
    jobs = [(ct, [j]) for j, ct in enumerate(cell_types)] if regime == "single_task" else [(None, list(range(len(cell_types))))]
    if only_cell_type is not None:
        jobs = [(ct, cols) for ct, cols in jobs if ct == only_cell_type]
        if not jobs:
            raise InputError("--cell-type", f"{only_cell_type!r} is not a cell type of the dataset",
                             f"use one of {cell_types}")
    out = {}
    for ct, cols in jobs:
        label = f"{regime}/{ct}" if ct else regime
        folder = outdir / "models" / regime / (ct or "")
        t0 = time.monotonic()
        model, history = train_model(genome, abs_starts, np.ascontiguousarray(targets[:, cols]), train_idx,
                                     valid_idx, params, device, label)
        best = history.loc[history["valid_pearson"].idxmax()] if history["valid_pearson"].notna().any() else history.iloc[-1]
        save_checkpoint(model, folder / "model.pt", cell_types=[cell_types[j] for j in cols],
                        extra={"regime": regime, "best_epoch": int(best["epoch"])})
        write_parquet(history, folder / "history.parquet")
        out[label] = {"epochs": len(history), "best_epoch": int(best["epoch"]),
                      "best_valid_pearson": float(best["valid_pearson"]), "train_windows": len(train_idx),
                      "valid_windows": len(valid_idx), "parameters": count_parameters(model)}
        # wall time is logged, never written: outputs must be byte-identical across identical runs
        log.info("%s: trained in %.1f s (best epoch %d of %d)", label, time.monotonic() - t0,
                 int(best["epoch"]), len(history))
    return out


def run_step(ctx: StepContext) -> dict:
    p = ctx.params
    bad = [r for r in p["regimes"] if r not in REGIMES]
    if bad:
        raise InputError("params", f"unknown regime {bad[0]!r}", f"set `regimes` to a subset of {list(REGIMES)}")
    windows, targets, cts, genome = load_inputs(ctx.outdir / "windows.parquet",
                                                ctx.outdir / "build_dataset.summary.json", Path(p["fasta"]))
    summary = {}
    for regime in p["regimes"]:
        summary.update(train_regime(regime, windows, targets, cts, genome, p, ctx.outdir))
    write_json({"models": summary, "regimes": list(p["regimes"]), "cell_types": cts},
               ctx.out("train.summary.json"))
    return {f"{k}.valid_pearson": round(v["best_valid_pearson"], 3) for k, v in summary.items()}


def input_files(params: dict) -> list:
    return [params["fasta"]] if params.get("fasta") else []


STEP = Step(name="train", run=run_step, needs=("build_dataset",), params={**PARAMS, "window_size": 1344},
            input_files=input_files,
            doc="Basset-style models under four training regimes")


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat train", description="Train one regime's model(s).")
    ap.add_argument("--windows", required=True, help="windows.parquet")
    ap.add_argument("--summary", required=True, help="build_dataset.summary.json (cell types)")
    ap.add_argument("--fasta", required=True, help="reference genome FASTA")
    ap.add_argument("--regime", required=True, choices=REGIMES)
    ap.add_argument("--cell-type", help="single_task only: train this cell type's model only")
    ap.add_argument("--outdir", default=".", help="writes OUTDIR/models/<regime>/…")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads of the task; the model does not depend on it (see --train-cpu-threads)")
    add_param_options(ap, {k: v for k, v in STEP.params.items() if k != "regimes"}, types={"train_max_windows": int})
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    params = params_from_args(a, [k for k in STEP.params if k != "regimes"])
    params.update(seed=a.seed)
    windows, targets, cts, genome = load_inputs(Path(a.windows), Path(a.summary), Path(a.fasta))
    s = train_regime(a.regime, windows, targets, cts, genome, params, Path(a.outdir), a.cell_type)
    write_json({"models": s}, Path(a.outdir) / f"train.{a.regime}{'.' + a.cell_type if a.cell_type else ''}.summary.json")
    return 0
