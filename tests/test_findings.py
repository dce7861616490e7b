"""Tests of triage.findings: the verdict sentences follow the numbers."""
import pandas as pd

from triage import findings as fd


def test_verdicts_follow_the_numbers():
    row = dict(base_acc=0.9, test_images=500, conv_share=97.0, conv_std=0.02, fc_std=0.01, fc_skew_first=0.1,
               fc_skew_last=0.5, pca_first_half=0.9, pca_depth_corr=-0.8, sparsity_conv=0.5, sparsity_fc=0.9,
               noise10_drop=0.4, noise_tolerance=0.1, noise_knee_p=0.6, noise_knee_drop=40.0, layer_noise_p=0.5,
               layer_most="b1", layer_most_drop=3.0, layer_least="b5", layer_least_drop=0.0, decimals_needed=3,
               decimals2_drop=5.0, k_needed=16, k32_drop=0.2, clusters_needed=64, clusters_share=1.0,
               clusters_needed_recal=32, clusters_share_recal=0.6)
    good = fd.verdicts(pd.DataFrame([row], index=["mnist"]))
    assert "noise tolerance holds" in good["noise"] and "+0.4" not in good["noise"] and "-0.4 points" in good["noise"]
    assert "K=32 sufficiency holds" in good["kmeans"]
    assert "flatten with depth, as the paper found" in good["pca"]
    bad = fd.verdicts(pd.DataFrame([{**row, "noise10_drop": 5.0, "k32_drop": 3.0, "pca_depth_corr": 0.2}],
                                   index=["cifar10"]))
    assert "does not hold" in bad["noise"] and "does not hold" in bad["kmeans"]
    assert "do not clearly flatten" in bad["pca"]
    two = fd.verdicts(pd.DataFrame([row, {**row, "k32_drop": 3.0}], index=["mnist", "cifar10"]))
    assert "for some data sets only" in two["kmeans"]
    assert "97.0% for every data set" in two["params"]
    assert "point: mnist: 64 (100% of the filters kept distinct on average)" in good["filter_kmeans"]
    assert "re-estimated afterwards: mnist: 32 (60% of" in good["filter_kmeans"]
    # no swept cluster count suffices: said as a value, whatever each() appends
    none = fd.verdicts(pd.DataFrame([{**row, "clusters_needed": None, "clusters_share": float("nan")}] * 2,
                                    index=["mnist", "cifar10"]))
    assert "point: more than any swept for every data set;" in none["filter_kmeans"]
    assert "As in the paper, vector quantisation of filters needs many clusters." in none["filter_kmeans"]


def test_base_summary_and_table1_glue_by_hand():
    res = {ds: {"meta": {"base_acc": acc, "test_images": 500},
                "params": pd.DataFrame({"layer": ["conv", "total"], "params": [10, n]})}
           for ds, acc, n in (("mnist", 0.99, 100), ("cifar10", 0.8, 300))}
    s = fd.base_summary(res)
    assert list(s.index) == ["mnist", "cifar10"]
    assert s.loc["cifar10"].to_dict() == {"test accuracy": 0.8, "test images": 500, "parameters": 300}
    assert s["test images"].dtype == int and s["parameters"].dtype == int
    # a three-layer Table I: fc7's paper row counts its weights only, and the paper's total counts the biases
    t1 = pd.DataFrame({"kind": ["conv", "fc", "fc", ""], "weights": [90, 400, 50, 540],
                       "params": [100, 420, 55, 575], "share": [17.39, 73.04, 9.57, 100.0],
                       "paper": [100, 400, 55, 575]}, index=["conv1", "fc7", "fc8", "total"])
    assert fd.table1_glue(t1) == {"alex_total": 575, "alex_rows_equal": 3, "alex_rows": 3, "alex_fc7_weights": 400,
                                  "alex_fc7_params": 420, "alex_rows_sum": 555, "alex_conv_share": 17.39}
