"""Shared fixtures: the tiny simulated study and the pipeline run on it.

Both are built once per test session. ``CAVEAT_DEMO_DIR`` may point at an
existing ``caveat simulate --preset demo`` output (with ``results/`` from
``caveat run``) for the ``demo``-marked tests; otherwise they build it (slow).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# one torch thread: the tests' models are tiny, and oversubscribed threads on a
# loaded 2-core machine make them tens of times slower
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_DATA = SHARED / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    """``../shared/data/real`` (real reads and genotypes beside the clone, as CI has); the test
    is skipped, saying why, on a machine without it (a fresh clone: `make test` must pass)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"needs the shared real data at {REAL_DATA} (beside the clone, as in CI); absent here")
    return REAL_DATA


def _need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: run `make setup` (installs bowtie2, samtools, bcftools)")


@pytest.fixture(scope="session")
def tiny_sim(tmp_path_factory) -> Path:
    """Directory written by ``caveat simulate --preset tiny --seed 7``."""
    from caveat.simulate import simulate

    _need_tools("bowtie2", "bowtie2-build")
    out = tmp_path_factory.mktemp("tiny_sim")
    simulate("tiny", seed=7, out=out)
    return out


@pytest.fixture(scope="session")
def tiny_sc_sim(tmp_path_factory) -> Path:
    """Directory written by ``caveat simulate --preset tiny-sc --seed 7``: the tiny study (same
    genome, donors, fragments, truth) as two 10x-like libraries pooling every donor."""
    from caveat.simulate import simulate

    _need_tools("bowtie2", "bowtie2-build")
    out = tmp_path_factory.mktemp("tiny_sc_sim")
    simulate("tiny-sc", seed=7, out=out)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_sim, tmp_path_factory) -> Path:
    """Outdir of ``caveat run`` (every available step) on the tiny study."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    outdir = tmp_path_factory.mktemp("tiny_run")
    steps = pipeline_steps()
    params = load_params(tiny_sim / "params.yaml", {"outdir": str(outdir)}, steps)
    run_pipeline(steps, params, outdir, threads=2)
    return outdir


@pytest.fixture(scope="session")
def tiny_sc_run(tiny_sc_sim, tmp_path_factory) -> Path:
    """Outdir of ``caveat run --until call_imbalance`` on the tiny single-cell study (inputs
    checked first, as ``caveat run`` does)."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps
    from caveat.validate import validate_inputs

    outdir = tmp_path_factory.mktemp("tiny_sc_run")
    steps = pipeline_steps()
    params = load_params(tiny_sc_sim / "params.yaml", {"outdir": str(outdir)}, steps)
    validate_inputs(params, steps)
    run_pipeline(steps, params, outdir, until="call_imbalance", threads=2)
    return outdir


@pytest.fixture(scope="session")
def demo_sc_run(tmp_path_factory) -> Path:
    """Outdir of the whole pipeline on the demo-sc study (``CAVEAT_DEMO_SC_DIR`` holding a
    ``caveat simulate --preset demo-sc --seed 1`` study, resumed into ``<dir>/results``; or built
    now: tens of minutes)."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps
    from caveat.simulate import simulate
    from caveat.validate import validate_inputs

    _need_tools("bowtie2", "bowtie2-build")
    env = os.environ.get("CAVEAT_DEMO_SC_DIR")
    study = Path(env) if env else tmp_path_factory.mktemp("demo_sc_sim")
    if not (study / "simulate.summary.json").exists():
        simulate("demo-sc", seed=1, out=study)
    outdir = study / "results"
    steps = pipeline_steps()
    params = load_params(study / "params.yaml", {"outdir": str(outdir)}, steps)
    validate_inputs(params, steps)
    run_pipeline(steps, params, outdir, resume=True, threads=2)
    return outdir


def _demo_dir(tmp_path_factory) -> Path:
    env = os.environ.get("CAVEAT_DEMO_DIR")
    if env:
        return Path(env)
    from caveat.simulate import simulate

    out = tmp_path_factory.mktemp("demo_sim")
    simulate("demo", seed=1, out=out)
    return out


@pytest.fixture(scope="session")
def demo_sim(tmp_path_factory) -> Path:
    """The demo-preset study (``CAVEAT_DEMO_DIR`` or built now: minutes)."""
    _need_tools("bowtie2", "bowtie2-build")
    return _demo_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def demo_run(demo_sim) -> Path:
    """Outdir of the pipeline on the demo study (``<demo>/results``, resumed if present)."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    outdir = demo_sim / "results"
    steps = pipeline_steps()
    params = load_params(demo_sim / "params.yaml", {"outdir": str(outdir)}, steps)
    run_pipeline(steps, params, outdir, resume=True, threads=2)
    return outdir
