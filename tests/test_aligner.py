"""The remap aligner is run without a shell: aligner_args with shell metacharacters are
refused, and paths with them (outdir, index) are passed as plain arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from caveat import aligner
from caveat.aligner import align, align_command, check_aligner, parse_aligner_args
from caveat.errors import InputError

MARKERS = ("INJ1", "INJ2", "INJ3", "INJ4")


def _injected(*dirs: Path) -> list[Path]:
    """Marker files a shell would have created (a marker is a file with exactly that name)."""
    return [p for d in dirs for p in Path(d).rglob("*") if p.name in MARKERS]


@pytest.mark.parametrize("args", [
    "--very-sensitive; touch INJ1",
    "--very-sensitive;touch INJ1;",
    "-X 2000 | tee INJ1",
    "-X 2000 && touch INJ1",
    "-X $(touch INJ1)",
    "-X `touch INJ1`",
    "-X 2000 > INJ1",
    "-X 2000 < /etc/passwd",
    "--very-sensitive\ntouch INJ1",
    "-X 2000 \\; touch INJ1",
    "--rg-id 'unbalanced",
    "--rg-id \"x\\\"y\"",
])
def test_shell_metacharacters_in_aligner_args_are_refused(args):
    with pytest.raises(InputError, match="aligner_args") as e:
        parse_aligner_args(args)
    assert "never to a shell" in str(e.value)  # the fix says what to write instead


def test_plain_aligner_args_are_split_like_a_shell_would():
    assert parse_aligner_args("--very-sensitive -X 2000") == ["--very-sensitive", "-X", "2000"]
    assert parse_aligner_args("--score-min L,0,-0.6 --rg 'SM:a b'") == ["--score-min", "L,0,-0.6", "--rg", "SM:a b"]
    assert parse_aligner_args("") == [] and parse_aligner_args(None) == []


def test_bowtie2_runs_its_aligner_binary_not_the_shell_wrapper(tmp_path):
    (tmp_path / "g.1.bt2").write_bytes(b"")
    cmd = align_command("bowtie2", tmp_path / "g", "--very-sensitive --large-index", Path("a.fq"), Path("b.fq"))
    assert Path(cmd[0]).name == "bowtie2-align-l" and "--large-index" not in cmd  # the wrapper option picks the binary
    cmd = align_command("bowtie2", tmp_path / "g", "--very-sensitive", Path("a.fq"), None)
    assert Path(cmd[0]).name == "bowtie2-align-s" and cmd[-2:] == ["-U", "a.fq"]
    (tmp_path / "big.1.bt2l").write_bytes(b"")
    assert Path(align_command("bowtie2", tmp_path / "big", "", Path("a.fq"), None)[0]).name == "bowtie2-align-l"


def test_without_the_binary_the_wrapper_gets_no_metacharacter_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(aligner.shutil, "which", lambda name: None)
    weird = tmp_path / "$(touch INJ1)"
    with pytest.raises(InputError, match="shell metacharacter"):
        align_command("bowtie2", weird / "genome", "", weird / "r1.fq", weird / "r2.fq")
    assert align_command("bowtie2", tmp_path / "genome", "", tmp_path / "r1.fq", None)[0] == "bowtie2"


def test_check_aligner_checks_the_args_first(tmp_path):
    with pytest.raises(InputError, match="aligner_args"):
        check_aligner("bowtie2", tmp_path / "no_index", "--very-sensitive; touch INJ1")


def _reads(genome: str, rng, n: int = 400, length: int = 40) -> tuple[list[str], list[str]]:
    r1, r2 = [], []
    comp = str.maketrans("ACGT", "TGCA")
    for i in range(n):
        start = int(rng.integers(0, len(genome) - 300))
        frag = genome[start:start + int(rng.integers(100, 300))]
        if i % 9 == 0:  # an unalignable mate: --no-unal must drop it the same way
            frag = "".join(rng.choice(list("ACGT"), len(frag)))
        r1.append(f"@p{i}\n{frag[:length]}\n+\n{'I' * length}\n")
        r2.append(f"@p{i}\n{frag[-length:].translate(comp)[::-1]}\n+\n{'I' * length}\n")
    return r1, r2


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("aln")
    rng = np.random.default_rng(3)
    genome = "".join(rng.choice(list("ACGT"), 20_000))
    (d / "g.fa").write_text(">c\n" + genome + "\n")
    subprocess.run(["bowtie2-build", "-q", str(d / "g.fa"), str(d / "g")], check=True, capture_output=True)
    return d, genome


def _records(sam: Path) -> list[str]:
    return [ln for ln in sam.read_text().splitlines() if not ln.startswith("@")]


def test_metacharacter_paths_align_safely_and_as_the_wrapper_does(tiny_index, tmp_path, monkeypatch):
    """Index, FASTQs and SAM in folders named like shell commands: nothing runs, and the
    records equal what the bowtie2 wrapper writes for the same reads from a plain path."""
    src, genome = tiny_index
    monkeypatch.chdir(tmp_path)  # a shell would run `touch INJ*` here
    weird = tmp_path / "$(touch INJ1)" / "x;touch INJ2;`touch INJ3`|touch INJ4"
    weird.mkdir(parents=True)
    for f in src.glob("g.*.bt2"):
        (weird / f.name).write_bytes(f.read_bytes())
    r1, r2 = _reads(genome, np.random.default_rng(5))
    for d in (weird, tmp_path):
        (d / "r1.fq").write_text("".join(r1))
        (d / "r2.fq").write_text("".join(r2))
    align("bowtie2", weird / "g", "-X 1000", weird / "r1.fq", weird / "r2.fq", weird / "out.sam")
    assert _injected(tmp_path) == []
    wrapper = subprocess.run(["bowtie2", "-p", "1", "--reorder", "--no-unal", "-x", str(src / "g"), "-X", "1000",
                              "-1", "r1.fq", "-2", "r2.fq"], capture_output=True, text=True, check=True)
    expected = [ln for ln in wrapper.stdout.splitlines() if not ln.startswith("@")]
    assert len(expected) > 500 and _records(weird / "out.sam") == expected


def test_injection_through_aligner_args_never_reaches_a_shell(tiny_index, tmp_path, monkeypatch):
    src, genome = tiny_index
    monkeypatch.chdir(tmp_path)
    r1, r2 = _reads(genome, np.random.default_rng(6), n=20)
    (tmp_path / "r1.fq").write_text("".join(r1))
    (tmp_path / "r2.fq").write_text("".join(r2))
    with pytest.raises(InputError, match="aligner_args"):
        align("bowtie2", src / "g", "--very-sensitive; touch INJ1;", tmp_path / "r1.fq", tmp_path / "r2.fq",
              tmp_path / "out.sam")
    assert _injected(tmp_path) == []
