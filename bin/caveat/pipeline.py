"""The pipeline's steps, by name, in the order of DESIGN.md.

A step is a module ``caveat.<name>`` that defines ``STEP`` (a
:class:`~caveat.engine.Step`). Adding a step means adding its module and its
name here; the engine itself does not change. The same names are the Nextflow
process names (upper case) and the ``bin/<name>.py`` entry scripts.
"""

from __future__ import annotations

import importlib
import importlib.util

STEP_NAMES = (
    "wasp_remap",
    "count_alleles",
    "insertions",
    "call_imbalance",
    "match_negatives",
    "cluster_peaks",
    "build_dataset",
    "train",
    "train_baseline",
    "predict",
    "score_variants",
    "evaluate",
    "report",
)


def available_step_names() -> list[str]:
    """Step names whose module exists in this version of the package."""
    return [n for n in STEP_NAMES if importlib.util.find_spec(f"caveat.{n}") is not None]


def pipeline_steps() -> list:
    """The :class:`~caveat.engine.Step` objects of every available step, in order."""
    steps = []
    for name in available_step_names():
        mod = importlib.import_module(f"caveat.{name}")
        step = getattr(mod, "STEP", None)
        if step is None:
            continue
        if step.name != name:
            raise RuntimeError(f"caveat.{name}.STEP is named {step.name!r}")
        steps.append(step)
    return steps
