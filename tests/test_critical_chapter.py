"""The critical-paths chapter's prose and glue values, on small tables worked out by hand."""
from types import SimpleNamespace

import pandas as pd

from triage import critical_chapter as cc
from triage.critical_eval import CALIBRATIONS


def _layer_std(std, rel_std):
    return pd.DataFrame({"depth": range(1, len(std) + 1), "std": std, "rel_std": rel_std})


def test_layer_std_text_reads_the_first_and_last_thirds():
    # 6 layers: thirds of 2; spearman(depth, std) with tied pairs = 16 / sqrt(17.5 * 16) = 0.956
    d = _layer_std([1.0, 1.0, 2.0, 2.0, 3.0, 3.0], [0.1, 0.1, 0.2, 0.2, 0.5, 0.5])
    assert cc.layer_std_text(d) == (
        "The mean STD is 1.000 in the first 2 conv layers and 3.000 in the last 2 (rank correlation with depth "
        "0.96); the relative STD goes from 0.10 to 0.50. As in the paper, higher layers are more class-specific.")
    # the STD grows but the relative STD does not: not "more class-specific by both measures"
    flat = _layer_std([1.0, 1.0, 2.0, 2.0, 3.0, 3.0], [0.5, 0.5, 0.2, 0.2, 0.1, 0.1])
    assert cc.layer_std_text(flat).endswith("Here, unlike the paper's Fig. 1b, the higher layers are not clearly "
                                            "more class-specific by both measures.")
    assert "from 0.50 to 0.10" in cc.layer_std_text(flat)


def test_fig2_glue_names_each_class_and_the_verdict():
    summ = pd.DataFrame({"spearman": [0.5, 0.25], "overlap": [0.2, 0.1], "own_class": [3, 2], "k": [3, 3]},
                        index=["cat", "dog"])
    g = cc.fig2_glue(summ)
    assert g["fig2_text"] == (
        "For cat, the rank correlation between the activation and contribution rows is 0.50, 20% of its top-10% "
        "filters by activation are also top-10% by contribution (chance: about 10%), and 3 of its top 3 filters "
        "contribute most to cat itself; for dog, the rank correlation between the activation and contribution rows "
        "is 0.25, 10% of its top-10% filters by activation are also top-10% by contribution (chance: about 10%), and "
        "2 of its top 3 filters contribute most to dog itself.")
    assert g["fig2_verdict"].startswith("Unlike the paper's Fig. 2")
    summ["own_class"] = 3
    assert cc.fig2_glue(summ)["fig2_verdict"].startswith("As in the paper")


def _res(width, base_acc):
    meta = {"base_acc": base_acc, "width": width, "base_mb": 4.0}
    ex = pd.DataFrame({"n": [64, 64], "k": [7, 7]})
    return {"meta": meta, "maps": SimpleNamespace(classes=tuple("abcdefghij")), "exclusiveness": ex}


def test_caveat_depends_on_width_and_accuracy():
    head = ("The base network reaches 90.0% test accuracy (chance: 10%) at width {w}: its distilled layers have 64 "
            "filters, and ratio 0.1 keeps 7 of them (the paper: 52 of 512). ")
    narrow = cc.caveat(_res(0.125, 0.9), 0.1)
    assert narrow.startswith(head.format(w="0.125")) and "not of the paper's claims" in narrow
    assert cc.caveat(_res(0.5, 0.9), 0.1) == head.format(w="0.5") + (
        "This base is wide enough for the paper's claims to be tested.")
    assert cc.caveat(_res(1.0, 0.8), 0.1).endswith("weaker than the paper's VGG16 (the issue asks for at least 85%).")


def test_describe_says_which_images():
    meta = {"dataset": "cifar10", "profile": "wide", "width": 0.5, "seed": 0, "run": "base-abc", "source": "computed",
            "map_images": 5000, "val_images": 5000, "val_unseen": True, "test_images": 10000, "data_note": ""}
    assert cc.describe(meta) == (
        "cifar10, profile wide (width 0.5), seed 0, run base-abc: results computed\n"
        "maps and BN statistics from 5,000 training images; thresholds from 5,000 validation images (never used to "
        "train the base); rates on 10,000 test images")
    assert cc.describe({**meta, "val_unseen": False, "data_note": "a note"}).endswith("(also used to train the base); "
                                                                                       "rates on 10,000 test images\n"
                                                                                       "a note")


def _rules(tp, fp, col):
    return {f"{m}_{s}": v for s in ("argmax", "positive", "threshold") for m, v in (("tp", tp), ("fp", fp),
                                                                                     ("collapsed", col))}


def test_table1_glue_formats_the_mean_row_and_the_original():
    table = pd.DataFrame([{**_rules(0.9, 0.2, False), "auc": 0.8, "fp_at_tp_roc": 0.5, "mb_after": 2.0},
                          {**_rules(0.95, 0.125, 2), "auc": 0.85, "fp_at_tp_roc": 0.375, "mb_after": 1.0}],
                         index=[0, "mean"])
    res = _res(0.5, 0.9)
    res["rates"] = pd.DataFrame({"ratio": [0.1, 0.1, 0.5], "kept": [7, 7, 32]})
    res["original"] = pd.DataFrame([{**_rules(1.0, 0.5, 0), "auc": 0.9}, {**_rules(0.5, 0.0, 0), "auc": 0.7}])
    g = cc.table1_glue(table, res, 0.1)
    assert g["ratio"] == "0.1" and g["kept"] == 7
    assert (g["tp_argmax"], g["fp_threshold"], g["col_positive"]) == ("95.0%", "12.5%", "2")
    assert (g["orig_tp_argmax"], g["orig_fp_positive"]) == ("75.0%", "25.0%")   # means of the two classes
    assert (g["auc"], g["orig_auc"], g["fp_roc"]) == ("0.850", "0.800", "37.5%")
    assert g["size_text"] == "1.000 MB instead of 4.000 MB (25%)"


def _summary():
    rows = []
    for ratio, cal, fp, auc in ((0.1, "paper", 0.2, 0.8), (0.1, "bn", 0.1, 0.7), (0.1, "hidden0", 0.1, 0.75),
                                (0.5, "paper", 0.05, 0.95)):
        rows.append({"ratio": ratio, "calibration": cal, **_rules(0.98, 0.3, 1), "fp_threshold": fp, "auc": auc,
                     "fp_at_tp_roc": 0.4})
    return pd.DataFrame(rows)


def test_calibration_table_and_the_best_calibration():
    original = pd.DataFrame([{**_rules(1.0, 0.5, True), "auc": 0.9, "fp_at_tp_roc": 0.2},
                             {**_rules(0.5, 0.0, True), "auc": 0.7, "fp_at_tp_roc": 0.4}])
    calib = cc.calibration_table(_summary(), original, 0.1)
    assert list(calib.index) == ["paper", "bn", "hidden0", "original"]
    assert calib.columns[0] == "procedure" and list(calib.columns[-2:]) == ["auc", "fp_at_tp_roc"]
    assert calib.loc["bn", "procedure"] == CALIBRATIONS["bn"].label
    # the original's collapse flags are counted, its rates averaged over the classes
    assert calib.loc["original", "collapsed_argmax"] == 2 and calib.loc["original", "tp_argmax"] == 0.75
    # bn and hidden0 tie on FP at the threshold; the larger AUC wins
    assert cc.best_calibration(calib) == {"best_cal": CALIBRATIONS["hidden0"].label, "best_auc": "0.750",
                                          "best_fp": "10.0%"}


def test_breakdown_text():
    s = pd.DataFrame({"ratio": [0.1, 0.5, 1.0, 0.1], "calibration": ["paper", "paper", "paper", "bn"],
                      "auc": [0.6, 0.85, 0.9, 0.2]})
    assert cc.breakdown_text(s) == ("With the paper's procedure, ratio 0.1 is the largest swept ratio whose mean "
                                    "AUC is more than 0.1 below its value at ratio 1.")
    s.loc[0, "auc"] = 0.81   # 0.09 below: no breakdown (the bn row is not the paper's)
    assert cc.breakdown_text(s) == ("With the paper's procedure, no swept ratio loses more than 0.1 of mean AUC "
                                    "against ratio 1.")


def test_exclusiveness_text():
    ex = pd.DataFrame({"p_exclusive": [0.01, 0.2, 0.03], "p_shared": [0.9, 0.01, 0.5],
                       "mean_jaccard": [0.1, 0.2, 0.3], "chance_jaccard": [0.15, 0.15, 0.15]})
    assert cc.exclusiveness_text(ex) == (
        "The mean Jaccard overlap of the kept sets is 0.200 against 0.150 for random sets; the paths are more "
        "exclusive than chance in 2 of 3 layers and more shared than chance in 1.")


def test_paper_size_glue_single_head_is_the_papers_59_mb():
    # VGG16's convs: 14,714,688 weights and biases; 13 BNs over 4,224 channels: 2 x 4,224 parameters and
    # 2 x 4,224 float running statistics, plus 13 int64 counters; Linear(512, 10): 5,130 parameters
    nbytes = (14_714_688 + 4 * 4224 + 5130) * 4 + 13 * 8
    g = cc.paper_size_glue(10, 0.1)
    assert g["single_head_mb"] == f"{nbytes / 1e6:.1f} MB" == "58.9 MB"
    before, after = (float(x.split()[0]) for x in g["wide_text"].split(" (")[0].split(" -> "))
    assert after < before

