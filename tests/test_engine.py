"""The local engine: order, resume, --until, and crash safety."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from caveat.engine import LOCK_FILE, MARKER_DIR, Step, lock_outdir, order_steps, run_pipeline
from caveat.errors import InputError
from caveat.io import write_json
from caveat.params import validate


def _toy_steps(calls: list[str]) -> list[Step]:
    """a → b → c, where b reads param `b_scale`; each writes one JSON output."""

    def make(name, upstream=None):
        def run(ctx):
            calls.append(name)
            value = 1
            if upstream:
                value = json.loads((ctx.outdir / f"{upstream}.json").read_text())["value"]
            value *= ctx.params.get(f"{name}_scale", 1)
            write_json({"value": value}, ctx.out(f"{name}.json"))
            return {"value": value}

        return run

    return [
        Step("a", make("a"), params={"a_scale": 1}),
        Step("b", make("b", "a"), needs=("a",), params={"b_scale": 2}),
        Step("c", make("c", "b"), needs=("b",), params={}),
    ]


def test_order_is_topological_and_stable():
    s = _toy_steps([])
    shuffled = [s[2], s[0], s[1]]
    assert [x.name for x in order_steps(shuffled)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unknown step"):
        order_steps([Step("x", lambda c: {}, needs=("nope",))])
    with pytest.raises(ValueError, match="cycle"):
        order_steps([Step("x", lambda c: {}, needs=("y",)), Step("y", lambda c: {}, needs=("x",))])


def test_resume_skips_unchanged_and_reruns_changed(tmp_path):
    calls: list[str] = []
    steps = _toy_steps(calls)
    params = validate({}, steps)
    st = run_pipeline(steps, params, tmp_path)
    assert st == {"a": "ran", "b": "ran", "c": "ran"}
    assert json.loads((tmp_path / "c.json").read_text())["value"] == 2

    calls.clear()
    st = run_pipeline(steps, params, tmp_path, resume=True)
    assert st == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert calls == []

    # changing b's param reruns b and everything downstream, not a
    params2 = validate({"b_scale": 5}, steps)
    st = run_pipeline(steps, params2, tmp_path, resume=True)
    assert st == {"a": "skipped", "b": "ran", "c": "ran"}
    assert json.loads((tmp_path / "c.json").read_text())["value"] == 5

    # without --resume everything runs again
    calls.clear()
    run_pipeline(steps, params2, tmp_path)
    assert calls == ["a", "b", "c"]


def test_input_file_change_reruns(tmp_path):
    calls: list[str] = []
    data = tmp_path / "input.txt"
    data.write_text("one")
    step = Step("r", lambda ctx: calls.append("r") or {}, input_files=lambda p: [data])
    run_pipeline([step], {}, tmp_path / "out")
    run_pipeline([step], {}, tmp_path / "out", resume=True)
    assert calls == ["r"]
    data.write_text("two")
    run_pipeline([step], {}, tmp_path / "out", resume=True)
    assert calls == ["r", "r"]


def test_until_stops_after_named_step(tmp_path):
    calls: list[str] = []
    steps = _toy_steps(calls)
    run_pipeline(steps, validate({}, steps), tmp_path, until="b")
    assert calls == ["a", "b"]
    assert not (tmp_path / "c.json").exists()
    with pytest.raises(InputError, match="unknown step"):
        run_pipeline(steps, validate({}, steps), tmp_path, until="zzz")


def test_failed_step_leaves_no_marker_and_reruns(tmp_path):
    calls: list[str] = []

    def boom(ctx):
        calls.append("boom")
        with open(ctx.out("partial.txt.tmp"), "w") as fh:  # simulates a crash mid-step
            fh.write("half")
        raise RuntimeError("disk full")

    step = Step("boom", boom)
    with pytest.raises(RuntimeError):
        run_pipeline([step], {}, tmp_path)
    assert not (tmp_path / MARKER_DIR / "boom.json").exists()
    with pytest.raises(RuntimeError):
        run_pipeline([step], {}, tmp_path, resume=True)
    assert calls == ["boom", "boom"]


def test_failed_step_removes_what_it_wrote_and_keeps_earlier_steps(tmp_path):
    """A step that wrote one complete output and then failed leaves neither: the first
    looks complete but belongs to a step that did not finish."""
    calls: list[str] = []
    a = _toy_steps(calls)[0]

    def half(ctx):
        write_json({"n": 1}, ctx.out("first_of_two.json"))
        (ctx.outdir / "sub").mkdir(exist_ok=True)
        write_json({"n": 2}, ctx.out("sub", "second_of_two.json"))
        raise RuntimeError("bug after two outputs")

    with pytest.raises(RuntimeError):
        run_pipeline([a, Step("half", half, needs=("a",))], {}, tmp_path)
    assert (tmp_path / "a.json").exists() and (tmp_path / MARKER_DIR / "a.json").exists()
    assert not (tmp_path / "first_of_two.json").exists()
    assert not (tmp_path / "sub" / "second_of_two.json").exists()


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES"])
def test_failed_write_in_a_step_is_a_user_error_naming_the_outdir(tmp_path, errno_name):
    import errno

    def full(ctx):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))

    with pytest.raises(InputError) as e:
        run_pipeline([Step("full", full)], {}, tmp_path)
    assert str(tmp_path) in str(e.value) and "step full" in str(e.value) and e.value.fix
    assert not (tmp_path / MARKER_DIR / "full.json").exists()


def test_other_os_errors_stay_bugs(tmp_path):
    def bug(ctx):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "nowhere"))

    with pytest.raises(FileNotFoundError):
        run_pipeline([Step("bug", bug)], {}, tmp_path)


def test_step_command_line_reports_a_full_disk_without_traceback(tmp_path):
    """What a Nextflow task runs (`caveat <step> …`): a write past the file size limit is an
    error naming the file, not a traceback (Python ignores SIGXFSZ, so the write gets EFBIG)."""
    code = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        import caveat.cli
        from caveat.io import atomic_path
        def big(argv):
            with atomic_path({str(tmp_path / 'big.txt')!r}) as tmp:
                tmp.write_text("x" * 100_000)
        caveat.cli._params = big
        sys.exit(caveat.cli.main(["params"]))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert str(tmp_path / "big.txt") in res.stderr and "File too large" in res.stderr and "fix:" in res.stderr
    assert not list(tmp_path.iterdir())  # the temporary file is gone too


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from caveat.engine import Step, run_pipeline
    from caveat.io import atomic_path

    def slow_writer(ctx):
        with atomic_path(ctx.out("big.txt")) as tmp:
            with open(tmp, "w") as fh:
                for i in range(10_000):
                    fh.write("x" * 1000 + "\\n")
                    fh.flush()
                    if i == 5:
                        Path(sys.argv[2]).write_text("writing")
                    time.sleep(0.01)
        return {}

    run_pipeline([Step("slow", slow_writer)], {}, Path(sys.argv[1]))
    """
)


def test_step_killed_mid_write_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "out"
    flag = tmp_path / "flag"
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(flag)])
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, "writer exited before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "big.txt").exists()
    assert not (out / MARKER_DIR / "slow.json").exists()
    # the leftover is a hidden temp file, never the final name
    leftovers = [p.name for p in out.iterdir() if p.is_file()]
    assert all(name.startswith(".tmp-") for name in leftovers)


def test_second_run_into_the_same_outdir_is_refused(tmp_path):
    """A run holds the outdir's lock: a concurrent run into it fails at once, writing nothing."""
    refused = []

    def outer(ctx):
        with pytest.raises(InputError, match="another caveat run is writing into this outdir") as e:
            run_pipeline([Step("inner", lambda c: {})], {}, ctx.outdir)
        refused.append(str(e.value))
        return {}

    assert run_pipeline([Step("outer", outer)], {}, tmp_path) == {"outer": "ran"}
    assert refused and str(tmp_path) in refused[0] and "another outdir" in refused[0]
    assert not (tmp_path / MARKER_DIR / "inner.json").exists()
    # released when the run ends: the next run proceeds
    assert run_pipeline([Step("inner", lambda c: {})], {}, tmp_path) == {"inner": "ran"}


def test_lock_of_a_killed_run_is_released(tmp_path):
    """The lock is the kernel's: a SIGKILLed run leaves no stale lock behind."""
    out, flag, script = tmp_path / "out", tmp_path / "flag", tmp_path / "slow.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(flag)])
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(InputError, match="another caveat run"):
        run_pipeline([Step("x", lambda c: {})], {}, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_FILE).exists()
    assert run_pipeline([Step("x", lambda c: {})], {}, out) == {"x": "ran"}


def test_outdir_that_is_a_file_is_an_input_error(tmp_path):
    f = tmp_path / "results"
    f.write_text("not a folder")
    with pytest.raises(InputError, match="not a folder"):
        run_pipeline([Step("x", lambda c: {})], {}, f)


def test_outdir_that_cannot_be_made_is_an_input_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write into the outdir"):
        run_pipeline([Step("x", lambda c: {})], {}, tmp_path / "file" / "out")


def test_marker_records_the_digests_of_what_the_step_wrote(tmp_path):
    steps = _toy_steps([])
    run_pipeline(steps, validate({}, steps), tmp_path)
    for name in "abc":
        marker = json.loads((tmp_path / MARKER_DIR / f"{name}.json").read_text())
        data = (tmp_path / f"{name}.json").read_bytes()
        assert marker["outputs"] == {f"{name}.json": {"size": len(data), "digest": hashlib.sha256(data).hexdigest()}}


def test_resume_reruns_a_step_whose_outputs_are_missing_or_changed(tmp_path):
    calls: list[str] = []
    steps = _toy_steps(calls)
    params = validate({}, steps)
    run_pipeline(steps, params, tmp_path)

    # a deleted output reruns its step; the same bytes come back, so downstream stays valid
    (tmp_path / "b.json").unlink()
    calls.clear()
    assert run_pipeline(steps, params, tmp_path, resume=True) == {"a": "skipped", "b": "ran", "c": "skipped"}
    assert calls == ["b"] and (tmp_path / "b.json").exists()

    # an output changed in place (same size) reruns its step
    text = (tmp_path / "c.json").read_text()
    (tmp_path / "c.json").write_text(text.replace("2", "3"))
    calls.clear()
    assert run_pipeline(steps, params, tmp_path, resume=True) == {"a": "skipped", "b": "skipped", "c": "ran"}
    assert json.loads((tmp_path / "c.json").read_text())["value"] == 2

    # nothing touched: nothing reruns
    calls.clear()
    assert set(run_pipeline(steps, params, tmp_path, resume=True).values()) == {"skipped"} and calls == []


def test_rerun_with_different_outputs_reruns_downstream(tmp_path):
    """A step rerun for a lost output that writes other bytes than before (a non-deterministic
    step) makes the steps that read it rerun too; one that writes the same bytes does not."""
    calls: list[str] = []
    draws = iter(range(100))

    def noisy(ctx):
        calls.append("noisy")
        write_json({"value": next(draws)}, ctx.out("noisy.json"))
        return {}

    def reader(ctx):
        calls.append("reader")
        write_json(json.loads((ctx.outdir / "noisy.json").read_text()), ctx.out("reader.json"))
        return {}

    steps = [Step("noisy", noisy), Step("reader", reader, needs=("noisy",))]
    run_pipeline(steps, {}, tmp_path)
    (tmp_path / "noisy.json").unlink()
    calls.clear()
    assert run_pipeline(steps, {}, tmp_path, resume=True) == {"noisy": "ran", "reader": "ran"}
    assert json.loads((tmp_path / "reader.json").read_text()) == {"value": 1}


def test_marker_without_outputs_record_reruns(tmp_path):
    calls: list[str] = []
    step = Step("s", lambda ctx: calls.append("s") or {})
    run_pipeline([step], {}, tmp_path)
    marker = tmp_path / MARKER_DIR / "s.json"
    old = json.loads(marker.read_text())
    del old["outputs"]  # as written by an older caveat
    marker.write_text(json.dumps(old))
    run_pipeline([step], {}, tmp_path, resume=True)
    assert calls == ["s", "s"]


def test_identical_runs_write_identical_files_markers_included(tmp_path):
    steps = _toy_steps([])
    for d in ("one", "two"):
        run_pipeline(steps, validate({}, steps), tmp_path / d)
    files = {d: {p.relative_to(tmp_path / d).as_posix(): p.read_bytes() for p in (tmp_path / d).rglob("*")
                 if p.is_file()} for d in ("one", "two")}
    assert files["one"] == files["two"] and f"{MARKER_DIR.as_posix()}/c.json" in files["one"]


def test_the_same_study_in_another_folder_writes_the_same_markers(tmp_path):
    """Params hold absolute paths (resolved when read); the fingerprint records a file by name and content,
    so two copies of a study in different folders give byte-identical markers — and a changed file reruns."""
    calls: list[str] = []

    def run(ctx):
        calls.append(ctx.params["ref_file"])
        write_json({"n": len(Path(ctx.params["ref_file"]).read_text())}, ctx.out("a.json"))
        return {}

    steps = [Step("a", run, params={"ref_file": None}, path_params=("ref_file",))]
    for d in ("one", "two/deeper"):
        (tmp_path / d / "study").mkdir(parents=True)
        (tmp_path / d / "study" / "ref.txt").write_text("ACGT")
        run_pipeline(steps, validate({"ref_file": str(tmp_path / d / "study" / "ref.txt")}, steps), tmp_path / d / "out")
    marker = MARKER_DIR / "a.json"
    assert (tmp_path / "one/out" / marker).read_bytes() == (tmp_path / "two/deeper/out" / marker).read_bytes()
    (tmp_path / "one/study/ref.txt").write_text("ACGTT")
    run_pipeline(steps, validate({"ref_file": str(tmp_path / "one/study/ref.txt")}, steps), tmp_path / "one/out",
                 resume=True)
    assert len(calls) == 3


def test_lock_outdir_is_exclusive_within_a_process(tmp_path):
    with lock_outdir(tmp_path):
        with pytest.raises(InputError):
            with lock_outdir(tmp_path):
                pass
    with lock_outdir(tmp_path):  # released
        pass


def test_cli_run_with_unknown_param_names_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("inptu: x.csv\n")
    r = subprocess.run([sys.executable, "-m", "caveat.cli", "run", "--params", str(params)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "inptu" in r.stderr and "did you mean 'input'" in r.stderr
    assert "Traceback" not in r.stderr


def test_seed_change_reruns_even_if_step_does_not_declare_it(tmp_path):
    calls: list[str] = []
    step = Step("s", lambda ctx: calls.append("s") or {})
    run_pipeline([step], {"seed": 1}, tmp_path)
    run_pipeline([step], {"seed": 1}, tmp_path, resume=True)
    run_pipeline([step], {"seed": 2}, tmp_path, resume=True)
    assert calls == ["s", "s"]


def test_code_version_covers_what_a_step_imports_and_nothing_else():
    from pathlib import Path

    from caveat import wasp_remap
    from caveat.engine import _import_closure, code_version

    files = {Path(f).name for f in _import_closure(wasp_remap.STEP.run.__module__)}
    assert {"wasp_remap.py", "bam_records.py", "io.py", "engine.py", "__init__.py"} <= files
    assert "report.py" not in files and "train.py" not in files
    assert code_version(wasp_remap.STEP) != code_version(None)
    assert code_version(wasp_remap.STEP) == code_version(wasp_remap.STEP)


def test_resume_on_the_tiny_pipeline(tiny_sim, tiny_run, tmp_path):
    """The real pipeline resumed: nothing reruns; a changed imbalance param reruns only
    call_imbalance and what reads it, never the WASP filter or training."""
    import shutil

    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    steps = pipeline_steps()
    params = load_params(tiny_sim / "params.yaml", {"outdir": str(out)}, steps)
    st = run_pipeline(steps, params, out, resume=True, threads=1)
    assert set(st.values()) == {"skipped"}, st
    params["imbalance_fdr"] = 0.05
    st = run_pipeline(steps, params, out, resume=True, threads=1)
    ran = {k for k, v in st.items() if v == "ran"}
    assert {"call_imbalance", "match_negatives", "score_variants", "evaluate", "report"} <= ran
    assert not ran & {"wasp_remap", "count_alleles", "insertions", "cluster_peaks", "build_dataset", "train", "predict"}
