"""``caveat benchmark``: score any model on a run's benchmark bundle, without the upstream steps.

    caveat benchmark --bundle results/benchmark_bundle --model my_model.pt \\
        --tasks "ctA;ctB;-;ctC" --out bench_my_model/

The bundle (:mod:`caveat.bundle`) holds the test windows with their targets, the
reference-accuracy peak sites with theirs, the labelled variant sets and the genome
stretches all of these read. The model (TorchScript, a pickled ``nn.Module`` or a caveat
checkpoint mapping one-hot (N, 4, L) → (N, T); ``--tasks`` maps its T outputs to the bundle's
cell types, positionally, ``-`` for an unused output, as the ``outside_models`` sheet does)
is run through the pipeline's own code under the bundle's recorded settings:

* predictions — predict's functions (test windows and peak-centred windows, averaged over
  reverse complement and shifts as the run did);
* variant scores — score_variants' ISM (:func:`caveat.score_variants.score_table`);
* metrics — evaluate's :func:`caveat.evaluate.evaluate` (same metric names, strata and
  bootstrap seeds), so a model listed in the run's ``outside_models`` and the same model
  benchmarked here get the same metric rows (regime tests, which need a second model, aside).

Writes ``<out>/metrics.parquet`` (metrics.parquet's columns), ``<out>/predictions.parquet``,
``<out>/variant_scores.parquet`` and ``<out>/benchmark.summary.json`` (headline figures per
cell type). A command, not a pipeline step: it may reuse the steps' functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .bundle import read_bundle
from .dataset_io import GENOME_PAD
from .loader import GenomeCodes
from .device import resolve_device
from .errors import InputError
from .evaluate import evaluate, summarise
from .io import read_json, write_json, write_parquet
from .log import get_logger
from .model_adapter import ModelAdapter
from .outside_models import OutsideModel, check_names, check_outside_model, open_model, parse_tasks
from .predict import outside_predictions
from .score_variants import mapped_rows, score_table

log = get_logger("benchmark")

#: settings a bundle may lack (an older bundle): the pipeline's defaults
DEFAULTS = {"predict_average": True, "predict_batch_size": 256, "predict_peak_value": "centre", "score_rc": True,
            "score_shifts": [-1, 0, 1], "score_batch_size": 32, "score_fast_ism": True, "seed": 0}


def benchmark(bundle_dir, model: OutsideModel, out, *, device: str = "auto", threads: int = 1) -> dict:
    """Predict, score and evaluate ``model`` on a bundle; write the outputs into ``out``.

    Returns
    -------
    dict
        The summary written as ``benchmark.summary.json``.
    """
    b = read_bundle(bundle_dir)
    man = b.manifest
    check_names([model], lambda m: "--name")
    check_outside_model(model, b.cell_types, "--tasks")
    if model.seq_len > int(man["max_seq_len"]):
        raise InputError("--seq-len", f"the model reads {model.seq_len} bp; the bundle's sequences cover windows of "
                                      f"{man['max_seq_len']} bp", "benchmark a model with a shorter input, or run the "
                                                                  "pipeline with the model in outside_models")
    p = {**DEFAULTS, **man["settings"], "threads": max(1, int(threads)), "train_bf16": False}
    dev = resolve_device(device)
    pred = outside_predictions(model, b.windows.assign(split="test"), b.targets, b.cell_types,
                               GenomeCodes.from_dict(b.genome, pad=GENOME_PAD),
                               b.peaks, p, dev, b.lengths)
    ids = pd.concat([b.sets["variant_id"]] + ([b.strata_sets["variant_id"]] if b.strata_sets is not None else []))
    adapter = ModelAdapter(open_model(model.path), model.seq_len, task_names=model.cell_types, device=dev,
                           batch_size=int(p["score_batch_size"]), source=str(model.path))
    v, yr, ya, info = score_table(adapter, b.genome, ids.drop_duplicates().sort_values(), rc=p["score_rc"],
                                  shifts=p["score_shifts"], fast=p["score_fast_ism"],
                                  batch_size=int(p["score_batch_size"]), label=model.name, threads=p["threads"])
    scores = mapped_rows(model.name, v, yr, ya, adapter.task_names)
    metrics = evaluate(pred, scores, b.sets, peaks=b.peaks, strata_sets=b.strata_sets, params=p,
                       seed=int(p["seed"]), scores_path=str(Path(bundle_dir) / "variant_sets.parquet"))
    out = Path(out)
    write_parquet(pred, out / "predictions.parquet")
    write_parquet(scores, out / "variant_scores.parquet")
    write_parquet(metrics, out / "metrics.parquet")
    summary = {**summarise(metrics, {"bundle": True}), "model": model.name, "model_file": model.path.name,
               "tasks": model.tasks, "bundle_format_version": man["format_version"],
               "scored_variants": info["scored"], "skipped_variants": sum(info["skipped"].values()),
               "scoring_path": info["path"]}
    write_json(summary, out / "benchmark.summary.json")
    log.info("benchmark of %s: %d metric rows in %s", model.name, len(metrics), out / "metrics.parquet")
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat benchmark", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="a run's benchmark_bundle/ folder")
    ap.add_argument("--model", required=True, help="TorchScript, pickled nn.Module or caveat checkpoint: "
                                                    "one-hot (N, 4, L) → (N, T)")
    ap.add_argument("--tasks", required=True, help="the cell type of each of the T outputs, ';'-separated, - for an "
                                                   "unused output (e.g. 'ctA;ctB;-')")
    ap.add_argument("--name", help="the model's label in the tables (default: the file's stem)")
    ap.add_argument("--seq-len", type=int, help="the model's input length (default: the bundle's window length)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the numbers do not depend on it)")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    path = Path(a.model)
    cts = parse_tasks(a.tasks, "--tasks", "the model")
    seq_len = a.seq_len
    if seq_len is None:
        man = Path(a.bundle) / "manifest.json"
        seq_len = int(read_json(man)["window_size"]) if man.is_file() else 1344
    names = [ct if ct != "-" else f"task{i}" for i, ct in enumerate(cts)]
    model = OutsideModel(a.name or path.stem, path, names, cts, int(seq_len))
    s = benchmark(a.bundle, model, a.out, device=a.device, threads=a.threads)
    print(f"metrics: {Path(a.out) / 'metrics.parquet'} ({s['rows']} rows)")
    return 0


__all__ = ["benchmark", "build_parser", "main"]
