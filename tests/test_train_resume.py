"""train resumes after a kill and gives the uninterrupted run's bytes; epochs can be capped to a
number of batches that walk through the seeded passes; a checkpoint of another run is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import caveat.train as tr
from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.loader import BatchStream, WindowLoader
from caveat.simulate.presets import PRESET_PARAMS
from caveat.train_resume import RESUME_DIR, resume_path
from test_build_dataset import build_small, make_study

BIN = Path(__file__).resolve().parents[1] / "bin"
MODEL_KEYS = ("model_filters", "model_filters_max", "model_tower_blocks", "model_bottleneck", "model_dense",
              "train_optimizer", "train_lr", "train_batch_size")
#: the tiny preset's model and optimizer, 3 epochs of 3 batches (5 batches make a pass over 160 windows)
TINY = {k: PRESET_PARAMS["tiny"][k] for k in MODEL_KEYS}
PARAMS = dict(tr.PARAMS, **TINY, seed=0, window_size=384, train_device="cpu", train_max_epochs=3,
              train_min_epochs=1, train_patience=5, train_max_windows=160, train_epoch_batches=3, train_replicates=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    st = make_study(tmp, chroms=("chr1", "chr2", "chr3", "chr4"), length=20_000)
    build_small(st, tmp / "windows.parquet")
    return tmp, st, tr.load_inputs(tmp / "windows.parquet", tmp / "build_dataset.summary.json", st["fasta"])


def _loader(data, n=70, batch_size=16, seed=3):
    _, _, (w, t, _, g) = data
    starts = g.abs_starts(w.chrom.to_numpy()[:n], w.start.to_numpy()[:n])
    return WindowLoader(g, starts, t[:n], 384, batch_size=batch_size, shuffle=True, seed=seed, max_shift=3, rc=True)


def _same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


# ---------------------------------------------------------------- the batch stream


def test_whole_pass_epochs_are_the_loaders_epochs(data):
    """Uncapped, epoch e of the stream is exactly what the loader yields for set_epoch(e)."""
    loader = _loader(data)
    stream = BatchStream(loader)
    for epoch in (1, 2, 3):
        loader.set_epoch(epoch)
        assert _same_batches(list(stream.take(len(loader))), list(loader))


def test_capped_epochs_walk_through_the_passes(data):
    """Epochs of k batches are the passes cut into k-batch pieces: every window is seen, in the
    seeded order, and the sizes reported ahead are the sizes drawn."""
    loader = _loader(data)                                   # 70 windows, 5 batches (16, 16, 16, 16, 6)
    passes = []
    for p in (1, 2, 3):
        loader.set_epoch(p)
        passes += list(loader)
    stream, drawn = BatchStream(loader), []
    for _ in range(5):                                       # 5 epochs of 3 batches = 3 passes
        ahead = stream.windows_ahead(3)
        epoch = list(stream.take(3))
        assert ahead == sum(len(y) for _, y in epoch)
        drawn += epoch
    assert _same_batches(drawn, passes)
    seen = torch.cat([c for c, _ in drawn[:5]])
    assert len(seen) == 70                                   # the first pass covers all windows once


def test_stream_state_round_trips(data):
    """A stream restored from a JSON round trip of another's state draws the same batches."""
    loader = _loader(data)
    a = BatchStream(loader)
    list(a.take(7))                                          # mid second pass
    b = BatchStream(_loader(data))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert _same_batches(list(a.take(6)), list(b.take(6)))
    fresh = BatchStream(_loader(data, seed=4))
    assert not _same_batches(list(fresh.take(2)), list(BatchStream(loader).take(2)))


def test_epoch_batches_param_caps_each_epoch(data):
    tmp, _, (w, t, cts, g) = data
    s = tr.train_regime("multitask", w, t, cts, g, dict(PARAMS, train_max_epochs=2), tmp / "capped")
    assert s["multitask"]["batches_per_epoch"] == 3 and s["multitask"]["train_windows"] == 160
    s = tr.train_regime("multitask", w, t, cts, g, dict(PARAMS, train_max_epochs=1, train_epoch_batches=None),
                        tmp / "whole")
    assert s["multitask"]["batches_per_epoch"] == 5 and s["multitask"]["resumed"] is False


# ---------------------------------------------------------------- resume


CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {bin!r})
import caveat.train as tr

if sys.argv[1] == "pause":
    marker, after = Path(sys.argv[2]), int(sys.argv[3])

    class PauseMidEpoch2(tr.Progress):
        # stands still in the middle of epoch 2 (after `after` windows) until the test kills it
        def update(self, n=1):
            super().update(n)
            if self.label.endswith("epoch 2: ") and self.done >= after:
                marker.write_text("mid epoch 2")
                time.sleep(600)

    tr.Progress = PauseMidEpoch2
sys.exit(tr.main(sys.argv[4:]))
"""


def _argv(tmp: Path, st: dict, out: Path) -> list[str]:
    argv = ["--windows", str(tmp / "windows.parquet"), "--summary", str(tmp / "build_dataset.summary.json"),
            "--fasta", str(st["fasta"]), "--regime", "multitask", "--outdir", str(out)]
    for k, v in PARAMS.items():
        if k in ("regimes", "seed") or v is None or isinstance(v, bool):
            continue
        argv += ["--" + k.replace("_", "-"), str(v)]
    return argv


def _run_child(script: Path, mode: str, argv: list[str], *extra: str, wait: bool = True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), mode, *extra, *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    return proc


def test_killed_mid_epoch_resumes_to_the_same_model(data, tmp_path):
    """SIGKILL in the middle of epoch 2 (after epoch 1's checkpoint), rerun: the run resumes after
    epoch 1 and writes model.pt and history.parquet byte for byte as an uninterrupted run."""
    tmp, st, _ = data
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(bin=str(BIN))))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _run_child(script, "plain", _argv(tmp, st, whole), "-", "0")

    marker = tmp_path / "mid_epoch_2"
    proc = _run_child(script, "pause", _argv(tmp, st, killed), str(marker), "64", wait=False)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    folder = killed / "models" / "multitask"
    ckpt = torch.load(resume_path(folder), weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["rows"]) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (folder / "model.pt").exists()

    _run_child(script, "plain", _argv(tmp, st, killed), "-", "0")
    for name in ("model.pt", "history.parquet"):
        assert (folder / name).read_bytes() == (whole / "models" / "multitask" / name).read_bytes(), name
    assert not (folder / RESUME_DIR).exists()
    summaries = [json.loads((d / "train.multitask.summary.json").read_text())["models"]["multitask"]
                 for d in (whole, killed)]
    assert (summaries[0]["resumed"], summaries[0]["resumed_from_epoch"]) == (False, None)
    assert (summaries[1]["resumed"], summaries[1]["resumed_from_epoch"]) == (True, 1)
    assert summaries[0]["epochs"] == summaries[1]["epochs"] == 3


class Interrupted(Exception):
    pass


def _interrupt_after(monkeypatch, target: str, calls: int) -> None:
    """Make ``caveat.train.<target>`` raise on its ``calls``-th call (the earlier ones run)."""
    real, n = getattr(tr, target), [0]

    def fake(*a, **k):
        n[0] += 1
        if n[0] >= calls:
            raise Interrupted(target)
        return real(*a, **k)

    monkeypatch.setattr(tr, target, fake)


@pytest.mark.parametrize("target, calls, resumed_from", [
    ("train_epoch", 3, 2),             # whole-pass epochs, stopped at the start of epoch 3
    ("save_checkpoint", 1, 3),         # all epochs done, stopped before model.pt was written
])
def test_resume_in_process(data, monkeypatch, target, calls, resumed_from):
    tmp, _, (w, t, cts, g) = data
    p = dict(PARAMS, train_epoch_batches=None)
    ref = tmp / "ref_whole"
    if not (ref / "models" / "multitask" / "model.pt").exists():
        tr.train_regime("multitask", w, t, cts, g, p, ref)
    out = tmp / f"inproc_{target}"
    with monkeypatch.context() as m:
        _interrupt_after(m, target, calls)
        with pytest.raises(Interrupted):
            tr.train_regime("multitask", w, t, cts, g, p, out)
    s = tr.train_regime("multitask", w, t, cts, g, p, out)
    assert s["multitask"]["resumed_from_epoch"] == resumed_from
    for name in ("model.pt", "history.parquet"):
        assert (out / "models" / "multitask" / name).read_bytes() == (ref / "models" / "multitask" / name).read_bytes()


def test_checkpoint_of_other_params_or_data_is_refused(data, monkeypatch):
    tmp, _, (w, t, cts, g) = data
    p = dict(PARAMS, train_max_epochs=2)
    out = tmp / "refuse"
    with monkeypatch.context() as m:
        _interrupt_after(m, "train_epoch", 2)
        with pytest.raises(Interrupted):
            tr.train_regime("multitask", w, t, cts, g, p, out)
    ckpt = resume_path(out / "models" / "multitask")
    assert ckpt.exists()
    with pytest.raises(InputError, match="other params or data") as e:
        tr.train_regime("multitask", w, t, cts, g, dict(p, train_lr=0.001), out)
    assert str(ckpt) in str(e.value) and "delete it to start over" in str(e.value)
    with pytest.raises(InputError, match="other params or data"):                 # other targets
        tr.train_regime("multitask", w, t + np.float32(1), cts, g, p, out)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="delete it to start over"):
        tr.train_regime("multitask", w, t, cts, g, p, out)
    # deleting it starts over
    ckpt.unlink()
    assert tr.train_regime("multitask", w, t, cts, g, p, out)["multitask"]["resumed"] is False


def test_step_rerun_does_not_retrain_finished_models(data, monkeypatch, tmp_path):
    """The local step killed while training its second regime: the rerun rewrites the first
    regime's model from its kept final checkpoint (no epoch trained again, same bytes), resumes
    the second, and leaves no checkpoint once all are written."""
    tmp, st, _ = data
    for name in ("windows.parquet", "build_dataset.summary.json"):
        (tmp_path / name).symlink_to(tmp / name)
    p = dict(PARAMS, regimes=["multitask", "multitask_peaks"], fasta=str(st["fasta"]), train_max_epochs=2)
    ctx = StepContext(params=p, outdir=tmp_path)
    with monkeypatch.context() as m:
        _interrupt_after(m, "train_epoch", 4)                      # epoch 2 of multitask_peaks
        with pytest.raises(Interrupted):
            tr.run_step(ctx)
    first = (tmp_path / "models" / "multitask" / "model.pt").read_bytes()
    assert resume_path(tmp_path / "models" / "multitask").exists()
    epochs = []
    real = tr.train_epoch
    monkeypatch.setattr(tr, "train_epoch", lambda *a, **k: epochs.append(1) or real(*a, **k))
    tr.run_step(ctx)
    assert len(epochs) == 1                                        # multitask_peaks' epoch 2 only
    models = json.loads((tmp_path / "train.summary.json").read_text())["models"]
    assert [models[r]["resumed_from_epoch"] for r in ("multitask", "multitask_peaks")] == [2, 1]
    assert (tmp_path / "models" / "multitask" / "model.pt").read_bytes() == first
    assert not list((tmp_path / "models").rglob(RESUME_DIR))
