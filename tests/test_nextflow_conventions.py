"""nf-core conventions users expect of a Nextflow pipeline, and the documented commands.

Each test names the convention it checks and where it comes from (the nf-core/tools pipeline
template, nf-core/modules, or the Nextflow / nf-schema source); most also show, on a broken
copy, that they can fail.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

import nf_parse

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "nextflow.md"


def _config() -> str:
    return nf_parse.strip_comments((REPO / "nextflow.config").read_text())


def _profiles(config: str) -> dict[str, str]:
    """Profile name → its body, from nextflow.config's `profiles {}` block."""
    m = re.search(r"^profiles\s*\{", config, re.M)
    body = nf_parse.block(config, m)
    return {pm.group(1): nf_parse.block(body, pm) for pm in re.finditer(r"^    (\w+)\s*\{", body, re.M)}


# ---------------------------------------------------------------- documented commands

def doc_commands(text: str) -> list[list[str]]:
    """The `nextflow run` / `nf-test` commands of the fenced bash blocks, as words (comments,
    line continuations and the rest of a line after `#` dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            words = shlex.split(cmd, comments=True)
            if words[:2] == ["nextflow", "run"] or words[:1] == ["nf-test"]:
                out.append(words)
    return out


def command_problems(commands: list[list[str]], profiles: set[str], params: set[str]) -> list[str]:
    """Profiles and params a documented command names that the pipeline does not have."""
    problems = []
    for words in commands:
        for i, w in enumerate(words):
            if w in ("-profile", "--profile") and i + 1 < len(words):
                for p in words[i + 1].lstrip("+").split(","):
                    if p not in profiles:
                        problems.append(f"{' '.join(words)}: no profile {p!r}")
            elif w.startswith("--") and words[0] == "nextflow" and w[2:] not in params:
                problems.append(f"{' '.join(words)}: no param {w[2:]!r}")
    return problems


def _schema_params() -> set[str]:
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    return {k for g in schema["$defs"].values() for k in g["properties"]}


def test_documented_commands_name_existing_profiles_and_params():
    commands = doc_commands(DOCS.read_text())
    assert len(commands) >= 6, commands
    assert command_problems(commands, set(_profiles(_config())), _schema_params()) == []


def test_command_check_fails_on_an_unknown_profile_or_param():
    broken = "```bash\nnextflow run . -profile test,dokker --out_dir x\n```\n"
    problems = command_problems(doc_commands(broken), set(_profiles(_config())), _schema_params())
    assert problems == ["nextflow run . -profile test,dokker --out_dir x: no profile 'dokker'",
                        "nextflow run . -profile test,dokker --out_dir x: no param 'out_dir'"]


def test_the_self_contained_test_is_what_nf_test_runs():
    """docs/nextflow.md's first command is `-profile test` with nothing before it in its block
    (no `caveat simulate`); nf-test.config runs the same profile, and tests/main.nf.test's first
    pipeline test sets no param but outdir (so it runs exactly that) and checks SIMULATE ran."""
    text = DOCS.read_text()
    laptop = re.search(r"## On a laptop\n+```bash\n(.*?)```", text, re.S).group(1)
    first = [ln for ln in laptop.splitlines() if ln.strip() and not ln.lstrip().startswith("#")][0]
    assert shlex.split(first, comments=True) == ["nextflow", "run", ".", "-profile", "test,docker", "--outdir", "results_test"]
    cfg = nf_parse.strip_comments((REPO / "nf-test.config").read_text())
    assert re.search(r"^\s*profile\s+\"test\"", cfg, re.M)
    nft = (REPO / "tests" / "main.nf.test").read_text()
    first_test = nft[nft.index("test(\""):nft.index("test(\"", nft.index("test(\"") + 1)]
    params = re.search(r"params\s*\{(.*?)\}", first_test, re.S).group(1)
    assert [ln.split("=")[0].strip() for ln in params.strip().splitlines()] == ["outdir"]
    assert "SIMULATE" in first_test
    assert "20 minutes" in text   # the documented duration (defect 12's measurement)


# ---------------------------------------------------------------- nf-core template conventions

def test_task_scripts_fail_on_a_failing_pipe():
    """nf-core template nextflow.config: `process.shell = ['/bin/bash', '-euo', 'pipefail']`."""
    m = re.search(r"^process\.shell\s*=\s*(\[.*\])", _config(), re.M)
    assert m and json.loads(m.group(1).replace("'", '"')) == ["/bin/bash", "-euo", "pipefail"]


def test_completion_summary_and_error_hook():
    """nf-core template PIPELINE_COMPLETION: `workflow.onComplete { completionSummary(...) }`
    and `workflow.onError { log.error ... }` in a workflow's main:."""
    main = nf_parse.strip_comments((REPO / "main.nf").read_text())
    entry = nf_parse.read_workflows(REPO / "main.nf")[""].main
    for hook in ("onComplete", "onError"):
        assert re.search(rf"^\s*workflow\.{hook}\s*\{{", entry, re.M), hook
    assert re.search(r"^def completionSummary\(", main, re.M)
    on_error = nf_parse.block(entry, re.search(r"workflow\.onError\s*\{", entry))
    assert "workflow.errorMessage" in on_error and "-resume" in on_error


def test_publish_mode_is_a_param():
    config = _config()
    assert re.search(r"^\s*publish_dir_mode\s*=\s*'copy'", config, re.M)
    assert re.search(r"^workflow\.output\.mode\s*=\s*params\.publish_dir_mode", config, re.M)


def test_engine_profiles_switch_the_others_off():
    """nf-core template: docker, singularity, apptainer, podman, conda and mamba profiles, each
    enabling its engine and disabling the others (conda.useMamba for mamba)."""
    profiles = _profiles(_config())
    engines = {"docker": "docker", "singularity": "singularity", "apptainer": "apptainer", "podman": "podman",
               "conda": "conda", "mamba": "conda"}
    for profile, engine in engines.items():
        body = profiles[profile]
        assert re.search(rf"{engine}\.enabled\s*=\s*true", body), profile
        for other in set(engines.values()) - {engine}:
            assert re.search(rf"{other}\.enabled\s*=\s*false", body), (profile, other)
    assert re.search(r"conda\.useMamba\s*=\s*true", profiles["mamba"])


# ---------------------------------------------------------------- containers and environments

def _env_pins(path: Path) -> dict[str, str]:
    """package → pinned version of a conda environment file (pip's `pkg==v` included)."""
    pins = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            for item in dep.get("pip", []):
                if "==" in item:
                    name, version = item.split("==")
                    pins[name] = version
            continue
        name, _, version = dep.split("::")[-1].partition("=")
        pins[name] = version
    return pins


def test_runtime_environment_pins_every_package_within_pyproject():
    """Every package of containers/environment.yml is pinned to an exact version that
    pyproject.toml accepts; the GPU environment pins the same, and gets torch from the CUDA
    index instead of the CPU one."""
    import tomllib

    from packaging.requirements import Requirement

    cpu, gpu = _env_pins(REPO / "containers" / "environment.yml"), _env_pins(REPO / "containers" / "environment.gpu.yml")
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in cpu.values()), cpu
    assert cpu == gpu
    conda_name = {"pybigwig": "pyBigWig", "python-isal": "isal"}
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    by_conda = {k: conda_name.get(k, k) for k in cpu}
    for req in map(Requirement, deps):
        name = next((c for c, py in by_conda.items() if py.lower() == req.name.lower()), None)
        assert name, f"pyproject.toml needs {req.name}; containers/environment.yml lacks it"
        assert req.specifier.contains(cpu[name]), f"{name}={cpu[name]} not in pyproject's {req}"
    cpu_text = (REPO / "containers" / "environment.yml").read_text()
    gpu_text = (REPO / "containers" / "environment.gpu.yml").read_text()
    assert "download.pytorch.org/whl/cpu" in cpu_text and "download.pytorch.org/whl/cu" in gpu_text
    assert "environment.gpu.yml" in (REPO / "containers" / "Dockerfile.gpu").read_text()


def test_container_images_are_pinned_and_built_as_documented():
    """Every module's image has an explicit version tag (no `latest`), the same as the package's;
    the Dockerfiles start from tagged images; containers/README.md says how to build each."""
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for proc in nf_parse.modules().values():
        images = re.findall(r"ghcr\.io/caveat-bench/([\w-]+):([\w.-]+)", proc.container or "")
        assert images and all(tag == version for _, tag in images), (proc.name, proc.container)
    readme = (REPO / "containers" / "README.md").read_text()
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        for base in re.findall(r"^FROM\s+(\S+)", (REPO / "containers" / dockerfile).read_text(), re.M):
            assert re.search(r":\d[\w.-]*$", base) and not base.endswith(":latest"), base
        assert f"docker build -f containers/{dockerfile} " in readme


# ---------------------------------------------------------------- GPUs only where -profile gpu asks

def test_conda_gpu_tasks_get_the_cuda_build_of_torch():
    """`-profile conda,gpu`: process_gpu tasks with an accelerator are run with `--train-device
    cuda` (conf/modules.config), so their environment must be the CUDA one, not the CPU pin."""
    profiles = _profiles(_config())
    for name in ("conda", "mamba"):
        m = re.search(r"withLabel:\s*'process_gpu'\s*\{", profiles[name])
        assert m, name
        body = nf_parse.block(profiles[name], m)
        assert re.search(r"conda\s*=\s*\{\s*task\.accelerator\s*\?\s*\"[^\"]*environment\.gpu\.yml\"\s*:\s*\"[^\"]*environment\.yml\"",
                         body), body
    modules_config = (REPO / "conf" / "modules.config").read_text()
    assert "task.accelerator ? 'cuda'" in modules_config


@pytest.mark.parametrize("config, keys", [("slurm.config", ("queue", "clusterOptions")), ("awsbatch.config", ("queue",))])
def test_executor_examples_reserve_gpus_only_for_tasks_with_an_accelerator(config, keys):
    """Without -profile gpu, TRAIN/PREDICT/SCORE_VARIANTS run on CPU: the executor examples must
    not send them to a GPU queue or reserve a GPU (each GPU setting depends on task.accelerator)."""
    text = nf_parse.strip_comments((REPO / "conf" / config).read_text())
    m = re.search(r"withLabel:\s*'process_gpu'\s*\{", text)
    body = nf_parse.block(text, m)
    for key in keys:
        km = re.search(rf"^\s*{key}\s*=\s*(.+)$", body, re.M)
        assert km and km.group(1).strip().startswith("{ task.accelerator ?"), (config, key, km and km.group(1))
    assert "gpu" not in re.sub(r"withLabel:\s*'process_gpu'\s*\{.*", "", text, flags=re.S).replace("// ", ""), config


# ---------------------------------------------------------------- module meta.yml / environment.yml

import nf_meta  # noqa: E402

MODULE_DIRS = sorted(p.parent for p in (REPO / "modules" / "local").glob("*/main.nf"))


@pytest.mark.parametrize("module", MODULE_DIRS, ids=lambda p: p.name)
def test_module_meta_yml_documents_the_declared_channels(module):
    """nf-core module layout: meta.yml beside main.nf, its input/output/topics channels the
    ones the process declares, element by element (tests/nf_meta.py)."""
    meta = yaml.safe_load((module / "meta.yml").read_text())
    assert nf_meta.meta_problems(meta, nf_meta.process_shapes(module / "main.nf")) == []


def test_meta_check_fails_when_a_process_gains_an_input(tmp_path):
    src = REPO / "modules" / "local" / "count_alleles" / "main.nf"
    broken = tmp_path / "main.nf"
    broken.write_text(src.read_text().replace("    path het_snps\n", "    path het_snps\n    path blacklist\n"))
    meta = yaml.safe_load((src.parent / "meta.yml").read_text())
    problems = nf_meta.meta_problems(meta, nf_meta.process_shapes(broken))
    assert problems == ["COUNT_ALLELES: 2 input channels documented, main.nf declares 3"], problems
    broken.write_text(src.read_text().replace('path("${prefix}.parquet")', 'path("${prefix}.counts.parquet")'))
    problems = nf_meta.meta_problems(meta, nf_meta.process_shapes(broken))
    assert any("output counts: documented ['meta', '${prefix}.parquet']" in p for p in problems), problems


@pytest.mark.parametrize("module", MODULE_DIRS, ids=lambda p: p.name)
def test_module_environment_pins_what_it_runs(module):
    """nf-core module environment.yml: conda-forge/bioconda channels, every package pinned to
    containers/environment.yml's version, covering what the module runs (the imports of its
    entry script's caveat code, the tools it calls)."""
    env = yaml.safe_load((module / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "bioconda"]
    runtime = _env_pins(REPO / "containers" / "environment.yml")
    pins = _env_pins(module / "environment.yml")
    assert {k: v for k, v in pins.items() if runtime.get(k) != v} == {}, "pins differ from containers/environment.yml"
    missing = nf_meta.module_needs(module / "main.nf", REPO / "bin" / "caveat") - set(pins)
    assert not missing, f"{module.name}/environment.yml lacks {sorted(missing)}"
