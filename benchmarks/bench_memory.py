"""Peak memory and wall time of the genome-wide table steps (issue 17, point 2).

Runs CALL_IMBALANCE, MATCH_NEGATIVES, EVALUATE and REPORT, each in its own Python
subprocess through the step's ``run_step`` (what ``caveat run`` calls; the Nextflow
``bin/<step>.py`` entries call the same functions), on a copy of a finished study's
results, and prints one row per step: peak RSS (``ru_maxrss`` of the child), wall
time, and the rows/bytes of the tables the step reads. Run on request, not a test::

    .venv/bin/python benchmarks/bench_memory.py --study /work/demo_new --scale 1 20

``--scale K`` tiles the study's genome-wide tables K times before measuring (the counts
tables, peaks, the predictions and scores): tile k shifts every position by
k × (longest contig + 1) and renames ids, so each tile is a copy of the study on a
fresh stretch of the same contigs. The difference between two scales gives the bytes
per row of each step, which is what docs/benchmarks.md extrapolates to a real study.
Outputs of scale 1 can be compared with the study's own (``--compare``).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("call_imbalance", "match_negatives", "evaluate", "report")
#: inputs of each step (relative to results/), and the outputs it writes
READS = {"call_imbalance": ["counts/*.parquet", "peaks.parquet"],
         "match_negatives": ["imbalance.parquet", "peaks.parquet"],
         "evaluate": ["predictions.parquet", "variant_scores.parquet", "variant_sets.parquet",
                      "variant_sets_stratum_matched.parquet", "imbalance.parquet", "peaks.parquet",
                      "peaks_donor_counts.parquet"],
         "report": ["metrics.parquet", "predictions.parquet", "variant_scores.parquet", "variant_sets.parquet",
                    "imbalance.parquet", "peaks.parquet"]}
WRITES = {"call_imbalance": ["imbalance.parquet", "call_imbalance.summary.json"],
          "match_negatives": ["variant_sets.parquet", "variant_sets_stratum_matched.parquet",
                              "match_negatives.summary.json"],
          "evaluate": ["metrics.parquet", "evaluate.summary.json"],
          "report": ["report.summary.json"]}
RUNNER = """
import sys, time, resource
sys.path.insert(0, {bin!r})
from pathlib import Path
import importlib, yaml
from caveat.engine import StepContext
mod = importlib.import_module("caveat." + {step!r})
# the step's defaults and the study's params file (relative paths resolved against it), not
# params.load_params: that imports every step module (torch), which would count in the peak
raw = yaml.safe_load(Path({params!r}).read_text())
for k in ("input", *mod.STEP.path_params):
    if isinstance(raw.get(k), str) and not Path(raw[k]).is_absolute():
        raw[k] = str(Path({params!r}).parent / raw[k])
params = {{**mod.STEP.params, **raw, **{overrides!r}, "outdir": {outdir!r}}}
t = time.perf_counter()
mod.STEP.run(StepContext(params=params, outdir=Path({outdir!r})))
print("STEP_SECONDS", time.perf_counter() - t)
"""


def copy_results(src: Path, dst: Path) -> None:
    """Copy the results a measured step reads (not the BAMs, WASP or insertion folders)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name in ("wasp", "insertions", "pipeline_info"):
            continue
        if f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
        else:
            shutil.copy2(f, dst / f.name)


def _shift(df: pd.DataFrame, k: int, span: int, pos_cols=("pos",), id_cols=()) -> pd.DataFrame:
    df = df.copy()
    for c in pos_cols:
        if c in df.columns:
            df[c] = df[c] + k * span
    for c in id_cols:
        if c in df.columns:
            df[c] = df[c].astype(object).where(df[c].isna(), df[c].astype(str) + ("" if k == 0 else f"~{k}"))
    return df


#: the tables tiled by --scale: name pattern → (position columns, id columns)
TILED = {"counts/*.parquet": (("pos",), ("variant_id",)),
         "peaks.parquet": (("start", "end"), ("peak_id",)),
         "imbalance.parquet": (("pos",), ("variant_id", "peak_id")),
         "variant_sets.parquet": (("pos",), ("variant_id", "peak_id")),
         "variant_sets_stratum_matched.parquet": (("pos",), ("variant_id", "peak_id")),
         "predictions.parquet": (("start", "end"), ("peak_id",)),
         "variant_scores.parquet": ((), ("variant_id",)),
         "peaks_donor_counts.parquet": ((), ("peak_id",))}


def tile(res: Path, k_max: int) -> None:
    """Tile the genome-wide tables of ``res`` ``k_max`` times in place (see the module doc)."""
    if k_max <= 1:
        return
    peaks = pd.read_parquet(res / "peaks.parquet", columns=["end"])
    counts = [pd.read_parquet(f, columns=["pos"]) for f in (res / "counts").glob("*.parquet")]
    span = int(max(peaks["end"].max(), *(d["pos"].max() + 1 for d in counts if len(d)))) + 1
    for pat, (pos_cols, id_cols) in TILED.items():
        for f in sorted(res.glob(pat)):
            d = pd.read_parquet(f)
            pd.concat([_shift(d, k, span, pos_cols, id_cols) for k in range(k_max)],
                      ignore_index=True).to_parquet(f, index=False)


def table_sizes(res: Path, step: str) -> list[tuple[str, int, int]]:
    """(name, rows, bytes on disk) of every table the step reads."""
    out = []
    for pat in READS[step]:
        files = sorted(res.glob(pat))
        if not files:
            continue
        import pyarrow.parquet as pq
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        out.append((pat, rows, sum(f.stat().st_size for f in files)))
    return out


def measure(step: str, res: Path, params: Path, overrides: dict | None = None, code_dir: str | None = None
            ) -> tuple[float, float]:
    """Run ``step`` in a child process on ``res``; (peak RSS in MiB, wall seconds)."""
    code = RUNNER.format(bin=code_dir or str(ROOT / "bin"), step=step, params=str(params), outdir=str(res),
                         overrides=dict(overrides or {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        sys.stderr.write(r.stderr[-4000:])
        raise SystemExit(f"{step} failed")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:  # ru_maxrss of children is the max over all children so far
        sys.stderr.write(f"note: {step} peak not above an earlier step's ({before / 1024:.0f} MiB)\n")
    return peak / 1024, wall


def compare(res: Path, study_results: Path, step: str) -> list[str]:
    """Names of the step's outputs that differ from the study's (parquet by bytes, JSON by content)."""
    bad = []
    for name in WRITES[step]:
        a, b = res / name, study_results / name
        if name.endswith(".json"):
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            if ja != jb:
                bad.append(name)
        elif a.read_bytes() != b.read_bytes():
            bad.append(name)
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="/work/demo_new", help="study folder (params.yaml, results/)")
    ap.add_argument("--work", default="/tmp/bench_memory", help="scratch folder (copies of the results)")
    ap.add_argument("--scale", type=int, nargs="+", default=[1])
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    ap.add_argument("--compare", action="store_true", help="at scale 1, check outputs against the study's")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=YAML",
                    help="param overrides, e.g. imbalance_test=binomial (the beta-binomial fit's time grows "
                         "with the sites, not its memory)")
    ap.add_argument("--keep", action="store_true", help="reuse a tiled copy left by an earlier run")
    ap.add_argument("--code", help="the bin/ folder whose caveat package runs (default: this checkout's); e.g. "
                                   "an older commit's, from `git archive <commit> bin | tar -x -C DIR`")
    a = ap.parse_args(argv)
    study = Path(a.study)
    import yaml
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    rows = []
    for k in a.scale:
        for step in a.steps:
            # a fresh copy per step: each measured step runs alone, on the study's own upstream outputs
            res = Path(a.work) / f"x{k}" / step / "results"
            if not (a.keep and res.exists()):
                if res.exists():
                    shutil.rmtree(res)
                copy_results(study / "results", res)
                tile(res, k)
            sizes = table_sizes(res, step)
            # ru_maxrss of children is a running max: one fresh interpreter per measurement
            code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_memory as b; "
                    f"from pathlib import Path; print(*b.measure({step!r}, Path({str(res)!r}), "
                    f"Path({str(study / 'params.yaml')!r}), {overrides!r}, {a.code!r}))")
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if r.returncode:
                sys.stderr.write(r.stderr[-4000:])
                return 1
            rss, wall = map(float, r.stdout.split()[-2:])
            diff = compare(res, study / "results", step) if a.compare and k == 1 else None
            rows.append((k, step, rss, wall, sizes, diff))
            print(f"x{k:<4} {step:16} peak RSS {rss:8.0f} MiB  wall {wall:6.1f} s  "
                  + "; ".join(f"{n} {r:,} rows {b / 2**20:.1f} MiB" for n, r, b in sizes)
                  + ("" if diff is None else f"  outputs differ: {diff}" if diff else "  outputs identical"),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
