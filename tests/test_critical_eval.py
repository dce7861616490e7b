"""Tests of triage.critical_eval: a constructed network whose critical paths are known by hand,
decision rules and thresholds on hand-made logits, exact chance overlap (critical_exclusive) and
calibration. The stored analysis of one base run folder is tested in tests/test_studies.py."""
from itertools import combinations

import numpy as np
import pytest
import torch

from triage import critical as cr
from triage import critical_distill as cd
from triage import critical_eval as ce
from triage import critical_exclusive as cx
from triage import studies
from triage.models import VGG
from triage.surgery import distill
from test_critical import no_hooks, random_loader, tiny_vgg

pytestmark = pytest.mark.usefixtures("one_thread")

W_OTHER = (0.4, 0.5, 0.6, 0.7)   # -w_j: weight of logit j on the other groups' hidden units
DELTA = 0.1                      # hidden Linear bias


def grouped_vgg():
    """4 classes, one input channel per class; blocks 1-3 pass the channels through (1x1 centre
    taps), blocks 4-5 have 8 filters: group j = filters 2j, 2j+1 reads only channel / group j.
    BN is the identity. Head: hidden h = relu(f + DELTA); z_j = sum_{k in G_j} h_k
    - W_OTHER[j] * sum_{k not in G_j} h_k + 0.3.

    An image of class c (channel c = 1, the rest 0) lights group c only: f = 1 on G_c, 0 elsewhere.
    """
    m = VGG(((4,), (4,), (4,), (8, 8, 8), (8, 8, 8)), num_classes=4, in_channels=4, resolution=32)
    group = torch.arange(8) // 2
    with torch.no_grad():
        for name, u in cr.conv_units(m).items():
            w = torch.zeros_like(u.conv.weight)
            o, i = w.shape[:2]
            if o == 4:                                   # blocks 1-3: identity
                w[range(4), range(4), 1, 1] = 1.0
            elif i == 4:                                 # Conv4_1: group j reads channel j
                w[range(8), group, 1, 1] = 1.0
            else:                                        # later: mean of the own group's two maps
                w[:, :, 1, 1] = 0.5 * (group.view(-1, 1) == group.view(1, -1)).float()
            u.conv.weight.copy_(w)
            u.conv.bias.zero_()
            u.norm.reset_parameters()
            u.norm.reset_running_stats()
        hid, out = m.classifier[0], m.classifier[3]
        hid.weight.copy_(torch.eye(8))
        hid.bias.fill_(DELTA)
        w2 = -torch.tensor(W_OTHER).view(4, 1).expand(4, 8).clone()
        w2[group, torch.arange(8)] = 1.0
        out.weight.copy_(w2)
        out.bias.fill_(0.3)
    return m.eval()


def grouped_images(per_class=3, batch=5):
    y = torch.arange(4).repeat_interleave(per_class)
    x = torch.zeros(len(y), 4, 32, 32)
    x[torch.arange(len(y)), y] = 1.0
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(y), batch)]


# ----------------------------------------------------------------------------- the constructed model
def test_constructed_model_distils_each_class_to_its_own_group():
    model = grouped_vgg()
    loader = grouped_images()
    maps = cr.class_maps(model, loader, progress=False)
    last6 = cd.last_conv_layers(model)
    for c in range(4):
        kept = cd.select_filters(maps, c, 0.25)   # ceil(0.25 * 8) = 2 of 8 filters in each of the last six
        assert list(kept) == last6
        assert all(v.tolist() == [2 * c, 2 * c + 1] for v in kept.values()), c
    # By hand, distilled for class c (logit biases zeroed, hidden bias DELTA kept):
    #   image of class c: h = 1 + DELTA on G_c, DELTA elsewhere -> z_c = 2.2 - 0.6 w_c > 0 and every
    #     other z_j = 0.2 - 2.6 w_j < 0: both rules say "c" (TP = 1);
    #   other images: f = 0, h = DELTA everywhere -> z_j = 0.2 (1 - 3 w_j) = -0.04, -0.1, -0.16, -0.22:
    #     all negative, so z_c > 0 never fires (FP = 0); the arg-max is always class 0, so class 0's
    #     detector says "0" to every image (TP = FP = 1, collapsed) and the others never (FP = 0).
    test = grouped_images(per_class=5, batch=7)
    rates = ce.distillation_rates(model, maps, test, val_loader=grouped_images(4), bn_loader=loader,
                                  ratios=0.25, progress=False).set_index(["calibration", "class"])
    p = rates.loc["paper"]
    assert (p["kept"] == "2/8").all()
    assert p["tp_positive"].tolist() == [1.0] * 4 and p["fp_positive"].tolist() == [0.0] * 4
    assert p["tp_argmax"].tolist() == [1.0] * 4 and p["fp_argmax"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert p["collapsed_argmax"].tolist() == [True, False, False, False]
    assert p["balanced_argmax"].tolist() == [0.5, 1.0, 1.0, 1.0]
    assert not p["collapsed_positive"].any() and (p["auc"] == 1.0).all()
    # the hidden bias zeroed: every logit of a non-c image is exactly 0, a tie, which the strict
    # arg-max reads as "not c": both rules are perfect
    h0 = rates.loc["hidden0"]
    assert h0["fp_argmax"].tolist() == [0.0] * 4 and h0["tp_argmax"].tolist() == [1.0] * 4
    assert h0["fp_positive"].tolist() == [0.0] * 4
    # BN statistics re-estimated: a kept filter is 1 on a quarter of the images and 0 on the rest, so
    # non-c images stay at 0 after BN + ReLU and class c's stay positive: the same answers as the paper's
    for cal in ("bn", "bn+hidden0"):
        ref = "paper" if cal == "bn" else "hidden0"
        cols = ["tp_argmax", "fp_argmax", "tp_positive", "fp_positive"]
        assert rates.loc[cal][cols].equals(rates.loc[ref][cols]), cal
    # the paths are disjoint: Jaccard 0 for every pair, against 5/28 for random 2-of-8 sets
    pairs = cx.exclusiveness(maps, 0.25)
    assert len(pairs) == 6 * 6 and (pairs["jaccard"] == 0).all()
    assert pairs["chance_jaccard"].iloc[0] == pytest.approx(5 / 28)
    assert pairs["chance_overlap"].iloc[0] == 0.5
    s = cx.exclusiveness_summary(pairs, sims=500)
    assert (s["disjoint_share"] == 1).all() and s["chance_disjoint"].tolist() == pytest.approx([15 / 28] * 6)
    assert (s["p_exclusive"] < 0.05).all() and (s["p_shared"] == 1).all()
    assert no_hooks(model)


def test_bn_calibration_re_estimates_the_distilled_statistics_by_hand():
    model = grouped_vgg()
    small = distill(model, {n: [2, 3] for n in cd.last_conv_layers(model)})   # class 1's group
    loader = grouped_images(per_class=2, batch=8)   # one batch: 2 images of each of 4 classes
    cal = ce.calibrate(small, "bn", loader)
    # Conv4_1's kept filters output 1 on the class-1 images (2 of 8) and 0 on the rest
    bn = cal.features.block4.bn1
    assert bn.running_mean.tolist() == pytest.approx([0.25, 0.25], rel=1e-4)  # BN eps: 1e-5
    assert bn.running_var.tolist() == pytest.approx([0.25 * 0.75 * 128 / 127] * 2, rel=1e-4)  # unbiased, 8 images x 4x4 positions
    # the layers below are the original's, untouched; the input network is unchanged
    assert torch.equal(cal.features.block3.bn1.running_mean, small.features.block3.bn1.running_mean)
    assert small.features.block4.bn1.running_mean.tolist() == [0.0, 0.0]
    assert torch.equal(ce.calibrate(small, "hidden0").classifier[0].bias, torch.zeros(8))
    assert torch.equal(ce.calibrate(small, "paper").classifier[0].bias, small.classifier[0].bias)
    assert no_hooks(cal) and no_hooks(small)


def test_distillation_rates_match_direct_evaluation():
    model = tiny_vgg()
    maps = cr.class_maps(model, random_loader(n=20, batch=10), progress=False)
    test, val, bn = random_loader(n=30, batch=8, seed=5), random_loader(n=20, batch=10, seed=6), random_loader(n=20)
    r = ce.distillation_rates(model, maps, test, val_loader=val, bn_loader=bn, ratios=(0.25, 1.0),
                              classes=[0, "3"], progress=False)
    assert len(r) == 2 * 4 * 2 and set(r["calibration"]) == set(ce.CALIBRATIONS)
    for row in r.itertuples():
        small = ce.calibrate(cd.distill_class(model, maps, row[3], row.ratio)[0], row.calibration, bn)
        z, y = cd._logits(small, test)
        zv, yv = cd._logits(small, val)
        for rule, s in (("argmax", "argmax"), ("positive_logit", "positive")):
            direct = cd.one_vs_all(small, test, row[3], rule=rule)
            assert (getattr(row, f"tp_{s}"), getattr(row, f"fp_{s}")) == (direct["tp"], direct["fp"])
        t = ce.threshold_for_tp(zv[:, row[3]], yv == row[3])
        assert row.threshold == pytest.approx(t, rel=1e-5)
        assert row.auc == pytest.approx(cd._auc(z[:, row[3]], y == row[3]))
    s = ce.summarise_rates(r)
    assert list(s["calibration"][:4]) == list(ce.CALIBRATIONS) and s["classes"].eq(2).all()
    assert no_hooks(model)


# ----------------------------------------------------------------------------- rules and thresholds by hand
def test_decision_rules_and_thresholds_by_hand():
    z = torch.tensor([[2.0, 1.0], [0.5, 0.5], [-1.0, 0.0], [0.3, -2.0], [0.1, 3.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    # strict arg-max: row 1 is a tie -> not "0"
    assert ce.decision(z, 0, "argmax").tolist() == [True, False, False, True, False]
    assert ce.decision(z, 0, "positive_logit").tolist() == [True, True, False, True, True]
    assert ce.decision(z, 0, "val_threshold", 0.4).tolist() == [True, True, False, False, False]
    # TP 2/3 needs the 2nd largest positive score (0.5); TP 1 the smallest (-1.0)
    assert ce.threshold_for_tp(z[:, 0], y == 0, 2 / 3) == 0.5
    assert ce.threshold_for_tp(z[:, 0], y == 0, 1.0) == -1.0
    assert ce.threshold_for_tp(torch.arange(500.0), torch.ones(500, dtype=torch.bool), 0.986) == 7.0  # 493 kept
    assert ce.fp_at_tp(z[:, 0], y == 0, 1.0) == 1.0 and ce.fp_at_tp(z[:, 0], y == 0, 2 / 3) == 0.0
    # the threshold is chosen on validation logits and applied to the test logits
    zv, yv = torch.tensor([[1.0, 0.0], [0.2, 0.0], [5.0, 0.0]]), torch.tensor([0, 0, 1])
    r = ce.detector_rates(z, y, 0, z_val=zv, y_val=yv, tp=0.5)
    assert r["threshold"] == 1.0 and r["val_tp"] == 0.5
    assert (r["tp_threshold"], r["fp_threshold"]) == (pytest.approx(1 / 3), 0.0)
    assert (r["tp_argmax"], r["fp_argmax"], r["collapsed_argmax"]) == (pytest.approx(1 / 3), 0.5, False)
    assert (r["tp_positive"], r["fp_positive"]) == (pytest.approx(2 / 3), 1.0)
    assert r["balanced_positive"] == pytest.approx((2 / 3 + 1 - 1) / 2)
    # a detector that always says "c" is flagged, whatever the rule
    always = ce.detector_rates(torch.ones(4, 2) * torch.tensor([1.0, -1.0]), torch.tensor([0, 0, 1, 1]), 0)
    assert always["collapsed_argmax"] and always["collapsed_positive"] and always["balanced_argmax"] == 0.5
    roc = ce.roc_points(z[:, 0], y == 0)
    assert roc["fpr"].iloc[-1] == 1 and roc["tpr"].iloc[-1] == 1 and roc["tpr"].is_monotonic_increasing
    # read on a grid: scores 2.0, 0.5 (class 0) come before any negative, then 0.3, 0.1, then -1.0
    assert ce.roc_points(z[:, 0], y == 0, [0, 0.5, 0.99, 1])["tpr"].tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1])
    # tied scores: the curve is the diagonal segment between the points, read exactly
    tied = ce.roc_points(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([True, True, False, False]), [0, 0.5, 1])
    assert tied["tpr"].tolist() == pytest.approx([0.5, 0.75, 1.0])


def test_chance_overlap_is_exact():
    for n, k in ((8, 2), (10, 3), (12, 6)):
        # brute force over every pair of k-subsets
        subsets = [set(s) for s in combinations(range(n), k)]
        a = subsets[0]  # by symmetry, one fixed A suffices
        inter = np.array([len(a & b) for b in subsets])
        jac = inter / (2 * k - inter)
        ch = cx.chance_overlap(n, k)
        assert ch["overlap"] == pytest.approx(inter.mean()) == pytest.approx(k * k / n)
        assert ch["jaccard"] == pytest.approx(jac.mean())
        assert ch["p_disjoint"] == pytest.approx((inter == 0).mean())
    null = cx.null_mean_jaccard(8, 2, 4, sims=3000)
    assert null.mean() == pytest.approx(5 / 28, abs=0.01)
    assert cx.chance_overlap(512, 52)["overlap"] == pytest.approx(52 ** 2 / 512)


def test_paper_table_and_plots():
    import matplotlib
    matplotlib.use("Agg")
    model = tiny_vgg()
    maps = cr.class_maps(model, random_loader(n=20, batch=10), progress=False)
    r = ce.distillation_rates(model, maps, random_loader(n=30), val_loader=random_loader(n=20, seed=3),
                              bn_loader=random_loader(n=20), ratios=(0.1, 0.5), progress=False)
    t = ce.paper_table(r, base_mb=cd.model_size(model)["mb"])
    assert len(t) == 11 and t["class_name"].iloc[-1] == "mean"
    assert t["paper_tp"].iloc[:10].tolist() == cr.PAPER_TABLE1["tp"].tolist()
    assert t["paper_mb_before"].iloc[0] == 59.0 and (t["mb_after"].iloc[:10] < t["mb_before"].iloc[:10]).all()
    assert t["collapsed_argmax"].iloc[-1] == t["collapsed_argmax"].iloc[:10].sum()
    pairs = cx.exclusiveness(maps, 0.1)
    assert len(pairs) == 6 * 45 and pairs["k"].eq(4).all() and pairs["n"].eq(32).all()
    cx.plot_exclusiveness(pairs)
    ce.plot_calibration_sweep(ce.summarise_rates(r))
    ce.plot_roc(ce.roc_points(torch.randn(30), torch.arange(30) % 3 == 0).assign(class_name="a"))
    with pytest.raises(ValueError, match="no rates at ratio 0.3"):
        ce.paper_table(r, ratio=0.3)


# ----------------------------------------------------------------------------- clear errors, no hooks left
def test_bad_input_gives_one_clear_error():
    model = tiny_vgg()
    maps = cr.class_maps(model, random_loader(n=20, batch=10), progress=False)
    test = random_loader()
    with pytest.raises(ValueError, match="unknown rule 'max'"):
        ce.decision(torch.zeros(2, 3), 0, "max")
    for bad in (0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\]"):
            ce.distillation_rates(model, maps, test, ratios=(bad,), calibrations="paper", progress=False)
        with pytest.raises(ValueError, match="ratio"):
            cx.exclusiveness(maps, bad)
    with pytest.raises(ValueError, match="class index 10 is out of range"):
        ce.distillation_rates(model, maps, test, calibrations="paper", classes=[10], progress=False)
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        ce.distillation_rates(model, maps, test, calibrations="paper", classes=["zebra"], progress=False)
    with pytest.raises(ValueError, match="not one of the model's classes 0..9"):
        ce.detector_rates(torch.zeros(4, 10), torch.zeros(4), 10)
    with pytest.raises(ValueError, match="not one of the model's classes"):
        ce.decision(torch.zeros(2, 3), -1, "argmax")
    with pytest.raises(ValueError, match="unknown calibration 'retrain'"):
        ce.distillation_rates(model, maps, test, calibrations=["retrain"], progress=False)
    with pytest.raises(ValueError, match="pass bn_loader"):
        ce.distillation_rates(model, maps, test, calibrations=["bn"], progress=False)
    with pytest.raises(ValueError, match="tp must be a rate"):
        ce.threshold_for_tp(torch.zeros(3), torch.ones(3, dtype=torch.bool), 1.5)
    with pytest.raises(ValueError, match="needs a threshold"):
        ce.decision(torch.zeros(2, 3), 0, "val_threshold")
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\]"):
        studies.critical_base("runs/x/cifar10/base-0", ratio=0)
    with pytest.raises(ValueError, match="unknown calibration"):
        studies.critical_base("runs/x/cifar10/base-0", calibrations=("nope",))

    def broken():
        yield random_loader(n=4)[0]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        ce.distillation_rates(model, maps, broken(), calibrations="paper", progress=False)
    assert no_hooks(model)
