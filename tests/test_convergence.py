"""triage.convergence: the cap audit (trends of cap-stopped runs) and the base audit (a base
against the same base trained twice as long), checked by hand."""
import pandas as pd
import pytest

from triage import convergence


def _tables(val_by_key, stop_by_key):
    runs = pd.DataFrame([{"key": k, "dataset": "cifar10", "seed": 0, "name": k, "scheme": "TM-RW",
                          "stop_reason": stop_by_key[k]} for k in val_by_key])
    metrics = pd.DataFrame([{"key": k, "epoch": e + 1, "val_acc": v, "test_acc": v}
                            for k, vals in val_by_key.items() for e, v in enumerate(vals)])
    return runs, metrics


def test_cap_audit_slope_and_interval_by_hand():
    # x = 1..4, y = .70 .71 .70 .71: slope = 0.01 / 5 = 0.002; residuals -.002 .006 -.006 .002,
    # s^2 = 80e-6 / 2, se = sqrt(40e-6 / 5) = 0.0028284; t(0.975, 2) = 4.302653 -> half 0.012170
    runs, metrics = _tables({"a": [0.70, 0.71, 0.70, 0.71], "b": [0.5, 0.6, 0.7, 0.8]},
                            {"a": "cap", "b": "converged"})
    a = convergence.cap_audit(runs, metrics, last=4)
    assert list(a["name"]) == ["a"]              # only the cap-stopped run is audited
    r = a.iloc[0]
    assert r["val_slope"] == pytest.approx(0.002)
    assert r["val_lo"] == pytest.approx(0.002 - 0.012170, abs=1e-5)
    assert r["val_hi"] == pytest.approx(0.002 + 0.012170, abs=1e-5)
    assert not r["still_gaining"] and not r["ci_excludes_gain"]   # 0.2 pt/epoch, but 1.4 cannot be ruled out


def test_cap_audit_flags_a_run_still_learning_and_fits_only_the_last_epochs():
    # early epochs jump, the last 3 rise exactly 0.5 pt per epoch: the fit sees only those
    runs, metrics = _tables({"a": [0.1, 0.6, 0.700, 0.705, 0.710]}, {"a": "cap"})
    r = convergence.cap_audit(runs, metrics, last=3).iloc[0]
    assert r["val_slope"] == pytest.approx(0.005) and r["still_gaining"]
    assert r["epochs"] == 5
    text = convergence.cap_audit_text(convergence.cap_audit(runs, metrics, last=3), 1, last=3)
    assert "1 still gained more than 0.3 pt" in text and "cifar10 seed 0 a" in text


def test_cap_audit_edge_cases():
    runs, metrics = _tables({"a": [0.5, 0.5, 0.5]}, {"a": "converged"})
    assert convergence.cap_audit(runs, metrics).empty
    assert convergence.cap_audit_text(convergence.cap_audit(runs, metrics), 1) == \
        "None of the 1 networks stopped at its epoch cap."
    with pytest.raises(ValueError, match="at least 3 epochs"):
        convergence.cap_audit(runs, metrics, last=2)


def test_cap_audit_on_the_stored_campaign():
    from triage import report
    res = report.load("campaign")
    a = convergence.cap_audit(res.runs, res.metrics)
    capped = res.runs[res.runs["stop_reason"] == "cap"]
    assert len(a) == len(capped)
    assert (a["val_lo"] <= a["val_slope"]).all() and (a["val_slope"] <= a["val_hi"]).all()


def test_convergence_audit_by_hand():
    t = pd.DataFrame([
        # dataset, seed, name, block, stopping, epochs, epochs_trained, test_acc_at_best_val
        ("mnist", 0, "base", 0, "plateau", 60, 32, 0.9930),
        ("mnist", 0, "base", 0, "fixed", 64, 64, 0.9941),        # +0.11 pt: converged
        ("cifar10", 0, "base", 0, "plateau", 60, 30, 0.7900),
        ("cifar10", 0, "base", 0, "fixed", 60, 60, 0.8000),      # +1.0 pt: not converged
        ("cifar10", 0, "control", 0, "plateau", 30, 30, 0.8100),  # the control is no audit
        ("cifar100", 0, "base", 0, "plateau", 60, 40, 0.39),      # no audit run: left out
    ], columns=["dataset", "seed", "name", "block", "stopping", "epochs", "epochs_trained", "test_acc_at_best_val"])
    a = convergence.convergence_audit(t).set_index("dataset")
    assert list(a.index) == ["cifar10", "mnist"]
    assert a.loc["mnist", "gain"] == pytest.approx(0.0011) and a.loc["mnist", "converged"]
    assert a.loc["cifar10", "gain"] == pytest.approx(0.01) and not a.loc["cifar10", "converged"]
    assert (a.loc["cifar10", "base_epochs"], a.loc["cifar10", "audit_epochs"]) == (30, 60)
    assert convergence.convergence_audit(pd.DataFrame()).empty


def test_convergence_audit_within_the_audit_run(tmp_path):
    """A GPU base audited on the CPU: the verdict compares the audit run with its own first epochs."""
    audit = tmp_path / "audit"
    audit.mkdir()
    # 6 epochs; the base stopped after 3. Best val in the first 3: epoch 2 (test 0.70);
    # over all 6: epoch 5 (test 0.72) -> within-run gain +2 pt, although the audit as a
    # whole is 1 pt below the (GPU) base.
    pd.DataFrame({"epoch": range(1, 7), "val_acc": [0.5, 0.7, 0.6, 0.65, 0.71, 0.69],
                  "test_acc": [0.5, 0.70, 0.61, 0.66, 0.72, 0.68]}).to_csv(audit / "metrics.csv", index=False)
    t = pd.DataFrame([
        ("cifar10", 0, "base", 0, "plateau", 60, 3, 0.73, "cuda", None),
        ("cifar10", 0, "base", 0, "fixed", 6, 6, 0.72, "cpu", str(audit)),
    ], columns=["dataset", "seed", "name", "block", "stopping", "epochs", "epochs_trained", "test_acc_at_best_val",
                "device", "run_dir"])
    a = convergence.convergence_audit(t).iloc[0]
    assert a["gain"] == pytest.approx(-0.01) and a["gain_within"] == pytest.approx(0.02)
    assert not a["converged"] and a["devices"] == "cuda / cpu"


def test_convergence_audit_pairs_a_base_only_with_an_audit_of_its_width():
    """A wider pilot of the same data set and seed is another network: it is not audited by the
    narrower base's long run, and the text names the grid base that no audit covers."""
    t = pd.DataFrame([
        ("cifar100", 0, "base", 0, "plateau", 60, 44, 0.393, 0.125),
        ("cifar100", 0, "base", 0, "fixed", 88, 88, 0.400, 0.125),      # +0.7 pt over the 1/8 base
        ("cifar100", 0, "base", 0, "plateau", 60, 40, 0.523, 0.25),     # the 1/4 pilot: no audit
    ], columns=["dataset", "seed", "name", "block", "stopping", "epochs", "epochs_trained", "test_acc_at_best_val",
                "width"])
    a = convergence.convergence_audit(t)
    assert len(a) == 1 and a.iloc[0]["width"] == 0.125 and a.iloc[0]["gain"] == pytest.approx(0.007)
    assert a.iloc[0]["base_acc"] == pytest.approx(0.393) and not a.iloc[0]["converged"]
    grid = t[t["width"] == 0.25].assign(name="base")
    text = convergence.convergence_audit_text(a, bases=grid)
    assert "cifar100 (width 0.125) seed 0: 88 epochs against 44, +0.70 pt" in text
    assert text.endswith("No audit run covers the grid bases of cifar100 (width 0.25) yet.")
    assert "covers" not in convergence.convergence_audit_text(a, bases=t[t["width"] == 0.125])


def test_width_pilot_by_hand():
    t = pd.DataFrame([
        ("cifar100", 0, "base", 0, "plateau", 60, 44, 0.39, 0.125),
        ("cifar100", 1, "base", 0, "plateau", 60, 38, 0.37, 0.125),
        ("cifar100", 0, "base", 0, "fixed", 88, 88, 0.40, 0.125),
        ("cifar100", 0, "base", 0, "plateau", 60, 40, 0.52, 0.25),
        ("cifar100", 0, "b1-mean-thawed", 1, "plateau", 30, 30, 0.10, 0.125),   # a child: not a base
        ("cifar10", 0, "base", 0, "plateau", 60, 30, 0.79, 0.125),              # another data set
    ], columns=["dataset", "seed", "name", "block", "stopping", "epochs", "epochs_trained", "test_acc_at_best_val",
                "width"])
    w = convergence.width_pilot(t, "cifar100")
    assert list(w.index) == [0.125, 0.25] and list(w["bases"]) == [2, 1]
    assert w.loc[0.125, "acc_mean"] == pytest.approx(0.38) and w.loc[0.125, "acc_min"] == pytest.approx(0.37)
    assert w.loc[0.125, "audit_acc"] == pytest.approx(0.40)       # seed 0's audit, the only one
    assert w.loc[0.25, "acc_max"] == pytest.approx(0.52) and w["audit_acc"].isna().tolist() == [False, True]
    assert convergence.width_pilot(pd.DataFrame(), "cifar100").empty


def test_base_floors_by_hand():
    runs = pd.DataFrame([
        ("mnist", 0, "base", 0, 0.125, 0.9930), ("mnist", 1, "base", 0, 0.125, 0.9920),   # mean 99.25 < 99.3
        ("cifar10", 0, "base", 0, 0.125, 0.81), ("cifar10", 0, "control", 0, 0.125, 0.50),  # control left out
        ("stanford_dogs", 0, "base", 0, 0.125, 0.08),                                         # no floor
    ], columns=["dataset", "seed", "name", "block", "width", "test_acc_at_best_val"])
    audit = pd.DataFrame({"dataset": ["mnist"], "width": [0.125], "gain_within": [0.0]})
    f = convergence.base_floors(runs, audit).set_index("dataset")
    assert list(f.index) == ["cifar10", "mnist"]
    assert f.loc["mnist", "acc_mean"] == pytest.approx(0.9925) and not f.loc["mnist", "met"]
    assert f.loc["mnist", "at_ceiling"] is True
    assert f.loc["cifar10", "met"] and f.loc["cifar10", "bases"] == 1 and pd.isna(f.loc["cifar10", "at_ceiling"])
