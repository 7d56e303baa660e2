#!/usr/bin/env python3
"""Benchmark: training and inference sequences/s of the default Basset model
(5.84 M parameters, 1344 bp), and the window loader alone.

The loader (gather codes + random shift/RC + one-hot on the device) must
deliver at least 5x the training step's rate so that a GPU is never starved.

Usage: .venv/bin/python benchmarks/bench_train.py [--device auto|cpu|cuda] [--threads 2]

``--pool`` instead compares caveat's training max pool (``caveat.models.layers.MaxPool1d``)
with torch's ``nn.MaxPool1d`` on CPU: forward + backward of the demo model's pool inputs, and
a whole training step of the demo model with either pool, in the same run.
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


DEMO_MODEL = {"model_filters": 16, "model_filters_max": 32, "model_tower_blocks": 6, "model_bottleneck": 16,
              "model_dense": 32, "model_dropout": 0.1}


def pool_comparison(threads: int, seconds: float, batch_size: int = 64) -> dict:
    """Forward + backward ms of torch's and caveat's max pool at the demo model's pool inputs,
    and training sequences/s of the demo model with each (CPU, ``threads`` torch threads)."""
    from torch import nn

    from caveat.models.layers import MaxPool1d

    torch.set_num_threads(threads)
    out = {"threads": threads, "batch_size": batch_size}
    for shape, k in (((batch_size, 16, 1344), 3), ((batch_size, 16, 448), 2)):
        x = torch.randn(*shape, requires_grad=True)
        for name, pool in (("torch", nn.MaxPool1d(k)), ("caveat", MaxPool1d(k))):
            def fwd_bwd(pool=pool):
                pool(x).sum().backward()
            out[f"pool_{shape[-1]}_k{k}_{name}_ms"] = 1000 / rate(fwd_bwd, 1, seconds / 4, warmup=2)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (batch_size, 1344)), 4).float().transpose(1, 2).contiguous()
    y = torch.rand(batch_size, 4) * 5
    for name in ("torch", "caveat"):
        torch.manual_seed(0)
        model = BassetModel(ModelConfig.from_params(DEMO_MODEL, 4))
        if name == "torch":  # swap caveat's pools back to torch's
            for block in model.modules():
                if isinstance(getattr(block, "pool", None), MaxPool1d):
                    block.pool = nn.MaxPool1d(block.pool.kernel_size)
        opt = torch.optim.AdamW(model.parameters(), lr=0.005)

        def step(model=model, opt=opt):
            loss = poisson_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out[f"demo_model_train_{name}_pool_seqs_per_s"] = rate(step, batch_size, seconds, warmup=2)
    out["train_speedup"] = out["demo_model_train_caveat_pool_seqs_per_s"] / out["demo_model_train_torch_pool_seqs_per_s"]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}, indent=2))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--pool", action="store_true", help="compare the training max pools on CPU (see above)")
    a = ap.parse_args(argv)
    if a.pool:
        return pool_comparison(a.threads, a.seconds, a.batch_size)
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
