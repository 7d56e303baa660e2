"""caveat.parallel: samples and cell types run concurrently under one thread budget, results in
input order, the first failing job's error named; per-sample steps write the same bytes with
--threads 2 as with --threads 1."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from caveat.errors import InputError
from caveat.parallel import map_jobs, map_ordered, thread_shares


def test_thread_shares_split_the_budget_among_the_jobs_running_together():
    assert thread_shares(1, 5) == (1, [1] * 5)
    assert thread_shares(8, 1) == (1, [8])            # one sample alone gets every thread
    assert thread_shares(2, 12) == (2, [1] * 12)
    assert thread_shares(32, 12) == (12, [3] * 8 + [2] * 4)
    width, shares = thread_shares(7, 5)
    assert width == 5 and shares == [2, 2, 1, 1, 1]
    # any `width` consecutive jobs (those running together when jobs end in order) use the budget
    for threads, n in ((7, 5), (5, 3), (32, 12), (3, 10)):
        width, shares = thread_shares(threads, n)
        for i in range(n - width + 1):
            assert sum(shares[i:i + width]) == threads or width == n


def _slow_square(x: int, threads: int) -> tuple[int, int, str]:
    time.sleep(0.02 * (5 - x % 5))  # later jobs end first
    return x * x, threads, threading.current_thread().name


def test_results_come_back_in_input_order_with_each_jobs_share():
    out = map_jobs(_slow_square, range(10), 3)
    assert [r[0] for r in out] == [x * x for x in range(10)]
    assert [r[1] for r in out] == thread_shares(3, 10)[1]
    assert len({r[2] for r in out}) > 1  # ran on several threads
    serial = map_jobs(_slow_square, range(10), 1)
    assert [r[:2] for r in serial] == [(x * x, 1) for x in range(10)]
    assert map_jobs(_slow_square, [], 4) == []
    assert map_ordered(lambda x: -x, range(7), 3) == [-x for x in range(7)]


def test_the_first_failing_job_in_input_order_is_raised_named_and_later_jobs_do_not_start():
    started = []

    def job(x, threads):
        started.append(x)
        if x == 1:
            time.sleep(0.3)   # fails last in time, first in input order
            raise InputError(f"/data/bam{x}.bam", "block 7 fails its CRC", "re-create it")
        if x == 2:
            raise InputError(f"/data/bam{x}.bam", "truncated", "re-create it")
        time.sleep(0.05)
        return x

    names = [f"S{x}" for x in range(12)]
    with pytest.raises(InputError) as e:
        map_jobs(job, range(12), 3, names=names)
    # job 1's error (as a one-at-a-time run raises), naming the sample and the file
    assert e.value.file == "/data/bam1.bam" and e.value.problem == "sample S1: block 7 fails its CRC"
    assert e.value.fix == "re-create it"
    assert len(started) < 12  # jobs queued behind the failure never ran
    # an error that names its job is passed on as it is; serial runs name it the same way
    with pytest.raises(InputError, match=r"^/data/bam2.bam: truncated") as e:
        map_jobs(job, [2], 1, names=["bam2"])
    with pytest.raises(InputError, match=r"cell type ctB: block 7"):
        map_jobs(job, [0, 1], 1, names=["ctA", "ctB"], what="cell type")
    with pytest.raises(ZeroDivisionError):
        map_jobs(lambda x, t: 1 // x, [1, 0, 2], 2)


def _fail_in_worker(x: int, threads: int) -> int:
    if x == 3:
        raise InputError(f"/bams/{x}.bam", "no properly paired fragment", "align in paired mode")
    return x + threads


def test_worker_processes_return_in_order_and_raise_the_named_input_error():
    assert map_jobs(_fail_in_worker, [0, 1, 2], 2, processes=True) == [1, 2, 3]
    with pytest.raises(InputError, match=r"/bams/3.bam: sample X3: no properly paired") as e:
        map_jobs(_fail_in_worker, [0, 3, 1, 2], 2, names=["X0", "X3", "X1", "X2"], processes=True)
    assert e.value.fix == "align in paired mode"


def test_log_lines_inside_a_job_carry_its_name_also_from_its_inner_threads(caplog):
    log = logging.getLogger("caveat.test_parallel")

    def job(name, threads):
        log.info("classify chr1: 10 reads")
        map_ordered(lambda c: log.info("inner %s", c), ["chr2", "chr3"], 2)
        log.info("%s: already named", name)
        return name

    with caplog.at_level(logging.INFO, logger="caveat"):
        map_jobs(job, ["A_1", "B_2"], 2)
        log.info("after the jobs")
    msgs = [r.getMessage() for r in caplog.records]
    for s in ("A_1", "B_2"):
        assert f"{s}: classify chr1: 10 reads" in msgs
        assert f"{s}: inner chr2" in msgs and f"{s}: inner chr3" in msgs
        assert f"{s}: already named" in msgs  # not "A_1: A_1: …"
    assert "after the jobs" in msgs  # the caller's own lines are untouched


# ---------------------------------------------------------------- the steps on the tiny study
STEPS = ("wasp_remap", "count_alleles", "insertions")
CUT = ["D1_ctA", "D2_ctA", "D1_ctB", "D3_ctB"]


def _study(tiny_sim: Path, dst: Path, rows=CUT) -> Path:
    from study_copy import study_copy

    study = study_copy(tiny_sim, dst)
    sheet = pd.read_csv(study / "samplesheet.csv")
    sheet[sheet["sample"].isin(rows)].to_csv(study / "samplesheet.csv", index=False)
    return study


def _run(study: Path, outdir: Path, threads: int):
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    steps = [s for s in pipeline_steps() if s.name in STEPS]
    params = load_params(study / "params.yaml", {"outdir": str(outdir)}, pipeline_steps())
    return run_pipeline(steps, params, outdir, threads=threads)


def _files(outdir: Path) -> dict[str, bytes]:
    return {p.relative_to(outdir).as_posix(): p.read_bytes() for p in sorted(outdir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_per_sample_steps_write_the_same_bytes_with_two_threads_as_with_one(tiny_sim, tmp_path):
    """wasp_remap, count_alleles and insertions (tracks and pseudobulks) with --threads 2 (two
    samples at a time) write byte for byte what --threads 1 writes, markers included."""
    study = _study(tiny_sim, tmp_path / "study")
    one, two = tmp_path / "t1", tmp_path / "t2"
    assert _run(study, one, 1) == {s: "ran" for s in STEPS}
    assert _run(study, two, 2) == {s: "ran" for s in STEPS}
    a, b = _files(one), _files(two)
    assert sorted(a) == sorted(b)
    for want in ("wasp/D2_ctA.bam", "wasp/D2_ctA.bam.bai", "counts/D3_ctB.parquet", "insertions/D1_ctB.bw",
                 "insertions/ctB.pseudobulk.bw", "wasp_remap.summary.json", "count_alleles.summary.json",
                 "insertions.summary.json", "pipeline_info/steps/count_alleles.json"):
        assert want in a
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"outputs differ between --threads 1 and 2: {differ}"


def test_a_failing_sample_fails_the_step_named_and_leaves_nothing_partial(tiny_sim, tmp_path):
    """One BAM with a damaged record block, filtered beside others on two threads: the step
    fails with that BAM (its sample) named, and the outdir keeps no output and no work folder."""
    study = _study(tiny_sim, tmp_path / "study", rows=CUT[:3])
    (study / "bams").unlink()  # a link to the session's study: make a folder of links, one file real
    (study / "bams").mkdir()
    for f in (tiny_sim / "bams").iterdir():
        (study / "bams" / f.name).symlink_to(f.resolve())
    bad = study / "bams" / "D2_ctA.bam"
    data = bytearray((tiny_sim / "bams" / "D2_ctA.bam").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)  # inside a compressed block: its CRC fails
    bad.unlink()
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"D2_ctA\.bam: (corrupt BGZF block|samtools view failed|the record stream)"):
        _run(study, out, 2)
    left = [p.relative_to(out).as_posix() for p in out.rglob("*")
            if p.is_file() and "pipeline_info" not in p.parts]
    assert left == []
    assert not [p for p in out.rglob(".tmp*")]


# ---------------------------------------------------------------- models: loader and devices
def _genome_loader(**feed):
    import numpy as np

    from caveat.loader import GenomeCodes, WindowLoader

    rng = np.random.default_rng(0)
    g = GenomeCodes.from_dict({"c1": rng.integers(0, 5, 5_000).astype(np.uint8),
                               "c2": rng.integers(0, 5, 3_000).astype(np.uint8)})
    starts = np.r_[g.abs_starts(["c1"] * 60, rng.integers(0, 4_800, 60)),
                   g.abs_starts(["c2"] * 40, rng.integers(0, 2_800, 40))]
    targets = rng.random((100, 3)).astype(np.float32)
    return WindowLoader(g, starts, targets, 128, batch_size=16, shuffle=True, seed=4, max_shift=3, rc=True, **feed)


def _same(a, b) -> bool:
    import torch

    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_prefetched_batches_are_the_on_demand_batches_and_the_stream_state_matches():
    """A loader making batches ahead on a thread (GPU runs) yields the same batches, epoch by
    epoch and through a BatchStream, which ends in the same state (checkpoints resume alike)."""
    from caveat.loader import BatchStream

    plain, ahead = _genome_loader(), _genome_loader(prefetch=3)
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        ahead.set_epoch(epoch)
        a, b = list(plain), list(ahead)
        assert len(a) == 7 and _same(a, b)
    assert not _same(a, list(_genome_loader(prefetch=3)))  # epoch 0 differs: the test can fail
    s1, s2 = BatchStream(plain), BatchStream(ahead)
    for k in (3, 9, 2):
        assert _same(list(s1.take(k)), list(s2.take(k)))
        assert s1.state_dict() == s2.state_dict()
    # a consumer stopping early stops the thread; an error making a batch reaches the consumer
    it = iter(_genome_loader(prefetch=2))
    next(it)
    it.close()
    broken = _genome_loader(prefetch=2)
    broken.abs_starts = broken.abs_starts.copy()
    broken.abs_starts[40:] = 10**9  # off the genome
    with pytest.raises(IndexError):
        list(broken)


def test_pinned_batches_are_the_same_batches():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("page-locked memory needs a CUDA device")
    a, b = list(_genome_loader()), list(_genome_loader(pin_memory=True, prefetch=2))
    assert _same(a, b) and all(x.is_pinned() and y.is_pinned() for x, y in b)


def test_several_gpus_share_out_concurrent_models_round_robin(monkeypatch):
    import torch

    from caveat.device import job_devices
    from caveat.train import parallel_models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert job_devices("auto", 3) == [None, None, None]           # CPU: every job resolves its own
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert job_devices("auto", 2) == [None, None]                 # one GPU: as before
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert job_devices("auto", 7) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert job_devices("cuda", 2) == ["cuda:0", "cuda:1"]
    assert job_devices("cuda:1", 2) == [None, None] and job_devices("cpu", 2) == [None, None]  # a named device
    assert parallel_models(1, {"train_cpu_threads": 1}, n_gpus=3) == 3  # one model per GPU at least
    assert parallel_models(8, {"train_cpu_threads": 2}, n_gpus=3) == 4


def test_macs3_runs_for_cell_types_at_once_to_the_same_peaks(tmp_path):
    """Cell types without peak BEDs are called by MACS3 two at a time with --threads 2: the same
    narrowPeak files and union as one at a time."""
    from caveat.cluster_peaks import cluster_peaks
    from test_cluster_peaks import LENGTHS, PARAMS, plant_study

    sheet, ins, _, _, _ = plant_study(tmp_path, seed=5)
    sheet["peaks"] = ""
    params = {**PARAMS, "peak_macs3_gsize": 700_000}
    s1 = cluster_peaks(sheet, LENGTHS, ins, tmp_path / "t1", params, threads=1)
    s2 = cluster_peaks(sheet, LENGTHS, ins, tmp_path / "t2", params, threads=2)
    cts = sorted(set(sheet["cell_type"]))
    assert len(cts) >= 2 and s1["peak_source"] == s2["peak_source"] == {ct: "macs3" for ct in cts}
    for f in [f"peaks/{ct}.macs3.narrowPeak" for ct in cts] + ["peaks.parquet", "cluster_peaks.summary.json"]:
        assert (tmp_path / "t1" / f).read_bytes() == (tmp_path / "t2" / f).read_bytes(), f
