"""Run many ``caveat`` command lines in one process: import the package once, fork per command.

``python tests/cli_forkserver.py CASES.json RESULTS.json``. Each case is
``{"id", "argv", "cwd", "stdout", "stderr"}`` and optionally ``"fsize_limit"`` (bytes: the
child runs under that ``RLIMIT_FSIZE``, as ``ulimit -f`` gives, the way to make writes fail
as on a full disk without one); a forked child redirects its stdout and
stderr to the given files and runs ``caveat.cli`` as ``python -m caveat.cli ARGV`` would
(``runpy`` as ``__main__``; an uncaught exception prints its traceback and exits 1, as
the interpreter does). A command running past ``$CLI_FORKSERVER_TIMEOUT`` seconds (600)
is killed and given exit code 124. Importing torch, scipy and the steps costs seconds per process;
a fork costs milliseconds, so a table of 50 bad inputs runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time
import traceback


def _child(case: dict) -> int:
    for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    os.chdir(case["cwd"])
    if case.get("fsize_limit"):
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (int(case["fsize_limit"]), resource.RLIM_INFINITY))
    sys.argv = ["caveat", *case["argv"]]
    sys.modules.pop("caveat.cli", None)  # runpy runs it afresh as __main__, as `python -m` does
    try:
        runpy.run_module("caveat.cli", run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as e:  # what the interpreter does with sys.exit(code)
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def _wait(pid: int, timeout: float) -> int:
    """Exit code of child ``pid``; 124 (as ``timeout`` gives) when it runs past ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 124
        time.sleep(0.02)


def main(cases_path: str, results_path: str) -> None:
    import caveat.cli  # noqa: F401  (what every child would import)
    import caveat.validate  # noqa: F401
    from caveat.pipeline import pipeline_steps

    pipeline_steps()
    with open(cases_path) as fh:
        cases = json.load(fh)
    results = {}
    for case in cases:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(case)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        results[case["id"]] = _wait(pid, float(os.environ.get("CLI_FORKSERVER_TIMEOUT", "600")))
    with open(results_path, "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
