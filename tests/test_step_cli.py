"""caveat.step_cli: one option per param by one rule, and back to the params dict."""

from __future__ import annotations

import argparse

import pytest

from caveat.step_cli import add_param_options, flag, params_from_args

PARAMS = {"match_bins": 20, "imbalance_fdr": 0.01, "imbalance_pool_donors": True, "test_chroms": ["chr4", "chr5"],
          "score_shifts": [-1, 0, 1], "dataset_chroms": None, "cluster_k": None, "imbalance_test": "binomial",
          "report_title": "a title"}


def _parser():
    ap = argparse.ArgumentParser()
    add_param_options(ap, PARAMS, aliases={"match_bins": ["--bins"], "imbalance_pool_donors": ["--pool-donors"]},
                      types={"dataset_chroms": list, "cluster_k": int})
    return ap


def test_defaults_round_trip_to_the_declared_params():
    assert params_from_args(_parser().parse_args([]), PARAMS) == PARAMS
    assert flag("wasp_max_snps_per_read") == "--wasp-max-snps-per-read"


def test_types_follow_the_defaults_and_aliases_set_the_same_param():
    a = _parser().parse_args(["--bins", "7", "--imbalance-fdr", "0.05", "--no-pool-donors", "--test-chroms", "chr1",
                              "--score-shifts", "-2", "2", "--dataset-chroms", "chr2", "chr3", "--cluster-k", "4",
                              "--imbalance-test", "betabinomial", "--report-title", "it's x"])
    assert params_from_args(a, PARAMS) == {
        "match_bins": 7, "imbalance_fdr": 0.05, "imbalance_pool_donors": False, "test_chroms": ["chr1"],
        "score_shifts": [-2, 2], "dataset_chroms": ["chr2", "chr3"], "cluster_k": 4, "imbalance_test": "betabinomial",
        "report_title": "it's x"}
    assert _parser().parse_args(["--match-bins", "9", "--imbalance-pool-donors"]).match_bins == 9


def test_choices_come_from_the_params_rules():
    with pytest.raises(SystemExit):
        _parser().parse_args(["--imbalance-test", "nope"])


def test_defaults_are_copies():
    ap = _parser()
    params_from_args(ap.parse_args([]), PARAMS)["test_chroms"].append("chrX")
    assert ap.parse_args([]).test_chroms == ["chr4", "chr5"] and PARAMS["test_chroms"] == ["chr4", "chr5"]
