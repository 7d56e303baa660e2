"""Outside models on the benchmark (issue 18, point 7): the ``outside_models`` params list.

A traced (TorchScript) copy of the tiny run's multitask model, listed in ``outside_models``, is
predicted, scored and evaluated as one more regime: its metric rows equal multitask's. A second
outside model, a pickled ``nn.Module`` whose outputs are (unused, ctC, ctA), checks the
positional task map with ``-``. Bad sheets fail with InputErrors naming file, record and fix.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from caveat.errors import InputError
from caveat.models import load_checkpoint
from caveat.outside_models import OutsideModel, outside_models, read_manifest
from caveat.regimes import REGIMES

#: per-cell-type metrics (not pairs of tasks): a model mapping a subset of cell types keeps them equal
PER_CELL_TYPE = ("pearson_window", "pearson_peak", "imbalance_auroc", "imbalance_auprc", "direction_auroc",
                 "direction_auprc", "effect_spearman", "effect_pearson", "direction_auroc_strata")
KEYS = ["metric", "cell_type", "stratum", "replicate"]


class Reorder(torch.nn.Module):
    """A model whose outputs are (a constant, ctC, ctA) of a caveat multitask model (ctA, ctB, ctC)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        return torch.stack([torch.ones_like(y[:, 0]), y[:, 2], y[:, 0]], dim=1)


def trace(checkpoint: Path, dest: Path, seq_len: int = 1344) -> Path:
    """``torch.jit.trace`` of a caveat checkpoint into a TorchScript file."""
    m = load_checkpoint(checkpoint)
    torch.jit.trace(m, torch.zeros(2, 4, seq_len)).save(str(dest))
    return dest


@pytest.fixture(scope="session")
def outside_run(tiny_sim, tiny_run, tmp_path_factory) -> Path:
    """The tiny run resumed with two outside models: ``mt_copy`` (TorchScript trace of multitask,
    tasks ctA;ctB;ctC) and ``reorder`` (pickled nn.Module, tasks -;ctC;ctA). The fast ISM path is
    off so that the trained model and its TorchScript copy take the same (plain) scoring path:
    with it on, their scores differ by float32 rounding (~1e-8 relative; README)."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    out = tmp_path_factory.mktemp("outside_run") / "results"
    shutil.copytree(tiny_run, out)
    models = out.parent / "outside"
    models.mkdir()
    ckpt = tiny_run / "models" / "multitask" / "model.pt"
    trace(ckpt, models / "mt_copy.pt")
    torch.save(Reorder(load_checkpoint(ckpt)), models / "reorder.pt")
    (models / "sheet.csv").write_text("name,model,tasks\nmt_copy,mt_copy.pt,ctA;ctB;ctC\nreorder,reorder.pt,-;ctC;ctA\n")
    steps = pipeline_steps()
    params = load_params(tiny_sim / "params.yaml", {"outdir": str(out), "outside_models": str(models / "sheet.csv"),
                                                    "score_fast_ism": False}, steps)
    run_pipeline(steps, params, out, resume=True, threads=2)
    (out.parent / "params.json").write_text(json.dumps(params, default=str))   # for tests/test_benchmark.py
    return out


def _rows(m: pd.DataFrame, regime: str, metrics=None) -> pd.DataFrame:
    r = m[(m["regime"] == regime) & ~m["metric"].str.startswith("delong_")]
    return r if metrics is None else r[r["metric"].isin(metrics)]


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame, tol: float = 1e-6) -> None:
    """Same (metric, cell type, stratum, replicate) rows with values, CIs within ``tol`` and equal n."""
    j = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    assert (j["_merge"] == "both").all(), j.loc[j["_merge"] != "both", KEYS + ["_merge"]].head()
    for c in ("value", "ci_low", "ci_high"):
        x, y = j[f"{c}_a"].to_numpy(np.float64), j[f"{c}_b"].to_numpy(np.float64)
        both_nan = np.isnan(x) & np.isnan(y)
        assert (both_nan | (np.abs(x - y) <= tol)).all(), (c, j.loc[~both_nan & (np.abs(x - y) > tol), KEYS])
    assert (j["n_a"] == j["n_b"]).all()


# ---------------------------------------------------------------- the run


def test_traced_copy_has_the_metrics_of_the_regime_it_copies(outside_run):
    m = pd.read_parquet(outside_run / "metrics.parquet")
    copy, orig = _rows(m, "mt_copy"), _rows(m, "multitask")
    assert len(copy) > 100 and {"pearson_peak", "imbalance_auroc", "direction_auroc_strata",
                                "cross_imbalance_auroc", "overcorrelation"} <= set(copy["metric"])
    assert_same_rows(copy, orig)
    # it also enters the regime tests as a regime (study regimes first): DeLong vs multitask, a difference of 0
    d = m[(m["regime"] == "multitask") & (m["reference"] == "mt_copy") & m["metric"].str.startswith("delong_")]
    assert len(d) and np.allclose(d["value"], 0, atol=1e-9)


def test_positional_tasks_with_an_unused_output(outside_run):
    m = pd.read_parquet(outside_run / "metrics.parquet")
    part = _rows(m, "reorder", PER_CELL_TYPE)
    assert set(part["cell_type"]) == {"ctA", "ctC"}
    orig = _rows(m, "multitask", PER_CELL_TYPE)
    assert_same_rows(part, orig[orig["cell_type"].isin(["ctA", "ctC"])])
    pred = pd.read_parquet(outside_run / "predictions.parquet")
    p = pred[pred["regime"] == "reorder"]
    assert set(p["cell_type"]) == {"ctA", "ctC"} and set(p["replicate"]) == {"rep1"}
    mt = pred[(pred["regime"] == "multitask") & pred["cell_type"].isin(["ctA", "ctC"])]
    k = ["kind", "peak_id", "chrom", "start", "cell_type"]
    j = p.merge(mt, on=k, suffixes=("_o", "_m"))
    assert len(j) == len(p) == len(mt)
    assert np.array_equal(j["prediction_o"], j["prediction_m"]) and np.array_equal(j["target_o"], j["target_m"])
    scores = pd.read_parquet(outside_run / "variant_scores.parquet")
    assert set(scores.loc[scores["regime"] == "reorder", "cell_type"]) == {"ctA", "ctC"}


def test_outside_models_in_summaries_report_and_figures(outside_run):
    from caveat import plots as P

    summ = json.loads((outside_run / "score_variants.summary.json").read_text())
    assert {"mt_copy", "reorder"} <= set(summ["by_model"])
    # the sheet's models first, in its order (in-run models, e.g. a baseline step's, after them)
    assert json.loads((outside_run / "predict.summary.json").read_text())["outside_models"][:2] == ["mt_copy", "reorder"]
    regimes = json.loads((outside_run / "evaluate.summary.json").read_text())["regimes"]
    study = [r for r in regimes if r in REGIMES]
    assert study and regimes[:len(study)] == study and {"mt_copy", "reorder"} <= set(regimes[len(study):])
    text = (outside_run / "report.html").read_text()
    assert "mt_copy" in text and "reorder" in text
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text) and "<link" not in text   # one file
    # every figure that compares regimes draws the outside models (its tick labels or legend)
    m = pd.read_parquet(outside_run / "metrics.parquet")
    m = m[m["replicate"] == "median"]
    for name, fig in (("headline", P.fig_headline(m)), ("4ab", P.fig_4ab(m)), ("3cd", P.fig_3cd(m)),
                      ("effect", P.fig_effect_size(m))):
        assert fig is not None, name
        assert {"mt_copy", "reorder"} <= _texts(fig), name


def _texts(fig) -> set[str]:
    out = set()
    for ax in fig.axes:
        out |= {t.get_text() for t in ax.get_xticklabels()}
        leg = ax.get_legend()
        if leg is not None:
            out |= {t.get_text() for t in leg.get_texts()}
    return out


# ---------------------------------------------------------------- the sheet's checks


@pytest.fixture
def model_file(tmp_path) -> Path:
    """A TorchScript model with 3 outputs on 64 bp inputs."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv1d(4, 3, 5), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(),
                            torch.nn.Softplus()).eval()
    path = tmp_path / "m.pt"
    torch.jit.trace(m, torch.zeros(1, 4, 64)).save(str(path))
    return path


def _sheet(tmp_path, body: str) -> dict:
    (tmp_path / "sheet.csv").write_text(body)
    return {"outside_models": str(tmp_path / "sheet.csv"), "window_size": 64}


CTS = ["ctA", "ctB", "ctC"]


def test_a_good_sheet_and_in_run_manifests_in_order(tmp_path, model_file):
    p = _sheet(tmp_path, "name,model,tasks,seq_len\nmine,m.pt,ctB;-;ctA,64\n")
    out = tmp_path / "results"
    for name in ("zeta", "alpha"):                 # read in sorted folder order, after the sheet
        d = out / "models" / name
        d.mkdir(parents=True)
        shutil.copy(model_file, d / "kmer.pt")
        (d / "outside.json").write_text(json.dumps({"name": name, "model": "kmer.pt", "task_names": ["a", "b", "c"],
                                                    "cell_types": ["ctA", "ctB", "ctC"], "seq_len": 64}))
    ms = outside_models(p, out, CTS)
    assert [m.name for m in ms] == ["mine", "alpha", "zeta"]
    assert ms[0] == OutsideModel("mine", tmp_path / "m.pt", ["ctB", "task1", "ctA"], ["ctB", "-", "ctA"], 64)
    assert ms[0].columns == [0, 2] and ms[0].mapped == ["ctB", "ctA"]
    assert ms[1].task_names == ["a", "b", "c"] and ms[1].path == out / "models" / "alpha" / "kmer.pt"
    assert outside_models({"outside_models": None}, tmp_path / "none", CTS) == []


@pytest.mark.parametrize("body, where, problem, fix", [
    ("name,model,tasks\nx,m.pt,ctA;ctZ;ctB\n", "sheet.csv", r"line 2 \(x\).*unknown cell type 'ctZ'", "map each output"),
    ("name,model,tasks\nmultitask,m.pt,ctA;ctB;ctC\n", "sheet.csv", "'multitask' clashes with a study regime", "rename"),
    ("name,model,tasks\nx,m.pt,ctA;ctB;ctC\nx,m.pt,ctA;ctB;ctC\n", "sheet.csv", "'x' given twice", "own name"),
    ("name,model,tasks\nx,m.pt,ctA;ctB\n", "sheet.csv", "the model has 3 outputs, tasks 'ctA;ctB' lists 2",
     "list 3 entries"),
    ("name,model,tasks\nx,nope.pt,ctA;ctB;ctC\n", "nope.pt", "model file not found", "fix the model path"),
    ("name,model,tasks\nx,junk.pt,ctA;ctB;ctC\n", "junk.pt", "unreadable model", "torch.jit.save"),
    ("name,model\nx,m.pt\n", "sheet.csv", "missing column.*tasks", "name,model,tasks"),
    ("name,model,tasks\nx,m.pt,ctA;;ctC\n", "sheet.csv", r"line 2 \(x\): tasks 'ctA;;ctC' has an empty entry", "-"),
    ("name,model,tasks\nx,m.pt,ctA;ctA;-\n", "sheet.csv", "'ctA' mapped by two outputs", "mark the others -"),
    ("name,model,tasks,seq_len\nx,m.pt,ctA;ctB;ctC,abc\n", "sheet.csv", "seq_len 'abc' is not a positive", "input length"),
    ("name,model,tasks,seq_len\nx,m.pt,ctA;ctB;ctC,3\n", "m.pt", "fails on a zero \\(1, 4, 3\\) window", "seq_len"),
    ("name,model,tasks\nbad name,m.pt,ctA;ctB;ctC\n", "sheet.csv", "not a plain label", "letters, digits"),
])
def test_bad_sheets_name_file_record_and_fix(tmp_path, model_file, body, where, problem, fix):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InputError) as e:
        outside_models(_sheet(tmp_path, body), None, CTS)
    assert Path(e.value.file).name == where
    assert re.search(problem, e.value.problem), e.value.problem
    assert fix in e.value.fix


def test_a_missing_sheet_and_a_bad_manifest(tmp_path, model_file):
    with pytest.raises(InputError, match="sheet not found"):
        outside_models({"outside_models": str(tmp_path / "absent.csv")}, None, CTS)
    d = tmp_path / "models" / "k"
    d.mkdir(parents=True)
    (d / "outside.json").write_text(json.dumps({"name": "k", "model": "../m.pt", "task_names": ["a"],
                                                "cell_types": ["ctA"], "seq_len": 64}))
    with pytest.raises(InputError, match="not a file name in the manifest's folder") as e:
        read_manifest(d / "outside.json")
    assert e.value.file == str(d / "outside.json")


def test_a_file_that_is_neither_names_both_load_errors(tmp_path):
    """A model file neither TorchScript nor a torch pickle: the error carries torch.jit.load's
    message and torch.load's (the first alone hid why a TorchScript file did not load)."""
    from caveat.outside_models import open_model

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model\n")
    with pytest.raises(Exception) as script:
        torch.jit.load(str(junk))
    with pytest.raises(Exception) as pickled:
        torch.load(junk, weights_only=False)
    with pytest.raises(InputError) as e:
        open_model(junk)
    first = [str(x.value).strip().splitlines()[0] for x in (script, pickled)]
    assert first[0] != first[1]
    for loader, exc, line in zip(("torch.jit.load", "torch.load"), (script, pickled), first):
        assert f"{loader} failed ({exc.type.__name__}: {line})" in e.value.problem, e.value.problem
    assert e.value.file == str(junk) and "torch.jit.save" in e.value.fix


def test_cli_run_checks_the_sheet_before_any_step(tmp_path, model_file, tiny_sim):
    """``caveat run`` refuses a bad sheet in seconds, before any step is marked done."""
    import yaml

    from caveat.cli import main

    (tmp_path / "sheet.csv").write_text("name,model,tasks\nx,m.pt,ctA;ctB\n")
    params = yaml.safe_load((tiny_sim / "params.yaml").read_text())
    params.update(outside_models=str(tmp_path / "sheet.csv"), outdir=str(tmp_path / "out"))
    for k in ("input", "fasta", "vcf", "aligner_index", "blacklist"):
        if isinstance(params.get(k), str) and not Path(params[k]).is_absolute():
            params[k] = str(tiny_sim / params[k])
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    assert main(["run", "--params", str(tmp_path / "p.yaml")]) == 1
    assert not (tmp_path / "out" / "pipeline_info").exists() or not any((tmp_path / "out").glob("*.summary.json"))


# ---------------------------------------------------------------- Nextflow: the same models reach the same tasks
#
# Rules relied on (Nextflow 25.10 docs / source):
# - splitCsv(header: true, strip: true) emits one map per data row keyed by the header, values trimmed
#   (docs, operator splitCsv); fromPath → splitCsv → map keeps the file's row order;
# - toList() emits one list, [] for an empty channel, where collect() emits nothing (docs, operators
#   toList / collect): PREDICT must still run without outside models;
# - a path input with arity '0..*' takes none or more files, always as a list (docs, process inputs,
#   "arity"); stageAs 'outside_?/*' puts the i-th file in outside_<i>/ (TaskInputResolver.expandWildcards0,
#   tests/test_nextflow_runtime.py _stage_name): two models with one file name do not collide.

import csv as _csv  # noqa: E402

import nf_lsp  # noqa: E402
import nf_parse  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java >= 17 not installed: running Groovy needs it")


def _groovy_function(path: Path, name: str) -> str:
    text = path.read_text()
    m = re.search(rf"^def\s+{name}\s*\([^)]*\)\s*\{{", text, re.M)
    assert m, f"{path}: no function {name}"
    return text[m.start():nf_parse.matching(text, m.end() - 1)]


@needs_java
def test_nextflow_reads_the_sheet_as_the_local_engine_does(tmp_path, model_file):
    """workflows/caveat.nf outsideMeta() / outsideFile() on splitCsv's rows give the models read_sheet gives."""
    from caveat.outside_models import read_sheet

    sub = tmp_path / "sheets"
    sub.mkdir()
    shutil.copy(model_file, sub / "m.pt")
    (sub / "sheet.csv").write_text("name,model,tasks,seq_len\nmine, m.pt ,ctB;-;ctA,\nother,m.pt,ctA;ctB;ctC,80\n"
                                   f"abs,{model_file},ctC;-;-,64\n")
    with open(sub / "sheet.csv", newline="") as fh:   # splitCsv(header: true, strip: true)
        rows = [{k.strip(): (v or "").strip() for k, v in r.items()} for r in _csv.DictReader(fh)]
    script = _groovy_function(REPO / "workflows" / "caveat.nf", "outsideMeta") + "\n" + \
        _groovy_function(REPO / "workflows" / "caveat.nf", "outsideFile") + "\n" + \
        _groovy_function(REPO / "subworkflows" / "local" / "prepare_inputs" / "main.nf", "samplesheetFile") + "\n" + \
        "ExpandoMetaClass.enableGlobally()\ndef file(String s) { java.nio.file.Paths.get(s) }\ndef error(String m) { throw new IllegalStateException(m) }\n" + \
        "java.nio.file.Path.metaClass.exists = { -> java.nio.file.Files.exists((java.nio.file.Path) delegate) }\n" + \
        "def rows = new groovy.json.JsonSlurper().parseText(args[1])\n" + \
        "def dir = java.nio.file.Paths.get(args[0]).toAbsolutePath().parent\n" + \
        "println groovy.json.JsonOutput.toJson(rows.collect { r -> def m = outsideMeta(r, 64); def f = outsideFile(r, dir); " \
        "[m.id, m.regime, m.outside, m.task_names, m.seq_len, f.toString(), m.replicate] })\n"
    got = json.loads(nf_lsp.run_groovy(script, [sub / "sheet.csv", json.dumps(rows)]))
    want = read_sheet(sub / "sheet.csv", 64)
    assert [g[0] for g in got] == [m.name for m in want] == ["mine", "other", "abs"]
    for g, m in zip(got, want):
        assert g[1] == m.name and g[2] is True and g[6] is None
        assert g[3] == m.cell_types and g[4] == m.seq_len
        assert Path(g[5]).resolve() == m.path.resolve()


def _predict_sheet_groovy() -> str:
    """The PREDICT script's two lines that turn the staged outside models into a sheet."""
    text = (REPO / "modules" / "local" / "predict" / "main.nf").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("def outside_rows", "def outside_sheet"))]
    assert len(lines) == 2, "PREDICT writes the outside models' sheet"
    return "\n".join(lines)


@needs_java
def test_predict_task_sheet_round_trips_to_the_same_models(tmp_path, model_file):
    """The sheet the PREDICT task writes (bash printf of the staged files) reads back, through
    predict.py's --outside-models, as the models of the workflow's channel."""
    from caveat.outside_models import read_sheet

    metas = [{"id": "mine", "task_names": ["ctB", "-", "ctA"], "seq_len": 64},
             {"id": "two", "task_names": ["ctA", "ctB", "ctC"], "seq_len": 64}]
    staged = ["outside_1/m.pt", "outside_2/m.pt"]          # stageAs 'outside_?/*', one file name twice
    for f in staged:
        (tmp_path / f).parent.mkdir(parents=True)
        shutil.copy(model_file, tmp_path / f)
    script = ("def outside_metas = new groovy.json.JsonSlurper().parseText(args[0])\n"
              "def outside_files = new groovy.json.JsonSlurper().parseText(args[1])\n"
              + _predict_sheet_groovy() + "\nprintln outside_sheet\n")
    cmd = nf_lsp.run_groovy(script, [json.dumps(metas), json.dumps(staged)]).strip()
    assert cmd.startswith("printf")
    import subprocess

    subprocess.run(["bash", "-c", cmd], cwd=tmp_path, check=True)
    got = read_sheet(tmp_path / "outside_models.csv", 1344)
    assert [(m.name, m.cell_types, m.seq_len, m.path) for m in got] == [
        ("mine", ["ctB", "-", "ctA"], 64, tmp_path / "outside_1/m.pt"), ("two", ["ctA", "ctB", "ctC"], 64,
                                                                           tmp_path / "outside_2/m.pt")]
    # none: no sheet, no option (predict.py runs the trained regimes only)
    empty = nf_lsp.run_groovy("def outside_metas = []\ndef outside_files = []\n" + _predict_sheet_groovy() +
                              "\nprintln outside_sheet == '' ? 'EMPTY' : outside_sheet\n").strip()
    assert empty == "EMPTY"


def test_workflow_wiring_of_outside_models():
    """PREDICT gets the outside models as one toList() (so it runs without any), with arity 0..*;
    SCORE_VARIANTS gets one task per outside model, with its task map; the entry scripts accept
    what the modules pass."""
    from caveat.predict import build_parser as predict_parser
    from caveat.score_variants import build_parser as score_parser

    models = nf_parse.strip_comments((REPO / "subworkflows" / "local" / "models" / "main.nf").read_text())
    assert re.search(r"outside\.toList\(\)", models) and "outside.collect()" not in models
    assert re.search(r"TRAIN\.out\.model\s*\.mix\((ch_)?outside\)", models)   # (ch_outside: with in-run models)
    predict = nf_parse.modules()["PREDICT"]
    assert re.search(r"path\(outside_files, arity: '0\.\.\*', stageAs: 'outside_\?/\*'\)", predict.input)
    assert "--outside-models outside_models.csv" in (REPO / "modules/local/predict/main.nf").read_text()
    a = predict_parser().parse_args(["--windows", "w", "--summary", "s", "--fasta", "f", "--models", "m",
                                     "--outside-models", "outside_models.csv"])
    assert a.outside_models == "outside_models.csv"
    score = (REPO / "modules/local/score_variants/main.nf").read_text()
    assert '"--task-names ${meta.task_names.join(\' \')} --seq-len ${meta.seq_len}"' in score
    a = score_parser().parse_args(["--model", "x.pt", "--task-names", "ctA", "-", "ctC", "--seq-len", "64"])
    assert a.task_names == ["ctA", "-", "ctC"] and a.seq_len == 64
    wf = nf_parse.strip_comments((REPO / "workflows" / "caveat.nf").read_text())
    assert re.search(r"splitCsv\(header: true, strip: true\)", wf) and "params.outside_models" in wf
