#!/usr/bin/env python3
"""Benchmark: wall time of the per-sample steps (wasp_remap, count_alleles, insertions) with
``--threads 1`` and ``--threads 2``, and whether their outputs are byte-identical.

Usage::

    python benchmarks/bench_parallel.py --demo DIR [--samples N] [--repeats R] [--threads 1 2] [--work DIR]
    python benchmarks/bench_parallel.py --demo DIR --simulate large --donors D1 ...

``DIR`` is a ``caveat simulate --preset demo`` study (``--simulate PRESET`` simulates it first
when ``DIR`` holds none, seed 1; ``--donors D1`` keeps only that donor's samples: the larger
preset's genome and depth per sample at a third of its simulation time); it is only read (its BAMs, genome, VCF
and index are linked into ``--work``, the outputs go there). ``--samples`` keeps the first N
samplesheet rows (default all). Runs are interleaved (t1, t2, t1, t2, ...) so that load on a
shared machine hits both alike; each line prints one run's step times, and the end the range
per thread count and whether every output file of every run equals the first run's bytes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))

from caveat.engine import run_pipeline  # noqa: E402
from caveat.log import setup_logging  # noqa: E402
from caveat.params import load_params  # noqa: E402
from caveat.pipeline import pipeline_steps  # noqa: E402

STEPS = ("wasp_remap", "count_alleles", "insertions")


def study_link(demo: Path, work: Path, n_samples: int | None) -> Path:
    """``work/study``: the demo's files linked (read only), its samplesheet cut to ``n_samples`` rows."""
    study = work / "study"
    study.mkdir(parents=True)
    for f in demo.iterdir():
        if f.name == "results":
            continue
        if f.name == "samplesheet.csv":
            lines = f.read_text().splitlines()
            keep = lines if n_samples is None else lines[:1 + n_samples]
            (study / f.name).write_text("\n".join(keep) + "\n")
        elif f.name == "params.yaml":
            shutil.copy2(f, study / f.name)
        else:
            (study / f.name).symlink_to(f.resolve())
    return study


def _cpu() -> float:
    """CPU seconds of this process (all its threads) and of its waited-for children (aligner,
    samtools, worker processes)."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def timed_steps(times: dict) -> list:
    """The per-sample steps, each run wrapped to record its wall seconds in ``times``."""
    out = []
    for s in pipeline_steps():
        if s.name not in STEPS:
            continue

        def run(ctx, _run=s.run, _name=s.name):
            t0, c0 = time.perf_counter(), _cpu()
            try:
                return _run(ctx)
            finally:
                times[_name] = time.perf_counter() - t0
                times[_name + ".cpu"] = _cpu() - c0

        out.append(replace(s, run=functools.wraps(s.run)(run)))
    return out


def simulate_study(preset: str, donors: str | None, out: Path, threads: int) -> None:
    """``caveat simulate --preset PRESET --seed 1`` into ``out``, with only ``donors`` when given."""
    from caveat.simulate import simulate
    from caveat.simulate.presets import get_preset, with_donors

    p = get_preset(preset)
    if donors:
        p = with_donors(p, donors.split(","))
    t0 = time.perf_counter()
    summary = simulate(p, 1, out, threads=threads)
    print(f"simulated {preset} (donors {', '.join(p.donors)}): {summary['samples']} samples, "
          f"{summary['genome_bp']:,} bp in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def digests(outdir: Path) -> dict[str, str]:
    """Digest of every output file. The engine's markers (pipeline_info/) are left out: they hold
    the code's digest, which changes when the tree is edited during a long benchmark
    (tests/test_parallel.py compares them too, on a fixed tree)."""
    return {p.relative_to(outdir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(outdir.rglob("*")) if p.is_file() and "pipeline_info" not in p.relative_to(outdir).parts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", type=Path)
    ap.add_argument("--simulate", metavar="PRESET", help="simulate PRESET into --demo first when it holds no study")
    ap.add_argument("--donors", help="with --simulate: only these donors (comma-separated)")
    a = ap.parse_args(argv)
    setup_logging(logging.WARNING)
    if a.simulate and not (a.demo / "simulate.summary.json").exists():
        simulate_study(a.simulate, a.donors, a.demo, max(a.threads))
    if a.work is not None:
        a.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_parallel.", dir=a.work))
    study = study_link(a.demo.resolve(), work, a.samples)
    n = len((study / "samplesheet.csv").read_text().splitlines()) - 1
    print(f"study {a.demo} ({n} samples), work {work}")
    runs: dict[int, list[dict]] = {t: [] for t in a.threads}
    first: dict[str, str] | None = None
    same = True
    for r in range(a.repeats):
        for t in a.threads:
            outdir = work / f"out_t{t}_r{r}"
            times: dict = {}
            steps = timed_steps(times)
            params = load_params(study / "params.yaml", {"outdir": str(outdir)}, pipeline_steps())
            run_pipeline(steps, params, outdir, threads=t)
            d = digests(outdir)
            if first is None:
                first = d
            elif d != first:
                same = False
                print("  outputs differ:", sorted(k for k in d if d[k] != first.get(k))[:10])
            times["total"] = sum(times[s] for s in STEPS)
            times["total.cpu"] = sum(times[s + ".cpu"] for s in STEPS)
            runs[t].append(times)
            print(f"threads {t} run {r + 1}: " + ", ".join(f"{s} {times[s]:.1f}s wall / {times[s + '.cpu']:.1f}s CPU"
                                                         for s in (*STEPS, "total")), flush=True)
            shutil.rmtree(outdir)
    print("\nwall seconds, min–max over the runs (CPU seconds / wall seconds: cores kept busy)")
    print("\n| step | " + " | ".join(f"--threads {t}" for t in a.threads) + " |")
    print("|---|" + "---:|" * len(a.threads))
    for s in (*STEPS, "total"):
        cells = [f"{min(x[s] for x in runs[t]):.1f}–{max(x[s] for x in runs[t]):.1f} "
                 f"({min(x[s + '.cpu'] / x[s] for x in runs[t]):.2f}–{max(x[s + '.cpu'] / x[s] for x in runs[t]):.2f})"
                 for t in a.threads]
        print(f"| {s} | " + " | ".join(cells) + " |")
    print(f"\nbyte-identical outputs across every run: {'yes' if same else 'NO'}")
    shutil.rmtree(work)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
