#!/usr/bin/env python3
"""Variant scoring speed: caveat's scorer vs tangermeme's ``substitution_effect``.

Same model (the study's 5.84 M-parameter Basset, random weights with realistic
batchnorm statistics, or ``--checkpoint``), same SNVs (variant-centred 1344 bp
windows on a random genome), same CPU and thread count, in the same run, with
and without reverse-complement × shift (−1, 0, +1) averaging. Repetitions are
interleaved and the best time of each method is kept (the machine is shared).
The outputs of both are checked to agree (1e-4 relative), so both did the
same work.

    .venv/bin/python benchmarks/bench_ism.py --variants 128 --threads 1

It also times the two forward passes alone: caveat's REF pass (batchnorm
folded, channels-last convolutions, the fast path's fixed cost) and a plain
eager forward (``tangermeme.predict``). tangermeme runs two plain passes per
SNV and caveat one REF pass plus a narrow ALT pass, so ``2 * plain / ref`` is
the speedup ceiling for one SNV per window: it is set by how fast this CPU runs
the model's convolutions, not by the ALT path.

Needs ``pip install tangermeme`` (benchmark only; not a caveat dependency).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from caveat.genome import COMPLEMENT
from caveat.model_adapter import ModelAdapter, load_model
from caveat.models import BassetModel, ModelConfig, calibrate_batchnorm
from caveat.score_variants import score_table


def random_model(n_tasks: int, seed: int) -> nn.Module:
    """Default-size Basset with batchnorm statistics from random sequences
    (so activations keep a trained model's scale)."""
    torch.manual_seed(seed)
    m = BassetModel(ModelConfig(n_tasks=n_tasks))
    return calibrate_batchnorm(m, nn.functional.one_hot(torch.randint(0, 4, (32, 1344)), 4).transpose(1, 2).float())


def make_variants(n: int, seed: int, genome_len: int = 2_000_000):
    rng = np.random.default_rng(seed)
    contig = rng.integers(0, 4, genome_len).astype(np.uint8)
    pos = np.sort(rng.choice(np.arange(2000, genome_len - 2000), n, replace=False))
    alt = (contig[pos] + rng.integers(1, 4, n)) % 4
    ids = [f"chr1:{p + 1}:{'ACGT'[contig[p]]}:{'ACGT'[a]}" for p, a in zip(pos, alt)]
    return {"chr1": contig}, pos, alt.astype(np.int64), ids


def all_alts(genome, pos):
    """Every ALT base at each site (3 per site): sites in a VCF with several ALT alleles,
    or the full ISM of a variant's position."""
    contig = genome["chr1"]
    ref = contig[pos]
    p3 = np.repeat(pos, 3)
    a3 = ((np.repeat(ref, 3) + np.tile([1, 2, 3], len(pos))) % 4).astype(np.int64)
    ids = [f"chr1:{p + 1}:{'ACGT'[contig[p]]}:{'ACGT'[a]}" for p, a in zip(p3, a3)]
    return p3, a3, ids


def tangermeme_scores(model, contig, pos, alt, augs, batch_size):
    """Mean REF and ALT predictions over ``augs`` with tangermeme.substitution_effect."""
    from tangermeme.variant_effect import substitution_effect

    n, seq_len, centre = len(pos), 1344, 671
    y_ref = y_alt = 0.0
    for rc, shift in augs:
        idx = (pos - centre + shift)[:, None] + np.arange(seq_len)[None, :]
        codes = contig[idx]
        p, a = np.full(n, centre - shift), alt
        if rc:
            codes, p, a = COMPLEMENT[codes[:, ::-1]], seq_len - 1 - p, (3 - alt)
        x = nn.functional.one_hot(torch.from_numpy(codes.astype(np.int64)), 4).transpose(1, 2).float()
        subs = torch.from_numpy(np.stack([np.arange(n), p, a], axis=1)).long()
        res = substitution_effect(model, x, subs, batch_size=batch_size, device="cpu")
        y_before, y_after = (res.y_before, res.y_after) if hasattr(res, "y_before") else res
        y_ref = y_ref + y_before.double().numpy()
        y_alt = y_alt + y_after.double().numpy()
    return y_ref / len(augs), y_alt / len(augs)


def forward_bound(model, adapter, contig, pos, batch_size, reps):
    """Seconds per window of caveat's REF pass (the fast path's fixed cost) and of a
    plain eager forward (what tangermeme runs twice per variant), best of ``reps``.

    With ALT predictions for free the fast path's speedup over two plain passes
    would be ``2 * plain / ref``: the ceiling of any exact single-SNV scorer that
    runs a full REF pass."""
    from tangermeme.predict import predict

    from caveat.fast_ism import FastISM

    idx = (pos - 671)[:, None] + np.arange(1344)[None, :]
    x = nn.functional.one_hot(torch.from_numpy(contig[idx].astype(np.int64)), 4).transpose(1, 2).float()
    fism = FastISM(adapter.layers)

    def ref_pass():
        for i in range(0, len(x), batch_size):
            fism.reference(x[i:i + batch_size])

    times = {"ref": [], "plain": []}
    ref_pass()
    for _ in range(reps):
        t = time.perf_counter()
        ref_pass()
        times["ref"].append(time.perf_counter() - t)
        t = time.perf_counter()
        predict(model, x, batch_size=batch_size, device="cpu")
        times["plain"].append(time.perf_counter() - t)
    return min(times["ref"]) / len(x), min(times["plain"]) / len(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=128)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass, both tools (tangermeme default 32)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--checkpoint", help="a caveat model.pt (default: random default-size model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--multiallelic-sites", type=int, default=32,
                    help="sites scored with all 3 ALT bases (shared REF windows); 0 to skip")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.checkpoint:
        adapter = load_model(a.checkpoint, device=a.device, batch_size=a.batch_size)
        model = adapter.model
    else:
        model = random_model(a.tasks, 0)
        adapter = ModelAdapter(model, 1344, device=a.device, batch_size=a.batch_size)
    n_params = sum(p.numel() for p in model.parameters())
    genome, pos, alt, ids = make_variants(a.variants, 1)
    full = [(r, s) for r in (False, True) for s in (-1, 0, 1)]
    settings = {"no averaging": ([(False, 0)], pos, alt, ids),
                "rc x shifts -1,0,+1": (full, pos, alt, ids)}
    if a.multiallelic_sites:
        settings["3 ALTs per site, rc x shifts"] = (full, *all_alts(genome, pos[:a.multiallelic_sites]))
    # warm-up (numba compilation in tangermeme, oneDNN kernel selection, first-touch allocations)
    tangermeme_scores(model, genome["chr1"], pos[:4], alt[:4], [(False, 0)], a.batch_size)
    score_table(adapter, genome, ids[:4], rc=False, shifts=[0], batch_size=a.batch_size)
    score_table(adapter, genome, ids[:4], rc=False, shifts=[0], fast=False, batch_size=a.batch_size)
    results = {}
    for name, (augs, pos_s, alt_s, ids_s) in settings.items():
        shifts = sorted({s for _, s in augs})
        rc = any(r for r, _ in augs)
        times = {"tangermeme": [], "caveat_fast": [], "caveat_plain": []}
        for _ in range(a.reps):
            t = time.perf_counter()
            tr, ta = tangermeme_scores(model, genome["chr1"], pos_s, alt_s, augs, a.batch_size)
            times["tangermeme"].append(time.perf_counter() - t)
            for key, fast in (("caveat_fast", True), ("caveat_plain", False)):
                t = time.perf_counter()
                v, cr, ca, info = score_table(adapter, genome, ids_s, rc=rc, shifts=shifts, fast=fast,
                                              batch_size=a.batch_size)
                times[key].append(time.perf_counter() - t)
                order = pd.Index(v["variant_id"]).get_indexer(ids_s)   # back to the input order
                rel = max(np.abs(cr[order] - tr).max() / np.abs(tr).min(), np.abs(ca[order] - ta).max() / np.abs(ta).min())
                assert rel < 1e-4, f"{key} disagrees with tangermeme: {rel:.2e}"
        best = {k: min(v) for k, v in times.items()}
        results[name] = {k: {"seconds": round(s, 3), "variants_per_s": round(len(ids_s) / s, 2)}
                         for k, s in best.items()}
        results[name]["variants"] = len(ids_s)
        results[name]["speedup_fast_vs_tangermeme"] = round(best["tangermeme"] / best["caveat_fast"], 2)
        results[name]["speedup_plain_vs_tangermeme"] = round(best["tangermeme"] / best["caveat_plain"], 2)
    ref_s, plain_s = forward_bound(model, adapter, genome["chr1"], pos, a.batch_size, a.reps)
    results["forward_bound"] = {"caveat_ref_pass_seq_per_s": round(1 / ref_s, 1),
                                "plain_forward_seq_per_s": round(1 / plain_s, 1),
                                "speedup_ceiling": round(2 * plain_s / ref_s, 2)}
    print(f"model: {n_params:,} parameters, {adapter.n_tasks} tasks; device {a.device}; "
          f"{a.threads} thread(s); batch {a.batch_size}; best of {a.reps}")
    fb = results.pop("forward_bound")
    print(f"\nforward passes: caveat REF pass {fb['caveat_ref_pass_seq_per_s']:.1f} seq/s, plain eager forward "
          f"(tangermeme.predict) {fb['plain_forward_seq_per_s']:.1f} seq/s\n"
          f"  ceiling for one SNV per window (ALT for free): {fb['speedup_ceiling']:.2f}x")
    for name, r in results.items():
        print(f"\n{name} ({r['variants']} SNVs):")
        for k in ("tangermeme", "caveat_plain", "caveat_fast"):
            print(f"  {k:13s} {r[k]['variants_per_s']:8.2f} variants/s  ({r[k]['seconds']:.2f} s)")
        print(f"  speedup caveat fast vs tangermeme: {r['speedup_fast_vs_tangermeme']:.2f}x "
              f"(plain path: {r['speedup_plain_vs_tangermeme']:.2f}x)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"variants": a.variants, "threads": a.threads, "parameters": n_params, "results": results,
                       "forward_bound": fb}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
