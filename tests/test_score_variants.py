"""score_variants: exact inputs fed to the model, fast == plain, averaging, the step and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from caveat.engine import StepContext
from caveat.errors import InputError
from caveat.genome import encode
from caveat.io import read_parquet, write_parquet
from caveat.model_adapter import ModelAdapter, load_model
from caveat.models import BassetModel, ModelConfig, calibrate_batchnorm, save_checkpoint
from caveat.score_variants import (SCORE_COLUMNS, main, ratios, run_step, score_table,
                                   vcf_variant_ids)

RNG = np.random.default_rng(11)
GENOME_STR = "".join(RNG.choice(list("ACGT"), 6000))
GENOME = {"chr1": encode(GENOME_STR)}
COMP = str.maketrans("ACGTN", "TGCAN")


def _rc(s: str) -> str:
    return s.translate(COMP)[::-1]


def _snv(pos0: int, k: int = 1) -> str:
    ref = GENOME_STR[pos0]
    return f"chr1:{pos0 + 1}:{ref}:{'ACGT'[('ACGT'.index(ref) + k) % 4]}"


def _small_basset(n_tasks=2, seed=0, seq_len=1344) -> BassetModel:
    torch.manual_seed(seed)
    m = BassetModel(ModelConfig(seq_len=seq_len, n_tasks=n_tasks, filters=12, filters_max=16,
                                bottleneck=8, dense=16))
    return calibrate_batchnorm(m, nn.functional.one_hot(torch.randint(0, 4, (16, seq_len)), 4).transpose(1, 2).float())


class _Recorder(nn.Module):
    """A small model that records every one-hot window it is fed (as strings)."""

    def __init__(self, seq_len: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(4, 3, 5, padding=2), nn.GELU(), nn.Flatten(1),
                                 nn.Linear(3 * seq_len, 2), nn.Softplus())
        self.seen: list[str] = []

    def forward(self, x):
        for row in x:
            assert torch.all(row.sum(0) == 1)                   # exact one-hot, no N here
            self.seen.append("".join("ACGT"[i] for i in row.argmax(0).tolist()))
        return self.net(x)


def _expected_windows(vid: str, seq_len: int, shifts, rc: bool) -> tuple[list[str], list[str]]:
    """REF and ALT windows by an independent route: slices of the REF and ALT genome strings."""
    chrom, pos1, ref, alt = vid.split(":")
    p = int(pos1) - 1
    centre = seq_len // 2 - 1
    alt_genome = GENOME_STR[:p] + alt + GENOME_STR[p + len(ref):]
    d = len(alt) - len(ref)
    tl = d // 2 if d > 0 else 0                                 # insertions: trimmed half left
    refs, alts = [], []
    for s in shifts:
        refs.append(GENOME_STR[p - centre + s:p - centre + s + seq_len])
        alts.append(alt_genome[p - centre + tl + s:p - centre + tl + s + seq_len])
    if rc:
        refs, alts = refs + [_rc(r) for r in refs], alts + [_rc(a) for a in alts]
    return refs, alts


def test_exact_onehot_fed_to_model_for_snvs_and_indels():
    seq_len = 40
    model = _Recorder(seq_len).eval()
    adapter = ModelAdapter(model, seq_len)
    ins = f"chr1:301:{GENOME_STR[300]}:{GENOME_STR[300]}GGTAC"      # +5
    dele = f"chr1:501:{GENOME_STR[500:504]}:{GENOME_STR[500]}"         # −3
    ids = [_snv(100), _snv(100, 2), ins, dele]
    model.seen.clear()
    v, ref_pred, alt_pred, info = score_table(adapter, GENOME, ids, rc=True, shifts=(-1, 0, 1), fast=False)
    assert sum(info["skipped"].values()) == 0 and info["scored"] == 4 and info["padded_with_n"] == 0
    want: list[str] = []
    for vid in v["variant_id"]:
        refs, alts = _expected_windows(vid, seq_len, (-1, 0, 1), True)
        want += alts
        if vid != _snv(100, 2):                                 # the second ALT at 101 shares its REF window
            want += refs
    assert sorted(model.seen) == sorted(want)                   # every window once, nothing else
    # predictions are the mean over the six augmentations of the model on those windows
    i = v.index[v["variant_id"] == ins][0]
    refs, alts = _expected_windows(ins, seq_len, (-1, 0, 1), True)
    with torch.inference_mode():
        net = model.net
        onehot = lambda ss: nn.functional.one_hot(torch.tensor([["ACGT".index(c) for c in s] for s in ss]), 4).transpose(1, 2).float()  # noqa: E731
        assert np.allclose(alt_pred[i], net(onehot(alts)).mean(0).numpy(), rtol=1e-5)
        assert np.allclose(ref_pred[i], net(onehot(refs)).mean(0).numpy(), rtol=1e-5)


def test_fast_path_equals_plain_path_with_augmentation():
    adapter = ModelAdapter(_small_basset(), 1344, batch_size=8)
    assert adapter.layers is not None
    ids = [_snv(p, k) for p in (700, 1500, 2200, 3001, 4100, 5200) for k in (1, 2)]
    ids += [f"chr1:2001:{GENOME_STR[2000]}:{GENOME_STR[2000]}AC", f"chr1:2501:{GENOME_STR[2500:2503]}:{GENOME_STR[2500]}"]
    v1, r1, a1, i1 = score_table(adapter, GENOME, ids, fast=True, batch_size=4)
    v2, r2, a2, i2 = score_table(adapter, GENOME, ids, fast=False, batch_size=4)
    assert i1["path"] == "fast_ism" and i2["path"] == "plain"
    assert v1["variant_id"].tolist() == v2["variant_id"].tolist() and len(v1) == len(ids)
    assert np.abs(r1 - r2).max() / np.abs(r2).min() < 1e-4
    assert np.abs(a1 - a2).max() / np.abs(a2).min() < 1e-4
    assert np.abs(a2 - r2).max() > 1e3 * np.abs(a1 - a2).max()     # the variants do move the output


def test_no_augmentation_and_rc_only_match_direct_forward():
    model = _small_basset(n_tasks=3, seed=5)
    adapter = ModelAdapter(model, 1344)
    vid = _snv(3000)
    p = 3000
    x = torch.from_numpy(GENOME["chr1"][p - 671:p + 673].astype(np.int64))
    ref = nn.functional.one_hot(x, 4).T.float()[None]
    alt = ref.clone()
    alt[0, :, 671] = nn.functional.one_hot(torch.tensor("ACGT".index(vid[-1])), 4).float()
    with torch.inference_mode():
        _, r, a, _ = score_table(adapter, GENOME, [vid], rc=False, shifts=[0])
        assert np.allclose(r[0], model(ref)[0].numpy(), rtol=1e-5)
        assert np.allclose(a[0], model(alt)[0].numpy(), rtol=1e-4)
        _, r, a, _ = score_table(adapter, GENOME, [vid], rc=True, shifts=[0])
        both = torch.cat([alt, alt.flip((1, 2))])
        assert np.allclose(a[0], model(both).mean(0).numpy(), rtol=1e-4)


def _motif_model(seq_len: int = 200) -> nn.Module:
    """Counts GATA matches near the centre: conv PWM → ReLU → pool → dense → softplus."""
    conv = nn.Conv1d(4, 1, 4, padding="same", bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        for j, b in enumerate("GATA"):
            conv.weight[0, "ACGT".index(b), j] = 1.0
        conv.bias.fill_(-3.0)                                   # fires only on a full match
    pooled = seq_len // 2
    dense = nn.Linear(pooled, 1)
    with torch.no_grad():
        dense.weight.fill_(2.0)
        dense.bias.fill_(-1.0)
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(1), dense, nn.Softplus()).eval()


def test_motif_making_and_breaking_variants_have_the_right_direction():
    seq = list("C" * 400)
    seq[199:203] = list("GATA")                                 # a motif at the centre of the window
    g = {"chrM": encode("".join(seq))}
    adapter = ModelAdapter(_motif_model(), 200, task_names=["ct"])
    # breaking G of GATA (pos1 200) vs making GATA from GATC at 250
    seq2 = seq.copy()
    seq2[249:253] = list("GATC")
    g["chrN"] = encode("".join(seq2))
    ids = ["chrM:200:G:C", "chrN:253:C:A", "chrM:150:C:A"]
    v, r, a, info = score_table(adapter, g, ids)
    ratio, lfc = ratios(r, a)
    by = dict(zip(v["variant_id"], lfc[:, 0]))
    assert by["chrM:200:G:C"] < -0.5 and by["chrN:253:C:A"] > 0.5 and abs(by["chrM:150:C:A"]) < 1e-6
    assert info["path"] == "fast_ism"
    assert np.allclose(ratio, r / (r + a))


# ---------------------------------------------------------------- the step and the CLI


def _study(tmp_path, with_vcf=False):
    fa = tmp_path / "genome.fa"
    fa.write_text(">chr1\n" + "\n".join(GENOME_STR[i:i + 60] for i in range(0, len(GENOME_STR), 60)) + "\n")
    out = tmp_path / "results"
    sets = pd.DataFrame({
        "cell_type": ["B", "B", "T", "T", "T"],
        "variant_id": [_snv(1000), _snv(2000), _snv(1000), _snv(3000), "chr1:5990:" + GENOME_STR[5989] + ":A"],
        "set": ["positive", "negative", "positive", "negative", "negative"], "match_bin": [0, 0, 1, 1, 1]})
    write_parquet(sets, out / "variant_sets.parquet")
    save_checkpoint(_small_basset(2, seed=1), out / "models" / "multitask" / "model.pt", cell_types=["B", "T"])
    for i, ct in enumerate(["B", "T"]):
        save_checkpoint(_small_basset(1, seed=2 + i), out / "models" / "single_task" / ct / "model.pt", cell_types=[ct])
    params = {"fasta": str(fa), "regimes": ["single_task", "multitask"], "score_rc": True,
              "score_shifts": [-1, 0, 1], "score_batch_size": 4, "score_device": "cpu", "score_fast_ism": True,
              "score_vcf": None, "contig_map": None}
    if with_vcf:
        vcf = tmp_path / "user.vcf"
        vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=6000>\n"
                       "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                       f"chr1\t1501\t.\t{GENOME_STR[1500]}\t{_snv(1500)[-1]},{_snv(1500, 2)[-1]}\t.\tPASS\t.\n"
                       f"chr1\t1601\t.\t{GENOME_STR[1600:1602]}\t{GENOME_STR[1600]}\t.\tPASS\t.\n")
        params["score_vcf"] = str(vcf)
    return out, params, sets


def test_windows_off_a_contig_end_are_n_padded_and_scored():
    """As Basenji's snp_seq1: near a contig end the window is padded with N, the variant is still scored."""
    seq_len = 40
    seen = []

    class Flat(nn.Module):
        def forward(self, x):
            seen.extend(x.clone())
            return x.sum(dim=(1, 2)).unsqueeze(1) + 1.0

    adapter = ModelAdapter(Flat(), seq_len)
    adapter.task_names = ["t"]
    vid = "chr1:3:" + GENOME_STR[2] + ":" + ("A" if GENOME_STR[2] != "A" else "C")
    v, ref_pred, alt_pred, info = score_table(adapter, GENOME, [vid], rc=False, shifts=(0,), fast=False)
    assert v["variant_id"].tolist() == [vid] and info["padded_with_n"] == 1
    as_text = ["".join("ACGT"[i] if col.sum() else "N" for i, col in zip(w.argmax(0).tolist(), w.T)) for w in seen]
    # variant at index 19 = seq_len // 2 - 1: the 17 bases before the contig start are N (all-zero columns)
    assert "N" * 17 + GENOME_STR[:23] in as_text
    assert "N" * 17 + GENOME_STR[:2] + vid[-1] + GENOME_STR[3:23] in as_text


def test_run_step_writes_scores_for_every_set_row(tmp_path):
    out, params, sets = _study(tmp_path, with_vcf=True)
    run_step(StepContext(params=params, outdir=out))
    scores = read_parquet(out / "variant_scores.parquet")
    assert list(scores.columns) == SCORE_COLUMNS
    # every task scores every cell type's variants (the cross-cell-type matrix), in every regime; the
    # variant 10 bp from the contig end too (its window N-padded)
    every = {(t, v) for t in ("B", "T") for v in sets["variant_id"]}
    assert every > set(map(tuple, sets[["cell_type", "variant_id"]].to_numpy()))
    for regime in ("single_task", "multitask"):
        got = scores[scores["regime"] == regime][["cell_type", "variant_id"]]
        assert sorted(map(tuple, got.to_numpy())) == sorted(every)
    # a single-task model scores the other cell type's variants with its own weights
    st = scores[scores["regime"] == "single_task"].set_index(["cell_type", "variant_id"])["ref_pred"]
    assert st[("B", _snv(3000))] != st[("T", _snv(3000))]
    assert np.allclose(scores["pred_ref_ratio"], scores["ref_pred"] / (scores["ref_pred"] + scores["alt_pred"]))
    assert np.allclose(scores["log2_fc"], np.log2(scores["alt_pred"] / scores["ref_pred"]))
    js = json.loads((out / "score_variants.summary.json").read_text())
    assert js["rows"] == len(scores) == 2 * 2 * 4 and js["skipped"] == 0   # regimes × tasks × distinct variants
    assert js["by_model"]["multitask"]["padded_with_n"] == 1
    vcf = read_parquet(out / "vcf_scores.parquet")
    assert len(vcf) == 3 * (2 + 1 + 1)          # 3 ALT alleles × every task of each model (multitask 2, B, T)
    # the same variant in two cell types is scored once by the multitask model: identical numbers
    mt = scores[(scores["regime"] == "multitask") & (scores["variant_id"] == _snv(1000))]
    assert len(mt) == 2 and mt["ref_pred"].nunique() == 2              # two tasks, one window
    # same inputs → byte-identical output
    first = (out / "variant_scores.parquet").read_bytes()
    run_step(StepContext(params=params, outdir=out))
    assert (out / "variant_scores.parquet").read_bytes() == first


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    out, params, _ = _study(tmp_path)
    params["regimes"] = ["multitask_peaks"]
    with pytest.raises(InputError, match="model checkpoint not found"):
        run_step(StepContext(params=params, outdir=out))
    assert not (out / "variant_scores.parquet").exists()


def test_cli_scores_an_outside_torchscript_model(tmp_path):
    out, params, sets = _study(tmp_path, with_vcf=True)
    model = _small_basset(2, seed=9)
    ts = tmp_path / "outside.ts"
    torch.jit.trace(model, torch.zeros(1, 4, 1344)).save(str(ts))
    dest = tmp_path / "ext.parquet"
    assert main(["--model", str(ts), "--fasta", params["fasta"], "--vcf", params["score_vcf"],
                 "--variant-sets", str(out / "variant_sets.parquet"), "--task-names", "B", "T",
                 "--out", str(dest)]) == 0
    ext = read_parquet(dest)
    assert set(ext["regime"]) == {"external"} and set(ext["cell_type"]) == {"B", "T"}
    assert len(ext) == 4 * 2 + 3 * 2                                   # (distinct set variants + VCF alleles) × tasks
    # TorchScript runs the plain path; the same weights as an nn.Module take the fast path: same numbers
    v, r, a, info = score_table(ModelAdapter(model, 1344), {"chr1": GENOME["chr1"]}, [_snv(1000)])
    row = ext[(ext["variant_id"] == _snv(1000)) & (ext["cell_type"] == "T")].iloc[0]
    assert info["path"] == "fast_ism" and load_model(ts).layers is None
    assert abs(row["alt_pred"] - a[0, 1]) / a[0, 1] < 1e-4 and abs(row["ref_pred"] - r[0, 1]) / r[0, 1] < 1e-4
    assert json.loads((tmp_path / "ext.summary.json").read_text())["rows"] == len(ext)
    # per-model tables (as Nextflow's processes write them) merge into one; merging one twice is refused
    merged = tmp_path / "merged.parquet"
    dest2 = tmp_path / "ext_mt.parquet"
    assert main(["--model", str(out / "models/multitask/model.pt"), "--regime", "multitask", "--fasta", params["fasta"],
                 "--variant-sets", str(out / "variant_sets.parquet"), "--out", str(dest2)]) == 0
    sums = [str(tmp_path / "ext.summary.json"), str(tmp_path / "ext_mt.summary.json")]
    assert main(["--merge", str(dest), str(dest2), "--model-summaries", *sums, "--out", str(merged)]) == 0
    assert len(read_parquet(merged)) == len(ext) + len(read_parquet(dest2))
    assert json.loads((tmp_path / "merged.summary.json").read_text())["models"] == 2
    with pytest.raises(InputError, match="duplicated rows"):
        main(["--merge", str(dest), str(dest), "--model-summaries", *sums, "--out", str(tmp_path / "dup.parquet")])
    assert not (tmp_path / "dup.parquet").exists()


def _per_model_commands(out, params, work):
    """SCORE_VARIANTS' command line for each model of ``_study`` (one task per model)."""
    cmds = []
    for regime, ct in (("multitask", None), ("single_task", "B"), ("single_task", "T")):
        name = f"{regime}_{ct}" if ct else regime
        model = out / "models" / regime / (ct or "") / "model.pt"
        cmds.append(["--model", str(model), "--regime", regime, *(["--cell-type", ct] if ct else []),
                     "--fasta", params["fasta"], "--variant-sets", str(out / "variant_sets.parquet"),
                     "--vcf", params["score_vcf"], "--out-vcf", str(work / f"vcf_scores.{name}.parquet"),
                     "--threads", "1", "--out", str(work / f"variant_scores.{name}.parquet"),
                     "--summary", str(work / f"variant_scores.{name}.summary.json"),
                     "--score-batch-size", str(params["score_batch_size"]), "--score-device", "cpu"])
    return cmds


def test_per_model_tasks_and_merge_give_the_local_step_outputs(tmp_path):
    """Nextflow's path (one scoring call per model, then --merge) writes the local step's
    variant_scores.parquet, vcf_scores.parquet and score_variants.summary.json byte for byte:
    one summary function (run_summary) for both, whatever order the parts come in."""
    out, params, _ = _study(tmp_path, with_vcf=True)
    run_step(StepContext(params=params, outdir=out))
    work = tmp_path / "nf"
    work.mkdir()
    for argv in _per_model_commands(out, params, work):
        assert main(argv) == 0
    parts = sorted(work.glob("variant_scores.*.parquet"))[::-1]
    merged = ["--merge", *map(str, parts), "--merge-vcf", *map(str, sorted(work.glob("vcf_scores.*.parquet"))),
              "--out-vcf", str(work / "vcf_scores.parquet"), "--out", str(work / "variant_scores.parquet"),
              "--summary", str(work / "score_variants.summary.json")]
    sums = sorted(map(str, work.glob("variant_scores.*.summary.json")))
    assert main([*merged, "--model-summaries", *sums]) == 0
    for name in ("variant_scores.parquet", "vcf_scores.parquet", "score_variants.summary.json"):
        assert (work / name).read_bytes() == (out / name).read_bytes(), name
    js = json.loads((out / "score_variants.summary.json").read_text())
    assert set(js["by_model"]) == {"multitask", "single_task/B", "single_task/T"} and js["models"] == 3
    assert js["vcf_rows"] == 3 * 4 and "seconds" not in js["by_model"]["multitask"]["vcf"]
    # a summary missing or given twice is refused, and nothing is written
    for bad, match in ((sums[:2], "summaries count"), ([*sums, sums[0]], "in two summaries")):
        with pytest.raises(InputError, match=match):
            main([*merged[:-2], "--summary", str(work / "bad.json"), "--model-summaries", *bad])
        assert not (work / "bad.json").exists()


def test_replicates_are_scored_per_model_and_merge_to_the_local_step_outputs(tmp_path):
    """train_replicates 2: every replicate model scores every variant (rows rep1, rep2; summary keys
    multitask/rep<k>, single_task/rep<k>/<cell type>), and the per-model calls (--replicate,
    --train-replicates) merged give the local step's files byte for byte."""
    out, params, _ = _study(tmp_path)
    params = dict(params, train_replicates=2)
    for k in (1, 2):
        save_checkpoint(_small_basset(2, seed=10 * k), out / "models" / "multitask" / f"rep{k}" / "model.pt",
                        cell_types=["B", "T"])
        for i, ct in enumerate(["B", "T"]):
            save_checkpoint(_small_basset(1, seed=10 * k + 1 + i), out / "models" / "single_task" / f"rep{k}" / ct /
                            "model.pt", cell_types=[ct])
    run_step(StepContext(params=params, outdir=out))
    scores = read_parquet(out / "variant_scores.parquet")
    assert list(scores.columns) == SCORE_COLUMNS and set(scores["replicate"]) == {"rep1", "rep2"}
    r1, r2 = (scores[scores["replicate"] == r].reset_index(drop=True) for r in ("rep1", "rep2"))
    assert r1.drop(columns=["replicate", "ref_pred", "alt_pred", "pred_ref_ratio", "log2_fc"]).equals(
        r2.drop(columns=["replicate", "ref_pred", "alt_pred", "pred_ref_ratio", "log2_fc"]))
    assert not np.allclose(r1["ref_pred"], r2["ref_pred"])            # other weights, other scores
    js = json.loads((out / "score_variants.summary.json").read_text())
    assert set(js["by_model"]) == {f"{m}/rep{k}{c}" for k in (1, 2) for m, c in
                                   (("multitask", ""), ("single_task", "/B"), ("single_task", "/T"))}
    work = tmp_path / "nf"
    work.mkdir()
    for k in (1, 2):
        for regime, ct in (("multitask", None), ("single_task", "B"), ("single_task", "T")):
            name = f"{regime}_{ct}_rep{k}" if ct else f"{regime}_rep{k}"
            model = out / "models" / regime / f"rep{k}" / (ct or "") / "model.pt"
            assert main(["--model", str(model), "--regime", regime, *(["--cell-type", ct] if ct else []),
                         "--replicate", str(k), "--train-replicates", "2", "--fasta", params["fasta"],
                         "--variant-sets", str(out / "variant_sets.parquet"), "--score-device", "cpu",
                         "--score-batch-size", str(params["score_batch_size"]),
                         "--out", str(work / f"variant_scores.{name}.parquet"),
                         "--summary", str(work / f"variant_scores.{name}.summary.json")]) == 0
    assert main(["--merge", *map(str, sorted(work.glob("variant_scores.*.parquet"))), "--out",
                 str(work / "variant_scores.parquet"), "--summary", str(work / "score_variants.summary.json"),
                 "--model-summaries", *map(str, sorted(work.glob("variant_scores.*.summary.json")))]) == 0
    for name in ("variant_scores.parquet", "score_variants.summary.json"):
        assert (work / name).read_bytes() == (out / name).read_bytes(), name


def test_bad_inputs_raise_input_errors(tmp_path):
    out, params, _ = _study(tmp_path)
    with pytest.raises(InputError, match="nothing to score"):
        main(["--model", str(out / "models/multitask/model.pt"), "--fasta", params["fasta"]])
    with pytest.raises(InputError, match="chrom:pos1:ref:alt"):
        score_table(ModelAdapter(_small_basset(), 1344), GENOME, ["chr1-100-A-C"])

    class Wide(nn.Module):
        def forward(self, x):
            return x[:, :, :10]
    with pytest.raises(InputError, match=r"expected \(N, T\)"):
        ModelAdapter(Wide(), 1344)
    with pytest.raises(InputError, match="VCF not found"):
        vcf_variant_ids(tmp_path / "nope.vcf")


# ---------------------------------------------------------------- the pipeline on the tiny study


def test_tiny_run_scores_every_variant_of_both_tables_in_every_regime(tiny_run):
    """Every row of variant_sets.parquet and of the stratum-matched (Fig. 4B) table has a score in every regime."""
    scores = read_parquet(tiny_run / "variant_scores.parquet")
    sets = read_parquet(tiny_run / "variant_sets.parquet")
    strata = read_parquet(tiny_run / "variant_sets_stratum_matched.parquet")
    js = json.loads((tiny_run / "score_variants.summary.json").read_text())
    assert list(scores.columns) == SCORE_COLUMNS and js["rows"] == len(scores)
    assert np.isfinite(scores[["ref_pred", "alt_pred", "log2_fc"]].to_numpy()).all()
    assert ((scores["pred_ref_ratio"] > 0) & (scores["pred_ref_ratio"] < 1)).all()
    want = set(map(tuple, sets[["cell_type", "variant_id"]].to_numpy())) | set(
        map(tuple, strata[["cell_type", "variant_id"]].to_numpy()))
    assert len(strata) and not set(map(tuple, strata[["cell_type", "variant_id"]].to_numpy())) <= set(
        map(tuple, sets[["cell_type", "variant_id"]].to_numpy()))  # the Fig. 4B table adds variants
    cell_types = set(sets["cell_type"])
    every = {(t, v) for t in cell_types for v in {v for _, v in want}}   # every task × every cell type's variants
    assert len(cell_types) > 1 and every > want
    for regime, got in scores.groupby("regime"):
        assert set(map(tuple, got[["cell_type", "variant_id"]].to_numpy())) == every, regime
    for info in js["by_model"].values():
        assert sum(info["skipped"].values()) == 0 and info["scored"] == info["variants_in"]
    assert set(scores["regime"]) >= {"multitask"}


def test_tiny_run_cross_cell_type_matrix_is_filled(tiny_run):
    """Issue 18: every task scored every cell type's variants, so evaluate's cross-cell-type matrix
    (rows ``X|T``: X's labels, task T's predictions) has its off-diagonal cells in every regime,
    the single-task one included, and its diagonal ``X|X`` is X's own ``imbalance_auroc``."""
    from caveat.evaluate import MEAN_TASK

    m = read_parquet(tiny_run / "metrics.parquet")
    own = (m[(m["metric"] == "imbalance_auroc") & (m["stratum"] == "all")]
           .set_index(["regime", "replicate", "cell_type"])["value"])
    cross = m[m["metric"] == "cross_imbalance_auroc"]
    assert len(cross) and set(cross["regime"]) == set(own.index.get_level_values(0))
    assert {"rep1", "ensemble", "median"} <= set(cross["replicate"])
    for (regime, rep), g in cross.groupby(["regime", "replicate"]):  # each model row (replicate, ensemble, median)
        x, t = g["cell_type"].str.split("|").str[0], g["cell_type"].str.split("|").str[1]
        rows = set(x)                                   # the cell types with both classes in their sets
        tasks = set(t) - {MEAN_TASK}
        assert len(tasks) > 1 and rows <= tasks, regime
        assert set(zip(x, t)) == {(a, b) for a in rows for b in [*tasks, MEAN_TASK]}, regime
        off = g[(x != t) & (t != MEAN_TASK)]
        assert len(off) == len(rows) * (len(tasks) - 1) and off["value"].notna().all(), regime
        diag = g[x == t]
        assert len(diag) == len(rows)
        for label, value in zip(diag["cell_type"], diag["value"]):
            assert value == pytest.approx(own[(regime, rep, label.split("|")[0])], abs=1e-12), (regime, rep, label)


def test_tiny_run_fast_path_equals_plain_on_trained_checkpoint(tiny_run):
    _fast_equals_plain_on_checkpoint(tiny_run / "models" / "multitask" / "model.pt",
                                     np.r_[0:24, 640:704, 1320:1344])


def _fast_equals_plain_on_checkpoint(path, offsets):
    from caveat.fast_ism import FastISM

    adapter = load_model(path, batch_size=32)
    assert adapter.layers is not None
    fism = FastISM(adapter.layers)
    g = torch.Generator().manual_seed(0)
    x = nn.functional.one_hot(torch.randint(0, 4, (1, adapter.seq_len), generator=g), 4).transpose(1, 2).float()
    pos = torch.as_tensor(offsets, dtype=torch.long)
    col = nn.functional.one_hot((x[0].argmax(0)[pos] + 1) % 4, 4).float()
    cache, _ = fism.reference(x)
    got = torch.cat([fism.substitute(cache, torch.zeros(len(pos[i:i + 128]), dtype=torch.long), pos[i:i + 128],
                                     col[i:i + 128]) for i in range(0, len(pos), 128)])
    xa = x.repeat(len(pos), 1, 1)
    xa[torch.arange(len(pos)), :, pos] = col
    want = adapter.predict(xa)
    assert ((got - want).abs() / want.abs().clamp_min(1e-6)).max() < 1e-4


# ---------------------------------------------------------------- the demo study (must-hold)


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def multitask_direction_auroc(run) -> tuple[dict, pd.DataFrame]:
    """Direction AUROC of each multitask replicate within the run's imbalanced variants:
    ({replicate: (AUROC, n)}, the multitask scores); each replicate is its own model, never pooled."""
    scores = read_parquet(run / "variant_scores.parquet")
    mt = scores[scores["regime"] == "multitask"]
    imb = read_parquet(run / "imbalance.parquet")
    imb = imb[imb["label"] == "imbalanced"][["cell_type", "variant_id", "ref_ratio"]]
    out = {}
    for rep, g in mt.merge(imb, on=["cell_type", "variant_id"]).groupby("replicate"):
        out[rep] = (_auroc((g["ref_ratio"] > 0.5).to_numpy(), g["pred_ref_ratio"].to_numpy()), len(g))
        print(f"direction AUROC within imbalanced variants (multitask {rep}, n={len(g)}): {out[rep][0]:.3f}")
    return out, mt


@pytest.mark.demo
def test_demo_direction_auroc_and_planted_effects(demo_run, demo_sim):
    by_rep, mt = multitask_direction_auroc(demo_run)
    assert by_rep and all(n >= 20 and auc >= 0.65 for auc, n in by_rep.values()), by_rep
    truth = read_parquet(demo_sim / "truth" / "snps.parquet")[["cell_type", "variant_id", "effect"]].drop_duplicates()
    t = mt.merge(truth, on=["cell_type", "variant_id"])
    planted = t.loc[t["effect"] != "none", "log2_fc"].abs().mean()
    null = t.loc[t["effect"] == "none", "log2_fc"].abs().mean()
    print(f"mean |log2_fc|: planted {planted:.4f}, null {null:.4f}")
    assert planted > null


@pytest.mark.demo
def test_demo_fast_path_equals_plain_on_trained_checkpoint(demo_run):
    """Every offset of a window, the trained multitask checkpoint (replicate 1 when several)."""
    ckpt = min((demo_run / "models" / "multitask").rglob("model.pt"))   # model.pt, or rep1/model.pt
    _fast_equals_plain_on_checkpoint(ckpt, np.arange(1344))


def test_scores_do_not_depend_on_the_thread_count():
    """Same model, same variants → the same bits with 1, 2 or 3 threads, fast ISM and plain
    path, partial last chunk included (a model and chunk sizes whose multi-threaded forward
    differs from the single-threaded one on common CPUs)."""
    torch.manual_seed(0)
    m = BassetModel(ModelConfig(n_tasks=2, filters=32, filters_max=64, bottleneck=32, dense=64))
    calibrate_batchnorm(m, torch.nn.functional.one_hot(torch.randint(0, 4, (16, 1344)), 4).transpose(1, 2).float())
    adapter = ModelAdapter(m, 1344, task_names=["A", "B"], batch_size=5)
    ids = [_snv(p) for p in range(1500, 4500, 250)] + [f"chr1:{2001}:{GENOME_STR[2000]}:{GENOME_STR[2000]}AC"]
    was = torch.get_num_threads()
    try:
        for fast in (True, False):
            torch.set_num_threads(1)
            v0, r0, a0, _ = score_table(adapter, GENOME, ids, fast=fast, batch_size=5, threads=1)
            for ambient, threads in ((2, 1), (2, 3), (1, 2)):
                torch.set_num_threads(ambient)
                v, r, a, _ = score_table(adapter, GENOME, ids, fast=fast, batch_size=5, threads=threads)
                assert v["variant_id"].tolist() == v0["variant_id"].tolist()
                assert np.array_equal(r, r0) and np.array_equal(a, a0)
            assert len(v0) == len(ids) and (r0 != a0).any()
    finally:
        torch.set_num_threads(was)
