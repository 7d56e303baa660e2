"""train: fit Basset-style models under the study's four training regimes.

Regimes (Kathail et al., Table 1), each written to ``models/<regime>/`` (with
``train_replicates`` > 1: ``models/<regime>/rep<k>/``, single_task
``models/single_task/rep<k>/<cell_type>/``; :func:`caveat.regimes.model_path`):

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

Replicates: every regime (every single-task cell type) is trained ``train_replicates``
times (the study trained three), replicate k with seed ``seed + 1000 (k − 1)``
(:func:`caveat.regimes.replicate_seed`: weights, batch order, augmentation, dropout);
the training windows (``train_max_windows`` subsample) come from ``seed`` and are the
same for every replicate. Both seeds are recorded in the checkpoint and the summary. The
local engine trains models in parallel processes as ``--threads`` allows
(``--threads`` // ``train_cpu_threads`` at once); the bits do not depend on it.

Epochs: one pass over the training windows, or ``train_epoch_batches`` batches (Basenji's
``train_epoch_batches``) drawn from the seeded passes end to end, so successive short epochs
still see every window (:class:`caveat.loader.BatchStream`).

Resume: after every epoch the model's folder holds a resume checkpoint (model, optimizer,
early-stopping state, best weights, history, data-stream position, RNG states;
:mod:`caveat.train_resume`); a rerun after a kill continues after the last completed epoch
and writes the same ``model.pt`` and ``history.parquet`` bytes as an uninterrupted run (on
CPU). A checkpoint of other params or data is refused. The summary says whether a model
resumed and after which epoch.

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
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .dataset_io import load_inputs
from .device import autocast, job_devices, resolve_device, torch_threads
from .engine import Step, StepContext
from .errors import InputError
from .io import write_json, write_parquet
from .loader import BatchStream, GenomeCodes, WindowLoader
from .log import Progress, get_logger
from .metrics import pearson_per_task
from .models import BassetModel, ModelConfig, count_parameters, save_checkpoint
from .onehot import one_hot
from .regimes import REGIMES, model_path, model_units, replicate_seed
from .step_cli import add_param_options, params_from_args
from .train_resume import (clear_resume, clear_resume_below, load_resume, resume_path, rng_states, run_digest,
                           save_resume, set_rng_states)

log = get_logger("train")

#: batches a GPU run's loader makes ahead on a background thread (:func:`caveat.loader.prefetch`)
LOADER_PREFETCH = 2

HISTORY_COLUMNS = ["epoch", "train_loss", "valid_loss", "valid_pearson"]

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
    "train_epoch_batches": None,
    "train_permute_targets": False,
    "train_replicates": 3,
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


def train_epoch(model, step_model, batches, opt, device, params, progress: Progress) -> float:
    """One epoch over ``batches`` (an iterable of (codes, targets)); returns the mean training loss."""
    model.train()
    total, n = 0.0, 0
    for codes, y in batches:
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


@dataclass
class FitState:
    """Where training stands after ``epoch`` completed epochs (what a resume checkpoint holds
    besides the model, optimizer, data stream and RNG states).

    Attributes
    ----------
    epoch : int
        Completed epochs.
    rows : list of dict
        History rows so far (epoch, train_loss, valid_loss, valid_pearson).
    best : float
        Best validation mean Pearson R so far (-inf before any finite one).
    best_state : dict or None
        State dict (CPU tensors) of the best epoch so far.
    waited : int
        Epochs in a row without improvement (early stopping).
    stopped : bool
        Early stopping ended training.
    """

    epoch: int = 0
    rows: list = field(default_factory=list)
    best: float = -np.inf
    best_state: dict | None = None
    waited: int = 0
    stopped: bool = False


def early_stopping_update(st: FitState, model: torch.nn.Module, params: dict, label: str) -> None:
    """Keep the epoch's weights if its validation R is the best so far, else count it as unimproved
    and stop by Basenji's rule (trainer.py): unimproved > patience and epoch >= train_epochs_min."""
    r = st.rows[-1]["valid_pearson"]
    if st.best_state is None or (np.isfinite(r) and r > st.best):
        st.best, st.waited = (r if np.isfinite(r) else st.best), 0
        st.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        return
    st.waited += 1
    if st.waited > params["train_patience"] and st.epoch >= params.get("train_min_epochs", 1):
        st.stopped = True
        log.info("%s: early stop after epoch %d (best valid Pearson R %.4f)", label, st.epoch, st.best)


def save_fit_checkpoint(path: Path, digest: str, st: FitState, model: torch.nn.Module,
                        opt: torch.optim.Optimizer, stream: BatchStream, device: torch.device) -> None:
    """Write the resume checkpoint after epoch ``st.epoch``: model, optimizer (momentum / Adam
    moments; the learning rate is constant, so there is no scheduler), early-stopping state,
    best weights, history, data-stream position and every RNG state."""
    save_resume(path, digest, {
        "epoch": st.epoch, "rows": st.rows, "best": st.best, "waited": st.waited, "stopped": st.stopped,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "best_state": st.best_state,
        "optimizer": opt.state_dict(), "rng": rng_states(device, {"stream": stream.state_dict()})})


def load_fit_checkpoint(path: Path, digest: str, model: torch.nn.Module, opt: torch.optim.Optimizer,
                        stream: BatchStream, device: torch.device) -> FitState:
    """Restore model, optimizer, data stream and RNGs from ``path``; return the training state."""
    obj = load_resume(path, digest)
    model.load_state_dict(obj["model"])
    opt.load_state_dict(obj["optimizer"])
    stream.load_state_dict(set_rng_states(obj["rng"], device)["stream"])
    return FitState(epoch=int(obj["epoch"]), rows=list(obj["rows"]), best=float(obj["best"]),
                    best_state=obj["best_state"], waited=int(obj["waited"]), stopped=bool(obj["stopped"]))


def fit(model: BassetModel, train_loader: WindowLoader, valid_loader: WindowLoader, valid_targets: np.ndarray,
        params: dict, device: torch.device, label: str = "", checkpoint: Path | None = None,
        digest: str = "") -> tuple[dict, pd.DataFrame, int | None]:
    """Train with early stopping on the validation mean Pearson R, ``train_epoch_batches``
    batches per epoch (default: one pass over the training windows), resuming from and
    writing a checkpoint after every epoch at ``checkpoint`` (when given).

    Returns
    -------
    best_state : dict
        State dict of the best epoch (CPU tensors).
    history : DataFrame
        epoch, train_loss, valid_loss, valid_pearson.
    resumed_from : int or None
        The epoch the run resumed after (None: trained from the start).
    """
    model.to(device)
    step_model = torch.compile(model) if params["train_compile"] and device.type == "cuda" else model
    opt = make_optimizer(model, params)
    stream = BatchStream(train_loader)
    st, resumed_from = FitState(), None
    if checkpoint is not None and checkpoint.exists():
        st = load_fit_checkpoint(checkpoint, digest, model, opt, stream, device)
        resumed_from = st.epoch
        log.info("%s: resuming after epoch %d from %s", label, st.epoch, checkpoint)
    n_batches = params.get("train_epoch_batches") or len(train_loader)
    vt = torch.from_numpy(valid_targets)
    epochs = Progress(log, "epochs", total=params["train_max_epochs"] - st.epoch, every_s=0,
                      label=f"{label} (ETA at train_max_epochs)")
    while not st.stopped and st.epoch < params["train_max_epochs"]:
        st.epoch += 1
        prog = Progress(log, "windows", total=stream.windows_ahead(n_batches), label=f"{label} epoch {st.epoch}")
        train_loss = train_epoch(model, step_model, stream.take(n_batches), opt, device, params, prog)
        prog.close()
        pred = predict_loader(model, valid_loader, device, params["train_bf16"])
        valid_loss = float(poisson_loss(torch.from_numpy(pred), vt))
        per_task = pearson_per_task(pred, valid_targets)
        r = float(np.nanmean(per_task)) if np.isfinite(per_task).any() else float("nan")
        st.rows.append({"epoch": st.epoch, "train_loss": train_loss, "valid_loss": valid_loss, "valid_pearson": r})
        log.info("%s epoch %d: train loss %.4f, valid loss %.4f, valid mean Pearson R %.4f",
                 label, st.epoch, train_loss, valid_loss, r)
        early_stopping_update(st, model, params, label)
        if checkpoint is not None:
            save_fit_checkpoint(checkpoint, digest, st, model, opt, stream, device)
        epochs.update(1)
    history = pd.DataFrame(st.rows, columns=HISTORY_COLUMNS).astype(
        {"epoch": np.int64, "train_loss": np.float64, "valid_loss": np.float64, "valid_pearson": np.float64})
    return st.best_state, history, resumed_from


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


def _data_arrays(genome: GenomeCodes, abs_starts: np.ndarray, targets: np.ndarray, length: int,
                 splits: tuple[np.ndarray, ...], chunk: int = 4096):
    """Positions (n,), targets (n, T) and sequence codes (chunks of (≤chunk, length)) of each split."""
    for idx in splits:
        yield abs_starts[idx]
        yield targets[idx]
        for i in range(0, len(idx), chunk):
            yield genome.gather(abs_starts[idx[i:i + chunk]], length)


def training_digest(params: dict, device: torch.device, genome: GenomeCodes, abs_starts: np.ndarray,
                    targets: np.ndarray, train_idx: np.ndarray, valid_idx: np.ndarray) -> str:
    """What a model's training depends on, as a digest: the step's params (as the regime uses
    them), the seed, the device type, and the training and validation windows' positions,
    sequences and targets ((W, T), this model's columns)."""
    settings = {k: params.get(k) for k in STEP.params if k != "regimes"}
    settings.update(seed=int(params.get("seed", 0)), device=device.type)
    return run_digest(settings, _data_arrays(genome, abs_starts, targets, params["window_size"],
                                             (train_idx, valid_idx)))


def train_model(genome: GenomeCodes, abs_starts: np.ndarray, targets: np.ndarray, train_idx: np.ndarray,
                valid_idx: np.ndarray, params: dict, device: torch.device, label: str,
                folder: Path | None = None) -> tuple[BassetModel, pd.DataFrame, int | None]:
    """Build, train and return the best model (on CPU), its history and the epoch it resumed
    after (None: from the start). targets: (W, T). With ``folder``, a resume checkpoint is kept
    there after every epoch (:mod:`caveat.train_resume`) and a run finds and continues it."""
    seed = int(params.get("seed", 0))
    length = params["window_size"]
    cpu = device.type == "cpu"
    checkpoint = None if folder is None else resume_path(folder)
    digest = training_digest(params, device, genome, abs_starts, targets, train_idx, valid_idx) if folder else ""
    threads = torch_threads(params.get("train_cpu_threads", 1)) if cpu else contextlib.nullcontext()
    with threads, deterministic(seed, algorithms=cpu):
        model = BassetModel(ModelConfig.from_params(params, targets.shape[1]))
        init_output_bias(model, targets[train_idx])
        log.info("%s: %s parameters, %d training and %d validation windows, device %s",
                 label, f"{count_parameters(model):,}", len(train_idx), len(valid_idx), device)
        # on a GPU: batches made ahead by a thread in page-locked memory (copied while the GPU computes);
        # the same batches either way
        feed = {} if cpu else {"pin_memory": device.type == "cuda", "prefetch": LOADER_PREFETCH}
        train = WindowLoader(genome, abs_starts[train_idx], targets[train_idx], length,
                             batch_size=params["train_batch_size"], shuffle=True, seed=seed,
                             max_shift=params["augment_shift"], rc=params["augment_rc"], **feed)
        valid = WindowLoader(genome, abs_starts[valid_idx], targets[valid_idx], length,
                             batch_size=max(params["train_batch_size"], 256), **feed)
        state, history, resumed_from = fit(model, train, valid, targets[valid_idx], params, device, label,
                                           checkpoint, digest)
    model.load_state_dict(state)
    return model.cpu().eval(), history, resumed_from


def train_regime(regime: str, windows: pd.DataFrame, targets: np.ndarray, cell_types: list[str],
                 genome: GenomeCodes, params: dict, outdir: Path, only_cell_type: str | None = None,
                 keep_resume: bool = False, replicates=None, device: str | None = None) -> dict:
    """Train one regime's model(s) and write ``outdir/models/<model path>/…``; returns a summary
    keyed by model path (:func:`caveat.regimes.model_path`). ``replicates``: the replicate
    numbers to train (default 1 … ``train_replicates``). A model whose run was killed resumes
    from its last epoch's checkpoint. ``keep_resume`` leaves a finished model's checkpoint for
    the caller to clear once all its models are written
    (:func:`caveat.train_resume.clear_resume_below`), so a rerun after a kill later in the step
    rewrites the finished ones without training them again. ``device``: the device this job
    was given (:func:`caveat.device.job_devices`), else ``train_device`` resolved."""
    device = resolve_device(device or params["train_device"])
    params = regime_params(params, regime)
    n_reps = int(params.get("train_replicates", 1))
    abs_starts = genome.abs_starts(windows["chrom"].to_numpy(), windows["start"].to_numpy())
    train_idx, valid_idx, targets = regime_data(windows, targets, regime, params)
    jobs = [(ct, [j]) for j, ct in enumerate(cell_types)] if regime == "single_task" else [(None, list(range(len(cell_types))))]
    if only_cell_type is not None:
        jobs = [(ct, cols) for ct, cols in jobs if ct == only_cell_type]
        if not jobs:
            raise InputError("--cell-type", f"{only_cell_type!r} is not a cell type of the dataset",
                             f"use one of {cell_types}")
    reps = list(range(1, n_reps + 1)) if replicates is None else [int(k) for k in replicates]
    bad = [k for k in reps if not 1 <= k <= n_reps]
    if bad:
        raise InputError("--replicate", f"replicate {bad[0]} is outside 1…train_replicates ({n_reps})",
                         "pass a replicate number between 1 and train_replicates")
    out = {}
    for k in reps:
        rep_params = {**params, "seed": replicate_seed(params.get("seed", 0), k)}
        for ct, cols in jobs:
            label = model_path(regime, ct, k, n_reps)
            out[label] = train_one(genome, abs_starts, np.ascontiguousarray(targets[:, cols]), train_idx, valid_idx,
                                   rep_params, device, label, outdir / "models" / label,
                                   {"regime": regime, "replicate": k, "cell_types": [cell_types[j] for j in cols],
                                    "data_seed": int(params.get("seed", 0))}, keep_resume)
    return out


def train_one(genome: GenomeCodes, abs_starts: np.ndarray, targets: np.ndarray, train_idx: np.ndarray,
              valid_idx: np.ndarray, params: dict, device, label: str, folder: Path, meta: dict,
              keep_resume: bool) -> dict:
    """Train, save (``model.pt`` with the replicate and both seeds, ``history.parquet``) and
    summarise one model; ``params["seed"]`` is the replicate's seed. targets: (W, T')."""
    t0 = time.monotonic()
    model, history, resumed_from = train_model(genome, abs_starts, targets, train_idx, valid_idx, params, device,
                                               label, folder)
    best = history.loc[history["valid_pearson"].idxmax()] if history["valid_pearson"].notna().any() else history.iloc[-1]
    seeds = {"replicate": meta["replicate"], "seed": int(params["seed"]), "data_seed": meta["data_seed"]}
    save_checkpoint(model, folder / "model.pt", cell_types=meta["cell_types"],
                    extra={"regime": meta["regime"], "best_epoch": int(best["epoch"]), **seeds})
    write_parquet(history, folder / "history.parquet")
    if not keep_resume:
        clear_resume(folder)
    # wall time is logged, never written: outputs must be byte-identical across identical runs
    log.info("%s: trained in %.1f s (best epoch %d of %d%s)", label, time.monotonic() - t0,
             int(best["epoch"]), len(history), "" if resumed_from is None else f", resumed after {resumed_from}")
    return {"epochs": len(history), "best_epoch": int(best["epoch"]),
            "best_valid_pearson": float(best["valid_pearson"]), "train_windows": len(train_idx),
            "valid_windows": len(valid_idx), "parameters": count_parameters(model),
            "batches_per_epoch": int(params.get("train_epoch_batches")
                                     or -(-len(train_idx) // params["train_batch_size"])),
            "resumed": resumed_from is not None, "resumed_from_epoch": resumed_from, **seeds}


def _unit_job(args: tuple) -> dict:
    """One (regime, cell type, replicate) model in a worker process: load the inputs, train, save."""
    windows_path, summary_path, params, outdir, (regime, ct, k), device = args
    windows, targets, cts, genome = load_inputs(windows_path, summary_path, Path(params["fasta"]))
    return train_regime(regime, windows, targets, cts, genome, params, outdir, ct, keep_resume=True, replicates=[k],
                        device=device)


def parallel_models(threads: int, params: dict, n_gpus: int = 0) -> int:
    """Models trained at once by the local engine: ``threads`` // ``train_cpu_threads`` (≥ 1),
    and at least one per GPU when ``n_gpus`` (≥ 2) are shared out (:func:`caveat.device.job_devices`)."""
    return max(1, int(threads) // max(1, int(params.get("train_cpu_threads", 1))), n_gpus)


def train_all(ctx: StepContext, cell_types: list[str], load) -> dict:
    """Every (regime, cell type, replicate) model, :func:`parallel_models` at a time in spawned
    worker processes (each loads the inputs itself), else one after another in this process.
    ``load``: () → (windows, targets, cell types, genome)."""
    p, outdir = ctx.params, ctx.outdir
    units = model_units(p["regimes"], cell_types, int(p["train_replicates"]))
    devices = job_devices(p["train_device"], len(units))  # several GPUs: one per concurrent model, round robin
    width = min(parallel_models(ctx.threads, p, len({d for d in devices if d})), len(units))
    if width <= 1:
        windows, targets, cts, genome = load()
        return {k: v for regime in p["regimes"]
                for k, v in train_regime(regime, windows, targets, cts, genome, p, outdir, keep_resume=True).items()}
    log.info("training %d models, %d at a time%s", len(units), width,
             f" on {len(set(devices))} GPUs" if devices and devices[0] else "")
    jobs = [(outdir / "windows.parquet", outdir / "build_dataset.summary.json", p, outdir, u, d)
            for u, d in zip(units, devices)]
    with ProcessPoolExecutor(width, mp_context=multiprocessing.get_context("spawn")) as ex:
        parts = list(ex.map(_unit_job, jobs))
    return {k: v for part in parts for k, v in part.items()}


def run_step(ctx: StepContext) -> dict:
    p = ctx.params
    bad = [r for r in p["regimes"] if r not in REGIMES]
    if bad:
        raise InputError("params", f"unknown regime {bad[0]!r}", f"set `regimes` to a subset of {list(REGIMES)}")

    def load():
        return load_inputs(ctx.outdir / "windows.parquet", ctx.outdir / "build_dataset.summary.json", Path(p["fasta"]))

    windows, targets, cts, genome = load()   # checks the inputs before any worker starts
    del windows, targets, genome
    summary = train_all(ctx, cts, load)
    write_json({"models": summary, "regimes": list(p["regimes"]), "cell_types": cts,
                "replicates": int(p["train_replicates"])}, ctx.out("train.summary.json"))
    clear_resume_below(ctx.outdir / "models")
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
    ap.add_argument("--replicate", type=int, help="train this replicate only (1 … train_replicates; default: all)")
    ap.add_argument("--outdir", default=".", help="writes OUTDIR/models/<regime>/…")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads of the task; the model does not depend on it (see --train-cpu-threads)")
    add_param_options(ap, {k: v for k, v in STEP.params.items() if k != "regimes"},
                      types={"train_max_windows": int, "train_epoch_batches": int})
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    params = params_from_args(a, [k for k in STEP.params if k != "regimes"])
    params.update(seed=a.seed)
    windows, targets, cts, genome = load_inputs(Path(a.windows), Path(a.summary), Path(a.fasta))
    reps = None if a.replicate is None else [a.replicate]
    s = train_regime(a.regime, windows, targets, cts, genome, params, Path(a.outdir), a.cell_type, keep_resume=True,
                     replicates=reps)
    write_json({"models": s}, Path(a.outdir) / f"train.{unit_id(a.regime, a.cell_type, a.replicate, params)}.summary.json")
    clear_resume_below(Path(a.outdir) / "models" / a.regime)
    return 0


def unit_id(regime: str, cell_type: str | None, replicate: int | None, params: dict) -> str:
    """The CLI summary's name part (= the Nextflow task's meta.id): ``<regime>[.<cell type>][.rep<k>]``,
    the replicate named only with ``train_replicates`` > 1."""
    rep = f".rep{replicate}" if replicate is not None and int(params.get("train_replicates", 1)) > 1 else ""
    return f"{regime}{'.' + cell_type if cell_type else ''}{rep}"
