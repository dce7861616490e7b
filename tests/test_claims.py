"""Tests of triage.claims on small balanced tables whose contrasts, CIs and p-values are worked out
here by hand (numpy means and SDs, scipy's t distribution), and on the stored cpu results."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from triage import claims, claims_chapter, claims_convergence, claims_tables, report

INITS = ("random", "mean", "stn")
REGIMES = ("frozen", "thawed")
SHORT = {"random": "RW", "mean": "MW", "stn": "STN", "frozen": "FM", "thawed": "TM"}
ALPHA = 0.05


# ----------------------------------------------------------------------------- hand-made tables

def make_runs(acc, seeds, conv=lambda s, b, i, r: 5, control=None, dataset="cifar10", stn_epochs=0,
              majority=lambda s, b, i, r: 0.2):
    """A results-format-2 runs table of the full grid.

    ``acc(seed, block, init, regime)``: accuracy in points (block 0: the base); ``control(seed)``:
    the continued-base control's accuracy in points (None: no control rows, as in format 1).
    """
    rows = []

    def row(s, block, init, regime, name, scheme, a):
        return {"dataset": dataset, "profile": "campaign", "seed": s, "block": block, "init": init,
                "regime": regime, "scheme": scheme, "name": name, "test_acc_at_best_val": a / 100,
                "max_test_acc": a / 100 + 0.01,  # must not be read when the format-2 column is present
                "epochs_to_99pct_val": conv(s, block, init, regime),
                "stn_epochs": stn_epochs if init == "stn" else 0, "stop_reason": "converged",
                "majority_frac": majority(s, block, init, regime), "test_images": 2000}
    for s in seeds:
        rows.append(row(s, 0, None, None, "base", "Base", acc(s, 0, None, None)))
        if control is not None:
            rows.append(row(s, 0, None, None, "control", "Control", control(s)))
        for b, i, r in itertools.product(range(1, 6), INITS, REGIMES):
            rows.append(row(s, b, i, r, f"b{b}-{i}-{r}", f"{SHORT[r]}-{SHORT[i]}", acc(s, b, i, r)))
    return pd.DataFrame(rows)


def noise(seed, sd, shape=(20, 6, 3, 2)):
    """Fixed noise (points) per (seed, block, init, regime)."""
    return np.random.default_rng(seed).normal(0, sd, size=shape)


def by_hand(d, alpha=ALPHA):
    """mean, SD, SE, df and the two-sided (1 - alpha) t interval of per-seed differences d."""
    d = np.asarray(d, float)
    n = len(d)
    mean, sd = d.mean(), d.std(ddof=1)
    se = sd / np.sqrt(n)
    h = stats.t.ppf(1 - alpha / 2, n - 1) * se
    return mean, sd, se, n - 1, (mean - h, mean + h)


def row(rep, claim, dataset="cifar10", regime=None):
    v = rep.verdicts
    sel = (v["claim"] == claim) & (v["dataset"] == dataset)
    sel &= (v["level"] == "data set") if regime is None else (v["regime"] == regime)
    return v[sel].iloc[0]


def block_means(acc_table, seeds, block, regime):
    """Per-seed mean over the three initialisers of one block (points)."""
    return np.array([np.mean([acc_table(s, block, i, regime) for i in INITS]) for s in seeds])


# ----------------------------------------------------------------------------- C1: equivalence of blocks

def test_c1_does_not_hold_with_a_5_point_block1_drop_on_every_seed():
    seeds = range(5)
    e = noise(1, 0.1)

    def acc(s, b, i, r):
        return 60.0 - (5.0 if b == 1 else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    rep = claims.check_claims(make_runs(acc, seeds), alpha=ALPHA, margin=1.0)
    r = row(rep, "C1")
    assert r["verdict"] == "does not hold"
    # by hand: every block-1 pair, both regimes; the decisive one has the smallest p of "beyond -1"
    pairs = []
    for regime, k in itertools.product(REGIMES, range(2, 6)):
        d = block_means(acc, seeds, 1, regime) - block_means(acc, seeds, k, regime)
        mean, _, se, df, ci = by_hand(d)
        pairs.append((stats.t.cdf((mean + 1.0) / se, df), mean, ci, f"{SHORT[regime]}: block 1 - block {k}"))
    p, mean, ci, label = min(pairs)
    assert r["contrast"] == label
    assert r["estimate"] == pytest.approx(mean) and mean == pytest.approx(-5, abs=0.3)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(ci)
    assert r["p_against"] == pytest.approx(p)
    assert r["p_against_adj"] == pytest.approx(20 * p)       # Holm's first step over the 20 block pairs
    assert r["p_against_adj"] < ALPHA / 2 and r["n"] == 5
    assert row(rep, "C1", regime="FM")["verdict"] == row(rep, "C1", regime="TM")["verdict"] == "does not hold"


def test_c1_holds_when_blocks_are_equal_within_noise_with_enough_seeds():
    seeds = range(10)
    e = noise(2, 0.3)

    def acc(s, b, i, r):
        return 70.0 + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    rep = claims.check_claims(make_runs(acc, seeds), alpha=ALPHA, margin=1.0)
    r = row(rep, "C1")
    assert r["verdict"] == "holds"
    # by hand: TOST p of each pair = the larger one-sided p; the verdict row is the weakest pair
    worst = None
    for regime, (b1, b2) in itertools.product(REGIMES, itertools.combinations(range(1, 6), 2)):
        d = block_means(acc, seeds, b1, regime) - block_means(acc, seeds, b2, regime)
        mean, _, se, df, ci = by_hand(d)
        p = max(stats.t.sf((mean + 1.0) / se, df), stats.t.cdf((mean - 1.0) / se, df))
        assert -1 < ci[0] and ci[1] < 1                       # every 95% CI inside the margin
        if worst is None or p > worst[0]:
            worst = (p, mean, ci)
    assert r["p"] == pytest.approx(worst[0]) and r["p"] < ALPHA / 2
    assert r["estimate"] == pytest.approx(worst[1])
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(worst[2])
    assert r["n"] == 10


def test_c1_is_not_testable_with_2_seeds_and_a_1_point_margin():
    seeds = range(2)
    e = noise(3, 0.3)

    def acc(s, b, i, r):
        return 70.0 + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    rep = claims.check_claims(make_runs(acc, seeds), alpha=ALPHA, margin=1.0)
    r = row(rep, "C1")
    assert r["verdict"] == "not testable at this n"
    assert r["n"] == 2
    # by hand, for the deciding (weakest) pair: its 95% CI reaches past the margin; the MDE is the
    # narrowest margin TOST could show with 80% power at this SE: (t_0.975 + t_0.9) * se with df = 1
    label = r["contrast"]
    regime = {"FM": "frozen", "TM": "thawed"}[label[:2]]
    b1, b2 = int(label.split()[2]), int(label.split()[-1])
    d = block_means(acc, seeds, b1, regime) - block_means(acc, seeds, b2, regime)
    mean, _, se, df, ci = by_hand(d)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(ci)
    assert ci[0] < -1 or ci[1] > 1
    assert r["mde"] == pytest.approx((stats.t.ppf(0.975, 1) + stats.t.ppf(0.9, 1)) * se)
    assert "MDE" in r["note"]


def test_c1_a_pair_past_the_margin_at_95_pct_but_not_after_holm_is_explained():
    # 3 seeds, FM block 3 five points down with 1-point noise: that pair's own 95% CI lies past the
    # margin, but among 20 pairs with 2 df Holm does not reject; the table must say so, and give
    # the simultaneous (Bonferroni, alpha/20) CI the failing side is read off
    seeds = range(3)
    e = noise(7, 1.0)

    def acc(s, b, i, r):
        return 70.0 - (5.0 if (b == 3 and r == "frozen") else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)]
                                                                     if b else 0)
    rep = claims.check_claims(make_runs(acc, seeds), alpha=ALPHA, margin=1.0)
    r = row(rep, "C1")
    assert r["verdict"] == "not testable at this n"
    label = r["contrast"]
    regime = {"FM": "frozen", "TM": "thawed"}[label[:2]]
    b1, b2 = int(label.split()[2]), int(label.split()[-1])
    assert regime == "frozen" and 3 in (b1, b2)
    d = block_means(acc, seeds, b1, regime) - block_means(acc, seeds, b2, regime)
    mean, _, se, df, ci = by_hand(d)
    assert ci[0] > 1 or ci[1] < -1                                   # its own 95% CI: past the margin
    h = stats.t.ppf(1 - ALPHA / 40, df) * se                         # two-sided alpha/20
    assert (r["ci_fw_low"], r["ci_fw_high"]) == pytest.approx((mean - h, mean + h))
    assert r["ci_fw_low"] < 1 < r["ci_fw_high"] or r["ci_fw_low"] < -1 < r["ci_fw_high"]
    assert r["p_against_adj"] > ALPHA / 2
    assert "one of 20 contrasts" in r["note"] and "simultaneous CI" in r["note"]
    shown = rep.table().loc[("C1", "cifar10")]
    assert shown["simultaneous CI"] == f"[{mean - h:+.2f}, {mean + h:+.2f}]"


# ----------------------------------------------------------------------------- C2: FM much worse than TM

def test_c2_does_not_hold_for_a_02_point_gap_over_90_networks():
    seeds = range(3)
    e = noise(4, 0.1)

    def acc(s, b, i, r):
        return 60.0 + (0.2 if r == "thawed" else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    runs = make_runs(acc, seeds)
    assert (runs["block"] > 0).sum() == 90
    rep = claims.check_claims(runs, alpha=ALPHA, much=5.0)
    r = row(rep, "C2")
    assert r["verdict"] == "does not hold"
    d = [np.mean([acc(s, b, i, "thawed") - acc(s, b, i, "frozen") for b in range(1, 6) for i in INITS])
         for s in seeds]
    mean, _, se, df, ci = by_hand(d)
    assert r["estimate"] == pytest.approx(mean) and mean == pytest.approx(0.2, abs=0.15)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(ci)
    assert r["p"] == pytest.approx(stats.t.sf((mean - 5.0) / se, df))          # H1: gap > 5
    assert r["p_against"] == pytest.approx(stats.t.cdf((mean - 5.0) / se, df))  # H1: gap < 5
    assert r["n"] == 3


def test_a_partial_seed_waits_until_it_has_trained_every_network_of_a_contrast():
    """A campaign in progress: seed 2 has trained only block 1 and the control. Its mean over
    block 1 is not the same contrast as the complete seeds' mean over five blocks, so C2 and the
    C1 pairs with another block use seeds 0 and 1; a contrast within block 1 uses all three."""
    seeds = range(3)
    e = noise(21, 0.3)

    def acc(s, b, i, r):   # TM - FM is 20 points in block 1 and 2 points elsewhere
        gap = (20.0 if b == 1 else 2.0) if r == "thawed" else 0.0
        return 60.0 + gap + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    runs = make_runs(acc, seeds, control=lambda s: 60.0 + e[s, 0, 0, 0])
    runs = runs[(runs["seed"] < 2) | (runs["block"] <= 1)]
    rep = claims.check_claims(runs, much=5.0)
    r = row(rep, "C2")
    d = [np.mean([acc(s, b, i, "thawed") - acc(s, b, i, "frozen") for b in range(1, 6) for i in INITS])
         for s in (0, 1)]
    assert r["n"] == 2 and r["estimate"] == pytest.approx(np.mean(d))   # about 5.6, not pulled up by seed 2's 20
    c = rep.contrasts
    pair = c[(c["claim"] == "C1") & (c["contrast"] == "TM: block 1 - block 2")].iloc[0]
    assert pair["n"] == 2
    b1 = c[(c["claim"] == "C3") & (c["contrast"] == "b1 TM-MW - control")].iloc[0]
    assert b1["n"] == 3 and b1["estimate"] == pytest.approx(
        np.mean([acc(s, 1, "mean", "thawed") - (60.0 + e[s, 0, 0, 0]) for s in seeds]))
    # a collapsed network is trained: its seed stays, only that network is left out
    runs2 = runs.copy()
    hit = (runs2["seed"] == 0) & (runs2["name"] == "b4-stn-frozen")
    runs2.loc[hit, "majority_frac"] = 0.95
    assert row(claims.check_claims(runs2, much=5.0), "C2")["n"] == 2


def test_c2_holds_when_tm_is_10_points_better_on_every_seed():
    e = noise(5, 0.5)

    def acc(s, b, i, r):
        return 50.0 + (10 if r == "thawed" else 0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    assert row(claims.check_claims(make_runs(acc, range(3))), "C2")["verdict"] == "holds"


# ----------------------------------------------------------------------------- C4b: STN never exceeds the control

def stn_table(offset, seeds, sd=0.1, seed=6):
    """STN networks ``offset`` points from the control on every seed; other networks at the control."""
    e = noise(seed, sd)
    ctrl = {s: 60.0 + 0.5 * s for s in seeds}

    def acc(s, b, i, r):
        if b == 0:
            return 58.0
        return ctrl[s] + (offset if i == "stn" else 0.0) + e[s, b, INITS.index(i), REGIMES.index(r)]
    return acc, ctrl


def test_c4b_does_not_hold_when_stn_is_2_points_above_the_control_on_every_seed():
    seeds = range(5)
    acc, ctrl = stn_table(2.0, seeds)
    rep = claims.check_claims(make_runs(acc, seeds, control=ctrl.get), margin=1.0)
    r = row(rep, "C4b")
    assert r["verdict"] == "does not hold"
    configs = []
    for b, regime in itertools.product(range(1, 6), REGIMES):
        d = [acc(s, b, "stn", regime) - ctrl[s] for s in seeds]
        mean, _, se, df, ci = by_hand(d)
        configs.append((stats.t.sf((mean - 1.0) / se, df), mean, ci, f"b{b} {SHORT[regime]}-STN - control"))
    p, mean, ci, label = min(configs)
    assert r["contrast"] == label
    assert r["estimate"] == pytest.approx(mean) and (r["ci_low"], r["ci_high"]) == pytest.approx(ci)
    assert r["p_against_adj"] == pytest.approx(10 * p) and r["p_against_adj"] < ALPHA / 2   # Holm, 10 configs


def test_c4b_holds_when_stn_is_5_points_below_the_control():
    seeds = range(3)
    acc, ctrl = stn_table(-5.0, seeds)
    rep = claims.check_claims(make_runs(acc, seeds, control=ctrl.get), margin=1.0)
    r = row(rep, "C4b")
    assert r["verdict"] == "holds"
    # every config's upper 95% bound below +1; the row shows the weakest (largest p of "below +1")
    configs = []
    for b, regime in itertools.product(range(1, 6), REGIMES):
        d = [acc(s, b, "stn", regime) - ctrl[s] for s in seeds]
        mean, _, se, df, ci = by_hand(d)
        assert ci[1] < 1.0
        configs.append((stats.t.cdf((mean - 1.0) / se, df), mean, ci))
    p, mean, ci = max(configs)
    assert r["p"] == pytest.approx(p) and r["estimate"] == pytest.approx(mean)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(ci)


def test_c4b_holds_when_stn_exceeds_the_control_beyond_noise_but_within_the_margin():
    # the CI lies inside (0, margin): a real but negligible excess is not "exceeding the base"
    seeds = range(8)
    acc, ctrl = stn_table(0.4, seeds, sd=0.05)
    rep = claims.check_claims(make_runs(acc, seeds, control=ctrl.get), margin=1.0)
    r = row(rep, "C4b")
    assert r["verdict"] == "holds"
    assert 0 < r["ci_low"] and r["ci_high"] < 1
    assert "above the control beyond noise but by less than 1" in r["note"]
    # the same excess does not count as exceeding for C3 either
    assert row(rep, "C3")["verdict"] == "does not hold"


# ----------------------------------------------------------------------------- C3 and C4a

def test_c3_holds_when_one_tm_config_exceeds_the_control_by_more_than_the_margin():
    seeds = range(6)
    e = noise(7, 0.1)
    ctrl = {s: 60.0 for s in seeds}

    def acc(s, b, i, r):
        lead = 4.0 if (b, i, r) == (2, "random", "thawed") else -2.0
        return 58.0 if b == 0 else 60.0 + lead + e[s, b, INITS.index(i), REGIMES.index(r)]
    rep = claims.check_claims(make_runs(acc, seeds, control=ctrl.get), margin=1.0)
    r = row(rep, "C3")
    assert r["verdict"] == "holds" and r["contrast"] == "b2 TM-RW - control"
    d = [acc(s, 2, "random", "thawed") - 60.0 for s in seeds]
    mean, _, se, df, ci = by_hand(d)
    assert r["p_adj"] == pytest.approx(15 * stats.t.sf((mean - 1.0) / se, df))   # Holm over 15 TM configs


def test_c4a_counts_stn_hint_epochs():
    seeds = range(4)
    e = noise(8, 0.3)
    acc = lambda s, b, i, r: 60.0  # noqa: E731

    def conv(s, b, i, r):   # STN reaches 99% 3 epochs sooner after compression
        return 8.0 - (3.0 if i == "stn" else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    fast = claims.check_claims(make_runs(acc, seeds, conv=conv, stn_epochs=0), epoch_margin=1.0)
    assert row(fast, "C4a")["verdict"] == "holds"
    d = [np.mean([conv(s, b, "stn", "frozen")
                  - (conv(s, b, "random", "frozen") + conv(s, b, "mean", "frozen")) / 2 for b in range(1, 6)])
         for s in seeds]
    mean, *_ , ci = by_hand(d)
    fm = row(fast, "C4a", regime="FM")
    assert fm["estimate"] == pytest.approx(mean) and (fm["ci_low"], fm["ci_high"]) == pytest.approx(ci)
    # with 4 hint epochs STN is one epoch slower: not faster
    slow = claims.check_claims(make_runs(acc, seeds, conv=conv, stn_epochs=4), epoch_margin=1.0)
    assert row(slow, "C4a")["verdict"] == "does not hold"
    assert row(slow, "C4a", regime="FM")["estimate"] == pytest.approx(mean + 4)
    assert "4 hint epochs counted" in row(slow, "C4a")["note"]


def test_c5_mw_slower_holds_mw_faster_fails_by_hand():
    """MW reaches 99% 2 epochs later than RW in both regimes: C5 (MW does not speed convergence)
    holds; 3 epochs sooner under FM only: it does not hold, decided by FM."""
    seeds = range(4)
    e = noise(9, 0.3)
    acc = lambda s, b, i, r: 60.0  # noqa: E731

    def slow_mw(s, b, i, r):
        return 8.0 + (2.0 if i == "mean" else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)

    def fast_fm_mw(s, b, i, r):
        return 8.0 - (3.0 if (i, r) == ("mean", "frozen") else 0.0) + (
            e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    rep = claims.check_claims(make_runs(acc, seeds, conv=slow_mw), epoch_margin=1.0)
    assert row(rep, "C5")["verdict"] == "holds"
    d = [np.mean([slow_mw(s, b, "mean", "thawed") - slow_mw(s, b, "random", "thawed") for b in range(1, 6)])
         for s in seeds]
    mean, *_, ci = by_hand(d)
    tm = row(rep, "C5", regime="TM")
    assert tm["estimate"] == pytest.approx(mean) and (tm["ci_low"], tm["ci_high"]) == pytest.approx(ci)
    assert "epochs" in claims_chapter.summary_markdown(rep, "C5")
    rep = claims.check_claims(make_runs(acc, seeds, conv=fast_fm_mw), epoch_margin=1.0)
    assert row(rep, "C5")["verdict"] == "does not hold" and row(rep, "C5")["contrast"].startswith("FM-MW - FM-RW")
    assert row(rep, "C5", regime="TM")["verdict"] == "holds"
    # MW is faster by 3 [about 2.6, 3.4] epochs: only a 'faster' above its CI's near bound would undo it
    hi = row(rep, "C5")["ci_high"]
    assert f"It would change if 'faster' were above {-hi:.2f} epochs" in claims_chapter.explain(rep, "C5", "cifar10")


# ----------------------------------------------------------------------------- collapse, formats, input

def test_collapsed_networks_are_left_out_and_listed():
    seeds = range(3)
    e = noise(9, 0.1)

    def acc(s, b, i, r):
        return 60.0 + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)

    def majority(s, b, i, r):     # one FM-STN network answers one class: a failure, not a 10% result
        return 0.97 if (s, b, i, r) == (1, 3, "stn", "frozen") else 0.15
    runs = make_runs(acc, seeds, majority=majority)
    runs.loc[runs["majority_frac"] > 0.9, "test_acc_at_best_val"] = 0.10
    rep = claims.check_claims(runs)
    assert rep.collapsed[["seed", "name"]].values.tolist() == [[1, "b3-stn-frozen"]]
    assert "1 collapsed network(s) left out" in row(rep, "C2")["note"]
    # seed 1's C2 pair (b3, stn) is dropped; its other 14 pairs remain
    d = [np.mean([acc(s, b, i, "thawed") - acc(s, b, i, "frozen") for b in range(1, 6) for i in INITS
                  if (s, b, i) != (1, 3, "stn")]) for s in seeds]
    assert row(rep, "C2")["estimate"] == pytest.approx(np.mean(d))


def test_format1_tables_use_the_paper_measures_and_have_no_control():
    t = make_runs(lambda s, b, i, r: 60.0, range(3)).drop(
        columns=["test_acc_at_best_val", "epochs_to_99pct_val", "majority_frac", "stop_reason"])
    t = t.rename(columns={"epochs_to_99pct_val": "epochs_to_99pct"}).assign(epochs_to_99pct=4)
    rep = claims.check_claims(t)
    assert rep.measures["accuracy"] == "max_test_acc" and rep.measures["convergence"] == "epochs_to_99pct"
    assert row(rep, "C3")["verdict"] == row(rep, "C4b")["verdict"] == "not testable: no control"
    assert rep.collapsed.empty


@pytest.mark.parametrize("kw, match", [
    ({"margin": 0}, "margin must be a positive"), ({"margin": -1}, "margin must be a positive"),
    ({"alpha": 0}, r"alpha must be in \(0, 1\)"), ({"alpha": 1.5}, r"alpha must be in \(0, 1\)"),
    ({"measure": "test"}, "measure must be one of validation, paper"),
    ({"reference": "parent"}, "reference must be one of control, base"),
])
def test_bad_parameters_give_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        claims.check_claims(make_runs(lambda s, b, i, r: 60.0, range(3)), **kw)


def test_a_table_without_seeds_gives_one_clear_error():
    t = make_runs(lambda s, b, i, r: 60.0, range(3))
    with pytest.raises(ValueError, match="no seeds"):
        claims.check_claims(t.drop(columns="seed"))
    with pytest.raises(ValueError, match="no seeds"):
        claims.check_claims(t.assign(seed=np.nan))


def test_fig3_cka_against_the_base_vs_base_reference():
    seeds = range(3)
    runs = make_runs(lambda s, b, i, r: 60.0, seeds, control=lambda s: 60.0)
    runs["cka_block1"] = np.where(runs["scheme"].str.endswith("STN"), 0.95, 0.6) + 0.01 * runs["seed"]
    bases = pd.DataFrame({"dataset": "cifar10", "seed_a": [0, 0, 1], "seed_b": [1, 2, 2],
                          "cka_block1": [0.70, 0.72, 0.74]})
    f = claims_tables.fig3_cka(runs, bases).set_index("scheme")
    assert f.loc["TM-STN", "n"] == 3 and f.loc["TM-STN", "cka"] == pytest.approx(0.96)
    assert f.loc["TM-STN", "bases_cka"] == pytest.approx(0.72)
    assert f.loc["TM-STN", "p"] == pytest.approx(
        stats.ttest_ind([0.95, 0.96, 0.97], [0.70, 0.72, 0.74], equal_var=False).pvalue)
    assert claims_tables.fig3_cka(runs.drop(columns="cka_block1")) is None


def test_plot_claim_draws_every_claim():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    acc, ctrl = stn_table(-5.0, range(3))
    rep = claims.check_claims(make_runs(acc, range(3), control=ctrl.get))
    for c in claims.CLAIMS:
        ax = claims_chapter.plot_claim(rep, c)
        assert len(ax.get_yticklabels()) >= 1
    claims_chapter.plot_claim(rep, "C1", detail=True)
    plt.close("all")


# ----------------------------------------------------------------------------- the stored cpu results

def test_stored_cpu_results():
    """Real data (results format 1): runs without error; no control, so C3 and C4b are not testable."""
    path = report.default_results_root() / "cpu" / "runs.csv"
    if not path.is_file():
        pytest.skip("no stored cpu results")
    runs = pd.read_csv(path)     # read directly: independent of report.load's format check
    rep = claims.check_claims(runs)
    v = rep.verdicts
    assert set(v["verdict"]) <= set(claims.VERDICTS)
    datasets, seeds = runs["dataset"].nunique(), runs["seed"].nunique()
    d = v[v["level"] == "data set"]
    assert len(d) == len(claims.CLAIMS) * datasets
    assert (d.loc[d["claim"].isin(["C3", "C4b"]), "verdict"] == "not testable: no control").all()
    assert rep.measures["accuracy"] == "max_test_acc" and rep.measures["convergence"] == "epochs_to_99pct"
    assert (d.loc[d["claim"] == "C1", "n"] == seeds).all()
    # C2's estimate is the mean over seeds of the per-seed mean TM - FM gap, in points
    mn = runs[(runs["dataset"] == "mnist") & (runs["block"] > 0)]
    gap = mn.pivot_table("max_test_acc", ["seed", "block", "init"], "regime")
    per_seed = 100 * (gap["thawed"] - gap["frozen"]).groupby("seed").mean()
    assert row(rep, "C2", "mnist")["estimate"] == pytest.approx(per_seed.mean())
    assert set(rep.counts["claim"]) == set(claims.CLAIMS)
    for c in claims.CLAIMS:
        for ds in runs["dataset"].unique():
            assert claims_chapter.explain(rep, c, ds)
    assert claims_tables.cka_bases(profile="cpu") is None and claims_tables.fig3_cka(runs) is None


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests
    p = np.array([0.04, 0.001, 0.3, 0.012, 0.2, 0.03])
    assert claims._holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    got = claims._holm(np.array([0.02, np.nan, 0.01]))
    assert np.isnan(got[1]) and got[[0, 2]] == pytest.approx(multipletests([0.02, 0.01], method="holm")[1])


# ----------------------------------------------------------------------------- the chapters' words
def test_noise_glue_by_hand():
    sd = pd.DataFrame({"regime": ["TM", "TM", "base", "base", "FM"], "sd": [0.5, 1.25, float("nan"), 0.1, 9.0],
                       "test_se": [float("nan")] * 2 + [0.3, 0.4, float("nan")]})
    assert claims_chapter.noise_glue(sd) == {"tm_sd_text": "0.50-1.25 points", "se_lo": 0.3, "se_hi": 0.4}
    one_seed = sd.assign(sd=float("nan"))
    assert claims_chapter.noise_glue(one_seed)["tm_sd_text"] == "not measurable yet (TM networks of one seed only)"


def test_claims_by_model_and_its_words():
    rng = noise(3, 0.3)
    runs = make_runs(lambda s, b, i, r: 80 + rng[s, b, INITS.index(i) if i else 0, REGIMES.index(r) if r else 0],
                     seeds=range(3), control=lambda s: 80.0)
    table, reports = claims_chapter.claims_by_model({"VGG16-BN": runs, "resnet8": runs.iloc[:0]})
    assert list(reports) == ["VGG16-BN"] and set(table["model"]) == {"VGG16-BN"}   # an empty grid is left out
    assert "note" not in table.columns and len(table) == len(reports["VGG16-BN"].table())
    text = claims_chapter.model_verdict_text(reports["VGG16-BN"], runs, "VGG16-BN", "cifar10")
    v = reports["VGG16-BN"].verdicts
    first = v[v["level"] == "data set"].iloc[0]
    assert text.startswith(f"On cifar10, {len(runs)} VGG16-BN networks over 3 seed(s): {first['claim']} "
                           f"{first['verdict']}; ") and text.endswith(".")
    assert text.count(";") == len(claims.CLAIMS) - 1
    assert claims_chapter.not_run_text("resnet8", "campaign", "cifar10", 1.0) == (
        "**Not run yet**: no resnet8 runs are stored for the campaign profile and cifar10. Run `python -m triage "
        "grid --profile campaign --dataset cifar10 --seeds 0 1 2 --set model=resnet8 width=1.0 --regimes thawed "
        "--no-notebooks` (after the campaign), then rebuild the book.")


def test_unstable_cells_by_hand():
    # b1 FM-MW lands at 25, 74 and 68 points on three seeds (as on CIFAR-10); everything else within 1
    wild = {0: 74.5, 1: 24.8, 2: 68.0}

    def acc(s, b, i, r):
        if (b, i, r) == (1, "mean", "frozen"):
            return wild[s]
        return 70.0 + 0.5 * s if b else 71.0

    def majority(s, b, i, r):
        return 0.44 if (b, i, r, s) == (1, "mean", "frozen", 1) else 0.12
    runs = make_runs(acc, range(3), control=lambda s: 71.0, majority=majority)
    cells = claims_tables.unstable_cells(runs, spread=10.0)
    assert list(cells["scheme"]) == ["b1 FM-MW"]
    c = cells.iloc[0]
    assert (c["dataset"], c["seeds"], c["low"], c["high"]) == ("cifar10", 3, 24.8, 74.5)
    assert c["range"] == pytest.approx(49.7) and c["max_majority"] == 0.44
    text = claims_tables.unstable_text(cells)
    assert "cifar10: 1 cell(s), widest b1 FM-MW from 24.8% to 74.5% over 3 seeds" in text
    assert claims_tables.unstable_cells(runs, spread=50.0).empty
    assert "No cell" in claims_tables.unstable_text(claims_tables.unstable_cells(runs, spread=50.0), 50.0)
    assert c["per_seed"] == "seed 0: 74.5%, seed 1: 24.8%, seed 2: 68.0%"   # no dead_block1 column
    assert claims_tables.dead_by_block(runs).empty       # nothing recorded, nothing said
    assert claims_tables.dead_by_block_text(claims_tables.dead_by_block(runs)) == \
        "Dead channels at the compressed block are not recorded in these results."
    # the dead block-1 channels of 8 (width 1/8): seed 1's b1 FM-MW has 5, every other network 0 or 1
    runs = runs.assign(width=0.125, dead_block1=np.where(
        (runs["block"] == 1) & (runs["init"] == "mean") & (runs["regime"] == "frozen") & (runs["seed"] == 1), 5,
        np.where(runs["regime"] == "thawed", 1, 0)))
    runs.loc[(runs["block"] == 1) & (runs["init"] == "stn") & (runs["seed"] == 2), "dead_block1"] = np.nan
    c = claims_tables.unstable_cells(runs).iloc[0]
    assert c["per_seed"] == "seed 0: 74.5% (0 of 8 dead), seed 1: 24.8% (5 of 8 dead), seed 2: 68.0% (0 of 8 dead)"
    # runs from before dead_compressed: block-1 children fall back to dead_block1 (64/8 = 8 channels),
    # the other blocks are unknown. FM block 1: 9 networks, one without the measure; TM 8 with it
    t = claims_tables.dead_by_block(runs).set_index(["block", "regime"])
    assert list(t.index) == [(1, "FM"), (1, "TM")]
    fm, tm = t.loc[(1, "FM")], t.loc[(1, "TM")]
    assert (fm["channels"], fm["networks"], fm["many"], fm["dead_max"], fm["unknown"]) == (8, 8, 1, 5, 1)
    assert (fm["acc_many"], fm["acc_rest"]) == ("24.8", "68.0-74.5")
    assert (tm["networks"], tm["dead_max"], tm["unknown"]) == (8, 1, 1)
    text = claims_tables.dead_by_block_text(claims_tables.dead_by_block(runs))
    assert ("**cifar10**, FM: block 1: 1 of 8 with at least 2 of 8 dead reach 24.8%, the others 68.0-74.5%. "
            "TM: at most 1 of 8 dead (block 1) (2 network(s) without the measure)") in text


def test_device_spread_text_by_hand():
    rep = pd.DataFrame({"name": ["b1-mean-frozen", "b2-random-frozen", "b3-mean-thawed", "base"],
                        "diff": [0.2252, -0.0030, -0.0019, -0.0115]})
    text = claims_tables.device_spread_text(rep)
    assert "FM children up to 22.5 points apart (median 11.4, 2 pairs)" in text
    assert "TM children and bases up to 1.1 points apart (median 0.7, 2 pairs)" in text
    assert claims_tables.device_spread_text(rep.iloc[:0]) == "No network is stored on both devices."


def test_block_effect_leaves_out_a_seed_with_one_network():
    # seeds 0-2 complete, seed 3 only its first child (a grid just begun, as MNIST seeds 0 and 2
    # were): that seed has leverage 1 once seed is a factor, and HC3 divided by zero before
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm
    e = noise(11, 0.3)

    def acc(s, b, i, r):
        return 60.0 - (5.0 if b == 1 else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    runs = make_runs(acc, range(4))
    first = (runs["seed"] == 3) & (runs["block"] > 0)
    runs = runs[(runs["seed"] < 3) | (first & (runs["name"] == "b1-random-frozen"))]
    out = claims_tables.block_effect(runs).set_index("regime")
    assert out.loc["FM", "n"] == 45 and out.loc["TM", "n"] == 45      # 3 seeds x 15, seed 3 left out
    assert out.loc["FM", "p"] < 1e-6 and out.loc["FM", "df"] == 4
    t = pd.DataFrame([{"acc": acc(s, b, i, "frozen"), "block": b, "init": i, "seed": s}
                      for s in range(3) for b in range(1, 6) for i in INITS])
    a = anova_lm(smf.ols("acc ~ C(block) + C(init) + C(seed)", t).fit(), typ=2, robust="hc3")
    assert out.loc["FM", "F"] == pytest.approx(a.loc["C(block)", "F"])


def test_c4a_capped_networks_left_out_by_default_and_counted_on_request():
    # STN reaches 99% at epoch 5, RW and MW at 8; FM-STN of block 1 hit its cap at 30 on every seed
    def conv(s, b, i, r):
        if (b, i, r) == (1, "stn", "frozen"):
            return 30
        return 5 if i == "stn" else 8
    runs = make_runs(lambda s, b, i, r: 70.0, range(3), conv=conv, control=lambda s: 70.0)
    capped = (runs["block"] == 1) & (runs["init"] == "stn") & (runs["regime"] == "frozen")
    runs.loc[capped, "stop_reason"] = "cap"
    left_out = claims.check_claims(runs)
    counted = claims.check_claims(runs, keep_capped=True)
    # left out: blocks 2-5 only, 5 - 8 = -3 epochs; counted: STN (30 + 4 * 5) / 5 = 10 against 8: +2
    assert row(left_out, "C4a", regime="FM")["estimate"] == pytest.approx(-3.0)
    assert row(counted, "C4a", regime="FM")["estimate"] == pytest.approx(2.0)
    assert row(left_out, "C4a", regime="TM")["estimate"] == row(counted, "C4a", regime="TM")["estimate"] == -3.0
    assert "3 network(s) stopped by the epoch cap left out" in row(left_out, "C4a")["note"]
    text = claims_chapter.c4a_sensitivity_text(runs, left_out)
    # the data-set row is the deciding contrast: TM-STN, 3 epochs faster either way (FM moved, TM did not)
    assert counted.verdict("C4a", "cifar10") == "holds"
    assert text.startswith("cifar10 with its 3 capped children counted: *holds* (-3.00 epochs, 95% CI [-3.00, -3.00])")
    assert "cifar10 with STN's hint epochs not counted" in text


def test_c4a_counts_the_hint_epochs_stn_trained_not_its_cap():
    # the hint stopped on its plateau after 4 epochs (cap 12): STN 5 + 4 = 9 epochs against RW/MW's 8
    runs = make_runs(lambda s, b, i, r: 70.0, range(3), conv=lambda s, b, i, r: 5 if i == "stn" else 8,
                     stn_epochs=12)
    runs["stn_epochs_trained"] = runs["stn_epochs"].where(runs["init"] != "stn", 4)
    rep = claims.check_claims(runs)
    assert row(rep, "C4a", regime="FM")["estimate"] == pytest.approx(1.0)
    assert "STN's 4 hint epochs counted" in row(rep, "C4a")["note"]
    without = claims.check_claims(runs, count_hint=False)
    assert row(without, "C4a", regime="TM")["estimate"] == pytest.approx(-3.0)


def test_a_data_set_with_only_its_base_says_its_grid_is_not_trained():
    full = make_runs(lambda s, b, i, r: 70.0 + s, range(3), control=lambda s: 70.0)
    base_only = make_runs(lambda s, b, i, r: 99.0, range(3), dataset="mnist")
    base_only = base_only[base_only["block"] == 0]
    rep = claims.check_claims(pd.concat([full, base_only], ignore_index=True))
    r = row(rep, "C3", dataset="mnist")
    assert r["verdict"] == "not testable: no control" and r["note"].startswith("no networks to compare")
    assert claims_chapter.explain(rep, "C3", "mnist").startswith("Its grid has not been trained yet")
    # a table with children but no control keeps the old reading
    rep1 = claims.check_claims(make_runs(lambda s, b, i, r: 70.0 + s, range(3)))
    assert claims_chapter.explain(rep1, "C3", "cifar10").startswith("A continued-base control")


def test_a_data_set_whose_grid_is_partial_in_every_seed_says_its_estimate_covers_only_that_part():
    # cifar10 has the whole grid; on cifar100 only block 1's RW networks are trained (in one seed,
    # as a campaign in progress): its TM - FM is 25 points there, 0 in the cells it lacks
    full = make_runs(lambda s, b, i, r: 70.0 + s, range(3), control=lambda s: 70.0)
    part = make_runs(lambda s, b, i, r: 50.0 - 25 * (r == "frozen" and b == 1), [2], dataset="cifar100",
                     control=lambda s: 52.0)
    part = part[(part["block"] == 0) | ((part["block"] == 1) & (part["init"] == "random"))]
    rep = claims.check_claims(pd.concat([full, part], ignore_index=True))
    r = row(rep, "C2", dataset="cifar100")
    assert r["estimate"] == pytest.approx(25.0) and r["n"] == 1
    assert r["note"].startswith("partial grid: 2 of 30 configurations trained in any seed")
    assert "partial grid" not in row(rep, "C2")["note"]
    table = rep.table()     # the book's table drops the note, so the contrast says it
    assert table.loc[("C2", "cifar100"), "contrast"] == "TM - FM (partial grid)"
    assert table.loc[("C2", "cifar10"), "contrast"] == "TM - FM"


def test_explain_a_c4a_failure_past_zero():
    # STN 4 epochs slower on every seed, both regimes: no positive 'faster' margin changes it
    runs = make_runs(lambda s, b, i, r: 70.0, range(3),
                     conv=lambda s, b, i, r: 9 + (s % 2) * 0.5 if i == "stn" else 5)
    rep = claims.check_claims(runs)
    assert rep.verdict("C4a", "cifar10") == "does not hold"
    assert claims_chapter.explain(rep, "C4a", "cifar10").endswith("lies entirely above zero.")


# ----------------------------------------------------------------------------- the paper's protocol put back

def protocol_runs():
    """Control = base + 2 points on every seed (extra training alone), every child = base + 1.5:
    above the base by more than the 1-point margin, below the control. The paper's measure
    (max_test_acc) adds 3 points to the thawed children only."""
    e = noise(31, 0.2)

    def acc(s, b, i, r):
        return 70.0 + (1.5 if b else 0.0) + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    runs = make_runs(acc, range(4), control=lambda s: 72.0)
    thawed = runs["regime"] == "thawed"
    runs.loc[thawed, "max_test_acc"] = runs.loc[thawed, "test_acc_at_best_val"] + 0.03
    runs.loc[~thawed, "max_test_acc"] = runs.loc[~thawed, "test_acc_at_best_val"]
    return runs, acc


def test_reference_base_puts_the_papers_comparison_back_for_c3_and_c4b():
    runs, acc = protocol_runs()
    ours = claims.check_claims(runs)
    theirs = claims.check_claims(runs, reference="base")
    assert row(ours, "C3")["verdict"] == "does not hold"          # every TM child about 0.5 below the control
    assert row(theirs, "C3")["verdict"] == "holds"                # but 1.5 above the base
    best = max(np.mean([acc(s, b, i, "thawed") - 70.0 for s in range(4)]) for b in range(1, 6) for i in INITS)
    assert row(theirs, "C3")["estimate"] == pytest.approx(best)
    assert row(theirs, "C4b")["verdict"] == "does not hold" and row(ours, "C4b")["verdict"] == "holds"
    assert row(theirs, "C2")["estimate"] == pytest.approx(row(ours, "C2")["estimate"])  # no reference in C2
    assert theirs.params["reference"] == "base"


def test_measure_paper_reads_the_test_selected_columns():
    runs, _ = protocol_runs()
    rep = claims.check_claims(runs, measure="paper", much=1.0)
    assert rep.measures["accuracy"] == "max_test_acc" and rep.measures["convergence"] == "epochs_to_99pct"
    assert row(rep, "C2")["estimate"] == pytest.approx(row(claims.check_claims(runs, much=1.0), "C2")["estimate"] + 3)


def test_protocol_sensitivity_and_effects_by_hand():
    runs, _ = protocol_runs()
    sens = claims_tables.protocol_sensitivity(runs)
    assert set(sens["protocol"]) == set(claims_tables.PROTOCOLS)
    c3 = sens[sens["claim"] == "C3"].set_index("protocol")
    assert c3.loc["ours", "verdict"] == "does not hold" and not c3.loc["ours", "changed"]
    assert c3.loc["against the base", "verdict"] == "holds" and c3.loc["against the base", "changed"]
    eff = claims_tables.protocol_effects(runs).set_index("effect")
    extra = eff.loc["extra training (control - base)"]
    assert (extra["estimate"], extra["ci_low"], extra["ci_high"], extra["n"]) == pytest.approx((2.0, 2.0, 2.0, 4))
    sel = eff.loc["test selection (max test - test at best val)"]
    # per seed: 15 thawed children +3 points, 15 frozen, the base and the control +0 (32 networks)
    assert sel["estimate"] == pytest.approx(45 / 32) and sel["n"] == 4
    text = claims_chapter.protocol_text(sens, claims_tables.protocol_effects(runs))
    assert "cifar10 +2.00 pt [+2.00, +2.00] (n = 4 seeds)" in text
    assert "C3 on cifar10 becomes *holds* with the base as the reference (ours: *does not hold*" in text


def test_base_fit_and_setting_text_by_hand():
    runs = pd.DataFrame({"dataset": ["cifar10", "cifar10", "stanford_dogs"], "seed": [0, 1, 0], "block": [0, 0, 0],
                         "name": ["base"] * 3, "key": ["a", "b", "c"], "best_epoch": [2, 1, 1],
                         "width": [0.125] * 3, "resolution": [32, 32, 64], "lr": [0.05] * 3})
    metrics = pd.DataFrame({"dataset": ["cifar10"] * 3 + ["stanford_dogs"], "seed": [0, 0, 1, 0],
                            "key": ["a", "a", "b", "c"], "epoch": [1, 2, 1, 1],
                            "train_acc": [0.5, 0.9, 0.8, 0.08], "test_acc": [0.5, 0.8, 0.76, 0.07]})
    fit = claims_tables.base_fit(runs, metrics).set_index("dataset")
    assert fit.loc["cifar10", "train_acc"] == pytest.approx(85.0) and fit.loc["cifar10", "gap"] == pytest.approx(7.0)
    by_hand_ci = by_hand([10.0, 4.0])[4]
    assert (fit.loc["cifar10", "ci_low"], fit.loc["cifar10", "ci_high"]) == pytest.approx(by_hand_ci)
    assert fit.loc["stanford_dogs", "n"] == 1 and np.isnan(fit.loc["stanford_dogs", "ci_low"])
    text = claims_chapter.setting_text(runs, fit.reset_index())
    assert "cifar10 +7.0 [" in text and "stanford_dogs +1.0 (train 8.0%)" in text
    assert "2x2 maps at 32 px and 4x4 maps at 64 px (the paper's 14x14)" in text
    assert "Our bases reach 7.0% on the test set and 8.0% on their own training images" in text
    assert "SGD from lr 0.05" in text and "starts afresh" not in text     # no child_lr column: not said
    # children started at lr0 (the paper's reading): 0.05 / Table 1's 1e-3 on both data sets
    text = claims_chapter.setting_text(runs.assign(child_lr="initial"), fit.reset_index())
    assert ("Every child starts afresh at lr 0.05 (50x Table 1's cifar10 rate, 50x Table 1's stanford_dogs "
            "rate)") in text
    assert "starts afresh" not in claims_chapter.setting_text(runs.assign(child_lr="continue"), fit.reset_index())
    assert claims_tables.base_fit(runs.drop(columns="best_epoch"), metrics).empty


def test_child_lr_pairs_and_text_by_hand():
    # FM block-1 children of two seeds at both starting lrs (CPU), one more only at lr0, and a
    # "continue" child on another device, which is no pair
    t = pd.DataFrame({
        "dataset": ["cifar10"] * 8, "block": [1, 1, 1, 1, 1, 1, 1, 2],
        "regime": ["frozen"] * 8, "seed": [1, 1, 2, 2, 1, 0, 0, 0],
        "init": ["mean", "mean", "random", "random", "random", "stn", "stn", "random"],
        "child_lr": ["initial", "continue", "initial", "continue", "initial", "initial", "continue", "continue"],
        "device": ["cpu", "cpu", "cpu", "cpu", "cpu", "cpu", "cuda", "cpu"],
        "test_acc_at_best_val": [0.25, 0.75, 0.35, 0.70, 0.26, 0.30, 0.72, 0.76],
        "dead_block1": [5, 0, 4, 1, 3, 4, np.nan, 0]})
    p = claims_tables.child_lr_pairs(t, block=1)
    assert p[["seed", "init"]].values.tolist() == [[1, "mean"], [2, "random"]]
    assert p["acc_initial"].tolist() == pytest.approx([25.0, 35.0]) and p["dead_continue"].tolist() == [0.0, 1.0]
    text = claims_tables.child_lr_text(p)
    d = by_hand([50.0, 35.0])
    assert text == (f"cifar10 block 1, 2 network(s) of seed(s) 1, 2: 25.0-35.0% (4-5 dead) from lr0, 70.0-75.0% "
                    f"(0-1 dead) from the base's final lr; continue - initial +42.5 points per seed, 95% CI "
                    f"[{d[4][0]:+.1f}, {d[4][1]:+.1f}].")
    one = claims_tables.child_lr_text(p[p["seed"] == 1])
    assert "25.0% (5 dead) from lr0" in one and "(0 dead) from the base's" in one and "one seed: no interval" in one
    # every block: a block-2 pair reads dead_compressed, of the block's channels
    t2 = pd.concat([t, pd.DataFrame({"dataset": ["cifar10"], "block": [2], "regime": ["frozen"], "seed": [0],
                                     "init": ["random"], "child_lr": ["initial"], "device": ["cpu"],
                                     "test_acc_at_best_val": [0.39], "dead_block1": [0]})], ignore_index=True)
    t2["dead_compressed"] = np.where(t2["block"] == 2, np.where(t2["child_lr"] == "initial", 7.0, 0.0), np.nan)
    t2["compressed_channels"] = np.where(t2["block"] == 2, 16.0, np.nan)
    both = claims_tables.child_lr_pairs(t2)
    assert both[["block", "seed"]].values.tolist() == [[1, 1], [1, 2], [2, 0]]
    assert "cifar10 block 2, 1 network(s) of seed(s) 0: 39.0% (7 of 16 dead) from lr0, 76.0% (0 of 16 dead)" \
        in claims_tables.child_lr_text(both)
    assert claims_tables.child_lr_pairs(t.drop(columns="child_lr")).empty
    assert claims_tables.child_lr_text(claims_tables.child_lr_pairs(None)) == "No child was trained at both starting lrs."


def test_c2_by_block_by_hand():
    """TM - FM is 20 points at block 1 and 0.5 at the other blocks, on 4 seeds with small noise:
    block 1 reads "much worse", the rest "not much worse"; estimates and both intervals by hand."""
    seeds = range(4)
    e = noise(31, 0.3)

    def acc(s, b, i, r):
        gap = (20.0 if b == 1 else 0.5) if r == "thawed" else 0.0
        return 70.0 + gap + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)
    t = claims_tables.c2_by_block(make_runs(acc, seeds, control=lambda s: 70.0), much=5.0)
    assert list(t["block"]) == [1, 2, 3, 4, 5] and (t["n"] == 4).all()
    for b in (1, 3):
        d = block_means(acc, seeds, b, "thawed") - block_means(acc, seeds, b, "frozen")
        mean, _, se, df, (lo, hi) = by_hand(d)
        r = t[t["block"] == b].iloc[0]
        assert r["estimate"] == pytest.approx(mean) and (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
        h = stats.t.ppf(1 - ALPHA / (2 * 5), df) * se           # Bonferroni over the 5 blocks
        assert (r["sim_low"], r["sim_high"]) == pytest.approx((mean - h, mean + h))
    assert list(t["reading"]) == ["much worse"] + ["not much worse"] * 4
    text = claims_tables.c2_by_block_text(t, much=5.0)
    assert "much worse at block 1;" in text and "not much worse at blocks 2, 3, 4, 5" in text
    import matplotlib.pyplot as plt
    axes = claims_chapter.plot_c2_by_block(t, much=5.0)
    assert axes.size == 1 and len(axes.flat[0].get_yticklabels()) == 5
    plt.close("all")
    # one seed is no interval: undecided, and the text says there is nothing to break down
    one = claims_tables.c2_by_block(make_runs(acc, [0]), much=5.0)
    assert (one["reading"] == "undecided at this n").all()
    text = claims_tables.c2_by_block_text(one)
    d = [block_means(acc, [0], b, "thawed")[0] - block_means(acc, [0], b, "frozen")[0] for b in range(1, 6)]
    assert text.startswith("No data set has two seeds") and text.endswith(
        "One seed has no interval: **cifar10** (one seed: " + ", ".join(f"block {b} {v:+.1f}" for b, v in
                                                                      zip(range(1, 6), d)) + ").")
    assert abs(d[0] - 20.0) < 2 and abs(d[1] - 0.5) < 2     # the gaps put in, up to noise
    # beside a data set with an interval, a one-seed data set is named after it
    mnist = one.assign(dataset="mnist")
    both = claims_tables.c2_by_block_text(pd.concat([t, mnist], ignore_index=True), much=5.0)
    assert "not much worse at blocks 2, 3, 4, 5." in both and "One seed has no interval: **mnist**" in both
    assert claims_tables.c2_by_block_text(t.iloc[:0]).startswith("No data set has a seed")


def test_dead_by_block_and_unstable_cells_read_the_compressed_blocks_dead_channels():
    """FM block-2 networks: seed 0 with 7 of 16 channels dead at 40%, the others with 1 at 75%.
    A block-1 child without dead_compressed (recorded before it was) falls back to dead_block1."""
    seeds = range(3)

    def acc(s, b, i, r):
        return 40.0 if (s, b, i, r) == (0, 2, "random", "frozen") else 75.0
    runs = make_runs(acc, seeds, control=lambda s: 75.0)
    runs["width"] = 1 / 8
    child = runs["block"] > 0
    runs["dead_block1"] = 0.0
    runs["dead_compressed"] = np.where(child & (runs["block"] > 1), 1.0, np.nan)
    runs["compressed_channels"] = np.where(child & (runs["block"] > 1), 64.0, np.nan)
    runs.loc[child & (runs["block"] == 2), "compressed_channels"] = 16.0
    hit = (runs["seed"] == 0) & (runs["name"] == "b2-random-frozen")
    runs.loc[hit, "dead_compressed"] = 7.0
    runs.loc[(runs["block"] == 1) & (runs["name"] == "b1-mean-frozen"), "dead_block1"] = 3.0
    t = claims_tables.dead_by_block(runs).set_index(["block", "regime"])
    b2 = t.loc[(2, "FM")]
    assert (b2["channels"], b2["networks"], b2["dead_max"], b2["many"]) == (16, 9, 7, 1)
    assert (b2["acc_many"], b2["acc_rest"]) == ("40.0", "75.0")
    b1 = t.loc[(1, "FM")]                       # channels from the width: 64 / 8
    assert (b1["channels"], b1["dead_max"], b1["many"]) == (8, 3, 3)
    text = claims_tables.dead_by_block_text(claims_tables.dead_by_block(runs))
    assert "block 2: 1 of 9 with at least 4 of 16 dead reach 40.0%, the others 75.0%" in text
    # every FM network of block 3 with many dead: there are no others to name
    runs.loc[(runs["block"] == 3) & (runs["regime"] == "frozen"), "dead_compressed"] = 20.0
    text = claims_tables.dead_by_block_text(claims_tables.dead_by_block(runs))
    assert "block 3: 9 of 9 with at least 16 of 64 dead reach 75.0%; " in text
    cells = claims_tables.unstable_cells(runs)
    assert list(cells["scheme"]) == ["b2 FM-RW"]
    assert cells["per_seed"].iloc[0].startswith("seed 0: 40.0% (7 of 16 dead), seed 1: 75.0% (1 of 16 dead)")


def test_complexity_convergence_by_hand():
    """MNIST's children reach 99% after 3 + seed epochs, CIFAR-10's after 9 + 2 * seed: Welch's
    interval of the per-seed means by hand; a partial CIFAR-100 seed is not compared."""
    conv = {"mnist": lambda s: 3.0 + s, "cifar10": lambda s: 9.0 + 2 * s}
    acc = lambda s, b, i, r: 70.0  # noqa: E731
    runs = pd.concat([make_runs(acc, range(3), conv=lambda s, b, i, r, f=f: f(s), dataset=d, control=lambda s: 70.0)
                      for d, f in conv.items()]
                     + [make_runs(acc, [0], dataset="cifar100").query("block <= 1")], ignore_index=True)
    t = claims_convergence.complexity_convergence(runs, epoch_margin=1.0)
    assert t[["easier", "harder"]].values.tolist() == [["mnist", "cifar10"]]
    a, b = np.array([9.0, 11.0, 13.0]), np.array([3.0, 4.0, 5.0])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)                   # Welch-Satterthwaite
    h = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    r = t.iloc[0]
    assert r["estimate"] == pytest.approx(7.0) and (r["ci_low"], r["ci_high"]) == pytest.approx((7.0 - h, 7.0 + h))
    assert r["verdict"] == "holds"
    text = claims_convergence.complexity_convergence_text(t)
    assert "cifar10 - mnist: +7.00 epochs" in text and "the claim *holds*" in text and "cifar100" in text
    # CIFAR-10 converging as fast as MNIST: the claim does not hold
    same = pd.concat([make_runs(acc, range(3), conv=lambda s, b, i, r: 3.0 + 0.1 * s, dataset=d) for d in conv],
                     ignore_index=True)
    assert claims_convergence.complexity_convergence(same)["verdict"].tolist() == ["does not hold"]
    assert "*does not hold*" in claims_convergence.complexity_convergence_text(claims_convergence.complexity_convergence(same))


def test_convergence_accuracy_correlation_by_hand():
    """RW/MW children whose accuracy rises with their epochs to 99% on every seed: rho by scipy per
    seed, averaged on Fisher's z scale; STN children are not counted."""
    e = noise(12, 1.0)

    def conv(s, b, i, r):
        return 5.0 + b + (e[s, b, INITS.index(i), REGIMES.index(r)] if b else 0)

    def acc(s, b, i, r):
        if not b or i == "stn":
            return 60.0
        return 60.0 + 2 * conv(s, b, i, r) + e[s + 5, b, INITS.index(i), REGIMES.index(r)]
    runs = make_runs(acc, range(3), conv=conv)
    t = claims_convergence.convergence_accuracy_correlation(runs).iloc[0]
    rhos = [stats.spearmanr([conv(s, b, i, r) for b in range(1, 6) for i in ("random", "mean") for r in REGIMES],
                            [acc(s, b, i, r) for b in range(1, 6) for i in ("random", "mean") for r in REGIMES]).statistic
            for s in range(3)]
    z = np.arctanh(rhos)
    _, _, _, _, (lo, hi) = by_hand(z)
    assert (t["n"], t["networks"]) == (3, 60)
    assert t["rho"] == pytest.approx(np.tanh(z.mean())) and (t["ci_low"], t["ci_high"]) == pytest.approx(
        (np.tanh(lo), np.tanh(hi)))
    assert "cifar10: rho +" in claims_convergence.convergence_accuracy_text(claims_convergence.convergence_accuracy_correlation(runs))


def test_with_one_seed_the_contrast_shown_is_chosen_by_its_estimate_not_its_place():
    # One seed: no variance, so every p-value is NaN and every claim is "not testable at this n".
    # The contrast reported is still the one that would decide, not the family's first.
    # TM children: 61 points, plus b1-RW +1, b4-MW +3, block 5 -2 (all three initialisers);
    # the control 60.
    lead = {(1, "random"): 1.0, (4, "mean"): 3.0, (5, "random"): -2.0, (5, "mean"): -2.0, (5, "stn"): -2.0}

    def acc(s, b, i, r):
        return 58.0 if b == 0 else (50.0 if r == "frozen" else 61.0 + lead.get((b, i), 0.0))
    rep = claims.check_claims(make_runs(acc, [0], control={0: 60.0}.get), margin=1.0)
    # C3 ("some TM config beats the control"): the largest lead, b4 TM-MW at 64 - 60 = +4
    # (the family's first, b1 TM-RW, is +2)
    c3 = row(rep, "C3")
    assert c3["verdict"] == "not testable at this n" and np.isnan(c3["p"])
    assert c3["contrast"] == "b4 TM-MW - control" and c3["estimate"] == pytest.approx(4.0)
    # C1 ("every pair of blocks is equivalent"), TM: the pair furthest apart. Block means
    # b1 61.33, b2 61, b3 61, b4 62, b5 59: block 4 - block 5 = 3 (the first pair, 1 - 2, is 0.33)
    c1 = row(rep, "C1", regime="TM")
    assert c1["verdict"] == "not testable at this n"
    assert c1["contrast"] == "TM: block 4 - block 5" and c1["estimate"] == pytest.approx(3.0)
