"""train (and the loader): planted motifs are learnt, permuted targets are not,
runs are deterministic, regimes select their windows, bad inputs fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from caveat.errors import InputError
from caveat.genome import decode
from caveat.loader import WindowLoader, augment_codes
from caveat.models import load_checkpoint
from caveat.train import (PARAMS, load_inputs, main, make_optimizer, pearson_per_task, poisson_loss,
                          regime_data, resolve_device, train_regime)
from test_build_dataset import build_small, make_study

SMALL_PARAMS = dict(PARAMS, seed=0, window_size=384, model_filters=16, model_filters_max=32,
                    model_tower_blocks=3, model_bottleneck=16, model_dense=32, train_optimizer="adamw",
                    train_lr=0.002, train_batch_size=32, train_max_epochs=6, train_patience=3, train_device="cpu",
                    train_replicates=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    st = make_study(tmp)
    build_small(st, tmp / "windows.parquet")
    torch.set_num_threads(1)
    return tmp, st, load_inputs(tmp / "windows.parquet", tmp / "build_dataset.summary.json", st["fasta"])


@pytest.fixture(scope="module")
def multitask(data):
    tmp, st, (w, t, cts, g) = data
    out = tmp / "mt"
    summary = train_regime("multitask", w, t, cts, g, SMALL_PARAMS, out)
    return out, summary


def test_loader_gathers_genome_windows(data):
    tmp, st, (w, t, cts, g) = data
    abs_starts = g.abs_starts(w.chrom.to_numpy(), w.start.to_numpy())
    loader = WindowLoader(g, abs_starts, t, 384, batch_size=50)
    codes, y = next(iter(loader))
    assert codes.shape == (50, 384) and codes.dtype == torch.uint8 and torch.equal(y, torch.from_numpy(t[:50]))
    for i in (0, 17, 49):
        r = w.iloc[i]
        assert decode(codes[i].numpy()) == st["seqs"][r.chrom][r.start:r.end].upper()
    # augmentation: each row is a shifted window or its reverse complement
    rng = np.random.default_rng(0)
    aug = augment_codes(g, abs_starts[:200], 384, rng, max_shift=3, rc=True)
    comp = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    n_rc, shifts = 0, set()
    for i in range(200):
        r, s = w.iloc[i], decode(aug[i])
        seq = st["seqs"][r.chrom]
        cands = {d: seq[max(r.start + d, 0):r.start + d + 384] for d in range(-3, 4)}
        fwd = [d for d, c in cands.items() if c == s]
        rev = [d for d, c in cands.items() if "".join(comp[b] for b in reversed(c)) == s]
        assert fwd or rev or r.start < 3
        n_rc += bool(rev) and not fwd
        shifts.update(fwd or rev)
    assert 60 < n_rc < 140 and shifts == set(range(-3, 4))


def test_loss_and_pearson():
    y = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    assert poisson_loss(y.clamp(min=1e-3) * 0 + y.mean(), y) > poisson_loss(y.clamp(min=1e-3), y)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    expect = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(3)]
    assert np.allclose(pearson_per_task(a, b), expect)
    assert np.isnan(pearson_per_task(np.ones((5, 1)), b[:5, :1])[0])


def test_multitask_learns_planted_motifs(multitask, data):
    out, summary = multitask
    tmp, st, (w, t, cts, g) = data
    hist = pd.read_parquet(out / "models" / "multitask" / "history.parquet")
    assert list(hist.columns) == ["epoch", "train_loss", "valid_loss", "valid_pearson"]
    assert hist.train_loss.iloc[-1] < hist.train_loss.iloc[0]
    best = summary["multitask"]["best_valid_pearson"]
    assert best == pytest.approx(hist.valid_pearson.max()) and best > 0.3, hist
    # the checkpoint is the best epoch: recomputing the validation Pearson gives the history's best
    m = load_checkpoint(out / "models" / "multitask" / "model.pt")
    assert m.cell_types == ["A", "B"] and m.extra["best_epoch"] == int(hist.epoch[hist.valid_pearson.idxmax()])
    from caveat.train import predict_loader

    v = np.flatnonzero(w.split.to_numpy() == "valid")
    loader = WindowLoader(g, g.abs_starts(w.chrom.to_numpy()[v], w.start.to_numpy()[v]), t[v], 384, batch_size=256)
    pred = predict_loader(m, loader, torch.device("cpu"))
    assert np.nanmean(pearson_per_task(pred, t[v])) == pytest.approx(best, abs=1e-4)


def test_permuted_targets_control(data):
    tmp, st, (w, t, cts, g) = data
    p = dict(SMALL_PARAMS, train_permute_targets=True, train_max_epochs=3)
    s = train_regime("multitask", w, t, cts, g, p, tmp / "perm")
    assert s["multitask"]["best_valid_pearson"] < 0.2


def test_deterministic_weights(data):
    tmp, st, (w, t, cts, g) = data
    p = dict(SMALL_PARAMS, train_max_epochs=1, train_max_windows=160)
    sds = []
    for k in range(2):
        train_regime("multitask", w, t, cts, g, p, tmp / f"det{k}")
        sds.append(torch.load(tmp / f"det{k}" / "models" / "multitask" / "model.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(sds[0][k], sds[1][k]) for k in sds[0])
    assert ((tmp / "det0" / "models" / "multitask" / "model.pt").read_bytes()
            == (tmp / "det1" / "models" / "multitask" / "model.pt").read_bytes())


def test_regime_windows_and_errors(data):
    tmp, st, (w, t, cts, g) = data
    p = dict(SMALL_PARAMS)
    tr, va, _ = regime_data(w, t, "multitask_peaks", p)
    assert w.in_peak.to_numpy()[tr].all() and (w.split.to_numpy()[tr] == "train").all()
    assert (w.split.to_numpy()[va] == "valid").all() and len(tr) == (w.in_peak & (w.split == "train")).sum()
    tr2, _, _ = regime_data(w, t, "multitask_nonubiquitous", p)
    assert set(tr2) < set(tr)
    no_spec = w.assign(in_nonubiquitous_peak=False)
    with pytest.raises(InputError, match="no training windows"):
        regime_data(no_spec, t, "multitask_nonubiquitous", p)
    with pytest.raises(InputError, match="unknown regime"):
        regime_data(w, t, "bogus", p)
    with pytest.raises(InputError, match="train_optimizer"):
        make_optimizer(torch.nn.Linear(2, 2), dict(p, train_optimizer="lbfgs"))
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(InputError):
        resolve_device("nonsense")


TIMING_WORDS = ("second", "time", "elapsed", "duration", "wall")


def _timing_keys(obj) -> list[str]:
    """Keys anywhere in a summary that name a wall-clock figure."""
    if isinstance(obj, dict):
        own = [k for k in obj if any(w in k.lower() for w in TIMING_WORDS)]
        return own + [k for v in obj.values() for k in _timing_keys(v)]
    if isinstance(obj, list):
        return [k for v in obj for k in _timing_keys(v)]
    return []


def test_summaries_hold_no_wall_clock_time(multitask):
    """Two identical runs must write identical summaries: timings go to the log only."""
    _, summary = multitask
    assert summary["multitask"]["epochs"] >= 1 and _timing_keys(summary) == []


def test_single_task_cli(data):
    tmp, st, _ = data
    out = tmp / "st"
    main(["--windows", str(tmp / "windows.parquet"), "--summary", str(tmp / "build_dataset.summary.json"),
          "--fasta", str(st["fasta"]), "--regime", "single_task", "--outdir", str(out), "--window-size", "384",
          "--model-filters", "8", "--model-filters-max", "8", "--model-tower-blocks", "2", "--model-bottleneck", "8",
          "--model-dense", "8", "--train-max-epochs", "1", "--train-max-windows", "64", "--train-device", "cpu",
          "--train-replicates", "1"])
    written = json.loads((out / "train.single_task.summary.json").read_text())
    assert set(written["models"]) == {"single_task/A", "single_task/B"} and _timing_keys(written) == []
    for ct in ("A", "B"):
        m = load_checkpoint(out / "models" / "single_task" / ct / "model.pt")
        assert m.cell_types == [ct] and m.config.n_tasks == 1
        assert (out / "models" / "single_task" / ct / "history.parquet").exists()
    with pytest.raises(InputError, match="not a cell type"):
        main(["--windows", str(tmp / "windows.parquet"), "--summary", str(tmp / "build_dataset.summary.json"),
              "--fasta", str(st["fasta"]), "--regime", "single_task", "--cell-type", "Z", "--outdir", str(out)])


def test_same_model_whatever_the_thread_count(data):
    """The checkpoint's bytes do not depend on torch's ambient thread count (what --threads set
    before): CPU training runs on train_cpu_threads threads. For this model 1 and 2 threads
    give other bits (torch splits the batchnorm and weight-gradient reductions by thread)."""
    tmp, st, (w, t, cts, g) = data
    p = dict(SMALL_PARAMS, train_max_epochs=1, train_max_windows=160)
    was = torch.get_num_threads()
    blobs = []
    try:
        for k, ambient in enumerate((1, 2, 1)):
            torch.set_num_threads(ambient)
            train_regime("multitask", w, t, cts, g, p, tmp / f"thr{k}")
            assert torch.get_num_threads() == ambient                   # restored after
            blobs.append((tmp / f"thr{k}" / "models" / "multitask" / "model.pt").read_bytes())
        torch.set_num_threads(1)
        train_regime("multitask", w, t, cts, g, dict(p, train_cpu_threads=2), tmp / "thr_param2")
    finally:
        torch.set_num_threads(was)
    assert blobs[0] == blobs[1] == blobs[2]
    # the param is honoured: it ran on 2 threads (and still wrote a valid model)
    assert load_checkpoint(tmp / "thr_param2" / "models" / "multitask" / "model.pt").cell_types == cts


def test_regime_params_are_the_study_defaults():
    """Defaults from the authors' Loeb et al. parameter files: multitask lr 0.005, batch 64;
    single-task lr 0.0005, batch 256; SGD momentum 0.98, patience 3, 3-30 epochs, no clipping."""
    from caveat.train import regime_params

    assert (PARAMS["train_optimizer"], PARAMS["train_momentum"], PARAMS["train_patience"],
            PARAMS["train_min_epochs"], PARAMS["train_max_epochs"], PARAMS["train_clip_norm"]) == ("sgd", 0.98, 3, 3, 30, 0)
    for regime in ("multitask", "multitask_peaks", "multitask_nonubiquitous"):
        rp = regime_params(PARAMS, regime)
        assert (rp["train_lr"], rp["train_batch_size"]) == (0.005, 64)
    rp = regime_params(PARAMS, "single_task")
    assert (rp["train_lr"], rp["train_batch_size"]) == (0.0005, 256)
    own = regime_params(dict(PARAMS, train_lr_single_task=0.01, train_batch_size_single_task=8), "single_task")
    assert (own["train_lr"], own["train_batch_size"]) == (0.01, 8)


def test_early_stopping_follows_basenji(data, monkeypatch):
    """Stop once more than train_patience epochs in a row did not improve, never before
    train_min_epochs (Basenji's trainer): a validation R that never improves after epoch 1
    stops after epoch 1 + patience + 1, or at train_min_epochs if later."""
    import caveat.train as tr

    tmp, st, (w, t, cts, g) = data
    monkeypatch.setattr(tr, "pearson_per_task", lambda p, y: np.zeros(y.shape[1]))   # never improves
    p = dict(SMALL_PARAMS, train_max_epochs=9, train_max_windows=32, model_filters=4, model_filters_max=4,
             model_tower_blocks=1, model_bottleneck=4, model_dense=4)
    for patience, min_epochs, epochs in ((0, 1, 2), (2, 1, 4), (1, 6, 6), (3, 3, 5)):
        s = tr.train_regime("multitask", w, t, cts, g, dict(p, train_patience=patience, train_min_epochs=min_epochs),
                            tmp / f"es{patience}_{min_epochs}")
        assert s["multitask"]["epochs"] == epochs, (patience, min_epochs)


# ---------------------------------------------------------------- replicates (issue 18.1)


def _state_bytes(model) -> list[bytes]:
    return [v.numpy().tobytes() for v in model.state_dict().values()]


def test_replicates_differ_and_each_reproduces_from_its_recorded_seed(data):
    """Two replicates of one regime: models/<regime>/rep<k>/, seeds seed and seed + 1000 recorded in
    the checkpoint and the summary, different weights; each one's weights come back bit for bit
    from a fresh training with its recorded seeds (replicate 1 of a run seeded with it)."""
    from caveat.train import train_model

    tmp, st, (w, t, cts, g) = data
    p = dict(SMALL_PARAMS, seed=5, train_max_epochs=1, train_max_windows=160, train_replicates=2)
    summary = train_regime("multitask", w, t, cts, g, p, tmp / "reps")
    assert set(summary) == {"multitask/rep1", "multitask/rep2"}
    models = [load_checkpoint(tmp / "reps" / "models" / "multitask" / f"rep{k}" / "model.pt") for k in (1, 2)]
    assert [m.extra["seed"] for m in models] == [5, 1005] and [m.extra["replicate"] for m in models] == [1, 2]
    assert [summary[f"multitask/rep{k}"]["seed"] for k in (1, 2)] == [5, 1005]
    assert all(m.extra["data_seed"] == 5 for m in models)
    assert _state_bytes(models[0]) != _state_bytes(models[1])
    abs_starts = g.abs_starts(w["chrom"].to_numpy(), w["start"].to_numpy())
    for m in models:
        tr_idx, va_idx, tt = regime_data(w, t, "multitask", dict(p, seed=m.extra["data_seed"]))
        again, _, _ = train_model(g, abs_starts, tt, tr_idx, va_idx, dict(p, seed=m.extra["seed"]),
                                  resolve_device("cpu"), "again")
        assert _state_bytes(again) == _state_bytes(m)


def test_single_task_replicates_layout_and_cli(data):
    """single_task with 2 replicates: models/single_task/rep<k>/<cell type>/; the CLI trains one
    replicate and names its summary train.<regime>.<cell type>.rep<k>.summary.json."""
    tmp, st, _ = data
    out = tmp / "st_reps"
    main(["--windows", str(tmp / "windows.parquet"), "--summary", str(tmp / "build_dataset.summary.json"),
          "--fasta", str(st["fasta"]), "--regime", "single_task", "--cell-type", "A", "--replicate", "2",
          "--outdir", str(out), "--window-size", "384", "--model-filters", "8", "--model-filters-max", "8",
          "--model-tower-blocks", "2", "--model-bottleneck", "8", "--model-dense", "8", "--train-max-epochs", "1",
          "--train-max-windows", "64", "--train-device", "cpu", "--train-replicates", "2", "--seed", "3"])
    written = json.loads((out / "train.single_task.A.rep2.summary.json").read_text())
    assert set(written["models"]) == {"single_task/rep2/A"} and written["models"]["single_task/rep2/A"]["seed"] == 1003
    assert load_checkpoint(out / "models" / "single_task" / "rep2" / "A" / "model.pt").cell_types == ["A"]
    with pytest.raises(InputError, match="outside"):
        main(["--windows", str(tmp / "windows.parquet"), "--summary", str(tmp / "build_dataset.summary.json"),
              "--fasta", str(st["fasta"]), "--regime", "multitask", "--replicate", "3", "--train-replicates", "2",
              "--outdir", str(out)])


def test_local_engine_trains_replicates_in_parallel_to_the_same_bits(data):
    """run_step with --threads 2 trains the models in two worker processes: the same model.pt
    bytes as one after another in this process."""
    from caveat.engine import StepContext
    from caveat.train import parallel_models, run_step

    tmp, st, _ = data
    p = dict(SMALL_PARAMS, regimes=["multitask"], fasta=str(st["fasta"]), train_max_epochs=1,
             train_max_windows=96, train_replicates=2)
    assert parallel_models(2, p) == 2 and parallel_models(2, dict(p, train_cpu_threads=2)) == 1
    blobs = {}
    for threads in (1, 2):
        out = tmp / f"engine{threads}"
        out.mkdir()
        for f in ("windows.parquet", "build_dataset.summary.json"):
            (out / f).write_bytes((tmp / f).read_bytes())
        run_step(StepContext(params=p, outdir=out, threads=threads))
        blobs[threads] = [(out / "models" / "multitask" / f"rep{k}" / "model.pt").read_bytes() for k in (1, 2)]
        assert json.loads((out / "train.summary.json").read_text())["replicates"] == 2
    assert blobs[1] == blobs[2] and blobs[1][0] != blobs[1][1]
