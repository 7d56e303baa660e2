"""The benchmark bundle and ``caveat benchmark`` (issue 18, point 7).

The run's ``benchmark_bundle/`` scores a model without the reads, the genome or the upstream
steps: the traced copy of multitask benchmarked on it gets the metric rows the run gave it
(and multitask) when listed in ``outside_models``. The bundle is portable (no absolute paths,
no timestamps), byte-identical when written again, its sequences are the genome's, and a
changed file is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caveat.bundle import read_bundle
from caveat.errors import InputError
from caveat.genome import read_genome
from test_outside_models import _rows, assert_same_rows, outside_run  # noqa: F401 (the session fixture)


@pytest.fixture(scope="module")
def bench(outside_run, tmp_path_factory) -> Path:
    """``caveat benchmark`` of the traced copy on the run's bundle (bundle copied away from the run)."""
    from caveat.cli import main

    where = tmp_path_factory.mktemp("bench")
    shutil.copytree(outside_run / "benchmark_bundle", where / "bundle")
    out = where / "out"
    assert main(["benchmark", "--bundle", str(where / "bundle"), "--model", str(outside_run.parent / "outside" /
                 "mt_copy.pt"), "--tasks", "ctA;ctB;ctC", "--out", str(out), "--threads", "2"]) == 0
    return out


def test_benchmark_gives_the_run_metrics_of_the_model(outside_run, bench):
    run = pd.read_parquet(outside_run / "metrics.parquet")
    got = pd.read_parquet(bench / "metrics.parquet")
    assert set(got["regime"]) == {"mt_copy"}
    assert list(got.columns) == list(run.columns)
    assert not got["metric"].str.startswith("delong_").any()      # one model: no regime tests
    assert_same_rows(got, _rows(run, "mt_copy"))
    assert_same_rows(got, _rows(run, "multitask"))
    s = json.loads((bench / "benchmark.summary.json").read_text())
    assert s["model"] == "mt_copy" and s["rows"] == len(got) and s["skipped_variants"] == 0


def test_bundle_is_portable_and_complete(outside_run):
    bdir = outside_run / "benchmark_bundle"
    man = json.loads((bdir / "manifest.json").read_text())
    text = (bdir / "manifest.json").read_text()
    assert str(outside_run) not in text and "/tmp" not in text and not _strings_with(man, "/")
    assert not [k for k in _keys(man) if any(w in k.lower() for w in ("time", "date", "host", "user"))]
    assert man["format"] == "caveat-benchmark-bundle" and man["format_version"] == 1
    assert man["cell_types"] == ["ctA", "ctB", "ctC"] and man["window_size"] == 1344
    assert set(man["files"]) == {p.name for p in bdir.iterdir()} - {"manifest.json"}
    b = read_bundle(bdir)
    windows = pd.read_parquet(outside_run / "windows.parquet")
    assert man["counts"]["test_windows"] == len(b.windows) == int((windows["split"] == "test").sum())
    assert {"ubiquitous", "specific"} <= set(man["strata"])
    sets = pd.read_parquet(outside_run / "variant_sets.parquet")
    assert man["counts"]["variant_set_rows"] == len(b.sets) == len(sets)
    assert {"set", "ref_ratio", "stratum", "split"} <= set(b.sets.columns)
    assert set(b.sets["negative_set"].dropna()) <= {"depth_matched", "region_controlled"}
    # test peaks and their targets: the values predict compared with (the run's peak rows)
    pred = pd.read_parquet(outside_run / "predictions.parquet")
    pk = pred[(pred["kind"] == "peak") & (pred["regime"] == "multitask")]
    got = b.peaks.set_index("peak_id")
    for ct, g in pk.groupby("cell_type"):
        assert np.allclose(got.loc[g["peak_id"], f"value_{ct}"].to_numpy(np.float32), g["target"].to_numpy())
    # the sequences are the genome's, and every window lies inside them
    seqs = pd.read_parquet(bdir / "sequences.parquet")
    genome = read_genome(_params(outside_run)["fasta"], sorted(set(seqs["chrom"])))
    for r in seqs.itertuples():
        assert np.array_equal(b.genome[r.chrom][r.start:r.end], genome[r.chrom][r.start:r.end])
    for r in b.windows.itertuples():
        known = b.genome[r.chrom][max(r.start - 1, 0):r.end + 1]
        assert (known < 4).mean() > 0.5, (r.chrom, r.start)


def _params(run: Path) -> dict:
    """The params the outside_run fixture ran with."""
    return json.loads((run.parent / "params.json").read_text())


def _strings_with(obj, needle: str) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings_with(v, needle)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings_with(v, needle)]
    return [obj] if isinstance(obj, str) and needle in obj else []


def _keys(obj) -> list[str]:
    if isinstance(obj, dict):
        return [k for k, v in obj.items() if k != "files"] + [x for v in obj.values() for x in _keys(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _keys(v)]
    return []


def test_bundle_is_byte_identical_when_written_again(outside_run, tiny_run, tmp_path):
    """The evaluate step run again on a copy writes the same bytes; the tiny run without outside
    models wrote the same data files (the bundle does not depend on the models)."""
    from caveat import evaluate as E
    from caveat.engine import StepContext
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    copy = tmp_path / "results"
    shutil.copytree(outside_run, copy, ignore=shutil.ignore_patterns("benchmark_bundle"))
    params = load_params(None, {**_params(outside_run), "outdir": str(copy)}, pipeline_steps())
    E.run_step(StepContext(params=params, outdir=copy))
    a, b = outside_run / "benchmark_bundle", copy / "benchmark_bundle"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    t = tiny_run / "benchmark_bundle"
    for name in ("windows.parquet", "peaks.parquet", "variant_sets.parquet", "variant_sets_stratum_matched.parquet",
                 "sequences.parquet"):
        assert (t / name).read_bytes() == (a / name).read_bytes(), name


def test_a_changed_bundle_file_is_refused(outside_run, tmp_path):
    bdir = tmp_path / "bundle"
    shutil.copytree(outside_run / "benchmark_bundle", bdir)
    seqs = pd.read_parquet(bdir / "sequences.parquet")
    seqs.loc[0, "sequence"] = "N" * len(seqs.loc[0, "sequence"])
    seqs.to_parquet(bdir / "sequences.parquet")
    with pytest.raises(InputError, match="differs from the manifest's SHA-256") as e:
        read_bundle(bdir)
    assert e.value.file == str(bdir / "sequences.parquet")
    with pytest.raises(InputError, match="not a benchmark bundle"):
        read_bundle(tmp_path)


def test_benchmark_refuses_bad_tasks(outside_run, tmp_path):
    from caveat.benchmark import main

    model = outside_run.parent / "outside" / "mt_copy.pt"
    with pytest.raises(InputError, match="unknown cell type 'ctQ'"):
        main(["--bundle", str(outside_run / "benchmark_bundle"), "--model", str(model), "--tasks", "ctA;ctQ;ctC",
              "--out", str(tmp_path / "o")])
    with pytest.raises(InputError, match="the model has 3 outputs, tasks 'ctA;ctB' lists 2"):
        main(["--bundle", str(outside_run / "benchmark_bundle"), "--model", str(model), "--tasks", "ctA;ctB",
              "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
