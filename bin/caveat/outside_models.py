"""Outside models on the benchmark (issue 18, point 7): any model next to the trained regimes.

Two sources, read in this order (:func:`outside_models`):

1. the params list ``outside_models``: a CSV sheet (nf-core style, one row per model)::

       name,model,tasks,seq_len
       enformer_lite,models/enformer_lite.pt,ctA;ctB;-;ctC,1344

   * ``name`` — the model's label in every table and figure (its ``regime``): letters,
     digits, ``_ . -``; not a study regime (``single_task`` …) nor a reserved label
     (``replicate``, ``ensemble``, ``median``, ``mean_of_tasks``); unique.
   * ``model`` — a TorchScript file, a pickled ``torch.nn.Module`` (``torch.save(model)``) or a
     caveat checkpoint (``model.pt`` of ``caveat train``); a relative path is taken from the
     sheet's folder. It maps one-hot (N, 4, L) to (N, T) (:mod:`caveat.model_adapter`).
   * ``tasks`` — **positional**: one entry per model output, ``;``-separated, the study cell
     type that output predicts, or ``-`` for an output the benchmark ignores
     (``ctA;ctB;-;ctC``: output 0 → ctA, 1 → ctB, 2 unused, 3 → ctC). T entries for T outputs.
   * ``seq_len`` (optional) — input length L; default the run's ``window_size``.

2. in-run models that declare themselves with a manifest ``<outdir>/models/<name>/outside.json``
   (e.g. a baseline a step of the run fits), read in sorted folder order::

       {"name": "<name>", "model": "<file name in that folder>", "task_names": [...],
        "cell_types": [...], "seq_len": L}

   ``task_names`` names the T outputs, ``cell_types`` (same length) gives each output's cell
   type or ``-`` (ignored), as ``tasks`` does in the sheet.

Each is checked before use (:func:`check_outside_model`): the file opens, one forward pass on
an all-N (zero) window of length L gives shape (1, T) with T = the number of tasks, every
mapped cell type is a study cell type, no cell type mapped twice. Errors are
:class:`~caveat.errors.InputError` naming the file, the record and the fix.

An outside model is scored as one more "regime": label = its name, replicate ``rep1``,
predictions and variant scores for the cell types it maps (predict, score_variants), metrics
rows like every regime's (evaluate, report).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import InputError
from .log import get_logger
from .regimes import ENSEMBLE, MEDIAN, REGIMES

log = get_logger("outside_models")

#: the marker of a model output the benchmark ignores
UNUSED = "-"
#: labels a model may not take: the study's regimes and the labels of metrics.parquet
RESERVED = (*REGIMES, "replicate", ENSEMBLE, MEDIAN, "mean_of_tasks", "external", "user")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: the manifest an in-run model writes in its folder under ``<outdir>/models/``
MANIFEST = "outside.json"
COLUMNS = ("name", "model", "tasks")


@dataclass(frozen=True)
class OutsideModel:
    """One outside model.

    Attributes
    ----------
    name : str
        Its label (``regime`` of its rows).
    path : Path
        The model file.
    task_names : list of str
        T names, one per model output.
    cell_types : list of str
        T entries: the cell type of each output, ``-`` for an ignored one.
    seq_len : int
        Input length L.
    """

    name: str
    path: Path
    task_names: list = field(default_factory=list)
    cell_types: list = field(default_factory=list)
    seq_len: int = 1344

    @property
    def columns(self) -> list[int]:
        """Indices of the outputs that predict a cell type (in output order)."""
        return [i for i, ct in enumerate(self.cell_types) if ct != UNUSED]

    @property
    def mapped(self) -> list[str]:
        """The cell types predicted, in output order (one per :attr:`columns` entry)."""
        return [self.cell_types[i] for i in self.columns]

    @property
    def tasks(self) -> str:
        """The positional ``tasks`` string of the sheet (``ctA;ctB;-``)."""
        return ";".join(self.cell_types)


class OutputColumns(torch.nn.Module):
    """A model restricted to some of its outputs: ``forward(x) = model(x)[:, columns]``.

    Parameters
    ----------
    model : torch.nn.Module or torch.jit.ScriptModule
        (N, 4, L) → (N, T).
    columns : list of int
        K output indices kept, in order → (N, K).
    """

    def __init__(self, model: torch.nn.Module, columns):
        super().__init__()
        self.model = model
        self.register_buffer("columns", torch.as_tensor(list(columns), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.columns)


# ---------------------------------------------------------------- the sheet


def parse_tasks(text: str, where, record: str) -> list[str]:
    """``ctA;ctB;-;ctC`` → ``["ctA", "ctB", "-", "ctC"]`` (one entry per model output)."""
    items = [t.strip() for t in str(text or "").split(";")]
    if not items or any(not t for t in items):
        raise InputError(where, f"{record}: tasks {text!r} has an empty entry",
                         "list one cell type (or - for an unused output) per model output, separated by ';', "
                         "e.g. ctA;ctB;-")
    return items


def read_sheet(path, default_seq_len: int = 1344) -> list[OutsideModel]:
    """The models of an ``outside_models`` sheet (checked for form, not yet opened).

    Parameters
    ----------
    path : path
        CSV with columns name, model, tasks[, seq_len].
    default_seq_len : int
        L of a row without ``seq_len``.

    Returns
    -------
    list of OutsideModel
        In sheet order.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "outside_models sheet not found",
                         "set outside_models to a CSV with columns name,model,tasks[,seq_len], or leave it empty")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        header = [h.strip() for h in (rows[0].keys() if rows else [])]
    if not rows:
        raise InputError(path, "no models listed (empty sheet or header only)",
                         "add one row per model: name,model,tasks[,seq_len]")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)} (has: {', '.join(header)})",
                         "the header must be name,model,tasks[,seq_len]")
    out = []
    for i, raw in enumerate(rows, start=2):
        r = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        record = f"line {i} ({r.get('name') or 'no name'})"
        seq_len = _seq_len(r.get("seq_len"), default_seq_len, path, record)
        cts = parse_tasks(r["tasks"], path, record)
        model = Path(r["model"]) if r["model"] else None
        if model is None:
            raise InputError(path, f"{record}: empty model path", "give the model file (TorchScript or nn.Module)")
        model = model if model.is_absolute() else path.parent / model
        tn = [ct if ct != UNUSED else f"task{j}" for j, ct in enumerate(cts)]
        out.append(OutsideModel(r["name"], model, tn, cts, seq_len))
    return out


def _seq_len(text, default: int, where, record: str) -> int:
    if text in (None, ""):
        return int(default)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise InputError(where, f"{record}: seq_len {text!r} is not a positive integer",
                         "give the model's input length in bp (or leave seq_len empty for window_size)")
    return n


def read_manifest(path) -> OutsideModel:
    """One in-run model from its ``outside.json`` (the model file beside it)."""
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable JSON manifest: {e}", "rewrite the model's outside.json") from None
    keys = ("name", "model", "task_names", "cell_types", "seq_len")
    missing = [k for k in keys if k not in m] if isinstance(m, dict) else list(keys)
    if missing:
        raise InputError(path, f"manifest lacks {', '.join(missing)}",
                         "write name, model, task_names, cell_types and seq_len")
    tn, cts = [str(x) for x in m["task_names"]], [str(x) for x in m["cell_types"]]
    if len(tn) != len(cts):
        raise InputError(path, f"{len(tn)} task_names for {len(cts)} cell_types",
                         "give one cell type (or -) per task name")
    if Path(m["model"]).name != m["model"]:
        raise InputError(path, f"model {m['model']!r} is not a file name in the manifest's folder",
                         "store the model beside outside.json and give its file name")
    return OutsideModel(str(m["name"]), path.parent / m["model"], tn, cts,
                        _seq_len(str(m["seq_len"]), 1344, path, "seq_len"))


def in_run_manifests(outdir) -> list[Path]:
    """``<outdir>/models/*/outside.json`` in sorted folder order (none without an outdir)."""
    if outdir is None:
        return []
    root = Path(outdir) / "models"
    return sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def sheet_files(params: dict) -> list[str]:
    """The sheet and the model files it lists (for a step's recorded inputs; no model opened)."""
    sheet = params.get("outside_models")
    if not sheet or not Path(sheet).is_file():
        return []
    try:
        models = read_sheet(sheet, int(params.get("window_size", 1344)))
    except InputError:
        return [str(sheet)]
    return [str(sheet), *[str(m.path) for m in models if m.path.exists()]]


# ---------------------------------------------------------------- checks


def open_model(path):
    """A model file as a module in eval mode: TorchScript, a pickled ``nn.Module`` or a caveat
    checkpoint. Raises InputError when none of these reads it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model file not found", "fix the model path (a sheet's paths are relative to its folder)")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # not TorchScript: a pickled module or a checkpoint (kept for the message)
        script_error = _first_line(e)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise InputError(path, f"unreadable model: torch.jit.load failed ({script_error}), torch.load failed "
                               f"({_first_line(e)})",
                         "save it with torch.jit.save (TorchScript) or torch.save(module)") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    from .models import load_checkpoint

    return load_checkpoint(path)


def _first_line(e: Exception) -> str:
    """``Type: message`` of an exception, first line only (torch appends C++ frames to some)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def check_outside_model(m: OutsideModel, cell_types, where, record: str | None = None) -> None:
    """Open ``m`` and run one forward pass on a zero window (1, 4, L); InputError when the output
    is not (1, T) with T = its number of tasks, or a cell type is unknown or mapped twice."""
    record = record or f"model {m.name!r}"
    unknown = [ct for ct in m.mapped if ct not in set(cell_types)]
    if unknown:
        raise InputError(where, f"{record}: unknown cell type {unknown[0]!r} in tasks {m.tasks!r} "
                                f"(study cell types: {', '.join(cell_types)})",
                         "map each output to a study cell type, or - to ignore it")
    twice = sorted({ct for ct in m.mapped if m.mapped.count(ct) > 1})
    if twice:
        raise InputError(where, f"{record}: cell type {twice[0]!r} mapped by two outputs ({m.tasks!r})",
                         "map each cell type to one output; mark the others -")
    if not m.mapped:
        raise InputError(where, f"{record}: no output maps a cell type ({m.tasks!r})",
                         "map at least one output to a study cell type")
    try:
        model = open_model(m.path)
    except InputError as e:
        raise InputError(e.file, f"{record} ({where}): {e.problem}", e.fix) from None
    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, 4, m.seq_len))
    except Exception as e:
        raise InputError(m.path, f"{record}: fails on a zero (1, 4, {m.seq_len}) window ({type(e).__name__}: {e})",
                         "give the model's input length as seq_len; it must map (N, 4, L) one-hot to (N, T)") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        raise InputError(m.path, f"{record}: output shape {shape} on a (1, 4, {m.seq_len}) window, expected (1, T)",
                         "wrap the model to return one centre-bin value per task, (N, T)")
    if out.shape[1] != len(m.cell_types):
        raise InputError(where, f"{record}: the model has {out.shape[1]} outputs, tasks {m.tasks!r} lists "
                                f"{len(m.cell_types)}", f"list {out.shape[1]} entries in tasks (- for an unused output)")


def check_names(models: list[OutsideModel], where_of) -> None:
    """Names well formed, not reserved, unique."""
    seen: dict[str, object] = {}
    for m in models:
        where = where_of(m)
        if not NAME_RE.match(m.name):
            raise InputError(where, f"model name {m.name!r} is not a plain label",
                             "use letters, digits, _ . - (starting with a letter or digit)")
        if m.name in RESERVED:
            raise InputError(where, f"model name {m.name!r} clashes with a study regime or a reserved label",
                             f"rename it; these are taken: {', '.join(RESERVED)}")
        if m.name in seen:
            raise InputError(where, f"model name {m.name!r} given twice (also in {seen[m.name]})",
                             "give every outside model its own name")
        seen[m.name] = where


# ---------------------------------------------------------------- the list of a run


def run_cell_types(params: dict, outdir) -> list[str] | None:
    """The study's cell types: build_dataset's summary when written, else the samplesheet's."""
    summary = Path(outdir) / "build_dataset.summary.json" if outdir is not None else None
    if summary is not None and summary.is_file():
        cts = json.loads(summary.read_text()).get("cell_types")
        if cts:
            return [str(c) for c in cts]
    if params.get("input") and Path(params["input"]).is_file():
        from .samplesheet import cell_types
        from .single_cell import read_study

        return cell_types(read_study(params["input"], check_files=False).samples)
    return None


def outside_models(params: dict, outdir, cell_types=None, *, check: bool = True) -> list[OutsideModel]:
    """Every outside model of a run: the ``outside_models`` sheet's rows, then the in-run
    manifests ``<outdir>/models/*/outside.json`` (sorted folders).

    Parameters
    ----------
    params : dict
        The run's params (``outside_models``, ``window_size``, ``input``).
    outdir : path or None
        The run's outdir (None: the sheet only, as an entry script called by Nextflow).
    cell_types : list of str, optional
        The study's cell types (default :func:`run_cell_types`).
    check : bool
        Open each model and check it (:func:`check_outside_model`).

    Returns
    -------
    list of OutsideModel
    """
    sheet = params.get("outside_models")
    models = read_sheet(sheet, int(params.get("window_size", 1344))) if sheet else []
    manifests = in_run_manifests(outdir)
    models += [read_manifest(p) for p in manifests]
    if not models:
        return []
    n_sheet = len(models) - len(manifests)
    where = [sheet] * n_sheet + manifests
    record = [f"line {i + 2} ({m.name})" for i, m in enumerate(models[:n_sheet])] + \
             [f"model {m.name!r}" for m in models[n_sheet:]]
    at = {id(m): i for i, m in enumerate(models)}
    check_names(models, lambda m: where[at[id(m)]])
    if check:
        cts = cell_types if cell_types is not None else run_cell_types(params, outdir)
        for i, m in enumerate(models):
            check_outside_model(m, cts if cts is not None else m.mapped, where[i], record[i])
    log.info("outside models: %s", ", ".join(f"{m.name} ({m.path.name}: {m.tasks})" for m in models))
    return models


__all__ = ["MANIFEST", "OutputColumns", "OutsideModel", "UNUSED", "check_outside_model", "in_run_manifests", "open_model",
           "outside_models", "parse_tasks", "read_manifest", "read_sheet", "sheet_files"]
