"""score_variants: REF vs ALT predictions of the centre bin for every tested variant.

Each variant sits at index 671 of its 1344 bp window (``seq_len // 2 - 1``);
REF and ALT windows are built by :mod:`caveat.variant_windows` (SNVs, MNVs and
indels, one stated rule). Predictions are averaged over the reverse
complement and shifts −1, 0, +1 (``score_rc``, ``score_shifts``), then

* ``pred_ref_ratio = ref_pred / (ref_pred + alt_pred)`` — comparable with the
  measured REF allele fraction (> 0.5: REF more accessible);
* ``log2_fc = log2(alt_pred / ref_pred)`` — positive when ALT opens chromatin.

Every task scores every cell type's variants: a multitask model's T tasks each
get a row for every variant of the union of the cell types' sets, and a
single-task model (one task = one cell type) scores the other cell types'
variants too. evaluate's cross-cell-type matrix (cell type X's labels scored
with task T's predictions, ``X|T``) needs those off-diagonal rows; the per-cell-type
metrics use the rows whose task is the variant's own cell type. The table has
(#tasks × #distinct variants) rows per model, so it grows by about the number of
cell types over scoring each cell type's own variants only; each distinct
window is still predicted once per model.

Speed: each distinct window (a position shared by several ALT alleles, or a
variant tested in several cell types) is predicted once per regime for all
tasks; REF windows run in full once and SNV ALTs take the exact fast ISM path
(:mod:`caveat.fast_ism`) when the model exposes its layers, else REF and ALT
share the same batches of the plain path. Variants stream through in chunks
of ``score_batch_size`` windows, so memory is bounded whatever their number.

Replicates: every replicate model of a regime (``train_replicates``) scores every variant;
its rows carry ``replicate`` = ``rep<k>`` and its summary key is its folder under
``models/`` (:func:`caveat.regimes.model_path`). evaluate averages the replicates' REF and
ALT predictions into the ensemble.

Any model mapping one-hot (N, 4, L) to (N, T) can be scored through the CLI
(``--model`` a caveat checkpoint or TorchScript file); see
:mod:`caveat.model_adapter`. Outside models of the run (``outside_models``,
:mod:`caveat.outside_models`) are scored by the step after the trained ones, each as one more
regime (label = its name, replicate ``rep1``, summary key = its name), with rows for the
cell types its tasks map; an output whose task name is ``-`` is dropped (CLI ``--task-names``
too).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .device import map_batches, resolve_device as _resolve_device
from .engine import Step, StepContext
from .errors import InputError
from .fast_ism import FastISM
from .genome import COMPLEMENT, read_contig_map, read_genome
from .io import read_json, read_parquet, write_json, write_parquet
from .log import Progress, get_logger
from .model_adapter import ModelAdapter, load_model
from .onehot import one_hot
from .outside_models import UNUSED, open_model, outside_models, sheet_files
from .regimes import REGIMES, model_path, model_units, replicate_label
from .replicates import ratios
from .step_cli import add_param_options
from .variant_windows import SKIP_REASONS, build_windows, parse_variant_ids

log = get_logger("score_variants")

PARAMS = {
    "regimes": list(REGIMES),
    "score_rc": True,
    "score_shifts": [-1, 0, 1],
    "score_batch_size": 32,
    "score_device": "auto",
    "score_fast_ism": True,
    "score_vcf": None,
    "outside_models": None,
}
SCORE_COLUMNS = ["regime", "replicate", "cell_type", "variant_id", "ref_pred", "alt_pred", "pred_ref_ratio", "log2_fc"]


# ---------------------------------------------------------------- augmentations


def augment(codes: np.ndarray, shift: int, rc: bool, max_shift: int, seq_len: int) -> np.ndarray:
    """Crop shifted windows out of widened codes and maybe reverse-complement them.

    Parameters
    ----------
    codes : numpy.ndarray
        uint8, shape (N, seq_len + 2 * max_shift).
    shift : int
        Positive: the window moves towards higher coordinates (the variant
        moves to index ``centre - shift``).

    Returns
    -------
    numpy.ndarray
        uint8, shape (N, seq_len).
    """
    out = codes[:, max_shift + shift:max_shift + shift + seq_len]
    return COMPLEMENT[out[:, ::-1]] if rc else out


def _onehot(codes: np.ndarray, device: torch.device) -> torch.Tensor:
    return one_hot(torch.from_numpy(np.ascontiguousarray(codes)).to(device))


# ---------------------------------------------------------------- core


def _window_keys(variants: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """First row and inverse index of each distinct window (chrom, pos); (W,), (K,)."""
    key = variants["chrom"].astype(str) + ":" + variants["pos"].astype(str)
    _, first, inverse = np.unique(key.to_numpy(), return_index=True, return_inverse=True)
    return first, inverse


def _predict_chunk(adapter: ModelAdapter, fism: FastISM | None, ref: np.ndarray, alt: np.ndarray,
                   is_snv: np.ndarray, alt_codes: np.ndarray, centre: int, seq_len: int, max_shift: int,
                   augs: list[tuple[bool, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Augmentation-averaged predictions of one chunk.

    Parameters
    ----------
    ref, alt : numpy.ndarray
        Widened uint8 windows, shape (K, seq_len + 2 * max_shift).
    is_snv : numpy.ndarray
        bool (K,).
    alt_codes : numpy.ndarray
        uint8 (K,): the ALT base of SNVs (ignored elsewhere).

    Returns
    -------
    ref_pred, alt_pred : numpy.ndarray
        float64, shape (K, T) each.
    """
    dev = adapter.device
    # identical windows (several ALT alleles at one position) are predicted once
    _, first, inverse = np.unique(ref, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    n, nw = len(ref), len(first)
    fast = np.flatnonzero(is_snv) if fism is not None else np.array([], dtype=np.int64)
    slow = np.setdiff1d(np.arange(n), fast)
    y_ref = torch.zeros(n, adapter.n_tasks, dtype=torch.float64, device=dev)
    y_alt = torch.zeros_like(y_ref)
    widx_fast = torch.from_numpy(inverse[fast]).to(dev)
    for rc, shift in augs:
        ref_x = _onehot(augment(ref[first], shift, rc, max_shift, seq_len), dev)        # (W, 4, L)
        alt_x = _onehot(augment(alt[slow], shift, rc, max_shift, seq_len), dev)         # (S, 4, L)
        if fism is not None:
            cache, yr = fism.reference(ref_x)
            ya = adapter.predict(alt_x) if len(slow) else None
        else:  # REF and ALT in the same batches
            y = adapter.predict(torch.cat([ref_x, alt_x]))
            yr, ya = y[:nw], y[nw:]
        y_ref += yr.double()[torch.from_numpy(inverse).to(dev)]
        if len(slow):
            y_alt[torch.from_numpy(slow).to(dev)] += ya.double()
        if len(fast):
            pos = centre - shift
            pos = seq_len - 1 - pos if rc else pos
            base = COMPLEMENT[alt_codes[fast]] if rc else alt_codes[fast]
            col = one_hot(torch.from_numpy(base.astype(np.int64)).to(dev)[:, None]).squeeze(-1)   # (F, 4)
            ya_fast = fism.substitute(cache, widx_fast, torch.full((len(fast),), pos, device=dev), col)
            y_alt[torch.from_numpy(fast).to(dev)] += ya_fast.double()
    k = float(len(augs))
    return (y_ref / k).cpu().numpy(), (y_alt / k).cpu().numpy()


class _FastISMPerThread:
    """One :class:`FastISM` per thread: its GEMM stem reuses an output buffer between calls,
    so concurrent chunks must not share one."""

    def __init__(self, layers):
        self.layers, self._local = layers, threading.local()
        self.get()                       # fail early (a model without a local convolution)

    def get(self) -> FastISM:
        if not hasattr(self._local, "fism"):
            self._local.fism = FastISM(self.layers)
        return self._local.fism


def score_table(adapter: ModelAdapter, genome: dict[str, np.ndarray], variant_ids, *, rc: bool = True,
                shifts=(-1, 0, 1), fast: bool = True, batch_size: int = 32,
                label: str = "", threads: int = 1) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict]:
    """Score distinct variants with one model, for all its tasks.

    Parameters
    ----------
    adapter : ModelAdapter
    genome : dict
        contig → uint8 codes.
    variant_ids : sequence of str
        ``chrom:pos1:ref:alt``; duplicates are scored once.
    rc : bool
        Average over the reverse complement too.
    shifts : sequence of int
        Window shifts to average over.
    fast : bool
        Use the exact fast ISM path for SNVs when the model allows it.
    batch_size : int
        Distinct windows per chunk (REF sequences per forward pass).
    threads : int
        Chunks scored at once, each on one CPU thread (:func:`caveat.device.map_batches`):
        the scores are the same bits whatever ``threads``.

    Returns
    -------
    variants : pandas.DataFrame
        Scored variants (variant_id, chrom, pos, ref, alt), K rows.
    ref_pred, alt_pred : numpy.ndarray
        Shape (K, T), in ``adapter.task_names`` order.
    info : dict
        Counts: variants_in, scored, skipped per reason, path, seconds, variants_per_s.
    """
    ids = pd.unique(pd.Series(list(variant_ids), dtype=object))
    try:
        variants = parse_variant_ids(ids)
    except ValueError as e:
        raise InputError(label or "variants", str(e), "write variant ids as chrom:pos1:ref:alt") from None
    variants = variants.sort_values(["chrom", "pos", "variant_id"], kind="stable").reset_index(drop=True)
    shifts = [int(s) for s in shifts] or [0]
    max_shift = max(abs(s) for s in shifts)
    augs = [(r, s) for r in ((False, True) if rc else (False,)) for s in shifts]
    seq_len = adapter.seq_len
    centre = seq_len // 2 - 1
    fism = _FastISMPerThread(adapter.layers) if fast and adapter.layers is not None else None
    first, inverse = _window_keys(variants)
    window_rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")[inverse]   # windows in sorted order
    chunk = window_rank // max(1, batch_size)
    kept, refs, alts, skipped = [], [], [], {r: 0 for r in SKIP_REASONS}
    examples: dict[str, list] = {}
    n_padded = 0
    progress = Progress(log, "variants", total=len(variants), label=label)
    bounds = np.flatnonzero(np.diff(chunk)) + 1          # chunk is non-decreasing (variants sorted)
    spans = list(zip(np.r_[0, bounds], np.r_[bounds, len(variants)])) if len(variants) else []

    def score_span(span):
        rows = variants.iloc[span[0]:span[1]]
        w = build_windows(genome, rows, seq_len=seq_len, centre=centre, max_shift=max_shift)
        if not len(w.variants):
            return rows, w, None, None
        alt_codes = w.alt[:, centre + max_shift]
        yr, ya = _predict_chunk(adapter, fism and fism.get(), w.ref, w.alt, w.is_snv, alt_codes, centre, seq_len,
                                max_shift, augs)
        return rows, w, yr, ya

    for rows, w, yr, ya in map_batches(score_span, spans, threads, adapter.device):
        n_padded += w.padded
        for r, n in w.skipped.items():
            skipped[r] += n
        for r, ex in w.skipped_ids.items():
            examples.setdefault(r, []).extend(ex[: 5 - len(examples.get(r, []))])
        if yr is not None:
            kept.append(w.variants)
            refs.append(yr)
            alts.append(ya)
        progress.update(len(rows))
    seconds = progress.close()
    t = adapter.n_tasks
    out = pd.concat(kept, ignore_index=True) if kept else variants.iloc[:0]
    ref_pred = np.concatenate(refs) if refs else np.zeros((0, t))
    alt_pred = np.concatenate(alts) if alts else np.zeros((0, t))
    for r, n in skipped.items():
        if n:
            log.warning("%sskipped %d variant(s): %s (e.g. %s)", f"{label}: " if label else "", n, r,
                        ", ".join(examples.get(r, [])))
    if n_padded:
        log.info("%s%d variant window(s) run off a contig end: padded with N", f"{label}: " if label else "",
                 n_padded)
    info = {"variants_in": int(len(variants)), "scored": int(len(out)), "skipped": skipped, "padded_with_n": n_padded,
            "path": "fast_ism" if fism is not None else "plain", "augmentations": len(augs),
            "seconds": round(seconds, 3), "variants_per_s": round(len(variants) / max(seconds, 1e-9), 1)}
    return out, ref_pred, alt_pred, info


def long_rows(regime: str, variants: pd.DataFrame, ref_pred: np.ndarray, alt_pred: np.ndarray,
              task_names: list[str], replicate: str = "rep1") -> pd.DataFrame:
    """Scores as rows (regime, replicate, cell_type, variant_id, …), one per variant and task: K × T rows.

    Every task keeps every variant, whichever cell type's set it came from (the cross-cell-type
    matrix needs them); ``cell_type`` is the task's name.

    Parameters
    ----------
    variants : pandas.DataFrame
        K scored variants (``variant_id``), in the row order of the predictions.
    ref_pred, alt_pred : numpy.ndarray
        float, shape (K, T).
    task_names : list of str
        T task names.
    """
    k, t = ref_pred.shape
    ratio, lfc = ratios(ref_pred, alt_pred)
    df = pd.DataFrame({"regime": regime, "replicate": replicate,
                       "cell_type": np.tile(np.asarray(task_names, dtype=object), k),
                       "variant_id": np.repeat(variants["variant_id"].to_numpy(), t),
                       "ref_pred": ref_pred.reshape(-1), "alt_pred": alt_pred.reshape(-1),
                       "pred_ref_ratio": ratio.reshape(-1), "log2_fc": lfc.reshape(-1)})
    return df[SCORE_COLUMNS]


def mapped_rows(regime: str, variants: pd.DataFrame, ref_pred: np.ndarray, alt_pred: np.ndarray,
                task_names: list[str], replicate: str = "rep1") -> pd.DataFrame:
    """:func:`long_rows` of the outputs whose task name is not ``-`` (an outside model's unused outputs).

    Parameters
    ----------
    ref_pred, alt_pred : numpy.ndarray
        (K, T) predictions of every model output.
    task_names : list of str
        T names: the cell type of each output, ``-`` for one left out.
    """
    keep = [i for i, t in enumerate(task_names) if t != UNUSED]
    return long_rows(regime, variants, ref_pred[:, keep], alt_pred[:, keep], [task_names[i] for i in keep], replicate)


def vcf_variant_ids(path: str | Path, contig_map: dict[str, str] | None = None) -> list[str]:
    """Every ALT allele of a VCF as ``chrom:pos1:ref:alt`` (contigs renamed by ``contig_map``)."""
    import pysam

    path = Path(path)
    if not path.exists():
        raise InputError(path, "VCF not found", "set score_vcf to an existing VCF (plain or bgzipped)")
    contig_map = contig_map or {}
    ids = []
    try:
        with pysam.VariantFile(str(path)) as vf:
            for rec in vf.fetch():
                chrom = contig_map.get(rec.chrom, rec.chrom)
                ids.extend(f"{chrom}:{rec.pos}:{rec.ref}:{a}" for a in (rec.alts or ()))
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read VCF: {e}", "check it is a valid VCF (bgzip + tabix if compressed)") from None
    return ids


# ---------------------------------------------------------------- step


def resolve_device(name: str) -> torch.device:
    return _resolve_device(name, param="score_device")


def read_variant_sets(path: Path) -> pd.DataFrame:
    """(cell_type, variant_id) rows of one variant table (depth-matched sets or the stratum-matched table)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "variant table not found", "run the match_negatives step first")
    sets = read_parquet(path)
    missing = {"cell_type", "variant_id"} - set(sets.columns)
    if missing:
        raise InputError(path, f"missing column(s) {sorted(missing)}",
                         "use variant_sets.parquet or variant_sets_stratum_matched.parquet from match_negatives")
    return sets[["cell_type", "variant_id"]]


def variants_to_score(paths) -> pd.DataFrame:
    """Every (cell_type, variant_id) that a metric uses: the union of the given variant tables.

    The imbalance and direction tasks use ``variant_sets.parquet``; the Fig. 4B
    direction task uses ``variant_sets_stratum_matched.parquet`` (every tested
    variant in the strata, not only the sets' ones), so both are scored.
    """
    parts = [read_variant_sets(Path(p)) for p in paths]
    out = pd.concat(parts, ignore_index=True).drop_duplicates().sort_values(["cell_type", "variant_id"])
    log.info("variants to score: %d (cell type, variant) rows from %s", len(out), ", ".join(Path(p).name for p in paths))
    return out.reset_index(drop=True)


def model_jobs(outdir: Path, regimes: list[str], cell_types: list[str], n_replicates: int = 1
               ) -> list[tuple[str, str | None, int, Path]]:
    """(regime, cell_type or None, replicate, checkpoint) for every model to score with."""
    jobs = [(r, ct, k, outdir / "models" / model_path(r, ct, k, n_replicates) / "model.pt")
            for r, ct, k in model_units(regimes, cell_types, n_replicates)]
    missing = [str(p) for *_, p in jobs if not p.exists()]
    if missing:
        raise InputError(missing[0], "model checkpoint not found",
                         "run the train step for every regime in `regimes` (with the same train_replicates)")
    return jobs


def run_step(ctx: StepContext) -> dict:
    p, out = ctx.params, ctx.outdir
    tables = [out / "variant_sets.parquet"] + [t for t in [out / "variant_sets_stratum_matched.parquet"] if t.exists()]
    sets = variants_to_score(tables)
    cell_types = sorted(sets["cell_type"].unique())
    vcf_ids = vcf_variant_ids(p["score_vcf"], read_contig_map(p.get("contig_map"))) if p.get("score_vcf") else []
    ctx.log.info("read %d variant-set rows (%d distinct variants, %d cell types)%s", len(sets),
                 sets["variant_id"].nunique(), len(cell_types),
                 f"; {len(vcf_ids)} ALT alleles from {Path(p['score_vcf']).name}" if vcf_ids else "")
    all_ids = pd.unique(pd.concat([sets["variant_id"], pd.Series(vcf_ids, dtype=object)]))
    try:
        contigs = sorted(set(parse_variant_ids(all_ids)["chrom"])) if len(all_ids) else []
    except ValueError as e:
        raise InputError(out / "variant_sets.parquet", str(e), "variant ids must be chrom:pos1:ref:alt") from None
    in_fasta = _fasta_contigs(p["fasta"])
    genome = read_genome(p["fasta"], [c for c in contigs if c in in_fasta])
    device = resolve_device(p["score_device"])
    kw = dict(rc=p["score_rc"], shifts=p["score_shifts"], fast=p["score_fast_ism"], batch_size=p["score_batch_size"],
              threads=ctx.threads)
    scores, vcf_scores, by_model = [], [], {}
    n_reps = int(p.get("train_replicates", 1))
    for regime, ct, k, ckpt in model_jobs(out, p["regimes"], cell_types, n_reps):
        label, rep = model_path(regime, ct, k, n_reps), replicate_label(k)
        adapter = load_model(ckpt, device=device, batch_size=p["score_batch_size"])
        # every model scores every cell type's variants (the cross-cell-type matrix): see the module docstring
        v, yr, ya, info = score_table(adapter, genome, sets["variant_id"], label=label, **kw)
        scores.append(long_rows(regime, v, yr, ya, adapter.task_names, rep))
        vinfo = None
        if vcf_ids:
            v, yr, ya, vinfo = score_table(adapter, genome, vcf_ids, label=f"{label} (vcf)", **kw)
            vcf_scores.append(long_rows(regime, v, yr, ya, adapter.task_names, rep))
        by_model[label] = model_entry(info, vinfo)
    for m in outside_models(p, out):
        adapter = ModelAdapter(open_model(m.path), m.seq_len, task_names=m.cell_types, device=device,
                               batch_size=p["score_batch_size"], source=str(m.path))
        v, yr, ya, info = score_table(adapter, genome, sets["variant_id"], label=m.name, **kw)
        scores.append(mapped_rows(m.name, v, yr, ya, adapter.task_names))
        vinfo = None
        if vcf_ids:
            v, yr, ya, vinfo = score_table(adapter, genome, vcf_ids, label=f"{m.name} (vcf)", **kw)
            vcf_scores.append(mapped_rows(m.name, v, yr, ya, adapter.task_names))
        by_model[m.name] = model_entry(info, vinfo)
    table = _sorted(pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=SCORE_COLUMNS))
    write_parquet(table, out / "variant_scores.parquet")
    vt = _sorted(pd.concat(vcf_scores, ignore_index=True)) if vcf_ids else None
    if vt is not None:
        write_parquet(vt, out / "vcf_scores.parquet")
    summary = run_summary(by_model, len(table), None if vt is None else len(vt))
    write_json(summary, out / "score_variants.summary.json")
    return {k: v for k, v in summary.items() if k != "by_model"}


#: score_table figures that change from run to run: left out of the summaries
TIMINGS = ("seconds", "variants_per_s")


def model_label(regime: str, cell_type: str | None, replicate: int | None = None, n_replicates: int = 1) -> str:
    """A model's key in the summary: its folder under ``models/`` (:func:`caveat.regimes.model_path`:
    the regime, ``/rep<k>`` with several replicates, ``/<cell type>`` for a single-task model);
    a model given without a replicate (an outside model) is keyed by regime and cell type only."""
    return model_path(regime, cell_type, replicate or 1, n_replicates if replicate else 1)


def model_entry(info: dict | None, vcf_info: dict | None = None) -> dict:
    """One model's ``by_model`` entry: :func:`score_table`'s figures for the variant sets, with
    ``vcf`` those of the ``score_vcf`` alleles; timings left out (the file is deterministic)."""
    entry = {k: v for k, v in (info or {}).items() if k not in TIMINGS}
    if vcf_info is not None:
        entry["vcf"] = {k: v for k, v in vcf_info.items() if k not in TIMINGS}
    return entry


def run_summary(by_model: dict, rows: int, vcf_rows: int | None = None) -> dict:
    """``score_variants.summary.json``, for both engines: the local step (every model in one
    process) and ``score_variants.py --merge`` (Nextflow's SCORE_VARIANTS_MERGE, from each
    SCORE_VARIANTS task's one-model summary, itself this function over one model).

    Parameters
    ----------
    by_model : dict
        :func:`model_label` → :func:`model_entry`.
    rows, vcf_rows : int
        Rows of the score table and of the VCF score table (``None``: no ``score_vcf``).

    Returns
    -------
    dict
        ``rows``, ``models``, ``skipped`` (variant-set variants left unscored, all models),
        ``vcf_rows`` (with a VCF) and ``by_model``, models in regime order then by label.
    """
    order = {r: i for i, r in enumerate(REGIMES)}

    def key(label: str):
        regime = label.split("/", 1)[0]
        return order.get(regime, len(order)), label

    out = {"rows": int(rows), "models": len(by_model),
           "skipped": int(sum(sum(e.get("skipped", {}).values()) for e in by_model.values()))}
    if vcf_rows is not None:
        out["vcf_rows"] = int(vcf_rows)
    out["by_model"] = {k: by_model[k] for k in sorted(by_model, key=key)}
    return out


def merge_summaries(summaries, rows: int, vcf_rows: int | None) -> dict:
    """The run's summary from the one-model summaries of the SCORE_VARIANTS tasks.

    Parameters
    ----------
    summaries : list of (path, dict)
        Each task's ``--summary`` JSON (:func:`run_summary` over its model) and its file.
    rows, vcf_rows : int
        Rows of the merged tables (``vcf_rows`` ``None`` without VCF tables): the summaries' row
        counts must add up to them, else the summaries are not those of the tables.
    """
    by_model, got_rows, got_vcf = {}, 0, 0
    for where, s in summaries:
        if "by_model" not in s or "rows" not in s:
            raise InputError(where, "not a score_variants summary (no rows/by_model)",
                             "pass the --summary JSONs the scoring tasks wrote")
        for label, entry in s["by_model"].items():
            if label in by_model:
                raise InputError(where, f"model {label!r} in two summaries", "pass each model's summary once")
            by_model[label] = entry
        got_rows += int(s["rows"])
        got_vcf += int(s.get("vcf_rows", 0))
    names = ", ".join(str(w) for w, _ in summaries)
    if got_rows != rows or got_vcf != (vcf_rows or 0):
        raise InputError(names, f"the summaries count {got_rows} score rows and {got_vcf} VCF score rows, the "
                                f"merged tables hold {rows} and {vcf_rows or 0}",
                         "pass the summaries written together with the merged tables")
    return run_summary(by_model, rows, vcf_rows)


def _fasta_contigs(fasta) -> set[str]:
    from .genome import fasta_lengths

    return set(fasta_lengths(fasta))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    order = {r: i for i, r in enumerate(REGIMES)}
    df = df.assign(_r=df["regime"].map(order).fillna(len(order)))
    return df.sort_values(["_r", "regime", "replicate", "cell_type", "variant_id"], kind="stable").drop(columns="_r").reset_index(drop=True)


def input_files(params: dict) -> list:
    return [f for f in (params.get("fasta"), params.get("score_vcf")) if f] + sheet_files(params)


STEP = Step(name="score_variants", run=run_step, needs=("train", "match_negatives"),
            optional_needs=("train_baseline",),   # its models/kmer_baseline/outside.json (caveat.outside_models)
            params={**PARAMS, "train_replicates": 3},
            input_files=input_files, path_params=("score_vcf", "outside_models"),
            doc="REF vs ALT centre-bin predictions for every tested variant (ISM)")


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat score_variants", description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model.pt from `caveat train`, or any TorchScript (N,4,L)→(N,T) model")
    ap.add_argument("--regime", default="external", help="regime label written in the table (default: external)")
    ap.add_argument("--fasta", help="reference genome FASTA")
    ap.add_argument("--variant-sets", nargs="+", metavar="PARQUET",
                    help="variant tables (variant_sets.parquet, variant_sets_stratum_matched.parquet): score the "
                         "union of their (cell type, variant) rows")
    ap.add_argument("--replicate", type=int, help="the model's replicate number (rows labelled rep<k>; default: "
                                                  "rep1, and the summary key has no replicate)")
    ap.add_argument("--train-replicates", type=int, default=STEP.params["train_replicates"],
                    help="with --replicate: replicates per regime of the run (the summary key names the "
                         "replicate when > 1)")
    ap.add_argument("--cell-type", help="single-task model: the cell type it predicts (its task's name; it scores "
                                         "every cell type's variants, as every task does)")
    ap.add_argument("--vcf", help="score every ALT allele of this VCF, rows for every task")
    ap.add_argument("--out-vcf", help="with --vcf: write the VCF's scores here (vcf_scores.parquet), not into --out; "
                                      "with --merge: the merged --merge-vcf tables")
    ap.add_argument("--contig-map", help="two-column TSV: contig name in the VCF → name in the FASTA")
    ap.add_argument("--task-names", nargs="+", help="output names of a TorchScript model (default task0…); "
                                                      "- drops an output (an outside model's unused task)")
    ap.add_argument("--seq-len", type=int, default=1344, help="input length of a TorchScript model")
    add_param_options(ap, {k: v for k, v in PARAMS.items() if k not in ("regimes", "score_vcf", "outside_models")},
                      aliases={"score_rc": ["--rc"], "score_shifts": ["--shifts"], "score_batch_size": ["--batch-size"],
                               "score_device": ["--device"], "score_fast_ism": ["--fast-ism"]},
                      helps={"score_rc": "average over the reverse complement (--no-rc: do not)",
                             "score_shifts": "shifts to average over",
                             "score_batch_size": "distinct windows per forward pass (32 suits CPU caches; raise on GPU)",
                             "score_device": "auto, cpu, cuda, cuda:N",
                             "score_fast_ism": "the fast ISM path (--no-fast-ism: plain path only, same numbers, "
                                               "slower)"})
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads: chunks scored at once (the scores do not depend on it)")
    ap.add_argument("--out", default="variant_scores.parquet", help="output Parquet")
    ap.add_argument("--summary", help="summary JSON (default: OUT with .summary.json)")
    ap.add_argument("--merge", nargs="+", metavar="PARQUET",
                    help="instead of scoring: concatenate per-model score tables into OUT (Nextflow's collect) and "
                         "write the run's summary from --model-summaries")
    ap.add_argument("--merge-vcf", nargs="+", metavar="PARQUET",
                    help="with --merge: the per-model VCF score tables, concatenated into --out-vcf")
    ap.add_argument("--model-summaries", nargs="+", metavar="JSON",
                    help="with --merge: every per-model --summary JSON (one per table)")
    return ap


def _concat_tables(paths) -> pd.DataFrame:
    """Per-model score tables → one sorted table; a (regime, task, variant) row twice is refused."""
    parts = []
    for p in paths:
        df = read_parquet(p)
        missing = set(SCORE_COLUMNS) - set(df.columns)
        if missing:
            raise InputError(p, f"missing column(s) {sorted(missing)}", "merge tables written by score_variants")
        parts.append(df[SCORE_COLUMNS])
    table = _sorted(pd.concat(parts, ignore_index=True))
    dup = table.duplicated(["regime", "replicate", "cell_type", "variant_id"])
    if dup.any():
        r = table[dup].iloc[0]
        raise InputError(", ".join(map(str, paths)), f"{int(dup.sum())} duplicated rows, e.g. "
                         f"{r['regime']}/{r['replicate']}/{r['cell_type']}/{r['variant_id']}",
                         "merge each regime × replicate × cell type table once")
    return table


def merge_tables(paths: list[str], out: str, summary: str | None, model_summaries: list[str],
                 vcf_paths: list[str] | None = None, out_vcf: str | None = None) -> dict:
    """Concatenate per-model score tables (one per regime / single-task cell type) into the local
    engine's ``variant_scores.parquet`` (and ``vcf_scores.parquet``) and write its summary
    (:func:`merge_summaries` of the per-model ``model_summaries``). Nothing is written on an error."""
    table = _concat_tables(paths)
    vt = _concat_tables(vcf_paths) if vcf_paths else None
    result = merge_summaries([(p, read_json(p)) for p in model_summaries], len(table),
                             None if vt is None else len(vt))
    write_parquet(table, out)
    if vt is not None:
        write_parquet(vt, out_vcf)
    write_json(result, summary or str(Path(out).with_suffix("")) + ".summary.json")
    return result


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.merge:
        if not a.model_summaries:
            ap.error("--merge needs --model-summaries (the per-model --summary JSONs)")
        if bool(a.merge_vcf) != bool(a.out_vcf):
            ap.error("--merge-vcf and --out-vcf go together")
        merge_tables(a.merge, a.out, a.summary, a.model_summaries, a.merge_vcf, a.out_vcf)
        return 0
    if not a.model or not a.fasta:
        raise InputError("--model/--fasta", "both are needed to score", "pass --model MODEL --fasta GENOME.fa")
    if not a.variant_sets and not a.vcf:
        raise InputError("--variant-sets/--vcf", "nothing to score", "pass --variant-sets and/or --vcf")
    if a.out_vcf and not a.vcf:
        ap.error("--out-vcf needs --vcf")
    module = open_model(a.model)   # TorchScript, a pickled nn.Module or a caveat checkpoint (its own input length)
    seq_len = int(module.config.seq_len) if hasattr(module, "config") and hasattr(module.config, "seq_len") else a.seq_len
    adapter = ModelAdapter(module, seq_len, task_names=a.task_names, device=resolve_device(a.score_device),
                           batch_size=a.score_batch_size, source=str(a.model))
    if a.cell_type:
        adapter.task_names = [a.cell_type] if adapter.n_tasks == 1 else adapter.task_names
    wanted_all = []
    if a.variant_sets:
        wanted_all.append((variants_to_score(a.variant_sets)["variant_id"], "variant_sets"))
    if a.vcf:
        wanted_all.append((vcf_variant_ids(a.vcf, read_contig_map(a.contig_map)), "vcf"))
    ids = pd.unique(pd.concat([pd.Series(list(i), dtype=object) for i, _ in wanted_all]))
    try:
        contigs = set(parse_variant_ids(ids)["chrom"])
    except ValueError as e:
        raise InputError(", ".join(a.variant_sets or []) or a.vcf, str(e), "variant ids must be chrom:pos1:ref:alt") from None
    genome = read_genome(a.fasta, sorted(contigs & _fasta_contigs(a.fasta)))
    parts, infos = {}, {}
    for ids_i, kind in wanted_all:
        v, yr, ya, infos[kind] = score_table(adapter, genome, ids_i, rc=a.score_rc, shifts=a.score_shifts,
                                             fast=a.score_fast_ism, batch_size=a.score_batch_size, label=a.regime,
                                             threads=max(1, a.threads))
        parts[kind] = mapped_rows(a.regime, v, yr, ya, adapter.task_names, replicate_label(a.replicate or 1))
    vt = _sorted(parts.pop("vcf")) if a.out_vcf else None
    table = _sorted(pd.concat(parts.values(), ignore_index=True).drop_duplicates(["regime", "cell_type", "variant_id"]))
    # one model's summary, as the local engine writes the run's (--merge joins them)
    entry = model_entry(infos.get("variant_sets"), infos.get("vcf"))
    label = model_label(a.regime, a.cell_type, a.replicate, a.train_replicates)
    summary = run_summary({label: entry}, len(table), None if vt is None else len(vt))
    write_parquet(table, a.out)
    if vt is not None:
        write_parquet(vt, a.out_vcf)
    write_json(summary, a.summary or str(Path(a.out).with_suffix("")) + ".summary.json")
    return 0


__all__ = ["STEP", "augment", "build_parser", "long_rows", "main", "mapped_rows", "merge_summaries", "merge_tables", "model_entry",
           "ratios", "run_step", "run_summary", "score_table", "vcf_variant_ids"]
