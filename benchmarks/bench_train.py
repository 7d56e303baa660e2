#!/usr/bin/env python3
"""Benchmark: training and inference sequences/s of the default Basset model
(5.84 M parameters, 1344 bp), and the window loader alone.

The loader (gather codes + random shift/RC + one-hot on the device) must
deliver at least 5x the training step's rate so that a GPU is never starved.

Usage: .venv/bin/python benchmarks/bench_train.py [--device auto|cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from caveat.loader import GenomeCodes, WindowLoader
from caveat.models import BassetModel, ModelConfig, count_parameters
from caveat.onehot import one_hot
from caveat.train import autocast, poisson_loss, resolve_device


def rate(fn, n_seq: int, min_s: float, warmup: int = 1, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    sync()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_s:
        fn()
        n += n_seq
    sync()
    return n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    bf16 = device.type == "cuda"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    genome = GenomeCodes.from_dict({"chr1": rng.integers(0, 4, 20_000_000).astype(np.uint8)})
    starts = genome.abs_starts(["chr1"] * 100_000, rng.integers(0, 20_000_000 - 1344, 100_000))
    targets = rng.poisson(5.0, (100_000, 1)).astype(np.float32)
    loader = WindowLoader(genome, starts, targets, 1344, batch_size=a.batch_size, shuffle=True, max_shift=3, rc=True)

    model = BassetModel(ModelConfig()).to(device)
    n_params = count_parameters(model)
    step_model = torch.compile(model) if a.compile and device.type == "cuda" else model
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.98)
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    def load_only():
        codes, y = next_batch()
        one_hot(codes.to(device)), y.to(device)

    codes, y = next_batch()
    x_fixed, y_fixed = one_hot(codes.to(device)), y.to(device)

    def train_step():
        model.train()
        with autocast(device, bf16):
            pred = step_model(x_fixed)
        loss = poisson_loss(pred.float(), y_fixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    x_inf = torch.cat([x_fixed] * 4)

    @torch.no_grad()
    def infer():
        model.eval()
        with autocast(device, bf16):
            model(x_inf)

    out = {"device": str(device), "bf16": bf16, "threads": a.threads, "batch_size": a.batch_size,
           "parameters": n_params}
    # codes only (what the CPU must deliver when the model runs on a GPU), then with one-hot on the device
    out["loader_codes_seqs_per_s"] = rate(next_batch, a.batch_size, a.seconds / 2)
    out["loader_seqs_per_s"] = rate(load_only, a.batch_size, a.seconds / 2, sync=sync)
    out["train_seqs_per_s"] = rate(train_step, a.batch_size, a.seconds, warmup=2, sync=sync)
    out["inference_seqs_per_s"] = rate(infer, len(x_inf), a.seconds, sync=sync)
    out["loader_over_train"] = out["loader_seqs_per_s"] / out["train_seqs_per_s"]
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}, indent=2))
    assert out["loader_over_train"] >= 5, "the loader would starve the training step"
    return out


if __name__ == "__main__":
    main()
