"""Tests of triage.studies: analyses of stored runs, stored once in the result store and read back;
the one-off migration of results stored before the store."""
import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from triage import autopsy as ap
from triage import critical as cr
from triage import critical_am as cam
from triage import critical_chapter as cc
from triage import critical_eval as ce
from triage import findings as fd
from triage import studies
from tiny_nets import assert_unchanged, no_hooks, snapshot


# ----------------------------------------------------------------------------- real data (smoke MNIST base)
@pytest.fixture(scope="module")
def mnist_base():
    import triage
    cfg = triage.make_config("mnist", profile="smoke")
    try:
        _, test, sp = triage.get_loaders("mnist", test_per_class=cfg.test_per_class, seed=cfg.seed,
                                         batch_size=250)
    except triage.DataError as e:
        pytest.skip(f"MNIST not available: {e}")
    run_dir = triage.run(cfg, progress=False, log=lambda *a: None)   # seconds; reused once stored
    return triage.load_model(run_dir), test, sp


def test_real_mnist_smoke_base(mnist_base, tmp_path, monkeypatch):
    import triage
    model, test, sp = mnist_base
    before = snapshot(model)
    base = ap.accuracy(model, test)["acc"]
    assert base > 0.4, "the smoke MNIST base should be well above chance (0.1)"
    cfg = triage.make_config("mnist", profile="smoke")
    sweeps = dict(noise_ps=[0, 1.0], noise_draws=2, layer_noise_ps=[0.5], decimals=[None, 4, 0], ks=[1, 256],
                  filter_clusters=[1, 1024], bn_batches=1)
    res = studies.autopsy_run(cfg, results_dir=tmp_path, **sweeps)
    assert res["meta"]["base_acc"] == base and res["meta"]["test_images"] == 500
    # rounding to 4 decimals keeps accuracy within a point; to 0 decimals destroys the network
    t = res["rounding"]
    assert t["acc"].iloc[0] == base
    assert abs(t["acc"].iloc[1] - base) <= 0.01
    assert t["acc"].iloc[2] < base - 0.2
    # noise p=0 changes nothing; p=1 (noise as large as the weights) hurts
    n = res["noise"]
    assert (n[n.p == 0]["acc"] == base).all()
    assert n[n.p == 1.0]["acc"].mean() < base - 0.05
    # K=256 weight sharing is close to the unquantised network, K=1 is not
    k = res["kmeans"]
    assert abs(k["acc"].iloc[1] - base) <= 0.02
    assert k["acc"].iloc[0] < base - 0.2
    # one filter per conv layer is useless; as many clusters as filters changes nothing
    fk = res["filter_kmeans"].set_index(["clusters", "bn"])["acc"]
    assert fk[(1, "original")] < base - 0.2 and fk[(1024, "original")] == base
    # ReLU outputs of a trained net are sparse but not dead
    relu = res["sparsity"].set_index("module").drop(index="output")["sparsity"]
    assert ((relu > 0.05) & (relu < 0.99)).all()
    assert res["params"].set_index("layer").loc["total", "params"] == sum(p.numel() for p in model.parameters())
    assert set(res["layer_noise"]["target"]) == set(ap.weight_layers(model))
    f = fd.findings({"mnist": res})
    assert f.loc["mnist", "k_needed"] == 256 and f.loc["mnist", "decimals_needed"] == 4
    # stored: a second call reads the tables back without training or evaluating anything
    monkeypatch.setattr(triage.experiments, "run", lambda *a, **k: pytest.fail("should read the store"))
    again = studies.autopsy_run(cfg, results_dir=tmp_path, **sweeps)
    assert again["meta"] == res["meta"]
    pd.testing.assert_frame_equal(again["kmeans"], res["kmeans"], check_dtype=False)
    assert_unchanged(model, before)
    assert no_hooks(model)


# ----------------------------------------------------------------------------- critical paths of one run config
def test_critical_run_stores_and_reads_back(cifar_base, tmp_path):
    import triage
    cfg = triage.make_config("cifar10", profile="smoke")
    kw = dict(results_dir=tmp_path, ratio=0.1, ratios=(1.0,), map_batches=2, test_batches=1, batch_size=100)
    res = studies.critical_run(cfg, **kw)
    assert res["meta"]["source"] == "computed now"
    assert res["maps"].layers == ("features.block5.conv1",)
    assert res["meta"]["map_images"] == 200 and res["meta"]["test_images"] == 100
    assert sorted(res["sweep"]["ratio"].unique()) == [0.1, 1.0] and len(res["table"]) == 10
    again = studies.critical_run(cfg, **kw)
    assert again["meta"]["source"].startswith("read from")
    pd.testing.assert_frame_equal(again["table"], res["table"])
    pd.testing.assert_frame_equal(again["layer_std"], res["layer_std"])
    assert torch.allclose(again["maps"].score("conv5_1"), res["maps"].score("conv5_1"))
    # other parameters: another folder, computed anew
    assert studies.critical_run(cfg, **{**kw, "ratios": (0.5,)})["meta"]["source"] == "computed now"
    # the batch size is in the key: the same number of batches is another number of images
    other = studies.critical_run(cfg, **{**kw, "batch_size": 50})
    assert other["meta"]["source"] == "computed now"
    assert (other["meta"]["map_images"], other["meta"]["test_images"]) == (100, 50)
    assert not list(tmp_path.rglob("*.tmp"))  # the JSON markers are written whole (temporary file, rename)


def test_am_run_stores_and_reads_back(cifar_base, tmp_path):
    import triage
    model, train, test, sp = cifar_base
    cfg = triage.make_config("cifar10", profile="smoke")
    maps = cr.class_maps(model, train, "Conv5_1", class_names=sp.classes, progress=False)
    kw = dict(layer="Conv5_1", top_k=2, steps=3, results_dir=tmp_path)
    am = studies.am_run(cfg, maps, ["cat", "dog"], **kw)
    assert am["source"] == "computed now"
    assert am["images"].shape == (6, 3, 32, 32) and len(am["titles"]) == 6
    assert am["titles"][-1] == "logit 'dog'"
    assert am["filters"]["cat"] == cr.top_filters(maps, "Conv5_1", "cat", 2)["filter"].tolist()
    # the same images as activation maximisation called directly on the run's network
    mean, std = triage.channel_stats("cifar10")
    direct = cam.activation_maximisation(model, "Conv5_1", am["filters"]["cat"] + am["filters"]["dog"], steps=3,
                                        mean=mean, std=std, seed=0, progress=False)
    assert torch.allclose(am["images"][:4], direct.images, atol=1e-6)
    assert torch.allclose(am["final"][:4], direct.activation, atol=1e-5)
    again = studies.am_run(cfg, maps, ["cat", "dog"], **kw)
    assert again["source"].startswith("read from") and torch.equal(again["images"], am["images"])
    # neither stored images nor a trained run: None (AM never trains a network)
    empty = triage.RunStore(tmp_path / "empty-store", results=None)  # no run, no export
    assert studies.am_run(cfg, maps, ["cat"], store=empty, **{**kw, "results_dir": tmp_path / "none"}) is None
    with pytest.raises(ValueError, match="top_k"):
        studies.am_run(cfg, maps, ["cat"], **{**kw, "top_k": 0})


def test_autopsy_bases_reads_every_data_set_through_one_store(monkeypatch, tmp_path):
    """The chapter's bases: one config per data set, the given run store and the committed export."""
    calls = []
    monkeypatch.setattr(studies, "autopsy_run", lambda cfg, **kw: calls.append((cfg, kw)) or {"dataset": cfg.dataset})
    res = studies.autopsy_bases("smoke", ["mnist", "cifar10"], seed=1, runs_root=tmp_path / "runs",
                                results_dir=tmp_path / "analyses", max_batches=2)
    assert res == {"mnist": {"dataset": "mnist"}, "cifar10": {"dataset": "cifar10"}}   # in the order asked
    (cfg, kw), _ = calls
    repo = Path(studies.__file__).resolve().parents[1]
    assert (cfg.dataset, cfg.profile, cfg.seed, kw["seed"], kw["max_batches"]) == ("mnist", "smoke", 1, 1, 2)
    assert kw["store"].root == tmp_path / "runs" and kw["store"].results == repo / "results" / "triage"
    assert kw["results_dir"] == tmp_path / "analyses"
    monkeypatch.setenv("TRIAGE_RUNS", str(tmp_path / "env-runs"))
    calls.clear()
    studies.autopsy_bases("smoke", ["mnist"])
    assert calls[0][1]["store"].root == tmp_path / "env-runs"
    assert calls[0][1]["results_dir"] == repo / "results" / "autopsy"


# ----------------------------------------------------------------------------- one base run folder, stored
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder of the smoke config holding an untrained network (weights do not matter here)."""
    import triage
    from triage.experiments import STORE_FORMAT, build_model
    try:
        triage.load_split("cifar10", "test")
    except triage.DataError as e:
        pytest.skip(f"CIFAR-10 not available: {e}")
    cfg = triage.make_config("cifar10", profile="smoke")
    run_dir = tmp_path_factory.mktemp("runs") / "smoke" / "cifar10" / f"{cfg.name}-{cfg.key()}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": dataclasses.asdict(cfg),
                                                     "store_format": STORE_FORMAT}))
    torch.manual_seed(0)
    torch.save(tiny_vgg_state(build_model(cfg)), run_dir / "weights.pt")
    return run_dir


def tiny_vgg_state(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    return model.state_dict()


def test_critical_base_stores_and_reads_back(tiny_run, tmp_path):
    kw = dict(results_dir=tmp_path, ratios=(0.1, 1.0), map_per_class=4, val_per_class=3, test_per_class=5,
              batch_size=16, am_classes=("cat",), top_k=1, am_steps=2)
    res = studies.critical_base(tiny_run, **kw)
    meta = res["meta"]
    assert meta["source"] == "computed now" and meta["val_unseen"]  # the smoke run trained on 200 per class
    assert (meta["map_images"], meta["val_images"], meta["test_images"]) == (40, 30, 50)
    assert set(res["rates"]["ratio"]) == {0.1, 1.0} and len(res["rates"]) == 2 * 4 * 10
    assert len(res["original"]) == 10 and len(res["exclusiveness"]) == 6 * 45
    assert set(res["roc"]["calibration"]) == {"original", *ce.CALIBRATIONS}
    assert res["am"]["images"].shape == (2, 3, 32, 32) and res["am"]["titles"][-1] == "logit 'cat'"
    out = tmp_path / "smoke" / "cifar10" / tiny_run.name / meta["key"]
    assert sorted(p.name for p in out.parent.iterdir()) == [meta["key"]]  # no temporary folder left behind
    again = studies.critical_base(tiny_run, **kw)
    assert again["meta"]["source"].startswith("read from")
    for t in ("rates", "original", "exclusiveness", "layer_std"):
        pd.testing.assert_frame_equal(again[t], res[t], check_dtype=False)
    assert torch.equal(again["am"]["images"], res["am"]["images"])
    # the results are found from the run folder's path alone: no weights needed to read them
    (tiny_run / "weights.pt").rename(tiny_run / "weights.bak")
    try:
        assert studies.critical_base(tiny_run, **kw)["meta"]["source"].startswith("read from")
        with pytest.raises(FileNotFoundError, match="no trained weights"):
            studies.critical_base(tiny_run, **{**kw, "ratio": 0.2})
    finally:
        (tiny_run / "weights.bak").rename(tiny_run / "weights.pt")
    v = cc.verdicts(again, ("cat",))
    assert len(v) == 7 and set(v["verdict"]) <= {"reproduces", "partly", "does not reproduce"}
    assert (v["why"] == "").eq(v["verdict"] == "reproduces").all()   # every failure says why
    # the smoke base is narrow: every claim that fails says this width cannot test it
    assert again["meta"]["width"] < cc.NARROW_WIDTH
    assert v.loc[v["verdict"] != "reproduces", "why"].str.endswith(
        f"; at width {again['meta']['width']:g} the layers are too narrow to test this").all()
    wide = cc.verdicts({**again, "meta": {**again["meta"], "width": 1.0}}, ("cat",))
    assert not wide["why"].str.contains("too narrow").any()
    # a book without the run store finds the base through its stored results
    import triage
    empty = triage.RunStore(tmp_path / "no-runs", results=None)
    assert studies.find_base("smoke", store=empty, results_dir=tmp_path) == empty.root / "smoke" / "cifar10" / tiny_run.name
    with pytest.raises(FileNotFoundError, match="no stored critical-path results"):
        studies.find_base("cpu", store=empty, results_dir=tmp_path)
    # the batch size is part of the key (the BN re-estimation averages per batch)
    other = studies.critical_base(tiny_run, **{**kw, "batch_size": 8, "calibrations": ("paper",), "am_classes": ()})
    assert other["meta"]["source"] == "computed now" and other["meta"]["key"] != meta["key"]
    assert other["am"] is None
    assert math.isfinite(meta["base_mb"]) and meta["base_mb"] > 0
