"""Tests of triage/failure.py (compress to failure) and the multi-block surgery it rests on.

Hand-computed values on tiny models: the parameter delta of compressing several blocks,
FLOPs of a four-layer net, the greedy choice, the failure step's CI on made-up numbers;
then one real-data smoke path (MNIST, smoke profile cut to a few hundred images, 2 steps).
"""
import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

import triage
from triage import failure, failure_report
from triage.__main__ import main as cli
from triage.experiments import ConfigError, RunConfig, RunStore, load_model, make_config
from triage.models import block_convs, vgg16_bn
from triage.surgery import compress_block, compress_blocks

# ----------------------------------------------------------------------------- surgery of several blocks


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_compress_blocks_parameter_delta_by_hand():
    # width 1/16: blocks of 4, 8, 16, 32, 32 channels. Block 1 (3->4, 4->4) loses conv2
    # (9*4*4 + 4) and bn2 (2*4): 156. Block 3 (8->16, 16->16, 16->16) loses conv2, conv3
    # (2 * (9*16*16 + 16)) and bn2, bn3 (2 * 2*16): 4704.
    m = vgg16_bn(10, width=1 / 16)
    child = compress_blocks(m, (3, 1))
    assert _params(m) - _params(child) == 156 + 4704
    assert [len(block_convs(child.block(b))) for b in range(1, 6)] == [1, 2, 1, 3, 3]
    # order does not matter, and one block is compress_block's child
    assert list(compress_blocks(m, [1, 3]).state_dict()) == list(child.state_dict())
    assert list(compress_blocks(m, [4]).state_dict()) == list(compress_block(m, 4).state_dict())


def test_compress_blocks_leaves_its_input_untouched_and_shapes_unchanged():
    torch.manual_seed(0)
    m = vgg16_bn(10, width=1 / 16).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    child = compress_blocks(m, (2, 4, 5)).eval()
    assert m.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    h_m, h_c = x, x
    for b in range(1, 6):     # every block's output has the parent's shape
        h_m, h_c = m.block(b)(h_m), child.block(b)(h_c)
        assert h_m.shape == h_c.shape
    assert child(x).shape == m(x).shape == (2, 10)
    # every kept parameter is the parent's
    kept = {k: v for k, v in child.state_dict().items() if not k.startswith(("features.block2.",
                                                                            "features.block4.",
                                                                            "features.block5."))}
    assert kept and all(torch.equal(v, before[k]) for k, v in kept.items())


@pytest.mark.parametrize("blocks, error, match", [
    ((), ValueError, "at least one block"), ((2, 2), ValueError, "twice"), ((0,), ValueError, "block must be"),
    ((6,), ValueError, "block must be"), ((1.5,), ValueError, "integers"), ((True,), ValueError, "integers")])
def test_compress_blocks_bad_input(blocks, error, match):
    with pytest.raises(error, match=match):
        compress_blocks(vgg16_bn(10, width=1 / 16), blocks)


def test_compress_blocks_needs_addressable_blocks():
    with pytest.raises(TypeError, match="VGG or ResNet"):
        compress_blocks(nn.Sequential(nn.Conv2d(3, 4, 3)), (1,))


def test_compress_blocks_on_resnet_stages():
    from triage.resnet import resnet8
    m = resnet8(10)
    child = compress_blocks(m, (1, 3))
    assert child.compressed == (1, 3) and m.compressed == ()
    assert child(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_mw_network_averages_each_block_of_the_parent_by_hand():
    torch.manual_seed(1)
    parent = vgg16_bn(10, width=1 / 16)
    child = failure.mw_network(parent, (1, 3))
    for b in (1, 3):
        convs = block_convs(parent.block(b))
        c_in = convs[0].in_channels
        want = sum(c.weight[:, :c_in] for c in convs) / len(convs)   # W[o, i] = 1/n sum_j W_j[o, i]
        torch.testing.assert_close(child.block(b).conv1.weight, want)
        torch.testing.assert_close(child.block(b).conv1.bias, sum(c.bias for c in convs) / len(convs))
    for b in (2, 4, 5):       # untouched blocks are the parent's
        for (k, v), (k2, v2) in zip(child.block(b).state_dict().items(), parent.block(b).state_dict().items()):
            assert k == k2 and torch.equal(v, v2)


# ----------------------------------------------------------------------------- configs


def test_extra_blocks_keep_the_grids_addresses_and_name_the_set():
    # the campaign's stored CIFAR-10 TM-MW child of block 3, seed 0 (results/triage/campaign/runs/)
    assert make_config("cifar10", 3, "mean", "thawed", profile="campaign").key() == "d67b3b4900e4"
    assert failure.step_config("cifar10", (3,), "campaign").key() == "d67b3b4900e4"   # step 1 is reused
    c = failure.step_config("cifar10", (4, 1, 2), "campaign", seed=1)
    assert (c.block, c.extra_blocks, c.compressed_blocks) == (1, (2, 4), (1, 2, 4))
    assert c.name == "b1+2+4-mean-thawed" and c.parent() == make_config("cifar10", profile="campaign", seed=1)
    # a JSON list, a CSV string and a tuple are one config
    d = json.loads(json.dumps(c.__dict__))
    assert RunConfig(**d).key() == RunConfig(**{**d, "extra_blocks": "(2, 4)"}).key() == c.key()
    assert RunConfig(**{**d, "extra_blocks": float("nan"), "block": 3}).extra_blocks is None
    # profiles without a validation split get one: the path chooses on validation data
    assert failure.step_config("mnist", (2,), "smoke").val_fraction == failure.VAL_FRACTION


@pytest.mark.parametrize("kwargs, match", [
    (dict(block=3, extra_blocks=(1,)), "above block 3"), (dict(block=1, extra_blocks=(6,)), r"2\.\.5"),
    (dict(block=1, extra_blocks=(2, 2)), "twice"), (dict(block=1, extra_blocks="two"), "block numbers"),
    (dict(block=1, init="stn", extra_blocks=(2,)), "random or mean"),
    (dict(block=1, regime="frozen", extra_blocks=(2,)), "thawed"),
    (dict(block=0, init=None, regime=None, extra_blocks=(2,)), "give --block")])
def test_bad_extra_blocks(kwargs, match):
    kw = {"init": "mean", "regime": "thawed", **kwargs}
    with pytest.raises(ConfigError, match=match):
        make_config("cifar10", kw.pop("block"), profile="campaign", **kw)


# ----------------------------------------------------------------------------- cost


def test_network_cost_of_a_step_config():
    c = failure.step_config("cifar10", (1, 3), "smoke")
    cost = failure.network_cost(c)
    base = failure.network_cost(c.parent())
    # width 1/8: block 1 (3->8, 8->8) loses 9*64+8 + 16 = 600; block 3 (16->32 x3) 2*(9*1024+32) + 4*32 = 18624
    assert base["params"] - cost["params"] == 600 + 18624
    assert cost["flops"] < base["flops"]


# ----------------------------------------------------------------------------- the greedy choice


@pytest.mark.parametrize("scores, best", [({1: 0.2, 2: 0.5, 3: 0.4}, 2), ({5: 0.7, 4: 0.7, 2: 0.1}, 4),
                                          ({2: float("nan"), 3: 0.1}, 3), ({"4": None, "5": 0.3}, 5)])
def test_choose_block_is_the_argmax_ties_to_the_smaller_block(scores, best):
    assert failure.choose_block(scores) == best


def test_choose_block_without_any_score():
    with pytest.raises(ValueError, match="no candidate"):
        failure.choose_block({1: float("nan"), 2: None})


# ----------------------------------------------------------------------------- the failure step


def _results(losses, control=(80.0, 81.0, 79.0)):
    """A FailureResults whose step k loses losses[k-1][i] points against the control on seed i."""
    ctl = pd.DataFrame({"seed": range(len(control)), "test_acc_at_best_val": [c / 100 for c in control],
                        "best_val_acc": math.nan, "base_acc": math.nan, "params": 100, "flops": 1000})
    rows = [{"seed": i, "step": k, "blocks": str(k), "params": 100 - 10 * k, "flops": 1000 - 100 * k,
             "test_acc_at_best_val": (control[i] - loss) / 100}
            for k, ls in enumerate(losses, start=1) for i, loss in enumerate(ls)]
    return failure_report.FailureResults("campaign", "cifar10", pd.DataFrame(rows), ctl)


def test_failure_step_by_hand():
    # t(0.975, 2 df) = 4.302653; step 1: mean 0, sd 0.1 -> half-width 4.3027 * 0.1 / sqrt(3) = 0.2484
    # step 2: mean 1, straddles 1; step 3: mean 6, sd 1 -> [3.516, 8.484] > 1: the first failure
    res = _results([(0.1, -0.1, 0.0), (0.5, 1.5, 1.0), (5.0, 6.0, 7.0), (10.0, 11.0, 12.0)])
    table, summ = failure_report.verdict(res, margin=1.0)
    assert list(table["verdict"]) == ["within margin", "not testable at this n", "fails", "fails"]
    assert table.loc[0, "ci_high"] == pytest.approx(0.2484, abs=1e-4)
    assert (table.loc[2, "loss"], table.loc[2, "ci_low"], table.loc[2, "ci_high"]) == pytest.approx(
        (6.0, 3.5159, 8.4841), abs=1e-4)
    assert summ["failure_step"] == 3 and summ["n_seeds"] == 3 and "step 3 is the first to fail" in summ["text"]
    # a wider margin moves it
    assert failure_report.verdict(res, margin=4.0)[1]["failure_step"] == 4
    fig = failure_report.plot(res)
    assert len(fig.axes) == 2
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_failure_step_not_testable_with_one_seed_and_nothing_run():
    res = _results([(5.0,), (9.0,)], control=(80.0,))
    table, summ = failure_report.verdict(res)
    assert set(table["verdict"]) == {"not testable: fewer than 2 seeds"} and summ["failure_step"] is None
    assert summ["text"].startswith("not testable")
    empty = failure_report.FailureResults("campaign", "cifar10", res.steps.iloc[:0], res.control.iloc[:0])
    assert empty.empty and failure_report.verdict(empty)[1]["text"].startswith("not run yet")
    for bad in (0, -1.0, "1"):
        with pytest.raises(ValueError, match="margin"):
            failure_report.verdict(res, margin=bad)


def test_verdict_and_budget_text():
    res = _results([(5.0, 6.0, 7.0)])
    table, summ = failure_report.verdict(res, margin=1.0)
    tag = "[profile: campaign; cifar10; seeds 0, 1, 2]"
    assert failure_report.verdict_text(res, summ) == f"Verdict {tag}: {summ['text']}"
    empty = failure_report.FailureResults("campaign", "cifar10", res.steps.iloc[:0], res.control.iloc[:0])
    assert failure_report.verdict_text(empty, failure_report.verdict(empty)[1]) == (
        "**Not run yet**: no step network of a compress-to-failure path is stored for the campaign profile and "
        "cifar10. Run `python -m triage failure --profile campaign --dataset cifar10 --seeds 0 1 2` (after the "
        "campaign), then rebuild the book.")
    b = {"n": 7, "seconds_min": 470.2, "seconds_max": 1273.0, "seconds_median": 553.4, "seconds_per_epoch": 20.94,
         "networks": 15, "networks_reused": 3, "score_epochs_total": 42, "hours": 2.1}
    assert failure_report.budget_text(b, "cifar10") == (
        "The 7 TM children of the cifar10 campaign trained on this machine's CPU took 470-1273 s (median 553 s, "
        "20.9 s an epoch). A path of 3 seeds x 5 steps is 15 networks, 3 of them the grid's TM-MW children "
        "(reused), plus 42 scoring epochs: about 2.1 hours of one core.")
    assert failure_report.budget_text({"n": 0}, "mnist") == (
        "No TM child of the mnist campaign is stored yet to measure the cost of a network.")


def test_load_without_stored_paths_is_empty(tmp_path):
    res = failure_report.load("campaign", "cifar10", root=tmp_path / "results", runs_root=tmp_path / "runs")
    assert res.empty and res.seeds == [] and failure_report.verdict(res)[1]["text"].startswith("not run yet")


# ----------------------------------------------------------------------------- command line


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet"], "unknown dataset"), (["--dataset", "mnist", "--steps", "6"], "steps must be in 1..5"),
    (["--dataset", "mnist", "--steps", "0"], "steps must be in 1..5"),
    (["--dataset", "mnist", "--profile", "huge"], "unknown profile"),
    (["--dataset", "mnist", "--set", "block=2"], "sets block itself"),
    (["--dataset", "mnist", "--set", "extra_blocks=(2,)"], "sets extra_blocks itself"),
    (["--dataset", "mnist", "--margin", "0"], "--margin"), (["--dataset", "mnist", "--seeds", "-1"], "seeds"),
    (["--dataset", "mnist", "--score-epochs", "-1"], "score_epochs"),
    (["--dataset", "mnist", "--set", "model=resnet8", "--steps", "4"], "steps must be in 1..3")])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    assert cli(["failure", *argv, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())          # nothing made


# ----------------------------------------------------------------------------- a real path (MNIST)

TINY = dict(width=1 / 16, train_per_class=24, test_per_class=12, batch_size=32, precision="fp32", val_fraction=0.25)


@pytest.fixture(scope="module")
def smoke_path(tmp_path_factory, triage_cache, one_thread):
    """Two steps of seed 0's path on the smoke profile, taken as one step and then resumed."""
    tmp = tmp_path_factory.mktemp("failure")
    store = RunStore(tmp / "runs", results=tmp / "results")
    quiet = dict(store=store, progress=False, log=lambda m: None, **TINY)
    first = failure.run_failure("mnist", "smoke", [0], steps=1, **quiet)[0]
    s1 = store.path(RunConfig(**first["steps"][0]["config"])) / "summary.json"
    stamp = s1.stat().st_mtime_ns
    second = failure.run_failure("mnist", "smoke", [0], steps=2, **quiet)[0]
    return store, first, second, stamp, s1


def test_smoke_path_chooses_greedily_on_validation(smoke_path):
    store, first, rec, _, _ = smoke_path
    s1, s2 = rec["steps"]
    assert sorted(map(int, s1["scores"])) == [1, 2, 3, 4, 5] and s1["before"] == []
    assert s1["chosen"] == failure.choose_block(s1["scores"])
    assert all(0 <= v <= 1 for v in s1["scores"].values())
    assert s2["before"] == [s1["chosen"]] and s1["chosen"] not in map(int, s2["scores"])
    assert len(s2["scores"]) == 4 and s2["chosen"] == failure.choose_block(s2["scores"])
    assert s2["blocks"] == sorted([s1["chosen"], s2["chosen"]])
    cfg = RunConfig(**s2["config"])
    assert cfg.compressed_blocks == tuple(s2["blocks"]) and cfg == failure.step_config("mnist", s2["blocks"],
                                                                                        "smoke", 0, **TINY)
    # the score is the child's first epoch: same seed, data order and lr give the same number
    for st in (s1, s2):
        m = pd.read_csv(store.path(RunConfig(**st["config"])) / "metrics.csv")
        assert m["val_acc"].iloc[0] == pytest.approx(st["scores"][str(st["chosen"])], abs=1e-12)
    model = load_model(store.path(cfg))
    assert [len(block_convs(model.block(b))) == 1 for b in range(1, 6)] == [b in s2["blocks"] for b in range(1, 6)]


def test_smoke_path_resumes_and_is_stored_like_every_run(smoke_path):
    store, first, rec, stamp, s1 = smoke_path
    assert rec["steps"][0] == first["steps"][0]              # step 1 not scored again
    assert s1.stat().st_mtime_ns == stamp                    # nor trained again
    exported = list((store.results / "smoke" / "failure" / "mnist").glob("failure-s0-*/path.json"))
    assert len(exported) == 1 and json.loads(exported[0].read_text()) == rec
    for st in rec["steps"]:
        assert (store.export_path(RunConfig(**st["config"])) / "summary.json").is_file()


def test_smoke_path_table_verdict_and_cli(smoke_path, capsys):
    store, _, rec, _, _ = smoke_path
    res = failure_report.load("smoke", "mnist", root=store.results, runs_root=store.root, **TINY)
    t = res.steps
    assert list(t["step"]) == [1, 2] and set(t["status"]) == {"done"} and res.seeds == [0]
    assert list(t["blocks"]) == ["+".join(map(str, s["blocks"])) for s in rec["steps"]]
    ctl = res.control.iloc[0]
    assert ctl["params"] > t["params"].iloc[0] > t["params"].iloc[1]
    assert ctl["flops"] > t["flops"].iloc[0] > t["flops"].iloc[1]
    assert t["test_acc_at_best_val"].between(0, 1).all() and 0 < ctl["test_acc_at_best_val"] <= 1
    table, summ = failure_report.verdict(res)
    assert summ["failure_step"] is None and summ["text"].startswith("not testable")
    import matplotlib.pyplot as plt
    plt.close(failure_report.plot(res))
    # the command line finds everything done and prints the table and the verdict
    sets = [f"{k}={v}" for k, v in TINY.items()]
    assert cli(["failure", "--dataset", "mnist", "--profile", "smoke", "--steps", "2", "--out", str(store.root),
                "--no-progress", "--set", *sets]) == 0
    out, err = capsys.readouterr()
    assert "verdict: not testable" in out and "b" + t["blocks"].iloc[1] in out
    assert "finished run found" in err and "test acc" not in err    # nothing trained again
    assert triage.failure is failure


def test_an_interrupted_scoring_resumes_at_the_next_candidate(smoke_path, monkeypatch):
    store = smoke_path[0]
    real, calls, interrupt = failure.score_candidate, [], [True]

    def flaky(parent, blocks, *a, **k):
        calls.append(tuple(blocks))
        if len(calls) == 3 and interrupt.pop():
            raise KeyboardInterrupt          # Ctrl-C while the third candidate trains (once)
        return real(parent, blocks, *a, **k)
    monkeypatch.setattr(failure, "score_candidate", flaky)
    quiet = dict(store=store, progress=False, log=lambda m: None, **TINY)
    with pytest.raises(KeyboardInterrupt):
        failure.failure_path("mnist", "smoke", 1, steps=1, **quiet)
    kept = json.loads(next((store.root / "smoke" / "mnist").glob("failure-s1-*/path.json")).read_text())
    assert list(kept["steps"][0]["scores"]) == ["1", "2"] and kept["steps"][0]["chosen"] is None
    calls.clear()
    interrupt.append(False)
    rec = failure.failure_path("mnist", "smoke", 1, steps=1, **quiet)
    assert calls == [(3,), (4,), (5,)]                                   # only the rest is scored
    assert {k: rec["steps"][0]["scores"][k] for k in ("1", "2")} == kept["steps"][0]["scores"]
