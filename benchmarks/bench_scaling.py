#!/usr/bin/env python3
"""Benchmark: wall time and peak memory of every pipeline step at several simulated sizes,
the growth exponent of each against its natural size, and an extrapolation to the real study.

Run on request (``make bench-scaling``; ``make bench`` leaves it out: the ``large`` size takes
hours). For each size (a simulation preset) the study is simulated once into
``<workdir>/<preset>`` (reused when complete: its ``simulate.summary.json`` is written last), then
each step runs as users run it, ``caveat run --resume --until <step>``, in its own process: the
steps upstream are skipped (resume), the step itself runs, the steps downstream do not. Per step:

- ``wall``: the step's own wall time, between the engine's "running" and "done" log records
  (interpreter start, imports and the fingerprints of skipped steps excluded);
- ``CPU``: user + system CPU time of the process and its reaped children over the same span
  (what a shared machine's load does not inflate, unlike wall time);
- ``rss``: the process's peak resident memory, the larger of ``wait4``'s ``ru_maxrss`` (largest
  single process) and the sampled sum over its process tree (worker processes at once); the
  same run with every step skipped gives the baseline (interpreter + imports), and the growth
  exponent of memory is fitted on the step's memory above that baseline;
- ``N``: the step's natural size, read from the step summaries (:data:`NATURAL`).

The growth exponent ``b`` is the least-squares slope of log(time) on log(N) over the sizes
(wall and CPU; and of log(rss - baseline) on log(N)). Each step is extrapolated from the largest
size measured to the real study (:data:`STUDY`; the natural sizes assumed are printed with their
derivation): ``cpu_real = cpu * (N_real / N) ** max(b_cpu, 1)`` — a step that reads all of its
input is at least linear, so an exponent below 1, which fixed costs give at small sizes, is not
trusted to hold — and ``rss_real = base + (rss - base) * (N_real / N) ** b_rss`` (none where a
step was measured at one size only).

Usage::

    .venv/bin/python benchmarks/bench_scaling.py --workdir /tmp/scaling [--presets tiny,demo,large]
        [--config demo] [--threads 1] [--markdown docs/scaling.md] [--reuse] [--report-only]
        [--donors 'large=D1']

``--config demo`` runs every size with the demo's step params (model, tests): each preset's own
params differ (tiny: smaller model, binomial test), and an exponent across them would measure
the change of method as well as of size. Results: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# the real study (issue 17): 3.1 Gb genome, 3 donors x 10 cell types = 30 BAMs of 50-200 M reads,
# ~15 M training windows, hundreds of thousands of scored variants
STUDY = {
    "genome_bp": 3.1e9,
    "cell_types": 10,
    "donors": 3,
    "reads_per_bam": 125e6,        # midpoint of 50-200 M; reads counted as the summaries count them (each mate)
    "het_snvs": 6e6,               # union of 3 donors' het SNVs (~3 M each, partly shared): an assumption
    "peaks": 300e3,                # union peak set over 10 cell types: an assumption (typical ArchR set)
    "windows": 15e6,               # training windows (issue 17)
    "variants": 300e3,             # scored variants ("hundreds of thousands")
    "epochs": 20,                  # epochs per model (train_max_epochs 30 with early stopping): an assumption
}


# ---------------------------------------------------------------- natural sizes

def _sum(d: dict, key: str) -> float:
    return float(sum(v.get(key, 0) for v in d.values()))


def _windows_seen(s: dict) -> float:
    """Training windows x epochs + validation windows x epochs, over every model trained."""
    return float(sum((m.get("train_windows", 0) + m.get("valid_windows", 0)) * m.get("epochs", 0)
                     for m in s.get("models", {}).values()))


def _fit_share(S: dict) -> float:
    """Share of build_dataset's windows in the train and valid splits (what a model reads each epoch
    without a ``train_max_windows`` cap)."""
    b = S["build_dataset"]
    return (b["train"] + b["valid"]) / max(b["windows"], 1)


@dataclass(frozen=True)
class Natural:
    """A step's natural size: what it is, how to read it from the summaries, and its size in the
    real study (from :data:`STUDY` and the measured summaries ``S`` of the largest size)."""

    unit: str
    measure: Callable[[dict], float]
    real: Callable[[dict], float]
    assumption: str


def _outputs(S: dict) -> float:
    """Model outputs scored per variant or window (cell types x regimes' output heads), measured."""
    return S["score_variants"]["rows"] / max(_variants(S), 1)


def _variants(S: dict) -> float:
    return max(v.get("variants_in", 0) for v in S["score_variants"]["by_model"].values())


def _reads(S: dict) -> float:
    return _sum(S["wasp_remap"]["per_sample"], "reads_in")


def _real_reads() -> float:
    return STUDY["reads_per_bam"] * STUDY["cell_types"] * STUDY["donors"]


def _ct_ratio(S: dict) -> float:
    return STUDY["cell_types"] / len(S["insertions"]["pseudobulk"])


NATURAL: dict[str, Natural] = {
    "wasp_remap": Natural(
        "reads in", _reads, lambda S: _real_reads(),
        "30 BAMs x 125 M reads"),
    "count_alleles": Natural(
        "reads in (WASP-kept)", lambda S: _sum(S["wasp_remap"]["per_sample"], "reads_out"),
        lambda S: _real_reads() * _sum(S["wasp_remap"]["per_sample"], "reads_out") / _reads(S),
        "study reads x the share WASP keeps (measured)"),
    "insertions": Natural(
        "read pairs", lambda S: S["insertions"]["fragments"] + S["insertions"]["duplicates_removed"],
        lambda S: _real_reads() * (S["insertions"]["fragments"] + S["insertions"]["duplicates_removed"]) / _reads(S),
        "study reads x measured pairs per read in"),
    "call_imbalance": Natural(
        "sites x cell types", lambda S: _sum(S["call_imbalance"]["cell_types"], "n_sites"),
        lambda S: STUDY["het_snvs"] * STUDY["cell_types"]
        * _sum(S["call_imbalance"]["cell_types"], "n_sites") / len(S["call_imbalance"]["cell_types"])
        / S["wasp_remap"]["het_snps"],
        "6 M het SNVs x 10 cell types x measured covered share"),
    "match_negatives": Natural(
        "tested sites", lambda S: sum(c["n_positive"] + c["n_balanced"] for c in S["match_negatives"]["cell_types"].values()),
        lambda S: STUDY["het_snvs"] * STUDY["cell_types"]
        * sum(c["n_positive"] + c["n_balanced"] for c in S["match_negatives"]["cell_types"].values())
        / len(S["match_negatives"]["cell_types"]) / S["wasp_remap"]["het_snps"],
        "6 M het SNVs x 10 cell types x measured tested share"),
    "cluster_peaks": Natural(
        "peaks", lambda S: sum(c["n_peaks"] for c in S["cluster_peaks"]["clusters"].values()),
        lambda S: STUDY["peaks"], "300 k peaks"),
    "build_dataset": Natural(
        "windows", lambda S: S["build_dataset"]["windows"], lambda S: STUDY["windows"], "15 M windows"),
    "train": Natural(
        "windows x epochs", lambda S: _windows_seen(S["train"]),
        lambda S: STUDY["windows"] * STUDY["epochs"] * _fit_share(S) * len(S["train"]["models"]) * _ct_ratio(S),
        "15 M windows x measured train + valid share x 20 epochs x models trained (x10/4 cell types); every "
        "train + valid window each epoch (the study has no train_max_windows cap)"),
    "train_baseline": Natural(
        "windows (train + valid)", lambda S: S["train_baseline"]["train_windows"] + S["train_baseline"]["valid_windows"],
        lambda S: STUDY["windows"] * (S["train_baseline"]["train_windows"] + S["train_baseline"]["valid_windows"])
        / S["build_dataset"]["windows"],
        "15 M windows x measured train + valid share (the k-mer ridge reads no test windows)"),
    "predict": Natural(
        "rows (windows x outputs)", lambda S: S["predict"]["rows"],
        lambda S: S["predict"]["rows"] * STUDY["windows"] / S["build_dataset"]["windows"] * _ct_ratio(S),
        "measured rows per window x 15 M windows x 10/4 outputs"),
    "score_variants": Natural(
        "rows (variants x outputs)", lambda S: S["score_variants"]["rows"],
        lambda S: STUDY["variants"] * _outputs(S) * _ct_ratio(S), "300 k variants x outputs (x10/4)"),
    "evaluate": Natural(
        "variant rows", lambda S: S["score_variants"]["rows"],
        lambda S: STUDY["variants"] * _outputs(S) * _ct_ratio(S), "as score_variants"),
    "report": Natural(
        "metric rows", lambda S: S["report"]["metric_rows"],
        lambda S: S["report"]["metric_rows"] * _ct_ratio(S), "measured x 10/4 cell types"),
}
#: a step without an entry (a step added later) is sized by the windows it trains or predicts on
FALLBACK = Natural("windows", lambda S: S["build_dataset"]["windows"], lambda S: STUDY["windows"],
                   "15 M windows (fallback: no natural size declared for this step)")


def natural(step: str) -> Natural:
    return NATURAL.get(step, FALLBACK)


# ---------------------------------------------------------------- fitting

def fit_exponent(sizes, values) -> float:
    """Least-squares slope of log(values) on log(sizes).

    Parameters
    ----------
    sizes, values : array-like, shape (k,)
        Positive; k >= 2 points with at least two distinct sizes.

    Returns
    -------
    float
        The growth exponent ``b`` of ``values ~ c * sizes ** b``; NaN when fewer than two
        usable points (non-positive values are left out).
    """
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(values, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    x, y = np.log(x[ok]), np.log(y[ok])
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def extrapolate_time(t: float, n: float, n_real: float, b: float) -> float:
    """``t * (n_real / n) ** max(b, 1)`` (NaN exponent: linear)."""
    b = 1.0 if not math.isfinite(b) else max(b, 1.0)
    return t * (n_real / n) ** b


def extrapolate_rss(rss: float, base: float, n: float, n_real: float, b: float) -> float:
    """``base + (rss - base) * (n_real / n) ** b``; NaN without an exponent (one size measured:
    memory, unlike time, has no floor to assume — a streaming step's does not grow at all)."""
    if not math.isfinite(b):
        return float("nan")
    return base + max(rss - base, 0.0) * (n_real / n) ** b


# ---------------------------------------------------------------- measuring one step

def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS (kB) over ``root`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss[int(d)] = int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run_measured(cmd: list[str], log_path: Path, poll_s: float = 1.0) -> dict:
    """Run ``cmd``; its wall time, CPU time and peak RSS (MB; see the module docstring).

    Raises
    ------
    RuntimeError
        When the command fails (the tail of its log in the message).
    """
    peak = [0]
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
                done.wait(poll_s)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        th.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); log {log_path}:\n{tail}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": max(ru.ru_maxrss, peak[0]) / 1024}


def _step_driver(argv: list[str]) -> int:
    """In the measured process: ``caveat run`` with the engine's step records timed."""
    out, step, run_args = argv[0], argv[1], argv[2:]
    sys.path.insert(0, str(ROOT / "bin"))
    from caveat.cli import main

    import resource

    times: dict[str, float] = {}

    def cpu() -> float:
        return sum(ru.ru_utime + ru.ru_stime for ru in (resource.getrusage(resource.RUSAGE_SELF),
                                                         resource.getrusage(resource.RUSAGE_CHILDREN)))

    class Timer(logging.Handler):
        def emit(self, r):
            if isinstance(r.args, tuple) and len(r.args) >= 3 and r.args[2] == step:
                if r.msg.endswith(": running"):
                    times["start"], times["cpu_start"] = r.created, cpu()
                elif ": done in" in r.msg:
                    times["end"], times["cpu_end"] = r.created, cpu()

    logging.getLogger("caveat.engine").addHandler(Timer())
    rc = main(["run", *run_args])
    Path(out).write_text(json.dumps(times))
    return rc


def measure_step(step: str, params: Path, outdir: Path, threads: int, logdir: Path) -> dict:
    """Run ``step`` alone (upstream skipped by resume) and measure it; ``time_s`` is None when
    the step did not run (already done: then nothing is measured)."""
    timing = logdir / f"{step}.timing.json"
    cmd = [PY, __file__, "--_step", str(timing), step, "--params", str(params), "--outdir", str(outdir),
           "--resume", "--until", step, "--threads", str(threads)]
    m = run_measured(cmd, logdir / f"{step}.log")
    t = json.loads(timing.read_text())
    ran = "start" in t and "end" in t
    m["time_s"] = t["end"] - t["start"] if ran else None
    m["step_cpu_s"] = t["cpu_end"] - t["cpu_start"] if ran else None
    return m


# ---------------------------------------------------------------- one size

def simulate(preset: str, simdir: Path, threads: int, donors: str = "") -> float | None:
    """Simulate ``preset`` (only ``donors`` when given, ``caveat simulate --donors``) into ``simdir``
    unless a complete simulation is there; its wall time."""
    if (simdir / "simulate.summary.json").is_file():
        return None
    t0 = time.perf_counter()
    subprocess.run([PY, "-m", "caveat.cli", "simulate", "--preset", preset, "--seed", "1", "--out", str(simdir),
                    "--threads", str(threads), *(["--donors", donors] if donors else [])],
                   check=True, cwd=ROOT, env=_env())
    return time.perf_counter() - t0


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bin"), env.get("PYTHONPATH")]))
    return env


def step_names() -> list[str]:
    sys.path.insert(0, str(ROOT / "bin"))
    from caveat.engine import order_steps
    from caveat.pipeline import pipeline_steps

    return [s.name for s in order_steps(pipeline_steps())]


def read_summaries(outdir: Path, steps: list[str]) -> dict[str, dict]:
    """Each step's summary: ``<outdir>/<step>.summary.json``, else the engine's marker summary."""
    out = {}
    for s in steps:
        full = outdir / f"{s}.summary.json"
        if full.is_file():
            out[s] = json.loads(full.read_text())
        else:
            marker = outdir / "pipeline_info" / "steps" / f"{s}.json"
            out[s] = json.loads(marker.read_text()).get("summary", {}) if marker.is_file() else {}
        marker = outdir / "pipeline_info" / "steps" / f"{s}.json"
        if marker.is_file():  # the marker's short summary fills keys the full one lacks
            for k, v in json.loads(marker.read_text()).get("summary", {}).items():
                out[s].setdefault(k, v)
    return out


@dataclass(frozen=True)
class Layout:
    """Where one size's run lives: ``<workdir>/<preset>``, and below it the params, outdir, logs
    and saved measurements of a configuration (the preset's own, or ``config``'s step params
    laid over it: every size run with the same model and tests, so that only the size changes)."""

    simdir: Path
    config: str = ""

    def _name(self, stem: str, ext: str = "") -> Path:
        return self.simdir / (f"{stem}.{self.config}{ext}" if self.config else f"{stem}{ext}")

    @property
    def params(self) -> Path:
        return self._name("params", ".yaml") if self.config else self.simdir / "params.yaml"

    @property
    def outdir(self) -> Path:
        return self._name("scaling_results")

    @property
    def logdir(self) -> Path:
        return self._name("scaling_logs")

    @property
    def store(self) -> Path:
        return self._name("scaling", ".json")

    def write_params(self) -> None:
        """``params.<config>.yaml``: the study's params.yaml with ``PRESET_PARAMS[config]`` over it."""
        if not self.config:
            return
        import yaml

        from caveat.simulate.presets import PRESET_PARAMS

        params = yaml.safe_load((self.simdir / "params.yaml").read_text())
        params.update(PRESET_PARAMS[self.config])
        self.params.write_text(yaml.safe_dump(params, sort_keys=False))


def measure_size(preset: str, workdir: Path, threads: int, steps: list[str], reuse: bool,
                 report_only: bool = False, config: str = "", donors: str = "") -> dict | None:
    """Simulate (or reuse) and measure every step at one size; measurements are saved after each
    step in the layout's store (:class:`Layout`; ``reuse``: steps measured there are kept;
    ``report_only``: nothing is run but the baseline, the record is read as it is; None when
    there is none)."""
    lay = Layout(workdir / preset, "" if config == preset else config)
    if report_only:
        if not lay.store.is_file():
            return None
        rec = json.loads(lay.store.read_text())
    else:
        sim_s = simulate(preset, lay.simdir, threads, donors)
        lay.write_params()
        rec = json.loads(lay.store.read_text()) if reuse and lay.store.is_file() else {}
        if not reuse and lay.outdir.exists():
            shutil.rmtree(lay.outdir)
        lay.logdir.mkdir(parents=True, exist_ok=True)
        rec.setdefault("steps", {})
        rec["threads"] = threads
        if sim_s is not None:
            rec["simulate_s"] = sim_s
        for step in steps:
            if step in rec["steps"] and rec["steps"][step].get("time_s") is not None:
                continue
            m = measure_step(step, lay.params, lay.outdir, threads, lay.logdir)
            rec["steps"][step] = m
            print(f"  {preset:6s} {step:16s} {m['time_s'] or 0:9.1f} s {m['step_cpu_s'] or 0:9.1f} CPU s "
                  f"{m['rss_mb']:8.0f} MB", flush=True)
            lay.store.write_text(json.dumps(rec, indent=1))
    return finish_size(rec, lay, [s for s in steps if s in rec["steps"]])


def finish_size(rec: dict, lay: Layout, measured: list[str]) -> dict | None:
    """Add the baseline RSS (a run with every measured step skipped) and each measured step's
    natural size to ``rec`` (saved); None when no step is measured."""
    if not measured:
        return None
    threads = rec.setdefault("threads", 1)  # a run stopped before its end saved no threads: the default
    if "baseline_rss_mb" not in rec:
        base = measure_step(measured[-1], lay.params, lay.outdir, threads, lay.logdir)
        rec["baseline_rss_mb"] = base["rss_mb"]
    S = read_summaries(lay.outdir, measured)
    for step in measured:
        rec["steps"][step]["n"] = natural(step).measure(S)
    rec["summaries"] = S
    lay.store.write_text(json.dumps(rec, indent=1))
    return rec


# ---------------------------------------------------------------- table

def analyse(sizes: dict[str, dict | None], steps: list[str]) -> list[dict]:
    """Per step: exponents over the sizes where it was measured and the extrapolation from the
    largest of them.

    ``sizes``: preset → record of :func:`measure_size` (``steps``: step → ``time_s``,
    ``step_cpu_s``, ``rss_mb``, ``n``; ``baseline_rss_mb``; ``summaries``), smallest first; a
    preset whose record is None, or a step missing from a record, is not measured."""
    rows = []
    for step in steps:
        nat = natural(step)
        done = {p: r for p, r in sizes.items() if r and step in r["steps"]}
        ms = [(r["steps"][step], r["baseline_rss_mb"]) for r in done.values()]
        n = [m["n"] for m, _ in ms]
        row = {"step": step, "unit": nat.unit, "assumption": nat.assumption,
               "per_size": {p: r["steps"][step] for p, r in done.items()},
               "b_time": fit_exponent(n, [m["time_s"] for m, _ in ms]),
               "b_cpu": fit_exponent(n, [m["step_cpu_s"] for m, _ in ms]),
               "b_rss": fit_exponent(n, [m["rss_mb"] - base for m, base in ms]),
               "n_real": float("nan"), "time_real_s": float("nan"), "rss_real_mb": float("nan")}
        if ms:
            (last, base), S = ms[-1], list(done.values())[-1]["summaries"]
            row["n_real"] = nat.real(S)
            row["time_real_s"] = extrapolate_time(last["step_cpu_s"], last["n"], row["n_real"], row["b_cpu"])
            row["rss_real_mb"] = extrapolate_rss(last["rss_mb"], base, last["n"], row["n_real"], row["b_rss"])
        rows.append(row)
    return rows


def _si(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    for div, suf in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def _dur(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _exp(b: float) -> str:
    return "–" if not math.isfinite(b) else f"{b:.2f}"


def markdown_table(rows: list[dict], sizes: dict[str, dict | None], not_run: dict[str, str]) -> str:
    """The per-step table (one column group per size; unmeasured sizes say why)."""
    presets = list(sizes)
    head = ["step", "natural size"] + [f"{p}: N / wall / CPU / RSS" for p in presets] + \
           ["b (wall)", "b (CPU)", "b (RSS − base)", "study N", "study CPU time", "study RSS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["step"], r["unit"]]
        for p in presets:
            m = r["per_size"].get(p)
            cells.append(f"{_si(m['n'])} / {_dur(m['time_s'])} / {_dur(m['step_cpu_s'])} / {m['rss_mb']:.0f} MB"
                         if m else f"not run ({not_run.get(p, 'not measured')})")
        rss = r["rss_real_mb"]
        cells += [_exp(r["b_time"]), _exp(r["b_cpu"]), _exp(r["b_rss"]), _si(r["n_real"]), _dur(r["time_real_s"]),
                  f"{rss / 1024:.1f} GB" if math.isfinite(rss) else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    known = [r for r in rows if math.isfinite(r["time_real_s"])]
    total = sum(r["time_real_s"] for r in known)
    lines.append(f"\nSum of the extrapolated step CPU times ({_threads(sizes)} thread(s) per step; "
                 f"{len(known)} of {len(rows)} steps): {_dur(total)}.")
    return "\n".join(lines)


def _threads(sizes) -> int:
    return next(r["threads"] for r in sizes.values() if r)


def assumptions_md(rows: list[dict]) -> str:
    lines = ["| step | study natural size | how it is derived |", "|---|---:|---|"]
    lines += [f"| {r['step']} | {_si(r['n_real'])} {r['unit']} | {r['assumption']} |" for r in rows]
    study = ", ".join(f"{k} = {_si(v)}" for k, v in STUDY.items())
    return "\n".join(lines) + f"\n\nStudy constants (`STUDY` in the script): {study}."


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPU cores ({cpu}), {mem:.0f} GiB RAM, no GPU used, {platform.system()} {platform.release()}"


def code_version() -> str:
    """The commit of the code measured (the tree this script is in), or a note that it is not a checkout."""
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"commit {r.stdout.strip()}" if r.returncode == 0 else f"the source tree {ROOT} (not a git checkout)"


def report(sizes: dict, steps: list[str], not_run: dict[str, str], note: str = "") -> tuple[str, list[dict]]:
    rows = analyse(sizes, steps)
    sim = ", ".join(f"{p} {_dur(r['simulate_s'])}" for p, r in sizes.items() if r and r.get("simulate_s"))
    text = (f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; code: "
            f"{note or code_version()}.\n\n"
            + markdown_table(rows, sizes, not_run) + "\n\n" + assumptions_md(rows)
            + (f"\n\nSimulation wall time: {sim}." if sim else ""))
    return text, rows


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--_step":
        return _step_driver(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="scaling", help="simulations and runs, one folder per preset")
    ap.add_argument("--presets", default="tiny,demo,large", help="sizes, smallest first")
    ap.add_argument("--skip", default="", help="presets to list as not run: 'large=reason;demo=reason'")
    ap.add_argument("--why-missing", default="", help="why steps are missing at a measured size: 'demo=reason'")
    ap.add_argument("--threads", type=int, default=1, help="--threads of every step (and the simulation)")
    ap.add_argument("--reuse", action="store_true", help="keep steps already measured in <workdir>/<preset>/scaling.json")
    ap.add_argument("--report-only", action="store_true", help="run nothing: the table from the saved measurements")
    ap.add_argument("--config", default="", help="run every size with this preset's step params (model, "
                    "tests) over its own, so that only the size changes (default: each preset's own)")
    ap.add_argument("--markdown", help="write the table (markdown) here too")
    ap.add_argument("--note", default="", help="what code is measured (default: this tree's git commit)")
    ap.add_argument("--donors", default="", help="simulate only these donors of a preset: 'large=D1' (its "
                    "genome and depth per sample, a third of its samples and simulation time)")
    a = ap.parse_args(argv)
    steps = step_names()
    presets = [p for p in a.presets.split(",") if p]
    not_run = dict(kv.split("=", 1) for kv in a.skip.split(";") if "=" in kv)
    missing = dict(kv.split("=", 1) for kv in a.why_missing.split(";") if "=" in kv)
    donors = dict(kv.split("=", 1) for kv in a.donors.split(";") if "=" in kv)
    workdir = Path(a.workdir).resolve()
    sizes: dict[str, dict | None] = {}
    for p in presets:
        sizes[p] = None if p in not_run else measure_size(p, workdir, a.threads, steps, a.reuse, a.report_only,
                                                                a.config, donors.get(p, ""))
    text, _ = report(sizes, steps, {**missing, **not_run}, a.note)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
