"""The ``caveat`` command.

``caveat simulate``   write a simulated study with planted truth
``caveat run``        run the whole pipeline with the local engine
``caveat params``     print every param with its default (YAML)
``caveat benchmark``  score any model on a run's benchmark bundle (--bundle, --model, --tasks, --out)
``caveat <step> …``   run one step on explicit files (what Nextflow's processes call)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import CaveatError, storage_error
from .log import setup_logging
from .pipeline import STEP_NAMES, available_step_names


def _run(argv: list[str]) -> int:
    from .engine import run_pipeline
    from .params import load_params
    from .pipeline import pipeline_steps
    from .validate import validate_inputs

    ap = argparse.ArgumentParser(prog="caveat run", description="Run the pipeline with the local engine.")
    ap.add_argument("--params", "-p", required=True, help="params YAML (same keys as Nextflow's -params-file)")
    ap.add_argument("--outdir", "-o", help="output directory (overrides the params file's outdir)")
    ap.add_argument("--resume", action="store_true", help="skip steps whose inputs, params and code are unchanged")
    ap.add_argument("--until", choices=STEP_NAMES, metavar="STEP", help="stop after this step")
    ap.add_argument("--threads", "-t", type=int, default=1,
                    help="CPU threads: samples (WASP, counting, tracks), cell types and models run this many at "
                         "once, each with its share for its chromosomes and the aligner (caveat.parallel); the "
                         "outputs do not depend on it")
    args = ap.parse_args(argv)
    steps = pipeline_steps()
    params = load_params(args.params, {"outdir": args.outdir} if args.outdir else None, steps)
    outdir = Path(params["outdir"])
    if not outdir.is_absolute() and not args.outdir:
        outdir = Path(args.params).resolve().parent / outdir
    params["outdir"] = str(outdir)
    validate_inputs(params, steps)  # every input, before any step runs or is marked done
    if params.get("outside_models"):   # the sheet and each model it lists: fail before training, not after
        from .outside_models import outside_models

        outside_models(params, None)
    run_pipeline(steps, params, outdir, resume=args.resume, until=args.until, threads=max(1, args.threads))
    print(f"outputs: {outdir}")
    return 0


def _params(argv: list[str]) -> int:
    import yaml

    from .params import defaults

    argparse.ArgumentParser(prog="caveat params", description="Print every param with its default.").parse_args(argv)
    sys.stdout.write(yaml.safe_dump(defaults(), sort_keys=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(logging.INFO)
    commands = {"run": _run, "params": _params}
    steps = available_step_names()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nsteps available:", ", ".join(steps))
        return 0
    if argv[0] == "--version":
        print(f"caveat {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd in commands:
            return commands[cmd](rest)
        if cmd in ("simulate", "benchmark") or cmd in steps:
            mod = importlib.import_module(f"caveat.{cmd}")
            return int(mod.main(rest) or 0)
        print(f"caveat: unknown command {cmd!r}; commands: run, params, simulate, benchmark, {', '.join(steps)}", file=sys.stderr)
        return 2
    except (CaveatError, OSError) as e:
        err = _user_error(e)
        if err is None:
            raise
        print(f"caveat {cmd}: error: {err}", file=sys.stderr)
        return 1


def _user_error(e: BaseException) -> CaveatError | None:
    """``e`` as the error a user fixes (a CaveatError, or a failed write: full disk, quota,
    file size limit, read-only folder); ``None`` for a bug, which keeps its traceback."""
    if isinstance(e, CaveatError):
        return e
    return storage_error(e, Path.cwd()) if isinstance(e, OSError) else None


def run_entry(step_main) -> int:
    """Run a step's ``main`` from a ``bin/<step>.py`` entry script: logging on,
    user errors printed as one clear message (exit 1) instead of a traceback.
    ``--version`` alone prints the package version (what Nextflow's versions topic records).

    ``step_main`` is the ``main`` function, or the name of its module (``"caveat.train"``),
    imported only after ``--version`` is answered: Nextflow asks every task for it, and the step
    modules import torch, numba or pandas (seconds per task)."""
    if sys.argv[1:] == ["--version"]:
        print(__version__)
        return 0
    setup_logging(logging.INFO)
    try:
        if isinstance(step_main, str):
            step_main = importlib.import_module(step_main).main
        return int(step_main(sys.argv[1:]) or 0)
    except (CaveatError, OSError) as e:
        err = _user_error(e)
        if err is None:
            raise
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
