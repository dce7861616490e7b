"""The Results and Reproduce chapters' numbers and prose, on small tables worked out by hand."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from triage import results_chapter as rc


def _runs(control=True):
    rows = [
        dict(dataset="cifar10", block=0, name="base", regime=None, scheme="base", acc=0.80, epochs=20, best_epoch=15,
             epochs_trained=20, e99=None),
        dict(dataset="cifar10", block=1, name="b1-random-frozen", regime="frozen", scheme="FM-RW", acc=0.70,
             epochs=25, e99=4.0),
        dict(dataset="cifar10", block=2, name="b2-mean-frozen", regime="frozen", scheme="FM-MW", acc=0.85,
             epochs=25, e99=2.0),
        dict(dataset="cifar10", block=2, name="b2-mean-thawed", regime="thawed", scheme="TM-MW", acc=0.90,
             epochs=25, e99=6.0),
        dict(dataset="cifar10", block=3, name="b3-stn-thawed", regime="thawed", scheme="TM-STN", acc=0.78,
             epochs=25, e99=3.0),
        # another data set: never in cifar10's numbers
        dict(dataset="mnist", block=1, name="b1-random-frozen", regime="frozen", scheme="FM-RW", acc=0.99,
             epochs=25, e99=8.0),
    ]
    if control:
        rows.append(dict(dataset="cifar10", block=0, name="control", regime=None, scheme="Control", acc=0.82,
                         epochs=25, epochs_trained=10, e99=None))
    return pd.DataFrame(rows).rename(columns={"acc": "test_acc_at_best_val", "e99": "epochs_to_99pct_val"})


def test_headline_glue_by_hand():
    values, md = rc.headline_glue(_runs(), "cifar10", "test_acc_at_best_val")
    assert values["base_acc"] == 0.80
    # FM: 0.70, 0.85 -> mean 0.775, one at least the base; TM: 0.90, 0.78 -> mean 0.84
    assert (values["fm_n"], values["fm_min"], values["fm_max"], values["fm_above"]) == (2, 0.70, 0.85, 1)
    assert values["fm_mean"] == pytest.approx(0.775) and values["tm_mean"] == pytest.approx(0.84)
    assert (values["tm_n"], values["tm_above"]) == (2, 1)
    assert (values["best_name"], values["best_acc"]) == ("block 2 TM-MW", 0.90)
    assert (values["base_epochs"], values["base_epoch_of_max"], values["base_trained"]) == (20, "15", "20")
    # three seeds: every base's best epoch in seed order, and the span of epochs they trained
    three = pd.concat([_runs()] + [_runs().assign(seed=s) for s in (1, 2)], keys=[0, 1, 2], names=["seed0"])
    three["seed"] = three["seed"].fillna(0).astype(int) if "seed" in three else 0
    three = three.reset_index(drop=True)
    bases = (three["block"] == 0) & (three["name"] == "base")
    three.loc[bases, "best_epoch"] = [15, 22, 19]
    three.loc[bases, "epochs_trained"] = [20, 33, 30]
    v3, _ = rc.headline_glue(three, "cifar10", "test_acc_at_best_val")
    assert (v3["base_epoch_of_max"], v3["base_trained"]) == ("15, 22, 19", "20-33")
    assert md == {"control_note": "The control (the base trained 10 more epochs with the children's schedule) "
                                  "reaches 0.820: the reference a child must beat."}
    _, md = rc.headline_glue(_runs(control=False), "cifar10", "test_acc_at_best_val")
    assert md["control_note"].startswith("These results have no control")


def test_like_with_like_keeps_the_seeds_every_cell_shares():
    # cifar10: seeds 0 and 1 complete, seed 2 partial; cifar100: seed 2 has children (partial), seeds
    # 0 and 1 only their bases; mnist: bases only
    def rows(dataset, seed, kids):
        base = [dict(dataset=dataset, seed=seed, block=0, name="base", acc=0.5 + seed / 100)]
        return base + [dict(dataset=dataset, seed=seed, block=b, name=f"b{b}", acc=0.4) for b in range(1, kids + 1)]
    runs = pd.DataFrame(rows("cifar10", 0, 3) + rows("cifar10", 1, 3) + rows("cifar10", 2, 1)
                        + rows("cifar100", 0, 0) + rows("cifar100", 1, 0) + rows("cifar100", 2, 2)
                        + rows("mnist", 0, 0) + rows("mnist", 1, 0))
    coverage = runs.groupby(["dataset", "seed"]).size().rename("networks").reset_index().assign(of=4)
    shown, text = rc.like_with_like(runs, coverage)
    kept = sorted(set(zip(shown["dataset"], shown["seed"])))
    assert kept == [("cifar10", 0), ("cifar10", 1), ("cifar100", 2), ("mnist", 0), ("mnist", 1)]
    assert len(shown) == 4 + 4 + 3 + 1 + 1
    # the cifar100 base the children are set against is seed 2's own, not the three seeds' mean
    assert shown[(shown["dataset"] == "cifar100") & (shown["block"] == 0)]["acc"].tolist() == [0.52]
    assert text.endswith("cifar10 seed 2 (2 of 4), cifar100 seed 0 (1 of 4), cifar100 seed 1 (1 of 4).")
    assert rc.like_with_like(runs[runs["dataset"] == "mnist"], coverage[coverage["dataset"] == "mnist"])[1] == ""


def test_at_chance_by_exact_binomial_test():
    # CIFAR-100 (chance 1%), 10,000 test images: 98 right is not above chance, 199 is (p ~ 1e-17);
    # MNIST (chance 10%): 1,060 of 10,000 is (one-sided p = 0.024), 1,040 is not (p = 0.095)
    runs = pd.DataFrame([
        dict(dataset="cifar100", seed=2, name="b1-stn-frozen", test_acc_at_best_val=0.0098, test_images=10000,
             majority_frac=0.39),
        dict(dataset="cifar100", seed=2, name="b1-mean-frozen", test_acc_at_best_val=0.0199, test_images=10000,
             majority_frac=0.21),
        dict(dataset="mnist", seed=0, name="b1-random-frozen", test_acc_at_best_val=0.1060, test_images=10000,
             majority_frac=0.5),
        dict(dataset="mnist", seed=0, name="b2-random-frozen", test_acc_at_best_val=0.1040, test_images=10000,
             majority_frac=0.5)])
    t = rc.at_chance(runs)
    assert list(t["name"]) == ["b1-stn-frozen", "b2-random-frozen"]
    from scipy.stats import binom
    assert t["p"].iloc[0] == pytest.approx(binom.sf(97, 10000, 0.01))       # P(X >= 98)
    assert t["p"].iloc[1] == pytest.approx(binom.sf(1039, 10000, 0.1))
    assert binom.sf(1059, 10000, 0.1) < 0.05 <= binom.sf(1039, 10000, 0.1)
    text = rc.at_chance_text(t)
    assert "cifar100 seed 2 b1-stn-frozen (0.98%, chance 1.00%)" in text and text.count("seed") == 2
    assert rc.at_chance_text(rc.at_chance(runs.iloc[[1]])).endswith("none.")


def test_convergence_glue_by_hand():
    table, values = rc.convergence_glue(_runs(), "cifar10", "test_acc_at_best_val")
    assert list(table.columns) == ["FM-RW", "FM-MW", "TM-MW", "TM-STN"]   # Fig. 2's order, present schemes only
    assert table.loc["mnist", "FM-RW"] == 8.0 and math.isnan(table.loc["mnist", "TM-MW"])
    assert values["child_epochs"] == "25"
    early = _runs()
    early.loc[early["block"] > 0, "epochs_trained"] = [18, 25, 21, 25, 9]
    assert rc.convergence_glue(early, "cifar10", "test_acc_at_best_val")[1]["child_epochs"] == (
        "25 (a cap; they trained 18-25)")      # cifar10's four children only
    assert (values["e99_FM_RW"], values["e99_TM_MW"], values["e99_TM_STN"]) == (4.0, 6.0, 3.0)
    assert math.isnan(values["e99_FM_STN"])   # no such network on cifar10
    # the paper's measure reads epochs to 99% of the max test accuracy
    runs = _runs().rename(columns={"epochs_to_99pct_val": "epochs_to_99pct"})
    assert rc.convergence_glue(runs, "cifar10", "max_test_acc")[1]["e99_FM_MW"] == 2.0


def _acts(rw_sign):
    base = np.random.default_rng(0).normal(size=(2, 4, 4))
    maps = np.stack([base, base, 2 * base + 1, rw_sign * base])   # STN maps: the base's up to scale
    return {"activations": maps, "labels": ["Base", "FM-STN", "TM-STN", "TM-RW"], "dataset": "cifar10"}


def test_fig3_glue_by_hand():
    table, values, md = rc.fig3_glue(_acts(-1))
    assert table["mean"].to_dict() == {"FM-STN": 1.0, "TM-RW": -1.0, "TM-STN": 1.0}
    assert list(table.columns) == [0, 1, "mean"]   # one column per filter
    assert values == pytest.approx({"r_FM_STN": 1.0, "r_TM_STN": 1.0, "r_TM_RW": -1.0})
    assert md["fig3_note"] == ("Here the cifar10 maps of both STN models are closer to the base's than TM-RW's, "
                               "as the paper saw.")
    assert "*not* both closer" in rc.fig3_glue(_acts(1))[2]["fig3_note"]   # TM-RW as close as the STN models
    table, values, md = rc.fig3_glue(None)
    assert table is None and all(math.isnan(v) for v in values.values()) and len(values) == 3
    assert md["fig3_note"].startswith("No Fig. 3 activations are stored")


def test_what_is_stored():
    runs = pd.DataFrame({"dataset": ["mnist", "mnist", "cifar10"], "seed": [0, 1, 0], "name": ["base", "b1", "b2"],
                         "scheme": ["base", "FM-RW", "FM-RW"], "key": ["a", "b", "c"],
                         "stop_reason": ["converged", "cap", "converged"], "majority_frac": [0.2, 0.95, 0.9]})
    reasons = rc.stop_reasons(runs)
    assert reasons.loc[("mnist", "FM-RW"), "cap"] == 1 and reasons.loc[("mnist", "FM-RW"), "converged"] == 0
    assert rc.collapsed_text(runs) == ("**Collapsed networks** (≥ 90% of test images given one class: a failure, not "
                                       "a result): 2, mnist seed 1 b1, cifar10 seed 0 b2")
    assert rc.collapsed_text(runs.assign(majority_frac=0.1)).endswith("a result): 0")
    assert rc.stop_reasons(runs.drop(columns="stop_reason")) is None
    assert rc.collapsed_text(runs.drop(columns="majority_frac")) is None
    prov = rc.provenance_table({"exported": "today", "triage_version": "0.1", "git_hash": "abc",
                                "machine": {"cpu": "x86", "cores": 2}, "runs_devices": ["cpu", "cuda"]})
    assert prov["value"].to_dict() == {"exported": "today", "triage": "0.1", "git": "abc", "machine": "x86, 2 cores",
                                       "devices of the runs": "cpu, cuda"}
    assert rc.grid_state_text(True) == "Every network of the grid is present."
    assert rc.grid_state_text(False).startswith("**The grid is partial**")


def test_profile_timings_names_profile_and_machine():
    runs = pd.DataFrame({"dataset": ["mnist"] * 3, "seed": [0] * 3, "block": [0, 1, 2],
                         "train_seconds": [600.0, 100.0, 300.0], "notebook_seconds": [700.0, 150.0, 350.0]})
    t = rc.profile_timings({"cpu": SimpleNamespace(runs=runs, provenance={"machine": {"cpu": "x86", "cores": 2}}),
                            "smoke": SimpleNamespace(runs=runs, provenance={})})
    assert list(t["profile"]) == ["cpu", "smoke"] and list(t["machine"]) == ["x86, 2 cores", "?, ? cores"]
    assert (t["base_s"].iloc[0], t["child_median_s"].iloc[0], t["notebook_total_s"].iloc[0]) == (600.0, 200.0, 1200.0)
    assert rc.profile_timings({}).empty


def test_timings_split_devices_and_keep_the_control_apart_from_the_base():
    # seed 0: base on the GPU, control and two children on the CPU, no notebooks
    runs = pd.DataFrame({"dataset": ["mnist"] * 4, "seed": [0] * 4, "block": [0, 0, 1, 2],
                         "name": ["base", "control", "b1-mean-thawed", "b2-mean-thawed"],
                         "device": ["cuda", "cpu", "cpu", "cpu"],
                         "train_seconds": [240.0, 600.0, 100.0, 300.0], "notebook_seconds": [float("nan")] * 4})
    t = rc.profile_timings({"campaign": SimpleNamespace(runs=runs, provenance={"machine": {"cpu": "x86", "cores": 2}})})
    cpu, gpu = t[t["device"] == "cpu"].iloc[0], t[t["device"] == "cuda"].iloc[0]
    assert (gpu["networks"], gpu["base_s"], gpu["machine"]) == (1, 240.0, "GPU (cuda)")
    assert math.isnan(gpu["control_s"]) and math.isnan(gpu["child_mean_s"])
    assert (cpu["networks"], cpu["control_s"], cpu["child_mean_s"], cpu["machine"]) == (3, 600.0, 200.0, "x86, 2 cores")
    assert math.isnan(cpu["base_s"]) and math.isnan(cpu["notebook_total_s"])   # no notebooks: not 0 s
    assert cpu["children_estimate_h"] == pytest.approx((600 + 30 * 200) / 3600)
    assert math.isnan(cpu["grid_estimate_h"])   # its base ran elsewhere
    assert rc.device_timing_text(t, "campaign") == (
        "- **mnist** on x86, 2 cores: 3 networks, median child 200 s, children of a grid 1.8 h\n"
        "- **mnist** on GPU (cuda): 1 network, base 4.0 min (1 seed)")
    assert rc.device_timing_text(t, "cpu") == "No cpu results are stored."


def test_timing_glue_by_hand():
    times = pd.DataFrame({
        "profile": ["cpu", "cpu", "cpu", "other"], "dataset": ["cifar10", "mnist", "stanford_dogs", "mnist"],
        "machine": ["x86, 2 cores"] * 3 + ["gpu box"], "networks": [31, 31, 31, 5],
        "base_s": [600.0, 1200.0, 2400.0, 1.0], "child_median_s": [100.0, 100.4, 300.0, 1.0],
        "grid_estimate_h": [1.0, 1.5, 3.0, 9.0], "train_total_h": [2.0, 2.0, 2.0, 9.0],
        "notebook_total_s": [7200.0] * 3 + [1.0]})
    values, md = rc.timing_glue(times)
    assert values == {"cpu_machine": "x86, 2 cores", "cpu_grids": 3, "cpu_networks": 93,
                      "cpu_base_min": "10.0-20.0",   # 600 and 1200 s; Stanford Dogs apart
                      "cpu_child_s": "100",          # 100 and 100.4 s round alike: one value
                      "cpu_grid_h": "1.00-1.50", "cpu_total_h": 6.0, "cpu_notebook_h": 6.0, "grid_size": 31}
    assert md["cpu_dogs"] == ("Stanford Dogs (64x64 crops, four times the pixels): base 40.0 min, a compressed "
                              "network 300 s, 3.00 h per grid.")
    assert md["smoke_note"].startswith("No smoke results are stored")
    assert rc.timing_glue(times.assign(profile="smoke"))[1]["smoke_note"] == (
        "The smoke profile's times are in the table above.")
    values, md = rc.timing_glue(pd.DataFrame())
    assert (values["cpu_machine"], values["cpu_grids"], values["cpu_base_min"]) == ("no cpu results stored", 0, "n/a")
    assert math.isnan(values["cpu_total_h"]) and md["cpu_dogs"] == "No Stanford Dogs cpu grid is stored."
